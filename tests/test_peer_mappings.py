"""Each "Coming from ..." mapping of docs/choosing_a_method.md, checked against the peer itself.

A peer that is not installed skips its test with the extra that installs it. None of the peers
is needed by CI; ``pip install -e ".[bench]"`` installs ott-jax, rax, diffsort and (on
Python >= 3.12) softjax; torchsort needs ``bash benchmarks/install_torchsort.sh``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rank_relax_jax as rrj

X = np.array([[0.3, -1.2, 2.5, 0.9, 0.1]], np.float32)
EXACT = np.array([[3.0, 1.0, 5.0, 4.0, 2.0]], np.float32)


def _peer(name, extra="bench"):
    return pytest.importorskip(
        name, reason=f"{name} is not installed (pip install -e '.[{extra}]')"
    )


@pytest.mark.parametrize("reg", ["l2", "kl"])
def test_torchsort(reg):
    torch = _peer("torch")
    torchsort = pytest.importorskip(
        "torchsort", reason="torchsort is not installed (bash benchmarks/install_torchsort.sh)"
    )
    xt = torch.tensor(X)
    # torchsort.soft_rank(x, regularization, regularization_strength=ε) == soft_rank(x,
    # temperature=ε): both ascending, 1-based, the same projection.
    ours = rrj.soft_rank(X, temperature=0.5, regularization=reg)
    theirs = torchsort.soft_rank(xt, regularization=reg, regularization_strength=0.5)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5)
    ours = rrj.soft_sort(X, temperature=0.5, regularization=reg)
    theirs = torchsort.soft_sort(xt, regularization=reg, regularization_strength=0.5)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_fast_soft_sort():
    fss = pytest.importorskip(
        "fast_soft_sort.jax_ops",
        reason="fast-soft-sort is not on PyPI (install from google-research/fast-soft-sort)",
    )
    # direction="DESCENDING" == descending=True; regularization_strength == temperature.
    ours = rrj.soft_rank(X[0], temperature=0.5, descending=True)
    theirs = fss.soft_rank(X, direction="DESCENDING", regularization_strength=0.5)[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_ott():
    _peer("ott")
    from ott.tools import soft_sort

    # OTT relies on rank promotion, which this test suite makes an error, and mixes float32
    # and float64 branches when x64 is on.
    with jax.numpy_rank_promotion("allow"), jax.enable_x64(False):
        _check_ott(soft_sort)


def _check_ott(soft_sort):
    # OTT ranks are 0-based and ascending: ranks(x) + 1 -> soft_rank / rank.
    ranks = soft_sort.ranks(jnp.asarray(X), axis=-1, epsilon=1e-3)
    np.testing.assert_allclose(ranks + 1, EXACT, atol=1e-2)
    # sort is ascending; topk_mask(x, k=k) is the k largest, as soft_topk_mask(x, k).
    np.testing.assert_allclose(
        soft_sort.sort(jnp.asarray(X), axis=-1, epsilon=1e-3), np.sort(X), atol=0.05
    )
    mask = soft_sort.topk_mask(jnp.asarray(X), axis=-1, k=2, epsilon=1e-3)
    np.testing.assert_allclose(mask, rrj.topk_mask(X, 2), atol=1e-2)


def test_rax():
    _peer("rax")
    from rax import utils

    t = 0.5

    def step(z):
        return jax.nn.sigmoid(z / t)

    # approx_ranks: descending, 1-based, sigmoid of score differences (ApproxNDCG); the step
    # function's scale is our temperature.
    np.testing.assert_allclose(
        utils.approx_ranks(jnp.asarray(X), step_fn=step),
        rrj.soft_rank(X, method="sigmoid", temperature=t, descending=True),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        utils.approx_cutoff(jnp.asarray(X), 2, step_fn=step),
        rrj.soft_topk_mask(X, 2, method="sigmoid", temperature=t),
        rtol=1e-5,
    )


def test_softjax():
    sj = pytest.importorskip(
        "softjax", reason="softjax is not installed (pip install -e '.[bench]', Python >= 3.12)"
    )
    # softjax.rank defaults to descending=True (rank 1 = largest), 1-based, and standardizes
    # (z-score then sigmoid squash) by default; `softness` is its temperature.
    np.testing.assert_allclose(
        sj.rank(jnp.asarray(X), axis=-1, softness=1e-3), 6 - EXACT, atol=1e-3
    )
    np.testing.assert_allclose(
        sj.rank(jnp.asarray(X), axis=-1, softness=1e-3, descending=False),
        rrj.soft_rank(X, temperature=1e-3, standardize=True),
        atol=1e-3,
    )
    np.testing.assert_allclose(
        sj.sort(jnp.asarray(X), axis=-1, softness=1e-3), np.sort(X), atol=1e-3
    )
    values, _ = sj.top_k(jnp.asarray(X), 2, softness=1e-3)
    np.testing.assert_allclose(values, [[2.5, 0.9]], atol=1e-3)


def test_diffsort():
    torch = _peer("torch")
    diffsort = _peer("diffsort")
    # DiffSortNet(type, n, steepness=β, distribution=f) returns (sorted ascending, P) with
    # sorted = x @ P; it swaps with α = f(β (b - a)), ours with f((b - a) / τ), so τ = 1/β, and
    # our P is its transpose (rows are sorted slots). Its "reciprocal" is f(v) = ½ + ½ v/(2 + |v|),
    # the ICLR 2022 paper's ½ + ½·2v/(1 + 2|v|) (ours) at a quarter of the steepness: τ = 4/β.
    # Same networks, same comparators: the numbers agree to rounding, in float64.
    x = np.random.default_rng(0).standard_normal((3, 8))
    beta = 2.0
    for net, n in (("bitonic", 8), ("odd_even", 8), ("odd_even", 5)):
        for f in ("logistic", "cauchy", "reciprocal", "optimal"):
            sorted_x, perm = diffsort.DiffSortNet(net, n, steepness=beta, distribution=f)(
                torch.tensor(x[:, :n])
            )
            kw = dict(method="network", network=net, sigmoid=f)
            kw["temperature"] = (4.0 if f == "reciprocal" else 1.0) / beta
            with jax.enable_x64(True):
                xs = jnp.asarray(x[:, :n], jnp.float64)
                ours = rrj.soft_sort(xs, **kw)
                p_ours = rrj.soft_permutation(xs, **kw)
            msg = f"{net} {n} {f}"
            # "optimal" is piecewise; diffsort evaluates its branches in a different order.
            tol = 1e-9 if f == "optimal" else 1e-12
            np.testing.assert_allclose(ours, sorted_x.numpy(), atol=tol, err_msg=msg)
            np.testing.assert_allclose(
                p_ours, np.swapaxes(perm.numpy(), -1, -2), atol=tol, err_msg=msg
            )
