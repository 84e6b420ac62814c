"""Deployment package sizes per function, as `make package` (infra/package.py) recorded them.

Not measured here: build/sizes.json is read if present. Lambda's limit is 250 MB unzipped,
code and layers together, where AWS's "MB" is 2**20 bytes (262,144,000 bytes); sizes are
in MiB accordingly, and so is the 60 MB goal for the serving function's zip.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import ROOT, Figure, figure, rounded
from benchmarks.workspace import Workspace

SIZES = ROOT / "build" / "sizes.json"
LIMIT_MIB = 250.0
SERVING = "api_handler"
SERVING_ZIPPED_GOAL_MIB = 60.0
MIB = 2**20
GOAL = f"each < {LIMIT_MIB:g} unzipped; {SERVING} zip < {SERVING_ZIPPED_GOAL_MIB:g}"
MEASURE = (
    "MiB unzipped (code + layers) of the largest function, from build/sizes.json; every "
    "function's unzipped and zipped sizes in details"
)


def package_unzipped_mb(ws: Workspace) -> Figure:
    """The largest function's unzipped size against Lambda's limit; every function in details."""
    del ws  # nothing to build: the sizes come from `make package`
    if not SIZES.exists():
        return figure(
            ours=None,
            reference=LIMIT_MIB,
            ratio=None,
            goal=GOAL,
            met=False,
            unit="MiB",
            measure=MEASURE,
            ratio_is="ours / Lambda's unzipped limit",
            details={"status": "not measured: run make package", "expected": str(SIZES)},
        )
    sizes: dict[str, Any] = json.loads(SIZES.read_text())
    limit_mib = float(sizes.get("limit_unzipped_bytes", LIMIT_MIB * MIB)) / MIB
    functions: dict[str, dict[str, Any]] = {}
    for name, entry in sizes["functions"].items():
        unzipped = float(entry["unzipped_bytes"]) / MIB
        zipped = float(entry["zipped_bytes"]) / MIB
        functions[name] = {
            "unzipped_mib": rounded(unzipped),
            "zipped_mib": rounded(zipped),
            "parts": entry.get("code_and_layers"),
            "unzipped_ok": unzipped < limit_mib,
            "headroom_mib": rounded(limit_mib - unzipped),
        }
    serving = functions.get(SERVING)
    serving_ok = serving is not None and float(serving["zipped_mib"]) < SERVING_ZIPPED_GOAL_MIB
    largest = max(functions, key=lambda name: float(functions[name]["unzipped_mib"]))
    ours = float(functions[largest]["unzipped_mib"])
    written = datetime.fromtimestamp(SIZES.stat().st_mtime, tz=UTC)
    return figure(
        ours=ours,
        reference=limit_mib,
        ratio=ours / limit_mib,
        goal=GOAL,
        met=all(f["unzipped_ok"] for f in functions.values()) and serving_ok,
        unit="MiB",
        measure=MEASURE,
        ratio_is="ours / Lambda's unzipped limit",
        details={
            "status": "read from build/sizes.json (written by make package), not measured "
            "in this run",
            "sizes_json_written_at": written.isoformat(timespec="seconds"),
            "largest": largest,
            "functions": functions,
            "serving_zipped_ok": serving_ok,
            "limit_unzipped_mib": rounded(limit_mib),
        },
    )
