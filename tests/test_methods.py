"""Method-specific tests for the pairwise, permutation and SmoothI relaxations.

Every check goes through the public ``soft_rank`` / ``soft_sort`` / ``soft_permutation``.
Forward values are compared with float64 NumPy transcriptions of the papers' formulas (one per
family below); the checks that need no reference (hard and soft limits, ties, float32 extremes,
NaN) run over every registered method, read from the registry (``tests/_cases.py``), except
those with a test module of their own. The generic jit/vmap/axis/mask/dtype/retrace checks live
in ``test_contract.py``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from _cases import NOT_UNIFORM_AT_HUGE_TEMPERATURE, SURROGATE_GRADIENT
from jax.test_util import check_grads

from rank_relax_jax import methods, ranking
from rank_relax_jax.methods import pairwise, smoothi

# Families with a NumPy reference below.
PAIRWISE = ("sigmoid", "probabilistic")
PERMUTATION = ("neuralsort", "softsort", "smoothi")
REFERENCE_RANK = (*PAIRWISE, *PERMUTATION)

# Reference-free checks: every registered method, except those tested in a module of their own.
OWN_MODULE = frozenset({"isotonic"})  # tests/test_isotonic.py
RANK = tuple(m for m in methods.methods("rank") if m not in OWN_MODULE)
SORT = tuple(m for m in methods.methods("sort") if m not in OWN_MODULE)
SORT_AND_PERMUTATION = tuple(m for m in SORT if m in methods.methods("permutation"))
EXACT_GRADIENT_RANK = tuple(m for m in RANK if m not in SURROGATE_GRADIENT)
EXACT_GRADIENT_SORT = tuple(m for m in SORT_AND_PERMUTATION if m not in SURROGATE_GRADIENT)

X5 = np.array([0.5, 2.0, 0.0, 1.5, 0.2])


def _distinct(n, seed, gap=0.3, batch=()):
    rng = np.random.default_rng(seed)
    shape = (*batch, n)
    base = np.arange(n) * gap + np.cumsum(rng.uniform(0, gap, size=shape), axis=-1)
    return rng.permuted(base - base.mean(axis=-1, keepdims=True), axis=-1)


def _kernel_call(kernel, x, temperature, descending):
    return kernel(x, None, jnp.asarray(temperature, x.dtype), descending=descending)


# Jitted public calls, cached per (method, descending), with a traced temperature: compiling
# once is much cheaper than op-by-op dispatch on a shared CPU.


@functools.cache
def rank_fn(method, descending=False):
    return jax.jit(
        lambda x, t: ranking.soft_rank(x, method=method, temperature=t, descending=descending)
    )


@functools.cache
def sort_fn(method, descending=False):
    return jax.jit(
        lambda x, t: ranking.soft_sort(x, method=method, temperature=t, descending=descending)
    )


@functools.cache
def permutation_fn(method, descending=False):
    return jax.jit(
        lambda x, t: ranking.soft_permutation(
            x, method=method, temperature=t, descending=descending
        )
    )


# ---------------------------------------------------------------- float64 NumPy references


def ref_pairwise(method, x, t, descending):
    a = -1.0 if descending else 1.0
    d = a * (x[:, None] - x[None, :])
    if method == "sigmoid":
        terms = scipy.special.expit(d / t)
    else:
        terms = scipy.stats.norm.cdf(d / (np.sqrt(2.0) * t))
    np.fill_diagonal(terms, 0.0)
    return 1.0 + terms.sum(axis=1)


def _softmax_rows(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ref_neuralsort(x, t, descending):
    # Grover et al. 2019, eq. 5: rows sort s in decreasing order.
    s = x if descending else -x
    n = len(s)
    a1 = np.abs(s[:, None] - s[None, :]).sum(axis=1)
    coef = n + 1 - 2 * np.arange(1, n + 1)
    return _softmax_rows((coef[:, None] * s[None, :] - a1[None, :]) / t)


def ref_softsort(x, t, descending):
    # Prillo & Eisenschlos 2020, eq. 3 with d = |.|.
    s = np.sort(x)[::-1] if descending else np.sort(x)
    return _softmax_rows(-np.abs(s[:, None] - x[None, :]) / t)


def smoothi_factors(x, t, descending, delta=smoothi.DELTA):
    """SmoothI indicators I[r, j] and the recursive factors B[r, j] used at each rank."""
    s = x if descending else -x
    s = s - s.min()
    n = len(s)
    prod = np.ones(n)
    rows, factors = [], []
    for _ in range(n):
        factors.append(prod.copy())
        ind = _softmax_rows((s * prod / t)[None, :])[0]
        rows.append(ind)
        prod = prod * (1.0 - ind - delta)
    return np.array(rows), np.array(factors)


def ref_permutation(method, x, t, descending):
    if method == "neuralsort":
        return ref_neuralsort(x, t, descending)
    if method == "softsort":
        return ref_softsort(x, t, descending)
    return smoothi_factors(x, t, descending)[0]


def ref_rank(method, x, t, descending):
    if method in PAIRWISE:
        return ref_pairwise(method, x, t, descending)
    p = ref_permutation(method, x, t, descending)
    return np.arange(1, len(x) + 1) @ p


# ------------------------------------------------------------------------- exact formulas


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("method", REFERENCE_RANK)
def test_soft_rank_matches_reference(method, descending):
    for seed, t in [(0, 0.4), (1, 2.0)]:
        x = np.random.default_rng(seed).normal(size=9)
        out = rank_fn(method, descending)(jnp.asarray(x), t)
        np.testing.assert_allclose(out, ref_rank(method, x, t, descending), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("method", PERMUTATION)
def test_soft_permutation_and_sort_match_reference(method, descending):
    x = np.random.default_rng(3).normal(size=8)
    t = 0.3
    ref = ref_permutation(method, x, t, descending)
    p = permutation_fn(method, descending)(jnp.asarray(x), t)
    np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.sum(p, axis=-1), 1.0, rtol=1e-12)
    out = sort_fn(method, descending)(jnp.asarray(x), t)
    np.testing.assert_allclose(out, ref @ x, rtol=1e-10, atol=1e-12)


def test_permutation_softmax_derivatives_equal_autodiff():
    # The n x n softmax of NeuralSort/SoftSort/SmoothI differentiates through dots (so XLA:CPU
    # cannot recompute a row sum per entry: NeuralSort's backward took 58 s at n = 4,600); its
    # tangent and cotangent must equal plain autodiff of the masked softmax, masked entries,
    # a fully masked row, clipped logits and second order included.
    from rank_relax_jax import _numerics
    from rank_relax_jax.methods import permutation

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 6)) * 3
    logits[1, 2, 0] = -1e308  # clipped: no tangent
    mask = rng.random((3, 1, 6)) < 0.7
    mask[2] = False
    mask[0, 0, 1] = True
    big = np.finfo(np.float64).max / 4

    def plain(x, m):
        return _numerics.masked_softmax(jnp.clip(x, -big, big), m)

    for m in (None, jnp.asarray(mask)):
        x, v = jnp.asarray(logits), jnp.asarray(rng.normal(size=logits.shape))
        ours, ref = (lambda x, f=f, m=m: f(x, m) for f in (permutation.masked_softmax, plain))
        np.testing.assert_array_equal(ours(x), ref(x))
        np.testing.assert_allclose(
            jax.jvp(ours, (x,), (v,))[1], jax.jvp(ref, (x,), (v,))[1], rtol=1e-12, atol=1e-15
        )
        np.testing.assert_allclose(
            jax.vjp(ours, x)[1](v)[0], jax.vjp(ref, x)[1](v)[0], rtol=1e-12, atol=1e-15
        )
        check_grads(ours, (x,), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_neuralsort_uses_valid_count_under_masks():
    # With padding, n in the slot coefficients (n + 1 - 2r) becomes the valid count m.
    x = np.array([0.3, 9.0, -1.0, 0.8, 9.0, 0.1])
    mask = np.array([True, False, True, True, False, True])
    p = jax.jit(ranking.soft_permutation)(jnp.asarray(x), temperature=0.5, where=jnp.asarray(mask))
    ref = ref_neuralsort(x[mask], 0.5, False)
    np.testing.assert_allclose(np.asarray(p)[:4][:, mask], ref, rtol=1e-10, atol=1e-12)


def test_pairwise_ties_get_average_rank():
    x = jnp.array([1.0, 3.0, 1.0, 1.0, -2.0])
    expected = scipy.stats.rankdata(np.asarray(x))
    for method in PAIRWISE:
        out = rank_fn(method)(x, 1e-4)
        np.testing.assert_allclose(out, expected, atol=1e-10)


# ------------------------------------------------------------------- blocked pairwise path


@pytest.mark.parametrize("method", PAIRWISE)
def test_blocked_path_equals_dense_path(method, monkeypatch):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 37)))
    mask = jnp.asarray(rng.random((2, 37)) < 0.8)
    w = jnp.asarray(rng.normal(size=(2, 37)))

    def build():
        # Fresh closures per phase: JAX caches traces by function identity, and
        # BLOCK_ELEMENTS is read at trace time.
        def loss(v, t):
            r = ranking.soft_rank(v, method=method, temperature=t, where=mask, descending=True)
            return jnp.sum(r * w)

        def run():
            r = ranking.soft_rank(x, method=method, temperature=0.3, where=mask)
            g = jax.grad(loss, argnums=(0, 1))(x, 0.3)
            _, tangent = jax.jvp(lambda v: loss(v, 0.3), (x,), (w,))
            return r, g, tangent

        return "scan" in str(jax.make_jaxpr(loss)(x, 0.3)), jax.jit(run)()

    scanned, dense = build()
    assert not scanned
    monkeypatch.setattr(pairwise, "BLOCK_ELEMENTS", 2 * 37 * 5)  # 5 rows per block, 8 blocks
    scanned, blocked = build()
    assert scanned
    for a, b in zip(jax.tree.leaves(dense), jax.tree.leaves(blocked), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_blocked_gradient_memory_is_subquadratic():
    # jit(grad) at n = 20,000: an n x n float32 temporary alone would take 1.5 GiB.
    n = 20_000
    x = jnp.zeros((n,), jnp.float32)
    w = jnp.ones((n,), jnp.float32)

    def loss(v):
        return jnp.sum(ranking.soft_rank(v, method="sigmoid", temperature=0.1) * w)

    stats = jax.jit(jax.grad(loss)).lower(x).compile().memory_analysis()
    if stats is None:
        pytest.skip("this backend reports no memory analysis")
    assert stats.temp_size_in_bytes < n * n * 4 / 16


@pytest.mark.slow  # full Jacobians through the blocked scan
@pytest.mark.parametrize("method", PAIRWISE)
def test_blocked_path_supports_forward_and_reverse_jacobians(method, monkeypatch):
    monkeypatch.setattr(pairwise, "BLOCK_ELEMENTS", 3 * 11)
    x = jnp.asarray(_distinct(11, seed=5, gap=0.2))

    @jax.jit
    def f(v):
        return ranking.soft_rank(v, method=method, temperature=0.5)

    np.testing.assert_allclose(jax.jacfwd(f)(x), jax.jacrev(f)(x), rtol=1e-12, atol=1e-12)
    check_grads(f, (x,), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


# -------------------------------------------------------------------------- hard limits


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("method", RANK)
def test_rank_hard_limit(method, descending):
    x = jnp.asarray(X5)
    out = rank_fn(method, descending)(x, 1e-3)
    np.testing.assert_allclose(out, ranking.rank(x, descending=descending), atol=1e-3)


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("method", SORT_AND_PERMUTATION)
def test_sort_and_permutation_hard_limit(method, descending):
    x = jnp.asarray(X5)
    expected = -jnp.sort(-x) if descending else jnp.sort(x)
    out = sort_fn(method, descending)(x, 1e-3)
    np.testing.assert_allclose(out, expected, atol=1e-3)
    order = np.argsort(-X5 if descending else X5)
    p = permutation_fn(method, descending)(x, 1e-3)
    np.testing.assert_allclose(p, np.eye(5)[order], atol=1e-3)


# The network's limit is not uniform (tests/_cases.py); test_numerics.py checks what it is.
@pytest.mark.parametrize("method", [m for m in RANK if m not in NOT_UNIFORM_AT_HUGE_TEMPERATURE])
def test_large_temperature_gives_middle_rank(method):
    out = rank_fn(method)(jnp.asarray(X5), 1e6)
    np.testing.assert_allclose(out, 3.0, atol=1e-4)


def test_smoothi_needs_smaller_temperature_at_deep_ranks():
    # The effective inverse temperature at rank r is alpha * (1 - delta)**(r - 1): the top rank
    # is already sharp where the last one is not (documented in smoothi_permutation).
    x = jnp.asarray(np.arange(12.0))
    p = np.asarray(permutation_fn("smoothi", True)(x, 0.1))
    assert p[0, 11] > 0.999
    assert p[11, 0] < 0.99


def test_smoothi_sort_is_not_monotone_at_moderate_temperature():
    # Unlike NeuralSort/SoftSort (whose soft sorts are monotone, see test_properties.py), the
    # SmoothI indicators' columns need not sum to 1, so I @ x can decrease between slots.
    x = jnp.asarray([0.5, 2.0, 1.5, 0.2])
    out = np.asarray(sort_fn("smoothi")(x, 0.3))
    assert np.any(np.diff(out) < 0)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("method", EXACT_GRADIENT_RANK)
def test_rank_gradients_match_finite_differences(method):
    x = jnp.asarray(_distinct(6, seed=6, gap=0.2))
    w = jnp.asarray(np.random.default_rng(7).normal(size=6))

    @jax.jit
    def f(v, t):
        return jnp.sum(ranking.soft_rank(v, method=method, temperature=t, descending=True) * w)

    # Second derivatives of the pairwise methods: test_blocked_path_supports_..._jacobians.
    check_grads(f, (x, 0.6), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
    g = jax.grad(lambda v: f(v, 0.6))(x)
    np.testing.assert_allclose(jnp.sum(g), 0.0, atol=1e-10)  # shift invariance


@pytest.mark.parametrize("method", EXACT_GRADIENT_SORT)
def test_sort_and_permutation_gradients(method):
    x = jnp.asarray(_distinct(5, seed=8, gap=0.2))
    sort = jax.jit(lambda v: sort_fn(method)(v, 0.5))
    check_grads(sort, (x,), order=1, modes=("fwd", "rev"))
    perm = jax.jit(lambda v: permutation_fn(method)(v, 0.5))
    jf = jax.jit(jax.jacfwd(perm))(x)
    jr = jax.jit(jax.jacrev(perm))(x)
    np.testing.assert_allclose(jf, jr, rtol=1e-12, atol=1e-12)


def test_smoothi_gradient_is_the_stop_gradient_surrogate():
    # With the paper's stop-gradient, d rank / dx treats every factor B^r as a constant.
    x = _distinct(5, seed=9, gap=0.3)
    t = 0.4
    _, factors = smoothi_factors(x, t, descending=False)
    w = np.random.default_rng(10).normal(size=5)

    def surrogate(v):
        s = -v - np.min(-v)
        p = np.array([_softmax_rows((s * b / t)[None, :])[0] for b in factors])
        return w @ (np.arange(1, 6) @ p)

    eps = 1e-6
    fd = np.array([surrogate(x + eps * e) - surrogate(x - eps * e) for e in np.eye(5)]) / (2 * eps)
    f = rank_fn("smoothi")
    g = jax.jit(jax.grad(lambda v: jnp.sum(f(v, t) * w)))(jnp.asarray(x))
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    jf = jax.jit(jax.jacfwd(lambda v: f(v, t)))(jnp.asarray(x))
    jr = jax.jit(jax.jacrev(lambda v: f(v, t)))(jnp.asarray(x))
    np.testing.assert_allclose(jf, jr, rtol=1e-12, atol=1e-12)


def test_smoothi_without_stop_gradient_has_exact_gradients():
    x = jnp.asarray(_distinct(5, seed=11, gap=0.3))

    @jax.jit
    def f(v):
        r = smoothi.smoothi_rank(v, None, jnp.asarray(0.5), descending=True, stop_gradient=False)
        return jnp.sum(r * jnp.arange(5.0))

    check_grads(f, (x,), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("method", RANK)
def test_ties_give_finite_gradients(method, dtype):
    x = jnp.asarray([1.0, 1.0, 1.0, 2.0, 2.0, -3.0], dtype)
    w = jnp.arange(6.0, dtype=dtype)

    @jax.jit
    def value_and_grad(v, t):
        return jax.value_and_grad(
            lambda v: jnp.sum(ranking.soft_rank(v, method=method, temperature=t) * w)
        )(v)

    for t in (1e-3, 1.0):
        r, g = value_and_grad(x, t)
        assert np.isfinite(r) and np.all(np.isfinite(g))
    if method in SORT:
        sort = sort_fn(method)
        g = jax.jit(jax.grad(lambda v: jnp.sum(sort(v, 0.01) * w)))(x)
        assert np.all(np.isfinite(g))


# -------------------------------------------------------------------- float32 at extremes


@pytest.mark.parametrize("method", RANK)
def test_float32_extremes(method):
    base = np.asarray(X5, np.float32)
    cases = [
        (base * np.float32(1e30), 1e27),  # huge values, temperature relative to the gaps
        (base + np.float32(1e4), 1e-3),  # large offset, unit-scale gaps
        (base, 1e-30),  # vanishing temperature
        (base, 1e30),  # huge temperature
    ]
    w = jnp.arange(5.0, dtype=jnp.float32)

    @jax.jit
    def rank_and_grad(v, t):
        def f(v):
            r = ranking.soft_rank(v, method=method, temperature=t)
            return jnp.sum(r * w), r

        return jax.grad(f, has_aux=True)(v)

    for x, t in cases:
        x = jnp.asarray(x)
        g, r = rank_and_grad(x, jnp.float32(t))
        assert r.dtype == jnp.float32 and np.all(np.isfinite(r)), (x, t, r)
        if t < 1e10:
            np.testing.assert_allclose(r, ranking.rank(x), atol=1e-3)
        assert np.all(np.isfinite(g)), (x, t, g)


@pytest.mark.parametrize("method", RANK)
def test_nan_propagates_to_the_list(method):
    x = jnp.asarray([0.3, np.nan, 2.5, 1.0])
    assert np.all(np.isnan(rank_fn(method)(x, 0.5)))
    if method in SORT:
        assert np.all(np.isnan(sort_fn(method)(x, 0.5)))
