"""Exact and relaxed top-k masks.

``topk_mask`` is the exact k-hot mask of the k largest entries. ``soft_topk_mask`` relaxes it:
``isotonic`` projects onto the capped simplex {m ∈ [0, 1]ⁿ : Σm = k} with the permutahedron
machinery of Blondel et al. (2020) (L2: sparse, Sander et al. 2023), ``sigmoid`` thresholds at the
midpoint between the k-th and (k+1)-th largest values. The sampling-based
``perturbed_topk_mask`` (Berthet et al. 2020) lives in `rank_relax_jax.gumbel`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rank_relax_jax import _axis, _checks, _sort, _standardize, methods

TOPK_METHODS = methods.methods("topk")


def _hard_topk(x: jax.Array, mask: jax.Array | None, k: int) -> jax.Array:
    """k-hot over the last axis; ties go to the lower index; padding and NaN are never picked."""
    perm = _sort.argsort(x, mask, descending=True)
    slots = jnp.broadcast_to(jnp.arange(x.shape[-1]) < k, x.shape).astype(x.dtype)
    return _axis.unsort(perm, slots)


def _straight_through(hard: jax.Array, soft: jax.Array) -> jax.Array:
    return soft + jax.lax.stop_gradient(hard - soft)


def topk_mask(x: ArrayLike, k: int, *, axis: int = -1, where: ArrayLike | None = None) -> jax.Array:
    """Exact k-hot mask of the ``k`` largest entries of ``x`` along ``axis``.

    Ties are broken deterministically by position: among equal values the one with the lower
    index along ``axis`` is selected first (a stable sort of ``-x``). Padding (``where=False``) is
    never selected; a list with fewer than ``k`` valid entries selects all of them. A NaN entry
    is never selected and its output is NaN. The output is piecewise constant (zero gradient).
    Cost: one O(n log n) sort and an O(n) scatter.

    Args:
      x: Floating array of scores.
      k: Static number of entries to select, ``1 <= k <= x.shape[axis]``.
      axis: Axis to select along.
      where: Optional boolean mask; ``False`` marks padding.

    Returns:
      Array of 0s and 1s with the shape and dtype of ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import topk_mask
      >>> topk_mask(jnp.array([0.1, 3.0, 3.0, -2.0]), 2)
      Array([0., 1., 1., 0.], dtype=float32)
      >>> topk_mask(jnp.array([0.1, 3.0, 3.0, -2.0]), 1)
      Array([0., 1., 0., 0.], dtype=float32)
    """
    fn = "topk_mask"
    frame = _axis.prepare(fn, x, axis=axis, where=where)
    k = _checks.check_k(fn, k, frame.n)
    xs = jax.lax.stop_gradient(frame.x)
    out = _hard_topk(xs, frame.mask, k)
    out = jnp.where(jnp.isnan(xs), jnp.nan, out)
    return frame.finish_elementwise(out)


def soft_topk_mask(
    x: ArrayLike,
    k: int,
    *,
    method: str = "isotonic",
    temperature: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    hard: bool = False,
    regularization: str = "l2",
    standardize: bool = False,
    **options: Any,
) -> jax.Array:
    r"""Differentiable mask of the ``k`` largest entries of ``x`` along ``axis``.

    ``method="isotonic"`` solves

    $$
    m^\star = \arg\max_{m \in [0,1]^n,\ \sum_i m_i = k} \langle m, x \rangle - \tau\,R(m)
    $$

    with $R$ the squared norm (``regularization="l2"``, sparse: exact 0s and 1s away from
    the threshold) or the negative entropy (``"kl"``), in O(n log n) via isotonic regression
    (Blondel et al. 2020; Sander et al. 2023). The mask sums to exactly ``k``.

    ``method="sigmoid"`` is $\sigma((x_i - t)/\tau)$ with $t$ the midpoint between
    the k-th and (k+1)-th largest values (differentiated too); its sum is close to,
    not exactly, ``k``. Both tend to `topk_mask` as $\tau \to 0$ for distinct
    values.

    **Choose a temperature that trains.** The L2 isotonic mask is sparse: only entries within
    about $\tau$ of the threshold between the k-th and (k+1)-th largest score get a
    gradient, and once those two scores are $\tau$ or more apart the mask is exactly k-hot
    and the whole list's gradient is exactly zero, with no warning (below: at
    ``temperature=0.5``, 2.5 and 0.9 are 1.6 apart). Keep the scores on a known scale and
    start at ``temperature=1.0`` or above, or use ``regularization="kl"`` (every entry below
    the threshold keeps a gradient) or ``method="sigmoid"``. See "Temperature and vanishing
    gradients" in ``docs/methods.md`` for measurements.

    Args:
      x: Floating array of scores.
      k: Static number of entries to select, ``1 <= k <= x.shape[axis]``.
      method: ``"isotonic"`` or ``"sigmoid"``.
      temperature: Positive smoothness $\tau$; may be traced (a traced value <= 0 gives NaN).
      axis: Axis to select along.
      where: Optional boolean mask; padding gets 0 and zero gradient, and a list with at most
        ``k`` valid entries selects all of them.
      hard: If True, return the exact `topk_mask` in the forward pass with the soft
        mask's gradient (straight-through).
      regularization: ``"l2"`` or ``"kl"``; only for ``method="isotonic"``.
      standardize: If True, each list is z-scored over its valid entries before the kernel,
        so one temperature blurs the same share of the list at every length and score scale
        (``docs/choosing_a_method.md``).
      **options: Further options of the chosen method (see `rank_relax_jax.methods`); an
        option the method does not take raises an error.

    Returns:
      Array in ``[0, 1]`` with the shape and dtype of ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax import soft_topk_mask
      >>> x = jnp.array([0.3, -1.2, 2.5, 0.9])
      >>> soft_topk_mask(x, 2, temperature=1.0).round(3).tolist()  # sums to exactly 2
      [0.2, 0.0, 1.0, 0.8]
      >>> jax.grad(lambda v: soft_topk_mask(v, 2, temperature=1.0)[3])(x)
      Array([-0.5,  0. ,  0. ,  0.5], dtype=float32)
      >>> jax.grad(lambda v: soft_topk_mask(v, 2, temperature=0.5)[3])(x)  # exactly k-hot
      Array([0., 0., 0., 0.], dtype=float32)
      >>> soft_topk_mask(jnp.array([0.1, 3.0, 2.0, -2.0]), 2, method="sigmoid",
      ...                temperature=0.01).round(3)
      Array([0., 1., 1., 0.], dtype=float32)
    """
    fn = "soft_topk_mask"
    entry = methods.lookup(fn, "topk", method)
    given = {"regularization": regularization, **options}
    opts = methods.resolve_options(fn, entry, given, defaults={"regularization": "l2"})
    frame = _axis.prepare(fn, x, axis=axis, where=where)
    k = _checks.check_k(fn, k, frame.n)
    t = frame.temperature(temperature)
    xk, _ = _standardize.kernel_input(standardize, "topk", method, opts, frame)
    soft = entry.kernel(xk, frame.mask, k, t, **opts)
    if hard:
        soft = _straight_through(_hard_topk(jax.lax.stop_gradient(frame.x), frame.mask, k), soft)
    return frame.finish_elementwise(soft)
