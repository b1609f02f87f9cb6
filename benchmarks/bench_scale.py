"""Scale benchmark: large inputs, time and peak memory per case, compile time per operator.

Cases (each runs in its own subprocess, so every peak-memory figure is that case's alone):

* ``isotonic_1d``: isotonic ``soft_rank`` forward + backward at n = 1,000,000;
* ``isotonic_2d``: the same on a (1,000, 1,000) batch;
* ``gumbel_masks``: ``gumbel_attention_mask`` (k = 5) forward + backward for 100,000 lists of 100;
* ``sigmoid_100k``: ``sigmoid`` soft rank forward + backward at n = 100,000 (pairwise, in blocks:
  O(n) memory for O(n²) work);
* ``compile``: compile time (``jit(...).lower(...).compile()``) of every public operator, forward
  and forward + backward, on a (32, 64) float32 input.

Time is the median of ``--repeats`` runs after a warm-up (compile excluded, reported apart); peak
memory is the process's peak resident set size, read from ``/proc/self/status`` (``VmHWM``) and
``resource.getrusage`` (``ru_maxrss``), minus nothing: it includes the Python interpreter and
JAX (about 0.3-0.5 GiB; the ``baseline`` case measures it). Not a test.

Usage::

    python benchmarks/bench_scale.py                      # every case, table + JSON
    python benchmarks/bench_scale.py --cases isotonic_1d  # some cases
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
CASES = ("baseline", "isotonic_1d", "isotonic_2d", "gumbel_masks", "sigmoid_100k", "compile")


def _peak_rss_mib() -> dict[str, float]:
    hwm = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"vmhwm_mib": hwm, "ru_maxrss_mib": maxrss}


def _timed(f, args, repeats):
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(f).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "run_s": statistics.median(times), "runs": times}


def _fwd_bwd(op):
    import jax
    import jax.numpy as jnp

    def f(x, *rest):
        def loss(x):
            out = op(x, *rest)
            return jnp.sum(out * jnp.sin(jnp.arange(out.shape[-1], dtype=out.dtype)))

        return jax.value_and_grad(loss)(x)

    return f


def run_case(name: str, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import rank_relax_jax as rr

    rng = np.random.default_rng(0)
    out: dict = {"case": name}
    if name == "baseline":
        jax.block_until_ready(jnp.ones(3) + 1)
    elif name == "isotonic_1d":
        x = jnp.asarray(rng.normal(size=1_000_000), jnp.float32)
        out |= _timed(_fwd_bwd(lambda x: rr.soft_rank(x, temperature=1.0)), (x,), repeats)
        out["shape"] = [1_000_000]
    elif name == "isotonic_2d":
        x = jnp.asarray(rng.normal(size=(1000, 1000)), jnp.float32)
        out |= _timed(_fwd_bwd(lambda x: rr.soft_rank(x, temperature=1.0)), (x,), repeats)
        out["shape"] = [1000, 1000]
    elif name == "gumbel_masks":
        x = jnp.asarray(rng.normal(size=(100_000, 100)), jnp.float32)
        op = _fwd_bwd(lambda x, key: rr.gumbel_attention_mask(key, x, 5, temperature=0.5))
        out |= _timed(op, (x, jax.random.key(0)), repeats)
        out["shape"] = [100_000, 100]
    elif name == "sigmoid_100k":
        x = jnp.asarray(rng.normal(size=100_000), jnp.float32)
        op = _fwd_bwd(lambda x: rr.soft_rank(x, method="sigmoid", temperature=0.1))
        out |= _timed(op, (x,), repeats)
        out["shape"] = [100_000]
    elif name == "compile":
        out["compile_s"] = _compile_times()
    else:
        raise SystemExit(f"unknown case {name!r}; expected one of {CASES}")
    out |= _peak_rss_mib()
    return out


def _compile_times() -> dict[str, dict[str, float]]:
    import jax
    import jax.numpy as jnp

    import rank_relax_jax as rr
    from rank_relax_jax import methods

    x = jnp.zeros((32, 64), jnp.float32)
    key = jax.random.key(0)
    ops = {}
    for m in methods.methods("rank"):
        ops[f"soft_rank[{m}]"] = lambda x, m=m: rr.soft_rank(x, method=m)
    for m in methods.methods("sort"):
        ops[f"soft_sort[{m}]"] = lambda x, m=m: rr.soft_sort(x, method=m)
    for m in methods.methods("permutation"):
        ops[f"soft_permutation[{m}]"] = lambda x, m=m: rr.soft_permutation(x, method=m)
    for m in methods.methods("topk"):
        ops[f"soft_topk_mask[{m}]"] = lambda x, m=m: rr.soft_topk_mask(x, 8, method=m)
    ops |= {
        "rank": rr.rank,
        "topk_mask": lambda x: rr.topk_mask(x, 8),
        "gumbel_softmax": lambda x: rr.gumbel_softmax(key, x),
        "relaxed_topk_gumbel": lambda x: rr.relaxed_topk_gumbel(key, x, 8),
        "relaxed_subset_sample": lambda x: rr.relaxed_subset_sample(key, x, 8),
        "gumbel_topk": lambda x: rr.gumbel_topk(key, x, 8).mask,
        "gumbel_attention_mask": lambda x: rr.gumbel_attention_mask(key, x, 8),
        "perturbed_topk_mask": lambda x: rr.perturbed_topk_mask(key, x, 8, num_samples=100),
        "spearman_loss": lambda x: rr.losses.spearman_loss(x, x, reduce="none"),
        "ndcg_loss": lambda x: rr.losses.ndcg_loss(x, jnp.abs(x), reduce="none"),
        "listmle_loss": lambda x: rr.losses.listmle_loss(x, x, reduce="none"),
        "ndcg": lambda x: rr.metrics.ndcg(x, jnp.abs(x)),
        "kendall_tau": lambda x: rr.metrics.kendall_tau(x, x),
    }
    times = {}
    for name, op in ops.items():
        row = {}
        for mode, f in (("fwd", op), ("fwd_bwd", _fwd_bwd(op))):
            t0 = time.perf_counter()
            jax.jit(f).lower(x).compile()
            row[mode] = time.perf_counter() - t0
        times[name] = row
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.repeats)))
        return
    results = []
    for name in args.cases.split(","):
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name, "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            env=env,
        )
        wall = time.perf_counter() - t0
        if proc.returncode:
            results.append({"case": name, "error": proc.stderr[-2000:], "wall_s": wall})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]) | {"wall_s": wall})
        r = results[-1]
        if "error" in r:
            print(f"{name:14s} FAILED: {r['error'][-300:]}")
        elif name == "compile":
            print(f"{'compile (s)':30s} {'fwd':>7s} {'fwd+bwd':>8s}")
            for op, t in r["compile_s"].items():
                print(f"  {op:28s} {t['fwd']:7.2f} {t['fwd_bwd']:8.2f}")
        else:
            run_s = f"{r['run_s']:.3f}" if "run_s" in r else "-"
            comp = f"{r['compile_s']:.2f}" if "compile_s" in r else "-"
            print(
                f"{name:14s} run {run_s:>8s} s  compile {comp:>6s} s  peak RSS "
                f"{r['vmhwm_mib']:.0f} MiB (ru_maxrss {r['ru_maxrss_mib']:.0f} MiB)"
            )
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "python": platform.python_version(),
    }
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    print(f"load average {meta['loadavg_at_end']}; wrote {args.out}")


if __name__ == "__main__":
    main()
