"""rank_relax_jax: differentiable ranking, sorting and top-k selection for JAX."""

from rank_relax_jax.ranking import rank, soft_permutation, soft_rank, soft_sort
from rank_relax_jax.topk import soft_topk_mask, topk_mask

__version__ = "0.1.0"

__all__ = [
    "rank",
    "soft_permutation",
    "soft_rank",
    "soft_sort",
    "soft_topk_mask",
    "topk_mask",
]
