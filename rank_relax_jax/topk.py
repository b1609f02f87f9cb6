"""Exact and relaxed top-k masks.

``topk_mask`` is the exact k-hot mask of the k largest entries. ``soft_topk_mask`` relaxes it:
``isotonic`` projects onto the capped simplex {m ∈ [0, 1]ⁿ : Σm = k} with the permutahedron
machinery of Blondel et al. (2020) (L2: sparse, Sander et al. 2023), ``sigmoid`` thresholds at the
midpoint between the k-th and (k+1)-th largest values. ``perturbed_topk_mask`` is the
expected exact mask under random noise, with the Monte-Carlo Jacobian of Berthet et al. (2020);
it takes a ``key`` (and is re-exported by `rank_relax_jax.gumbel`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rank_relax_jax import _axis, _checks, _numerics, _sort, _standardize, methods
from rank_relax_jax._sharding import auto_sharding

TOPK_METHODS = methods.methods("topk")
NOISES = ("gumbel", "normal")


def _hard_topk(x: jax.Array, mask: jax.Array | None, k: int) -> jax.Array:
    """k-hot over the last axis; ties go to the lower index; padding and NaN are never picked.

    With fewer than k valid entries the padding sorted into the first k slots is marked too;
    the public wrapper's re-masking sets it back to 0.
    """
    perm = _sort.argsort(x, mask, descending=True)
    return _numerics.khot(perm[..., :k], x.shape[-1], x.dtype)


@auto_sharding
def topk_mask(x: ArrayLike, k: int, *, axis: int = -1, where: ArrayLike | None = None) -> jax.Array:
    """Exact k-hot mask of the ``k`` largest entries of ``x`` along ``axis``.

    Ties are broken deterministically by position: among equal values the one with the lower
    index along ``axis`` is selected first (a stable sort of ``-x``). Padding (``where=False``) is
    never selected; a list with fewer than ``k`` valid entries selects all of them. A NaN entry
    is never selected and its output is NaN. The output is piecewise constant (zero gradient).
    Cost: one O(n log n) sort and an O(n) scatter.

    Args:
      x: Floating array of scores.
      k: Static number of entries to select, ``1 <= k <= x.shape[axis]``.
      axis: Axis to select along.
      where: Optional boolean mask; ``False`` marks padding.

    Returns:
      Array of 0s and 1s with the shape and dtype of ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> from rank_relax_jax import topk_mask
      >>> topk_mask(jnp.array([0.1, 3.0, 3.0, -2.0]), 2)
      Array([0., 1., 1., 0.], dtype=float32)
      >>> topk_mask(jnp.array([0.1, 3.0, 3.0, -2.0]), 1)
      Array([0., 1., 0., 0.], dtype=float32)
    """
    fn = "topk_mask"
    frame = _axis.prepare(fn, x, axis=axis, where=where)
    k = _checks.check_k(fn, k, frame.n)
    xs = jax.lax.stop_gradient(frame.x)
    out = _hard_topk(xs, frame.mask, k)
    out = jnp.where(jnp.isnan(xs), jnp.nan, out)
    return frame.finish_elementwise(out)


@auto_sharding
def soft_topk_mask(
    x: ArrayLike,
    k: int,
    *,
    method: str = "isotonic",
    temperature: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    hard: bool = False,
    regularization: str = "l2",
    standardize: bool = False,
    **options: Any,
) -> jax.Array:
    r"""Differentiable mask of the ``k`` largest entries of ``x`` along ``axis``.

    ``method="isotonic"`` solves

    $$
    m^\star = \arg\max_{m \in [0,1]^n,\ \sum_i m_i = k} \langle m, x \rangle - \tau\,R(m)
    $$

    with $R$ the squared norm (``regularization="l2"``, sparse: exact 0s and 1s away from
    the threshold) or the negative entropy (``"kl"``), in O(n log n) via isotonic regression
    (Blondel et al. 2020; Sander et al. 2023). The mask sums to exactly ``k``.

    ``method="sigmoid"`` is $\sigma((x_i - t)/\tau)$ with $t$ the midpoint between
    the k-th and (k+1)-th largest values (differentiated too); its sum is close to,
    not exactly, ``k``. Both tend to `topk_mask` as $\tau \to 0$ for distinct
    values.

    ``method="lapsum"`` is $\mathrm{Lap}_\tau(x_i - s)$ (Laplace CDF) with the threshold
    $s$ found in closed form so that the mask sums to exactly ``k`` (Struski et al. 2025),
    O(n log n), with a gradient for every entry.

    ``method="sinkhorn"`` transports the list onto two targets with masses $(m - k)/m$ and
    $k/m$ (Xie et al. 2020); the mask is $m$ times the plan's column of the top target and
    sums to ``k`` up to rounding. O(n · iterations).

    **Choose a temperature that trains.** The L2 isotonic mask is sparse: only entries within
    about $\tau$ of the threshold between the k-th and (k+1)-th largest score get a
    gradient, and once those two scores are $\tau$ or more apart the mask is exactly k-hot
    and the whole list's gradient is exactly zero, with no warning (below: at
    ``temperature=0.5``, 2.5 and 0.9 are 1.6 apart). Keep the scores on a known scale and
    start at ``temperature=1.0`` or above, or use ``regularization="kl"`` (every entry below
    the threshold keeps a gradient) or ``method="sigmoid"``. See "Temperature and vanishing
    gradients" in ``docs/methods.md`` for measurements.

    Args:
      x: Floating array of scores.
      k: Static number of entries to select, ``1 <= k <= x.shape[axis]``.
      method: One of the methods above (``"isotonic"``, ``"sigmoid"``, ``"lapsum"``,
        ``"sinkhorn"``).
      temperature: Positive smoothness $\tau$; may be traced (a traced value <= 0 gives NaN).
      axis: Axis to select along.
      where: Optional boolean mask; padding gets 0 and zero gradient, and a list with at most
        ``k`` valid entries selects all of them.
      hard: If True, return the exact `topk_mask` in the forward pass with the soft
        mask's gradient (straight-through).
      regularization: ``"l2"`` or ``"kl"``; only for ``method="isotonic"``.
      standardize: If True, each list is z-scored over its valid entries before the kernel,
        so one temperature blurs the same share of the list at every length and score scale
        (``docs/choosing_a_method.md``).
      **options: Further options of the chosen method (see `rank_relax_jax.methods`); an
        option the method does not take raises an error.

    Returns:
      Array in ``[0, 1]`` with the shape and dtype of ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax import soft_topk_mask
      >>> x = jnp.array([0.3, -1.2, 2.5, 0.9])
      >>> soft_topk_mask(x, 2, temperature=1.0).round(3).tolist()  # sums to exactly 2
      [0.2, 0.0, 1.0, 0.8]
      >>> jax.grad(lambda v: soft_topk_mask(v, 2, temperature=1.0)[3])(x)
      Array([-0.5,  0. ,  0. ,  0.5], dtype=float32)
      >>> jax.grad(lambda v: soft_topk_mask(v, 2, temperature=0.5)[3])(x)  # exactly k-hot
      Array([0., 0., 0., 0.], dtype=float32)
      >>> soft_topk_mask(jnp.array([0.1, 3.0, 2.0, -2.0]), 2, method="sigmoid",
      ...                temperature=0.01).round(3)
      Array([0., 1., 1., 0.], dtype=float32)
    """
    fn = "soft_topk_mask"
    entry, opts, frame = methods.dispatch(
        fn, "topk", method, x, axis=axis, where=where,
        options={"regularization": regularization, **options},
        defaults={"regularization": "l2"},
    )  # fmt: skip
    k = _checks.check_k(fn, k, frame.n)
    t = frame.positive_scalar(temperature)
    xk, _ = _standardize.kernel_input(standardize, "topk", method, opts, frame)
    soft = entry.kernel(xk, frame.mask, k, t, **opts)
    if hard:
        soft = _numerics.straight_through(
            _hard_topk(jax.lax.stop_gradient(frame.x), frame.mask, k), soft
        )
    return frame.finish_elementwise(soft)


# --------------------------------------------------------------------------------------------
# Perturbed optimizer (Berthet et al. 2020)
# --------------------------------------------------------------------------------------------


def _noise_grad(noise: str, z: jax.Array) -> jax.Array:
    """``∇ν(z)`` for the noise density ``∝ exp(-ν(z))``."""
    if noise == "gumbel":
        return -jnp.expm1(-z)  # ν(z) = z + exp(-z)
    return z  # ν(z) = z²/2


def _perturbed_masks(k, x, z, valid, sigma):
    """``[S, ..., n]`` exact top-k masks of ``x + sigma * z`` for the ``S`` noise draws ``z``."""
    keys = x[None] + sigma * z
    idx, sel = _numerics.topk_indices(keys, jnp.broadcast_to(valid, keys.shape), k)
    return _numerics.khot(idx, x.shape[-1], x.dtype, sel)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _perturbed_mean(k, noise, x, z, valid, sigma):
    del noise
    return jnp.mean(_perturbed_masks(k, x, z, valid, sigma), axis=0)


@_perturbed_mean.defjvp
def _perturbed_mean_jvp(k, noise, primals, tangents):
    x, z, valid, sigma = primals
    dx, _, _, dsigma = tangents
    y = _perturbed_masks(k, x, z, valid, sigma)  # [S, ..., n]
    zero = jnp.zeros((), x.dtype)
    g = jnp.where(valid[None], _noise_grad(noise, z), zero)
    # Score-function estimator: d E[y(x + σZ)] = E[y ⟨∇ν(Z), dx⟩] / σ
    #                                          + dσ E[y (⟨∇ν(Z), Z⟩ - n_valid)] / σ.
    n_valid = jnp.sum(valid, axis=-1).astype(x.dtype)
    weight = jnp.sum(g * dx[None], axis=-1)
    spread = jnp.sum(g * jnp.where(valid[None], z, zero), axis=-1) - n_valid[None]
    weight = weight + dsigma * spread
    out = jnp.mean(y, axis=0)
    return out, jnp.mean(y * weight[..., None], axis=0) / sigma


@auto_sharding
def perturbed_topk_mask(
    key: ArrayLike,
    x: ArrayLike,
    k: int,
    *,
    sigma: ArrayLike = 0.1,
    num_samples: int = 1000,
    noise: str = "gumbel",
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Perturbed top-k mask: the expected exact top-k mask of noisy inputs (Berthet et al.).

    $$
    y_\sigma(x) = \mathbb{E}_Z\big[y^\star(x + \sigma Z)\big] \approx \frac{1}{S}
    \sum_{s=1}^{S} y^\star(x + \sigma Z^{(s)}),
    $$

    with $y^\star$ the exact k-hot top-k mask and $Z$ i.i.d. standard Gumbel or
    normal noise of density $\propto \exp(-\nu(z))$. Its Jacobian is the paper's
    Monte-Carlo estimator (a ``custom_jvp``, so ``grad``, ``jacfwd`` and ``jacrev`` all use it):

    $$
    J_x y_\sigma \approx \frac{1}{S\,\sigma} \sum_s y^\star(x + \sigma Z^{(s)})\,
    \nabla\nu(Z^{(s)})^\top,
    $$

    with $\nabla\nu(z) = 1 - e^{-z}$ for Gumbel noise and $z$ for normal noise
    (the $1/\sigma$ factor included). The derivative in ``sigma`` uses the matching
    estimator $\frac{1}{S\sigma}\sum_s y^\star (\langle\nabla\nu(Z), Z\rangle - n)$.
    With ``k = 1`` and Gumbel noise the expectation is exactly
    $\operatorname{softmax}(x/\sigma)$ and the Jacobian
    $(\operatorname{diag}(p) - pp^\top)/\sigma$. As $\sigma \to 0$ the mask tends
    to `rank_relax_jax.topk_mask` (ties aside); it sums to exactly ``k`` (to the
    number of selectable entries when there are fewer). Padding and ``-inf`` entries are never
    selected and get zero gradient. The Jacobian estimate is unbiased but noisy: its standard
    error is about $1/(\sigma\sqrt{S})$ per entry. Cost: O(S·n) noise and S
    ``lax.top_k`` per list; memory O(S·n).

    Args:
      key: A single PRNG key (typed or legacy).
      x: Floating array of scores.
      k: Static number of entries to select, ``1 <= k <= n``.
      sigma: Positive noise amplitude $\sigma$ (may be traced; a traced value <= 0 gives NaN).
      num_samples: Static number of Monte-Carlo samples $S$, drawn with ``jax.vmap`` over
        split keys; forward and Jacobian use the same samples.
      noise: ``"gumbel"`` or ``"normal"``.
      axis: Axis to select along.
      where: Optional boolean mask; ``False`` marks padding.

    Returns:
      Array in ``[0, 1]`` (multiples of ``1/S``) with the shape and dtype of ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from rank_relax_jax.topk import perturbed_topk_mask
      >>> x = jnp.array([1.0, 0.0, 0.5])
      >>> y = perturbed_topk_mask(jax.random.key(0), x, 1, sigma=1.0, num_samples=20000)
      >>> bool(jnp.allclose(y, jax.nn.softmax(x), atol=0.02)), round(float(y.sum()), 4)
      (True, 1.0)

    References:
      Berthet, Blondel, Teboul, Cuturi, Vert & Bach, "Learning with Differentiable Perturbed
      Optimizers", NeurIPS 2020.
    """
    fn = "perturbed_topk_mask"
    _checks.check_choice(fn, "noise", noise, NOISES)
    key = _checks.check_key(fn, key)
    frame = _axis.prepare(fn, x, axis=axis, where=where)
    k = _checks.check_k(fn, k, frame.n)
    num_samples = _checks.check_positive_int(fn, "num_samples", num_samples)
    s = frame.positive_scalar(sigma, "sigma")
    xs, valid = _numerics.selectable(frame.x, frame.mask)
    draw = jax.random.gumbel if noise == "gumbel" else jax.random.normal
    z = jax.vmap(lambda kk: draw(kk, xs.shape, xs.dtype))(jax.random.split(key, num_samples))
    out = _perturbed_mean(k, noise, xs, z, valid, s)
    # A NaN score, or a traced non-positive sigma (NaN from frame.positive_scalar), gives NaN.
    out = jnp.where(jnp.isnan(frame.x) | jnp.isnan(s), jnp.nan, out)
    return frame.finish_elementwise(out)
