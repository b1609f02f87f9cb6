r"""Relaxed permutation matrices: NeuralSort and SoftSort, and the sorts and ranks they induce.

Both methods return a row-stochastic $\hat P \in [0,1]^{n \times n}$ whose row $r$
is a softmax over the input entries that concentrates on the entry in sorted slot $r$:

* NeuralSort (A. Grover, E. Wang, A. Zweig and S. Ermon, "Stochastic optimization of sorting
  networks via continuous relaxations", ICLR 2019), built from the identity
  $\max_k$-style characterisation of the $r$-th largest value through
  $(n + 1 - 2r)\,s - A_s 1$;
* SoftSort (S. Prillo and J. Eisenschlos, "SoftSort: a continuous relaxation for the argsort
  operator", ICML 2020), a softmax of minus the distances between the sorted scores and the
  scores.

From $\hat P$ (row $r$ = sorted slot $r$ in the requested order) this module
derives the soft sort $\hat P x$ and the soft rank
$\operatorname{rank}_j = \sum_r r\,\hat P_{rj}$ (the expected slot of entry $j$
under the column weights). Because every row sums to 1, these ranks always sum to
$m(m+1)/2$ for a list of $m$ valid entries. All three outputs cost O(n²) time and
memory (the matrix itself is n × n).

Masks: with $m$ valid entries (a traced count), sums run over valid entries only, every
softmax is taken over valid columns only, $n$ becomes $m$ in NeuralSort's slot
coefficients, and rows past $m$ are left to the public wrapper to zero. The softmax is
computed with a ``stop_gradient`` max shift, logits clipped to a finite range and a guarded
denominator, so a fully masked row gives zeros (no NaN) and float32 inputs of any finite scale
stay finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rank_relax_jax import _numerics, _sort


def masked_softmax(logits: jax.Array, mask: jax.Array | None) -> jax.Array:
    """`rank_relax_jax._numerics.masked_softmax` of logits clipped to a finite range.

    A tiny temperature can push these logits to ``±inf``; clipped, the max shift never computes
    ``inf - inf`` and the row stays a distribution (all its mass on the largest logits).
    Masked entries get exactly 0 and a row without any valid entry is all zeros.
    """
    big = jnp.finfo(logits.dtype).max / 4
    return _row_softmax(jnp.clip(logits, -big, big), mask)


def _row_sums(a: jax.Array) -> jax.Array:
    """``a.sum(-1)`` as a matrix-vector product.

    On an ``n × n`` matrix XLA:CPU fused a plain row reduction into its ``n × n`` consumer and
    recomputed it for every entry, O(n³): NeuralSort's ``soft_rank`` forward (its row sums of
    distances) took 7.3 s at n = 3,000 instead of 25 ms, and its backward (the softmax's row
    sums, whose cotangent is an outer product) jumped from 0.35 s at n = 4,000 to 58 s at
    n = 4,600. A dot is never fused that way.
    """
    return jnp.einsum("...k,k->...", a, jnp.ones(a.shape[-1:], a.dtype))


def _spread(v: jax.Array, n: int) -> jax.Array:
    """``v[..., None]`` broadcast to ``[..., n]``, as an outer product.

    Its transpose (reverse mode) is then the dot `_row_sums`, not a row reduction (see there).
    """
    return jnp.einsum("...,k->...k", v, jnp.ones((n,), v.dtype))


@jax.custom_jvp
def _row_softmax(logits: jax.Array, mask: jax.Array | None) -> jax.Array:
    """`rank_relax_jax._numerics.masked_softmax` whose derivatives sum rows by dots.

    The tangent ``p ⊙ (dl - Σ_k p dl)`` with the sum and its broadcast written as `_row_sums`
    and `_spread`, so neither mode builds a row reduction that XLA:CPU could recompute per
    entry of an ``n × n`` matrix. Masked entries have ``p = 0``, so they get no tangent.
    """
    return _numerics.masked_softmax(logits, mask)


@_row_softmax.defjvp
def _row_softmax_jvp(primals, tangents):
    logits, mask = primals
    dl, _ = tangents
    p = _row_softmax(logits, mask)
    pdl = p * dl
    return p, pdl - p * _spread(_row_sums(pdl), p.shape[-1])


def shifted_logits(v: jax.Array, mask: jax.Array | None, t: jax.Array) -> jax.Array:
    """``(v - max v) / t`` over the last axis, the max taken over ``mask`` as a constant.

    Shifted by the row max (to which a softmax is invariant) *before* dividing by ``t``: after
    `rescale` a tiny ``t`` would otherwise overflow ``v / t`` to inf for the largest entries,
    and two of them clipped to the same value tie (NeuralSort of ``[max, -max]`` at t = 1 gave
    ``[0, 0]``; SmoothI sorted ``[max, 0, -max]`` to ``[-max/2, -max/2, -max]``). Now only
    entries below the max can saturate (to ``-inf``, which `masked_softmax` clips). A row with
    no valid entry (or n = 0) is shifted by 0.
    """
    valid = v if mask is None else jnp.where(mask, v, -jnp.inf)
    top = jnp.max(valid, axis=-1, keepdims=True, initial=-jnp.inf)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    return (v - top) / t


def pow2(exponent: jax.Array, dtype) -> jax.Array:
    """``2**exponent`` exactly, built from its bits (``exponent`` int, within the normal range).

    Not ``jnp.exp2`` (not exact on every backend), and not a quotient: XLA's algebraic
    simplifier rewrites ``x / (a / b)`` as ``(x * b) / a``, which overflows near the dtype's
    maximum (the old ``rescale`` gave ``inf`` for ``x = 3.4e38`` under ``jit`` that way).
    """
    info = jnp.finfo(dtype)
    uint = {16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}[info.bits]
    biased = (exponent + (info.maxexp - 1)).astype(uint)
    return jax.lax.bitcast_convert_type(jnp.left_shift(biased, uint(info.nmant)), dtype)


def rescale(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, narrow: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Divides ``x`` and ``temperature`` by the same power of two near ``max |x|``.

    Every method here depends on ``x`` and ``temperature`` only through ``x / temperature``
    (up to per-row constants), so this changes no value, but differences and sums of scores near
    the dtype's maximum can no longer overflow: the rescaled scores are at most 8 in magnitude
    (below 2 unless ``max |x|`` is within a factor 4 of the dtype's maximum or below its
    smallest normal number). Both are multiplied by the exact reciprocal ``2**-e`` (`pow2`), a
    normal number, as is ``2**e``, so the products are exact for normal results. The scale is a
    ``stop_gradient`` constant, and the temperature is floored at the smallest normal number so
    ``0 / 0`` cannot occur.

    ``narrow=True`` keeps the scale within ``[sqrt(tiny), sqrt(max)]`` (rescaled scores then
    reach ``sqrt(max)``): for a kernel that only forms differences of two scores (the sorting
    network), which cannot overflow there, and whose floor on the rescaled temperature would
    otherwise blur small gaps in lists that also hold scores near the dtype's maximum.
    """
    _, inv = _scales(x, mask, narrow)
    t = jnp.maximum(temperature * inv, jnp.finfo(x.dtype).tiny)
    return x * inv, t


def _scales(
    x: jax.Array, mask: jax.Array | None, narrow: bool = False
) -> tuple[jax.Array, jax.Array]:
    """``[..., 1]`` ``(2**(e - 1), 2**(1 - e))``, ``2**(e - 1) <= max |x| < 2**e`` (`rescale`)."""
    mag = jnp.abs(x) if mask is None else jnp.where(mask, jnp.abs(x), 0.0)
    top = jax.lax.stop_gradient(jnp.max(mag, axis=-1, keepdims=True, initial=0.0))
    top = jnp.where(jnp.isfinite(top) & (top > 0), top, 1.0)
    info = jnp.finfo(x.dtype)
    if narrow:
        top = jnp.clip(top, jnp.sqrt(info.tiny), jnp.sqrt(info.max))
    else:
        top = jnp.clip(top, info.tiny, info.max / 4)
    # top = mantissa * 2**e with mantissa in [0.5, 1) and e in [minexp + 1, maxexp - 2], so
    # 2**(e - 1) <= top and both 2**(e - 1) and 2**(1 - e) are normal numbers.
    _, e = jnp.frexp(top)
    return pow2(e - 1, x.dtype), pow2(1 - e, x.dtype)


@jax.custom_jvp
def _times_pow2(x: jax.Array, c: jax.Array) -> jax.Array:
    """``x * c`` (``c`` a power of two), differentiated as if ``c`` were 1.

    For a function computed in rescaled units, ``c · F(x / c, t / c)``: with both scalings
    differentiated as 1, the derivative is ``F'`` at the rescaled point, which equals the true
    one exactly (the two factors cancel), and the backward pass never forms a cotangent times
    an unscaled score (near the dtype's maximum those products overflow).
    """
    return x * c


@_times_pow2.defjvp
def _times_pow2_jvp(primals, tangents):
    x, c = primals
    dx, _ = tangents
    out = x * c
    return out, jnp.broadcast_to(dx, out.shape).astype(out.dtype)


@jax.custom_jvp
def _tangent_times(y: jax.Array, c: jax.Array) -> jax.Array:
    """``y`` itself, whose tangent (and so cotangent) is multiplied by ``c``."""
    return y


@_tangent_times.defjvp
def _tangent_times_jvp(primals, tangents):
    y, c = primals
    dy, _ = tangents
    return y, dy * c


def _rescaled_relaxation(logits_fn, x, mask, temperature):
    """``softmax(logits_fn(x / s, t / s) / (t / s))`` differentiated in rescaled units.

    ``s`` is `rescale`'s power of two. The matrix depends on ``x`` and ``t`` only through their
    ratio, so its derivative in ``x`` (and ``t``) is ``1 / s`` times its derivative in the
    rescaled scores: the rescaling is differentiated as 1 (`_times_pow2`) and the cotangent of
    the matrix is multiplied by ``1 / s`` first (`_tangent_times`). So the backward pass
    divides ``cotangent / s`` by ``t / s``, never a cotangent by a ``t / s`` that the floor at
    the smallest normal number has made far larger than the true quotient (near the dtype's
    maximum that gave inf and NaN gradients).
    """
    _, inv = _scales(x, mask)
    xs = _times_pow2(x, inv)
    ts = _times_pow2(jnp.broadcast_to(temperature, inv.shape).astype(x.dtype), inv)
    ts = jnp.maximum(ts, jnp.finfo(x.dtype).tiny)
    p = masked_softmax(logits_fn(xs, ts), _column_mask(mask))
    return _tangent_times(p, inv[..., None])


def _sort_in_scaled_units(permutation, x, mask, temperature, descending):
    """``P x`` computed as ``scale · P(x / scale) (x / scale)`` (`_times_pow2`): same values."""
    scale, inv = _scales(x, mask)
    xs = _times_pow2(x, inv)
    ts = _times_pow2(jnp.broadcast_to(temperature, scale.shape).astype(x.dtype), inv)
    p = permutation(xs, mask, ts, descending=descending)
    return _times_pow2(sort_from_permutation(p, xs), scale)


def _valid_count(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``[..., 1]`` number of valid entries in the compute dtype."""
    if mask is None:
        return jnp.full((*x.shape[:-1], 1), x.shape[-1], x.dtype)
    return jnp.sum(mask, axis=-1, keepdims=True).astype(x.dtype)


def rank_from_permutation(p: jax.Array, mask: jax.Array | None) -> jax.Array:
    r"""Soft ranks $\sum_{r \le m} r\,\hat P_{rj}$ from a ``[..., n, n]`` matrix."""
    n = p.shape[-1]
    slots = jnp.broadcast_to(jnp.arange(1, n + 1, dtype=p.dtype), p.shape[:-1])
    if mask is None:
        weights = slots
    else:
        m = jnp.sum(mask, axis=-1, keepdims=True).astype(p.dtype)
        weights = jnp.where(slots <= m, slots, 0.0)  # rows past m are padding
    return jnp.einsum("...r,...rj->...j", weights, p)


def sort_from_permutation(p: jax.Array, x: jax.Array) -> jax.Array:
    r"""Soft-sorted values $\hat P x$ from a ``[..., n, n]`` matrix (row $r$: slot $r$)."""
    return jnp.einsum("...rj,...j->...r", p, x)


def _column_mask(mask: jax.Array | None) -> jax.Array | None:
    return None if mask is None else mask[..., None, :]


def neuralsort_permutation(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""NeuralSort's relaxed sorting matrix $\hat P$ (Grover et al. 2019, eq. 5).

    For scores $s$ sorted in *decreasing* order by the paper's $\hat P$, and with
    $(A_s 1)_j = \sum_k |s_j - s_k|$,

    $$
    \hat P_{r,:} = \operatorname{softmax}\!\left(
        \frac{(m + 1 - 2r)\, s - A_s 1}{\tau}\right), \qquad r = 1, \dots, m,
    $$

    over the $m$ valid entries. ``descending=True`` uses $s = x$ (the paper's
    orientation); the default ascending order uses $s = -x$, whose decreasing order is the
    increasing order of $x$. The scores are centred (a per-row constant, to which the
    softmax is invariant) so large offsets do not cost float32 precision.

    As $\tau \to 0$, $\hat P$ tends to the hard sorting permutation for distinct
    scores (at ties, rows split the mass between the tied entries). Rows always sum to 1;
    columns need not ($\hat P$ is unimodal row-stochastic, not doubly stochastic).

    Cost: O(n²) time and memory.

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, row 1 selects the largest score.

    Returns:
      ``[..., n, n]`` row-stochastic matrix; row $r$ weights the entries for sorted slot
      $r$ (rows past $m$ and padded columns are meaningless; the wrapper zeros them).

    References:
      Grover, Wang, Zweig & Ermon, "Stochastic optimization of sorting networks via continuous
      relaxations", ICLR 2019.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.permutation import neuralsort_permutation
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(neuralsort_permutation(x, None, jnp.asarray(0.1), descending=True)).round(2)
      array([[0., 0., 1.],
             [1., 0., 0.],
             [0., 1., 0.]], dtype=float32)
    """

    def logits(x, t):  # t: [..., 1]
        s = x if descending else -x
        m = _valid_count(x, mask)  # [..., 1]
        if mask is None:
            center = jnp.mean(s, axis=-1, keepdims=True)
        else:
            center = jnp.sum(jnp.where(mask, s, 0.0), axis=-1, keepdims=True) / jnp.maximum(m, 1.0)
        s = s - jax.lax.stop_gradient(center)
        dist = jnp.abs(s[..., :, None] - s[..., None, :])  # [..., j, k]
        if mask is not None:
            dist = jnp.where(mask[..., None, :], dist, 0.0)
        n = x.shape[-1]
        a1 = _row_sums(dist)  # [..., j]; a dot, not a sum (see `_row_sums`)
        r = jnp.broadcast_to(jnp.arange(1, n + 1, dtype=x.dtype), x.shape)
        coef = m + 1.0 - 2.0 * r  # [..., n] slot coefficients
        num = coef[..., :, None] * s[..., None, :] - a1[..., None, :]
        return shifted_logits(num, _column_mask(mask), t[..., None])

    return _rescaled_relaxation(logits, x, mask, temperature)


def neuralsort_sort(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""NeuralSort soft sort $\hat P x$ (see `neuralsort_permutation`).

    Each output is a convex combination of the valid inputs, so it lies in
    $[\min x, \max x]$; it tends to ``jnp.sort(x)`` as $\tau \to 0$. O(n²).

    Args:
      x: ``[..., n]`` values (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, sort from largest to smallest.

    Returns:
      ``[..., n]`` soft-sorted values with the valid ones in the first $m$ slots.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.permutation import neuralsort_sort
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(neuralsort_sort(x, None, jnp.asarray(0.5), descending=False)).round(3)
      array([-1.129,  0.255,  2.473], dtype=float32)
    """
    return _sort_in_scaled_units(neuralsort_permutation, x, mask, temperature, descending)


def neuralsort_rank(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""NeuralSort soft rank $\operatorname{rank}_j = \sum_{r \le m} r\,\hat P_{rj}$.

    The expected slot of entry $j$ under the column of $\hat P$; the ranks sum to
    $m(m+1)/2$ and tend to the exact ranks of distinct values as $\tau \to 0$. O(n²).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, rank 1 is the largest score.

    Returns:
      ``[..., n]`` soft ranks (padded positions meaningless; the wrapper zeros them).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.permutation import neuralsort_rank
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(neuralsort_rank(x, None, jnp.asarray(0.5), descending=False)).round(3)
      array([1.967, 1.046, 2.987], dtype=float32)
    """
    p = neuralsort_permutation(x, mask, temperature, descending=descending)
    return rank_from_permutation(p, mask)


def softsort_permutation(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""SoftSort's relaxed sorting matrix (Prillo & Eisenschlos 2020, eq. 3).

    $$
    \hat P_{rj} = \operatorname{softmax}_j\!\left(
        -\frac{|\operatorname{sort}(s)_r - s_j|}{\tau}\right)
    $$

    with $d = |\cdot|$ (the paper's choice). ``descending=True`` sorts $s = x$ in
    decreasing order, as in the paper; the default ascending order sorts it in increasing order.
    As in the paper's implementation, $\operatorname{sort}(s)$ is a hard sort whose
    *values* stay differentiable (gradients flow through the gathered sorted scores; only the
    permutation itself is piecewise constant).

    As $\tau \to 0$, $\hat P$ tends to the hard sorting permutation for distinct
    scores; row $r$ always puts its largest weight on the entry in slot $r$.

    Cost: one O(n log n) sort plus O(n²) time and memory for the matrix.

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, row 1 selects the largest score.

    Returns:
      ``[..., n, n]`` row-stochastic matrix; row $r$ weights the entries for sorted slot
      $r$ (rows past $m$ and padded columns are meaningless; the wrapper zeros them).

    References:
      Prillo & Eisenschlos, "SoftSort: a continuous relaxation for the argsort operator",
      ICML 2020.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.permutation import softsort_permutation
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(softsort_permutation(x, None, jnp.asarray(0.1), descending=True)).round(2)
      array([[0., 0., 1.],
             [1., 0., 0.],
             [0., 1., 0.]], dtype=float32)
    """

    def logits(x, t):  # t: [..., 1]
        perm = _sort.argsort(jax.lax.stop_gradient(x), mask, descending=descending)
        sorted_x = jnp.take_along_axis(x, perm, axis=-1)  # valid values first, differentiable
        return -jnp.abs(sorted_x[..., :, None] - x[..., None, :]) / t[..., None]

    return _rescaled_relaxation(logits, x, mask, temperature)


def softsort_sort(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""SoftSort soft sort $\hat P x$ (see `softsort_permutation`). O(n²).

    Args:
      x: ``[..., n]`` values (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, sort from largest to smallest.

    Returns:
      ``[..., n]`` soft-sorted values with the valid ones in the first $m$ slots.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.permutation import softsort_sort
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(softsort_sort(x, None, jnp.asarray(0.5), descending=False)).round(3)
      array([-1.127,  0.255,  2.471], dtype=float32)
    """
    return _sort_in_scaled_units(softsort_permutation, x, mask, temperature, descending)


def softsort_rank(
    x: jax.Array, mask: jax.Array | None, temperature: jax.Array, *, descending: bool
) -> jax.Array:
    r"""SoftSort soft rank $\operatorname{rank}_j = \sum_{r \le m} r\,\hat P_{rj}$. O(n²).

    Args:
      x: ``[..., n]`` scores (padding already replaced by 0).
      mask: ``[..., n]`` validity mask or ``None``.
      temperature: Scalar $\tau > 0$ (may be traced).
      descending: If True, rank 1 is the largest score.

    Returns:
      ``[..., n]`` soft ranks (padded positions meaningless; the wrapper zeros them).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from rank_relax_jax.methods.permutation import softsort_rank
      >>> x = jnp.array([0.3, -1.2, 2.5])
      >>> np.asarray(softsort_rank(x, None, jnp.asarray(0.5), descending=False)).round(3)
      array([1.967, 1.048, 2.986], dtype=float32)
    """
    p = softsort_permutation(x, mask, temperature, descending=descending)
    return rank_from_permutation(p, mask)
