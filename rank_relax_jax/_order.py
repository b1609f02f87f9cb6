"""Short-row order by counting comparisons, for batches where it beats a sort.

Used by the isotonic kernels (`rank_relax_jax.methods.isotonic`) and usable by any op that
needs the order of many short rows. ``small_order(key, mask)`` returns the stable ascending
order of ``key`` with padding last and its inverse, by counting pairwise comparisons
(`_pairwise_positions`, the same order as ``lax.sort``) when the batch has many rows of at most
``counting_max_n(key)`` entries, by `rank_relax_jax._sort.argsort` otherwise. A
``custom_vmap`` rule makes the choice again on the whole batch under ``vmap``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rank_relax_jax import _axis, _sort

# Short rows in a batch are ordered by counting pairwise comparisons instead of XLA's sort, which
# costs about 9 us per row of 100 on CPU. Measured (soft_rank fwd+bwd, 2-core CPU): 1.3 against
# 2.2 ms at (128, 100), 5.7 against 8.2 ms at (512, 100); above about 5M comparisons the
# comparison matrix leaves the cache and the sort wins (13.9 against 11.0 ms at (768, 100)).
# A single row is cheaper to sort.
_PAIRWISE_MAX_N = 128
_PAIRWISE_MIN_ROWS = 16
_PAIRWISE_MAX_WORK = 5 << 20
# With the packed single-operand sort (rank_relax_jax._sort) the sort is 5-7x cheaper, and
# counting wins only on rows of at most 32 entries. Measured (soft_rank fwd+bwd, 2-core CPU,
# counting against sorting): 0.84 against 1.00 ms at (128, 32), 2.9 against 3.7 ms at (4096, 8);
# from n = 64 the sort wins: 3.9 against 3.3 ms at (256, 64), 5.4 against 3.6 ms at (128, 100).
_PAIRWISE_MAX_N_PACKED = 32


def counting_max_n(key):
    """Longest rows that `small_order` may order by counting (a Python int)."""
    return _PAIRWISE_MAX_N_PACKED if _sort.uses_packed_key(key) else _PAIRWISE_MAX_N


def _pairwise_positions(key, mask):
    """Slot of every entry in the stable ascending order of ``key`` (padding, then NaN, last).

    Matches ``lax.sort``: NaNs compare equal to each other and after every number, -0.0 equals
    0.0, ties keep their index order. ``[R, n]`` rows; an ``[R, n, n]`` boolean temporary
    (bounded by ``_PAIRWISE_MAX_WORK``).
    """
    n = key.shape[-1]
    idx = jnp.arange(n)
    earlier = (idx[:, None] < idx[None, :])[None]
    nan = jnp.isnan(key)
    k = jnp.where(nan, jnp.zeros((), key.dtype), key)
    pad = jnp.zeros(key.shape, bool) if mask is None else ~mask
    kj, ki = k[:, :, None], k[:, None, :]
    nj, ni = nan[:, :, None], nan[:, None, :]
    pj, pi = pad[:, :, None], pad[:, None, :]
    key_before = (~nj & ni) | ((nj == ni) & ((kj < ki) | ((kj == ki) & earlier)))
    before = (~pj & pi) | ((pj == pi) & key_before)
    return jnp.sum(before, axis=1, dtype=jnp.int32)


def _small_order_impl(key, mask):
    """``(perm, pos)`` of ``[..., n]`` rows with ``n <= _PAIRWISE_MAX_N``: counting or a sort."""
    n = key.shape[-1]
    rows = math.prod(key.shape[:-1])
    iota = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), key.shape)
    if rows < _PAIRWISE_MIN_ROWS or rows * n * n > _PAIRWISE_MAX_WORK:
        perm = _sort.argsort(key, mask, descending=False)
        return perm, _axis.unsort(perm, iota)
    m = None if mask is None else mask.reshape(rows, n)
    pos = _pairwise_positions(key.reshape(rows, n), m).reshape(key.shape)
    return _axis.unsort(pos, iota), pos


def _batched_rule(fn):
    # The choice depends on the number of rows, so under vmap it is made again on the whole
    # batch; otherwise a vmapped call could build a comparison matrix far above the limit.
    def rule(axis_size, in_batched, *args):
        args = (
            a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))
            for a, batched in zip(args, in_batched, strict=True)
        )
        return fn(*args), (True, True)

    return rule


@jax.custom_batching.custom_vmap
def _small_order(key):
    return _small_order_impl(key, None)


@jax.custom_batching.custom_vmap
def _small_order_masked(key, mask):
    return _small_order_impl(key, mask)


_small_order.def_vmap(_batched_rule(_small_order))
_small_order_masked.def_vmap(_batched_rule(_small_order_masked))


def small_order(key, mask):
    """``(perm, pos)``: stable ascending order of ``key`` (padding last) and its inverse.

    ``key`` is ``[..., n]`` with ``n <= counting_max_n(key)``; ``mask`` is ``[..., n]`` bool or
    None. ``perm[..., j]`` is the index of the entry in slot ``j``, ``pos[..., i]`` the slot of
    entry ``i``. O(n²) comparisons per row when counting, O(n log n) when sorting.
    """
    if mask is None:
        return _small_order(key)
    return _small_order_masked(key, mask)
