"""``standardize=True``: per-list normalisation that makes one temperature travel.

A relaxation's temperature is measured in the units of the scores, and for several methods
also in "entries per unit": a temperature tuned at n = 1,000 blurs a different share of the
list at n = 5,000, and a different share again after the scores are rescaled (torchsort #66,
#74; fast-soft-sort #14). With ``standardize=True`` the public wrappers map each list to

    z = c(m) · (x − μ) / σ

before the kernel, where μ and σ are the mean and standard deviation over the list's m valid
entries (padding is ignored and stays 0) and c(m) is a per-method factor chosen so that the
error *relative to the list* (mean |soft rank − rank| / m, the share of the k-mask misplaced,
the sorting error in units of σ) depends on neither n nor the scale of x:

| method | c(m) |
| --- | --- |
| isotonic L2 rank / sort, isotonic KL sort | m |
| neuralsort | 1/m |
| everything else | 1 |

* isotonic L2: ρ = (m, …, 1) has unit gaps; z-scores of m entries have gaps ~ 1/m, so without
  the factor the share of pooled (tied) entries grows with m.
* isotonic KL sort: P_KL(ρ/τ, z) compares the gaps of z with the unit gaps of ρ/τ, as the L2
  sort does (for two neighbours the pooling condition is the same), so it takes the same
  factor. Unlike L2 it is not n-free for every score distribution: a pooled block's values are
  log-sum-exps of its z, i.e. anchored at its extreme member (the smallest for an ascending
  sort), so the error follows the sample extreme, which drifts with m when that tail is
  unbounded (Gaussian: √(2 log m)); where it is bounded (uniform scores, or exponential scores
  sorted ascending) it is n-free.
* neuralsort: its logits (m + 1 − 2i)·x − Σ|x − x_k| grow with m; the factor keeps the blurred
  share of rows fixed.
* everything else (pairwise sigmoid/probabilistic/LapSum-type CDF sums, SoftSort, isotonic KL
  rank and top-k masks, Sinkhorn/OT, sorting networks): the blurred share is the share of z-scores
  within ~τ of each other, already m-free.

``soft_sort`` maps its output back to x's units, σ·sort(z)/c(m) + μ, so the hard limit is still
``jnp.sort(x)``. σ is floored at 16·eps·max|x| (and at √tiny), with a stop-gradient on the
floor, so a constant list (σ = 0) gives all-tied, finite outputs and finite gradients; the
floor is relative, so lists at scale 1e-3 (or 1e-30) are standardized like lists at scale 1.

A method registered later gets c(m) = 1 unless it adds its rule to `RULES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

# (operation, method, regularization or None) -> exponent p of c(m) = m**p.
RULES: dict[tuple[str, str, str | None], int] = {
    ("rank", "isotonic", "l2"): 1,
    ("sort", "isotonic", "l2"): 1,
    ("sort", "isotonic", "kl"): 1,
    ("rank", "neuralsort", None): -1,
    ("sort", "neuralsort", None): -1,
    ("permutation", "neuralsort", None): -1,
}


def exponent(operation: str, method: str, options: Mapping[str, Any]) -> int:
    """The exponent p of the factor c(m) = m**p for ``method`` of ``operation``."""
    reg = options.get("regularization")
    for key in ((operation, method, reg), (operation, method, None)):
        if key in RULES:
            return RULES[key]
    return 0


def statistics(x: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean, floored standard deviation and valid count over the last axis (keepdims)."""
    dtype = x.dtype
    if mask is None:
        valid = jnp.ones(x.shape, bool)
    else:
        valid = mask
    m = jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True), 1).astype(dtype)
    mean = jnp.sum(jnp.where(valid, x, 0), axis=-1, keepdims=True) / m
    dev = jnp.where(valid, x - mean, 0)
    var = jnp.sum(dev * dev, axis=-1, keepdims=True) / m
    finfo = jnp.finfo(dtype)
    big = jnp.max(jnp.where(valid, jnp.abs(x), 0), axis=-1, keepdims=True)
    floor = jax.lax.stop_gradient(jnp.maximum(16 * finfo.eps * big, jnp.sqrt(finfo.tiny)))
    # Double where: sqrt's derivative at var = 0 is infinite even in the branch not taken.
    ok = var > floor * floor
    std = jnp.where(ok, jnp.sqrt(jnp.where(ok, var, 1)), floor)
    return mean, std, m


def apply(
    operation: str,
    method: str,
    options: Mapping[str, Any],
    x: jax.Array,
    mask: jax.Array | None,
) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """Standardizes ``x`` ([..., n], padding 0) per list for ``method`` of ``operation``.

    Returns:
      ``(z, undo)``: the kernel input (padding still 0) and the map from a sorted output in
      z's units back to x's units (used by ``soft_sort``).
    """
    mean, std, m = statistics(x, mask)
    c = m ** exponent(operation, method, options)
    z = (x - mean) / std * c
    if mask is not None:
        z = jnp.where(mask, z, jnp.zeros((), z.dtype))

    def undo(out: jax.Array) -> jax.Array:
        return out * (std / c) + mean

    return z, undo


def kernel_input(
    standardize: bool, operation: str, method: str, options: Mapping[str, Any], frame: Any
) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """The public wrappers' one call: ``frame.x`` unchanged unless ``standardize``."""
    if not isinstance(standardize, bool):
        raise TypeError(
            f"{frame.fn}: `standardize` must be a Python bool; got {standardize!r} "
            f"({type(standardize).__name__})."
        )
    if not standardize:
        return frame.x, lambda out: out
    return apply(operation, method, options, frame.x, frame.mask)
