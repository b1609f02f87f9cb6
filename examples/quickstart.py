"""A two-minute tour of rank_relax_jax: soft ranks, soft sorts, top-k masks and their gradients.

Run: python examples/quickstart.py
"""

import jax
import jax.numpy as jnp

import rank_relax_jax as rrj


def main() -> None:
    scores = jnp.array([0.3, -1.2, 2.5, 0.9, 0.0])
    print("scores              ", scores)
    print("exact ranks         ", rrj.rank(scores))
    print("exact top-2 mask    ", rrj.topk_mask(scores, 2))
    print()
    print("Soft ranks tend to the exact ranks as the temperature goes to 0:")
    for method in ("isotonic", "sigmoid", "neuralsort"):
        for t in (1.0, 0.1, 0.01):
            r = rrj.soft_rank(scores, method=method, temperature=t)
            print(f"  {method:10s} temperature={t:<5} {jnp.round(r, 3)}")
    print()
    print("soft sort (isotonic, t=0.1)", jnp.round(rrj.soft_sort(scores, temperature=0.1), 3))
    mask = rrj.soft_topk_mask(scores, 2, temperature=0.5)
    print("soft top-2 mask (isotonic, t=0.5)", jnp.round(mask, 3), "sum", float(mask.sum()))
    print()

    # Gradients flow through every relaxation: push item 1 (score -1.2) into the top 2.
    def loss(s):
        return -rrj.soft_topk_mask(s, 2, temperature=0.5)[1]

    print("d loss / d scores   ", jnp.round(jax.grad(loss)(scores), 3))

    # Ragged lists: padding (where=False) is ignored and gets exactly zero gradient.
    batch = jnp.array([[3.0, 1.0, 2.0, 0.0], [0.5, 4.0, 0.0, 0.0]])
    valid = jnp.array([[True, True, True, False], [True, True, False, False]])
    print("ranks of ragged batch", rrj.soft_rank(batch, temperature=0.01, where=valid).round(3))

    # Gumbel reranking's relaxed top-k mask: a random, differentiable k-subset of documents.
    key = jax.random.key(0)
    mask = rrj.gumbel_attention_mask(key, scores, 2, temperature=0.5)
    print("G-Rerank mask (one draw)", jnp.round(mask, 3), "sum", float(mask.sum().round(3)))


if __name__ == "__main__":
    main()
