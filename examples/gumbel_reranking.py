"""End-to-end Gumbel Reranking on a synthetic two-hop retrieval task.

Reproduces, at laptop scale, the central claim of *Gumbel Reranking* (G-Rerank, Huang et al.,
ACL 2025): a reranker trained only from the reader's answer loss, through a relaxed top-k
document mask applied inside the reader's attention (Differentiable Masked Attention, DMA),
learns to select documents that are useful only *together* with others, which methods that
score documents one at a time (EMDR², perplexity distillation) miss.

The task. Each question asks for an attribute of an entity reached through a relation,
``(x, r, a)``: "what is the a of the r of x?". Among ``n_docs`` short documents of three tokens
(subject, relation-or-attribute, object) are

* the **bridge** document ``x r y``: it does not contain the answer, and shares only ``x`` and
  ``r`` with the question;
* the **answer** document ``y a v``: it contains the answer ``v`` and shares only the
  attribute type ``a`` with the question;
* hard negatives: ``x r' y'`` (same entity, other relation) together with ``y' a v'`` (the
  answer document of *another* question: alone it looks exactly like the answer document),
  documents about ``y`` with other attributes, ``w r x``, ``z a v''``, and random filler.

Every question's facts are drawn afresh (entities are symbols, the documents define the
world), and test questions use (relation, attribute) combinations never seen in training.
A reader can only answer reliably with both gold documents: it must read ``y`` in the bridge
document to know which ``? a ?`` document to trust.

Run ``python examples/gumbel_reranking.py`` (a few minutes on 2 CPU cores) or add ``--quick``
(under a minute). ``--out DIR`` writes ``DIR/results.json`` and ``DIR/gumbel_reranking.png``.
See ``docs/gumbel_reranking.md`` for the method and a discussion of the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from rank_relax_jax.attention import make_flax_attention_fn
from rank_relax_jax.gumbel import gumbel_attention_mask
from rank_relax_jax.topk import soft_topk_mask, topk_mask

METHODS = ("grerank", "subset", "sigmoid_topk", "emdr", "pdist", "supervised", "untrained")
METRICS = ("recall_bridge", "recall_answer", "em")
LABELS = {
    "grerank": "G-Rerank (Gumbel max-of-k mask + DMA)",
    "subset": "Gumbel subset mask + DMA",
    "sigmoid_topk": "sigmoid top-k mask + DMA (no noise)",
    "emdr": "EMDR² (single-doc marginal likelihood)",
    "pdist": "perplexity distillation (single-doc)",
    "supervised": "supervised on gold labels (upper bound)",
    "untrained": "untrained reranker",
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that sets the size of a run (the defaults are the full run)."""

    n_docs: int = 20
    k: int = 4
    n_train: int = 4096
    n_test: int = 1024
    seeds: int = 3
    reader_steps: int = 1600
    reader_batch: int = 64
    reranker_steps: int = 500
    reranker_batch: int = 32
    reranker_lr: float = 1e-2
    temperature: float = 0.2
    chunks: int = 10


QUICK = Config(n_train=1024, n_test=512, reader_steps=600, reranker_steps=150, chunks=3)


# --------------------------------------------------------------------------------------------
# The task: a tiny vocabulary of entities, relations, attribute types and values.

N_ENT, N_REL, N_ATT, N_VAL = 64, 4, 4, 16
REL0 = N_ENT
ATT0 = REL0 + N_REL
VAL0 = ATT0 + N_ATT
VOCAB = VAL0 + N_VAL
MIN_DOCS = 14  # gold pair + up to 11 hard negatives + at least one random filler


def _question(rng: np.random.Generator, r: int, a: int, n_docs: int):
    """One question (x, r, a), its shuffled documents, and where the gold documents are."""
    ents = rng.choice(N_ENT, size=16, replace=False)
    x, y = ents[0], ents[1]
    v = rng.integers(N_VAL)
    other_rel = [q for q in range(N_REL) if q != r]
    other_att = [q for q in range(N_ATT) if q != a]
    wrong_val = [u for u in range(N_VAL) if u != v]
    docs = [(x, REL0 + r, y), (y, ATT0 + a, VAL0 + v)]  # bridge, answer
    e = 2
    for rr in rng.choice(other_rel, size=rng.integers(1, 4), replace=False):
        # x r' y' and y' a v': the second is the answer document of the question (x, r', a).
        docs += [(x, REL0 + rr, ents[e]), (ents[e], ATT0 + a, VAL0 + rng.choice(wrong_val))]
        e += 1
    for aa in rng.choice(other_att, size=rng.integers(1, 3), replace=False):
        docs.append((y, ATT0 + aa, VAL0 + rng.integers(N_VAL)))
    docs.append((y, REL0 + rng.integers(N_REL), ents[e]))
    e += 1
    if rng.random() < 0.5:
        docs.append((ents[e], ATT0 + a, VAL0 + rng.choice(wrong_val)))
        e += 1
    if rng.random() < 0.5:
        docs.append((ents[e], REL0 + r, x))
        e += 1
    while len(docs) < n_docs:
        s = rng.choice(ents[e:])
        if rng.random() < 0.5:
            docs.append((s, REL0 + rng.choice(other_rel), rng.integers(N_ENT)))
        else:
            docs.append((s, ATT0 + rng.choice(other_att), VAL0 + rng.integers(N_VAL)))
    perm = rng.permutation(n_docs)
    where = np.argsort(perm)
    question = np.array([x, REL0 + r, ATT0 + a], np.int32)
    return question, np.array(docs, np.int32)[perm], where[0], where[1], v


def make_split(rng: np.random.Generator, n: int, n_docs: int, *, test: bool) -> dict:
    """``n`` questions; the test split uses the (relation, attribute) pairs training never has."""
    if n_docs < MIN_DOCS:
        raise ValueError(f"make_split: n_docs must be at least {MIN_DOCS}; got {n_docs}.")
    combos = [(r, a) for r in range(N_REL) for a in range(N_ATT) if ((r + a) % N_ATT == 0) == test]
    rows = [_question(rng, *combos[rng.integers(len(combos))], n_docs) for _ in range(n)]
    q, d, b, ad, v = zip(*rows, strict=True)
    return {
        "question": jnp.asarray(np.stack(q)),
        "docs": jnp.asarray(np.stack(d)),
        "bridge": jnp.asarray(np.array(b, np.int32)),
        "answer_doc": jnp.asarray(np.array(ad, np.int32)),
        "answer": jnp.asarray(np.array(v, np.int32)),
    }


def gold_mask(batch: dict, n_docs: int) -> jax.Array:
    return jax.nn.one_hot(batch["bridge"], n_docs) + jax.nn.one_hot(batch["answer_doc"], n_docs)


# --------------------------------------------------------------------------------------------
# The reader: a tiny Fusion-in-Decoder. Each document is encoded on its own; a query built from
# the question then reads all document tokens twice (two hops) through DMA cross-attention.


class _MLP(nn.Module):
    d: int

    @nn.compact
    def __call__(self, h):
        return h + nn.Dense(self.d)(nn.gelu(nn.Dense(2 * self.d)(nn.LayerNorm()(h))))


class Reader(nn.Module):
    """Answers ``(x, r, a)`` from documents weighted by a document mask ``M`` in ``[0, 1]``.

    Returns the answer logits over the ``N_VAL`` values and, from the first hop, logits over
    entities (used only by an auxiliary pretraining loss that asks hop 1 for the bridge
    entity ``y``; it makes the two-hop reader train in seconds).
    """

    d: int = 64
    heads: int = 4

    @nn.compact
    def __call__(self, question, docs, doc_mask):
        batch, n_docs, length = docs.shape
        embed = nn.Embed(VOCAB, self.d)
        # Encoder: token + position, then each token sees its own document (never the others).
        h = embed(docs) + self.param("doc_pos", nn.initializers.normal(0.02), (length, self.d))
        h = h + nn.Dense(self.d)(h.reshape(batch, n_docs, length * self.d))[:, :, None]
        h = _MLP(self.d)(h).reshape(batch, n_docs * length, self.d)
        # A learned "nothing found" token that belongs to no document (segment id -1).
        null = self.param("null", nn.initializers.normal(0.02), (1, 1, self.d))
        tokens = jnp.concatenate([jnp.broadcast_to(null, (batch, 1, self.d)), h], axis=1)
        segment_ids = jnp.concatenate([jnp.array([-1]), jnp.repeat(jnp.arange(n_docs), length)])
        # DMA: every key token of document i is weighted by doc_mask[:, i].
        dma = make_flax_attention_fn(doc_mask, segment_ids)
        q_pos = self.param("q_pos", nn.initializers.normal(0.02), (3, self.d))
        query = nn.Dense(self.d)((embed(question) + q_pos).reshape(batch, 3 * self.d))
        tokens = nn.LayerNorm()(tokens)
        hop1 = None
        for hop in range(2):
            read = nn.MultiHeadDotProductAttention(num_heads=self.heads, attention_fn=dma)(
                nn.LayerNorm()(query)[:, None], tokens
            )[:, 0]
            query = _MLP(self.d)(query + nn.Dense(self.d)(read))
            if hop == 0:
                hop1 = nn.Dense(N_ENT)(nn.LayerNorm()(query))
        return nn.Dense(N_VAL)(nn.LayerNorm()(query)), hop1


def random_doc_subsets(key, batch: dict, n_docs: int) -> jax.Array:
    """Reader-pretraining masks: a random fraction of the documents, gold ones kept w.p. 0.9."""
    k_rate, k_docs, k_gold = jax.random.split(key, 3)
    size = batch["bridge"].shape
    rate = jax.random.uniform(k_rate, (*size, 1))
    keep = jax.random.uniform(k_docs, (*size, n_docs)) < rate
    keep_gold = jax.random.uniform(k_gold, (*size, n_docs)) < 0.9
    return jnp.where(gold_mask(batch, n_docs) > 0, keep_gold, keep).astype(jnp.float32)


def answer_nll(reader: Reader, params, batch: dict, mask: jax.Array) -> jax.Array:
    logits, _ = reader.apply(params, batch["question"], batch["docs"], mask)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["answer"])


def reader_accuracy(reader: Reader, params, batch: dict, mask: jax.Array) -> jax.Array:
    logits, _ = reader.apply(params, batch["question"], batch["docs"], mask)
    return jnp.mean(logits.argmax(-1) == batch["answer"])


def sample(key, data: dict, size: int) -> dict:
    idx = jax.random.randint(key, (size,), 0, data["answer"].shape[0])
    return {name: v[idx] for name, v in data.items()}


# --------------------------------------------------------------------------------------------
# The reranker: scores each (question, document) pair on its own, the same model for every
# method: embeddings of the 3 + 3 tokens and their 3 x 3 token-match matrix, through an MLP.


class Reranker(nn.Module):
    d: int = 32
    hidden: int = 64

    @nn.compact
    def __call__(self, question, docs):
        batch, n_docs, _ = docs.shape
        embed = nn.Embed(VOCAB, self.d)
        q, d = embed(question), embed(docs)
        match = jnp.einsum("bid,bnjd->bnij", q, d).reshape(batch, n_docs, 9)
        q = jnp.broadcast_to(q.reshape(batch, 1, 3 * self.d), (batch, n_docs, 3 * self.d))
        feats = jnp.concatenate([q, d.reshape(batch, n_docs, 3 * self.d), match], axis=-1)
        return nn.Dense(1)(nn.gelu(nn.Dense(self.hidden)(feats)))[..., 0]


# The six training objectives, indexed for lax.switch (one compiled program for all of them).
TRAINED = METHODS[:-1]


def reranker_loss(rr_params, rd_params, batch, key, method, cfg: Config, reranker, reader):
    scores = reranker.apply(rr_params, batch["question"], batch["docs"])
    k, tau = cfg.k, cfg.temperature

    def through_reader(_):
        # G-Rerank and its two variants: a relaxed top-k mask goes into the frozen reader's
        # attention and the reader's answer loss is the reranker's only training signal.
        mask = jax.lax.switch(
            jnp.minimum(method, 2),
            [
                lambda: gumbel_attention_mask(key, scores, k, temperature=tau, method="max"),
                lambda: gumbel_attention_mask(key, scores, k, temperature=tau, method="subset"),
                lambda: soft_topk_mask(scores, k, method="sigmoid", temperature=tau),
            ],
        )
        return answer_nll(reader, rd_params, batch, mask).mean()

    def from_labels(_):
        log_p = jax.nn.log_softmax(scores, axis=-1)
        ll = batch["doc_loglik"]  # log p(answer | question, document i alone), precomputed
        emdr = -jnp.mean(jax.nn.logsumexp(log_p + ll, axis=-1))
        target = jax.nn.softmax(ll, axis=-1)
        pdist = jnp.mean(jnp.sum(target * (jax.nn.log_softmax(ll, axis=-1) - log_p), axis=-1))
        sup = jnp.mean(optax.sigmoid_binary_cross_entropy(scores, gold_mask(batch, cfg.n_docs)))
        return jnp.stack([emdr, pdist, sup])[jnp.clip(method - 3, 0, 2)]

    return jax.lax.cond(method < 3, through_reader, from_labels, None)


# --------------------------------------------------------------------------------------------
# Training and evaluation.


def make_programs(cfg: Config, reader: Reader, reranker: Reranker):
    """The jitted programs; each is compiled once and reused across methods and chunks."""
    reader_opt = optax.adam(3e-3)
    rr_opt = optax.adam(cfg.reranker_lr)
    reader_steps = cfg.reader_steps // cfg.chunks
    rr_steps = cfg.reranker_steps // cfg.chunks

    def reader_loss(params, batch, mask):
        logits, hop1 = reader.apply(params, batch["question"], batch["docs"], mask)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["answer"])
        # Auxiliary target for hop 1: the bridge entity y, when the bridge document is visible.
        bridge = batch["docs"][jnp.arange(mask.shape[0]), batch["bridge"]]
        seen = mask[jnp.arange(mask.shape[0]), batch["bridge"]]
        aux = optax.softmax_cross_entropy_with_integer_labels(hop1, bridge[:, 2]) * seen
        return jnp.mean(nll + aux)

    @jax.jit
    def reader_chunk(params, opt_state, key, train):
        def step(carry, key):
            params, opt_state = carry
            k_batch, k_mask = jax.random.split(key)
            batch = sample(k_batch, train, cfg.reader_batch)
            mask = random_doc_subsets(k_mask, batch, cfg.n_docs)
            loss, grads = jax.value_and_grad(reader_loss)(params, batch, mask)
            updates, opt_state = reader_opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        keys = jax.random.split(key, reader_steps)
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), keys)
        return params, opt_state, losses.mean()

    @jax.jit
    def doc_logliks(rd_params, data):
        """log p(answer | question, document i alone) for every document: [questions, n_docs]."""

        def one_doc(onehot):
            mask = jnp.broadcast_to(onehot, data["docs"].shape[:2])
            return -answer_nll(reader, rd_params, data, mask)

        return jax.lax.map(one_doc, jnp.eye(cfg.n_docs)).T

    @jax.jit
    def rr_init(keys, example):
        return jax.vmap(lambda k: reranker.init(k, example["question"], example["docs"]))(keys)

    @jax.jit
    def rr_chunk(rr_params, opt_state, keys, rd_params, train, method):
        def one_seed(params, opt_state, key):
            def step(carry, key):
                params, opt_state = carry
                k_batch, k_mask = jax.random.split(key)
                batch = sample(k_batch, train, cfg.reranker_batch)
                loss, grads = jax.value_and_grad(reranker_loss)(
                    params, rd_params, batch, k_mask, method, cfg, reranker, reader
                )
                updates, opt_state = rr_opt.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            steps = jax.random.split(key, rr_steps)
            (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), steps)
            return params, opt_state, losses.mean()

        return jax.vmap(one_seed)(rr_params, opt_state, keys)

    @jax.jit
    def rr_evaluate(rr_params, rd_params, test):
        def one_seed(params):
            scores = reranker.apply(params, test["question"], test["docs"])
            top = topk_mask(scores, cfg.k)  # the reader sees exactly the reranker's top-k
            rows = jnp.arange(top.shape[0])
            return {
                "recall_bridge": top[rows, test["bridge"]].mean(),
                "recall_answer": top[rows, test["answer_doc"]].mean(),
                "em": reader_accuracy(reader, rd_params, test, top),
            }

        return jax.vmap(one_seed)(rr_params)

    @jax.jit
    def reader_report(rd_params, test, key):
        n = test["answer"].shape[0]
        random_k = topk_mask(jax.random.uniform(key, (n, cfg.n_docs)), cfg.k)
        return {
            "gold documents": reader_accuracy(reader, rd_params, test, gold_mask(test, cfg.n_docs)),
            "all documents": reader_accuracy(reader, rd_params, test, jnp.ones((n, cfg.n_docs))),
            f"{cfg.k} random documents": reader_accuracy(reader, rd_params, test, random_k),
        }

    return {
        "reader_opt": reader_opt,
        "rr_opt": rr_opt,
        "reader_chunk": reader_chunk,
        "doc_logliks": doc_logliks,
        "rr_init": rr_init,
        "rr_chunk": rr_chunk,
        "rr_evaluate": rr_evaluate,
        "reader_report": reader_report,
    }


def pretrain_reader(cfg: Config, seed: int, bar=None):
    """Builds the task and the compiled programs, and pretrains the frozen reader."""
    rng = np.random.default_rng(seed)
    train = make_split(rng, cfg.n_train, cfg.n_docs, test=False)
    test = make_split(rng, cfg.n_test, cfg.n_docs, test=True)
    reader, reranker = Reader(), Reranker()
    programs = make_programs(cfg, reader, reranker)
    key = jax.random.key(seed)
    # Random document subsets, gold documents kept with probability 0.9: the reader learns to
    # use whatever it is given, including single documents (which EMDR² and PDist rely on).
    init = jax.jit(lambda key, q, d: reader.init(key, q, d, jnp.ones((1, cfg.n_docs))))
    rd_params = init(key, train["question"][:1], train["docs"][:1])  # jit: one compile, not many
    opt_state = jax.jit(programs["reader_opt"].init)(rd_params)
    for chunk_key in jax.random.split(key, cfg.chunks):
        rd_params, opt_state, loss = programs["reader_chunk"](
            rd_params, opt_state, chunk_key, train
        )
        if bar is not None:
            bar.set_postfix_str(f"reader loss {float(loss):.3f}")
            bar.update(1)
    # What EMDR² and perplexity distillation need: the frozen reader on each document alone.
    train = dict(train, doc_loglik=programs["doc_logliks"](rd_params, train))
    return train, test, rd_params, programs


def train_rerankers(cfg, seed, train, rd_params, programs, methods=TRAINED, bar=None):
    """Trains one reranker per method and seed from the same initialisations; returns params."""
    k_rr = jax.random.fold_in(jax.random.key(seed), 1)
    rr_params0 = programs["rr_init"](jax.random.split(k_rr, cfg.seeds),
                                     {n: v[:1] for n, v in train.items()})  # fmt: skip
    trained = {"untrained": rr_params0}
    for method in methods:
        m = TRAINED.index(method)
        params = rr_params0
        opt_state = jax.jit(jax.vmap(programs["rr_opt"].init))(params)
        chunk_keys = jax.random.split(jax.random.fold_in(k_rr, m), (cfg.chunks, cfg.seeds))
        for chunk_key in chunk_keys:
            params, opt_state, loss = programs["rr_chunk"](
                params, opt_state, chunk_key, rd_params, train, m
            )
            if bar is not None:
                bar.set_postfix_str(f"{method} loss {float(loss.mean()):.3f}")
                bar.update(1)
        trained[method] = params
    return trained


def evaluate(cfg, seed, test, rd_params, programs, trained) -> dict[str, Any]:
    results: dict[str, Any] = {"k": cfg.k, "n_docs": cfg.n_docs, "seeds": cfg.seeds}
    for method in [m for m in METHODS if m in trained]:
        metrics = programs["rr_evaluate"](trained[method], rd_params, test)
        values = {name: np.asarray(metrics[name]) for name in METRICS}  # one value per seed
        results[method] = {
            name: [round(float(v.mean()), 4), round(float(v.std()), 4)]
            for name, v in values.items()
        }
    key = jax.random.fold_in(jax.random.key(seed), 2)
    acc = programs["reader_report"](rd_params, test, key)
    results["reader_accuracy"] = {name: round(float(v), 4) for name, v in acc.items()}
    return results


def run(cfg: Config, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Builds the task, pretrains the reader, trains every reranker and returns the results."""
    t0 = time.time()
    total = cfg.chunks * (1 + len(TRAINED))
    bar = tqdm(total=total, desc="training", unit="chunk", disable=not progress, file=sys.stdout)
    train, test, rd_params, programs = pretrain_reader(cfg, seed, bar)
    trained = train_rerankers(cfg, seed, train, rd_params, programs, bar=bar)
    bar.close()
    results = evaluate(cfg, seed, test, rd_params, programs, trained)
    results["seconds"] = round(time.time() - t0, 1)
    return results


# --------------------------------------------------------------------------------------------
# Output.


def format_table(results: dict[str, Any]) -> str:
    k = results["k"]
    head = f"{'method':<44} {'bridge R@' + str(k):>15} {'answer R@' + str(k):>15} {'reader EM':>15}"
    lines = [head, "-" * len(head)]
    for method in METHODS:
        cells = [f"{results[method][m][0]:.3f} ± {results[method][m][1]:.3f}" for m in METRICS]
        lines.append(f"{LABELS[method]:<44} " + " ".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


def save_figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = results["k"]
    names = {"recall_bridge": f"bridge recall@{k}", "recall_answer": f"answer recall@{k}",
             "em": "reader EM (top-k)"}  # fmt: skip
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    width = 0.27
    x = np.arange(len(METHODS))
    for j, metric in enumerate(METRICS):
        mean = [results[m][metric][0] for m in METHODS]
        std = [results[m][metric][1] for m in METHODS]
        ax.bar(x + (j - 1) * width, mean, width, yerr=std, capsize=2, label=names[metric])
    ax.set_xticks(x, METHODS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out questions")
    ax.set_title(
        f"Reranker training objectives, two-hop task (n_docs={results['n_docs']}, k={k}, "
        f"mean ± std over {results['seeds']} seeds)",
        fontsize=10,
    )
    ax.legend(loc="upper center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (under a minute)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the task, reader and runs")
    parser.add_argument("--seeds", type=int, default=None, help="reranker seeds (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="write results.json and a PNG")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    if args.seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=args.seeds)

    print(
        f"Two-hop retrieval: each question (x, r, a) has {cfg.n_docs} documents; the reader needs\n"
        f"the bridge document 'x r y' (no answer in it) AND the answer document 'y a v'.\n"
        f"A reranker picks k={cfg.k} documents; it is trained {cfg.reranker_steps} steps with "
        f"each objective ({cfg.seeds} seeds)\nand evaluated on {cfg.n_test} unseen questions.\n"
    )
    results = run(cfg, seed=args.seed, progress=not args.no_progress)

    print("\nFrozen reader, exact match on test questions given:")
    for name, acc in results["reader_accuracy"].items():
        print(f"  {name:<20} {acc:.3f}")
    print(f"\nReranker top-{cfg.k} on test questions (mean ± std over {cfg.seeds} seeds):\n")
    print(format_table(results))
    print(
        f"\nbridge/answer R@{cfg.k}: share of questions whose bridge/answer document is in the "
        f"reranker's top {cfg.k};\nreader EM: share answered exactly when the reader sees only "
        f"those {cfg.k} documents."
    )
    g, e = results["grerank"]["recall_bridge"][0], results["emdr"]["recall_bridge"][0]
    print(
        f"\nBridge documents (useful only together with the answer document) are in the top-"
        f"{cfg.k}\nfor {100 * g:.1f}% of questions with G-Rerank vs {100 * e:.1f}% with EMDR² "
        f"({100 * (g - e):+.1f} points).  [{results['seconds']:.0f} s]"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        save_figure(results, args.out / "gumbel_reranking.png")
        print(f"Wrote {args.out / 'results.json'} and {args.out / 'gumbel_reranking.png'}")
    return results


if __name__ == "__main__":
    main()
