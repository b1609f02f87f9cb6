"""Runs the headline example (examples/gumbel_reranking.py) in its --quick mode.

The example runs in a subprocess: it is a script with its own numeric setup (32-bit JAX, no
rank-promotion checks), not library code, and that is how the README runs it.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "gumbel_reranking.py"
METHODS = ("grerank", "emdr", "pdist", "sigmoid_topk", "subset", "supervised", "untrained")
METRICS = ("recall_answer", "recall_bridge", "em")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("flax", reason="flax not installed: pip install -e '.[examples]'")
    pytest.importorskip("optax", reason="optax not installed: pip install -e '.[examples]'")
    pytest.importorskip(
        "matplotlib", reason="matplotlib not installed: pip install -e '.[examples]'"
    )
    pytest.importorskip("tqdm", reason="tqdm not installed: pip install -e '.[examples]'")
    out = tmp_path_factory.mktemp("gumbel_reranking")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.slow
def test_results_json_layout(quick_run):
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    assert results["k"] == 4
    assert results["n_docs"] == 20
    for method in METHODS:
        assert set(results[method]) == set(METRICS), method
        for metric in METRICS:
            mean, std = results[method][metric]
            assert 0.0 <= mean <= 1.0 and math.isfinite(mean), (method, metric, mean)
            assert 0.0 <= std <= 0.5, (method, metric, std)
    png = (out / "gumbel_reranking.png").read_bytes()
    assert png.startswith(b"\x89PNG")


@pytest.mark.slow
def test_grerank_finds_bridge_documents(quick_run):
    out, stdout = quick_run
    results = json.loads((out / "results.json").read_text())
    grerank = results["grerank"]["recall_bridge"][0]
    untrained = results["untrained"]["recall_bridge"][0]
    # The reranker learns, from the reader's answer loss alone, to keep the documents that hold
    # no answer but are needed to find it.
    assert grerank > untrained + 0.2, (grerank, untrained)
    # The reader really needs the gold pair: it is far better with it than with random k docs.
    acc = results["reader_accuracy"]
    assert acc["gold documents"] > acc["4 random documents"] + 0.3, acc
    assert "G-Rerank" in stdout and "EMDR²" in stdout
