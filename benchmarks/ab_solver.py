"""Same-process A/B of the isotonic PAV solver: this checkout's against another version's.

Wall times on a shared machine drift between processes (on the 2-core VM of docs/performance.md
the same compiled program took 8.2 ms in one process and 14.6 ms in the next, nothing else
running), so comparing two library versions in two processes can show a change that is not
there. This script loads a second copy of ``rank_relax_jax/methods/_pav.py`` (from a file or a
git revision) beside this checkout's, compiles ``jax.grad`` of ``soft_rank(method="isotonic")``
once per solver, shape and regularization, then times the compiled programs in interleaved
rounds and keeps each cell's fastest round (the median of its calls). Only the solver is
swapped: the sort, the kernels around it and the derivatives are this checkout's in both.

Usage::

    python benchmarks/ab_solver.py --old 3d0e7a6            # a git revision of this repository
    python benchmarks/ab_solver.py --old path/to/_pav.py --shapes 1x1000,128x1000 --rounds 8

Prints a table and writes JSON (``--out``, default ``benchmarks/results/ab_solver.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import statistics
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp

try:  # python -m benchmarks.ab_solver
    from benchmarks import _meta
except ImportError:  # python benchmarks/ab_solver.py
    import _meta

from rank_relax_jax.methods import _pav, isotonic
from rank_relax_jax.ranking import soft_rank

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOLVER = "rank_relax_jax/methods/_pav.py"
SHAPES = "1x1000,1x10000,1x100000,128x1000,16x10000,1024x100"


def _load(source: str, name: str):
    """The ``_pav`` module from a file, or from ``git show <source>:<SOLVER>``."""
    path = pathlib.Path(source)
    if path.is_file():
        return _exec(path, name)
    text = subprocess.run(
        ["git", "show", f"{source}:{SOLVER}"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "_pav.py"
        path.write_bytes(text)
        return _exec(path, name)


def _exec(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _use(module) -> None:
    isotonic.proj_l2, isotonic.proj_kl, isotonic.rowwise = (
        module.proj_l2,
        module.proj_kl,
        module.rowwise,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="a file or a git revision")
    parser.add_argument("--shapes", default=SHAPES)
    parser.add_argument("--regularizations", default="l2,kl")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--min-time", type=float, default=0.15, help="seconds per cell and round")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ab_solver.json"))
    args = parser.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    regs = args.regularizations.split(",")
    solvers = {"old": _load(args.old, "_pav_old"), "new": _pav}
    compiled = {}
    try:
        for name, module in solvers.items():
            _use(module)
            jax.clear_caches()
            for shape in shapes:
                kx, kw = jax.random.split(jax.random.key(sum(shape)))
                x = jax.random.normal(kx, shape, jnp.float32)
                w = jax.random.normal(kw, shape, jnp.float32)
                for reg in regs:

                    def loss(x, w, reg=reg):
                        return jnp.sum(soft_rank(x, temperature=1.0, regularization=reg) * w)

                    program = jax.jit(jax.grad(loss)).lower(x, w).compile()
                    compiled[name, shape, reg] = (program, x, w)
    finally:
        _use(_pav)
        jax.clear_caches()
    best: dict = {}
    for _ in range(args.rounds):
        for key, (program, x, w) in compiled.items():
            jax.block_until_ready(program(x, w))
            times, start = [], time.perf_counter()
            while len(times) < 3 or (
                time.perf_counter() - start < args.min_time and len(times) < 500
            ):
                t0 = time.perf_counter()
                jax.block_until_ready(program(x, w))
                times.append(time.perf_counter() - t0)
            median = statistics.median(times)
            best[key] = min(best.get(key, median), median)
    rows = []
    print("| (batch, n) | regularization | old ms | new ms | new / old |")
    print("|---|---|---|---|---|")
    for shape in shapes:
        for reg in regs:
            old, new = best["old", shape, reg], best["new", shape, reg]
            rows.append(
                {"batch": shape[0], "n": shape[1], "regularization": reg,
                 "old_s": old, "new_s": new, "ratio": new / old}
            )  # fmt: skip
            print(f"| {shape} | {reg} | {old * 1e3:.3f} | {new * 1e3:.3f} | {new / old:.2f} |")
    _meta.write(args.out, rows, old=args.old, rounds=args.rounds, min_time=args.min_time)
    return {"rows": rows}


if __name__ == "__main__":
    main()
