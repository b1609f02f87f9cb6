"""Sharding plumbing: the ops inside ``jax.shard_map`` and on meshes with explicit axes.

Two kinds of sharded program need something from the library itself (the default one, a jit
over arrays sharded on an ``Auto`` mesh, is XLA's SPMD partitioner's business and needs
nothing; ``tests/test_sharding.py``):

* **Inside** ``jax.shard_map`` (checked types, the default), every loop carry must vary over
  the same manual mesh axes in and out. A carry started from a constant (``jnp.zeros``) is
  invariant, the data flowing into it varies, and tracing fails ("scan body function carry
  input and carry output must have equal types"). `vary_like` casts such initial values to
  vary like the data.
* **On a mesh with explicit axes** (``jax.make_mesh``'s default in JAX 0.10, and
  ``jax.sharding.AxisType.Explicit``), sharding is part of every array's type and each
  operation must be able to infer its output sharding: the sort's position operand, gathers
  with row indices and ``vmap`` over a sharded axis cannot. `auto_sharding` runs a public op in
  ``Auto`` mode (``jax.sharding.auto_axes``) for such inputs, leaving the partitioning to XLA
  as in the default case, and gives its outputs the sharding of the input they derive from.

Both helpers tolerate JAX versions without these features (nothing to do there).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["auto_sharding", "fully_manual", "vary_like"]


def _varying_axes(x: Any) -> frozenset:
    """The manual mesh axes that ``x`` varies over inside ``shard_map`` (empty elsewhere)."""
    aval = jax.typeof(x)
    mat = getattr(aval, "manual_axis_type", None)  # JAX 0.10
    if mat is not None:
        return frozenset(getattr(mat, "varying", ()))
    return frozenset(getattr(aval, "vma", ()) or ())  # older JAX: a frozenset attribute


def _cast_varying(x: jax.Array, axes: tuple[str, ...]) -> jax.Array:
    if hasattr(jax.lax, "pcast"):
        return jax.lax.pcast(x, axes, to="varying")
    return jax.lax.pvary(x, axes)


def vary_like(tree: Any, *refs: Any) -> Any:
    """``tree`` with every array cast to vary over the manual axes that any of ``refs`` varies over.

    For the initial values of loop carries inside ``jax.shard_map``; outside it (or where the
    references are invariant) the tree comes back unchanged. Values are never changed.
    """
    axes: frozenset = frozenset()
    for ref in jax.tree.leaves(refs):
        axes |= _varying_axes(ref)
    if not axes:
        return tree

    def cast(a):
        missing = tuple(sorted(axes - _varying_axes(a)))
        return _cast_varying(a, missing) if missing else a

    return jax.tree.map(cast, tree)


def _axis_types(x: Any) -> tuple[tuple, Any]:
    """``(axis types of the mesh in x's type, x's sharding)``; ``((), None)`` when there is none."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    return tuple(getattr(getattr(sharding, "mesh", None), "axis_types", ())), sharding


def _axis_type(name: str):
    return getattr(getattr(jax.sharding, "AxisType", None), name, None)


def fully_manual(x: Any) -> bool:
    """Whether ``x`` is inside a ``jax.shard_map`` over every axis of its mesh."""
    types, _ = _axis_types(x)
    manual = _axis_type("Manual")
    return manual is not None and bool(types) and all(t == manual for t in types)


def _explicit(x: Any) -> bool:
    """Whether ``x`` is an array whose type carries explicit mesh axes."""
    if not isinstance(x, jax.Array):
        return False
    explicit = _axis_type("Explicit")
    return explicit is not None and explicit in _axis_types(x)[0]


def _out_sharding(mesh, spec, ref_shape, out_shape):
    """Sharding of one output: the reference input's spec on the leading dims they share.

    Outputs of the ops keep the input's batch dimensions first (``[..., n]`` in, ``[..., n]``,
    ``[..., n, n]`` or ``[...]`` out), so a leading dimension of the same size keeps its mesh
    axes; the others are replicated.
    """
    entries = []
    for i, size in enumerate(out_shape):
        same = i < len(ref_shape) and ref_shape[i] == size and i < len(spec)
        entries.append(spec[i] if same else None)
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*entries))


def auto_sharding(fn: Callable) -> Callable:
    """Runs a public op in ``Auto`` sharding mode when an input's type has explicit mesh axes.

    The first array argument with explicit axes is the reference: every output keeps its
    sharding on the leading dimensions they share (`_out_sharding`). Inputs without explicit
    axes (the usual case) call ``fn`` directly, at no cost.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        leaves, treedef = jax.tree.flatten((args, kwargs))
        ref = next((a for a in leaves if _explicit(a)), None)
        if ref is None or not hasattr(jax.sharding, "auto_axes"):
            return fn(*args, **kwargs)
        sharding = _axis_types(ref)[1]
        mesh, spec = sharding.mesh, sharding.spec
        dynamic = [i for i, a in enumerate(leaves) if isinstance(a, jax.Array)]

        def call(*arrays):
            filled = list(leaves)
            for i, a in zip(dynamic, arrays, strict=True):
                filled[i] = a
            a, k = jax.tree.unflatten(treedef, filled)
            return fn(*a, **k)

        shapes = jax.eval_shape(
            call,
            *(jax.ShapeDtypeStruct(leaves[i].shape, leaves[i].dtype) for i in dynamic),
        )
        out_sharding = jax.tree.map(lambda s: _out_sharding(mesh, spec, ref.shape, s.shape), shapes)
        return jax.sharding.auto_axes(call, out_sharding=out_sharding)(
            *(leaves[i] for i in dynamic)
        )

    return wrapped
