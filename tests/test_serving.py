"""Predictions over HTTP: both protocols, through Chalice's test client, S3 under moto."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from chalice.test import Client
from moto import mock_aws

import shared.serving.inputs
from app import DATA_BUCKET, app
from functions import inference
from shared.registry.audit import read_trail
from shared.registry.registry import ModelRegistry
from shared.serving.cache import ModelCache
from shared.serving.runtime import sha256_hex
from shared.store.s3 import S3Store
from shared.training.job import train_from_dataset
from tests.factories import classification_csv, numeric_csv, regression_csv

ROW = {"x0": 0.3, "x1": -1.2, "x2": 0.0, "x3": 1.5, "x4": 0.2, "region": "north", "plan": "pro"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(aws_env: None) -> Iterator[S3Store]:
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=DATA_BUCKET)
        yield S3Store(DATA_BUCKET)


@pytest.fixture
def clock(store: S3Store) -> Iterator[FakeClock]:
    fake = FakeClock()
    inference.reset_cache(ModelCache(store, alias_ttl=10.0, clock=fake))
    yield fake
    inference.reset_cache()


def upload_and_train(store: S3Store, model: str, body: bytes, name: str = "data.csv") -> int:
    key = f"datasets/{model}/{name}"
    store.put(key, body)
    outcome = train_from_dataset(store, key, trigger="test")
    assert outcome.status == "registered", outcome.reason
    assert outcome.version is not None
    return outcome.version


@pytest.fixture
def churn(store: S3Store, clock: FakeClock) -> S3Store:
    upload_and_train(store, "churn", classification_csv())
    return store


def post(client: Client, path: str, body: Any, **headers: str) -> tuple[int, dict[str, Any], Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.http.post(
        path, headers={"Content-Type": "application/json", **headers}, body=raw
    )
    return response.status_code, json.loads(response.body), response.headers


def get(client: Client, path: str) -> tuple[int, dict[str, Any]]:
    response = client.http.get(path)
    return response.status_code, json.loads(response.body)


def test_records_in_predictions_and_probabilities_out(churn: S3Store) -> None:
    with Client(app) as client:
        status, body, headers = post(
            client, "/models/churn/predict", {"id": "req-1", "records": [ROW, {**ROW, "x0": None}]}
        )
    assert status == 200, body
    assert (body["model"], body["version"], body["id"]) == ("churn", 1, "req-1")
    assert headers["x-request-id"] == "req-1"
    assert len(body["predictions"]) == 2
    assert set(body["predictions"]) <= {"no", "yes"}
    for probs in body["probabilities"]:
        assert set(probs) == {"no", "yes"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_a_request_without_id_gets_one(churn: S3Store) -> None:
    with Client(app) as client:
        _, first, _ = post(client, "/models/churn/predict", {"records": [ROW]})
        _, second, _ = post(client, "/models/churn/predict", {"records": [ROW]})
        _, from_header, _ = post(
            client, "/models/churn/predict", {"records": [ROW]}, **{"X-Request-Id": "abc-9"}
        )
    assert len(first["id"]) == 32
    assert first["id"] != second["id"]
    assert from_header["id"] == "abc-9"


def v2_inputs(row: dict[str, Any], n: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "shape": [n, 1],
            "datatype": "BYTES" if isinstance(value, str) else "FP64",
            "data": [value] * n,
        }
        for name, value in row.items()
    ]


def test_open_inference_protocol_one_tensor_per_feature(churn: S3Store) -> None:
    with Client(app) as client:
        status, body, _ = post(
            client, "/v2/models/churn/infer", {"id": "42", "inputs": v2_inputs(ROW, 3)}
        )
        _, records, _ = post(client, "/models/churn/predict", {"records": [ROW]})
    assert status == 200, body
    assert (body["model_name"], body["model_version"], body["id"]) == ("churn", "1", "42")
    assert body["parameters"] == {"classes": ["no", "yes"]}
    label, probabilities = body["outputs"]
    assert label == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [3],
        "data": [records["predictions"][0]] * 3,
    }
    assert probabilities["name"] == "probabilities"
    assert probabilities["shape"] == [3, 2]
    assert probabilities["data"][:2] == pytest.approx(
        [records["probabilities"][0]["no"], records["probabilities"][0]["yes"]]
    )


def test_open_inference_protocol_output_selection_and_flat_shapes(churn: S3Store) -> None:
    inputs = v2_inputs(ROW, 2)
    for tensor in inputs:
        tensor["shape"] = [2]
    with Client(app) as client:
        status, body, _ = post(
            client,
            "/v2/models/churn/versions/1/infer",
            {"inputs": inputs, "outputs": [{"name": "probabilities"}]},
        )
    assert status == 200, body
    assert [o["name"] for o in body["outputs"]] == ["probabilities"]
    assert len(body["id"]) == 32


def test_single_2d_tensor_for_an_all_numeric_model(store: S3Store, clock: FakeClock) -> None:
    upload_and_train(store, "numbers", numeric_csv())
    with Client(app) as client:
        status, body, _ = post(
            client,
            "/v2/models/numbers/infer",
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [2, 4],
                        "datatype": "FP32",
                        "data": [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]],
                    }
                ]
            },
        )
    assert status == 200, body
    label = body["outputs"][0]
    assert label["datatype"] == "INT64"
    assert label["shape"] == [2]
    assert set(label["data"]) <= {0, 1}


def test_regression_returns_values(store: S3Store, clock: FakeClock) -> None:
    upload_and_train(store, "price", regression_csv())
    with Client(app) as client:
        _, records, _ = post(client, "/models/price/predict", {"records": [ROW]})
        _, v2, _ = post(client, "/v2/models/price/infer", {"inputs": v2_inputs(ROW)})
    assert isinstance(records["predictions"][0], float)
    assert "probabilities" not in records
    assert v2["outputs"][0]["name"] == "prediction"
    assert v2["outputs"][0]["data"][0] == pytest.approx(records["predictions"][0], rel=1e-6)


def test_metadata_ready_and_health(churn: S3Store) -> None:
    with Client(app) as client:
        assert get(client, "/v2/health/live") == (200, {"live": True})
        assert get(client, "/v2/health/ready") == (200, {"ready": True})
        status, server = get(client, "/v2")
        assert status == 200
        assert server["name"] == "serverless-mlops"
        status, meta = get(client, "/v2/models/churn")
        assert get(client, "/v2/models/churn/ready") == (200, {"name": "churn", "ready": True})
        assert get(client, "/v2/models/churn/versions/1/ready")[0] == 200
        assert get(client, "/v2/models/churn/versions/7/ready")[0] == 404
    assert status == 200
    assert meta["name"] == "churn"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"][0] == {"name": "x0", "datatype": "FP32", "shape": [-1, 1]}
    assert meta["inputs"][5] == {"name": "region", "datatype": "BYTES", "shape": [-1, 1]}
    assert meta["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
    ]


def test_versions_and_aliases_by_name(churn: S3Store) -> None:
    upload_and_train(churn, "churn", classification_csv(seed=3), name="more.csv")
    with Client(app) as client:
        answered = {
            ref: post(client, f"/models/churn/versions/{ref}/predict", {"records": [ROW]})[1][
                "version"
            ]
            for ref in ("1", "2", "production", "staging", "latest")
        }
        default = post(client, "/models/churn/predict", {"records": [ROW]})[1]["version"]
    assert answered == {"1": 1, "2": 2, "production": 1, "staging": 2, "latest": 2}
    assert default == 1


def test_an_alias_move_is_picked_up_after_the_freshness_window(
    churn: S3Store, clock: FakeClock
) -> None:
    with Client(app) as client:
        assert post(client, "/models/churn/predict", {"records": [ROW]})[1]["version"] == 1
        upload_and_train(churn, "churn", classification_csv(seed=3), name="more.csv")
        ModelRegistry(churn, "churn").set_alias("production", 2, reason="test")
        clock.now += 5
        assert post(client, "/models/churn/predict", {"records": [ROW]})[1]["version"] == 1
        clock.now += 6
        assert post(client, "/models/churn/predict", {"records": [ROW]})[1]["version"] == 2


def test_a_tampered_artifact_is_refused_and_the_previous_version_keeps_serving(
    churn: S3Store, clock: FakeClock
) -> None:
    with Client(app) as client:
        assert post(client, "/models/churn/predict", {"records": [ROW]})[1]["version"] == 1
        upload_and_train(churn, "churn", classification_csv(seed=3), name="more.csv")
        genuine = churn.get("models/churn/versions/1/model.onnx").body
        churn.put("models/churn/versions/2/model.onnx", genuine)  # someone swaps the file
        ModelRegistry(churn, "churn").set_alias("production", 2, reason="test")
        clock.now += 11
        status, body, _ = post(client, "/models/churn/predict", {"records": [ROW]})
        assert (status, body["version"]) == (200, 1)
        status, body, _ = post(client, "/models/churn/versions/2/predict", {"records": [ROW]})
    assert status == 503
    assert "version 2 of 'churn' refused" in body["error"]
    assert "sha256" in body["error"]
    rejected = [e for e in read_trail(churn, "churn") if e.event == "artifact_rejected"]
    assert len(rejected) == 1
    assert rejected[0].details["version"] == 2


def test_a_swapped_pair_of_model_and_metadata_is_refused_by_the_registry_s_hash(
    churn: S3Store,
) -> None:
    # Someone with write access replaces v2's model.onnx AND metadata.json by v1's: the two
    # agree with each other, but not with the sha256 the registry recorded for v2.
    upload_and_train(churn, "churn", classification_csv(seed=3), name="more.csv")
    recorded = ModelRegistry(churn, "churn").load().entry(2).sha256
    for name in ("model.onnx", "metadata.json"):
        churn.put(
            f"models/churn/versions/2/{name}", churn.get(f"models/churn/versions/1/{name}").body
        )
    assert recorded != sha256_hex(churn.get("models/churn/versions/2/model.onnx").body)

    with Client(app) as client:
        status, body, _ = post(client, "/models/churn/versions/2/predict", {"records": [ROW]})

    assert status == 503
    assert f"the registry says {recorded}" in body["error"]


def test_a_version_never_served_is_refused_when_tampered(churn: S3Store) -> None:
    churn.put("models/churn/versions/1/model.onnx", b"not the model")
    with Client(app) as client:
        status, body, _ = post(client, "/models/churn/predict", {"records": [ROW]})
    assert status == 503
    assert "refused" in body["error"]


BAD_RECORDS: list[tuple[Any, int, str]] = [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b'{"records": [{"x0": NaN}]}', 400, "not valid JSON"),
    (b'{"records": [{"x0": Infinity}]}', 400, "not valid JSON"),
    ([ROW], 400, "JSON object"),
    ({"records": []}, 400, "no rows"),
    ({"records": "x"}, 400, "'records' must be a list"),
    ({"rows": [ROW]}, 400, "unknown request fields ['rows']"),
    (
        {"records": [{**ROW, "x0": "1.5"}]},
        400,
        "records[0].x0: expected a number or null, got '1.5'",
    ),
    ({"records": [{**ROW, "x0": True}]}, 400, "records[0].x0: expected a number"),
    ({"records": [{**ROW, "region": 3}]}, 400, "records[0].region: expected a string or null"),
    (
        {"records": [ROW, {k: v for k, v in ROW.items() if k != "plan"}]},
        400,
        "records[1]: missing features ['plan']",
    ),
    ({"records": [{**ROW, "colour": "red"}]}, 400, "unknown features ['colour']"),
    ({"records": [{**ROW, "x0": 1e300}]}, 400, "outside the float32 range"),
    ({"records": [ROW], "id": "bad id!"}, 400, "request id"),
    ({"records": [7]}, 400, "records[0] must be an object"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_RECORDS)
def test_bad_records_get_a_4xx_that_names_the_problem(
    churn: S3Store, body: Any, status: int, message: str
) -> None:
    with Client(app) as client:
        got_status, got, _ = post(client, "/models/churn/predict", body)
    assert got_status == status
    assert message in got["error"]


BAD_V2: list[tuple[Any, str]] = [
    ({"inputs": []}, "'inputs' is empty"),
    ({"inputs": "x"}, "Expected `array`, got `str` - at `$.inputs`"),
    ({"inputs": v2_inputs(ROW), "extra": 1}, "unknown field `extra`"),
    ({"inputs": v2_inputs(ROW)[1:]}, "missing inputs ['x0']"),
    ({"inputs": [*v2_inputs(ROW), v2_inputs(ROW)[0]]}, "duplicate inputs ['x0']"),
    ({"inputs": [*v2_inputs(ROW), {**v2_inputs(ROW)[0], "name": "zz"}]}, "unknown inputs ['zz']"),
    (
        {"inputs": [{**v2_inputs(ROW)[0], "datatype": "BYTES"}, *v2_inputs(ROW)[1:]]},
        "datatype 'BYTES' not accepted for a numeric feature",
    ),
    (
        {
            "inputs": [
                *v2_inputs(ROW)[:5],
                {**v2_inputs(ROW)[5], "datatype": "FP32"},
                v2_inputs(ROW)[6],
            ]
        },
        "categorical feature needs datatype BYTES",
    ),
    (
        {"inputs": [{**v2_inputs(ROW)[0], "shape": [2, 1]}, *v2_inputs(ROW)[1:]]},
        "needs 2 elements, data has 1",
    ),
    (
        {"inputs": [{**v2_inputs(ROW)[0], "shape": [1, 2]}, *v2_inputs(ROW)[1:]]},
        "shape must be [N] or [N, 1]",
    ),
    (
        {
            "inputs": [
                {**v2_inputs(ROW)[0], "datatype": "INT64", "data": [1.5]},
                *v2_inputs(ROW)[1:],
            ]
        },
        "expected an INT64 integer, got 1.5",
    ),
    (
        {"inputs": [{**v2_inputs(ROW)[0], "data": ["1"]}, *v2_inputs(ROW)[1:]]},
        "expected a number, got '1'",
    ),
    (
        {"inputs": [{**v2_inputs(ROW)[0], "data": [None]}, *v2_inputs(ROW)[1:]]},
        "expected a number, got None",
    ),
    ({"inputs": v2_inputs(ROW), "outputs": [{"name": "scores"}]}, "unknown outputs ['scores']"),
    (
        {"inputs": [{**v2_inputs(ROW)[0], "data": [True]}, *v2_inputs(ROW)[1:]]},
        "expected a number, got True",
    ),
    (
        {
            "inputs": [
                {**v2_inputs(ROW)[0], "shape": [2, 1], "data": [[1.0, 2.0]]},
                *v2_inputs(ROW)[1:],
            ]
        },
        "nested data has shape [1, 2], the tensor says [2, 1]",
    ),
    (
        {
            "inputs": [
                {**v2_inputs(ROW)[0], "datatype": "INT32", "data": [2**31]},
                *v2_inputs(ROW)[1:],
            ]
        },
        "overflows INT32",
    ),
    (
        {
            "inputs": [
                {**v2_inputs(ROW)[0], "shape": [2, 1], "data": [[1.0], [2.0, 3.0]]},
                *v2_inputs(ROW)[1:],
            ]
        },
        "ragged",
    ),
    (
        {"inputs": [{"name": "input-0", "shape": [1, 7], "datatype": "FP32", "data": [0] * 7}]},
        "needs an all-numeric model",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_V2)
def test_bad_inference_requests_get_the_protocol_error_body(
    churn: S3Store, body: Any, message: str
) -> None:
    with Client(app) as client:
        status, got, _ = post(client, "/v2/models/churn/infer", body)
    assert status == 400
    assert list(got) == ["error"]
    assert message in got["error"]


def test_limits_on_rows_and_body_size(churn: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared.serving.inputs, "MAX_ROWS", 3)
    monkeypatch.setattr(shared.serving.inputs, "MAX_BODY_BYTES", 2_000)
    with Client(app) as client:
        rows_status, rows, _ = post(client, "/models/churn/predict", {"records": [ROW] * 4})
        size_status, size, _ = post(client, "/v2/models/churn/infer", b" " * 2_001)
    assert (rows_status, size_status) == (413, 413)
    assert "4 rows in one request; the limit is 3" in rows["error"]
    assert "2001 bytes; the limit is 2000" in size["error"]


def test_unknown_models_versions_and_failed_trainings_are_404s(churn: S3Store) -> None:
    churn.put("datasets/broken/data.csv", b"a,b\n1,2\n")
    train_from_dataset(churn, "datasets/broken/data.csv", trigger="test")
    with Client(app) as client:
        cases = {
            "/models/ghost/predict": "no model named 'ghost'",
            "/models/churn/versions/9/predict": "no version 9",
            "/models/churn/versions/canary/predict": "no version or alias 'canary'",
            "/models/churn/versions/staging/predict": "no 'staging' version yet",
            "/models/broken/predict": "its last training (datasets/broken/data.csv) failed",
        }
        for path, message in cases.items():
            status, body, _ = post(client, path, {"records": [ROW]})
            assert status == 404, path
            assert message in body["error"]
        status, body = get(client, "/v2/models/ghost")
        assert status == 404
        assert "ghost" in body["error"]
        status, body, _ = post(client, "/models/Bad..Name/predict", {"records": [ROW]})
        assert status == 400
        assert "model name" in body["error"]


def test_warm_requests_read_the_store_once_per_freshness_window(
    churn: S3Store, clock: FakeClock
) -> None:
    calls: list[str] = []
    client_s3 = churn.client
    client_s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    with Client(app) as client:
        post(client, "/models/churn/predict", {"records": [ROW]})
        cold = len(calls)
        for _ in range(20):
            post(client, "/models/churn/predict", {"records": [ROW]})
        warm = len(calls) - cold
        clock.now += 11
        post(client, "/models/churn/predict", {"records": [ROW]})
    assert cold == 4  # registry, metadata, artifact, spec (capture settings)
    assert warm == 0
    assert calls[-1] == "GetObject"
    assert len(calls) == cold + 1


def binary_post(
    client: Client, path: str, header: dict[str, Any], binary: bytes
) -> tuple[int, dict[str, Any], bytes]:
    """A request in the binary tensor data extension; returns (status, JSON part, binary part)."""
    json_part = json.dumps(header).encode()
    response = client.http.post(
        path,
        headers={
            "Content-Type": "application/octet-stream",
            "Accept": "application/octet-stream, application/json",
            "Inference-Header-Content-Length": str(len(json_part)),
        },
        body=json_part + binary,
    )
    body = response.body
    headers = {k.lower(): v for k, v in response.headers.items()}
    length = headers.get("inference-header-content-length")
    if length is None:
        return response.status_code, json.loads(body), b""
    return response.status_code, json.loads(body[: int(length)]), body[int(length) :]


def test_binary_tensors_in_and_out(store: S3Store, clock: FakeClock) -> None:
    upload_and_train(store, "numbers", numeric_csv())
    rows = np.array([[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4], [np.nan, 0.5, -1, 2]], dtype=np.float32)
    header = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [3, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": rows.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    with Client(app) as client:
        status, meta, binary = binary_post(
            client, "/v2/models/numbers/infer", header, rows.tobytes()
        )
        _, records, _ = post(
            client,
            "/models/numbers/predict",
            {
                "records": [
                    dict(zip("abcd", [None if np.isnan(v) else float(v) for v in row], strict=True))
                    for row in rows
                ]
            },
        )
        _, server = get(client, "/v2")
    assert status == 200, meta
    label, probabilities = meta["outputs"]
    assert label["datatype"] == "INT64"
    assert probabilities["parameters"]["binary_data_size"] == 3 * 2 * 4
    labels = np.frombuffer(binary[: label["parameters"]["binary_data_size"]], dtype="<i8")
    probs = np.frombuffer(binary[label["parameters"]["binary_data_size"] :], dtype="<f4")
    assert labels.tolist() == records["predictions"]
    expected = [p for row in records["probabilities"] for p in row.values()]
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    assert "binary_tensor_data" in server["extensions"]


def test_binary_tensors_per_feature_with_strings(churn: S3Store) -> None:
    numeric = {k: v for k, v in ROW.items() if not isinstance(v, str)}
    chunks = [np.array([v, v], dtype="<f8").tobytes() for v in numeric.values()]
    strings = [
        b"".join(
            struct.pack("<I", len(s)) + s for s in (str(ROW[k]).encode(), str(ROW[k]).encode())
        )
        for k in ("region", "plan")
    ]
    inputs = [
        {"name": k, "shape": [2, 1], "datatype": "FP64", "parameters": {"binary_data_size": 16}}
        for k in numeric
    ] + [
        {"name": k, "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(c)}}
        for k, c in zip(("region", "plan"), strings, strict=True)
    ]
    with Client(app) as client:
        status, meta, binary = binary_post(
            client, "/v2/models/churn/infer", {"inputs": inputs}, b"".join(chunks + strings)
        )
        _, records, _ = post(client, "/models/churn/predict", {"records": [ROW]})
    assert status == 200, meta
    assert binary == b""  # outputs as JSON unless asked for as binary
    assert meta["outputs"][0]["data"] == [records["predictions"][0]] * 2


@pytest.mark.parametrize(
    ("inputs", "binary", "length", "message"),
    [
        (
            [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ],
            b"\x00" * 12,
            None,
            "binary_data_size 16 is more than the 12 bytes the body carries",
        ),
        (
            [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 12},
                }
            ],
            b"\x00" * 12,
            None,
            "needs 16 bytes",
        ),
        (
            [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "data": [1, 2, 3, 4],
                    "parameters": {"binary_data_size": 16},
                }
            ],
            b"\x00" * 16,
            None,
            "both data and binary_data_size",
        ),
        (
            [{"name": "input-0", "shape": [1, 4], "datatype": "FP32"}],
            b"",
            None,
            "neither data nor binary_data_size",
        ),
        (
            [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ],
            np.array([1, np.inf, 0, 0], dtype=np.float32).tobytes(),
            None,
            "outside the float32",
        ),
        (
            [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ],
            b"\x00" * 16,
            "999999",
            "Inference-Header-Content-Length '999999'",
        ),
    ],
)
def test_bad_binary_requests_are_400s(
    store: S3Store,
    clock: FakeClock,
    inputs: list[dict[str, Any]],
    binary: bytes,
    length: str | None,
    message: str,
) -> None:
    upload_and_train(store, "numbers", numeric_csv())
    json_part = json.dumps({"inputs": inputs}).encode()
    with Client(app) as client:
        response = client.http.post(
            "/v2/models/numbers/infer",
            headers={
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": length or str(len(json_part)),
            },
            body=json_part + binary,
        )
    assert response.status_code == 400
    assert message in json.loads(response.body)["error"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/models/churn/versions/%C2%B2/predict", {"records": [ROW]}, 404, "no version or alias"),
        ("/models/churn/predict", b'{"records": [{"x0": "\xff"}]}', 400, "not valid JSON"),
        ("/v2/models/churn/infer", b'{"inputs": [{"name": "\xff"}]}', 400, "not valid JSON"),
        (
            "/models/churn/predict",
            json.dumps({"records": [{**ROW, "x0": 7}]})
            .replace('"x0": 7', '"x0": 1' + "0" * 400)
            .encode(),
            400,
            "float32 range",
        ),
    ],
)
def test_odd_requests_are_client_errors_not_500s(
    churn: S3Store, path: str, body: Any, status: int, message: str
) -> None:
    with Client(app) as client:
        got_status, got, _ = post(client, path, body)
    assert got_status == status
    assert message in got["error"]


def test_an_invalid_request_id_is_refused_and_not_echoed(churn: S3Store) -> None:
    with Client(app) as client:
        status, body, headers = post(
            client, "/models/churn/predict", {"records": [ROW]}, **{"X-Request-Id": "bad id!"}
        )
    assert status == 400
    assert "request id" in body["error"]
    assert "x-request-id" not in {k.lower() for k in headers}


def test_an_unknown_model_is_looked_up_once_per_freshness_window(
    churn: S3Store, clock: FakeClock
) -> None:
    calls: list[str] = []
    churn.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    with Client(app) as client:
        for _ in range(5):
            assert post(client, "/models/ghost/predict", {"records": [ROW]})[0] == 404
        first = len(calls)
        upload_and_train(churn, "ghost", classification_csv())
        calls.clear()
        clock.now += 11
        assert post(client, "/models/ghost/predict", {"records": [ROW]})[0] == 200
    assert first == 2  # the registry, and the audit trail that explains its absence
