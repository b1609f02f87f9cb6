"""Soft ranking, soft sorting and relaxed permutation matrices, and exact ranks.

The public functions here validate their arguments, handle ``axis``, ``where`` and dtypes through
`rank_relax_jax._axis`, and dispatch to a relaxation implemented once over the last axis in
`rank_relax_jax.methods`. Exact ranks follow ``scipy.stats.rankdata``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rank_relax_jax import _axis, _checks, _sort, _standardize, methods
from rank_relax_jax._sharding import auto_sharding

# Method lists, read from the kernel registry (rank_relax_jax/methods/__init__.py).
RANK_METHODS = methods.methods("rank")
SORT_METHODS = methods.methods("sort")
PERMUTATION_METHODS = methods.methods("permutation")
TIES = ("average", "min", "max", "dense", "ordinal")
# `regularization` is a keyword of the public signature: left at its default, it is no error for
# a method that does not take it.
_ISOTONIC_DEFAULTS = {"regularization": "l2"}


@auto_sharding
def soft_rank(
    x: ArrayLike,
    *,
    method: str = "isotonic",
    temperature: ArrayLike = 1.0,
    axis: int = -1,
    descending: bool = False,
    where: ArrayLike | None = None,
    regularization: str = "l2",
    standardize: bool = False,
    **options: Any,
) -> jax.Array:
    r"""Differentiable ranks of ``x`` along ``axis``.

    Rank 1 is the smallest value (``descending=False``, as ``scipy.stats.rankdata``) or the
    largest (``descending=True``). Every method tends to the exact ranks of distinct values as
    ``temperature`` $\tau \to 0$ and is smooth for $\tau > 0$.

    | method | relaxation | cost |
    |---|---|---|
    | `isotonic` | projection onto the permutahedron (Blondel et al. 2020) | O(n log n) |
    | `sigmoid` | $1 + \sum_{j \ne i} \sigma((x_i - x_j)/\tau)$ (Qin et al. 2010) | O(n²) |
    | `probabilistic` | $1 + \sum_{j \ne i} \Phi((x_i - x_j)/\sqrt2\tau)$ (Taylor 2008) | O(n²) |
    | `neuralsort` | ranks read off the relaxed permutation (Grover et al. 2019) | O(n²) |
    | `softsort` | ranks read off the relaxed permutation (Prillo & Eisenschlos 2020) | O(n²) |
    | `smoothi` | smooth rank indicators (Thonet et al. 2021) | O(n²) |
    | `lapsum` | $\frac12 + \sum_j \mathrm{Lap}_\tau(x_i - x_j)$ (Struski et al. 2025) | O(n log n)|
    | `network` | relaxed bitonic / odd-even sorting network (Petersen 2021) | O(n log² n) |
    | `sinkhorn` | entropic optimal transport onto a grid (Cuturi et al. 2019) | O(n² · iters) |

    The pairwise methods (`sigmoid`, `probabilistic`) work in blocks: O(n) memory.

    **Choose a temperature that trains.** ``isotonic`` is exact, with a gradient of exactly
    zero, for every entry that no sorted neighbour approaches closer than about $\tau$
    (L2; KL: closer than about $\tau / r$ at rank $r$). Once $\tau$ is below every
    gap of a list, that list gets no gradient at all, with no warning: the example below has
    gaps of 0.6 and more, so ``temperature=0.1`` gives exact ranks and a zero gradient. Keep
    the scores on a known scale (e.g. standardized per list) and start at ``temperature=1.0``;
    watch the share of lists with a nonzero gradient when lowering it, or use
    ``method="sigmoid"``, whose gradient is never exactly zero. The section "Temperature and
    vanishing gradients" of ``docs/methods.md`` measures how often it happens.

    Args:
      x: Floating array of scores.
      method: One of the methods above.
      temperature: Positive smoothness $\tau$ (Blondel's $\varepsilon$ for
        ``isotonic``); may be traced, so it can be annealed inside ``jit`` without recompiling.
        A concrete value <= 0 raises ValueError; a traced one gives NaN ranks (loud, not
        silently wrong: a negative temperature would reverse the order).
      axis: Axis to rank along; the other axes are batch axes.
      descending: If True, rank 1 is the largest value.
      where: Optional boolean mask broadcastable to ``x``; ``False`` marks padding, which gets
        rank 0, exactly zero gradient, and does not influence the valid entries.
      regularization: ``"l2"`` or ``"kl"``; only for ``method="isotonic"``.
      standardize: If True, each list is first z-scored over its valid entries (mean 0,
        std 1; times m for ``isotonic`` L2 and divided by m for ``neuralsort``, m the number
        of valid entries), so one temperature gives the same relative accuracy at every list
        length and score scale. The rule per method is in ``docs/choosing_a_method.md``.
      **options: Further options of the chosen method (see `rank_relax_jax.methods`); an
        option the method does not take raises an error.

    Returns:
      Array of the same shape and dtype as ``x`` with soft ranks in ``[1, m]`` for a list of
      ``m`` valid entries.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import soft_rank
      >>> import jax
      >>> x = jnp.array([0.3, -1.2, 2.5, 0.9])
      >>> soft_rank(x, temperature=1.0).round(3).tolist()  # isotonic: 0.3 and 0.9 pool
      [2.2, 1.0, 4.0, 2.8]
      >>> jax.grad(lambda v: soft_rank(v, temperature=1.0)[0])(x)  # so they get gradients
      Array([ 0.5,  0. ,  0. , -0.5], dtype=float32)
      >>> soft_rank(x, temperature=0.1)  # exact once it is small next to the gaps...
      Array([2., 1., 4., 3.], dtype=float32)
      >>> jax.grad(lambda v: soft_rank(v, temperature=0.1)[0])(x)  # ...with zero gradient
      Array([0., 0., 0., 0.], dtype=float32)
      >>> soft_rank(x, method="sigmoid", temperature=1e-3).round(2)
      Array([2., 1., 4., 3.], dtype=float32)
    """
    entry, opts, frame = methods.dispatch(
        "soft_rank", "rank", method, x, axis=axis, where=where,
        options={"regularization": regularization, **options}, defaults=_ISOTONIC_DEFAULTS,
    )  # fmt: skip
    t = frame.positive_scalar(temperature)
    xk, _ = _standardize.kernel_input(standardize, "rank", method, opts, frame)
    out = entry.kernel(xk, frame.mask, t, descending=bool(descending), **opts)
    return frame.finish_elementwise(out)


@auto_sharding
def soft_sort(
    x: ArrayLike,
    *,
    method: str = "isotonic",
    temperature: ArrayLike = 1.0,
    axis: int = -1,
    descending: bool = False,
    where: ArrayLike | None = None,
    regularization: str = "l2",
    standardize: bool = False,
    **options: Any,
) -> jax.Array:
    r"""Differentiable sort of ``x`` along ``axis`` (ascending unless ``descending=True``).

    | method | relaxation | cost |
    |---|---|---|
    | `isotonic` | projection onto the permutahedron (Blondel et al. 2020) | O(n log n) |
    | `neuralsort` | relaxed permutation times $x$ (Grover et al. 2019) | O(n²) |
    | `softsort` | relaxed permutation times $x$ (Prillo & Eisenschlos 2020) | O(n²) |
    | `smoothi` | smooth rank indicators times $x$ (Thonet et al. 2021) | O(n²) |
    | `lapsum` | inverse LapSum at level $r - ½$ in slot $r$ (Struski et al. 2025) | O(n log n) |
    | `network` | relaxed conditional swaps on the values (Petersen 2021, 2022) | O(n log² n) |
    | `sinkhorn` | barycentres of the optimal transport plan (Cuturi et al. 2019) | O(n² · iters) |

    Each tends to ``jnp.sort(x)`` as ``temperature`` → 0. The sorts of ``isotonic``,
    ``neuralsort`` and ``softsort`` are monotone; SmoothI's need not be (its later rows compete
    with the recursive factors of the earlier ones).

    Args:
      x: Floating array.
      method: One of the methods above.
      temperature: Positive smoothness; may be traced (a traced value <= 0 gives NaN).
      axis: Axis to sort along.
      descending: If True, sort from largest to smallest.
      where: Optional boolean mask; the ``m`` valid values of a list fill its first ``m`` slots
        and the remaining slots are 0.
      regularization: ``"l2"`` or ``"kl"``; only for ``method="isotonic"``.
      standardize: If True, each list is z-scored over its valid entries before the kernel
        (times m for ``isotonic`` L2, divided by m for ``neuralsort``) and the sorted output
        is mapped back, σ·sort(z)/c + μ, so the values stay in x's units while one
        temperature means the same at every length and scale (``docs/choosing_a_method.md``).
      **options: Further options of the chosen method (see `rank_relax_jax.methods`); an
        option the method does not take raises an error.

    Returns:
      Array of the same shape and dtype as ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import soft_sort
      >>> soft_sort(jnp.array([0.3, -1.2, 2.5]), method="neuralsort", temperature=1e-3)
      Array([-1.2,  0.3,  2.5], dtype=float32)
    """
    entry, opts, frame = methods.dispatch(
        "soft_sort", "sort", method, x, axis=axis, where=where,
        options={"regularization": regularization, **options}, defaults=_ISOTONIC_DEFAULTS,
    )  # fmt: skip
    t = frame.positive_scalar(temperature)
    xk, undo = _standardize.kernel_input(standardize, "sort", method, opts, frame)
    out = entry.kernel(xk, frame.mask, t, descending=bool(descending), **opts)
    return frame.finish_sorted(undo(out))


@auto_sharding
def soft_permutation(
    x: ArrayLike,
    *,
    method: str = "neuralsort",
    temperature: ArrayLike = 1.0,
    axis: int = -1,
    descending: bool = False,
    where: ArrayLike | None = None,
    standardize: bool = False,
    **options: Any,
) -> jax.Array:
    r"""Relaxed sorting permutation matrix $\hat P$ of ``x`` along ``axis``.

    $\hat P_{rj}$ is the weight of input entry $j$ in sorted slot $r$, so
    $\hat P x$ is a soft sort of $x$. Each row sums to 1 (row-stochastic); as
    ``temperature`` → 0, $\hat P$ tends to the hard permutation matrix.

    | method | relaxation | cost |
    |---|---|---|
    | `neuralsort` | unimodal row-stochastic relaxation (Grover et al. 2019) | O(n²) |
    | `softsort` | softmax of $-\lvert \mathrm{sort}(x)_r - x_j \rvert/\tau$ (Prillo 2020) | O(n²) |
    | `smoothi` | the matrix of smooth rank indicators (Thonet et al. 2021) | O(n²) |
    | `lapsum` | differences of nested LapSum top-k masks (Struski 2025) | O(n²) |
    | `network` | product of the relaxed swap layers (Petersen 2021) | O(n² log² n) |
    | `sinkhorn` | the entropic transport plan, doubly stochastic (Cuturi 2019) | O(n² · iters) |

    Args:
      x: Floating array.
      method: One of the methods above (each builds the n × n matrix: O(n²) memory).
      temperature: Positive smoothness; may be traced (a traced value <= 0 gives NaN).
      axis: Axis to sort along.
      descending: If True, slot 1 holds the largest entry.
      where: Optional boolean mask; with ``m`` valid entries the top-left ``m × m`` block (in
        valid columns) is the permutation of the filtered list, all else is 0.
      standardize: If True, each list is z-scored over its valid entries first (divided by
        m for ``neuralsort``), so one temperature means the same at every length and scale.
      **options: Further options of the chosen method; an option the method does not take
        raises an error.

    Returns:
      Array of shape ``batch + (n, n)`` where ``batch`` is ``x.shape`` without ``axis``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import soft_permutation
      >>> soft_permutation(jnp.array([0.3, -1.2, 2.5]), temperature=1e-3).round(2)
      Array([[0., 1., 0.],
             [1., 0., 0.],
             [0., 0., 1.]], dtype=float32)
    """
    entry, opts, frame = methods.dispatch(
        "soft_permutation", "permutation", method, x, axis=axis, where=where, options=options
    )
    t = frame.positive_scalar(temperature)
    xk, _ = _standardize.kernel_input(standardize, "permutation", method, opts, frame)
    out = entry.kernel(xk, frame.mask, t, descending=bool(descending), **opts)
    return frame.finish_matrix(out)


@auto_sharding
def rank(
    x: ArrayLike,
    *,
    axis: int = -1,
    descending: bool = False,
    where: ArrayLike | None = None,
    ties: str = "average",
) -> jax.Array:
    """Exact ranks along ``axis``, matching ``scipy.stats.rankdata``.

    Ranks start at 1. ``ties`` says what tied values get, exactly as in scipy: ``"average"``
    (mean of the ranks they span), ``"min"``, ``"max"``, ``"dense"`` (consecutive group ranks)
    or ``"ordinal"`` (distinct ranks in index order). ``descending=True`` ranks ``-x``. A list
    holding a NaN gets NaN ranks at every valid entry (scipy's ``nan_policy="propagate"``). The
    output is piecewise constant, so its gradient is zero; it is the zero-temperature
    reference for `soft_rank`. Cost: one O(n log n) sort and an O(n) scatter.

    Args:
      x: Floating array.
      axis: Axis to rank along.
      descending: If True, rank 1 is the largest value.
      where: Optional boolean mask; padding gets rank 0 and valid entries are ranked among
        themselves.
      ties: One of ``"average"``, ``"min"``, ``"max"``, ``"dense"``, ``"ordinal"``.

    Returns:
      Ranks with the shape and dtype of ``x``. (In bfloat16, ranks above 256 are rounded.)

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import rank
      >>> rank(jnp.array([2.0, 1.0, 2.0, 5.0]))
      Array([2.5, 1. , 2.5, 4. ], dtype=float32)
      >>> rank(jnp.array([2.0, 1.0, 2.0, 5.0]), ties="dense", descending=True)
      Array([2., 3., 2., 1.], dtype=float32)
    """
    fn = "rank"
    _checks.check_choice(fn, "ties", ties, TIES)
    frame = _axis.prepare(fn, x, axis=axis, where=where)
    xs = jax.lax.stop_gradient(frame.x)
    perm = _sort.argsort(xs, frame.mask, descending=bool(descending))
    n = frame.n
    pos = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), xs.shape)
    if ties == "ordinal":
        sorted_ranks = pos + 1
    else:
        s = jnp.take_along_axis(xs, perm, axis=-1)
        starts = jnp.concatenate(
            [jnp.ones((*s.shape[:-1], 1), bool), s[..., 1:] != s[..., :-1]], axis=-1
        )
        if frame.mask is not None:
            # A padded 0 sorted after a valid 0 must not join its tie group.
            v = jnp.take_along_axis(frame.mask, perm, axis=-1)
            starts = starts.at[..., 1:].set(starts[..., 1:] | (v[..., 1:] != v[..., :-1]))
        if ties == "dense":
            sorted_ranks = jnp.cumsum(starts, axis=-1, dtype=jnp.int32)
        else:
            first = jax.lax.cummax(jnp.where(starts, pos, 0), axis=s.ndim - 1)
            ends = jnp.concatenate([starts[..., 1:], jnp.ones((*s.shape[:-1], 1), bool)], -1)
            last = jax.lax.cummin(jnp.where(ends, pos, n - 1), axis=s.ndim - 1, reverse=True)
            if ties == "min":
                sorted_ranks = first + 1
            elif ties == "max":
                sorted_ranks = last + 1
            else:
                sorted_ranks = (first + last + 2).astype(frame.x.dtype) / 2
    out = _axis.unsort(perm, sorted_ranks.astype(frame.x.dtype))
    has_nan = jnp.any(jnp.isnan(xs), axis=-1, keepdims=True)
    out = jnp.where(has_nan, jnp.nan, out)
    return frame.finish_elementwise(out)
