"""Hypothesis fuzzing of every public operator.

Each example draws a shape (n = 1, n = 2 and empty batches included) from a small set, an axis,
a ``where`` mask (all-False rows included), a dtype (float16, bfloat16, float32, float64), a
temperature in [1e-6, 1e6], a magnitude up to 1e30 and the dtype's max, exact ties and, for the
samplers, ``-inf`` scores. The op runs jitted (static: op, axis, k) on three inputs of one shape:
the clean input, the same with garbage (NaN, inf, huge) in the padded slots, and the same with one
valid entry of one list set to NaN. Invariants:

* outputs (and gradients, for the differentiable ops) are finite when the inputs are;
* the output dtype is the input dtype;
* padding never changes valid entries (clean == garbage-padded, bit for bit);
* documented ranges: ranks in [1, m], masks in [0, 1], sums equal to k where promised;
* a NaN reaches only its own list: every other list's outputs are unchanged.

Method lists come from the registry (`rank_relax_jax.methods.methods`), so methods registered
later are fuzzed too. The budget is a few examples per op; each new (shape, dtype, axis) costs a
compile, so shapes come from a small fixed set.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rank_relax_jax import attention, gumbel, losses, methods, metrics, ranking, topk

DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)
SHAPES = ((1,), (2,), (5,), (3, 4), (0, 3), (2, 1), (2, 3, 2))
K = 2


@dataclasses.dataclass(frozen=True)
class Op:
    name: str
    call: Callable  # call(x, where, t, key, k, axis) -> array (or a pytree with one array)
    kind: str  # rank | sort | perm | mask | log | sample | loss | metric | exact
    grad: bool = True
    k: bool = False
    neg_inf: bool = False  # -inf scores are legal (samplers): "never selected"
    sums_to_k: bool = False
    range_ok: bool = True  # False: ranks can leave [1, m] (smoothi ties, see test_numerics.py)
    half_grad_ok: bool = True  # False: gradient ~1/temperature overflows float16 (documented)
    uses_where: bool = True


def _ops() -> list[Op]:
    ops = []
    for m in methods.methods("rank"):
        ops.append(
            Op(
                f"soft_rank[{m}]",
                lambda x, w, t, key, k, a, m=m: ranking.soft_rank(
                    x, method=m, temperature=t, axis=a, where=w
                ),
                "rank",
            )
        )
    for m in methods.methods("sort"):
        ops.append(
            Op(
                f"soft_sort[{m}]",
                lambda x, w, t, key, k, a, m=m: ranking.soft_sort(
                    x, method=m, temperature=t, axis=a, where=w
                ),
                "sort",
            )
        )
    for m in methods.methods("permutation"):
        ops.append(
            Op(
                f"soft_permutation[{m}]",
                lambda x, w, t, key, k, a, m=m: ranking.soft_permutation(
                    x, method=m, temperature=t, axis=a, where=w
                ),
                "perm",
            )
        )
    for m in methods.methods("topk"):
        ops.append(
            Op(
                f"soft_topk_mask[{m}]",
                lambda x, w, t, key, k, a, m=m: topk.soft_topk_mask(
                    x, k, method=m, temperature=t, axis=a, where=w
                ),
                "mask",
                k=True,
                sums_to_k=m == "isotonic",
            )
        )
    ops += [
        Op("rank", lambda x, w, t, key, k, a: ranking.rank(x, axis=a, where=w), "rank", grad=False),
        Op(
            "topk_mask",
            lambda x, w, t, key, k, a: topk.topk_mask(x, k, axis=a, where=w),
            "mask",
            grad=False,
            k=True,
            sums_to_k=True,
        ),
        Op(
            "gumbel_softmax",
            lambda x, w, t, key, k, a: gumbel.gumbel_softmax(
                key, x, temperature=t, axis=a, where=w
            ),
            "mask",
            neg_inf=True,
        ),
        Op(
            "relaxed_topk_gumbel",
            lambda x, w, t, key, k, a: gumbel.relaxed_topk_gumbel(
                key, x, k, temperature=t, axis=a, where=w
            ),
            "mask",
            k=True,
            neg_inf=True,
        ),
        Op(
            "relaxed_topk_gumbel_log",
            lambda x, w, t, key, k, a: gumbel.relaxed_topk_gumbel_log(
                key, x, k, temperature=t, axis=a, where=w
            ),
            "log",
            k=True,
            neg_inf=True,
        ),
        Op(
            "relaxed_subset_sample",
            lambda x, w, t, key, k, a: gumbel.relaxed_subset_sample(
                key, x, k, temperature=t, axis=a, where=w
            ),
            "sample",
            k=True,
            neg_inf=True,
            sums_to_k=True,
        ),
        Op(
            "gumbel_topk",
            lambda x, w, t, key, k, a: gumbel.gumbel_topk(key, x, k, axis=a, where=w).mask,
            "mask",
            grad=False,
            k=True,
            neg_inf=True,
            sums_to_k=True,
        ),
        Op(
            "gumbel_attention_mask",
            _attention_mask,
            "mask",
            k=True,
            neg_inf=True,
        ),
        Op(
            "perturbed_topk_mask",
            lambda x, w, t, key, k, a: gumbel.perturbed_topk_mask(
                key, x, k, sigma=t, num_samples=4, axis=a, where=w
            ),
            "mask",
            k=True,
            neg_inf=True,
            sums_to_k=True,
            half_grad_ok=False,
        ),
    ]
    for f in (losses.spearman_loss, losses.ndcg_loss):
        ops.append(
            Op(
                f.__name__,
                lambda x, w, t, key, k, a, f=f: f(
                    x, _grades(x), temperature=t, axis=a, where=w, reduce="none"
                ),
                "loss",
            )
        )
    for f in (losses.listmle_loss, losses.listnet_loss, losses.pairwise_logistic_loss):
        ops.append(
            Op(
                f.__name__,
                lambda x, w, t, key, k, a, f=f: f(x, _grades(x), axis=a, where=w, reduce="none"),
                "loss",
            )
        )
    for f in (
        metrics.ndcg,
        metrics.mrr,
        metrics.average_precision,
        metrics.spearman,
        metrics.kendall_tau,
    ):
        ops.append(
            Op(
                f.__name__,
                lambda x, w, t, key, k, a, f=f: f(x, _grades(x), axis=a, where=w),
                "metric",
                grad=False,
            )
        )
    for f in (metrics.recall_at_k, metrics.precision_at_k):
        ops.append(
            Op(
                f.__name__,
                lambda x, w, t, key, k, a, f=f: f(x, _grades(x), k, axis=a, where=w),
                "metric",
                grad=False,
                k=True,
            )
        )
    ops.append(Op("dma_attention", _dma, "loss", uses_where=False))
    return [
        dataclasses.replace(
            op,
            range_ok=op.name != "soft_rank[smoothi]",
        )
        for op in ops
    ]


def _attention_mask(x, w, t, key, k, a):
    """gumbel_attention_mask works over the last axis: move ``a`` there and back."""
    w = None if w is None else jnp.moveaxis(w, a, -1)
    m = gumbel.gumbel_attention_mask(key, jnp.moveaxis(x, a, -1), k, temperature=t, where=w)
    return jnp.moveaxis(m, -1, a)


def _grades(x):
    """Relevance grades 0..3 from the scores (exp2 gains of larger labels overflow, by design)."""
    return jnp.clip(jnp.abs(jnp.round(x)), 0, 3)


def _dma(x, w, t, key, k, a):
    """DMA attention whose document mask is a sigmoid of the scores; one output per list."""
    docs = jnp.moveaxis(x, a, -1)  # [..., n_docs]
    n = docs.shape[-1]
    batch = docs.shape[:-1]
    m = jax.nn.sigmoid(docs / t.astype(docs.dtype))
    ids = jnp.broadcast_to(jnp.repeat(jnp.arange(-1, n), 2), (*batch, 2 * n + 2))
    q = jnp.ones((*batch, 1, 1, 2), docs.dtype)
    kk = jnp.arange(2 * n + 2, dtype=docs.dtype)[:, None, None] / 7
    kk = jnp.broadcast_to(kk, (*batch, 2 * n + 2, 1, 2))
    return attention.dma_attention(q, kk, kk, doc_mask=m, segment_ids=ids)[..., 0, 0, 0]


OPS = _ops()


@functools.cache
def _jitted(op: Op, axis: int, k: int, grad: bool):
    def fwd(x, w, t, key):
        return op.call(x, w, t, key, k, axis)

    if not grad:
        return jax.jit(fwd)

    def g(x, w, t, key):
        out = fwd(x, w, t, key)
        weights = jnp.cos(jnp.arange(out.size, dtype=jnp.float32).reshape(out.shape))
        return jnp.sum(jnp.where(jnp.isfinite(out), out, 0).astype(jnp.float32) * weights)

    return jax.jit(jax.grad(g))


@st.composite
def cases(draw, op: Op):
    shape = draw(st.sampled_from(SHAPES))
    dtype = draw(st.sampled_from(DTYPES))
    ndim = len(shape)
    axis = draw(st.integers(-ndim, ndim - 1))
    n = shape[axis]
    if (op.k or op.name == "dma_attention") and n == 0:
        shape = tuple(max(s, 1) for s in shape)
        n = shape[axis]
    k = draw(st.integers(1, n)) if op.k else K
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    finfo = jnp.finfo(dtype)
    magnitudes = [1.0, 1e3, 1e30, "max"]
    if op.kind == "loss" and dtype == jnp.float16:
        magnitudes = [1.0, 1e3]  # a loss above 65504 is inf in float16 (documented limit)
    magnitude = draw(st.sampled_from(magnitudes))
    mag = float(finfo.max) if magnitude == "max" else min(float(magnitude), float(finfo.max))
    x = rng.normal(size=shape)
    if draw(st.booleans()):  # exact ties
        x = np.round(x)
    x = x / max(np.max(np.abs(x)), 1e-30) * mag if x.size else x
    if op.neg_inf and draw(st.booleans()):
        x = np.where(rng.random(shape) < 0.3, -np.inf, x)
    where = None
    if op.uses_where and draw(st.booleans()):
        where = rng.random(shape) < draw(st.sampled_from([0.0, 0.5, 0.9]))
    t = 10.0 ** draw(st.floats(-6, 6))
    return op, x.astype(np.float64), where, dtype, axis, k, t, seed


def _check(op, x64, where, dtype, axis, k, t, seed):
    x = jnp.asarray(x64, dtype)
    assert bool(jnp.all(jnp.isfinite(x) | jnp.isneginf(x)))
    valid = np.ones(x.shape, bool) if where is None else where
    w = None if where is None else jnp.asarray(where)
    key = jax.random.key(seed)
    tt = jnp.asarray(t, jnp.float32)
    f = _jitted(op, axis, k, False)
    out = f(x, w, tt, key)
    assert out.dtype == x.dtype, (out.dtype, x.dtype)
    o = np.asarray(out.astype(jnp.float64))
    tol = 1e-2 if jnp.finfo(dtype).bits == 16 else 1e-4

    # Element-aligned outputs: finite where valid, padding 0.
    if op.kind in ("rank", "mask", "log", "sample"):
        ov = np.moveaxis(o, axis, -1)
        vv = np.moveaxis(valid, axis, -1)
        assert np.all(np.isfinite(ov)), op.name
        if op.kind != "log":
            assert np.all(ov[~vv] == 0), op.name
        m = vv.sum(-1, keepdims=True)
        xv = np.moveaxis(x64, axis, -1)
        selectable = (vv & (xv != -np.inf)).sum(-1)
        if op.kind == "rank" and op.range_ok:
            assert np.all((ov >= 1 - tol * m) | ~vv) and np.all((ov <= m * (1 + tol)) | ~vv)
        if op.kind == "mask":
            assert np.all(ov >= -tol) and np.all(ov <= 1 + tol), op.name
        if op.kind == "log":
            assert np.all(ov <= tol), op.name
        if op.sums_to_k:
            target = np.minimum(k, selectable if op.neg_inf else m[..., 0])
            np.testing.assert_allclose(ov.sum(-1), target, rtol=tol, atol=tol * k, err_msg=op.name)
    else:
        assert np.all(np.isfinite(o)), op.name

    # Padding never changes valid entries.
    if where is not None and not where.all():
        garbage = np.where(
            where,
            x64,
            np.random.default_rng(seed + 1).choice(
                [np.nan, np.inf, -np.inf, 1e300, -7.0], size=x.shape
            ),
        )
        out2 = f(jnp.asarray(garbage, dtype), w, tt, key)
        if op.kind in ("rank", "mask", "log", "sample"):
            a, b = np.asarray(out, np.float64), np.asarray(out2, np.float64)
            np.testing.assert_array_equal(a[valid], b[valid], err_msg=op.name)
        else:
            np.testing.assert_array_equal(np.asarray(out, np.float64), np.asarray(out2, np.float64))

    # A NaN reaches only its own list.
    xl = np.moveaxis(x64, axis, -1)
    vl = np.moveaxis(valid, axis, -1)
    rows = xl.reshape(-1, xl.shape[-1]) if xl.size else xl.reshape(0, 0)
    vrows = vl.reshape(rows.shape)
    if rows.shape[0] >= 2 and vrows[0].any():
        j = int(np.argmax(vrows[0]))
        rows = rows.copy()
        rows[0, j] = np.nan
        xn = np.moveaxis(rows.reshape(xl.shape), -1, axis)
        out3 = np.asarray(f(jnp.asarray(xn, dtype), w, tt, key), np.float64)
        a = np.asarray(out, np.float64)
        if op.kind in ("rank", "mask", "log", "sample", "sort"):
            a, out3 = np.moveaxis(a, axis, -1), np.moveaxis(out3, axis, -1)
            a, out3 = a.reshape(-1, a.shape[-1])[1:], out3.reshape(-1, a.shape[-1])[1:]
        elif op.kind == "perm":
            a, out3 = a.reshape(-1, *a.shape[-2:])[1:], out3.reshape(-1, *a.shape[-2:])[1:]
        else:  # one value per list, lists in the order of the remaining axes
            a, out3 = a.reshape(-1)[1:], out3.reshape(-1)[1:]
        np.testing.assert_array_equal(a, out3, err_msg=op.name)

    if op.grad and x.size:
        g = _jitted(op, axis, k, True)(x, w, tt, key)
        assert g.dtype == x.dtype
        gv = np.asarray(g, np.float64)
        finite_in = np.isfinite(x64)
        if op.half_grad_ok or jnp.finfo(dtype).bits > 16:
            assert np.all(np.isfinite(gv[finite_in])), op.name
        assert np.all(gv[~valid] == 0), op.name


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_fuzz(op):
    @settings(max_examples=6)
    @given(cases(op))
    def run(case):
        _check(*case)

    run()


BF16_MAX = float(jnp.finfo(jnp.bfloat16).max)


@pytest.mark.parametrize(
    "name, t",
    [
        ("soft_rank[isotonic]", 0.1),
        ("soft_sort[isotonic]", 0.1),
        ("soft_topk_mask[isotonic]", 0.1),
        ("soft_rank[neuralsort]", 1e-6),
        ("soft_sort[neuralsort]", 1.0),
        ("soft_sort[softsort]", 1.0),
        ("soft_permutation[neuralsort]", 1.0),
        ("soft_permutation[softsort]", 1.0),
        ("soft_rank[smoothi]", 1.0),
        ("soft_sort[smoothi]", 1.0),
        ("soft_permutation[smoothi]", 1.0),
        ("soft_rank[smoothi]", 1e-6),
        ("soft_sort[smoothi]", 1e-6),
    ],
)
def test_overflow_at_the_dtype_max(name, t):
    # Found by test_fuzz ([3.39e38] in bfloat16 gave NaN, even for n = 1): x / temperature
    # overflowed in isotonic (and its L2 sums of such scores), and `rescale` (neuralsort,
    # softsort) divided by a quotient that XLA's simplifier turned into an overflowing product.
    # [max, -max] (and ties at max for neuralsort's ranks) gave NaN gradients: cotangents times
    # unscaled scores, and cotangents divided by a temperature floored at the smallest normal.
    # SmoothI (found the same way): its logits s B / t overflowed to inf after rescaling (two
    # entries at +-max then tied: [max, 0, -max] sorted to [-max/2, -max/2, -max]), and its sort's
    # backward formed a cotangent times a score near max (NaN gradients).
    op = next(op for op in OPS if op.name == name)
    tt = jnp.float32(t)
    key = jax.random.key(0)
    f = _jitted(op, 0, 1, False)  # jitted, as found (XLA's fusion decides where it overflows)
    assert bool(jnp.all(jnp.isfinite(f(jnp.asarray([BF16_MAX], jnp.bfloat16), None, tt, key))))
    g = _jitted(op, 0, 1, True)
    for x in ([BF16_MAX, -BF16_MAX], [BF16_MAX] * 3):
        x = jnp.asarray(x, jnp.bfloat16)
        assert bool(jnp.all(jnp.isfinite(f(x, None, tt, key)))), x
        assert bool(jnp.all(jnp.isfinite(g(x, None, tt, key)))), x


def test_smoothi_sorts_at_the_dtype_max():
    # The overflow above also gave wrong values without any NaN: [max, 0, -max] sorted to
    # [-max/2, -max/2, -max] (s B / t was inf for two entries, which then tied).
    x = jnp.asarray([BF16_MAX, 0.0, -BF16_MAX], jnp.bfloat16)
    for t in (1.0, 1e-6):
        y = ranking.soft_sort(x, temperature=t, method="smoothi")
        np.testing.assert_array_equal(np.asarray(y, np.float32), [-BF16_MAX, 0.0, BF16_MAX])
        r = ranking.soft_rank(x, temperature=t, method="smoothi")
        np.testing.assert_array_equal(np.asarray(r, np.float32), [3.0, 2.0, 1.0])


def test_float16_losses_beyond_its_range_are_inf():
    # Documented limit, not a bug: the loss value itself (about 1.3e5) exceeds float16's max.
    x = jnp.asarray([62343.0, -65504.0], jnp.float16)
    assert bool(jnp.isinf(losses.listnet_loss(x, jnp.asarray([0.0, 1.0]))))
    assert bool(jnp.isfinite(losses.listnet_loss(x.astype(jnp.float32), jnp.asarray([0.0, 1.0]))))


def test_exp2_gain_overflows_for_huge_grades():
    # Documented limit: 2**1000 is inf in float32; gain="linear" stays finite.
    s = jnp.asarray([1.0, 2.0], jnp.float32)
    y = jnp.asarray([1000.0, 0.0], jnp.float32)
    assert bool(jnp.isnan(metrics.ndcg(s, y)))
    assert bool(jnp.isfinite(metrics.ndcg(s, y, gain="linear")))
