"""The op records of the contract harness (``test_contract.py``, ``test_contract_limits.py``).

Every public op that works along one axis of a list is described once by an ``Op`` record, and
every family registers its records here:

* ranking: each registered (operation, method) pair of the kernel registry (``tests/_cases.py``)
  with its default options, each non-default option choice as a *variant*, and the exact ops;
* samplers (``gumbel``): they take a ``key``;
* losses: ``(scores, labels)`` reduced over the list axis (checked with ``reduce="none"``, one
  value per list);
* metrics: ``(scores, labels)`` reduced over the list axis, exact (zero gradient).

A ``Family`` record says how the family's inputs are made and which shapes and tolerances the
checks use; an ``Op`` record names the checks it is registered for (``checks``, ``dtypes``). The
plumbing checks of ``test_contract.py`` (jit, vmap, axis, masked == filtered, padding and fully
masked rows) and the size and precision limits of ``test_contract_limits.py`` (empty inputs,
degenerate lists, dtypes) run over every registered op; the other limits (finite differences,
hard limit, retracing, traced temperatures) over the ranking ops. A family's own statistics and
definitions stay in its ``tests/test_<family>.py``.

Ranking variants share their method's plumbing (``axis``, ``vmap``, dtypes, empty inputs,
tracing), which the default case checks; a variant is checked where an option changes the
numbers: masked == filtered, padding and fully masked rows, finite differences and the hard limit.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _cases import SURROGATE_GRADIENT, case_id, cases, hard_limit_temperature

from rank_relax_jax import gumbel, losses, metrics, ranking, topk

K = 2

# The plumbing checks of test_contract.py.
JIT = "jit"  # jit == eager
VMAP = "vmap"  # vmap == batch (samplers: == per-row calls, the key is shared)
AXIS = "axis"  # axis=a == moveaxis + last axis, and the negative spelling of a
MASKED = "masked"  # masked == filtered, garbage in the padding
PADDING = "padding"  # padding and fully masked rows: fill value, finite, exactly zero gradient
EMPTY = "empty"  # empty lists and empty batches
DEGENERATE = "degenerate"  # lists of one item, constant labels, tied scores, all masked


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _distinct(shape, seed=0, dtype=np.float64, gap=0.3):
    """Random values whose sorted neighbours differ by at least ``gap`` in every row."""
    rng = np.random.default_rng(seed)
    n = shape[-1]
    base = np.arange(n) * gap + np.cumsum(rng.uniform(0, gap, size=shape), axis=-1)
    base = base - base.mean(axis=-1, keepdims=True)
    return rng.permuted(base, axis=-1).astype(dtype)


def _distinct_lists(shape, seed):
    return (_distinct(shape, seed),)


def _normal_lists(shape, seed):
    return (np.random.default_rng(seed).normal(size=shape),)


def _graded_lists(shape, seed):
    """Normal scores and graded labels 0..3 with ties (the losses)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.integers(0, 4, shape).astype(np.float64)


def _tied_lists(shape, seed):
    """Small integer-valued scores and labels, so ties are frequent in both (the metrics)."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 4, shape).astype(np.float64),
        rng.integers(0, 4, shape).astype(np.float64),
    )


def _ranking_dtype_tol(dtype):
    tol = {jnp.float64: 1e-12, jnp.float32: 1e-4}.get(dtype, 5e-2)
    return tol, tol * 8


def _sampler_dtype_tol(dtype):
    # Half precision is computed in float32 (the reference below); float64 is its own reference.
    return (0.0, 0.0) if dtype == jnp.float64 else (1e-2, 1e-2)


def _loss_dtype_tol(dtype):
    return 5e-2, 5e-2


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """How a family's inputs are made, and the shapes and tolerances its checks use.

    Shapes put the ranked axis last. ``masked_lengths`` gives the number of valid entries per
    row of the masked == filtered case (``None``: random, at least 3); they sit at random
    positions unless ``trailing``.
    """

    name: str
    data: Callable[[tuple[int, ...], int], tuple[np.ndarray, ...]]  # the list arrays
    jit_shape: tuple[int, ...]
    vmap_shape: tuple[int, ...]
    axis_shape: tuple[int, ...]
    axis: int  # where the axis check moves the ranked axis
    tol: dict[str, float]  # per check: jit, vmap, axis, masked
    masked_shape: tuple[int, ...]
    masked_lengths: tuple[int, ...] | None
    empty_shapes: tuple[tuple[int, ...], ...]
    dtype_shape: tuple[int, ...]
    dtype_tol: Callable[[object], tuple[float, float]]  # (rtol, atol)
    trailing: bool = False
    key: bool = False  # ops take a `key`
    compiled: bool = False  # the checks call the op jitted (one compile per shape)
    static: tuple[str, ...] = ("axis",)  # static arguments when compiled

    def lists(self, shape, seed):
        return tuple(jnp.asarray(a) for a in self.data(shape, seed))

    def reference_dtype(self, dtype):
        """The dtype whose run an output of ``dtype`` is compared with."""
        half = dtype in (jnp.bfloat16, jnp.float16)
        # A sampler's noise depends on the dtype it is drawn in: half is drawn in float32.
        return jnp.float32 if self.key and half else jnp.float64


RANKING = Family(
    "ranking",
    _distinct_lists,
    jit_shape=(3, 6),
    vmap_shape=(4, 7),
    axis_shape=(3, 2, 5),
    axis=1,
    tol={JIT: 1e-12, VMAP: 1e-10, AXIS: 1e-10, MASKED: 1e-9},
    masked_shape=(5, 8),
    masked_lengths=None,
    empty_shapes=((0, 6), (3, 0), (2, 0, 4)),
    dtype_shape=(2, 6),
    dtype_tol=_ranking_dtype_tol,
)
# Compilation dominates the samplers' checks: they run jitted and share the [3, 6] shape.
SAMPLER = Family(
    "sampler",
    _normal_lists,
    jit_shape=(3, 6),
    vmap_shape=(3, 6),
    axis_shape=(3, 6),
    axis=0,
    tol={JIT: 1e-12, VMAP: 1e-12, AXIS: 0.0, MASKED: 1e-12},
    # Exact equality needs the noise of the valid entries to line up with the noise a call on
    # the filtered list draws. JAX's (default) partitionable threefry makes the draws for shape
    # (n,) an extension of those for shape (m,), so padding placed *after* the valid entries of
    # a 1-D list gets noise of its own and the valid entries see exactly the filtered call's
    # noise. Padding at arbitrary positions is checked in distribution (test_gumbel.py,
    # test_gumbel_topk_with_padding_and_neg_inf_is_plackett_luce_on_the_rest).
    masked_shape=(1, 6),
    masked_lengths=(4,),
    trailing=True,
    empty_shapes=((3, 0), (0, 4)),
    dtype_shape=(3, 6),
    dtype_tol=_sampler_dtype_tol,
    key=True,
    compiled=True,
)
LOSS = Family(
    "loss",
    _graded_lists,
    jit_shape=(2, 3, 6),
    vmap_shape=(2, 3, 6),
    axis_shape=(2, 3, 6),
    axis=0,
    tol={JIT: 1e-12, VMAP: 1e-12, AXIS: 1e-12, MASKED: 1e-10},
    masked_shape=(4, 6),
    masked_lengths=(4, 1, 0, 4),  # two filtered shapes only: fewer compiles
    empty_shapes=((3, 0), (0, 4)),
    dtype_shape=(4, 6),
    dtype_tol=_loss_dtype_tol,
    compiled=True,
    static=("axis", "reduce"),
)
METRIC = Family(
    "metric",
    _tied_lists,
    jit_shape=(3, 4, 7),
    vmap_shape=(3, 4, 7),
    axis_shape=(3, 4, 7),
    axis=0,
    tol={JIT: 1e-12, VMAP: 1e-12, AXIS: 1e-12, MASKED: 1e-12},
    masked_shape=(12, 7),
    masked_lengths=(0, 2, 5, 7) * 3,  # few distinct filtered shapes, so few compiles
    empty_shapes=((3, 0), (0, 4)),
    dtype_shape=(2, 6),
    dtype_tol=_ranking_dtype_tol,
    compiled=True,
)


# ---------------------------------------------------------------------------------------------
# The op record
# ---------------------------------------------------------------------------------------------

PLUMBING = frozenset({JIT, VMAP, AXIS, MASKED, PADDING, EMPTY})
ALL_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class Op:
    """One public op as the harness calls it: ``op(x[, labels], *, axis=, where=, ...)``.

    A sampler's ``key`` is a keyword (a fixed key unless the check passes one); a loss is
    called with ``reduce="none"`` unless the check passes ``reduce``.
    """

    name: str
    fn: Callable[..., jax.Array]  # fn(x[, labels], *, [key,] temperature=, axis=, where=, ...)
    kind: str  # "elementwise" | "sorted" | "matrix" | "reduced" (one value per list)
    family: Family = RANKING
    checks: frozenset[str] = PLUMBING
    dtypes: tuple = ALL_DTYPES
    smooth: bool = True  # takes a temperature and has a non-zero gradient
    descending: bool = True  # accepts `descending`
    grad_modes: tuple[str, ...] = ("fwd", "rev")
    hard_limit_temperature: float = 1e-3
    variant: bool = False  # a non-default option choice of a registered method
    k: int | None = None  # selects k items: a list shorter than k is misuse (test_errors.py)
    log_space: bool = False  # padding gets gumbel.large_negative, not 0
    nonnegative: bool = False  # valid outputs are >= 0
    reductions: tuple[str, ...] = ()  # a loss's reductions besides "none"
    grad_filtered: bool = False  # masked == filtered holds for the gradient too

    @functools.cached_property
    def compiled(self):
        return jax.jit(self.fn, static_argnames=self.family.static)

    def __call__(self, *lists, **kw):
        """The op as the checks call it: jitted for a compiled family."""
        return self._call(self.compiled if self.family.compiled else self.fn, lists, kw)

    def eager(self, *lists, **kw):
        return self._call(self.fn, lists, kw)

    def _call(self, fn, lists, kw):
        if self.family.key and "key" not in kw:
            # XLA's RngBitGenerator keys compile about twice as fast as threefry's unrolled
            # rounds; the checks that depend on the key's implementation pass their own key.
            kw["key"] = jax.random.key(0, impl="rbg")
        return fn(*lists, **kw)

    def fill(self, dtype=jnp.float64):
        """What padding and fully masked rows get."""
        return np.asarray(gumbel.large_negative(dtype)) if self.log_space else 0.0

    def __repr__(self) -> str:
        return self.name


# ---------------------------------------------------------------------------------------------
# Ranking: every registered (operation, method) pair, read from the kernel registry
# ---------------------------------------------------------------------------------------------


def _ranking_op(op: str, method: str, **options) -> Op:
    public = {"rank": ranking.soft_rank, "sort": ranking.soft_sort}.get(op)
    if op == "permutation":

        def fn(x, **kw):
            return ranking.soft_permutation(x, method=method, **options, **kw)

        kind = "matrix"
    else:

        def fn(x, **kw):
            return public(x, method=method, **options, **kw)

        kind = "elementwise" if op == "rank" else "sorted"
    # A method whose autodiff is a surrogate by design (tests/_cases.py) is checked against its
    # surrogate in test_methods.py instead of against finite differences here.
    modes = () if method in SURROGATE_GRADIENT else ("fwd", "rev")
    name = f"soft_{op}-{case_id((method, options))}"
    return Op(
        name,
        fn,
        kind,
        checks=frozenset({MASKED, PADDING}) if options else PLUMBING,
        dtypes=() if options else ALL_DTYPES,
        grad_modes=modes,
        hard_limit_temperature=hard_limit_temperature(method, options),
        variant=bool(options),
    )


def _topk_op(method: str, **options) -> Op:
    def fn(x, descending=False, **kw):
        del descending
        return topk.soft_topk_mask(x, K, method=method, **options, **kw)

    name = f"soft_topk_mask-{case_id((method, options))}"
    modes = () if method in SURROGATE_GRADIENT else ("fwd", "rev")
    return Op(
        name,
        fn,
        "elementwise",
        checks=frozenset({MASKED, PADDING}) if options else PLUMBING,
        dtypes=() if options else ALL_DTYPES,
        descending=False,
        grad_modes=modes,
        hard_limit_temperature=hard_limit_temperature(method, options),
        variant=bool(options),
        k=K,
    )


def _exact_rank(x, temperature=None, **kw):
    del temperature
    return ranking.rank(x, **kw)


def _exact_topk(x, temperature=None, descending=False, **kw):
    del temperature, descending
    return topk.topk_mask(x, K, **kw)


# A newly registered method is checked here without editing this file.
RANKING_OPS = [
    *[_ranking_op(op, m, **o) for op in ("rank", "sort", "permutation") for m, o in cases(op)],
    *[_topk_op(m, **o) for m, o in cases("topk")],
    Op("rank", _exact_rank, "elementwise", smooth=False),
    Op("topk_mask", _exact_topk, "elementwise", smooth=False, descending=False, k=K),
]


# ---------------------------------------------------------------------------------------------
# Samplers (gumbel): fn(x, *, key, temperature=, axis=, where=)
# ---------------------------------------------------------------------------------------------

# relaxed_topk_gumbel_log and gumbel_softmax share relaxed_topk_gumbel's code path except for
# their output, so the structural checks (jit, vmap, axis) run on the others. The G-Rerank mask
# is relaxed_topk_gumbel or a clipped relaxed_subset_sample (test_gumbel.py,
# test_attention_mask_methods_match_the_relaxations), so it only joins the masking checks.
_STRUCTURAL = frozenset({VMAP, AXIS, MASKED, PADDING})
_MASKING = frozenset({MASKED, PADDING})
_SAMPLER_DTYPES = (jnp.bfloat16, jnp.float64)  # float16 takes the bfloat16 path: two ops


def _sampler(name, fn, checks, *, dtypes=_SAMPLER_DTYPES, **kw) -> Op:
    kw.setdefault("nonnegative", not kw.get("log_space", False))
    return Op(name, fn, "elementwise", SAMPLER, checks, dtypes, descending=False, **kw)


def _gumbel_topk_mask(x, *, key, temperature=None, **kw):
    del temperature
    return gumbel.gumbel_topk(key, x, K, **kw).mask


def _perturbed_topk_mask(x, *, key, temperature=0.5, **kw):
    return gumbel.perturbed_topk_mask(key, x, K, sigma=temperature, num_samples=64, **kw)


def _attention(method):
    # gumbel_attention_mask has no `axis` (documents are the last axis).
    def fn(x, *, key, **kw):
        return gumbel.gumbel_attention_mask(key, x, K, method=method, **kw)

    return fn


SAMPLER_OPS = [
    _sampler(
        "gumbel_softmax",
        lambda x, *, key, **kw: gumbel.gumbel_softmax(key, x, **kw),
        _MASKING | {EMPTY},
    ),
    _sampler(
        "relaxed_topk_gumbel",
        lambda x, *, key, **kw: gumbel.relaxed_topk_gumbel(key, x, K, num_samples=3, **kw),
        _STRUCTURAL,
        k=K,
    ),
    _sampler(
        "relaxed_topk_gumbel_log",
        lambda x, *, key, **kw: gumbel.relaxed_topk_gumbel_log(key, x, K, **kw),
        _MASKING,
        dtypes=(*_SAMPLER_DTYPES, jnp.float16),
        k=K,
        log_space=True,
    ),
    _sampler(
        "relaxed_subset_sample",
        lambda x, *, key, **kw: gumbel.relaxed_subset_sample(key, x, K, **kw),
        _STRUCTURAL | {JIT},  # eager runs are slow to dispatch: one sampler
        dtypes=(*_SAMPLER_DTYPES, jnp.float16),
        k=K,
    ),
    _sampler("gumbel_topk_mask", _gumbel_topk_mask, _STRUCTURAL, smooth=False, k=K),
    _sampler("perturbed_topk_mask", _perturbed_topk_mask, _STRUCTURAL, k=K),
    _sampler("attention_max", _attention("max"), _MASKING, dtypes=(), k=K),
    _sampler("attention_subset", _attention("subset"), _MASKING, dtypes=(), k=K),
]


# ---------------------------------------------------------------------------------------------
# Losses and metrics: fn(scores, labels, *, axis=, where=[, reduce=])
# ---------------------------------------------------------------------------------------------

_LISTS = frozenset({VMAP, AXIS, MASKED, DEGENERATE})


def _loss_op(name, fn, checks=_LISTS | {EMPTY}, dtypes=()) -> Op:
    def per_list(s, y, reduce="none", **kw):
        return fn(s, y, reduce=reduce, **kw)

    return Op(
        name,
        per_list,
        "reduced",
        LOSS,
        checks,
        dtypes,
        descending=False,
        reductions=("mean", "sum"),
        grad_filtered=True,
    )


# Each fn(scores, labels, **kw) with the library's default reduction (test_losses.py checks the
# reductions). Temperatures are moderate so gradients are non-trivial. spearman_loss with
# method="isotonic" is covered by test_losses.py (test_soft_rank_losses_accept_every_method).
LOSS_FNS = {
    "spearman-sigmoid": lambda s, y, **kw: losses.spearman_loss(
        s, y, method="sigmoid", temperature=0.5, **kw
    ),
    "ndcg-isotonic": lambda s, y, **kw: losses.ndcg_loss(
        s, y, method="isotonic", temperature=0.5, **kw
    ),
    "ndcg@3-sigmoid": lambda s, y, **kw: losses.ndcg_loss(
        s, y, k=3, method="sigmoid", temperature=0.5, **kw
    ),
    "listmle": lambda s, y, **kw: losses.listmle_loss(s, y, **kw),
    "listnet": lambda s, y, **kw: losses.listnet_loss(s, y, **kw),
    "pairwise": lambda s, y, **kw: losses.pairwise_logistic_loss(s, y, **kw),
}
# Every loss returns through the same Frame.finish_reduced, so two losses with different kernels
# suffice for the dtype check.
_LOSS_DTYPES = (jnp.float32, jnp.bfloat16)
LOSS_OPS = [
    _loss_op("spearman-sigmoid", LOSS_FNS["spearman-sigmoid"], _LISTS),
    _loss_op("ndcg-isotonic", LOSS_FNS["ndcg-isotonic"], dtypes=_LOSS_DTYPES),
    _loss_op("ndcg@3-sigmoid", LOSS_FNS["ndcg@3-sigmoid"], _LISTS),
    _loss_op("listmle", LOSS_FNS["listmle"], dtypes=_LOSS_DTYPES),
    _loss_op("listnet", LOSS_FNS["listnet"]),
    _loss_op("pairwise", LOSS_FNS["pairwise"], _LISTS, dtypes=_LOSS_DTYPES),
    # The default method and temperature, on empty inputs only.
    _loss_op(
        "spearman_loss-default",
        lambda s, y, **kw: losses.spearman_loss(s, y, **kw),
        frozenset({EMPTY}),
    ),
]


def _metric_op(name, fn, checks=_LISTS | {JIT, EMPTY}, dtypes=()) -> Op:
    return Op(name, fn, "reduced", METRIC, checks, dtypes, smooth=False, descending=False)


METRIC_OPS = [
    _metric_op(
        "ndcg",
        lambda s, y, **kw: metrics.ndcg(s, y, k=3, **kw),
        dtypes=(jnp.float32, jnp.bfloat16, jnp.float64),
    ),
    _metric_op("recall@3", lambda s, y, **kw: metrics.recall_at_k(s, y, 3, **kw), _LISTS | {JIT}),
    _metric_op(
        "precision@3", lambda s, y, **kw: metrics.precision_at_k(s, y, 3, **kw), _LISTS | {JIT}
    ),
    _metric_op("mrr", lambda s, y, **kw: metrics.mrr(s, y, **kw)),
    _metric_op("average_precision", lambda s, y, **kw: metrics.average_precision(s, y, **kw)),
    _metric_op("spearman", lambda s, y, **kw: metrics.spearman(s, y, **kw)),
    _metric_op("kendall_tau", lambda s, y, **kw: metrics.kendall_tau(s, y, **kw)),
]


# ---------------------------------------------------------------------------------------------
# What each check runs over
# ---------------------------------------------------------------------------------------------

OPS = [*RANKING_OPS, *SAMPLER_OPS, *LOSS_OPS, *METRIC_OPS]


def registered(check: str) -> list[Op]:
    return [op for op in OPS if check in op.checks]


# (op, descending) for masked == filtered: both directions for an op with `descending` (a
# variant once: descending sorts -x through the same code for every option).
DIRECTIONS = [
    (op, d)
    for op in registered(MASKED)
    for d in (False, True)
    if (op.descending and not op.variant) or not d
]
EMPTY_CASES = [
    pytest.param(op, shape, id=f"{op.name}-{'x'.join(map(str, shape))}")
    for op in registered(EMPTY)
    for shape in op.family.empty_shapes
    if op.k is None or shape[-1] >= op.k  # shorter lists: test_errors.py
]
DTYPE_CASES = [
    pytest.param(op, dtype, id=f"{op.name}-{jnp.dtype(dtype).name}")
    for op in OPS
    for dtype in op.dtypes
]


def parametrize(check: str):
    return pytest.mark.parametrize("op", registered(check), ids=repr)


# The limits (test_contract_limits.py) run over the ranking ops.
SMOOTH = [op for op in RANKING_OPS if op.smooth]
# The hard limit in both directions for every smooth op, variants included.
SMOOTH_DIRECTIONS = [(op, d) for op in SMOOTH for d in (False, True) if op.descending or not d]
EXACT_GRADIENT = [op for op in SMOOTH if op.grad_modes]
parametrize_smooth_base = pytest.mark.parametrize(
    "op", [op for op in SMOOTH if not op.variant], ids=repr
)


def _weights(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def _loss(op, x, **kw):
    out = op(x, **kw)
    return jnp.sum(out * _weights(out.shape))
