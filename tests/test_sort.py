"""The internal sort primitive (`rank_relax_jax._sort.argsort`): its stated order, both paths.

The order is checked against ``np.argsort(kind="stable")`` (with the two rules NumPy does not
share: NaNs tie, and subnormals tie with zero where the backend flushes them) by Hypothesis over
ties, signed zeros, NaN of either sign, infinities, subnormals, masks and both directions, in
float32, float64, bfloat16 and float16, on the packed path, the comparator path and the default
choice. Then the packed path under transformations with x64 off (the library's users' setting;
the rest of the suite runs with x64 on): jit, vmap, scan, grad, jacfwd, export.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rank_relax_jax import _sort

DTYPES = {
    "float32": np.float32,
    "float64": np.float64,
    "bfloat16": jnp.bfloat16,
    "float16": np.float16,
}
SPECIALS = [
    0.0,
    -0.0,
    np.nan,
    -np.nan,
    np.inf,
    -np.inf,
    1.0,
    -1.0,
    1e-45,  # float32 subnormals (zero in float16; float64 keeps them)
    -1e-45,
    3e-39,
    -3e-39,
    5e-324,  # float64 subnormal
    2.0**-14 * 0.5,  # float16 subnormal
    3.4e38,
    -3.4e38,
]


@functools.cache
def _flushes(dtype) -> bool:
    """Whether the backend compares the smallest subnormal of ``dtype`` equal to zero."""
    tiny = np.array(jnp.finfo(dtype).smallest_subnormal, dtype)
    return bool(jax.jit(lambda v: v == 0)(tiny))


def _reference(x, mask, descending):
    """The stated order, from NumPy: stable by (padding, key, position)."""
    dtype = np.float64 if x.dtype == np.float64 else np.float32  # half precision: exact upcast
    key = np.asarray(x).astype(dtype)
    key = -key if descending else key
    if _flushes(dtype):
        key = np.where(np.abs(key) < np.finfo(key.dtype).tiny, 0, key).astype(dtype)
    order = np.argsort(key, axis=-1, kind="stable")  # NumPy puts every NaN last, tied
    if mask is not None:
        pad = np.take_along_axis(~np.asarray(mask), order, -1)
        order = np.take_along_axis(order, np.argsort(pad, axis=-1, kind="stable"), -1)
    return order


def _upcast(x):
    return x.astype(jnp.float32) if x.dtype in (jnp.bfloat16, jnp.float16) else x


@functools.cache
def _jitted(path, descending, masked):
    fn = {
        "auto": lambda x, m: _sort.argsort(x, m, descending=descending),
        "packed": lambda x, m: _sort._argsort_packed(x, m, descending),
        "comparator": lambda x, m: _sort._argsort_comparator(_upcast(x), m, descending),
    }[path]
    if masked:
        return jax.jit(fn)
    return jax.jit(lambda x: fn(x, None))


@st.composite
def rows(draw, dtype):
    shape = draw(st.sampled_from([(1,), (7,), (2, 9), (3, 33)]))
    size = int(np.prod(shape))
    pool = draw(st.lists(st.sampled_from(SPECIALS), min_size=1, max_size=4))
    values = draw(
        st.lists(
            st.one_of(
                st.sampled_from(pool),
                st.integers(-3, 3).map(float),  # ties
                st.floats(allow_nan=True, allow_infinity=True, width=32),
            ),
            min_size=size,
            max_size=size,
        )
    )
    with np.errstate(over="ignore"):
        x = np.array(values, np.float64).reshape(shape).astype(dtype)
    mask = None
    if draw(st.booleans()):
        mask = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size))).reshape(shape)
    return x, mask


# The packed key holds float32/float16/bfloat16 only, so ("packed", "float64") is no case.
@pytest.mark.parametrize(
    ("path", "dtype"),
    [
        (p, d)
        for p in ("auto", "packed", "comparator")
        for d in DTYPES
        if (p, d) != ("packed", "float64")
    ],
)
@settings(max_examples=12)
@given(data=st.data(), descending=st.booleans())
def test_order_matches_numpy_stable_argsort(path, dtype, data, descending):
    dtype = DTYPES[dtype]
    x, mask = data.draw(rows(dtype))
    fn = _jitted(path, descending, mask is not None)
    perm = fn(x, mask) if mask is not None else fn(x)
    assert perm.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(perm), _reference(x, mask, descending))


def test_docstring_cases_and_edges():
    x = jnp.array([1.0, jnp.nan, -0.0, 0.0, -jnp.inf, 1.0, -jnp.nan, jnp.inf], jnp.float32)
    assert _sort.argsort(x).tolist() == [4, 2, 3, 0, 5, 7, 1, 6]
    assert _sort.argsort(x, descending=True).tolist() == [7, 0, 5, 2, 3, 4, 1, 6]
    m = jnp.array([True, True, False, True, True, True, True, False])
    # Padding last, after NaN, ordered among itself by the same rule (+inf before -0.0 when
    # descending, since the key is -x).
    assert _sort.argsort(x, m).tolist() == [4, 3, 0, 5, 1, 6, 2, 7]
    assert _sort.argsort(x, m, descending=True).tolist() == [0, 5, 3, 4, 1, 6, 7, 2]
    for n in (0, 1):
        assert _sort.argsort(jnp.zeros((3, n), jnp.float32)).shape == (3, n)


def test_packed_path_is_the_cpu_default_and_holds_no_64_bit_type_outside():
    if jax.default_backend() != "cpu":
        pytest.skip("the packed key is the default on CPU only")
    x = jnp.zeros((4, 50), jnp.float32)
    with jax.enable_x64(False):
        text = jax.jit(lambda v: _sort.argsort(v, descending=True)).lower(x).as_text()
        jaxpr = jax.make_jaxpr(lambda v: _sort.argsort(v))(x)
    assert "xui64" in text and "stablehlo.sort" in text
    assert jaxpr.out_avals[0].dtype == jnp.int32
    text64 = jax.jit(_sort.argsort).lower(jnp.zeros((4, 50), jnp.float64)).as_text()
    assert "xui64" not in text64  # float64: the comparator sort


def test_forced_path_switches_and_restores():
    x = jnp.zeros((3,), jnp.float32)
    with _sort.forced_path("comparator"):
        assert "ui64" not in jax.jit(_sort.argsort).lower(x).as_text()
    with _sort.forced_path("packed"):
        assert "ui64" in jax.jit(_sort.argsort).lower(x).as_text()
    assert _sort._forced == "auto"  # an unknown path raises: test_errors.py, "forced_path"


def _sorted_sum(x):
    perm = _sort.argsort(x, descending=True)
    w = jnp.broadcast_to(jnp.arange(x.shape[-1], dtype=x.dtype), x.shape)
    return jnp.sum(jnp.take_along_axis(x, perm, -1) * w)


def test_packed_path_under_transformations_with_x64_off():
    rng = np.random.default_rng(0)
    x = rng.integers(-4, 4, (6, 40)).astype(np.float32)
    x[0, :4] = [np.nan, -0.0, 0.0, -np.nan]
    m = rng.random((6, 40)) > 0.25
    ref = _reference(x, None, True)
    ref_m = _reference(x, m, False)
    with jax.enable_x64(False):
        desc = lambda v: _sort.argsort(v, descending=True)  # noqa: E731
        masked = lambda v, k: _sort.argsort(v, k)  # noqa: E731
        np.testing.assert_array_equal(jax.jit(desc)(x), ref)
        np.testing.assert_array_equal(jax.vmap(desc)(x), ref)
        np.testing.assert_array_equal(jax.vmap(jax.jit(masked))(x, m), ref_m)
        np.testing.assert_array_equal(
            jax.jit(jax.vmap(masked, in_axes=1, out_axes=1))(x.T, m.T).T, ref_m
        )
        scanned = jax.jit(lambda v: jax.lax.scan(lambda c, r: (c, desc(r)), 0, v)[1])
        np.testing.assert_array_equal(scanned(x), ref)
        np.testing.assert_array_equal(jax.vmap(scanned)(x[None])[0], ref)
        cond = jax.jit(lambda v: jax.lax.cond(v[0, 5] > -9, desc, lambda u: ref * 0, v))
        np.testing.assert_array_equal(cond(x), ref)
        # No gradient flows through the order; the gather's gradient is the inverse permutation.
        xf = rng.standard_normal((3, 40)).astype(np.float32)
        g = jax.jit(jax.grad(_sorted_sum))(xf)
        expected = np.zeros_like(xf)
        np.put_along_axis(expected, _reference(xf, None, True), np.arange(40, dtype=np.float32), -1)
        np.testing.assert_array_equal(g, expected)
        np.testing.assert_array_equal(jax.jacfwd(_sorted_sum)(xf), expected)
        np.testing.assert_array_equal(jax.grad(jax.checkpoint(_sorted_sum))(xf), expected)
        gs = jax.grad(lambda v: jax.lax.scan(lambda c, r: (c + _sorted_sum(r), None), 0.0, v)[0])
        np.testing.assert_array_equal(jax.jit(gs)(xf), expected)


def test_packed_path_exports_with_x64_off():
    from jax import export

    x = np.random.default_rng(1).standard_normal((5, 30)).astype(np.float32)
    with jax.enable_x64(False):
        fn = jax.jit(lambda v: _sort.argsort(v, descending=True))
        exp = export.export(fn, platforms=["cpu"])(jax.ShapeDtypeStruct(x.shape, jnp.float32))
        np.testing.assert_array_equal(exp.call(x), _reference(x, None, True))
        # Symbolic batch dimension: the length stays static, so the packed key still applies.
        b = export.symbolic_shape("b")[0]
        poly = export.export(fn, platforms=["cpu"])(jax.ShapeDtypeStruct((b, 30), jnp.float32))
        np.testing.assert_array_equal(poly.call(x), _reference(x, None, True))
        assert "ui64" in poly.mlir_module()


def _public_ops():
    """Every public op that orders a list, as ``f(x, w, mask) -> (outputs...)`` in float32."""
    from rank_relax_jax import losses, metrics, ranking, topk

    def soft(op, **kw):
        def run(x, w, mask):
            f = lambda v: op(v, where=mask, **kw)  # noqa: E731
            out = f(x)
            wb = w if out.ndim == w.ndim else w[..., None, :]  # permutation matrices
            grad = jax.grad(lambda v: jnp.sum(jnp.where(jnp.isnan(f(v)), 0, f(v)) * wb))(x)
            return out, grad

        return run

    ops = {}
    for ties in ("average", "min", "max", "dense", "ordinal"):
        for desc in (False, True):
            ops[f"rank-{ties}-{desc}"] = lambda x, w, m, t=ties, d=desc: ranking.rank(
                x, ties=t, descending=d, where=m
            )
    ops["topk_mask"] = lambda x, w, m: topk.topk_mask(x, 3, where=m)
    for reg in ("l2", "kl"):
        for desc in (False, True):
            ops[f"soft_rank-{reg}-{desc}"] = soft(
                ranking.soft_rank, temperature=0.3, regularization=reg, descending=desc
            )
            ops[f"soft_sort-{reg}-{desc}"] = soft(
                ranking.soft_sort, temperature=0.3, regularization=reg, descending=desc
            )
        ops[f"soft_topk-{reg}"] = soft(topk.soft_topk_mask, k=3, regularization=reg)
    ops["soft_topk-sigmoid"] = soft(topk.soft_topk_mask, k=3, method="sigmoid")
    ops["softsort"] = soft(ranking.soft_permutation, method="softsort", descending=True)
    ops["ndcg"] = lambda x, w, m: metrics.ndcg(x, jnp.abs(w), k=5, where=m)
    ops["average_precision"] = lambda x, w, m: metrics.average_precision(x, w > 0, where=m)
    ops["listmle"] = lambda x, w, m: losses.listmle_loss(w, x, where=m, reduce="none")
    return ops


# A cheap subset runs in the fast set, the other ops at the same shape in the slow set; the
# counting path (short rows) and the threshold between the paths with two ops each.
FAST_OPS = (
    "rank-average-True",
    "rank-ordinal-False",
    "topk_mask",
    "soft_rank-l2-False",
    "soft_sort-kl-True",
    "soft_topk-l2",
    "softsort",
    "ndcg",
    "average_precision",
    "listmle",
)


@pytest.mark.parametrize(
    ("shape", "subset"),
    [
        pytest.param((3, 200), FAST_OPS, id="sort"),
        pytest.param((4, 20), ("soft_rank-l2-False", "soft_sort-kl-True"), id="short-rows"),
        # n = 64: counting comparisons under the comparator, the packed sort otherwise.
        pytest.param((32, 64), ("soft_rank-kl-True", "soft_sort-l2-False"), id="threshold"),
        pytest.param((3, 200), "rest", id="sort-rest", marks=pytest.mark.slow),
    ],
)
def test_public_ops_are_unchanged_by_the_packed_path(shape, subset):
    # Bit for bit, outputs and gradients, with ties, NaN, -0.0, +-inf and padding, float32 and
    # x64 off, as the library's users run it: the packed path (default on CPU) against the
    # comparator sort it replaced.
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-3, 4, shape).astype(np.float32) * 0.5
    x[0, :6] = [np.nan, -0.0, 0.0, -np.nan, np.inf, -np.inf]
    x[1, 1:4] = [-0.0, 0.0, -0.0]
    w = rng.standard_normal(shape).astype(np.float32)
    mask = rng.random(shape) > 0.2
    mask[-1] = True
    every = _public_ops()
    names = [k for k in every if k not in FAST_OPS] if subset == "rest" else subset
    ops = {k: every[k] for k in names}
    assert len(ops) == len(names)

    def run_all():
        out = {}
        with jax.enable_x64(False):
            for name, op in ops.items():
                for m in (None, mask):
                    out[name, m is None] = jax.tree.map(np.asarray, jax.jit(op)(x, w, m))
        return out

    with _sort.forced_path("packed"):
        packed = run_all()
    with _sort.forced_path("comparator"):
        comparator = run_all()
    assert len(packed) == 2 * len(ops)
    for k in packed:
        jax.tree.map(
            lambda a, b, k=k: np.testing.assert_array_equal(a, b, err_msg=str(k)),
            packed[k],
            comparator[k],
        )
