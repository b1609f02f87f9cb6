"""A G-Rerank training step under jax.sharding: data parallel, and with the list axis sharded.

One jitted Optax step trains a linear reranker end to end: its scores go through
`rank_relax_jax.gumbel_attention_mask` (relaxed top-k over each query's ragged list of
documents), the mask weights the documents' tokens in DMA attention
(`rank_relax_jax.attention.dma_attention`), and a `soft_rank`-based loss
(`rank_relax_jax.losses.spearman_loss`) adds a direct ranking signal. Nothing in the step knows
about devices: the arrays carry `jax.sharding.NamedSharding`s and XLA partitions the program.

Run it on one host with any number of devices (on CPU, fake 8 of them)::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/sharded_step.py

It runs the step on one device, on a ("data",) mesh of all devices and on a ("data", "list")
mesh, checks that the three agree to 1e-6, that every per-query output keeps its input's
sharding, and reports the collectives in the compiled program. ``docs/scaling.md`` explains the
multi-GPU, TPU and multi-host versions.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import rank_relax_jax as rr

BATCH, N_DOCS, DOC_LEN, Q_LEN, FEATURES, HEADS, HEAD_DIM, K = 16, 8, 3, 2, 6, 2, 4, 3
KV_LEN = 1 + N_DOCS * DOC_LEN  # one instruction token, then the documents' tokens


def make_batch(seed: int = 0) -> dict[str, Any]:
    """A batch of ragged candidate lists (4 to 8 documents per query) and the reader's tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, N_DOCS + 1, BATCH)
    valid = np.arange(N_DOCS)[None, :] < lengths[:, None]
    ids = np.concatenate([[-1], np.repeat(np.arange(N_DOCS), DOC_LEN)])
    ids = np.broadcast_to(ids, (BATCH, KV_LEN))
    f32 = np.float32
    return {
        "features": rng.normal(size=(BATCH, N_DOCS, FEATURES)).astype(f32),
        "valid": valid,
        "labels": (rng.random((BATCH, N_DOCS)) * valid).astype(f32),
        "query": rng.normal(size=(BATCH, Q_LEN, HEADS, HEAD_DIM)).astype(f32),
        "keys": rng.normal(size=(BATCH, KV_LEN, HEADS, HEAD_DIM)).astype(f32),
        "values": rng.normal(size=(BATCH, KV_LEN, HEADS, HEAD_DIM)).astype(f32),
        "target": rng.normal(size=(BATCH, Q_LEN, HEADS, HEAD_DIM)).astype(f32),
        # Key-token padding: a key token is attended iff its document is valid.
        "token_valid": np.where(ids >= 0, np.take_along_axis(valid, np.maximum(ids, 0), 1), True),
        "segment_ids": ids.astype(np.int32),
    }


OPTIMIZER = optax.adam(1e-2)


def init(seed: int = 1):
    params = {"w": jnp.asarray(np.random.default_rng(seed).normal(size=(FEATURES,)), jnp.float32)}
    return params, OPTIMIZER.init(params)


def loss_fn(params, batch, key, temperature, method="sigmoid"):
    scores = batch["features"] @ params["w"]  # [batch, docs], the reranker
    mask = rr.gumbel_attention_mask(
        key, scores, K, temperature=temperature, where=batch["valid"]
    )  # relaxed top-k documents per query
    pad = batch["token_valid"][:, None, None, :]  # [batch, 1, 1, kv_len]
    out = rr.attention.dma_attention(
        batch["query"],
        batch["keys"],
        batch["values"],
        doc_mask=mask,
        segment_ids=batch["segment_ids"],
        mask=pad,
    )
    reader = jnp.mean((out - batch["target"]) ** 2)
    ranking = rr.losses.spearman_loss(scores, batch["labels"], method=method, where=batch["valid"])
    return reader + ranking, (mask, rr.soft_rank(scores, method=method, where=batch["valid"]))


@functools.partial(jax.jit, static_argnames="method")
def train_step(params, opt_state, batch, key, temperature, method="sigmoid"):
    (loss, (mask, ranks)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch, key, temperature, method
    )
    updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, mask, ranks


def batch_specs(list_axis: str | None) -> dict[str, P]:
    """PartitionSpecs: the batch over "data", the document axis over ``list_axis`` if given."""
    return {
        "features": P("data", list_axis),
        "valid": P("data", list_axis),
        "labels": P("data", list_axis),
        "query": P("data"),
        "keys": P("data"),
        "values": P("data"),
        "target": P("data"),
        "token_valid": P("data"),
        "segment_ids": P("data"),
    }


def _replica_groups(line: str) -> list[list[int]]:
    """The replica groups of one HLO collective, in either of XLA's two notations."""
    m = re.search(r"(?:replica_groups|source_target_pairs)=\{(\{[\d,]*\}(?:,\{[\d,]*\})*)\}", line)
    if m:
        return [[int(d) for d in g.split(",") if d] for g in re.findall(r"\{([\d,]*)\}", m[1])]
    m = re.search(r"replica_groups=mesh\[([^\]]*)\](?:, device_ids=\S+)? \{([^}]*)\}", line)
    if m:  # Shardy's notation: mesh['axis_0'=2,'axis_1'=4] {'axis_1'}, maybe with device_ids
        axes = re.findall(r"'(\w+)'=(\d+)", m[1])
        names, sizes = [a for a, _ in axes], [int(d) for _, d in axes]
        over = [names.index(a) for a in re.findall(r"'(\w+)'", m[2])]
        rest = [i for i in range(len(names)) if i not in over]
        ids = _device_ids(line, sizes).transpose(rest + over)
        return ids.reshape(-1, int(np.prod([sizes[i] for i in over]))).tolist()
    m = re.search(r"replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", line)
    if m:
        shape = [int(d) for d in m[1].split(",")]
        dims = [int(d) for d in m[2].split(",")]
        ids = np.arange(np.prod(dims)).reshape(dims)
        if m[3]:
            ids = ids.transpose([int(d) for d in m[3].split(",")])
        return ids.reshape(shape).tolist()
    return []


def _device_ids(line: str, sizes: list[int]) -> np.ndarray:
    """The devices of a Shardy collective's mesh, in mesh order (``device_ids=`` if given).

    ``device_ids=([2,4]T(1,0))`` lays the mesh over ``iota(8).reshape(2, 4).T``: a collective
    "over axis_0" of a 4x2 mesh written that way groups devices {0..3} and {4..7}, not the
    even and odd ones. Without the field the devices are ``iota`` in mesh order.
    """
    n = int(np.prod(sizes))
    m = re.search(r"device_ids=\(\[([\d,]+)\](?:T\(([\d,]+)\))?\)", line)
    if m:
        ids = np.arange(n).reshape([int(d) for d in m[1].split(",")])
        if m[2]:
            ids = ids.transpose([int(d) for d in m[2].split(",")])
        return ids.reshape(sizes)
    m = re.search(r"device_ids=\(([\d,]+)\)", line)
    if m:
        return np.asarray([int(d) for d in m[1].split(",")]).reshape(sizes)
    return np.arange(n).reshape(sizes)


def collectives(hlo: str) -> dict[str, list[list[list[int]]]]:
    """``{op: [replica groups of each occurrence]}`` for the gathers and reductions in ``hlo``."""
    out: dict[str, list] = {}
    for line in hlo.splitlines():
        for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute"):
            if re.search(rf"\b{op}(-start)?\(", line):
                out.setdefault(op, []).append(_replica_groups(line))
    return out


def run(mesh: Mesh | None, list_axis: str | None, method: str, seed: int = 0):
    """One step on ``mesh`` (None: one device); returns outputs, input shardings and the HLO."""
    params, opt_state = init()
    batch = make_batch(seed)
    key, temperature = jax.random.key(seed), jnp.float32(0.5)
    shardings = {}
    if mesh is not None:
        shardings = {k: NamedSharding(mesh, s) for k, s in batch_specs(list_axis).items()}
        replicated = NamedSharding(mesh, P())
        batch = {k: jax.device_put(v, shardings[k]) for k, v in batch.items()}
        params, opt_state, key, temperature = jax.device_put(
            (params, opt_state, key, temperature), replicated
        )
    args = (params, opt_state, batch, key, temperature)
    hlo = train_step.lower(*args, method=method).compile().as_text()
    return train_step(*args, method=method), shardings, hlo


def gathers_batch(groups_list: list[list[list[int]]], mesh_shape: tuple[int, ...]) -> bool:
    """Whether any collective's replica groups span devices of different "data" indices.

    Devices are numbered in mesh order, so device d has data index ``d // (n // data)``. An
    empty group list means one group of all devices.
    """
    n = int(np.prod(mesh_shape))
    per_data = n // mesh_shape[0]
    for groups in groups_list:
        for g in groups or [list(range(n))]:
            if len({d // per_data for d in g}) > 1:
                return True
    return False


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument(
        "--methods",
        default="sigmoid,isotonic",
        help="soft_rank methods of the loss, comma-separated",
    )
    args = parser.parse_args(argv)
    devices = np.array(jax.devices())
    n = len(devices)
    if n < 2 or n % 2:
        raise SystemExit(f"needs an even number (>= 2) of devices; found {n}")
    report: dict[str, Any] = {"devices": n, "platform": devices[0].platform}
    meshes = {
        "data": (Mesh(devices, ("data",)), None),
        "data+list": (Mesh(devices.reshape(2, n // 2), ("data", "list")), "list"),
    }
    runs = [(m, name) for m in args.methods.split(",") for name in meshes]
    refs = {m: run(None, None, m)[0] for m in args.methods.split(",")}
    for method, name in runs:
        mesh, list_axis = meshes[name]
        ref = refs[method]
        (params, _, loss, mask, ranks), shardings, hlo = run(mesh, list_axis, method)
        diff = max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(
                jax.tree.leaves((params, loss, mask, ranks)),
                jax.tree.leaves(ref[:1] + ref[2:]),
                strict=True,
            )
        )
        expected = shardings["labels"]
        found = collectives(hlo)
        report[f"{method}/{name}"] = {
            "max_abs_diff_vs_one_device": diff,
            "mask_keeps_sharding": mask.sharding.is_equivalent_to(expected, mask.ndim),
            "ranks_keep_sharding": ranks.sharding.is_equivalent_to(expected, ranks.ndim),
            "mask_sharding": str(mask.sharding.spec),
            "collectives": {op: len(groups) for op, groups in found.items()},
            "gathers_batch": gathers_batch(
                [g for op, gs in found.items() if op != "all-reduce" for g in gs],
                mesh.devices.shape,
            ),
        }
    if args.json:
        print(json.dumps(report))
    else:
        for method, name in runs:
            r = report[f"{method}/{name}"]
            print(
                f"{method:9s} {name:10s} max |diff| = {r['max_abs_diff_vs_one_device']:.2e}  "
                f"mask {r['mask_sharding']} kept: {r['mask_keeps_sharding']}  "
                f"batch gathered: {r['gathers_batch']}  collectives {r['collectives']}"
            )
    return report


if __name__ == "__main__":
    main()
