"""Protocol edges: numbers at their limits, the classification extension, HTTP as sent.

The first half goes through the serving function in-process; the second over real HTTP on
loopback against the local server `mlops serve` runs, with raw sockets where a client
library would tidy the request up (a non-numeric Content-Length, a repeated header,
non-ASCII header bytes).
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from chalice.test import Client

from app import app
from functions import local_server
from functions.local_server import running_server
from shared.store.local import LocalStore

ROW = {"x0": 0.3, "x1": -1.2, "x2": 0.0, "x3": 1.5, "x4": 0.2, "region": "north", "plan": "pro"}
MAX_ERROR_CHARS = 300
INT64_MAX = 2**63 - 1


def v2_inputs(numeric: str = "FP64", **values: Any) -> list[dict[str, Any]]:
    row = {**ROW, **values}
    return [
        {
            "name": name,
            "shape": [1],
            "datatype": "BYTES" if isinstance(value, str) else numeric,
            "data": [value],
        }
        for name, value in row.items()
    ]


def infer(
    body: bytes | dict[str, Any], **headers: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with Client(app) as client:
        response = client.http.post(
            "/v2/models/churn/infer",
            headers={"Content-Type": "application/json", **headers},
            body=raw,
        )
    return response.status_code, json.loads(response.body), dict(response.headers)


def error_of(body: bytes | dict[str, Any], **headers: str) -> str:
    status, got, _ = infer(body, **headers)
    assert status == 400, got
    message: str = got["error"]
    assert len(message) < MAX_ERROR_CHARS, message
    return message


# -- numbers from a request, bounded before anything formats them ------------------------


def binary_request(*sizes: str) -> bytes:
    inputs = [
        f'{{"name": "x{i}", "shape": [1], "datatype": "FP64", '
        f'"parameters": {{"binary_data_size": {size}}}}}'
        for i, size in enumerate(sizes)
    ]
    return ('{"inputs": [' + ", ".join(inputs) + "]}").encode()


def test_binary_sizes_of_thousands_of_digits_are_400s_quoting_a_short_piece(
    served: LocalStore,
) -> None:
    two = binary_request("9" * 4300, "9" * 4300)  # their sum has 4,301 digits: a 500 before
    message = error_of(two + b"\0" * 8, **{"Inference-Header-Content-Length": str(len(two))})
    assert "binary_data_size <a number of 4300 digits> is more than the 8 bytes" in message
    one = binary_request("9" * 4300)
    message = error_of(one + b"\0" * 8, **{"Inference-Header-Content-Length": str(len(one))})
    assert "input 'x0': binary_data_size <a number of 4300 digits>" in message


def test_int64_is_range_checked_on_the_integer_itself(served: LocalStore) -> None:
    integers = {"x2": 0, "x3": 1, "x4": 0}
    status, got, _ = infer({"inputs": v2_inputs("INT64", x0=INT64_MAX, x1=-(2**63), **integers)})
    assert status == 200, got
    for value in (2**63, -(2**63) - 1, -(2**63) - 1000):
        message = error_of({"inputs": v2_inputs("INT64", x0=value, x1=0, **integers)})
        assert f"input 'x0' element 0: {value} overflows INT64" in message
    status, got, _ = infer({"inputs": v2_inputs("INT32", x0=2**31 - 1, x1=-(2**31), **integers)})
    assert status == 200, got
    assert f"{2**31} overflows INT32" in error_of(
        {"inputs": v2_inputs("INT32", x0=2**31, x1=0, **integers)}
    )
    # Beyond 64 bits msgspec refuses the number itself, without quoting it.
    huge = json.dumps({"inputs": v2_inputs("INT64", x0=12345, x1=0, **integers)}).replace(
        "12345", "7" * 4400
    )
    assert "Integer value out of range - at `$.inputs[0].data[0]`" in error_of(huge.encode())


def test_float32s_maximum_as_numpy_prints_it_is_in_range(served: LocalStore) -> None:
    for datatype in ("FP32", "FP64"):
        status, got, _ = infer({"inputs": v2_inputs(datatype, x0=3.4028235e38, x1=-3.4028235e38)})
        assert status == 200, got
    message = error_of({"inputs": v2_inputs(x0=3.5e38)})
    assert message == "input 'x0' element 0: 3.5e+38 is outside the float32 range the model uses"
    message = error_of({"inputs": v2_inputs(x0=3.4028236e38)})  # rounds to float32's inf
    assert "np." not in message
    assert "3.4028236e+38 is outside" in message


# -- the classification extension --------------------------------------------------------


def test_classification_returns_the_top_classes_as_triton_does(served: LocalStore) -> None:
    with Client(app) as client:
        assert "classification" in json.loads(client.http.get("/v2").body)["extensions"]
    inputs = [{**t, "shape": [2], "data": t["data"] * 2} for t in v2_inputs()]
    status, plain, _ = infer({"inputs": inputs})
    assert status == 200, plain
    classes = plain["parameters"]["classes"]
    probabilities = next(o for o in plain["outputs"] if o["name"] == "probabilities")["data"]
    wanted = [{"name": "probabilities", "parameters": {"classification": 1}}]
    status, got, _ = infer({"inputs": inputs, "outputs": wanted})
    assert status == 200, got
    (top,) = got["outputs"]
    assert top["datatype"] == "BYTES"
    assert top["shape"] == [2, 1]
    value, index, label = top["data"][0].split(":")
    best = max(range(len(classes)), key=lambda i: probabilities[i])
    assert (int(index), label) == (best, classes[best])
    assert float(value) == pytest.approx(probabilities[best], abs=1e-6)
    # More classes than the model has: all of them, most probable first (as Triton does).
    wanted = [{"name": "probabilities", "parameters": {"classification": 99}}]
    status, got, _ = infer({"inputs": inputs, "outputs": wanted})
    assert status == 200, got
    row = [float(text.split(":")[0]) for text in got["outputs"][0]["data"][:2]]
    assert got["outputs"][0]["shape"] == [2, len(classes)]
    assert row == sorted(row, reverse=True)


@pytest.mark.parametrize(
    ("output", "count", "message"),
    [
        ("label", 1, "the classification parameter applies to a classifier's 'probabilities'"),
        ("probabilities", 0, "classification 0 must be a number of classes, 1 or more"),
        ("probabilities", True, "classification True must be a number of classes"),
        ("probabilities", "2", "classification '2' must be a number of classes"),
    ],
)
def test_a_bad_classification_parameter_is_a_400(
    served: LocalStore, output: str, count: object, message: str
) -> None:
    wanted = [{"name": output, "parameters": {"classification": count}}]
    assert message in error_of({"inputs": v2_inputs(), "outputs": wanted})


# -- headers ---------------------------------------------------------------------------


def test_whitespace_around_the_inference_header_length_is_ignored_on_both_sides(
    served: LocalStore,
) -> None:
    header = json.dumps({"inputs": v2_inputs()}).encode()
    for length in (f" {len(header)}", f"{len(header)} ", f"\t{len(header)}\t"):
        status, got, _ = infer(header, **{"Inference-Header-Content-Length": length})
        assert status == 200, (length, got)


def test_q0_for_octet_stream_in_accept_means_json_outputs(served: LocalStore) -> None:
    body = {"inputs": v2_inputs(), "parameters": {"binary_data_output": True}}
    for accept in (
        "application/octet-stream;q=0, application/json",
        "application/octet-stream; q=0.0",
    ):
        status, got, headers = infer(body, Accept=accept)
        assert status == 200
        assert "inference-header-content-length" not in {k.lower() for k in headers}
        assert all("data" in output for output in got["outputs"])
    with Client(app) as client:
        response = client.http.post(
            "/v2/models/churn/infer",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/octet-stream;q=0.5",
            },
            body=json.dumps(body).encode(),
        )
    assert response.headers["Content-Type"] == "application/octet-stream"


# -- over real HTTP ----------------------------------------------------------------------


@pytest.fixture
def address(served: LocalStore) -> Iterator[tuple[str, int]]:
    with running_server() as base:
        parts = urlsplit(base)
        yield parts.hostname or "", parts.port or 0


def exchange(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the first response's status, headers and body (read to its length)."""
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def json_error(address: tuple[str, int], request: bytes, status: int) -> str:
    got_status, headers, body = exchange(address, request)
    assert got_status == status, body[:300]
    assert headers["Content-Type"] == "application/json"
    message: str = json.loads(body)["error"]
    assert len(message) < MAX_ERROR_CHARS
    return message


@pytest.mark.parametrize("length", ["12x", "-1", "1e3", "١٢"])
def test_a_non_numeric_content_length_is_a_json_400(address: tuple[str, int], length: str) -> None:
    request = (
        f"POST /models/churn/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
        "Content-Type: application/json\r\n\r\n{}"
    ).encode()
    message = json_error(address, request, 400)
    assert message == f"Content-Length {length!r} must be a number of bytes"


def test_a_repeated_header_is_refused_not_its_first_value_used(address: tuple[str, int]) -> None:
    body = json.dumps({"inputs": v2_inputs()}).encode()
    request = (
        b"POST /v2/models/churn/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nInference-Header-Content-Length: %d\r\n"
        b"Inference-Header-Content-Length: 7\r\n\r\n" % (len(body), len(body))
    ) + body
    message = json_error(address, request, 400)
    assert message.startswith(f"Inference-Header-Content-Length '{len(body)}, 7' must be")
    request = (
        b"POST /models/churn/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}"
    )
    assert "Content-Length is repeated with different values ['2', '3']" in json_error(
        address, request, 400
    )


def test_non_ascii_header_values_are_quoted_as_sent(address: tuple[str, int]) -> None:
    body = json.dumps({"inputs": v2_inputs()}).encode()
    request = (
        b"POST /v2/models/churn/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nInference-Header-Content-Length: %s\r\n\r\n"
        % (len(body), "١٢ é".encode())
    ) + body
    message = json_error(address, request, 400)
    assert message.startswith("Inference-Header-Content-Length '١٢ é' must be")


@pytest.mark.parametrize("method", ["TRACE", "FOO", "CONNECT"])
def test_unknown_methods_get_the_json_error(address: tuple[str, int], method: str) -> None:
    request = f"{method} /v2 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    message = json_error(address, request, 501)
    assert (
        message
        == f"method {method!r} is not supported; the API takes GET and POST (see the README)"
    )


def test_a_head_answer_has_no_body_and_keeps_the_connection_usable(
    address: tuple[str, int],
) -> None:
    connection = http.client.HTTPConnection(*address, timeout=30)
    try:
        for _ in range(3):
            connection.request("HEAD", "/v2/health/live")
            head = connection.getresponse()
            assert head.read() == b""
            connection.request("GET", "/v2/health/live")
            answer = connection.getresponse()
            assert answer.status == 200
            assert json.loads(answer.read()) == {"live": True}
    finally:
        connection.close()


AIOHTTP_DEFAULTS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate, br"}


def test_only_inference_responses_are_compressed(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # tritonclient's aio client (aiohttp, auto_decompress off) reads metadata as it comes and
    # decompresses only inside infer(). tritonclient is not installed here: its requests are
    # sent with aiohttp's default headers, and every body small enough to fail is compressed.
    monkeypatch.setattr(local_server, "MIN_COMPRESSION_BYTES", 1)
    for path in ("/v2", "/v2/models/churn", "/v2/models/churn/ready", "/v2/health/ready"):
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n"
        request += "Accept-Encoding: gzip, deflate, br\r\n\r\n"
        status, headers, body = exchange(address, request.encode())
        assert status == 200, path
        assert headers["Content-Encoding"] == "identity", path
        json.loads(body)
    body = json.dumps({"inputs": v2_inputs()}).encode()
    inference = (
        b"POST /v2/models/churn/infer HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n"
        b"Accept-Encoding: gzip, deflate, br\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    status, headers, answer = exchange(address, inference)
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(answer))["model_name"] == "churn"


def test_only_inference_answers_are_left_to_the_gateway_to_compress(served: LocalStore) -> None:
    # API Gateway compresses an answer of 1 KB or more unless it names a Content-Encoding:
    # metadata and health say "identity" (tritonclient's aio client reads them as JSON);
    # inference answers name none, and are compressed as Triton's are.
    with Client(app) as client:
        for path in ("/v2", "/v2/models/churn", "/v2/health/ready", "/v2/models/churn/ready"):
            answer = client.http.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
            assert answer.headers.get("Content-Encoding") == "identity", path
            json.loads(answer.body)
        inferred = client.http.post(
            "/v2/models/churn/infer",
            headers={"Content-Type": "application/json", "Accept-Encoding": "gzip"},
            body=json.dumps({"inputs": v2_inputs()}),
        )
        assert inferred.status_code == 200
        assert "Content-Encoding" not in inferred.headers
