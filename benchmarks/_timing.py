"""Steady-state timing shared by the benchmark scripts (run them as ``python benchmarks/x.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_calls(
    call: Callable[[], object], *, min_time: float, min_reps: int, max_reps: int
) -> dict[str, float | int]:
    """Times ``call()`` (which must block until its result is ready).

    The first call is the warm-up (for a jitted function: trace + compile + run). Then at least
    ``min_reps`` and at most ``max_reps`` calls, for at least ``min_time`` seconds.

    Returns:
      ``median_s`` of the steady-state calls, ``compile_s`` (first call minus that median,
      clipped at 0) and ``reps``.
    """
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (
        len(times) < max_reps and time.perf_counter() - start < min_time
    ):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"compile_s": max(first - median, 0.0), "median_s": median, "reps": len(times)}


def fastest_rounds(calls: dict, rounds: int, **reps) -> dict:
    """The fastest round's median of each call: ``rounds`` rounds over all the calls in turn.

    Each round times every call once (`time_calls` with ``reps``). A call timed once can land
    up to 2x slow on a shared machine (docs/performance.md); interleaved rounds spread such a
    slow spell over different calls, and each call keeps its best.

    Returns:
      ``{key: median_s}`` for the keys of ``calls``.
    """
    best: dict = {}
    for _ in range(rounds):
        for key, call in calls.items():
            median = time_calls(call, **reps)["median_s"]
            best[key] = min(best.get(key, median), median)
    return best
