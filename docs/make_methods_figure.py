"""Draws docs/figures/soft_rank_temperature.png: soft rank against temperature per method.

Run from the repository root:

    python docs/make_methods_figure.py

Every panel ranks the same five values, x = [0.0, 0.2, 0.5, 1.5, 2.0] (ascending, rank 1 is the
smallest), over a log grid of temperatures; dashed lines mark the exact ranks 1..5. The panels
are read from the kernel registry: one per registered ``soft_rank`` method, and one per choice
of a method's option with choices (isotonic: L2 and KL).
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rank_relax_jax import methods
from rank_relax_jax.ranking import soft_rank

X = jnp.array([0.0, 0.2, 0.5, 1.5, 2.0], dtype=jnp.float32)
TEMPERATURES = np.logspace(-3, 2, 121)
OUT = pathlib.Path(__file__).parent / "figures" / "soft_rank_temperature.png"


def panels() -> list[tuple[str, dict, str]]:
    """``(method, options, title)`` for every registered rank method and option choice."""
    out = []
    for entry in methods.entries("rank"):
        choices = [(n, o.choices) for n, o in entry.options.items() if o.choices]
        if not choices:
            out.append((entry.method, {}, entry.method))
            continue
        name, values = choices[0]
        out += [(entry.method, {name: v}, f"{entry.method}, {v}") for v in values]
    return out


PANELS = panels()


def curves(method: str, options: dict) -> np.ndarray:
    """``[len(TEMPERATURES), 5]`` soft ranks, one jitted call vmapped over the temperatures."""
    fn = jax.jit(
        jax.vmap(lambda t: soft_rank(X, method=method, temperature=t, **options), in_axes=0)
    )
    return np.asarray(fn(jnp.asarray(TEMPERATURES, jnp.float32)))


def main() -> None:
    cols = 4
    rows = -(-len(PANELS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.8 * rows), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, X.shape[0]))
    for ax, (method, options, title) in zip(axes, PANELS, strict=False):
        ranks = curves(method, options)
        for i in range(X.shape[0]):
            ax.axhline(i + 1, color="0.85", lw=0.8, ls="--", zorder=0)
            ax.plot(TEMPERATURES, ranks[:, i], color=colors[i], lw=1.6, label=f"x = {X[i]:.1f}")
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("temperature")
        ax.set_ylim(0.0, 5.9)
    for ax in axes[len(PANELS) :]:
        ax.axis("off")
    axes[0].set_ylabel("soft rank")
    handles, labels = axes[0].get_legend_handles_labels()
    if len(PANELS) < len(axes):
        axes[-1].legend(handles, labels, loc="center", frameon=False, title="input")
    else:
        fig.legend(handles, labels, loc="lower center", ncol=X.shape[0], frameon=False)
    fig.suptitle("Soft rank of x = [0.0, 0.2, 0.5, 1.5, 2.0] against temperature", fontsize=11)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
