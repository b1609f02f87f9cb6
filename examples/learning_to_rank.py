"""Learning to rank on real data: one MLP scorer trained under each ranking loss.

Data: LightGBM's ``examples/lambdarank`` set (201 training and 50 test queries, 300 sparse
features, graded relevance 0-4), read from ``--data`` (default ``examples/data/lambdarank``
in this repository). Each loss trains the same small MLP with Optax's Adam for a fixed
number of epochs, for several seeds at once (``vmap`` over the seeds, the epoch compiled as one
``lax.scan``), and is scored by exact test NDCG@1/5/10 (mean ± std over seeds). LightGBM's
LambdaRank on the same split is the external reference when ``lightgbm`` is installed.

    python examples/learning_to_rank.py                # full run, prints the table
    python examples/learning_to_rank.py --out results/ # also writes results.json and a figure
    python examples/learning_to_rank.py --quick        # smoke run (a few seconds of training)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from rank_relax_jax import losses, metrics

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "examples" / "data" / "lambdarank"
FILES = ("rank.train", "rank.train.query", "rank.test", "rank.test.query")
KS = (1, 5, 10)


# ---------------------------------------------------------------------------- data


def read_libsvm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Dense features and labels from a LibSVM file (``label id:value ...``, 1-based ids)."""
    labels, rows, cols, vals = [], [], [], []
    with open(path) as f:
        for i, line in enumerate(f):
            parts = line.split()
            if not parts:
                continue
            labels.append(float(parts[0]))
            for item in parts[1:]:
                j, v = item.split(":")
                rows.append(i)
                cols.append(int(j) - 1)
                vals.append(float(v))
    cols = np.asarray(cols)
    x = np.zeros((len(labels), cols.max() + 1), np.float32)
    x[np.asarray(rows), cols] = vals
    return x, np.asarray(labels, np.float32)


def to_lists(x: np.ndarray, y: np.ndarray, counts: np.ndarray, n_features: int):
    """Pads the queries' documents into ``[queries, max_docs, ...]`` arrays and a mask."""
    n_max = int(counts.max())
    xs = np.zeros((len(counts), n_max, n_features), np.float32)
    ys = np.zeros((len(counts), n_max), np.float32)
    mask = np.zeros((len(counts), n_max), bool)
    start = 0
    for q, c in enumerate(counts):
        xs[q, :c, : x.shape[1]] = x[start : start + c]
        ys[q, :c] = y[start : start + c]
        mask[q, :c] = True
        start += c
    return xs, ys, mask


def load(data_dir: Path):
    missing = [f for f in FILES if not (data_dir / f).is_file()]
    if missing:
        sys.exit(
            f"learning_to_rank: data files {missing} not found in {data_dir}.\n"
            "Get them from LightGBM's repository (examples/lambdarank/: rank.train, "
            "rank.train.query, rank.test, rank.test.query) and pass their folder with --data DIR."
        )
    xtr, ytr = read_libsvm(data_dir / "rank.train")
    xte, yte = read_libsvm(data_dir / "rank.test")
    qtr = np.loadtxt(data_dir / "rank.train.query", dtype=int)
    qte = np.loadtxt(data_dir / "rank.test.query", dtype=int)
    d = max(xtr.shape[1], xte.shape[1])
    flat = {"train": (xtr, ytr, qtr), "test": (xte, yte, qte)}
    return {k: to_lists(x, y, q, d) for k, (x, y, q) in flat.items()}, flat


# ---------------------------------------------------------------------------- model


def init_mlp(key, sizes):
    params = []
    keys = jax.random.split(key, len(sizes) - 1)
    for k, (a, b) in zip(keys, itertools.pairwise(sizes), strict=True):
        w = jax.random.normal(k, (a, b), jnp.float32) * np.float32(np.sqrt(2.0 / a))
        params.append((w, jnp.zeros(b, jnp.float32)))
    return params


def dense(x, w, b):
    return x @ w + jnp.expand_dims(b, tuple(range(x.ndim - 1)))


def mlp(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(dense(x, w, b))
    return dense(x, *params[-1])[..., 0]


def mse_loss(scores, labels, *, where):
    err = jnp.where(where, (scores - labels) ** 2, 0.0)
    return jnp.sum(err) / jnp.maximum(jnp.sum(where), 1)


LOSSES: dict[str, Callable] = {
    "ndcg_loss (isotonic)": lambda s, y, where: losses.ndcg_loss(
        s, y, method="isotonic", temperature=0.1, where=where
    ),
    "ndcg_loss (sigmoid)": lambda s, y, where: losses.ndcg_loss(
        s, y, method="sigmoid", temperature=0.1, where=where
    ),
    "spearman_loss": lambda s, y, where: losses.spearman_loss(
        s, y, method="isotonic", temperature=0.1, where=where
    ),
    "listmle_loss": lambda s, y, where: losses.listmle_loss(s, y, where=where),
    "listnet_loss": lambda s, y, where: losses.listnet_loss(s, y, where=where),
    "pairwise_logistic_loss": lambda s, y, where: losses.pairwise_logistic_loss(s, y, where=where),
    "mse (pointwise)": mse_loss,
}


# ---------------------------------------------------------------------------- training


def make_trainer(loss_fn, data, *, batch, lr, epochs_per_call, sizes):
    xtr, ytr, mtr = (jnp.asarray(a) for a in data["train"])
    xte, yte, mte = (jnp.asarray(a) for a in data["test"])
    n_q = xtr.shape[0]
    steps = n_q // batch
    opt = optax.adamw(lr, weight_decay=1e-4)

    def evaluate(params):
        s = mlp(params, xte)
        return jnp.stack([jnp.mean(metrics.ndcg(s, yte, k=k, where=mte)) for k in KS])

    def epoch(carry, _):
        params, state, key = carry
        key, sub = jax.random.split(key)
        order = jax.random.permutation(sub, n_q)[: steps * batch].reshape(steps, batch)

        def step(c, idx):
            p, st = c
            value, g = jax.value_and_grad(
                lambda q: loss_fn(mlp(q, xtr[idx]), ytr[idx], where=mtr[idx])
            )(p)
            updates, st = opt.update(g, st, p)
            return (optax.apply_updates(p, updates), st), value

        (params, state), values = jax.lax.scan(step, (params, state), order)
        return (params, state, key), (jnp.mean(values), evaluate(params))

    def run_chunk(carry):
        return jax.lax.scan(epoch, carry, None, length=epochs_per_call)

    def init(seed_key):
        k_init, k_data = jax.random.split(seed_key)
        params = init_mlp(k_init, sizes)
        return params, opt.init(params), k_data

    # One compiled program trains every seed at once.
    return jax.jit(jax.vmap(init)), jax.jit(jax.vmap(run_chunk)), jax.jit(jax.vmap(evaluate))


def train_all(data, names, *, seeds, epochs, chunk, batch, lr, hidden):
    d = data["train"][0].shape[-1]
    sizes = (d, *hidden, 1)
    keys = jax.vmap(jax.random.key)(jnp.arange(seeds))
    results, curves = {}, {}
    bar = tqdm(total=len(names) * (epochs // chunk), desc="training", unit="chunk")
    for name in names:
        init, run_chunk, evaluate = make_trainer(
            LOSSES[name], data, batch=batch, lr=lr, epochs_per_call=chunk, sizes=sizes
        )
        carry = init(keys)
        loss_hist, ndcg_hist = [], []
        for _ in range(epochs // chunk):
            bar.set_postfix_str(name)
            carry, (loss_values, test_ndcg) = run_chunk(carry)
            loss_hist.append(np.asarray(loss_values))
            ndcg_hist.append(np.asarray(test_ndcg))
            bar.update()
        results[name] = summarize(evaluate(carry[0]))  # [seeds, len(KS)]
        curves[name] = {
            "train_loss": np.concatenate(loss_hist, axis=1),  # [seeds, epochs]
            "test_ndcg@10": np.concatenate(ndcg_hist, axis=1)[..., KS.index(10)],
        }
    bar.close()
    return results, curves


def summarize(vals) -> dict:
    """``[runs, len(KS)]`` NDCG values -> {"ndcg@k": [mean, std]}."""
    vals = np.asarray(vals)
    return {
        f"ndcg@{k}": [float(vals[:, i].mean()), float(vals[:, i].std())] for i, k in enumerate(KS)
    }


def random_scorer(data, seeds):
    """NDCG of random scores: the floor any trained scorer must beat."""
    _, yte, mte = data["test"]
    rng = np.random.default_rng(0)
    vals = []
    for _ in range(max(seeds, 10)):
        s = jnp.asarray(rng.normal(size=yte.shape).astype(np.float32))
        vals.append([float(jnp.mean(metrics.ndcg(s, yte, k=k, where=mte))) for k in KS])
    vals = np.asarray(vals)
    return {
        f"ndcg@{k}": [float(vals[:, i].mean()), float(vals[:, i].std())] for i, k in enumerate(KS)
    }


def lightgbm_reference(flat, data, seeds, quick):
    try:
        import lightgbm as lgb
    except ImportError:
        print("lightgbm is not installed: skipping the LambdaRank reference (pip install lightgbm)")
        return None
    xtr, ytr, qtr = flat["train"]
    xte = flat["test"][0]
    _, yte_l, mte = data["test"]
    d = data["train"][0].shape[-1]

    def pad(x):
        return np.pad(x, ((0, 0), (0, d - x.shape[1])))

    vals = []
    for seed in range(seeds):
        # The settings of LightGBM's own examples/lambdarank/train.conf (its bagging of 90% of
        # the rows each iteration is what makes seeds differ).
        model = lgb.LGBMRanker(
            objective="lambdarank",
            n_estimators=20 if quick else 100,
            learning_rate=0.1,
            num_leaves=31,
            min_child_samples=50,
            min_child_weight=5.0,
            subsample=0.9,
            subsample_freq=1,
            colsample_bytree=1.0,
            random_state=seed,
            verbose=-1,
        )
        model.fit(pad(xtr), ytr, group=qtr)
        pred = model.predict(pad(xte))
        s = np.zeros(mte.shape, np.float32)
        s[mte] = pred  # rows are in query order, as the mask's True entries
        vals.append(
            [float(jnp.mean(metrics.ndcg(jnp.asarray(s), yte_l, k=k, where=mte))) for k in KS]
        )
    vals = np.asarray(vals)
    return {
        f"ndcg@{k}": [float(vals[:, i].mean()), float(vals[:, i].std())] for i, k in enumerate(KS)
    }


# ---------------------------------------------------------------------------- report


def table(results) -> str:
    lines = ["| loss | NDCG@1 | NDCG@5 | NDCG@10 |", "|---|---|---|---|"]
    for name, r in results.items():
        cells = [f"{r[f'ndcg@{k}'][0]:.3f} ± {r[f'ndcg@{k}'][1]:.3f}" for k in KS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves, results, path: Path, epochs: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(1, epochs + 1)
    for name, c in curves.items():
        for ax, key in zip(axes, ("train_loss", "test_ndcg@10"), strict=True):
            v = c[key]
            if key == "train_loss":  # losses live on different scales: show each relative
                v = v / np.maximum(np.abs(v[:, :1]), 1e-12)
            m, s = v.mean(0), v.std(0)
            (line,) = ax.plot(x, m, label=name, lw=1.4)
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.15)
    if "lightgbm" in results:
        axes[1].axhline(
            results["lightgbm"]["ndcg@10"][0], color="k", ls="--", lw=1, label="LightGBM LambdaRank"
        )
    axes[0].set(xlabel="epoch", ylabel="train loss / initial", title="training loss")
    axes[1].set(xlabel="epoch", ylabel="test NDCG@10", title="test NDCG@10 (mean ± std)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with rank.train etc.")
    p.add_argument("--out", type=Path, default=None, help="write results.json and ltr_curves.png")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch", type=int, default=16, help="queries per step")
    p.add_argument("--losses", nargs="*", default=list(LOSSES), choices=list(LOSSES))
    p.add_argument("--quick", action="store_true", help="smoke run: few epochs, one loss")
    p.add_argument("--no-lightgbm", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs, a.seeds = 10, 2
        if a.losses == list(LOSSES):
            a.losses = ["ndcg_loss (sigmoid)"]
    chunk = 5 if a.epochs % 5 == 0 else 1
    t0 = time.perf_counter()
    data, flat = load(a.data.resolve())
    results, curves = train_all(
        data,
        a.losses,
        seeds=a.seeds,
        epochs=a.epochs,
        chunk=chunk,
        batch=a.batch,
        lr=a.lr,
        hidden=(64, 32),
    )
    if not a.no_lightgbm:
        ref = lightgbm_reference(flat, data, a.seeds, a.quick)
        if ref is not None:
            results["lightgbm"] = ref
    results["random scorer"] = random_scorer(data, a.seeds)
    print(
        f"\nTest NDCG, mean ± std over {a.seeds} seeds ({a.epochs} epochs, "
        f"{time.perf_counter() - t0:.0f} s):\n"
    )
    print(table(results))
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        plot(curves, results, a.out / "ltr_curves.png", a.epochs)
        print(f"\nwrote {a.out / 'results.json'} and {a.out / 'ltr_curves.png'}")
    return results


if __name__ == "__main__":
    main()
