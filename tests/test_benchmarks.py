"""The benchmark entry point runs and writes the JSON it documents (no timing is asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import _methods, _timing, run
from rank_relax_jax import methods

ROOT = Path(__file__).resolve().parents[1]


def _script(name, *args):
    """Runs ``benchmarks/<name>`` in a fresh process (for scripts that configure JAX first)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, str(ROOT / "benchmarks" / name), *map(str, args)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_run_writes_every_registered_method(tmp_path, capsys):
    out = tmp_path / "run.json"
    run.main(["--shapes", "2x8", "--peers", "", "--min-time", "0", "--out", str(out)])
    data = json.loads(out.read_text())
    meta, rows = data["meta"], data["rows"]
    for key in ("date", "command", "machine", "versions"):
        assert key in meta, key
    assert {"jax", "jaxlib", "python", "rank_relax_jax"} <= set(meta["versions"])
    assert meta["machine"]["cpu_count"] >= 1
    timed = [r for r in rows if not r.get("skipped")]
    for r in timed:
        assert {
            "op",
            "library",
            "method",
            "batch",
            "n",
            "fwd_s",
            "fwd_compile_s",
            "fwd_mem",
        } <= set(r)
        assert r["fwd_s"] > 0 and r["fwd_ratio"] > 0
        if r["op"] != "argsort":
            assert (r["fwd_bwd_s"] > 0 and r["fwd_bwd_mem"] is None) or r["fwd_bwd_mem"] >= 0
    seen = {(r["op"], r["method"]) for r in timed if r["library"] == "rank_relax_jax"}
    for op in _methods.OPS:
        for m in methods.methods(op):
            assert any(o == op and label.split("[")[0] == m for o, label in seen), (op, m)
    assert ("rank", "isotonic[l2]") in seen and ("rank", "isotonic[kl]") in seen
    assert ("argsort", "jnp.argsort") in {(r["op"], r["method"]) for r in rows}
    table = capsys.readouterr().out
    assert table.startswith("| op | library |") and "isotonic[kl]" in table


def test_rounds_interleave_cells_and_keep_each_cells_fastest(monkeypatch):
    order, medians = [], iter([5.0, 1.0, 7.0, 2.0, 3.0, 4.0])

    def fake_time_calls(call, **reps):
        order.append(call())
        return {"median_s": next(medians)}

    monkeypatch.setattr(_timing, "time_calls", fake_time_calls)
    calls = {"a": lambda: "a", "b": lambda: "b", "b'": lambda: "b'"}
    best = _timing.fastest_rounds(calls, rounds=2)
    assert order == ["a", "b", "b'", "a", "b", "b'"]  # round by round, every cell in turn
    assert best == {"a": 2.0, "b": 1.0, "b'": 4.0}


def test_run_with_rounds_records_them_and_fills_every_timed_row(tmp_path):
    out = tmp_path / "run.json"
    run.main(["--shapes", "1x6", "--ops", "rank", "--peers", "", "--min-time", "0",
              "--rounds", "2", "--out", str(out)])  # fmt: skip
    data = json.loads(out.read_text())
    assert data["meta"]["rounds"] == 2
    rows = data["rows"]
    assert rows[0]["method"] == "jnp.argsort" and rows[0]["fwd_ratio"] == 1.0
    timed = [r for r in rows[1:] if not r.get("skipped")]
    assert timed and all(r["fwd_s"] > 0 and r["fwd_bwd_s"] > 0 for r in timed)
    assert all(r["fwd_ratio"] == r["fwd_s"] / rows[0]["fwd_s"] for r in timed)


def test_mem_cap_skips_quadratic_cells_with_a_reason():
    cell = run.Cell("rank", "rank_relax_jax", "neuralsort", True, lambda x: x)
    why = run.skip_reason(cell, (1, 1_000_000), mem_cap=2**30, work_cap=1e30)
    assert why is not None and "--mem-cap" in why
    assert run.skip_reason(cell, (1, 100), mem_cap=2**30, work_cap=1e30) is None
    lin = run.Cell("rank", "rank_relax_jax", "isotonic[l2]", False, lambda x: x)
    assert run.skip_reason(lin, (1, 1_000_000), mem_cap=1, work_cap=1) is None


def test_ab_solver_compares_two_solvers_and_writes_json(tmp_path):
    from benchmarks import ab_solver

    out = tmp_path / "ab.json"
    solver = ab_solver.ROOT / ab_solver.SOLVER
    ab_solver.main(
        ["--old", str(solver), "--shapes", "2x40", "--rounds", "1", "--min-time", "0",
         "--out", str(out)]
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["meta"]["old"] == str(solver) and data["meta"]["rounds"] == 1
    rows = data["rows"]
    cells = [(r["batch"], r["n"], r["regularization"]) for r in rows]
    assert cells == [(2, 40, "l2"), (2, 40, "kl")]
    assert all(r["old_s"] > 0 and r["new_s"] > 0 and r["ratio"] > 0 for r in rows)
    # The library's own solver is in use again afterwards.
    from rank_relax_jax.methods import _pav, isotonic

    assert isotonic.proj_l2 is _pav.proj_l2 and isotonic.rowwise is _pav.rowwise


def test_bench_cores_times_one_and_every_device_and_writes_json(tmp_path):
    # A subprocess: the script sets the number of host devices before JAX starts.
    out = tmp_path / "cores.json"
    done = _script("bench_cores.py", "--devices", 2, "--shapes", "4x40", "--rounds", 1,
                   "--min-time", 0, "--out", out)  # fmt: skip
    data = json.loads(out.read_text())
    assert data["meta"]["devices"] == 2
    rows = data["rows"]
    assert [(r["cores"], r["regularization"]) for r in rows] == [
        (1, "l2"), (2, "l2"), (1, "kl"), (2, "kl")
    ]  # fmt: skip
    assert all(r["isotonic_s"] > 0 and (r["batch"], r["n"]) == (4, 40) for r in rows)
    assert [r["split"] for r in rows] == [True] * 4
    for r in rows:  # torchsort is optional (benchmarks/install_torchsort.sh)
        assert r["torchsort_s"] is None or (r["torchsort_s"] > 0 and r["ratio"] > 0)
    lines = done.stdout.splitlines()
    header = [
        i
        for i, line in enumerate(lines)
        if line.startswith("| (batch, n) | regularization | cores |")
    ]
    assert len(header) == 1, done.stdout
    # Without torchsort the script says so once, above the table, and leaves its columns blank.
    has_peer = rows[0]["torchsort_s"] is not None
    assert lines[: header[0]] == ([] if has_peer else [lines[0]]), done.stdout
    assert has_peer or lines[0].startswith("# torchsort unavailable:")


def test_bench_small_lists_times_every_configuration_and_writes_json(tmp_path):
    # Subprocesses: each configuration is set before its worker imports JAX.
    out = tmp_path / "small.json"
    done = _script("bench_small_lists.py", "--sizes", 40, "--rounds", 1, "--min-time", 0,
                   "--out", out)  # fmt: skip
    data = json.loads(out.read_text())
    assert data["meta"]["configs"] == "default,one-core,small-loops"
    rows = {r["op"]: r for r in data["rows"]}
    assert all(r["n"] == 40 for r in rows.values())
    ops = [
        "isotonic-l2",
        "isotonic-kl",
        "isotonic-l2 no-solver",
        "isotonic-kl no-solver",
        "sigmoid",
    ]
    parts = ("", " no-merges", " no-chunks", " neither")
    stages = [f"pav-{k}{s}" for k in ("l2", "kl") for s in parts]
    assert set(ops + stages) <= set(rows), sorted(rows)
    for op in ops:  # every configuration times the ops
        assert all(rows[op][f"{c}_s"] > 0 for c in ("default", "one-core", "small-loops"))
    for stage in stages:  # the solver's stages: the default configuration only
        assert rows[stage]["default_s"] > 0
        assert rows[stage]["one-core_s"] is None and rows[stage]["small-loops_s"] is None
    assert "| op | n | default | one-core | small-loops |" in done.stdout.splitlines()


def test_bench_isotonic_keeps_each_cells_fastest_round(tmp_path):
    out = tmp_path / "iso.json"
    done = _script("bench_isotonic.py", "--shapes", "1x50", "--methods",
                   "isotonic-l2,torchsort-kl", "--rounds", 2, "--out", out)  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    by = {(r["method"], r["mode"]): r for r in rows}
    # torchsort-kl only where torch is installed (CI installs no peers).
    assert {("argsort", "fwd"), ("isotonic-l2", "fwd"), ("isotonic-l2", "fwd+bwd")} <= set(by)
    assert {m for m, _ in by} <= {"argsort", "isotonic-l2", "torchsort-kl"}
    floor = by["argsort", "fwd"]["median_s"]
    for r in rows:
        assert r["rounds"] == 2 and r["median_s"] > 0
        assert r["ratio"] == r["median_s"] / floor
    assert "| (batch, n) | argsort | isotonic-l2 |" in done.stdout
