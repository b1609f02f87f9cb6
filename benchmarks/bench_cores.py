"""Every core of a CPU: isotonic soft_rank under ``jax.shard_map`` against torchsort's threads.

XLA:CPU runs one program's sorts and loops on one core (a single-device program: the sort and
the solver's loop steps are too small to be split across threads), while torchsort spreads
the rows of a batch over OpenMP threads. A fair comparison therefore has two halves, both
measured here in one process, in interleaved rounds (the fastest round's median of each cell,
as in ``ab_solver.py``: this VM's speed drifts between processes):

* **one core**: ``soft_rank(method="isotonic")`` as a single-device program (a ``shard_map``
  over a one-device mesh, which is exactly the one-device program), against torchsort with
  ``torch.set_num_threads(1)``;
* **every core**: the batch split over ``D`` host CPU devices by ``jax.shard_map`` (each device
  solves its rows; no collective), against torchsort with ``D`` threads. A batch that ``D``
  does not divide (one list) cannot be split: its row repeats the one-device time
  (``split`` False), against torchsort with ``D`` threads.

``D`` host devices need ``jax.config.update("jax_num_cpu_devices", D)`` before JAX starts (this
script does it; ``--devices``, default the number of cores). fwd+bwd: ``grad`` of
``sum(soft_rank(x) * w)``; torchsort: ``soft_rank(x, regularization_strength=1.0)`` with the
same regularization and ``.backward()``. Usage::

    python benchmarks/bench_cores.py                       # writes results/cores.json
    python benchmarks/bench_cores.py --shapes 128x1000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import pathlib

try:  # python -m benchmarks.bench_cores
    from benchmarks._timing import fastest_rounds
except ImportError:  # python benchmarks/bench_cores.py
    from _timing import fastest_rounds

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHAPES = "1x1000,1x10000,1x100000,128x100,1024x100,128x1000,16x10000"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shapes", default=SHAPES)
    parser.add_argument("--regularizations", default="l2,kl")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per cell and round")
    parser.add_argument("--no-torch", action="store_true", help="JAX rows only")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cores.json"))
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_num_cpu_devices", args.devices)
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    try:  # python -m benchmarks.bench_cores
        from benchmarks import _meta
    except ImportError:  # python benchmarks/bench_cores.py
        import _meta
    from rank_relax_jax.ranking import soft_rank

    devices = jax.devices()
    if len(devices) != args.devices:
        raise SystemExit(f"JAX started before --devices could apply: {len(devices)} devices")
    meshes = {
        1: jax.make_mesh((1,), ("data",), devices=devices[:1]),
        args.devices: jax.make_mesh((args.devices,), ("data",), devices=devices),
    }
    torch = None
    if not args.no_torch:
        try:
            import torch
            import torchsort
        except ImportError as err:
            print(f"# torchsort unavailable: {err}")
            torch = None

    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    regs = args.regularizations.split(",")
    cells = {}
    for shape in shapes:
        kx, kw = jax.random.split(jax.random.key(sum(shape)))
        x = jax.random.normal(kx, shape, jnp.float32)
        w = jax.random.normal(kw, shape, jnp.float32)
        for reg in regs:

            def grad(x, w, reg=reg):
                f = lambda x: jnp.sum(soft_rank(x, temperature=1.0, regularization=reg) * w)  # noqa: E731
                return jax.grad(f)(x)

            for d, mesh in meshes.items():
                if shape[0] % d:
                    continue
                sh = NamedSharding(mesh, P("data"))
                xs, ws = jax.device_put(x, sh), jax.device_put(w, sh)
                spec = P("data")
                program = jax.jit(
                    jax.shard_map(grad, mesh=mesh, in_specs=(spec, spec), out_specs=spec)
                )
                program = program.lower(xs, ws).compile()
                cells["jax", d, shape, reg] = lambda p=program, a=xs, b=ws: jax.block_until_ready(
                    p(a, b)
                )
            if torch is not None:
                xt, wt = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(w))

                def run(threads, xt=xt, wt=wt, reg=reg):
                    torch.set_num_threads(threads)
                    xg = xt.clone().requires_grad_(True)
                    out = torchsort.soft_rank(xg, regularization=reg, regularization_strength=1.0)
                    (out * wt).sum().backward()
                    return xg.grad

                for d in meshes:
                    cells["torchsort", d, shape, reg] = lambda d=d, run=run: run(d)
    best = fastest_rounds(cells, args.rounds, min_time=args.min_time, min_reps=3, max_reps=500)

    rows = []
    head = "| (batch, n) | regularization | cores | isotonic ms | torchsort ms | ratio |"
    print(head)
    print("|---" * 6 + "|")
    for shape in shapes:
        for reg in regs:
            for d in meshes:
                split = ("jax", d, shape, reg) in best
                ours = best.get(("jax", d if split else 1, shape, reg))
                theirs = best.get(("torchsort", d, shape, reg))
                ratio = ours / theirs if theirs else None
                rows.append(
                    {"batch": shape[0], "n": shape[1], "regularization": reg, "cores": d,
                     "split": split, "isotonic_s": ours, "torchsort_s": theirs, "ratio": ratio}
                )  # fmt: skip
                t = f"{theirs * 1e3:.2f}" if theirs else "—"
                r = f"{ratio:.2f}" if ratio else "—"
                note = "" if split else " (one device)"
                print(f"| {shape} | {reg} | {d} | {ours * 1e3:.2f}{note} | {t} | {r} |")
    versions = {"torch": _meta._version("torch"), "torchsort": _meta._version("torchsort")}
    _meta.write(
        args.out, rows, devices=args.devices, rounds=args.rounds, min_time=args.min_time,
        torch_versions=str(versions),
    )  # fmt: skip
    return {"rows": rows}


if __name__ == "__main__":
    main()
