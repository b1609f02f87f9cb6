"""Differentiable ranking losses for training scorers, built on the soft operators.

Every loss takes predicted ``scores`` (higher = ranked first) and ``labels`` (relevance or
targets) of the same shape, works along ``axis`` (default the last; all other axes are batch
axes), takes ``where`` for ragged lists, and reduces the per-list losses with ``reduce``:

* ``"mean"``: the mean over the lists that hold at least one valid item (0 if there is none);
* ``"sum"``: the sum over all lists;
* ``"none"``: one loss per list, an array with ``axis`` removed.

Padding (``where=False``) never influences a valid item, so a masked list gives the loss of the
same list with the padding removed, and padding gets exactly zero gradient. A fully masked
list, a list of length 1 and a list whose labels carry no ordering information (all equal, or
no relevant item for `ndcg_loss`) give a finite loss with a finite (zero or harmless)
gradient; each loss documents its value there.

| loss | what it is | cost |
|---|---|---|
| `spearman_loss` | 1 − Pearson(soft ranks, label ranks) (Blondel et al. 2020) | soft rank |
| `ndcg_loss` | 1 − soft NDCG@k from soft ranks (ApproxNDCG, Qin et al. 2010) | soft rank |
| `listmle_loss` | Plackett–Luce NLL of the label order (Xia et al. 2008) | O(n log n) |
| `listnet_loss` | top-one softmax cross-entropy (Cao et al. 2007) | O(n) |
| `pairwise_logistic_loss` | RankNet logistic loss over pairs (Burges et al. 2005) | O(n²) |
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rank_relax_jax import _axis, _checks, _lists, _numerics, _sort
from rank_relax_jax._sharding import auto_sharding
from rank_relax_jax.ranking import RANK_METHODS, rank, soft_rank

REDUCTIONS = ("mean", "sum", "none")


def _reduce(frame: _axis.Frame, per_list: jax.Array, reduce: str) -> jax.Array:
    """Reduces ``[...]`` per-list losses; lists without a valid item must already hold 0."""
    if reduce == "none":
        return frame.finish_reduced(per_list)
    if reduce == "sum":
        return frame.finish_reduced(jnp.sum(per_list))
    lists = jnp.sum(frame.count() > 0).astype(per_list.dtype)
    return frame.finish_reduced(_numerics.safe_div(jnp.sum(per_list), lists))


def _start(fn: str, scores: Any, labels: Any, axis: int, where: Any, reduce: str):
    _checks.check_choice(fn, "reduce", reduce, REDUCTIONS)
    frame, y = _lists.prepare_pair(fn, scores, labels, axis=axis, where=where)
    return frame, jax.lax.stop_gradient(y)


@auto_sharding
def spearman_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    method: str = "isotonic",
    temperature: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduce: str = "mean",
) -> jax.Array:
    r"""Soft Spearman loss: one minus the correlation of soft and exact ranks.

    $$
    \ell(s, y) = 1 - \operatorname{corr}\big(\tilde r_\tau(s),\ r(y)\big)
    $$

    with $\tilde r_\tau$ `rank_relax_jax.ranking.soft_rank` of the scores (any
    method), $r(y)$ the exact average ranks of the labels
    (`rank_relax_jax.ranking.rank`, ties share their mean rank, as
    ``scipy.stats.spearmanr``) and corr the Pearson correlation over the valid items. As
    $\tau \to 0$ it tends to $1 - \rho_{\text{Spearman}}$ for distinct scores, so it
    lies in $[0, 2]$ and is 0 for a perfectly ordered prediction. A list with fewer than two
    valid items or constant labels has no ranking to learn and gets loss 0 (zero gradient);
    constant soft ranks (e.g. a huge temperature) give loss 1 with zero gradient. Blondel et al.
    (2020), "Fast Differentiable Sorting and Ranking", Sec. 6.

    Args:
      scores: Floating array of predictions.
      labels: Targets of the same shape (any real dtype); only their order matters.
      method: A `rank_relax_jax.ranking.soft_rank` method.
      temperature: Positive smoothness of the soft rank (may be traced; a traced value <= 0
        gives NaN).
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.
      reduce: ``"mean"``, ``"sum"`` or ``"none"`` (see the module docstring).

    Returns:
      The reduced loss (a scalar, or ``[...]`` for ``reduce="none"``) in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.losses import spearman_loss
      >>> y = jnp.array([1.0, 2.0, 3.0, 4.0])
      >>> spearman_loss(jnp.array([0.1, 0.2, 0.3, 0.4]), y, method="sigmoid",
      ...               temperature=0.01).round(3)
      Array(0., dtype=float32)
      >>> spearman_loss(jnp.array([0.4, 0.3, 0.2, 0.1]), y, method="sigmoid",
      ...               temperature=0.01).round(3)
      Array(2., dtype=float32)
    """
    fn = "spearman_loss"
    _checks.check_choice(fn, "method", method, RANK_METHODS)
    frame, y = _start(fn, scores, labels, axis, where, reduce)
    t = frame.positive_scalar(temperature)
    r_pred = soft_rank(frame.x, method=method, temperature=t, where=frame.mask)
    r_true = rank(y, where=frame.mask)
    cov, va, vb = _lists.pearson_moments(r_pred, r_true, frame.mask)
    tiny = jnp.finfo(va.dtype).tiny
    # Written so that a NaN variance (NaN scores, or a traced non-positive temperature) keeps
    # ok True and the NaN reaches the loss, instead of looking like constant ranks.
    ok = ~(va <= tiny) & (vb > tiny)
    den = jnp.sqrt(jnp.where(ok, va * vb, jnp.ones((), va.dtype)))
    corr = jnp.where(ok, cov / den, jnp.zeros((), va.dtype))
    has_order = vb > tiny
    per_list = jnp.where(has_order, 1 - corr, jnp.zeros((), corr.dtype))
    return _reduce(frame, per_list, reduce)


@auto_sharding
def ndcg_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    k: int | None = None,
    method: str = "isotonic",
    temperature: ArrayLike = 1.0,
    cutoff_temperature: ArrayLike = 0.5,
    gain: str = "exp2",
    axis: int = -1,
    where: ArrayLike | None = None,
    reduce: str = "mean",
) -> jax.Array:
    r"""Soft NDCG loss: one minus NDCG@k computed from soft ranks.

    $$
    \ell(s, y) = 1 - \frac{1}{\mathrm{IDCG@k}} \sum_i
    \frac{g(y_i)}{\log_2(1 + \tilde r_i)}\ \sigma\!\Big(\frac{k + \tfrac12 - \tilde r_i}
    {\tau_k}\Big)
    $$

    with $\tilde r$ the soft ranks `rank_relax_jax.ranking.soft_rank` ``(s, descending=True)``
    (rank 1 = highest score; any method), $g$ the gain (``"exp2"``: $2^y - 1$,
    ``"linear"``: $y$) and IDCG@k the exact ideal DCG@k (as
    `rank_relax_jax.metrics.ndcg`). Both the discount and the top-k cutoff are relaxed:
    the indicator $[\tilde r_i \le k]$ becomes a sigmoid in rank units centred half way
    between positions ``k`` and ``k + 1``, of width ``cutoff_temperature`` $\tau_k$; with
    ``k=None``, or for a list of at most ``k`` valid items, there is no cutoff. As
    ``temperature`` and $\tau_k \to 0$ the loss tends to ``1 - ndcg(scores, labels, k=k)``
    for distinct scores. A narrow cutoff gives almost no gradient to relevant items ranked
    far below ``k`` (the usual weakness of NDCG@k training); a $\tau_k$ of about a rank,
    or ``k=None`` (as in the example), keeps that gradient.

    The default ``method="isotonic"`` (the permutahedron projection of Blondel et al. 2020)
    costs O(n log n) and trained at least as well as ``method="sigmoid"`` (ApproxNDCG, Qin,
    Liu & Li 2010, O(n²)) in ``examples/learning_to_rank.py`` (numbers in
    ``docs/learning_to_rank.md``). Isotonic soft ranks are exact, with zero gradient, for
    items whose scaled scores are far apart; the sigmoid method gives every pair a gradient,
    which can help when scores start out widely spread. A list without any positive gain has
    nothing to learn and gets loss 0 (zero gradient). Labels must be non-negative (see
    ``labels``): a negative relevance has no meaning in NDCG. Cost: that of the soft rank plus one
    O(n log n) sort for IDCG.

    Args:
      scores: Floating array of predictions; higher = ranked first.
      labels: Non-negative relevance of the same shape (any real dtype); 0 means not
        relevant. A negative label raises ValueError, or, when the labels are traced (e.g.
        inside ``jit``), makes that list's loss NaN; mark items to leave out with ``where``.
      k: Optional static cutoff (``None``: the whole list).
      method: A `rank_relax_jax.ranking.soft_rank` method.
      temperature: Positive smoothness of the soft rank (may be traced; a traced value <= 0
        gives NaN).
      cutoff_temperature: Positive width of the relaxed top-k cutoff, in rank units (may be
        traced; a traced value <= 0 gives NaN); unused when ``k`` is ``None``.
      gain: ``"exp2"`` or ``"linear"``.
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.
      reduce: ``"mean"``, ``"sum"`` or ``"none"`` (see the module docstring).

    Returns:
      The reduced loss (a scalar, or ``[...]`` for ``reduce="none"``) in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.losses import ndcg_loss
      >>> y = jnp.array([2.0, 0.0, 1.0])
      >>> ndcg_loss(jnp.array([3.0, 1.0, 2.0]), y, temperature=0.01).round(3)
      Array(0., dtype=float32)
      >>> ndcg_loss(jnp.array([1.0, 3.0, 2.0]), y, temperature=0.01).round(3)
      Array(0.413, dtype=float32)
    """
    fn = "ndcg_loss"
    _checks.check_choice(fn, "method", method, RANK_METHODS)
    _checks.check_choice(fn, "gain", gain, _lists.GAINS)
    frame, y = _start(fn, scores, labels, axis, where, reduce)
    kk = _lists.clip_cutoff(fn, k, frame.n)
    negative = _lists.negative_labels(fn, y)
    g = _lists.gain(fn, y, gain)
    if frame.mask is not None:
        g = jnp.where(frame.mask, g, jnp.zeros((), g.dtype))
    t = frame.positive_scalar(temperature)
    r = soft_rank(frame.x, method=method, temperature=t, descending=True, where=frame.mask)
    # Soft ranks lie in [1, m]; the floor only guards log2 against rounding below 1.
    discount = 1.0 / jnp.log2(1.0 + jnp.maximum(r, 1.0))
    if k is not None and kk < frame.n:
        tk = frame.positive_scalar(cutoff_temperature, "cutoff_temperature")
        cutoff = jax.nn.sigmoid((kk + 0.5 - r) / tk)
        # A list of at most k valid items is wholly inside the cutoff, as with the exact metric
        # (and as the same list without padding, where k >= n means no cutoff).
        short = (frame.count() <= kk)[..., None]
        discount = jnp.where(short, discount, discount * cutoff)
    dcg = jnp.sum(g * discount, axis=-1)
    ideal = _lists.ideal_dcg(g, frame.mask, kk)
    per_list = jnp.where(ideal > 0, 1 - _numerics.safe_div(dcg, ideal), jnp.zeros((), dcg.dtype))
    per_list = jnp.where(negative, jnp.asarray(jnp.nan, per_list.dtype), per_list)
    return _reduce(frame, per_list, reduce)


@auto_sharding
def listmle_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduce: str = "mean",
) -> jax.Array:
    r"""ListMLE: the Plackett–Luce negative log-likelihood of the order given by the labels.

    Without ties, with $\pi$ the items sorted by decreasing label,

    $$
    \ell(s, y) = \sum_{p=1}^{m} \Big(\log \sum_{q \ge p} e^{s_{\pi(q)}} - s_{\pi(p)}\Big),
    $$

    computed with a reverse cumulative logsumexp (``jax.lax.cumlogsumexp``), which is stable
    for scores of any magnitude. Xia, Liu, Wang, Zhang & Li (2008), "Listwise approach to
    learning to rank".

    Ties in the labels: every item of a tie group competes against the items not ranked above
    its group, *including all members of its own group* (Breslow's treatment of ties in the
    Cox partial likelihood). The loss is therefore the same for every order of the tied items
    (deterministic, no key), equals ListMLE when there are no ties, and has its infimum where
    tied items get equal scores and better groups score higher. Constant labels give
    $-\sum_i \log \operatorname{softmax}(s)_i \ge m \log m$, a finite loss that is smallest
    for equal scores. A list of length 1 gives 0; a fully masked list gives 0. Cost: one
    O(n log n) sort and an O(n) scan.

    Args:
      scores: Floating array of predictions; higher = ranked first.
      labels: Relevance of the same shape (any real dtype); only their order matters.
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.
      reduce: ``"mean"``, ``"sum"`` or ``"none"`` (see the module docstring).

    Returns:
      The reduced loss (a scalar, or ``[...]`` for ``reduce="none"``) in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.losses import listmle_loss
      >>> y = jnp.array([2.0, 0.0, 1.0])
      >>> listmle_loss(jnp.array([3.0, -3.0, 0.0]), y).round(3)
      Array(0.1, dtype=float32)
      >>> listmle_loss(jnp.array([-3.0, 3.0, 0.0]), y).round(3)
      Array(9.1, dtype=float32)
    """
    fn = "listmle_loss"
    frame, y = _start(fn, scores, labels, axis, where, reduce)
    x = frame.x
    valid = frame.valid()
    perm = _sort.argsort(y, frame.mask, descending=True)
    xs = jnp.take_along_axis(x, perm, axis=-1)
    if frame.mask is not None:
        xs = jnp.where(jnp.take_along_axis(frame.mask, perm, -1), xs, _numerics.log_zero(xs.dtype))
    # tail[p] = log sum_{q >= p} exp(xs[q]) over sorted positions; padding sorts last.
    tail = jax.lax.cumlogsumexp(xs, axis=xs.ndim - 1, reverse=True)
    group_start = rank(y, descending=True, where=frame.mask, ties="min").astype(jnp.int32) - 1
    log_den = jnp.take_along_axis(tail, jnp.maximum(group_start, 0), axis=-1)
    per_item = jnp.where(valid, log_den - x, jnp.zeros((), x.dtype))
    return _reduce(frame, jnp.sum(per_item, axis=-1), reduce)


@auto_sharding
def listnet_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduce: str = "mean",
) -> jax.Array:
    r"""ListNet: cross-entropy between the top-one probabilities of labels and scores.

    $$
    \ell(s, y) = -\sum_i \operatorname{softmax}(y)_i \log \operatorname{softmax}(s)_i
    $$

    over the valid items (Cao, Qin, Liu, Tsai & Li 2007, top-one probability with
    $\varphi = \exp$). It is minimized by ``scores = labels + c``, which orders the items
    correctly; its minimum is the entropy of $\operatorname{softmax}(y)$, not 0. Ties in
    the labels get equal target probability. Constant labels give a uniform target (the
    loss is smallest for equal scores); a list of length 1 and a fully masked list give 0.
    Cost: O(n).

    Args:
      scores: Floating array of predictions; higher = ranked first.
      labels: Relevance of the same shape (any real dtype).
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.
      reduce: ``"mean"``, ``"sum"`` or ``"none"`` (see the module docstring).

    Returns:
      The reduced loss (a scalar, or ``[...]`` for ``reduce="none"``) in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.losses import listnet_loss
      >>> y = jnp.array([2.0, 0.0, 1.0])
      >>> listnet_loss(y, y).round(3), listnet_loss(-y, y).round(3)
      (Array(0.832, dtype=float32), Array(1.983, dtype=float32))
    """
    fn = "listnet_loss"
    frame, y = _start(fn, scores, labels, axis, where, reduce)
    target = _numerics.masked_softmax(y, frame.mask)
    logp = _numerics.masked_log_softmax(frame.x, frame.mask)
    per_item = jnp.where(frame.valid(), target * logp, jnp.zeros((), logp.dtype))
    return _reduce(frame, -jnp.sum(per_item, axis=-1), reduce)


@auto_sharding
def pairwise_logistic_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduce: str = "mean",
) -> jax.Array:
    r"""RankNet: logistic loss on every pair of items with different labels.

    $$
    \ell(s, y) = \frac{1}{|P|} \sum_{(i, j) \in P} \log\big(1 + e^{-(s_i - s_j)}\big),
    \qquad P = \{(i, j) : y_i > y_j\}
    $$

    over valid pairs (Burges et al. 2005, "Learning to rank using gradient descent"). The mean
    over pairs makes lists of different lengths weigh the same. Pairs with tied labels carry
    no preference and are skipped, so constant labels, a list of length 1 and a fully masked
    list give 0 (zero gradient). Cost: O(n²) time and memory per list (all pairs).

    Args:
      scores: Floating array of predictions; higher = ranked first.
      labels: Relevance of the same shape (any real dtype); only their order matters.
      axis: The list axis.
      where: Optional boolean mask broadcastable to ``scores``; ``False`` marks padding.
      reduce: ``"mean"``, ``"sum"`` or ``"none"`` (see the module docstring).

    Returns:
      The reduced loss (a scalar, or ``[...]`` for ``reduce="none"``) in the dtype of ``scores``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.losses import pairwise_logistic_loss
      >>> y = jnp.array([2.0, 0.0, 1.0])
      >>> pairwise_logistic_loss(jnp.array([3.0, -3.0, 0.0]), y).round(3)
      Array(0.033, dtype=float32)
    """
    fn = "pairwise_logistic_loss"
    frame, y = _start(fn, scores, labels, axis, where, reduce)
    x = frame.x
    valid = frame.valid()
    pairs = (y[..., :, None] > y[..., None, :]) & valid[..., :, None] & valid[..., None, :]
    margin = x[..., :, None] - x[..., None, :]
    terms = jnp.where(pairs, jax.nn.softplus(-margin), jnp.zeros((), x.dtype))
    count = jnp.sum(pairs, axis=(-2, -1)).astype(x.dtype)
    return _reduce(frame, _numerics.safe_div(jnp.sum(terms, axis=(-2, -1)), count), reduce)
