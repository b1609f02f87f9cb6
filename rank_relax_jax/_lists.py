"""Helpers shared by `rank_relax_jax.losses` and `rank_relax_jax.metrics` for labelled lists.

Both take ``scores`` and ``labels`` of one shape, rank along ``axis`` with ``where`` padding,
and speak of gains, DCG discounts, cutoffs ``@k`` and correlations; each of those is written once
here. Gains and discounts follow Järvelin & Kekäläinen (2002), "Cumulated gain-based evaluation
of IR techniques".
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rank_relax_jax import _axis, _checks, _sort

GAINS = ("exp2", "linear")


def prepare_pair(
    fn: str,
    scores: Any,
    labels: Any,
    *,
    axis: int,
    where: Any,
    names: tuple[str, str] = ("scores", "labels"),
) -> tuple[_axis.Frame, jax.Array]:
    """Prepares ``scores`` with the shared plumbing and brings ``labels`` into the same frame.

    Labels may have any real dtype (integer relevance grades are common); they are cast to the
    scores' compute dtype. Returns the scores' frame and the ``[..., n]`` labels with padding 0.
    """
    scores = _checks.check_floating(fn, names[0], scores)  # jnp.shape of a list is deprecated
    frame = _axis.prepare(fn, scores, axis=axis, where=where, name=names[0])
    labels = _checks.as_array(fn, names[1], labels)
    if jnp.shape(labels) != jnp.shape(scores):
        raise ValueError(
            f"{fn}: argument `{names[1]}` must have the shape of `{names[0]}` "
            f"{tuple(jnp.shape(scores))}; got shape {labels.shape}."
        )
    if not (
        jnp.issubdtype(labels.dtype, jnp.floating)
        or jnp.issubdtype(labels.dtype, jnp.integer)
        or labels.dtype == jnp.bool_
    ):
        raise TypeError(
            f"{fn}: argument `{names[1]}` must have a real (floating, integer or bool) dtype; "
            f"got dtype {labels.dtype}."
        )
    y = jnp.moveaxis(labels, frame.axis, -1).astype(frame.x.dtype)
    if frame.mask is not None:
        y = jnp.where(frame.mask, y, jnp.zeros((), y.dtype))
    return frame, y


def clip_cutoff(fn: str, k: Any, n: int) -> int:
    """An evaluation cutoff ``@k``: ``None`` means the whole list, a ``k`` above ``n`` is ``n``.

    Clipping, not raising (unlike `rank_relax_jax._checks.check_k` for the top-k ops), because
    a cutoff is a property of the metric, not of one list: NDCG@10 of a query with 7 candidates
    is the NDCG of the whole list (as in LightGBM, scikit-learn and trec_eval), and a batch of
    ragged lists padded to a common ``n`` must accept the same ``k`` as every list in it. A
    non-positive or non-integer ``k`` still raises.
    """
    if k is None:
        return n
    return min(_checks.check_positive_int(fn, "k", k), n)


def negative_labels(fn: str, y: jax.Array) -> jax.Array:
    """``[...]`` True for the lists that hold a negative (valid) relevance label.

    NDCG needs non-negative gains: with a negative label the ideal DCG can be 0 or negative and
    the result means nothing (it used to come out as a silent 0). Concrete labels raise here;
    traced ones cannot be checked, and the caller turns those lists into NaN. ``y`` has
    padding already set to 0.
    """
    negative = jnp.any(y < 0, axis=-1)
    if not _checks.is_traced(y) and bool(jnp.any(negative)):
        raise ValueError(
            f"{fn}: argument `labels` must hold non-negative relevance grades (0 = not "
            f"relevant); got a negative label, {float(jnp.min(y))}. To leave items out of a "
            f"list, mark them with `where=False` instead of a negative label."
        )
    return negative


def gain(fn: str, y: jax.Array, kind: str) -> jax.Array:
    """The gain ``2^y - 1`` (``"exp2"``) or ``y`` (``"linear"``) of relevance labels ``y``."""
    _checks.check_choice(fn, "gain", kind, GAINS)
    return jnp.expm1(y * jnp.log(jnp.asarray(2.0, y.dtype))) if kind == "exp2" else y


def one_based_positions(shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """Positions 1..n along the last axis, broadcast to ``shape`` (no implicit rank promotion)."""
    return jnp.broadcast_to(jnp.arange(1, shape[-1] + 1, dtype=dtype), shape)


def discounts(shape: tuple[int, ...], k: int, dtype: Any) -> jax.Array:
    """DCG discounts 1/log2(1 + p) for positions p = 1..n, zero past ``k``, of ``shape``."""
    p = one_based_positions(shape, dtype)
    return jnp.where(p <= k, 1.0 / jnp.log2(p + 1.0), jnp.zeros((), dtype))


def ideal_dcg(gains: jax.Array, mask: jax.Array | None, k: int) -> jax.Array:
    """Exact DCG@k of the best ordering of ``gains`` (padding has gain 0 and sorts last)."""
    g = jnp.where(mask, gains, -jnp.inf) if mask is not None else gains
    best = jnp.take_along_axis(g, _sort.argsort(g, descending=True), axis=-1)
    best = jnp.where(jnp.isneginf(best), jnp.zeros((), best.dtype), best)
    return jnp.sum(best * discounts(best.shape, k, best.dtype), axis=-1)


def pearson_moments(
    a: jax.Array, b: jax.Array, mask: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""``[...]`` covariance and variances of ``a`` and ``b`` over the valid entries, over m.

    $\frac1m\sum_i \bar a_i \bar b_i$, $\frac1m\sum_i \bar a_i^2$, $\frac1m\sum_i \bar b_i^2$
    with $\bar a = (a - \operatorname{mean}(a))/m$ (the extra $1/m$ keeps rank-valued inputs,
    which grow like m, at a scale where an absolute tolerance on the variances is relative).
    The Pearson correlation is ``cov / sqrt(va * vb)``; what it is where a variance vanishes is
    the caller's policy (the metric says 0, the loss says "nothing to learn").
    """
    valid = jnp.ones(a.shape, bool) if mask is None else mask
    m = jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True).astype(a.dtype), 1)
    da = jnp.where(valid, a - jnp.sum(jnp.where(valid, a, 0), -1, keepdims=True) / m, 0) / m
    db = jnp.where(valid, b - jnp.sum(jnp.where(valid, b, 0), -1, keepdims=True) / m, 0) / m
    return jnp.sum(da * db, -1), jnp.sum(da * da, -1), jnp.sum(db * db, -1)
