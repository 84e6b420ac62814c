"""Hostile input is a 4xx, quickly: each shape here once made a 500, a minute or a 109 MB body."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from app import app
from functions import inference
from shared.serving.cache import ModelCache
from shared.store.base import StoredObject
from shared.store.local import LocalStore

ROW = {"x0": 0.3, "x1": -1.2, "x2": 0.0, "x3": 1.5, "x4": 0.2, "region": "north", "plan": "pro"}
DEEP = b"[" * 1500 + b"]" * 1500
# Errors quote a short piece of the input: a few hundred bytes of message at most.
MAX_ERROR_CHARS = 1000


def v2_inputs(row: dict[str, Any] = ROW) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "shape": [1, 1],
            "datatype": "BYTES" if isinstance(value, str) else "FP64",
            "data": [value],
        }
        for name, value in row.items()
    ]


def post(path: str, body: bytes | dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with Client(app) as client:
        response = client.http.post(
            path, headers={"Content-Type": "application/json", **headers}, body=raw
        )
    assert response.headers.get("Content-Type") == "application/json"
    return response.status_code, json.loads(response.body)


def get(path: str) -> tuple[int, dict[str, Any]]:
    with Client(app) as client:
        response = client.http.get(path)
    return response.status_code, json.loads(response.body)


def nested_v2(place: str) -> bytes:
    """A V2 request with 1,500 levels of arrays at `place`."""
    inputs = json.dumps(v2_inputs()[1:])[1:-1]
    first = '{"name": "x0", "shape": [1, 1], "datatype": "FP64", "data": %s}'
    if place == "data":
        return f'{{"inputs": [{first % DEEP.decode()}, {inputs}]}}'.encode()
    if place == "parameters":
        body = (
            f'{{"inputs": [{first % "[0.3]"}, {inputs}], "parameters": {{"p": {DEEP.decode()}}}}}'
        )
        return body.encode()
    return f'{{"inputs": [{first % "[0.3]"}, {inputs}], "outputs": {DEEP.decode()}}}'.encode()


TOO_DEEP = "nests arrays or objects too deeply"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/models/churn/predict", DEEP, TOO_DEEP),
        ("/models/churn/predict", b'{"records": [{"x0": ' + DEEP + b"}]}", TOO_DEEP),
        ("/v2/models/churn/infer", nested_v2("data"), TOO_DEEP),
        ("/v2/models/churn/infer", nested_v2("parameters"), TOO_DEEP),
        # Where the request's schema wants an object, msgspec stops at the first array.
        ("/v2/models/churn/infer", b'{"inputs": ' + DEEP + b"}", "Expected `object`"),
        ("/v2/models/churn/infer", nested_v2("outputs"), "Expected `object`"),
    ],
)
def test_deep_nesting_is_a_400(served: LocalStore, path: str, body: bytes, message: str) -> None:
    status, got = post(path, body)
    assert status == 400, got
    assert message in got["error"]
    assert len(got["error"]) < MAX_ERROR_CHARS


def test_nesting_just_below_the_recursion_limit_is_a_400_too(served: LocalStore) -> None:
    deep = json.loads("[" * 500 + "0.3" + "]" * 500)
    records = {"records": [{**ROW, "x0": deep}]}
    tensors = {"inputs": [{**v2_inputs()[0], "data": deep}, *v2_inputs()[1:]]}
    assert post("/models/churn/predict", records)[0] == 400
    assert post("/v2/models/churn/infer", tensors)[0] == 400


HUGE_VERSION = "1" * 4301


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/v2/models/churn/versions/{HUGE_VERSION}"),
        ("get", f"/v2/models/churn/versions/{HUGE_VERSION}/ready"),
        ("post", f"/v2/models/churn/versions/{HUGE_VERSION}/infer"),
        ("post", f"/models/churn/versions/{HUGE_VERSION}/predict"),
        ("post", f"/models/churn/versions/{'x' * 100_000}/predict"),
    ],
)
def test_a_version_of_4301_digits_is_a_404(served: LocalStore, method: str, path: str) -> None:
    if method == "get":
        status, got = get(path)
    else:
        body = {"inputs": v2_inputs()} if "/v2/" in path else {"records": [ROW]}
        status, got = post(path, body)
    assert status == 404, got
    assert "has no version or alias" in got["error"]
    assert len(got["error"]) < MAX_ERROR_CHARS


def test_an_inference_header_length_of_4301_digits_is_a_400(served: LocalStore) -> None:
    status, got = post(
        "/v2/models/churn/infer",
        {"inputs": v2_inputs()},
        **{
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": "9" * 4301,
        },
    )
    assert status == 400
    assert "Inference-Header-Content-Length" in got["error"]
    assert len(got["error"]) < MAX_ERROR_CHARS


def test_forty_thousand_input_tensors_take_linear_time(served: LocalStore) -> None:
    def fastest(tensors: list[dict[str, object]], message: str) -> float:
        # The fastest of three: a busy moment slows one request, a slow path all three.
        times = []
        for _ in range(3):
            start = time.perf_counter()
            status, got = post("/v2/models/churn/infer", {"inputs": tensors})
            times.append(time.perf_counter() - start)
            assert status == 400
            assert message in got["error"]
            assert len(got["error"]) < MAX_ERROR_CHARS
        return min(times)

    for many in (False, True):
        sizes = {}
        for count in (10_000, 40_000):
            if many:
                tensors = v2_inputs() + [v2_inputs()[0]] * count
                message = "duplicate inputs ['x0']"
            else:
                tensors = [{**v2_inputs()[0], "name": f"t{i}"} for i in range(count)]
                message = "unknown inputs"
            sizes[count] = fastest(tensors, message)
        # Four times the tensors: linear work takes about 4x, quadratic 16x (it once took
        # 42 to 55 s). Compared within this run, so a slow machine slows both alike.
        assert sizes[40_000] < 8 * sizes[10_000], sizes


def test_repeated_outputs_are_refused_not_repeated(served: LocalStore) -> None:
    outputs = [{"name": "probabilities"}] * 5000
    status, got = post("/v2/models/churn/infer", {"inputs": v2_inputs(), "outputs": outputs})
    assert status == 400
    assert got["error"] == "duplicate outputs ['probabilities']: ask for each output once"


LONG = "n" * 100_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v2/models/churn/infer",
            {"inputs": [{**t, "name": f"{LONG}{i}"} for i, t in enumerate(v2_inputs())]},
        ),
        (
            "/v2/models/churn/infer",
            {"inputs": [{**v2_inputs()[0], "datatype": LONG}, *v2_inputs()[1:]]},
        ),
        (
            "/v2/models/churn/infer",
            {"inputs": [{**v2_inputs()[0], "shape": [1] * 100_000}, *v2_inputs()[1:]]},
        ),
        (
            "/v2/models/churn/infer",
            {"inputs": [{**v2_inputs()[0], "shape": [10**4000, 1]}, *v2_inputs()[1:]]},
        ),
        (
            "/v2/models/churn/infer",
            {"inputs": [{**v2_inputs()[0], "data": [LONG]}, *v2_inputs()[1:]]},
        ),
        (
            "/v2/models/churn/infer",
            {"inputs": [{**v2_inputs()[0], "data": [[LONG] * 10]}, *v2_inputs()[1:]]},
        ),
        (
            "/v2/models/churn/infer",
            {
                "inputs": [
                    *v2_inputs()[:5],
                    {**v2_inputs()[5], "data": [[7] * 100_000]},
                    v2_inputs()[6],
                ]
            },
        ),
        ("/v2/models/churn/infer", {"inputs": v2_inputs(), "outputs": [{"name": LONG}]}),
        ("/v2/models/churn/infer", {"inputs": v2_inputs(), LONG: 1}),
        ("/models/churn/predict", {"records": [{**ROW, "x0": LONG}]}),
        ("/models/churn/predict", {"records": [{**ROW, "x0": list(range(100_000))}]}),
        ("/models/churn/predict", {"records": [{**ROW, "region": {LONG: 1}}]}),
        ("/models/churn/predict", {"records": [list(range(100_000))]}),
        ("/models/churn/predict", {"records": [ROW], **{f"{LONG}{i}": 1 for i in range(20)}}),
        ("/models/churn/predict", {"records": [{**ROW, **{f"{LONG}{i}": 1 for i in range(20)}}]}),
        (f"/models/{LONG}/predict", {"records": [ROW]}),
    ],
)
def test_errors_quote_only_a_short_piece_of_the_input(
    served: LocalStore, path: str, body: dict[str, Any]
) -> None:
    status, got = post(path, body)
    assert status == 400, got
    assert len(got["error"]) < MAX_ERROR_CHARS, got["error"][:300]


def test_unknown_model_names_are_remembered_in_a_bounded_cache(tmp_path: Path) -> None:
    reads: list[str] = []

    class CountingStore(LocalStore):
        def get(self, key: str, *, version_id: str | None = None) -> StoredObject:
            reads.append(key)
            return super().get(key, version_id=version_id)

    inference.reset_cache(ModelCache(CountingStore(tmp_path / "store"), max_records=2))
    try:
        for name in ("ghost-a", "ghost-b", "ghost-c"):
            assert post(f"/models/{name}/predict", {"records": [ROW]})[0] == 404
        before = len(reads)
        assert post("/models/ghost-c/predict", {"records": [ROW]})[0] == 404
        assert len(reads) == before  # remembered
        assert post("/models/ghost-a/predict", {"records": [ROW]})[0] == 404
        assert len(reads) > before  # forgotten: the least recently asked for of three
    finally:
        inference.reset_cache()
