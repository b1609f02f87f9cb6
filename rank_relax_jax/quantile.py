r"""Soft quantiles and medians, read off a soft sort by NumPy's "linear" interpolation.

``soft_quantile(x, q)`` soft-sorts the valid entries of each list with any registered sort
method (`rank_relax_jax.ranking.soft_sort`) and interpolates between the two sorted slots around
position $h = (m - 1)\,q$ exactly as ``numpy.quantile(..., method="linear")`` does, $m$
being the list's number of valid entries. As the sort's temperature goes to 0 the soft sort
becomes the sort, so the result becomes ``jnp.quantile`` of the valid entries.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from rank_relax_jax import _checks, methods
from rank_relax_jax._sharding import auto_sharding


def _check_q(fn: str, q: Any, dtype: Any) -> jax.Array:
    """``q`` as a scalar or 1-D array; concrete values must lie in [0, 1]."""
    if not _checks.is_traced(q):
        arr = np.asarray(q)
        if arr.ndim > 1:
            raise ValueError(
                f"{fn}: argument `q` must be a scalar or a 1-D array of quantiles; got shape "
                f"{arr.shape}."
            )
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError(f"{fn}: argument `q` must be real; got dtype {arr.dtype}.")
        if arr.size and not (np.all(arr >= 0) and np.all(arr <= 1)):
            raise ValueError(f"{fn}: argument `q` must be in [0, 1]; got {q!r}.")
    q = jnp.asarray(q, dtype=dtype)
    if q.ndim > 1:
        raise ValueError(
            f"{fn}: argument `q` must be a scalar or a 1-D array of quantiles; got shape {q.shape}."
        )
    return q


@auto_sharding
def soft_quantile(
    x: ArrayLike,
    q: ArrayLike,
    *,
    method: str = "isotonic",
    temperature: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    **options: Any,
) -> jax.Array:
    r"""Differentiable ``q``-quantile(s) of ``x`` along ``axis``.

    With $s$ the soft sort of the $m$ valid entries (ascending), $h = (m - 1)\,q$,
    $\ell = \lfloor h \rfloor$ and $\lambda = h - \ell$:

    $$
    Q_q(x) = (1 - \lambda)\, s_{\ell} + \lambda\, s_{\min(\ell + 1,\, m - 1)}
    \qquad (\text{slots counted from } 0),
    $$

    NumPy's default ``"linear"`` rule, so as ``temperature`` → 0 the result tends to
    ``jnp.quantile(x[valid], q)``. The gradient flows through the two soft-sorted slots (and
    through ``q``); with an O(n log n) sort method (``isotonic``, ``lapsum``) the whole op is
    O(n log n) per list.

    Args:
      x: Floating array.
      q: Quantile in $[0, 1]$, a scalar or a 1-D array of quantiles (concrete values outside
        $[0, 1]$ raise ValueError; traced ones give NaN).
      method: Any method of `rank_relax_jax.soft_sort` (e.g. ``"isotonic"``, ``"lapsum"``,
        ``"neuralsort"``, ``"softsort"``).
      temperature: Positive smoothness of the soft sort; may be traced.
      axis: Axis to take the quantile along; it is reduced away.
      where: Optional boolean mask broadcastable to ``x``; the quantile of a list is that of
        its valid entries. A fully masked list gives 0 (and zero gradient).
      **options: Options of the chosen sort method (e.g. ``regularization="kl"`` for
        ``isotonic``).

    Returns:
      For a scalar ``q``, ``x``'s shape without ``axis``; for a 1-D ``q`` of length ``Q``,
      ``(Q,) +`` that shape (``numpy.quantile``'s convention: the quantile axis first). The
      dtype is ``x``'s.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import soft_quantile
      >>> x = jnp.array([[3.0, 1.0, 4.0, 1.5], [9.0, 2.0, 6.0, 5.0]])
      >>> soft_quantile(x, jnp.array([0.25, 0.5]), temperature=1e-3)
      Array([[1.375, 4.25 ],
             [2.25 , 5.5  ]], dtype=float32)
      >>> jnp.quantile(x, jnp.array([0.25, 0.5]), axis=-1)
      Array([[1.375, 4.25 ],
             [2.25 , 5.5  ]], dtype=float32)
      >>> med = soft_quantile(x, 0.5, method="lapsum", temperature=0.5)
      >>> med.astype(float).round(3).tolist()
      [2.297, 5.5]
    """
    fn = "soft_quantile"
    entry, opts, frame = methods.dispatch(
        fn, "sort", method, x, axis=axis, where=where, options=options
    )
    qv = _check_q(fn, q, frame.x.dtype)
    t = frame.positive_scalar(temperature)
    n = frame.n
    batch = frame.x.shape[:-1]
    if n == 0:
        out = jnp.zeros((*batch, *qv.shape), frame.x.dtype)
    else:
        s = entry.kernel(frame.x, frame.mask, t, descending=False, **opts)
        m = frame.count()[..., None]  # [..., 1]
        qf = jnp.broadcast_to(qv.reshape(-1), (*batch, qv.size))  # [..., Q]
        h = (jnp.maximum(m, 1) - 1).astype(s.dtype) * qf
        lo = jnp.floor(jax.lax.stop_gradient(h))
        frac = h - lo
        lo_i = lo.astype(jnp.int32)
        hi_i = jnp.minimum(lo_i + 1, jnp.maximum(m, 1) - 1)
        s_lo = jnp.take_along_axis(s, jnp.clip(lo_i, 0, n - 1), axis=-1)
        s_hi = jnp.take_along_axis(s, jnp.clip(hi_i, 0, n - 1), axis=-1)
        out = s_lo * (1 - frac) + s_hi * frac
        out = jnp.where(m > 0, out, jnp.zeros((), out.dtype))
        if _checks.is_traced(q):
            out = jnp.where((qf >= 0) & (qf <= 1), out, jnp.asarray(jnp.nan, out.dtype))
        out = jnp.moveaxis(out, -1, 0)  # quantile axis first
        out = out.reshape(*qv.shape, *batch)
    return frame.finish_reduced(out)


@auto_sharding
def soft_median(
    x: ArrayLike,
    *,
    method: str = "isotonic",
    temperature: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    **options: Any,
) -> jax.Array:
    r"""Differentiable median of ``x`` along ``axis``: `soft_quantile` at ``q = 0.5``.

    Tends to ``jnp.median`` of the valid entries as ``temperature`` → 0 (for an even count,
    the mean of the two middle soft-sorted values).

    Args:
      x: Floating array.
      method: Any method of `rank_relax_jax.soft_sort`.
      temperature: Positive smoothness of the soft sort; may be traced.
      axis: Axis to reduce.
      where: Optional boolean mask; the median of a list is that of its valid entries.
      **options: Options of the chosen sort method.

    Returns:
      ``x``'s shape without ``axis``, in ``x``'s dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import soft_median
      >>> soft_median(jnp.array([3.0, 1.0, 4.0, 1.5, 9.0]), temperature=1e-3)
      Array(3., dtype=float32)
    """
    return soft_quantile(
        x, 0.5, method=method, temperature=temperature, axis=axis, where=where, **options
    )
