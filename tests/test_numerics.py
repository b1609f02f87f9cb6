"""Named tests behind the statements of docs/numerics.md: ties and extreme temperatures.

Method lists come from the registry, so a newly registered method is held to the same
statements (or must be listed here with its own documented behaviour).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from _cases import (
    HUGE_TEMPERATURE_SORT_LIMIT,
    NOT_UNIFORM_AT_HUGE_TEMPERATURE,
    TIES_AT_SMALL_TEMPERATURE,
)

from rank_relax_jax import methods, ranking, topk

# Made at import, so float32 (x64 is enabled per test): the dtype where rounding bites.
TIED = jnp.array([1.0, 3.0, 1.0, 2.0])  # entries 0 and 2 tie for ranks 1 and 2
AVERAGE = np.array([1.5, 4.0, 1.5, 3.0])  # scipy.stats.rankdata(..., "average")


@pytest.mark.parametrize("method", methods.methods("rank"))
@pytest.mark.parametrize("temperature", [1e-6, 1e-3])
def test_ties_get_the_average_rank_at_small_temperature(method, temperature):
    expected = TIES_AT_SMALL_TEMPERATURE.get(method, {}).get("rank", AVERAGE)
    out = ranking.soft_rank(TIED, method=method, temperature=temperature)
    np.testing.assert_allclose(out, expected, atol=1e-3)


@pytest.mark.parametrize("method", methods.methods("sort"))
def test_soft_sort_of_ties_is_the_sort_at_small_temperature(method):
    expected = TIES_AT_SMALL_TEMPERATURE.get(method, {}).get("sort", jnp.sort(TIED))
    out = ranking.soft_sort(TIED, method=method, temperature=1e-6)
    np.testing.assert_allclose(out, expected, atol=1e-3)


@pytest.mark.parametrize("method", methods.methods("rank"))
def test_huge_temperature_gives_every_entry_the_middle_rank(method):
    x = jnp.array([0.3, -1.2, 2.5, 0.9, 0.9])
    out = ranking.soft_rank(x, method=method, temperature=1e6)
    if method in NOT_UNIFORM_AT_HUGE_TEMPERATURE:
        # The limit forgets the values but need not be uniform (tests/_cases.py): the ranks of
        # another list are the same, and they still sum to m(m + 1)/2.
        other = ranking.soft_rank(
            jnp.array([4.0, 1.0, -3.0, 0.5, 2.0]), method=method, temperature=1e6
        )
        np.testing.assert_allclose(out, other, atol=1e-3)
        np.testing.assert_allclose(np.sum(out), 15.0, rtol=1e-6)
        assert np.ptp(np.asarray(out)) > 0.1  # not uniform: a real exception, not a stale entry
    else:
        np.testing.assert_allclose(out, np.full(5, 3.0), atol=1e-3)


@pytest.mark.parametrize("method", methods.methods("sort"))
def test_huge_temperature_sorts_every_slot_to_the_mean(method):
    x = jnp.array([0.3, -1.2, 2.5, 0.9, 0.9])
    out = ranking.soft_sort(x, method=method, temperature=1e6)
    if method in NOT_UNIFORM_AT_HUGE_TEMPERATURE:
        # Convex combinations that keep the sum (tests/_cases.py), not every slot the mean.
        np.testing.assert_allclose(np.sum(out), float(np.sum(x)), rtol=1e-5)
        assert np.all(out >= x.min() - 1e-6) and np.all(out <= x.max() + 1e-6)
        return
    limit = HUGE_TEMPERATURE_SORT_LIMIT.get(method)
    expected = np.full(5, float(x.mean())) if limit is None else limit(np.asarray(x), 1e6)
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_topk_ties_at_the_threshold():
    # Three entries tie for the last of k = 3 slots (two go to 3.0 and 2.0).
    x = jnp.array([1.0, 3.0, 1.0, 2.0, 1.0])
    # isotonic: the remaining mass is split evenly over the tie; the sum stays exactly k.
    iso = topk.soft_topk_mask(x, 3, method="isotonic", temperature=1e-6)
    np.testing.assert_allclose(iso, [1 / 3, 1, 1 / 3, 1, 1 / 3], atol=1e-5)
    # sigmoid: the threshold sits on the tied value, each tied entry gets 0.5 (sum != k).
    sig = topk.soft_topk_mask(x, 3, method="sigmoid", temperature=1e-6)
    np.testing.assert_allclose(sig, [0.5, 1, 0.5, 1, 0.5], atol=1e-5)
    # exact: ties go to the lower index.
    np.testing.assert_array_equal(topk.topk_mask(x, 3), [1, 1, 0, 1, 0])


@pytest.mark.parametrize("method", methods.methods("topk"))
def test_huge_temperature_topk_is_uniform(method):
    out = topk.soft_topk_mask(
        jnp.array([1.0, 3.0, 1.0, 2.0, 1.0]), 3, method=method, temperature=1e6
    )
    expected = 0.5 if method == "sigmoid" else 3 / 5  # sigmoid does not keep the sum at k
    np.testing.assert_allclose(out, np.full(5, expected), atol=1e-3)
