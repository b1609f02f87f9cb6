"""Gumbel noise and the samplers and relaxations built on it.

All of them perturb scores with i.i.d. Gumbel(0, 1) noise ``G`` and read off an argmax or a
top-k, exactly or through a softmax:

* `gumbel_softmax`: the Gumbel-softmax / Concrete relaxation of one categorical draw
  (Jang et al. 2017; Maddison et al. 2017).
* `relaxed_topk_gumbel` and `relaxed_topk_gumbel_log`: the element-wise max of
  ``num_samples`` independent Gumbel-softmax draws (L2X, Chen et al. 2018), the document mask of
  Gumbel Reranking (G-Rerank, Huang et al. 2025); the ``_log`` form returns its logarithm, finite
  wherever the mask underflows, for additive attention biases.
* `relaxed_subset_sample`: the successive-softmax relaxation of sampling ``k`` items
  without replacement (Xie & Ermon 2019); it sums to exactly ``k``.
* `gumbel_topk`: an exact sample of ``k`` items without replacement from the
  Plackett–Luce distribution, by the Gumbel-top-k trick (Kool et al. 2019).
* `gumbel_attention_mask`: the G-Rerank document mask with either construction.
* `perturbed_topk_mask` (defined in `rank_relax_jax.topk` with the other top-k masks,
  re-exported here): the perturbed-optimizer top-k mask of Berthet et al. (2020).

Conventions (``DESIGN.md``): ``key`` first and required (typed or legacy, one key; a batch of
keys is rejected with a hint to ``vmap``); ``temperature``, ``scale`` and ``sigma`` are traced
positive scalars; ``k``, ``num_samples``, ``method`` and ``noise`` are static. The noise is drawn
over the ``[..., n]`` layout after moving ``axis`` last, so ``axis=a`` equals moving the axis by
hand. Padding (``where=False``) and ``-inf`` scores are never selected, get exactly 0 and exactly
zero gradient, and never produce a NaN, even in a fully masked row. Half precision is computed in
float32.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rank_relax_jax import _axis, _checks, _numerics
from rank_relax_jax._sharding import auto_sharding
from rank_relax_jax.topk import perturbed_topk_mask

__all__ = [
    "GumbelTopK",
    "gumbel_attention_mask",
    "gumbel_softmax",
    "gumbel_topk",
    "perturbed_topk_mask",
    "relaxed_subset_sample",
    "relaxed_topk_gumbel",
    "relaxed_topk_gumbel_log",
]

ATTENTION_METHODS = ("max", "subset")


# --------------------------------------------------------------------------------------------
# Shared numerics
# --------------------------------------------------------------------------------------------

#: The finite stand-in for ``log 0`` of the log-space outputs (`rank_relax_jax._numerics.log_zero`).
large_negative = _numerics.log_zero


def _support(frame: _axis.Frame) -> tuple[jax.Array, jax.Array]:
    """The frame's scores with unselectable entries zeroed, and the selectable mask."""
    return _numerics.selectable(frame.x, frame.mask)


def _safe_max(z: jax.Array, valid: jax.Array) -> jax.Array:
    """Max over the valid entries of the last axis (kept), 0 for an empty row; no gradient."""
    m = jnp.max(jnp.where(valid, z, -jnp.inf), axis=-1, keepdims=True, initial=-jnp.inf)
    m = jnp.where(m == -jnp.inf, jnp.zeros((), z.dtype), m)
    return jax.lax.stop_gradient(m)


def _log_softmax_and_log1m(z: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Masked ``log p`` and ``log(1 - p)`` for ``p = softmax(z)``, both accurate as ``p -> 1``.

    ``1 - p_i`` is the mass of the other entries. For the largest entry it is summed directly
    (shifted by the second largest, so it never underflows to 0 and ``log(1 - p)`` stays finite);
    for every other entry the largest term remains in the sum, so ``total - e_i >= 1`` and the
    subtraction cannot cancel. Both are O(n). Invalid entries get 0 for ``log(1 - p)``.
    """
    zero = jnp.zeros((), z.dtype)
    m1 = _safe_max(z, valid)
    shifted = jnp.where(valid, z, m1) - m1
    e = jnp.where(valid, jnp.exp(shifted), zero)
    total = jnp.sum(e, axis=-1, keepdims=True)
    total = jnp.where(total > 0, total, jnp.ones((), z.dtype))
    log_total = jnp.log(total)
    logp = shifted - log_total

    top = jnp.argmax(jnp.where(valid, jax.lax.stop_gradient(z), -jnp.inf), axis=-1)
    is_top = jax.lax.broadcasted_iota(top.dtype, z.shape, z.ndim - 1) == top[..., None]
    rest = valid & ~is_top
    m2 = _safe_max(z, rest)
    rest_total = jnp.sum(
        jnp.where(rest, jnp.exp(jnp.where(rest, z, m2) - m2), zero), axis=-1, keepdims=True
    )
    # Only one valid entry left: its `1 - p` is exactly 0; any finite value keeps the recursion
    # NaN-free, and the caller overrides rows with at most k valid entries.
    rest_total = jnp.where(rest_total > 0, rest_total, jnp.ones((), z.dtype))
    log1m_top = (m2 - m1) + jnp.log(rest_total) - log_total
    others = jnp.maximum(total - e, jnp.finfo(z.dtype).tiny)
    log1m_other = jnp.log(others) - log_total
    log1m = jnp.where(is_top, log1m_top, log1m_other)
    return jnp.where(valid, logp, _numerics.log_zero(z.dtype)), jnp.where(valid, log1m, zero)


def _gumbel(key: jax.Array, x: jax.Array) -> jax.Array:
    return jax.random.gumbel(key, x.shape, x.dtype)


def _onehot_argmax(z: jax.Array, valid: jax.Array) -> jax.Array:
    """One-hot of the argmax over the valid entries (all zero for an empty row)."""
    idx = jnp.argmax(jnp.where(valid, z, -jnp.inf), axis=-1)
    hot = jax.lax.broadcasted_iota(idx.dtype, z.shape, z.ndim - 1) == idx[..., None]
    return (hot & valid).astype(z.dtype)


def _prepare(fn: str, key: Any, x: Any, axis: int, where: Any, name: str):
    key = _checks.check_key(fn, key)
    frame = _axis.prepare(fn, x, axis=axis, where=where, name=name)
    return key, frame


# --------------------------------------------------------------------------------------------
# Gumbel-softmax
# --------------------------------------------------------------------------------------------


@auto_sharding
def gumbel_softmax(
    key: ArrayLike,
    logits: ArrayLike,
    *,
    temperature: ArrayLike = 1.0,
    scale: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    hard: bool = False,
) -> jax.Array:
    r"""Relaxed one-hot sample of a categorical distribution (Gumbel-softmax / Concrete).

    $$
    y = \operatorname{softmax}\big((\kappa\,w + G) / \tau\big), \qquad G_i \sim
    \mathrm{Gumbel}(0, 1)\ \text{i.i.d.}
    $$

    with $w$ the ``logits``, $\kappa$ the ``scale`` and $\tau$ the
    ``temperature``. The argmax of $y$ is an exact draw from
    $\operatorname{softmax}(\kappa w)$ at every $\tau$; as $\tau \to 0$,
    $y$ tends to that one-hot draw, and as $\tau \to \infty$ to the uniform vector.
    So $\kappa$ sets how random the choice is and $\tau$ how sharp the relaxation
    is. Cost: O(n) per list.

    Args:
      key: A PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``); a single key.
      logits: Floating array of unnormalized log-probabilities; ``-inf`` means "never chosen".
      temperature: Positive smoothness $\tau$ (may be traced; a traced value <= 0 gives NaN).
      scale: Positive multiplier $\kappa$ of the logits (may be traced; a traced value <= 0
        gives NaN).
      axis: Axis of the categories; other axes are independent batch axes.
      where: Optional boolean mask; ``False`` marks padding, which is never chosen, gets 0 and
        zero gradient.
      hard: If True, return the exact one-hot of the argmax in the forward pass and the soft
        sample's gradient in the backward pass (straight-through).

    Returns:
      Array with the shape and dtype of ``logits``, non-negative, summing to 1 along ``axis``
      (0 for a row with nothing to choose).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax.gumbel import gumbel_softmax
      >>> key = jax.random.key(0)
      >>> y = gumbel_softmax(key, jnp.log(jnp.array([0.5, 0.3, 0.2])), temperature=0.5)
      >>> y.shape, round(float(y.sum()), 4)
      ((3,), 1.0)
      >>> h = gumbel_softmax(key, jnp.zeros((2, 4)), hard=True)
      >>> h.sum(axis=-1)
      Array([1., 1.], dtype=float32)

    References:
      Jang, Gu & Poole, "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017.
      Maddison, Mnih & Teh, "The Concrete Distribution", ICLR 2017.
    """
    fn = "gumbel_softmax"
    key, frame = _prepare(fn, key, logits, axis, where, "logits")
    t = frame.positive_scalar(temperature)
    kappa = frame.positive_scalar(scale, "scale")
    x, valid = _support(frame)
    z = jnp.where(valid, kappa * x + _gumbel(key, x), jnp.zeros((), x.dtype))
    soft = _numerics.masked_softmax(z / t, valid)
    if hard:
        soft = _numerics.straight_through(_onehot_argmax(jax.lax.stop_gradient(z), valid), soft)
    return frame.finish_elementwise(soft)


# --------------------------------------------------------------------------------------------
# Max of k Gumbel-softmax draws (L2X / G-Rerank)
# --------------------------------------------------------------------------------------------


def _max_of_draws(key, frame, temperature, scale, num_samples):
    """``[..., n]`` log of the max-of-draws mask, its hard union, and the selectable mask."""
    t = frame.positive_scalar(temperature)
    kappa = frame.positive_scalar(scale, "scale")
    x, valid = _support(frame)
    base = kappa * x

    def draw(k):
        z = jnp.where(valid, base + _gumbel(k, x), jnp.zeros((), x.dtype))
        hot = _onehot_argmax(jax.lax.stop_gradient(z), valid)
        return _numerics.masked_log_softmax(z / t, valid), hot

    logp, hot = jax.vmap(draw)(jax.random.split(key, num_samples))
    # The max as a gather at the argmax: `jnp.max`'s derivative divides by the number of
    # entries equal to the max, which is 0 (NaN) when XLA recomputes a fused operand with
    # different rounding; the gather routes the gradient to the winning draw unconditionally.
    best = jnp.argmax(jax.lax.stop_gradient(logp), axis=0)
    log_m = jnp.take_along_axis(logp, best[None], axis=0)[0]
    return log_m, jnp.max(hot, axis=0), valid


@auto_sharding
def relaxed_topk_gumbel(
    key: ArrayLike,
    scores: ArrayLike,
    k: int,
    *,
    temperature: ArrayLike = 1.0,
    scale: ArrayLike = 1.0,
    num_samples: int | None = None,
    axis: int = -1,
    where: ArrayLike | None = None,
    hard: bool = False,
) -> jax.Array:
    r"""Relaxed top-k mask as the element-wise max of Gumbel-softmax draws (L2X, G-Rerank).

    $$
    M_i = \max_{j=1..S} \operatorname{softmax}\big((\kappa\,w + G^{(j)}) / \tau\big)_i,
    \qquad G^{(j)}_i \sim \mathrm{Gumbel}(0, 1)\ \text{i.i.d.},
    $$

    with $S$ = ``num_samples`` (default ``k``) independent draws, taken with ``jax.vmap``
    over split keys. Each draw relaxes one categorical choice from
    $p = \operatorname{softmax}(\kappa w)$, so as $\tau \to 0$ the mask tends to the
    indicator of the *union* of $S$ draws *with* replacement: entry $i$ is included
    with probability $1 - (1 - p_i)^S$, the sum lies between 1 and $S$, its
    expectation is below ``k``, and it collapses onto one item when one score dominates. (Use
    `relaxed_subset_sample` for a mask that sums to exactly ``k``.) As $\tau \to
    \infty$ every entry tends to $1/n_{valid}$. Cost: O(S·n) time and memory per list.

    Args:
      key: A single PRNG key (typed or legacy).
      scores: Floating array of scores $w$; ``-inf`` means "never selected".
      k: Static number of items to select, ``1 <= k <= n``; the default number of draws.
      temperature: Positive smoothness $\tau$ (may be traced; a traced value <= 0 gives NaN).
      scale: Positive multiplier $\kappa$ of the scores (may be traced): larger is less
        random.
      num_samples: Static number of Gumbel-softmax draws $S$; ``None`` means ``k``.
      axis: Axis to select along.
      where: Optional boolean mask; padding is never selected, gets 0 and zero gradient.
      hard: If True, return the exact union of the draws' argmaxes (0/1) in the forward pass
        with the soft mask's gradient (straight-through).

    Returns:
      Array in ``[0, 1]`` with the shape and dtype of ``scores``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax.gumbel import relaxed_topk_gumbel
      >>> m = relaxed_topk_gumbel(jax.random.key(0), jnp.array([3.0, 2.0, 1.0, 0.0, -1.0]), 2,
      ...                         temperature=0.1)
      >>> m.shape, bool((m >= 0).all() & (m <= 1).all()), 1.0 <= float(m.sum()) <= 2.0 + 1e-5
      ((5,), True, True)

    References:
      Chen, Song, Wainwright & Jordan, "Learning to Explain", ICML 2018.
      Huang et al., "Gumbel Reranking: Differentiable End-to-End Reranker Optimization",
      ACL 2025.
    """
    fn = "relaxed_topk_gumbel"
    key, frame = _prepare(fn, key, scores, axis, where, "scores")
    k = _checks.check_k(fn, k, frame.n)
    s = k if num_samples is None else _checks.check_positive_int(fn, "num_samples", num_samples)
    log_m, union, valid = _max_of_draws(key, frame, temperature, scale, s)
    soft = jnp.where(valid, jnp.exp(log_m), 0.0)
    if hard:
        soft = _numerics.straight_through(union, soft)
    return frame.finish_elementwise(soft)


@auto_sharding
def relaxed_topk_gumbel_log(
    key: ArrayLike,
    scores: ArrayLike,
    k: int,
    *,
    temperature: ArrayLike = 1.0,
    scale: ArrayLike = 1.0,
    num_samples: int | None = None,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Logarithm of `relaxed_topk_gumbel`'s mask, computed in log space.

    $$
    \log M_i = \max_{j=1..S} \operatorname{log\_softmax}\big((\kappa\,w + G^{(j)})/\tau
    \big)_i,
    $$

    the max of log-softmaxes, which is finite (and has a finite gradient) wherever
    $M_i$ itself underflows to 0, e.g. at small temperature. This is the additive
    attention bias of Differentiable Masked Attention: ``softmax(logits + log M)`` weights a
    document's tokens by $M$, without ever taking ``log(0)``. With the same key and
    arguments, ``exp`` of the result equals `relaxed_topk_gumbel` (same draws).

    Entries that can never be selected (padding, ``-inf`` scores) get the finite
    `large_negative` value (`rank_relax_jax._numerics.log_zero`: a quarter of the dtype's range,
    capped at float32's) and zero gradient; a value computed below that floor is clamped to
    it. Cost: O(S·n) per list.

    Args:
      key: A single PRNG key (typed or legacy).
      scores: Floating array of scores $w$; ``-inf`` means "never selected".
      k: Static number of items to select, ``1 <= k <= n``; the default number of draws.
      temperature: Positive smoothness $\tau$ (may be traced; a traced value <= 0 gives NaN).
      scale: Positive multiplier $\kappa$ of the scores (may be traced; a traced value <= 0
        gives NaN).
      num_samples: Static number of draws $S$; ``None`` means ``k``.
      axis: Axis to select along.
      where: Optional boolean mask; ``False`` marks padding.

    Returns:
      Array ``<= 0`` with the shape and dtype of ``scores``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax.gumbel import relaxed_topk_gumbel, relaxed_topk_gumbel_log
      >>> key, w = jax.random.key(0), jnp.array([30.0, 0.0, -30.0, 1.0])
      >>> log_m = relaxed_topk_gumbel_log(key, w, 2, temperature=0.01)
      >>> bool(jnp.isfinite(log_m).all()), bool((log_m <= 0).all())
      (True, True)
      >>> m = relaxed_topk_gumbel(key, w, 2, temperature=0.01)
      >>> int((m == 0).sum()) > 0  # the mask underflows where its log stays finite
      True

    References:
      Huang et al., "Gumbel Reranking: Differentiable End-to-End Reranker Optimization",
      ACL 2025.
    """
    fn = "relaxed_topk_gumbel_log"
    key, frame = _prepare(fn, key, scores, axis, where, "scores")
    k = _checks.check_k(fn, k, frame.n)
    s = k if num_samples is None else _checks.check_positive_int(fn, "num_samples", num_samples)
    log_m, _, _ = _max_of_draws(key, frame, temperature, scale, s)
    floor = large_negative(log_m.dtype)
    log_m = jnp.maximum(log_m, floor)
    if jnp.dtype(frame.dtype).itemsize < 4:
        # Keep the floor finite (and a "never selected" value) after the cast to half precision.
        log_m = jnp.maximum(log_m, large_negative(frame.dtype).astype(log_m.dtype))
    return frame.finish_elementwise(log_m, fill=large_negative(frame.dtype))


# --------------------------------------------------------------------------------------------
# Successive softmax (Xie & Ermon 2019)
# --------------------------------------------------------------------------------------------


def _subset(key, frame, temperature, scale, k):
    """Relaxed k-subset, its exact Gumbel-top-k counterpart (same noise), and the valid mask."""
    t = frame.positive_scalar(temperature)
    kappa = frame.positive_scalar(scale, "scale")
    x, valid = _support(frame)
    zero = jnp.zeros((), x.dtype)
    alpha0 = jnp.where(valid, kappa * x + _gumbel(key, x), zero)

    def step(carry, _):
        alpha, acc = carry
        logp, log1m = _log_softmax_and_log1m(alpha / t, valid)
        # log(1 - p) is a log-probability; it updates the perturbed logits directly (eq. 4).
        return (alpha + log1m, acc + jnp.where(valid, jnp.exp(logp), zero)), None

    (_, soft), _ = jax.lax.scan(step, (alpha0, jnp.zeros_like(alpha0)), None, length=k)
    few = jnp.sum(valid, axis=-1, keepdims=True) <= k
    soft = jnp.where(few, valid.astype(x.dtype), soft)
    idx, sel = _numerics.topk_indices(jax.lax.stop_gradient(alpha0), valid, k)
    hard = _numerics.khot(idx, frame.n, x.dtype, sel)
    return soft, hard


@auto_sharding
def relaxed_subset_sample(
    key: ArrayLike,
    scores: ArrayLike,
    k: int,
    *,
    temperature: ArrayLike = 1.0,
    scale: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    hard: bool = False,
) -> jax.Array:
    r"""Relaxed sample of a k-subset without replacement (successive softmax, Xie & Ermon 2019).

    With perturbed keys $\alpha^{(1)} = \kappa\,w + G$, $G_i \sim \mathrm{Gumbel}(0,
    1)$, repeat for $j = 1..k$:

    $$
    p^{(j)} = \operatorname{softmax}(\alpha^{(j)}/\tau), \qquad
    \alpha^{(j+1)} = \alpha^{(j)} + \log\big(1 - p^{(j)}\big), \qquad
    a = \sum_{j=1}^{k} p^{(j)}.
    $$

    Each step is a relaxed argmax that (softly) removes what was already chosen, so $a$
    sums to exactly ``k`` at every temperature, and as $\tau \to 0$ it tends to the k-hot
    of the top-k of $\alpha^{(1)}$: an exact sample without replacement from the
    Plackett–Luce model with weights $\operatorname{softmax}(\kappa w)$ (see
    `gumbel_topk`). $\log(1 - p)$ is computed so that it stays finite as
    $p \to 1$. The relaxation constrains the sum, not the entries: when perturbed keys
    lie within about $\tau$ of each other, an entry can exceed 1 (up to about 1.23 for
    ``k = 2`` at ``τ = 0.25``, more for larger ``k``, and more at ``τ >= 1``); this happens with
    probability O(τ) at small ``τ``, so the limit is still the k-hot sample. A list with at
    most ``k`` selectable entries selects all of them (mask 1, sum = their count). Cost: O(k·n)
    time per list, and O(k·n) memory for the backward pass.

    Args:
      key: A single PRNG key (typed or legacy).
      scores: Floating array of scores $w$; ``-inf`` means "never selected".
      k: Static subset size, ``1 <= k <= n``.
      temperature: Positive smoothness $\tau$ (may be traced; a traced value <= 0 gives NaN).
      scale: Positive multiplier $\kappa$ of the scores (may be traced; a traced value <= 0
        gives NaN).
      axis: Axis to select along.
      where: Optional boolean mask; padding is never selected, gets 0 and zero gradient.
      hard: If True, the forward pass returns the exact k-hot of the Gumbel-top-k sample drawn
        with the same noise, and the backward pass the relaxation's gradient (straight-through).

    Returns:
      Non-negative array with the shape and dtype of ``scores``, summing to ``k`` along
      ``axis``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax.gumbel import relaxed_subset_sample
      >>> a = relaxed_subset_sample(jax.random.key(0), jnp.array([3.0, 2.0, 1.0, 0.0, -1.0]), 2,
      ...                           temperature=0.5)
      >>> a.shape, round(float(a.sum()), 4)
      ((5,), 2.0)

    References:
      Xie & Ermon, "Reparameterizable Subset Sampling via Continuous Relaxations", IJCAI 2019.
    """
    fn = "relaxed_subset_sample"
    key, frame = _prepare(fn, key, scores, axis, where, "scores")
    k = _checks.check_k(fn, k, frame.n)
    soft, exact = _subset(key, frame, temperature, scale, k)
    if hard:
        soft = _numerics.straight_through(exact, soft)
    return frame.finish_elementwise(soft)


# --------------------------------------------------------------------------------------------
# Exact sampling without replacement
# --------------------------------------------------------------------------------------------


class GumbelTopK(NamedTuple):
    """Result of `gumbel_topk`.

    Attributes:
      indices: Integer array, the input's shape with ``axis`` of size ``k``: the sampled
        indices in the order they were drawn; ``-1`` in slots past the number of selectable
        entries.
      mask: The k-hot mask of the sample, shape and dtype of the scores.
    """

    indices: jax.Array
    mask: jax.Array


@auto_sharding
def gumbel_topk(
    key: ArrayLike,
    scores: ArrayLike,
    k: int,
    *,
    scale: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> GumbelTopK:
    r"""Exact sample of ``k`` items without replacement (the Gumbel-top-k trick).

    $$
    (i_1, \dots, i_k) = \operatorname{top-}k\big(\kappa\,w + G\big), \qquad G_i \sim
    \mathrm{Gumbel}(0, 1)\ \text{i.i.d.},
    $$

    is distributed as $k$ successive draws without replacement with probabilities
    proportional to $\exp(\kappa w)$ (Plackett–Luce): the first index is distributed as
    $\operatorname{softmax}(\kappa w)$, the next as the softmax over the rest, and so on.
    Padding and ``-inf`` scores are never drawn; if fewer than ``k`` entries can be drawn, the
    remaining slots of ``indices`` hold ``-1`` and the mask selects all drawable entries. The
    output is piecewise constant (zero gradient). Cost: O(n) noise plus one ``lax.top_k``.

    Args:
      key: A single PRNG key (typed or legacy).
      scores: Floating array of scores $w$ (log-weights).
      k: Static sample size, ``1 <= k <= n``.
      scale: Positive multiplier $\kappa$ of the scores (may be traced; a traced value <= 0
        gives NaN).
      axis: Axis to sample along.
      where: Optional boolean mask; ``False`` marks padding.

    Returns:
      A `GumbelTopK` ``(indices, mask)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax.gumbel import gumbel_topk
      >>> out = gumbel_topk(jax.random.key(0), jnp.array([0.0, 1.0, 2.0, -jnp.inf]), 2)
      >>> out.indices.shape, float(out.mask.sum()), float(out.mask[3])
      ((2,), 2.0, 0.0)
      >>> bool(jnp.all(out.mask[out.indices] == 1))
      True

    References:
      Kool, van Hoof & Welling, "Stochastic Beams and Where to Find Them: The Gumbel-Top-k
      Trick for Sampling Sequences Without Replacement", ICML 2019.
    """
    fn = "gumbel_topk"
    key, frame = _prepare(fn, key, scores, axis, where, "scores")
    k = _checks.check_k(fn, k, frame.n)
    kappa = frame.positive_scalar(scale, "scale")
    x, valid = _support(frame)
    keys = jax.lax.stop_gradient(kappa * x + _gumbel(key, x))
    idx, sel = _numerics.topk_indices(keys, valid, k)
    mask = _numerics.khot(idx, frame.n, x.dtype, sel)
    # A NaN score, or a traced non-positive scale (NaN from frame.positive_scalar), gives NaN.
    mask = jnp.where(jnp.isnan(frame.x) | jnp.isnan(kappa), jnp.nan, mask)
    indices = jnp.moveaxis(jnp.where(sel, idx, -1), -1, frame.axis)
    return GumbelTopK(indices, frame.finish_elementwise(mask))


# --------------------------------------------------------------------------------------------
# G-Rerank document mask
# --------------------------------------------------------------------------------------------


@auto_sharding
def gumbel_attention_mask(
    key: ArrayLike,
    reranker_scores: ArrayLike,
    k: int,
    *,
    temperature: ArrayLike = 0.5,
    scale: ArrayLike = 1.0,
    method: str = "max",
    where: ArrayLike | None = None,
    hard: bool = False,
) -> jax.Array:
    r"""The Gumbel Reranking (G-Rerank) document mask over the last axis, in ``[0, 1]``.

    ``method="max"`` is the paper's construction, `relaxed_topk_gumbel` with ``k`` draws:
    the element-wise max of ``k`` Gumbel-softmax samples of
    $\operatorname{softmax}(\kappa\,s)$. Its sum lies between 1 and ``k`` with
    expectation below ``k`` (draws with replacement collide), and it collapses onto one document
    when one score dominates. ``method="subset"`` is `relaxed_subset_sample` (Xie & Ermon
    2019), which keeps the sum at ``k``; here it is clipped to ``[0, 1]`` so that it can weight
    attention. Its entries overshoot 1 mostly at τ ≈ 0.3–1, so the clipped sum dips there (for
    n = 20, k = 5: 3.7–4.5 at τ = 0.5, 4.6–4.8 at τ = 0.1); prefer τ ≲ 0.1 with ``"subset"``.
    See ``docs/gumbel.md`` for the comparison of the two methods.

    The documents are the last axis of ``reranker_scores`` (``[..., n_docs]``); use
    `rank_relax_jax.attention` to turn the mask into attention biases, or
    `relaxed_topk_gumbel_log` for the log-space mask. Cost: O(k·n) per list.

    Args:
      key: A single PRNG key (typed or legacy).
      reranker_scores: ``[..., n_docs]`` floating reranker scores $s$.
      k: Static number of documents to keep, ``1 <= k <= n_docs``.
      temperature: Positive smoothness $\tau$, 0.5 as in the paper (may be traced; a traced
        value <= 0 gives NaN).
      scale: Positive multiplier $\kappa$ of the scores (may be traced; a traced value <= 0
        gives NaN).
      method: ``"max"`` (max of ``k`` Gumbel-softmax draws) or ``"subset"`` (successive
        softmax).
      where: Optional boolean mask over documents; ``False`` marks padding (never kept).
      hard: If True, the forward pass returns the exact 0/1 mask of the method's limit (union of
        ``k`` draws for ``"max"``, a Gumbel-top-k sample for ``"subset"``) and the backward
        pass the soft mask's gradient (straight-through).

    Returns:
      Array in ``[0, 1]`` with the shape and dtype of ``reranker_scores``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax.gumbel import gumbel_attention_mask
      >>> s = jnp.array([[2.0, 0.5, 1.0, -1.0, 0.0]])
      >>> m = gumbel_attention_mask(jax.random.key(0), s, 2, method="subset", hard=True)
      >>> m.sum(axis=-1)
      Array([2.], dtype=float32)

    References:
      Huang et al., "Gumbel Reranking: Differentiable End-to-End Reranker Optimization",
      ACL 2025.
    """
    fn = "gumbel_attention_mask"
    _checks.check_choice(fn, "method", method, ATTENTION_METHODS)
    key, frame = _prepare(fn, key, reranker_scores, -1, where, "reranker_scores")
    k = _checks.check_k(fn, k, frame.n)
    if method == "max":
        log_m, exact, valid = _max_of_draws(key, frame, temperature, scale, k)
        soft = jnp.where(valid, jnp.exp(log_m), 0.0)
    else:
        soft, exact = _subset(key, frame, temperature, scale, k)
        soft = jnp.minimum(soft, 1.0)
    if hard:
        soft = _numerics.straight_through(exact, soft)
    return frame.finish_elementwise(soft)
