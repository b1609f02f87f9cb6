"""Test cases for the soft ops, read from the kernel registry, and the per-method exceptions.

Every test of a soft op takes its method list from here, so a newly registered method is tested
by the contract suite (``test_contract.py``), the Hypothesis properties (``test_properties.py``)
and the docstring check (``test_docs.py``) without editing them. A method that cannot meet a
generic check is named in one of the tables below, with the reason; the default is that it
meets every check.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rank_relax_jax import methods

# Autodiff gives a surrogate gradient by design, not the derivative of the forward values
# (SmoothI holds its recursive factors under stop_gradient, as its paper does);
# test_methods.py checks these against a finite-difference surrogate instead.
SURROGATE_GRADIENT = frozenset({"smoothi"})

# Soft sorts that are not monotone (SmoothI's later rows compete with the recursive factors of
# the earlier ones; test_methods.py shows a case).
NOT_MONOTONE_SORT = frozenset({"smoothi"})

# Soft ranks guaranteed to lie in [1, m]; a rank read off a relaxed permutation need not (its
# columns need not sum to 1). The network's ranks are P^T (1..m) with P doubly stochastic.
RANKS_IN_RANGE = frozenset({"sigmoid", "probabilistic", "isotonic", "network"})

# Outputs that depend on the order of the input, not only on its values: a relaxed sorting
# network mixes fixed wire pairs, so permuted inputs meet different partners (network.py).
# The permutation-invariance / equivariance checks skip them; their other checks still run.
NOT_PERMUTATION_INVARIANT = frozenset({"network"})

# Methods whose equal scores need not get equal (average) ranks: a network comparator of a tie
# has alpha = 1/2 and averages only its own pair, so a tie of three or more entries is not mixed
# evenly by the layers (two-way ties are with the logistic sigmoid, not always with the heavy
# tails: network.py, "Limit behaviour").
TIES_NOT_AVERAGED = frozenset({"network"})

# Methods whose outputs need not become uniform (every rank the middle one, every sorted slot
# the mean) as the temperature grows: every network alpha tends to 1/2, so P tends to a fixed
# product of pair-averaging layers, uniform only for the bitonic network on a power of two.
NOT_UNIFORM_AT_HUGE_TEMPERATURE = frozenset({"network"})

# Temperature at which the hard limit is checked (gaps between sorted values >= 0.5), keyed by
# case id (``case_id``: "network-cauchy") or by method; one that converges more slowly gets its
# own entry.
HARD_LIMIT_TEMPERATURE: dict[str, float] = {
    # Heavy tails: a swap of values d apart leaks 1 - f(d/tau) ~ tau/(pi d) (cauchy) or
    # tau/(4 d) (reciprocal) of its mass, so a rank moves by up to L (n - 1) tau/(pi d) over
    # the L <= 8 layers of n <= 8 wires: 1e-5 keeps that below 4e-4 at d = 0.5 (atol 1e-3).
    "network-cauchy": 1e-5,
    "network-reciprocal": 1e-5,
    # Entropic blur ~ exp(-Delta/(2 eps)) with Delta = 2 dz dy the cost gain of a swap: after
    # the squash a 0.5 gap among values in [-20, 20] can be dz ~ 2e-3 (grid spacing dy = 1/7),
    # which needs eps <~ 3e-5 for a 1e-4 leak (at 1e-3 the error is measured at 4e-3).
    "sinkhorn": 1e-5,
}
DEFAULT_HARD_LIMIT_TEMPERATURE = 1e-3


def hard_limit_temperature(method: str, options: dict | None = None) -> float:
    """The hard-limit temperature of a case: its case id's entry, else its method's."""
    key = case_id((method, options or {}))
    return HARD_LIMIT_TEMPERATURE.get(
        key, HARD_LIMIT_TEMPERATURE.get(method, DEFAULT_HARD_LIMIT_TEMPERATURE)
    )


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


# Limits of tests/test_numerics.py that a method meets in its own documented form (keyed by
# method; the default is the generic statement of the test). Each is stated in the method's
# docstring and in docs/methods.md.

# Exact ties at small temperature, on test_numerics.TIED = [1, 3, 1, 2]: the default is the
# average rank [1.5, 4, 1.5, 3] and the sorted values [1, 1, 2, 3].
# SmoothI: at rank r the tied winners each get I^r = 1/2, so their recursive factor drops to
# (1/2 - δ) B instead of -δ B and the next value wins rank r + 1; the tie is split again at every
# later rank and never resolved (the rows of I sum to 1, its columns do not).
TIES_AT_SMALL_TEMPERATURE: dict[str, dict[str, list[float]]] = {
    "smoothi": {"rank": [4.0, 0.0, 4.0, 2.0], "sort": [1.0, 2.0, 1.0, 1.0]},
}


def _lapsum_sort_at_huge_temperature(x: np.ndarray, temperature: float) -> np.ndarray:
    # G(t) -> m F((t - mean) / τ), F the standard Laplace CDF, so slot r -> mean + τ F^-1(q_r)
    # with q_r = (r - 1/2) / m: Laplace quantiles scaled by τ, not the mean.
    m = x.shape[-1]
    q = (np.arange(1, m + 1) - 0.5) / m
    quantile = np.where(q < 0.5, np.log(2 * q), -np.log(2 * (1 - q)))
    return x.mean(-1, keepdims=True) + temperature * quantile


# Soft sort at huge temperature: the default is every slot at the list's mean (a convex
# combination of the inputs that forgets the order); a method listed here maps (x, temperature)
# to its own limit.
HUGE_TEMPERATURE_SORT_LIMIT: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "lapsum": _lapsum_sort_at_huge_temperature,
}
