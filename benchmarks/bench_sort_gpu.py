"""Sort primitive against ``jnp.argsort`` on JAX's default device (meant for a GPU machine).

``rank_relax_jax._sort.argsort`` takes its packed-key path (one ``uint64`` sort) only on CPU,
where it was measured; everywhere else it keeps the comparator sort. This script measures both
paths on whatever device JAX defaults to, so that the choice for GPU can be made from numbers:

* ``packed``: the packed-key path, called directly (whatever the platform);
* ``comparator``: ``lax.sort`` of (key, positions), the path used off CPU;
* ``argsort``: the primitive as the library calls it (its own platform choice);
* ``jnp.argsort``;
* ``packed+mask`` / ``comparator+mask``: the same with a ``where`` mask (10% padding).

Each is checked against NumPy's stable argsort before it is timed. Needs only JAX and NumPy
(no pytest, no Hypothesis) and a checkout of this repository (it imports the library from the
checkout that holds it); runs on JAX 0.8 and later (the packed path needs ``jax.enable_x64``).

Usage::

    python benchmarks/bench_sort_gpu.py results/sort_gpu.json
    python benchmarks/bench_sort_gpu.py out.json --quick
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp
import numpy as np

from rank_relax_jax import _sort

SHAPES = [
    (100000,),
    (128, 1000),
    (1024, 100),
    (1, 1000000),
    (4096, 1000),
    (128, 10000),
    (1, 10000000),
]
QUICK_SHAPES = [(1000,), (16, 100)]


def _time(fn, *args, min_time=0.5, min_reps=5, max_reps=50):
    """Median seconds of steady-state calls and the first call's extra time (compile)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (
        len(times) < max_reps and time.perf_counter() - start < min_time
    ):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"median_s": median, "compile_s": max(first - median, 0.0), "reps": len(times)}


def _reference(x, mask):
    order = np.argsort(x, axis=-1, kind="stable")
    if mask is not None:
        pad = np.take_along_axis(~mask, order, -1)
        order = np.take_along_axis(order, np.argsort(pad, axis=-1, kind="stable"), -1)
    return order


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="path of the JSON file to write")
    parser.add_argument("--quick", action="store_true", help="two small shapes")
    args = parser.parse_args()

    cases = {
        "packed": lambda v, m: _sort._argsort_packed(v, None, False),
        "comparator": lambda v, m: _sort._argsort_comparator(v, None, False),
        "argsort": lambda v, m: _sort.argsort(v),
        "jnp.argsort": lambda v, m: jnp.argsort(v, axis=-1),
        "packed+mask": lambda v, m: _sort._argsort_packed(v, m, False),
        "comparator+mask": lambda v, m: _sort._argsort_comparator(v, m, False),
    }
    if not _sort._SCOPED_X64:
        print("# this JAX has no jax.enable_x64 (< 0.8): the packed path is not available")
        cases = {k: v for k, v in cases.items() if not k.startswith("packed")}

    rows = []
    for shape in QUICK_SHAPES if args.quick else SHAPES:
        key = jax.random.key(sum(shape))
        x = jax.random.normal(key, shape, jnp.float32)
        # Ties and specials, so that the correctness check means something.
        x = x.at[..., ::5].set(jnp.round(x[..., ::5]))
        x = x.at[..., ::97].set(jnp.nan)
        mask = jax.random.uniform(jax.random.fold_in(key, 1), shape) > 0.1
        xn, mn = np.asarray(x), np.asarray(mask)
        refs = {False: _reference(xn, None), True: _reference(xn, mn)}
        for name, fn in cases.items():
            f = jax.jit(fn)
            try:
                ok = bool(np.array_equal(np.asarray(f(x, mask)), refs["mask" in name]))
                res = _time(f, x, mask)
            except Exception as err:  # a path failing on this backend is a result too
                rows.append({"shape": shape, "method": name, "error": str(err)[:300]})
                print(f"{shape!s:>14} {name:16} error {type(err).__name__}: {str(err)[:120]}")
                continue
            rows.append({"shape": shape, "method": name, "matches_numpy": ok, **res})
            print(
                f"{shape!s:>14} {name:16} {res['median_s'] * 1e3:9.3f} ms "
                f"(compile {res['compile_s']:.2f} s){'' if ok else '  MISMATCH'}",
                flush=True,
            )

    names = list(cases)
    print("\nmedian ms; last column: comparator / packed (> 1: the packed key is faster)\n")
    print("| shape | " + " | ".join(names) + " | comparator/packed |")
    print("|---" * (len(names) + 2) + "|")
    for shape in dict.fromkeys(tuple(r["shape"]) for r in rows):
        got = {r["method"]: r for r in rows if tuple(r["shape"]) == shape}
        cells = [
            f"{got[n]['median_s'] * 1e3:.3f}" if n in got and "median_s" in got[n] else "error"
            for n in names
        ]
        ratio = "—"
        if "median_s" in got.get("packed", {}) and "median_s" in got.get("comparator", {}):
            ratio = f"{got['comparator']['median_s'] / got['packed']['median_s']:.2f}"
        print(f"| {shape} | " + " | ".join(cells) + f" | {ratio} |")

    try:
        import jaxlib

        jaxlib_version = jaxlib.__version__
    except (ImportError, AttributeError):
        jaxlib_version = None
    device = jax.devices()[0]
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib_version,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "device": str(device),
        "device_kind": getattr(device, "device_kind", None),
        "dtype": "float32",
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
