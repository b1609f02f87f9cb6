"""Draws docs/figures/gumbel_mask_sum.png: expected sum of the G-Rerank document mask.

For n = 20 documents and k = 5, with reranker scores drawn once from N(0, spread²), it estimates
E[sum of mask] over 4,000 keys at each temperature for:

* ``method="max"`` (max of k Gumbel-softmax draws, the paper's mask), with its τ → 0 limit
  E|union of k draws with replacement| = Σ_i 1 - (1 - p_i)^k shown dashed;
* ``method="subset"`` (Xie & Ermon successive softmax) as the attention mask uses it, clipped
  to [0, 1]; the unclipped relaxation sums to exactly k.

Run from the repository root: ``python docs/make_gumbel_figure.py``.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rank_relax_jax.gumbel import gumbel_attention_mask

N, K, DRAWS = 20, 5, 4000
SPREADS = (0.5, 2.0, 5.0)
TEMPERATURES = np.geomspace(0.01, 10.0, 25)
OUT = pathlib.Path(__file__).parent / "figures" / "gumbel_mask_sum.png"


@jax.jit
def mean_sums(keys, scores, t):
    def one(key):
        m_max = gumbel_attention_mask(key, scores, K, temperature=t, method="max")
        m_sub = gumbel_attention_mask(key, scores, K, temperature=t, method="subset")
        return m_max.sum(), m_sub.sum()

    s_max, s_sub = jax.vmap(one)(keys)
    return s_max.mean(), s_sub.mean()


def main() -> None:
    rng = np.random.default_rng(0)
    keys = jax.random.split(jax.random.key(0), DRAWS)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    colors = ("tab:blue", "tab:orange", "tab:red")
    for spread, color in zip(SPREADS, colors, strict=True):
        scores = jnp.asarray(rng.normal(size=N) * spread, jnp.float32)
        rows = [mean_sums(keys, scores, float(t)) for t in TEMPERATURES]
        s_max = np.array([float(r[0]) for r in rows])
        s_sub = np.array([float(r[1]) for r in rows])
        p = np.exp(scores - scores.max())
        p = np.asarray(p / p.sum())
        limit = np.sum(1 - (1 - p) ** K)
        ax.plot(TEMPERATURES, s_max, "-o", ms=3, color=color, label=f"max, spread {spread}")
        ax.plot(
            TEMPERATURES,
            s_sub,
            "-s",
            ms=3,
            color=color,
            alpha=0.55,
            label=f"subset (clipped), spread {spread}",
        )
        ax.axhline(limit, color=color, ls=":", lw=1)
        at = {
            t: (
                np.interp(np.log(t), np.log(TEMPERATURES), s_max),
                np.interp(np.log(t), np.log(TEMPERATURES), s_sub),
            )
            for t in (0.01, 0.1, 0.2, 0.5)
        }
        print(
            f"spread {spread}: union limit {limit:.2f}; min clipped subset {s_sub.min():.2f}; "
            + "; ".join(f"τ={t}: max {a:.2f} subset {b:.2f}" for t, (a, b) in at.items())
        )
    ax.axhline(K, color="k", lw=0.8)
    ax.text(TEMPERATURES[0], K + 0.1, "k = 5", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel("expected sum of the mask")
    ax.set_title(f"G-Rerank mask, n = {N}, k = {K} (dotted: τ→0 limit of max)", fontsize=10)
    ax.set_ylim(0, K + 0.6)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
