"""LapSum (Struski et al., ICML 2025) against a direct O(n²) float64 NumPy evaluation.

The reference evaluates the paper's formulas literally: every pairwise Laplace CDF and density,
thresholds found by bisection, Jacobians from the implicit function theorem written out as
dense matrices. The library's O(n log n) prefix recurrences and closed-form inverse must agree
with it in values and in vector-Jacobian products, at n up to 2,000. The contract harness
(test_contract.py) covers axis/vmap/jit/dtype/masking for every registered op as well.
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

# ----------------------------------------------------------------------------------------------
# Reference: the paper's formulas, O(n²), float64.


def _cdf(z):
    return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))


def _pdf(z):
    return 0.5 * np.exp(-np.abs(z))


def _lapsum(t, x, tau):
    """G(t) = Σ_j Lap_τ(t - x_j) for each t (vectorized over t)."""
    return _cdf((np.asarray(t)[..., None] - x) / tau).sum(-1)


def _invert(x, tau, levels):
    """t with G(t) = level, by bisection (G is increasing), for each level."""
    lo = np.full(len(levels), x.min() - 60 * tau * np.log(len(x) + 2) - 1)
    hi = np.full(len(levels), x.max() + 60 * tau * np.log(len(x) + 2) + 1)
    for _ in range(120):  # the bracket shrinks below float64 resolution
        mid = 0.5 * (lo + hi)
        below = _lapsum(mid, x, tau) < levels
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def ref_rank(x, tau, v):
    """Ranks, v·∂r/∂x and v·∂r/∂τ."""
    z = (x[:, None] - x[None, :]) / tau
    r = 0.5 + _cdf(z).sum(-1)
    p = _pdf(z) / tau
    jac = np.diag(p.sum(-1)) - p  # ∂r_i/∂x_j
    dtau = (_pdf(z) * (-z / tau)).sum(-1)
    return r, v @ jac, v @ dtau


def ref_topk(x, k, tau, v):
    s = _invert(x, tau, np.array([len(x) - k], float))[0]
    z = (x - s) / tau
    m = _cdf(z)
    p = _pdf(z)
    ds = p / p.sum()  # ∂s/∂x_j from Σ Lap((x - s)/τ) = k
    jac = (np.diag(p) - np.outer(p, ds)) / tau
    dtau_s = -(p * z).sum() / p.sum()  # ∂s/∂τ
    dtau = p * (-z / tau - dtau_s / tau)
    return m, v @ jac, v @ dtau


def ref_sort(x, tau, v, slots):
    """Sorted values at ``slots`` (0-based) and the VJP of a ``v`` that is zero elsewhere."""
    s = _invert(x, tau, slots + 0.5)
    z = (s[:, None] - x[None, :]) / tau
    p = _pdf(z)
    jac = p / p.sum(-1, keepdims=True)  # ∂s_r/∂x_j, row-stochastic
    dtau = (p * z).sum(-1) / p.sum(-1)
    return s, v[slots] @ jac, v[slots] @ dtau


def ref_permutation(x, tau):
    n = len(x)
    b = _invert(x, tau, np.arange(1, n, dtype=float))
    c = _cdf((b[:, None] - x[None, :]) / tau)
    c = np.concatenate([np.zeros((1, n)), c, np.ones((1, n))])
    return c[1:] - c[:-1]


# ----------------------------------------------------------------------------------------------
# The library: value and the VJP in x and in τ of the rank, the sort and the top-k mask (k = 7),
# in one jitted function (one compile per shape instead of three).


@jax.jit
def _values_and_vjps(x, tau, v, v_sort):
    ops = {
        "rank": (lambda a, t: soft_rank(a, method="lapsum", temperature=t), v),
        "sort": (lambda a, t: soft_sort(a, method="lapsum", temperature=t), v_sort),
        "topk": (lambda a, t: soft_topk_mask(a, 7, method="lapsum", temperature=t), v),
    }
    out = {}
    for name, (op, cot) in ops.items():
        value, vjp = jax.vjp(op, x, tau)
        out[name] = (value, *vjp(cot))
    return out


def _case(n, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n) * spread, rng.normal(size=n)


@pytest.mark.parametrize("n", [9, 2000])
@pytest.mark.parametrize("tau", [0.01, 0.3, 5.0])
def test_matches_quadratic_reference(n, tau):
    x, v = _case(n, seed=n)
    # The sort is checked at up to 150 slots (the bisection reference costs n² per slot).
    slots = np.sort(np.random.default_rng(n).permutation(n)[:150])
    v_sort = np.zeros(n)
    v_sort[slots] = v[slots]
    refs = {
        "rank": (ref_rank(x, tau, v), slice(None)),
        "sort": (ref_sort(x, tau, v_sort, slots), slots),
        "topk": (ref_topk(x, 7, tau, v), slice(None)),
    }
    got = _values_and_vjps(jnp.asarray(x), jnp.asarray(tau), jnp.asarray(v), jnp.asarray(v_sort))
    for name, ((val, gx, gt), at) in refs.items():
        out, got_gx, got_gt = got[name]
        out = out[at]
        scale = max(1.0, np.abs(val).max())
        np.testing.assert_allclose(out, val, rtol=0, atol=1e-10 * scale, err_msg=name)
        gscale = max(1.0, np.abs(gx).max())
        np.testing.assert_allclose(got_gx, gx, rtol=0, atol=1e-8 * gscale, err_msg=name)
        np.testing.assert_allclose(got_gt, gt, rtol=1e-8, atol=1e-8 * gscale, err_msg=name)


def test_permutation_matches_reference_and_is_doubly_stochastic():
    x, _ = _case(40, seed=3)
    for tau in (0.05, 1.0):
        p = np.asarray(soft_permutation(jnp.asarray(x), method="lapsum", temperature=tau))
        np.testing.assert_allclose(p, ref_permutation(x, tau), atol=1e-10)
        assert p.min() >= 0
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)  # rows: slots
        np.testing.assert_allclose(p.sum(-2), 1.0, atol=1e-12)  # columns: entries


def test_float32_agrees_with_float64_reference_at_n_2000():
    x, v = _case(2000, seed=4, spread=10.0)
    x32 = jnp.asarray(x, jnp.float32)
    r = soft_rank(x32, method="lapsum", temperature=0.5)
    np.testing.assert_allclose(r, ref_rank(x, 0.5, v)[0], atol=2e-3 * 2000 * 1e-2)
    m = soft_topk_mask(x32, 100, method="lapsum", temperature=0.5)
    np.testing.assert_allclose(m, ref_topk(x, 100, 0.5, v)[0], atol=1e-4)
    assert abs(float(jnp.sum(m)) - 100) < 1e-3


# ----------------------------------------------------------------------------------------------
# Statements of the paper.


def test_paper_statements():
    """Rank = ½ + LapSum at the point; Σ ranks = m(m+1)/2; top-k sums to k; sort inverts G.

    Struski et al. define the soft rank through LapSum evaluated at each entry, the soft top-k
    mask by the threshold whose mask sums to k (their Eq. for p_i), and soft sorting through
    the inverse of LapSum at the levels r - ½; as τ → ∞ every rank tends to (m+1)/2.
    """
    x, _ = _case(30, seed=5)
    for tau in (0.1, 1.0, 10.0):
        r = np.asarray(soft_rank(jnp.asarray(x), method="lapsum", temperature=tau))
        np.testing.assert_allclose(r, 0.5 + _lapsum(x, x, tau), atol=1e-12)
        np.testing.assert_allclose(r.sum(), 30 * 31 / 2, atol=1e-10)
        for k in (1, 13, 29):
            m = soft_topk_mask(jnp.asarray(x), k, method="lapsum", temperature=tau)
            np.testing.assert_allclose(float(jnp.sum(m)), k, atol=1e-12)
        s = np.asarray(soft_sort(jnp.asarray(x), method="lapsum", temperature=tau))
        np.testing.assert_allclose(_lapsum(s, x, tau), np.arange(1, 31) - 0.5, atol=1e-11)
        assert np.all(np.diff(s) > 0)
    r = soft_rank(jnp.asarray(x), method="lapsum", temperature=1e6)
    np.testing.assert_allclose(r, 15.5, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Limits, masks, extremes.


@pytest.mark.parametrize("tau", [1e-3, 1e-6])
def test_hard_limit(tau):
    rng = np.random.default_rng(6)
    x = rng.permutation(np.arange(12.0)) * 0.1 + rng.uniform(0, 0.01, 12)
    xj = jnp.asarray(x)
    np.testing.assert_allclose(soft_rank(xj, method="lapsum", temperature=tau),
                               scipy.stats.rankdata(x), atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(soft_rank(xj, method="lapsum", temperature=tau, descending=True),
                               scipy.stats.rankdata(-x), atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(soft_sort(xj, method="lapsum", temperature=tau), np.sort(x),
                               atol=1e-2 * tau / 1e-3)  # fmt: skip
    np.testing.assert_allclose(soft_topk_mask(xj, 4, method="lapsum", temperature=tau),
                               topk_mask(xj, 4), atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(soft_permutation(xj, method="lapsum", temperature=tau),
                               np.eye(12)[np.argsort(x)], atol=1e-6)  # fmt: skip


def test_ties_give_average_ranks_and_finite_gradients():
    x = jnp.array([1.0, 3.0, 1.0, 1.0, 2.0, 3.0])
    for tau in (1e-6, 1.0):
        r = soft_rank(x, method="lapsum", temperature=tau)
        if tau < 1e-3:
            np.testing.assert_allclose(r, scipy.stats.rankdata(np.asarray(x)), atol=1e-9)
        for op in _ALL:
            g = jax.grad(lambda v, op=op, tau=tau: jnp.sum(op(v, tau) ** 2))(x)
            assert np.all(np.isfinite(g))


_ALL = [
    lambda v, t, **kw: soft_rank(v, method="lapsum", temperature=t, **kw),
    lambda v, t, **kw: soft_sort(v, method="lapsum", temperature=t, **kw),
    lambda v, t, **kw: soft_topk_mask(v, 2, method="lapsum", temperature=t, **kw),
    lambda v, t, **kw: soft_permutation(v, method="lapsum", temperature=t, **kw),
]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_magnitudes_and_temperatures(dtype):
    x = jnp.asarray([1e30, -1e30, 0.0, 1e30, 5e29, -3.0, 2.0], dtype)
    exact = scipy.stats.rankdata(np.asarray(x, np.float64))
    where = jnp.array([True, True, True, True, True, True, False])

    @functools.partial(jax.jit, static_argnums=0)
    def run(i, t):
        op = _ALL[i]
        out = op(x, t, where=where)

        def loss(v):
            y = op(v, t, where=where)
            return jnp.sum(y * jnp.broadcast_to(jnp.arange(1.0, 8.0, dtype=dtype), y.shape))

        g = jax.grad(loss)(x)
        return out, g

    for tau in (1e-6, 1.0, 1e6):
        t = jnp.asarray(tau, dtype)
        for i in range(3):  # the permutation reuses the top-k/sort inverse
            out, g = run(i, t)
            assert np.all(np.isfinite(np.asarray(out, np.float64))), (i, tau, out)
            assert np.all(np.isfinite(np.asarray(g, np.float64))), (i, tau, g)
            assert np.all(np.asarray(g)[6] == 0.0)
        rank = np.asarray(run(0, t)[0], np.float64)
        topk = np.asarray(run(2, t)[0], np.float64)
        np.testing.assert_allclose(topk.sum(), 2.0, rtol=1e-5)
        if tau <= 1.0:  # gaps are >= 2, so τ = 1 is already close to exact
            np.testing.assert_allclose(rank[:6], scipy.stats.rankdata(exact[:6]), atol=0.2)
            np.testing.assert_allclose(topk[:6], [1, 0, 0, 1, 0, 0], atol=0.2)


def test_gaps_beyond_the_dtype_range():
    # 3.2e38 - (-3.4e38) is inf in float32: the kernels first scale each list by a power of two
    # (the permutation and top-k mask were NaN, values and gradients, before).
    x = jnp.asarray([3.2e38, -3.4e38, 1.0], jnp.float32)

    @jax.jit
    def run(v):
        def loss(u):
            outs = [op(u, jnp.float32(1.0)) for op in _ALL]  # summed in float64 (x64 on)
            return sum(
                jnp.sum(o * jnp.cos(jnp.arange(o.size)).reshape(o.shape)) for o in outs
            ), outs

        return jax.grad(loss, has_aux=True)(v)

    g, (r, s, m, p) = run(x)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(r, [3.0, 1.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(s, np.float32([-3.4e38, 1.0, 3.2e38]), rtol=1e-6)
    np.testing.assert_allclose(m, [1.0, 0.0, 1.0], atol=1e-6)  # k = 2
    np.testing.assert_allclose(p, np.eye(3)[[1, 2, 0]], atol=1e-6)


def test_masked_equals_filtered_with_garbage_padding():
    # Every row has 17 valid entries at different places: the filtered lists share one compile.
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 30))
    mask = np.zeros((3, 30), bool)
    for b in range(3):
        mask[b, rng.choice(30, 17, replace=False)] = True
    garbage = jnp.asarray(np.where(mask, x, np.inf))
    w = jnp.asarray(mask)
    for i, op in enumerate(_ALL):
        out = np.asarray(op(garbage, 0.4, where=w))
        for b in range(3):
            ref = np.asarray(op(jnp.asarray(x[b][mask[b]]), 0.4))
            c = int(mask[b].sum())
            if i in (0, 2):
                np.testing.assert_allclose(out[b][mask[b]], ref, atol=1e-12)
                assert np.all(out[b][~mask[b]] == 0)
            elif i == 1:
                np.testing.assert_allclose(out[b][:c], ref, atol=1e-12)
            else:
                np.testing.assert_allclose(out[b][:c][:, mask[b]], ref, atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_topk_mask_sums_to_k(dtype):
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.normal(size=(3, 500)) * np.array([[0.01], [1.0], [100.0]]), dtype)
    where = jnp.asarray(rng.random((3, 500)) < 0.9)
    tol = 1e-3 if dtype == jnp.float32 else 1e-9
    for k in (1, 50, 400):
        for tau in (1e-3, 0.1, 10.0):
            m = soft_topk_mask(x, k, method="lapsum", temperature=tau, where=where)
            assert m.dtype == dtype
            np.testing.assert_allclose(np.asarray(jnp.sum(m, -1), np.float64), k, atol=tol)
            assert float(jnp.min(m)) >= 0 and float(jnp.max(m)) <= 1


def test_few_valid_entries_select_all():
    x = jnp.array([[0.5, 1.0, -2.0, 3.0]])
    m = soft_topk_mask(x, 2, method="lapsum", where=jnp.array([[True, False, True, False]]))
    np.testing.assert_array_equal(m, [[1.0, 0.0, 1.0, 0.0]])


def test_gradients_match_finite_differences():
    x = jnp.asarray(np.random.default_rng(10).normal(size=(2, 6)))
    w = jnp.asarray(np.random.default_rng(11).normal(size=(2, 6)))
    where = jnp.array([[True] * 6, [True, False, True, True, False, True]])
    # x and τ together; second order through the custom JVP rules of the rank and of the
    # inverse (top-k). First order in both modes for x alone is in test_contract.py.
    for i, op in enumerate(_ALL):

        def f(v, t, op=op):
            out = op(v, t, where=where)
            return jnp.sum(out * (w if out.ndim == 2 else w[..., None]))

        order = 2 if i in (0, 2) else 1
        check_grads(f, (x, jnp.asarray(0.6)), order=order, modes=("rev",), atol=1e-6)
