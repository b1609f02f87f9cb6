"""Differentiable sorting networks against the isotonic soft sort, in one run.

Times, in float32 on the default JAX device, the forward pass and forward + backward (``grad``
of ``sum(op(x) * w)``) of ``soft_sort`` and ``soft_rank`` for ``method="network"`` (bitonic and
odd-even, logistic sigmoid) and ``method="isotonic"``, next to a jitted ``jnp.argsort``, at one
list of n entries. All functions are compiled first, then called round-robin; the minimum over
rounds is reported (with the median), which stays meaningful on a loaded machine. Odd-even
costs O(n²) and is skipped above ``--odd-even-limit``. Usage::

    python benchmarks/bench_network.py --n 1000 100000
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from rank_relax_jax import ranking


def _interleaved(fns, x, rounds):
    """Min and median seconds of each compiled fn, called round-robin (fair under load)."""
    for f in fns.values():
        jax.block_until_ready(f(x))  # compile + warm up
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(x))
            times[name].append(time.perf_counter() - t0)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 100000])
    parser.add_argument("--odd-even-limit", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, device {jax.devices()[0]}, loadavg {os.getloadavg()}")
    configs = [
        ("isotonic", {"method": "isotonic"}),
        ("network-bitonic", {"method": "network", "network": "bitonic"}),
        ("network-odd_even", {"method": "network", "network": "odd_even"}),
    ]
    print("min (median) ms over interleaved rounds; ratio = min / min of jnp.argsort")
    for n in args.n:
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(1, n)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(1, n)), jnp.float32)
        fns = {"argsort": jax.jit(jnp.argsort)}
        for op_name, op in (("sort", ranking.soft_sort), ("rank", ranking.soft_rank)):
            for name, kw in configs:
                if name.endswith("odd_even") and n > args.odd_even_limit:
                    continue

                def f(v, op=op, kw=kw):
                    return op(v, temperature=0.1, **kw)

                fns[f"{op_name} {name} fwd"] = jax.jit(f)
                fns[f"{op_name} {name} fwd+bwd"] = jax.jit(
                    jax.grad(lambda v, f=f, w=w: jnp.sum(f(v) * w))
                )
        rounds = args.rounds if n <= 1000 else max(3, args.rounds // 3)
        res = _interleaved(fns, x, rounds)
        base = res["argsort"][0]
        for name, (lo, med) in res.items():
            print(f"n={n:<7d} {name:<30s} {lo * 1e3:10.3f} ({med * 1e3:10.3f})  {lo / base:7.1f}x")
        print(f"loadavg {os.getloadavg()}")


if __name__ == "__main__":
    main()
