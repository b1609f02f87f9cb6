"""Benchmark of the Gumbel relaxed top-k samplers against ``jax.lax.top_k`` (the floor).

For each shape (batch, n, k) and op it measures, in float32:

* compile time of the jitted forward and of the jitted forward+backward
  (``lower(...).compile()``, wall clock);
* steady-state forward and forward+backward time (median of repeated calls after warm-up;
  forward+backward = ``grad`` of ``sum(mask * w)`` with respect to the scores);
* the compiled temporary memory (``compile().memory_analysis().temp_size_in_bytes``).

Ops: ``relaxed_topk_gumbel`` (max of k Gumbel-softmax draws, vmapped), ``relaxed_subset_sample``
(k successive softmaxes in a ``lax.scan``), ``gumbel_topk`` (exact sample, forward only) and
``jax.lax.top_k`` on the same scores (its "backward" differentiates the selected values), and
one Gumbel draw of the scores' shape (the cost of the noise alone, forward only). The
key and the scores are jit arguments, so nothing is constant-folded.

Usage: ``python benchmarks/bench_gumbel.py [--quick] [--out benchmarks/results/gumbel.json]`` (or
``python -m benchmarks.bench_gumbel``); the file has the layout of ``benchmarks/_meta.py``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

try:  # python -m benchmarks.bench_gumbel
    from benchmarks import _meta
    from benchmarks._timing import time_calls
except ImportError:  # python benchmarks/bench_gumbel.py
    import _meta
    from _timing import time_calls

from rank_relax_jax.gumbel import gumbel_topk, relaxed_subset_sample, relaxed_topk_gumbel

SHAPES = [(1024, 100, 5), (32, 10_000, 50)]
TEMPERATURE = 0.5


def _ops(k):
    def topk_gumbel(key, x):
        return relaxed_topk_gumbel(key, x, k, temperature=TEMPERATURE)

    def subset(key, x):
        return relaxed_subset_sample(key, x, k, temperature=TEMPERATURE)

    def exact_sample(key, x):
        return gumbel_topk(key, x, k).mask

    def lax_top_k(key, x):
        del key
        return jax.lax.top_k(x, k)[0]

    def noise(key, x):
        return x + jax.random.gumbel(key, x.shape, x.dtype)

    return {
        "relaxed_topk_gumbel": (topk_gumbel, True),
        "relaxed_subset_sample": (subset, True),
        "gumbel_topk (exact)": (exact_sample, False),
        "lax.top_k (floor)": (lax_top_k, True),
        "one Gumbel draw (noise floor)": (noise, False),
    }


def _timed(fn, *args, min_time=1.0, min_reps=5, max_reps=200):
    def call():
        return jax.block_until_ready(fn(*args))

    return time_calls(call, min_time=min_time, min_reps=min_reps, max_reps=max_reps)["median_s"]


def _compile(fn, *args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    return compiled, seconds, temp


def bench(shapes, min_time):
    rows = []
    for batch, n, k in shapes:
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(batch, n)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(batch, n)), jnp.float32)
        key = jax.random.key(0)
        for name, (op, differentiable) in _ops(k).items():
            fwd, c_fwd, m_fwd = _compile(op, key, x)
            t_fwd = _timed(fwd, key, x, min_time=min_time)
            row = {
                "batch": batch,
                "n": n,
                "k": k,
                "op": name,
                "fwd_ms": 1e3 * t_fwd,
                "compile_fwd_s": c_fwd,
                "temp_fwd_MiB": None if m_fwd is None else m_fwd / 2**20,
                "fwd_bwd_ms": None,
                "compile_fwd_bwd_s": None,
                "temp_fwd_bwd_MiB": None,
            }
            if differentiable:
                if name.startswith("lax.top_k"):

                    def loss(key, v, op=op):
                        return jnp.sum(op(key, v))
                else:

                    def loss(key, v, op=op, w=w):
                        return jnp.sum(op(key, v) * w)

                grad = jax.grad(loss, argnums=1)
                both, c_both, m_both = _compile(grad, key, x)
                row["fwd_bwd_ms"] = 1e3 * _timed(both, key, x, min_time=min_time)
                row["compile_fwd_bwd_s"] = c_both
                row["temp_fwd_bwd_MiB"] = None if m_both is None else m_both / 2**20
            rows.append(row)
            print(_fmt(row), flush=True)
    return rows


def _num(v, fmt):
    return "—" if v is None else format(v, fmt)


HEADER = (
    "| (batch, n, k) | op | fwd ms | fwd+bwd ms | compile fwd s | compile fwd+bwd s | "
    "temp fwd MiB | temp fwd+bwd MiB |\n|---|---|---|---|---|---|---|---|"
)


def _fmt(r):
    return (
        f"| ({r['batch']}, {r['n']}, {r['k']}) | {r['op']} | {_num(r['fwd_ms'], '.2f')} | "
        f"{_num(r['fwd_bwd_ms'], '.2f')} | {_num(r['compile_fwd_s'], '.2f')} | "
        f"{_num(r['compile_fwd_bwd_s'], '.2f')} | {_num(r['temp_fwd_MiB'], '.1f')} | "
        f"{_num(r['temp_fwd_bwd_MiB'], '.1f')} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, short timing")
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "gumbel.json")
    )
    args = parser.parse_args()
    shapes = [(64, 100, 5), (4, 1000, 10)] if args.quick else SHAPES
    print(HEADER)
    rows = bench(shapes, min_time=0.2 if args.quick else 1.0)
    print("\n" + HEADER)
    for r in rows:
        print(_fmt(r))
    if not args.quick:
        _meta.write(
            args.out,
            rows,
            dtype="float32",
            temperature=TEMPERATURE,
            timing="median wall time of repeated calls after one warm-up; compile = lower+compile",
        )


if __name__ == "__main__":
    main()
