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


def test_traced_non_positive_options_give_nan_in_samplers_and_losses():
    # Every positive option that may be traced (temperature, scale, sigma, cutoff_temperature)
    # turns a traced value <= 0 into NaN outputs instead of a silently wrong result.
    from rank_relax_jax import gumbel, losses

    x = jnp.array([0.3, -1.2, 2.5, 0.9])
    y = jnp.array([1.0, 0.0, 2.0, 1.0])
    key = jax.random.key(0)
    calls = {
        "gumbel_softmax temperature": lambda t: gumbel.gumbel_softmax(key, x, temperature=t),
        "gumbel_softmax scale": lambda t: gumbel.gumbel_softmax(key, x, scale=t),
        "relaxed_topk_gumbel": lambda t: gumbel.relaxed_topk_gumbel(key, x, 2, temperature=t),
        "relaxed_topk_gumbel_log": lambda t: gumbel.relaxed_topk_gumbel_log(
            key, x, 2, temperature=t
        ),
        "relaxed_subset_sample": lambda t: gumbel.relaxed_subset_sample(key, x, 2, temperature=t),
        "gumbel_topk scale": lambda t: gumbel.gumbel_topk(key, x, 2, scale=t).mask,
        "gumbel_attention_mask": lambda t: gumbel.gumbel_attention_mask(key, x, 2, temperature=t),
        "perturbed_topk_mask sigma": lambda t: gumbel.perturbed_topk_mask(
            key, x, 2, sigma=t, num_samples=8
        ),
        "spearman_loss": lambda t: losses.spearman_loss(x, y, temperature=t),
        "ndcg_loss": lambda t: losses.ndcg_loss(x, y, temperature=t),
        "ndcg_loss cutoff": lambda t: losses.ndcg_loss(x, y, k=2, cutoff_temperature=t),
    }
    for name, call in calls.items():
        for t in (-1.0, 0.0):
            out = jax.jit(call)(t)
            assert bool(jnp.all(jnp.isnan(out))), (name, t, out)
        assert bool(jnp.all(jnp.isfinite(jax.jit(call)(0.5)))), name


def test_readme_negative_temperature_example_is_nan_not_wrong_ranks():
    # The newcomer's case: true ranks [2, 1, 4, 3], a traced temperature of -1 gave
    # [2.8, 4.0, 1.0, 2.2] with no sign of trouble.
    scores = jnp.array([0.3, -1.2, 2.5, 0.9])
    out = jax.jit(lambda t: ranking.soft_rank(scores, temperature=t))(-1.0)
    assert bool(jnp.all(jnp.isnan(out)))
