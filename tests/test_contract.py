"""Contract tests run over every public deterministic op (DESIGN.md, "Quality bar"): plumbing.

jit == eager, vmap == batch, ``axis`` == moveaxis, masked == filtered (with garbage in the
padding), padding gets zero output and exactly zero gradient, fully masked rows are finite with
zero gradient, empty inputs, dtypes are preserved. The ops are the records of
``tests/_contract.py`` (every registered method, read from the kernel registry); the limits and
gradients are checked in ``test_contract_limits.py``, a second file so that the two halves run
in parallel under ``pytest -n 2 --dist loadfile``. Samplers (which need a key) have their own
contract checks in ``test_gumbel.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _contract import (
    DIRECTIONS,
    K,
    _distinct,
    _loss,
    parametrize_base,
    parametrize_ops,
)


@parametrize_base
def test_jit_matches_eager(op):
    x = jnp.asarray(_distinct((3, 6)))
    np.testing.assert_allclose(jax.jit(lambda v: op(v))(x), op(x), rtol=1e-12, atol=1e-12)


@parametrize_base
def test_vmap_matches_batch(op):
    x = jnp.asarray(_distinct((4, 7), seed=2))
    np.testing.assert_allclose(jax.vmap(lambda v: op(v))(x), op(x), rtol=1e-10, atol=1e-10)


@parametrize_base
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


@parametrize_base
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


@parametrize_base
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64])
def test_dtype_is_preserved(op, dtype):
    x = jnp.asarray(_distinct((2, 6), seed=7), dtype=dtype)
    out = op(x)
    assert out.dtype == dtype
    assert np.all(np.isfinite(np.asarray(out, dtype=np.float64)))
    ref = np.asarray(op(x.astype(jnp.float64)))
    tol = {jnp.float64: 1e-12, jnp.float32: 1e-4}.get(dtype, 5e-2)
    np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=tol, atol=tol * 8)
