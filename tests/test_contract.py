"""Contract tests run over every public deterministic op (DESIGN.md, "Quality bar").

Each op is described once by an ``Op`` record; every check below is parametrized over all of
them: jit == eager, vmap == batch, ``axis`` == moveaxis, masked == filtered (with garbage in the
padding), padding gets zero output and exactly zero gradient, fully masked rows are finite with
zero gradient, dtypes are preserved, gradients match finite differences in float64, the hard
limit is reached at small temperature, and changing only the temperature does not retrace.
Samplers (which need a key) have their own contract checks in ``test_gumbel.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from _cases import SURROGATE_GRADIENT, case_id, cases, hard_limit_temperature
from jax.test_util import check_grads

from rank_relax_jax import ranking, topk

K = 2


@dataclasses.dataclass(frozen=True)
class Op:
    name: str
    fn: Callable[..., jax.Array]  # fn(x, *, temperature=..., axis=..., where=..., descending=...)
    kind: str  # "elementwise" | "sorted" | "matrix"
    smooth: bool = True  # takes a temperature and has a non-zero gradient
    descending: bool = True  # accepts `descending`
    grad_modes: tuple[str, ...] = ("fwd", "rev")
    hard_limit_temperature: float = 1e-3

    def __call__(self, x, **kw):
        return self.fn(x, **kw)

    def __repr__(self) -> str:
        return self.name


def _ranking_op(op: str, method: str, **options) -> Op:
    public = {"rank": ranking.soft_rank, "sort": ranking.soft_sort}.get(op)
    if op == "permutation":

        def fn(x, **kw):
            return ranking.soft_permutation(x, method=method, **options, **kw)

        kind = "matrix"
    else:

        def fn(x, **kw):
            return public(x, method=method, **options, **kw)

        kind = "elementwise" if op == "rank" else "sorted"
    # A method whose autodiff is a surrogate by design (tests/_cases.py) is checked against its
    # surrogate in test_methods.py instead of against finite differences here.
    modes = () if method in SURROGATE_GRADIENT else ("fwd", "rev")
    name = f"soft_{op}-{case_id((method, options))}"
    return Op(
        name,
        fn,
        kind,
        grad_modes=modes,
        hard_limit_temperature=hard_limit_temperature(method, options),
    )


def _topk_op(method: str, **options) -> Op:
    def fn(x, descending=False, **kw):
        del descending
        return topk.soft_topk_mask(x, K, method=method, **options, **kw)

    name = f"soft_topk_mask-{case_id((method, options))}"
    modes = () if method in SURROGATE_GRADIENT else ("fwd", "rev")
    return Op(
        name,
        fn,
        "elementwise",
        descending=False,
        grad_modes=modes,
        hard_limit_temperature=hard_limit_temperature(method, options),
    )


def _exact_rank(x, temperature=None, **kw):
    del temperature
    return ranking.rank(x, **kw)


def _exact_topk(x, temperature=None, descending=False, **kw):
    del temperature, descending
    return topk.topk_mask(x, K, **kw)


# Every registered (operation, method) pair, and each non-default choice of its options, read
# from the kernel registry: a newly registered method is checked here without editing this file.
OPS = [
    *[_ranking_op(op, m, **o) for op in ("rank", "sort", "permutation") for m, o in cases(op)],
    *[_topk_op(m, **o) for m, o in cases("topk")],
    Op("rank", _exact_rank, "elementwise", smooth=False),
    Op("topk_mask", _exact_topk, "elementwise", smooth=False, descending=False),
]
SMOOTH = [op for op in OPS if op.smooth]
# (op, descending) for the checks run in both directions; an op without `descending` once.
DIRECTIONS = [(op, d) for op in OPS for d in (False, True) if op.descending or not d]
SMOOTH_DIRECTIONS = [(op, d) for op, d in DIRECTIONS if op.smooth]
EXACT_GRADIENT = [op for op in SMOOTH if op.grad_modes]
parametrize_ops = pytest.mark.parametrize("op", OPS, ids=repr)
parametrize_smooth = pytest.mark.parametrize("op", SMOOTH, ids=repr)


def _distinct(shape, seed=0, dtype=np.float64, gap=0.3):
    """Random values whose sorted neighbours differ by at least ``gap`` in every row."""
    rng = np.random.default_rng(seed)
    n = shape[-1]
    base = np.arange(n) * gap + np.cumsum(rng.uniform(0, gap, size=shape), axis=-1)
    base = base - base.mean(axis=-1, keepdims=True)
    return rng.permuted(base, axis=-1).astype(dtype)


def _weights(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def _loss(op, x, **kw):
    out = op(x, **kw)
    return jnp.sum(out * _weights(out.shape))


@parametrize_ops
def test_jit_matches_eager(op):
    x = jnp.asarray(_distinct((3, 6)))
    np.testing.assert_allclose(jax.jit(lambda v: op(v))(x), op(x), rtol=1e-12, atol=1e-12)


@parametrize_ops
def test_vmap_matches_batch(op):
    x = jnp.asarray(_distinct((4, 7), seed=2))
    np.testing.assert_allclose(jax.vmap(lambda v: op(v))(x), op(x), rtol=1e-10, atol=1e-10)


@parametrize_ops
def test_axis_matches_moveaxis(op):
    x = jnp.asarray(np.moveaxis(_distinct((3, 2, 5), seed=3), -1, 1))  # [3, 5, 2], ranked axis 1
    out = op(x, axis=1)
    ref = op(jnp.moveaxis(x, 1, -1))
    if op.kind != "matrix":
        ref = jnp.moveaxis(ref, -1, 1)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(op(x, axis=-2), out, rtol=0, atol=0)


def _masked_case(seed=4, b=5, n=8, min_valid=3):
    rng = np.random.default_rng(seed)
    x = _distinct((b, n), seed=seed)
    mask = rng.random((b, n)) < 0.6
    for i in range(b):  # at least `min_valid` valid entries, at varied positions
        mask[i, rng.choice(n, size=min_valid, replace=False)] = True
    return x, mask


@pytest.mark.parametrize(("op", "descending"), DIRECTIONS, ids=repr)
def test_masked_equals_filtered(op, descending):
    kw = {"descending": True} if descending else {}
    x, mask = _masked_case()
    garbage = np.where(mask, x, np.nan)  # padding content must never leak
    out = np.asarray(op(jnp.asarray(garbage), where=jnp.asarray(mask), **kw))
    assert np.all(np.isfinite(out))
    for i in range(x.shape[0]):
        m = mask[i]
        ref = np.asarray(op(jnp.asarray(x[i][m]), **kw))
        c = int(m.sum())
        if op.kind == "elementwise":
            np.testing.assert_allclose(out[i][m], ref, rtol=1e-9, atol=1e-9)
            np.testing.assert_array_equal(out[i][~m], 0.0)
        elif op.kind == "sorted":
            np.testing.assert_allclose(out[i][:c], ref, rtol=1e-9, atol=1e-9)
            np.testing.assert_array_equal(out[i][c:], 0.0)
        else:
            np.testing.assert_allclose(out[i][:c][:, m], ref, rtol=1e-9, atol=1e-9)
            np.testing.assert_array_equal(out[i][c:], 0.0)
            np.testing.assert_array_equal(out[i][:, ~m], 0.0)


@parametrize_ops
def test_padding_gets_exactly_zero_gradient(op):
    x, mask = _masked_case(seed=5)
    x = jnp.asarray(np.where(mask, x, np.inf))
    g = jax.grad(lambda v: _loss(op, v, where=jnp.asarray(mask)))(x)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(np.asarray(g)[~mask], 0.0)
    if op.smooth:
        assert np.any(np.asarray(g)[mask] != 0.0)


@parametrize_ops
@pytest.mark.parametrize("shape", [(0, 6), (3, 0), (2, 0, 4)])
def test_empty_inputs_give_empty_outputs(op, shape):
    x = jnp.zeros(shape)
    if shape[-1] < K and op.name.startswith(("soft_topk_mask", "topk_mask")):
        with pytest.raises(ValueError, match="argument `k` must be in"):
            op(x)
        return
    out = op(x)
    expected = (*shape, shape[-1]) if op.kind == "matrix" else shape
    assert out.shape == expected
    if op.smooth:
        assert jax.grad(lambda v: jnp.sum(op(v)))(x).shape == shape


@parametrize_ops
def test_fully_masked_rows_are_finite_with_zero_gradient(op):
    x = jnp.asarray(_distinct((3, 6), seed=6))
    mask = np.ones((3, 6), bool)
    mask[1] = False
    out = op(x, where=jnp.asarray(mask))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(np.asarray(out)[1], 0.0)
    g = jax.grad(lambda v: _loss(op, v, where=jnp.asarray(mask)))(x)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(np.asarray(g)[1], 0.0)


@parametrize_ops
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64])
def test_dtype_is_preserved(op, dtype):
    x = jnp.asarray(_distinct((2, 6), seed=7), dtype=dtype)
    out = op(x)
    assert out.dtype == dtype
    assert np.all(np.isfinite(np.asarray(out, dtype=np.float64)))
    ref = np.asarray(op(x.astype(jnp.float64)))
    tol = {jnp.float64: 1e-12, jnp.float32: 1e-4}.get(dtype, 5e-2)
    np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=tol, atol=tol * 8)


# Ops whose gradient is a surrogate by design (Op.grad_modes empty) are checked in
# test_methods.py against that surrogate instead.
@pytest.mark.parametrize("op", EXACT_GRADIENT, ids=repr)
def test_gradients_match_finite_differences(op):
    x = jnp.asarray(_distinct((2, 5), seed=8, gap=0.2))
    check_grads(
        lambda v: _loss(op, v, temperature=0.7), (x,), order=1, modes=op.grad_modes, atol=1e-5
    )


@pytest.mark.parametrize(("op", "descending"), SMOOTH_DIRECTIONS, ids=repr)
def test_hard_limit_at_small_temperature(op, descending):
    kw = {"descending": True} if descending else {}
    x = _distinct((3, 7), seed=9, gap=0.5)
    out = np.asarray(op(jnp.asarray(x), temperature=op.hard_limit_temperature, **kw))
    sign = -1.0 if descending else 1.0
    if op.kind == "elementwise" and op.name.startswith("soft_rank"):
        ref = scipy.stats.rankdata(sign * x, axis=-1)
    elif op.kind == "elementwise":
        ref = np.asarray(topk.topk_mask(jnp.asarray(x), K))
    elif op.kind == "sorted":
        ref = sign * np.sort(sign * x, axis=-1)
    else:
        ref = np.eye(7)[np.argsort(sign * x, axis=-1)]
    np.testing.assert_allclose(out, ref, atol=1e-3)


@parametrize_smooth
def test_changing_temperature_does_not_retrace(op):
    traces = []

    @jax.jit
    def f(v, t):
        traces.append(None)
        return op(v, temperature=t)

    x = jnp.asarray(_distinct((2, 5), seed=10))
    # Two temperatures far apart: isotonic sorts are already exact below the data's gaps.
    a = f(x, 10.0)
    b = f(x, 0.1)
    assert len(traces) == 1
    assert not np.allclose(a, b)


@parametrize_smooth
def test_traced_non_positive_temperature_gives_nan(op):
    # A concrete one raises (test_errors.py); a traced one cannot be checked, and a negative one
    # would silently reverse the order, so every valid output is NaN instead. Padding stays 0.
    x = jnp.asarray(_distinct((2, 6), seed=11))
    where = jnp.array([[True] * 6, [True] * 4 + [False] * 2])
    temps = jnp.array([-1.0, 0.0, jnp.nan])  # one compile: vmapped over the temperature
    outs = jax.jit(jax.vmap(lambda t: op(x, temperature=t, where=where)))(temps)
    for out in outs:
        _check_nan_output(op, out, where)


def _check_nan_output(op, out, where):
    if op.kind == "matrix":
        valid = where[:, None, :] & (jnp.arange(6)[None, :, None] < where.sum(-1)[:, None, None])
    elif op.kind == "sorted":
        valid = jnp.arange(6)[None, :] < where.sum(-1)[:, None]
    else:
        valid = where
    valid = jnp.broadcast_to(valid, out.shape)
    assert bool(jnp.all(jnp.isnan(out[valid]))), out
    assert bool(jnp.all(out[~valid] == 0)), out
