"""Test cases for the soft ops, read from the kernel registry, and the per-method exceptions.

Every test of a soft op takes its method list from here, so a newly registered method is tested
by the contract suite (``test_contract.py``), the Hypothesis properties (``test_properties.py``)
and the docstring check (``test_docs.py``) without editing them. A method that cannot meet a
generic check is named in one of the tables below, with the reason; the default is that it
meets every check.
"""

from __future__ import annotations

from rank_relax_jax import methods

# Autodiff gives a surrogate gradient by design, not the derivative of the forward values
# (SmoothI holds its recursive factors under stop_gradient, as its paper does);
# test_methods.py checks these against a finite-difference surrogate instead.
SURROGATE_GRADIENT = frozenset({"smoothi"})

# Soft sorts that are not monotone (SmoothI's later rows compete with the recursive factors of
# the earlier ones; test_methods.py shows a case).
NOT_MONOTONE_SORT = frozenset({"smoothi"})

# Soft ranks guaranteed to lie in [1, m]; a rank read off a relaxed permutation need not (its
# columns need not sum to 1).
RANKS_IN_RANGE = frozenset({"sigmoid", "probabilistic", "isotonic"})

# Temperature at which the hard limit is checked (gaps between sorted values >= 0.5); a method
# that converges more slowly gets its own entry.
HARD_LIMIT_TEMPERATURE: dict[str, float] = {}
DEFAULT_HARD_LIMIT_TEMPERATURE = 1e-3


def hard_limit_temperature(method: str) -> float:
    return HARD_LIMIT_TEMPERATURE.get(method, DEFAULT_HARD_LIMIT_TEMPERATURE)


def cases(operation: str) -> list[tuple[str, dict]]:
    """``(method, options)`` for every registered method of ``operation``.

    Each method once with its default options, plus once per non-default choice of each of its
    options (``regularization="kl"`` for isotonic...).
    """
    out = []
    for entry in methods.entries(operation):
        out.append((entry.method, {}))
        for name, option in entry.options.items():
            for choice in option.choices or ():
                if choice != option.default:
                    out.append((entry.method, {name: choice}))
    return out


def case_id(case: tuple[str, dict]) -> str:
    method, options = case
    return "-".join([method, *map(str, options.values())])
