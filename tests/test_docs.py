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
