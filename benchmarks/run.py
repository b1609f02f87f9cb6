"""One benchmark over every soft rank / sort / top-k method of the library and every installed peer.

Rows come from the kernel registry (`benchmarks._methods.variants`: one row per method and per
choice-valued option, e.g. isotonic L2 and KL), so a method registered later is benchmarked with
no change here. Peers (``softjax``, ``ott-jax``, ``rax``, ``torchsort``, ``diffsort``) are timed
when importable; a missing one is skipped with a line that says so.

Per cell (operation, method, shape), all in float32 on the default JAX device:

* ``fwd_s`` / ``fwd_bwd_s``: median steady-state time of the jitted forward, and of the jitted
  value-and-gradient of ⟨op(x), c⟩ (one VJP);
* ``compile_s``: ``lower(...).compile()`` time of each;
* ``fwd_mem`` / ``fwd_bwd_mem``: compiled temp + output bytes (``memory_analysis()``);
* ``fwd_ratio`` / ``fwd_bwd_ratio``: time over ``jnp.argsort`` of the same shape in the same run.

Every cell of a shape is compiled first, then timed; with ``--rounds R`` the cells of the shape
are timed R times in turn and each keeps its fastest round's median (one round can leave single
cells up to 2x off on a shared machine: docs/performance.md).

A cell whose memory estimate passes ``--mem-cap`` (O(n²) methods: batch·n²·4 B·3, estimated
before compiling), or whose pairwise work passes ``--work-cap``, is skipped with a line saying
so. Progress goes to stderr, a Markdown table to stdout, JSON to ``benchmarks/results/run.json``
(or ``--out``) with machine, versions, command and date. Usage::

    python -m benchmarks.run                 # every shape, (1, 10) .. (1, 1,000,000)
    python -m benchmarks.run --rounds 3      # the same, each cell's fastest of three rounds
    python -m benchmarks.run --quick         # two shapes, few repeats (< 2 minutes, quiet CPU)
    python benchmarks/run.py --shapes 1x100,128x1000 --ops rank --out /tmp/r.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import json
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _meta
from benchmarks._methods import OPS, topk_k, variants
from benchmarks._timing import fastest_rounds

SHAPES = [
    (1, 10),
    (1, 100),
    (1, 1000),
    (1, 10000),
    (1, 100000),
    (1, 1000000),
    (1024, 100),
    (128, 1000),
    (16, 10000),
]
QUICK_SHAPES = [(1, 100), (16, 1000)]
TEMPERATURE = 1.0
PEERS = ("softjax", "ott-jax", "rax", "torchsort", "diffsort")
_MODULE = {"ott-jax": "ott"}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Cell:
    """One thing to time: ``jax_fn(x) -> out`` (jitted here) or a torch callable."""

    op: str
    library: str
    label: str
    quadratic: bool
    jax_fn: Callable[[jax.Array], jax.Array] | None = None
    torch_fn: Callable[[Any], Any] | None = None
    note: str = ""


# --------------------------------------------------------------------------- cells


def ours(ops: tuple[str, ...]) -> list[Cell]:
    t = jnp.float32(TEMPERATURE)
    cells = []
    for v in variants(ops):
        f = v.fn()
        cells.append(Cell(v.op, "rank_relax_jax", v.label, v.quadratic, lambda x, f=f: f(x, t)))
    return cells


def _peer_cells(name: str, mod: Any, ops: tuple[str, ...]) -> list[Cell]:
    """Each peer's soft rank / sort / top-k calls at its default smoothness."""
    cells: list[Cell] = []
    if name == "softjax":
        for method in ("neuralsort", "fast_soft_sort"):
            quad = method != "fast_soft_sort"
            if "rank" in ops:
                fr = lambda x, m=method: mod.rank(x, axis=-1, method=m, descending=False)  # noqa: E731
                cells.append(Cell("rank", name, method, quad, fr))
            if "sort" in ops:
                fs = lambda x, m=method: mod.sort(x, axis=-1, method=m)  # noqa: E731
                cells.append(Cell("sort", name, method, quad, fs))
        if "topk" in ops:
            ft = lambda x: mod.top_k(x, topk_k(x.shape[-1]), axis=-1)[0]  # noqa: E731
            cells.append(Cell("topk", name, "neuralsort (values)", True, ft))
    elif name == "ott-jax":
        ss = importlib.import_module("ott.tools.soft_sort")
        # OTT's defaults (implicit differentiation, early-stopped while loop) fail in reverse
        # mode here (ott-jax 0.6: NaN linear solve / dynamic while_loop), so: unrolled, fixed
        # 100 Sinkhorn iterations, default epsilon.
        kw = {"implicit_diff": None, "min_iterations": 100, "max_iterations": 100}
        if "rank" in ops:
            fr = lambda x: ss.ranks(x, axis=-1, **kw)  # noqa: E731
            cells.append(Cell("rank", name, "sinkhorn", True, fr))
        if "sort" in ops:
            fs = lambda x: ss.sort(x, axis=-1, **kw)  # noqa: E731
            cells.append(Cell("sort", name, "sinkhorn", True, fs))
        if "topk" in ops:
            ft = lambda x: ss.topk_mask(x, axis=-1, k=topk_k(x.shape[-1]), **kw)  # noqa: E731
            cells.append(Cell("topk", name, "sinkhorn", False, ft))
    elif name == "rax":
        ru = importlib.import_module("rax.utils")
        if "rank" in ops:
            cells.append(Cell("rank", name, "approx_ranks", True, lambda x: ru.approx_ranks(x)))
        if "topk" in ops:
            ft = lambda x: ru.approx_cutoff(x, topk_k(x.shape[-1]))  # noqa: E731
            cells.append(Cell("topk", name, "approx_cutoff", False, ft))
    elif name == "torchsort":
        # Both regularizations, so that our KL rows have their counterpart.
        for reg in ("l2", "kl"):
            if "rank" in ops:
                fr = lambda x, reg=reg: mod.soft_rank(x, regularization=reg)  # noqa: E731
                cells.append(Cell("rank", name, reg, False, torch_fn=fr))
            if "sort" in ops:
                fs = lambda x, reg=reg: mod.soft_sort(x, regularization=reg)  # noqa: E731
                cells.append(Cell("sort", name, reg, False, torch_fn=fs))
    elif name == "diffsort" and "sort" in ops:
        cells.append(Cell("sort", name, "bitonic", True, torch_fn="diffsort"))  # built per n
    return cells


def peers(ops: tuple[str, ...], wanted: tuple[str, ...]) -> tuple[list[Cell], dict[str, str]]:
    cells, versions = [], {}
    for name in wanted:
        try:
            mod = importlib.import_module(_MODULE.get(name, name))
        except Exception as e:  # not installed, or fails to import here
            _log(f"peer {name}: not installed ({type(e).__name__}: {e}); skipped")
            continue
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = getattr(mod, "__version__", "unknown")
        cells += _peer_cells(name, mod, ops)
    return cells, versions


# --------------------------------------------------------------------------- timing


def _mem(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.output_size_in_bytes)
    except Exception:
        return None


def _compile_jax(f, args):
    """A ready-to-time call of jitted ``f`` on ``args`` (run once), its compile time and bytes."""
    t0 = time.perf_counter()
    compiled = jax.jit(f).lower(*args).compile()
    compile_s = time.perf_counter() - t0

    def call():
        return jax.block_until_ready(compiled(*args))

    call()  # a program that fails when run fails here, with its cell
    return call, compile_s, _mem(compiled)


def prepare_jax_cell(cell: Cell, x: jax.Array, c: jax.Array, grad: bool) -> tuple[dict, dict]:
    """Compiles a JAX cell: ``(info, calls)``, compile times and bytes, and the calls to time."""
    call, compile_s, mem = _compile_jax(cell.jax_fn, (x,))
    info, calls = {"fwd_compile_s": compile_s, "fwd_mem": mem}, {"fwd_s": call}
    if grad:

        def loss(x, c):
            y = cell.jax_fn(x)
            return jnp.sum(y * c.astype(y.dtype)[..., : y.shape[-1]])

        try:
            call, compile_s, mem = _compile_jax(jax.value_and_grad(loss), (x, c))
        except Exception as e:  # a peer without reverse mode: keep its forward numbers
            msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            _log(f"fail fwd+bwd {cell.library} {cell.op} {cell.label} {x.shape}: {msg}")
            info["fwd_bwd_error"] = msg
        else:
            info.update(fwd_bwd_compile_s=compile_s, fwd_bwd_mem=mem)
            calls["fwd_bwd_s"] = call
    return info, calls


def prepare_torch_cell(cell: Cell, x: np.ndarray, c: np.ndarray, grad: bool) -> tuple[dict, dict]:
    """Sets up a PyTorch peer cell: ``(info, calls)`` as `prepare_jax_cell`."""
    import torch

    xt = torch.from_numpy(np.array(x))
    ct = torch.from_numpy(np.array(c))
    t0 = time.perf_counter()
    if cell.torch_fn == "diffsort":
        net = importlib.import_module("diffsort").DiffSortNet("bitonic", x.shape[-1])

        def fn(v):
            return net(v)[0]
    else:
        fn = cell.torch_fn
    setup_s = time.perf_counter() - t0

    def forward():
        with torch.no_grad():
            return fn(xt)

    info = {"fwd_compile_s": setup_s, "fwd_mem": None}
    calls = {"fwd_s": forward}
    if grad:

        def step():
            v = xt.clone().requires_grad_(True)
            (fn(v) * ct).sum().backward()
            return v.grad

        info.update(fwd_bwd_compile_s=0.0, fwd_bwd_mem=None)
        calls["fwd_bwd_s"] = step
    for call in calls.values():  # a peer that fails on a shape fails here, with its cell
        call()
    return info, calls


# --------------------------------------------------------------------------- main


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        b, n = part.lower().split("x")
        shapes.append((int(b), int(n)))
    return shapes


def skip_reason(cell: Cell, shape, mem_cap: float, work_cap: float) -> str | None:
    b, n = shape
    if not cell.quadratic:
        return None
    est = 3 * 4 * b * n * n
    if est > mem_cap:
        return f"O(n²) memory estimate {est / 2**30:.1f} GiB > --mem-cap {mem_cap / 2**30:.1f} GiB"
    if b * n * n > work_cap:
        return f"O(n²) work {b * n * n:.1e} pair terms > --work-cap {work_cap:.0e}"
    return None


def table(rows: list[dict]) -> str:
    head = (
        "| op | library | method | shape | fwd ms | fwd+bwd ms | × argsort (fwd) | compile s "
        "(fwd / fwd+bwd) | memory MiB (fwd / fwd+bwd) |"
    )
    lines = [head, "|---" * 9 + "|"]

    def ms(v):
        return "" if v is None else f"{1e3 * v:.3g}"

    def mib(v):
        return "n/a" if v is None else f"{v / 2**20:.3g}"

    for r in rows:
        if r.get("skipped"):
            continue
        shape = f"{r['batch']}×{r['n']}"
        ratio = "" if r.get("fwd_ratio") is None else f"{r['fwd_ratio']:.3g}"
        comp = f"{r['fwd_compile_s']:.2f} / {r.get('fwd_bwd_compile_s') or 0:.2f}"
        mem = f"{mib(r.get('fwd_mem'))} / {mib(r.get('fwd_bwd_mem'))}"
        lines.append(
            f"| {r['op']} | {r['library']} | {r['method']} | {shape} | {ms(r['fwd_s'])} | "
            f"{ms(r.get('fwd_bwd_s'))} | {ratio} | {comp} | {mem} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"shapes {QUICK_SHAPES}, few repeats")
    p.add_argument("--shapes", default=None, help="comma-separated BxN, e.g. 1x100,128x1000")
    p.add_argument("--ops", default=",".join(OPS), help="subset of rank,sort,topk")
    p.add_argument("--peers", default=",".join(PEERS), help="peers to try ('' for none)")
    p.add_argument("--no-grad", action="store_true", help="forward only")
    p.add_argument("--mem-cap", type=float, default=8 * 2**30, help="bytes (default 8 GiB)")
    p.add_argument("--work-cap", type=float, default=2e10, help="b·n² pair terms")
    p.add_argument("--min-time", type=float, default=None, help="seconds per timed cell")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time every cell of a shape this many times in turn"
        " and keep each cell's fastest round (3 for tables: one round can land 2x off)",
    )
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/run.json)")
    p.add_argument("--render", default=None, help="print the table of an existing JSON and exit")
    a = p.parse_args(argv)
    if a.render:
        data = json.loads(pathlib.Path(a.render).read_text())
        print(table(data["rows"]))
        return data

    ops = tuple(o for o in a.ops.split(",") if o)
    shapes = parse_shapes(a.shapes) if a.shapes else (QUICK_SHAPES if a.quick else SHAPES)
    reps = (
        {"min_time": 0.05, "min_reps": 2, "max_reps": 5}
        if a.quick or a.shapes
        else {"min_time": 0.5, "min_reps": 5, "max_reps": 50}
    )
    if a.min_time is not None:
        reps["min_time"] = a.min_time
    grad = not a.no_grad
    cells = ours(ops)
    peer_cells, versions = peers(ops, tuple(x for x in a.peers.split(",") if x))
    cells += peer_cells
    meta = _meta.collect(
        versions,
        shapes=[list(s) for s in shapes],
        temperature=TEMPERATURE,
        dtype="float32",
        mem_cap=a.mem_cap,
        work_cap=a.work_cap,
        reps=reps,
        rounds=a.rounds,
    )
    rows: list[dict] = []
    out = a.out or pathlib.Path(__file__).resolve().parent / "results" / "run.json"
    for shape in shapes:
        b, n = shape
        x = jax.random.normal(jax.random.key(n), shape, jnp.float32)
        c = jax.random.normal(jax.random.key(n + 1), shape, jnp.float32)
        argsort = Cell("argsort", "jax", "jnp.argsort", False, lambda v: jnp.argsort(v, axis=-1))
        # Every cell of the shape is compiled first, then timed in rounds (`fastest_rounds`); the
        # rows keep the cells' order, timed ones filled in after the rounds.
        row = {"op": "argsort", "library": "jax", "method": "jnp.argsort", "batch": b, "n": n}
        shape_rows = [row]
        entries = [(row, *prepare_jax_cell(argsort, x, c, grad=False))]
        for cell in cells:
            row = {"op": cell.op, "library": cell.library, "method": cell.label, "batch": b, "n": n}
            why = skip_reason(cell, shape, a.mem_cap, a.work_cap)
            if why is None and cell.op == "topk" and n < 2:
                why = "k needs n >= 2"
            if why:
                _log(f"skip {cell.library} {cell.op} {cell.label} {b}×{n}: {why}")
                shape_rows.append({**row, "skipped": why})
                continue
            try:
                if cell.jax_fn is not None:
                    info, calls = prepare_jax_cell(cell, x, c, grad)
                else:
                    info, calls = prepare_torch_cell(cell, np.asarray(x), np.asarray(c), grad)
            except Exception as e:  # a peer that fails on a shape: say so, keep going
                msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                _log(f"fail {cell.library} {cell.op} {cell.label} {b}×{n}: {msg}")
                shape_rows.append({**row, "skipped": f"failed: {msg}"})
                continue
            shape_rows.append(row)
            entries.append((row, info, calls))
        flat = {
            (i, k): call for i, (_, _, calls) in enumerate(entries) for k, call in calls.items()
        }
        best = fastest_rounds(flat, a.rounds, **reps)
        floor = best[0, "fwd_s"]
        _log(f"{b}×{n}: jnp.argsort {1e3 * floor:.3g} ms")
        for i, (row, info, calls) in enumerate(entries):
            res = {**info, **{k: best[i, k] for k in calls}}
            res["fwd_ratio"] = res["fwd_s"] / floor
            if "fwd_bwd_s" in res:
                res["fwd_bwd_ratio"] = res["fwd_bwd_s"] / floor
            row.update(res)
            if row["op"] == "argsort":
                continue
            _log(
                f"{row['library']:14s} {row['op']:5s} {row['method']:20s} {b}×{n}: "
                f"fwd {1e3 * res['fwd_s']:.3g} ms ({res['fwd_ratio']:.3g}× argsort)"
                + (f", fwd+bwd {1e3 * res['fwd_bwd_s']:.3g} ms" if "fwd_bwd_s" in res else "")
            )
        rows.extend(shape_rows)
        _meta.write_record(
            out, meta, rows
        )  # after every shape: a stopped run keeps what it measured
    print(table(rows))
    _meta.write_record(out, meta, rows)
    _log(f"wrote {out}")
    return {"meta": meta, "rows": rows}


if __name__ == "__main__":
    main()
