"""``standardize=True``: one temperature means the same at every scale and (where exact) every n.

Properties, over every registered rank / sort / top-k method (read from the registry, so a
method registered later is covered): the output does not change when the scores are rescaled
by 1e-3..1e3 and shifted (soft_sort moves with them: a·sort(x) + b); padding is ignored by the
statistics (masked == filtered); a constant list (std = 0) gives finite outputs and gradients.
For the methods whose relative error is exactly n-free, repeating a list k times leaves the
relative error unchanged. One compiled function per method and list length, in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _cases import TIES_NOT_AVERAGED
from hypothesis import given, settings
from hypothesis import strategies as st

import rank_relax_jax as rrj
from benchmarks._methods import variants
from rank_relax_jax import _standardize

VARIANTS = variants()
IDS = [f"{v.op}-{v.label}" for v in VARIANTS]
TEMPERATURE = 0.5
N = 7
K = 2


def _call(v, x, where, k, t):
    kw = dict(v.options, method=v.method, temperature=t, where=where, standardize=True)
    if v.op == "rank":
        return rrj.soft_rank(x, **kw)
    if v.op == "sort":
        return rrj.soft_sort(x, **kw)
    return rrj.soft_topk_mask(x, k, **kw)


_COMPILED = {}


def _compiled(v, k=K):
    """(out, gradient of ⟨out, c⟩) for one method; recompiled only per shape."""
    key = (v.op, v.label, k)
    if key in _COMPILED:
        return _COMPILED[key]

    @jax.jit
    def f(x, where, c, t):
        out, vjp = jax.vjp(lambda y: _call(v, y, where, k, t), x)
        return out, vjp(c)[0]

    _COMPILED[key] = f
    return f


def _run(v, x, where=None, k=K, t=TEMPERATURE):
    x = jnp.asarray(x, jnp.float64)
    where = jnp.ones(x.shape, bool) if where is None else jnp.asarray(where)
    c = jnp.linspace(-1.0, 1.0, x.shape[-1], dtype=jnp.float64)
    out, g = _compiled(v, k)(x, where, c, jnp.float64(t))
    return np.asarray(out), np.asarray(g)


lists = st.lists(
    st.floats(-10, 10, allow_nan=False).map(lambda f: round(f, 3)), min_size=N, max_size=N
).filter(lambda xs: np.std(xs) > 1e-2)


@pytest.mark.parametrize("v", VARIANTS, ids=IDS)
@settings(max_examples=8)
@given(xs=lists, log_scale=st.sampled_from([-3, -1, 0, 2, 3]), shift=st.floats(-5, 5))
def test_scale_and_shift_free(v, xs, log_scale, shift):
    with jax.enable_x64(True):
        x = np.asarray(xs)
        a = 10.0**log_scale
        base, _ = _run(v, x)
        moved, _ = _run(v, a * x + shift * a)
        if v.op == "sort":  # values stay in x's units
            np.testing.assert_allclose(moved, a * base + shift * a, rtol=1e-7, atol=1e-7 * a)
        else:
            np.testing.assert_allclose(moved, base, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("v", VARIANTS, ids=IDS)
def test_masked_equals_filtered_and_constant_lists_are_finite(v):
    with jax.enable_x64(True):
        x = np.array([0.4, 9e3, -1.3, 2.2, -7e4, 0.9, 0.1])
        valid = np.array([True, False, True, True, False, True, True])
        masked, gm = _run(v, x, valid)
        filtered, _ = _run(v, x[valid], k=K)
        if v.op == "sort":
            np.testing.assert_allclose(masked[: valid.sum()], filtered, rtol=1e-9, atol=1e-9)
        else:
            np.testing.assert_allclose(masked[valid], filtered, rtol=1e-9, atol=1e-9)
            assert np.all(masked[~valid] == 0)
        assert np.all(gm[~valid] == 0)
        for const in (0.0, 0.3, -2e5):
            out, g = _run(v, np.full(N, const))
            assert np.all(np.isfinite(out)) and np.all(np.isfinite(g)), (const, out, g)
            if v.op == "rank" and v.method in TIES_NOT_AVERAGED:  # tests/_cases.py
                np.testing.assert_allclose(out.sum(), N * (N + 1) / 2, rtol=1e-9)
                assert np.all(out >= 1 - 1e-9) and np.all(out <= N + 1e-9)
            elif v.op == "rank":  # all tied: every entry gets the mean rank
                np.testing.assert_allclose(out, (N + 1) / 2, rtol=1e-6)
            if v.op == "sort":
                np.testing.assert_allclose(out, const, rtol=1e-6, atol=1e-12)


# Methods whose relative error is exactly unchanged when the list is repeated k times (z-scores
# are unchanged; ranks and the k of top-k scale by k). For the others the measurements in
# benchmarks/quality.py show the n-independence (docs/choosing_a_method.md).
TILE_EXACT = {
    ("rank", "isotonic", "l2"),
    ("rank", "sigmoid", None),
    ("rank", "probabilistic", None),
    ("sort", "softsort", None),
    ("topk", "sigmoid", None),
}


def _rel_error(v, x, out, k):
    n = x.shape[-1]
    if v.op == "rank":
        return np.mean(np.abs(out - np.asarray(rrj.rank(x)))) / n
    if v.op == "sort":
        return np.mean(np.abs(out - np.sort(x))) / np.std(x)
    return np.sum(np.abs(out - np.asarray(rrj.topk_mask(x, k)))) / (2 * k)


@pytest.mark.parametrize(
    "v",
    [v for v in VARIANTS if (v.op, v.method, v.options.get("regularization")) in TILE_EXACT],
    ids=lambda v: f"{v.op}-{v.label}",
)
def test_relative_error_is_n_free_under_repetition(v):
    with jax.enable_x64(True):
        x = np.array([0.4, -1.3, 2.2, 0.9, 0.1, -0.2, 1.5])
        e1 = _rel_error(v, x, _run(v, x, t=2.0)[0], K)
        x3 = np.tile(x, 3)
        e3 = _rel_error(v, x3, _run(v, x3, k=3 * K, t=2.0)[0], 3 * K)
        assert e1 > 1e-4  # not trivially exact at this temperature
        np.testing.assert_allclose(e3, e1, rtol=1e-9)


@pytest.mark.parametrize(
    ("regularization", "scores", "temperature"),
    [("l2", "normal", 0.1), ("kl", "exponential", 0.03)],
)
def test_isotonic_sort_error_is_n_free_with_factor_m(regularization, scores, temperature):
    # c(m) = m for both isotonic sorts (docs/choosing_a_method.md): the error relative to σ is
    # the same at m = 100 and 1,000 (with c = 1 it falls towards 0 as m grows). The KL sort
    # only where the tail its pooled blocks are anchored at (the lower one, ascending) is
    # bounded: exponential scores here; Gaussian scores drift with the sample minimum
    # (documented, not asserted).
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        errors = []
        for m in (100, 1000):
            x = getattr(rng, scores)(size=(10_000 // m, m))
            out = rrj.soft_sort(
                x, temperature=temperature, regularization=regularization, standardize=True
            )
            errors.append(np.mean(np.mean(np.abs(out - np.sort(x)), -1) / np.std(x, -1)))
        assert errors[0] > 1e-3  # in the blurred regime, not trivially exact
        assert 0.8 < errors[1] / errors[0] < 1.25, errors


def test_rule_table_and_statistics():
    assert _standardize.exponent("rank", "isotonic", {"regularization": "l2"}) == 1
    assert _standardize.exponent("rank", "isotonic", {"regularization": "kl"}) == 0
    assert _standardize.exponent("sort", "isotonic", {"regularization": "kl"}) == 1
    assert _standardize.exponent("sort", "neuralsort", {}) == -1
    assert _standardize.exponent("rank", "a-method-registered-later", {}) == 0
    x = jnp.array([[1.0, 2.0, 3.0, 100.0]])
    mean, std, m = _standardize.statistics(x, jnp.array([[True, True, True, False]]))
    np.testing.assert_allclose([mean[0, 0], std[0, 0], m[0, 0]], [2.0, np.sqrt(2 / 3), 3.0])
