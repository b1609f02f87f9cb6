"""Exact operations: ``rank`` against scipy.stats.rankdata and ``topk_mask`` against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rank_relax_jax import ranking, topk

TIES = ["average", "min", "max", "dense", "ordinal"]


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("descending", [False, True])
def test_rank_matches_scipy_with_ties(ties, descending):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(20, 13)).astype(np.float64)  # many ties
    out = np.asarray(ranking.rank(jnp.asarray(x), ties=ties, descending=descending))
    ref = scipy.stats.rankdata(-x if descending else x, method=ties, axis=-1)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("ties", TIES)
def test_rank_masked_matches_filtered_scipy(ties):
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, size=(30, 9)).astype(np.float64)
    x[:, 0] = 0.0  # a valid 0 next to padded zeros must not be tied with them
    mask = rng.random((30, 9)) < 0.7
    out = np.asarray(ranking.rank(jnp.asarray(x), ties=ties, where=jnp.asarray(mask)))
    for i in range(30):
        np.testing.assert_array_equal(out[i][mask[i]], scipy.stats.rankdata(x[i][mask[i]], ties))
        np.testing.assert_array_equal(out[i][~mask[i]], 0.0)


@pytest.mark.slow  # property test: one compile per drawn shape
@given(
    hnp.arrays(
        np.float64, st.integers(1, 12), elements=st.sampled_from([-1.5, 0.0, 0.5, 2.0, 7.0])
    ),
    st.sampled_from(TIES),
)
def test_rank_property_matches_scipy(x, ties):
    np.testing.assert_array_equal(
        np.asarray(ranking.rank(jnp.asarray(x), ties=ties)), scipy.stats.rankdata(x, ties)
    )


def test_rank_nan_propagates_like_scipy():
    x = np.array([[1.0, np.nan, 2.0], [3.0, 1.0, 2.0]])
    out = np.asarray(ranking.rank(jnp.asarray(x)))
    assert np.all(np.isnan(out[0]))
    np.testing.assert_array_equal(out[1], [3.0, 1.0, 2.0])
    assert np.all(np.isnan(scipy.stats.rankdata(x[0])))


def test_rank_has_zero_gradient():
    g = jax.grad(lambda v: jnp.sum(ranking.rank(v) ** 2))(jnp.array([0.3, -1.0, 2.0]))
    np.testing.assert_array_equal(g, 0.0)


def test_topk_mask_breaks_ties_by_lower_index():
    x = jnp.array([1.0, 5.0, 3.0, 5.0, 3.0, 3.0])
    np.testing.assert_array_equal(topk.topk_mask(x, 1), [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(topk.topk_mask(x, 3), [0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(topk.topk_mask(x, 4), [0, 1, 1, 1, 1, 0])


@pytest.mark.slow  # property test: one compile per drawn shape
@given(hnp.arrays(np.float64, st.integers(1, 15), elements=st.integers(-3, 3)), st.data())
def test_topk_mask_selects_the_k_largest(x, data):
    k = data.draw(st.integers(1, x.size))
    m = np.asarray(topk.topk_mask(jnp.asarray(x), k))
    assert m.sum() == k
    # every selected value is >= every unselected value
    if k < x.size:
        assert x[m == 1].min() >= x[m == 0].max()


def test_topk_mask_padding_and_short_lists():
    x = jnp.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    where = jnp.array([[False, True, True, True], [True, False, False, False]])
    np.testing.assert_array_equal(topk.topk_mask(x, 2, where=where), [[0, 1, 1, 0], [1, 0, 0, 0]])


def test_topk_mask_never_selects_nan_or_minus_inf_over_valid():
    x = jnp.array([np.nan, -np.inf, 1.0, 0.0])
    out = np.asarray(topk.topk_mask(x, 2))
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:], [0.0, 1.0, 1.0])


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_soft_topk_mask_hard_is_straight_through(method):
    x = jnp.array([0.1, 2.0, 1.0, -1.0, 0.5])
    w = jnp.arange(5.0)

    def loss(v, hard):
        return jnp.sum(w * topk.soft_topk_mask(v, 2, method=method, hard=hard))

    np.testing.assert_array_equal(
        topk.soft_topk_mask(x, 2, method=method, hard=True), topk.topk_mask(x, 2)
    )
    np.testing.assert_allclose(jax.grad(loss)(x, True), jax.grad(loss)(x, False), rtol=1e-12)


def test_soft_topk_mask_sigmoid_short_list_selects_all_valid():
    x = jnp.array([[3.0, 1.0, 2.0, 0.0]])
    where = jnp.array([[True, False, True, False]])
    out = topk.soft_topk_mask(x, 2, method="sigmoid", where=where)
    np.testing.assert_array_equal(out, [[1.0, 0.0, 1.0, 0.0]])
