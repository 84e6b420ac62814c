"""`make deploy` for real, against an AWS emulator: deploy, read back, invoke as Lambda, delete.

moto's standalone server (tests/aws_emulator.py, with the mends it lists) listens on a loopback
port and stands in for AWS. infra/deploy.py runs twice on a copy of the project, taking the
layers from `make package` (nothing is downloaded here): it publishes the layers through S3,
records them in the copy's .chalice/config.json and runs the real `chalice deploy`. Then what
was deployed is read back from the emulator (GetFunction's code location, GetLayerVersion's
content), unzipped into empty folders as Lambda does (/var/task, /opt), and each handler is
invoked in a stdlib-only Python with only those folders on sys.path, with the events AWS sends:
an S3 put of a dataset whose key has a space, API Gateway REST proxy requests to the V2 and
records routes, and the hourly scheduled event. The handlers use the deployed environment and
the emulator's S3. Last, `chalice delete` and `--delete-layers` remove what was made.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from infra import package
from tests.factories import classification_csv
from tests.test_package import STDLIB_PYTHON, TRAINING_ONLY, response_body, rest_event
from tests.test_serving import ROW, v2_inputs

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parent.parent
CFN = ROOT / "build" / "cfn"
BUCKET = "serverless-mlops-data"  # the dev stage's MLOPS_BUCKET
REGION = "us-east-1"
APP = "serverless-mlops"
FUNCTIONS = {  # Chalice's function name -> the deployed Lambda function
    "api_handler": f"{APP}-dev",
    "on_dataset_uploaded": f"{APP}-dev-on_dataset_uploaded",
    "check_monitoring": f"{APP}-dev-check_monitoring",
    "on_batch_uploaded": f"{APP}-dev-on_batch_uploaded",
    "score_batch_part": f"{APP}-dev-score_batch_part",
    "record_batch_failure": f"{APP}-dev-record_batch_failure",
}
DATASET_KEY = "datasets/churn/first upload.csv"
PROJECT_FILES = ("app.py", "requirements.txt", ".chalice/config.json")
PROJECT_DIRS = ("shared", "functions", "infra")

# Runs in the isolated interpreter: argv = [JSON folders, handler, events file, result file].
# Lambda imports the handler's module once per container and calls it once per event.
INVOKE = """
import importlib, json, sys
sys.path[0:0] = json.loads(sys.argv[1])
module_name, function_name = sys.argv[2].rsplit(".", 1)
handler = getattr(importlib.import_module(module_name), function_name)

class Context:
    function_name = "handler"
    aws_request_id = "6f1a3c2e-0000-4000-8000-000000000001"
    memory_limit_in_mb = 1024
    def get_remaining_time_in_millis(self):
        return 29000

with open(sys.argv[3]) as f:
    events = json.load(f)
responses = [handler(event, Context()) for event in events]
if module_name == "app" and function_name == "app":
    from functions import inference
    inference.reset_cache()  # writes the buffered captures (a container's later flush)
with open(sys.argv[4], "w") as f:
    json.dump({"responses": responses, "modules": sorted(sys.modules)}, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The mended moto server on a free loopback port, for this module."""
    for name in package.LAYER_ZIPS.values():
        if not (CFN / name).is_file():
            pytest.fail(f"{CFN / name} is missing: run `make package` first")
    port = _free_port()
    log = (tmp_path_factory.mktemp("emulator") / "moto.log").open("w")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "aws_emulator.py"), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"the emulator did not start on port {port}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def aws_env(endpoint: str) -> dict[str, str]:
    """The environment a deployer has: the emulator as every AWS endpoint, dummy keys."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {
        **keep,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "PYTHONPATH": str(ROOT),
    }


def client(service: str, endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project to deploy from: deploying writes its .chalice/config.json."""
    target = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)
    for name in PROJECT_DIRS:
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def run_deploy(project: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.deploy",
            "--stage",
            "dev",
            "--project-dir",
            str(project),
            "--build-dir",
            str(ROOT / "build"),
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def deploys(project: Path, aws_env: dict[str, str], endpoint: str) -> list[str]:
    """The bucket made first, then `make deploy` twice with nothing changed in between."""
    client("s3", endpoint).create_bucket(Bucket=BUCKET)
    return [run_deploy(project, aws_env, "--reuse-build") for _ in range(2)]


def download(url: str, target: Path) -> Path:
    """Unzip what `url` serves into `target` (an empty folder), as Lambda unpacks code."""
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(target)
    return target


@pytest.fixture(scope="module")
def deployed(
    deploys: list[str], endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """Each function as the emulator holds it: configuration, and its code and layers unzipped
    into an empty /var/task and /opt of its own."""
    lam = client("lambda", endpoint)
    functions = {}
    for name, function_name in FUNCTIONS.items():
        found = lam.get_function(FunctionName=function_name)
        root = tmp_path_factory.mktemp(name)
        task = download(found["Code"]["Location"], root / "var" / "task")
        layers = []
        for layer in found["Configuration"].get("Layers", []):
            arn = layer["Arn"]
            layer_name, number = arn.split(":")[-2:]
            content = lam.get_layer_version(LayerName=layer_name, VersionNumber=int(number))
            layers.append(content)
            download(content["Content"]["Location"], root / "opt")  # every layer into /opt
        functions[name] = {
            "configuration": found["Configuration"],
            "layers": layers,
            "task": task,
            "opt": root / "opt",
        }
    return functions


def unzipped_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def invoke(
    function: dict[str, Any], events: list[dict[str, Any]], endpoint: str, work: Path
) -> dict[str, Any]:
    """Call the deployed handler with each event in a stdlib-only Python, as Lambda would."""
    configuration = function["configuration"]
    work.mkdir(parents=True, exist_ok=True)
    events_file, result_file = work / "events.json", work / "result.json"
    events_file.write_text(json.dumps(events))
    env = {
        **configuration.get("Environment", {}).get("Variables", {}),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
    }
    folders = [str(function["task"]), str(function["opt"] / "python")]
    result = subprocess.run(
        [
            str(STDLIB_PYTHON),
            "-I",
            "-S",
            "-c",
            INVOKE,
            json.dumps(folders),
            configuration["Handler"],
            str(events_file),
            str(result_file),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome: dict[str, Any] = json.loads(result_file.read_text())
    return outcome


def s3_put_event(key: str) -> dict[str, Any]:
    """An S3 ObjectCreated:Put notification; S3 URL-encodes the key (a space is '+')."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2026-11-30T11:59:58.123Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "203.0.113.7"},
                "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "serverless-mlops-dev-on_dataset_uploaded",
                    "bucket": {
                        "name": BUCKET,
                        "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                        "arn": f"arn:aws:s3:::{BUCKET}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": 1024,
                        "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
        ]
    }


def scheduled_event(at: datetime) -> dict[str, Any]:
    """The EventBridge event of an hourly schedule rule."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:123456789012:rule/{APP}-dev-check_monitoring"],
        "detail": {},
    }


def test_a_redeploy_with_nothing_changed_publishes_no_layer(
    deploys: list[str], endpoint: str
) -> None:
    first, second = deploys
    assert first.count("[deploy] published arn:") == 2, first
    assert second.count("[deploy] reused arn:") == 2, second
    assert "published" not in second
    lam = client("lambda", endpoint)
    for kind in package.LAYER_ZIPS:
        versions = lam.list_layer_versions(LayerName=f"{APP}-dev-{kind}")["LayerVersions"]
        assert [v["Version"] for v in versions] == [1], kind
    # The layer zips passed through the bucket and are gone, every version of them.
    listed = client("s3", endpoint).list_object_versions(Bucket=BUCKET, Prefix="deploy/")
    assert not listed.get("Versions")
    assert not listed.get("DeleteMarkers")


def test_the_stage_gets_the_example_alarm_chalice_does_not_make(
    deploys: list[str], endpoint: str
) -> None:
    # The dev stage's mlops_alerts: the alarm on every model's verdict, no email route.
    (alarm,) = client("cloudwatch", endpoint).describe_alarms()["MetricAlarms"]
    assert alarm["AlarmName"] == f"{APP}-dev-verdict"
    assert "GROUP BY Model" in alarm["Metrics"][0]["Expression"]
    assert all("the alarm" in d and "watches every model" in d for d in deploys)
    assert client("sns", endpoint).list_topics()["Topics"] == []


def test_the_stage_records_each_functions_layers(project: Path, deploys: list[str]) -> None:
    stage = json.loads((project / ".chalice" / "config.json").read_text())["stages"]["dev"]
    runtime, training = (
        f"arn:aws:lambda:{REGION}:123456789012:layer:{APP}-dev-{k}:1"
        for k in ("runtime", "training")
    )
    assert stage["layers"] == [runtime]
    assert stage["lambda_functions"]["on_dataset_uploaded"]["layers"] == [runtime, training]


def test_each_function_is_code_alone_plus_its_layers_within_the_limit(
    deployed: dict[str, dict[str, Any]],
) -> None:
    built = {kind: package.zip_sizes(CFN / name) for kind, name in package.LAYER_ZIPS.items()}
    for name, function in deployed.items():
        kinds = [c["LayerVersionArn"].split(":")[-2].rsplit("-", 1)[1] for c in function["layers"]]
        assert kinds == list(package.FUNCTION_LAYERS.get(name, package.DEFAULT_LAYERS)), name
        for kind, content in zip(kinds, function["layers"], strict=True):
            assert content["Content"]["CodeSize"] == built[kind]["zipped_bytes"]
        task = function["task"]
        assert (task / "app.py").read_bytes() == (ROOT / "app.py").read_bytes()
        assert not list(task.glob("*.dist-info")), f"{name}'s zip bundles dependencies"
        assert unzipped_bytes(task) < 2 * package.MIB
        total = unzipped_bytes(task) + unzipped_bytes(function["opt"])
        assert total < package.LIMIT_UNZIPPED, (name, total / package.MIB)


def test_the_api_takes_every_body_as_binary_and_s3_and_schedule_are_wired(
    deploys: list[str], endpoint: str
) -> None:
    (api,) = client("apigateway", endpoint).get_rest_apis()["items"]
    assert api["name"] == APP
    assert api["binaryMediaTypes"] == ["*/*"]
    notification = client("s3", endpoint).get_bucket_notification_configuration(Bucket=BUCKET)
    subscriptions = {
        s["LambdaFunctionArn"].split(":")[-1]: s
        for s in notification["LambdaFunctionConfigurations"]
    }
    assert set(subscriptions) == {FUNCTIONS["on_dataset_uploaded"], FUNCTIONS["on_batch_uploaded"]}
    # A batch input may end in .csv, .csv.gz, .jsonl or .jsonl.gz: one suffix cannot say so.
    for function, wanted in (
        ("on_dataset_uploaded", {"prefix": "datasets/", "suffix": ".csv"}),
        ("on_batch_uploaded", {"prefix": "batch/"}),
    ):
        subscription = subscriptions[FUNCTIONS[function]]
        assert subscription["Events"] == ["s3:ObjectCreated:*"]
        filters = subscription["Filter"]["Key"]["FilterRules"]
        assert {r["Name"].lower(): r["Value"] for r in filters} == wanted
    (rule,) = client("events", endpoint).list_rules()["Rules"]
    assert rule["ScheduleExpression"] == "rate(1 hour)"


@pytest.fixture(scope="module")
def trained(
    deployed: dict[str, dict[str, Any]], endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The deployed training function, called with the S3 event of a dataset upload."""
    s3 = client("s3", endpoint)
    spec = {"monitoring": {"capture": {"batch_rows": 1}}}  # captures written at once
    s3.put_object(Bucket=BUCKET, Key="specs/churn.json", Body=json.dumps(spec).encode())
    s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=classification_csv())
    work = tmp_path_factory.mktemp("invoke-training")
    return invoke(deployed["on_dataset_uploaded"], [s3_put_event(DATASET_KEY)], endpoint, work)


def test_training_from_an_s3_event_registers_a_version(
    trained: dict[str, Any], endpoint: str
) -> None:
    assert trained["responses"] == [None]
    assert {"sklearn", "skl2onnx"} <= {m.split(".")[0] for m in trained["modules"]}
    s3 = client("s3", endpoint)
    registry = json.loads(
        s3.get_object(Bucket=BUCKET, Key="models/churn/registry.json")["Body"].read()
    )
    (version,) = registry["versions"]
    assert (version["status"], version["data_key"]) == ("ready", DATASET_KEY)
    assert registry["aliases"]["production"] == 1


@pytest.fixture(scope="module")
def served(
    trained: dict[str, Any],
    deployed: dict[str, dict[str, Any]],
    endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    events = [
        rest_event(
            "POST",
            "/v2/models/{name}/infer",
            "/v2/models/churn/infer",
            {"name": "churn"},
            {"id": "42", "inputs": v2_inputs(ROW, 3)},
        ),
        rest_event(
            "POST",
            "/models/{name}/predict",
            "/models/churn/predict",
            {"name": "churn"},
            {"id": "req-1", "records": [ROW, {**ROW, "x0": None}]},
        ),
    ]
    work = tmp_path_factory.mktemp("invoke-api")
    return invoke(deployed["api_handler"], events, endpoint, work)


def test_the_api_answers_both_protocols(served: dict[str, Any]) -> None:
    v2, records = served["responses"]
    v2_body, records_body = response_body(v2), response_body(records)
    assert v2["statusCode"] == 200, v2_body
    assert (v2_body["model_name"], v2_body["model_version"], v2_body["id"]) == ("churn", "1", "42")
    label = v2_body["outputs"][0]
    assert label["shape"] == [3]
    assert set(label["data"]) <= {"no", "yes"}
    assert records["statusCode"] == 200, records_body
    assert (records_body["version"], records_body["id"]) == (1, "req-1")
    assert len(records_body["predictions"]) == 2
    assert v2["isBase64Encoded"]
    assert base64.b64decode(v2["body"])
    assert {m.split(".")[0] for m in served["modules"]}.isdisjoint(TRAINING_ONLY)


def test_the_hourly_check_reports_on_the_captured_traffic(
    served: dict[str, Any],
    deployed: dict[str, dict[str, Any]],
    endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The next hour's run checks the window the requests above fell in.
    at = datetime.now(UTC).replace(minute=0, second=5, microsecond=0) + timedelta(hours=1)
    work = tmp_path_factory.mktemp("invoke-monitoring")
    outcome = invoke(deployed["check_monitoring"], [scheduled_event(at)], endpoint, work)
    assert outcome["responses"] == [None]
    assert {m.split(".")[0] for m in outcome["modules"]}.isdisjoint(TRAINING_ONLY)
    window = f"{at - timedelta(hours=1):%Y-%m-%dT%H}-1h"
    report = client("s3", endpoint).get_object(Bucket=BUCKET, Key=f"monitoring/churn/{window}.json")
    assert json.loads(report["Body"].read())["rows"] == 5  # 3 V2 rows + 2 records


def test_the_batch_functions_send_what_lambda_gives_up_on_to_the_failure_recorder(
    deploys: list[str], endpoint: str
) -> None:
    lam = client("lambda", endpoint)
    recorder = lam.get_function(FunctionName=FUNCTIONS["record_batch_failure"])
    for function in ("on_batch_uploaded", "score_batch_part"):
        config = lam.get_function_event_invoke_config(FunctionName=FUNCTIONS[function])
        assert config["MaximumRetryAttempts"] == 2
        destination = config["DestinationConfig"]["OnFailure"]["Destination"]
        assert destination == recorder["Configuration"]["FunctionArn"]


def json_lines(csv_body: bytes) -> bytes:
    """The rows of a CSV as JSON Lines: numbers as numbers, an empty cell as null."""
    header, *rows = [line.split(",") for line in csv_body.decode().splitlines()]

    def value(name: str, cell: str) -> str | float | None:
        if cell == "":
            return None
        return cell if name in ("region", "plan", "target") else float(cell)

    return "\n".join(
        json.dumps({n: value(n, c) for n, c in zip(header, row, strict=True)}) for row in rows
    ).encode()


def test_a_batch_upload_is_scored_by_the_deployed_functions(
    trained: dict[str, Any],
    deployed: dict[str, dict[str, Any]],
    endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    s3 = client("s3", endpoint)
    rows = classification_csv(120, seed=5).decode().splitlines()
    body = "\n".join(f"{i},{line}" for i, line in enumerate(rows)).replace("0,", "id,", 1)
    key, gz_key = "batch/churn/input/week 49.csv", "batch/churn/input/week 50.jsonl.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    s3.put_object(
        Bucket=BUCKET, Key=gz_key, Body=gzip.compress(json_lines(classification_csv(40, seed=6)))
    )
    work = tmp_path_factory.mktemp("invoke-batch")
    events = [s3_put_event(key), s3_put_event(gz_key)]
    started = invoke(deployed["on_batch_uploaded"], events, endpoint, work)
    assert started["responses"] == [None, None]
    assert {m.split(".")[0] for m in started["modules"]}.isdisjoint(TRAINING_ONLY)
    parts = []
    for name in ("week 49", "week 50"):
        where = f"batch/churn/output/{name}/job.json"
        job = json.loads(s3.get_object(Bucket=BUCKET, Key=where)["Body"].read())
        parts += [{"job": where, "part": i} for i in range(len(job["parts"]))]
    # Lambda's part of the fan-out, played here: one asynchronous event per part, and the
    # first delivered twice.
    scored = invoke(deployed["score_batch_part"], [parts[0], *parts], endpoint, work / "parts")
    assert [r["complete"] for r in scored["responses"]][-1] is True
    for name, rows_scored in (("week 49", 120), ("week 50", 40)):
        manifest = json.loads(
            s3.get_object(Bucket=BUCKET, Key=f"batch/churn/output/{name}/manifest.json")[
                "Body"
            ].read()
        )
        assert (manifest["version"], manifest["rows"], manifest["rejected"]) == (1, rows_scored, 0)
    assert {m.split(".")[0] for m in scored["modules"]}.isdisjoint(TRAINING_ONLY)


def test_the_failure_recorder_records_a_part_lambda_gave_up_on(
    deployed: dict[str, dict[str, Any]],
    endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    s3 = client("s3", endpoint)
    job = {"job": "batch/churn/output/week 51/job.json", "part": 0}
    record = {  # Lambda's invocation record for an on-failure destination
        "version": "1.0",
        "timestamp": "2026-12-07T03:12:09.568Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-4d1e-8880-a18cdf61200e",
            "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:"
            f"{FUNCTIONS['score_batch_part']}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": job,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorType": "MemoryError", "errorMessage": ""},
    }
    work = tmp_path_factory.mktemp("invoke-batch-failure")
    outcome = invoke(deployed["record_batch_failure"], [record], endpoint, work)
    assert outcome["responses"] == [["churn/week 51"]]
    failure = json.loads(
        s3.get_object(Bucket=BUCKET, Key="batch/churn/output/week 51/failed/00000.json")[
            "Body"
        ].read()
    )
    assert (failure["part"], failure["condition"], failure["attempts"]) == (
        0,
        "RetriesExhausted",
        3,
    )


def test_chalice_delete_leaves_the_bucket_and_layers_then_those_go_too(
    served: dict[str, Any],
    project: Path,
    aws_env: dict[str, str],
    endpoint: str,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from chalice.cli import main; sys.exit(main())",
            "--project-dir",
            str(project),
            "delete",
            "--stage",
            "dev",
        ],
        cwd=project,
        env=aws_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lam, s3 = client("lambda", endpoint), client("s3", endpoint)
    assert lam.list_functions()["Functions"] == []
    assert client("apigateway", endpoint).get_rest_apis()["items"] == []
    assert client("events", endpoint).list_rules()["Rules"] == []
    roles = client("iam", endpoint).list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith(APP)]
    notification = s3.get_bucket_notification_configuration(Bucket=BUCKET)
    assert not notification.get("LambdaFunctionConfigurations")
    # What it leaves: the data bucket with everything in it, and the published layers.
    assert s3.head_object(Bucket=BUCKET, Key="models/churn/registry.json")
    assert len(lam.list_layers()["Layers"]) == 2

    assert client("cloudwatch", endpoint).describe_alarms()["MetricAlarms"]  # it stays too

    output = run_deploy(project, aws_env, "--delete-layers", "--delete-alerting")
    assert "deleted serverless-mlops-dev-runtime versions [1]" in output
    assert f"deleted the alarm {APP}-dev-verdict" in output
    assert client("cloudwatch", endpoint).describe_alarms()["MetricAlarms"] == []
    assert lam.list_layers()["Layers"] == []
    stage = json.loads((project / ".chalice" / "config.json").read_text())["stages"]["dev"]
    assert "layers" not in stage
    # Other per-function settings (the serving function's MLOPS_ADMIN_FUNCTION) stay.
    assert all("layers" not in f for f in stage.get("lambda_functions", {}).values())
