"""Real clients, unchanged: tritonclient's default call, compression, and every error as JSON.

tritonclient.http is not installed here (it needs gevent and pins greenlet below what this
environment uses), so `triton_default_request` sends the exact bytes its `infer()` sends by
default (tritonclient/http/_utils.py `_get_inference_request`, _client.py `infer`; 2.73),
over real HTTP with http.client, and `read_like_triton` reads the answer as its InferResult
does: the Inference-Header-Content-Length header alone says whether a binary part follows.
"""

from __future__ import annotations

import gzip
import http.client
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from chalice.test import Client

from app import app
from functions.local_server import MIN_COMPRESSION_BYTES, running_server
from shared.store.local import LocalStore

ROWS = np.array([[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4], [np.nan, 0.5, -1, 2]], dtype=np.float32)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(served: LocalStore) -> Iterator[str]:
    with running_server() as base:
        yield base


def triton_default_request(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """What `client.infer("numbers", [InferInput("input-0", ...)])` sends by default."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    # No Content-Type, no Accept: geventhttpclient adds only Host, User-Agent, Content-Length.
    headers = {
        "Inference-Header-Content-Length": str(len(header)),
        "User-Agent": "python/gevent-http-client-2.6.1",
    }
    return header.encode() + rows.tobytes(), headers


def http_post(
    base: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def read_like_triton(headers: dict[str, str], body: bytes) -> dict[str, np.ndarray]:
    """Outputs by name, read as tritonclient's InferResult and as_numpy read them."""
    lowered = {k.lower(): v for k, v in headers.items()}
    coding = lowered.get("content-encoding")
    if coding == "gzip":
        body = gzip.decompress(body)
    elif coding == "deflate":
        body = zlib.decompress(body)
    length = lowered.get("inference-header-content-length")
    result = json.loads(body if length is None else body[: int(length)])
    binary = b"" if length is None else body[int(length) :]
    outputs: dict[str, np.ndarray] = {}
    offset = 0
    for output in result["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        dtype = {"FP32": "<f4", "INT64": "<i8"}[output["datatype"]]
        if size is None:
            outputs[output["name"]] = np.array(output["data"], dtype=dtype).reshape(output["shape"])
        else:
            raw = binary[offset : offset + size]
            outputs[output["name"]] = np.frombuffer(raw, dtype=dtype).reshape(output["shape"])
            offset += size
    return outputs


def expected_outputs(base: str) -> dict[str, np.ndarray]:
    records = [
        dict(zip("abcd", [None if np.isnan(v) else float(v) for v in row], strict=True))
        for row in ROWS
    ]
    status, _, body = http_post(
        base,
        "/models/numbers/predict",
        json.dumps({"records": records}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    answer = json.loads(body)
    probabilities = [list(p.values()) for p in answer["probabilities"]]
    return {"label": np.array(answer["predictions"]), "probabilities": np.array(probabilities)}


def test_tritonclient_default_call_works_over_http(url: str) -> None:
    body, headers = triton_default_request(ROWS)
    status, got_headers, got = http_post(url, "/v2/models/numbers/infer", body, headers)
    assert status == 200, got
    # No Accept header: a binary body could not reach this client through API Gateway, so
    # the outputs come as JSON data, and no Inference-Header-Content-Length says so.
    assert "inference-header-content-length" not in {k.lower() for k in got_headers}
    outputs = read_like_triton(got_headers, got)
    expected = expected_outputs(url)
    assert outputs["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)


def test_binary_outputs_when_the_client_accepts_them(url: str) -> None:
    body, headers = triton_default_request(ROWS)
    status, got_headers, got = http_post(
        url, "/v2/models/numbers/infer", body, {**headers, "Accept": "application/octet-stream"}
    )
    assert status == 200
    assert got_headers["Content-Type"] == "application/octet-stream"
    length = int(got_headers["Inference-Header-Content-Length"])
    meta = json.loads(got[:length])
    assert [o["parameters"]["binary_data_size"] for o in meta["outputs"]] == [3 * 8, 3 * 2 * 4]
    outputs = read_like_triton(got_headers, got)
    expected = expected_outputs(url)
    assert outputs["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)


@pytest.mark.parametrize(
    ("accept", "binary"),
    [
        ("application/octet-stream, application/json", True),
        ("application/json, application/octet-stream", False),  # API Gateway reads the first
        ("*/*", False),
        ("", False),
    ],
)
def test_binary_outputs_follow_the_first_accepted_type(
    served: LocalStore, accept: str, binary: bool
) -> None:
    body, headers = triton_default_request(ROWS)
    with Client(app) as client:
        response = client.http.post(
            "/v2/models/numbers/infer",
            headers={**headers, "Content-Type": "application/octet-stream", "Accept": accept},
            body=body,
        )
    assert response.status_code == 200
    assert ("Inference-Header-Content-Length" in response.headers) is binary


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_requests_and_responses_over_http(url: str, coding: str) -> None:
    body, headers = triton_default_request(np.repeat(ROWS, 100, axis=0))
    packed = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    status, got_headers, got = http_post(
        url,
        "/v2/models/numbers/infer",
        packed,
        {**headers, "Content-Encoding": coding, "Accept-Encoding": coding},
    )
    assert status == 200
    assert got_headers["Content-Encoding"] == coding
    outputs = read_like_triton(got_headers, got)
    assert outputs["label"].shape == (300,)
    # A small body is sent as it is, as API Gateway's MinimumCompressionSize does.
    status, small_headers, small = http_post(
        url, "/v2/models/numbers/infer", packed[:10], {**headers, "Accept-Encoding": coding}
    )
    assert status == 400
    assert len(small) < MIN_COMPRESSION_BYTES
    assert "Content-Encoding" not in small_headers


def test_a_zip_bomb_costs_the_body_limit_not_its_size(served: LocalStore) -> None:
    def fastest(bomb: bytes) -> float:
        times = []
        with Client(app) as client:
            for _ in range(3):
                start = time.perf_counter()
                response = client.http.post(
                    "/models/churn/predict",
                    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
                    body=bomb,
                )
                times.append(time.perf_counter() - start)
                assert response.status_code == 413
                assert (
                    "decompresses to more than 6000000 bytes" in json.loads(response.body)["error"]
                )
        return min(times)

    small = fastest(gzip.compress(b" " * 100_000_000))  # about 100 KB compressed
    large = fastest(gzip.compress(b" " * 1_000_000_000))  # about 1 MB compressed
    # Ten times the bomb: inflating all of it would take ten times as long (and a
    # gigabyte); stopping at the body limit costs the same. Compared within this run.
    assert large < 3 * small + 0.05, (small, large)


@pytest.mark.parametrize(
    ("coding", "body", "message"),
    [
        ("br", b"{}", "Content-Encoding 'br' is not supported"),
        ("gzip", b"\x1f\x8bnot gzip", "not valid gzip data"),
        ("gzip", gzip.compress(b'{"records": []}')[:-12], "ends inside its gzip stream"),
        ("deflate", zlib.compress(b"{}") * 2, "data after its deflate stream"),
    ],
)
def test_bad_content_codings_are_400s(
    served: LocalStore, coding: str, body: bytes, message: str
) -> None:
    with Client(app) as client:
        response = client.http.post(
            "/models/churn/predict",
            headers={"Content-Type": "application/json", "Content-Encoding": coding},
            body=body,
        )
    assert response.status_code == 400
    assert message in json.loads(response.body)["error"]


def test_a_body_a_gateway_already_decompressed_is_read_as_it_is(served: LocalStore) -> None:
    with Client(app) as client:
        response = client.http.post(
            "/models/numbers/predict",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            body=json.dumps({"records": [{"a": 1, "b": 2, "c": 3, "d": 4}]}).encode(),
        )
    assert response.status_code == 200


def chalice_error(method: str, path: str, headers: dict[str, str]) -> tuple[int, Any, str]:
    with Client(app) as client:
        response = client.http.request(method, path, headers=headers, body=b"{}")
    return response.status_code, json.loads(response.body), response.headers["Content-Type"]


def test_chalice_refusals_are_the_error_object(served: LocalStore) -> None:
    status, body, content_type = chalice_error(
        "POST", "/v2/models/numbers/infer", {"Content-Type": "text/plain"}
    )
    assert (status, content_type) == (415, "application/json")
    assert list(body) == ["error"]
    assert (
        "Unsupported media type: text/plain; send Content-Type: application/json" in (body["error"])
    )
    status, body, content_type = chalice_error("GET", "/models/numbers/predict", {})
    assert (status, content_type) == (405, "application/json")
    assert body["error"].startswith("Unsupported method: GET")
    status, body, _ = chalice_error(
        "POST", "/v2/models/churn/infer", {"Content-Type": "text/" + "n" * 100_000}
    )
    assert status == 415
    assert len(body["error"]) < 1000


def test_unknown_routes_are_404s_over_http(url: str) -> None:
    status, headers, body = http_post(url, "/v3/nothing", b"{}", {})
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"].startswith("no such route")


def test_the_deployed_api_answers_its_own_errors_in_the_error_object() -> None:
    packaged = REPO / "build" / "cfn" / "sam.json"
    template = json.loads(
        (packaged if packaged.is_file() else REPO / "infra/template.json").read_text()
    )
    api = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert api["x-amazon-apigateway-minimum-compression-size"] == MIN_COMPRESSION_BYTES
    responses = api["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == {"DEFAULT_4XX", "DEFAULT_5XX", "MISSING_AUTHENTICATION_TOKEN"}
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    for response in responses.values():
        assert response["responseParameters"] == {
            "gatewayresponse.header.Content-Type": "'application/json'"
        }
        # $context.error.messageString is the message already quoted as a JSON string.
        template_body = response["responseTemplates"]["application/json"]
        filled = template_body.replace("$context.error.messageString", '"Too Many Requests"')
        assert list(json.loads(filled)) == ["error"]
