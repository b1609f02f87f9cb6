r"""Differentiable sorting networks: relaxed odd-even transposition and bitonic networks.

F. Petersen, C. Borgelt, H. Kuehne & O. Deussen, "Differentiable Sorting Networks for Scalable
Sorting and Ranking Supervision", ICML 2021, and "Monotonic Differentiable Sorting Networks",
ICLR 2022. A sorting network is a fixed sequence of layers of disjoint conditional swaps
(comparators). Relaxing every swap of the pair $(a, b)$ (min to $a$'s wire, max to $b$'s) with
a sigmoid $f$ and the steepness $\beta = 1/\tau$ ($\tau$ = ``temperature``),

$$
\alpha = f\big((b - a)/\tau\big), \qquad
\min{}_f(a, b) = \alpha\, a + (1 - \alpha)\, b, \qquad
\max{}_f(a, b) = (1 - \alpha)\, a + \alpha\, b,
$$

makes the whole network differentiable. Every sigmoid here has $f(-z) = 1 - f(z)$, so both wires
of a pair compute the same $\alpha$ and the layer is the symmetric, doubly stochastic matrix
$M_\ell$ with the 2×2 blocks $\begin{pmatrix}\alpha & 1-\alpha\\ 1-\alpha & \alpha\end{pmatrix}$.
The relaxed permutation is $\hat P = M_L \cdots M_1$ (doubly stochastic, as a product of doubly
stochastic matrices), the soft sort is $\hat P x$ and the soft ranks are
$\hat P^\top \rho$ with $\rho = (1, \dots, n)$.

Sigmoids (``sigmoid=``), with $z = (b - a)/\tau$:

* ``"logistic"``: $f(z) = 1 / (1 + e^{-z})$ (ICML 2021);
* ``"cauchy"``: $f(z) = \tfrac12 + \tfrac1\pi \arctan z$, the Cauchy CDF (ICLR 2022);
* ``"reciprocal"``: $f(z) = \tfrac12 + \tfrac12\,\frac{2z}{1 + 2|z|}$ (ICLR 2022);
* ``"optimal"``: $f(z) = -\frac{1}{16 z}$ for $z < -\tfrac14$,
  $1 - \frac{1}{16 z}$ for $z > \tfrac14$, $z + \tfrac12$ otherwise (ICLR 2022).

The last three have $f'(z) \in \Theta(1/z^2)$, which (ICLR 2022, Theorems 5 and 8) makes every
relaxed swap monotone (outputs non-decreasing in both inputs) with a bounded error
$\sup_x \min_f(x, 0) < \infty$, so the whole network is monotone: $\partial\,
\mathrm{sort}_r / \partial x_j \ge 0$. The logistic sigmoid decays too fast and is not monotone.

Networks (``network=``):

* ``"odd_even"``: odd-even transposition sort, $n$ layers on $n$ wires (layer $\ell$ compares
  $(i, i + 1)$ for $i \equiv \ell \bmod 2$), $\lfloor n/2 \rfloor$ comparators a layer;
* ``"bitonic"``: Batcher's bitonic sorter on $N = 2^{\lceil \log_2 n \rceil}$ wires,
  $\log_2 N\,(\log_2 N + 1)/2$ layers of $N/2$ comparators.

Limit behaviour. As $\tau \to 0$, $\hat P$ tends to the sorting permutation for distinct
values. A swap of values $\Delta$ apart leaks $1 - f(\Delta/\tau)$ of its mass: $e^{-\Delta/\tau}$
for ``logistic`` but only $\tau/(\pi\Delta)$ (``cauchy``), $\tau/(4\Delta)$ (``reciprocal``) or
$\tau/(16\Delta)$ (``optimal``) for the heavy tails, so those need a far smaller $\tau$ for the
same accuracy. At a tie $z = 0$, so $\alpha = \tfrac12$ at every $\tau$ and the comparator
averages its pair only. Three or more tied entries need not get equal ranks (a constant list
of 5 gets the bitonic ranks $(2.8125, 2.8125, 2.8125, 2.8125, 3.75)$, not 3 each). Two tied
entries get their average rank in the limit with ``logistic`` (entries adjacent in sorted order
always meet in a comparator, and what leaks onto their wires before, $e^{-\Delta/\tau}$, is far
below $\tau$), but not always with the heavy tails: their $O(\tau)$ leak is $O(1)$ on the
scale $\tau$ of the tied comparator ($[1, 3, 1, 2, 0]$, odd-even, ``cauchy``: ranks 2.40 and
2.60 of the tie as $\tau \to 0$, float64). Likewise as
$\tau \to \infty$ every $\alpha \to \tfrac12$ and $\hat P$ tends to a fixed product of
pair-averaging layers, independent of $x$ but uniform (every rank $(m + 1)/2$, every sorted slot
the mean) only for the bitonic network with $m$ a power of two, whose last merge is a complete
butterfly; odd-even transposition on $m > 2$ wires, or bitonic with padded wires, stays
non-uniform ($m = 5$: $\max_{rj} |\hat P_{rj} - \tfrac15| = 0.175$ odd-even, $0.3$ bitonic).
For the same reason the relaxation is not permutation invariant: the soft outputs of a permuted
list differ (beyond the hard limit), because its entries meet different partners on the wires.

Implementation. The swaps act on the values directly, one layer per ``lax.scan`` step, so the
compiled program has one layer body whatever $n$; a layer is two shifted slices (no gather, no
per-layer matrix) and an elementwise mix: $O(N)$ per layer, $O(n^2)$ (odd-even) or
$O(n \log^2 n)$ (bitonic) in all. Ranks use the symmetry of the layers:
$\hat P^\top \rho = C^\top M_1 M_2 \cdots M_L\,\rho$, so the forward pass keeps each layer's
$\alpha$ and a second scan applies the layers in reverse order to $\rho$, at the cost of the
sort ($O(nL)$ time and memory), never forming $\hat P$. Only the permutation kernel
propagates the $n \times n$ matrix through the layers, $O(n^2 L)$ time; its backward pass
recomputes the layers in blocks (``jax.checkpoint``), keeping $O(n^2 \sqrt L)$ memory.

Padding and masks. Rows are first stably compacted (valid entries first, in their order), and
each wire carries a validity flag. A comparator between a valid and a padded wire is a hard
swap that sends the padding up (as $+\infty$ would, without computing with infinities); two
padded wires are left alone. Layers that the network of the $m$ valid entries does not have
(odd-even: $\ell \ge m$; bitonic: stages of block size above $2^{\lceil \log_2 m \rceil}$) are
switched off, so a masked list gives exactly the result of its filtered list. Descending order
sorts $-x$ (the relaxation is symmetric under $x \to -x$). Values are rescaled by a power of
two near $\max|x|$ first (exact, with $\tau$ scaled alike), so differences cannot overflow.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rank_relax_jax import _axis
from rank_relax_jax._sharding import vary_like
from rank_relax_jax.methods import permutation as _perm

NETWORKS = ("bitonic", "odd_even")
SIGMOIDS = ("logistic", "cauchy", "reciprocal", "optimal")
MONOTONE_SIGMOIDS = ("cauchy", "reciprocal", "optimal")


def sigmoid(z: jax.Array, kind: str) -> jax.Array:
    r"""The relaxed swap's sigmoid $f(z)$, with $f(-z) = 1 - f(z)$ (module docstring)."""
    if kind == "logistic":
        return jax.nn.sigmoid(z)
    if kind == "cauchy":
        return 0.5 + jnp.arctan(z) / np.pi
    if kind == "reciprocal":
        return 0.5 + z / (1.0 + 2.0 * jnp.abs(z))
    if kind == "optimal":
        tail = jnp.abs(z) > 0.25
        zs = jnp.where(tail, z, 1.0)  # double where: no 1/0 in the discarded branch
        outer = jnp.where(z > 0, 1.0, 0.0) - 1.0 / (16.0 * zs)
        return jnp.where(tail, outer, z + 0.5)
    raise ValueError(f"sigmoid: unknown kind {kind!r}; expected one of {SIGMOIDS}")


def _sigmoid_grad(z, kind):
    """$f'(z)$ of `sigmoid`."""
    if kind == "logistic":
        e = jax.nn.sigmoid(z)
        return e * (1.0 - e)
    if kind == "cauchy":
        return 1.0 / (np.pi * (1.0 + z * z))
    if kind == "reciprocal":
        return 1.0 / (1.0 + 2.0 * jnp.abs(z)) ** 2
    tail = jnp.abs(z) > 0.25
    zs = jnp.where(tail, z, 1.0)
    return jnp.where(tail, 1.0 / (16.0 * zs * zs), 1.0)


def _steepness(w, pw, sign, inv_t, soft):
    """``z = sign (pw - w) / τ`` (0 off soft pairs) and whether it is below the clip bound."""
    big = 1.0 / jnp.finfo(w.dtype).eps ** 2  # f is 0 or 1 to working precision beyond this
    z = jnp.where(soft, sign * (pw - w), 0.0) * inv_t
    return jnp.clip(z, -big, big), jnp.abs(z) < big


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _mix(kind, w, pw, sign, inv_t, soft, hard):
    r"""One comparator's output on each wire: $\alpha w + (1 - \alpha) w_{partner}$.

    $\alpha = f(z)$ on soft pairs, ``hard`` (0 or 1) elsewhere. Custom JVP: with
    $z = s (w_p - w)/\tau$, $\partial y/\partial w = \alpha + z f'(z)$ and
    $\partial y/\partial w_p = 1 - \alpha - z f'(z)$. Autodiff would form
    $(w - w_p) \cdot f'(z) \cdot (1/\tau)$ from its factors, whose product overflows in
    float32 for large inputs with a small temperature even though $z f'(z)$ is bounded.
    """
    z, _ = _steepness(w, pw, sign, inv_t, soft)
    alpha = jnp.where(soft, sigmoid(z, kind), hard)
    return alpha * w + (1.0 - alpha) * pw


@_mix.defjvp
def _mix_jvp(kind, primals, tangents):
    w, pw, sign, inv_t, soft, hard = primals
    dw, dpw, _, dinv_t, _, _ = tangents
    z, inside = _steepness(w, pw, sign, inv_t, soft)
    alpha = jnp.where(soft, sigmoid(z, kind), hard)
    slope = jnp.where(soft & inside, _sigmoid_grad(z, kind), 0.0)
    zf = z * slope
    # d/d(1/τ): (w - pw) f'(z) z / (1/τ), written without 1/τ's magnitude.
    rel = dinv_t / inv_t
    dy = (alpha + zf) * dw + (1.0 - alpha - zf) * dpw + (w - pw) * zf * rel
    return alpha * w + (1.0 - alpha) * pw, dy


def network_size(n: int, network: str) -> int:
    """Number of wires: ``n`` (odd-even) or the next power of two (bitonic)."""
    if network == "odd_even" or n <= 1:
        return n
    return 1 << (n - 1).bit_length()


def layer_table(n: int, network: str) -> np.ndarray:
    """``[L, 3]`` int32 rows ``(j, k, g)``, one per layer.

    ``j`` is the comparator distance, ``k`` the bitonic block size (0 for odd-even) and ``g``
    the gate: the layer belongs to the network of ``m`` valid entries iff ``g < m``.
    Odd-even: ``n`` layers ``(1, 0, l)``; bitonic: for ``k = 2, 4, ..., N`` and
    ``j = k/2, ..., 1``, the row ``(j, k, k/2)``.
    """
    if network == "odd_even":
        return np.stack([np.ones(n), np.zeros(n), np.arange(n)], axis=1).astype(np.int32)
    size = network_size(n, network)
    rows = []
    k = 2
    while k <= size:
        j = k // 2
        while j >= 1:
            rows.append((j, k, k // 2))
            j //= 2
        k *= 2
    return np.asarray(rows, dtype=np.int32).reshape(-1, 3)


def _geometry(network, size, row):
    """``(lower, paired, receives_min)`` ``[N]`` bool for one layer ``row = (j, k, g)``."""
    j, k, g = row[0], row[1], row[2]
    i = jnp.arange(size, dtype=jnp.int32)
    if network == "odd_even":
        same = (i % 2) == (g % 2)
        lower = same & (i + 1 < size)
        paired = lower | (~same & (i >= 1))
        return lower, paired, lower
    lower = (i & j) == 0
    return lower, jnp.ones_like(lower), lower == ((i & k) == 0)


def _partner(v, lower, j, axis):
    """``v`` at each wire's partner (``i + j`` for lower wires, ``i - j`` else) along ``axis``."""
    size = v.shape[axis]
    vv = jnp.concatenate([v, v], axis=axis)
    up = lax.dynamic_slice_in_dim(vv, j, size, axis=axis)
    down = lax.dynamic_slice_in_dim(vv, size - j, size, axis=axis)
    if axis != v.ndim - 1:
        lower = lower[..., None]
    return jnp.where(jnp.broadcast_to(lower, v.shape), up, down)


def _prepare(x, mask, temperature, descending, network):
    """Compacts, rescales and pads a batch of rows onto the network's wires.

    Returns ``(w, valid, m, inv_t, scale, src, size)``: wire values ``[..., N]`` (ascending
    problem), validity flags, ``[..., 1]`` valid counts, ``[..., 1]`` ``1/τ`` in rescaled units,
    the power-of-two scale, the ``[..., n]`` source position of each of the first n wires
    (``None`` without a mask) and N.
    """
    n = x.shape[-1]
    size = network_size(n, network)
    # `rescale` divides by a power of two; with temperature 1 it returns 1/scale exactly.
    xs, inv_scale = _perm.rescale(x, mask, jnp.ones((), x.dtype), narrow=True)
    # Floor τ/scale at tiny/eps (1e-31 in float32): 1/τ times a cotangent cannot overflow in a
    # backward pass, and only lists whose τ is below 1e-31 max|x| are sharpened less.
    info = jnp.finfo(x.dtype)
    inv_t = 1.0 / jnp.maximum(temperature * inv_scale, info.tiny / info.eps)
    s = -xs if descending else xs
    iota = jnp.arange(n, dtype=jnp.int32)
    if mask is None:
        src = None
        m = jnp.full((*x.shape[:-1], 1), n, jnp.int32)
    else:
        m = jnp.sum(mask, axis=-1, keepdims=True, dtype=jnp.int32)
        before = jnp.cumsum(mask, axis=-1, dtype=jnp.int32) - 1
        iota = jnp.broadcast_to(iota, x.shape)
        dest = jnp.where(mask, before, m + (iota - before - 1))  # stable partition, O(n)
        src = _axis.unsort(dest, iota)
        s = jnp.take_along_axis(s, src, axis=-1)
    pad = [(0, 0)] * (x.ndim - 1) + [(0, size - n)]
    w = jnp.pad(s, pad)
    valid = jnp.broadcast_to(jnp.arange(size, dtype=jnp.int32), w.shape) < m
    return w, valid, m, inv_t, 1.0 / inv_scale, src, size


def _layer(w, valid, m, inv_t, row, network, kind):
    """One layer: ``(alpha, lower, new wires, new validity flags)``, all ``[..., N]``."""
    size = w.shape[-1]
    lower, paired, recv_min = (jnp.broadcast_to(g, w.shape) for g in _geometry(network, size, row))
    j = row[0]
    pw = _partner(w, lower, j, w.ndim - 1)
    pv = _partner(valid, lower, j, w.ndim - 1)
    active = paired & (row[2] < m)  # [..., N]
    soft = active & valid & pv
    swap = active & (valid != pv) & (valid != recv_min)  # the valid entry must take the min
    sign = jnp.where(recv_min, 1.0, -1.0).astype(w.dtype)  # z = (b - a)/τ on both wires
    hard = jnp.where(swap, 0.0, 1.0).astype(w.dtype)
    z, _ = _steepness(w, pw, sign, inv_t, soft)
    alpha = jnp.where(soft, sigmoid(z, kind), hard)
    w_new = _mix(kind, w, pw, sign, inv_t, soft, hard)
    return alpha, lower, w_new, jnp.where(swap, pv, valid)


def _sort_wires(x, mask, temperature, descending, network, kind):
    """Runs the relaxed network on the values; returns wires, per-layer α and the frame."""
    w, valid, m, inv_t, scale, src, size = _prepare(x, mask, temperature, descending, network)
    table = jnp.asarray(layer_table(x.shape[-1], network))

    def step(carry, row):
        w, valid = carry
        alpha, _, w, valid = _layer(w, valid, m, inv_t, row, network, kind)
        return (w, valid), alpha

    # The backward pass keeps only each layer's wires and recomputes the rest: saving every
    # layer's intermediates made XLA:CPU's backward about 10x slower for ranks at n = 10⁴ and
    # 1.3x slower for the sort at n = 10⁵.
    (w, _), alphas = lax.scan(jax.checkpoint(step), (w, valid), table)
    return w, alphas, table, scale, src, size


def network_sort(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    descending: bool,
    network: str = "bitonic",
    sigmoid: str = "logistic",
) -> jax.Array:
    r"""Soft sort $\hat P x$ by a relaxed sorting network (Petersen et al. 2021, 2022).

    The values flow through the network's layers; each comparator of $(a, b)$ outputs
    $\alpha a + (1 - \alpha) b$ and $(1 - \alpha) a + \alpha b$ with
    $\alpha = f((b - a)/\tau)$ (module docstring for $f$). Every output is a convex combination
    of the inputs (so it lies in $[\min x, \max x]$) and the outputs sum to $\sum x$ ($\hat P$
    is doubly stochastic). With a monotone sigmoid (``cauchy``, ``reciprocal``, ``optimal``)
    every output is non-decreasing in every input. As $\tau \to 0$ the output tends to
    ``jnp.sort(x)``; at a tie $\alpha = 1/2$ and the pair is averaged.

    Cost: $O(nL)$ time and memory (autodiff keeps each layer's wires): $L = n$ layers for
    ``odd_even``, $L = \lceil\log_2 n\rceil(\lceil\log_2 n\rceil + 1)/2$ for ``bitonic``.

    Args:
      x: ``[..., n]`` values (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau = 1/\beta > 0$ (may be traced).
      descending: If True, sort from largest to smallest.
      network: ``"bitonic"`` or ``"odd_even"``.
      sigmoid: ``"logistic"``, ``"cauchy"``, ``"reciprocal"`` or ``"optimal"``.

    Returns:
      ``[..., n]`` soft-sorted values with the valid ones in the first $m$ slots.

    References:
      Petersen, Borgelt, Kuehne & Deussen, "Differentiable Sorting Networks for Scalable Sorting
      and Ranking Supervision", ICML 2021; "Monotonic Differentiable Sorting Networks",
      ICLR 2022.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax import soft_sort
      >>> x = jnp.array([0.3, -1.2, 2.5, 0.4])
      >>> np.asarray(soft_sort(x, method="network", temperature=0.1)).round(3)
      array([-1.2  ,  0.327,  0.373,  2.5  ], dtype=float32)
      >>> np.asarray(soft_sort(x, method="network", temperature=0.1, sigmoid="cauchy")).round(3)
      array([-1.105,  0.265,  0.435,  2.405], dtype=float32)
    """
    w, _, _, scale, _, _ = _sort_wires(x, mask, temperature, descending, network, sigmoid)
    out = w[..., : x.shape[-1]] * scale
    return -out if descending else out


def network_rank(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    descending: bool,
    network: str = "bitonic",
    sigmoid: str = "logistic",
) -> jax.Array:
    r"""Soft ranks $\hat P^\top \rho$ of a relaxed sorting network, without forming $\hat P$.

    $\operatorname{rank}_j = \sum_r r\,\hat P_{rj}$, the expected slot of entry $j$. Since every
    layer matrix $M_\ell$ is symmetric, $\hat P^\top \rho = M_1 \cdots M_L \rho$: the forward
    pass keeps each layer's $\alpha$, and a second scan runs the layers backwards over
    $\rho = (1, \dots, n)$. The ranks lie in $[1, m]$ and sum to $m(m + 1)/2$ ($\hat P$ is
    doubly stochastic); they tend to the exact ranks of distinct values as $\tau \to 0$. Two
    tied values get their average rank in that limit with ``logistic``, three or more need
    not, and a huge $\tau$ need not give every entry $(m + 1)/2$ (module docstring, "Limit
    behaviour").

    Cost: two passes of the network, $O(nL)$ time and memory ($L$ as in `network_sort`).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, rank 1 is the largest score.
      network: ``"bitonic"`` or ``"odd_even"``.
      sigmoid: ``"logistic"``, ``"cauchy"``, ``"reciprocal"`` or ``"optimal"``.

    Returns:
      ``[..., n]`` soft ranks (padded positions meaningless; the wrapper zeros them).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax import soft_rank
      >>> x = jnp.array([0.3, -1.2, 2.5, 0.4])
      >>> np.asarray(soft_rank(x, method="network", temperature=0.1)).round(3)
      array([2.269, 1.   , 4.   , 2.731], dtype=float32)
    """
    n = x.shape[-1]
    w, alphas, table, _, src, size = _sort_wires(x, mask, temperature, descending, network, sigmoid)
    rho = vary_like(jnp.broadcast_to(jnp.arange(1, size + 1, dtype=x.dtype), w.shape), w)

    def back(u, inputs):
        alpha, row = inputs
        lower = jnp.broadcast_to(_geometry(network, size, row)[0], u.shape)
        return alpha * u + (1.0 - alpha) * _partner(u, lower, row[0], u.ndim - 1), None

    u, _ = lax.scan(back, rho, (alphas, table), reverse=True)
    u = u[..., :n]
    return u if src is None else _axis.unsort(src, u)


def _checkpoint_block(n_layers: int) -> int:
    """Layers per rematerialized block: about √L (memory O(n² √L) instead of O(n² L))."""
    return max(1, math.isqrt(max(n_layers, 1)))


def network_permutation(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    descending: bool,
    network: str = "bitonic",
    sigmoid: str = "logistic",
) -> jax.Array:
    r"""Relaxed permutation $\hat P = M_L \cdots M_1$ of a sorting network, ``[..., n, n]``.

    Row $r$ weights the input entries in sorted slot $r$. $\hat P$ is doubly stochastic (each
    layer is a product of disjoint 2×2 mixes $\begin{pmatrix}\alpha & 1-\alpha\\ 1-\alpha &
    \alpha\end{pmatrix}$) and tends to the hard sorting permutation as $\tau \to 0$ for distinct
    values. The matrix is propagated through the layers (each layer mixes pairs of rows), never
    built as one dense matrix per layer multiplied together.

    Cost: $O(n^2 L)$ time, $O(n^2 \sqrt{L})$ memory for the backward pass (the layers are
    recomputed in blocks of about $\sqrt L$); $L$ as in `network_sort`.

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, row 1 selects the largest score.
      network: ``"bitonic"`` or ``"odd_even"``.
      sigmoid: ``"logistic"``, ``"cauchy"``, ``"reciprocal"`` or ``"optimal"``.

    Returns:
      ``[..., n, n]`` doubly stochastic matrix (rows past $m$ and padded columns are
      meaningless; the wrapper zeros them).

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import soft_permutation
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> soft_permutation(x, method="network", temperature=0.01).round(2)
      Array([[0., 1., 0.],
             [1., 0., 0.],
             [0., 0., 1.]], dtype=float32)
    """
    n = x.shape[-1]
    w, valid, m, inv_t, _, src, size = _prepare(x, mask, temperature, descending, network)
    rows = jnp.arange(size, dtype=jnp.int32)
    cols = jnp.arange(n, dtype=jnp.int32)
    if src is None:
        eye = (rows[:, None] == cols[None, :]).astype(x.dtype)
        p = jnp.broadcast_to(eye, (*x.shape[:-1], size, n))
    else:
        src_pad = jnp.pad(src, [(0, 0)] * (x.ndim - 1) + [(0, size - n)], constant_values=-1)
        cols = jnp.broadcast_to(cols, (*src_pad.shape[:-1], n))
        p = (src_pad[..., :, None] == cols[..., None, :]).astype(x.dtype)
    table = layer_table(n, network)
    block = _checkpoint_block(len(table))
    n_blocks = -(-len(table) // block)
    # No-op layers (gate never < m) fill the last block.
    filler = np.asarray([[1, 2, np.iinfo(np.int32).max]], np.int32)
    table = np.concatenate([table, np.repeat(filler, n_blocks * block - len(table), 0)])
    table = jnp.asarray(table.reshape(n_blocks, block, 3))

    def step(carry, row):
        w, valid, p = carry
        alpha, lower, w, valid = _layer(w, valid, m, inv_t, row, network, sigmoid)
        pp = _partner(p, lower, row[0], p.ndim - 2)
        a = alpha[..., :, None]
        return (w, valid, a * p + (1.0 - a) * pp), None

    @jax.checkpoint
    def run_block(carry, rows_):
        return lax.scan(step, carry, rows_)[0], None

    (_, _, p), _ = lax.scan(run_block, (w, valid, p), table)
    return p[..., :n, :]
