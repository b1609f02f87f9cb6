"""Package hygiene: the public namespace, the version, and the README's code actually running."""

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


def test_readme_python_snippets_run():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
