"""Registry operations over HTTP: who may call them, what they change, and who is recorded.

On a laptop the admin routes take a bearer token (MLOPS_ADMIN_TOKEN); on AWS, API Gateway
checks an IAM signature and the handler records the signer. Chalice's test client runs the
`local` stage, as `mlops serve` does; the IAM cases are API Gateway events handed to the app.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from chalice.app import IAMAuthorizer
from chalice.deploy.swagger import CFNSwaggerGenerator
from chalice.test import Client

from app import app, registry_admin
from functions import admin
from shared.registry.audit import read_trail
from shared.registry.registry import ModelRegistry
from shared.store.local import LocalStore

ROOT = Path(__file__).resolve().parent.parent
PACKAGED_TEMPLATE = ROOT / "build" / "cfn" / "sam.json"
TOKEN = "s3cret-admin-token-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ARN = "arn:aws:sts::123456789012:assumed-role/mlops-operators/alice"

# Chalice's local gateway admits every request to an IAM-authorized route, with this warning;
# the handler's own check is what these tests exercise.
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    """A store with model `churn` at three ready versions: production=1, staging=3."""
    monkeypatch.setenv("MLOPS_STORE", str(tmp_path / "store"))
    monkeypatch.setenv(admin.TOKEN_ENV, TOKEN)
    for name in (admin.AUTH_ENV, admin.FUNCTION_ENV, "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(name, raising=False)
    store = LocalStore(tmp_path / "store")
    registry = ModelRegistry(store, "churn")
    for source in ("a", "b", "c"):
        entry, _ = registry.claim(run_id=source, source=source, data_key="datasets/churn/x.csv")
        registry.complete(entry.version, sha256=source, primary_metric="f1", metric_value=0.9)
    return store


@pytest.fixture
def client(store: LocalStore) -> Iterator[Client]:
    with Client(app, stage_name="local") as client:
        yield client


def call(
    client: Client, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    raw = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.http.request(
        method, path, headers={"Content-Type": "application/json", **headers}, body=raw
    )
    return response.status_code, json.loads(response.body), response.headers


def promote(client: Client, version: int, **fields: Any) -> tuple[int, dict[str, Any]]:
    status, body, _ = call(
        client,
        "PUT",
        "/admin/models/churn/aliases/production",
        {"version": version, **fields},
        **BEARER,
    )
    return status, body


def aliases(store: LocalStore) -> dict[str, int]:
    return ModelRegistry(store, "churn").load().aliases


REQUESTS = [
    ("GET", "/admin/models", None),
    ("GET", "/admin/models/churn", None),
    ("PUT", "/admin/models/churn/aliases/production", {"version": 3}),
    ("POST", "/admin/models/churn/rollback", {}),
]


# Who may call --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
def test_without_a_token_on_the_server_every_admin_route_is_refused(
    client: Client,
    store: LocalStore,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    body: Any,
) -> None:
    monkeypatch.delenv(admin.TOKEN_ENV)
    status, answer, _ = call(client, method, path, body, **BEARER)
    assert status == 403
    assert answer == {"error": "admin routes need MLOPS_ADMIN_TOKEN set on the server"}
    assert aliases(store) == {"production": 1, "staging": 3}


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer "],
)
def test_a_missing_or_wrong_bearer_token_is_refused(
    client: Client,
    store: LocalStore,
    method: str,
    path: str,
    body: Any,
    authorization: str | None,
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, answer, response_headers = call(client, method, path, body, **headers)
    assert status == 401
    assert answer == {"error": "bad or missing bearer token"}
    assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert aliases(store) == {"production": 1, "staging": 3}
    assert len(ModelRegistry(store, "churn").load().alias_history) == 3


def test_a_guessable_server_token_is_refused(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(admin.TOKEN_ENV, "short")
    status, answer, _ = call(client, "GET", "/admin/models/churn", Authorization="Bearer short")
    assert status == 403
    assert "shorter than 16 characters" in answer["error"]


def test_the_token_reads_the_registry(client: Client) -> None:
    status, record, _ = call(client, "GET", "/admin/models/churn", **BEARER)
    assert status == 200
    assert [v["version"] for v in record["versions"]] == [1, 2, 3]
    assert record["aliases"] == {"production": 1, "staging": 3}
    assert [(c["alias"], c["version"], c["actor"]) for c in record["alias_history"]] == [
        ("production", 1, "training"),
        ("staging", 2, "training"),
        ("staging", 3, "training"),
    ]


def test_the_token_lists_the_models_and_what_production_serves(
    client: Client, store: LocalStore
) -> None:
    registry = ModelRegistry(store, "fraud")
    entry, _ = registry.claim(run_id="r", source="s", data_key="datasets/fraud/a.csv")
    registry.fail(entry.version, reason="bad data")
    status, answer, _ = call(client, "GET", "/admin/models", **BEARER)
    assert status == 200
    assert answer == {
        "models": [
            {
                "name": "churn",
                "aliases": {"production": 1, "staging": 3},
                "versions": 3,
                "latest": 3,
                "by_status": {"ready": 3},
                "production": {
                    "version": 1,
                    "primary_metric": "f1",
                    "metric_value": 0.9,
                    "data_key": "datasets/churn/x.csv",
                },
            },
            {
                "name": "fraud",
                "aliases": {},
                "versions": 1,
                "latest": 1,
                "by_status": {"failed": 1},
                "production": None,
            },
        ]
    }


# What the routes change ------------------------------------------------------------------


def test_a_promotion_names_its_actor_in_the_history_and_the_audit_trail(
    client: Client, store: LocalStore
) -> None:
    status, answer = promote(client, 3, expected=1, reason="beats v1 on last week's labels")
    assert status == 200, answer
    # v3 leaves staging once it is production: no alias names it twice.
    assert answer == {"model": "churn", "aliases": {"production": 3}, "actor": "token"}
    change = ModelRegistry(store, "churn").load().alias_history[-2]
    assert (change.alias, change.version, change.previous, change.actor, change.reason) == (
        "production",
        3,
        1,
        "token",
        "beats v1 on last week's labels",
    )
    moved = [e.details for e in read_trail(store, "churn") if e.event == "alias_moved"]
    assert moved[-1]["actor"] == "token"
    assert (moved[-1]["version"], moved[-1]["previous"]) == (3, 1)


def test_staging_can_be_moved_too(client: Client, store: LocalStore) -> None:
    status, answer, _ = call(
        client, "PUT", "/admin/models/churn/aliases/staging", {"version": 2}, **BEARER
    )
    assert status == 200, answer
    assert aliases(store) == {"production": 1, "staging": 2}


def test_a_stale_expectation_is_a_409_that_says_where_the_alias_points(
    client: Client, store: LocalStore
) -> None:
    assert promote(client, 2, expected=1)[0] == 200
    status, answer = promote(client, 3, expected=1)
    assert status == 409
    assert "points at version 2, not version 1 as expected" in answer["error"]
    assert answer["aliases"] == {"production": 2, "staging": 3}
    assert aliases(store)["production"] == 2
    # null: only if the alias points at nothing, which production does not.
    assert promote(client, 3, expected=None)[0] == 409


def test_rollback_over_http_after_two_promotions(client: Client, store: LocalStore) -> None:
    assert promote(client, 2)[0] == 200
    assert promote(client, 3)[0] == 200
    status, answer, _ = call(
        client, "POST", "/admin/models/churn/rollback", {"reason": "v3 errs"}, **BEARER
    )
    assert status == 200, answer
    assert (answer["from"], answer["to"], answer["aliases"]["production"]) == (3, 2, 2)
    # An empty body is a rollback with no expectation; a stale expectation is refused.
    assert call(client, "POST", "/admin/models/churn/rollback", {"expected": 3}, **BEARER)[0] == 409
    status, answer, _ = call(client, "POST", "/admin/models/churn/rollback", None, **BEARER)
    assert (status, answer["from"], answer["to"]) == (200, 2, 1)
    status, answer, _ = call(client, "POST", "/admin/models/churn/rollback", None, **BEARER)
    assert status == 409
    assert "no earlier version" in answer["error"]
    rolled = [e.details for e in read_trail(store, "churn") if e.event == "rolled_back"]
    assert [(d["previous"], d["version"], d["actor"]) for d in rolled] == [
        (3, 2, "token"),
        (2, 1, "token"),
    ]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/models/churn/aliases/production", b"{not json"),
        ("/admin/models/churn/aliases/production", []),
        ("/admin/models/churn/aliases/production", {}),
        ("/admin/models/churn/aliases/production", {"version": "2"}),
        ("/admin/models/churn/aliases/production", {"version": True}),
        ("/admin/models/churn/aliases/production", {"version": 0}),
        ("/admin/models/churn/aliases/production", {"version": 2.0}),
        ("/admin/models/churn/aliases/production", {"version": 2, "expected": "1"}),
        ("/admin/models/churn/aliases/production", {"version": 2, "reason": ""}),
        ("/admin/models/churn/aliases/production", {"version": 2, "reason": "x" * 501}),
        ("/admin/models/churn/aliases/production", {"version": 2, "actor": "someone-else"}),
        ("/admin/models/churn/aliases/canary", {"version": 2}),
        ("/admin/models/no%20such/aliases/production", {"version": 2}),
        ("/admin/models/churn/rollback", {"expected": None}),
        ("/admin/models/churn/rollback", {"to": 1}),
        ("/admin/models/churn/rollback", b"[1]"),
    ],
)
def test_a_bad_request_is_a_400_and_changes_nothing(
    client: Client, store: LocalStore, path: str, body: Any
) -> None:
    method = "POST" if path.endswith("rollback") else "PUT"
    status, answer, _ = call(client, method, path, body, **BEARER)
    assert status == 400, answer
    assert set(answer) == {"error"}
    assert aliases(store) == {"production": 1, "staging": 3}


def test_an_unknown_model_or_version_is_a_404(client: Client) -> None:
    assert call(client, "GET", "/admin/models/nobody", **BEARER)[0] == 404
    status, answer, _ = call(
        client, "PUT", "/admin/models/nobody/aliases/production", {"version": 1}, **BEARER
    )
    assert (status, answer) == (404, {"error": "no model named 'nobody' is registered"})
    assert call(client, "POST", "/admin/models/nobody/rollback", {}, **BEARER)[0] == 404
    status, answer = promote(client, 9)
    assert (status, answer) == (404, {"error": "model 'churn' has no version 9"})


# On AWS: IAM --------------------------------------------------------------------------------


def test_every_admin_route_requires_iam_and_no_other_route_does() -> None:
    admin_routes = 0
    for path, methods in app.routes.items():
        for entry in methods.values():
            if path.startswith("/admin/"):
                admin_routes += 1
                assert isinstance(entry.authorizer, IAMAuthorizer), path
            else:
                assert entry.authorizer is None, path
    assert admin_routes == 4
    # What `chalice package` writes for API Gateway: SigV4 (AWS_IAM) on each admin method.
    swagger = CFNSwaggerGenerator().generate_swagger(app)
    assert swagger["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    for path, methods in swagger["paths"].items():
        for operation in methods.values():
            if path.startswith("/admin/"):
                assert operation["security"] == [{"sigv4": []}], path


def test_the_packaged_template_requires_iam_on_the_admin_routes() -> None:
    if not PACKAGED_TEMPLATE.is_file():
        pytest.skip(f"{PACKAGED_TEMPLATE.relative_to(ROOT)} absent: run `make package`")
    resources = json.loads(PACKAGED_TEMPLATE.read_text())["Resources"]
    swagger = resources["RestAPI"]["Properties"]["DefinitionBody"]
    assert swagger["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    admin_methods = [
        (path, operation)
        for path, methods in swagger["paths"].items()
        if path.startswith("/admin/")
        for operation in methods.values()
    ]
    assert len(admin_methods) == 4
    for path, operation in admin_methods:
        assert operation["security"] == [{"sigv4": []}], path
    # The serving function hands writes to the registry_admin function, by name.
    function = resources["RegistryAdmin"]["Properties"]["FunctionName"]
    serving_env = resources["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert serving_env["MLOPS_ADMIN_FUNCTION"] == function
    assert serving_env["MLOPS_ADMIN_AUTH"] == "iam"


def api_gateway_event(
    method: str,
    resource: str,
    path: str,
    params: dict[str, str],
    body: Any,
    identity: dict[str, Any],
) -> dict[str, Any]:
    """An API Gateway REST proxy event for an IAM-authorized route, as Lambda receives it."""
    headers = {"Content-Type": "application/json", "Host": "abc.execute-api.amazonaws.com"}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", **identity},
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def promote_on_aws(identity: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    event = api_gateway_event(
        "PUT",
        "/admin/models/{name}/aliases/{alias}",
        "/admin/models/churn/aliases/production",
        {"name": "churn", "alias": "production"},
        {"version": 3},
        identity,
    )
    event["headers"].update(headers or {})
    response = app(event, None)
    body = response["body"]
    # Every body is binary to API Gateway (app.api.binary_types is */*): base64 on the wire.
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body
    return response["statusCode"], json.loads(raw)


def test_on_aws_the_actor_is_the_iam_principal(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(admin.AUTH_ENV, "iam")
    signed = {"userArn": ARN, "caller": "AROAEXAMPLE:alice", "accountId": "123456789012"}
    status, answer = promote_on_aws(signed)
    assert (status, answer["actor"]) == (200, ARN)
    history = ModelRegistry(store, "churn").load().alias_history
    assert [c.actor for c in history if c.alias == "production"][-1] == ARN
    moved = [e.details for e in read_trail(store, "churn") if e.event == "alias_moved"]
    assert moved[-1]["actor"] == ARN


@pytest.mark.parametrize("identity", [{}, {"userArn": None}, {"userArn": "alice"}])
def test_in_iam_mode_a_request_with_no_iam_principal_is_refused(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch, identity: dict[str, Any]
) -> None:
    monkeypatch.setenv(admin.AUTH_ENV, "iam")
    # A bearer token is no substitute: in iam mode only API Gateway's word counts.
    status, answer = promote_on_aws(identity, BEARER)
    assert status == 403
    assert "no IAM principal" in answer["error"]
    assert aliases(store) == {"production": 1, "staging": 3}


def test_inside_lambda_the_mode_defaults_to_iam(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(admin.AUTH_ENV, raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert admin.auth_mode() == "token"
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "serverless-mlops-dev")
    assert admin.auth_mode() == "iam"
    monkeypatch.setenv(admin.AUTH_ENV, "password")
    caller = admin.Caller(authorization=f"Bearer {TOKEN}", identity={"userArn": ARN})
    with pytest.raises(admin.Refused, match="must be 'iam' or 'token'"):
        admin.authenticate(caller)


# The registry_admin function, and how the serving function reaches it -----------------------


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "set_alias",
        {"op": "delete_model", "model": "churn", "actor": "x"},
        {"model": "churn", "alias": "production", "version": 2, "reason": "r", "actor": "x"},
        {"op": "set_alias", "model": "churn", "alias": "production", "version": 2, "reason": "r"},
        {
            "op": "set_alias",
            "model": "churn",
            "alias": "canary",
            "version": 2,
            "reason": "r",
            "actor": "x",
        },
        {
            "op": "set_alias",
            "model": "churn",
            "alias": "production",
            "version": "2",
            "reason": "r",
            "actor": "x",
        },
        {
            "op": "set_alias",
            "model": "churn",
            "alias": "production",
            "version": 2,
            "reason": "r",
            "actor": "",
        },
        {"op": "rollback", "model": "churn", "reason": "r", "actor": "x", "force": True},
        {"op": "rollback", "model": "../churn", "reason": "r", "actor": "x"},
    ],
)
def test_the_registry_admin_function_refuses_what_it_cannot_trust(
    store: LocalStore, event: Any
) -> None:
    outcome = admin.handle_operation(event)
    assert outcome["status"] == 400, outcome
    assert aliases(store) == {"production": 1, "staging": 3}


def test_the_registry_admin_function_moves_an_alias_for_its_caller(store: LocalStore) -> None:
    event = {
        "op": "set_alias",
        "model": "churn",
        "alias": "production",
        "version": 2,
        "expected": 1,
        "reason": "by hand",
        "actor": ARN,
    }
    assert registry_admin(event, None) == {
        "status": 200,
        "body": {"model": "churn", "aliases": {"production": 2, "staging": 3}, "actor": ARN},
    }
    assert registry_admin(event, None)["status"] == 409  # the expectation is now stale


def invoke_response(payload: bytes, function_error: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "StatusCode": 200,
        "Payload": StreamingBody(io.BytesIO(payload), len(payload)),
    }
    if function_error:
        response["FunctionError"] = function_error
    return response


@pytest.fixture
def deployed(
    store: LocalStore, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stubber]:
    """The serving function configured to invoke registry_admin, with Lambda's API stubbed.

    moto's Lambda runs functions in Docker, which the tests do not have; botocore's Stubber
    checks each call against Lambda's API model and answers it instead.
    """
    monkeypatch.setenv(admin.FUNCTION_ENV, "serverless-mlops-dev-registry_admin")
    monkeypatch.setattr(admin, "_lambda", None)
    with Stubber(admin.lambda_client()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_writes_go_to_the_registry_admin_function_when_one_is_configured(
    deployed: Stubber, store: LocalStore
) -> None:
    operation = admin.SetAlias(
        model="churn", alias="production", version=2, reason="promoted by hand", actor="token"
    )
    payload = msgspec.json.encode(operation)
    assert json.loads(payload) == {
        "op": "set_alias",
        "model": "churn",
        "alias": "production",
        "version": 2,
        "reason": "promoted by hand",
        "actor": "token",
    }
    # What the deployed function answers to exactly these bytes (run here, on the store).
    answer = msgspec.json.encode(admin.handle_operation(json.loads(payload)))
    deployed.add_response(
        "invoke",
        invoke_response(answer),
        {
            "FunctionName": "serverless-mlops-dev-registry_admin",
            "InvocationType": "RequestResponse",
            "Payload": payload,
        },
    )
    with Client(app, stage_name="local") as client:
        status, body, _ = call(
            client, "PUT", "/admin/models/churn/aliases/production", {"version": 2}, **BEARER
        )
    assert (status, body) == (200, json.loads(answer)["body"])
    assert aliases(store) == {"production": 2, "staging": 3}


def test_a_failed_registry_admin_function_is_a_502(deployed: Stubber, store: LocalStore) -> None:
    deployed.add_response(
        "invoke", invoke_response(b'{"errorMessage": "boom"}', function_error="Unhandled")
    )
    deployed.add_client_error("invoke", "AccessDeniedException", http_status_code=403)
    with Client(app, stage_name="local") as client:
        for _ in range(2):
            status, body, _ = call(client, "POST", "/admin/models/churn/rollback", {}, **BEARER)
            assert status == 502
            assert "registry admin function" in body["error"]
            assert "boom" not in body["error"]
    assert aliases(store) == {"production": 1, "staging": 3}


# The inference routes' API key ------------------------------------------------------------

ROUTE_SETTINGS = """
import json, sys
from app import app
admin_loaded = "functions.admin" in sys.modules
from chalice.deploy.swagger import CFNSwaggerGenerator
swagger = CFNSwaggerGenerator().generate_swagger(app)
print(json.dumps({
    "admin_loaded": admin_loaded,
    "routes": {
        f"{method} {path}": entry.api_key_required
        for path, methods in app.routes.items() for method, entry in methods.items()
    },
    "api_key_paths": sorted(
        path for path, methods in swagger["paths"].items()
        if any({"api_key": []} in op.get("security", []) for op in methods.values())
    ),
}))
"""


def route_settings(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_REQUIRE_API_KEY"}
    if value is not None:
        env["MLOPS_REQUIRE_API_KEY"] = value
    return subprocess.run(
        [sys.executable, "-c", ROUTE_SETTINGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_stage_can_require_an_api_key_on_the_model_routes() -> None:
    done = route_settings("1")
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)
    keyed = {route for route, required in settings["routes"].items() if required}
    assert keyed == {
        "GET /v2/models/{name}",
        "GET /v2/models/{name}/versions/{version}",
        "GET /v2/models/{name}/ready",
        "GET /v2/models/{name}/versions/{version}/ready",
        "POST /v2/models/{name}/infer",
        "POST /v2/models/{name}/versions/{version}/infer",
        "POST /models/{name}/predict",
        "POST /models/{name}/versions/{version}/predict",
    }
    assert len(settings["api_key_paths"]) == len(keyed)
    # A cold start of the model routes does not load the admin module.
    assert settings["admin_loaded"] is False


def test_no_api_key_by_default_and_a_bad_setting_stops_the_build() -> None:
    for value in (None, "0"):
        done = route_settings(value)
        assert done.returncode == 0, done.stderr
        settings = json.loads(done.stdout)
        assert not any(settings["routes"].values())
        assert settings["api_key_paths"] == []
    done = route_settings("yes")
    assert done.returncode != 0
    assert "MLOPS_REQUIRE_API_KEY must be 0 or 1, not 'yes'" in done.stderr


def test_the_local_stage_needs_no_api_key_and_signs_in_with_a_token() -> None:
    stages = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]
    assert stages["local"]["environment_variables"]["MLOPS_REQUIRE_API_KEY"] == "0"
    assert stages["local"]["environment_variables"]["MLOPS_ADMIN_AUTH"] == "token"
    assert stages["dev"]["environment_variables"]["MLOPS_ADMIN_AUTH"] == "iam"
