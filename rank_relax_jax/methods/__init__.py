"""Relaxation families, each implemented once over the last axis.

Every kernel here works on a ``[..., n]`` array already prepared by
`rank_relax_jax._axis.prepare` (compute dtype, padding replaced by 0) and is vectorized
over the leading axes (no per-row loop). The shared signature is::

    kernel(x, mask, temperature, *, descending, **options) -> out

where ``mask`` is a ``[..., n]`` boolean array or ``None`` (no padding) and ``temperature`` is a
scalar array. Rank kernels return ranks among the valid entries (1..m); sort kernels put the m
valid sorted values in the first m slots; permutation kernels return ``[..., n, n]`` row-stochastic
matrices whose row r weights the input entries in sorted slot r. The public wrappers in
`rank_relax_jax.ranking` and `rank_relax_jax.topk` re-mask, cast and move axes.

Modules: ``pairwise`` (sigmoid / ApproxNDCG, probabilistic / SoftRank), ``permutation``
(NeuralSort, SoftSort), ``smoothi`` (SmoothI), ``isotonic`` (permutahedron projection, PAV),
``lapsum`` (sums of Laplace CDFs and their closed-form inverse), ``network`` (differentiable
sorting networks), ``sinkhorn`` (entropic optimal transport).

Each (operation, method) pair is registered once below, with its per-method options, in
`rank_relax_jax.methods._registry`; a new method is one module plus its ``register`` lines here.
"""

from rank_relax_jax import _checks
from rank_relax_jax.methods import (
    isotonic,
    lapsum,
    network,
    pairwise,
    permutation,
    sinkhorn,
    smoothi,
)
from rank_relax_jax.methods._registry import (
    Entry,
    Option,
    dispatch,
    entries,
    lookup,
    methods,
    register,
    resolve_options,
)

_ISOTONIC = {"regularization": Option("l2", choices=isotonic.REGULARIZATIONS)}
_BLONDEL = "projection onto the permutahedron (Blondel et al. 2020)"

register("rank", "isotonic", isotonic.isotonic_rank, cost="O(n log n)", summary=_BLONDEL,
         options=_ISOTONIC)  # fmt: skip
register("rank", "sigmoid", pairwise.sigmoid_rank, cost="O(n²)",
         summary="1 + Σ_j σ((x_i − x_j)/τ) (Qin et al. 2010)")  # fmt: skip
register("rank", "probabilistic", pairwise.probabilistic_rank, cost="O(n²)",
         summary="1 + Σ_j Φ((x_i − x_j)/√2τ) (Taylor et al. 2008)")  # fmt: skip
register("rank", "neuralsort", permutation.neuralsort_rank, cost="O(n²)",
         summary="ranks read off the relaxed permutation (Grover et al. 2019)")  # fmt: skip
register("rank", "softsort", permutation.softsort_rank, cost="O(n²)",
         summary="ranks read off the relaxed permutation (Prillo & Eisenschlos 2020)")  # fmt: skip
register("rank", "smoothi", smoothi.smoothi_rank, cost="O(n²)",
         summary="smooth rank indicators (Thonet et al. 2021)")  # fmt: skip

register("sort", "isotonic", isotonic.isotonic_sort, cost="O(n log n)", summary=_BLONDEL,
         options=_ISOTONIC)  # fmt: skip
register("sort", "neuralsort", permutation.neuralsort_sort, cost="O(n²)",
         summary="relaxed permutation times x (Grover et al. 2019)")  # fmt: skip
register("sort", "softsort", permutation.softsort_sort, cost="O(n²)",
         summary="relaxed permutation times x (Prillo & Eisenschlos 2020)")  # fmt: skip
register("sort", "smoothi", smoothi.smoothi_sort, cost="O(n²)",
         summary="rank indicators times x (Thonet et al. 2021); not monotone")  # fmt: skip

register("permutation", "neuralsort", permutation.neuralsort_permutation, cost="O(n²)",
         summary="unimodal row-stochastic relaxation (Grover et al. 2019)")  # fmt: skip
register("permutation", "softsort", permutation.softsort_permutation, cost="O(n²)",
         summary="softmax of −|sort(x)_r − x_j|/τ (Prillo & Eisenschlos 2020)")  # fmt: skip
register("permutation", "smoothi", smoothi.smoothi_permutation, cost="O(n²)",
         summary="the matrix of smooth rank indicators (Thonet et al. 2021)")  # fmt: skip

register("topk", "isotonic", isotonic.isotonic_topk_mask, cost="O(n log n)",
         summary="projection onto the capped simplex (Blondel et al. 2020; Sander et al. 2023)",
         options=_ISOTONIC)  # fmt: skip
register("topk", "sigmoid", pairwise.sigmoid_topk_mask, cost="O(n log n)",
         summary="σ((x_i − t)/τ), t midway between the k-th and (k+1)-th largest")  # fmt: skip

_LAPSUM = "Laplace-CDF sum and its closed-form inverse (Struski et al. 2025)"
register("rank", "lapsum", lapsum.lapsum_rank, cost="O(n log n)",
         summary="½ + Σ_j Lap_τ(x_i − x_j), " + _LAPSUM)  # fmt: skip
register("sort", "lapsum", lapsum.lapsum_sort, cost="O(n log n)",
         summary="slot r = G⁻¹(r − ½), " + _LAPSUM)  # fmt: skip
register("permutation", "lapsum", lapsum.lapsum_permutation, cost="O(n²)",
         summary="doubly stochastic, differences of nested top-k masks, " + _LAPSUM)  # fmt: skip
register("topk", "lapsum", lapsum.lapsum_topk_mask, cost="O(n log n)",
         summary="Lap_τ(x_i − s) with Σ = k exactly, " + _LAPSUM)  # fmt: skip
_NETWORK = {
    "network": Option("bitonic", choices=network.NETWORKS),
    "sigmoid": Option("logistic", choices=network.SIGMOIDS),
}
_PETERSEN = "relaxed odd-even / bitonic sorting network (Petersen et al. 2021, 2022)"
register("rank", "network", network.network_rank, cost="O(n log² n) bitonic, O(n²) odd-even",
         summary=_PETERSEN, options=_NETWORK)  # fmt: skip
register("sort", "network", network.network_sort, cost="O(n log² n) bitonic, O(n²) odd-even",
         summary=_PETERSEN, options=_NETWORK)  # fmt: skip
register("permutation", "network", network.network_permutation,
         cost="O(n² log² n) bitonic, O(n³) odd-even", summary=_PETERSEN,
         options=_NETWORK)  # fmt: skip
_SINKHORN = {
    "squash": Option("sigmoid", choices=sinkhorn.SQUASHES),
    "num_iterations": Option(sinkhorn.NUM_ITERATIONS, check=_checks.check_positive_int),
    "threshold": Option(sinkhorn.THRESHOLD, check=sinkhorn.check_threshold),
}
_CUTURI = "entropic optimal transport onto a sorted grid (Cuturi et al. 2019)"
_SINKHORN_COST = "O(n² · iterations)"
register("rank", "sinkhorn", sinkhorn.sinkhorn_rank, cost=_SINKHORN_COST, summary=_CUTURI,
         options=_SINKHORN)  # fmt: skip
register("sort", "sinkhorn", sinkhorn.sinkhorn_sort, cost=_SINKHORN_COST, summary=_CUTURI,
         options=_SINKHORN)  # fmt: skip
register("permutation", "sinkhorn", sinkhorn.sinkhorn_permutation, cost=_SINKHORN_COST,
         summary=_CUTURI, options=_SINKHORN)  # fmt: skip
register("topk", "sinkhorn", sinkhorn.sinkhorn_topk_mask, cost="O(n · iterations)",
         summary="entropic optimal transport onto 2 targets (Xie et al. 2020)",
         options=_SINKHORN)  # fmt: skip

__all__ = [
    "Entry",
    "Option",
    "dispatch",
    "entries",
    "lookup",
    "methods",
    "register",
    "resolve_options",
]
