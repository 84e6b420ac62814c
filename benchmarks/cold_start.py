"""Cold starts: a fresh interpreter imports the app, loads the production model, answers once.

Local store: the whole child process is timed from the parent (spawn to exit), against
`python -c "import sklearn"` timed the same way. S3 store (moto's standalone server on
loopback): timed inside the child from just before `import app` to the answer, against a
fresh interpreter timing `import boto3; boto3.client("s3")` the same way.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from benchmarks.common import (
    BUCKET,
    ChildRun,
    Figure,
    fake_aws_environ,
    figure,
    lambda_memory_mb,
    median,
    patched_environ,
    predict_event,
    rounded,
    run_python,
)
from benchmarks.fixtures import BREAST_CANCER_SPEC, breast_cancer_csv, train_into
from benchmarks.workspace import Workspace, prepared, record_of
from shared.store.s3 import S3Store

CHILD = ["-m", "benchmarks.cold_start_child"]
SKLEARN = ["-c", "import sklearn"]
FLOOR = ["-c", "pass"]
MODEL = "breast-cancer"


def _event_json(ws: Workspace) -> str:
    data = prepared(ws.breast_cancer)
    return json.dumps(predict_event(MODEL, json.dumps({"records": [record_of(data, 0)]})))


def _runs(
    ws: Workspace, commands: dict[str, list[str]], env: dict[str, str]
) -> dict[str, list[ChildRun]]:
    """Each command `cold_runs` times, in turns; one untimed turn first on a full run."""
    if not ws.sizes.quick:
        for args in commands.values():
            run_python(args, env=env)  # page cache and .pyc files, as a deployed function has
    runs: dict[str, list[ChildRun]] = {name: [] for name in commands}
    for _ in range(ws.sizes.cold_runs):
        for name, args in commands.items():
            runs[name].append(run_python(args, env=env))
    return runs


def _check(run: ChildRun) -> dict[str, Any]:
    result = run.result()
    if result["status"] not in (200, None):
        raise RuntimeError(f"the cold request answered {result['status']}: {result['body']}")
    return result


def _wall_split(runs: list[ChildRun], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the whole-process wall time goes: start-up, import + request, exit."""
    return {
        "startup": rounded(
            median([r["started_at"] - c.spawned_at for c, r in zip(runs, results, strict=True)])
        ),
        "import_and_first_request": rounded(median([r["total_s"] for r in results])),
        "exit": rounded(
            median([c.exited_at - r["answered_at"] for c, r in zip(runs, results, strict=True)])
        ),
        "note": "startup: spawn to just before `import app` (interpreter, site with the .pth "
        "hooks of this venv, e.g. the editable install's finder, runpy, the child module); "
        "exit: from the answer to the process gone (interpreter shutdown), which a Lambda "
        "container does not pay per cold start",
    }


def _med(runs: list[ChildRun], pick: Callable[[ChildRun], float]) -> float:
    return median([pick(r) for r in runs])


def _import_profile(env: dict[str, str], event_json: str) -> dict[str, Any]:
    """`python -X importtime`: the slowest modules by own time, and packages by cumulative."""
    run = run_python(["-X", "importtime", *CHILD, "predict", event_json], env=env)
    line = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
    own: list[tuple[int, str]] = []
    packages: dict[str, int] = {}
    for text in run.stderr.splitlines():
        match = line.match(text)
        if not match:
            continue
        self_us, cumulative_us, name = int(match[1]), int(match[2]), match[4]
        own.append((self_us, name))
        if "." not in name:
            packages[name] = max(packages.get(name, 0), cumulative_us)
    return {
        "top_own_ms": {name: round(us / 1e3, 2) for us, name in sorted(own, reverse=True)[:15]},
        "top_packages_cumulative_ms": {
            name: round(us / 1e3, 2)
            for name, us in sorted(packages.items(), key=lambda kv: -kv[1])[:15]
        },
        "note": "-X importtime, one run; cumulative includes what a package imported first",
    }


def _local_runs(ws: Workspace) -> dict[str, Any]:
    if "cold_local" not in ws.memo:
        _ = ws.breast_cancer  # trains the model into the workspace's store
        env = {**os.environ, "MLOPS_STORE": str(ws.root / "store")}
        event_json = _event_json(ws)
        runs = _runs(
            ws,
            {"ours": [*CHILD, "predict", event_json], "sklearn": SKLEARN, "floor": FLOOR},
            env,
        )
        results = [_check(r) for r in runs["ours"]]
        ws.memo["cold_local"] = {
            "runs": runs,
            "results": results,
            "imports": _import_profile(env, event_json) if ws.profile else None,
        }
    memo: dict[str, Any] = ws.memo["cold_local"]
    return memo


def cold_start_seconds(ws: Workspace) -> Figure:
    """Wall time of a fresh interpreter's first prediction, local store."""
    memo = _local_runs(ws)
    runs: dict[str, list[ChildRun]] = memo["runs"]
    results: list[dict[str, Any]] = memo["results"]
    ours = _med(runs["ours"], lambda r: r.wall_s)
    reference = _med(runs["sklearn"], lambda r: r.wall_s)
    return figure(
        ours=ours,
        reference=reference,
        ratio=ours / reference,
        goal="ours <= 0.3 s",
        met=ours <= 0.3,
        unit="s",
        measure="median wall time of the whole subprocess, spawn to exit",
        ratio_is="ours / reference",
        details={
            "runs": len(runs["ours"]),
            "ours": "python -m benchmarks.cold_start_child: import app, then app.app(REST "
            "proxy event for POST /models/breast-cancer/predict), MLOPS_STORE a local folder",
            "reference": 'python -c "import sklearn"',
            "wall_s": {name: [rounded(r.wall_s) for r in rs] for name, rs in runs.items()},
            "interpreter_floor_s": rounded(_med(runs["floor"], lambda r: r.wall_s)),
            "in_child_median_s": {
                key: rounded(median([r[key] for r in results]))
                for key in ("import_s", "first_request_s", "total_s")
            },
            "wall_split_median_s": _wall_split(runs["ours"], results),
            "heavy_modules_imported": sorted({m for r in results for m in r["heavy"]}),
            "modules_loaded": results[0]["modules"],
            "max_rss_mib": rounded(max(r["max_rss_mib"] for r in results)),
            "answer": results[0]["body"],
            "imports": memo["imports"],
        },
    )


def cold_start_max_rss_mb(ws: Workspace) -> Figure:
    """Peak memory of the cold start above, against the api_handler's memory size."""
    memo = _local_runs(ws)
    runs: dict[str, list[ChildRun]] = memo["runs"]
    ours = max(r.max_rss_mib for r in runs["ours"])
    reference = max(r.max_rss_mib for r in runs["sklearn"])
    limit = lambda_memory_mb("api_handler")
    return figure(
        ours=ours,
        reference=reference,
        ratio=ours / reference,
        goal=f"ours <= {limit} MB (api_handler memory)",
        met=limit is not None and ours <= limit,
        unit="MiB",
        measure="peak RSS of the cold-start process; goal: api_handler's "
        "lambda_memory_size in .chalice/config.json",
        ratio_is="ours / reference",
        details={
            "ours": "the cold_start_seconds child (os.wait4 rusage, via benchmarks.spawn)",
            "reference": 'python -c "import sklearn"',
            "in_child_getrusage_mib": rounded(max(r["max_rss_mib"] for r in memo["results"])),
            "interpreter_floor_mib": rounded(max(r.max_rss_mib for r in runs["floor"])),
            "lambda_memory_size_mb": limit,
        },
    )


def cold_start_s3_seconds(ws: Workspace) -> Figure:
    """A fresh interpreter's first prediction from S3 (moto's server), timed in the child."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {
            **fake_aws_environ(os.environ),
            "AWS_ENDPOINT_URL_S3": endpoint,
            "MLOPS_STORE": f"s3://{BUCKET}",
        }
        with patched_environ(env):
            client = boto3.client("s3", endpoint_url=endpoint)
            client.create_bucket(Bucket=BUCKET)
            train_into(
                S3Store(BUCKET, client=client), MODEL, breast_cancer_csv(), BREAST_CANCER_SPEC
            )
        runs = _runs(
            ws, {"ours": [*CHILD, "predict", _event_json(ws)], "boto3": [*CHILD, "boto3"]}, env
        )
    finally:
        server.stop()
    results = {name: [_check(r) for r in rs] for name, rs in runs.items()}
    ours = median([r["total_s"] for r in results["ours"]])
    reference = median([r["total_s"] for r in results["boto3"]])
    return figure(
        ours=ours,
        reference=reference,
        ratio=ours / reference,
        goal="ours - ref <= 0.2 s",
        met=ours - reference <= 0.2,
        unit="s",
        measure="median seconds, timed in the child from just before the first import to "
        "the answer",
        ratio_is="ours / reference (the goal is on the difference, in details)",
        details={
            "runs": len(runs["ours"]),
            "difference_s": rounded(ours - reference),
            "ours": "import app, then app.app(REST proxy event for POST "
            "/models/breast-cancer/predict) reading registry, metadata and model.onnx from "
            "S3 (moto's ThreadedMotoServer on 127.0.0.1, AWS_ENDPOINT_URL_S3)",
            "reference": 'import boto3; boto3.client("s3") in a fresh interpreter',
            "in_child_median_s": {
                key: rounded(median([r[key] for r in results["ours"]]))
                for key in ("import_s", "first_request_s", "total_s")
            },
            "whole_process_wall_s": {
                name: rounded(_med(rs, lambda r: r.wall_s)) for name, rs in runs.items()
            },
            "wall_split_median_s": _wall_split(runs["ours"], results["ours"]),
            "heavy_modules_imported": sorted({m for r in results["ours"] for m in r["heavy"]}),
            "max_rss_mib": rounded(max(r.max_rss_mib for r in runs["ours"])),
            "answer": results["ours"][0]["body"],
        },
    )
