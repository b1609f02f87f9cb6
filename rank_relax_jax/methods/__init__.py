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
(NeuralSort, SoftSort), ``smoothi`` (SmoothI), ``isotonic`` (permutahedron projection, PAV).
"""
