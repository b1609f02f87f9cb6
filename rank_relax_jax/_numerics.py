"""The numerics floor every module builds on: masked softmaxes, a finite ``log 0`` and friends.

Each helper exists once here so that the rules they encode (no ``-inf``, no ``inf - inf``, no
NaN gradient from a discarded branch, the double ``where`` of ``jax.nn``) hold everywhere:

* `log_zero`: the one finite stand-in for ``log 0`` (masked logits, additive attention biases,
  padding in log space), dtype-aware and capped at float32's range as ``jax.nn`` caps its own
  attention constant;
* `masked_log_softmax` and `masked_softmax`: ``jax.nn.log_softmax(where=)`` and
  ``jax.nn.softmax(where=)`` with finite outputs on masked entries and in fully masked rows;
* `safe_div`: ``num / den`` where ``den > 0``, else 0, with finite gradients;
* `straight_through`: the hard value forward, the soft gradient backward;
* `khot`: a ``[..., n]`` mask with ones at given indices (one scatter, no sort);
* `selectable` and `topk_indices`: the sampler's view of a list (padding and ``-inf`` scores
  can never be selected) and the indices of its k largest keys.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rank_relax_jax import _sort


def log_zero(dtype: Any) -> jax.Array:
    """The finite value that stands for ``log 0`` (a masked logit, an additive bias for M = 0).

    A quarter of the dtype's range, capped at float32's range. The cap is the one
    ``jax.nn.dot_product_attention`` applies to its own mask constant (``_get_large_negative``):
    attention computes its softmax in float32, where a float64 constant beyond float32's range
    would become ``-inf``. A quarter (``jax.nn`` uses 0.7 for a mask that *replaces* a logit)
    because this value is *added*: to ordinary logits, to another bias of this kind, or to
    ``jax.nn``'s own constant, and each such sum must stay finite. ``exp`` of it is exactly 0
    after any max-shift.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax._numerics import log_zero
      >>> bool(jnp.isfinite(2 * log_zero(jnp.float32))), float(jnp.exp(log_zero(jnp.float32)))
      (True, 0.0)
    """
    cap = min(float(jnp.finfo(dtype).max), float(jnp.finfo(np.float32).max))
    return jnp.asarray(-0.25 * cap, dtype=dtype)


def masked_log_softmax(logits: jax.Array, mask: jax.Array | None) -> jax.Array:
    r"""Log-softmax over the last axis restricted to ``mask``; masked entries get `log_zero`.

    $\log p_i = z_i - \log \sum_{j \in \text{mask}} e^{z_j}$ by ``jax.nn.log_softmax(where=)``
    (max-shifted with ``stop_gradient``; masked entries never reach ``exp``). Every output is
    finite for finite valid logits, also in a fully masked row, and masked entries get exactly
    zero gradient. ``mask`` broadcasts against ``logits``; ``None`` means all valid. O(n).

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax._numerics import masked_log_softmax
      >>> out = masked_log_softmax(jnp.log(jnp.array([1.0, 3.0, 5.0])),
      ...                          jnp.array([True, True, False]))
      >>> jnp.exp(out).round(4)
      Array([0.25, 0.75, 0.  ], dtype=float32)
    """
    if mask is None:
        return jax.nn.log_softmax(logits, axis=-1)
    mask = jnp.broadcast_to(mask, logits.shape)
    out = jax.nn.log_softmax(logits, axis=-1, where=mask)
    return jnp.where(mask, out, log_zero(out.dtype))


def masked_softmax(logits: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Softmax over the last axis restricted to ``mask``, by ``jax.nn.softmax(where=)``.

    The companion of `masked_log_softmax` (the same max shift and masking, and ``jax.nn``'s
    custom JVP, whose tangent uses only the output). Masked entries get exactly 0 (and zero
    gradient); a fully masked row is all zeros. O(n).

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax._numerics import masked_softmax
      >>> x, m = jnp.log(jnp.array([1.0, 3.0, 5.0])), jnp.array([True, True, False])
      >>> masked_softmax(x, m).round(4)
      Array([0.25, 0.75, 0.  ], dtype=float32)
    """
    if mask is None:
        return jax.nn.softmax(logits, axis=-1)
    mask = jnp.broadcast_to(mask, logits.shape)
    out = jax.nn.softmax(logits, axis=-1, where=mask)
    return jnp.where(mask, out, jnp.zeros((), out.dtype))


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` where ``den > 0``, else 0; the discarded branch cannot make NaN gradients.

    A NaN ``den`` counts as not positive (result 0); a NaN ``num`` over a positive ``den``
    stays NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax._numerics import safe_div
      >>> safe_div(jnp.array([1.0, 1.0]), jnp.array([4.0, 0.0]))
      Array([0.25, 0.  ], dtype=float32)
    """
    ok = den > 0
    safe = jnp.where(ok, den, jnp.ones((), den.dtype))
    return jnp.where(ok, num / safe, jnp.zeros((), num.dtype))


def straight_through(hard: jax.Array, soft: jax.Array) -> jax.Array:
    """``hard`` in the forward pass, the gradient of ``soft`` in the backward pass.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax._numerics import straight_through
      >>> f = lambda x: straight_through(jnp.round(x), 2 * x)
      >>> f(0.8), jax.grad(f)(0.8)
      (Array(1., dtype=float32, weak_type=True), Array(2., dtype=float32, weak_type=True))
    """
    return soft + jax.lax.stop_gradient(hard - soft)


def khot(indices: jax.Array, n: int, dtype: Any, selected: jax.Array | None = None) -> jax.Array:
    """``[..., n]`` mask with 1 at ``indices[..., j]`` (where ``selected[..., j]``), else 0.

    ``indices`` is ``[..., k]`` with distinct entries per row; ``selected`` (same shape, bool)
    drops the slots that are not real selections. One O(k) scatter per row.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax._numerics import khot
      >>> khot(jnp.array([[2, 0]]), 4, jnp.float32)
      Array([[1., 0., 1., 0.]], dtype=float32)
    """
    # A 1-D scatter vmapped over the batch axes (not one flattened 2-D scatter), so a batch
    # sharded over devices stays on its devices.
    if selected is None:
        selected = jnp.ones(indices.shape, bool)

    def one(idx: jax.Array, sel: jax.Array) -> jax.Array:
        return jnp.zeros((n,), dtype).at[idx].set(sel.astype(dtype), unique_indices=True)

    for _ in range(indices.ndim - 1):
        one = jax.vmap(one)
    return one(indices, selected)


def selectable(x: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """The scores with unselectable entries zeroed, and the ``[..., n]`` selectable mask.

    An entry can be selected when it is not padding and its score is not ``-inf`` (a sampler's
    "never select"). Its score is replaced by 0 (first half of the double ``where``), so neither
    noise nor a ``-inf`` can reach a gradient. A NaN score stays selectable so that it propagates.
    """
    valid = x != -jnp.inf
    if mask is not None:
        valid = valid & mask
    return jnp.where(valid, x, jnp.zeros((), x.dtype)), valid


def topk_indices(keys: jax.Array, valid: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Indices of the ``k`` largest valid keys, and which of them are real selections.

    Invalid entries and NaN keys rank below everything; with fewer than ``k`` valid keys the
    remaining slots are marked unselected. The library's stable sort rather than
    ``lax.top_k``: XLA:CPU lowers ``top_k`` to a custom call that its SPMD partitioner cannot
    split, so a batch sharded over devices was all-gathered; same order (ties: lower index).
    """
    ok = valid & ~jnp.isnan(keys)
    idx = _sort.argsort(jnp.where(ok, keys, jnp.zeros((), keys.dtype)), ok, descending=True)
    idx = idx[..., :k]
    return idx, jnp.take_along_axis(ok, idx, axis=-1)
