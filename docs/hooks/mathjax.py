"""MkDocs hook: ship the math renderer with the site, so formulas render offline.

After every build (``mkdocs build`` and ``mkdocs serve`` alike) this copies MathJax's single-file
TeX-to-SVG bundle, ``es5/tex-svg-full.js`` of the npm package ``mathjax@3.2.2`` (all TeX
extensions and the SVG fonts in one file, nothing else to load), to
``javascripts/vendor/mathjax/`` in the site. The package is fetched once from the npm registry
with ``npm pack`` and cached under ``~/.cache/rank_relax_jax``. Without npm, or without a
network on the first build, the build still succeeds and says so; the pages then load MathJax
from a CDN (``docs/javascripts/mathjax.js`` falls back to it), as they did before.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

VERSION = "3.2.2"
BUNDLE = "tex-svg-full.js"

log = logging.getLogger("mkdocs.hooks.mathjax")


def _cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "rank_relax_jax" / f"mathjax-{VERSION}"


def _fetch(target: pathlib.Path) -> str | None:
    """Downloads the bundle into ``target``; returns why not, or None on success."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [npm, "pack", f"mathjax@{VERSION}", "--silent"],
                cwd=tmp,
                check=True,
                capture_output=True,
                timeout=300,
            )
            (tgz,) = pathlib.Path(tmp).glob("mathjax-*.tgz")
            with tarfile.open(tgz) as tar:
                member = tar.extractfile(f"package/es5/{BUNDLE}")
                data = member.read() if member is not None else b""
        except (OSError, ValueError, subprocess.SubprocessError, tarfile.TarError) as err:
            return f"`npm pack mathjax@{VERSION}` failed ({type(err).__name__})"
    if not data:
        return f"mathjax@{VERSION} has no es5/{BUNDLE}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return None


def on_post_build(config, **kwargs) -> None:
    cached = _cache_dir() / BUNDLE
    if not cached.exists():
        why = _fetch(cached)
        if why is not None:
            # info, not warning: `mkdocs build --strict` must still pass offline.
            log.info("MathJax not shipped with the site (%s); pages will load it from a CDN.", why)
            return
    dest = pathlib.Path(config["site_dir"]) / "javascripts" / "vendor" / "mathjax" / BUNDLE
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, dest)
