"""Axis, mask and dtype plumbing used by every public op, written once.

A method is implemented once as a kernel over the last axis of a ``[..., n]`` array. The public
wrapper calls `prepare`, which validates the input, moves ``axis`` to the end, broadcasts
``where`` and casts half precision to float32; the kernel computes; then one of the ``Frame``'s
``finish_*`` methods re-applies the mask, casts back and moves the axis home.

Padding is replaced by 0 *before* the kernel sees it (so no NaN or inf in a padded slot can reach
a valid output or a gradient), and the output is re-masked *after* the kernel (so padding's output
is exactly 0 and its gradient exactly 0): the double-``where`` pattern of ``jax.nn``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rank_relax_jax import _checks, _sort


def compute_dtype(dtype: Any) -> np.dtype:
    """The dtype a kernel computes in: float32 for half precision, else the input's dtype."""
    dtype = np.dtype(dtype)
    if dtype.itemsize < 4:
        return np.dtype(jnp.float32)
    return dtype


@dataclasses.dataclass(frozen=True)
class Frame:
    """An input prepared for a last-axis kernel, and how to put its output back.

    Attributes:
      fn: Name of the public function (for error messages).
      x: ``[..., n]`` input in the compute dtype, padding replaced by 0.
      mask: ``[..., n]`` boolean validity mask, or ``None`` when every entry is valid.
      axis: The (non-negative) axis of the original input that was moved last.
      dtype: The input's dtype, which every floating output gets back.
    """

    fn: str
    x: jax.Array
    mask: jax.Array | None
    axis: int
    dtype: np.dtype

    @property
    def n(self) -> int:
        """Static length of the ranked axis."""
        return self.x.shape[-1]

    def valid(self) -> jax.Array:
        """The mask as an array (all True when there is no mask)."""
        if self.mask is None:
            return jnp.ones(self.x.shape, dtype=bool)
        return self.mask

    def count(self, dtype: Any = jnp.int32) -> jax.Array:
        """``[...]`` number of valid entries in each list."""
        if self.mask is None:
            return jnp.full(self.x.shape[:-1], self.n, dtype=dtype)
        return jnp.sum(self.mask, axis=-1, dtype=dtype)

    def positive_scalar(self, value: Any, name: str = "temperature") -> jax.Array:
        """Validates a positive scalar option and returns it in the compute dtype.

        Used for every such option: ``temperature``, the Gumbel ``scale``, the perturbation
        ``sigma``, the loss cutoff widths.

        A concrete value must be positive (else ValueError). A traced one cannot be checked at
        trace time, so a non-positive (or NaN) value becomes NaN: every valid output of the op
        is then NaN, instead of a plausible-looking wrong answer (a negative temperature
        reverses every order).
        """
        _checks.check_positive(self.fn, name, value)
        t = jnp.asarray(value, dtype=self.x.dtype)
        if _checks.is_traced(value):
            t = jnp.where(t > 0, t, jnp.asarray(jnp.nan, t.dtype))
        return t

    def _cast(self, out: jax.Array) -> jax.Array:
        if jnp.issubdtype(out.dtype, jnp.floating):
            return out.astype(self.dtype)
        return out

    def finish_elementwise(self, out: jax.Array, fill: Any = 0) -> jax.Array:
        """Output aligned with the input (ranks, masks): padding gets ``fill``."""
        if self.mask is not None:
            out = jnp.where(self.mask, out, jnp.asarray(fill, out.dtype))
        return jnp.moveaxis(self._cast(out), -1, self.axis)

    def finish_sorted(self, out: jax.Array) -> jax.Array:
        """Output in sorted order: the kernel puts valid values first; the tail is zero-filled."""
        if self.mask is not None:
            slots = jnp.broadcast_to(jnp.arange(self.n), self.x.shape) < self.count()[..., None]
            out = jnp.where(slots, out, jnp.zeros((), out.dtype))
        return jnp.moveaxis(self._cast(out), -1, self.axis)

    def finish_matrix(self, out: jax.Array) -> jax.Array:
        """``[..., n, n]`` output (rows: sorted slots, columns: input entries).

        Rows past the number of valid entries and columns of padded entries are zero. The batch
        axes keep their order with the ranked axis removed.
        """
        if self.mask is not None:
            rows = jnp.broadcast_to(jnp.arange(self.n), self.x.shape) < self.count()[..., None]
            keep = rows[..., :, None] & self.mask[..., None, :]
            out = jnp.where(keep, out, jnp.zeros((), out.dtype))
        return self._cast(out)

    def finish_reduced(self, out: jax.Array) -> jax.Array:
        """Output with the ranked axis reduced away (``[...]``)."""
        return self._cast(out)


def prepare(fn: str, x: Any, *, axis: int = -1, where: Any = None, name: str = "x") -> Frame:
    """Validates ``x``, ``axis`` and ``where`` and moves the ranked axis last.

    Args:
      fn: Name of the public function, used in error messages.
      x: Floating input array.
      axis: Axis to operate along.
      where: Optional boolean mask broadcastable to ``x``; ``False`` marks padding.
      name: Name of the ``x`` argument in the public signature.

    Returns:
      A `Frame` whose ``x`` is ``[..., n]`` in the compute dtype with padding set to 0.
    """
    x = _checks.check_floating(fn, name, x)
    ax = _checks.check_axis(fn, axis, x.ndim, name)
    mask = _checks.check_where(fn, where, x.shape)
    dtype = x.dtype
    xl = jnp.moveaxis(x, ax, -1).astype(compute_dtype(dtype))
    if mask is not None:
        mask = jnp.moveaxis(mask, ax, -1)
        xl = jnp.where(mask, xl, jnp.zeros((), xl.dtype))
    return Frame(fn=fn, x=xl, mask=mask, axis=ax, dtype=np.dtype(dtype))


def unsort(perm: jax.Array, values: jax.Array) -> jax.Array:
    """Inverse of ``take_along_axis(v, perm, -1)``: ``out[..., perm[..., i]] = values[..., i]``.

    A scatter, O(n), instead of a second sort to invert the permutation. Written as a 1-D
    scatter vmapped over the batch axes, so the scatter carries batch dimensions and XLA's SPMD
    partitioner keeps a sharded batch on its devices (explicit row indices over a flattened
    batch made it all-gather the batch).
    """

    def one(p: jax.Array, v: jax.Array) -> jax.Array:
        return jnp.zeros_like(v).at[p].set(v, unique_indices=True)

    for _ in range(perm.ndim - 1):
        one = jax.vmap(one)
    return one(perm, values)


def argsort_valid(x: jax.Array, mask: jax.Array | None, *, descending: bool) -> jax.Array:
    """Stable argsort over the last axis with padding placed last: `_sort.argsort`.

    Kept under this name for code written against it; the library calls `_sort.argsort`.
    """
    return _sort.argsort(x, mask, descending=descending)
