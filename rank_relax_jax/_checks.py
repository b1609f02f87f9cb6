"""Argument validation shared by every public op.

Every check runs at trace time on static facts only (shapes, dtypes, Python values); a traced
value is never inspected. Each error names the public function, the argument, what was expected
and what was received, so a user can fix the call without reading our source.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(value: Any) -> bool:
    """Returns True when ``value`` is a tracer (its contents are unknown at trace time)."""
    return isinstance(value, jax.core.Tracer)


def as_array(fn: str, name: str, x: Any) -> jax.Array:
    """Converts ``x`` to an array as ``jnp.asarray`` does (lists and NumPy arrays are accepted).

    ``None``, strings and other objects that are not numeric arrays raise a TypeError naming
    ``fn`` and ``name`` here, instead of jax's own message that names neither.
    """
    if isinstance(x, jax.Array | jax.core.Tracer):
        return x
    if x is None or isinstance(x, str | bytes):
        raise TypeError(f"{fn}: argument `{name}` must be an array; got {type(x).__name__}.")
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{fn}: argument `{name}` must be an array (or a nested list of numbers); got "
            f"{type(x).__name__}: {err}"
        ) from None


def check_floating(fn: str, name: str, x: Any) -> jax.Array:
    """Converts ``x`` to an array and checks that its dtype is floating."""
    x = as_array(fn, name, x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{fn}: argument `{name}` must have a floating dtype (float16, bfloat16, float32 or "
            f"float64); got dtype {x.dtype}. Cast it first, e.g. `{name}.astype(jnp.float32)`."
        )
    return x


def check_axis(fn: str, axis: Any, ndim: int, name: str = "x") -> int:
    """Checks ``axis`` against an array of rank ``ndim``; returns it as a non-negative int."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(
            f"{fn}: argument `axis` must be a Python int; got {axis!r} of type "
            f"{type(axis).__name__}."
        ) from None
    if ndim == 0:
        raise ValueError(
            f"{fn}: argument `{name}` must have at least one dimension to rank along; got a scalar."
        )
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{fn}: argument `axis` must be in [{-ndim}, {ndim - 1}] for `{name}` of rank {ndim}; "
            f"got {axis}."
        )
    return axis % ndim


def check_k(fn: str, k: Any, n: int) -> int:
    """Checks that ``k`` is a static int in ``1..n``."""
    try:
        k = operator.index(k)
    except TypeError:
        raise TypeError(
            f"{fn}: argument `k` must be a static Python int in 1..{n}; got {k!r} of type "
            f"{type(k).__name__}. If it is traced, mark it static "
            f"(`jax.jit(..., static_argnames='k')`)."
        ) from None
    if not 1 <= k <= n:
        raise ValueError(
            f"{fn}: argument `k` must be in 1..{n} (the length of the ranked axis); got {k}."
        )
    return k


def check_positive_int(fn: str, name: str, value: Any) -> int:
    """Checks that ``value`` is a static positive Python int."""
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{fn}: argument `{name}` must be a static positive Python int; got {value!r} of type "
            f"{type(value).__name__}."
        ) from None
    if value < 1:
        raise ValueError(f"{fn}: argument `{name}` must be a positive int; got {value}.")
    return value


def check_positive(fn: str, name: str, value: Any) -> Any:
    """Checks that a (possibly traced) scalar option such as ``temperature`` is positive.

    A traced value cannot be inspected and is passed through; a concrete value must be a
    scalar, finite-or-inf and strictly positive.
    """
    if is_traced(value):
        if jnp.ndim(value) != 0:
            raise ValueError(
                f"{fn}: argument `{name}` must be a scalar; got shape {jnp.shape(value)}."
            )
        return value
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"{fn}: argument `{name}` must be a scalar; got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{fn}: argument `{name}` must be a real number; got {value!r}.")
    if not arr > 0:
        raise ValueError(f"{fn}: argument `{name}` must be positive; got {value!r}.")
    return value


def check_float_dtype(fn: str, name: str, dtype: Any) -> Any:
    """Checks that ``dtype`` (a dtype argument, not an array) names a floating dtype."""
    try:
        ok = jnp.issubdtype(np.dtype(dtype), jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(
            f"{fn}: argument `{name}` must be a floating dtype (e.g. jnp.float32); got {dtype!r}."
        )
    return dtype


def check_choice(fn: str, name: str, value: Any, valid: Sequence[str]) -> str:
    """Checks that ``value`` is one of the strings in ``valid``."""
    if not isinstance(value, str) or value not in valid:
        choices = ", ".join(repr(v) for v in valid)
        raise ValueError(f"{fn}: argument `{name}` must be one of {choices}; got {value!r}.")
    return value


def check_where(fn: str, where: Any, shape: tuple[int, ...]) -> jax.Array | None:
    """Checks a ``where`` mask and broadcasts it to ``shape``; ``None`` stays ``None``."""
    if where is None:
        return None
    where = as_array(fn, "where", where)
    if where.dtype != jnp.bool_:
        raise TypeError(
            f"{fn}: argument `where` must be a boolean array (True = valid, False = padding); "
            f"got dtype {where.dtype}."
        )
    return check_broadcastable(fn, "where", where, shape)


def check_broadcastable(
    fn: str, name: str, x: jax.Array, shape: tuple[int, ...], target: str = "the input shape"
) -> jax.Array:
    """Broadcasts ``x`` to ``shape`` explicitly, or raises a ValueError naming ``name``.

    Explicit, because implicit rank promotion may be set to raise in user code.
    """
    try:
        ok = np.broadcast_shapes(x.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{fn}: argument `{name}` must be broadcastable to {target} {tuple(shape)}; "
            f"got shape {x.shape}."
        )
    return jnp.broadcast_to(x, shape)


def check_key(fn: str, key: Any) -> jax.Array:
    """Accepts a typed (``jax.random.key``) or legacy (``PRNGKey``) key; returns a typed key.

    A batch of keys is rejected with a hint to ``vmap``: silently using one of them, or
    broadcasting, would hide a bug in the caller's sampling code.
    """
    if isinstance(key, jax.Array | jax.core.Tracer) and jax.dtypes.issubdtype(
        key.dtype, jax.dtypes.prng_key
    ):
        batch_shape = key.shape
    else:
        arr = key if isinstance(key, jax.Array | jax.core.Tracer) else np.asarray(key)
        if arr.dtype != np.uint32 or arr.ndim == 0:
            raise TypeError(
                f"{fn}: argument `key` must be a PRNG key from `jax.random.key(seed)` or "
                f"`jax.random.PRNGKey(seed)`; got {type(key).__name__} with dtype "
                f"{getattr(arr, 'dtype', None)} and shape {getattr(arr, 'shape', None)}."
            )
        batch_shape = arr.shape[:-1]
        if not batch_shape:
            try:
                key = jax.random.wrap_key_data(jnp.asarray(arr))
            except (TypeError, ValueError):
                raise TypeError(
                    f"{fn}: argument `key` must be a PRNG key from `jax.random.key(seed)` or "
                    f"`jax.random.PRNGKey(seed)`; got uint32 key data of shape {arr.shape}, "
                    f"which is not a key of the default PRNG implementation."
                ) from None
    if batch_shape:
        raise ValueError(
            f"{fn}: argument `key` must be a single PRNG key; got a batch of keys with shape "
            f"{tuple(batch_shape)}. To draw once per key, map over the keys: "
            f"`jax.vmap(lambda k: {fn}(k, ...))(keys)`."
        )
    return key
