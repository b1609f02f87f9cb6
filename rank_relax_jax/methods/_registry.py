"""The kernel registry: every (operation, method) pair the public soft ops dispatch to.

A relaxation is one module in `rank_relax_jax.methods` plus one `register` call per operation it
implements (in ``methods/__init__.py``). The public wrappers (`rank_relax_jax.ranking`,
`rank_relax_jax.topk`) validate ``method`` and the method's own options through `lookup` and
`resolve_options`, so a new method needs no change there; tests, benchmarks and figure scripts
read the method lists from `methods`.

Kernel signatures (``x`` is ``[..., n]`` in the compute dtype with padding set to 0, ``mask`` is
a ``[..., n]`` boolean array or ``None``, ``temperature`` a scalar array)::

    rank, sort, permutation:  kernel(x, mask, temperature, *, descending, **options)
    topk:                     kernel(x, mask, k, temperature, **options)

Per-method options are keyword arguments of the public op (``regularization="kl"`` for
``isotonic``, ``num_iterations=...`` for ``sinkhorn``...). Each is declared here with its default
and a validator, so an unknown option, or one given to a method that does not take it, raises a
``ValueError`` that names the public function, the option and the methods that accept it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from rank_relax_jax import _axis, _checks

OPERATIONS = ("rank", "sort", "permutation", "topk")


@dataclasses.dataclass(frozen=True)
class Option:
    """A per-method keyword option of the public ops.

    Attributes:
      default: Value used when the caller does not pass the option.
      choices: Allowed values (strings), or ``None`` when ``check`` validates instead.
      check: ``check(fn, name, value) -> value`` raising ``ValueError``/``TypeError`` that names
        ``fn`` and ``name``; used when ``choices`` is ``None``.
      static: Whether the value is a static Python value (part of the compiled program). A
        non-static option may be traced (like ``temperature``).
    """

    default: Any
    choices: tuple[Any, ...] | None = None
    check: Callable[[str, str, Any], Any] | None = None
    static: bool = True

    def validate(self, fn: str, name: str, value: Any) -> Any:
        if self.choices is not None:
            return _checks.check_choice(fn, name, value, self.choices)
        if self.check is not None:
            return self.check(fn, name, value)
        return value


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered kernel.

    Attributes:
      operation: One of `OPERATIONS`.
      method: The public ``method=`` string.
      kernel: The last-axis kernel (see the module docstring for its signature).
      options: The method's keyword options for this operation, by name.
      cost: Time complexity over one list of n, as shown in docs (e.g. ``"O(n log n)"``).
      summary: One line for docs and tables: the relaxation and its reference.
    """

    operation: str
    method: str
    kernel: Callable[..., Any]
    options: Mapping[str, Option]
    cost: str
    summary: str


_REGISTRY: dict[tuple[str, str], Entry] = {}


def register(
    operation: str,
    method: str,
    kernel: Callable[..., Any],
    *,
    cost: str,
    summary: str,
    options: Mapping[str, Option] | None = None,
) -> Entry:
    """Adds ``kernel`` as ``method`` of ``operation``; registering a pair twice is an error."""
    if operation not in OPERATIONS:
        raise ValueError(f"register: unknown operation {operation!r}; expected one of {OPERATIONS}")
    if (operation, method) in _REGISTRY:
        raise ValueError(f"register: ({operation!r}, {method!r}) is registered already")
    entry = Entry(operation, method, kernel, dict(options or {}), cost, summary)
    _REGISTRY[(operation, method)] = entry
    return entry


def methods(operation: str) -> tuple[str, ...]:
    """The registered methods of ``operation``, in registration order."""
    return tuple(m for op, m in _REGISTRY if op == operation)


def entries(operation: str | None = None) -> tuple[Entry, ...]:
    """Every registered entry (of one operation, if given), in registration order."""
    return tuple(e for (op, _), e in _REGISTRY.items() if operation in (None, op))


def lookup(fn: str, operation: str, method: Any) -> Entry:
    """The entry of ``method`` for ``operation``; ValueError listing the valid methods if none."""
    _checks.check_choice(fn, "method", method, methods(operation))
    return _REGISTRY[(operation, method)]


def option_names(operation: str) -> tuple[str, ...]:
    """Every option name that some method of ``operation`` accepts (sorted)."""
    return tuple(sorted({name for e in entries(operation) for name in e.options}))


def resolve_options(
    fn: str, entry: Entry, given: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validates the caller's options for ``entry`` and fills in the method's defaults.

    Args:
      fn: Public function name, for error messages.
      entry: The looked-up entry.
      given: Options the caller passed (keyword arguments of the public op).
      defaults: Options that are explicit keywords of the public signature (e.g.
        ``regularization="l2"``) with their signature default. Such an option left at that
        default is not an error for a method that does not take it; any other value is.

    Returns:
      The keyword options to pass to ``entry.kernel``.
    """
    defaults = dict(defaults or {})
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name in entry.options:
            out[name] = entry.options[name].validate(fn, name, value)
            continue
        if name in defaults and _same(value, defaults[name]):
            continue
        takers = [e.method for e in entries(entry.operation) if name in e.options]
        if takers:
            which = ", ".join(repr(m) for m in takers)
            raise ValueError(
                f"{fn}: argument `{name}` does not apply to method={entry.method!r}; it applies "
                f"to method {which}; got {name}={value!r}."
            )
        known = ", ".join(repr(k) for k in option_names(entry.operation)) or "none"
        raise TypeError(
            f"{fn}: unexpected keyword argument `{name}` (method={entry.method!r}); method "
            f"options of {fn}: {known}."
        )
    for name, opt in entry.options.items():
        out.setdefault(name, opt.default)
    return out


def dispatch(
    fn: str,
    operation: str,
    method: Any,
    x: Any,
    *,
    axis: int,
    where: Any,
    options: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
) -> tuple[Entry, dict[str, Any], _axis.Frame]:
    """The first steps every public soft op takes, in the order its errors should come.

    Looks up ``method`` (`lookup`), validates the method's ``options`` (`resolve_options`) and
    prepares ``x`` over ``axis`` and ``where`` (`rank_relax_jax._axis.prepare`). Returns the
    entry, the kernel's keyword options and the frame.
    """
    entry = lookup(fn, operation, method)
    opts = resolve_options(fn, entry, options, defaults=defaults)
    return entry, opts, _axis.prepare(fn, x, axis=axis, where=where)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # an array option compared with a default: not the default
        return False
