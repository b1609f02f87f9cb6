"""Tests for the ranking losses (rank_relax_jax.losses).

The contract of every loss (in the manner of Rax's loss tests: masked == filtered with garbage in
the padding, padding gets zero gradient, fully masked lists give 0 with no NaN gradient,
length-1 lists and constant labels are finite, any batch shape, vmap, ``axis``, dtypes, empty
inputs) runs in the contract harness: ``tests/_contract.py`` registers the losses,
``test_contract.py`` checks them. Here: the three reductions, each loss's own definition, and
that each is minimized by a correctly ordered prediction: loss(correct) < loss(reversed), and
gradient descent from a random prediction improves the exact NDCG.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _contract import LOSS_FNS
from jax.test_util import check_grads

from rank_relax_jax import losses, metrics
from rank_relax_jax.ranking import RANK_METHODS

N = 6


def _case(name, fn):
    # Jitted: one compile per shape instead of op-by-op dispatch (much faster on a loaded CPU).
    fn = jax.jit(fn, static_argnames=("reduce", "axis"))
    return pytest.param(name, fn, id=name)


# The losses the contract harness registers, each fn(scores, labels, **kw) with the library's
# default reduction. Temperatures are moderate so gradients are non-trivial.
LOSSES = [_case(name, fn) for name, fn in LOSS_FNS.items()]


def _data(seed, shape=(4, N)):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=shape)
    y = rng.integers(0, 4, shape).astype(np.float64)  # graded labels with ties
    return jnp.asarray(s), jnp.asarray(y)


# ---------------------------------------------------------------- reductions


@pytest.mark.parametrize(("name", "fn"), LOSSES)
def test_reductions(name, fn):
    s, y = _data(1, shape=(2, 3, N))
    per = fn(s, y, reduce="none")
    np.testing.assert_allclose(fn(s, y), jnp.mean(per), atol=1e-12)
    np.testing.assert_allclose(fn(s, y, reduce="sum"), jnp.sum(per), atol=1e-12)
    # "mean" averages over the lists that have a valid item.
    w = jnp.ones((2, 3, N), bool).at[0, 0].set(False)
    np.testing.assert_allclose(
        fn(s, y, where=w), jnp.sum(fn(s, y, where=w, reduce="none")) / 5, atol=1e-12
    )


@pytest.mark.parametrize(
    ("name", "fn"), [p for p in LOSSES if "isotonic" not in p.id]
)  # isotonic ranks are piecewise linear: finite differences straddle kinks
def test_gradients_match_finite_differences(name, fn):
    s, y = _data(3, shape=(2, 5))
    check_grads(lambda v: fn(v, y), (s,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------- minimized by the right order


@pytest.mark.parametrize(("name", "fn"), LOSSES)
def test_correct_order_beats_reversed_and_random(name, fn):
    y = jnp.array([[3.0, 2.0, 2.0, 1.0, 0.0, 0.0], [0.0, 1.0, 4.0, 0.0, 2.0, 3.0]])
    # Correctly ordered predictions at a few scales (ListNet's minimizer is y + c, the others
    # prefer wider margins); the best of them must beat the reversed and random orders.
    loss_correct = jnp.min(jnp.stack([fn(c * y, y, reduce="none") for c in (1, 2, 4)]), axis=0)
    loss_reversed = fn(-2.0 * y, y, reduce="none")
    rng = np.random.default_rng(4)
    assert np.all(loss_correct < loss_reversed), name
    for _ in range(5):
        random = jnp.asarray(rng.normal(size=y.shape))
        assert np.all(loss_correct <= fn(random, y, reduce="none") + 1e-9), name


@pytest.mark.parametrize(("name", "fn"), LOSSES)
def test_gradient_descent_from_random_improves_ndcg(name, fn):
    rng = np.random.default_rng(5)
    y = jnp.asarray(rng.integers(0, 5, (8, 10)).astype(np.float64))
    s0 = jnp.asarray(rng.normal(size=(8, 10)))
    step = jax.jit(lambda v: v - 0.5 * jax.grad(lambda u: fn(u, y, reduce="sum"))(v))

    def run(v):
        return jax.lax.fori_loop(0, 150, lambda _, u: step(u), v)

    s1 = jax.jit(run)(s0)
    before = float(jnp.mean(metrics.ndcg(s0, y)))
    after = float(jnp.mean(metrics.ndcg(s1, y)))
    assert after > before + 0.05, (name, before, after)
    assert after > 0.9, (name, after)


@pytest.mark.parametrize("method", RANK_METHODS)
def test_soft_rank_losses_accept_every_method(method):
    y = jnp.array([[3.0, 2.0, 2.0, 1.0, 0.0, 0.0]])
    correct = 2.0 * y + jnp.arange(N)[None, ::-1] * 0.1
    # SmoothI's ranks are only accurate at small temperatures (at 0.1 they leave [1, n]).
    t = 0.01 if method == "smoothi" else 0.1
    for loss in (losses.spearman_loss, losses.ndcg_loss):
        good = loss(correct, y, method=method, temperature=t)
        bad = loss(-correct, y, method=method, temperature=t)
        g = jax.grad(lambda v, loss=loss: loss(v, y, method=method, temperature=t))(-correct)
        assert good < bad, (loss.__name__, method)
        assert np.all(np.isfinite(g)) and np.any(g != 0), (loss.__name__, method)


# ---------------------------------------------------------------- definitions


def test_low_temperature_limits_match_exact_metrics():
    s, y = _data(6, shape=(5, 8))
    s = s * 10  # well separated relative to the temperature
    sp = losses.spearman_loss(s, y, method="sigmoid", temperature=1e-4, reduce="none")
    np.testing.assert_allclose(sp, 1 - metrics.spearman(s, y), atol=1e-4)
    for k in (None, 3):
        nd = losses.ndcg_loss(
            s, y, k=k, method="sigmoid", temperature=1e-4, cutoff_temperature=1e-3, reduce="none"
        )
        np.testing.assert_allclose(nd, 1 - metrics.ndcg(s, y, k=k), atol=1e-4)


def _plackett_luce_nll(s, order):
    s = np.asarray(s)[list(order)]
    return sum(np.log(np.sum(np.exp(s[p:]))) - s[p] for p in range(len(s)))


def test_listmle_is_plackett_luce_nll_without_ties_and_breslow_with_ties():
    rng = np.random.default_rng(7)
    s = rng.normal(size=5)
    y = np.array([0.0, 3.0, 1.0, 4.0, 2.0])
    ours = float(losses.listmle_loss(jnp.asarray(s), jnp.asarray(y)))
    assert ours == pytest.approx(_plackett_luce_nll(s, np.argsort(-y)), rel=1e-12)
    # Ties: each tied item's denominator holds its whole group and everything below it.
    y = np.array([1.0, 2.0, 1.0, 0.0, 2.0])
    want = 0.0
    for i in range(5):
        want += np.log(np.sum(np.exp(s[y <= y[i]]))) - s[i]
    ours = float(losses.listmle_loss(jnp.asarray(s), jnp.asarray(y)))
    assert ours == pytest.approx(want, rel=1e-12)
    # ... which does not depend on how the tied items are ordered in the input.
    perm = np.array([2, 4, 0, 3, 1])
    again = float(losses.listmle_loss(jnp.asarray(s[perm]), jnp.asarray(y[perm])))
    assert again == pytest.approx(ours, rel=1e-12)


def test_listmle_is_stable_for_huge_scores():
    s = jnp.array([1e30, -1e30, 0.0, 5e29])
    y = jnp.array([3.0, 0.0, 1.0, 2.0])
    value, g = jax.jit(jax.value_and_grad(lambda v: losses.listmle_loss(v, y)))(s)
    assert np.isfinite(value) and np.all(np.isfinite(g))


def test_listnet_and_pairwise_definitions():
    rng = np.random.default_rng(8)
    s = rng.normal(size=6)
    y = rng.integers(0, 3, 6).astype(np.float64)
    p = np.exp(y) / np.exp(y).sum()
    logq = s - np.log(np.exp(s).sum())
    assert float(losses.listnet_loss(jnp.asarray(s), jnp.asarray(y))) == pytest.approx(
        -np.sum(p * logq), rel=1e-12
    )
    terms = [
        np.log1p(np.exp(-(s[i] - s[j])))
        for i, j in itertools.product(range(6), repeat=2)
        if y[i] > y[j]
    ]
    got = float(losses.pairwise_logistic_loss(jnp.asarray(s), jnp.asarray(y)))
    assert got == pytest.approx(np.mean(terms), rel=1e-12)


def test_temperature_change_does_not_retrace():
    s, y = _data(9)
    traces = []

    @jax.jit
    def f(v, t):
        traces.append(1)
        return losses.ndcg_loss(v, y, method="sigmoid", temperature=t, k=3, cutoff_temperature=t)

    f(s, 0.5)
    f(s, 0.1)
    assert len(traces) == 1


def test_ndcg_negative_traced_labels_give_nan():
    # NDCG needs non-negative relevance; a negative label used to give a silent loss of 0.
    # Concrete negative labels raise (test_errors.py, "negative-labels").
    s = jnp.array([[0.3, 1.0, 2.0], [1.0, 2.0, 3.0]])
    y = jnp.array([[-1.0, -2.0, -1.0], [1.0, 0.0, 2.0]])
    for fn in (losses.ndcg_loss, metrics.ndcg):
        # Traced labels cannot be checked: the lists with a negative label give NaN.
        kw = {"reduce": "none"} if fn is losses.ndcg_loss else {}
        out = jax.jit(lambda y, fn=fn, kw=kw: fn(s, y, **kw))(y)
        assert bool(jnp.isnan(out[0])) and bool(jnp.isfinite(out[1]))
        # Negative labels in the padding are fine: padding is never read.
        keep = jnp.array([[False] * 3, [True] * 3])
        np.testing.assert_allclose(fn(s, y, where=keep, **kw)[1], out[1], rtol=1e-6)
    # The reduced loss is NaN as soon as one list is, so a training loop sees it.
    assert bool(jnp.isnan(jax.jit(losses.ndcg_loss)(s, y)))
