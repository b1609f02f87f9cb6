"""Differentiable sorting networks (`method="network"`, rank_relax_jax/methods/network.py).

The contract suite (test_contract.py) runs the default network (bitonic, logistic); this file
covers both networks and every sigmoid: layer counts, the hard limit, doubly stochastic
permutations and their consistency with the sort and the ranks, the monotonicity theorem of
the ICLR 2022 paper (and that the logistic sigmoid breaks it), masked == filtered, float64
finite-difference gradients, and finiteness at ties, extreme magnitudes and padding. Each
jitted function takes the temperature as an argument, so one compile serves every temperature.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.test_util import check_grads

from rank_relax_jax import ranking
from rank_relax_jax.methods import network as net

NETWORKS = net.NETWORKS
SIGMOIDS = net.SIGMOIDS


@functools.cache
def ops(network, sigmoid, descending=False):
    """Jitted ``(x, t, where) -> (sort, rank, permutation)`` for one configuration."""

    def f(x, t, where=None):
        kw = dict(
            method="network",
            network=network,
            sigmoid=sigmoid,
            temperature=t,
            descending=descending,
            where=where,
        )
        return (
            ranking.soft_sort(x, **kw),
            ranking.soft_rank(x, **kw),
            ranking.soft_permutation(x, **kw),
        )

    return jax.jit(f)


@functools.cache
def sort_fn(network, sigmoid):
    """Jitted ``x -> soft_sort(x)`` at temperature 0.3 (for Jacobians)."""
    return jax.jit(
        lambda x: ranking.soft_sort(
            x, method="network", network=network, sigmoid=sigmoid, temperature=0.3
        )
    )


def _distinct(shape, seed=0, gap=0.5):
    rng = np.random.default_rng(seed)
    n = shape[-1]
    base = np.arange(n) * gap + np.cumsum(rng.uniform(0, gap / 2, size=shape), axis=-1)
    return rng.permuted(base - base.mean(axis=-1, keepdims=True), axis=-1)


def _hard(x, descending=False):
    sign = -1.0 if descending else 1.0
    order = np.argsort(sign * x, axis=-1, kind="stable")
    return (
        np.take_along_axis(x, order, -1),
        scipy.stats.rankdata(sign * x, axis=-1),
        np.eye(x.shape[-1])[order],
    )


def test_layer_counts():
    for n in (1, 2, 3, 5, 16, 17, 1000):
        assert len(net.layer_table(n, "odd_even")) == n
        k = (n - 1).bit_length()  # log2 of the bitonic network's size
        assert net.network_size(n, "bitonic") == (1 << k if n > 1 else n)
        assert len(net.layer_table(n, "bitonic")) == k * (k + 1) // 2


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("sigmoid", SIGMOIDS)
def test_hard_limit(network, sigmoid):
    # The logistic tail is exp(-z); the monotone ones decay like 1/z (error τ/π per swap).
    t = 1e-3 if sigmoid == "logistic" else 1e-7
    x = _distinct((3, 9), seed=1)
    descending = sigmoid == "cauchy"
    out = ops(network, sigmoid, descending)(jnp.asarray(x), t)
    for got, ref in zip(out, _hard(x, descending), strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 17])
def test_any_length_doubly_stochastic_and_consistent(network, n):
    x = _distinct((2, n), seed=n)
    f = ops(network, "cauchy")
    sort, rank, p = (np.asarray(a) for a in f(jnp.asarray(x), 1e-8))
    for got, ref in zip((sort, rank, p), _hard(x), strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-6)
    sort, rank, p = (np.asarray(a) for a in f(jnp.asarray(x), 0.7))
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)  # rows
    np.testing.assert_allclose(p.sum(-2), 1.0, atol=1e-12)  # columns: doubly stochastic
    if n > 1:
        assert np.all(p.max(-1) < 1 - 1e-3)  # really soft at this temperature
    np.testing.assert_allclose(sort, np.einsum("brj,bj->br", p, x), atol=1e-12)
    np.testing.assert_allclose(rank, np.einsum("r,brj->bj", np.arange(1, n + 1), p), atol=1e-12)
    np.testing.assert_allclose(rank.sum(-1), n * (n + 1) / 2, atol=1e-10)
    assert np.all(np.diff(sort, axis=-1) >= 0)


@pytest.mark.parametrize("network", NETWORKS)
def test_tie_and_huge_temperature_limits(network):
    # network.py, "Limit behaviour": a comparator of a tie averages only its own pair, so a
    # two-way tie gets its average rank (logistic: what leaks onto the tied wires first is
    # e^(-1/tau), far below tau) but a constant list of 5 does not get 3 everywhere; as
    # tau -> inf, P tends to a fixed product of pair-averaging layers (the same for every x),
    # uniform only for the bitonic network on a power of two.
    f = ops(network, "logistic")
    x = jnp.asarray([[0.0] * 5, [1.0, 3.0, 1.0, 2.0, 0.0]])
    rank = np.asarray(f(x, 1e-3)[1])
    constant = (
        [2.8125] * 4 + [3.75] if network == "bitonic" else [75 / 32] * 2 + [3.25] * 2 + [3.8125]
    )
    np.testing.assert_allclose(rank[0], constant, atol=1e-9)
    np.testing.assert_allclose(rank[1], [2.5, 5.0, 2.5, 4.0, 1.0], atol=1e-6)
    for n, uniform in ((5, False), (4, network == "bitonic")):
        p = np.asarray(f(jnp.asarray(_distinct((2, n), seed=n)), 1e8)[2])
        np.testing.assert_allclose(p[0], p[1], atol=1e-6)
        assert (np.abs(p - 1 / n).max() < 1e-6) == uniform


@pytest.mark.parametrize("network", NETWORKS)
def test_monotone_sigmoids_give_monotone_networks(network):
    # ICLR 2022: f' in Θ(1/z²) makes every relaxed swap, hence the network, monotone.
    rng = np.random.default_rng(3)
    x = jnp.asarray(np.round(rng.normal(size=7), 1))  # near ties and far pairs
    for sigmoid in net.MONOTONE_SIGMOIDS:
        jac = np.asarray(jax.jacfwd(sort_fn(network, sigmoid))(x))
        assert jac.min() >= -1e-12, (sigmoid, jac.min())
        np.testing.assert_allclose(jac.sum(-1), 1.0, atol=1e-10)  # shift equivariance
    # The logistic sigmoid is not monotone: min_f(x, 0) = x σ(-x/τ) falls for x/τ > 1.28.
    jac = jax.jacfwd(sort_fn(network, "logistic"))(jnp.array([1.0, 0.0]))
    assert jac[0, 0] < -0.01


@pytest.mark.parametrize("network", NETWORKS)
def test_masked_equals_filtered(network):
    n = 11
    x = _distinct((5, n), seed=4)
    rng = np.random.default_rng(5)
    mask = np.zeros((5, n), bool)
    for i, m in enumerate((1, 3, 4, 5, 9)):  # bitonic sizes 1, 4, 4, 8, 16 (of 16)
        mask[i, rng.choice(n, size=m, replace=False)] = True
    f = ops(network, "cauchy", True)
    garbage = jnp.asarray(np.where(mask, x, np.nan))
    sort, rank, p = (np.asarray(a) for a in f(garbage, 0.4, jnp.asarray(mask)))
    for i in range(5):
        keep = mask[i]
        m = int(keep.sum())
        ref = [np.asarray(a) for a in f(jnp.asarray(x[i][keep]), 0.4)]
        np.testing.assert_allclose(sort[i][:m], ref[0], rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(sort[i][m:], 0.0)
        np.testing.assert_allclose(rank[i][keep], ref[1], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(p[i][:m][:, keep], ref[2], rtol=1e-13, atol=1e-13)
        assert np.all(p[i][:, ~keep] == 0) and np.all(p[i][m:] == 0)


@pytest.mark.parametrize(
    ("network", "sigmoid"),
    # bitonic-logistic is the default, which test_contract.py checks.
    [("odd_even", "cauchy"), ("bitonic", "reciprocal"), ("bitonic", "optimal")],
)
def test_gradients_match_finite_differences(network, sigmoid):
    x = jnp.asarray(_distinct((2, 6), seed=6, gap=0.3))
    mask = jnp.array([[True] * 6, [True, False, True, True, False, True]])
    weights = [jnp.asarray(np.random.default_rng(i).normal(size=s)) for i, s in
               enumerate([(2, 6), (2, 6), (2, 6, 6)])]  # fmt: skip
    f = ops(network, sigmoid)

    def loss(v):
        return sum(jnp.sum(w * o) for w, o in zip(weights, f(v, 0.5, mask), strict=True))

    check_grads(loss, (x,), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("network", NETWORKS)
def test_finite_at_ties_extremes_and_padding(network):
    # float32: where overflow would happen first. The permutation (slow to compile) is checked
    # with one sigmoid; sort and rank with every one.
    big = float(jnp.finfo(jnp.float32).max) / 4
    x = jnp.asarray(
        [
            [1.0, 1.0, 1.0, 2.0, 2.0, 0.0],  # ties
            [1e30, -1e30, 0.0, 1.0, 1e30, 3.0],  # extreme magnitudes and a tie at 1e30
            [big, -big, big, 0.0, -big, 1e-30],  # near the dtype's limit
            [0.5, 9.0, -2.0, 0.5, 7.0, 1.0],  # padded below
        ],
        jnp.float32,
    )
    mask = jnp.ones(x.shape, bool).at[3, 1].set(False).at[3, 4].set(False)
    for sigmoid in SIGMOIDS:
        f = ops(network, sigmoid)
        n_outs = 3 if sigmoid == "cauchy" else 2

        @jax.jit
        def outs_and_grad(v, t, f=f, n_outs=n_outs):
            def loss(v):
                outs = f(v, t, mask)[:n_outs]
                return sum(jnp.sum(jnp.sin(o)) for o in outs), outs

            return jax.grad(loss, has_aux=True)(v)

        for t in (1e-6, 1.0):
            grad, outs = outs_and_grad(x, t)
            for o in (*outs, grad):
                assert bool(jnp.all(jnp.isfinite(o))), (sigmoid, t)
            assert bool(jnp.all(grad[3, jnp.array([1, 4])] == 0))
            np.testing.assert_allclose(outs[1].sum(-1), [21, 21, 21, 10], rtol=1e-6)
            # Rescaling: 1e30 next to 0, 1 and 3 still sorts them at a small temperature.
            if t == 1e-6 and sigmoid == "logistic":
                np.testing.assert_allclose(outs[0][1], np.sort(np.asarray(x[1])), rtol=1e-6)
