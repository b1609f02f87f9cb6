"""The bad-input table: one row per (public function, kind of misuse).

Every row checks the exact exception type and that the message names the public function and
the argument (and, where it helps, what was expected and what came). No misuse may surface as an
error from inside jax or XLA, whose message names neither. The generic kinds (wrong rank, bad
axis, bad ``k``, non-floating input, mismatched ``where``, bad concrete temperature, unknown method
or option, bad key, non-array input) are generated for every public function that has the
argument; function-specific misuse follows as explicit rows (method options, kernels called
directly, the Flax adapters). This is the one table of the suite's error messages: a test that
checks a misuse's exception belongs here as a row; a fragment may be a compiled pattern where
the order of the parts matters.

Decisions recorded here: nested lists are accepted wherever an array is (as ``jnp`` functions
accept them); ``None`` and strings raise ``TypeError``. The metrics clip a ``k`` above the list
length to it (documented), so ``k > n`` is only an error for the operators that select ``k``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rank_relax_jax import (
    _sort,
    attention,
    gumbel,
    losses,
    methods,
    metrics,
    quantile,
    ranking,
    topk,
)
from rank_relax_jax.methods import isotonic

X = jnp.array([[0.3, 1.0, -2.0], [1.0, 2.0, 3.0]])
Y = jnp.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
KEY = jax.random.key(0)
NAN = float("nan")


@dataclasses.dataclass(frozen=True)
class Fn:
    """A public function and the arguments it has, for generating rows."""

    fn: Callable
    x: str = "x"  # name of the ranked array argument
    labels: bool = False
    key: bool = False
    k: str | None = None  # "select" (1..n, an error above n) or "metric" (k >= 1, clipped)
    temperature: tuple[str, ...] = ()
    method: bool = False
    axis: bool = True

    @property
    def name(self) -> str:
        return self.fn.__name__

    def __call__(self, x=X, *, key=KEY, k=1, drop=(), **kw):
        args = {self.x: x}
        if self.labels:
            args["labels"] = Y if np.shape(x) == X.shape else x
        if self.key:
            args["key"] = key
        if self.k is not None:
            args["k"] = k
        if self.name == "perturbed_topk_mask":
            args["num_samples"] = 4
        args.update(kw)
        for name in drop:
            del args[name]
        return self.fn(**args)


SOFT = ("temperature",)
FNS = [
    Fn(ranking.soft_rank, temperature=SOFT, method=True),
    Fn(ranking.soft_sort, temperature=SOFT, method=True),
    Fn(ranking.soft_permutation, temperature=SOFT, method=True),
    Fn(ranking.rank),
    Fn(topk.topk_mask, k="select"),
    Fn(topk.soft_topk_mask, k="select", temperature=SOFT, method=True),
    Fn(gumbel.gumbel_softmax, x="logits", key=True, temperature=("temperature", "scale")),
    Fn(
        gumbel.relaxed_topk_gumbel,
        x="scores",
        key=True,
        k="select",
        temperature=("temperature", "scale"),
    ),
    Fn(
        gumbel.relaxed_topk_gumbel_log,
        x="scores",
        key=True,
        k="select",
        temperature=("temperature", "scale"),
    ),
    Fn(
        gumbel.relaxed_subset_sample,
        x="scores",
        key=True,
        k="select",
        temperature=("temperature", "scale"),
    ),
    Fn(gumbel.gumbel_topk, x="scores", key=True, k="select", temperature=("scale",)),
    Fn(
        gumbel.gumbel_attention_mask,
        x="reranker_scores",
        key=True,
        k="select",
        temperature=("temperature", "scale"),
        method=True,
        axis=False,
    ),
    Fn(gumbel.perturbed_topk_mask, key=True, k="select", temperature=("sigma",)),
    Fn(losses.spearman_loss, x="scores", labels=True, temperature=SOFT, method=True),
    Fn(
        losses.ndcg_loss,
        x="scores",
        labels=True,
        k="metric",
        temperature=("temperature", "cutoff_temperature"),
        method=True,
    ),
    Fn(losses.listmle_loss, x="scores", labels=True),
    Fn(losses.listnet_loss, x="scores", labels=True),
    Fn(losses.pairwise_logistic_loss, x="scores", labels=True),
    Fn(metrics.ndcg, x="scores", labels=True, k="metric"),
    Fn(metrics.recall_at_k, x="scores", labels=True, k="metric"),
    Fn(metrics.precision_at_k, x="scores", labels=True, k="metric"),
    Fn(metrics.mrr, x="scores", labels=True, k="metric"),
    Fn(metrics.average_precision, x="scores", labels=True),
    Fn(metrics.spearman, x="scores", labels=True),
    Fn(metrics.kendall_tau, x="scores", labels=True),
]


def _generated_rows():
    """(id, call, exception, fragments) for every generic kind of misuse each function has."""
    rows = []

    def add(f, kind, call, exc, *fragments, python=False):
        # Our messages start "fn: ..."; Python's own (unknown keyword, missing argument) "fn()".
        who = f"{f.name}()" if python else f"{f.name}:"
        rows.append(pytest.param(call, exc, [who, *fragments], id=f"{f.name}-{kind}"))

    for f in FNS:
        x = f"`{f.x}`"
        add(f, "rank0", lambda f=f: f(jnp.float32(1.0)), ValueError, x, "scalar")
        if f.axis:
            add(f, "axis-out-of-range", lambda f=f: f(axis=2), ValueError, "`axis`", "got 2")
            add(f, "axis-negative", lambda f=f: f(axis=-3), ValueError, "`axis`", "got -3")
            add(f, "axis-float", lambda f=f: f(axis=1.0), TypeError, "`axis`", "int")
        else:
            add(
                f,
                "axis",
                lambda f=f: f(axis=0),
                TypeError,
                "unexpected keyword",
                "'axis'",
                python=True,
            )
        for dtype in (jnp.int32, jnp.bool_, jnp.complex64):
            name = jnp.dtype(dtype).name
            add(
                f,
                f"dtype-{name}",
                lambda f=f, d=dtype: f(X.astype(d)),
                TypeError,
                x,
                "floating",
                name,
            )
        add(
            f,
            "where-shape",
            lambda f=f: f(where=jnp.ones((2,), bool)),
            ValueError,
            "`where`",
            "(2,)",
            "(2, 3)",
        )
        add(
            f, "where-dtype", lambda f=f: f(where=jnp.ones((2, 3))), TypeError, "`where`", "boolean"
        )
        add(f, "where-str", lambda f=f: f(where="all"), TypeError, "`where`", "array")
        for t in f.temperature:
            for bad in (0.0, -1.0, NAN):
                add(
                    f,
                    f"{t}={bad}",
                    lambda f=f, t=t, b=bad: f(**{t: b}),
                    ValueError,
                    f"`{t}`",
                    "positive",
                )
            add(
                f,
                f"{t}-vector",
                lambda f=f, t=t: f(**{t: jnp.ones(2)}),
                ValueError,
                f"`{t}`",
                "scalar",
            )
            add(f, f"{t}-str", lambda f=f, t=t: f(**{t: "hot"}), TypeError, f"`{t}`", "real")
        if f.method:
            add(
                f,
                "method-unknown",
                lambda f=f: f(method="bogus"),
                ValueError,
                "`method`",
                "'bogus'",
                "must be one of",
            )
        if f.k == "select":
            for bad in (0, -1, 4):
                add(
                    f,
                    f"k={bad}",
                    lambda f=f, b=bad: f(k=b),
                    ValueError,
                    "`k`",
                    "1..3",
                    f"got {bad}",
                )
            add(f, "k-float", lambda f=f: f(k=1.5), TypeError, "`k`", "static")
        elif f.k == "metric":
            for bad in (0, -1):
                add(f, f"k={bad}", lambda f=f, b=bad: f(k=b), ValueError, "`k`", "positive")
            add(f, "k-float", lambda f=f: f(k=1.5), TypeError, "`k`", "static")
        if f.key:
            batched = (jax.random.split(KEY, 2), jax.random.split(jax.random.PRNGKey(0), 2))
            for i, keys in enumerate(batched):
                add(
                    f,
                    f"key-batched{i}",
                    lambda f=f, ks=keys: f(key=ks),
                    ValueError,
                    "`key`",
                    "vmap",
                )
                # Under jit the check still runs at trace time, on the key's shape.
                add(
                    f,
                    f"key-batched-jit{i}",
                    lambda f=f, ks=keys: jax.jit(lambda k: f(key=k))(ks),
                    ValueError,
                    "`key`",
                    "vmap",
                )
            for label, bad in [
                ("float", 1.5),
                ("int", 3),
                ("None", None),
                ("array", X),
                ("uint32-shape3", jnp.zeros(3, jnp.uint32)),
            ]:
                add(
                    f,
                    f"key-{label}",
                    lambda f=f, b=bad: f(key=b),
                    TypeError,
                    "`key`",
                    "jax.random.key",
                )
            add(
                f,
                "key-missing",
                lambda f=f: f(drop=("key",)),
                TypeError,
                "missing",
                "'key'",
                python=True,
            )
        # Unknown keyword option: the registry's message for the soft ops, Python's otherwise.
        registry = f.method and f.name.startswith("soft_")
        add(
            f,
            "option-unknown",
            lambda f=f: f(bogus=1),
            TypeError,
            "unexpected keyword",
            "`bogus`" if registry else "'bogus'",
            python=not registry,
        )
        add(f, "x-None", lambda f=f: f(None), TypeError, x, "must be an array", "NoneType")
        add(f, "x-str", lambda f=f: f("abc"), TypeError, x, "must be an array", "str")
        if f.labels:
            add(f, "labels-None", lambda f=f: f(labels=None), TypeError, "`labels`", "NoneType")
            add(f, "labels-shape", lambda f=f: f(labels=Y[:, :2]), ValueError, "`labels`", "shape")
            add(
                f,
                "labels-complex",
                lambda f=f: f(labels=Y.astype(jnp.complex64)),
                TypeError,
                "`labels`",
                "real",
            )
    return rows


def _qkv(heads=2, kv_heads=None, kv_len=5):
    kv_heads = heads if kv_heads is None else kv_heads
    q = jnp.zeros((1, 3, heads, 4))
    k = jnp.zeros((1, kv_len, kv_heads, 4))
    return q, k, k


IDS = jnp.array([[-1, 0, 0, 1, 1]])
DM = jnp.ones((1, 2))

SPECIFIC = [
    # (id, call, exception, fragments)
    (
        "soft_sort-method-of-another-op",
        lambda: ranking.soft_sort(X, method="sigmoid"),
        ValueError,
        ["soft_sort:", "`method`", "'neuralsort'"],
    ),
    (
        "soft_permutation-method-of-another-op",
        lambda: ranking.soft_permutation(X, method="isotonic"),
        ValueError,
        ["soft_permutation:", "`method`"],
    ),
    (
        "soft_rank-option-of-another-method",
        lambda: ranking.soft_rank(X, method="sigmoid", regularization="kl"),
        ValueError,
        ["soft_rank:", "`regularization`", "'isotonic'"],
    ),
    (
        "soft_rank-option-bad-choice",
        lambda: ranking.soft_rank(X, regularization="l1"),
        ValueError,
        ["soft_rank:", "`regularization`", "'kl'"],
    ),
    (
        "soft_topk_mask-option-bad-choice",
        lambda: topk.soft_topk_mask(X, 1, regularization="entropy"),
        ValueError,
        ["soft_topk_mask:", "`regularization`"],
    ),
    (
        "soft_rank-method-None",
        lambda: ranking.soft_rank(X, method=None),
        ValueError,
        ["soft_rank:", "`method`", "None"],
    ),
    (
        "rank-ties",
        lambda: ranking.rank(X, ties="random"),
        ValueError,
        ["rank:", "`ties`", "'dense'"],
    ),
    (
        "topk_mask-empty-axis",
        lambda: topk.topk_mask(jnp.zeros((2, 0)), 1),
        ValueError,
        ["topk_mask:", "`k`", "1..0"],
    ),
    # Lists shorter than k, for every top-k method (the contract's empty lists).
    (
        "topk_mask-empty-axis-k2",
        lambda: topk.topk_mask(jnp.zeros((3, 0)), 2),
        ValueError,
        ["topk_mask:", "argument `k` must be in", "1..0"],
    ),
    *[
        (
            f"soft_topk_mask-empty-axis-{method}",
            lambda m=method: topk.soft_topk_mask(jnp.zeros((3, 0)), 2, method=m),
            ValueError,
            ["soft_topk_mask:", "argument `k` must be in", "1..0"],
        )
        for method in methods.methods("topk")
    ],
    # Method options, validated by the registry.
    (
        "soft_sort-network-unknown",
        lambda: ranking.soft_sort(X, method="network", network="bubble"),
        ValueError,
        ["soft_sort:", "`network`", "must be one of", "'bubble'"],
    ),
    (
        "soft_rank-network-sigmoid-unknown",
        lambda: ranking.soft_rank(X, method="network", sigmoid="tanh"),
        ValueError,
        ["soft_rank:", "`sigmoid`", "must be one of", "'tanh'"],
    ),
    (
        "soft_rank-network-option-of-another-method",
        lambda: ranking.soft_rank(X, method="isotonic", network="bitonic"),
        ValueError,
        ["soft_rank:", "`network`", "does not apply", "'network'"],
    ),
    (
        "soft_rank-sinkhorn-squash-unknown",
        lambda: ranking.soft_rank(X, method="sinkhorn", squash="tanh"),
        ValueError,
        ["soft_rank:", "`squash` must be one of", "'tanh'"],
    ),
    (
        "soft_rank-sinkhorn-num_iterations-0",
        lambda: ranking.soft_rank(X, method="sinkhorn", num_iterations=0),
        ValueError,
        ["soft_rank:", "`num_iterations` must be a positive int", "got 0"],
    ),
    (
        "soft_sort-sinkhorn-threshold-negative",
        lambda: ranking.soft_sort(X, method="sinkhorn", threshold=-1.0),
        ValueError,
        ["soft_sort:", "`threshold` must be finite and >= 0", "-1.0"],
    ),
    (
        "soft_rank-sinkhorn-option-of-another-method",
        lambda: ranking.soft_rank(X, threshold=1e-3),
        ValueError,
        ["soft_rank:", "`threshold`", "does not apply to method='isotonic'"],
    ),
    (
        "soft_rank-standardize-str",
        lambda: ranking.soft_rank(X, standardize="yes"),
        TypeError,
        ["soft_rank:", "`standardize`", "bool", "'yes'"],
    ),
    # A kernel called directly names its method family.
    (
        "isotonic_rank-regularization",
        lambda: isotonic.isotonic_rank(
            jnp.zeros((3,)), None, jnp.asarray(1.0), descending=False, regularization="entropy"
        ),
        ValueError,
        ["isotonic:", "`regularization`", "'entropy'"],
    ),
    (
        "forced_path-path",
        lambda: _sort.forced_path("radix").__enter__(),
        ValueError,
        ["forced_path:", "`path`", "'radix'"],
    ),
    # soft_quantile
    *[
        (
            f"soft_quantile-q={bad}",
            lambda b=bad: quantile.soft_quantile(jnp.arange(5.0), b),
            ValueError,
            ["soft_quantile: argument `q` must be in [0, 1]"],
        )
        for bad in (1.5, -0.1, [0.2, 1.01])
    ],
    (
        "soft_quantile-q-2d",
        lambda: quantile.soft_quantile(jnp.arange(5.0), [[0.5]]),
        ValueError,
        ["soft_quantile: argument `q` must be a scalar or a 1-D"],
    ),
    (
        "soft_quantile-method-of-another-op",
        lambda: quantile.soft_quantile(jnp.arange(5.0), 0.5, method="sigmoid"),
        ValueError,
        ["soft_quantile: argument `method`", "'sigmoid'"],
    ),
    (
        "topk_mask-k-traced",
        lambda: jax.jit(lambda k: topk.topk_mask(X, k))(1),
        TypeError,
        ["topk_mask:", "`k`", "static"],
    ),
    (
        "relaxed_topk_gumbel-num_samples-0",
        lambda: gumbel.relaxed_topk_gumbel(KEY, X, 2, num_samples=0),
        ValueError,
        ["relaxed_topk_gumbel:", "`num_samples`"],
    ),
    (
        "relaxed_topk_gumbel-num_samples-float",
        lambda: gumbel.relaxed_topk_gumbel(KEY, X, 2, num_samples=1.5),
        TypeError,
        ["relaxed_topk_gumbel:", "`num_samples`"],
    ),
    (
        "perturbed_topk_mask-num_samples-0",
        lambda: gumbel.perturbed_topk_mask(KEY, X, 2, num_samples=0),
        ValueError,
        ["perturbed_topk_mask:", "`num_samples`"],
    ),
    (
        "perturbed_topk_mask-noise",
        lambda: gumbel.perturbed_topk_mask(KEY, X, 2, noise="uniform"),
        ValueError,
        ["perturbed_topk_mask:", "`noise`", "'normal'"],
    ),
    (
        "gumbel_attention_mask-method",
        lambda: gumbel.gumbel_attention_mask(KEY, X, 2, method="sum"),
        ValueError,
        ["gumbel_attention_mask:", "`method`", "'subset'"],
    ),
    (
        "listmle_loss-reduce",
        lambda: losses.listmle_loss(X, Y, reduce="avg"),
        ValueError,
        ["listmle_loss:", "`reduce`", "'mean'"],
    ),
    (
        "ndcg_loss-gain",
        lambda: losses.ndcg_loss(X, Y, gain="log"),
        ValueError,
        ["ndcg_loss:", "`gain`", "'exp2'"],
    ),
    (
        "ndcg_loss-negative-labels",
        lambda: losses.ndcg_loss(X, -Y),
        ValueError,
        ["ndcg_loss:", "`labels`", "non-negative", "where"],
    ),
    (
        "ndcg-negative-labels",
        lambda: metrics.ndcg(X, -Y),
        ValueError,
        ["ndcg:", "`labels`", "non-negative", "where"],
    ),
    # One list with a negative label among valid ones is enough.
    *[
        (
            f"{fn.__name__}-negative-labels-one-list",
            lambda fn=fn: fn(
                jnp.array([[0.3, 1.0, 2.0], [1.0, 2.0, 3.0]]),
                jnp.array([[-1.0, -2.0, -1.0], [1.0, 0.0, 2.0]]),
            ),
            ValueError,
            [re.compile(rf"{fn.__name__}: argument `labels`.*non-negative.*where")],
        )
        for fn in (losses.ndcg_loss, metrics.ndcg)
    ],
    ("ndcg-gain", lambda: metrics.ndcg(X, Y, gain="log"), ValueError, ["ndcg:", "`gain`"]),
    (
        "recall_at_k-k-None",
        lambda: metrics.recall_at_k(X, Y, None),
        TypeError,
        ["recall_at_k:", "`k`"],
    ),
    (
        "pairwise_logistic_loss-temperature",
        lambda: losses.pairwise_logistic_loss(X, Y, temperature=1.0),
        TypeError,
        ["pairwise_logistic_loss", "'temperature'"],
    ),
    # attention
    (
        "doc_mask_to_tokens-ids-float",
        lambda: attention.doc_mask_to_tokens(jnp.ones(3), jnp.zeros(3)),
        TypeError,
        ["doc_mask_to_tokens:", "`segment_ids`", "integer"],
    ),
    (
        "doc_mask_to_tokens-values-int",
        lambda: attention.doc_mask_to_tokens(jnp.ones(3, int), jnp.zeros(3, int)),
        TypeError,
        ["doc_mask_to_tokens:", "`doc_values`", "floating"],
    ),
    (
        "doc_mask_to_tokens-values-None",
        lambda: attention.doc_mask_to_tokens(None, IDS),
        TypeError,
        ["doc_mask_to_tokens:", "`doc_values`", "NoneType"],
    ),
    (
        "doc_mask_to_tokens-values-rank0",
        lambda: attention.doc_mask_to_tokens(jnp.float32(1), IDS),
        ValueError,
        ["doc_mask_to_tokens:", "`doc_values`", "n_docs"],
    ),
    (
        "doc_mask_to_tokens-ids-str",
        lambda: attention.doc_mask_to_tokens(DM, "abc"),
        TypeError,
        ["doc_mask_to_tokens:", "`segment_ids`", "array"],
    ),
    (
        "doc_mask_to_tokens-ids-rank0",
        lambda: attention.doc_mask_to_tokens(DM, jnp.int32(0)),
        ValueError,
        ["doc_mask_to_tokens:", "`segment_ids`", "scalar"],
    ),
    (
        "doc_mask_to_tokens-batch",
        lambda: attention.doc_mask_to_tokens(jnp.ones((2, 3)), jnp.zeros((3, 5), int)),
        ValueError,
        ["doc_mask_to_tokens:", "`doc_values`", "`segment_ids`", "broadcast"],
    ),
    (
        "attention_bias-both",
        lambda: attention.attention_bias(jnp.ones(3), jnp.zeros(3, int), log_doc_mask=jnp.zeros(3)),
        ValueError,
        ["attention_bias:", "`doc_mask`", "`log_doc_mask`", "both"],
    ),
    (
        "attention_bias-neither",
        lambda: attention.attention_bias(None, IDS),
        ValueError,
        ["attention_bias:", "`doc_mask`", "`log_doc_mask`", "neither"],
    ),
    (
        "attention_bias-ids-missing",
        lambda: attention.attention_bias(DM),
        TypeError,
        ["attention_bias:", "`segment_ids`", "required"],
    ),
    (
        "attention_bias-doc_mask-int",
        lambda: attention.attention_bias(jnp.ones(2, int), IDS),
        TypeError,
        ["attention_bias:", "`doc_mask`", "floating"],
    ),
    (
        "attention_bias-doc_mask-str",
        lambda: attention.attention_bias("a", IDS),
        TypeError,
        ["attention_bias:", "`doc_mask`", "array"],
    ),
    (
        "attention_bias-log_doc_mask-int",
        lambda: attention.attention_bias(log_doc_mask=jnp.ones(2, int), segment_ids=IDS),
        TypeError,
        ["attention_bias:", "`log_doc_mask`", "floating"],
    ),
    (
        "attention_bias-dtype-int",
        lambda: attention.attention_bias(DM, IDS, dtype=jnp.int32),
        TypeError,
        ["attention_bias:", "`dtype`", "floating"],
    ),
    (
        "combine_bias_and_mask-bias-int",
        lambda: attention.combine_bias_and_mask(jnp.ones(3, int)),
        TypeError,
        ["combine_bias_and_mask:", "`bias`", "floating"],
    ),
    (
        "combine_bias_and_mask-mask-float",
        lambda: attention.combine_bias_and_mask(None, jnp.ones(3)),
        TypeError,
        ["combine_bias_and_mask:", "mask argument 0", "boolean"],
    ),
    (
        "combine_bias_and_mask-mask-str",
        lambda: attention.combine_bias_and_mask(None, "abc"),
        TypeError,
        ["combine_bias_and_mask:", "`masks[0]`", "array"],
    ),
    (
        "combine_bias_and_mask-shapes",
        lambda: attention.combine_bias_and_mask(jnp.zeros(3), jnp.ones(4, bool)),
        ValueError,
        ["combine_bias_and_mask:", "broadcast"],
    ),
    (
        "combine_bias_and_mask-dtype",
        lambda: attention.combine_bias_and_mask(None, jnp.ones(3, bool), dtype="int8"),
        TypeError,
        ["combine_bias_and_mask:", "`dtype`"],
    ),
    (
        "dma_attention-heads",
        lambda: attention.dma_attention(*_qkv(heads=3, kv_heads=2), doc_mask=DM, segment_ids=IDS),
        ValueError,
        ["dma_attention:", "heads"],
    ),
    (
        "dma_attention-rank",
        lambda: attention.dma_attention(*(a[0, 0] for a in _qkv()), doc_mask=DM, segment_ids=IDS),
        ValueError,
        ["dma_attention:", "`query`", "rank"],
    ),
    (
        "dma_attention-query-int",
        lambda: attention.dma_attention(
            *(a.astype(int) for a in _qkv()), doc_mask=DM, segment_ids=IDS
        ),
        TypeError,
        ["dma_attention:", "`query`", "floating"],
    ),
    (
        "dma_attention-query-None",
        lambda: attention.dma_attention(None, *_qkv()[1:], doc_mask=DM, segment_ids=IDS),
        TypeError,
        ["dma_attention:", "`query`", "NoneType"],
    ),
    (
        "dma_attention-value-shape",
        lambda: attention.dma_attention(
            *_qkv()[:2], _qkv(kv_len=4)[2], doc_mask=DM, segment_ids=IDS
        ),
        ValueError,
        ["dma_attention:", "`value`", "`key`"],
    ),
    (
        "dma_attention-doc_mask-None",
        lambda: attention.dma_attention(*_qkv(), doc_mask=None, segment_ids=IDS),
        TypeError,
        ["dma_attention:", "`doc_mask`", "NoneType"],
    ),
    (
        "dma_attention-doc_mask-int",
        lambda: attention.dma_attention(*_qkv(), doc_mask=DM.astype(int), segment_ids=IDS),
        TypeError,
        ["dma_attention:", "`doc_mask`", "floating"],
    ),
    (
        "dma_attention-ids-None",
        lambda: attention.dma_attention(*_qkv(), doc_mask=DM, segment_ids=None),
        TypeError,
        ["dma_attention:", "`segment_ids`", "required"],
    ),
    (
        "dma_attention-ids-kv_len",
        lambda: attention.dma_attention(*_qkv(), doc_mask=DM, segment_ids=IDS[:, :4]),
        ValueError,
        ["dma_attention:", "`segment_ids`", "kv_len"],
    ),
    (
        "dma_attention-mask-shape",
        lambda: attention.dma_attention(
            *_qkv(), doc_mask=DM, segment_ids=IDS, mask=jnp.ones((3, 3, 11), bool)
        ),
        ValueError,
        ["dma_attention:", "`mask`", "broadcastable"],
    ),
    (
        "dma_attention-mask-float",
        lambda: attention.dma_attention(
            *_qkv(), doc_mask=DM, segment_ids=IDS, mask=jnp.ones((3, 5))
        ),
        TypeError,
        ["dma_attention:", "`mask`", "boolean"],
    ),
    (
        "dma_attention-bias-int",
        lambda: attention.dma_attention(
            *_qkv(), doc_mask=DM, segment_ids=IDS, bias=jnp.ones((3, 5), int)
        ),
        TypeError,
        ["dma_attention:", "`bias`", "floating"],
    ),
    (
        "dma_attention-doc_mask-batch",
        lambda: attention.dma_attention(*_qkv(), doc_mask=jnp.ones((3, 2)), segment_ids=IDS),
        ValueError,
        ["dma_attention:", "`doc_mask/segment_ids`", "broadcastable"],
    ),
    (
        "dma_attention_weights-query-None",
        lambda: attention.dma_attention_weights(None, _qkv()[1], doc_mask=DM, segment_ids=IDS),
        TypeError,
        ["dma_attention_weights:", "`query`"],
    ),
    (
        "make_flax_attention_fn-additive-without-flax",
        lambda: _without_flax(
            lambda: attention.make_flax_attention_fn(jnp.ones((2, 4)), IDS, form="additive")
        ),
        ModuleNotFoundError,
        ["make_flax_attention_fn", "form='additive'", re.compile(r"rank-relax-jax\[flax\]")],
    ),
    (
        "make_flax_attention_fn-form",
        lambda: attention.make_flax_attention_fn(jnp.ones(2), jnp.zeros(2, int), form="sum"),
        ValueError,
        ["make_flax_attention_fn:", "`form`", "'additive'"],
    ),
    (
        "make_flax_attention_fn-log-multiplicative",
        lambda: attention.make_flax_attention_fn(
            log_doc_mask=jnp.ones(2), segment_ids=jnp.zeros(2, int)
        ),
        ValueError,
        ["make_flax_attention_fn:", "doc_mask", "additive"],
    ),
]


def _without_flax(call):
    """``call()`` while ``import flax`` raises, as on an install without the extra."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [m for m in sys.modules if m == "flax" or m.startswith("flax.")]:
            patch.delitem(sys.modules, name)
        patch.setitem(sys.modules, "flax", None)
        return call()


def _flax_call(mask=None, *, built_with=None):
    """A per-call Flax adapter applied to [2, 3, 4, 8] queries over 11 keys."""
    q, k = jnp.zeros((2, 3, 4, 8)), jnp.zeros((2, 11, 4, 8))
    fn = attention.make_flax_attention_fn(*(built_with or ()))
    return fn(q, k, k) if mask is None else fn(q, k, k, mask=mask)


FLAX_IDS = jnp.zeros((2, 11), int)
_needs_flax = pytest.mark.skipif(
    importlib.util.find_spec("flax") is None, reason="flax not installed: pip install -e '.[flax]'"
)
FLAX_SPECIFIC = [
    (
        "make_flax_attention_fn-call-without-mask",
        lambda: _flax_call(),
        ValueError,
        [re.compile(r"make_flax_attention_fn.*DocumentMask")],
    ),
    (
        "make_flax_attention_fn-call-second-mask",
        lambda: _flax_call(
            attention.DocumentMask(jnp.ones((2, 4)), FLAX_IDS),
            built_with=(jnp.ones((2, 4)), FLAX_IDS),
        ),
        ValueError,
        ["make_flax_attention_fn:", re.compile(r"built with a document mask.*DocumentMask")],
    ),
    (
        "make_flax_attention_fn-call-log-mask-multiplicative",
        lambda: _flax_call(
            attention.DocumentMask(log_doc_mask=jnp.zeros((2, 4)), segment_ids=FLAX_IDS)
        ),
        ValueError,
        ["make_flax_attention_fn:", re.compile(r"multiplicative.*doc_mask")],
    ),
    (
        "make_flax_attention_fn-call-ids-missing",
        lambda: _flax_call(attention.DocumentMask(jnp.ones((2, 4)))),
        TypeError,
        ["make_flax_attention_fn:", "`segment_ids`", "required"],
    ),
]

ROWS = (
    _generated_rows()
    + [pytest.param(call, exc, fragments, id=name) for name, call, exc, fragments in SPECIFIC]
    + [
        pytest.param(call, exc, fragments, id=name, marks=_needs_flax)
        for name, call, exc, fragments in FLAX_SPECIFIC
    ]
)


@pytest.mark.parametrize("call, exc, fragments", ROWS)
def test_misuse_raises_a_clear_error(call, exc, fragments):
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value) is exc, (type(info.value), str(info.value))
    message = str(info.value)
    for fragment in fragments:  # a string it contains, or a pattern it matches
        found = (
            fragment.search(message) if isinstance(fragment, re.Pattern) else fragment in message
        )
        assert found, (fragment, message)


def test_table_covers_every_public_function():
    public = {
        name
        for mod in (ranking, topk, gumbel, losses, metrics)
        for name, obj in vars(mod).items()
        if inspect.isfunction(obj)
        and obj.__module__ == mod.__name__
        and name in getattr(mod, "__all__", [n for n in vars(mod) if not n.startswith("_")])
    }
    assert public <= {f.name for f in FNS}, public - {f.name for f in FNS}
    covered = {row.id.split("-")[0] for row in ROWS}
    assert set(attention.__all__) - {"DocumentMask"} <= covered


def test_metric_k_above_the_list_length_is_clipped_not_an_error():
    np.testing.assert_array_equal(metrics.precision_at_k(X, Y, 4), metrics.precision_at_k(X, Y, 3))


# Every public function converts its arrays through _checks.as_array; one per module suffices.
LIST_FNS = [
    f for f in FNS if f.name in {"soft_rank", "topk_mask", "gumbel_topk", "listnet_loss", "ndcg"}
]


@pytest.mark.parametrize("f", LIST_FNS, ids=lambda f: f.name)
def test_nested_lists_are_accepted_like_arrays(f):
    # As in jnp functions: a list means jnp.asarray(list) (float64 when x64 is enabled).
    out = f(X.tolist(), where=[[True, False, True]] * 2)
    ref = f(jnp.asarray(X.tolist()), where=jnp.array([[True, False, True]] * 2))
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_traced_temperature_is_accepted_without_inspection():
    f = jax.jit(lambda t: topk.soft_topk_mask(X, 1, method="sigmoid", temperature=t))
    assert f(0.5).shape == X.shape


def test_traced_non_positive_options_give_nan_in_samplers_and_losses():
    # Every positive option that may be traced (temperature, scale, sigma, cutoff_temperature)
    # turns a traced value <= 0 into NaN outputs instead of a silently wrong result.
    x = jnp.array([0.3, -1.2, 2.5, 0.9])
    y = jnp.array([1.0, 0.0, 2.0, 1.0])
    key = jax.random.key(0)
    calls = {
        "gumbel_softmax temperature": lambda t: gumbel.gumbel_softmax(key, x, temperature=t),
        "gumbel_softmax scale": lambda t: gumbel.gumbel_softmax(key, x, scale=t),
        "relaxed_topk_gumbel": lambda t: gumbel.relaxed_topk_gumbel(key, x, 2, temperature=t),
        "relaxed_topk_gumbel_log": lambda t: gumbel.relaxed_topk_gumbel_log(
            key, x, 2, temperature=t
        ),
        "relaxed_subset_sample": lambda t: gumbel.relaxed_subset_sample(key, x, 2, temperature=t),
        "gumbel_topk scale": lambda t: gumbel.gumbel_topk(key, x, 2, scale=t).mask,
        "gumbel_attention_mask": lambda t: gumbel.gumbel_attention_mask(key, x, 2, temperature=t),
        "perturbed_topk_mask sigma": lambda t: gumbel.perturbed_topk_mask(
            key, x, 2, sigma=t, num_samples=8
        ),
        "spearman_loss": lambda t: losses.spearman_loss(x, y, temperature=t),
        "ndcg_loss": lambda t: losses.ndcg_loss(x, y, temperature=t),
        "ndcg_loss cutoff": lambda t: losses.ndcg_loss(x, y, k=2, cutoff_temperature=t),
    }
    for name, call in calls.items():
        for t in (-1.0, 0.0):
            out = jax.jit(call)(t)
            assert bool(jnp.all(jnp.isnan(out))), (name, t, out)
        assert bool(jnp.all(jnp.isfinite(jax.jit(call)(0.5)))), name


def test_readme_negative_temperature_example_is_nan_not_wrong_ranks():
    # The newcomer's case: true ranks [2, 1, 4, 3], a traced temperature of -1 gave
    # [2.8, 4.0, 1.0, 2.2] with no sign of trouble.
    scores = jnp.array([0.3, -1.2, 2.5, 0.9])
    out = jax.jit(lambda t: ranking.soft_rank(scores, temperature=t))(-1.0)
    assert bool(jnp.all(jnp.isnan(out)))
