"""One monitoring measurement in a fresh interpreter, run by benchmarks.monitoring.

    python -m benchmarks.monitor_child ours STORE_ROOT MODEL WINDOW [--profile]
    python -m benchmarks.monitor_child floor STORE_ROOT PREFIX [PREFIX ...]

`ours`: shared.monitoring.job.check_model(LocalStore(STORE_ROOT), MODEL, WINDOW), imports
not timed. `floor`: every capture file in the partitions PREFIX (captures/<model>/dt=../
hour=../) read, gunzipped and JSON-decoded into builtins, one file at a time, nothing else
(stdlib and msgspec only). Prints one JSON line.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import sys
import time
from typing import Any


def _peak_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(store_root: str, model: str, window: str, profile: bool) -> dict[str, Any]:
    """The monitoring check of one window, as the scheduled function runs it."""
    start = time.perf_counter()
    import cProfile

    from shared.monitoring.job import check_model
    from shared.store.local import LocalStore

    imported = time.perf_counter()
    store = LocalStore(store_root)
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    begin = time.perf_counter()
    outcome = check_model(store, model, window)
    elapsed = time.perf_counter() - begin
    if profiler:
        profiler.disable()
    report = json.loads(store.get(outcome.report_key).body)
    result: dict[str, Any] = {
        "import_s": imported - start,
        "check_s": elapsed,
        "rows": outcome.rows,
        "capture_files": report["capture_files"],
        "summarised_files": report.get("summarised_files", 0),
        "verdict": outcome.verdict,
        "written": outcome.written,
        "report_key": outcome.report_key,
        "max_rss_mib": _peak_mib(),
    }
    if profiler:
        import pstats

        from benchmarks.common import top_entries

        stats = pstats.Stats(profiler)
        result["profile"] = {
            "wall_s": elapsed,
            "profiled_total_s": getattr(stats, "total_tt", None),
            "note": "cProfile (which slows Python-level calls): microseconds of one check",
            "top": top_entries(stats, per=1, top=15),
        }
    return result


def floor(store_root: str, prefixes: list[str]) -> dict[str, Any]:
    """Read, gunzip and decode every line of the partitions' files; count what was read."""
    import msgspec

    decoder = msgspec.json.Decoder()
    begin = time.perf_counter()
    files = rows = stored = decompressed = 0
    for prefix in prefixes:
        folder = os.path.join(store_root, *prefix.strip("/").split("/"))
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            continue
        for name in names:
            with open(os.path.join(folder, name), "rb") as file:
                body = file.read()
            text = gzip.decompress(body)
            rows += len(decoder.decode_lines(text))
            files += 1
            stored += len(body)
            decompressed += len(text)
    elapsed = time.perf_counter() - begin
    return {
        "floor_s": elapsed,
        "files": files,
        "rows": rows,
        "stored_bytes": stored,
        "decompressed_bytes": decompressed,
        "max_rss_mib": _peak_mib(),
    }


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "ours":
        out = ours(args[0], args[1], args[2], "--profile" in args[3:])
    elif mode == "floor":
        out = floor(args[0], args[1:])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(out))
