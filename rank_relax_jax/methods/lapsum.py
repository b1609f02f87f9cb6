r"""LapSum: soft ranks, top-k masks, sorts and permutations from sums of Laplace CDFs.

Ł. Struski, M. B. Bednarczyk, I. T. Podolak and J. Tabor, "LapSum – One Method to Differentiate
Them All: Ranking, Sorting and Top-k Selection", ICML 2025 (arXiv:2503.06242).

With $\mathrm{Lap}_\tau$ the CDF of the Laplace distribution of scale $\tau$,

$$
\mathrm{Lap}_\tau(d) = \begin{cases} \tfrac12 e^{d/\tau} & d \le 0 \\
1 - \tfrac12 e^{-d/\tau} & d > 0, \end{cases}
\qquad
G(t) = \sum_{j\ \mathrm{valid}} \mathrm{Lap}_\tau(t - x_j),
$$

$G$ ("LapSum") increases from 0 to $m$ (the number of valid entries) and tends to the
counting function $\#\{j : x_j < t\}$ as $\tau \to 0$. Every operation here is $G$ or its
inverse:

* soft rank $r_i = \tfrac12 + G(x_i)$ (the $j = i$ term is $\mathrm{Lap}(0) = \tfrac12$, so
  this is $1 + \sum_{j \ne i}$);
* soft top-k mask $m_i = \mathrm{Lap}_\tau(x_i - s)$ with $G(s) = m - k$, i.e.
  $\sum_i m_i = k$;
* soft sort: slot $r$ holds $G^{-1}(r - \tfrac12)$;
* soft permutation: $\hat P_{rj} = \mathrm{Lap}_\tau(b_r - x_j) - \mathrm{Lap}_\tau(b_{r-1} - x_j)$
  with $G(b_r) = r$, $b_0 = -\infty$, $b_m = +\infty$: differences of nested top-k masks, so
  every row and every column sums to 1 (doubly stochastic).

**Exact O(n log n) evaluation.** After one sort ($y_1 \le \dots \le y_m$) every sum of
$e^{-|y_i - y_j|/\tau}$ over $j \le i$ or $j \ge i$ obeys a first-order linear recurrence
whose coefficient is $a_i = e^{-(y_i - y_{i-1})/\tau} \in [0, 1]$:
$L_i = a_i L_{i-1} + 1$. The recurrences run as ``lax.associative_scan`` (O(n) work,
O(log n) depth). Each quantity is a sum of positive terms taken relative to the current
element, and only differences of neighbouring sorted values are ever divided by $\tau$, so
there is no overflow and no cancellation at any spread of values or temperature (a gap of
$10^{36}\tau$ just gives $a_i = 0$). So that the gaps themselves cannot overflow (values of
opposite sign near the dtype's max), each list and its $\tau$ are first multiplied by one
power of two near $1/\max|x|$ (exact; the sort is scaled back), and $\tau$ is then floored at
``tiny / eps`` ($10^{-31}$ in float32), so every gap over $\tau$ is finite.
Between two sorted values $G$ is $i - \tfrac12 A u + \tfrac12 B g / u$ in
$u = e^{-(t - y_i)/\tau}$, a quadratic in $u$ after multiplying by $u$, so $G^{-1}$ is closed
form once the segment is found (a binary search over $G(y_i)$); the root is taken in the form
that has no cancellation, in log space.

**Derivatives.** The rank Jacobian is symmetric, $J_{ii} = \sum_{j \ne i} p_{ij}$ and
$J_{ij} = -p_{ij}$ with $p$ the Laplace density, so $J\dot x$ is again two prefix sums.
The inverse is differentiated implicitly: $\partial G^{-1}(w)/\partial y_j$ is the Laplace
density of $t - y_j$ normalized over $j$, a sum with the same prefix structure. Both are
``jax.custom_jvp`` rules (O(n log n), O(n) memory, written in differentiable JAX, so
reverse mode and higher derivatives work); the derivative in ``temperature`` is exact too.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from rank_relax_jax import _axis, _sort
from rank_relax_jax.methods import permutation as _perm


def laplace_cdf(z: jax.Array) -> jax.Array:
    """Standard Laplace CDF, written so that neither branch overflows (double-``where`` safe)."""
    e = 0.5 * jnp.exp(-jnp.abs(z))
    return jnp.where(z < 0, e, 1.0 - e)


# ----------------------------------------------------------------------------------------------
# Prefix sums as linear recurrences h_i = a_i h_{i-1} + b_i over the last axis.


def _combine(left, right):
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def _recur(a: jax.Array, b: jax.Array, reverse: bool = False) -> jax.Array:
    """``h_i = a_i h_{i∓1} + b_i`` (``reverse``: from the right); ``a`` broadcasts over ``b``."""
    a = jnp.broadcast_to(a, b.shape)
    return lax.associative_scan(_combine, (a, b), reverse=reverse, axis=b.ndim - 1)[1]


def _shift_left(v: jax.Array, fill: float = 0.0) -> jax.Array:
    """``out_i = v_{i+1}``, ``fill`` at the end."""
    return jnp.concatenate([v[..., 1:], jnp.full((*v.shape[:-1], 1), fill, v.dtype)], axis=-1)


def _shift_right(v: jax.Array, fill: float = 0.0) -> jax.Array:
    """``out_i = v_{i-1}``, ``fill`` at the start."""
    return jnp.concatenate([jnp.full((*v.shape[:-1], 1), fill, v.dtype), v[..., :-1]], axis=-1)


def _iota(shape, start=0, dtype=jnp.int32):
    """``start, start + 1, ...`` along the last axis, broadcast to ``shape``."""
    return jnp.broadcast_to(jnp.arange(start, start + shape[-1], dtype=dtype), shape)


def _links(y: jax.Array, valid: jax.Array, tau: jax.Array):
    """Scaled gaps ``d_i = (y_i - y_{i-1})/τ`` and link coefficients ``a_i = exp(-d_i)``.

    The first entry and every padded entry get ``d = inf``, ``a = 0``: the recurrences never
    cross into or out of padding (which `_sort.argsort` puts last).
    """
    gap = (y - _shift_right(y)) / tau
    first = _iota(y.shape) == 0
    d = jnp.where(first | ~valid, jnp.inf, gap)
    a = jnp.exp(-d)
    return d, a


def _counts(a: jax.Array, valid: jax.Array):
    """``Lc_i = Σ_{j≤i} e^{-(y_i-y_j)/τ}`` and ``Uc_i = Σ_{j≥i} e^{-(y_j-y_i)/τ}`` (valid j)."""
    one = valid.astype(a.dtype)
    lc = _recur(a, one)
    uc = _recur(_shift_left(a), one, reverse=True)
    return lc, uc


def _moments(d, a, lc, uc):
    """``Ld_i = Σ_{j≤i} e^{-δ}δ``, ``Ud_i = Σ_{j≥i} e^{-δ}δ`` with ``δ = |y_i - y_j|/τ``.

    ``Ld_i = a_i (Ld_{i-1} + d_i Lc_{i-1})``; ``a_i d_i = d e^{-d} ≤ 1/e``, and 0 across cut links.
    """
    ad = jnp.where(a > 0, a * jnp.where(a > 0, d, 0.0), 0.0)
    ld = _recur(a, ad * _shift_right(lc))
    ud = _recur(_shift_left(a), _shift_left(ad * uc), reverse=True)
    return ld, ud


def _weighted(a: jax.Array, v: jax.Array):
    """``Σ_{j≤i} e^{-(y_i-y_j)/τ} v_j`` and ``Σ_{j≥i} e^{-(y_j-y_i)/τ} v_j``."""
    return _recur(a, v), _recur(_shift_left(a), v, reverse=True)


# ----------------------------------------------------------------------------------------------
# Soft ranks of a sorted row.


@jax.custom_jvp
def _sorted_ranks(y: jax.Array, valid: jax.Array, tau: jax.Array) -> jax.Array:
    """``r_i = ½ + Σ_j Lap_τ(y_i - y_j) = i + ½ (Uc_i - Lc_i)`` for ascending ``y`` (1-based i)."""
    _, a = _links(y, valid, tau)
    lc, uc = _counts(a, valid)
    pos = _iota(y.shape, 1, y.dtype)
    return pos + 0.5 * (uc - lc)


@_sorted_ranks.defjvp
def _sorted_ranks_jvp(primals, tangents):
    y, valid, tau = primals
    dy, _, dtau = tangents
    d, a = _links(y, valid, tau)
    lc, uc = _counts(a, valid)
    pos = _iota(y.shape, 1, y.dtype)
    out = pos + 0.5 * (uc - lc)
    dy = jnp.where(valid, dy, 0.0)
    lv, uv = _weighted(a, dy)
    ld, ud = _moments(d, a, lc, uc)
    # J = symmetric Laplace-density Laplacian; the τ-derivative is Σ_j p(z_ij)(-z_ij/τ).
    dout = (dy * (lc + uc) - lv - uv - dtau * (ld - ud)) / (2.0 * tau)
    return out, dout


# ----------------------------------------------------------------------------------------------
# The inverse of G on a sorted row.


def _count_le(levels: jax.Array, w: jax.Array) -> jax.Array:
    """For each target ``w[..., q]``, the number of ``levels[..., :]`` (ascending) ``<= w``."""
    if w.shape[-1] == 1:
        return jnp.sum(levels <= w, axis=-1, keepdims=True, dtype=jnp.int32)
    batch = levels.shape[:-1]
    rows = math.prod(batch)
    lv = levels.reshape(rows, levels.shape[-1])
    wv = w.reshape(rows, w.shape[-1])
    idx = jax.vmap(lambda g, v: jnp.searchsorted(g, v, side="right", method="scan"))(lv, wv)
    return idx.astype(jnp.int32).reshape(*batch, w.shape[-1])


def _take(v: jax.Array, idx: jax.Array) -> jax.Array:
    return jnp.take_along_axis(v, jnp.clip(idx, 0, v.shape[-1] - 1), axis=-1)


def _solve(y, valid, tau, w):
    """Forward solve of ``G(t) = w``; returns the pieces the JVP reuses."""
    d, a = _links(y, valid, tau)
    lc, uc = _counts(a, valid)
    m = jnp.sum(valid, axis=-1, keepdims=True, dtype=jnp.int32)
    pos = _iota(y.shape, 1, y.dtype)
    levels = jnp.where(valid, pos - 0.5 + 0.5 * (uc - lc), jnp.inf)  # G(y_i), ascending
    idx = _count_le(levels, w)  # segment: y_idx <= t < y_{idx+1} (1-based; 0 and m are ends)
    has_lo = idx >= 1
    has_hi = idx < m
    big_a = jnp.where(has_lo, _take(lc, idx - 1), 0.0)
    big_b = jnp.where(has_hi, _take(uc, idx), 0.0)
    y_lo = _take(y, idx - 1)
    y_hi = _take(y, idx)
    inner = has_lo & has_hi
    delta = jnp.where(inner, _take(d, idx), jnp.inf)  # (y_hi - y_lo)/τ
    c = idx.astype(y.dtype) - w
    root = jnp.sqrt(c * c + big_a * big_b * jnp.exp(-delta))
    log_a = jnp.log(jnp.where(big_a > 0, big_a, 1.0))
    log_b = jnp.log(jnp.where(big_b > 0, big_b, 1.0))
    # G = idx - ½A u + ½B g/u with u = e^{-θ}, g = e^{-δ}: A u² - 2c u - B g = 0. Each branch
    # takes the root in the form that adds positive numbers only.
    theta_pos = log_a - jnp.log(jnp.where(c > 0, c + root, 1.0))  # (t - y_lo)/τ for c > 0
    phi_neg = log_b - jnp.log(jnp.where(c < 0, root - c, 1.0))  # (y_hi - t)/τ for c < 0
    theta_mid = 0.5 * (jnp.where(inner, delta, 0.0) + log_a - log_b)  # c == 0
    t_pos = y_lo + tau * theta_pos
    t_neg = y_hi - tau * phi_neg
    t_mid = 0.5 * y_lo + 0.5 * y_hi + 0.5 * tau * (log_a - log_b)
    t = jnp.where(c > 0, t_pos, jnp.where(c < 0, t_neg, t_mid))
    # t = ref + τ·off, with ref a data point next to t: (x - t)/τ = (x - ref)/τ - off exactly.
    ref = jnp.where(c < 0, y_hi, y_lo)
    off = jnp.where(c > 0, theta_pos, jnp.where(c < 0, -phi_neg, theta_mid))
    theta = jnp.where(c < 0, delta - phi_neg, off)  # (t - y_lo)/τ
    phi = jnp.where(c < 0, phi_neg, delta - off)  # (y_hi - t)/τ
    parts = dict(d=d, a=a, lc=lc, uc=uc, idx=idx, has_lo=has_lo, has_hi=has_hi,
                 big_a=big_a, big_b=big_b, theta=theta, phi=phi)  # fmt: skip
    return (t, ref, off), parts


@jax.custom_jvp
def _inverse(y, valid, tau, w):
    """``t`` with ``G(t) = w`` for each target ``w[..., q]`` (``0 < w < m``), ascending ``y``.

    Also returns ``ref`` and ``off`` with ``t = ref + τ·off``, for evaluating
    ``(x - t)/τ`` without cancellation (use them under ``stop_gradient`` only).
    """
    return _solve(y, valid, tau, w)[0]


@_inverse.defjvp
def _inverse_jvp(primals, tangents):
    y, valid, tau, w = primals
    dy, _, dtau, _ = tangents
    (t, ref, off), p = _solve(y, valid, tau, w)
    idx, has_lo, has_hi = p["idx"], p["has_lo"], p["has_hi"]
    theta = jnp.where(has_lo, p["theta"], 0.0)
    phi = jnp.where(has_hi, p["phi"], 0.0)
    # Weights of the two sides relative to the nearer one, so nothing underflows to 0/0.
    near = jnp.where(has_lo & has_hi, jnp.minimum(theta, phi), jnp.where(has_lo, theta, phi))
    alpha = jnp.where(has_lo, jnp.exp(near - theta), 0.0)
    beta = jnp.where(has_hi, jnp.exp(near - phi), 0.0)
    big_a, big_b = p["big_a"], p["big_b"]
    norm = alpha * big_a + beta * big_b
    dy = jnp.where(valid, dy, 0.0)
    lv, uv = _weighted(p["a"], dy)
    ld, ud = _moments(p["d"], p["a"], p["lc"], p["uc"])
    ld_lo = jnp.where(has_lo, _take(ld, idx - 1), 0.0)
    ud_hi = jnp.where(has_hi, _take(ud, idx), 0.0)
    lv_lo = jnp.where(has_lo, _take(lv, idx - 1), 0.0)
    uv_hi = jnp.where(has_hi, _take(uv, idx), 0.0)
    # Implicit function theorem on G(t) = w: dt = Σ_j p_j dy_j / Σ p_j + dτ Σ_j p_j z_j / Σ p_j,
    # p_j the Laplace density at z_j = (t - y_j)/τ.
    dt_y = (alpha * lv_lo + beta * uv_hi) / norm
    zeta = (alpha * (theta * big_a + ld_lo) - beta * (phi * big_b + ud_hi)) / norm
    dt = dt_y + dtau * zeta
    return (t, ref, off), (dt, jnp.zeros_like(ref), jnp.zeros_like(off))


# ----------------------------------------------------------------------------------------------
# Kernels.


def _rescale(x, mask, temperature):
    """``x`` and ``τ`` times one power of two ``1/scale`` near ``1/max |x|``, and ``1/scale``.

    Every output depends on ``x`` and ``τ`` only through ``x/τ`` (the sort is scaled back), so
    this changes no value, but a gap between values of opposite sign near the dtype's max no
    longer overflows (``3e38 - (-3e38)`` is ``inf`` in float32, and ``inf - inf`` made the
    permutation and top-k mask NaN). The scale is `permutation.rescale`'s (``2**(e - 1) <= max|x|
    < 2**e``, clipped so that it and its reciprocal are normal numbers), so ``|x/scale| <= 8``;
    flooring ``τ/scale`` at ``tiny/eps`` (1e-31 in float32, as `network` does) then keeps every
    ``gap/τ`` finite: only lists whose ``τ`` is below ``1e-31 max|x|`` are sharpened less.
    ``1/scale`` is a ``stop_gradient`` constant.
    """
    info = jnp.finfo(x.dtype)
    _, inv_scale = _perm._scales(x, mask)
    tau = jnp.maximum(temperature * inv_scale, info.tiny / info.eps)
    return x * inv_scale, tau, inv_scale


def _sorted_frame(x, mask):
    perm = _sort.argsort(x, mask)
    y = jnp.take_along_axis(x, perm, axis=-1)
    if mask is None:
        valid = jnp.ones(x.shape, bool)
    else:
        valid = jnp.take_along_axis(mask, perm, axis=-1)
    return perm, y, valid


def _safe_valid(valid):
    """A fully masked row acts as the one-element list [0], so every formula stays finite."""
    empty = ~jnp.any(valid, axis=-1, keepdims=True)
    return valid | (empty & (_iota(valid.shape) == 0))


def _z(x, t, ref, off, tau):
    """``(x - t)/τ``: value from the cancellation-free form, derivatives from the plain one."""
    plain = (x - t) / tau
    stable = lax.stop_gradient((x - ref) / tau - off)
    return stable + (plain - lax.stop_gradient(plain))


@functools.partial(jax.jit, static_argnames=("descending",))
def lapsum_rank(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""LapSum soft rank $r_i = \tfrac12 + \sum_{j} \mathrm{Lap}_\tau(a(x_i - x_j))$.

    $a = +1$ ascending, $-1$ descending; sums run over valid $j$. Equivalently
    $1 + \sum_{j \ne i}$, since $\mathrm{Lap}_\tau(0) = \tfrac12$: ties get the average rank
    exactly and the ranks of $m$ valid entries sum to $m(m+1)/2$
    ($\mathrm{Lap}(d) + \mathrm{Lap}(-d) = 1$). The error against the exact rank is at most
    $\tfrac12 \sum_{j \ne i} e^{-|x_i - x_j|/\tau}$, so the ranks are exact to rounding once
    $\tau$ is below about $1/40$ of the smallest gap (float32); as $\tau \to \infty$ every
    rank tends to $(m+1)/2$. The gradient is never exactly zero for finite gaps/τ.

    Cost: one sort plus O(n) work in prefix recurrences (O(n log n) time, O(n) memory), the
    same for the JVP/VJP (``custom_jvp``); no $n \times n$ array.

    Args:
      x: ``[..., n]`` scores (padding already 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar Laplace scale $\tau > 0$ (may be traced).
      descending: If True, rank 1 is the largest score.

    Returns:
      ``[..., n]`` soft ranks (padded positions meaningless; the wrapper zeros them).

    References:
      Struski, Bednarczyk, Podolak & Tabor, "LapSum – One Method to Differentiate Them All:
      Ranking, Sorting and Top-k Selection", ICML 2025.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax import soft_rank
      >>> x = jnp.array([0.3, -1.2, 2.5, 0.9])
      >>> np.asarray(soft_rank(x, method="lapsum", temperature=0.5), float).round(3).tolist()
      [2.132, 1.033, 3.973, 2.862]
    """
    if x.shape[-1] == 0:
        return x
    x, temperature, _ = _rescale(x, mask, temperature)
    xs = -x if descending else x
    perm, y, valid = _sorted_frame(xs, mask)
    r = _sorted_ranks(y, valid, temperature)
    return _axis.unsort(perm, r)


@functools.partial(jax.jit, static_argnames=("k",))
def lapsum_topk_mask(
    x: jax.Array, mask: jax.Array | None, k: int, temperature: jax.Array
) -> jax.Array:
    r"""LapSum soft top-k mask $m_i = \mathrm{Lap}_\tau(x_i - s)$ with $\sum_i m_i = k$.

    The threshold $s$ solves $G(s) = m - k$ in closed form (LapSum's inverse), so the mask
    sums to ``k`` up to rounding, and $s$ is differentiated implicitly:
    $\partial s/\partial x_j = p_j / \sum_l p_l$ with $p_j$ the Laplace density at
    $x_j - s$. As $\tau \to 0$ the mask tends to the k-hot mask of distinct values (at
    $\tau$ well below the gap between the k-th and (k+1)-th largest); every entry keeps a
    nonzero gradient. A list with at most ``k`` valid entries selects all of them.

    Cost: one sort, O(n) recurrences, one O(n) pass (O(n log n) time, O(n) memory).

    Args:
      x: ``[..., n]`` scores (padding already 0).
      mask: ``[..., n]`` validity mask or ``None``.
      k: Static number of entries to select.
      temperature: Scalar $\tau > 0$ (may be traced).

    Returns:
      ``[..., n]`` mask in ``[0, 1]``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax import soft_topk_mask
      >>> m = soft_topk_mask(jnp.array([0.3, -1.2, 2.5, 0.9]), 2, method="lapsum",
      ...                    temperature=0.5)
      >>> np.asarray(m, float).round(3).tolist(), round(float(m.sum()), 5)
      ([0.273, 0.014, 0.989, 0.724], 2.0)
    """
    n = x.shape[-1]
    if k >= n:
        return jnp.ones_like(x)
    x, temperature, _ = _rescale(x, mask, temperature)
    _, y, valid = _sorted_frame(x, mask)
    valid = _safe_valid(valid)
    m = jnp.sum(valid, axis=-1, keepdims=True).astype(x.dtype)
    enough = m > k
    w = jnp.where(enough, m - k, 0.5 * m)
    t, ref, off = _inverse(y, valid, temperature, w)
    out = laplace_cdf(_z(x, t, ref, off, temperature))
    return jnp.where(enough, out, jnp.ones((), x.dtype))


@functools.partial(jax.jit, static_argnames=("descending",))
def lapsum_sort(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""LapSum soft sort: slot $r$ holds $G^{-1}(r - \tfrac12)$ (ascending; $-G^{-1}$ of $-x$).

    $G(t) = \sum_j \mathrm{Lap}_\tau(t - x_j)$ passes level $r - \tfrac12$ exactly at the
    $r$-th smallest value in the hard limit, so the output tends to ``sort(x)`` as
    $\tau \to 0$; it is strictly increasing for every $\tau$ (G is). The sorted values
    are differentiated implicitly: $\partial s_r/\partial x_j = p_{rj} / \sum_l p_{rl}$,
    $p_{rj}$ the Laplace density at $s_r - x_j$ (a row-stochastic Jacobian), applied in
    O(n log n) by prefix sums. Unlike projection sorts the values are not convex
    combinations of the inputs. As $\tau \to \infty$, $G(t) \to m\,F((t - \bar x)/\tau)$
    with $F$ the standard Laplace CDF and $\bar x$ the mean of the valid entries, so the slots
    do *not* all tend to the mean: $s_r - \tau F^{-1}\big((r - \tfrac12)/m\big) \to \bar x$
    (Laplace quantiles scaled by $\tau$, centred on the mean; about $2\tau/m$ apart near the
    middle slot, which is the mean for odd $m$).

    Cost: one sort, O(n) recurrences and a binary search per slot: O(n log n) time, O(n)
    memory, same for the derivatives.

    Args:
      x: ``[..., n]`` values (padding already 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, sort from largest to smallest.

    Returns:
      ``[..., n]`` soft-sorted values, the ``m`` valid ones first.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import soft_sort
      >>> x = jnp.array([0.3, -1.2, 2.5, 0.9])
      >>> soft_sort(x, method="lapsum", temperature=0.1).round(3).tolist()
      [-1.2, 0.3, 0.9, 2.5]
    """
    if x.shape[-1] == 0:
        return x
    sign = -1.0 if descending else 1.0
    x, temperature, inv_scale = _rescale(x, mask, temperature)
    _, y, valid = _sorted_frame(sign * x, mask)
    valid = _safe_valid(valid)
    m = jnp.sum(valid, axis=-1, keepdims=True)
    slots = _iota(x.shape, 1)
    # Slots past m repeat the last level (finite, and the wrapper zeros them).
    w = (jnp.minimum(slots, m) - 0.5).astype(x.dtype)
    t, _, _ = _inverse(y, valid, temperature, w)
    return sign * t / inv_scale  # exact: a power of two


@functools.partial(jax.jit, static_argnames=("descending",))
def lapsum_permutation(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""Doubly stochastic LapSum permutation $\hat P_{rj} = C_{rj} - C_{r-1,j}$.

    $C_{rj} = \mathrm{Lap}_\tau(b_r - a x_j)$ is the mass of entry $j$ among the $r$
    smallest (of $a x$, $a = \pm1$), where $G(b_r) = r$ ($C_{0j} = 0$, $C_{mj} = 1$): the
    complement of the soft top-$(m-r)$ mask. Row $r$ sums to $r - (r-1) = 1$ and column $j$
    to $C_{mj} - C_{0j} = 1$, all entries are positive (b increases with r), and as
    $\tau \to 0$ it tends to the sorting permutation of distinct values.

    Cost: O(n log n) for the thresholds and O(n²) to fill the matrix (the output itself);
    O(n²) memory.

    Args:
      x: ``[..., n]`` values (padding already 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, slot 1 holds the largest entry.

    Returns:
      ``[..., n, n]``: row $r$ weights the entries in sorted slot $r$.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import soft_permutation
      >>> p = soft_permutation(jnp.array([0.3, -1.2, 2.5]), method="lapsum", temperature=0.1)
      >>> p.round(2)
      Array([[0., 1., 0.],
             [1., 0., 0.],
             [0., 0., 1.]], dtype=float32)
    """
    n = x.shape[-1]
    if n == 0:
        return jnp.zeros((*x.shape, 0), x.dtype)
    x, temperature, _ = _rescale(x, mask, temperature)
    xs = -x if descending else x
    _, y, valid = _sorted_frame(xs, mask)
    valid = _safe_valid(valid)
    m = jnp.sum(valid, axis=-1, keepdims=True)
    levels = _iota((*x.shape[:-1], n - 1), 1)  # b_1 .. b_{n-1}
    inner = levels < m
    w = jnp.where(inner, levels, jnp.maximum(m, 2) - 1).astype(x.dtype)
    w = jnp.where(m >= 2, w, 0.5)
    t, ref, off = _inverse(y, valid, temperature, w)
    tau = temperature[..., None]  # [..., 1, 1]
    z = -_z(xs[..., None, :], t[..., :, None], ref[..., :, None], off[..., :, None], tau)
    cdf = jnp.where(inner[..., :, None], laplace_cdf(z), jnp.ones((), x.dtype))
    batch = x.shape[:-1]
    zeros = jnp.zeros((*batch, 1, n), x.dtype)
    ones = jnp.ones((*batch, 1, n), x.dtype)
    cdf = jnp.concatenate([zeros, cdf, ones], axis=-2)
    return cdf[..., 1:, :] - cdf[..., :-1, :]
