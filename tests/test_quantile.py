"""soft_quantile / soft_median: NumPy's "linear" rule on a soft sort, with masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rank_relax_jax import soft_median, soft_quantile

QS = np.array([0.0, 0.01, 0.1, 0.25, 1 / 3, 0.5, 0.6, 0.75, 0.9, 0.99, 1.0])


@pytest.mark.parametrize("method", ["isotonic", "lapsum", "neuralsort"])
def test_hard_limit_matches_numpy_with_masks(method):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 9)) * 3
    mask = rng.random((6, 9)) < 0.6
    mask[:, 0] = True
    mask[1] = True
    mask[2, 1:] = False  # a single valid entry
    tau = 1e-4 if method == "lapsum" else 1e-3
    out = np.asarray(soft_quantile(jnp.asarray(x), QS, method=method, temperature=tau,
                                   where=jnp.asarray(mask)))  # fmt: skip
    assert out.shape == (len(QS), 6)
    for b in range(6):
        ref = np.quantile(x[b][mask[b]], QS)
        np.testing.assert_allclose(out[:, b], ref, atol=1e-3 if method == "lapsum" else 1e-9)


def test_isotonic_hard_limit_equals_jnp_quantile():
    # Isotonic soft sort is exactly the sort once τ is below the gaps, and the interpolation
    # is jnp.quantile's formula: equal up to the compiler's choice of fused multiply-adds.
    x = jnp.asarray(np.random.default_rng(1).permutation(np.arange(1.0, 31.0)).reshape(3, 10))
    q = jnp.asarray(QS)
    tol = {"rtol": 1e-15, "atol": 0}
    np.testing.assert_allclose(
        soft_quantile(x, q, temperature=1e-3), jnp.quantile(x, q, axis=-1), **tol
    )
    np.testing.assert_allclose(soft_median(x, temperature=1e-3), jnp.median(x, axis=-1), **tol)
    np.testing.assert_allclose(
        soft_quantile(x, 0.3, temperature=1e-3, axis=0), jnp.quantile(x, 0.3, axis=0), **tol
    )


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_lengths_and_shapes(n):
    x = jnp.asarray(np.random.default_rng(n).normal(size=(2, 3, n)))
    q = jnp.asarray([0.2, 0.7])
    out = soft_quantile(x, q, temperature=1e-4)
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out, np.quantile(np.asarray(x), np.asarray(q), axis=-1), atol=1e-9)
    assert soft_quantile(x, 0.2, temperature=1e-4).shape == (2, 3)
    assert soft_median(x, axis=1).shape == (2, n)


def test_masked_equals_filtered_and_fully_masked_is_zero():
    # Rows 0-2 have 6 valid entries each at different places (one compile for the filtered
    # lists); row 3 is fully masked.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 12))
    mask = np.zeros((4, 12), bool)
    for b in range(3):
        mask[b, rng.choice(12, 6, replace=False)] = True
    garbage = jnp.asarray(np.where(mask, x, np.nan))
    for method in ("isotonic", "lapsum"):
        out = soft_quantile(garbage, QS, method=method, temperature=0.7, where=jnp.asarray(mask))
        out = np.asarray(out)
        for b in range(3):
            ref = soft_quantile(jnp.asarray(x[b][mask[b]]), QS, method=method, temperature=0.7)
            np.testing.assert_allclose(out[:, b], ref, atol=1e-12)
        np.testing.assert_array_equal(out[:, 3], 0.0)
        g = jax.grad(
            lambda v, method=method: jnp.sum(
                soft_quantile(v, QS, method=method, temperature=0.7, where=jnp.asarray(mask))
            )
        )(garbage)
        assert np.all(np.asarray(g)[mask] == np.asarray(g)[mask])  # finite, no NaN
        np.testing.assert_array_equal(np.asarray(g)[~mask], 0.0)


@pytest.mark.parametrize("method", ["isotonic", "lapsum"])
def test_gradients_match_finite_differences(method):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 7)))
    where = jnp.array([[True] * 7, [True, False, True, True, True, False, True]])
    q = jnp.array([0.15, 0.45, 0.83])  # (m - 1) q is never an integer: no kink

    def f(v, qq):
        out = soft_quantile(v, qq, method=method, temperature=0.8, where=where)
        return jnp.sum(out * jnp.arange(1.0, 4.0)[:, None])

    check_grads(f, (x, q), order=1, modes=("fwd", "rev"), atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float64])
def test_dtype_is_preserved(dtype):
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 8)), dtype)
    assert soft_quantile(x, [0.1, 0.9]).dtype == dtype
    assert soft_median(x, method="lapsum").dtype == dtype


def test_traced_q_outside_0_1_gives_nan():
    # A concrete q outside [0, 1] raises (test_errors.py, "soft_quantile-q").
    x = jnp.arange(5.0)
    f = jax.jit(lambda qq: soft_quantile(x, qq, temperature=1e-3))
    np.testing.assert_allclose(f(0.5), 2.0)
    assert bool(jnp.isnan(f(1.5)))
