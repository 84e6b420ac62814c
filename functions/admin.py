"""Registry operations over HTTP (the /admin routes), and the function that performs them.

Two halves, deployed as two functions with two IAM roles:

- The routes run in the serving function (api_handler). They decide who is calling,
  decode the request and hand one `Operation` to the registry_admin function. The serving
  role may invoke that one function and still writes nothing but captures.
- `handle_operation` is the registry_admin function. Anyone allowed to invoke it can send
  it anything, so it validates its payload as strictly as the routes validate theirs; then it
  moves the alias through the registry's compare-and-swap, recording who asked.

Who is calling depends on how the server was deployed (MLOPS_ADMIN_AUTH), never on anything
in the request: `iam` (on AWS, API Gateway has checked the caller's SigV4 signature and
names the signer in the request context) or `token` (on a laptop, `Authorization: Bearer
<MLOPS_ADMIN_TOKEN>`).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from functions.inference import HttpResult
from shared.alerts.announce import announcing
from shared.errors import (
    BadRequest,
    MlopsError,
    ModelNotFound,
    RegistryError,
    SpecError,
    VersionNotFound,
)
from shared.registry.records import ALIASES, UNSET, Alias, AliasConflict, Expected
from shared.registry.registry import ModelRegistry, list_models
from shared.store import ObjectStore, open_store

logger = logging.getLogger(__name__)

AUTH_ENV = "MLOPS_ADMIN_AUTH"
TOKEN_ENV = "MLOPS_ADMIN_TOKEN"
FUNCTION_ENV = "MLOPS_ADMIN_FUNCTION"
# A short token can be guessed over HTTP; `secrets.token_urlsafe(32)` gives 43 characters.
MIN_TOKEN_LENGTH = 16
TOKEN_ACTOR = "token"
# The registry_admin function can run for 25 s (.chalice/config.json); API Gateway gives
# the serving function 29 s in all.
INVOKE_READ_TIMEOUT = 27

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
# An IAM ARN is at most 2048 characters.
Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class AliasMove(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of PUT /admin/models/{name}/aliases/{alias}."""

    version: PositiveInt
    # Absent: move whatever the alias points at; null: only if it points at nothing.
    expected: PositiveInt | msgspec.UnsetType | None = msgspec.UNSET
    reason: Reason = "promoted by hand"


class RollbackRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of POST /admin/models/{name}/rollback (may be empty)."""

    expected: PositiveInt | msgspec.UnsetType = msgspec.UNSET
    reason: Reason = "rolled back by hand"


class SetAlias(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="set_alias",
    tag_field="op",
):
    """Point `alias` of `model` at `version`, on behalf of `actor`."""

    model: str
    alias: Alias
    version: PositiveInt
    expected: PositiveInt | msgspec.UnsetType | None = msgspec.UNSET
    reason: Reason
    actor: Actor


class Rollback(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="rollback",
    tag_field="op",
):
    """Move production of `model` back one step, on behalf of `actor`."""

    model: str
    expected: PositiveInt | msgspec.UnsetType = msgspec.UNSET
    reason: Reason
    actor: Actor


Operation = SetAlias | Rollback


class Outcome(msgspec.Struct, frozen=True):
    """What the registry_admin function answers: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Caller:
    """What a request says about its sender: its Authorization header, and the identity
    API Gateway put in the request context (a client cannot set the latter)."""

    authorization: str | None
    identity: Mapping[str, Any]


class Refused(Exception):
    """The caller may not use the admin routes (or the server cannot tell who it is)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class AdminFunctionFailed(Exception):
    """The registry_admin function could not be invoked, or failed without an answer."""


def auth_mode() -> str:
    """`iam` or `token`, from the server's configuration only.

    Unset, it is `iam` inside Lambda (the runtime sets AWS_LAMBDA_FUNCTION_NAME), where
    API Gateway signs callers in, and `token` elsewhere.
    """
    default = "iam" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "token"
    return os.environ.get(AUTH_ENV) or default


def authenticate(caller: Caller) -> str:
    """The actor to record for `caller`; Refused unless the caller may administer models."""
    mode = auth_mode()
    if mode == "iam":
        arn = caller.identity.get("userArn")
        if isinstance(arn, str) and arn.startswith("arn:") and len(arn) <= 2048:
            return arn
        # Behind API Gateway every request to these routes is signed; this one reached the
        # handler some other way (e.g. `chalice local`, which does not check signatures).
        raise Refused(
            403,
            "admin routes need a request signed with IAM credentials (SigV4): "
            "this request carries no IAM principal",
        )
    if mode != "token":
        raise Refused(500, f"{AUTH_ENV} must be 'iam' or 'token', not {mode[:20]!r}")
    expected = os.environ.get(TOKEN_ENV, "")
    if not expected:
        raise Refused(403, f"admin routes need {TOKEN_ENV} set on the server")
    if len(expected) < MIN_TOKEN_LENGTH:
        raise Refused(
            403,
            f"{TOKEN_ENV} on the server is shorter than {MIN_TOKEN_LENGTH} characters: set a "
            "longer one, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    scheme, _, given = (caller.authorization or "").strip().partition(" ")
    # compare_digest takes as long whatever prefix matches: the token cannot be guessed
    # one character at a time from response times.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise Refused(
            401, "bad or missing bearer token", {"WWW-Authenticate": 'Bearer realm="mlops-admin"'}
        )
    return TOKEN_ACTOR


# The store -------------------------------------------------------------------------------

_stores: dict[str, ObjectStore] = {}


def admin_store() -> ObjectStore:
    """The store MLOPS_STORE names, opened once per location for the container's life."""
    location = os.environ.get("MLOPS_STORE", "")
    store = _stores.get(location)
    if store is None:
        store = _stores[location] = open_store(location or None)
    return store


# The registry_admin function -------------------------------------------------------------

# Most specific first: the first matching class decides the status.
_STATUS: tuple[tuple[type[MlopsError], int], ...] = (
    (BadRequest, 400),
    (SpecError, 400),  # an invalid model name
    (ModelNotFound, 404),
    (VersionNotFound, 404),
    (RegistryError, 409),  # moved meanwhile, not ready, nothing to roll back to
)


def _status(exc: MlopsError) -> int:
    # Anything else (the store's configuration, say) is the server's fault, not the caller's.
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)


def _expected(value: int | msgspec.UnsetType | None) -> Expected:
    return UNSET if isinstance(value, msgspec.UnsetType) else value


def _perform(store: ObjectStore, operation: Operation) -> Outcome:
    registry = ModelRegistry(store, operation.model)
    registry.load()  # ModelNotFound before anything else is said about the model
    try:
        if isinstance(operation, SetAlias):
            record = registry.set_alias(
                operation.alias,
                operation.version,
                reason=operation.reason,
                actor=operation.actor,
                expected=_expected(operation.expected),
            )
            return Outcome(
                200, {"model": record.model, "aliases": record.aliases, "actor": operation.actor}
            )
        record, source, target = registry.rollback(
            reason=operation.reason, actor=operation.actor, expected=_expected(operation.expected)
        )
    except AliasConflict as exc:
        # Where the aliases point now, so that the caller can decide and retry.
        return Outcome(409, {"error": str(exc), "aliases": registry.load().aliases})
    return Outcome(
        200,
        {
            "model": record.model,
            "aliases": record.aliases,
            "from": source,
            "to": target,
            "actor": operation.actor,
        },
    )


def handle_operation(event: object) -> dict[str, Any]:
    """The registry_admin function: validate one operation, perform it, say what happened.

    Answers ``{"status": <HTTP status>, "body": {...}}``; a domain error is an answer
    (4xx), not a failed invocation.
    """
    try:
        operation: Operation = msgspec.convert(event, Operation)
    except msgspec.ValidationError as exc:
        outcome = Outcome(400, {"error": f"invalid operation: {exc}"})
    else:
        try:
            store = admin_store()
            # A rollback is a decision: announced after it is recorded.
            with announcing(store):
                outcome = _perform(store, operation)
        except MlopsError as exc:
            outcome = Outcome(_status(exc), {"error": str(exc)})
        logger.info("%r by %s: %s %s", operation, operation.actor, outcome.status, outcome.body)
    answer: dict[str, Any] = msgspec.to_builtins(outcome)
    return answer


# Handing an operation to it --------------------------------------------------------------

_lambda: Any = None


def lambda_client() -> Any:
    """The container's Lambda client, created on first use (boto3 loads only here)."""
    global _lambda
    if _lambda is None:
        import boto3
        from botocore.config import Config

        # No retries: an invocation whose answer was lost may have moved the alias, and a
        # rollback sent twice goes back two steps. The caller retries, with `expected`.
        config = Config(
            retries={"total_max_attempts": 1},
            connect_timeout=2,
            read_timeout=INVOKE_READ_TIMEOUT,
        )
        _lambda = boto3.client("lambda", config=config)
    return _lambda


def invoke(function: str, payload: bytes) -> Outcome:
    """Run the operation in `payload` in the registry_admin function `function` (AWS)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = lambda_client().invoke(
            FunctionName=function, InvocationType="RequestResponse", Payload=payload
        )
        answer = response["Payload"].read()
    except (BotoCoreError, ClientError) as exc:
        logger.error("invoking %s failed: %s", function, exc)
        raise AdminFunctionFailed(f"could not invoke the registry admin function: {exc}") from exc
    if response.get("FunctionError"):
        logger.error("%s failed: %s", function, answer[:4000])
        raise AdminFunctionFailed("the registry admin function failed; see its logs")
    try:
        return msgspec.json.decode(answer, type=Outcome)
    except msgspec.DecodeError as exc:
        raise AdminFunctionFailed(f"the registry admin function answered {exc}") from exc


def dispatch(operation: Operation) -> Outcome:
    """Perform `operation` in the registry_admin function (MLOPS_ADMIN_FUNCTION) or, unset,
    in this process (a laptop, tests), from the very bytes the function would be sent."""
    payload = msgspec.json.encode(operation)
    function = os.environ.get(FUNCTION_ENV)
    if function:
        return invoke(function, payload)
    return msgspec.convert(handle_operation(msgspec.json.decode(payload)), Outcome)


# The routes ------------------------------------------------------------------------------


def _decode[T](body: bytes, kind: type[T], what: str) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise BadRequest(f"{what}: {exc}") from None


def _alias(alias: str) -> Alias:
    for known in ALIASES:
        if alias == known:
            return known
    raise BadRequest(f"alias must be one of {', '.join(ALIASES)}, not {alias[:40]!r}")


def _admin(caller: Caller, action: Callable[[str], HttpResult]) -> HttpResult:
    """Authenticate first (an anonymous caller learns nothing else), then run `action`."""
    try:
        return action(authenticate(caller))
    except Refused as exc:
        return HttpResult(exc.status, {"error": str(exc)}, exc.headers)
    except MlopsError as exc:
        return HttpResult(_status(exc), {"error": str(exc)})
    except AdminFunctionFailed as exc:
        return HttpResult(502, {"error": str(exc)})
    except Exception:
        logger.exception("admin request failed unexpectedly")
        return HttpResult(500, {"error": "internal error (see the function's logs)"})


def _answer(outcome: Outcome) -> HttpResult:
    return HttpResult(outcome.status, outcome.body)


def show_model(name: str, caller: Caller) -> HttpResult:
    """GET /admin/models/{name}: versions, aliases and alias history."""

    def action(actor: str) -> HttpResult:
        # A read: the serving role may read the registry, so no other function is needed.
        record = ModelRegistry(admin_store(), name).load()
        return HttpResult(200, msgspec.to_builtins(record))

    return _admin(caller, action)


def list_registered(caller: Caller) -> HttpResult:
    """GET /admin/models: every model with a registry, its aliases and versions' summary."""

    def action(actor: str) -> HttpResult:
        store = admin_store()
        models = []
        for name in list_models(store):
            record = ModelRegistry(store, name).load()
            by_status: dict[str, int] = {}
            for entry in record.versions:
                by_status[entry.status] = by_status.get(entry.status, 0) + 1
            production = record.aliases.get("production")
            serving = record.entry(production) if production is not None else None
            models.append(
                {
                    "name": name,
                    "aliases": dict(record.aliases),
                    "versions": len(record.versions),
                    "latest": max((e.version for e in record.versions), default=None),
                    "by_status": by_status,
                    "production": None
                    if serving is None
                    else {
                        "version": serving.version,
                        "primary_metric": serving.primary_metric,
                        "metric_value": serving.metric_value,
                        "data_key": serving.data_key,
                    },
                }
            )
        return HttpResult(200, {"models": models})

    return _admin(caller, action)


def move_alias(name: str, alias: str, body: bytes, caller: Caller) -> HttpResult:
    """PUT /admin/models/{name}/aliases/{alias}: point the alias at a version."""

    def action(actor: str) -> HttpResult:
        move = _decode(body, AliasMove, 'invalid body (expected {"version": N, ...})')
        operation = SetAlias(
            model=name,
            alias=_alias(alias),
            version=move.version,
            expected=move.expected,
            reason=move.reason,
            actor=actor,
        )
        return _answer(dispatch(operation))

    return _admin(caller, action)


def roll_back(name: str, body: bytes, caller: Caller) -> HttpResult:
    """POST /admin/models/{name}/rollback: production back to its previous version."""

    def action(actor: str) -> HttpResult:
        request = _decode(body.strip() or b"{}", RollbackRequest, "invalid body")
        operation = Rollback(
            model=name, expected=request.expected, reason=request.reason, actor=actor
        )
        return _answer(dispatch(operation))

    return _admin(caller, action)
