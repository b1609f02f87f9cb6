"""Contract tests run over every public deterministic op (DESIGN.md, "Quality bar"): limits.

Gradients match finite differences in float64, the hard limit is reached at small temperature,
changing only the temperature does not retrace, and a traced non-positive temperature gives NaN.
The ops are the records of ``tests/_contract.py``; the plumbing checks are in
``test_contract.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from _contract import (
    EXACT_GRADIENT,
    SMOOTH_DIRECTIONS,
    K,
    _distinct,
    _loss,
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
