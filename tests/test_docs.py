"""Every Python code block in the README and in docs/ runs (issue #17).

The blocks of one page run in order in one namespace, as a reader would paste them, in JAX's
default 32-bit mode. A block that is only an illustration and must not run is fenced as
``text`` or ``pycon`` instead of ``python``; there is none at present.
"""

from __future__ import annotations

import pathlib
import re

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
# Pages whose blocks train or compile Flax models: seconds to a minute each.
SLOW = {"attention.md", "gumbel_reranking.md"}


def python_blocks(page: pathlib.Path) -> list[str]:
    return FENCE.findall(page.read_text())


def test_pages_are_found():
    names = {p.name for p in PAGES}
    assert {"README.md", "index.md", "attention.md", "methods.md"} <= names
    assert sum(len(python_blocks(p)) for p in PAGES) >= 6


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.name in SLOW else [])
        for p in PAGES
        if python_blocks(p)
    ],
)
def test_python_blocks_run(page, monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    with jax.enable_x64(False):
        for i, block in enumerate(python_blocks(page)):
            code = compile(block, f"{page.name}[block {i}]", "exec")
            exec(code, namespace)


def test_readme_taste_comments_hold():
    # The README's numbers, including the one that trains and the one that does not.
    import jax.numpy as jnp
    import numpy as np

    import rank_relax_jax as rrj

    with jax.enable_x64(False):
        scores = jnp.array([0.3, -1.2, 2.5, 0.9])
        ranks = np.asarray(rrj.soft_rank(scores, temperature=1.0))
        np.testing.assert_allclose(ranks, [2.2, 1, 4, 2.8], rtol=1e-6)
        mask = np.asarray(rrj.soft_topk_mask(scores, 2, temperature=1.0))
        np.testing.assert_allclose(mask, [0.2, 0, 1, 0.8], atol=1e-6)

        def first_rank(t):
            return np.asarray(jax.grad(lambda s: rrj.soft_rank(s, temperature=t)[0])(scores))

        np.testing.assert_allclose(first_rank(1.0), [0.5, 0, 0, -0.5], atol=1e-6)
        np.testing.assert_array_equal(first_rank(0.1), [0.0, 0.0, 0.0, 0.0])


def _public_ops():
    from rank_relax_jax import ranking, topk

    return {
        "rank": ranking.soft_rank,
        "sort": ranking.soft_sort,
        "permutation": ranking.soft_permutation,
        "topk": topk.soft_topk_mask,
    }


@pytest.mark.parametrize("operation", ["rank", "sort", "permutation", "topk"])
def test_docstring_names_every_registered_method(operation):
    # The docstring's method table (or list) must not fall behind the kernel registry.
    from rank_relax_jax import methods

    doc = _public_ops()[operation].__doc__
    missing = [m for m in methods.methods(operation) if f"`{m}`" not in doc and f'"{m}"' not in doc]
    assert not missing, f"the docstring of soft_{operation} does not name {missing}"


def test_readme_method_table_matches_the_registry():
    """The README's relaxations table lists every registered method with its operations."""
    from rank_relax_jax import methods
    from rank_relax_jax.methods._registry import OPERATIONS

    text = (ROOT / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    table = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 5 or cells[1] not in ("✓", ""):
            continue
        name = cells[0].split("`")[1]
        table[name] = {op for op, c in zip(OPERATIONS, cells[1:5], strict=True) if c}
    registered = {}
    for op in OPERATIONS:
        for m in methods.methods(op):
            registered.setdefault(m, set()).add(op)
    assert table == registered
