"""The one metadata record and row layout every benchmark writes.

A result file is ``{"meta": {...}, "rows": [...]}``:

* ``meta`` (`metadata`): machine, versions, the command that produced the file, the UTC date,
  and the load average when it started (the machines are shared; a number measured under load
  says so), plus the benchmark's own settings;
* ``rows``: a list of flat records (strings, numbers, booleans or ``None``), identifying fields
  first (``op``, ``method``, shape...), then measurements whose key names their unit
  (``fwd_ms``, ``compile_s``, ``temp_MiB``, ``max_rss_GiB``).

Every script runs both as ``python benchmarks/x.py`` and as ``python -m benchmarks.x``; each
imports this module with the fallback shown in `bench_gumbel.py`.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata as _pkg
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return _pkg.version(dist)
    except _pkg.PackageNotFoundError:
        return None


def metadata(versions: Mapping[str, str | None] | None = None, **settings: Any) -> dict[str, Any]:
    """Date, command, machine and versions (plus peers' ``versions``), and the ``settings``."""
    import jax  # imported here: a benchmark's child processes may set flags first

    device = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([pathlib.Path(sys.executable).name, *sys.orig_argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "backend": jax.default_backend(),
            "device": str(device),
            "device_kind": device.device_kind,
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": _version("jaxlib"),
            "numpy": _version("numpy"),
            "rank_relax_jax": _version("rank-relax-jax"),
            **(versions or {}),
        },
        **settings,
    }


def collect(versions: Mapping[str, str | None] | None = None, **settings: Any) -> dict[str, Any]:
    """`metadata`, for scripts that fill in more of it before `write_record`."""
    return metadata(versions, **settings)


def check_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows as a list of flat dicts; raises TypeError for a nested value."""
    out = []
    for row in rows:
        for key, value in row.items():
            if not (value is None or isinstance(value, str | int | float | bool)):
                raise TypeError(f"benchmark row field {key!r} must be a scalar; got {value!r}")
        out.append(dict(row))
    return out


def write(path: str | pathlib.Path, rows: Iterable[Mapping[str, Any]], **settings: Any) -> None:
    """Writes ``{"meta": metadata(**settings), "rows": rows}`` as indented JSON to ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"meta": metadata(**settings), "rows": check_rows(rows)}
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


def write_record(path: str | os.PathLike, meta: Mapping[str, Any], rows: list) -> None:
    """Writes ``{"meta": meta, "rows": rows}`` (meta from `collect`, with the load at the end)."""
    meta = dict(meta)
    machine = dict(meta.get("machine", {}))
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    meta["machine"] = machine
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``columns`` of ``rows`` (floats with 3 significant digits)."""

    def cell(v: Any) -> str:
        if v is None:
            return "—"
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
