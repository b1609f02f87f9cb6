"""Peak memory of the blocked pairwise soft ranks, forward + backward, on one long list.

Each method runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its own.
Prints a table and writes JSON (default ``benchmarks/results/memory_pairwise.json``).

    python benchmarks/memory_pairwise.py                    # sigmoid and probabilistic, n = 100,000
    python -m benchmarks.memory_pairwise --methods sigmoid --n 20000

The file has the layout of ``benchmarks/_meta.py``.
"""

import argparse
import json
import subprocess
import sys

try:  # python -m benchmarks.memory_pairwise
    from benchmarks import _meta
except ImportError:  # python benchmarks/memory_pairwise.py
    import _meta

CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
from rank_relax_jax import soft_rank

method, n = sys.argv[1], int(sys.argv[2])
x = jax.random.normal(jax.random.key(0), (n,), jnp.float32)
w = jax.random.normal(jax.random.key(1), (n,), jnp.float32)
step = jax.jit(jax.value_and_grad(
    lambda v: jnp.sum(soft_rank(v, method=method, temperature=0.1) * w)))
compiled = step.lower(x).compile()
m = compiled.memory_analysis()
t0 = time.perf_counter()
val, g = compiled(x)
g.block_until_ready()
seconds = time.perf_counter() - t0
print(json.dumps({
    "method": method, "n": n, "fwd_bwd_s": seconds,
    "xla_temp_MiB": m.temp_size_in_bytes / 2**20,
    "max_rss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "finite_gradient": bool(jnp.all(jnp.isfinite(g))),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["sigmoid", "probabilistic"])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--out", default="benchmarks/results/memory_pairwise.json")
    args = parser.parse_args()
    rows = []
    for method in args.methods:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, method, str(args.n)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(_meta.markdown_table(rows, ["method", "n", "xla_temp_MiB", "max_rss_GiB", "fwd_bwd_s"]))
    _meta.write(args.out, rows, dtype="float32", temperature=0.1, step="jit(value_and_grad)")


if __name__ == "__main__":
    main()
