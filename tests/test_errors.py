"""Misuse raises a ValueError/TypeError that names the function and the argument."""

import jax
import jax.numpy as jnp
import pytest

from rank_relax_jax import ranking, topk

X = jnp.array([[0.3, 1.0, -2.0], [1.0, 2.0, 3.0]])

CASES = [
    # (call, exception, fragments the message must contain)
    (
        lambda: ranking.soft_rank(X, method="bogus"),
        ValueError,
        ["soft_rank", "`method`", "'sigmoid'", "'bogus'"],
    ),
    (
        lambda: ranking.soft_sort(X, method="sigmoid"),
        ValueError,
        ["soft_sort", "`method`", "'neuralsort'"],
    ),
    (
        lambda: ranking.soft_permutation(X, method="isotonic"),
        ValueError,
        ["soft_permutation", "`method`"],
    ),
    (lambda: topk.soft_topk_mask(X, 1, method="nope"), ValueError, ["soft_topk_mask", "`method`"]),
    (lambda: ranking.rank(X, ties="random"), ValueError, ["rank", "`ties`", "'dense'"]),
    (
        lambda: ranking.soft_rank(X, method="sigmoid", regularization="kl"),
        ValueError,
        ["soft_rank", "`regularization`"],
    ),
    (
        lambda: ranking.soft_rank(X, regularization="l1"),
        ValueError,
        ["soft_rank", "`regularization`", "'kl'"],
    ),
    (
        lambda: ranking.soft_rank(X, method="sigmoid", axis=2),
        ValueError,
        ["soft_rank", "`axis`", "got 2"],
    ),
    (lambda: ranking.rank(X, axis=-3), ValueError, ["rank", "`axis`"]),
    (lambda: topk.topk_mask(X, 1, axis=1.0), TypeError, ["topk_mask", "`axis`"]),
    (
        lambda: ranking.soft_rank(jnp.float32(1.0), method="sigmoid"),
        ValueError,
        ["soft_rank", "`x`", "scalar"],
    ),
    (
        lambda: ranking.soft_rank(jnp.arange(3), method="sigmoid"),
        TypeError,
        ["soft_rank", "`x`", "floating", "int"],
    ),
    (lambda: ranking.rank(jnp.array([True, False])), TypeError, ["rank", "`x`", "bool"]),
    (lambda: topk.topk_mask(jnp.arange(3), 1), TypeError, ["topk_mask", "`x`"]),
    (
        lambda: ranking.soft_rank(X, method="sigmoid", where=jnp.ones((2,), bool)),
        ValueError,
        ["soft_rank", "`where`", "(2,)", "(2, 3)"],
    ),
    (lambda: ranking.rank(X, where=jnp.ones((2, 3))), TypeError, ["rank", "`where`", "boolean"]),
    (
        lambda: ranking.soft_rank(X, method="sigmoid", temperature=0.0),
        ValueError,
        ["soft_rank", "`temperature`", "positive"],
    ),
    (
        lambda: ranking.soft_sort(X, method="neuralsort", temperature=-1.0),
        ValueError,
        ["soft_sort", "`temperature`"],
    ),
    (
        lambda: topk.soft_topk_mask(X, 1, method="sigmoid", temperature=float("nan")),
        ValueError,
        ["soft_topk_mask", "`temperature`"],
    ),
    (
        lambda: ranking.soft_rank(X, method="sigmoid", temperature=jnp.ones(2)),
        ValueError,
        ["soft_rank", "`temperature`", "scalar"],
    ),
    (lambda: topk.topk_mask(X, 0), ValueError, ["topk_mask", "`k`", "1..3", "got 0"]),
    (lambda: topk.topk_mask(X, 4), ValueError, ["topk_mask", "`k`", "got 4"]),
    (lambda: topk.soft_topk_mask(X, 4, method="sigmoid"), ValueError, ["soft_topk_mask", "`k`"]),
    (lambda: topk.topk_mask(X, 1.5), TypeError, ["topk_mask", "`k`"]),
]


@pytest.mark.parametrize("call, exc, fragments", CASES)
def test_misuse_raises_a_clear_error(call, exc, fragments):
    with pytest.raises(exc) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_traced_temperature_is_accepted_without_inspection():
    f = jax.jit(lambda t: topk.soft_topk_mask(X, 1, method="sigmoid", temperature=t))
    assert f(0.5).shape == X.shape


def test_traced_k_gets_a_hint_to_make_it_static():
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda k: topk.topk_mask(X, k))(1)
