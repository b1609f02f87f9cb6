"""Tests for the exact ranking metrics (rank_relax_jax.metrics).

References: scikit-learn (``ndcg_score``, ``average_precision_score``), scipy (``spearmanr``,
``kendalltau``), and brute force over every tie-break ordering for the metrics defined as an
expectation over random tie-breaks (MRR, recall@k, precision@k, NDCG). The contract of every
metric (masked == filtered with garbage in the padding, any batch shape, jit, vmap, ``axis``,
degenerate and empty lists, dtypes) runs in the contract harness: ``tests/_contract.py``
registers the metrics, ``test_contract.py`` checks them.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from _contract import METRIC_OPS
from sklearn.metrics import average_precision_score, ndcg_score

from rank_relax_jax import metrics

B, N = 40, 7


def _data(seed, shape=(B, N), levels=4):
    """Small integer-valued scores and labels, so ties are frequent in both."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, levels, shape).astype(np.float64)
    y = rng.integers(0, levels, shape).astype(np.float64)
    return s, y


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


# ---------------------------------------------------------------- values

# The records of the contract harness, jitted once per metric (and per shape).
ALL = {op.name: op.compiled for op in METRIC_OPS}


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
def test_integer_labels_are_gains_at_every_dtype(dtype):
    # The dtype itself is checked by the harness (test_contract.py::test_dtype_is_preserved).
    s = jnp.array([[0.5, 0.2, 0.9]], dtype)
    y = jnp.array([[2, 0, 1]], jnp.int32)
    out = J.ndcg(s, y)
    assert float(out[0]) == pytest.approx(
        ndcg_score(np.array([[3.0, 0.0, 1.0]]), np.array([[0.5, 0.2, 0.9]])), rel=1e-2
    )


def test_nan_score_propagates_to_its_list_only():
    s = jnp.array([[0.1, jnp.nan, 0.3], [0.1, 0.2, 0.3]])
    y = jnp.array([[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]])
    for name in ["ndcg", "mrr", "recall@3", "average_precision"]:
        out = np.asarray(ALL[name](s, y))
        assert np.isnan(out[0]) and np.isfinite(out[1]), name
