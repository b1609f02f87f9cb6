"""Contract tests run over every registered op (DESIGN.md, "Quality bar"): plumbing.

jit == eager, vmap == batch, ``axis`` == moveaxis, masked == filtered (with garbage in the
padding), padding and fully masked rows get the fill value and exactly zero gradient. The ops are
the records of ``tests/_contract.py``: every registered ranking method (read from the kernel
registry), the samplers, the losses and the metrics, each registered for the checks that apply
to it. Empty and degenerate lists, dtypes and the ranking ops' limits and gradients are checked
in ``test_contract_limits.py``, a second file so that the two halves run in parallel under
``pytest -n 2 --dist loadfile``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _contract import (
    AXIS,
    DIRECTIONS,
    JIT,
    MASKED,
    PADDING,
    VMAP,
    _weights,
    parametrize,
)


def _close(a, b, tol):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@parametrize(JIT)
def test_jit_matches_eager(op):
    lists = op.family.lists(op.family.jit_shape, seed=0)
    jitted = jax.jit(lambda *a: op.eager(*a))(*lists)
    _close(jitted, op.eager(*lists), op.family.tol[JIT])


@parametrize(VMAP)
def test_vmap_matches_batch(op):
    lists = op.family.lists(op.family.vmap_shape, seed=2)
    out = jax.vmap(lambda *a: op(*a))(*lists)
    tol = op.family.tol[VMAP]
    if op.family.key:
        # Under vmap the key is shared, so every row sees the noise a single-row call would draw.
        for i in range(lists[0].shape[0]):
            _close(out[i], op(*(a[i] for a in lists)), tol)
        return
    ref = op(*lists)
    _close(out, ref, tol)
    if op.kind == "reduced":
        assert ref.shape == lists[0].shape[:-1]
    if lists[0].ndim > 2:  # any number of batch axes
        n = lists[0].shape[-1]
        flat = op(*(a.reshape(-1, n) for a in lists))
        _close(flat.reshape(ref.shape), ref, tol)


@parametrize(AXIS)
def test_axis_matches_moveaxis(op):
    # The ranked axis moved to `a`; a sampler draws its noise after moving it last, so its
    # result is exactly the moved call's.
    lists = op.family.lists(op.family.axis_shape, seed=3)
    a = op.family.axis
    moved = tuple(jnp.moveaxis(v, -1, a) for v in lists)
    out = op(*moved, axis=a)
    ref = op(*lists)
    if op.kind in ("elementwise", "sorted"):
        ref = jnp.moveaxis(ref, -1, a)
    assert out.shape == ref.shape
    _close(out, ref, op.family.tol[AXIS])
    np.testing.assert_array_equal(op(*moved, axis=a - moved[0].ndim), out)


def _masked_case(op, seed=4):
    """List arrays and a mask with the family's numbers of valid entries per row."""
    fam = op.family
    b, n = fam.masked_shape
    rng = np.random.default_rng(seed)
    if fam.masked_lengths is None:  # random, at least 3 valid entries at varied positions
        mask = rng.random((b, n)) < 0.6
        for i in range(b):
            mask[i, rng.choice(n, size=3, replace=False)] = True
    else:
        mask = np.zeros((b, n), bool)
        for i, m in enumerate(fam.masked_lengths):
            mask[i, np.arange(m) if fam.trailing else rng.choice(n, size=m, replace=False)] = True
    return fam.data((b, n), seed), mask


def _with_garbage(lists, mask):
    """The padding of the scores holds NaN and inf, that of the labels 7: it must never leak."""
    junk = np.where(np.arange(mask.shape[-1]) % 2, np.inf, np.nan)
    scores = np.where(mask, lists[0], junk)
    return (scores, *(np.where(mask, a, 7.0) for a in lists[1:]))


@pytest.mark.parametrize(("op", "descending"), DIRECTIONS, ids=repr)
def test_masked_equals_filtered(op, descending):
    kw = {"descending": True} if descending else {}
    if op.family.key:
        # Noise alignment needs JAX's partitionable threefry (the default from JAX 0.5; the
        # declared floor is 0.8): asserted, so turning it off fails loudly.
        assert jax.config.jax_threefry_partitionable
        kw["key"] = jax.random.key(10)
    lists, mask = _masked_case(op)
    padded = tuple(jnp.asarray(a) for a in _with_garbage(lists, mask))
    where = jnp.asarray(mask)
    if op.family.key:  # one list per call: each call draws its own noise
        out = np.stack(
            [
                np.asarray(op(*(a[i] for a in padded), where=where[i], **kw))
                for i in range(len(mask))
            ]
        )
    else:
        out = np.asarray(op(*padded, where=where, **kw))
    assert np.all(np.isfinite(out))
    tol = op.family.tol[MASKED]
    fill = op.fill()
    for i, m in enumerate(mask):
        c = int(m.sum())
        if c == 0:
            assert op.kind == "reduced"
            assert out[i] == 0.0
            continue
        ref = np.asarray(op(*(jnp.asarray(a[i][m]) for a in lists), **kw))
        if op.kind == "elementwise":
            _close(out[i][m], ref, tol)
            np.testing.assert_array_equal(out[i][~m], fill)
        elif op.kind == "sorted":
            _close(out[i][:c], ref, tol)
            np.testing.assert_array_equal(out[i][c:], 0.0)
        elif op.kind == "matrix":
            _close(out[i][:c][:, m], ref, tol)
            np.testing.assert_array_equal(out[i][c:], 0.0)
            np.testing.assert_array_equal(out[i][:, ~m], 0.0)
        else:
            _close(out[i], ref, tol)
    if op.grad_filtered:
        _check_filtered_gradient(op, lists, padded, mask)


def _check_filtered_gradient(op, lists, padded, mask):
    """The gradient of the padded lists is the filtered lists' gradient, and 0 on padding."""

    def total(v, *rest, where=None):
        return jnp.sum(op(v, *rest, where=where))

    grad = jax.jit(jax.grad(total))  # one compile per filtered length
    grads = np.asarray(grad(*padded, where=jnp.asarray(mask)))
    assert np.all(np.isfinite(grads))
    np.testing.assert_array_equal(grads[~mask], 0.0)
    for i, m in enumerate(mask):
        if m.any():
            want = grad(*(jnp.asarray(a[i][m]) for a in lists))
            _close(grads[i][m], want, op.family.tol[MASKED])


def _padding_case(op, seed=5):
    """Scores, mask and the entries that must get the fill value and zero gradient.

    Padding holds NaN/inf garbage and row 1 is fully masked. A sampler's row 0 also holds a -inf
    score (never selected) and a dominant one, and its row 2 is all -inf.
    """
    if op.family.key:
        x = np.random.default_rng(12).normal(size=(3, 6))
        where = np.ones((3, 6), bool)
        where[0, [2, 5]] = False
        x[0, 2], x[0, 5] = np.nan, np.inf
        x[0, 1] = -np.inf
        x[0, 3] = 50.0
        where[1] = False
        x[2] = -np.inf
        return x, where, ~where | np.isneginf(x)
    lists, mask = _masked_case(op, seed)
    mask[1] = False
    (x,) = _with_garbage(lists, mask)
    return x, mask, ~mask


@parametrize(PADDING)
def test_padding_and_fully_masked_rows(op):
    x, where, never = _padding_case(op)
    x, where = jnp.asarray(x), jnp.asarray(where)
    out = np.asarray(op(x, where=where))
    assert np.all(np.isfinite(out))
    if op.kind == "elementwise":
        np.testing.assert_array_equal(out[never], op.fill())
    else:  # sorted values and permutation rows put the padding last (test_masked_equals_filtered)
        np.testing.assert_array_equal(out[never.all(-1)], op.fill())
    if op.nonnegative:
        assert np.all(out[~never] >= 0)

    def loss(v):
        y = op(v, where=where)
        # The log-space "never selected" floor is a huge constant: left out of the sum.
        return jnp.sum(jnp.where(y > -1e30, y, 0.0) * _weights(y.shape))

    grad = jax.grad(loss)
    g = np.asarray(jax.jit(grad)(x) if op.family.compiled else grad(x))
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[never], 0.0)
    if op.smooth:
        assert np.any(g[~never] != 0.0)
