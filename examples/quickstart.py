"""A two-minute tour of rank_relax_jax: soft ranks, soft sorts, top-k masks and their gradients.

Run: python examples/quickstart.py
"""

import jax
import jax.numpy as jnp
import numpy as np

import rank_relax_jax as rrj


def show(label: str, value) -> None:
    print(f"{label:36s}", np.array2string(np.asarray(value, dtype=np.float64).round(3) + 0.0))


def main() -> None:
    np.set_printoptions(precision=3, suppress=True)
    scores = jnp.array([0.3, -1.2, 2.5, 0.9, 0.0])
    show("scores", scores)
    show("exact ranks (rank 1 = smallest)", rrj.rank(scores))
    show("exact top-2 mask", rrj.topk_mask(scores, 2))
    print("\nSoft ranks tend to the exact ranks as the temperature goes to 0:")
    for method in ("isotonic", "sigmoid", "neuralsort"):
        for t in (1.0, 0.1, 0.01):
            show(
                f"  {method:10s} temperature={t}",
                rrj.soft_rank(scores, method=method, temperature=t),
            )
    print()
    show("soft sort (isotonic, t=0.5)", rrj.soft_sort(scores, temperature=0.5))
    mask = rrj.soft_topk_mask(scores, 2, temperature=2.0)
    show("soft top-2 mask (isotonic, t=2)", mask)
    print(f"{'  its sum':36s} {float(mask.sum()):.3f}")

    # Gradients flow through every relaxation: how should the scores move to put more of the
    # top-2 mass on item 3 (score 0.9, the runner-up)?
    def loss(s):
        return -rrj.soft_topk_mask(s, 2, temperature=2.0)[3]

    show("d loss / d scores", jax.grad(loss)(scores))

    # Ragged lists: padding (where=False) is ignored and gets exactly zero gradient.
    batch = jnp.array([[3.0, 1.0, 2.0, 0.0], [0.5, 4.0, 0.0, 0.0]])
    valid = jnp.array([[True, True, True, False], [True, True, False, False]])
    print("\nranks of a ragged batch (0 = padding):")
    print(np.asarray(rrj.soft_rank(batch, temperature=0.01, where=valid)).round(3) + 0.0)

    # Gumbel reranking's relaxed top-k mask: a random, differentiable k-subset of documents.
    mask = rrj.gumbel_attention_mask(jax.random.key(0), scores, 2, temperature=0.5)
    show("\nG-Rerank document mask (one draw)", mask)
    print("Run examples/gumbel_reranking.py to see it train a reranker end to end.")


if __name__ == "__main__":
    main()
