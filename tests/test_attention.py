"""Tests for Differentiable Masked Attention (rank_relax_jax.attention), issue #5.

Sections follow the issue's "Done when" list: (1) hard mask == attention over the selected
documents' keys only, (2) soft mask == jax.nn / Flax attention with bias log M, (3) gradients
through the Gumbel sampler, (4) masks, shapes, dtypes, jit and vmap, (5) no NaN or inf.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rank_relax_jax import attention as att
from rank_relax_jax import gumbel

flax = pytest.importorskip(
    "flax", reason="flax not installed: pip install -e '.[flax]' (or '.[test]')"
)
nn = pytest.importorskip(
    "flax.linen", reason="flax not installed: pip install -e '.[flax]' (or '.[test]')"
)
nnx = pytest.importorskip(
    "flax.nnx", reason="flax not installed: pip install -e '.[flax]' (or '.[test]')"
)

# Two lists of documents over the same 11 key tokens: 2 question tokens (-1), then docs 0..3.
IDS = np.array(
    [
        [-1, -1, 0, 0, 0, 1, 1, 2, 2, 2, 3],
        [-1, 0, 0, 1, 1, 1, 2, 2, 3, 3, -1],
    ]
)
N_DOCS = 4


# Jitted once per shape: eager dispatch compiles every primitive separately and dominates the
# run time of this file. Eager == jit is checked in test_batch_axes_grouped_heads_jit_vmap.
dma = jax.jit(att.dma_attention, static_argnames=("is_causal", "precision"))
dma_weights = jax.jit(att.dma_attention_weights, static_argnames=("is_causal", "precision"))
bias_of = jax.jit(att.attention_bias, static_argnames=("dtype",))
jnn = jax.jit(jax.nn.dot_product_attention, static_argnames=("is_causal", "scale"))


def qkv(seed, *, batch=2, q_len=3, kv_len=11, heads=4, kv_heads=None, dim=8, dtype=jnp.float64):
    rng = np.random.default_rng(seed)
    kv_heads = heads if kv_heads is None else kv_heads
    q = jnp.asarray(rng.normal(size=(batch, q_len, heads, dim)), dtype)
    k = jnp.asarray(rng.normal(size=(batch, kv_len, kv_heads, dim)), dtype)
    v = jnp.asarray(rng.normal(size=(batch, kv_len, kv_heads, dim)), dtype)
    return q, k, v


def numpy_dma(q, k, v, m_tok, valid=None, bias=None):
    """By-hand reference in float64: weights M_t exp(s_t) / sum M exp(s), per batch and head."""
    q, k, v, m_tok = (np.asarray(a, np.float64) for a in (q, k, v, m_tok))
    h, d = q.shape[2:]
    group = h // k.shape[2]
    k = np.repeat(k, group, axis=2)
    v = np.repeat(v, group, axis=2)
    s = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d)
    if bias is not None:
        s = s + np.asarray(bias, np.float64)
    w = np.exp(s - s.max(-1, keepdims=True)) * m_tok[:, None, None, :]
    if valid is not None:
        w = np.where(valid, w, 0.0)
    z = w.sum(-1, keepdims=True)
    w = np.where(z > 0, w / np.where(z > 0, z, 1.0), 0.0)
    return np.einsum("bhts,bshd->bthd", w, v)


@jax.jit
def additive_attention(q, k, v, bias, mask=None):
    """softmax(q k^T / sqrt(d) + bias) v in the inputs' dtype (jax.nn's softmax is float32-only)."""
    group = q.shape[2] // k.shape[2]
    k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
    s = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
    s = s + jnp.broadcast_to(bias, s.shape)
    if mask is not None:
        s = jnp.where(jnp.broadcast_to(mask, s.shape), s, -1e300)
    return jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(s, axis=-1), v)


def tokens_np(m, ids):
    m = np.asarray(m, np.float64)
    return np.where(ids < 0, 1.0, np.take_along_axis(m, np.clip(ids, 0, None), -1))


def randn(seed, shape, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def soft_mask(seed, batch=2, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.05, 1.0, (batch, N_DOCS)), dtype)


# --------------------------------------------------------------------------------------------
# Token gather and bias


def test_doc_mask_to_tokens_gathers_and_fills():
    m = jnp.array([[0.9, 0.0, 0.5, 0.2], [1.0, 0.3, 0.0, 0.7]])
    got = att.doc_mask_to_tokens(m, IDS)
    np.testing.assert_array_equal(got, tokens_np(m, IDS))
    assert got.shape == IDS.shape and got.dtype == m.dtype
    got_log = att.doc_mask_to_tokens(jnp.log(m + 1.0), IDS, fill=0.0)
    np.testing.assert_array_equal(np.where(IDS < 0, 0.0, 1.0) * 0 + got_log, got_log)
    assert float(jnp.abs(got_log[IDS < 0]).max()) == 0.0
    # Batch broadcasting: one id row shared by the batch; an out-of-range id is NaN (a bug).
    shared = att.doc_mask_to_tokens(m, IDS[0])
    np.testing.assert_array_equal(shared[1], tokens_np(m[1], IDS[0]))
    bad = att.doc_mask_to_tokens(m[0], np.array([0, 4, -1]))
    assert np.isnan(bad[1]) and bad[0] == m[0, 0] and bad[2] == 1.0
    # Gradient: each document gets the sum over its tokens.
    g = jax.grad(lambda mm: jnp.sum(att.doc_mask_to_tokens(mm, IDS[0])))(m[0])
    np.testing.assert_array_equal(g, [3.0, 2.0, 3.0, 1.0])


def test_attention_bias_log_space_and_floor():
    m = jnp.array([[0.9, 0.0, 0.5, 1e-30]])
    b = bias_of(m, IDS[:1])
    assert b.shape == (1, 1, 1, IDS.shape[1]) and b.dtype == m.dtype
    tok = tokens_np(m, IDS[:1])
    pos = tok > 0
    np.testing.assert_allclose(b[0, 0, 0][pos[0]], np.log(tok[pos]), rtol=1e-12)
    assert np.all(np.isfinite(b)) and float(b[0, 0, 0, 5]) < -1e37  # doc 1 (M = 0)
    # From the sampler's log-space output: same bias where M > 0, and -inf becomes the floor.
    logm = jnp.log(m)
    b_log = bias_of(log_doc_mask=logm, segment_ids=IDS[:1])
    np.testing.assert_allclose(b_log, b, rtol=1e-12)
    # Half precision: the floor is finite in the requested dtype.
    b16 = bias_of(m, IDS[:1], dtype=jnp.float16)
    assert b16.dtype == jnp.float16 and bool(jnp.isfinite(b16).all())
    assert float(b16[0, 0, 0, 5]) < -1e4
    # Gradient wrt M is 1/M where M > 0 and exactly 0 (not NaN) where M = 0.
    g = jax.grad(lambda mm: jnp.sum(bias_of(mm, IDS[:1])))(m)
    np.testing.assert_allclose(g[0, :3], [3 / 0.9, 0.0, 3 / 0.5], rtol=1e-12)


# --------------------------------------------------------------------------------------------
# (1) Hard mask == attention over the selected documents only


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_hard_mask_equals_filtered_attention_f32(kv_heads):
    q, k, v = qkv(0, kv_heads=kv_heads, dtype=jnp.float32)
    # Make an unselected document the most attractive one: it must still get weight 0.
    k = k.at[:, 5:7].multiply(6.0)
    hard = jnp.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]], jnp.float32)
    out = dma(q, k, v, doc_mask=hard, segment_ids=IDS)
    assert out.dtype == jnp.float32
    for b in range(2):
        keep = [t for t, i in enumerate(IDS[b]) if i < 0 or hard[b, i] == 1.0]
        ref = jnn(q[b : b + 1], k[b : b + 1, keep], v[b : b + 1, keep])
        np.testing.assert_allclose(out[b : b + 1], ref, atol=1e-6, rtol=0)


def test_hard_mask_equals_filtered_by_hand_numpy():
    q, k, v = qkv(1, dtype=jnp.float32)
    hard = np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    out = dma(q, k, v, doc_mask=jnp.asarray(hard, jnp.float32), segment_ids=IDS)
    for b in range(2):
        keep = [t for t, i in enumerate(IDS[b]) if i < 0 or hard[b, i] == 1.0]
        qb, kb, vb = (np.asarray(a[b], np.float64) for a in (q, k, v))
        s = np.einsum("thd,shd->hts", qb, kb[keep]) / np.sqrt(q.shape[-1])
        w = np.exp(s - s.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        ref = np.einsum("hts,shd->thd", w, vb[keep])
        np.testing.assert_allclose(out[b], ref, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------
# (2) Soft mask == jax.nn / Flax attention with bias = log M


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_soft_mask_equals_jax_nn_with_log_bias(dtype):
    # jax.nn computes its softmax in float32 whatever the input dtype; float64 is checked to
    # 1e-12 against the by-hand float64 references.
    tol = 2e-6
    q, k, v = qkv(2, kv_heads=2, dtype=dtype)
    m = soft_mask(3, dtype=dtype)
    out = dma(q, k, v, doc_mask=m, segment_ids=IDS)
    hand_bias = np.log(tokens_np(m, IDS))[:, None, None, :].astype(dtype)
    ref = jnn(q, k, v, bias=hand_bias)
    np.testing.assert_allclose(out, ref, atol=tol, rtol=tol)
    if dtype == jnp.float64:
        exact = numpy_dma(q, k, v, tokens_np(m, IDS))
        np.testing.assert_allclose(out, exact, atol=1e-12)
        np.testing.assert_allclose(additive_attention(q, k, v, hand_bias), exact, atol=1e-12)
        ours = additive_attention(q, k, v, bias_of(m, IDS))
        np.testing.assert_allclose(ours, exact, atol=1e-12)
    ours = jnn(q, k, v, bias=bias_of(m, IDS))
    np.testing.assert_allclose(ours, ref, atol=tol, rtol=tol)
    via_log = bias_of(log_doc_mask=jnp.log(m), segment_ids=IDS)
    np.testing.assert_allclose(jnn(q, k, v, bias=via_log), ref, atol=tol)


def test_flax_dot_product_attention_adapter():
    q, k, v = qkv(4, dtype=jnp.float32)
    m = soft_mask(5, dtype=jnp.float32)
    bias = jnp.asarray(np.log(tokens_np(m, IDS))[:, None, None, :], jnp.float32)
    ref = jax.jit(nn.dot_product_attention)(q, k, v, bias=bias)
    for form in ("multiplicative", "additive"):
        fn = jax.jit(att.make_flax_attention_fn(m, IDS, form=form))
        np.testing.assert_allclose(fn(q, k, v), ref, atol=2e-6)
    fn = att.make_flax_attention_fn(log_doc_mask=jnp.log(m), segment_ids=IDS, form="additive")
    np.testing.assert_allclose(fn(q, k, v), ref, atol=2e-6)
    # An extra bias and a mask pass through both forms.
    extra = randn(6, (2, 4, 3, 11), jnp.float32)
    pad = jnp.asarray((IDS != -1) | (np.arange(11) < 1))[:, None, None, :]
    ref = jax.jit(nn.dot_product_attention)(q, k, v, bias=bias + extra, mask=pad)
    for form in ("multiplicative", "additive"):
        fn = jax.jit(att.make_flax_attention_fn(m, IDS, form=form))
        np.testing.assert_allclose(fn(q, k, v, bias=extra, mask=pad), ref, atol=2e-6)


@pytest.mark.parametrize("form", ["multiplicative", "additive"])
def test_linen_multihead_adapter_same_params(form):
    x = randn(7, (2, 11, 16), jnp.float32)
    m = soft_mask(8, dtype=jnp.float32)
    bias = jnp.asarray(np.log(tokens_np(m, IDS))[:, None, None, :], jnp.float32)
    pad = nn.make_attention_mask(jnp.ones((2, 11)), jnp.asarray(IDS != 3))  # float mask

    def ref_fn(query, key, value, mask=None):
        return jnn(query, key, value, bias=bias, mask=mask.astype(bool))

    plain = nn.MultiHeadDotProductAttention(num_heads=4, attention_fn=ref_fn)
    params = plain.init(jax.random.key(9), x, mask=pad)
    ref = jax.jit(plain.apply)(params, x, mask=pad)
    layer = nn.MultiHeadDotProductAttention(
        num_heads=4, attention_fn=att.make_flax_attention_fn(m, IDS, form=form)
    )
    np.testing.assert_allclose(jax.jit(layer.apply)(params, x, mask=pad), ref, atol=2e-6)


def test_linen_sow_weights_and_dropout():
    x = randn(10, (2, 11, 8), jnp.float32)
    m = soft_mask(11, dtype=jnp.float32)
    fn = att.make_flax_attention_fn(m, IDS)
    layer = nn.MultiHeadDotProductAttention(num_heads=2, attention_fn=fn, dropout_rate=0.5)
    params = layer.init(jax.random.key(12), x, deterministic=True)
    _, state = layer.apply(
        params, x, deterministic=True, sow_weights=True, mutable=["intermediates"]
    )
    (w,) = state["intermediates"]["attention_weights"]
    q = nn.DenseGeneral(features=(2, 4)).apply({"params": params["params"]["query"]}, x)
    k = nn.DenseGeneral(features=(2, 4)).apply({"params": params["params"]["key"]}, x)
    np.testing.assert_allclose(w, dma_weights(q, k, doc_mask=m, segment_ids=IDS), atol=1e-6)
    additive = layer.clone(attention_fn=att.make_flax_attention_fn(m, IDS, form="additive"))
    _, state_add = additive.apply(
        params, x, deterministic=True, sow_weights=True, mutable=["intermediates"]
    )
    np.testing.assert_allclose(state_add["intermediates"]["attention_weights"][0], w, atol=1e-6)
    # Dropout on the weights: unbiased (mean over rngs -> deterministic output), and random.
    det = layer.apply(params, x, deterministic=True)

    def drop(key):
        return layer.apply(params, x, deterministic=False, rngs={"dropout": key})

    outs = jax.jit(jax.vmap(drop))(jax.random.split(jax.random.key(13), 500))
    assert bool(jnp.isfinite(outs).all()) and float(jnp.abs(outs[0] - outs[1]).max()) > 1e-3
    stderr = outs.std(0) / np.sqrt(outs.shape[0])
    assert float(jnp.max(jnp.abs(outs.mean(0) - det) / stderr)) < 5.0


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_nnx_multihead_adapter_same_params(kv_heads):
    x = randn(14, (2, 11, 16), jnp.float32)
    m = soft_mask(15, dtype=jnp.float32)
    bias = jnp.asarray(np.log(tokens_np(m, IDS))[:, None, None, :], jnp.float32)

    def ref_fn(query, key, value, **kw):
        return nnx.dot_product_attention(query, key, value, bias=bias, **kw)

    mha = nnx.MultiHeadAttention(
        num_heads=4,
        in_features=16,
        num_kv_heads=kv_heads,
        decode=False,
        attention_fn=ref_fn,
        rngs=nnx.Rngs(0),
    )
    causal = nnx.make_causal_mask(jnp.ones((2, 11)))
    ref = mha(x, mask=causal)
    for form, base in (
        ("multiplicative", None),
        ("additive", None),
        ("additive", nnx.dot_product_attention),
    ):
        mha.attention_fn = att.make_flax_attention_fn(m, IDS, form=form, attention_fn=base)
        np.testing.assert_allclose(mha(x, mask=causal), ref, atol=2e-6)
        np.testing.assert_allclose(mha(x, is_causal=True), ref, atol=2e-6)


# --------------------------------------------------------------------------------------------
# (3) Gradients through the sampler


def _loss_through_sampler(scores, q, k, v, w, *, hard=False, temperature=0.5, form="mult"):
    g = gumbel
    key = jax.random.key(42)
    if form == "mult":
        m = g.relaxed_topk_gumbel(key, scores, 2, temperature=temperature, hard=hard)
        out = dma(q, k, v, doc_mask=m, segment_ids=IDS)
    else:
        logm = g.relaxed_topk_gumbel_log(key, scores, 2, temperature=temperature)
        bias = bias_of(log_doc_mask=logm, segment_ids=IDS)
        out = additive_attention(q, k, v, bias)
    return jnp.sum(out * w)


@pytest.mark.slow  # float64 finite differences through the sampler and attention
def test_grad_wrt_reranker_scores_matches_finite_differences():
    q, k, v = qkv(16, kv_heads=2)
    w = randn(17, q.shape, jnp.float64)
    scores = randn(18, (2, N_DOCS), jnp.float64)
    f = functools.partial(_loss_through_sampler, q=q, k=k, v=v, w=w)
    f = jax.jit(f)
    g = jax.jit(jax.grad(f))(scores)
    assert bool(jnp.all(jnp.abs(g) > 0))
    check_grads(f, (scores,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
    # The additive form fed by the sampler's log-space output is the same function.
    f_add = functools.partial(_loss_through_sampler, q=q, k=k, v=v, w=w, form="add")
    np.testing.assert_allclose(f_add(scores), f(scores), rtol=1e-10)
    np.testing.assert_allclose(jax.jit(jax.grad(f_add))(scores), g, rtol=1e-8, atol=1e-12)


def test_grad_wrt_doc_mask_matches_finite_differences_at_zero():
    q, k, v = qkv(19)
    w = randn(20, q.shape, jnp.float64)
    m = jnp.array([[1.0, 0.0, 1.0, 0.0], [0.0, 0.3, 1.0, 0.0]])

    def f(mm):
        return jnp.sum(dma(q, k, v, doc_mask=mm, segment_ids=IDS) * w)

    check_grads(jax.jit(f), (m,), order=1, modes=("rev", "fwd"), atol=1e-6, rtol=1e-6)


def test_straight_through_unselected_docs_get_gradient_only_in_multiplicative_form():
    q, k, v = qkv(21)
    w = randn(22, q.shape, jnp.float64)
    scores = jnp.array([[2.0, -1.0, 0.5, -3.0], [-2.0, 1.0, 3.0, 0.0]])
    m = gumbel.relaxed_topk_gumbel(jax.random.key(23), scores, 2, temperature=0.3, hard=True)
    assert set(np.unique(np.asarray(m))) <= {0.0, 1.0}
    unselected = np.asarray(m) == 0.0
    assert unselected.any()

    def mult(mm):
        return jnp.sum(dma(q, k, v, doc_mask=mm, segment_ids=IDS) * w)

    def add(mm):
        bias = bias_of(mm, IDS)
        return jnp.sum(additive_attention(q, k, v, bias) * w)

    np.testing.assert_allclose(mult(m), add(m), rtol=1e-12)
    mult, add = jax.jit(mult), jax.jit(add)
    g_mult, g_add = jax.jit(jax.grad(mult))(m), jax.jit(jax.grad(add))(m)
    assert bool(jnp.all(jnp.abs(g_mult[unselected]) > 1e-8))
    assert bool(jnp.all(g_add[unselected] == 0.0))
    # ... and the multiplicative gradient at M = 0 is the true one-sided derivative.
    eps = 1e-6
    for b, i in zip(*np.nonzero(unselected), strict=True):
        fd = (mult(m.at[b, i].set(eps)) - mult(m)) / eps
        np.testing.assert_allclose(g_mult[b, i], fd, rtol=1e-4)

    # End to end: the scores of unselected documents receive gradient through the ST mask.
    def loss(s):
        mm = gumbel.relaxed_topk_gumbel(jax.random.key(23), s, 2, temperature=0.3, hard=True)
        return mult(mm)

    gs = jax.jit(jax.grad(loss))(scores)
    assert bool(jnp.isfinite(gs).all()) and bool(jnp.all(jnp.abs(gs[unselected]) > 0))


# --------------------------------------------------------------------------------------------
# (4) Masks, shapes, dtypes, jit, vmap


def test_padding_and_causal_masks_combine():
    q, k, v = qkv(24, q_len=11, kv_heads=2)
    m = soft_mask(25)
    pad = jnp.asarray(np.arange(11) < np.array([[9], [11]]))[:, None, None, :]  # key padding
    causal = np.tril(np.ones((11, 11), bool))
    valid = np.asarray(pad) & causal
    tok = tokens_np(m, IDS)
    ref = numpy_dma(q, k, v, tok, valid=valid)
    out = dma(q, k, v, doc_mask=m, segment_ids=IDS, mask=pad, is_causal=True)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    explicit = jnp.asarray(valid)
    out2 = dma(q, k, v, doc_mask=m, segment_ids=IDS, mask=explicit)
    np.testing.assert_allclose(out2, ref, atol=1e-12)
    bias = bias_of(m, IDS)
    via_jax = jnn(q, k, v, bias=bias, mask=pad, is_causal=True)
    np.testing.assert_allclose(via_jax, ref, atol=1e-6)  # jax.nn: float32 softmax
    folded = att.combine_bias_and_mask(bias, pad, jnp.asarray(causal))
    assert folded.shape == (2, 1, 11, 11) and bool(jnp.isfinite(folded).all())
    np.testing.assert_allclose(jnn(q, k, v, bias=folded), ref, atol=1e-6)
    np.testing.assert_allclose(additive_attention(q, k, v, folded), ref, atol=1e-12)
    # Padded keys get zero weight and zero gradient.
    wts = dma_weights(q, k, doc_mask=m, segment_ids=IDS, mask=pad, is_causal=True)
    assert float(jnp.abs(wts[0, ..., 9:]).max()) == 0.0
    gk = jax.jit(
        jax.grad(lambda kk: jnp.sum(dma(q, kk, v, doc_mask=m, segment_ids=IDS, mask=pad)))
    )(k)
    assert float(jnp.abs(gk[0, 9:]).max()) == 0.0


def test_extra_bias_and_scale():
    q, k, v = qkv(26)
    m = soft_mask(27)
    extra = randn(28, (1, 4, 3, 11), jnp.float64)
    out = dma(q, k, v, doc_mask=m, segment_ids=IDS, bias=extra, scale=0.3)
    ref = jnn(q, k, v, bias=bias_of(m, IDS) + extra, scale=0.3)
    np.testing.assert_allclose(out, ref, atol=1e-6)  # jax.nn: float32 softmax
    q_scaled = q * (0.3 * np.sqrt(q.shape[-1]))
    exact = additive_attention(q_scaled, k, v, bias_of(m, IDS) + extra)
    np.testing.assert_allclose(out, exact, atol=1e-12)


def test_batch_axes_grouped_heads_jit_vmap():
    q, k, v = qkv(29, batch=6, kv_heads=2)
    ids = np.concatenate([IDS, IDS, IDS])
    m = soft_mask(30, batch=6)
    out = att.dma_attention(q, k, v, doc_mask=m, segment_ids=ids)  # eager
    assert out.shape == q.shape
    np.testing.assert_allclose(out, numpy_dma(q, k, v, tokens_np(m, ids)), atol=1e-12)
    # Several batch axes == one flattened batch axis.
    out5 = dma(
        *(a.reshape(2, 3, *a.shape[1:]) for a in (q, k, v)),
        doc_mask=m.reshape(2, 3, N_DOCS),
        segment_ids=ids.reshape(2, 3, 11),
    )
    np.testing.assert_allclose(out5.reshape(out.shape), out, atol=1e-12)
    # jit == eager, vmap over unbatched calls == batched call.
    fn = jax.jit(lambda *a: dma(*a[:3], doc_mask=a[3], segment_ids=a[4]))
    np.testing.assert_allclose(fn(q, k, v, m, ids), out, atol=1e-12)
    vm = jax.vmap(fn)(q, k, v, m, ids)
    np.testing.assert_allclose(vm, out, atol=1e-12)
    # vmap over a batch of soft masks with shared q, k, v (many sampled masks per query).
    ms = jnp.stack([m, 1.0 - 0.5 * m])
    per_mask = jax.vmap(lambda mm: dma(q, k, v, doc_mask=mm, segment_ids=ids))(ms)
    np.testing.assert_allclose(per_mask[1], numpy_dma(q, k, v, tokens_np(ms[1], ids)), atol=1e-12)
    bias_fn = jax.jit(jax.vmap(att.attention_bias))
    np.testing.assert_allclose(bias_fn(m, ids), bias_of(m, ids), atol=0)


def test_bfloat16_inputs():
    q, k, v = qkv(31, kv_heads=2, dtype=jnp.float32)
    m = soft_mask(32, dtype=jnp.float32)
    ref = dma(q, k, v, doc_mask=m, segment_ids=IDS)
    bf = [a.astype(jnp.bfloat16) for a in (q, k, v, m)]
    out = dma(*bf[:3], doc_mask=bf[3], segment_ids=IDS)
    assert out.dtype == jnp.bfloat16 and bool(jnp.isfinite(out).all())
    np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=3e-2)
    bias = bias_of(bf[3], IDS)
    assert bias.dtype == jnp.bfloat16
    via_jax = jnn(*bf[:3], bias=bias)
    np.testing.assert_allclose(via_jax.astype(jnp.float32), ref, atol=3e-2)
    g = jax.jit(
        jax.grad(lambda mm: jnp.sum(dma(*bf[:3], doc_mask=mm, segment_ids=IDS)).astype(jnp.float32))
    )(bf[3])
    assert g.dtype == jnp.bfloat16 and bool(jnp.isfinite(g).all())
    fn = jax.jit(att.make_flax_attention_fn(bf[3], IDS))
    assert fn(*bf[:3]).dtype == jnp.bfloat16
    # float16 logits: the additive adapter re-derives the floor in float16 (finite there).
    # (jax.nn's float16 attention itself does not compile on CPU, so a probe base function
    # returns the bias it receives.)
    f16 = [a.astype(jnp.float16) for a in (q, k, v)]
    zero_doc = m.at[:, 1].set(0.0)
    out16 = jax.jit(att.make_flax_attention_fn(zero_doc, IDS))(*f16)
    assert out16.dtype == jnp.float16 and bool(jnp.isfinite(out16).all())

    def probe(query, key, value, bias=None, mask=None):
        return bias

    seen = att.make_flax_attention_fn(zero_doc, IDS, form="additive", attention_fn=probe)(*f16)
    assert seen.dtype == jnp.float16 and bool(jnp.isfinite(seen).all())
    assert float(seen[0, 0, 0, 5]) < -1e4  # document 1 (M = 0)


# --------------------------------------------------------------------------------------------
# (5) No NaN or inf


def _all_finite(*trees):
    return all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(trees))


def test_zero_masks_and_fully_masked_rows_are_finite():
    q, k, v = qkv(33)
    w = randn(34, q.shape, jnp.float64)
    ids_no_question = np.where(IDS < 0, 0, IDS)  # every token in some document

    def loss(qq, kk, vv, mm, ids, mask):
        out = att.dma_attention(qq, kk, vv, doc_mask=mm, segment_ids=ids, mask=mask)
        return jnp.sum(out * w), out

    value_and_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))
    everything = jnp.ones((1, 1, 1, 11), bool)
    cases = {
        "some zero": (jnp.array([[0.0, 1.0, 0.0, 0.5], [0.0, 0.0, 0.0, 1.0]]), IDS, everything),
        "all zero, question tokens left": (jnp.zeros((2, N_DOCS)), IDS, everything),
        "all zero": (jnp.zeros((2, N_DOCS)), ids_no_question, everything),
        "all keys masked": (soft_mask(35), IDS, ~everything),
    }
    for name, (mm, ids, mask) in cases.items():
        (val, out), grads = value_and_grads(q, k, v, mm, ids, mask)
        assert _all_finite(val, out, grads), name
        if name in ("all zero", "all keys masked"):
            assert float(jnp.abs(out).max()) == 0.0, name
            assert all(float(jnp.abs(g).max()) == 0.0 for g in grads[:3]), name
        if name == "all zero, question tokens left":
            keep = [np.nonzero(IDS[b] < 0)[0] for b in range(2)]
            for b in range(2):
                ref = jnn(q[b : b + 1], k[b : b + 1, keep[b]], v[b : b + 1, keep[b]])
                np.testing.assert_allclose(out[b : b + 1], ref, atol=1e-6)  # f32 softmax
    # The additive form is finite for M = 0 too, also with every document at 0.
    additive = jax.jit(
        jax.value_and_grad(
            lambda m_: jnp.sum(
                jax.nn.dot_product_attention(q, k, v, bias=att.attention_bias(m_, ids_no_question))
                * w
            ),
        )
    )
    for mm in (jnp.zeros((2, N_DOCS)), cases["some zero"][0]):
        val, g = additive(mm)
        assert _all_finite(val, g)


def test_tiny_temperature_is_finite():
    q, k, v = qkv(36, kv_heads=2)
    w = randn(37, q.shape, jnp.float64)
    scores = jnp.array([[8.0, -1.0, 0.5, -30.0], [-2.0, 1.0, 3.0, 0.0]])
    vg = jax.jit(jax.value_and_grad(_loss_through_sampler), static_argnames="form")
    for form, dtype in (("mult", jnp.float32), ("mult", jnp.float64), ("add", jnp.float32)):
        args = [a.astype(dtype) for a in (scores, q, k, v, w)]
        val, g = vg(*args, temperature=1e-4, form=form)
        assert _all_finite(val, g), (form, dtype)
    # A -inf log-mask entry (never-selected document) gives a finite bias.
    logm = jnp.array([[0.0, -jnp.inf, -1.0, -jnp.inf]])
    b = bias_of(log_doc_mask=logm, segment_ids=IDS[:1])
    assert _all_finite(b)
    gb = jax.grad(lambda lm: jnp.sum(bias_of(log_doc_mask=lm, segment_ids=IDS[:1])))(logm)
    np.testing.assert_array_equal(gb, [[3.0, 0.0, 3.0, 0.0]])


# --------------------------------------------------------------------------------------------
# The documented Flax patterns inside training transforms (issue #17): the mask is a traced
# value of the step, so each pattern must work under jax.grad and jax.jit (and NNX's own).


@pytest.mark.parametrize("form", ["multiplicative", "additive"])
def test_nnx_per_call_document_mask_under_jax_and_nnx_transforms(form):
    x = randn(40, (2, 11, 16), jnp.float32)
    m = soft_mask(41, dtype=jnp.float32)
    mha = nnx.MultiHeadAttention(
        num_heads=4,
        in_features=16,
        num_kv_heads=2,
        decode=False,
        attention_fn=att.make_flax_attention_fn(form=form),
        rngs=nnx.Rngs(0),
    )
    # Reference: the closed-over adapter set eagerly (outside any transform).
    ref_mha = nnx.clone(mha)
    ref_mha.attention_fn = att.make_flax_attention_fn(m, IDS, form=form)
    ref = ref_mha(x, is_causal=True)

    def loss(m, mha):
        return jnp.sum(mha(x, mask=att.DocumentMask(m, IDS), is_causal=True) ** 2)

    out = mha(x, mask=att.DocumentMask(m, IDS), is_causal=True)
    np.testing.assert_allclose(out, ref, atol=2e-6)
    # jax transforms with the module closed over (the case that raised TraceContextError).
    g_jax = jax.grad(lambda m: loss(m, mha))(m)
    g_jit = jax.jit(jax.grad(lambda m: loss(m, mha)))(m)
    np.testing.assert_allclose(g_jit, g_jax, atol=1e-5)
    assert float(jnp.abs(g_jax).max()) > 0
    # NNX transforms, module passed through them; gradients for the scores and the params.
    g_nnx = nnx.jit(nnx.grad(loss))(m, mha)
    np.testing.assert_allclose(g_nnx, g_jax, atol=1e-5)

    @nnx.jit
    def step(mha, m):
        return nnx.value_and_grad(lambda mha: loss(m, mha))(mha)

    value, grads = step(mha, m)
    np.testing.assert_allclose(value, loss(m, mha), rtol=1e-5)
    assert float(jnp.abs(grads["query"]["kernel"][...]).max()) > 0
    # The DocumentMask also carries a boolean padding mask.
    pad = jnp.asarray(IDS != 3)[:, None, None, :]
    out = jax.jit(lambda m: mha(x, mask=att.DocumentMask(m, IDS, mask=pad)))(m)
    np.testing.assert_allclose(out, ref_mha(x, mask=pad), atol=2e-6)


def test_nnx_per_call_additive_log_mask_and_custom_base():
    x = randn(42, (2, 11, 16), jnp.float32)
    logm = jnp.log(soft_mask(43, dtype=jnp.float32))
    seen = []

    def base(query, key, value, bias=None, mask=None, **kw):
        seen.append(mask)
        return nnx.dot_product_attention(query, key, value, bias=bias, mask=mask, **kw)

    outs = []
    for fn in (
        att.make_flax_attention_fn(form="additive"),
        att.make_flax_attention_fn(form="additive", attention_fn=base),
    ):
        mha = nnx.MultiHeadAttention(
            num_heads=4, in_features=16, decode=False, attention_fn=fn, rngs=nnx.Rngs(0)
        )

        def loss(logm, mha=mha):
            spec = att.DocumentMask(log_doc_mask=logm, segment_ids=IDS)
            return jnp.sum(mha(x, mask=spec) ** 2)

        outs.append(jax.jit(jax.value_and_grad(loss))(logm))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-6)
    np.testing.assert_allclose(outs[0][1], outs[1][1], atol=1e-5)
    assert seen == [None]  # the base got the plain mask, not the DocumentMask (traced once)


@pytest.mark.parametrize("form", ["multiplicative", "additive"])
def test_linen_patterns_under_grad_and_jit(form):
    x = randn(44, (2, 11, 16), jnp.float32)
    m = soft_mask(45, dtype=jnp.float32)
    params = nn.MultiHeadDotProductAttention(num_heads=4).init(jax.random.key(0), x)

    # 1. The adapter built inside the loss and passed as attention_fn.
    def loss_outside(m):
        layer = nn.MultiHeadDotProductAttention(
            num_heads=4, attention_fn=att.make_flax_attention_fn(m, IDS, form=form)
        )
        return jnp.sum(layer.apply(params, x) ** 2)

    # 2. A linen module that builds the adapter in __call__.
    class Reader(nn.Module):
        @nn.compact
        def __call__(self, x, doc_mask, segment_ids):
            fn = att.make_flax_attention_fn(doc_mask, segment_ids, form=form)
            return nn.MultiHeadDotProductAttention(num_heads=4, attention_fn=fn, name="attn")(x)

    reader_params = {"params": {"attn": params["params"]}}

    def loss_module(m):
        return jnp.sum(Reader().apply(reader_params, x, m, IDS) ** 2)

    # 3. The per-call DocumentMask, which linen passes through too.
    layer = nn.MultiHeadDotProductAttention(
        num_heads=4, attention_fn=att.make_flax_attention_fn(form=form)
    )

    def loss_per_call(m):
        return jnp.sum(layer.apply(params, x, mask=att.DocumentMask(m, IDS)) ** 2)

    ref = jax.grad(loss_outside)(m)
    assert float(jnp.abs(ref).max()) > 0
    for loss in (loss_outside, loss_module, loss_per_call):
        np.testing.assert_allclose(jax.grad(loss)(m), ref, atol=1e-5)
        np.testing.assert_allclose(jax.jit(jax.grad(loss))(m), ref, atol=1e-5)


def test_multiplicative_adapter_needs_no_flax(monkeypatch):
    # The additive form without Flax names the extra (test_errors.py,
    # "make_flax_attention_fn-additive-without-flax").
    import sys

    for name in [m for m in sys.modules if m == "flax" or m.startswith("flax.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "flax", None)  # `import flax` now raises
    q, k, v = qkv(0, dtype=jnp.float32)
    assert att.make_flax_attention_fn(jnp.ones((2, 4)), IDS)(q, k, v).shape == q.shape


# --------------------------------------------------------------------------------------------
# Errors and the adapter's signature


def test_adapter_signature_lists_flax_keywords():
    import inspect

    fn = att.make_flax_attention_fn(jnp.ones((1, 2)), jnp.zeros((1, 3), int))
    params = inspect.signature(fn).parameters
    # linen passes only the keywords it finds in the signature; nnx passes all of these.
    for name in (
        "mask",
        "dropout_rng",
        "dropout_rate",
        "broadcast_dropout",
        "deterministic",
        "dtype",
        "precision",
        "module",
        "is_causal",
    ):
        assert name in params
    additive = att.make_flax_attention_fn(jnp.ones((1, 2)), jnp.zeros((1, 3), int), form="additive")
    assert inspect.signature(additive).parameters.keys() == params.keys()
    wrapped = att.make_flax_attention_fn(
        jnp.ones((1, 2)),
        jnp.zeros((1, 3), int),
        form="additive",
        attention_fn=nn.dot_product_attention,
    )
    assert inspect.signature(wrapped).parameters.keys() == (
        inspect.signature(nn.dot_product_attention).parameters.keys()
    )


def test_core_module_does_not_import_flax():
    import subprocess
    import sys

    code = (
        "import sys, rank_relax_jax.attention as a; "
        "assert not any(m == 'flax' or m.startswith('flax.') for m in sys.modules), 'flax'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
