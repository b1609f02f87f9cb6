"""Multi-device: the G-Rerank training step under jax.sharding on 8 (fake CPU) devices.

Runs ``examples/sharded_step.py`` in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``: one jitted Optax step (reranker ->
``gumbel_attention_mask`` -> DMA attention, plus a ``soft_rank``-based Spearman loss) on one
device, on a ("data",) mesh of 8 and on a 2x4 ("data", "list") mesh. The sharded results must
equal the single-device ones to 1e-6 (float32), per-query outputs must keep their input's
sharding, and (data parallel) the compiled HLO must not gather the batch axis: the only
collectives are the gradient's all-reduces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code_or_args: list[str]) -> str:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("JAX_ENABLE_X64", None)
    out = subprocess.run(
        [sys.executable, *code_or_args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def report():
    return json.loads(_run([str(ROOT / "examples" / "sharded_step.py"), "--json"]))


def test_runs_on_eight_devices(report):
    assert report["devices"] == 8


@pytest.mark.parametrize(
    "run", ["sigmoid/data", "sigmoid/data+list", "isotonic/data", "isotonic/data+list"]
)
def test_sharded_step_equals_single_device_and_keeps_shardings(report, run):
    r = report[run]
    assert r["max_abs_diff_vs_one_device"] <= 1e-6, r
    assert r["mask_keeps_sharding"] and r["ranks_keep_sharding"], r


def test_data_parallel_step_never_gathers_the_batch(report):
    r = report["sigmoid/data"]
    assert not r["gathers_batch"], r
    assert set(r["collectives"]) == {"all-reduce"}, r  # gradient (and loss) reductions only


def test_list_sharded_step_gathers_only_within_a_data_group(report):
    # Sorting and pairwise ops need a whole list: XLA gathers the list axis (4 devices of one
    # data index), never across the batch axis.
    r = report["sigmoid/data+list"]
    assert "all-gather" in r["collectives"], r
    assert not r["gathers_batch"], r


def test_isotonic_list_sharded_step_gathers_only_within_a_data_group(report):
    # Supported: with the list axis sharded too, isotonic gathers each list within its data
    # group (as the pairwise ops do) and keeps the inputs' shardings. (An earlier report said it
    # gathered the batch: the HLO parser ignored Shardy's ``device_ids=`` field.)
    r = report["isotonic/data+list"]
    assert r["max_abs_diff_vs_one_device"] <= 1e-6, r
    assert r["mask_keeps_sharding"] and r["ranks_keep_sharding"], r
    assert "all-gather" in r["collectives"], r
    assert not r["gathers_batch"], r


@pytest.mark.parametrize(
    "line, groups",
    [
        ("all-gather(x), replica_groups={{0,1},{2,3}}, dimensions={1}", [[0, 1], [2, 3]]),
        ("all-gather(x), replica_groups=[2,4]<=[8], dimensions={1}", [[0, 1, 2, 3], [4, 5, 6, 7]]),
        ("all-gather(x), replica_groups=[4,2]<=[2,4]T(1,0)", [[0, 4], [1, 5], [2, 6], [3, 7]]),
        (
            "all-gather(x), replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_1'}, dimensions={1}",
            [[0, 1, 2, 3], [4, 5, 6, 7]],
        ),
        (
            "all-gather(x), replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_0'}, dimensions={1}",
            [[0, 4], [1, 5], [2, 6], [3, 7]],
        ),
        (  # the mesh laid over iota(8).reshape(2, 4).T: axis_0 runs along a data group
            "all-gather(x), replica_groups=mesh['axis_0'=4,'axis_1'=2], "
            "device_ids=([2,4]T(1,0)) {'axis_0'}, dimensions={0}",
            [[0, 1, 2, 3], [4, 5, 6, 7]],
        ),
    ],
)
def test_replica_group_notations(line, groups):
    # The sharding checks above read these groups; a misread group list is a false alarm (or a
    # missed gather), so each of XLA's notations is pinned.
    from examples.sharded_step import _replica_groups, gathers_batch

    assert _replica_groups(line) == groups
    spans = any(len({d // 4 for d in g}) > 1 for g in groups)
    assert gathers_batch([groups], (2, 4)) == spans


MESH_CODE = r"""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import rank_relax_jax as rr
from examples.sharded_step import collectives, gathers_batch
def grad(f):
    return lambda x, w: jax.grad(lambda x: jnp.sum(jnp.cos(f(x, w))))(x)
ops = {
    "isotonic_rank_grad": grad(lambda x, w: rr.soft_rank(x, where=w)),
    "isotonic_sort_kl": lambda x, w: rr.soft_sort(x, where=w, regularization="kl"),
    "isotonic_topk_grad": grad(lambda x, w: rr.soft_topk_mask(x, 3, where=w)),
    "lapsum_rank_grad": grad(lambda x, w: rr.soft_rank(x, where=w, method="lapsum")),
    "network_sort": lambda x, w: rr.soft_sort(x, where=w, method="network"),
    "sinkhorn_rank": lambda x, w: rr.soft_rank(x, where=w, method="sinkhorn"),
    "rank": lambda x, w: rr.rank(x, where=w),
    "spearman_loss_grad": grad(lambda x, w: rr.losses.spearman_loss(x, -x, where=w, reduce="none")),
}
one = jax.devices()[0]
x0 = jnp.asarray(np.random.default_rng(0).normal(size=(16, 40)), jnp.float32)
w0 = jnp.asarray(np.random.default_rng(1).random((16, 40)) < 0.8)
for shape in [(8, 1), (2, 4)]:
    mesh = Mesh(np.array(jax.devices()).reshape(shape), ("data", "list"))
    sh = NamedSharding(mesh, P("data", "list"))
    x, w = jax.device_put(x0, sh), jax.device_put(w0, sh)
    for name, f in ops.items():
        found = collectives(jax.jit(f).lower(x, w).compile().as_text())
        moved = [g for op, gs in found.items() if op != "all-reduce" for g in gs]
        ref = np.asarray(jax.jit(f)(jax.device_put(x0, one), jax.device_put(w0, one)))
        diff = float(np.max(np.abs(np.asarray(jax.jit(f)(x, w)) - ref)))
        kinds = ",".join(sorted(found)) or "-"
        print(f"{shape[1]} {name} {int(gathers_batch(moved, shape))} {kinds} {diff:.3g}")
"""


def test_sharded_ops_never_gather_the_batch():
    # Every sort-based family, values and gradients, on an 8-device ("data",) mesh and on a
    # 2x4 ("data", "list") mesh. Data parallel: nothing moves between devices (isotonic and
    # Sinkhorn all-reduce one boolean, their loops' stopping tests). List axis sharded too:
    # each method needs a whole list, so XLA gathers it within its data group; none gathers
    # across the batch axis. Results equal one device's (ranks up to 40: a few float32 ulps).
    lines = _run(["-c", MESH_CODE]).split("\n")
    rows = [line.split(" ") for line in lines if line]
    assert len(rows) == 16
    for list_devices, name, spans, kinds, diff in rows:
        assert spans == "0", (list_devices, name)
        assert float(diff) <= 1e-5, (list_devices, name, diff)
        if list_devices == "1":
            assert kinds in ("-", "all-reduce"), (name, kinds)
        else:
            assert "all-gather" in kinds, (name, kinds)


def test_isotonic_data_parallel_step_never_gathers_the_batch(report):
    # The PAV solver solves the rows by one vmap of a one-row solver, so its gathers and
    # scatters carry the batch as a batch dimension (it used to flatten the batch into one array
    # with global offsets, and XLA all-gathered the batch).
    r = report["isotonic/data"]
    assert not r["gathers_batch"], r
    assert set(r["collectives"]) == {"all-reduce"}, r


OPS_CODE = r"""
import re, numpy as np, jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import rank_relax_jax as rr
sh = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
x = jax.device_put(jnp.asarray(np.random.default_rng(0).normal(size=(16, 8)), jnp.float32), sh)
w = jax.device_put(jnp.asarray(np.random.default_rng(1).random((16, 8)) < 0.8), sh)
key = jax.random.key(0)
ops = {
    "rank": lambda x, w: rr.rank(x, where=w),
    "topk_mask": lambda x, w: rr.topk_mask(x, 3, where=w),
    "gumbel_topk": lambda x, w: rr.gumbel_topk(key, x, 3, where=w).mask,
    "perturbed_topk_mask": lambda x, w: rr.perturbed_topk_mask(key, x, 3, where=w, num_samples=4),
    "ndcg": lambda x, w: rr.metrics.ndcg(x, x, where=w),
    "listmle_loss": lambda x, w: rr.losses.listmle_loss(x, x, where=w, reduce="none"),
}
for name, f in ops.items():
    c = jax.jit(f).lower(x, w).compile()
    print(name, len(re.findall(r"all-gather", c.as_text())), c.output_shardings.spec)
"""


def test_sort_based_ops_do_not_gather_a_sharded_batch():
    # They did before the scatters went through vmap (_axis.unsort, gumbel._khot) and top_k
    # through the library's sort: XLA:CPU cannot partition its TopK custom call.
    lines = _run(["-c", OPS_CODE]).split("\n")
    rows = [line.split(" ", 2) for line in lines if line]
    assert len(rows) == 6
    for name, gathers, spec in rows:
        assert gathers == "0", (name, gathers)
        assert spec in ("P('data',)", "PartitionSpec('data',)"), (name, spec)  # repr varies


ISOTONIC_CODE = r"""
import re, numpy as np, jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import rank_relax_jax as rr
sh = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
# n = 40: sorted (not counted) rows, two chunks of the solver and one merge level.
x = jax.device_put(jnp.asarray(np.random.default_rng(0).normal(size=(16, 40)), jnp.float32), sh)
w = jax.device_put(jnp.asarray(np.random.default_rng(1).random((16, 40)) < 0.8), sh)
iso = dict(method="isotonic")
def grad(f):
    return lambda x, w: jax.grad(lambda x: jnp.sum(jnp.cos(f(x, w))))(x)
ops = {
    "soft_rank_l2": lambda x, w: rr.soft_rank(x, where=w, **iso),
    "soft_rank_kl_grad": grad(lambda x, w: rr.soft_rank(x, where=w, regularization="kl", **iso)),
    "soft_sort_l2_grad": grad(lambda x, w: rr.soft_sort(x, where=w, **iso)),
    "soft_topk_mask_kl": lambda x, w: rr.soft_topk_mask(x, 3, where=w, regularization="kl", **iso),
    "spearman_loss_grad": grad(lambda x, w: rr.losses.spearman_loss(x, -x, where=w, reduce="none")),
}
for name, f in ops.items():
    c = jax.jit(f).lower(x, w).compile()
    hlo = c.as_text()
    moves = len(re.findall(r"all-gather|all-to-all|collective-permute", hlo))
    reduced = sorted(set(re.findall(r"= (\S+) all-reduce\(", hlo)))
    print(name, moves, ",".join(reduced) or "-", c.output_shardings.spec)
"""


def test_isotonic_ops_do_not_gather_a_sharded_batch():
    # soft_rank / soft_sort / soft_topk_mask (method="isotonic", L2 and KL, values and
    # gradients) and a loss on soft_rank move no data between devices. The only collective is
    # the all-reduce of one boolean per iteration of the solver's tie sweep ("does any row
    # still pool?", the vmapped while_loop's condition).
    lines = _run(["-c", ISOTONIC_CODE]).split("\n")
    rows = [line.split(" ", 3) for line in lines if line]
    assert len(rows) == 5
    for name, moves, reduced, spec in rows:
        assert moves == "0", (name, moves)
        assert reduced in ("-", "pred[]"), (name, reduced)
        assert spec in ("P('data',)", "PartitionSpec('data',)"), (name, spec)


MODES_CODE = r"""
import json, sys
import numpy as np, jax, jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
sys.path.insert(0, "tests")
import _contract as C
from examples.sharded_step import collectives
D, B, N = 4, 8, 6
mesh = jax.make_mesh((D,), ("data",), axis_types=(AxisType.Explicit,), devices=jax.devices()[:D])
sh = NamedSharding(mesh, P("data"))
w = np.ones((B, N), bool)
w[1, 4:] = False
w[6, :] = False  # a fully masked list
for op in C.OPS:
    lists = [np.asarray(a, np.float32) for a in op.family.data((B, N), 0)]
    kw = {"key": jax.random.key(0)} if op.family.key else {}
    def f(w, x, *rest, op=op, kw=kw):
        call = lambda x: op.fn(x, *rest, where=w, **kw)
        out = call(x)
        return out, (jax.grad(lambda x: jnp.sum(jnp.cos(call(x))))(x) if op.smooth else out)
    one = jax.jit(f)
    # shard_map: each device runs the op on its own rows (a sampler draws its noise per shard).
    rows = [slice(i * B // D, (i + 1) * B // D) for i in range(D)]
    parts = [one(jnp.asarray(w[r]), *(jnp.asarray(a[r]) for a in lists)) for r in rows]
    ref = [np.concatenate([np.asarray(p[j]) for p in parts]) for j in (0, 1)]
    args = [jax.device_put(jnp.asarray(a), sh) for a in [w, *lists]]
    smap = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=P("data"), out_specs=P("data")))
    out = smap(*args)
    res = {"smap": max(float(np.max(np.abs(np.asarray(o) - r))) for o, r in zip(out, ref))}
    if not op.variant:  # explicit axes: one code path (auto_axes) for every option
        whole = one(*map(jnp.asarray, [w, *lists]))
        with jax.set_mesh(mesh):
            out = jax.jit(f)(*args)
        res["explicit"] = max(
            float(np.max(np.abs(np.asarray(o) - np.asarray(r)))) for o, r in zip(out, whole)
        )
        res["spec"] = [str(jax.typeof(o).sharding.spec[0]) for o in out]
    if op.name in ("soft_rank-isotonic", "soft_rank-isotonic-kl"):
        res["smap_collectives"] = sorted(collectives(smap.lower(*args).compile().as_text()))
    print(json.dumps([op.name, res]), flush=True)
"""


def test_every_op_runs_inside_shard_map_and_on_explicit_axes():
    # Two sharded programs that need the library's help (rank_relax_jax/_sharding.py), for every
    # op of the contract harness (variants included under shard_map), values and gradients on
    # lists with padding and one fully masked list, 4 devices:
    # * inside jax.shard_map (checked types): the loops' carries vary like the data. Results
    #   equal the op on each device's rows, and the isotonic solver's tie sweep needs no
    #   collective there (its loop test is per device);
    # * on a mesh with explicit axes (jax.make_mesh's default in JAX 0.10): the ops run in Auto
    #   mode inside (sorts, gathers and vmaps over a sharded batch are not typed otherwise), equal
    #   the single-device results and keep the batch sharded.
    lines = [json.loads(line) for line in _run(["-c", MODES_CODE]).split("\n") if line]
    from _contract import OPS

    assert [name for name, _ in lines] == [op.name for op in OPS]
    assert sum("smap_collectives" in r for _, r in lines) == 2
    for name, r in lines:
        assert r["smap"] <= 1e-5, (name, r)
        if "explicit" in r:
            assert r["explicit"] <= 1e-5, (name, r)
            assert set(r["spec"]) == {"data"}, (name, r)
        if "smap_collectives" in r:
            assert r["smap_collectives"] == [], (name, r)
