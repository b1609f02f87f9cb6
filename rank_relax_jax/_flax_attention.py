"""Flax adapters for Differentiable Masked Attention: ``attention_fn`` for linen and NNX modules.

Public names are re-exported by `rank_relax_jax.attention`, which is where to import them from
(`make_flax_attention_fn`, `DocumentMask`). Flax itself is imported only when an adapter needs
it, with an error that names the extra to install when it is missing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rank_relax_jax import _checks
from rank_relax_jax.attention import (
    ATTENTION_FORMS,
    _check_docs,
    _check_qkv,
    _check_segment_ids,
    _dma_weights,
    _weighted_values,
    attention_bias,
)

# --------------------------------------------------------------------------------------------
# Flax adapters (flax-agnostic closures; flax is imported only when it is actually needed).


def _import_flax(fn: str) -> tuple[Any, Any]:
    """``(flax.linen, flax.nnx)``, or an error that says how to install Flax."""
    try:
        from flax import linen, nnx  # optional dependency
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"{fn} needs Flax, an optional dependency of rank_relax_jax. Install it with "
            f'`pip install "rank-relax-jax[flax]"` (or `pip install flax`). '
            f"Without Flax, use `dma_attention` or `attention_bias` with "
            f"`jax.nn.dot_product_attention`."
        ) from err
    return linen, nnx


def _sow(module: Any, weights: jax.Array) -> None:
    _, nnx = _import_flax("make_flax_attention_fn (weight sowing)")
    if isinstance(module, nnx.Module):
        module.sow(nnx.Intermediate, "attention_weights", weights)
    else:
        module.sow("intermediates", "attention_weights", weights)


class DocumentMask(NamedTuple):
    r"""A document mask handed to a Flax attention module through its ``mask=`` argument.

    ``make_flax_attention_fn()`` called without a mask builds an ``attention_fn`` that reads
    the mask of every call from ``mask=``: pass ``mha(x, mask=DocumentMask(m, ids))``. The
    mask then travels as an argument of the call, the way every traced value of a training
    step should, instead of being stored on the module. This is the pattern for
    ``flax.nnx``: setting ``mha.attention_fn`` inside ``jax.jit`` or ``jax.grad`` raises
    Flax's ``TraceContextError`` (an NNX module may not be mutated from inside a transform
    that it was not passed through), while a ``DocumentMask`` works the same under
    ``jax.jit``, ``jax.grad``, ``nnx.jit`` and ``nnx.value_and_grad``. Flax hands ``mask``
    to ``attention_fn`` unchanged except in autoregressive decoding (``decode=True``), which
    this pattern does not support.

    It is a ``NamedTuple``, so a pytree: it passes through ``jax.jit``, ``vmap`` and the NNX
    transforms as an argument.

    Attributes:
      doc_mask: ``[batch..., n_docs]`` document mask $M$ (required by the multiplicative form).
      segment_ids: Integer ``[batch..., kv_len]`` document of each key token, ``-1`` for none.
      log_doc_mask: ``[batch..., n_docs]`` $\log M$ (additive form only; instead of
        ``doc_mask``).
      mask: Optional boolean attention mask (padding, causal), as Flax's own ``mask=``.
    """

    doc_mask: Any = None
    segment_ids: Any = None
    log_doc_mask: Any = None
    mask: Any = None


def make_flax_attention_fn(
    doc_mask: ArrayLike | None = None,
    segment_ids: ArrayLike | None = None,
    *,
    log_doc_mask: ArrayLike | None = None,
    form: str = "multiplicative",
    attention_fn: Callable[..., jax.Array] | None = None,
) -> Callable[..., jax.Array]:
    r"""An ``attention_fn`` that applies a document mask inside Flax attention modules.

    Pass the result as ``attention_fn=`` to ``flax.linen.MultiHeadDotProductAttention`` (and
    ``SelfAttention``) or ``flax.nnx.MultiHeadAttention``, or call it like
    ``flax.linen.dot_product_attention``: ``fn(query, key, value, bias=None, mask=None, ...)``
    with layout ``[batch..., len, heads, head_dim]``. The module's parameters are untouched, so
    the same parameters give the plain or the masked model.

    * ``form="multiplicative"`` (default): `dma_attention` weights (needs ``doc_mask``),
      plus Flax's attention dropout (``dropout_rate``, ``dropout_rng``, ``broadcast_dropout``,
      ``deterministic``) and weight sowing (``module``). Use it for hard and straight-through
      masks.
    * ``form="additive"``: adds `attention_bias` (from ``doc_mask`` or ``log_doc_mask``)
      to the ``bias`` of ``attention_fn`` and keeps every other feature of it, including the
      fused ``jax.nn`` path without dropout. The default ``attention_fn`` is Flax's own
      ``dot_product_attention`` (the NNX one, or the linen one when a linen module sows its
      weights). Use it for soft masks.

    Where the mask comes from:

    * **Per call** (no ``doc_mask``, ``segment_ids`` or ``log_doc_mask`` given): the
      function reads a `DocumentMask` from the ``mask=`` argument of each call, e.g.
      ``mha(x, mask=DocumentMask(m, ids))``. Build the module once with this function; nothing
      is mutated afterwards, so it works under ``jax.jit``, ``jax.grad``, ``nnx.jit`` and
      ``nnx.value_and_grad`` alike. **This is the pattern for** ``flax.nnx``.
    * **Closed over** (``doc_mask`` or ``log_doc_mask``, and ``segment_ids``, given): the
      mask is fixed when the function is built. Since the mask is a traced value of the step,
      build the function inside the forward pass: in a linen module's ``__call__``, or in
      the loss for ``nn.MultiHeadDotProductAttention(attention_fn=...).apply``. Do not set
      it as ``mha.attention_fn = ...`` on an NNX module inside ``jax.jit``/``jax.grad``:
      Flax raises ``TraceContextError`` there.

    Args:
      doc_mask: ``[batch..., n_docs]`` document mask $M$, or None to read it per call.
      segment_ids: Integer ``[batch..., kv_len]`` document of each key token, ``-1`` for none.
      log_doc_mask: ``[batch..., n_docs]`` $\log M$ (additive form only).
      form: ``"multiplicative"`` or ``"additive"``.
      attention_fn: Base Flax attention function wrapped by the additive form.

    Returns:
      A function with Flax's ``attention_fn`` signature.

    Raises:
      ModuleNotFoundError: For ``form="additive"`` without ``attention_fn`` when Flax is not
        installed (install the ``flax`` extra).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax import nnx
      >>> from rank_relax_jax.attention import DocumentMask, make_flax_attention_fn
      >>> x = jax.random.normal(jax.random.key(0), (1, 5, 8))      # [batch, len, features]
      >>> ids = jnp.array([[-1, 0, 0, 1, 1]])
      >>> m = jnp.array([[1.0, 0.25]])
      >>> fn = make_flax_attention_fn(m, ids)                         # closed over (linen)
      >>> layer = nn.MultiHeadDotProductAttention(num_heads=2, attention_fn=fn)
      >>> params = layer.init(jax.random.key(1), x)
      >>> layer.apply(params, x).shape
      (1, 5, 8)
      >>> mha = nnx.MultiHeadAttention(num_heads=2, in_features=8, decode=False,    # per call
      ...                              attention_fn=make_flax_attention_fn(), rngs=nnx.Rngs(0))
      >>> loss = lambda m: mha(x, mask=DocumentMask(m, ids)).sum()
      >>> jax.jit(jax.grad(loss))(m).shape
      (1, 2)
      >>> additive = make_flax_attention_fn(m, ids, form="additive")
      >>> bool(jnp.allclose(nn.MultiHeadDotProductAttention(num_heads=2, attention_fn=additive)
      ...      .apply(params, x), layer.apply(params, x), atol=1e-5))
      True
    """
    fn_name = "make_flax_attention_fn"
    _checks.check_choice(fn_name, "form", form, ATTENTION_FORMS)
    per_call = doc_mask is None and segment_ids is None and log_doc_mask is None
    if not per_call:
        # Validates now, so a bad mask fails where the function is built.
        fixed = _check_flax_mask(fn_name, form, doc_mask, segment_ids, log_doc_mask)
    if attention_fn is not None and form != "additive":
        raise ValueError(
            f"{fn_name}: argument `attention_fn` is only used by form='additive'; the "
            f"multiplicative form computes attention itself."
        )
    if form == "additive" and attention_fn is None:
        _import_flax(f"{fn_name}(form='additive') without `attention_fn`")

    def resolve(mask):
        """``(doc_mask, segment_ids, log_doc_mask, boolean mask)`` of this call."""
        if isinstance(mask, DocumentMask):
            if not per_call:
                raise ValueError(
                    f"{fn_name}: this attention_fn was built with a document mask and also got "
                    f"a DocumentMask through `mask=`; build it without one "
                    f"(`make_flax_attention_fn(form={form!r})`) to pass the mask per call."
                )
            got = _check_flax_mask(
                fn_name, form, mask.doc_mask, mask.segment_ids, mask.log_doc_mask
            )
            return (*got, mask.mask)
        if per_call:
            raise ValueError(
                f"{fn_name}: this attention_fn was built without a document mask, so it reads "
                f"one from `mask=` at every call; pass `mask=DocumentMask(doc_mask, "
                f"segment_ids)` to the attention module (got mask of type "
                f"{type(mask).__name__})."
            )
        return (*fixed, mask)

    if form == "additive":

        def dma_bias(query, bias, spec):
            m, ids, logm = spec
            b = attention_bias(m, ids, log_doc_mask=logm, dtype=jnp.result_type(query))
            return b if bias is None else b + bias

        if attention_fn is None:
            return _default_additive(dma_bias, resolve)
        base = attention_fn

        # `wraps` makes inspect.signature report the base's parameters, which is how linen's
        # MultiHeadDotProductAttention decides which keyword arguments to pass.
        @functools.wraps(base)
        def additive_fn(query, key, value, bias=None, *args, **kwargs):
            if args:  # mask passed positionally, as in dot_product_attention's signature
                *spec, mask = resolve(args[0])
                args = (mask, *args[1:])
            else:
                *spec, kwargs["mask"] = resolve(kwargs.get("mask"))
            return base(query, key, value, dma_bias(query, bias, spec), *args, **kwargs)

        return additive_fn

    def dma_attention_fn(
        query,
        key,
        value,
        bias=None,
        mask=None,
        broadcast_dropout: bool = True,
        dropout_rng=None,
        dropout_rate: float = 0.0,
        deterministic: bool = False,
        dtype=None,
        precision=None,
        module=None,
        is_causal: bool = False,
    ):
        doc_mask, segment_ids, _, mask = resolve(mask)
        if dtype is not None:
            query, key, value = (jnp.asarray(a, dtype) for a in (query, key, value))
        query, key, value = _check_qkv(fn_name, query, key, value)
        if mask is not None:
            mask = jnp.asarray(mask).astype(bool)  # linen's make_attention_mask gives floats
        w = _dma_weights(
            fn_name,
            query,
            key,
            doc_mask=doc_mask,
            segment_ids=segment_ids,
            bias=bias,
            mask=mask,
            is_causal=is_causal,
            scale=None,
            precision=precision,
        )
        if module is not None:
            _sow(module, w.astype(query.dtype))
        if not deterministic and dropout_rate > 0.0:
            keep_prob = 1.0 - dropout_rate
            if broadcast_dropout:
                drop_shape = (1,) * (w.ndim - 2) + w.shape[-2:]
            else:
                drop_shape = w.shape
            keep = jax.random.bernoulli(dropout_rng, keep_prob, drop_shape)
            w = w * jnp.broadcast_to(keep, w.shape).astype(w.dtype) / keep_prob
        return _weighted_values(w, value, precision).astype(query.dtype)

    return dma_attention_fn


def _check_flax_mask(fn: str, form: str, doc_mask, segment_ids, log_doc_mask):
    """Validates a document mask for the adapter's ``form``; returns it as arrays."""
    if form == "additive":
        # attention_bias checks everything (exactly one of the masks, ids, shapes).
        attention_bias(doc_mask, segment_ids, log_doc_mask=log_doc_mask)
        return doc_mask, segment_ids, log_doc_mask
    if log_doc_mask is not None or doc_mask is None:
        raise ValueError(
            f"{fn}: form='multiplicative' needs `doc_mask` (M itself, not log M); for "
            f"`log_doc_mask` use form='additive'."
        )
    return _check_docs(fn, "doc_mask", doc_mask), _check_segment_ids(fn, segment_ids), None


def _default_additive(dma_bias: Callable[..., jax.Array], resolve: Callable) -> Callable:
    """Flax's own dot_product_attention with the DMA bias added, for linen and NNX alike."""

    def additive_fn(
        query,
        key,
        value,
        bias=None,
        mask=None,
        broadcast_dropout: bool = True,
        dropout_rng=None,
        dropout_rate: float = 0.0,
        deterministic: bool = False,
        dtype=None,
        precision=None,
        module=None,
        is_causal: bool = False,
    ):
        linen, nnx = _import_flax("make_flax_attention_fn(form='additive')")
        *spec, mask = resolve(mask)
        kwargs = dict(
            mask=mask,
            broadcast_dropout=broadcast_dropout,
            dropout_rng=dropout_rng,
            dropout_rate=dropout_rate,
            deterministic=deterministic,
            dtype=dtype,
            precision=precision,
            module=module,
        )
        bias = dma_bias(query, bias, spec)
        # linen modules sow into a linen collection (and never pass is_causal); NNX's version
        # takes is_causal and sows into nnx.Intermediate.
        if module is not None and not isinstance(module, nnx.Module) and not is_causal:
            return linen.dot_product_attention(query, key, value, bias, **kwargs)
        return nnx.dot_product_attention(query, key, value, bias, is_causal=is_causal, **kwargs)

    return additive_fn
