"""One training measurement in a fresh interpreter, run by benchmarks.training.

    python -m benchmarks.train_child ours STORE_ROOT DATA_KEY [--profile] [--import-all]
    python -m benchmarks.train_child handler STORE_ROOT DATA_KEY
    python -m benchmarks.train_child bare PICKLE
    python -m benchmarks.train_child parse CSV_PATH N_NUMERIC

`ours`: shared.training_job.train_from_dataset on a local store (imports not timed; the job
imports skl2onnx and onnxruntime only after the fit, so --import-all imports them first, for
figures of time; without it the peak memory is the job's own).
`handler`: the same run as the deployed training function makes it: app.py imported (with
what serving needs), then its S3 handler called with an upload event for DATA_KEY.
`bare`: build_pipeline(...).fit on the pickled prepared training rows, nothing else.
`parse`: the plainest parse of the CSV: csv.reader into one list per column, floats for the
first N_NUMERIC columns and str for the others (the floor a pure-Python reader costs).
Prints one JSON line.
"""

from __future__ import annotations

import cProfile
import json
import pickle
import pstats
import resource
import sys
import time
from typing import Any


def _peak_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(store_root: str, data_key: str, profile: bool, import_all: bool) -> dict[str, Any]:
    """The full training run, as the S3 trigger runs it."""
    start = time.perf_counter()
    if import_all:
        import shared.training.export  # noqa: F401  (what the job imports after the fit)
    from shared.registry.metadata import decode_metadata
    from shared.registry.records import version_prefix
    from shared.store.local import LocalStore
    from shared.training.job import train_from_dataset

    imported = time.perf_counter()
    store = LocalStore(store_root)
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    begin = time.perf_counter()
    outcome = train_from_dataset(store, data_key, trigger="benchmark")
    elapsed = time.perf_counter() - begin
    if profiler:
        profiler.disable()
    if outcome.status != "registered" or outcome.version is None:
        raise SystemExit(f"training did not register: {outcome.status} {outcome.reason}")
    prefix = version_prefix(outcome.model, outcome.version)
    metadata = decode_metadata(store.get(prefix + "metadata.json").body)
    result: dict[str, Any] = {
        "import_s": imported - start,
        "train_s": elapsed,
        "timings": metadata.timings,
        "metrics": metadata.metrics,
        "rows": metadata.lineage.data.rows,
        "train_rows": metadata.lineage.data.train_rows,
        "onnx_bytes": metadata.onnx.size_bytes,
        "max_rss_mib": _peak_mib(),
    }
    if profiler:
        result["profile"] = _sane_profile(profiler, metadata.timings, elapsed)
    return result


def handler(store_root: str, data_key: str) -> dict[str, Any]:
    """The training function's own path: import app, then its S3 event handler."""
    import os

    os.environ["MLOPS_STORE"] = store_root
    start = time.perf_counter()
    import app

    imported_mib = _peak_mib()
    event = {"Records": [{"s3": {"bucket": {"name": "local"}, "object": {"key": data_key}}}]}
    app.on_dataset_uploaded(event, None)
    return {
        "import_s": time.perf_counter() - start,
        "import_peak_mib": imported_mib,
        "max_rss_mib": _peak_mib(),
    }


def _sane_profile(
    profiler: cProfile.Profile, timings: dict[str, float], elapsed: float
) -> dict[str, Any]:
    """The top entries by own time, less those no step's wall time can hold.

    Every function runs inside one timed step or in the little outside them, so no
    function's own time can exceed the longest step plus that outside time. Under Python
    3.12's cProfile, onnxruntime's _bind_session is at times charged over a second that did
    not pass (the profile's total then exceeds the run's wall time by as much): entries
    like that are listed apart, not ranked.
    """
    from benchmarks.common import top_entries

    stats = pstats.Stats(profiler)
    bound_us = (max(timings.values()) + max(elapsed - sum(timings.values()), 0.0)) * 1e6
    entries = top_entries(stats, per=1, top=30)
    return {
        "wall_s": elapsed,
        "profiled_total_s": getattr(stats, "total_tt", None),
        "top": [e for e in entries if e["own_us"] <= bound_us][:25],
        "miscounted": [e for e in entries if e["own_us"] > bound_us],
    }


def bare(pickled: str) -> dict[str, Any]:
    """Pipeline.fit alone, on the training rows the full run fits on."""
    from shared.training.pipeline import build_estimator, build_pipeline

    with open(pickled, "rb") as file:
        data, train, spec = pickle.load(file)
    X, y = data.X[train], data.y[train]
    pipeline = build_pipeline(
        data, build_estimator(spec, data.task), scale=spec.estimator == "linear"
    )
    begin = time.perf_counter()
    pipeline.fit(X, y)
    elapsed = time.perf_counter() - begin
    return {"fit_s": elapsed, "max_rss_mib": _peak_mib()}


def parse(path: str, n_numeric: int) -> dict[str, Any]:
    """Read the file and parse it with csv.reader into per-column lists, nothing else."""
    import csv
    import io

    begin = time.perf_counter()
    with open(path, "rb") as file:
        text = file.read().decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    columns: list[list[Any]] = [[] for _ in header]
    appends = [column.append for column in columns]
    for record in reader:
        for j, (append, cell) in enumerate(zip(appends, record, strict=True)):
            append((float(cell) if cell else float("nan")) if j < n_numeric else cell)
    del text
    elapsed = time.perf_counter() - begin
    return {"parse_s": elapsed, "rows": len(columns[0]), "max_rss_mib": _peak_mib()}


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "ours":
        out = ours(args[0], args[1], "--profile" in args[2:], "--import-all" in args[2:])
    elif mode == "handler":
        out = handler(args[0], args[1])
    elif mode == "bare":
        out = bare(args[0])
    elif mode == "parse":
        out = parse(args[0], int(args[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(out))
