"""Tests of the isotonic (permutahedron projection) soft rank, soft sort and soft top-k mask.

The reference below is a plain NumPy transcription of the paper's algorithms (Blondel et al.
2020, Sec. 4 and Appendix): stack-based Pool-Adjacent-Violators for the L2 and KL isotonic
problems and the projection formulas of soft rank and soft sort, written independently of the
library's parallel solver.
"""

import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rank_relax_jax.methods import _pav, isotonic
from rank_relax_jax.ranking import rank, soft_rank, soft_sort
from rank_relax_jax.topk import soft_topk_mask, topk_mask

# ----------------------------------------------------------------------------------------------
# NumPy reference.


def ref_pav(kind, a, b):
    """argmin over v_1 >= ... >= v_n; L2: ½‖v - (a - b)‖², KL: <exp(a - v), 1> + <exp(b), v>."""
    blocks = []  # [stat_a, stat_b, size]
    for ai, bi in zip(a, b, strict=True):
        blocks.append([ai - bi, 1.0, 1] if kind == "l2" else [ai, bi, 1])
        while len(blocks) > 1:
            (a1, b1, c1), (a2, b2, c2) = blocks[-2], blocks[-1]
            v1 = a1 / b1 if kind == "l2" else a1 - b1
            v2 = a2 / b2 if kind == "l2" else a2 - b2
            if v1 > v2:
                break
            if kind == "l2":
                blocks[-2:] = [[a1 + a2, b1 + b2, c1 + c2]]
            else:
                blocks[-2:] = [[np.logaddexp(a1, a2), np.logaddexp(b1, b2), c1 + c2]]
    out = []
    for sa, sb, c in blocks:
        out += [sa / sb if kind == "l2" else sa - sb] * c
    return np.array(out, dtype=np.float64)


def ref_soft_rank(x, eps, kind, descending):
    n = len(x)
    theta = (-1.0 if descending else 1.0) * np.asarray(x, np.float64) / eps
    perm = np.argsort(-theta, kind="stable")
    s = theta[perm]
    rho = np.arange(n, 0, -1, dtype=np.float64)
    if kind == "l2":
        proj = s - ref_pav("l2", s, rho)
    else:
        proj = np.exp(s - ref_pav("kl", s, np.log(rho)))
    out = np.empty(n)
    out[perm] = proj
    return out


def ref_soft_sort(x, eps, kind, descending):
    n = len(x)
    d = 1.0 if descending else -1.0
    w = -np.sort(-d * np.asarray(x, np.float64))
    r = np.arange(n, 0, -1, dtype=np.float64) / eps
    if kind == "l2":
        return d * (r - ref_pav("l2", r, w))
    return d * (r - ref_pav("kl", r, w))


# ----------------------------------------------------------------------------------------------
# Forward values against the reference.

SIZES = (1, 2, 7, 100, 1000)
EPSILONS = np.array([0.01, 0.1, 1.0, 10.0])


def _ragged():
    """Rows i < 5 hold SIZES[i] distinct valid entries, rows 5..9 the same sizes with many ties."""
    rng = np.random.default_rng(0)
    n = max(SIZES)
    x = rng.normal(size=(2 * len(SIZES), n)) * 2
    x[len(SIZES) :] = np.round(x[len(SIZES) :] * 2) / 2
    sizes = np.array(SIZES * 2)
    return x, np.arange(n)[None, :] < sizes[:, None], sizes


@functools.cache
def _batched(op, regularization):
    fn = soft_rank if op == "rank" else soft_sort

    def one(x, where, t):
        return fn(x, temperature=t, where=where, regularization=regularization)

    return jax.jit(jax.vmap(one, in_axes=(None, None, 0)))


@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("op", ["rank", "sort"])
def test_matches_reference(op, regularization):
    # One compiled call covers n in SIZES, with and without ties, and every ε (vmap).
    x, where, sizes = _ragged()
    out = np.asarray(_batched(op, regularization)(x, where, EPSILONS))
    ref_fn = ref_soft_rank if op == "rank" else ref_soft_sort
    for e, eps in enumerate(EPSILONS):
        for i, n in enumerate(sizes):
            ref = ref_fn(x[i, :n], eps, regularization, False)
            got = out[e, i, :n]
            scale = max(1.0, np.abs(ref).max())
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * scale, err_msg=f"{n=} {eps=}")
            np.testing.assert_array_equal(out[e, i, n:], 0.0)


@pytest.mark.parametrize("regularization", ["l2", "kl"])
def test_unmasked_matches_reference_and_descending_flag(regularization):
    x = np.random.default_rng(2).normal(size=(3, 7))
    x[2, :3] = 0.25  # ties
    for descending in (False, True):
        got = soft_rank(x, temperature=0.3, regularization=regularization, descending=descending)
        for row, g in zip(x, np.asarray(got), strict=True):
            ref = ref_soft_rank(row, 0.3, regularization, descending)
            np.testing.assert_allclose(g, ref, atol=1e-9)
        got = soft_sort(x, temperature=0.3, regularization=regularization, descending=descending)
        for row, g in zip(x, np.asarray(got), strict=True):
            np.testing.assert_allclose(
                g, ref_soft_sort(row, 0.3, regularization, descending), atol=1e-9
            )


def test_solver_chunks_and_merges_agree_with_reference():
    # Small chunks force the divide-and-conquer hull merges at every level.
    rng = np.random.default_rng(3)
    n = 37
    solve = jax.jit(_pav.pav, static_argnums=(0, 3))
    y = rng.normal(size=(4, n)) * 3 + np.arange(n)[::-1] * rng.uniform(0, 1, size=(4, 1))
    y[1] = np.round(y[1])
    for chunk in (2,):
        _, _, (b0, b1) = solve("l2", (jnp.asarray(y), jnp.ones_like(y)), None, chunk)
        ref = np.stack([ref_pav("l2", row, np.zeros(n)) for row in y])
        np.testing.assert_allclose(np.asarray(b0 / b1), ref, atol=1e-9)
    s = -np.sort(-rng.normal(size=(4, n)) * 4, axis=-1)
    w = np.broadcast_to(np.log(np.arange(n, 0, -1.0)), s.shape)
    _, _, (l0, l1) = solve("kl", (jnp.asarray(s), jnp.asarray(w)), None, 2)
    ref = np.stack([ref_pav("kl", a, b) for a, b in zip(s, w, strict=True)])
    np.testing.assert_allclose(np.asarray(l0 - l1), ref, atol=1e-9)


@pytest.mark.parametrize("regularization", ["l2", "kl"])
def test_rank_properties(regularization):
    x = jnp.asarray(np.random.default_rng(4).normal(size=(4, 30)))
    r = soft_rank(x, temperature=0.5, regularization=regularization)
    # A projection onto the permutahedron keeps the sum of the ranks.
    np.testing.assert_allclose(jnp.sum(r, -1), 30 * 31 / 2, rtol=1e-9)
    # Ties give equal outputs.
    xt = jnp.array([0.5, -1.0, 0.5, 2.0, 0.5])
    rt = soft_rank(xt, temperature=0.01, regularization=regularization)
    assert rt[0] == rt[2] == rt[4]
    np.testing.assert_allclose(rt, [3.0, 1.0, 3.0, 5.0, 3.0], atol=1e-6)
    # Hard limit.
    np.testing.assert_allclose(
        soft_rank(x, temperature=1e-9, regularization=regularization),
        jnp.argsort(jnp.argsort(x, axis=-1), axis=-1) + 1.0,
        atol=1e-6,
    )
    # Soft sort is monotone and tends to the sort.
    s = soft_sort(x, temperature=0.5, regularization=regularization)
    assert bool(jnp.all(jnp.diff(s, axis=-1) >= -1e-12))
    np.testing.assert_allclose(
        soft_sort(x, temperature=1e-5, regularization=regularization),
        jnp.sort(x, axis=-1),
        atol=1e-6,
    )


# ----------------------------------------------------------------------------------------------
# Padding.


@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("op", ["rank", "sort", "topk"])
def test_padding(op, regularization):
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(3, 9)))
    where = jnp.asarray(np.array([[1] * 9, [1, 0, 1, 1, 0, 1, 1, 1, 0], [0] * 9], bool))

    def f(x, where):
        if op == "topk":
            return soft_topk_mask(x, 3, temperature=0.4, where=where, regularization=regularization)
        fn = soft_rank if op == "rank" else soft_sort
        return fn(x, temperature=0.4, where=where, regularization=regularization)

    out = f(x, where)
    keep = np.asarray(where[1])
    filtered = f(x[1][keep], None)
    if op == "sort":
        np.testing.assert_allclose(out[1, : keep.sum()], filtered, atol=1e-12)
        np.testing.assert_array_equal(out[1, keep.sum() :], 0.0)
    else:
        np.testing.assert_allclose(out[1][keep], filtered, atol=1e-12)
        np.testing.assert_array_equal(out[1][~keep], 0.0)
    assert bool(jnp.all(jnp.isfinite(out)))
    np.testing.assert_array_equal(out[2], 0.0)
    # Padding (and fully masked rows) get exactly zero gradient; padding values do not matter.
    wts = jnp.asarray(rng.normal(size=(3, 9)))
    g = jax.grad(lambda x: jnp.sum(f(x, where) * wts))(x)
    assert bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_array_equal(g[~where], 0.0)
    x_junk = x.at[~where].set(1e30)
    np.testing.assert_array_equal(f(x_junk, where), out)


# ----------------------------------------------------------------------------------------------
# Batches of short rows are ordered by counting comparisons instead of sorting.


def _hard_rows(rows, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, n))
    x[::2] = np.round(x[::2])  # ties
    x[1::3][rng.random(x[1::3].shape) < 0.2] = -0.0
    x[2::5][rng.random(x[2::5].shape) < 0.1] = np.inf
    x[3::7][rng.random(x[3::7].shape) < 0.1] = np.nan
    return x


@pytest.mark.parametrize("n", [1, 2, 7, 100, 128])
def test_counting_order_is_the_stable_sort(n):
    x = jnp.asarray(_hard_rows(20, n, n))
    mask = jnp.asarray(np.random.default_rng(n + 1).random((20, n)) < 0.7)
    for m in (None, mask):
        perm, pos = jax.jit(isotonic._order)(x, m)
        assert pos is not None  # 20 rows of n <= 128 take the counting path
        ref = isotonic._axis.argsort_valid(x, m, descending=True)
        np.testing.assert_array_equal(perm, ref)
        inverse = jnp.take_along_axis(pos, perm, axis=-1)
        np.testing.assert_array_equal(inverse, np.broadcast_to(np.arange(n), (20, n)))


def test_counting_path_matches_reference():
    x = _hard_rows(24, 30, 11)[:, :30]
    x = np.where(np.isfinite(x), x, 0.5)  # the reference has no NaN/inf semantics
    for regularization in ("l2", "kl"):
        ranks = soft_rank(jnp.asarray(x), temperature=0.3, regularization=regularization)
        srt = soft_sort(jnp.asarray(x), temperature=0.3, regularization=regularization)
        for i in range(x.shape[0]):
            np.testing.assert_allclose(
                ranks[i], ref_soft_rank(x[i], 0.3, regularization, False), atol=1e-9
            )
            np.testing.assert_allclose(
                srt[i], ref_soft_sort(x[i], 0.3, regularization, False), atol=1e-9
            )


def _has_sort(fn, *args):
    return "= sort[" in str(jax.make_jaxpr(fn)(*args))


@pytest.mark.slow  # compiles large vmapped batches on both paths
def test_counting_path_is_chosen_on_the_whole_vmapped_batch():
    x = jnp.asarray(np.random.default_rng(12).normal(size=(16, 100)))
    one = functools.partial(soft_rank, temperature=0.5)
    assert not _has_sort(one, x)  # 16 rows of 100: counting
    # vmapped over 64 such batches, the 1024 rows exceed the comparison budget: sort.
    xs = jnp.broadcast_to(x, (64, 16, 100))
    assert _has_sort(jax.vmap(one), xs)
    # Both paths give the same values, and so does the vmapped counting path (4 x 16 rows).
    np.testing.assert_array_equal(jax.vmap(one)(xs)[0], one(x))
    np.testing.assert_array_equal(jax.vmap(one)(xs[:4])[3], one(x))
    g = jax.grad(lambda x: jnp.sum(jax.vmap(one)(x)[:, :, 0] ** 2))(xs[:4])
    np.testing.assert_array_equal(g[2], jax.grad(lambda x: jnp.sum(one(x)[:, 0] ** 2))(x))


# ----------------------------------------------------------------------------------------------
# Top-k masks.


@pytest.mark.parametrize("k", [1, 3, 10])
def test_topk_sums_to_k_and_l2_is_sparse(k):
    x = jnp.asarray(np.random.default_rng(6).normal(size=(5, 20)))
    for regularization in ("l2", "kl"):
        for t in (0.05, 0.5, 5.0):
            m = soft_topk_mask(x, k, temperature=t, regularization=regularization)
            np.testing.assert_allclose(jnp.sum(m, -1), k, atol=1e-5)
            assert bool(jnp.all((m >= 0) & (m <= 1)))
    m = soft_topk_mask(x, k, temperature=0.5, regularization="l2")
    # L2: the mask is clip(x/ε - τ, 0, 1); entries whose x is below the threshold are exact 0s.
    hard = topk_mask(x, k)
    assert int(jnp.sum(m == 0.0)) >= x.shape[0] * (20 - k) // 2
    assert bool(jnp.all(jnp.where(m == 0, hard == 0, True)))
    # KL: every entry is positive, the selected ones tend to be capped at 1.
    mk = soft_topk_mask(x, k, temperature=0.5, regularization="kl")
    assert bool(jnp.all(mk > 0))


def test_topk_closed_forms():
    x = jnp.asarray(np.random.default_rng(7).normal(size=(12,)))
    k, t = 4, 0.7
    m = soft_topk_mask(x, k, temperature=t, regularization="l2")
    # τ from the mask itself: on fractional entries m = x/t - τ.
    frac = (m > 0) & (m < 1)
    tau = jnp.mean(jnp.where(frac, x / t - m, 0)) * 12 / jnp.sum(frac)
    np.testing.assert_allclose(m, jnp.clip(x / t - tau, 0, 1), atol=1e-9)
    mk = soft_topk_mask(x, k, temperature=t, regularization="kl")
    unc = mk < 1
    tau = jnp.log(jnp.sum(jnp.where(unc, jnp.exp(x / t), 0)) / (k - jnp.sum(~unc)))
    np.testing.assert_allclose(mk, jnp.minimum(1, jnp.exp(x / t - tau)), atol=1e-9)


@pytest.mark.parametrize("regularization", ["l2", "kl"])
def test_topk_hard_limit_and_few_valid(regularization):
    x = jnp.asarray(np.random.default_rng(8).normal(size=(4, 15)))
    m = soft_topk_mask(x, 5, temperature=1e-4, regularization=regularization)
    np.testing.assert_allclose(m, topk_mask(x, 5), atol=1e-6)
    where = jnp.arange(15)[None, :] < jnp.array([[3], [5], [6], [15]])
    m = soft_topk_mask(x, 5, temperature=0.3, where=where, regularization=regularization)
    np.testing.assert_array_equal(m[0], jnp.where(where[0], 1.0, 0.0))
    np.testing.assert_array_equal(m[1], jnp.where(where[1], 1.0, 0.0))
    np.testing.assert_allclose(jnp.sum(m, -1), [3, 5, 5, 5], atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Derivatives.

CASES = [
    ("rank", "l2"),
    ("rank", "kl"),
    ("sort", "l2"),
    ("sort", "kl"),
    ("topk", "l2"),
    ("topk", "kl"),
]


def _op(op, regularization, descending=False):
    def f(x, t):
        if op == "rank":
            return soft_rank(x, temperature=t, regularization=regularization, descending=descending)
        if op == "sort":
            return soft_sort(x, temperature=t, regularization=regularization, descending=descending)
        return soft_topk_mask(x, 3, temperature=t, regularization=regularization)

    return f


@pytest.mark.parametrize(("op", "regularization"), CASES)
def test_derivatives(op, regularization):
    x = jnp.asarray(np.random.default_rng(9).normal(size=(2, 6)))
    f = _op(op, regularization, descending=True)
    t = jnp.asarray(0.7)
    # Finite differences, forward and reverse mode, w.r.t. x and the temperature.
    check_grads(f, (x, t), order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-5, rtol=1e-5)
    # JVP and VJP agree: <u, J v> == <J^T u, v>.
    rng = np.random.default_rng(10)
    v, u = jnp.asarray(rng.normal(size=x.shape)), jnp.asarray(rng.normal(size=x.shape))
    _, jv = jax.jvp(lambda x: f(x, t), (x,), (v,))
    _, pullback = jax.vjp(lambda x: f(x, t), x)
    (ju,) = pullback(u)
    np.testing.assert_allclose(jnp.sum(u * jv), jnp.sum(ju * v), rtol=1e-10, atol=1e-12)
    # jacfwd == jacrev, and the Jacobian is block diagonal over the batch.
    jf = jax.jacfwd(lambda x: f(x, t))(x[0])
    jr = jax.jacrev(lambda x: f(x, t))(x[0])
    np.testing.assert_allclose(jf, jr, atol=1e-12)


def test_l2_jacobian_is_block_mean():
    # Two pooled pairs and one singleton: ranks' Jacobian is (I - block means) / ε in sorted order.
    x = jnp.array([0.0, 0.1, 5.0, 5.05, 10.0])
    t = 1.0
    j = jax.jacfwd(lambda x: soft_rank(x, temperature=t))(x)
    expected = np.eye(5)
    expected[:2, :2] -= 0.5
    expected[2:4, 2:4] -= 0.5
    expected[4, 4] = 0.0
    np.testing.assert_allclose(j, expected / t, atol=1e-12)


@pytest.mark.parametrize("op", ["rank", "sort", "topk"])
def test_kl_small_temperature_is_finite(op):
    # torchsort's KL soft rank returns NaN gradients at ε = 1e-4 (its issue #63).
    x = jnp.asarray(np.random.default_rng(11).normal(size=(3, 50)) * 10)
    for dtype in (jnp.float32, jnp.float64):
        xd = x.astype(dtype)
        f = _op(op, "kl")
        for t in (1e-4, 1e-6):
            out = f(xd, t)
            g = jax.grad(
                lambda x, t=t, f=f, dtype=dtype: jnp.sum(
                    f(x, t) * jnp.arange(50.0, dtype=dtype)[None, :]
                )
            )(xd)
            assert bool(jnp.all(jnp.isfinite(out))), (dtype, t)
            assert bool(jnp.all(jnp.isfinite(g))), (dtype, t)


# ----------------------------------------------------------------------------------------------
# Transformations and dtypes.


@pytest.mark.parametrize("temperature", [1e-3, 3e-4])
def test_kl_singletons_are_exact_under_jit(temperature):
    # Found by the method guide's measurements: with no block pooled (distinct scores, small
    # temperature) the KL soft sort was off by up to 0.03 (0.12 at 3e-4) in float32 under jit:
    # XLA fused positions / temperature into the output's subtraction and LLVM made it an FMA,
    # while the solver had seen the rounded quotient. Singletons now return their value.
    x = jax.random.normal(jax.random.key(0), (1000,))
    for descending in (False, True):
        kw = dict(regularization="kl", descending=descending)
        f = jax.jit(lambda x, t, kw=kw: soft_sort(x, temperature=t, **kw))
        want = jnp.sort(x)[::-1] if descending else jnp.sort(x)
        np.testing.assert_array_equal(np.asarray(f(x, temperature)), np.asarray(want))


def test_jit_vmap_and_traced_temperature():
    x = jnp.asarray(np.random.default_rng(12).normal(size=(4, 3, 11)))
    f = jax.jit(lambda x, t: soft_rank(x, temperature=t, axis=1))
    batch = f(x, 0.3)
    per_row = jax.vmap(lambda xi: soft_rank(xi, temperature=0.3, axis=0))(x)
    np.testing.assert_allclose(batch, per_row, atol=1e-12)
    np.testing.assert_allclose(f(x, 0.6), soft_rank(x, temperature=0.6, axis=1), atol=1e-12)
    assert f._cache_size() == 1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_low_precision(dtype):
    x = jnp.asarray(np.random.default_rng(13).normal(size=(2, 40)), dtype)
    for fn in (soft_rank, soft_sort):
        out = fn(x, temperature=0.5)
        assert out.dtype == dtype
        ref = fn(x.astype(jnp.float64), temperature=0.5)
        np.testing.assert_allclose(out.astype(jnp.float64), ref, rtol=2e-2, atol=2e-2)
    m = soft_topk_mask(x, 4, temperature=0.5)
    assert m.dtype == dtype


@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (0, 0), (2, 0, 4)])
def test_empty_inputs_give_empty_outputs(shape):
    # An empty batch (or empty lists) is nothing to solve; the shapes pass through.
    x = jnp.ones(shape)
    for regularization in ("l2", "kl"):
        assert soft_rank(x, regularization=regularization).shape == shape
        assert soft_sort(x, regularization=regularization).shape == shape
        if shape[-1]:
            assert soft_topk_mask(x, 1, regularization=regularization).shape == shape
    assert rank(x).shape == shape  # the exact op shares the un-permuting scatter
    g = jax.grad(lambda x: jnp.sum(soft_rank(x)))(x)
    assert g.shape == shape


def test_against_torchsort():
    hint = "optional peer not installed: bash benchmarks/install_torchsort.sh"
    torchsort = pytest.importorskip("torchsort", reason=f"torchsort {hint}")
    torch = pytest.importorskip("torch", reason=f"torch {hint}")
    x = np.random.default_rng(14).normal(size=(3, 50))
    for regularization in ("l2", "kl"):
        for t in (0.1, 1.0):
            ref = torchsort.soft_rank(
                torch.tensor(x), regularization=regularization, regularization_strength=t
            ).numpy()
            got = soft_rank(jnp.asarray(x), temperature=t, regularization=regularization)
            np.testing.assert_allclose(got, ref, atol=1e-6)
            ref = torchsort.soft_sort(
                torch.tensor(x), regularization=regularization, regularization_strength=t
            ).numpy()
            got = soft_sort(jnp.asarray(x), temperature=t, regularization=regularization)
            np.testing.assert_allclose(got, ref, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Issue 16: padding (masked entries and the power-of-two tail of a partial 32-entry chunk) must
# never pool with valid entries, in any dtype. In float64 the KL sort of a list of 33 once put
# its last block into the padding and came out 1.0 too low at the top.


def ref_topk(x, k, eps, kind):
    n = len(x)
    if n <= k:
        return np.ones(n)
    theta = np.asarray(x, np.float64) / eps
    perm = np.argsort(-theta, kind="stable")
    s = theta[perm]
    hot = np.arange(n) < k
    if kind == "l2":
        proj = np.clip(s - ref_pav("l2", s, hot.astype(np.float64)), 0, 1)
    else:
        with np.errstate(divide="ignore"):
            logw = np.log(hot.astype(np.float64))
        proj = np.minimum(np.exp(s - ref_pav("kl", s, logw)), 1)
    out = np.empty(n)
    out[perm] = proj
    return out


# Every list length 1..130 (one ragged batch per width: 128 takes the counting path, 130 the
# sort path) and the lengths around every multiple of 32 up to 257 (two to four merge levels
# above the 32-entry chunks; the issue's n = 513 is in the unmasked test).
_AROUND = sorted({m + d for m in range(32, 257, 32) for d in (-1, 0, 1)} | {257})
_WIDTH_SIZES = {128: list(range(1, 129)), 130: list(range(1, 131)), 260: _AROUND}
_EPS, _SHIFT, _K = 0.1, 100.0, 3
# Relative tolerance against the float64 reference: KL ranks in float32 lose a few ulps of
# x / ε ≈ 3000 in the exponent (measured up to 1.1e-4).
_TOL = {np.float32: 5e-4, np.float64: 1e-9}


def _lists(width, sizes, dtype, seed):
    """Rows of N(0, 100²) values (every fourth row with ties), valid on a prefix of each row."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 100, size=(len(sizes), width))
    x[::4] = np.round(x[::4] / 50) * 50
    return x.astype(dtype), np.arange(width)[None, :] < np.array(sizes)[:, None]


@functools.cache
def _all_ops(regularization, masked, k=_K):
    def ops(x):
        kw = {"temperature": _EPS, "regularization": regularization}
        x, where = x if masked else (x, None)
        return (
            soft_rank(x, where=where, **kw),
            soft_rank(x + _SHIFT, where=where, **kw),
            soft_sort(x, where=where, **kw),
            soft_sort(x + _SHIFT, where=where, **kw),
            soft_topk_mask(x, k, where=where, **kw),
        )

    return jax.jit(ops)


def _check_lists(x, sizes, outs, regularization, dtype, k=_K):
    rank_, rank_c, sort_, sort_c, topk_ = (np.asarray(o, np.float64) for o in outs)
    tol = _TOL[dtype]
    for i, n in enumerate(sizes):
        row = x[i, :n].astype(np.float64)
        msg = f"{n=} {regularization=} {np.dtype(dtype).name}"
        for got, ref in (
            (rank_[i, :n], ref_soft_rank(row, _EPS, regularization, False)),
            (sort_[i, :n], ref_soft_sort(row, _EPS, regularization, False)),
            (topk_[i, :n], ref_topk(row, k, _EPS, regularization)),
        ):
            scale = max(1.0, np.abs(ref).max())
            np.testing.assert_allclose(got, ref, rtol=0, atol=tol * scale, err_msg=msg)
        # Shift equivariance: sort(x + c) = sort(x) + c and rank(x + c) = rank(x), up to the
        # rounding of x + c (ranks see it divided by ε, inside an exponential for KL).
        big = np.abs(row).max() + _SHIFT
        ulps = 8 * np.finfo(dtype).eps * big
        np.testing.assert_allclose(
            sort_c[i, :n] - _SHIFT, sort_[i, :n], rtol=0, atol=ulps + tol * big, err_msg=msg
        )
        atol = (ulps / _EPS + tol) * n
        np.testing.assert_allclose(rank_c[i, :n], rank_[i, :n], rtol=0, atol=atol, err_msg=msg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("width", sorted(_WIDTH_SIZES))
def test_padding_never_pools_with_valid_entries(width, regularization, dtype):
    sizes = _WIDTH_SIZES[width]
    x, where = _lists(width, sizes, dtype, seed=width)
    outs = _all_ops(regularization, True)((jnp.asarray(x), jnp.asarray(where)))
    for o in outs:
        assert o.dtype == dtype
        np.testing.assert_array_equal(np.asarray(o)[~where], 0.0)
    _check_lists(x, sizes, outs, regularization, dtype)


# ----------------------------------------------------------------------------------------------
# Issue 16, second bug: blocks whose values agree up to rounding. The merges' bridge searches
# compare block values with pooled values computed from suffix/prefix sums; where two adjacent
# blocks differ by less than that rounding, a search predicate read false between trues and
# the search pooled blocks that are clearly in order.

# 41 values on a grid of 50 (the list of 41 in the width-130 batch of the tests above).
_TIES_41 = np.repeat(
    [-250.0, -200.0, -150.0, -100.0, -50.0, 0.0, 50.0, 100.0, 150.0, 200.0, 350.0],
    [1, 1, 1, 4, 4, 15, 6, 3, 3, 2, 1],
)


def test_kl_sort_of_shifted_ties():
    # KL soft sort of x + 100 at ε = 0.1 came out 10 (one step of ρ/ε) too low on its last 10
    # entries in float64: in sorted order, blocks [0, 25) and [25, 30) have values 260 +
    # 4.54e-5 that differ by 8e-22 (one ulp apart as computed), block [30, 31) is 260 and
    # [31, 41) is 250. Merging the two 32-entry chunks, the pool [25, 41) read as high as block
    # [0, 25) after rounding, the tangent search then took the whole row as the pool (the last
    # true of its predicate is at 31), and [31, 41) got 260.
    x = _TIES_41
    for shift in (0.0, 100.0, -100.0, 1000.0):
        out = soft_sort(jnp.asarray(x + shift), temperature=0.1, regularization="kl")
        ref = ref_soft_sort(x + shift, 0.1, "kl", False)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9 * 1100, err_msg=f"{shift=}")
    # The solver alone, on the isotonic problem the shifted sort solves.
    r = np.arange(41, 0, -1.0) / 0.1
    w = -np.sort(x + 100.0)
    _, _, (lse_r, lse_w) = _pav.pav("kl", (jnp.asarray(r[None]), jnp.asarray(w[None])), None)
    np.testing.assert_allclose(lse_r - lse_w, ref_pav("kl", r, w)[None], rtol=0, atol=1e-9)


def _tied_problems(rng, rows, n, kind):
    """Isotonic problems of soft sorts of lists on a grid of 50, shifted, at ε = 0.1."""
    m = rng.integers(2, n + 1, size=rows)
    x = np.round(rng.normal(0, 100, size=(rows, n)) / 50) * 50
    x += np.where(
        rng.random((rows, 1)) < 0.5,
        rng.choice([100.0, -100.0, 1000.0], (rows, 1)),
        rng.uniform(-1e3, 1e3, (rows, 1)),
    )
    valid = np.arange(n)[None, :] < m[:, None]
    r = np.maximum(m[:, None] - np.arange(n)[None, :], 1) / 0.1
    w = np.where(valid, -np.sort(np.where(valid, x, np.inf), axis=-1), 0.0)
    if kind == "l2":
        return (r - w, np.ones_like(r)), valid, m
    return (r, w), valid, m


@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("width", [64, 96])
def test_merges_of_tied_blocks_match_reference(regularization, width):
    # 2000 lists of exact ties through the merges (width 64: two chunks; 96: three, so the last
    # merge joins a segment of 64 with a short one of 32), against the sequential PAV. Before
    # the fix 14 of the 2000 KL lists of width 64 came out wrong, by 9 to 50 (lengths 33 to 48).
    rng = np.random.default_rng(16)
    (a, b), valid, m = _tied_problems(rng, 2000, width, regularization)
    _, _, (pa, pb) = _pav.pav(regularization, (jnp.asarray(a), jnp.asarray(b)), jnp.asarray(valid))
    got = np.asarray(pa / pb if regularization == "l2" else pa - pb)
    for i, mi in enumerate(m):
        if regularization == "l2":
            ref = ref_pav("l2", a[i, :mi], np.zeros(mi))
        else:
            ref = ref_pav("kl", a[i, :mi], b[i, :mi])
        np.testing.assert_allclose(got[i, :mi], ref, rtol=0, atol=1e-9, err_msg=f"{i=}")


@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("n", [5, 16, 40, 64, 300])  # below, at and above the chunk of 32
def test_flat_and_row_local_solvers_agree_exactly(n, regularization):
    # The flat layout (one device) and the row-local one (several: a sharded batch stays local)
    # make the same pooling decisions with the same roundings, so they agree bit for bit: rows
    # of ties, ragged masks, and rows shorter than a chunk (which must not pool across rows).
    rng = np.random.default_rng(n)
    (a, b), valid, _ = _tied_problems(rng, 24, n, regularization)
    a[::3] = rng.normal(size=a[::3].shape) * 5  # rows without ties too
    args = (regularization, (jnp.asarray(a), jnp.asarray(b)), jnp.asarray(valid), None)
    flat, local = _pav.pav(*args, True), _pav.pav(*args, False)
    for got, want in zip(jax.tree.leaves(flat), jax.tree.leaves(local), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    start = np.asarray(flat[0])
    assert start.min() >= 0 and start.max() < n  # positions in the row, not in the batch
    # The derivatives' gathers and scatters, flat and vmapped, against NumPy.
    vals = rng.normal(size=a.shape)
    took = np.take_along_axis(vals, start, axis=-1)
    sums = np.stack(
        [np.bincount(st, weights=v, minlength=n)[st] for st, v in zip(start, vals, strict=True)]
    )
    for one_device in (True, False):
        with mock.patch.object(_pav, "_flat_default", lambda _, one=one_device: one):
            np.testing.assert_array_equal(_pav._row_take(jnp.asarray(vals), flat[0]), took)
            np.testing.assert_allclose(
                _pav._segment_sum(jnp.asarray(vals), flat[0]), sums, rtol=1e-12, atol=1e-12
            )


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("n", [1, 2, 33, 65, 100, 129])  # 129: the sort path
def test_unmasked_partial_chunks_match_reference(n, regularization, dtype):
    # No `where`: only the power-of-two tail is padding. 16 rows take the counting path (n <= 128).
    x, _ = _lists(n, [n] * 16, dtype, seed=n)
    k = min(_K, n)
    outs = _all_ops(regularization, False, k)(jnp.asarray(x))
    _check_lists(x, [n] * 16, outs, regularization, dtype, k)


def test_issue_16_example():
    x = jnp.array([0.0] * 26 + [20.0, 20.0, 30.0, 40.0, 60.0, 60.0, 70.0], jnp.float64)
    out = soft_sort(x, temperature=0.1, regularization="kl")
    np.testing.assert_allclose(out[-3:], [50.0, 60.0, 70.0], atol=1e-9)
    np.testing.assert_allclose(soft_sort(x - 70, temperature=0.1, regularization="kl") + 70, out)

    # The VJP: shift equivariance makes every row of the Jacobian sum to 1 (the old solver
    # leaked it into the padding), and the shifted list has the same gradient.
    def top(x):
        return soft_sort(x, temperature=0.1, regularization="kl")[-1]

    g = jax.grad(top)(x)
    np.testing.assert_allclose(jnp.sum(g), 1.0, atol=1e-9)
    np.testing.assert_allclose(jax.grad(top)(x - 70), g, atol=1e-9)
