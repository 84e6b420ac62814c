"""The inference function: HTTP requests in, predictions out (no scikit-learn here).

Each handler returns an `HttpResult`; app.py turns it into a Chalice response, so the
same code answers API Gateway on Lambda, `chalice local`, and tests.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

import shared
from shared.alerts.announce import announcing_if_recorded
from shared.alerts.metrics import ServingTally, write_lines
from shared.errors import (
    ArtifactRejected,
    BadRequest,
    MlopsError,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    RegistryError,
    SpecError,
    VersionNotFound,
)
from shared.monitoring.capture_writer import CaptureWriter
from shared.serving import binary_tensors, inference_v2, records_api
from shared.serving.cache import LoadedModel, ModelCache, Prediction, predict
from shared.serving.inputs import decode_body, is_request_id, request_id, unpack_body
from shared.serving.runtime import ModelInput
from shared.store import open_store

logger = logging.getLogger(__name__)

SERVER_NAME = "serverless-mlops"
REQUEST_ID_HEADER = "x-request-id"
CONTENT_ENCODING_HEADER = "content-encoding"
ACCEPT_HEADER = "accept"
BINARY_TYPE = "application/octet-stream"


def binary_response_deliverable(accept: str | None) -> bool:
    """Whether a binary body reaches this client through every gateway we deploy behind.

    API Gateway (REST) turns a function's base64 body back into bytes only when the first
    media type of the request's Accept header is a binary media type; otherwise the client
    would get base64 text. Chalice refuses to answer such a request with a binary body.
    """
    first, *parameters = (accept or "").split(",", 1)[0].split(";")
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "q" and _zero_quality(value):
            return False  # "not acceptable" (RFC 9110, 12.4.2): JSON data, as with no Accept
    return first.strip().lower() == BINARY_TYPE


def _zero_quality(value: str) -> bool:
    # A malformed quality counts as zero: the answer is then JSON, which every client reads.
    try:
        return not float(value.strip()[:8]) > 0.0
    except ValueError:
        return True


@dataclass(frozen=True)
class HttpResult:
    """A JSON response (status, body, extra headers), or raw bytes when `raw` is set."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


_cache: ModelCache | None = None
_capture: CaptureWriter | None = None
# `chalice local` and `mlops serve` answer on several threads: two first requests racing
# to create the capture writer made two, and rows added to the one that lost were never
# written (17 of 80 rows lost on a fresh server). Reentrant: capture_writer() takes it and
# calls model_cache(), which takes it too.
_create_lock = threading.RLock()
shadow_failures = 0  # shadow errors this container swallowed (a test or a person reads it)
# Prediction requests since the last metrics line, written at each capture flush.
tally = ServingTally()
# The rows the request on this thread predicted (set by _record, read by _counted).
answered_rows = threading.local()


def _counted(result: HttpResult) -> HttpResult:
    tally.answered(result.status, getattr(answered_rows, "rows", 0))
    answered_rows.rows = 0
    return result


def _serving_metrics(writer: CaptureWriter) -> None:
    line = tally.line(shadow_failures, writer.failed_writes, int(writer.clock() * 1000))
    line["Container"] = writer.container
    write_lines([line])


def model_cache() -> ModelCache:
    """The container's cache, created on first use over MLOPS_STORE."""
    global _cache
    cache = _cache
    if cache is not None:  # the usual case, without the lock
        return cache
    with _create_lock:
        if _cache is None:
            _cache = ModelCache(
                open_store(),
                alias_ttl=float(os.environ.get("MLOPS_ALIAS_TTL_SECONDS", "10")),
                # Production and a shadowed staging version take two sessions per model.
                max_sessions=int(os.environ.get("MLOPS_MAX_SESSIONS", "8")),
            )
        return _cache


def capture_writer() -> CaptureWriter:
    """The container's capture buffers, over the cache's store."""
    global _capture
    capture = _capture
    if capture is not None:
        return capture
    with _create_lock:
        if _capture is None:
            _capture = CaptureWriter(model_cache().store, on_write=_serving_metrics)
        return _capture


def reset_cache(cache: ModelCache | None = None, capture: CaptureWriter | None = None) -> None:
    """Drop (or replace) the container's cache and capture buffers (tests, a store change).

    Rows still buffered are written first, so that nothing captured is dropped silently.
    """
    global _cache, _capture
    with _create_lock:
        if _capture is not None:
            _capture.flush()
        _cache = cache
        _capture = capture


def _record(
    loaded: LoadedModel, ref: str | None, rid: str, batch: ModelInput, out: Prediction
) -> None:
    """Capture the answer and, when the spec says so, shadow it with staging.

    Runs after the response is computed; neither step can change it or fail it.
    """
    answered_rows.rows = len(out.values)
    cache = model_cache()
    capture, shadow = cache.settings(loaded.model)
    writer = capture_writer()
    shadowing = shadow.enabled and (ref or "production") == "production"
    capture_id = writer.add(
        capture,
        model=loaded.model,
        version=loaded.version,
        served_by=ref or "production",
        request_id=rid,
        numeric_names=loaded.onnx.numeric_names,
        numeric=batch.numeric,
        categorical=batch.categorical,
        predictions=out.values,
        probabilities=out.probabilities,
        classes=out.classes,
        hold=shadowing,
        metadata=loaded.metadata,
    )
    if not shadowing:
        return
    try:
        if capture_id is None or writer.sample() >= shadow.sample_rate:
            return
        staging = cache.shadow_for(loaded)
        if staging is None:
            return
        shadowed = predict(staging, batch)
        writer.add(
            capture,
            model=loaded.model,
            version=staging.version,
            served_by="staging",
            request_id=rid,
            numeric_names=staging.onnx.numeric_names,
            numeric=batch.numeric,
            categorical=batch.categorical,
            predictions=shadowed.values,
            probabilities=shadowed.probabilities,
            classes=shadowed.classes,
            role="shadow",
            capture_id=capture_id,
            metadata=staging.metadata,
        )
    except Exception:  # the shadow's errors are logged and counted, never the caller's
        global shadow_failures
        shadow_failures += 1
        logger.exception("shadow of %s v%s failed", loaded.model, loaded.version)
    finally:
        writer.settle(capture, loaded.model)


# Most specific first: the first matching class decides the status.
_STATUS: tuple[tuple[type[MlopsError], int], ...] = (
    (PayloadTooLarge, 413),
    (BadRequest, 400),
    (SpecError, 400),
    (ModelNotFound, 404),
    (ModelNotReady, 404),
    (VersionNotFound, 404),
    (RegistryError, 409),
    (ArtifactRejected, 503),
)


def _guarded(action: Callable[[], HttpResult], rid: str | None = None) -> HttpResult:
    # Echo the caller's id only if it is a valid one (it goes back in a header).
    headers = {REQUEST_ID_HEADER: rid} if rid and is_request_id(rid) else {}
    try:
        # A refused artifact is a decision: announced once the answer is made. Not kept
        # for a retry: this role may not write the registry record (docs/alerts.md).
        with announcing_if_recorded(model_cache().store):
            result = action()
    except MlopsError as exc:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        if status >= 500:
            logger.error("request %s failed: %s", rid, exc)
        return HttpResult(status, {"error": str(exc)}, headers)
    except Exception:
        reference = headers.get(REQUEST_ID_HEADER) or request_id(None, None)
        logger.exception("request %s failed unexpectedly", reference)
        return HttpResult(500, {"error": f"internal error (reference {reference})"}, headers)
    return HttpResult(result.status, result.body, {**headers, **result.headers}, result.raw)


def server_metadata() -> HttpResult:
    """GET /v2."""
    return HttpResult(
        200,
        {
            "name": SERVER_NAME,
            "version": shared.__version__,
            "extensions": ["binary_tensor_data", "classification"],
        },
    )


def server_live() -> HttpResult:
    """GET /v2/health/live: the function answers."""
    return HttpResult(200, {"live": True})


def server_ready() -> HttpResult:
    """GET /v2/health/ready: the store is configured (models load on demand)."""

    def action() -> HttpResult:
        model_cache()
        return HttpResult(200, {"ready": True})

    result = _guarded(action)
    if result.status != 200:
        return HttpResult(503, {"ready": False, "error": result.body["error"]})
    return result


def model_metadata(name: str, version: str | None = None) -> HttpResult:
    """GET /v2/models/{name}[/versions/{version}]."""

    def action() -> HttpResult:
        cache = model_cache()
        loaded = cache.get(name, version)
        ready = [str(e.version) for e in cache.record(name).versions if e.status == "ready"]
        return HttpResult(200, inference_v2.model_metadata(loaded, ready))

    return _guarded(action)


def model_ready(name: str, version: str | None = None) -> HttpResult:
    """GET /v2/models/{name}[/versions/{version}]/ready."""

    def action() -> HttpResult:
        model_cache().get(name, version)
        return HttpResult(200, {"name": name, "ready": True})

    result = _guarded(action)
    if result.status == 503:
        return HttpResult(503, {"name": name, "ready": False, **result.body}, result.headers)
    return result


def infer(name: str, version: str | None, body: bytes, headers: Mapping[str, str]) -> HttpResult:
    """POST /v2/models/{name}[/versions/{version}]/infer (Open Inference Protocol)."""
    rid = headers.get(REQUEST_ID_HEADER)

    def action() -> HttpResult:
        nonlocal rid
        unpacked = unpack_body(body, headers.get(CONTENT_ENCODING_HEADER))
        decoded = inference_v2.parse_request(unpacked, headers.get(binary_tensors.HEADER))
        rid = request_id(decoded.request.id, rid)
        loaded = model_cache().get(name, version)
        wanted = inference_v2.wanted_outputs(decoded.request, loaded)
        if not binary_response_deliverable(headers.get(ACCEPT_HEADER)):
            # The parameters asked for binary outputs, but this response could not carry
            # them: the same outputs go as JSON data, and no Inference-Header-Content-Length
            # header tells the client (tritonclient reads either form).
            wanted = [replace(output, binary=False) for output in wanted]
        batch = inference_v2.parse_inputs(decoded, loaded)
        prediction = predict(loaded, batch)
        _record(loaded, version, rid, batch, prediction)
        response, binary = inference_v2.inference_response(loaded, wanted, prediction, rid)
        if not binary:
            return HttpResult(200, response, {REQUEST_ID_HEADER: rid})
        header = msgspec.json.encode(response)
        return HttpResult(
            200,
            response,
            {
                REQUEST_ID_HEADER: rid,
                "Content-Type": BINARY_TYPE,
                "Inference-Header-Content-Length": str(len(header)),
            },
            raw=header + binary,
        )

    return _counted(_guarded(action, rid))


def predict_records(
    name: str, version: str | None, body: bytes, headers: Mapping[str, str]
) -> HttpResult:
    """POST /models/{name}[/versions/{version}]/predict (records by feature name)."""
    rid = headers.get(REQUEST_ID_HEADER)

    def action() -> HttpResult:
        nonlocal rid
        document = decode_body(unpack_body(body, headers.get(CONTENT_ENCODING_HEADER)))
        rid = request_id(document.get("id") if isinstance(document, dict) else None, rid)
        loaded = model_cache().get(name, version)
        columns = records_api.parse_records(document, loaded)
        prediction = predict(loaded, columns)
        _record(loaded, version, rid, columns, prediction)
        return HttpResult(
            200,
            records_api.records_response(loaded, prediction, rid),
            {REQUEST_ID_HEADER: rid},
        )

    return _counted(_guarded(action, rid))
