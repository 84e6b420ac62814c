"""The Chalice app: wires each function in functions/ to its trigger.

Every function deployed from this app imports this module, so it imports only what
serving needs; the training stack is imported inside the training handler.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
from chalice.app import (
    CaseInsensitiveMapping,
    Chalice,
    CloudWatchEvent,
    IAMAuthorizer,
    Rate,
    Request,
    Response,
    S3Event,
)

from functions import inference
from functions.inference import HttpResult
from shared.serving import binary_tensors

if TYPE_CHECKING:
    from functions.admin import Caller

app = Chalice(app_name="serverless-mlops")
# Every body is binary to API Gateway (its binaryMediaTypes is this list): /infer takes JSON
# and the binary tensor extension's raw bytes on one route, and API Gateway decides how to
# hand a response back by the client's *first* Accept type, so only */* returns both JSON
# and raw bodies intact to every client (curl's Accept: */*, tritonclient's). Requests then
# reach Lambda base64-encoded and Chalice decodes them; responses leave base64-encoded and
# API Gateway decodes them. A narrower list fails either way: ["application/octet-stream"]
# mixes binary and text types on /infer, which `chalice deploy` refuses, and adding
# "application/json" sends base64 text back to clients whose first Accept type is neither.
# One entry also keeps Chalice's per-request content-type scans cheap (its default holds ~30
# image/audio/video types: ~50 us of a ~100 us prediction).
app.api.binary_types = ["*/*"]

# Chalice reads the bucket name when it builds the deployment, from the stage's
# environment_variables in .chalice/config.json.
DATA_BUCKET = os.environ.get("MLOPS_BUCKET", "serverless-mlops-data")


def _switch(name: str) -> bool:
    value = os.environ.get(name, "0")
    if value not in ("0", "1"):
        raise RuntimeError(f"{name} must be 0 or 1, not {value!r}")
    return value == "1"


# API Gateway asks for an API key (header x-api-key, in a usage plan) on the model routes of
# a stage whose environment_variables set MLOPS_REQUIRE_API_KEY=1. Like the bucket, it is
# read when Chalice builds the deployment; `chalice local` never checks keys.
REQUIRE_API_KEY = _switch("MLOPS_REQUIRE_API_KEY")

# API Gateway lets only requests signed with IAM credentials (SigV4) reach the admin routes.
# `chalice local` and Chalice's test client admit everyone, so functions.admin decides who
# the caller is as well.
ADMIN_AUTHORIZER = IAMAuthorizer()


# API Gateway compresses every answer of 1 KB or more for a client that accepts gzip,
# unless the function's answer names a Content-Encoding. Triton's endpoint compresses only
# inference answers, and tritonclient's aio client decompresses only inside infer(): its
# model metadata call would read gzip as JSON. Every other answer says "identity".
UNCOMPRESSED = {"Content-Encoding": "identity"}


def _respond(result: HttpResult, *, inference_answer: bool = False) -> Response:
    extra = {} if inference_answer else UNCOMPRESSED
    if result.raw is not None:  # binary tensor data: Chalice base64-encodes it for API Gateway
        return Response(
            body=result.raw, status_code=result.status, headers={**result.headers, **extra}
        )
    return Response(
        body=msgspec.json.encode(result.body).decode(),
        status_code=result.status,
        headers={"Content-Type": "application/json", **result.headers, **extra},
    )


def _body() -> bytes:
    raw = app.current_request.raw_body if app.current_request else b""
    return raw.encode() if isinstance(raw, str) else raw or b""


def _headers() -> dict[str, str]:
    # Only the headers the handlers read: copying them all costs more than the model runs.
    request = app.current_request
    if request is None:
        return {}
    wanted = (
        inference.REQUEST_ID_HEADER,
        binary_tensors.HEADER,
        inference.ACCEPT_HEADER,
        inference.CONTENT_ENCODING_HEADER,
    )
    found = {name: value for name in wanted if (value := request.headers.get(name)) is not None}
    # API Gateway keeps the last value of a repeated header in `headers` and all of them in
    # multiValueHeaders: a repeated field means its values joined by commas (RFC 9110, 5.3),
    # which then fails the check of a header that takes one value, rather than one winning.
    multi = request.to_original_event().get("multiValueHeaders") or {}
    for name, values in multi.items():
        if name.lower() in found and isinstance(values, list) and len(values) > 1:
            found[name.lower()] = ", ".join(values)
    return found


_HINTS = {
    405: " (the Allow header lists this route's methods)",
    415: (
        "; send Content-Type: application/json, or application/octet-stream for binary "
        "tensor data to /infer"
    ),
}


@app.middleware("http")
def protocol_errors(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Chalice's own refusals (415, 405, an unhandled 500) in the API's error object."""
    if "accept" not in event.headers:
        # Every response is binary (binary_types above) and Chalice answers 400 to a request
        # with no Accept header; HTTP reads a missing Accept as */* (RFC 9110, 12.5.1), which
        # API Gateway's */* binary media type matches, so say so (urllib sends none).
        event.headers = CaseInsensitiveMapping({**event.headers, "accept": "*/*"})
    response = get_response(event)
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Message" in body:
        # Chalice answers {"Code": ..., "Message": ...}; the protocol says {"error": ...}.
        # Its messages quote request headers (e.g. the Content-Type): keep them short.
        message = str(body["Message"])[:200] + _HINTS.get(response.status_code, "")
        return Response(
            body=msgspec.json.encode({"error": message}).decode(),
            status_code=response.status_code,
            headers={**response.headers, "Content-Type": "application/json"},
        )
    return response


def _caller() -> Caller:
    # Only the admin routes read the Authorization header and the signed-in identity.
    from functions.admin import Caller

    request = app.current_request
    if request is None:
        return Caller(authorization=None, identity={})
    identity = (request.context or {}).get("identity") or {}
    return Caller(authorization=request.headers.get("authorization"), identity=identity)


@app.route("/v2", methods=["GET"])
def server_metadata() -> Response:
    """GET /v2: the server's name, version and protocol extensions."""
    return _respond(inference.server_metadata())


@app.route("/v2/health/live", methods=["GET"])
def server_live() -> Response:
    """GET /v2/health/live."""
    return _respond(inference.server_live())


@app.route("/v2/health/ready", methods=["GET"])
def server_ready() -> Response:
    """GET /v2/health/ready."""
    return _respond(inference.server_ready())


@app.route("/v2/models/{name}", methods=["GET"], api_key_required=REQUIRE_API_KEY)
def model_metadata(name: str) -> Response:
    """GET /v2/models/{name}: inputs, outputs and versions of production."""
    return _respond(inference.model_metadata(name))


@app.route(
    "/v2/models/{name}/versions/{version}", methods=["GET"], api_key_required=REQUIRE_API_KEY
)
def model_version_metadata(name: str, version: str) -> Response:
    """GET /v2/models/{name}/versions/{version}."""
    return _respond(inference.model_metadata(name, version))


@app.route("/v2/models/{name}/ready", methods=["GET"], api_key_required=REQUIRE_API_KEY)
def model_ready(name: str) -> Response:
    """GET /v2/models/{name}/ready."""
    return _respond(inference.model_ready(name))


@app.route(
    "/v2/models/{name}/versions/{version}/ready", methods=["GET"], api_key_required=REQUIRE_API_KEY
)
def model_version_ready(name: str, version: str) -> Response:
    """GET /v2/models/{name}/versions/{version}/ready."""
    return _respond(inference.model_ready(name, version))


# The binary tensor data extension sends application/octet-stream bodies.
BODY_TYPES = ["application/json", "application/octet-stream"]


@app.route(
    "/v2/models/{name}/infer",
    methods=["POST"],
    content_types=BODY_TYPES,
    api_key_required=REQUIRE_API_KEY,
)
def infer(name: str) -> Response:
    """POST /v2/models/{name}/infer: the Open Inference Protocol, production answering."""
    return _respond(inference.infer(name, None, _body(), _headers()), inference_answer=True)


@app.route(
    "/v2/models/{name}/versions/{version}/infer",
    methods=["POST"],
    content_types=BODY_TYPES,
    api_key_required=REQUIRE_API_KEY,
)
def infer_version(name: str, version: str) -> Response:
    """POST /v2/models/{name}/versions/{version}/infer."""
    return _respond(inference.infer(name, version, _body(), _headers()), inference_answer=True)


@app.route("/models/{name}/predict", methods=["POST"], api_key_required=REQUIRE_API_KEY)
def predict(name: str) -> Response:
    """POST /models/{name}/predict: records by feature name, production answering."""
    return _respond(
        inference.predict_records(name, None, _body(), _headers()), inference_answer=True
    )


@app.route(
    "/models/{name}/versions/{version}/predict", methods=["POST"], api_key_required=REQUIRE_API_KEY
)
def predict_version(name: str, version: str) -> Response:
    """POST /models/{name}/versions/{version}/predict."""
    return _respond(
        inference.predict_records(name, version, _body(), _headers()), inference_answer=True
    )


@app.route("/admin/models", methods=["GET"], authorizer=ADMIN_AUTHORIZER)
def admin_models() -> Response:
    """GET /admin/models: every registered model, its aliases and what production serves."""
    from functions import admin

    return _respond(admin.list_registered(_caller()))


@app.route("/admin/models/{name}", methods=["GET"], authorizer=ADMIN_AUTHORIZER)
def admin_model(name: str) -> Response:
    """GET /admin/models/{name}: the registry record (versions, aliases, alias history)."""
    # Imported here, as in each admin handler: cold starts of the model routes never pay it.
    from functions import admin

    return _respond(admin.show_model(name, _caller()))


@app.route("/admin/models/{name}/aliases/{alias}", methods=["PUT"], authorizer=ADMIN_AUTHORIZER)
def admin_move_alias(name: str, alias: str) -> Response:
    """PUT /admin/models/{name}/aliases/{alias}: point production or staging at a version."""
    from functions import admin

    return _respond(admin.move_alias(name, alias, _body(), _caller()))


@app.route("/admin/models/{name}/rollback", methods=["POST"], authorizer=ADMIN_AUTHORIZER)
def admin_rollback(name: str) -> Response:
    """POST /admin/models/{name}/rollback: production back to its previous version."""
    from functions import admin

    return _respond(admin.roll_back(name, _body(), _caller()))


@app.lambda_function(name="registry_admin")
def registry_admin(event: Any, context: Any) -> dict[str, Any]:
    """Perform one registry operation sent by the admin routes (its role may write the registry)."""
    from functions import admin

    return admin.handle_operation(event)


@app.on_s3_event(
    bucket=DATA_BUCKET, events=["s3:ObjectCreated:*"], prefix="datasets/", suffix=".csv"
)
def on_dataset_uploaded(event: S3Event) -> None:
    """Train the model whose dataset was uploaded."""
    # Imported here: scikit-learn and skl2onnx only load in the training function.
    from functions import training

    # Lambda's retries of a failed invocation keep its request id (see records.abandoned).
    training.handle_s3_event(
        event.to_dict(), delivery=getattr(event.context, "aws_request_id", None)
    )


class _UploadEvent(S3Event):
    """Chalice's S3Event, minus its KeyError on an event that names no object.

    S3 sends such an event (s3:TestEvent, no records) when the notification is set up;
    Chalice would fail it before the handler runs and Lambda would retry it twice. The
    handler reads every record itself (functions.training.dataset_uploads).
    """

    def _extract_attributes(self, event_dict: dict[str, Any]) -> None:
        try:
            super()._extract_attributes(event_dict)
        except (KeyError, IndexError, TypeError):
            self.bucket, self.key = "", ""


on_dataset_uploaded.event_class = _UploadEvent


@app.schedule(Rate(1, unit=Rate.HOURS))
def check_monitoring(event: CloudWatchEvent) -> None:
    """Every hour: drift and decay checks of each model's last complete window."""
    # Imported here: the serving function never loads the monitoring check.
    from functions import monitoring

    monitoring.handle_schedule(event.to_dict())


# On the prefix alone: an S3 notification takes one suffix, the inputs have four (.csv,
# .csv.gz, .jsonl, .jsonl.gz) and the job's own outputs end in .csv.gz too. The handler
# keeps batch/<model>/input/ uploads and returns at once on anything else.
@app.on_s3_event(bucket=DATA_BUCKET, events=["s3:ObjectCreated:*"], prefix="batch/")
def on_batch_uploaded(event: S3Event) -> None:
    """Start the batch job of an input uploaded under batch/<model>/input/; fan its parts out."""
    # Imported here: the serving function never loads batch scoring.
    from functions import batch

    batch.handle_upload(event.to_dict())


on_batch_uploaded.event_class = _UploadEvent


@app.lambda_function(name="score_batch_part")
def score_batch_part(event: Any, context: Any) -> dict[str, Any]:
    """Score one part of a batch job (invoked asynchronously by on_batch_uploaded)."""
    from functions import batch

    return batch.handle_part(event)


@app.lambda_function(name="record_batch_failure")
def record_batch_failure(event: Any, context: Any) -> list[str]:
    """The batch functions' on-failure destination: record the part or job Lambda gave up on."""
    from functions import batch

    return batch.handle_failure(event)
