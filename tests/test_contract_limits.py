"""Contract tests run over every registered op (DESIGN.md, "Quality bar"): limits.

Of size: empty inputs and degenerate lists (one item, constant labels, tied scores, all
masked). Of precision: dtypes are preserved, half precision is computed in float32. Of the
ranking ops' smoothness and temperature: gradients match finite differences in float64, the hard
limit is reached at small temperature, changing only the temperature does not retrace, and a
traced non-positive temperature gives NaN. The ops are the records of ``tests/_contract.py``; the
plumbing checks are in ``test_contract.py``, a second file so that the two halves run in
parallel under ``pytest -n 2 --dist loadfile``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from _contract import (
    DEGENERATE,
    DTYPE_CASES,
    EMPTY_CASES,
    EXACT_GRADIENT,
    SMOOTH_DIRECTIONS,
    K,
    _distinct,
    _loss,
    parametrize,
    parametrize_smooth_base,
)
from jax.test_util import check_grads

from rank_relax_jax import topk


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


@parametrize_smooth_base
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


@parametrize_smooth_base
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


@pytest.mark.parametrize(("op", "shape"), EMPTY_CASES)
def test_empty_inputs_give_empty_outputs(op, shape):
    # An empty list has no relevant item: a metric (or a loss per list) is 0, as for a query
    # without relevant items; an empty batch gives an empty result.
    lists = (jnp.zeros(shape),) * len(op.family.data((1, 1), 0))
    out = op(*lists)
    if op.kind == "reduced":
        assert out.shape == shape[:-1]
        np.testing.assert_array_equal(out, 0.0)
    else:
        assert out.shape == ((*shape, shape[-1]) if op.kind == "matrix" else shape)
    for reduce in op.reductions:
        assert float(op(*lists, reduce=reduce)) == 0.0
    if op.smooth:
        assert jax.grad(lambda v: jnp.sum(op(v, *lists[1:])))(lists[0]).shape == shape


@parametrize(DEGENERATE)
def test_degenerate_lists_are_finite(op):
    # Same shapes and an explicit mask wherever possible, so one compile serves most cases.
    n = 6
    ramp = jnp.linspace(-1.0, 1.0, 2 * n).reshape(2, n)
    every = jnp.ones((2, n), bool)
    no_relevant = jnp.stack([jnp.zeros(n), jnp.arange(float(n))])
    cases = {
        "all-masked": (jnp.ones((2, n)), jnp.ones((2, n)), jnp.zeros((2, n), bool)),
        "length-1": (jnp.array([[0.7]]), jnp.array([[2.0]]), None),
        "constant-labels": (ramp, jnp.full((2, n), 2.0), every),
        "zero-labels": (ramp, jnp.zeros((2, n)), every),
        "tied-scores": (jnp.zeros((2, n)), jnp.tile(jnp.arange(n, dtype=float), (2, 1)), every),
        # Row 0: constant scores and no relevant item; row 1: constant labels.
        "constant": (no_relevant, jnp.stack([jnp.zeros(n), jnp.ones(n)]), every),
    }
    # A loss: every reduction of the all-masked lists, the mean of the others. A metric: its
    # values per list.
    every_reduce = ("none", *op.reductions) if op.reductions else (None,)
    checks = {r: _value_and_grad(op, r) for r in every_reduce}
    for case, (s, y, w) in cases.items():
        reduces = every_reduce if case == "all-masked" else op.reductions[:1] or (None,)
        for reduce in reduces:
            value, g = checks[reduce](s, y, w)
            assert np.all(np.isfinite(value)), (case, reduce)
            if case == "all-masked":
                np.testing.assert_array_equal(value, 0.0)
            if op.smooth:
                assert np.all(np.isfinite(g)), (case, reduce)
                if case == "all-masked":
                    np.testing.assert_array_equal(g, 0.0)


def _value_and_grad(op, reduce):
    """Jitted (outputs, gradient of their sum) for a degenerate case; one compile per shape."""
    kw = {} if reduce is None else {"reduce": reduce}

    def outputs(v, y, w):
        return op(v, y, where=w, **kw)

    if not op.smooth:
        return jax.jit(lambda v, y, w: (outputs(v, y, w), None))

    def total(v, y, w):
        out = outputs(v, y, w)
        return jnp.sum(out), out

    def both(v, y, w):
        g, out = jax.grad(total, has_aux=True)(v, y, w)
        return (out if reduce == "none" else jnp.sum(out)), g

    return jax.jit(both)


@pytest.mark.parametrize(("op", "dtype"), DTYPE_CASES)
def test_dtype_is_preserved(op, dtype):
    # Labels come as integers; bfloat16/float16 scores are computed internally in float32.
    lists = op.family.lists(op.family.dtype_shape, seed=7)
    x = lists[0].astype(dtype)
    labels = tuple(a.astype(jnp.int32) for a in lists[1:])
    out = op(x, *labels)
    assert out.dtype == dtype
    out64 = np.asarray(out, np.float64)
    assert np.all(np.isfinite(out64))
    ref_dtype = op.family.reference_dtype(dtype)
    ref = op(x.astype(ref_dtype), *labels)
    assert ref.dtype == ref_dtype
    rtol, atol = op.family.dtype_tol(dtype)
    np.testing.assert_allclose(out64, np.asarray(ref, np.float64), rtol=rtol, atol=atol)
