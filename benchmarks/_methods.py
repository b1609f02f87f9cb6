"""Every registered soft rank / sort / top-k method as benchmark rows, read from the registry.

A method registered later (rank_relax_jax/methods/__init__.py) appears here with no change: each
registry entry gives one row per combination of its options that declare ``choices`` (isotonic
``regularization`` l2 / kl are two rows); options validated by ``check`` keep their default.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rank_relax_jax as rrj
from rank_relax_jax import methods

OPS = ("rank", "sort", "topk")


@dataclass(frozen=True)
class Variant:
    op: str  # "rank" | "sort" | "topk"
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    cost: str = ""

    @property
    def label(self) -> str:
        extra = ",".join(f"{v}" for v in self.options.values())
        return f"{self.method}" + (f"[{extra}]" if extra else "")

    @property
    def quadratic(self) -> bool:
        """O(n²) time or memory for this variant (per the registry's cost string).

        A cost string may name the cost of each option value ("O(n log² n) bitonic, O(n²)
        odd-even"): then the part that names one of this variant's option values decides.
        """
        parts = [p.strip() for p in self.cost.split(",")]
        values = {str(v) for v in self.options.values()}
        named = [p for p in parts if any(v in p.split() for v in values)]
        return any("n²" in p or "n^2" in p for p in (named or parts))

    def fn(self, *, standardize: bool = False) -> Callable[..., Any]:
        """``f(x, temperature)`` over the last axis (top-k with k = max(1, n // 10))."""
        kw = dict(self.options, method=self.method)
        if standardize:
            kw["standardize"] = True
        if self.op == "rank":
            return lambda x, t: rrj.soft_rank(x, temperature=t, **kw)
        if self.op == "sort":
            return lambda x, t: rrj.soft_sort(x, temperature=t, **kw)
        return lambda x, t: rrj.soft_topk_mask(x, topk_k(x.shape[-1]), temperature=t, **kw)


def topk_k(n: int) -> int:
    return max(1, n // 10)


def variants(ops: tuple[str, ...] = OPS) -> list[Variant]:
    out = []
    for op in ops:
        for entry in methods.entries(op):
            choice_opts = {k: o.choices for k, o in entry.options.items() if o.choices}
            names = sorted(choice_opts)
            for combo in itertools.product(*(choice_opts[k] for k in names)):
                opts = dict(zip(names, combo, strict=True))
                out.append(Variant(op, entry.method, opts, entry.cost))
    return out
