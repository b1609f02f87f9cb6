r"""Soft ranks, sorts, permutations and top-k masks by entropic optimal transport (Sinkhorn).

The relaxation of M. Cuturi, O. Teboul and J.-P. Vert, "Differentiable Ranking and Sorting using
Optimal Transport", NeurIPS 2019, and, for top-k, of Y. Xie, H. Dai, M. Chen, B. Dai, T. Zhao,
H. Zha, W. Wei and T. Pfister, "Differentiable Top-k with Optimal Transport", NeurIPS 2020.

Sorting a list is transporting its $m$ valid entries, each of mass $a_i = 1/m$, onto $m$
increasing targets $y_1 < \dots < y_m$ of mass $b_r = 1/m$ for the cost
$C_{ir} = (z_i - y_r)^2$: in one dimension the optimal plan for a convex cost is monotone, so it
is the sorting permutation (divided by $m$). Entropic regularization of strength
$\varepsilon$ = ``temperature`` makes the plan

$$
\hat P = \arg\min_{P \ge 0,\ P 1 = a,\ P^\top 1 = b} \langle P, C\rangle
    - \varepsilon H(P),
\qquad \hat P_{ir} = a_i b_r \exp\big((f_i + g_r - C_{ir})/\varepsilon\big),
$$

smooth in the inputs, and the outputs are read off it (paper, eqs. 4-5):

* ranks: $\operatorname{rank}_i = m \sum_r r\,\hat P_{ir}$ (the paper's
  $n\,a^{-1} \circ \hat P \bar b$ with $\bar b$ the cumulative target mass);
* sorted values: the barycentres $s_r = \sum_i \hat P_{ir} x_i / b_r$ of the *raw* inputs;
* soft permutation: $\Pi_{ri} = \hat P_{ir} / b_r$ (row $r$ = sorted slot $r$);
* top-k (Xie et al. 2020): two targets $y = (0, 1)$ of masses $((m - k)/m,\ k/m)$ and
  $\operatorname{mask}_i = m\,\hat P_{i,2}$.

**Inputs and targets.** As in the paper (and ``ott.tools.soft_sort``), the inputs are first
mapped to $z \in [0, 1]$ and the targets are the grid $y_r = (r - 1)/(m - 1)$ (reversed for
``descending=True``). ``squash="sigmoid"`` (default) is OTT's map
$z = \sigma((x - \bar x)/s_x)$ with the list's mean and standard deviation over valid entries;
``"minmax"`` is $(x - \min x)/(\max x - \min x)$; ``"none"`` uses $x$ as given (then
``temperature`` is in squared units of $x$, and $x$ should lie near $[0, 1]$). The two squashes
make the op invariant to shifting and positively scaling a list, so one ``temperature`` means
the same at every scale, and put every cost in $[0, 1]$, so $\varepsilon$ is measured against
a cost range of 1 and the grid spacing $1/(m - 1)$: with ``"sigmoid"`` it matches OTT's
``epsilon`` (OTT's default is ``1e-2``). A fixed grid (rather than, say, the sorted inputs) keeps
the targets independent of $x$, which is what makes $\hat P$ a smooth function of $x$.

**Iterations.** Log-domain Sinkhorn updates (the alternating exact minimizations of the dual)

$$
f_i \leftarrow -\varepsilon \log \sum_r b_r e^{(g_r - C_{ir})/\varepsilon}, \qquad
g_r \leftarrow -\varepsilon \log \sum_i a_i e^{(f_i - C_{ir})/\varepsilon},
$$

computed as log-sum-exps over the valid entries only (padding has zero mass and never enters a
sum), with the largest $g_r - C_{ir}$ taken out *before* dividing by $\varepsilon$, so the
potentials are as precise as the costs at any $\varepsilon$. Each iteration ends with a $g$
update, so the column (target) marginals hold to rounding: the soft permutation's rows sum
to 1, the sorted values are convex combinations of the inputs, the ranks sum to $m(m+1)/2$ and
the top-k mask sums to $k$.
The convergence error is the largest relative row-marginal error,
$\max_i |m \sum_r \hat P_{ir} - 1|$ (how far a column of the soft permutation is from summing
to 1), which the $f$ update gives for free ($m \sum_r \hat P_{ir} = e^{(f_i - f_i')/\varepsilon}$).
A list stops once its error is below ``threshold``; ``num_iterations`` caps the count. To
converge quickly at small $\varepsilon$ the iterations start at $\varepsilon_t =
\max(\varepsilon, c_{\max}\,0.9^t)$ ($\varepsilon$-scaling, $c_{\max}$ the list's largest cost,
1 with a squash; with ``squash="none"`` the list's largest cost, differentiated like the
rest), which reaches $\varepsilon = 10^{-3}$ after 66 iterations and cuts
the iteration count there 2-14× (n = 1,000 to 7); a list cannot stop before
$\varepsilon_t = \varepsilon$.

**Differentiation: unrolled, with early-stop masking and rematerialization.** The iterations
are a ``lax.scan`` of fixed length ``num_iterations``; a list that has converged is frozen
(``where``), and once every list of the batch has, a ``lax.cond`` skips the remaining
iterations' work. Reverse mode differentiates exactly the function that was computed, frozen
iterations being identities. We chose this over implicit differentiation through the fixed
point because (1) the gradient is the derivative of the forward values, so it matches finite
differences at any ``threshold`` (an implicit gradient is the derivative of the limit, off by
the truncation error); (2) it needs no linear solve: the implicit system is singular (the dual
is invariant to $f + c, g - c$) and must be regularized, and in float32 at n = 1,000 the
solve of ``ott-jax`` returns non-finite gradients, whereas each unrolled step is a pair of
softmax Jacobians, bounded and finite in float32; (3) with the scan body under
``jax.checkpoint`` only the potentials ($2n$ numbers per iteration) are stored and the
$n \times n$ kernel is recomputed, so memory is O(n² + iterations · n), not
O(iterations · n²). The price is a backward pass of a few forward passes (about 5× the
forward at n = 1,000 on CPU), over the iterations actually run.

**Reading off the plan.** With $g$ the last update, $\hat P_{ir} = b_r
\operatorname{softmax}_i\big(\log a_i + (f_i - C_{ir})/\varepsilon\big)$ (the same number as
$a_i b_r e^{(f_i + g_r - C_{ir})/\varepsilon}$), again shifted in cost units: it is bounded at
any $\varepsilon$, where the rounding of $f_i + g_r - C_{ir}$ divided by a tiny $\varepsilon$
would overflow (float32 ranks of ``[inf, inf, 0, 0, 0]`` at $\varepsilon = 10^{-30}$) or skew
the plan by ulp$/\varepsilon$, and entries tied after the squash share each of their columns
exactly evenly. $\varepsilon$ is floored at ``tiny / eps`` of the dtype ($10^{-31}$ in
float32), like the other kernels' temperatures, so $1/\varepsilon$ stays finite in the backward
pass. In float32 below $\varepsilon \approx 10^{-4}$ the stopping test itself (a difference of
potentials over $\varepsilon$) is limited by rounding, and the iterations may run to the cap.

Cost: O(n² · iterations) time for ranks, sorts and permutations (O(n · iterations) for top-k,
which has 2 targets), O(n²) memory for the plan plus O(iterations · n) for the backward pass.
As $\varepsilon \to 0$ (with the iterations converged), $\hat P \to$ the sorting permutation
/ $m$ for distinct values, and ties share their slots evenly (ranks of tied entries are their
average rank, in float32 as in float64).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from rank_relax_jax._sharding import vary_like

SQUASHES = ("sigmoid", "minmax", "none")
NUM_ITERATIONS = 1000
THRESHOLD = 1e-3
_DECAY = 0.9  # epsilon-scaling factor per iteration


def check_threshold(fn: str, name: str, value: Any) -> float:
    """Checks a static, finite, non-negative convergence tolerance."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{fn}: argument `{name}` must be a static non-negative float; got {value!r} of type "
            f"{type(value).__name__}."
        )
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{fn}: argument `{name}` must be finite and >= 0; got {value!r}.")
    return float(value)


def _big(dtype: Any) -> jax.Array:
    return jnp.asarray(jnp.finfo(dtype).max / 8, dtype)


def _lse(v: jax.Array, valid: jax.Array, axis: int) -> jax.Array:
    """Log-sum-exp over ``axis`` restricted to ``valid``; an empty set gives 0 (finite)."""
    big = _big(v.dtype)
    safe = jnp.where(valid, v, -big)
    shift = jax.lax.stop_gradient(jnp.max(safe, axis=axis, keepdims=True, initial=-big))
    shift = jnp.where(jnp.isfinite(shift) & (shift > -big), shift, 0.0)
    e = jnp.where(valid, jnp.exp(safe - shift), 0.0)
    total = jnp.sum(e, axis=axis, keepdims=True)
    ok = total > 0
    out = jnp.where(ok, jnp.log(jnp.where(ok, total, 1.0)) + shift, 0.0)
    return jnp.squeeze(out, axis=axis)


def _shift(v: jax.Array, valid: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """``v`` minus its largest valid entry along ``axis``, and that maximum.

    The maximum is a ``stop_gradient`` constant (0 for an empty or non-finite set).
    """
    big = _big(v.dtype)
    top = jax.lax.stop_gradient(
        jnp.max(jnp.where(valid, v, -big), axis=axis, keepdims=True, initial=-big)
    )
    top = jnp.where(jnp.isfinite(top) & (top > -big), top, 0.0)
    return v - top, jnp.squeeze(top, axis=axis)


def _smooth_max(
    v: jax.Array, log_w: jax.Array, valid: jax.Array, eps: jax.Array, axis: int
) -> jax.Array:
    r"""$\varepsilon \log \sum_{\text{valid}} e^{\log w + v / \varepsilon}$ along ``axis``.

    The largest ``v`` is taken out *before* dividing by $\varepsilon$ and added back exactly,
    so the result is as precise as ``v`` itself: dividing first would leave only
    $\varepsilon \cdot$ (the ulp of $v / \varepsilon$) of precision, a whole ulp of
    $v$ per division. ``eps`` broadcasts against the reduced shape.
    """
    d, top = _shift(v, valid, axis)
    e = jnp.expand_dims(eps, axis)
    return top + eps * _lse(log_w + d / e, valid, axis)


def _valid(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    return jnp.ones(x.shape, bool) if mask is None else mask


def _unit_scale(x: jax.Array, valid: jax.Array) -> jax.Array:
    """``x`` divided by a power of two near its largest magnitude (a ``stop_gradient`` constant).

    The squashes are scale invariant, so this changes nothing but keeps squares and sums of
    float32 inputs near 1e30 from overflowing.
    """
    mag = jnp.where(valid, jnp.abs(x), 0.0)
    top = jax.lax.stop_gradient(jnp.max(mag, axis=-1, keepdims=True, initial=0.0))
    info = jnp.finfo(x.dtype)
    top = jnp.where(jnp.isfinite(top) & (top > 0), top, 1.0)
    # Keep the scale and its reciprocal normal (XLA may divide by multiplying by 1 / scale).
    top = jnp.clip(top, 4 * info.tiny, 1 / (4 * info.tiny))
    mantissa, _ = jnp.frexp(top)
    return x / (top / (2 * mantissa))  # exact division by 2**(e - 1)


def squash_inputs(x: jax.Array, mask: jax.Array | None, squash: str) -> jax.Array:
    r"""Maps each list to $[0, 1]$ (``"sigmoid"``, ``"minmax"``) or leaves it (``"none"``).

    Statistics run over valid entries; padding comes out as an arbitrary finite value. The
    spread is floored at 64 ulps of the list's magnitude, so a list of ties (whose computed
    mean may differ from them by rounding) stays near $z = 1/2$ and its gradient stays finite.
    """
    if squash == "none":
        return x
    valid = _valid(x, mask)
    x = jnp.where(valid, _unit_scale(x, valid), 0.0)
    m = jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True).astype(x.dtype), 1.0)
    floor = 64 * jnp.finfo(x.dtype).eps
    if squash == "sigmoid":
        mean = jnp.sum(x, axis=-1, keepdims=True) / m
        dev = jnp.where(valid, x - mean, 0.0)
        var = jnp.sum(dev * dev, axis=-1, keepdims=True) / m
        return jax.nn.sigmoid(dev / jnp.sqrt(var + floor * floor))
    big = _big(x.dtype)
    lo = jnp.min(jnp.where(valid, x, big), axis=-1, keepdims=True, initial=big)
    hi = jnp.max(jnp.where(valid, x, -big), axis=-1, keepdims=True, initial=-big)
    lo = jnp.where(lo <= hi, lo, 0.0)  # fully masked list
    hi = jnp.where(lo <= hi, hi, 1.0)
    return jnp.where(valid, (x - lo) / jnp.maximum(hi - lo, floor), 0.0)


def solve(
    z: jax.Array,
    valid_z: jax.Array,
    log_a: jax.Array,
    y: jax.Array,
    valid_y: jax.Array,
    log_b: jax.Array,
    epsilon: jax.Array,
    *,
    num_iterations: int,
    threshold: float,
    cost_scale: float | None = 1.0,
) -> jax.Array:
    r"""Entropic OT plan $\hat P$ ``[..., n, T]`` between points ``z`` and targets ``y``.

    Args:
      z: ``[..., n]`` source points.
      valid_z: ``[..., n]`` which sources have mass.
      log_a: ``[..., n]`` log source masses (read on valid sources only).
      y: ``[..., T]`` target points.
      valid_y: ``[..., T]`` which targets have mass.
      log_b: ``[..., T]`` log target masses (read on valid targets only).
      epsilon: Scalar regularization $\varepsilon > 0$.
      num_iterations: Static cap on the iterations.
      threshold: A list stops once $\max_i |\sum_r \hat P_{ir} / a_i - 1|$ is below it.
      cost_scale: Start of the $\varepsilon$-scaling schedule (the largest cost: 1 for
        inputs and targets in $[0, 1]$); ``None`` takes each list's largest cost.

    Returns:
      ``[..., n, T]`` plan with zeros outside valid pairs; its column sums are $b$ up to
      rounding and its row sums $a$ up to ``threshold`` (when converged).
    """
    info = jnp.finfo(z.dtype)
    # Floor epsilon at tiny / eps (1e-31 in float32), as the other kernels floor their
    # temperature: (f - C) / epsilon and the 1 / epsilon of the backward pass stay finite.
    epsilon = jnp.maximum(epsilon, info.tiny / info.eps)
    pair = valid_z[..., :, None] & valid_y[..., None, :]
    cost = jnp.square(z[..., :, None] - y[..., None, :])
    if cost_scale is None:  # differentiated: the schedule is part of the computed function
        c_max = jnp.max(jnp.where(pair, cost, 0.0), axis=(-2, -1), initial=0.0)
        c_max = jnp.where(jnp.isfinite(c_max), c_max, 1.0)[..., None]  # [..., 1]
    else:
        c_max = jnp.full((*z.shape[:-1], 1), cost_scale, z.dtype)
    batch = z.shape[:-1]

    def cost_fn():  # recomputed where used, so XLA fuses it and the backward keeps no n×n
        return jnp.square(z[..., :, None] - y[..., None, :])

    def step(carry, t):
        def update(state):
            f, g, eps_last, done = state
            eps = jnp.maximum(epsilon, c_max * _DECAY**t)  # [..., 1]
            c = cost_fn()
            pair = valid_z[..., :, None] & valid_y[..., None, :]  # no n × n closure
            f_new = -_smooth_max(g[..., None, :] - c, log_b[..., None, :], pair, eps, -1)
            eps_col = jnp.broadcast_to(eps, g.shape)  # [..., T], one eps per list
            g_new = -_smooth_max(f_new[..., :, None] - c, log_a[..., :, None], pair, eps_col, -2)
            # Row sums of the plan before this update, relative to a: exp((f - f_new) / eps).
            gap = jax.lax.stop_gradient(jnp.expm1((f - f_new) / eps))
            err = jnp.max(
                jnp.where(valid_z, jnp.abs(gap), 0.0), axis=-1, keepdims=True, initial=0.0
            )
            stop = (err < threshold) & (eps <= epsilon)
            keep = done
            return (
                jnp.where(keep, f, f_new),
                jnp.where(keep, g, g_new),
                jnp.where(keep, eps_last, eps),
                done | stop,
            )

        # The update is rematerialized inside the cond too: otherwise, in the backward pass,
        # the skipping branch returns the update's n × n residuals as zeros at every one of the
        # num_iterations steps (3× slower at n = 1,000, and 10× for top-k).
        remat = jax.checkpoint(update, prevent_cse=False)
        return jax.lax.cond(jnp.all(carry[-1]), lambda s: s, remat, carry), None

    init = vary_like(
        (
            jnp.zeros(z.shape, z.dtype),
            jnp.zeros(y.shape, z.dtype),
            c_max,
            jnp.zeros((*batch, 1), bool),
        ),
        z,
        y,
        c_max,
    )
    steps = jnp.arange(num_iterations, dtype=z.dtype)
    (f, _, eps, _), _ = jax.lax.scan(jax.checkpoint(step, prevent_cse=False), init, steps)
    # The plan exp((f + g - C) / eps) a b with g the last update, g = g(f), is the column
    # softmax b_r softmax_i(log a_i + (f_i - C_ir) / eps): equal in exact arithmetic, but the
    # softmax is bounded whatever the rounding, whereas the rounding of f + g - C (an ulp of
    # the costs) divided by a tiny eps overflows exp ([inf, inf, 0, 0, 0] as float32 ranks at
    # eps = 1e-30) or skews the plan by ulp / eps. The shift is taken in cost units (see
    # _smooth_max), so exact ties split a column exactly evenly. Columns sum to b up to
    # rounding, as before. eps is that of the last update (epsilon once the schedule has
    # reached it).
    d, _ = _shift(f[..., :, None] - cost_fn(), pair, axis=-2)
    logits = log_a[..., :, None] + d / eps[..., None]
    big = _big(z.dtype)
    col = _lse(logits, pair, axis=-2)  # [..., T]
    log_plan = logits - col[..., None, :] + log_b[..., None, :]
    return jnp.where(pair, jnp.exp(jnp.where(pair, log_plan, -big)), 0.0)


_STATIC = ("descending", "squash", "num_iterations", "threshold")


@functools.partial(jax.jit, static_argnames=("op", *_STATIC))
def _sort_family(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    op: str,
    descending: bool,
    squash: str,
    num_iterations: int,
    threshold: float,
) -> jax.Array:
    """Rank, sort or permutation from one plan (jitted once per shape, also when eager)."""
    plan, _, m = _sort_plan(x, mask, temperature, descending, squash, num_iterations, threshold)
    if op == "permutation":
        return jnp.swapaxes(plan, -1, -2) * m[..., None]
    if op == "rank":
        slots = jnp.arange(1, x.shape[-1] + 1, dtype=x.dtype)
        return m * jnp.einsum("...ir,r->...i", plan, slots)
    return m * jnp.einsum("...ir,...i->...r", plan, x)


def _sort_plan(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    descending: bool,
    squash: str,
    num_iterations: int,
    threshold: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Plan ``[..., n, n]`` onto the m-point grid, the valid mask and m ``[..., 1]``."""
    valid = _valid(x, mask)
    n = x.shape[-1]
    m = jnp.sum(valid, axis=-1, keepdims=True).astype(x.dtype)
    slot = jnp.broadcast_to(jnp.arange(n, dtype=x.dtype), x.shape)
    y = slot / jnp.maximum(m - 1.0, 1.0)  # [..., n]
    if descending:
        y = 1.0 - y
    valid_y = slot < m
    log_w = jnp.broadcast_to(-jnp.log(jnp.maximum(m, 1.0)), x.shape)
    z = squash_inputs(x, mask, squash)
    plan = solve(
        z, valid, log_w, y, valid_y, log_w, temperature,
        num_iterations=num_iterations, threshold=threshold,
        cost_scale=None if squash == "none" else 1.0,
    )  # fmt: skip
    return plan, valid, m


def sinkhorn_permutation(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    descending: bool,
    squash: str = "sigmoid",
    num_iterations: int = NUM_ITERATIONS,
    threshold: float = THRESHOLD,
) -> jax.Array:
    r"""Soft permutation $\Pi_{ri} = m \hat P_{ir}$ (Cuturi et al. 2019).

    Rows (sorted slots) sum to 1 up to rounding; columns sum to 1 up to ``threshold`` once
    converged, so $\Pi$ is doubly stochastic to that tolerance. O(n² · iterations).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\varepsilon > 0$ (may be traced), in units of the squashed
        inputs' squared distance (``1e-2`` is a typical value, ``1e-3`` is close to hard).
      descending: If True, slot / rank 1 is the largest score.
      squash: ``"sigmoid"``, ``"minmax"`` or ``"none"`` (see the module docstring).
      num_iterations: Static cap on the Sinkhorn iterations.
      threshold: Static tolerance on the largest relative row-marginal error; ``0`` runs
        exactly ``num_iterations`` iterations.

    Returns:
      ``[..., n, n]`` matrix; row $r$ weights the entries for sorted slot $r$ (rows past $m$
      and padded columns are 0).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.sinkhorn import sinkhorn_permutation
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> p = sinkhorn_permutation(x, None, jnp.asarray(1e-3), descending=False)
      >>> np.asarray(p).round(2)
      array([[0., 1., 0.],
             [1., 0., 0.],
             [0., 0., 1.]], dtype=float32)
    """
    return _sort_family(
        x, mask, temperature, op="permutation", descending=descending, squash=squash,
        num_iterations=num_iterations, threshold=threshold,
    )  # fmt: skip


def sinkhorn_rank(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    descending: bool,
    squash: str = "sigmoid",
    num_iterations: int = NUM_ITERATIONS,
    threshold: float = THRESHOLD,
) -> jax.Array:
    r"""Soft ranks $\operatorname{rank}_i = m \sum_r r\,\hat P_{ir}$ (Cuturi et al. 2019, eq. 4).

    The ranks sum to $m(m+1)/2$ (up to rounding) and tend to the exact ranks of distinct
    values as $\varepsilon \to 0$; ties get the average of their ranks. O(n² · iterations).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\varepsilon > 0$ (may be traced), in units of the squashed
        inputs' squared distance (``1e-2`` is a typical value, ``1e-3`` is close to hard).
      descending: If True, slot / rank 1 is the largest score.
      squash: ``"sigmoid"``, ``"minmax"`` or ``"none"`` (see the module docstring).
      num_iterations: Static cap on the Sinkhorn iterations.
      threshold: Static tolerance on the largest relative row-marginal error; ``0`` runs
        exactly ``num_iterations`` iterations.

    Returns:
      ``[..., n]`` soft ranks (padded positions meaningless; the wrapper zeros them).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.sinkhorn import sinkhorn_rank
      >>> x = jnp.array([0.3, -1.2, 2.5, 0.9])
      >>> np.asarray(sinkhorn_rank(x, None, jnp.asarray(1e-3), descending=False)).round(3)
      array([2., 1., 4., 3.], dtype=float32)
      >>> np.asarray(sinkhorn_rank(x, None, jnp.asarray(0.05), descending=False)).round(2)
      array([2.16, 1.15, 3.86, 2.82], dtype=float32)
    """
    return _sort_family(
        x, mask, temperature, op="rank", descending=descending, squash=squash,
        num_iterations=num_iterations, threshold=threshold,
    )  # fmt: skip


def sinkhorn_sort(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    descending: bool,
    squash: str = "sigmoid",
    num_iterations: int = NUM_ITERATIONS,
    threshold: float = THRESHOLD,
) -> jax.Array:
    r"""Soft sort $s_r = m \sum_i \hat P_{ir} x_i$ (Cuturi et al. 2019, eq. 5).

    Each $s_r$ is a convex combination of the valid inputs (raw, not squashed), so it lies in
    $[\min x, \max x]$; it is monotone in $r$ at convergence and tends to ``jnp.sort(x)`` as
    $\varepsilon \to 0$. O(n² · iterations).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\varepsilon > 0$ (may be traced), in units of the squashed
        inputs' squared distance (``1e-2`` is a typical value, ``1e-3`` is close to hard).
      descending: If True, slot / rank 1 is the largest score.
      squash: ``"sigmoid"``, ``"minmax"`` or ``"none"`` (see the module docstring).
      num_iterations: Static cap on the Sinkhorn iterations.
      threshold: Static tolerance on the largest relative row-marginal error; ``0`` runs
        exactly ``num_iterations`` iterations.

    Returns:
      ``[..., n]`` soft-sorted values with the valid ones in the first $m$ slots.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.sinkhorn import sinkhorn_sort
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(sinkhorn_sort(x, None, jnp.asarray(1e-3), descending=True)).round(3)
      array([ 2.5,  0.3, -1.2], dtype=float32)
    """
    return _sort_family(
        x, mask, temperature, op="sort", descending=descending, squash=squash,
        num_iterations=num_iterations, threshold=threshold,
    )  # fmt: skip


def sinkhorn_topk_mask(
    x: jax.Array,
    mask: jax.Array | None,
    k: int,
    temperature: jax.Array,
    *,
    squash: str = "sigmoid",
    num_iterations: int = NUM_ITERATIONS,
    threshold: float = THRESHOLD,
) -> jax.Array:
    r"""Soft top-k mask by transport onto two targets (Xie et al. 2020).

    The valid entries (mass $1/m$ each) go to $y = (0, 1)$ with masses
    $(\max(m - k, 0)/m,\ \min(k, m)/m)$, and $\operatorname{mask}_i = m \hat P_{i,2}$. The
    mask sums to $\min(k, m)$ up to rounding and lies in $[0, 1]$ up to ``threshold``; as
    $\varepsilon \to 0$ it tends to the k-hot mask of distinct values. O(n · iterations).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      k: Static number of entries to select.
      temperature: Scalar $\varepsilon > 0$ (may be traced), in squashed units.
      squash: ``"sigmoid"``, ``"minmax"`` or ``"none"`` (see the module docstring).
      num_iterations: Static cap on the Sinkhorn iterations.
      threshold: Static tolerance on the largest relative row-marginal error.

    Returns:
      ``[..., n]`` mask (padded positions meaningless; the wrapper zeros them).

    References:
      Xie, Dai, Chen, Dai, Zhao, Zha, Wei & Pfister, "Differentiable Top-k with Optimal
      Transport", NeurIPS 2020.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.sinkhorn import sinkhorn_topk_mask
      >>> x = jnp.array([0.3, -1.2, 2.5, 0.9])
      >>> np.asarray(sinkhorn_topk_mask(x, None, 2, jnp.asarray(1e-3))).round(3)
      array([0., 0., 1., 1.], dtype=float32)
    """
    return _topk(
        x, mask, temperature, k=k, squash=squash, num_iterations=num_iterations,
        threshold=threshold,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("k", "squash", "num_iterations", "threshold"))
def _topk(
    x: jax.Array,
    mask: jax.Array | None,
    temperature: jax.Array,
    *,
    k: int,
    squash: str,
    num_iterations: int,
    threshold: float,
) -> jax.Array:
    valid = _valid(x, mask)
    m = jnp.sum(valid, axis=-1, keepdims=True).astype(x.dtype)
    kk = jnp.minimum(jnp.asarray(k, x.dtype), m)
    mass = jnp.concatenate([m - kk, kk], axis=-1)  # [..., 2]
    valid_y = mass > 0
    log_b = jnp.log(jnp.where(valid_y, mass, 1.0)) - jnp.log(jnp.maximum(m, 1.0))
    y = jnp.broadcast_to(jnp.asarray([0.0, 1.0], x.dtype), mass.shape)
    log_a = jnp.broadcast_to(-jnp.log(jnp.maximum(m, 1.0)), x.shape)
    z = squash_inputs(x, mask, squash)
    plan = solve(
        z, valid, log_a, y, valid_y, log_b, temperature,
        num_iterations=num_iterations, threshold=threshold,
        cost_scale=None if squash == "none" else 1.0,
    )  # fmt: skip
    return m * plan[..., 1]
