"""Hypothesis properties shared by every soft ranking / sorting method.

* permutation equivariance of soft ranks and permutation matrices, invariance of soft sorts
  (except the methods of ``_cases.NOT_PERMUTATION_INVARIANT``: a relaxed sorting network mixes
  fixed wire pairs; their sorts are still checked to be monotone and their matrices to be
  stochastic, and test_network.py checks them doubly stochastic and consistent);
* monotone soft sorts for the methods that guarantee it (every registered one except those in
  ``_cases.NOT_MONOTONE_SORT``: the SmoothI sort is not monotone, see ``test_methods.py``);
* ranks summing to m(m+1)/2 — every registered rank method guarantees it (the methods of
  ``tests/_cases.py``, read from the registry): the pairwise ones because
  f(z) + f(-z) = 1, the permutation ones because the rows of their matrices sum to 1, and the
  isotonic one because it projects onto the permutahedron;
* the hard limit at a small temperature relative to the gaps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from _cases import (
    NOT_MONOTONE_SORT,
    NOT_PERMUTATION_INVARIANT,
    RANKS_IN_RANGE,
    case_id,
    cases,
    hard_limit_temperature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from rank_relax_jax import methods, ranking

# (method, options) for soft_rank / soft_sort / soft_permutation, read from the kernel registry
# (tests/_cases.py): a newly registered method gets every property below.
RANK_CASES = cases("rank")
EQUIVARIANT_RANK_CASES = [c for c in RANK_CASES if c[0] not in NOT_PERMUTATION_INVARIANT]
MONOTONE_SORT_CASES = [c for c in cases("sort") if c[0] not in NOT_MONOTONE_SORT]
PERMUTATION_CASES = cases("permutation")
SORT_METHODS = methods.methods("sort")


def _ids(case):
    return case_id(case)


def _case_params(items):
    return [pytest.param(case, id=_ids(case)) for case in items]


@functools.cache
def _jitted(op, method, options_items, descending):
    options = dict(options_items)
    public = {
        "rank": ranking.soft_rank,
        "sort": ranking.soft_sort,
        "permutation": ranking.soft_permutation,
    }[op]
    return jax.jit(
        lambda x, t: public(x, method=method, temperature=t, descending=descending, **options)
    )


def _call(op, case, x, t, descending=False):
    method, options = case
    return _jitted(op, method, tuple(sorted(options.items())), descending)(
        jnp.asarray(x), jnp.asarray(t, jnp.float64)
    )


# A few fixed lengths keep the number of compilations small.
LENGTHS = st.sampled_from([2, 5, 8])
TEMPERATURES = st.sampled_from([0.05, 0.5, 5.0])


@st.composite
def lists(draw, distinct=False):
    n = draw(LENGTHS)
    if distinct:
        ints = draw(st.lists(st.integers(-40, 40), min_size=n, max_size=n, unique=True))
        return np.asarray(ints, np.float64) * 0.5  # gaps >= 0.5
    vals = st.floats(-20, 20, allow_nan=False, allow_infinity=False)
    return np.asarray(draw(st.lists(vals, min_size=n, max_size=n)), np.float64)


@settings(max_examples=12)
@pytest.mark.parametrize("case", _case_params(EQUIVARIANT_RANK_CASES))
@given(data=st.data())
def test_soft_rank_is_permutation_equivariant(case, data):
    x = data.draw(lists())
    t = data.draw(TEMPERATURES)
    perm = data.draw(st.permutations(range(len(x))))
    descending = data.draw(st.booleans())
    out = _call("rank", case, x, t, descending)
    permuted = _call("rank", case, x[perm], t, descending)
    np.testing.assert_allclose(permuted, np.asarray(out)[perm], rtol=1e-9, atol=1e-9)


@settings(max_examples=12)
@pytest.mark.parametrize("case", _case_params(RANK_CASES))
@given(data=st.data())
def test_soft_ranks_sum_to_triangular_number(case, data):
    x = data.draw(lists())
    t = data.draw(TEMPERATURES)
    out = np.asarray(_call("rank", case, x, t, data.draw(st.booleans())))
    n = len(x)
    np.testing.assert_allclose(out.sum(), n * (n + 1) / 2, rtol=1e-9)
    if case[0] in RANKS_IN_RANGE:
        # Each rank lies in [1, n] here; the permutation methods' columns need not sum to 1.
        assert np.all(out >= 1 - 1e-9) and np.all(out <= n + 1e-9)


@settings(max_examples=12)
@pytest.mark.parametrize("case", _case_params(MONOTONE_SORT_CASES))
@given(data=st.data())
def test_soft_sort_is_monotone_and_permutation_invariant(case, data):
    x = data.draw(lists())
    t = data.draw(TEMPERATURES)
    descending = data.draw(st.booleans())
    out = np.asarray(_call("sort", case, x, t, descending))
    steps = np.diff(out) * (-1.0 if descending else 1.0)
    assert np.all(steps >= -1e-9 * (1 + np.abs(out[1:])))
    perm = data.draw(st.permutations(range(len(x))))
    if case[0] not in NOT_PERMUTATION_INVARIANT:
        np.testing.assert_allclose(_call("sort", case, x[perm], t, descending), out, atol=1e-9)


@settings(max_examples=12)
@pytest.mark.parametrize("case", _case_params(PERMUTATION_CASES))
@given(data=st.data())
def test_soft_permutation_columns_follow_the_input(case, data):
    x = data.draw(lists())
    t = data.draw(TEMPERATURES)
    perm = np.asarray(data.draw(st.permutations(range(len(x)))))
    p = np.asarray(_call("permutation", case, x, t))
    if case[0] not in NOT_PERMUTATION_INVARIANT:
        p_perm = np.asarray(_call("permutation", case, x[perm], t))
        np.testing.assert_allclose(p_perm, p[:, perm], atol=1e-9)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    assert np.all(p >= 0)


@settings(max_examples=10)
@pytest.mark.parametrize("case", _case_params(RANK_CASES))
@given(data=st.data())
def test_hard_limit_at_small_temperature(case, data):
    x = data.draw(lists(distinct=True))
    descending = data.draw(st.booleans())
    t = hard_limit_temperature(*case)
    out = _call("rank", case, x, t, descending)
    expected = scipy.stats.rankdata(-x if descending else x)
    np.testing.assert_allclose(out, expected, atol=1e-3)
    if case[0] in SORT_METHODS:
        srt = _call("sort", case, x, t, descending)
        np.testing.assert_allclose(srt, -np.sort(-x) if descending else np.sort(x), atol=1e-3)
