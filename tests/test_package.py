"""Package hygiene: the public namespace, the version, optional extras and docstring markup.

The README's and docs' code blocks are run by ``test_docs.py``.
"""

import pathlib
import re

import rank_relax_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_importable():
    assert rank_relax_jax.__all__ == sorted(rank_relax_jax.__all__)
    for name in rank_relax_jax.__all__:
        assert callable(getattr(rank_relax_jax, name)), name


def test_version_matches_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"', pyproject, flags=re.M).group(1)
    assert rank_relax_jax.__version__ == declared


def test_core_does_not_import_optional_extras():
    import subprocess
    import sys

    code = (
        "import sys, rank_relax_jax, rank_relax_jax.attention, rank_relax_jax.gumbel;"
        "extras = ('flax', 'optax', 'matplotlib', 'scipy', 'sklearn');"
        "bad = [m for m in extras if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_docstrings_use_markdown_not_restructuredtext_tables():
    # mkdocstrings renders docstrings as Markdown: an RST table or heading underline comes out
    # as lines of "=====" on the API pages and in help() (issue #17, losses.py).
    import importlib
    import inspect
    import pkgutil

    modules = [rank_relax_jax] + [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(rank_relax_jax.__path__, "rank_relax_jax.")
    ]
    for module in modules:
        objects = [module] + [obj for _, obj in inspect.getmembers(module) if callable(obj)]
        for obj in objects:
            doc = inspect.getdoc(obj) or ""
            bad = [line for line in doc.splitlines() if re.fullmatch(r"\s*=[= ]{3,}", line)]
            assert not bad, (module.__name__, getattr(obj, "__name__", obj), bad)
