"""Compilation discipline: a jitted training step traces once.

Changing a traced value (scores, labels, the contents of ``where``, ``temperature``, ``scale``,
``sigma``, the key, attention masks and segment ids) must never retrace a jitted step; only shapes
and the static arguments (``k``, ``axis``, ``method``, ``num_samples``, ...) may. Each step below
is ``jax.jit(chex.assert_max_traces(step, n=1))`` over ``value_and_grad`` of the op (the
forward pass alone for the piecewise-constant ones), called with several different values.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rank_relax_jax import attention, gumbel, losses, methods, metrics, ranking, topk

N = 5
K = 2


def _inputs(seed):
    """Scores, labels, where (seed 2: all False), temperature, scale and a key."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(3, N)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, (3, N)), jnp.float32)
    where = jnp.asarray(rng.random((3, N)) < 0.7) if seed != 2 else jnp.zeros((3, N), bool)
    t = jnp.float32(10.0 ** rng.uniform(-2, 1))
    s = jnp.float32(10.0 ** rng.uniform(-1, 1))
    return x, y, where, t, s, jax.random.key(seed)


# Each op as op(x, y, where, t, s, key) with only traced arguments.
OPS = {
    **{
        f"soft_rank[{m}]": lambda x, y, w, t, s, key, m=m: ranking.soft_rank(
            x, method=m, temperature=t, where=w
        )
        for m in methods.methods("rank")
    },
    **{
        f"soft_sort[{m}]": lambda x, y, w, t, s, key, m=m: ranking.soft_sort(
            x, method=m, temperature=t, where=w
        )
        for m in methods.methods("sort")
    },
    **{
        f"soft_permutation[{m}]": lambda x, y, w, t, s, key, m=m: ranking.soft_permutation(
            x, method=m, temperature=t, where=w
        )
        for m in methods.methods("permutation")
    },
    **{
        f"soft_topk_mask[{m}]": lambda x, y, w, t, s, key, m=m: topk.soft_topk_mask(
            x, K, method=m, temperature=t, where=w
        )
        for m in methods.methods("topk")
    },
    "soft_topk_mask[hard]": lambda x, y, w, t, s, key: topk.soft_topk_mask(
        x, K, temperature=t, where=w, hard=True
    ),
    "gumbel_softmax": lambda x, y, w, t, s, key: gumbel.gumbel_softmax(
        key, x, temperature=t, scale=s, where=w, hard=True
    ),
    "relaxed_topk_gumbel": lambda x, y, w, t, s, key: gumbel.relaxed_topk_gumbel(
        key, x, K, temperature=t, scale=s, where=w
    ),
    "relaxed_topk_gumbel_log": lambda x, y, w, t, s, key: gumbel.relaxed_topk_gumbel_log(
        key, x, K, temperature=t, scale=s, where=w
    ),
    "relaxed_subset_sample": lambda x, y, w, t, s, key: gumbel.relaxed_subset_sample(
        key, x, K, temperature=t, scale=s, where=w
    ),
    "gumbel_attention_mask[max]": lambda x, y, w, t, s, key: gumbel.gumbel_attention_mask(
        key, x, K, temperature=t, scale=s, where=w
    ),
    "gumbel_attention_mask[subset]": lambda x, y, w, t, s, key: gumbel.gumbel_attention_mask(
        key, x, K, temperature=t, scale=s, where=w, method="subset", hard=True
    ),
    "perturbed_topk_mask": lambda x, y, w, t, s, key: gumbel.perturbed_topk_mask(
        key, x, K, sigma=t, num_samples=8, where=w
    ),
    "spearman_loss": lambda x, y, w, t, s, key: losses.spearman_loss(x, y, temperature=t, where=w),
    "ndcg_loss": lambda x, y, w, t, s, key: losses.ndcg_loss(
        x, y, k=K, temperature=t, cutoff_temperature=s, where=w
    ),
    "listmle_loss": lambda x, y, w, t, s, key: losses.listmle_loss(x, y, where=w),
    "listnet_loss": lambda x, y, w, t, s, key: losses.listnet_loss(x, y, where=w),
    "pairwise_logistic_loss": lambda x, y, w, t, s, key: losses.pairwise_logistic_loss(
        x, y, where=w
    ),
}

# Piecewise constant (zero gradient): the forward pass is jitted instead.
EXACT = {
    "rank": lambda x, y, w, t, s, key: ranking.rank(x, where=w),
    "topk_mask": lambda x, y, w, t, s, key: topk.topk_mask(x, K, where=w),
    "gumbel_topk": lambda x, y, w, t, s, key: gumbel.gumbel_topk(key, x, K, scale=s, where=w),
    **{
        f.__name__: lambda x, y, w, t, s, key, f=f: f(x, y, where=w)
        for f in (
            metrics.ndcg,
            metrics.mrr,
            metrics.average_precision,
            metrics.spearman,
            metrics.kendall_tau,
        )
    },
    "recall_at_k": lambda x, y, w, t, s, key: metrics.recall_at_k(x, y, K, where=w),
    "precision_at_k": lambda x, y, w, t, s, key: metrics.precision_at_k(x, y, K, where=w),
}


def _run_three_times(step):
    outs = []
    for seed in (0, 1, 2):
        outs.append(step(*_inputs(seed)))
    return outs


@pytest.fixture(autouse=True)
def _clear_trace_counter():
    chex.clear_trace_counter()
    yield
    chex.clear_trace_counter()


@pytest.mark.parametrize("name", list(OPS))
def test_training_step_traces_once(name):
    op = OPS[name]

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(x, y, w, t, s, key):
        def loss(x):
            out = op(x, y, w, t, s, key)
            return jnp.sum(out * jnp.cos(jnp.arange(out.size).reshape(out.shape)))

        return jax.value_and_grad(loss)(x)

    _run_three_times(step)
    # A legacy uint32 key is a different (static) type: one more trace, then none.
    x, y, w, t, s, _ = _inputs(3)
    if "gumbel" in name or "perturbed" in name or "subset" in name:
        chex.clear_trace_counter()
        step(x, y, w, t, s, jax.random.PRNGKey(3))
        step(x, y, w, t * 2, s, jax.random.PRNGKey(4))


@pytest.mark.parametrize("name", list(EXACT))
def test_exact_op_traces_once(name):
    step = jax.jit(chex.assert_max_traces(EXACT[name], n=1))
    _run_three_times(step)


def test_attention_step_traces_once():
    ids = np.array([[-1, 0, 0, 1, 1, 2, 2, 3], [-1, -1, 0, 1, 2, 2, 3, 3]])

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(q, k, v, scores, ids, pad, key, t):
        def loss(scores):
            m = gumbel.gumbel_attention_mask(key, scores, 2, temperature=t)
            log_m = gumbel.relaxed_topk_gumbel_log(key, scores, 2, temperature=t)
            out = attention.dma_attention(q, k, v, doc_mask=m, segment_ids=ids, mask=pad)
            w = attention.dma_attention_weights(q, k, doc_mask=m, segment_ids=ids)
            bias = attention.attention_bias(log_doc_mask=log_m, segment_ids=ids)
            bias = attention.combine_bias_and_mask(bias, pad)
            tok = attention.doc_mask_to_tokens(m, ids)
            ref = jax.nn.dot_product_attention(q, k, v, bias=bias)
            return jnp.sum(out**2) + jnp.sum(w) + jnp.sum(ref) + jnp.sum(tok)

        return jax.value_and_grad(loss)(scores)

    for seed in range(3):
        rng = np.random.default_rng(seed)
        q, k, v = (jnp.asarray(rng.normal(size=(2, 8, 2, 4)), jnp.float32) for _ in range(3))
        scores = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
        pad = jnp.asarray(rng.random((2, 1, 1, 8)) < 0.8)
        step(q, k, v, scores, jnp.asarray(rng.permutation(ids, axis=1)), pad,
             jax.random.key(seed), jnp.float32(0.1 + seed))  # fmt: skip


def test_only_static_arguments_and_shapes_retrace():
    traces = []

    def f(x, t, *, k, axis, method):
        traces.append((x.shape, k, axis, method))
        return topk.soft_topk_mask(x, k, method=method, temperature=t, axis=axis)

    step = jax.jit(f, static_argnames=("k", "axis", "method"))
    x, t = jnp.ones((3, 4)), jnp.float32(1.0)
    step(x, t, k=1, axis=-1, method="isotonic")
    step(x + 1, t * 3, k=1, axis=-1, method="isotonic")
    assert len(traces) == 1
    step(x, t, k=2, axis=-1, method="isotonic")  # k
    step(x, t, k=2, axis=0, method="isotonic")  # axis
    step(x, t, k=2, axis=0, method="sigmoid")  # method
    step(jnp.ones((3, 5)), t, k=2, axis=0, method="sigmoid")  # shape
    assert len(traces) == 5
