r"""Differentiable Masked Attention (DMA): soft document masks inside dot-product attention.

G-Rerank (Huang et al., ACL 2025) trains a reranker end to end by putting its relaxed top-k
document mask $M \in [0, 1]^{n_\text{docs}}$ into the reader's attention. Every key token
$t$ of document $i$ is weighted by $M_i$:

$$
a_{q t} = \frac{M_{i(t)} \exp(s_{q t})}{\sum_{t'} M_{i(t')} \exp(s_{q t'})}
        = \operatorname{softmax}_t\big(s_{q t} + \log M_{i(t)}\big),
\qquad s_{q t} = q \cdot k_t / \sqrt{d}.
$$

This module holds the pieces that put $M$ where attention code needs it:

* `doc_mask_to_tokens` gathers a per-document value to key tokens through segment ids
  (id ``-1``: a token outside every document, weight 1);
* `attention_bias` is the *additive* form $\log M$ per key token, finite where
  $M = 0$, taken straight from the sampler's log-space output when one is given; it is the
  adapter for `jax.nn.dot_product_attention` (``bias=``) and composes with boolean
  padding/causal masks (`combine_bias_and_mask`);
* `dma_attention` / `dma_attention_weights` are the *multiplicative* reference form,
  the one whose gradient is right for hard and straight-through masks;
* `make_flax_attention_fn` builds an ``attention_fn`` for ``flax.linen`` attention modules
  and ``flax.nnx.MultiHeadAttention`` in either form; with NNX the mask of each call goes in
  the module's ``mask=`` argument as a `DocumentMask`.

Flax is optional (``pip install "rank-relax-jax[flax]"``): nothing here imports it at import
time, and the adapters that need it say how to install it.

References:
  Huang et al., "Gumbel Reranking: Differentiable End-to-End Reranker Optimization", ACL 2025.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from rank_relax_jax import _axis, _checks, _numerics
from rank_relax_jax._sharding import auto_sharding

__all__ = [
    "DocumentMask",
    "attention_bias",
    "combine_bias_and_mask",
    "dma_attention",
    "dma_attention_weights",
    "doc_mask_to_tokens",
    "make_flax_attention_fn",
]

ATTENTION_FORMS = ("multiplicative", "additive")


# --------------------------------------------------------------------------------------------
# Finite stand-ins for -inf.


def _log_floor(dtype: Any) -> jax.Array:
    """The finite value that stands for ``log 0`` in an additive bias: `_numerics.log_zero`."""
    return _numerics.log_zero(dtype)


# --------------------------------------------------------------------------------------------
# Validation helpers (all static: shapes and dtypes).


def _check_segment_ids(fn: str, segment_ids: Any) -> jax.Array:
    if segment_ids is None:
        raise TypeError(
            f"{fn}: argument `segment_ids` is required: an integer array [..., kv_len] giving the "
            f"document of every key token (-1 for tokens outside every document)."
        )
    ids = _checks.as_array(fn, "segment_ids", segment_ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(
            f"{fn}: argument `segment_ids` must have an integer dtype (document index per key "
            f"token, -1 for none); got dtype {ids.dtype}."
        )
    if ids.ndim == 0:
        raise ValueError(
            f"{fn}: argument `segment_ids` must have shape [..., kv_len]; got a scalar."
        )
    return ids


def _check_docs(fn: str, name: str, x: Any) -> jax.Array:
    x = _checks.check_floating(fn, name, x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(
            f"{fn}: argument `{name}` must have shape [..., n_docs] with n_docs >= 1; "
            f"got shape {x.shape}."
        )
    return x


def _broadcast_batch(fn: str, names: tuple[str, str], a: tuple, b: tuple) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise ValueError(
            f"{fn}: the batch axes (all but the last) of `{names[0]}` {a} and `{names[1]}` {b} "
            f"must broadcast together."
        ) from None


def _lift(fn: str, name: str, x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Broadcasts ``x`` to the attention logits' shape (rank promotion may be set to raise)."""
    return _checks.check_broadcastable(
        fn, name, x, shape, "the attention logits' shape [batch..., heads, q_len, kv_len] ="
    )


# --------------------------------------------------------------------------------------------
# Document values to key tokens, and the additive bias.


@auto_sharding
def doc_mask_to_tokens(
    doc_values: ArrayLike, segment_ids: ArrayLike, *, fill: float = 1.0
) -> jax.Array:
    r"""Gathers a per-document value to the key tokens of each document.

    ``out[..., t] = doc_values[..., segment_ids[..., t]]`` for ``segment_ids >= 0`` and ``fill``
    for negative ids (tokens that belong to no document: question, instruction, or padding that is
    handled by a separate boolean mask). Use ``fill=1.0`` for weights $M$ and ``fill=0.0``
    for log-weights $\log M$. An id ``>= n_docs`` is a caller bug and gives NaN, so it
    cannot pass unnoticed. The gradient with respect to ``doc_values`` sums over each document's
    tokens. Cost: O(kv_len) gather.

    Args:
      doc_values: Floating ``[..., n_docs]`` per-document values (mask, log-mask, ...).
      segment_ids: Integer ``[..., kv_len]`` document index of every key token, ``-1`` for none.
        Its batch axes broadcast with those of ``doc_values``.
      fill: Value for tokens with a negative id.

    Returns:
      ``[..., kv_len]`` array with the dtype of ``doc_values`` and the broadcast batch axes.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.attention import doc_mask_to_tokens
      >>> m = jnp.array([0.9, 0.0, 0.5])
      >>> ids = jnp.array([-1, -1, 0, 0, 1, 2, 2])
      >>> doc_mask_to_tokens(m, ids)
      Array([1. , 1. , 0.9, 0.9, 0. , 0.5, 0.5], dtype=float32)
    """
    fn = "doc_mask_to_tokens"
    values = _check_docs(fn, "doc_values", doc_values)
    ids = _check_segment_ids(fn, segment_ids)
    return _gather_tokens(fn, values, ids, fill, ("doc_values", "segment_ids"))


def _gather_tokens(fn: str, values, ids, fill, names) -> jax.Array:
    n_docs = values.shape[-1]
    batch = _broadcast_batch(fn, names, values.shape[:-1], ids.shape[:-1])
    values = jnp.broadcast_to(values, (*batch, n_docs))
    ids = jnp.broadcast_to(ids, (*batch, ids.shape[-1]))
    got = jnp.take_along_axis(values, jnp.clip(ids, 0, n_docs - 1), axis=-1)
    got = jnp.where(ids >= n_docs, jnp.asarray(jnp.nan, values.dtype), got)
    return jnp.where(ids < 0, jnp.asarray(fill, values.dtype), got)


def _safe_log(m: jax.Array) -> jax.Array:
    """``log m`` with the finite floor where ``m <= 0`` and a zero gradient there.

    Double ``where``: ``log`` only ever sees positive numbers, so the discarded branch cannot
    send a NaN/inf cotangent back. NaN stays NaN.
    """
    pos = ~(m <= 0)
    return jnp.where(pos, jnp.log(jnp.where(pos, m, jnp.ones((), m.dtype))), _log_floor(m.dtype))


@auto_sharding
def attention_bias(
    doc_mask: ArrayLike | None = None,
    segment_ids: ArrayLike | None = None,
    *,
    log_doc_mask: ArrayLike | None = None,
    dtype: Any = None,
) -> jax.Array:
    r"""Additive attention bias $\log M$ per key token, shaped for attention logits.

    Adding it to the logits gives DMA in its additive form,
    $\operatorname{softmax}(q k^\top/\sqrt{d} + \log M)$. Where $M = 0$ the bias is a
    finite large negative (a quarter of the dtype's range), never ``-inf``, so
    it can be summed with other biases and a row with every document masked stays finite.
    Tokens with segment id ``-1`` get bias 0.

    Give either ``doc_mask`` (then the bias is $\log M$ where $M > 0$ and the floor,
    with zero gradient, where $M = 0$) or, better, ``log_doc_mask``, the sampler's
    log-space output (max of log-softmaxes): it stays exact and differentiable where $M$
    underflows to 0 in linear space. ``-inf`` entries of ``log_doc_mask`` (never-selected
    documents) become the floor.

    In the additive form a document with $M = 0$ receives no gradient; use
    `dma_attention` (multiplicative form) for hard or straight-through masks. Cost:
    O(kv_len) per batch element.

    Args:
      doc_mask: Floating ``[..., n_docs]`` document mask in ``[0, 1]``.
      segment_ids: Integer ``[..., kv_len]`` document of each key token, ``-1`` for none.
      log_doc_mask: Floating ``[..., n_docs]`` $\log M$ (alternative to ``doc_mask``).
      dtype: dtype of the bias; default: that of the mask. Pass the dtype of the attention logits
        (e.g. ``query.dtype`` for float16) so the floor is finite in it.

    Returns:
      ``[..., 1, 1, kv_len]`` bias, broadcastable to logits ``[..., heads, q_len, kv_len]``.

    Example:
      With `jax.nn.dot_product_attention` (layout ``[batch, len, heads, head_dim]``):

      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax.attention import attention_bias
      >>> m = jnp.array([[1.0, 0.0, 0.5]])               # 3 documents, batch of 1
      >>> ids = jnp.array([[-1, 0, 0, 1, 1, 2]])         # 1 question token + 5 doc tokens
      >>> b = attention_bias(m, ids)
      >>> b.shape
      (1, 1, 1, 6)
      >>> b[0, 0, 0, :3], b[0, 0, 0, 5].round(2)        # question and document 0; document 2
      (Array([0., 0., 0.], dtype=float32), Array(-0.69, dtype=float32))
      >>> bool(b[0, 0, 0, 3] < -1e37)                   # document 1 (M = 0): finite, huge
      True
      >>> q = k = v = jnp.ones((1, 6, 2, 4))
      >>> jax.nn.dot_product_attention(q, k, v, bias=b).shape
      (1, 6, 2, 4)
    """
    fn = "attention_bias"
    if dtype is not None:
        _checks.check_float_dtype(fn, "dtype", dtype)
    ids = _check_segment_ids(fn, segment_ids)
    if (doc_mask is None) == (log_doc_mask is None):
        raise ValueError(
            f"{fn}: give exactly one of `doc_mask` (M) and `log_doc_mask` (log M); got "
            f"{'both' if doc_mask is not None else 'neither'}."
        )
    if log_doc_mask is not None:
        logm = _check_docs(fn, "log_doc_mask", log_doc_mask)
        dtype = logm.dtype if dtype is None else dtype
        tok = _gather_tokens(fn, logm.astype(dtype), ids, 0.0, ("log_doc_mask", "segment_ids"))
        # -inf (never selected) -> floor; maximum passes NaN through and routes no gradient to
        # the -inf entries.
        bias = jnp.maximum(tok, _log_floor(tok.dtype))
    else:
        m = _check_docs(fn, "doc_mask", doc_mask)
        dtype = m.dtype if dtype is None else dtype
        tok = _gather_tokens(fn, m, ids, 1.0, ("doc_mask", "segment_ids"))
        cd = _axis.compute_dtype(tok.dtype)
        bias = _safe_log(tok.astype(cd))
        bias = jnp.where(bias <= _log_floor(cd), _log_floor(dtype), bias.astype(dtype))
    return bias[..., None, None, :]


@auto_sharding
def combine_bias_and_mask(
    bias: ArrayLike | None = None, *masks: ArrayLike | None, dtype: Any = None
) -> jax.Array:
    """Folds boolean masks into an additive bias (for kernels that only take a bias).

    ``out = bias`` where every mask is True, and the finite ``log 0`` of the library elsewhere
    (`rank_relax_jax._numerics.log_zero`: a quarter of the dtype's range, capped at float32's as
    `jax.nn.dot_product_attention` caps its own mask constant, so the result stays finite when
    ``jax.nn`` masks it again). ``None`` masks are
    skipped; the result has the broadcast shape of all arguments. Passing the masks separately
    (``mask=`` / ``is_causal=``) to `jax.nn.dot_product_attention` or `dma_attention`
    gives the same output; this helper is for attention code that has no boolean mask input.

    Args:
      bias: Floating additive bias, e.g. from `attention_bias`; ``None`` means 0.
      *masks: Boolean arrays (True = attend), e.g. padding ``[batch, 1, 1, kv_len]`` and causal
        ``[q_len, kv_len]``.
      dtype: dtype of the result; default: the bias's dtype (float32 without a bias).

    Returns:
      Floating bias with the broadcast shape of ``bias`` and ``masks``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.attention import combine_bias_and_mask
      >>> bias = jnp.array([[0.0, -1.0, 0.0]])
      >>> causal = jnp.tril(jnp.ones((3, 3), dtype=bool))
      >>> combine_bias_and_mask(bias, causal)[1]
      Array([ 0.000000e+00, -1.000000e+00, -8.507059e+37], dtype=float32)
    """
    fn = "combine_bias_and_mask"
    if dtype is not None:
        _checks.check_float_dtype(fn, "dtype", dtype)
    arrays = []
    if bias is not None:
        bias = _checks.check_floating(fn, "bias", bias)
        dtype = bias.dtype if dtype is None else dtype
        arrays.append(bias)
    dtype = jnp.float32 if dtype is None else dtype
    for i, m in enumerate(masks):
        if m is None:
            continue
        m = _checks.as_array(fn, f"masks[{i}]", m)
        if m.dtype != jnp.bool_:
            raise TypeError(
                f"{fn}: mask argument {i} must be boolean (True = attend); got dtype {m.dtype}."
            )
        arrays.append(m)
    try:
        shape = tuple(np.broadcast_shapes(*(a.shape for a in arrays)))
    except ValueError:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(
            f"{fn}: `bias` and `masks` must broadcast together; got {shapes}."
        ) from None
    out = jnp.zeros(shape, dtype) if bias is None else jnp.broadcast_to(bias.astype(dtype), shape)
    for m in masks:
        if m is not None:
            out = jnp.where(jnp.broadcast_to(jnp.asarray(m), shape), out, _log_floor(dtype))
    return out


# --------------------------------------------------------------------------------------------
# The multiplicative reference.


def _check_qkv(fn: str, query, key, value=None):
    query = _checks.check_floating(fn, "query", query)
    key = _checks.check_floating(fn, "key", key)
    if query.ndim < 3 or key.ndim != query.ndim:
        raise ValueError(
            f"{fn}: arguments `query` and `key` must have the same rank >= 3 "
            f"([batch..., len, heads, head_dim]); got shapes {query.shape} and {key.shape}."
        )
    if query.shape[:-3] != key.shape[:-3] or query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"{fn}: `query` {query.shape} and `key` {key.shape} must share batch axes and head_dim."
        )
    n_heads, n_kv = query.shape[-2], key.shape[-2]
    if n_heads % n_kv:
        raise ValueError(
            f"{fn}: the number of query heads ({n_heads}) must be a multiple of the number of "
            f"key/value heads ({n_kv}) (grouped-query attention); got query {query.shape}, "
            f"key {key.shape}."
        )
    if value is not None:
        value = _checks.check_floating(fn, "value", value)
        if value.shape[:-1] != key.shape[:-1]:
            raise ValueError(
                f"{fn}: `value` {value.shape} must match `key` {key.shape} in all axes but the "
                f"last (head_dim)."
            )
    return query, key, value


def _dma_weights(
    fn: str,
    query,
    key,
    *,
    doc_mask,
    segment_ids,
    bias,
    mask,
    is_causal,
    scale,
    precision,
) -> jax.Array:
    """``[batch..., heads, q_len, kv_len]`` DMA weights in the compute dtype (>= float32)."""
    batch = query.shape[:-3]
    q_len, n_heads, head_dim = query.shape[-3:]
    kv_len, n_kv = key.shape[-3], key.shape[-2]
    group = n_heads // n_kv
    cd = jnp.promote_types(_axis.compute_dtype(query.dtype), _axis.compute_dtype(key.dtype))
    shape = (*batch, n_heads, q_len, kv_len)

    m = _check_docs(fn, "doc_mask", doc_mask)
    ids = _check_segment_ids(fn, segment_ids)
    if ids.shape[-1] != kv_len:
        raise ValueError(
            f"{fn}: argument `segment_ids` must have kv_len = {kv_len} entries on its last axis "
            f"(one per key token); got shape {ids.shape}."
        )
    tok = _gather_tokens(fn, m, ids, 1.0, ("doc_mask", "segment_ids")).astype(cd)
    tok = _lift(fn, "doc_mask/segment_ids", tok[..., None, None, :], shape)

    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    q = query.astype(cd).reshape(*batch, q_len, n_kv, group, head_dim)
    s = jnp.einsum("...tkgh,...skh->...kgts", q, key.astype(cd), precision=precision)
    s = s.reshape(shape) * jnp.asarray(scale, cd)
    if bias is not None:
        s = s + _lift(fn, "bias", _checks.check_floating(fn, "bias", bias), shape).astype(cd)

    valid = None
    if mask is not None:
        mask = _checks.as_array(fn, "mask", mask)
        if mask.dtype != jnp.bool_:
            raise TypeError(
                f"{fn}: argument `mask` must be boolean (True = attend); got dtype {mask.dtype}."
            )
        valid = _lift(fn, "mask", mask, shape)
    if is_causal:
        causal = jnp.broadcast_to(jnp.tril(jnp.ones((q_len, kv_len), dtype=bool)), shape)
        valid = causal if valid is None else valid & causal
    if valid is None:
        valid = jnp.ones(shape, dtype=bool)

    # Max-shift on s + log M, with M floored at `tiny`: then exp(s - shift) <= 1/tiny for every
    # valid token, including those with M = 0 whose gradient M' exp(s - shift) / Z we need, and
    # the best-weighted token contributes 1 to Z. The shift cancels, hence stop_gradient.
    tiny = jnp.finfo(cd).tiny
    logm = jnp.log(jnp.maximum(jax.lax.stop_gradient(tok), tiny))
    shifted = jnp.where(valid, jax.lax.stop_gradient(s) + logm, -jnp.inf)
    shift = jnp.max(shifted, axis=-1, keepdims=True)
    shift = jnp.where(jnp.isfinite(shift), shift, jnp.zeros((), cd))
    e = jnp.where(valid, jnp.exp(jnp.where(valid, s - shift, jnp.zeros((), cd))), 0.0)
    num = tok * e
    z = jnp.sum(num, axis=-1, keepdims=True)
    # Z = 0 (every key masked, or M = 0 on every key): weights 0, so the output is 0 and the
    # gradient is 0. `~(z <= 0)` keeps a NaN Z (NaN input) visible.
    ok = ~(z <= 0)
    return jnp.where(ok, num / jnp.where(ok, z, jnp.ones((), cd)), jnp.zeros((), cd))


def _weighted_values(weights: jax.Array, value: jax.Array, precision) -> jax.Array:
    """``[..., heads, q, kv] x [..., kv, kv_heads, dv] -> [..., q, heads, dv]`` (grouped)."""
    *batch, n_heads, q_len, kv_len = weights.shape
    n_kv, dv = value.shape[-2:]
    w = weights.reshape(*batch, n_kv, n_heads // n_kv, q_len, kv_len)
    out = jnp.einsum("...kgts,...skh->...tkgh", w, value.astype(w.dtype), precision=precision)
    return out.reshape(*batch, q_len, n_heads, dv)


@auto_sharding
def dma_attention_weights(
    query: ArrayLike,
    key: ArrayLike,
    *,
    doc_mask: ArrayLike,
    segment_ids: ArrayLike,
    bias: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    precision: Any = None,
) -> jax.Array:
    r"""Attention weights of DMA in the multiplicative form.

    $$
    a_{q t} = \frac{[\text{valid}_{q t}]\, M_t\, e^{s_{q t}}}
                   {\sum_{t'} [\text{valid}_{q t'}]\, M_{t'}\, e^{s_{q t'}}},\qquad
    s_{q t} = \text{scale}\cdot q\cdot k_t + \text{bias}_{q t},
    $$

    with $M_t$ the mask of token $t$'s document (1 for segment id ``-1``) and
    ``valid`` the boolean ``mask`` and causal mask. A row whose denominator is 0 (every key
    masked, or $M = 0$ on every unmasked key) gets all-zero weights and zero gradient.
    See `dma_attention` for the arguments. Cost: O(heads · q_len · kv_len · head_dim).

    Returns:
      ``[batch..., heads, q_len, kv_len]`` weights in ``query``'s dtype; rows sum to 1 or 0.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax.attention import dma_attention_weights
      >>> q = k = jnp.zeros((1, 1, 1, 4))                # one query, one head
      >>> k = jnp.zeros((1, 3, 1, 4))                    # three key tokens
      >>> w = dma_attention_weights(q, k, doc_mask=jnp.array([[1.0, 0.5]]),
      ...                           segment_ids=jnp.array([[-1, 0, 1]]))
      >>> w[0, 0, 0].round(3)
      Array([0.4, 0.4, 0.2], dtype=float32)
    """
    fn = "dma_attention_weights"
    query, key, _ = _check_qkv(fn, query, key)
    w = _dma_weights(
        fn,
        query,
        key,
        doc_mask=doc_mask,
        segment_ids=segment_ids,
        bias=bias,
        mask=mask,
        is_causal=is_causal,
        scale=scale,
        precision=precision,
    )
    return w.astype(query.dtype)


@auto_sharding
def dma_attention(
    query: ArrayLike,
    key: ArrayLike,
    value: ArrayLike,
    *,
    doc_mask: ArrayLike,
    segment_ids: ArrayLike,
    bias: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    precision: Any = None,
) -> jax.Array:
    r"""Differentiable Masked Attention, multiplicative reference form (G-Rerank).

    $$
    \text{out}_q = \sum_t a_{q t} v_t,\qquad
    a_{q t} = \frac{M_{i(t)} \exp(s_{q t})}{\sum_{t'} M_{i(t')} \exp(s_{q t'})},
    $$

    the same function as $\operatorname{softmax}(s + \log M)$, but written as a product so
    that $\partial a / \partial M_i$ is right even where $M_i = 0$: a straight-through
    or hard mask then still sends gradient to unselected documents, which the additive form
    (`attention_bias`) cannot (its bias is constant there). Exponentials are max-shifted on
    $s + \log\max(M, \text{tiny})$ and computed in at least float32; no ``-inf`` is used.

    Layout as `jax.nn.dot_product_attention`, with any number of batch axes. Grouped-query
    attention: ``key``/``value`` may have fewer heads than ``query`` (a divisor); query head
    ``h`` reads key head ``h // (heads // kv_heads)``. A query row with nothing to attend to
    (every key masked, or $M = 0$ on every unmasked key) outputs zeros with zero gradient;
    ``jax.nn.dot_product_attention`` would instead average the values of a fully masked row.

    Cost: O(heads · q_len · kv_len · head_dim) time and O(heads · q_len · kv_len) memory (a
    reference, not a fused kernel).

    Args:
      query: ``[batch..., q_len, heads, head_dim]``.
      key: ``[batch..., kv_len, kv_heads, head_dim]``.
      value: ``[batch..., kv_len, kv_heads, v_dim]``.
      doc_mask: ``[batch..., n_docs]`` document mask $M$ (hard, soft or straight-through);
        batch axes broadcast with ``query``'s.
      segment_ids: Integer ``[batch..., kv_len]`` document of each key token, ``-1`` for tokens in
        no document (always weight 1).
      bias: Optional additive bias broadcastable to ``[batch..., heads, q_len, kv_len]``.
      mask: Optional boolean mask broadcastable to the same shape (False = do not attend).
      is_causal: Apply a causal mask (query ``i`` attends keys ``j <= i``).
      scale: Logit scale; default ``1/sqrt(head_dim)``.
      precision: Passed to the two einsums.

    Returns:
      ``[batch..., q_len, heads, v_dim]`` in ``query``'s dtype.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax.attention import dma_attention
      >>> kq, kk, kv = jax.random.split(jax.random.key(0), 3)
      >>> q = jax.random.normal(kq, (1, 2, 2, 4))          # [batch, q_len, heads, head_dim]
      >>> k = jax.random.normal(kk, (1, 5, 2, 4))          # 5 key tokens
      >>> v = jax.random.normal(kv, (1, 5, 2, 4))
      >>> ids = jnp.array([[-1, 0, 0, 1, 1]])              # question token, doc 0, doc 1
      >>> out = dma_attention(q, k, v, doc_mask=jnp.array([[1.0, 0.0]]), segment_ids=ids)
      >>> keep = jnp.array([0, 1, 2])                      # same as dropping doc 1's tokens
      >>> ref = jax.nn.dot_product_attention(q, k[:, keep], v[:, keep])
      >>> bool(jnp.allclose(out, ref, atol=1e-6))
      True
    """
    fn = "dma_attention"
    query, key, value = _check_qkv(fn, query, key, value)
    w = _dma_weights(
        fn,
        query,
        key,
        doc_mask=doc_mask,
        segment_ids=segment_ids,
        bias=bias,
        mask=mask,
        is_causal=is_causal,
        scale=scale,
        precision=precision,
    )
    return _weighted_values(w, value, precision).astype(query.dtype)


# The Flax adapters live in their own module (they need none of Flax at import time either);
# they are re-exported here, where users import them from.
from rank_relax_jax._flax_attention import DocumentMask, make_flax_attention_fn  # noqa: E402
