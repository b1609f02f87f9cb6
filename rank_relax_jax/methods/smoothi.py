r"""SmoothI: smooth rank indicators, and the soft ranks, sorts and permutations they define.

T. Thonet, Y. G. Cinar, E. Gaussier, M. Li and J.-M. Renders, "SmoothI: Smooth Rank Indicators
for Differentiable IR Metrics", arXiv:2105.00942, 2021.

The rank indicator $I^r_j$ ("entry $j$ is at rank $r$", rank 1 = largest
score) is relaxed recursively, one rank at a time. With scores shifted to be non-negative,
$s_j = x_j - \min_k x_k$, inverse temperature $\alpha = 1/\tau$ and a margin
$\delta \in (0, 1/2)$:

$$
I^{r}_j = \operatorname{softmax}_j\!\left(\alpha\, s_j\, B^r_j\right), \qquad
B^1_j = 1, \qquad B^{r+1}_j = B^r_j \,\bigl(1 - I^r_j - \delta\bigr).
$$

An entry picked at rank $r$ ($I^r_j \approx 1$) gets a negative factor
$-\delta$ and drops out of the later softmaxes, while the others keep a positive weight
$(1-\delta)^{r-1}$. As in the paper, the recursive factor $B^r$ goes through a
stop-gradient (the paper's "stop-gradient trick"), so gradients flow only through
$\alpha s_j$ in each softmax. Each row $I^r$ sums to 1, so $I$ is a
row-stochastic relaxed permutation matrix (row $r$ = sorted slot $r$) and this
module also offers the soft sort $I x$ and the soft rank $\sum_r r\,I^r_j$.

Ascending order (rank 1 = smallest) applies the same construction to $-x$.

**Ties are never resolved** (the paper assumes distinct scores). The $t$ entries tied for rank
$r$ each get $I^r_j = 1/t$, so their factor becomes $(1 - 1/t - \delta) B^r_j$ (positive for
$t \ge 2$) instead of $-\delta B^r_j$: they are not pushed out, the next value can win rank
$r + 1$, and the tie is split again at later ranks. As $\tau \to 0$ the ascending ranks of
$[1, 3, 1, 2]$ are $[4, 0, 4, 2]$ (outside $[1, m]$: the columns of $I$ do not sum to 1) and
its sort is $[1, 2, 1, 1]$, not the average ranks and the sorted values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rank_relax_jax.methods.permutation import (
    _sort_in_scaled_units,
    masked_softmax,
    rescale,
    shifted_logits,
)

# The paper's margin hyperparameter δ. Its analysis needs 0 < δ < 1/2; a small δ keeps the
# untaken entries' weight (1 - δ)^(r - 1) large at deep ranks, a larger δ pushes the taken
# entries down harder. 0.1 is our default, not a value fixed by the paper.
DELTA = 0.1


def _scores(x: jax.Array, mask: jax.Array | None, descending: bool) -> jax.Array:
    """Non-negative scores ``s = a x - min(a x)`` over the valid entries (padding gets 0)."""
    s = x if descending else -x
    big = jnp.finfo(s.dtype).max
    if mask is None:
        return s - jnp.min(s, axis=-1, keepdims=True, initial=big)
    lo = jnp.min(jnp.where(mask, s, big), axis=-1, keepdims=True, initial=big)
    lo = jnp.where(lo == big, 0.0, lo)  # fully masked row
    return jnp.where(mask, s - lo, 0.0)


def _indicator_scan(x, mask, temperature, descending, delta, stop, *, stack: bool):
    """Runs the SmoothI recursion; returns the stacked ``[..., r, j]`` indicators or the ranks."""
    x, t = rescale(x, mask, temperature)  # t: [..., 1]
    s = _scores(x, mask, descending)  # in [0, 16] after rescaling
    n = x.shape[-1]
    cmask = mask
    if mask is None:
        m = jnp.full((*x.shape[:-1], 1), n, x.dtype)
    else:
        m = jnp.sum(mask, axis=-1, keepdims=True).astype(x.dtype)

    def step(carry, r):
        prod, acc = carry
        # softmax(s B / t), shifted before the division (near the dtype's maximum t is tiny
        # after rescaling and s B / t itself overflowed).
        ind = masked_softmax(shifted_logits(s * prod, cmask, t), cmask)
        prod = prod * (1.0 - ind - delta)
        if stop:
            prod = jax.lax.stop_gradient(prod)
        if stack:
            return (prod, acc), ind
        weight = jnp.where(r <= m, r, 0.0)  # [..., 1]; ranks past m are padding
        return (prod, acc + weight * ind), None

    init = (jnp.ones_like(x), jnp.zeros_like(x))
    ranks = jnp.arange(1, n + 1, dtype=x.dtype)
    (_, acc), stacked = jax.lax.scan(step, init, ranks)
    if stack:
        return jnp.moveaxis(stacked, 0, -2)
    return acc


def smoothi_permutation(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    descending: bool,
    delta: float = DELTA,
    stop_gradient: bool = True,
) -> jax.Array:
    r"""The matrix of SmoothI rank indicators $I^r_j$ (see the module docstring).

    Row $r$ is a softmax over the valid entries that concentrates on the entry in sorted
    slot $r$. As $\tau \to 0$ it tends to the hard sorting permutation for distinct
    scores; the paper bounds the error by a term decaying exponentially in $\alpha =
    1/\tau$. The effective inverse temperature at rank $r$ is
    $\alpha (1-\delta)^{r-1}$, so deep ranks of long lists need a smaller $\tau$
    than the top ranks.

    Cost: O(n²) time (n sequential softmaxes over n entries) and O(n²) memory.

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau = 1/\alpha > 0$ (may be traced).
      descending: If True, row 1 selects the largest score (the paper's orientation).
      delta: The paper's margin $\delta \in (0, 1/2)$.
      stop_gradient: Apply the paper's stop-gradient to the recursive factor $B^r$
        (default, as in the paper). With False, gradients are the exact derivatives of the
        forward values, at the price of a longer, recursive backward path.

    Returns:
      ``[..., n, n]`` row-stochastic matrix (rows past $m$ and padded columns are
      meaningless; the wrapper zeros them).

    References:
      Thonet, Cinar, Gaussier, Li & Renders, "SmoothI: Smooth Rank Indicators for
      Differentiable IR Metrics", arXiv:2105.00942, 2021.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.smoothi import smoothi_permutation
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(smoothi_permutation(x, None, jnp.asarray(0.05), descending=True)).round(2)
      array([[0.  , 0.  , 1.  ],
             [1.  , 0.  , 0.  ],
             [0.06, 0.94, 0.  ]], dtype=float32)
    """
    return _indicator_scan(x, mask, temperature, descending, delta, stop_gradient, stack=True)


def smoothi_sort(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    descending: bool,
    delta: float = DELTA,
    stop_gradient: bool = True,
) -> jax.Array:
    r"""SmoothI soft sort $\sum_j I^r_j x_j$ (a convex combination of the valid inputs).

    Tends to ``jnp.sort(x)`` as $\tau \to 0$ for distinct values; exact ties are not resolved
    (see the module docstring: $[1, 3, 1, 2] \to [1, 2, 1, 1]$). O(n²) time and memory.

    Args:
      x: ``[..., n]`` values (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, sort from largest to smallest.
      delta: The paper's margin $\delta \in (0, 1/2)$.
      stop_gradient: Apply the paper's stop-gradient to the recursive factor $B^r$
        (default, as in the paper). With False, gradients are the exact derivatives of the
        forward values, at the price of a longer, recursive backward path.

    Returns:
      ``[..., n]`` soft-sorted values with the valid ones in the first $m$ slots.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.smoothi import smoothi_sort
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(smoothi_sort(x, None, jnp.asarray(0.05), descending=False)).round(3)
      array([-1.2  ,  0.3  ,  2.454], dtype=float32)
    """

    def permutation(xs, mask, ts, *, descending):
        return smoothi_permutation(
            xs, mask, ts, descending=descending, delta=delta, stop_gradient=stop_gradient
        )

    # P x in units of max |x| (a power of two): a cotangent times a score near the dtype's
    # maximum would overflow in the backward pass.
    return _sort_in_scaled_units(permutation, x, mask, temperature, descending)


def smoothi_rank(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    descending: bool,
    delta: float = DELTA,
    stop_gradient: bool = True,
) -> jax.Array:
    r"""SmoothI soft rank $\operatorname{rank}_j = \sum_{r=1}^{m} r\, I^r_j$.

    Since every row of $I$ sums to 1, the ranks of a list of $m$ valid entries sum
    to $m(m+1)/2$; they tend to the exact ranks of distinct values as $\tau \to 0$
    and to $(m+1)/2$ as $\tau \to \infty$. Exact ties do not get their average rank (see the
    module docstring: $[1, 3, 1, 2] \to [4, 0, 4, 2]$ as $\tau \to 0$). The ranks are
    accumulated inside the recursion, so the forward pass needs O(n) memory (the backward pass
    keeps one softmax per rank, O(n²)); time is O(n²).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau = 1/\alpha > 0$ (may be traced).
      descending: If True, rank 1 is the largest score.
      delta: The paper's margin $\delta \in (0, 1/2)$.
      stop_gradient: Apply the paper's stop-gradient to the recursive factor $B^r$
        (default, as in the paper). With False, gradients are the exact derivatives of the
        forward values, at the price of a longer, recursive backward path.

    Returns:
      ``[..., n]`` soft ranks (padded positions meaningless; the wrapper zeros them).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.smoothi import smoothi_rank
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(smoothi_rank(x, None, jnp.asarray(0.05), descending=True)).round(3)
      array([2.189, 2.808, 1.004], dtype=float32)
    """
    return _indicator_scan(x, mask, temperature, descending, delta, stop_gradient, stack=False)
