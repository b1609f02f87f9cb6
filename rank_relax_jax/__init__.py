"""rank_relax_jax: differentiable ranking, sorting and top-k selection for JAX.

The main operators are re-exported here. The submodules ``attention`` (differentiable masked
attention), ``gumbel`` (samplers), ``losses`` (training losses) and ``metrics`` (exact ranking
metrics) are imported too, so ``rank_relax_jax.losses.ndcg_loss`` works after
``import rank_relax_jax``.
"""

from rank_relax_jax import attention as attention
from rank_relax_jax import gumbel as gumbel
from rank_relax_jax import losses as losses
from rank_relax_jax import metrics as metrics
from rank_relax_jax.gumbel import (
    gumbel_attention_mask,
    gumbel_softmax,
    gumbel_topk,
    relaxed_subset_sample,
    relaxed_topk_gumbel,
    relaxed_topk_gumbel_log,
)
from rank_relax_jax.quantile import soft_median, soft_quantile
from rank_relax_jax.ranking import rank, soft_permutation, soft_rank, soft_sort
from rank_relax_jax.topk import perturbed_topk_mask, soft_topk_mask, topk_mask

__version__ = "0.1.0"

__all__ = [
    "gumbel_attention_mask",
    "gumbel_softmax",
    "gumbel_topk",
    "perturbed_topk_mask",
    "rank",
    "relaxed_subset_sample",
    "relaxed_topk_gumbel",
    "relaxed_topk_gumbel_log",
    "soft_median",
    "soft_permutation",
    "soft_quantile",
    "soft_rank",
    "soft_sort",
    "soft_topk_mask",
    "topk_mask",
]
