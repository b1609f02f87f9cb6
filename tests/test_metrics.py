"""Tests for the exact ranking metrics (rank_relax_jax.metrics).

References: scikit-learn (``ndcg_score``, ``average_precision_score``), scipy (``spearmanr``,
``kendalltau``), and brute force over every tie-break ordering for the metrics defined as an
expectation over random tie-breaks (MRR, recall@k, precision@k, NDCG).
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import average_precision_score, ndcg_score

from rank_relax_jax import losses, metrics

B, N = 40, 7


def _data(seed, shape=(B, N), levels=4):
    """Small integer-valued scores and labels, so ties are frequent in both."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, levels, shape).astype(np.float64)
    y = rng.integers(0, levels, shape).astype(np.float64)
    return s, y


def _ragged_mask(rows):
    """Lengths cycle through 0, 2, 5 and N: few distinct filtered shapes, so few compiles."""
    lengths = np.resize([0, 2, 5, N], rows)
    return np.arange(N) < lengths[:, None]


# Jitted once per static configuration: far faster than op-by-op dispatch on a loaded CPU.
J = SimpleNamespace(
    ndcg=jax.jit(metrics.ndcg, static_argnames=("k", "gain", "axis")),
    recall_at_k=jax.jit(metrics.recall_at_k, static_argnums=2, static_argnames="axis"),
    precision_at_k=jax.jit(metrics.precision_at_k, static_argnums=2, static_argnames="axis"),
    mrr=jax.jit(metrics.mrr, static_argnames=("k", "axis")),
    average_precision=jax.jit(metrics.average_precision, static_argnames="axis"),
    spearman=jax.jit(metrics.spearman, static_argnames="axis"),
    kendall_tau=jax.jit(metrics.kendall_tau, static_argnames="axis"),
)


# ---------------------------------------------------------------- references


@pytest.mark.parametrize("k", [None, 1, 5, 20])
@pytest.mark.parametrize("gain", ["linear", "exp2"])
def test_ndcg_matches_sklearn_with_ties(k, gain):
    s, y = _data(0)
    ours = np.asarray(J.ndcg(jnp.asarray(s), jnp.asarray(y), k=k, gain=gain))
    gains = y if gain == "linear" else 2.0**y - 1
    ref = np.array([ndcg_score(gains[i : i + 1], s[i : i + 1], k=k) for i in range(B)])
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_ndcg_continuous_scores_match_sklearn():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(B, 30))
    y = rng.integers(0, 5, (B, 30)).astype(np.float64)
    ours = np.asarray(J.ndcg(jnp.asarray(s), jnp.asarray(y), k=10, gain="linear"))
    ref = np.array([ndcg_score(y[i : i + 1], s[i : i + 1], k=10) for i in range(B)])
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_average_precision_matches_sklearn_with_ties():
    s, y = _data(2)
    ours = np.asarray(J.average_precision(jnp.asarray(s), jnp.asarray(y)))
    ref = [average_precision_score(y[i] > 0, s[i]) if (y[i] > 0).any() else 0.0 for i in range(B)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize(
    ("ours", "ref"),
    [(J.spearman, scipy.stats.spearmanr), (J.kendall_tau, scipy.stats.kendalltau)],
)
def test_correlations_match_scipy_with_ties(ours, ref):
    s, y = _data(3)
    got = np.asarray(ours(jnp.asarray(s), jnp.asarray(y)))
    want = np.array([ref(s[i], y[i]).statistic for i in range(B)])
    defined = np.isfinite(want)
    assert defined.sum() > B // 2
    np.testing.assert_allclose(got[defined], want[defined], atol=1e-12)
    # Where scipy gives NaN (a constant input), we give the documented 0.
    np.testing.assert_array_equal(got[~defined], 0.0)


def _expected_over_tie_breaks(s, y, metric):
    """Average of ``metric(order)`` over every order consistent with the scores (brute force)."""
    values = []
    for perm in itertools.permutations(range(len(s))):
        ranked = s[list(perm)]
        if np.all(np.diff(ranked) <= 0):  # a valid descending order (ties in any order)
            values.append(metric(y[list(perm)]))
    return np.mean(values)


def _rr(y_ordered, k):
    hits = np.flatnonzero(y_ordered[:k] > 0)
    return 1.0 / (hits[0] + 1) if hits.size else 0.0


@pytest.mark.parametrize("k", [None, 2])
def test_mrr_is_expectation_over_tie_breaks(k):
    s, y = _data(4, shape=(25, 6), levels=3)
    ours = np.asarray(J.mrr(jnp.asarray(s), jnp.asarray(y), k=k))
    kk = 6 if k is None else k
    ref = [_expected_over_tie_breaks(s[i], y[i], lambda o: _rr(o, kk)) for i in range(25)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_recall_and_precision_are_expectations_over_tie_breaks():
    s, y = _data(5, shape=(25, 6), levels=3)
    k = 3
    rec = np.asarray(J.recall_at_k(jnp.asarray(s), jnp.asarray(y), k))
    prec = np.asarray(J.precision_at_k(jnp.asarray(s), jnp.asarray(y), k))
    for i in range(25):
        n_rel = (y[i] > 0).sum()
        hits = _expected_over_tie_breaks(s[i], y[i], lambda o: float((o[:k] > 0).sum()))
        assert rec[i] == pytest.approx(hits / n_rel if n_rel else 0.0, abs=1e-12)
        assert prec[i] == pytest.approx(hits / k, abs=1e-12)


def test_ndcg_is_expectation_over_tie_breaks():
    s, y = _data(6, shape=(10, 6), levels=3)
    ours = np.asarray(J.ndcg(jnp.asarray(s), jnp.asarray(y), k=3))
    disc = 1 / np.log2(np.arange(2, 5))
    for i in range(10):
        ideal = np.sum(np.sort(2.0 ** y[i] - 1)[::-1][:3] * disc)
        dcg = _expected_over_tie_breaks(s[i], y[i], lambda o: np.sum((2.0 ** o[:3] - 1) * disc))
        assert ours[i] == pytest.approx(dcg / ideal if ideal else 0.0, abs=1e-12)


# ---------------------------------------------------------------- contract

_ALL = {
    "ndcg": lambda s, y, **kw: J.ndcg(s, y, k=3, **kw),
    "recall@3": lambda s, y, **kw: J.recall_at_k(s, y, 3, **kw),
    "precision@3": lambda s, y, **kw: J.precision_at_k(s, y, 3, **kw),
    "mrr": lambda s, y, **kw: J.mrr(s, y, **kw),
    "average_precision": lambda s, y, **kw: J.average_precision(s, y, **kw),
    "spearman": lambda s, y, **kw: J.spearman(s, y, **kw),
    "kendall_tau": lambda s, y, **kw: J.kendall_tau(s, y, **kw),
}
# Jitted once per metric (and per shape): far faster than op-by-op dispatch on a loaded CPU.
ALL = {name: jax.jit(fn, static_argnames="axis") for name, fn in _ALL.items()}


@pytest.mark.parametrize("name", sorted(ALL))
def test_masked_equals_filtered(name):
    fn = ALL[name]
    s, y = _data(7, shape=(12, N))
    mask = _ragged_mask(12)
    # Garbage (including NaN) in the padding must not leak.
    s_pad = np.where(mask, s, np.nan)
    y_pad = np.where(mask, y, 9.0)
    got = np.asarray(fn(jnp.asarray(s_pad), jnp.asarray(y_pad), where=jnp.asarray(mask)))
    assert np.all(np.isfinite(got))
    for i in range(12):
        m = mask[i]
        if not m.any():
            assert got[i] == 0.0
            continue
        want = np.asarray(fn(jnp.asarray(s[i][m]), jnp.asarray(y[i][m])))
        assert got[i] == pytest.approx(float(want), abs=1e-12), i


@pytest.mark.parametrize("name", sorted(ALL))
def test_batch_dims_jit_vmap_axis(name):
    fn = ALL[name]
    s, y = _data(9, shape=(3, 4, N))
    s, y = jnp.asarray(s), jnp.asarray(y)
    full = fn(s, y)
    assert full.shape == (3, 4)
    flat = fn(s.reshape(12, N), y.reshape(12, N)).reshape(3, 4)
    np.testing.assert_allclose(full, flat, atol=1e-12)
    np.testing.assert_allclose(jax.jit(fn)(s, y), full, atol=1e-12)
    np.testing.assert_allclose(jax.vmap(fn)(s, y), full, atol=1e-12)
    moved = fn(jnp.moveaxis(s, -1, 0), jnp.moveaxis(y, -1, 0), axis=0)
    np.testing.assert_allclose(moved, full, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ALL))
def test_degenerate_lists_are_finite(name):
    fn = ALL[name]
    # Row 0: no relevant item and constant scores; row 1: constant labels. Same shape for both,
    # so one compile serves them.
    s = jnp.stack([jnp.zeros(5), jnp.arange(5.0)])
    y = jnp.stack([jnp.zeros(5), jnp.ones(5)])
    assert np.all(np.isfinite(fn(s, y)))
    assert np.all(np.isfinite(fn(jnp.array([[0.3]]), jnp.array([[1.0]]))))  # length-1 list
    all_masked = fn(jnp.ones((2, 5)), jnp.ones((2, 5)), where=jnp.zeros((2, 5), bool))
    np.testing.assert_array_equal(all_masked, 0.0)


def test_metrics_have_zero_finite_gradient():
    s = jnp.array([[0.2, 0.2, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0]])
    y = jnp.array([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    for name in ("ndcg", "mrr", "spearman"):
        g = jax.grad(lambda v, name=name: jnp.sum(ALL[name](v, y)))(s)
        np.testing.assert_array_equal(g, 0.0)


def test_no_relevant_values_are_documented_zero():
    s = jnp.array([0.3, 0.1, 0.2])
    y = jnp.zeros(3)
    for name in ["ndcg", "recall@3", "precision@3", "mrr", "average_precision"]:
        assert float(ALL[name](s, y)) == 0.0


def test_perfect_and_reversed_orderings():
    y = jnp.array([3.0, 2.0, 1.0, 0.0, 0.0])
    s = jnp.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert float(J.ndcg(s, y)) == pytest.approx(1.0)
    assert float(J.ndcg(-s, y)) < 0.6
    assert float(J.spearman(s, y)) > 0.9
    assert float(J.kendall_tau(-s, y)) < -0.9
    assert float(J.mrr(s, y)) == 1.0
    assert float(J.mrr(-s, y)) == pytest.approx(1 / 3)
    assert float(J.average_precision(s, y)) == 1.0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float64])
def test_dtype_preserved_and_integer_labels(dtype):
    s = jnp.array([[0.5, 0.2, 0.9]], dtype)
    y = jnp.array([[2, 0, 1]], jnp.int32)
    out = J.ndcg(s, y)
    assert out.dtype == dtype
    assert float(out[0]) == pytest.approx(
        ndcg_score(np.array([[3.0, 0.0, 1.0]]), np.array([[0.5, 0.2, 0.9]])), rel=1e-2
    )


def test_nan_score_propagates_to_its_list_only():
    s = jnp.array([[0.1, jnp.nan, 0.3], [0.1, 0.2, 0.3]])
    y = jnp.array([[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]])
    for name in ["ndcg", "mrr", "recall@3", "average_precision"]:
        out = np.asarray(ALL[name](s, y))
        assert np.isnan(out[0]) and np.isfinite(out[1]), name


@pytest.mark.parametrize("shape", [(3, 0), (0, 4)])
def test_empty_lists_and_batches(shape):
    # An empty list has no relevant item: every metric is 0 (as for a query without relevant
    # items); an empty batch gives an empty result.
    x = jnp.zeros(shape)
    for name in ("ndcg", "mrr", "average_precision", "spearman", "kendall_tau"):
        out = getattr(metrics, name)(x, x)
        assert out.shape == shape[:-1], name
        np.testing.assert_array_equal(out, 0.0)
    for name in ("ndcg_loss", "spearman_loss", "listmle_loss", "listnet_loss"):
        loss = getattr(losses, name)
        assert float(loss(x, x)) == 0.0, name
        assert jax.grad(lambda s, loss=loss: loss(s, x))(x).shape == shape, name
