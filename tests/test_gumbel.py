"""Tests of the Gumbel / perturbation samplers in ``rank_relax_jax.gumbel``.

Samplers are tested statistically, never by pinning raw draws: a fixed key gives many
independent draws (``jax.vmap`` over split keys, jitted once), and their empirical distribution is
compared with exact probabilities computed here by enumeration, with a chi-square test at
alpha = 1e-3. Every chi-square check also verifies its own power: the same counts must *reject* a
reference that moves 0.02 of probability between two categories (a 2% error).

The plumbing checks of ``DESIGN.md`` (jit == eager, vmap, ``axis`` == moveaxis, masked ==
filtered, padding and ``-inf`` never selected with exactly zero gradient, fully masked rows, empty
inputs, dtypes) run over the samplers in the contract harness (``tests/_contract.py`` registers
them, ``test_contract.py`` checks them), and their misuse errors are rows of the table in
``test_errors.py``. The rest are here: same key -> same output, typed and legacy keys, gradients
match finite differences in float64 for a fixed key, hard straight-through, no retrace when
``temperature`` changes, NaN propagation.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from _contract import SAMPLER_OPS
from jax.test_util import check_grads

from rank_relax_jax import gumbel

ALPHA = 1e-3
N_DRAWS = 100_000


# ---------------------------------------------------------------------------------------------
# Exact distributions and the chi-square helper
# ---------------------------------------------------------------------------------------------


def _softmax(w):
    e = np.exp(w - np.max(w))
    return e / e.sum()


def _plackett_luce_sequences(p, k):
    """Exact probability of every ordered k-tuple drawn without replacement with weights p."""
    out = {}
    for seq in itertools.permutations(range(len(p)), k):
        prob, left = 1.0, 1.0
        for i in seq:
            prob *= p[i] / left
            left -= p[i]
        out[seq] = prob
    return out


def _with_replacement_unions(p, k):
    """Exact probability of every set that is the union of k draws with replacement."""
    out = {}
    for seq in itertools.product(range(len(p)), repeat=k):
        s = frozenset(seq)
        out[s] = out.get(s, 0.0) + math.prod(p[i] for i in seq)
    return out


def _assert_matches(counts, probs):
    """Chi-square goodness of fit at ALPHA, plus a check that a 2% error would be detected."""
    counts = np.asarray(counts, np.float64)
    probs = np.asarray(probs, np.float64)
    assert counts.shape == probs.shape and abs(probs.sum() - 1) < 1e-9
    total = counts.sum()
    res = scipy.stats.chisquare(counts, total * probs)
    assert res.pvalue > ALPHA, (res, counts / total, probs)
    # Power: move 0.02 of mass from the most to the least likely category.
    wrong = probs.copy()
    hi, lo = np.argmax(probs), np.argmin(probs)
    delta = min(0.02, wrong[hi])
    wrong[hi] -= delta
    wrong[lo] += delta
    wrong_res = scipy.stats.chisquare(counts, total * wrong)
    assert wrong_res.pvalue < ALPHA, "the test could not detect a 2% error"


def _keys(seed, n=N_DRAWS):
    return jax.random.split(jax.random.key(seed), n)


def _draw(fn, seed, n=N_DRAWS):
    """``fn(key)`` for ``n`` independent keys, jitted and vmapped (as NumPy)."""
    return np.asarray(jax.jit(jax.vmap(fn))(_keys(seed, n)))


def _encode_sets(masks):
    """Integer code of each 0/1 row (bit i = entry i selected)."""
    masks = np.asarray(masks) > 0.5
    return masks @ (1 << np.arange(masks.shape[-1]))


def _set_code(s):
    return sum(1 << i for i in s)


def _assert_set_distribution(masks, exact):
    """``exact``: dict frozenset -> probability; ``masks``: [N, n] 0/1 samples."""
    codes = _encode_sets(masks)
    cats = sorted(exact, key=_set_code)
    counts = np.array([np.sum(codes == _set_code(s)) for s in cats])
    assert counts.sum() == len(codes), "samples outside the support"
    _assert_matches(counts, [exact[s] for s in cats])


LOGITS = np.array([1.2, 0.3, -0.4, 0.8, -1.5])


# ---------------------------------------------------------------------------------------------
# Distributions
# ---------------------------------------------------------------------------------------------


_W = LOGITS  # NumPy at module level: jnp arrays made at import would miss x64


@jax.jit
def _gumbel_softmax_argmax(keys, temperature, scale):
    def one(key):
        y = gumbel.gumbel_softmax(key, jnp.asarray(_W), temperature=temperature, scale=scale)
        return jnp.argmax(y, axis=-1)

    return jax.vmap(one)(keys)


@pytest.mark.parametrize(("temperature", "scale"), [(0.1, 1.0), (1.0, 1.0), (5.0, 2.5), (1.0, 0.4)])
def test_gumbel_softmax_argmax_follows_softmax(temperature, scale):
    # Traced temperature and scale: one compilation serves every case.
    draws = np.asarray(_gumbel_softmax_argmax(_keys(1), temperature, scale))
    _assert_matches(np.bincount(draws, minlength=len(LOGITS)), _softmax(scale * LOGITS))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_gumbel_topk_is_plackett_luce(k):
    out = jax.jit(jax.vmap(lambda key: gumbel.gumbel_topk(key, _W, k)))(_keys(3 + k))
    idx, masks = np.asarray(out.indices), np.asarray(out.mask)
    exact = _plackett_luce_sequences(_softmax(LOGITS), k)
    seqs = sorted(exact)
    code = {s: c for c, s in enumerate(seqs)}
    observed = np.array([code[tuple(r)] for r in idx.tolist()])
    _assert_matches(np.bincount(observed, minlength=len(seqs)), [exact[s] for s in seqs])
    # The first index alone is softmax-distributed; inclusion matches the enumeration.
    _assert_matches(np.bincount(idx[:, 0], minlength=5), _softmax(LOGITS))
    incl = np.zeros(5)
    for s, prob in exact.items():
        incl[list(s)] += prob
    for i in range(5):
        hits = masks[:, i].sum()
        if 0 < incl[i] < 1:
            _assert_matches([hits, N_DRAWS - hits], [incl[i], 1 - incl[i]])
    np.testing.assert_array_equal(masks.sum(-1), k)


def test_gumbel_topk_with_padding_and_neg_inf_is_plackett_luce_on_the_rest():
    # Masked == filtered, in distribution: padding anywhere and -inf scores are simply absent.
    w = jnp.asarray([0.5, 9.0, -jnp.inf, 1.0, 9.0, -0.5])
    where = jnp.asarray([True, False, True, True, False, True])
    rest = np.array([0, 3, 5])
    idx = _draw(lambda key: gumbel.gumbel_topk(key, w, 2, where=where).indices, seed=9)
    exact = _plackett_luce_sequences(_softmax(np.asarray(w)[rest]), 2)
    seqs = sorted(exact)
    code = {tuple(rest[list(s)]): c for c, s in enumerate(seqs)}
    observed = np.array([code[tuple(r)] for r in idx.tolist()])
    _assert_matches(np.bincount(observed, minlength=len(seqs)), [exact[s] for s in seqs])


_W4 = np.array([1.0, 0.2, -0.3, 0.6])


@functools.partial(jax.jit, static_argnames=("k", "num_samples"))
def _max_masks(keys, scale, k, num_samples=None):
    def one(key):
        return gumbel.relaxed_topk_gumbel(
            key, jnp.asarray(_W4), k, temperature=1e-3, scale=scale, num_samples=num_samples
        )

    return jax.vmap(one)(keys)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_relaxed_topk_small_temperature_is_union_of_draws_with_replacement(scale):
    k = 3
    masks = np.asarray(_max_masks(_keys(11), scale, k))
    p = _softmax(scale * _W4)
    _assert_set_distribution(masks, _with_replacement_unions(p, k))
    incl = 1 - (1 - p) ** k
    hits = (masks > 0.5).sum(0)
    for i in range(len(_W4)):
        _assert_matches([hits[i], N_DRAWS - hits[i]], [incl[i], 1 - incl[i]])
    sums = (masks > 0.5).sum(-1)
    assert sums.min() >= 1 and sums.max() <= k and sums.mean() < k


def test_relaxed_topk_num_samples_sets_the_number_of_draws():
    masks = np.asarray(_max_masks(_keys(12), 1.0, 1, num_samples=2))
    _assert_set_distribution(masks, _with_replacement_unions(_softmax(_W4), 2))


def test_max_mask_collapses_when_one_score_dominates():
    w = jnp.asarray([8.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    keys = _keys(13, 2000)
    sums = jax.jit(
        jax.vmap(lambda key: gumbel.relaxed_topk_gumbel(key, w, 5, temperature=0.05).sum())
    )(keys)
    assert float(jnp.mean(sums)) < 1.05  # k = 5 draws almost always pick the same document
    sub = jax.jit(
        jax.vmap(lambda key: gumbel.relaxed_subset_sample(key, w, 5, temperature=0.05).sum())
    )(keys)
    np.testing.assert_allclose(sub, 5.0, atol=1e-9)


@functools.partial(jax.jit, static_argnames=("k",))
def _subset(key, x, t, where, k):
    return gumbel.relaxed_subset_sample(key, x, k, temperature=t, where=where)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_relaxed_subset_sums_to_k_at_every_temperature(dtype):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 20)) * 3, dtype)
    where = rng.random((64, 20)) < 0.8
    where[:4, 4:] = False  # rows with fewer than k valid entries select all of them
    for t in (1e-4, 1e-2, 0.3, 1.0, 4.0, 1e3):
        for i, w in enumerate((np.ones_like(where), where)):
            out = _subset(jax.random.key(i), x, t, jnp.asarray(w), k=5)
            assert out.dtype == dtype
            assert np.all(np.asarray(out) >= 0)
            target = np.minimum(w.sum(-1), 5)
            np.testing.assert_allclose(np.asarray(out).sum(-1), target, atol=1e-5, rtol=0)


def test_relaxed_subset_small_temperature_is_gumbel_topk_sample():
    k = 2
    keys = _keys(14)

    @jax.jit
    def draws(keys):
        def one(key):
            soft = gumbel.relaxed_subset_sample(key, _W, k, temperature=1e-3)
            hard = gumbel.relaxed_subset_sample(key, _W, k, hard=True)
            return soft, hard, gumbel.gumbel_topk(key, _W, k).mask

        return jax.vmap(one)(keys)

    soft, hard, ref = (np.asarray(a) for a in draws(keys))
    exact = {}
    for s, prob in _plackett_luce_sequences(_softmax(LOGITS), k).items():
        exact[frozenset(s)] = exact.get(frozenset(s), 0.0) + prob
    _assert_set_distribution(soft, exact)
    # With the same key it is the k-hot of the very same Gumbel-top-k sample (same noise).
    np.testing.assert_array_equal(hard, ref)
    assert np.mean(np.all(np.abs(soft - ref) < 0.01, axis=-1)) > 0.99


def test_gumbel_softmax_hard_is_gumbel_top1_with_the_same_noise():
    # gumbel_topk(k=1)'s first index is softmax-distributed (tested above), so this also checks
    # the law of the hard one-hot.
    keys = _keys(16, 1000)
    hard, ref = jax.jit(
        jax.vmap(
            lambda key: (
                gumbel.gumbel_softmax(key, _W, temperature=0.7, hard=True),
                gumbel.gumbel_topk(key, _W, 1).mask,
            )
        )
    )(keys)
    np.testing.assert_array_equal(hard, ref)
    np.testing.assert_array_equal(np.asarray(hard).sum(-1), 1.0)


# ---------------------------------------------------------------------------------------------
# Perturbed top-k (Berthet et al. 2020): expectation and Jacobian against closed forms
# ---------------------------------------------------------------------------------------------

PERT_SAMPLES = 200_000
_X4 = np.array([0.3, -0.2, 0.9, 0.0])


def _pert_k1(v, sigma):
    return gumbel.perturbed_topk_mask(
        jax.random.key(21), v, 1, sigma=sigma, num_samples=PERT_SAMPLES
    )


_pert_fwd = jax.jit(_pert_k1)
_pert_jacrev = jax.jit(jax.jacrev(_pert_k1))
_pert_jacfwd = jax.jit(jax.jacfwd(_pert_k1))
_pert_dsigma = jax.jit(jax.jacfwd(_pert_k1, argnums=1))


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_perturbed_k1_gumbel_is_softmax_with_softmax_jacobian(sigma):
    s = jnp.asarray(sigma)
    y = np.asarray(_pert_fwd(_X4, s))
    p = _softmax(np.asarray(_X4) / sigma)
    # For k = 1 the forward value times S is the count of each argmax: a multinomial sample.
    _assert_matches(np.round(y * PERT_SAMPLES), p)
    exact_jac = (np.diag(p) - np.outer(p, p)) / sigma
    # Each term y_i (1 - exp(-Z_j)) / sigma has variance <= Var(1 - exp(-Z)) / sigma² = 1/sigma².
    tol = 5.0 / (sigma * np.sqrt(PERT_SAMPLES))
    jac_rev = np.asarray(_pert_jacrev(_X4, s))
    np.testing.assert_allclose(jac_rev, exact_jac, atol=tol, rtol=0)
    np.testing.assert_allclose(np.asarray(_pert_jacfwd(_X4, s)), jac_rev, atol=1e-12, rtol=0)
    # A Jacobian off by a factor sigma would be caught (the bug the issue warns about).
    assert np.max(np.abs(jac_rev * sigma - exact_jac)) > tol
    # d/dsigma softmax(x / sigma) = -(diag p - p pᵀ) x / sigma².
    dsig = np.asarray(_pert_dsigma(_X4, s))
    np.testing.assert_allclose(dsig, -exact_jac @ np.asarray(_X4) / sigma, atol=3 * tol, rtol=0)


def test_perturbed_normal_noise_n2_matches_closed_form():
    sigma = 0.7
    x = jnp.asarray([0.4, 0.1])

    def f(v):
        key = jax.random.key(22)
        return gumbel.perturbed_topk_mask(
            key, v, 1, sigma=sigma, num_samples=PERT_SAMPLES, noise="normal"
        )

    d = (0.4 - 0.1) / (sigma * np.sqrt(2))
    p1 = scipy.stats.norm.cdf(d)
    y, vjp = jax.vjp(jax.jit(f), x)
    _assert_matches(np.round(np.asarray(y) * PERT_SAMPLES), [p1, 1 - p1])
    slope = scipy.stats.norm.pdf(d) / (sigma * np.sqrt(2))
    (row0,) = vjp(jnp.asarray([1.0, 0.0]))
    tol = 5.0 / (sigma * np.sqrt(PERT_SAMPLES))
    np.testing.assert_allclose(np.asarray(row0), [slope, -slope], atol=tol, rtol=0)


def test_perturbed_topk_sums_to_k_and_tends_to_topk():
    x = jnp.asarray([[0.3, 2.0, -1.0, 1.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    f = jax.jit(
        lambda v, s: gumbel.perturbed_topk_mask(jax.random.key(3), v, 2, sigma=s, num_samples=256)
    )
    np.testing.assert_allclose(np.asarray(f(x, 0.5)).sum(-1), 2.0, atol=1e-12)
    np.testing.assert_array_equal(f(x, 1e-4), [[0, 1, 0, 1, 0], [1, 1, 0, 0, 0]])


# ---------------------------------------------------------------------------------------------
# Keys, gradients, tracing and hard forward passes of every sampler
# ---------------------------------------------------------------------------------------------
# The samplers are the records of tests/_contract.py, whose harness (test_contract.py) runs the
# plumbing checks over them: jit == eager, vmap with one key == per-row calls, ``axis`` ==
# moveaxis, masked == filtered, padding and -inf never selected with exactly zero gradient,
# fully masked rows, empty inputs, dtypes. Compilation dominates this file's run time, so the
# records are called jitted and the checks share shapes ([3, 6] scores).

K = 2
SAMPLERS = {op.name: op for op in SAMPLER_OPS if not op.name.startswith("attention")}
SMOOTH = {name for name, op in SAMPLERS.items() if op.smooth}


def _loss(out, w):
    """Weighted sum that ignores the log-space "never selected" floor (a huge constant)."""
    return jnp.sum(jnp.where(out > -1e30, out, 0.0) * w)


def _key(seed):
    # XLA's RngBitGenerator keys compile about twice as fast as threefry's unrolled rounds;
    # the checks below do not depend on the key's implementation (the one that does, typed ==
    # legacy, uses the default threefry keys).
    return jax.random.key(seed, impl="rbg")


def _x(shape=(3, 6), seed=0, dtype=np.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(dtype))


def _w(shape=(3, 6), seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_keys(name):
    """Same key -> same output, different keys differ, typed == legacy, a batch via vmap.

    A batched key passed directly is refused: tests/test_errors.py (``key-batched``).
    """
    op = SAMPLERS[name]
    x = _x()
    k0, k1 = jax.random.key(0), jax.random.key(1)
    a = np.asarray(op(x, key=k0))
    np.testing.assert_array_equal(a, op(x, key=k0))
    b = np.asarray(op(x, key=k1))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(op(x, key=jax.random.PRNGKey(0)), a)
    both = jax.vmap(lambda k: op(x, key=k))(jnp.stack([k0, k1]))  # a batch of keys goes via vmap
    np.testing.assert_allclose(both, np.stack([a, b]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name",
    ["gumbel_softmax", "relaxed_topk_gumbel", "relaxed_topk_gumbel_log", "relaxed_subset_sample"],
)
def test_gradients_match_finite_differences(name):
    # Deterministic for a fixed key: the relaxation is a smooth function of the scores.
    op = SAMPLERS[name]
    x = _x(seed=19)
    where = jnp.asarray(np.random.default_rng(19).random((3, 6)) < 0.8)
    key = _key(20)
    w = _w()
    loss = jax.jit(lambda v: _loss(op(v, key=key, temperature=0.8, where=where), w))
    # Forward mode is checked on the op with the hand-written recursion (lax.scan).
    modes = ("fwd", "rev") if name == "relaxed_subset_sample" else ("rev",)
    check_grads(loss, (x,), order=1, modes=modes, atol=1e-5, rtol=1e-5)
    if name == "relaxed_subset_sample":  # the temperature is differentiable too
        loss_t = jax.jit(lambda t: _loss(op(x, key=key, temperature=t, where=where), w))
        check_grads(loss_t, (jnp.asarray(0.8),), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_changing_temperature_does_not_retrace(name):
    op = SAMPLERS[name]
    traces = []

    @jax.jit
    def g(key, v, t):
        traces.append(None)
        return op(v, key=key, temperature=t)

    x = _x(seed=21)
    a = g(_key(0), x, 1.0)
    b = g(_key(0), x, 0.1)
    g(_key(1), x, 0.2)
    assert len(traces) == 1
    assert not np.allclose(a, b)


def test_scale_is_traced_and_changes_the_law():
    traces = []

    @jax.jit
    def g(key, s):
        traces.append(None)
        return gumbel.relaxed_topk_gumbel(key, _x(seed=22), K, scale=s)

    assert not np.allclose(g(_key(0), 1.0), g(_key(0), 3.0))
    assert len(traces) == 1


@pytest.mark.parametrize(
    "fn",
    [
        lambda key, x, **kw: gumbel.gumbel_softmax(key, x, **kw),
        lambda key, x, **kw: gumbel.relaxed_topk_gumbel(key, x, 3, **kw),
        lambda key, x, **kw: gumbel.relaxed_subset_sample(key, x, 3, **kw),
        lambda key, x, **kw: gumbel.gumbel_attention_mask(key, x, 3, method="max", **kw),
        lambda key, x, **kw: gumbel.gumbel_attention_mask(key, x, 3, method="subset", **kw),
    ],
    ids=["gumbel_softmax", "relaxed_topk_gumbel", "relaxed_subset_sample", "attn_max", "attn_sub"],
)
def test_hard_straight_through(fn):
    key, w = _key(23), _w()

    @jax.jit
    def run(v):
        def loss(v, hard):
            return jnp.sum(fn(key, v, hard=hard, temperature=0.6) * w)

        return fn(key, v, hard=True), jax.grad(loss)(v, True), jax.grad(loss)(v, False)

    hard, g_hard, g_soft = (np.asarray(a) for a in run(_x(seed=24)))
    assert set(np.unique(hard)) <= {0.0, 1.0}
    np.testing.assert_allclose(g_hard, g_soft, rtol=1e-12, atol=1e-12)
    assert np.any(g_soft != 0)


def test_hard_mask_limits():
    """Hard forward passes equal the exact hard samples they stand for (same noise)."""
    key, x = _key(25), _x(seed=26)

    @jax.jit
    def run(v):
        keys = jax.random.split(key, 4)
        return (
            gumbel.relaxed_topk_gumbel(key, v, 3, num_samples=4, hard=True),
            jax.vmap(lambda k: gumbel.gumbel_softmax(k, v, hard=True))(keys).max(axis=0),
            gumbel.relaxed_topk_gumbel(key, v, 3, num_samples=4, temperature=0.4),
            jax.vmap(lambda k: gumbel.gumbel_softmax(k, v, temperature=0.4))(keys).max(axis=0),
            gumbel.gumbel_attention_mask(key, v, 3, method="subset", hard=True),
            gumbel.gumbel_topk(key, v, 3).mask,
        )

    union, union_ref, soft, soft_ref, subset, topk = (np.asarray(a) for a in run(x))
    np.testing.assert_array_equal(union, union_ref)  # union of the draws' argmaxes
    np.testing.assert_allclose(soft, soft_ref, rtol=1e-12, atol=1e-15)  # max of the draws
    np.testing.assert_array_equal(subset, topk)  # the Gumbel-top-k sample


def test_log_form_is_log_of_mask_and_finite_where_mask_underflows():
    key = _key(27)
    x = _x(seed=28) * 40

    @jax.jit
    def run(v, t):
        return (
            gumbel.relaxed_topk_gumbel(key, v, 3, temperature=t),
            gumbel.relaxed_topk_gumbel_log(key, v, 3, temperature=t),
            jax.grad(lambda u: jnp.sum(gumbel.relaxed_topk_gumbel_log(key, u, 3, temperature=t)))(
                v
            ),
        )

    for t in (1.0, 0.3):
        m, log_m, _ = run(x, t)
        np.testing.assert_allclose(np.exp(log_m), m, rtol=1e-12, atol=1e-300)
    m, log_m, g = (np.asarray(a) for a in run(x.astype(jnp.float32), 1e-3))
    assert np.any(m == 0)  # underflow of the mask itself ...
    assert np.all(np.isfinite(log_m)) and np.all(log_m <= 0)  # ... not of its log
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_attention_mask_methods_match_the_relaxations():
    key = _key(29)

    @jax.jit
    def run(x):
        return (
            gumbel.gumbel_attention_mask(key, x, 3, method="max", temperature=0.5),
            gumbel.relaxed_topk_gumbel(key, x, 3, temperature=0.5),
            gumbel.gumbel_attention_mask(key, x, 3, method="subset"),  # default temperature 0.5
            gumbel.relaxed_subset_sample(key, x, 3, temperature=0.5),
        )

    att_max, max_ref, att_sub, sub = (np.asarray(a) for a in run(_x(seed=30)))
    np.testing.assert_allclose(att_max, max_ref, rtol=1e-12)
    np.testing.assert_allclose(att_sub, np.minimum(sub, 1.0), rtol=1e-12)
    assert np.all((att_sub >= 0) & (att_sub <= 1))


def test_gumbel_topk_indices_and_mask_agree_and_fewer_valid_than_k():
    key = _key(31)
    x = _x((4, 6), seed=32)
    out = gumbel.gumbel_topk(key, x, 3)
    assert out.indices.shape == (4, 3) and out.indices.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(out.mask).sum(-1), 3)
    picked = np.take_along_axis(np.asarray(out.mask), np.asarray(out.indices), -1)
    np.testing.assert_array_equal(picked, 1.0)
    where = jnp.asarray(np.arange(6) < 2)[None, :].repeat(4, 0)
    out = gumbel.gumbel_topk(key, x, 3, where=where)
    np.testing.assert_array_equal(np.asarray(out.indices)[:, 2], -1)
    np.testing.assert_array_equal(out.mask, np.broadcast_to(np.asarray(where, float), (4, 6)))
    out = gumbel.gumbel_topk(key, jnp.moveaxis(x, -1, 0), 3, axis=0)
    assert out.indices.shape == (3, 4)


def test_nan_scores_propagate():
    key = _key(33)
    x = _x(seed=34).at[0, 2].set(jnp.nan)
    for name, op in SAMPLERS.items():  # NaN never turns into a valid-looking number
        out = np.asarray(op(x, key=key))
        assert np.isnan(out[0, 2]), name
        assert not np.any(np.isnan(out[1:])), name
