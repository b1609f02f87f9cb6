"""Draws the figures of docs/choosing_a_method.md from the benchmark JSON files.

Run from the repository root after the benchmarks (``python -m benchmarks.run`` and
``python benchmarks/quality.py``; every ``benchmarks/results/quality*.json`` and the newest
``run*.json`` are read)::

    python docs/make_guide_figures.py

Writes docs/figures/guide_time_vs_n.png (fwd+bwd time against n, log-log, one line per method
with ``jnp.argsort`` as the floor), guide_accuracy_vs_temperature.png (relative error against
temperature at n = 1,000, raw and standardized) and guide_vanishing_gradients.png (share of
near-zero gradient entries against temperature). The per-temperature figures draw each method at
its default options (both isotonic regularizations): the eight network/sigmoid pairs of the
sorting networks and Sinkhorn's three squashes would crowd the panels; their numbers are in the
JSON files and the τ* table of the guide.
"""

from __future__ import annotations

import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rank_relax_jax import methods

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "figures"


def _rows(pattern):
    rows = []
    for p in sorted(RESULTS.glob(pattern)):
        rows += json.loads(p.read_text())["rows"]
    return rows


def time_vs_n(rows):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    single = [r for r in rows if r.get("batch") == 1 and not r.get("skipped")]
    defaults = _default_labels("rank")
    keys = sorted({(r["op"], r["library"], r["method"]) for r in single if r["op"] == "rank"
                   and (r["library"] != "rank_relax_jax" or r["method"] in defaults)})  # fmt: skip
    keys.append(("argsort", "jax", "jnp.argsort"))
    colors = plt.get_cmap("tab20").colors
    for i, (op, lib, m) in enumerate(keys):
        pts = sorted((r["n"], r.get("fwd_bwd_s") or r["fwd_s"]) for r in single
                     if (r["op"], r["library"], r["method"]) == (op, lib, m))  # fmt: skip
        if not pts:
            continue
        name = m if lib == "rank_relax_jax" else f"{lib}: {m}"
        style = (
            {"color": "k", "ls": "--", "lw": 2}
            if op == "argsort"
            else {"marker": "os^v"[i % 4], "color": colors[i % len(colors)]}
        )
        ax.plot(*zip(*pts, strict=True), label=name + (" (fwd, floor)" if op == "argsort" else ""),
                **style)  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="n (one list)", ylabel="fwd+bwd time [s]",
           title="soft_rank: time against n (CPU)")  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(OUT / "guide_time_vs_n.png", dpi=110)


def _default_labels(op):
    """Benchmark labels of each registered method at its default options (isotonic: L2 and KL).

    ``benchmarks._methods`` labels a variant ``method[v1,v2]`` with its choice-valued options'
    values in the order of their sorted names; the time figure draws one line per method.
    """
    out = set()
    for e in methods.entries(op):
        names = sorted(k for k, o in e.options.items() if o.choices)
        if not names:
            out.add(e.method)
        elif names == ["regularization"]:
            out.update(f"{e.method}[{c}]" for c in e.options["regularization"].choices)
        else:
            out.add(f"{e.method}[{','.join(str(e.options[k].default) for k in names)}]")
    return out


def _at_defaults(row):
    """Whether ``row`` measured its method at the default options (regularization aside)."""
    entry = {e.method: e for e in methods.entries(row["op"])}.get(row["method"])
    if entry is None:
        return True
    return all(
        k == "regularization" or v == entry.options[k].default
        for k, v in row.get("options", {}).items()
        if k in entry.options
    )


def per_temperature(rows, key, ylabel, name, log_y):
    rows = [r for r in rows if _at_defaults(r)]
    ops = ("rank", "sort", "topk")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
    for j, op in enumerate(ops):
        for i, std in enumerate((False, True)):
            ax = axes[i, j]
            sel = [r for r in rows if r["op"] == op and r["standardize"] == std
                   and r["n"] == 1000 and r["scale"] == 1.0]  # fmt: skip
            for label in sorted({r["label"] for r in sel}):
                pts = sorted((r["temperature"], max(r[key], 1e-7) if log_y else r[key])
                             for r in sel if r["label"] == label)  # fmt: skip
                ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=label)
            ax.set_xscale("log")
            if log_y:
                ax.set_yscale("log")  # errors below 1e-7 are drawn at 1e-7
            ax.set_title(f"{op}, standardize={std}, n=1000", fontsize=9)
            if i == 1:
                ax.set_xlabel("temperature")
            if j == 0:
                ax.set_ylabel(ylabel)
            if sel:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / name, dpi=100)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    q = _rows("quality*.json")
    runs = sorted(RESULTS.glob("run*.json"), key=lambda p: p.stat().st_mtime)
    if runs:
        time_vs_n(json.loads(runs[-1].read_text())["rows"])
    if q:
        per_temperature(q, "error", "relative error", "guide_accuracy_vs_temperature.png", True)
        per_temperature(q, "zero_grad_frac", "share of |g| < 1e-8·max|g|",
                        "guide_vanishing_gradients.png", False)  # fmt: skip
    print("wrote", sorted(p.name for p in OUT.glob("guide_*.png")))


if __name__ == "__main__":
    main()
