"""One short list on CPU: where isotonic soft_rank spends its time, and what the runtime costs.

At one list of 100 or 1,000 the isotonic method does little arithmetic; its time is XLA:CPU's
per-program and per-operation costs. This script measures them, fwd+bwd (``grad`` of
``sum(op(x) * w)``, float32, temperature 1), in three process configurations:

* ``default``: as a user runs it;
* ``one-core``: the process pinned to one CPU before JAX starts (``os.sched_setaffinity``,
  Linux): XLA:CPU's thunk executor runs a program with many operations on large-enough buffers
  concurrently and hands work to a pool thread; pinned, that hand-off is a context switch on
  the same core instead of a wake-up on another one;
* ``small-loops``: ``XLA_FLAGS`` with ``--xla_backend_extra_options=`` and
  ``xla_cpu_small_while_loop_byte_threshold=1000000000`` (`SMALL_LOOPS`), which lets XLA
  compile whole while loops (those without scatter, sort or custom calls) into one kernel
  instead of one runtime call per operation and iteration.

Cells: isotonic L2 and KL, the same ops with the solver replaced by singleton blocks
(``no-solver``: what everything around the solver costs; wrong values, times only), the pairwise
``sigmoid`` method, Rax ``approx_ranks`` (the same pairwise relaxation) and torchsort L2 and KL
on one thread, where installed; and, in the default
configuration, the isotonic solver (`rank_relax_jax.methods._pav.pav`, L2 and KL) whole, without
its merge levels, without its chunk solver, and without both (a diagnostic: it patches the two
private stages out, so those programs compute wrong blocks, and only their times are kept).

Each configuration runs in its own process; configurations alternate for ``--rounds`` rounds
and every cell keeps the fastest round's median (this VM's speed drifts between processes).
Usage::

    python benchmarks/bench_small_lists.py            # writes results/small_lists.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import subprocess
import sys

try:  # python -m benchmarks.bench_small_lists
    from benchmarks import _meta
    from benchmarks._timing import time_calls
except ImportError:  # python benchmarks/bench_small_lists.py (and the workers)
    import _meta
    from _timing import time_calls

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ("default", "one-core", "small-loops")
SMALL_LOOPS = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000000"


def _median_s(call, min_time: float) -> float:
    return time_calls(call, min_time=min_time, min_reps=5, max_reps=5000)["median_s"]


def _singletons(kind, stats, valid, chunk=None, flat=None):
    """A stand-in for `_pav.pav` that makes every entry its own block (wrong, but loop-free)."""
    import jax.numpy as jnp

    _singletons.traced += 1
    r, n = stats[0].shape
    pos = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (r, n))
    return pos, pos + 1, (stats[0], stats[1] if kind == "kl" else jnp.ones_like(stats[0]))


_singletons.traced = 0


def _worker(config: str, sizes: list[int], min_time: float) -> dict:
    """Times every cell in this process (configured before JAX is imported)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rank_relax_jax.methods import _pav
    from rank_relax_jax.ranking import soft_rank

    def ready(f, *args):
        return lambda: jax.block_until_ready(f(*args))

    out: dict = {}
    for n in sizes:
        kx, kw = jax.random.split(jax.random.key(n))
        x = jax.random.normal(kx, (1, n), jnp.float32)
        w = jax.random.normal(kw, (1, n), jnp.float32)
        ops = {
            "isotonic-l2": lambda x: soft_rank(x, regularization="l2"),
            "isotonic-kl": lambda x: soft_rank(x, regularization="kl"),
            "sigmoid": lambda x: soft_rank(x, method="sigmoid"),
        }
        try:
            import rax

            ops["rax-approx"] = lambda x: rax.utils.approx_ranks(x)
        except ImportError:
            pass

        def fwd_bwd(op, x=x, w=w):
            return jax.jit(jax.grad(lambda x: jnp.sum(op(x) * w))).lower(x).compile()

        for name, op in ops.items():
            out[f"{name} {n}"] = _median_s(ready(fwd_bwd(op), x), min_time)
        # The isotonic op with its solver replaced by singleton blocks (times only): the cost
        # of everything around the solver (sort, kernels, derivatives, dispatch).
        solver = _pav.pav
        _pav.pav = _singletons
        jax.clear_caches()  # the library's jitted functions: trace them again with the stand-in
        try:
            for reg in ("l2", "kl"):
                traced = _singletons.traced
                f = fwd_bwd(functools.partial(soft_rank, regularization=reg))
                if _singletons.traced == traced:  # a cached trace kept the real solver
                    raise RuntimeError("the no-solver program does not use the stand-in")
                out[f"isotonic-{reg} no-solver {n}"] = _median_s(ready(f, x), min_time)
        finally:
            _pav.pav = solver
            jax.clear_caches()
        try:
            import torch
            import torchsort
        except ImportError:
            torch = None
        if torch is not None:
            torch.set_num_threads(1)
            xt, wt = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(w))
            for reg in ("l2", "kl"):

                def run(reg=reg, xt=xt, wt=wt):
                    xg = xt.clone().requires_grad_(True)
                    rank = torchsort.soft_rank(xg, regularization=reg, regularization_strength=1.0)
                    (rank * wt).sum().backward()

                out[f"torchsort-{reg} {n}"] = _median_s(run, min_time)
        if config != "default":
            continue
        # The solver alone, and with its stages patched out (times only).
        y = -jnp.sort(x, axis=-1) + jnp.arange(n, 0, -1, dtype=jnp.float32)
        merge_levels, chunk_pav = _pav._merge_levels, _pav._chunk_pav

        def no_merges(kind, base, levels, start, end, block, suf, pre, *rest):
            return start, end, block, suf, pre

        def no_chunks(kind, elem, live, chunk):
            pos = jnp.broadcast_to(jnp.arange(chunk, dtype=jnp.int32), elem[0].shape)
            return pos, pos + 1, elem

        stages = {
            "": (merge_levels, chunk_pav),
            " no-merges": (no_merges, chunk_pav),
            " no-chunks": (merge_levels, no_chunks),
            " neither": (no_merges, no_chunks),
        }
        for kind in ("l2", "kl"):
            stats = (y, jnp.ones_like(y) if kind == "l2" else jnp.zeros_like(y))
            for label, (ml, cp) in stages.items():
                _pav._merge_levels, _pav._chunk_pav = ml, cp
                try:
                    jax.clear_caches()  # `pav` is jitted: trace it again with these stages
                    f = jax.jit(lambda *s, k=kind: _pav.pav(k, s, None)).lower(*stats).compile()
                finally:
                    _pav._merge_levels, _pav._chunk_pav = merge_levels, chunk_pav
                out[f"pav-{kind}{label} {n}"] = _median_s(ready(f, *stats), min_time)
        jax.clear_caches()
    return out


def _run_worker(config: str, args) -> dict | None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if config == "small-loops":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + SMALL_LOOPS).strip()
    cmd = [sys.executable, __file__, "--worker", config, "--sizes", args.sizes,
           "--min-time", str(args.min_time)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"# {config}: worker failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="comma-separated list lengths")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per cell")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "small_lists.json"))
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    if args.worker:  # a child process: configure, then import JAX
        if args.worker == "one-core":
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        print(json.dumps(_worker(args.worker, sizes, args.min_time)))
        return {}

    configs = args.configs.split(",")
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configs {sorted(unknown)}; choose from {CONFIGS}")
    if "one-core" in configs and not hasattr(os, "sched_setaffinity"):
        print("# one-core needs os.sched_setaffinity (Linux); skipped")
        configs.remove("one-core")
    best: dict = {}
    for _ in range(args.rounds):
        for config in configs:
            cells = _run_worker(config, args)
            if cells is None:
                raise SystemExit(1)
            for cell, t in cells.items():
                best[cell, config] = min(best.get((cell, config), t), t)

    names = list(dict.fromkeys(cell for cell, _ in best))
    rows = []
    print("fwd+bwd, one list: fastest round's median ms")
    print("| op | n | " + " | ".join(configs) + " |")
    print("|---|---|" + "---|" * len(configs))
    for cell in names:
        op, n = cell.rsplit(" ", 1)
        times = {c: best.get((cell, c)) for c in configs}
        rows.append({"op": op, "n": int(n), **{f"{c}_s": t for c, t in times.items()}})
        shown = " | ".join("—" if t is None else f"{t * 1e3:.3f}" for t in times.values())
        print(f"| {op} | {n} | {shown} |")
    versions = {d: _meta._version(d) for d in ("rax", "torch", "torchsort")}
    _meta.write(args.out, rows, versions=versions, configs=",".join(configs), rounds=args.rounds,
                min_time=args.min_time, small_loops_flag=SMALL_LOOPS)  # fmt: skip
    return {"rows": rows}


if __name__ == "__main__":
    main()
