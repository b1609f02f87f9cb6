"""Benchmark of the library's sort primitive (``rank_relax_jax._sort.argsort``) on CPU.

Two parts, float32, steady-state median and compile time (first call), on the default device:

1. **argsort** at (100000,), (128, 1000), (1024, 100), (1, 1000000): the primitive on its
   default path (one packed ``uint64`` key on CPU), the same with a ``where`` mask, the
   comparator path it replaced (``lax.sort`` of (key, positions), forced), ``jnp.argsort``, and
   NumPy's stable argsort (host, no copy timed).
2. **isotonic** ``soft_rank`` / ``soft_sort`` forward and forward+backward (``grad`` of
   ``sum(op(x) * w)``) at the shapes of benchmarks/bench_isotonic.py, after (default) and before
   (the comparator sort forced, which also restores the isotonic short-row threshold). torchsort
   is timed when importable (see benchmarks/install_torchsort.sh); otherwise the script says so.

Usage::

    python benchmarks/bench_sort.py            # full run, writes results/sort.json
    python benchmarks/bench_sort.py --quick    # small shapes, smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import sys

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from _timing import time_calls

ARGSORT_SHAPES = [(100000,), (128, 1000), (1024, 100), (1, 1000000)]
ISOTONIC_SHAPES = [
    (1, 100),
    (1, 1000),
    (1, 10000),
    (1, 100000),
    (128, 100),
    (1024, 100),
    (128, 1000),
    (16, 10000),
]
QUICK_ARGSORT = [(1000,), (16, 100)]
QUICK_ISOTONIC = [(1, 100), (128, 100)]


def _timeit(fn, *args, min_time=0.5, max_reps=30, min_reps=5):
    return time_calls(
        lambda: jax.block_until_ready(fn(*args)),
        min_time=min_time,
        min_reps=min_reps,
        max_reps=max_reps,
    )


@contextlib.contextmanager
def _setting(setting):
    """``after``: the library as it is; ``before``: the comparator sort forced.

    Forcing the comparator also restores the isotonic short-row threshold it was tuned for
    (counting comparisons for rows of up to 128 entries, instead of 32).
    """
    from rank_relax_jax import _sort

    with _sort.forced_path("auto" if setting == "after" else "comparator"):
        yield


def bench_argsort(shapes, rows):
    from rank_relax_jax import _sort

    print("\n# argsort, float32: median ms (compile s)")
    for shape in shapes:
        x = jax.random.normal(jax.random.key(sum(shape)), shape, jnp.float32)
        mask = jax.random.uniform(jax.random.key(1), shape) > 0.1
        xn = np.asarray(x)
        ref = np.argsort(xn, axis=-1, kind="stable")
        cases = {
            "primitive": (lambda v: _sort.argsort(v), (x,)),
            "primitive+mask": (lambda v, m: _sort.argsort(v, m), (x, mask)),
            "comparator": (lambda v: _sort._argsort_comparator(v, None, False), (x,)),
            "comparator+mask": (lambda v, m: _sort._argsort_comparator(v, m, False), (x, mask)),
            "jnp.argsort": (lambda v: jnp.argsort(v, axis=-1), (x,)),
        }
        line = []
        for name, (fn, args) in cases.items():
            f = jax.jit(fn)
            res = _timeit(f, *args)  # first call: compile
            if "mask" not in name:
                assert np.array_equal(np.asarray(f(*args)), ref), name
            rows.append({"part": "argsort", "shape": shape, "method": name, **res})
            line.append(f"{name} {res['median_s'] * 1e3:.2f} ({res['compile_s']:.2f})")
        res = time_calls(
            lambda xn=xn: np.argsort(xn, axis=-1, kind="stable"),
            min_time=0.5,
            min_reps=5,
            max_reps=30,
        )
        rows.append({"part": "argsort", "shape": shape, "method": "numpy", **res})
        line.append(f"numpy {res['median_s'] * 1e3:.2f}")
        print(f"{shape!s:>12}  " + " | ".join(line), flush=True)
    names = ["primitive", "primitive+mask", "comparator", "comparator+mask", "jnp.argsort", "numpy"]
    print("\n| shape | " + " | ".join(names) + " | jnp.argsort / primitive |")
    print("|---" * (len(names) + 2) + "|")
    for shape in shapes:
        got = {r["method"]: r["median_s"] * 1e3 for r in rows if r["shape"] == shape}
        cells = [f"{got[n]:.2f}" for n in names]
        print(
            f"| {shape} | "
            + " | ".join(cells)
            + f" | {got['jnp.argsort'] / got['primitive']:.1f}x |"
        )


def _torchsort():
    try:
        import torch
        import torchsort
    except ImportError as err:
        print(f"# torchsort not installed ({err}); skipped (benchmarks/install_torchsort.sh)")
        return None

    def run(op, x_np, w_np, backward):
        x = torch.tensor(x_np, requires_grad=backward)
        fn = torchsort.soft_rank if op == "soft_rank" else torchsort.soft_sort
        out = fn(x, regularization_strength=1.0)
        if backward:
            (out * torch.tensor(w_np)).sum().backward()
            return x.grad
        return out

    return run


def bench_isotonic(shapes, rows):
    from rank_relax_jax.ranking import soft_rank, soft_sort

    ops = {"soft_rank": soft_rank, "soft_sort": soft_sort}
    data = {}
    for shape in shapes:
        kx, kw = jax.random.split(jax.random.key(sum(shape)))
        data[shape] = (
            jax.random.normal(kx, shape, jnp.float32),
            jax.random.normal(kw, shape, jnp.float32),
        )
    results = {}
    for setting in ("after", "before"):
        with _setting(setting):
            for shape in shapes:
                x, w = data[shape]
                for name, op in ops.items():
                    fwd = jax.jit(lambda x, op=op: op(x, temperature=1.0))
                    bwd = jax.jit(jax.grad(lambda x, w, op=op: jnp.sum(op(x, temperature=1.0) * w)))
                    for mode, f, args in (("fwd", fwd, (x,)), ("fwd+bwd", bwd, (x, w))):
                        res = _timeit(f, *args)
                        results[(setting, shape, name, mode)] = res
                        rows.append(
                            {
                                "part": "isotonic",
                                "setting": setting,
                                "shape": shape,
                                "method": name,
                                "mode": mode,
                                **res,
                            }
                        )
                print(f"# isotonic {setting} {shape} done", flush=True)
    torch_run = _torchsort()
    if torch_run is not None:
        for shape in shapes:
            xn, wn = (np.asarray(a) for a in data[shape])
            for name in ops:
                for mode in ("fwd", "fwd+bwd"):
                    res = time_calls(
                        lambda name=name, mode=mode, xn=xn, wn=wn: torch_run(
                            name, xn, wn, mode != "fwd"
                        ),
                        min_time=0.5,
                        min_reps=5,
                        max_reps=30,
                    )
                    results[("torchsort", shape, name, mode)] = res
                    rows.append(
                        {
                            "part": "isotonic",
                            "setting": "torchsort",
                            "shape": shape,
                            "method": name,
                            "mode": mode,
                            **res,
                        }
                    )
    print("\n# isotonic (temperature 1, float32): median ms, before -> after (speed-up)")
    header = "| (batch, n) | op | fwd | fwd+bwd |" + (" torchsort fwd+bwd |" if torch_run else "")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for shape in shapes:
        for name in ops:
            cells = []
            for mode in ("fwd", "fwd+bwd"):
                b = results[("before", shape, name, mode)]["median_s"] * 1e3
                a = results[("after", shape, name, mode)]["median_s"] * 1e3
                cells.append(f"{b:.2f} -> {a:.2f} ({b / a:.1f}x)")
            if torch_run:
                t = results[("torchsort", shape, name, "fwd+bwd")]["median_s"] * 1e3
                a = results[("after", shape, name, "fwd+bwd")]["median_s"] * 1e3
                cells.append(f"{t:.2f} (ours {a / t:.1f}x)")
            print(f"| {shape} | {name} | " + " | ".join(cells) + " |")
    return torch_run is not None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    parser.add_argument("--part", choices=("all", "argsort", "isotonic"), default="all")
    parser.add_argument(
        "--out",
        default=str(pathlib.Path(__file__).parent / "results" / "sort.json"),
        help="where to write the JSON results",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows: list[dict] = []
    if args.part in ("all", "argsort"):
        bench_argsort(QUICK_ARGSORT if args.quick else ARGSORT_SHAPES, rows)
    torchsort = None
    if args.part in ("all", "isotonic"):
        torchsort = bench_isotonic(QUICK_ISOTONIC if args.quick else ISOTONIC_SHAPES, rows)

    from rank_relax_jax import _sort

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": load_before,
        "loadavg_end": os.getloadavg(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "device": str(jax.devices()[0]),
        "x64": bool(jax.config.jax_enable_x64),
        "packed_path_available": _sort._SCOPED_X64,
        "dtype": "float32",
        "torchsort": torchsort,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nload {load_before} -> {meta['loadavg_end']}; wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    main()
