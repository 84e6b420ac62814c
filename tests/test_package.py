"""The deployment zip built by `make package`, invoked as Lambda would, outside the venv.

`make package` (infra/package.py) writes build/cfn/deployment.zip and the layers; these tests
build nothing and touch no network. The zip and the runtime layer are unzipped into empty
folders and a stdlib-only Python (the one the venv was made from, run with -I -S) gets those
folders alone on sys.path, as Lambda has /var/task then /opt/python: whatever imports there is
in the zip or the layer. It is then called as API Gateway calls it, ``app.app(event,
context)`` with REST proxy events, against a model trained here into a local store folder.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from app import app
from functions import inference
from shared.serving.cache import ModelCache
from shared.store.local import LocalStore
from shared.training.job import train_from_dataset
from tests.factories import classification_csv
from tests.test_serving import ROW

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
APP_ZIP = BUILD / "cfn" / "deployment.zip"
RUNTIME_LAYER_ZIP = BUILD / "cfn" / "runtime-layer.zip"
SIZES = BUILD / "sizes.json"
# The interpreter the venv was made from: with -I -S it imports only the standard library.
STDLIB_PYTHON = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
TRAINING_ONLY = ("sklearn", "scipy", "pandas")

# Runs in the isolated interpreter: argv = [JSON list of folders, events file, result file].
INVOKE = """
import json, sys
sys.path[0:0] = json.loads(sys.argv[1])
import app

class Context:  # the attributes of Lambda's context object that a handler may read
    function_name = "serverless-mlops-dev"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:serverless-mlops-dev"
    memory_limit_in_mb = 1024
    aws_request_id = "6f1a3c2e-0000-4000-8000-000000000001"
    log_group_name = "/aws/lambda/serverless-mlops-dev"
    log_stream_name = "2025/01/01/[$LATEST]0123456789abcdef"
    def get_remaining_time_in_millis(self):
        return 29000

with open(sys.argv[2]) as f:
    events = json.load(f)
responses = [app.app(event, Context()) for event in events]
with open(sys.argv[3], "w") as f:
    json.dump({
        "responses": responses,
        "modules": sorted(sys.modules),
        "sys_path": sys.path,
        "app_file": app.__file__,
    }, f)
"""


def rest_event(
    method: str,
    resource: str,
    path: str,
    path_parameters: dict[str, str] | None = None,
    body: Any = None,
) -> dict[str, Any]:
    """An API Gateway REST API (v1) Lambda proxy event, as the `api` stage sends it.

    The API's binary media type is */* (app.py), so API Gateway base64-encodes every body.
    """
    headers = {
        "Accept": "application/json",
        "Host": "abc123defg.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "pytest",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if body is not None:
        headers["Content-Type"] = "application/json"
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "a1b2c3",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "Yx8fGHdhIAMF3xA=",
            "requestTime": "01/Jan/2025:12:00:00 +0000",
            "path": f"/api{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "api",
            "domainPrefix": "abc123defg",
            "requestTimeEpoch": 1735732800000,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "pytest"},
            "domainName": "abc123defg.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123defg",
        },
        "body": None if body is None else base64.b64encode(json.dumps(body).encode()).decode(),
        "isBase64Encoded": body is not None,
    }


def response_body(response: dict[str, Any]) -> Any:
    """The JSON body of a handler's response, decoded as API Gateway decodes it."""
    body = response["body"]
    return json.loads(base64.b64decode(body) if response.get("isBase64Encoded") else body)


def _zip_is_current() -> None:
    """Fail (not skip) when the build is missing or older than the code it should contain."""
    if not APP_ZIP.is_file():
        pytest.fail(f"{APP_ZIP.relative_to(ROOT)} is missing: run `make package` first")
    sources = [ROOT / "app.py", *sorted((ROOT / "shared").rglob("*.py"))]
    sources += sorted((ROOT / "functions").rglob("*.py"))
    with zipfile.ZipFile(APP_ZIP) as archive:
        names = set(archive.namelist())
        stale = [
            str(path.relative_to(ROOT))
            for path in sources
            if (name := path.relative_to(ROOT).as_posix()) not in names
            or archive.read(name) != path.read_bytes()
        ]
    if stale:
        pytest.fail(f"{APP_ZIP.relative_to(ROOT)} is stale ({stale[:3]}...): run `make package`")


@pytest.fixture(scope="module")
def unzipped(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """/var/task (the app zip) and /opt/python (the runtime layer), in Lambda's order."""
    _zip_is_current()
    task = tmp_path_factory.mktemp("task")  # an empty folder, like /var/task
    with zipfile.ZipFile(APP_ZIP) as archive:
        archive.extractall(task)
    opt = tmp_path_factory.mktemp("opt")  # like /opt, where layers are unzipped
    with zipfile.ZipFile(RUNTIME_LAYER_ZIP) as archive:
        archive.extractall(opt)
    return [task, opt / "python"]


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    store = LocalStore(root)
    store.put("datasets/churn/data.csv", classification_csv())
    outcome = train_from_dataset(store, "datasets/churn/data.csv", trigger="test")
    assert outcome.status == "registered", outcome.reason
    return root


def invoke(unzipped: list[Path], store_root: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Call the packaged handler with each event, in one isolated interpreter."""
    work = store_root.parent / "invoke"
    work.mkdir(exist_ok=True)
    events_file, result_file = work / "events.json", work / "result.json"
    events_file.write_text(json.dumps(events))
    result = subprocess.run(
        [
            str(STDLIB_PYTHON),
            "-I",
            "-S",
            "-c",
            INVOKE,
            json.dumps([str(folder) for folder in unzipped]),
            events_file,
            result_file,
        ],
        cwd=work,
        env={"MLOPS_STORE": str(store_root), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result_file.read_text())
    return outcome


@pytest.fixture(scope="module")
def packaged(unzipped: list[Path], store_root: Path) -> dict[str, Any]:
    records = {"id": "req-1", "records": [ROW, {**ROW, "x0": None}]}
    return invoke(
        unzipped,
        store_root,
        [
            rest_event("GET", "/v2/health/live", "/v2/health/live"),
            rest_event(
                "POST",
                "/models/{name}/predict",
                "/models/churn/predict",
                {"name": "churn"},
                records,
            ),
            rest_event(
                "POST",
                "/models/{name}/predict",
                "/models/nobody/predict",
                {"name": "nobody"},
                {"records": [ROW]},
            ),
            rest_event("GET", "/admin/models/{name}", "/admin/models/churn", {"name": "churn"}),
        ],
    )


@pytest.fixture
def in_venv(store_root: Path) -> Iterator[Client]:
    """The same app, run from the source tree in this venv, over the same store."""
    # Set directly: Chalice's test client applies the dev stage's MLOPS_STORE (an S3 URL).
    inference.reset_cache(ModelCache(LocalStore(store_root)))
    with Client(app) as client:
        yield client
    inference.reset_cache()


def test_the_handler_runs_from_the_zip_and_layer_alone(
    packaged: dict[str, Any], unzipped: list[Path]
) -> None:
    assert packaged["app_file"] == str(unzipped[0] / "app.py")
    assert not [p for p in packaged["sys_path"] if "site-packages" in p or ".venv" in p]


def test_serving_loads_no_training_packages(packaged: dict[str, Any]) -> None:
    loaded = {name.split(".")[0] for name in packaged["modules"]}
    assert loaded.isdisjoint(TRAINING_ONLY)
    assert {"numpy", "onnxruntime", "msgspec"} <= loaded


def test_health_live(packaged: dict[str, Any]) -> None:
    response = packaged["responses"][0]
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert response_body(response) == {"live": True}


def test_predict_records(packaged: dict[str, Any]) -> None:
    response = packaged["responses"][1]
    body = response_body(response)
    assert response["statusCode"] == 200, body
    assert (body["model"], body["version"], body["id"]) == ("churn", 1, "req-1")
    assert response["headers"]["x-request-id"] == "req-1"
    assert len(body["predictions"]) == 2
    assert set(body["predictions"]) <= {"no", "yes"}
    for probabilities in body["probabilities"]:
        assert set(probabilities) == {"no", "yes"}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_the_zip_predicts_what_the_source_tree_predicts(
    packaged: dict[str, Any], in_venv: Client
) -> None:
    records = {"id": "req-1", "records": [ROW, {**ROW, "x0": None}]}
    expected = in_venv.http.post(
        "/models/churn/predict",
        headers={"Content-Type": "application/json"},
        body=json.dumps(records).encode(),
    )
    packaged_body = response_body(packaged["responses"][1])
    expected_body = json.loads(expected.body)
    assert packaged_body["predictions"] == expected_body["predictions"]
    for got, want in zip(
        packaged_body["probabilities"], expected_body["probabilities"], strict=True
    ):
        assert got == pytest.approx(want, abs=1e-6)


def test_unknown_model_is_a_404(packaged: dict[str, Any]) -> None:
    response = packaged["responses"][2]
    assert response["statusCode"] == 404
    assert "nobody" in response_body(response)["error"]


def test_an_admin_route_from_the_zip_refuses_an_unsigned_caller(packaged: dict[str, Any]) -> None:
    # No IAM principal in the event and no MLOPS_ADMIN_TOKEN in the environment.
    response = packaged["responses"][3]
    assert response["statusCode"] == 403
    assert "MLOPS_ADMIN_TOKEN" in response_body(response)["error"]


def test_every_function_fits_lambdas_size_limit() -> None:
    _zip_is_current()
    sizes = json.loads(SIZES.read_text())
    functions = (
        "api_handler",
        "on_dataset_uploaded",
        "check_monitoring",
        "registry_admin",
        "on_batch_uploaded",
        "score_batch_part",
        "record_batch_failure",
    )
    for name in functions:
        assert sizes["functions"][name]["unzipped_bytes"] < sizes["limit_unzipped_bytes"], name


def test_the_smoke_checks_run_without_the_callers_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deploy to an emulator or an S3-compatible store sets these; the smoke checks test
    # the package, so the build must pass all the same. The check here fails as the app
    # check did when an endpoint reached the bundled botocore.
    import os

    from infra import package

    script = tmp_path / "smoke.py"
    script.write_text(
        "import os, sys\n"
        "leaked = sorted(k for k in os.environ if k.startswith(('AWS_', 'MLOPS_')))\n"
        "sys.exit(f'leaked {leaked}' if set(leaked) - {'AWS_CONFIG_FILE', "
        "'AWS_SHARED_CREDENTIALS_FILE'} else 0)\n"
    )
    monkeypatch.setattr(package, "SMOKE", script)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "MLOPS_STORE"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    package.smoke("app", [], tmp_path / "work")  # raises BuildError if anything leaked
    # The same check given the caller's environment fails: the test can tell.
    monkeypatch.setattr(package, "smoke_environment", lambda: dict(os.environ))
    with pytest.raises(package.BuildError, match="smoke check 'app' failed"):
        package.smoke("app", [], tmp_path / "work")
