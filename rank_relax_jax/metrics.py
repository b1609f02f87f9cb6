"""Exact ranking metrics for evaluation: NDCG, recall, precision, MRR, AP, Spearman, Kendall.

Every metric takes ``scores`` (higher = ranked first) and ``labels`` (graded relevance or target
values) of the same shape, ranks along ``axis`` (default the last), and returns one value per
list, i.e. an array with ``axis`` removed. All batch axes are kept, so a ``[queries, docs]``
array gives ``[queries]`` values; average them yourself (``.mean()``) or with a mask over the
queries you want to count.

Ragged lists: ``where`` (boolean, broadcastable to ``scores``) marks padding with ``False``. A
masked list gives exactly the value of the same list with the padding removed. A fully masked
list gives 0.

Ties in ``scores``: for the position-based metrics (`ndcg`, `precision_at_k`,
`recall_at_k`, `mrr`) the value is the *expectation over all orderings of the
tied items*, i.e. what a uniformly random tie-break gives on average. For NDCG this is exactly
scikit-learn's ``ndcg_score`` (gains averaged over each tie group). `average_precision`
follows scikit-learn's ``average_precision_score`` (a tie group is one threshold of the
precision-recall curve), `spearman` follows ``scipy.stats.spearmanr`` (average ranks) and
`kendall_tau` is scipy's tau-b. No metric returns NaN for a list without any relevant
item or with constant inputs; each documents the value it gives instead. A NaN score makes its
list's value NaN.

These are piecewise-constant functions of the scores; their gradient is zero (the inputs pass
through ``stop_gradient``). For training use `rank_relax_jax.losses`.

References: Järvelin & Kekäläinen (2002), Cumulated gain-based evaluation of IR techniques;
McSherry & Najork (2008), Computing information retrieval performance measures efficiently in
the presence of tied scores; Kendall (1945), The treatment of ties in ranking problems.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rank_relax_jax import _checks, _lists, _numerics, _sort
from rank_relax_jax._sharding import auto_sharding
from rank_relax_jax.ranking import rank

GAINS = _lists.GAINS


def _tie_bounds(s: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """1-based first and last position (best first) that each entry's tie group spans."""
    first = rank(s, descending=True, where=mask, ties="min")
    last = rank(s, descending=True, where=mask, ties="max")
    return first, last


def _spread(cum: jax.Array, first: jax.Array, last: jax.Array) -> jax.Array:
    """Mean of a per-position weight over positions ``first..last`` (tie-averaged weight).

    ``cum`` is ``[n + 1]`` with ``cum[p]`` = sum of the weights of positions 1..p. Padding has
    ``first = last = 0`` and gets an arbitrary finite value that the callers mask out.
    """
    lo = jnp.maximum(first.astype(jnp.int32) - 1, 0)
    hi = jnp.maximum(last.astype(jnp.int32), 0)
    width = jnp.maximum(hi - lo, 1).astype(cum.dtype)
    return (cum[hi] - cum[lo]) / width


@auto_sharding
def ndcg(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    k: int | None = None,
    gain: str = "exp2",
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Normalized discounted cumulative gain (NDCG@k) of each list.

    $$
    \mathrm{DCG@k} = \sum_{p=1}^{k} \frac{g(y_{\pi(p)})}{\log_2(p + 1)}, \qquad
    \mathrm{NDCG@k} = \frac{\mathrm{DCG@k}}{\mathrm{IDCG@k}}
    $$

    with $\pi$ the order of decreasing scores, $g(y) = 2^y - 1$ (``gain="exp2"``,
    the usual learning-to-rank gain, as LightGBM's default ``label_gain``) or $g(y) = y$
    (``gain="linear"``, as scikit-learn's ``ndcg_score``), and IDCG@k the DCG@k of the labels
    sorted in decreasing order.

    Ties in ``scores``: every item of a tie group gets the mean discount of the positions the
    group spans (cut at ``k``), i.e. the expected DCG over random tie-breaks. This equals
    ``sklearn.metrics.ndcg_score(..., ignore_ties=False)``. A list without any positive gain
    (IDCG = 0) gets NDCG = 0, as in scikit-learn (LightGBM counts such a query as 1). Cost: two
    O(n log n) sorts per list.

    Args:
      scores: Floating array; higher scores are ranked first.
      labels: Non-negative relevance of the same shape (any real dtype). A negative label
        raises ValueError, or, when the labels are traced, makes that list's NDCG NaN.
      k: Static cutoff; ``None`` means the whole list, and a ``k`` larger than the list is the
        whole list.
      gain: ``"exp2"`` or ``"linear"``.
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.

    Returns:
      NDCG in ``[0, 1]`` with ``axis`` removed, in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.metrics import ndcg
      >>> labels = jnp.array([[3.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
      >>> scores = jnp.array([[0.9, 0.1, 0.5], [0.9, 0.1, 0.5]])
      >>> ndcg(scores, labels).round(3)
      Array([1.   , 0.587], dtype=float32)
    """
    fn = "ndcg"
    frame, y = _lists.prepare_pair(fn, scores, labels, axis=axis, where=where)
    k = _lists.clip_cutoff(fn, k, frame.n)
    s = jax.lax.stop_gradient(frame.x)
    y = jax.lax.stop_gradient(y)
    negative = _lists.negative_labels(fn, y)
    g = _lists.gain(fn, y, gain)
    if frame.mask is not None:
        g = jnp.where(frame.mask, g, jnp.zeros((), g.dtype))
    first, last = _tie_bounds(s, frame.mask)
    disc = _lists.discounts((frame.n,), k, s.dtype)
    cum = jnp.concatenate([jnp.zeros((1,), s.dtype), jnp.cumsum(disc)])
    dcg = jnp.sum(g * _spread(cum, first, last), axis=-1)
    out = _numerics.safe_div(dcg, _lists.ideal_dcg(g, frame.mask, k))
    out = jnp.where(jnp.any(jnp.isnan(s), axis=-1) | negative, jnp.nan, out)
    return frame.finish_reduced(out)


def _hits_at_k(fn: str, scores: Any, labels: Any, k: Any, axis: int, where: Any):
    """Expected number of relevant items in the top ``k`` under random tie-breaks."""
    frame, y = _lists.prepare_pair(fn, scores, labels, axis=axis, where=where)
    k = _checks.check_positive_int(fn, "k", k)
    s = jax.lax.stop_gradient(frame.x)
    relevant = (jax.lax.stop_gradient(y) > 0) & frame.valid()
    first, last = _tie_bounds(s, frame.mask)
    inside = (jnp.arange(1, frame.n + 1) <= k).astype(s.dtype)
    cum = jnp.concatenate([jnp.zeros((1,), s.dtype), jnp.cumsum(inside)])
    hits = jnp.sum(jnp.where(relevant, _spread(cum, first, last), 0), axis=-1)
    nan = jnp.any(jnp.isnan(s), axis=-1)
    return frame, k, hits, relevant, nan


@auto_sharding
def recall_at_k(
    scores: ArrayLike,
    labels: ArrayLike,
    k: int,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Fraction of the relevant items (``labels > 0``) that are ranked in the top ``k``.

    Ties in ``scores``: a tie group that straddles the cutoff counts each of its items with the
    fraction of the group's positions inside the top ``k`` (the expectation over random
    tie-breaks). A list without any relevant item gets 0. Cost: O(n log n).

    Args:
      scores: Floating array; higher scores are ranked first.
      labels: Relevance of the same shape; an item is relevant when its label is positive.
      k: Static positive cutoff (a ``k`` above the list length counts the whole list).
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.

    Returns:
      Recall in ``[0, 1]`` with ``axis`` removed, in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.metrics import recall_at_k
      >>> recall_at_k(jnp.array([0.9, 0.8, 0.1, 0.5]), jnp.array([1, 0, 1, 1]), 2)
      Array(0.33333334, dtype=float32)
    """
    frame, _, hits, relevant, nan = _hits_at_k("recall_at_k", scores, labels, k, axis, where)
    out = _numerics.safe_div(hits, jnp.sum(relevant, axis=-1).astype(hits.dtype))
    return frame.finish_reduced(jnp.where(nan, jnp.nan, out))


@auto_sharding
def precision_at_k(
    scores: ArrayLike,
    labels: ArrayLike,
    k: int,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Fraction of the top ``k`` ranked items that are relevant (``labels > 0``).

    The denominator is $\min(k, m)$ for a list of $m$ valid items, so a short list
    whose items are all relevant scores 1 (as TF-Ranking's precision). Ties in ``scores`` are
    handled as in `recall_at_k` (expectation over random tie-breaks). A fully masked list
    gets 0. Cost: O(n log n).

    Args:
      scores: Floating array; higher scores are ranked first.
      labels: Relevance of the same shape; an item is relevant when its label is positive.
      k: Static positive cutoff.
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.

    Returns:
      Precision in ``[0, 1]`` with ``axis`` removed, in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.metrics import precision_at_k
      >>> precision_at_k(jnp.array([0.9, 0.8, 0.1, 0.5]), jnp.array([1, 0, 1, 1]), 2)
      Array(0.5, dtype=float32)
    """
    frame, k, hits, _, nan = _hits_at_k("precision_at_k", scores, labels, k, axis, where)
    den = jnp.minimum(frame.count(hits.dtype), jnp.asarray(k, hits.dtype))
    out = _numerics.safe_div(hits, den)
    return frame.finish_reduced(jnp.where(nan, jnp.nan, out))


@auto_sharding
def mrr(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    k: int | None = None,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Reciprocal rank of the first relevant item (``labels > 0``); its mean is the MRR.

    With a cutoff ``k``, a first relevant item below position ``k`` gives 0. Ties in
    ``scores``: the value is the exact expectation of $1/p$ over random tie-breaks.
    If the best tie group that holds a relevant item starts at position $f$, has
    $g$ items of which $r$ are relevant, the first relevant item lands at
    $f - 1 + j$ with probability $\binom{g-j}{r-1} / \binom{g}{r}$. A list without
    any relevant item gets 0. Cost: O(n log n).

    Args:
      scores: Floating array; higher scores are ranked first.
      labels: Relevance of the same shape; an item is relevant when its label is positive.
      k: Optional static cutoff (``None``: the whole list).
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.

    Returns:
      Reciprocal rank in ``[0, 1]`` with ``axis`` removed, in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.metrics import mrr
      >>> mrr(jnp.array([0.9, 0.8, 0.1]), jnp.array([0, 1, 1]))
      Array(0.5, dtype=float32)
      >>> mrr(jnp.array([0.5, 0.5, 0.1]), jnp.array([0, 1, 0]))  # 1/1 or 1/2
      Array(0.75, dtype=float32)
    """
    fn = "mrr"
    frame, y = _lists.prepare_pair(fn, scores, labels, axis=axis, where=where)
    k = _lists.clip_cutoff(fn, k, frame.n)
    s = jax.lax.stop_gradient(frame.x)
    dt = s.dtype
    relevant = (jax.lax.stop_gradient(y) > 0) & frame.valid()
    first, last = _tie_bounds(s, frame.mask)
    big = jnp.asarray(frame.n + 1, dt)
    f = jnp.min(jnp.where(relevant, first, big), axis=-1, keepdims=True, initial=big)
    in_group = frame.valid() & (first == f)
    g = jnp.max(jnp.where(in_group, last, 0), axis=-1, keepdims=True, initial=0) - f + 1
    r = jnp.sum(relevant & in_group, axis=-1, keepdims=True).astype(dt)
    any_rel = r > 0
    g = jnp.where(any_rel, g, 1)
    f = jnp.where(any_rel, f, 1)
    r = jnp.maximum(r, 1)
    j = _lists.one_based_positions(s.shape, dt)
    possible = j <= g - r + 1
    # log C(g - j, r - 1) - log C(g, r), evaluated on safe arguments where j is impossible.
    a = jnp.where(possible, g - j, r - 1)
    lg = jax.lax.lgamma
    log_p = (lg(a + 1) - lg(r) - lg(a - r + 2)) - (lg(g + 1) - lg(r + 1) - lg(g - r + 1))
    pos = f - 1 + j
    w = jnp.where(possible & (pos <= k), jnp.exp(log_p) / pos, jnp.zeros((), dt))
    out = jnp.where(any_rel[..., 0], jnp.sum(w, axis=-1), jnp.zeros((), dt))
    out = jnp.where(jnp.any(jnp.isnan(s), axis=-1), jnp.nan, out)
    return frame.finish_reduced(out)


@auto_sharding
def average_precision(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Average precision of each list (its mean over queries is MAP).

    $$
    \mathrm{AP} = \frac{1}{R} \sum_{i:\,y_i > 0} \mathrm{P}(t_i), \qquad
    \mathrm{P}(t) = \frac{|\{j : y_j > 0,\ s_j \ge t\}|}{|\{j : s_j \ge t\}|}
    $$

    with $R$ the number of relevant items (``labels > 0``) and $t_i = s_i$. Ties in
    ``scores`` are one threshold, so a tie group is counted as a whole: this equals
    ``sklearn.metrics.average_precision_score`` on the list. A list without any relevant item
    gets 0. Cost: O(n log n).

    Args:
      scores: Floating array; higher scores are ranked first.
      labels: Relevance of the same shape; an item is relevant when its label is positive.
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.

    Returns:
      AP in ``[0, 1]`` with ``axis`` removed, in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.metrics import average_precision
      >>> average_precision(jnp.array([0.9, 0.8, 0.1]), jnp.array([1, 0, 1])).round(4)
      Array(0.8333, dtype=float32)
    """
    fn = "average_precision"
    frame, y = _lists.prepare_pair(fn, scores, labels, axis=axis, where=where)
    s = jax.lax.stop_gradient(frame.x)
    relevant = (jax.lax.stop_gradient(y) > 0) & frame.valid()
    _, last = _tie_bounds(s, frame.mask)
    perm = _sort.argsort(s, frame.mask, descending=True)
    rel_sorted = jnp.take_along_axis(relevant, perm, axis=-1).astype(s.dtype)
    cum = jnp.concatenate([jnp.zeros((*s.shape[:-1], 1), s.dtype), jnp.cumsum(rel_sorted, -1)], -1)
    hi = jnp.maximum(last.astype(jnp.int32), 0)
    hits = jnp.take_along_axis(cum, hi, axis=-1)
    prec = _numerics.safe_div(hits, last)
    total = jnp.sum(jnp.where(relevant, prec, 0), axis=-1)
    out = _numerics.safe_div(total, jnp.sum(relevant, axis=-1).astype(s.dtype))
    out = jnp.where(jnp.any(jnp.isnan(s), axis=-1), jnp.nan, out)
    return frame.finish_reduced(out)


@auto_sharding
def spearman(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Spearman's rank correlation $\rho$ of each list.

    The Pearson correlation of the average ranks (ties get the mean of the ranks they span),
    exactly ``scipy.stats.spearmanr``. Symmetric in its two arguments. Where it is undefined
    (fewer than two valid items, or either input constant among the valid items) it is 0,
    whereas scipy returns NaN. Cost: O(n log n).

    Args:
      scores: Floating array.
      labels: Array of the same shape (any real dtype).
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.

    Returns:
      $\rho \in [-1, 1]$ with ``axis`` removed, in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.metrics import spearman
      >>> spearman(jnp.array([0.1, 0.4, 0.3, 0.9]), jnp.array([1, 2, 3, 4])).round(3)
      Array(0.8, dtype=float32)
    """
    fn = "spearman"
    frame, y = _lists.prepare_pair(fn, scores, labels, axis=axis, where=where)
    s = jax.lax.stop_gradient(frame.x)
    ra = rank(s, where=frame.mask)
    rb = rank(jax.lax.stop_gradient(y), where=frame.mask)
    cov, va, vb = _lists.pearson_moments(ra, rb, frame.mask)
    return frame.finish_reduced(jnp.clip(_numerics.safe_div(cov, jnp.sqrt(va * vb)), -1, 1))


@auto_sharding
def kendall_tau(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Kendall's $\tau_b$ rank correlation of each list, as ``scipy.stats.kendalltau``.

    $$
    \tau_b = \frac{\sum_{i<j} \operatorname{sgn}(s_i - s_j)\operatorname{sgn}(y_i - y_j)}
    {\sqrt{(n_0 - n_s)(n_0 - n_y)}}
    $$

    with $n_0 = m(m-1)/2$ pairs and $n_s$, $n_y$ the pairs tied in each
    input, so ties are corrected for as in tau-b. Symmetric in its two arguments. Where it is
    undefined (either input constant among the valid items, or fewer than two of them) it is 0,
    whereas scipy returns NaN. Cost: O(n²) time and memory per list (pairwise signs).

    Args:
      scores: Floating array.
      labels: Array of the same shape (any real dtype).
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.

    Returns:
      $\tau_b \in [-1, 1]$ with ``axis`` removed, in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.metrics import kendall_tau
      >>> kendall_tau(jnp.array([0.1, 0.4, 0.3, 0.9]), jnp.array([1, 2, 3, 4])).round(3)
      Array(0.667, dtype=float32)
    """
    fn = "kendall_tau"
    frame, y = _lists.prepare_pair(fn, scores, labels, axis=axis, where=where)
    s = jax.lax.stop_gradient(frame.x)
    y = jax.lax.stop_gradient(y)
    valid = frame.valid()
    pair = valid[..., :, None] & valid[..., None, :]
    ss = jnp.where(pair, jnp.sign(s[..., :, None] - s[..., None, :]), 0)
    sy = jnp.where(pair, jnp.sign(y[..., :, None] - y[..., None, :]), 0)
    num = jnp.sum(ss * sy, axis=(-2, -1))
    den = jnp.sqrt(jnp.sum(jnp.abs(ss), axis=(-2, -1)) * jnp.sum(jnp.abs(sy), axis=(-2, -1)))
    return frame.finish_reduced(jnp.clip(_numerics.safe_div(num, den), -1, 1))
