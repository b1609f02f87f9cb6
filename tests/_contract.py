"""The op records of the contract suite (``test_contract.py``, ``test_contract_limits.py``).

Every public deterministic op is described once by an ``Op`` record, read from the kernel
registry (``tests/_cases.py``): each registered (operation, method) pair with its default
options, and each non-default option choice as a *variant*. Variants share their method's
plumbing (``where``, ``axis``, ``vmap``, dtypes, empty inputs, tracing), which the default case
checks; a variant is checked where an option changes the numbers: masked == filtered, fully
masked rows, padding gradients, finite differences and the hard limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _cases import SURROGATE_GRADIENT, case_id, cases, hard_limit_temperature

from rank_relax_jax import ranking, topk

K = 2


@dataclasses.dataclass(frozen=True)
class Op:
    name: str
    fn: Callable[..., jax.Array]  # fn(x, *, temperature=..., axis=..., where=..., descending=...)
    kind: str  # "elementwise" | "sorted" | "matrix"
    smooth: bool = True  # takes a temperature and has a non-zero gradient
    descending: bool = True  # accepts `descending`
    grad_modes: tuple[str, ...] = ("fwd", "rev")
    hard_limit_temperature: float = 1e-3
    variant: bool = False  # a non-default option choice of a registered method

    def __call__(self, x, **kw):
        return self.fn(x, **kw)

    def __repr__(self) -> str:
        return self.name


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
        descending=False,
        grad_modes=modes,
        hard_limit_temperature=hard_limit_temperature(method, options),
        variant=bool(options),
    )


def _exact_rank(x, temperature=None, **kw):
    del temperature
    return ranking.rank(x, **kw)


def _exact_topk(x, temperature=None, descending=False, **kw):
    del temperature, descending
    return topk.topk_mask(x, K, **kw)


# Every registered (operation, method) pair, and each non-default choice of its options, read
# from the kernel registry: a newly registered method is checked here without editing this file.
OPS = [
    *[_ranking_op(op, m, **o) for op in ("rank", "sort", "permutation") for m, o in cases(op)],
    *[_topk_op(m, **o) for m, o in cases("topk")],
    Op("rank", _exact_rank, "elementwise", smooth=False),
    Op("topk_mask", _exact_topk, "elementwise", smooth=False, descending=False),
]
BASE = [op for op in OPS if not op.variant]
SMOOTH = [op for op in OPS if op.smooth]
# (op, descending) for the checks run in both directions; an op without `descending` once, and
# a variant once (descending sorts -x through the same code for every option).
DIRECTIONS = [
    (op, d) for op in OPS for d in (False, True) if (op.descending and not op.variant) or not d
]
# The hard limit in both directions for every smooth op, variants included.
SMOOTH_DIRECTIONS = [
    (op, d) for op in OPS for d in (False, True) if op.smooth and (op.descending or not d)
]
EXACT_GRADIENT = [op for op in SMOOTH if op.grad_modes]
parametrize_ops = pytest.mark.parametrize("op", OPS, ids=repr)
parametrize_base = pytest.mark.parametrize("op", BASE, ids=repr)
parametrize_smooth_base = pytest.mark.parametrize("op", [op for op in BASE if op.smooth], ids=repr)


def _distinct(shape, seed=0, dtype=np.float64, gap=0.3):
    """Random values whose sorted neighbours differ by at least ``gap`` in every row."""
    rng = np.random.default_rng(seed)
    n = shape[-1]
    base = np.arange(n) * gap + np.cumsum(rng.uniform(0, gap, size=shape), axis=-1)
    base = base - base.mean(axis=-1, keepdims=True)
    return rng.permuted(base, axis=-1).astype(dtype)


def _weights(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def _loss(op, x, **kw):
    out = op(x, **kw)
    return jnp.sum(out * _weights(out.shape))
