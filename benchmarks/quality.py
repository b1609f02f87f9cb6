"""Accuracy and gradient quality of every registered soft rank / sort / top-k method.

For standard-normal scores times a scale, over a grid of temperatures, with and without
``standardize=True``, this measures per method:

* the error against the exact operation, relative to the list so that it can be compared
  across n: rank: mean |soft rank − rank| / n; sort: mean |soft sort − sort| / std(x);
  top-k (k = n // 10): Σ|mask − k-hot| / 2k (the share of the k slots misplaced);
* the share of near-zero gradient entries, |g_i| < 1e-8 · max_j |g_j|, of the gradient of
  ⟨op(x), c⟩ for a fixed random cotangent c (1.0 when the whole gradient is 0);
* from these, the temperature τ* at which the error reaches a fixed target (log-interpolated
  on the grid), as a function of n (100..100,000, scale 1) and of the scale (1e-3..1e3,
  n = 1,000).

O(n²) methods stop at ``--max-n2`` (default 10,000). Usage::

    python benchmarks/quality.py            # full grid, writes benchmarks/results/quality.json
    python benchmarks/quality.py --quick    # n ≤ 1,000, five temperatures
    # replace one method's rows in an existing file, keeping the others:
    python benchmarks/quality.py --only sort:lapsum --merge \
        --out benchmarks/results/quality_sort.json

Progress goes to stderr, Markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pathlib
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp
import numpy as np

import rank_relax_jax as rrj
from benchmarks import _meta
from benchmarks._methods import Variant, topk_k, variants

TEMPS = tuple(float(t) for t in 10.0 ** np.arange(-3.0, 1.01, 0.5))
QUICK_TEMPS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
NS = (100, 1000, 10000, 100000)
SCALES = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)
SCALE_N = 1000
# Error at which tau* is read off, per op (relative errors, see the module docstring).
TARGET = {"rank": 0.01, "sort": 0.01, "topk": 0.05}
ZERO = 1e-8


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _lists(n: int, quadratic: bool) -> int:
    """Lists per cell: enough entries to average over, bounded memory for O(n²) methods."""
    budget = 2_000_000 // (n * n) if quadratic else 20_000 // n
    return max(1, min(256, budget))


def _error_fn(v: Variant):
    def err(x, out):
        n = x.shape[-1]
        if v.op == "rank":
            return jnp.mean(jnp.abs(out - rrj.rank(x)), axis=-1) / n
        if v.op == "sort":
            return jnp.mean(jnp.abs(out - jnp.sort(x, axis=-1)), axis=-1) / jnp.std(x, axis=-1)
        k = topk_k(n)
        return jnp.sum(jnp.abs(out - rrj.topk_mask(x, k)), axis=-1) / (2 * k)

    return err


def _cell_fn(v: Variant, standardize: bool):
    f = v.fn(standardize=standardize)
    err = _error_fn(v)

    @jax.jit
    def cell(x, t, c):
        out, vjp = jax.vjp(lambda y: f(y, t), x)
        (g,) = vjp(c)
        a = jnp.abs(g)
        big = jnp.max(a, axis=-1, keepdims=True)
        zero = jnp.mean(a <= ZERO * big, axis=-1)
        return jnp.mean(err(x, out)), jnp.mean(zero)

    return cell


def tau_star(temps, errors, target):
    """Largest temperature on the grid at which the error is <= target, log-interpolated."""
    pts = sorted(zip(temps, errors, strict=True))
    best = None
    for (t0, e0), (t1, e1) in itertools.pairwise(pts):
        if e0 <= target < e1 and e1 > e0:
            w = (target - e0) / (e1 - e0)
            best = math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0)))
    if best is None and pts and all(e <= target for _, e in pts):
        return pts[-1][0]  # accurate over the whole grid: at least the largest temperature
    return best


def run(quick: bool, max_n2: int, only: str | None, on_variant=None) -> list[dict]:
    temps = QUICK_TEMPS if quick else TEMPS
    ns = NS[:2] if quick else NS
    scales = (1e-3, 1.0, 1e3) if quick else SCALES
    rows = []
    for v in variants():
        if only and only not in f"{v.op}:{v.label}":
            continue
        for std in (False, True):
            cell = _cell_fn(v, std)
            cells = [(n, 1.0) for n in ns] + [(SCALE_N, s) for s in scales if s != 1.0]
            for n, scale in cells:
                if v.quadratic and n > max_n2:
                    _log(f"skip {v.op} {v.label} n={n}: O(n²) method above --max-n2={max_n2}")
                    continue
                b = _lists(n, v.quadratic)
                x = scale * jax.random.normal(jax.random.key(n), (b, n), jnp.float32)
                c = jax.random.normal(jax.random.key(n + 1), (b, n), jnp.float32)
                t0 = time.perf_counter()
                for t in temps:
                    e, z = cell(x, jnp.float32(t), c)
                    rows.append(
                        {
                            "op": v.op,
                            "method": v.method,
                            "label": v.label,
                            "options": v.options,
                            "standardize": std,
                            "n": n,
                            "lists": b,
                            "scale": scale,
                            "temperature": t,
                            "error": float(e),
                            "zero_grad_frac": float(z),
                        }
                    )
                _log(
                    f"{v.op:5s} {v.label:18s} std={std!s:5s} n={n:<7d} scale={scale:<6g} "
                    f"{time.perf_counter() - t0:6.2f}s"
                )
        if on_variant is not None:
            on_variant(rows)
    return rows


def summarize(rows: list[dict]) -> dict:
    """tau* per (op, label, standardize) against n and against scale."""
    out = {}
    keys = sorted({(r["op"], r["label"], r["standardize"]) for r in rows})
    for op, label, std in keys:
        sel = [r for r in rows if (r["op"], r["label"], r["standardize"]) == (op, label, std)]
        by_n, by_scale = {}, {}
        for n in sorted({r["n"] for r in sel if r["scale"] == 1.0}):
            cell = [r for r in sel if r["n"] == n and r["scale"] == 1.0]
            by_n[n] = tau_star([r["temperature"] for r in cell], [r["error"] for r in cell],
                               TARGET[op])  # fmt: skip
        for s in sorted({r["scale"] for r in sel if r["n"] == SCALE_N}):
            cell = [r for r in sel if r["n"] == SCALE_N and r["scale"] == s]
            by_scale[s] = tau_star([r["temperature"] for r in cell], [r["error"] for r in cell],
                                   TARGET[op])  # fmt: skip
        out[f"{op}:{label}:{'std' if std else 'raw'}"] = {"by_n": by_n, "by_scale": by_scale}
    return out


def _fmt(t):
    return "—" if t is None else f"{t:.3g}"


def print_tables(rows: list[dict], summary: dict) -> None:
    temps = sorted({r["temperature"] for r in rows})
    n0 = SCALE_N if any(r["n"] == SCALE_N for r in rows) else min(r["n"] for r in rows)
    for what, key in (("error", "error"), ("near-zero gradient share", "zero_grad_frac")):
        print(f"\n### {what} vs temperature (n = {n0}, scale 1)\n")
        print("| op | method | standardize | " + " | ".join(f"τ={t:g}" for t in temps) + " |")
        print("|---" * (3 + len(temps)) + "|")
        labels = sorted({(r["op"], r["label"], r["standardize"]) for r in rows})
        for op, label, std in labels:
            cell = {
                r["temperature"]: r[key]
                for r in rows
                if (r["op"], r["label"], r["standardize"], r["n"], r["scale"])
                == (op, label, std, n0, 1.0)
            }
            vals = " | ".join(f"{cell[t]:.3g}" if t in cell else "" for t in temps)
            print(f"| {op} | {label} | {std} | {vals} |")
    for axis, name in (("by_n", "n"), ("by_scale", "scale")):
        cols = sorted({c for s in summary.values() for c in s[axis]})
        print(f"\n### τ* (error = target {TARGET}) against {name}\n")
        print("| op | method | standardize | " + " | ".join(f"{name}={c:g}" for c in cols) + " |")
        print("|---" * (3 + len(cols)) + "|")
        for key, s in summary.items():
            op, label, std = key.split(":")
            vals = " | ".join(_fmt(s[axis].get(c)) for c in cols)
            print(f"| {op} | {label} | {std == 'std'} | {vals} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="n <= 1,000, five temperatures")
    p.add_argument("--max-n2", type=int, default=10_000, help="largest n for O(n²) methods")
    p.add_argument("--only", default=None, help="substring of 'op:label' to run (e.g. rank:)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/…)")
    p.add_argument(
        "--merge", action="store_true", help="keep the rows of --out this run does not measure"
    )
    a = p.parse_args(argv)
    meta = _meta.collect(targets=TARGET, zero_threshold=ZERO)
    default = "quality_quick.json" if a.quick else "quality.json"
    out = pathlib.Path(a.out or pathlib.Path(__file__).resolve().parent / "results" / default)
    kept = []
    if a.merge and out.exists():
        old = json.loads(out.read_text())
        measured = {
            (v.op, v.label) for v in variants() if not a.only or a.only in f"{v.op}:{v.label}"
        }
        kept = [r for r in old["rows"] if (r["op"], r["label"]) not in measured]
        # The file's earlier commands stay on record: its kept rows came from them.
        last = {k: old["meta"].get(k) for k in ("command", "date")}
        meta["merged_from"] = [*old["meta"].get("merged_from", []), last]
    # Written after every method too, so a long run that is stopped leaves its rows behind.
    rows = run(a.quick, a.max_n2, a.only,
               on_variant=lambda r: _meta.write_record(out, meta, kept + r))  # fmt: skip
    summary = summarize(rows)
    print_tables(rows, summary)
    rows = kept + rows
    summary = summarize(rows)
    meta["summary"] = {k: {ax: {str(c): t for c, t in d.items()} for ax, d in s.items()}
                       for k, s in summary.items()}  # fmt: skip
    _meta.write_record(out, meta, rows)
    _log(f"wrote {out}")


if __name__ == "__main__":
    main()
