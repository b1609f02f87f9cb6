r"""Pairwise soft ranks: sigmoid (ApproxNDCG) and probabilistic (SoftRank) relaxations.

Both methods replace the indicator in the exact rank $1 + \sum_{j \ne i} [x_i > x_j]$ by
a smooth step $f$ of the scaled difference:

* ``sigmoid``: $f = \sigma$, scale $\tau$ — the smooth position of ApproxNDCG
  (T. Qin, T.-Y. Liu and H. Li, "A general approximation framework for direct optimization of
  information retrieval measures", Information Retrieval 13, 2010).
* ``probabilistic``: $f = \Phi$ (standard normal CDF), scale $\sqrt 2 \tau$ — the
  expected rank of SoftRank when every score carries independent Gaussian noise of standard
  deviation $\tau$ (M. Taylor, J. Guiver, S. Robertson and T. Minka, "SoftRank: optimizing
  non-smooth rank metrics", WSDM 2008).

Memory. The sum has $n^2$ terms, but no $n \times n$ array is ever formed once a
list is long: the rows $i$ are processed in blocks (a ``lax.scan``) whose block height is
chosen so that one block holds about `BLOCK_ELEMENTS` pairwise terms, and the scan body is
wrapped in `jax.checkpoint`. Reverse-mode autodiff of a checkpointed scan body saves only
the body's inputs (the block's scores, O(block)) and recomputes the pairwise terms blockwise in
the backward pass, so forward *and* backward need O(n · block) memory while plain ``jvp``,
``vjp``, ``jacfwd``, ``jacrev``, ``vmap`` and higher derivatives all keep working (a
``custom_vjp`` would have ruled out forward mode). Short lists (one block covers every row) take
the dense path: a single broadcast ``[..., n, n]`` evaluation without a scan; with the default
budget that is every single list up to n = 2048. The budget counts the batch the kernel sees;
under ``vmap`` the kernel sees one list, so a vmapped batch of short lists is evaluated densely
as a whole (call the op on the batched array to have the batch counted).

Measured (CPU, float32, ``jit(value_and_grad)`` of ``sum(w * soft_rank(x))`` at n = 100,000):
17.2 MiB of XLA temporaries (``compiled.memory_analysis()``) and 0.35-0.37 GiB peak resident memory
for the whole Python process, for both methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from rank_relax_jax import _sort

# Pairwise terms per block (times the batch size). 2**22 terms are 16 MiB in float32; a block's
# forward and backward hold a few such arrays. Lists whose full n × n matrix fits under this budget
# are computed densely. Tests lower it to exercise the blocked path on short lists.
BLOCK_ELEMENTS = 2**22


def _pairwise_rank(
    step: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    mask: jax.Array | None,
    scale: jax.Array,
    descending: bool,
) -> jax.Array:
    r"""``0.5 + sum_j w_j step(a (x_i - x_j) / scale)``, blocked over rows ``i``.

    The ``j = i`` term is ``step(0) = 1/2`` for both steps, so adding ``0.5`` instead of ``1``
    excludes it without a diagonal mask. Padded columns get weight ``w_j = 0``.
    """
    sign = -1.0 if descending else 1.0
    n = x.shape[-1]
    batch = x.shape[:-1]
    b = math.prod(batch)  # not reshape(-1, n): ambiguous when n == 0
    xf = x.reshape(b, n)
    w = None if mask is None else mask.reshape(b, n).astype(x.dtype)
    inv = jnp.asarray(sign, x.dtype) / scale

    def rows(xi: jax.Array) -> jax.Array:
        # xi: [b, r] scores of a block of rows; returns their ranks [b, r].
        z = (xi[:, :, None] - xf[:, None, :]) * inv
        terms = step(z)
        if w is not None:
            terms = terms * w[:, None, :]
        return 0.5 + jnp.sum(terms, axis=-1)

    height = max(1, BLOCK_ELEMENTS // max(1, b * n))
    if height >= n:
        return rows(xf).reshape(*batch, n)

    blocks = -(-n // height)
    padded = jnp.pad(xf, ((0, 0), (0, blocks * height - n)))
    xs = jnp.moveaxis(padded.reshape(b, blocks, height), 1, 0)
    body = jax.checkpoint(lambda carry, xi: (carry, rows(xi)), prevent_cse=False)
    _, out = jax.lax.scan(body, None, xs)
    out = jnp.moveaxis(out, 0, 1).reshape(b, blocks * height)[:, :n]
    return out.reshape(*batch, n)


def sigmoid_rank(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""Pairwise logistic soft rank (ApproxNDCG's smooth position).

    $$
    r_i = 1 + \sum_{j \ne i,\ j \text{ valid}} \sigma\!\left(a\,\frac{x_i - x_j}{\tau}\right),
    \qquad a = +1 \text{ (ascending)},\ -1 \text{ (descending)}.
    $$

    Ties get the average rank exactly ($\sigma(0) = 1/2$), and the ranks of a list of
    ``m`` valid entries always sum to $m(m+1)/2$ because
    $\sigma(z) + \sigma(-z) = 1$. As $\tau \to 0$ each term tends to the indicator
    $[a x_i > a x_j]$, so $r_i$ tends to the exact (average-tie) rank; the error for a
    gap $g$ is at most $(m-1)\,e^{-g/\tau}$. As $\tau \to \infty$ every rank
    tends to $(m+1)/2$.

    Cost: O(n²) time; O(n · block) memory in forward and backward (see module docstring).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, rank 1 is the largest score.

    Returns:
      ``[..., n]`` soft ranks; entries at padded positions are meaningless (the wrapper zeros
      them).

    References:
      Qin, Liu & Li, "A general approximation framework for direct optimization of information
      retrieval measures", Information Retrieval 13(4), 2010.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.pairwise import sigmoid_rank
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(sigmoid_rank(x, None, jnp.asarray(0.5), descending=False)).round(3)
      array([1.965, 1.048, 2.987], dtype=float32)
      >>> mask = jnp.array([True, True, False])
      >>> np.asarray(sigmoid_rank(x, mask, jnp.asarray(0.5), descending=True))[:2].round(3)
      array([1.047, 1.953], dtype=float32)
    """
    return _pairwise_rank(jax.nn.sigmoid, x, mask, temperature, descending)


def probabilistic_rank(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""SoftRank's expected rank under Gaussian score noise.

    With independent scores $s_i \sim \mathcal N(x_i, \tau^2)$,
    $P(s_i > s_j) = \Phi((x_i - x_j)/(\sqrt2\,\tau))$, and the expected rank is

    $$
    r_i = 1 + \sum_{j \ne i,\ j \text{ valid}}
    \Phi\!\left(a\,\frac{x_i - x_j}{\sqrt{2}\,\tau}\right),
    \qquad a = \pm 1 \text{ as for } \texttt{sigmoid}.
    $$

    Ties get the average rank, the ranks sum to $m(m+1)/2$ ($\Phi(z) + \Phi(-z) =
    1$), and as $\tau \to 0$ the ranks tend to the exact ranks with Gaussian tails
    $\Phi(-g/(\sqrt 2\tau))$ per pair at gap $g$ (faster than the sigmoid's
    exponential tails).

    Cost: O(n²) time; O(n · block) memory in forward and backward (see module docstring).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar noise standard deviation $\tau > 0$ (may be traced).
      descending: If True, rank 1 is the largest score.

    Returns:
      ``[..., n]`` expected ranks (padded positions meaningless; the wrapper zeros them).

    References:
      Taylor, Guiver, Robertson & Minka, "SoftRank: optimizing non-smooth rank metrics",
      WSDM 2008.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.pairwise import probabilistic_rank
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(probabilistic_rank(x, None, jnp.asarray(0.5), descending=False)).round(3)
      array([1.984, 1.017, 2.999], dtype=float32)
    """
    return _pairwise_rank(ndtr, x, mask, temperature * math.sqrt(2.0), descending)


def sigmoid_topk_mask(x: jax.Array, mask: jax.Array | None, k: int, t: jax.Array) -> jax.Array:
    r"""Sigmoid top-k mask $\sigma((x_i - t)/\tau)$, $t$ between the k-th and (k+1)-th largest.

    The threshold is piecewise linear in ``x`` and differentiated (only the choice of which two
    entries define it is hard). The mask sums to about, not exactly, ``k``. O(n log n) (one sort).
    A list with at most ``k`` valid entries selects all of them.
    """
    n = x.shape[-1]
    if k == n:
        return jnp.ones_like(x)
    perm = _sort.argsort(jax.lax.stop_gradient(x), mask, descending=True)
    s = jnp.take_along_axis(x, perm[..., k - 1 : k + 1], axis=-1)
    # The threshold is piecewise linear in x and is differentiated like the rest (only the
    # choice of which entries define it is hard), so the gradient is the op's true gradient.
    threshold = (0.5 * (s[..., 0] + s[..., 1]))[..., None]
    soft = jax.nn.sigmoid((x - threshold) / t)
    if mask is None:
        return soft
    # With at most k valid entries every valid entry is selected.
    enough = (jnp.sum(mask, axis=-1, keepdims=True) > k) | ~mask
    return jnp.where(enough, soft, jnp.ones((), x.dtype))
