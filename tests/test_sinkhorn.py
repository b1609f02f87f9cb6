"""Tests of ``method="sinkhorn"`` (Cuturi et al. 2019; top-k: Xie et al. 2020).

The contract harness (``test_contract.py``) already runs jit/vmap/axis/masked == filtered/
padding/dtype/finite-difference/hard-limit checks on every registered method, sinkhorn
included, at the default options. This file checks what is specific to optimal transport:
the marginals (doubly stochastic up to the tolerance), monotone sorts at convergence, the other
squashes and options, numerically hard inputs, finite float32 gradients at n = 1,000, and
agreement with ``ott.tools.soft_sort`` when ott-jax is installed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.test_util import check_grads

from rank_relax_jax import soft_permutation, soft_rank, soft_sort, soft_topk_mask, topk_mask

TIGHT = {"threshold": 1e-10, "num_iterations": 3000}


def _distinct(shape, seed=0, gap=0.3):
    rng = np.random.default_rng(seed)
    base = np.arange(shape[-1]) * gap + np.cumsum(rng.uniform(0, gap, size=shape), axis=-1)
    return rng.permuted(base - base.mean(axis=-1, keepdims=True), axis=-1)


@functools.cache
def _jitted(op, **kw):
    fns = {"rank": soft_rank, "sort": soft_sort, "permutation": soft_permutation}
    return jax.jit(lambda x, t: fns[op](x, method="sinkhorn", temperature=t, **kw))


@pytest.mark.parametrize("squash", ["sigmoid", "minmax", "none"])
def test_hard_limit_every_squash(squash):
    x = _distinct((3, 8), seed=1, gap=0.5)
    if squash == "none":  # targets live on [0, 1]: feed values there
        x = (x - x.min(-1, keepdims=True)) / np.ptp(x, axis=-1, keepdims=True)
    t = 1e-3 if squash != "none" else 1e-4
    kw = {"method": "sinkhorn", "squash": squash, "threshold": 1e-6}

    @jax.jit  # both directions and both ops in one compile
    def ranks_and_sorts(v, t):
        return [
            (soft_rank(v, temperature=t, descending=d, **kw),
             soft_sort(v, temperature=t, descending=d, **kw))
            for d in (False, True)
        ]  # fmt: skip

    outs = ranks_and_sorts(jnp.asarray(x), t)
    for descending, (ranks, srt) in zip((False, True), outs, strict=True):
        sign = -1.0 if descending else 1.0
        np.testing.assert_allclose(ranks, scipy.stats.rankdata(sign * x, axis=-1), atol=1e-3)
        np.testing.assert_allclose(srt, sign * np.sort(sign * x, axis=-1), atol=1e-3)
    mask = soft_topk_mask(
        jnp.asarray(x), 3, method="sinkhorn", temperature=t, squash=squash, threshold=1e-6
    )
    np.testing.assert_allclose(mask, topk_mask(jnp.asarray(x), 3), atol=1e-3)


@pytest.mark.parametrize("threshold", [1e-3, 1e-8])
def test_permutation_is_doubly_stochastic_up_to_the_tolerance(threshold):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 12)))
    where = jnp.asarray(np.arange(12)[None, :] < np.array([[12], [9], [5], [1]]))
    p = soft_permutation(
        x, method="sinkhorn", temperature=0.02, where=where, threshold=threshold,
        num_iterations=3000,
    )  # fmt: skip
    m = np.asarray(where.sum(-1))
    for i in range(4):
        block = np.asarray(p[i])[: m[i]][:, np.asarray(where[i])]
        np.testing.assert_allclose(block.sum(-1), 1.0, atol=1e-12)  # rows: exact (g update)
        np.testing.assert_array_less(np.abs(block.sum(0) - 1.0), threshold)  # columns
        assert np.all(block >= 0)
    # A looser tolerance is visibly looser: the tight solve is not trivially exact.
    if threshold == 1e-3:
        cols = np.asarray(p[0]).sum(0)
        assert np.max(np.abs(cols - 1.0)) > 1e-8


def test_sort_is_monotone_and_ranks_sum_at_convergence():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 15))
    x[:, :4] = x[:, 4:5]  # ties
    x[1] *= 1e3
    for t in (0.01, 0.1, 1.0):
        s = np.asarray(_jitted("sort", **TIGHT)(jnp.asarray(x), t))
        assert np.all(np.diff(s, axis=-1) >= -1e-12), t
        assert np.all((s >= x.min(-1, keepdims=True) - 1e-12) & (s <= x.max(-1, keepdims=True)))
        r = np.asarray(_jitted("rank", **TIGHT)(jnp.asarray(x), t))
        np.testing.assert_allclose(r.sum(-1), 15 * 16 / 2, rtol=1e-12)
        np.testing.assert_allclose(r[:, :4], r[:, :1].repeat(4, -1), rtol=1e-9)  # ties share


def test_topk_sums_to_k_and_selects_all_when_fewer_valid_than_k():
    x = jnp.asarray(_distinct((2, 9), seed=4))
    where = jnp.asarray(np.arange(9)[None, :] < np.array([[9], [2]]))
    mask = np.asarray(soft_topk_mask(x, 3, method="sinkhorn", temperature=0.05, where=where))
    np.testing.assert_allclose(mask.sum(-1), [3.0, 2.0], rtol=1e-12)
    np.testing.assert_allclose(mask[1, :2], 1.0, rtol=1e-12)
    assert np.all(mask[0] > 0.0) and np.all(mask[0] < 1.0 + 1e-3)


def test_gradients_match_finite_differences_with_fixed_iterations():
    # threshold=0: exactly num_iterations iterations, a smooth function of x and temperature.
    x = jnp.asarray(_distinct((2, 5), seed=5, gap=0.2))
    w = jnp.asarray(np.random.default_rng(6).normal(size=(2, 5)))
    fixed = {"threshold": 0.0, "num_iterations": 40}

    def loss(v, t):
        r = soft_rank(v, method="sinkhorn", temperature=t, squash="minmax", **fixed)
        s = soft_sort(v, method="sinkhorn", temperature=t, descending=True, **fixed)
        m = soft_topk_mask(v, 2, method="sinkhorn", temperature=t, **fixed)
        return jnp.sum(w * (r + s + m))

    # Reverse mode only: the contract harness checks forward mode at the default options.
    check_grads(loss, (x, jnp.asarray(0.05)), order=1, modes=("rev",), atol=1e-5)
    check_grads(
        lambda v: jnp.sum(w * soft_rank(v, method="sinkhorn", temperature=0.3, squash="none",
                                        **fixed)), (x,), order=1, modes=("rev",), atol=1e-5
    )  # fmt: skip


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_no_nan_at_ties_extreme_magnitudes_and_padding(dtype):
    big = float(jnp.finfo(dtype).max) / 8
    rows = np.array(
        [
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # all tied
            [1e30, -1e30, 3e30, 1e30, 0.0, 2e30],
            [1e-30, -1e-30, 3e-30, 1e-30, 0.0, 2e-30],
            [big, -big, 0.0, 1.0, -1.0, 2.0],
            [0.5, 0.25, 7.0, -2.0, 3.0, 1.0],  # padded below
            [0.5, 0.25, 7.0, -2.0, 3.0, 1.0],  # fully padded
        ]
    )
    where = np.ones(rows.shape, bool)
    where[4, 3:] = False
    where[5] = False
    x = jnp.asarray(rows, dtype)
    w = jnp.asarray(np.random.default_rng(7).normal(size=rows.shape), dtype)

    @jax.jit  # one compile per dtype: the temperature is traced
    def grad_and_outputs(v, t):
        def loss(u):
            kw = {"method": "sinkhorn", "temperature": t, "where": jnp.asarray(where)}
            r = soft_rank(u, **kw)
            s = soft_sort(u, **kw) / big
            m = soft_topk_mask(u, 2, **kw)
            p = soft_permutation(u, **kw).sum(-2)
            return jnp.sum(w * (r + s + m + p)), (r, m)

        return jax.grad(loss, has_aux=True)(v)

    for t in (1e-3, 0.1):
        g, (r, m) = grad_and_outputs(x, jnp.asarray(t, dtype))
        assert np.all(np.isfinite(np.asarray(g))), t
        assert np.all(np.isfinite(np.asarray(r))) and np.all(np.isfinite(np.asarray(m)))
        np.testing.assert_allclose(np.asarray(r[0], np.float64), 3.5, rtol=1e-3)  # ties average
        np.testing.assert_allclose(np.asarray(m[0], np.float64), 1 / 3, rtol=1e-3)
        np.testing.assert_array_equal(np.asarray(g)[~where], 0.0)
        # Scale invariance (squash="sigmoid"): the 1e30 and 1e-30 rows rank alike.
        np.testing.assert_allclose(np.asarray(r[1]), np.asarray(r[2]), atol=1e-3)


def test_float32_gradients_are_finite_at_n_1000():
    # OTT's implicit backward gives non-finite gradients here; the unrolled one must not.
    x = jax.random.normal(jax.random.key(0), (1000,), jnp.float32)
    w = jax.random.normal(jax.random.key(1), (1000,), jnp.float32)

    @jax.jit
    def grads(v, t):
        def loss(u):
            r = soft_rank(u, method="sinkhorn", temperature=t)
            m = soft_topk_mask(u, 100, method="sinkhorn", temperature=t)
            return jnp.sum(w * r) + jnp.sum(w * m)

        return jax.grad(loss)(v)

    for t in (1e-2, 1e-3):
        g = np.asarray(grads(x, t))
        assert g.dtype == np.float32
        assert np.all(np.isfinite(g)), t
        assert np.any(g != 0.0), t


# ------------------------------------------------------------------------ ott-jax reference


def test_matches_ott_soft_sort_at_matched_epsilon():
    # Both solve the same strictly convex problem (sigmoid-of-whitened inputs, grid targets,
    # squared cost, absolute epsilon), whose plan is unique. Run to a marginal error of 1e-9 in
    # float64, both agree to about 1e-9 times the output's scale; 1e-6 leaves room for the two
    # stopping rules (ours: max relative row error; OTT: L1 error) and OTT's std + 1e-10.
    soft_sort_ott = pytest.importorskip(
        "ott.tools.soft_sort", reason="ott-jax not installed (pip install '.[bench]')"
    )
    x = jnp.asarray(np.random.default_rng(8).normal(size=(2, 20)))
    ott_kw = {"threshold": 1e-10, "max_iterations": 20000}
    for eps in (1e-2,):  # OTT's default; one value keeps the (OTT-side) compiles few
        with jax.numpy_rank_promotion("allow"):  # OTT's own code relies on rank promotion
            ref_r = soft_sort_ott.ranks(x, axis=-1, epsilon=eps, **ott_kw) + 1.0  # 0-based
            ref_s = soft_sort_ott.sort(x, axis=-1, epsilon=eps, **ott_kw)
            ref_m = soft_sort_ott.topk_mask(x, axis=-1, k=5, epsilon=eps, **ott_kw)
        ours_r = soft_rank(x, method="sinkhorn", temperature=eps, **TIGHT)
        np.testing.assert_allclose(ours_r, ref_r, atol=1e-6 * 20)
        ours_s = soft_sort(x, method="sinkhorn", temperature=eps, **TIGHT)
        np.testing.assert_allclose(ours_s, ref_s, atol=1e-6)
        ours_m = soft_topk_mask(x, 5, method="sinkhorn", temperature=eps, **TIGHT)
        np.testing.assert_allclose(ours_m, ref_m, atol=1e-6)
