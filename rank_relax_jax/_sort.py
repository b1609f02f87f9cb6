"""The library's one sort: a stable argsort over the last axis with padding placed last.

Every op that orders a list (exact `rank`, `topk_mask`, the metrics and losses that need an
order, the isotonic projections, the permutation methods) gets its order from `argsort` here, so
the order itself (ties, NaN, signed zeros, padding) and the speed of computing it are defined in
one place.

Why a packed key. XLA:CPU sorts one array of a primitive type with ``std::sort`` and the
built-in ``<`` when the comparator is one plain comparison. Every other sort calls the compiled
comparator through a function pointer for each comparison and moves every operand in step: a
two-operand sort such as ``jnp.argsort`` (key and positions), and even a one-operand float sort,
whose comparator first maps -0.0 to +0.0 and every NaN to one NaN. That is 6-8x slower (see
docs/performance.md). So on CPU a row of float32 (or float16/bfloat16, upcast exactly) becomes
one ``uint64`` per entry::

    bit 63        1 for padding, 0 for a valid entry
    bits 62..31   the float's bits as an unsigned integer in the float's order
    bits 30..0    the entry's position

and that single array is sorted. Each key is distinct (the position is part of it), so any sort
of it gives the stable order, and the low 31 bits of the sorted keys are the permutation.
The 64-bit integers live only inside this function, traced under a scoped ``jax.enable_x64``; the
output is int32, so callers never see a 64-bit type whether x64 is on or off. Scoped x64 inside
``jit`` is supported from JAX 0.8.0, the release that added ``jax.enable_x64`` (jax-ml/jax#5982,
fixed in September 2025; on JAX 0.4.31 the same code fails to lower). On older JAX, for float64
input, and for rows of 2**31 or more entries, `argsort` uses the comparator sort it always used
(``lax.sort`` of (key, positions)); on other backends than CPU too, until that is measured there
(benchmarks/bench_sort_gpu.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Positions occupy the low 31 bits of a packed key, so rows must be shorter than this.
_MAX_PACKED_N = 1 << 31
# JAX >= 0.8.0: `jax.enable_x64` is public and scoped x64 inside `jit` lowers correctly.
_SCOPED_X64 = hasattr(jax, "enable_x64")
_PACKED_DTYPES = (np.dtype(jnp.float32), np.dtype(jnp.float16), np.dtype(jnp.bfloat16))

PATHS = ("auto", "packed", "comparator")
_forced = "auto"


@contextlib.contextmanager
def forced_path(path: str) -> Iterator[None]:
    """Makes every `argsort` traced inside the block take ``path`` (tests and benchmarks only).

    ``"packed"`` uses the packed key on every backend where it applies (it still needs JAX
    >= 0.8 and a float32/float16/bfloat16 row shorter than 2**31); ``"comparator"`` always uses
    the comparator sort. JAX's caches are cleared on entry and exit, because the library's
    jitted kernels would otherwise reuse a trace made under the other setting.
    """
    global _forced
    if path not in PATHS:
        raise ValueError(f"forced_path: `path` must be one of {PATHS}; got {path!r}.")
    previous = _forced
    _forced = path
    jax.clear_caches()
    try:
        yield
    finally:
        _forced = previous
        jax.clear_caches()


def uses_packed_key(x: jax.Array) -> bool:
    """Whether `argsort` of ``x`` takes the packed key when compiled for CPU (static facts).

    For choices that depend on what a sort costs (the isotonic method's short-row threshold).
    """
    return _forced != "comparator" and packable(x)


def packable(x: jax.Array) -> bool:
    """Whether `argsort` can sort ``x`` through a packed key (static facts only)."""
    n = x.shape[-1] if x.ndim else 0
    return (
        _SCOPED_X64
        and np.dtype(x.dtype) in _PACKED_DTYPES
        and isinstance(n, int)  # a symbolic (shape-polymorphic) length cannot be bounded
        and n < _MAX_PACKED_N
    )


def argsort(x: jax.Array, mask: jax.Array | None = None, *, descending: bool = False) -> jax.Array:
    """Stable argsort over the last axis, padding last; int32 positions, no gradient.

    The permutation orders the entries of each row by the triple (padding, key, position):

    * ``key`` is ``x``, or ``-x`` when ``descending`` (then the largest comes first and equal
      values still keep their position order);
    * keys are ordered as ``lax.sort`` orders them: ``-inf`` < finite values < ``+inf`` < NaN;
      every NaN (either sign, any payload) ties with every other NaN, so NaN entries come last
      in both directions, in position order; ``-0.0`` ties with ``+0.0``; a subnormal that the
      backend flushes to zero in comparisons (XLA:CPU does) ties with zero;
    * padding (``mask`` False) comes after every valid entry, NaN included, and is ordered among
      itself by the same rule.

    float16 and bfloat16 are ordered as their (exact) float32 values. This is
    ``np.argsort(key, kind="stable")`` with NaNs tied and subnormals flushed as above
    (tests/test_sort.py checks it on both paths).

    Args:
      x: ``[..., n]`` array (floating, or any type ``lax.sort`` accepts on the comparator path).
      mask: Optional ``[..., n]`` boolean array; ``False`` marks padding.
      descending: If True, order by ``-x``.

    Returns:
      ``[..., n]`` int32 permutation: ``take_along_axis(x, perm, -1)`` is the sorted row.
    """
    x = lax.stop_gradient(x)
    if np.dtype(x.dtype) in _PACKED_DTYPES:
        # Half precision is ordered as its exact float32 values on both paths (the backend may
        # flush float32 subnormals in comparisons but not bfloat16 ones).
        x = x.astype(jnp.float32)
    path = _forced
    if path == "comparator" or not packable(x):
        return _argsort_comparator(x, mask, descending)
    if path == "packed":
        return _argsort_packed(x, mask, descending)

    # Only XLA:CPU is measured to gain (docs/performance.md); elsewhere keep the comparator.
    # platform_dependent lowers only the branch of the platform being compiled for.
    def packed(v, *m):
        return _argsort_packed(v, m[0] if m else None, descending)

    def comparator(v, *m):
        return _argsort_comparator(v, m[0] if m else None, descending)

    operands = (x,) if mask is None else (x, mask)
    return lax.platform_dependent(*operands, cpu=packed, default=comparator)


def _argsort_comparator(x, mask, descending):
    """``lax.sort`` of (padding flag, key, positions): the comparator path."""
    n = x.shape[-1]
    key = -x if descending else x
    iota = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), x.shape)
    if mask is None:
        _, perm = lax.sort((key, iota), dimension=x.ndim - 1, num_keys=1, is_stable=True)
    else:
        pad = (~mask).astype(jnp.int32)
        _, _, perm = lax.sort((pad, key, iota), dimension=x.ndim - 1, num_keys=2, is_stable=True)
    return perm


def _ordered_bits(x):
    """uint32 whose unsigned order is ``lax.sort``'s order of the float32 ``x``.

    The two ``where``s are ``lax.sort``'s own canonicalisation (``_canonicalize_float_for_sort``),
    written with the same float comparisons so that whatever the backend treats as zero (a
    flushed subnormal) or NaN here, it treats the same way there.
    """
    x = jnp.where(x == 0, jnp.zeros((), x.dtype), x)
    x = jnp.where(jnp.isnan(x), jnp.full((), np.nan, x.dtype), x)
    b = lax.bitcast_convert_type(x, jnp.int32)
    # Negative floats: flip every bit (larger magnitude -> smaller key); others: set the sign
    # bit. Unsigned order of the result == float order, with the one NaN above +inf.
    flip = lax.shift_right_arithmetic(b, np.int32(31)) | np.int32(-(2**31))
    return lax.bitcast_convert_type(b ^ flip, jnp.uint32)


def _argsort_packed(x, mask, descending):
    """One single-operand ``uint64`` sort (module docstring)."""
    x = x.astype(jnp.float32)  # exact for float16/bfloat16
    bits = _ordered_bits(-x if descending else x)
    dim = x.ndim - 1
    with jax.enable_x64(True):
        key = lax.shift_left(lax.convert_element_type(bits, np.uint64), np.uint64(31))
        key = key | lax.broadcasted_iota(np.uint64, x.shape, dim)
        if mask is not None:
            key = jnp.where(mask, key, key | np.uint64(1 << 63))
        # Keys are distinct, so stability changes nothing; XLA:CPU's std::stable_sort measured
        # 10-15% faster than its std::sort on these keys.
        key = lax.sort(key, dimension=dim, is_stable=True)
        perm = lax.convert_element_type(key & np.uint64(_MAX_PACKED_N - 1), np.int32)
    return perm
