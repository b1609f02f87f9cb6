"""Metadata every benchmark JSON carries, and its one layout: ``{"meta": {...}, "rows": [...]}``.

``meta`` holds the machine (platform, processor, CPU count, load average at start and end, JAX
device), the versions (Python, JAX, jaxlib, NumPy, this library, and any peers the caller adds),
the exact command and the UTC date. Each row is a flat dict, one measured cell.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import sys
from typing import Any


def collect(versions: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    import jax
    import jaxlib
    import numpy as np

    import rank_relax_jax

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "loadavg_start": list(os.getloadavg()),
            "device": str(jax.devices()[0]),
            "device_kind": jax.devices()[0].device_kind,
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
            "rank_relax_jax": rank_relax_jax.__version__,
            **(versions or {}),
        },
        **extra,
    }


def write(path: str | os.PathLike, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    meta = dict(meta)
    meta.setdefault("machine", {})["loadavg_end"] = list(os.getloadavg())
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
