"""The real-language-model Gumbel Reranking example (examples/rag/run.py) on tiny models.

The tiny GGUF llama and the tiny BERT zip are the fixtures of the reader and reranker tests: the
same loaders and forwards as the real SmolLM2 and MiniLM, with no download.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# Fixtures, shared with the module tests.
from test_rag_reader import tiny  # noqa: F401
from test_rag_reranker import tiny_zip  # noqa: F401

from examples.rag import data as rag_data
from examples.rag import reranker as rr
from examples.rag import run


@pytest.fixture(scope="module")
def models(tiny, tiny_zip, tmp_path_factory):  # noqa: F811
    return run.Models(str(tiny[0]), str(tiny_zip[0]), tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def prepared(models):
    cfg = run.Config(datasets=("hotpotqa",), n_questions=3, max_len=64)
    timings = {}

    class Bar:
        def set_postfix_str(self, _):
            pass

    return cfg, run.prepare("hotpotqa", cfg, models, timings, Bar()), timings


def test_prepare_shapes_and_single_paragraph_likelihoods(prepared):
    _, prep, timings = prepared
    n_q, n_par = prep.pmask.shape
    assert (n_q, n_par) == (3, 10)
    assert prep.p_emb.shape == (3, 10, prep.q_emb.shape[-1])
    assert timings["hotpotqa/reader_cache_built"] == 3
    ll = prep.loglik
    assert np.all(np.isfinite(ll)) and np.all(ll[prep.pmask] < 0)
    for name in ("closed_book", "all", "gold", "random"):
        assert np.all(np.isfinite(prep.diagnostics[name])) and np.all(prep.diagnostics[name] > 0)


@pytest.mark.parametrize("method", run.READER_METHODS)
def test_reader_gradient_reaches_every_head_parameter(prepared, models, method):
    cfg, prep, _ = prepared
    programs = run.make_programs(models, cfg, prep.k)
    head = rr.init_head(prep.q_emb.shape[-1])
    kv, valid = models.kv(prep.kv_keys[0])
    args = (prep.q_emb[0], prep.p_emb[0], prep.pmask[0], kv, valid, *prep.prompt(0))
    grads = jax.grad(programs.reader_loss)(head, method, models.params, jax.random.key(0), *args)
    for name, g in grads.items():
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), name
        assert np.any(g != 0), name


@pytest.mark.parametrize("method", ["emdr", "pdist", "supervised"])
def test_label_objectives_have_finite_nonzero_gradients(prepared, models, method):
    cfg, prep, _ = prepared
    programs = run.make_programs(models, cfg, prep.k)
    head = rr.init_head(prep.q_emb.shape[-1])
    # The 4-paragraph question is padded to 10: padding must not reach the loss.
    i = (
        next(j for j, q in enumerate(prep.questions) if q.n < 10)
        if any(q.n < 10 for q in prep.questions)
        else 0
    )
    args = (prep.q_emb[i], prep.p_emb[i], prep.pmask[i], prep.loglik[i], prep.gold[i])
    loss, grads = jax.value_and_grad(programs.label_loss)(head, method, *args)
    assert np.isfinite(loss)
    assert np.isfinite(np.asarray(grads["log_scale"])) and grads["log_scale"] != 0


def test_label_losses_match_their_definitions(prepared, models):
    cfg, prep, _ = prepared
    programs = run.make_programs(models, cfg, prep.k)
    head = rr.init_head(prep.q_emb.shape[-1])
    q, p, m, ll = prep.q_emb[0], prep.p_emb[0], prep.pmask[0], prep.loglik[0]
    s = np.asarray(rr.head_scores(head, q, p, m), np.float64)[m]
    log_p = s - np.log(np.sum(np.exp(s - s.max()))) - s.max()
    lli = np.asarray(ll, np.float64)[m]
    emdr = -np.log(np.sum(np.exp(log_p + lli - (log_p + lli).max()))) - (log_p + lli).max()
    t = np.exp(lli - lli.max()) / np.sum(np.exp(lli - lli.max()))
    pdist = np.sum(t * (np.log(t + 1e-30) - log_p))
    args = (q, p, m, ll, prep.gold[0])
    np.testing.assert_allclose(programs.label_loss(head, "emdr", *args), emdr, rtol=1e-4)
    np.testing.assert_allclose(
        programs.label_loss(head, "pdist", *args), pdist, rtol=1e-4, atol=1e-5
    )
    gold = np.asarray(prep.gold[0])[m]
    assert gold.any()
    supervised = -np.mean(log_p[gold])
    np.testing.assert_allclose(
        programs.label_loss(head, "supervised", *args), supervised, rtol=1e-4
    )


@pytest.mark.slow  # runs the example's main twice, end to end
def test_quick_path_runs_end_to_end(tiny, tiny_zip, tmp_path):  # noqa: F811
    argv = [
        "--quick",
        "--questions", "4",
        "--folds", "2",
        "--steps", "2",
        "--reader-gguf", str(tiny[0]),
        "--reranker-zip", str(tiny_zip[0]),
        "--cache-dir", str(tmp_path / "cache"),
        "--out", str(tmp_path / "out"),
        "--no-progress",
    ]  # fmt: skip
    results = run.main(argv)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (tmp_path / "out" / "rag_reranking.png").stat().st_size > 10_000
    res = saved["datasets"]["hotpotqa"]
    assert res["k"] == 3 and res["n_questions"] == 4
    for method in run.METHODS:
        summary = res["summary"][method]
        for metric in ("recall_gold", "nll"):
            mean, lo, hi = summary[metric]
            assert np.isfinite(mean) and lo <= mean <= hi, (method, metric)
        assert 0 <= summary["recall_gold"][0] <= 1
        for metric in ("em", "f1"):
            assert 0 <= summary[metric][0] <= 1
    # The untrained reranker is the cosine top-k: recompute its gold recall independently.
    qs = rag_data.load_hotpotqa()[:4]
    bert_cfg, bert, tok = rr.load_minilm(str(tiny_zip[0]))
    recalls = []
    for q in qs:
        qe = rr.embed_texts(bert, bert_cfg, tok, [q.question], cache=False)[0]
        pe = rr.embed_texts(bert, bert_cfg, tok, list(q.passages), cache=False)
        cos = pe @ qe / np.linalg.norm(pe, axis=1) / np.linalg.norm(qe)
        top = np.argsort(-cos, kind="stable")[:3]
        recalls.append(q.gold[top].sum() / q.gold.sum())
    np.testing.assert_allclose(res["per_question"]["untrained"]["recall_gold"], recalls, atol=1e-6)
    assert saved["command"].startswith("python -m examples.rag.run --quick")
    # A second run reuses the paragraph cache, and holding it in device memory changes nothing.
    again = run.main([*argv, "--kv-in-memory", "--no-generate"])  # greedy decoding: checked once
    assert again["timings"]["hotpotqa/reader_cache_built"] == 0
    assert results["timings"]["hotpotqa/reader_cache_built"] == 4
    for method in run.METHODS:
        np.testing.assert_allclose(
            again["datasets"]["hotpotqa"]["per_question"][method]["nll"],
            res["per_question"][method]["nll"],
            rtol=1e-6,
        )
    assert jnp.isfinite(again["timings"]["total_s"])
