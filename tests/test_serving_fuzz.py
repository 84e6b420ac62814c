"""10,000 generated requests, seeded: none is a 5xx, each is answered in time linear in its size.

Each request is a well-formed one of either protocol, then (most of the time) broken in one
of the ways a fuzzer or an attacker breaks them: bytes flipped or cut, nesting a thousand
levels deep, numbers of thousands of digits, names of a hundred thousand characters,
thousands of tensors or outputs, wrong binary sizes and header lengths, content codings
that lie. The time bound is a complexity check, not a benchmark: each request may take
SLACK times what a well-formed request of its size costs, both measured in this test on
this machine, so a busy or slow machine slows both and only a super-linear path (or a hang)
fails it. Absolute figures are benchmarks/hostile.py's (`hostile_worst_seconds_per_mb`).
"""

from __future__ import annotations

import gzip
import json
import random
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

import msgspec
from chalice.test import Client

from app import app
from shared.serving.inputs import MAX_BODY_BYTES, MAX_ROWS
from shared.store.local import LocalStore

REQUESTS = 10_000
SEED = 20261130
# A request may take this many times the reference cost of a well-formed request of its
# size, per byte; a quadratic path costs hundreds (40,000 tensors: 42 s against 0.1 s).
SLACK = 25
# And this many times a small request's: a tiny request's time is mostly noise (a pause, a
# capture batch written), up to 25 times the median measured with a CPU hog beside it.
FIXED_SLACK = 100
CHURN = {"x0": 0.3, "x1": -1.2, "x2": 0.0, "x3": 1.5, "x4": 0.2, "region": "north", "plan": "pro"}
Request = tuple[str, dict[str, str], bytes]
# 20 MB of "[" in 20 KB: past the body limit once inflated (made once: compressing is slow).
BOMB = gzip.compress(b"[" * 20_000_000)


def records(rng: random.Random) -> dict[str, Any]:
    rows = [
        {
            k: (rng.uniform(-5, 5) if not isinstance(v, str) else rng.choice(["north", "x", ""]))
            for k, v in CHURN.items()
        }
        for _ in range(rng.randint(1, 40))
    ]
    return {"id": f"fuzz-{rng.randrange(10**6)}", "records": rows}


def tensors(rng: random.Random) -> dict[str, Any]:
    n = rng.randint(1, 40)
    inputs = [
        {
            "name": k,
            "shape": rng.choice([[n], [n, 1]]),
            "datatype": "BYTES" if isinstance(v, str) else rng.choice(["FP32", "FP64"]),
            "data": [v] * n if isinstance(v, str) else [rng.uniform(-5, 5) for _ in range(n)],
        }
        for k, v in CHURN.items()
    ]
    body: dict[str, Any] = {"inputs": inputs}
    if rng.random() < 0.3:
        body["outputs"] = [{"name": rng.choice(["label", "probabilities"])}]
    if rng.random() < 0.3:
        body["parameters"] = {"binary_data_output": True}
    return body


def deep(rng: random.Random) -> str:
    depth = rng.choice([10, 100, 900, 1500, 5000])
    return "[" * depth + "1" + "]" * depth


def mutate_document(rng: random.Random, document: dict[str, Any]) -> bytes:
    """The document with one hostile change, as JSON text."""
    text = msgspec.json.encode(document).decode()
    choice = rng.randrange(12)
    if choice == 0:
        return text.replace("0.", "1" + "0" * rng.choice([400, 4301, 5000]) + ".", 1).encode()
    if choice == 1:
        return text.replace('"north"', deep(rng), 1).replace("[0.", f"[{deep(rng)}, 0.", 1).encode()
    if choice == 2:
        return text.replace('"x0"', json.dumps("x" * rng.choice([100, 100_000])), 1).encode()
    if choice == 3 and "inputs" in document:
        document["inputs"] = document["inputs"] * rng.choice([2, 100, 5000])
    elif choice == 4 and "inputs" in document:
        document["outputs"] = [{"name": "probabilities"}] * rng.choice([2, 5000])
    elif choice == 5 and "inputs" in document:
        document["inputs"][0]["shape"] = rng.choice(
            [[10**30, 1], [-1], [1] * 10_000, [2**63], [0], [1, 2, 3]]
        )
    elif choice == 6 and "inputs" in document:
        document["inputs"][0]["datatype"] = rng.choice(["INT64", "BOOL", "z" * 10_000, ""])
    elif choice == 7:
        document["parameters"] = json.loads("[" * 500 + "]" * 500)
    elif choice == 8:
        document[rng.choice(["x" * 50_000, "extra"])] = 1
    elif choice == 9 and "records" in document:
        document["records"] = document["records"] * rng.choice([300, 1000])
    elif choice == 10 and "records" in document:
        document["records"][0] = rng.choice([[1] * 10_000, "s" * 10_000, None, {"x0": {}}])
    return msgspec.json.encode(document)


def corrupt_bytes(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data[: rng.randint(0, len(data))] if rng.random() < 0.3 else data)


def binary_request(rng: random.Random) -> Request:
    n = rng.randint(1, 30)
    numeric = b"".join(
        bytes(rng.randrange(256) for _ in range(8 * n)) if rng.random() < 0.2 else b"\0" * 8 * n
        for _ in range(5)
    )
    strings = b"".join((3).to_bytes(4, "little") + b"abc" for _ in range(n))
    inputs = [
        {"name": k, "shape": [n], "datatype": "FP64", "parameters": {"binary_data_size": 8 * n}}
        for k in ("x0", "x1", "x2", "x3", "x4")
    ] + [
        {
            "name": k,
            "shape": [n],
            "datatype": "BYTES",
            "parameters": {"binary_data_size": len(strings)},
        }
        for k in ("region", "plan")
    ]
    header = msgspec.json.encode({"inputs": inputs})
    length = rng.choice(
        [str(len(header))] * 6 + ["0", "-1", "9" * 4301, str(len(header) + 7), "x", "1e3"]
    )
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": length,
        "Accept": rng.choice(["application/octet-stream", "*/*", ""]),
    }
    return "/v2/models/churn/infer", headers, header + numeric + strings + strings


def encode(rng: random.Random, request: Request) -> Request:
    path, headers, body = request
    coding = rng.choice(["gzip", "deflate", "br", "gzip"])
    packed = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    if rng.random() < 0.3:
        packed = corrupt_bytes(rng, packed)
    if rng.random() < 0.1:
        packed = BOMB
    return path, {**headers, "Content-Encoding": coding}, packed


def generate(rng: random.Random) -> Request:
    kind = rng.random()
    if kind < 0.15:
        request = binary_request(rng)
    else:
        v2 = kind < 0.6
        document = tensors(rng) if v2 else records(rng)
        version = rng.choice(
            [
                "",
                "",
                "",
                "/versions/1",
                "/versions/latest",
                "/versions/9",
                "/versions/" + "7" * 4301,
                "/versions/%C2%B2",
            ]
        )
        path = f"/v2/models/churn{version}/infer" if v2 else f"/models/churn{version}/predict"
        roll = rng.random()
        if roll < 0.25:
            body = msgspec.json.encode(document)
        elif roll < 0.8:
            body = mutate_document(rng, document)
        else:
            body = corrupt_bytes(rng, msgspec.json.encode(document))
        request = (path, {"Content-Type": "application/json"}, body)
    if rng.random() < 0.1:
        request = encode(rng, request)
    return request


def timed(send: Callable[..., Any], request: Request) -> tuple[float, Any]:
    path, headers, body = request
    start = time.perf_counter()
    response = send(path, headers=headers, body=body)
    return time.perf_counter() - start, response


def reference_costs(send: Callable[..., Any]) -> tuple[float, float]:
    """(seconds per request, seconds per byte) of well-formed requests, on this machine now.

    Per request, the median of small ones: their cost is mostly the interpreter's, pauses
    included. Per byte, the least of several large ones: what the work costs.
    """
    headers = {"Content-Type": "application/json"}
    small = msgspec.json.encode({"records": [CHURN]})
    big = msgspec.json.encode({"records": [CHURN] * MAX_ROWS})
    fixed = statistics.median(
        timed(send, ("/models/churn/predict", headers, small))[0] for _ in range(31)
    )
    large = min(timed(send, ("/models/churn/predict", headers, big))[0] for _ in range(5))
    return fixed, max(large - fixed, 0.0) / len(big)


def work_size(request: Request) -> int:
    """The bytes a request makes the server read: a compressed body's inflated size, at most."""
    _, headers, body = request
    return MAX_BODY_BYTES if "Content-Encoding" in headers else len(body)


def test_ten_thousand_generated_requests(served: LocalStore) -> None:
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    worst: tuple[float, str] = (0.0, "")
    send: Callable[..., Any]
    with Client(app) as client:
        send = client.http.post
        fixed, per_byte = reference_costs(send)
        started = time.perf_counter()
        for i in range(REQUESTS):
            request = generate(rng)
            path, headers, body = request
            elapsed, response = timed(send, request)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            where = f"request {i}: {path[:80]} {len(body)} bytes {headers}"
            assert response.status_code < 500, f"{where} -> {response.body[:300]!r}"
            assert response.headers.get("Content-Type") in (
                "application/json",
                "application/octet-stream",
            )
            reference = fixed + per_byte * work_size(request)
            bound = FIXED_SLACK * fixed + SLACK * per_byte * work_size(request)
            if elapsed > bound:
                # A busy moment slows one answer; a super-linear path slows every try.
                elapsed = min(elapsed, *(timed(send, request)[0] for _ in range(3)))
            assert elapsed <= bound, (
                f"{where} took {elapsed:.3f} s, {elapsed / reference:.0f} times a well-formed "
                f"request of its size ({reference:.4f} s)"
            )
            worst = max(worst, (elapsed / reference, where))
        total = time.perf_counter() - started
    assert sum(statuses.values()) == REQUESTS
    # Both answers happen: a fuzzer that only ever hits the first check tests nothing.
    assert statuses.get(200, 0) > REQUESTS // 10, statuses
    assert sum(n for code, n in statuses.items() if 400 <= code < 500) > REQUESTS // 2, statuses
    print(
        f"{REQUESTS} requests in {total:.1f} s; statuses {sorted(statuses.items())}; reference "
        f"{fixed * 1e3:.2f} ms + {per_byte * 1e6:.3f} s/MB; worst {worst[0]:.1f} times its "
        f"reference ({worst[1][:120]})"
    )
