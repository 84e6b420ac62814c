"""What every benchmark shares: figures, timing, the machine, Lambda events, stores."""

from __future__ import annotations

import base64
import contextlib
import cProfile
import importlib.metadata
import json
import math
import os
import platform
import pstats
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BUCKET = "bench-mlops"
REGION = "us-east-1"


class Figure(TypedDict):
    """One entry of results.json."""

    ours: float | None
    reference: float | None
    ratio: float | None
    goal: str
    met: bool
    unit: str
    details: dict[str, Any]


def figure(
    *,
    ours: float | None,
    reference: float | None,
    ratio: float | None,
    goal: str,
    met: bool,
    unit: str,
    measure: str,
    ratio_is: str,
    details: dict[str, Any],
) -> Figure:
    """A results.json entry; `measure` and `ratio_is` say in words what the numbers are."""
    return Figure(
        ours=rounded(ours),
        reference=rounded(reference),
        ratio=rounded(ratio),
        goal=goal,
        met=bool(met),
        unit=unit,
        details={"measure": measure, "ratio_is": ratio_is, **details},
    )


def rounded(value: float | None, digits: int = 4) -> float | None:
    """`value` to `digits` significant digits (None stays None)."""
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does: the full run, or --quick for CI."""

    quick: bool
    calls_1row: int  # timed single-row calls per variant
    block: int  # consecutive timed calls of one variant (see time_calls)
    warmup: int  # untimed calls before each block
    sklearn_calls: int  # timed sklearn predict_proba calls (slow for forests)
    rf_trees: int
    batch_rows: int
    batch_reps: int
    batch_train_rows: int
    cold_runs: int
    train_rows: int
    train_reps: int
    s3_predictions: int
    profile_calls: int
    capture_flush_reps: int  # timed flushes of a full 1,000-row capture buffer
    monitor_train_rows: int  # rows the monitored model is trained on
    monitor_rows_small: int  # captured rows of the three checked windows (1 h, 2 h, 4 h)
    monitor_rows: int  # the headline window
    monitor_rows_large: int
    monitor_batch_rows: int  # rows per capture file (the default capture size)
    monitor_batch_rows_alt: int  # a second store's rows per file, at the headline window
    monitor_distinct_files: int  # capture files encoded per hour (the others are copies)
    monitor_reps: int  # checks of the headline window (the others are checked once)
    memory_csv_rows: int  # rows of the training-memory CSV (about 180 bytes each)
    hostile_scale: int  # the hostile bodies' sizes are divided by this
    decision_rows: int  # rows served a week in the decision simulations (benchmarks.decisions)
    decision_weeks: int  # weeks served after week 0's training
    decision_change_week: int  # the week each scenario's change starts
    decision_kinds: tuple[str, ...] | None  # data kinds simulated (None: all)
    decision_scenarios: tuple[str, ...] | None  # scenarios simulated (None: all)
    verdict_windows: int  # unchanged windows per size in the verdict simulations
    batch_job_rows: int  # rows of the batch-scoring CSV (30 features, about 200 bytes a row)
    batch_memory_rows: int  # rows of the batch job whose peak memory is measured

    @classmethod
    def full(cls) -> Sizes:
        """The sizes the figures are defined at."""
        return cls(
            quick=False,
            calls_1row=2000,
            block=100,
            warmup=10,
            sklearn_calls=500,
            rf_trees=100,
            batch_rows=10_000,
            batch_reps=15,
            batch_train_rows=5_000,
            cold_runs=9,
            train_rows=100_000,
            train_reps=3,
            s3_predictions=1000,
            profile_calls=500,
            capture_flush_reps=20,
            monitor_train_rows=20_000,
            monitor_rows_small=100_000,
            monitor_rows=1_000_000,
            monitor_rows_large=10_000_000,
            monitor_batch_rows=1_000,
            monitor_batch_rows_alt=10_000,
            monitor_distinct_files=4,
            monitor_reps=3,
            memory_csv_rows=555_000,  # 100 MB
            hostile_scale=1,
            decision_rows=1000,
            decision_weeks=10,
            decision_change_week=4,
            decision_kinds=None,
            decision_scenarios=None,
            verdict_windows=200,
            batch_job_rows=1_000_000,
            batch_memory_rows=10_000_000,
        )

    @classmethod
    def small(cls) -> Sizes:
        """Everything shrunk, to prove the scripts still work (numbers mean little)."""
        return cls(
            quick=True,
            calls_1row=50,
            block=10,
            warmup=2,
            sklearn_calls=20,
            rf_trees=10,
            batch_rows=500,
            batch_reps=3,
            batch_train_rows=400,
            cold_runs=1,
            train_rows=2_000,
            train_reps=1,
            s3_predictions=50,
            profile_calls=20,
            capture_flush_reps=3,
            monitor_train_rows=2_000,
            monitor_rows_small=2_000,
            monitor_rows=10_000,
            monitor_rows_large=20_000,
            monitor_batch_rows=500,
            monitor_batch_rows_alt=2_000,
            monitor_distinct_files=10,
            monitor_reps=1,
            memory_csv_rows=11_000,  # 2 MB
            hostile_scale=8,
            decision_rows=300,
            decision_weeks=4,
            decision_change_week=2,
            decision_kinds=("numeric",),
            decision_scenarios=("abrupt",),
            verdict_windows=4,
            batch_job_rows=20_000,
            batch_memory_rows=200_000,
        )


# --- timing -------------------------------------------------------------------------------


def time_calls(
    variants: Mapping[str, Callable[[], object]], *, calls: int, block: int, warmup: int
) -> dict[str, list[float]]:
    """Microseconds per call of each variant: `calls` timed calls each, in blocks.

    The variants take turns block by block: each turn makes `warmup` untimed calls and then
    `block` timed ones. Blocks, not single calls in turn, because one variant's after-effects
    land on the next one's call (seen here: sklearn's predict_proba left the handler twice as
    slow, and the handler left onnxruntime 1.6x as slow, as when called alone); turns, so
    that drift in the machine's speed hits every variant alike.
    """
    clock = time.perf_counter_ns
    samples: dict[str, list[float]] = {name: [] for name in variants}
    done = 0
    while done < calls:
        size = min(block, calls - done)
        for name, fn in variants.items():
            for _ in range(warmup):
                fn()
            timings = samples[name]
            for _ in range(size):
                start = clock()
                fn()
                timings.append((clock() - start) / 1e3)
        done += size
    return samples


def timing_note(*, calls: int, block: int, warmup: int) -> str:
    """How time_calls timed, in words, for the details."""
    return (
        f"{calls} timed calls per variant, variants in turns of {block} calls, each turn "
        f"after {warmup} untimed ones (benchmarks.common.time_calls)"
    )


def summary(samples: Sequence[float]) -> dict[str, float | int | None]:
    """Median, p99, mean and min of timings (same unit as the samples)."""
    values = np.asarray(samples, dtype=np.float64)
    return {
        "n": int(values.size),
        "median": rounded(float(np.median(values))),
        "p99": rounded(float(np.percentile(values, 99))),
        "mean": rounded(float(values.mean())),
        "min": rounded(float(values.min())),
    }


def median(samples: Sequence[float]) -> float:
    """The median of `samples`."""
    return float(np.median(np.asarray(samples, dtype=np.float64)))


def profile_top(fn: Callable[[], object], *, calls: int, top: int = 15) -> dict[str, Any]:
    """cProfile of `calls` calls of `fn`: the functions with the most own time, per call."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    profiler.disable()
    return {
        "calls": calls,
        "note": "cProfile, microseconds per call. Under Python 3.12 it misattributes time "
        "around onnxruntime's calls (seen: a function running after session.run charged "
        "6x its measured time); the figure's steps_in_handler timings are measured, trust "
        "those where they disagree",
        "top": top_entries(pstats.Stats(profiler), per=calls, top=top),
    }


def top_entries(stats: pstats.Stats, *, per: int, top: int) -> list[dict[str, Any]]:
    """The `top` entries of `stats` by own time, in microseconds per one of `per` calls."""
    # Stats keeps (file, line, name) -> (primitive calls, calls, own, cumulative, callers).
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = vars(stats)["stats"]
    rows = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [
        {
            "function": _where(file, line, name),
            "calls": rounded(ncalls / per),
            "own_us": rounded(own * 1e6 / per),
            "cumulative_us": rounded(cumulative * 1e6 / per),
        }
        for (file, line, name), (_, ncalls, own, cumulative, _) in rows
    ]


def _where(file: str, line: int, name: str) -> str:
    if file == "~":
        return name  # a builtin
    path = file
    for prefix in (r".*/site-packages/", re.escape(f"{ROOT}/"), r".*/lib/python3\.\d+/"):
        shorter = re.sub("^" + prefix, "", path)
        if shorter != path:
            path = shorter
            break
    return f"{path}:{line}({name})"


# --- the machine --------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What ran the benchmarks; OPENBLAS_* are recorded as found, never changed here."""
    packages = (
        "numpy",
        "onnxruntime",
        "scikit-learn",
        "skl2onnx",
        "onnx",
        "msgspec",
        "boto3",
        "chalice",
        "moto",
    )
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": PYTHON,
        "packages": {name: _version(name) for name in packages},
        "env": {
            name: os.environ.get(name)
            for name in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OPENBLAS_NUM_THREADS",
                "OMP_NUM_THREADS",
            )
        },
    }
    try:
        from threadpoolctl import (  # type: ignore[import-untyped]  # scikit-learn's dependency
            threadpool_info,
        )

        info["blas"] = [
            {k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for pool in threadpool_info()
        ]
    except ImportError:
        info["blas"] = None
    return info


def code_state() -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    changed = git("diff", "--name-only", "HEAD")
    return {
        "commit": git("rev-parse", "HEAD"),
        "tracked_files_changed": None if changed is None else changed.splitlines(),
    }


def cpu_steal_seconds() -> float | None:
    """CPU time the hypervisor gave to others so far (all CPUs, /proc/stat), if known."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_label(info: Mapping[str, Any]) -> str:
    """A short label for the table."""
    return f"{info['cpu']} x{info['cores_usable']}, py{info['python']}"


# --- Lambda events ------------------------------------------------------------------------


class LambdaContext:
    """What the Lambda runtime passes as `context` (the attributes Chalice may read)."""

    function_name = "serverless-mlops-dev"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:serverless-mlops-dev"
    memory_limit_in_mb = 1024
    aws_request_id = "5b8e1b7e-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/serverless-mlops-dev"
    log_stream_name = "2026/01/01/[$LATEST]0000"

    def get_remaining_time_in_millis(self) -> int:
        """Lambda's countdown; a constant is enough here."""
        return 30_000


def rest_event(
    resource: str, path_parameters: dict[str, str], body: str, method: str = "POST"
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as Lambda hands it to the api_handler.

    The API's binary media type is */* (app.py), so API Gateway base64-encodes the body.
    """
    path = resource
    for name, value in path_parameters.items():
        path = path.replace("{" + name + "}", value)
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Host": "abc123defg.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "benchmarks/1.0",
        "X-Amzn-Trace-Id": "Root=1-00000000-000000000000000000000000",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "r3s0ur",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "AbCdEfGhIjKlMnO=",
            "requestTime": "01/Jan/2026:00:00:00 +0000",
            "path": "/api" + path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "api",
            "domainPrefix": "abc123defg",
            "requestTimeEpoch": 1767225600000,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "benchmarks/1.0"},
            "domainName": "abc123defg.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123defg",
        },
        "body": base64.b64encode(body.encode()).decode(),
        "isBase64Encoded": True,
    }


def response_json(response: dict[str, Any]) -> Any:
    """A handler's JSON answer, decoded as API Gateway decodes it."""
    body = response["body"]
    return json.loads(base64.b64decode(body) if response.get("isBase64Encoded") else body)


def predict_event(model: str, body: str) -> dict[str, Any]:
    """POST /models/{name}/predict (the records protocol)."""
    return rest_event("/models/{name}/predict", {"name": model}, body)


def infer_event(model: str, body: str) -> dict[str, Any]:
    """POST /v2/models/{name}/infer (the Open Inference Protocol)."""
    return rest_event("/v2/models/{name}/infer", {"name": model}, body)


def binary_infer_event(model: str, matrix: np.ndarray) -> dict[str, Any]:
    """POST /v2/models/{name}/infer with the binary tensor data extension, in and out.

    API Gateway hands binary bodies to Lambda base64-encoded, so the event does too.
    """
    raw = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(matrix.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    event = rest_event("/v2/models/{name}/infer", {"name": model}, "")
    headers = {
        **event["headers"],
        "Content-Type": "application/octet-stream",
        "Accept": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    event.update(
        headers=headers,
        multiValueHeaders={k: [v] for k, v in headers.items()},
        body=base64.b64encode(header + raw).decode(),
        isBase64Encoded=True,
    )
    return event


def binary_labels(response: dict[str, Any]) -> list[int]:
    """The INT64 labels of a binary inference response (the first output)."""
    body = (
        base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"]
    )
    headers = {k.lower(): v for k, v in response["headers"].items()}
    length = int(headers["inference-header-content-length"])
    meta = json.loads(body[:length])
    size = meta["outputs"][0]["parameters"]["binary_data_size"]
    return [int(v) for v in np.frombuffer(body[length : length + size], dtype="<i8")]


# --- environments -------------------------------------------------------------------------


def fake_aws_environ(base: Mapping[str, str]) -> dict[str, str]:
    """`base` with fake credentials in REGION and no AWS setting of the user's left over."""
    env = {
        k: v
        for k, v in base.items()
        if not (k.startswith("AWS_") or k in ("MLOPS_STORE", "MLOPS_ALIAS_TTL_SECONDS"))
    }
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ replaced by `values` for the block, restored after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def serving_from(location: str) -> Iterator[None]:
    """The inference function's container cache over MLOPS_STORE=`location`, TTL 10 s."""
    from functions import inference

    env = {**os.environ, "MLOPS_STORE": location, "MLOPS_ALIAS_TTL_SECONDS": "10"}
    with patched_environ(env):
        inference.reset_cache()
        try:
            yield
        finally:
            inference.reset_cache()


def free_port() -> int:
    """A TCP port nobody listens on right now, on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ChildRun:
    """A finished child process: wall time, peak memory and output."""

    wall_s: float
    max_rss_mib: float  # the child's own peak resident set, MiB
    stdout: str
    stderr: str
    spawned_at: float  # epoch seconds
    exited_at: float

    def result(self) -> dict[str, Any]:
        """The JSON object a benchmark child prints as its last line."""
        parsed: dict[str, Any] = json.loads(self.stdout.strip().splitlines()[-1])
        return parsed


def run_python(args: Sequence[str], *, env: Mapping[str, str] | None = None) -> ChildRun:
    """Run `python args` in the project root: wall time from spawn to exit, and peak RSS.

    It runs under benchmarks.spawn, a small launcher, so that its peak RSS is its own (see
    there); the launcher's own start-up is not in the wall time.
    """
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        out_path, err_path = Path(scratch) / "stdout", Path(scratch) / "stderr"
        with out_path.open("w") as out, err_path.open("w") as err:
            subprocess.run(
                [PYTHON, "-m", "benchmarks.spawn", str(report), "--", PYTHON, *args],
                cwd=ROOT,
                env=dict(env if env is not None else os.environ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                check=False,
            )
        stdout, stderr = out_path.read_text(), err_path.read_text()
        measured = json.loads(report.read_text()) if report.exists() else {"returncode": -1}
    if measured["returncode"] != 0:
        shown = " ".join(a if len(a) < 80 else a[:60] + "..." for a in args)
        raise RuntimeError(
            f"python {shown} exited {measured['returncode']}: {stderr.strip()[-3000:]}"
        )
    return ChildRun(
        wall_s=float(measured["wall_s"]),
        max_rss_mib=float(measured["max_rss_kib"]) / 1024,
        stdout=stdout,
        stderr=stderr,
        spawned_at=float(measured["spawned_at"]),
        exited_at=float(measured["exited_at"]),
    )


def lambda_memory_mb(function: str) -> int | None:
    """lambda_memory_size of `function` in .chalice/config.json, if set."""
    try:
        config = json.loads((ROOT / ".chalice" / "config.json").read_text())
        value = config["lambda_functions"][function]["lambda_memory_size"]
    except (OSError, KeyError, ValueError):
        return None
    return int(value)
