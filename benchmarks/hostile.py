"""The worst time per MB of body among the hostile shapes of issue 11, through the handler.

Each shape is sent at two sizes to the api_handler in-process (as Lambda calls it, through
benchmarks.predict.handle), against the breast-cancer model, warm. Every answer must be a
4xx; the figure is the slowest seconds per MB of body sent. The reference is what reading
JSON costs at all: msgspec.json.decode of a plain records body of the larger size.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec

from benchmarks.common import Figure, figure, infer_event, predict_event, rounded, serving_from
from benchmarks.predict import handle
from benchmarks.workspace import Workspace, prepared, record_of
from shared.serving.inputs import MAX_BODY_BYTES

MB = 1_000_000
REPS = 3
# The fuzz test's budget (tests/test_serving_fuzz.py: SECONDS_PER_BYTE).
MAX_SECONDS_PER_MB = 2.0


def _event(make: Callable[[str, str], dict[str, Any]], model: str, body: bytes) -> dict[str, Any]:
    event = make(model, "")
    event["body"] = base64.b64encode(body).decode()
    return event


def _gzipped(event: dict[str, Any]) -> dict[str, Any]:
    event["headers"] = {**event["headers"], "Content-Encoding": "gzip"}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    return event


def _shapes(record: dict[str, Any], scale: int) -> dict[str, list[tuple[str, bytes, bool]]]:
    """Per shape, two (label, body, gzip) at a small and a large size."""
    v2_input = {"name": next(iter(record)), "shape": [1, 1], "datatype": "FP64", "data": [0.5]}
    valid_inputs = [
        {"name": name, "shape": [1, 1], "datatype": "FP64", "data": [value]}
        for name, value in record.items()
    ]

    def deep(levels: int) -> bytes:
        return b"[" * levels + b"]" * levels

    def tensors(n: int) -> bytes:
        return json.dumps({"inputs": [{**v2_input, "name": f"t{i}"} for i in range(n)]}).encode()

    def outputs(n: int) -> bytes:
        return json.dumps(
            {"inputs": valid_inputs, "outputs": [{"name": "probabilities"}] * n}
        ).encode()

    def records(target_bytes: int) -> bytes:
        one = json.dumps(record)
        count = max(2, target_bytes // (len(one) + 2))
        wrong = {**record, next(iter(record)): "not a number"}
        return json.dumps({"records": [record] * (count - 1) + [wrong]}).encode()

    def bomb(decompressed: int) -> bytes:
        return gzip.compress(b" " * decompressed, compresslevel=9)

    limit = MAX_BODY_BYTES
    return {
        "deep_nesting": [(f"{n} levels", deep(n), False) for n in (1500, 6000 // scale)],
        "input_tensors": [
            (f"{n} tensors", tensors(n), False) for n in (10_000 // scale, 40_000 // scale)
        ],
        "repeated_outputs": [
            (f"{n} outputs", outputs(n), False) for n in (1250 // scale, 5000 // scale)
        ],
        "records_wrong_type_at_end": [
            (f"{n / MB:g} MB", records(n), False)
            for n in (limit // 4 // scale, (limit - 100_000) // scale)
        ],
        "gzip_bomb": [(f"{n // MB} MB of spaces", bomb(n), True) for n in (limit * 2, 100 * MB)],
    }


def _timed(event: dict[str, Any]) -> tuple[float, int]:
    best = float("inf")
    status = 0
    for _ in range(REPS):
        start = time.perf_counter()
        response = handle(event)
        best = min(best, time.perf_counter() - start)
        status = int(response["statusCode"])
    return best, status


def hostile_worst_seconds_per_mb(ws: Workspace) -> Figure:
    """Slowest handler seconds per MB of body over the hostile shapes, each at two sizes."""
    trained = ws.breast_cancer
    record = record_of(prepared(trained), 0)
    shapes = _shapes(record, ws.sizes.hostile_scale)
    measured: dict[str, list[dict[str, Any]]] = {}
    worst = (0.0, "")
    with serving_from(str(ws.store.uri)):
        handle(predict_event(trained.model, json.dumps({"records": [record]})))  # warm
        for shape, bodies in shapes.items():
            make = infer_event if shape in ("input_tensors", "repeated_outputs") else predict_event
            measured[shape] = []
            for label, body, gzipped in bodies:
                event = _event(make, trained.model, body)
                seconds, status = _timed(_gzipped(event) if gzipped else event)
                if not 400 <= status < 500:
                    raise RuntimeError(f"{shape} ({label}) answered {status}, not a 4xx")
                per_mb = seconds / (len(body) / MB)
                worst = max(worst, (per_mb, f"{shape} ({label})"))
                measured[shape].append(
                    {
                        "size": label,
                        "body_bytes": len(body),
                        "status": status,
                        "seconds": rounded(seconds, 6),
                        "seconds_per_mb": rounded(per_mb),
                    }
                )
    plain = shapes["records_wrong_type_at_end"][-1][1]
    decode = float("inf")
    for _ in range(REPS):
        start = time.perf_counter()
        msgspec.json.decode(plain)
        decode = min(decode, time.perf_counter() - start)
    reference = decode / (len(plain) / MB)
    ours = worst[0]
    return figure(
        ours=ours,
        reference=reference,
        ratio=ours / reference,
        goal=f"ours <= {MAX_SECONDS_PER_MB:g} s per MB (the fuzz test's budget)",
        met=ours <= MAX_SECONDS_PER_MB,
        unit="s/MB",
        measure="the api_handler's wall seconds (best of 3, warm) per MB (10^6 bytes) of body "
        "as sent, worst over the hostile shapes; reference: msgspec.json.decode of the plain "
        "records body of the larger size, per MB",
        ratio_is="ours / reference",
        details={
            "worst": worst[1],
            "worst_uncompressed_seconds_per_mb": rounded(
                max(
                    m["seconds_per_mb"]
                    for shape, runs in measured.items()
                    if shape != "gzip_bomb"
                    for m in runs
                )
            ),
            "shapes": measured,
            "model": trained.model,
            "reference_body_bytes": len(plain),
            "reference_seconds": rounded(decode, 6),
            "body_limit_bytes": MAX_BODY_BYTES,
            "note": "a gzip bomb's body is small and its work bounded by the limit it "
            "decompresses to, so per MB sent it is the costliest shape by construction",
        },
    )
