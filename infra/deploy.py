"""`make deploy STAGE=dev`: build the layers, publish what changed, record them, chalice deploy.

Run from the repository root with the project's venv: ``.venv/bin/python -m infra.deploy
--stage dev``. Steps:
1. infra/package.py builds the app zip and the runtime and training layers, trimmed and
   smoke-tested (``--reuse-build`` takes them from a previous build instead).
2. Each layer is published through S3 as ``<app>-<stage>-<kind>`` unless a version with the
   same content hash exists (infra/layers.py): a redeploy with nothing changed publishes nothing.
3. Their ARNs go into .chalice/config.json for the stage: the runtime layer for every function,
   runtime + training for the training function. requirements.txt lists nothing, so from now on
   a plain ``chalice deploy --stage <stage>`` uploads the project's code alone.
4. ``chalice package`` shows what Chalice will deploy: each function's layers are checked, and
   its code zip plus layers measured against Lambda's 250 MB (build/deploy-<stage>.json).
5. The real ``chalice deploy --stage <stage>``.
6. What Chalice does not make (infra/alerting.py): the example alarm on every model's verdict
   and, with an email in the stage's ``mlops_alerts``, the route of every decision to it.
7. The batch functions' on-failure destination (Chalice has no setting for it): what Lambda
   gives up on after its retries goes to the record_batch_failure function, as
   infra/template.json's EventInvokeConfig resources do on the CloudFormation path.

``--delete-layers`` (after ``chalice delete``) removes the stage's published layers instead,
and ``--delete-alerting`` its alarm and email route.
AWS configuration is boto3's and Chalice's usual one (credentials, region, AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from infra import alerting, layers, package, stage_config

CHALICE = [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())"]
# Chalice's names of the functions Lambda invokes asynchronously -> their on-failure
# destination; each role's lambda:InvokeFunction grant names it (infra/policy-batch*.json).
FAILURE_DESTINATIONS = {
    "on_batch_uploaded": "record_batch_failure",
    "score_batch_part": "record_batch_failure",
}
RETRIES = 2  # Lambda's default for an asynchronous invocation, said outright


def log(message: str) -> None:
    print(f"[deploy] {message}", flush=True)


def layer_zips(cfn_dir: Path) -> dict[str, layers.LayerZip]:
    found = {}
    for kind, name in package.LAYER_ZIPS.items():
        path = cfn_dir / name
        if not path.is_file():
            raise package.BuildError(
                f"{path} is missing: run `make package` (or drop --reuse-build)"
            )
        found[kind] = layers.LayerZip.read(kind, path)
    return found


def chalice_function_name(function: Mapping[str, Any]) -> str:
    """Chalice's name of a function in its template, from its handler (``app.<name>``)."""
    handler = str(function["Handler"]).removeprefix("app.")
    return "api_handler" if handler == "app" else handler


def measure_stage(
    project: Path, stage: str, zips: Mapping[str, layers.LayerZip], arns: Mapping[str, str]
) -> dict[str, Any]:
    """What `chalice deploy` will upload, from `chalice package` of the stage: every
    function's layers are the recorded ones, its zip holds no dependency, and code plus
    layers are within Lambda's limit."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out"
        command = [sys.executable, str(package.CHALICE_CLI), "--project-dir", str(project)]
        command += ["package", "--stage", stage, str(out)]
        env = {
            **os.environ,
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
        template = json.loads((out / "sam.json").read_text())
        code = package.zip_sizes(out / package.APP_ZIP)
        with zipfile.ZipFile(out / package.APP_ZIP) as archive:
            tops = {name.split("/")[0] for name in archive.namelist()}
    bundled = package.distributions_in(tops)
    if bundled:
        raise package.BuildError(f"chalice deploy's zip would bundle {sorted(bundled)}")
    layer_sizes = {kind: package.zip_sizes(z.path) for kind, z in zips.items()}
    by_arn = {arn: kind for kind, arn in arns.items()}
    functions: dict[str, Any] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        name = chalice_function_name(properties)
        wanted = package.FUNCTION_LAYERS.get(name, package.DEFAULT_LAYERS)
        kinds = [by_arn.get(arn, arn) for arn in properties.get("Layers", [])]
        if kinds != list(wanted):
            raise package.BuildError(f"{name} would deploy with layers {kinds}, not {wanted}")
        unzipped = code["unzipped_bytes"] + sum(layer_sizes[k]["unzipped_bytes"] for k in kinds)
        functions[name] = {
            "layers": kinds,
            "unzipped_bytes": unzipped,
            "unzipped_mib": round(unzipped / package.MIB, 1),
            "headroom_mib": round((package.LIMIT_UNZIPPED - unzipped) / package.MIB, 1),
        }
    sizes = {
        "stage": stage,
        "code_zip": {k: code[k] for k in ("unzipped_mib", "zipped_mib", "files")},
        "layers": {
            kind: {"arn": arns[kind], **{k: s[k] for k in ("unzipped_mib", "zipped_mib")}}
            for kind, s in layer_sizes.items()
        },
        "functions": functions,
    }
    over = [n for n, f in functions.items() if f["unzipped_bytes"] >= package.LIMIT_UNZIPPED]
    if over:
        raise package.BuildError(f"over Lambda's 250 MiB with layers: {over} ({functions})")
    if code["zipped_bytes"] > package.DIRECT_UPLOAD_LIMIT:
        raise package.BuildError(f"the code zip is {code['zipped_mib']} MiB, over 50 MiB")
    return sizes


def deploy(args: argparse.Namespace) -> None:
    project: Path = args.project_dir.resolve()
    build_dir: Path = args.build_dir.resolve()
    config_path = project / ".chalice" / "config.json"
    config = stage_config.load(config_path)
    alerts = stage_config.alert_settings(config, args.stage)  # a bad setting fails first
    bucket = args.artifacts_bucket or stage_config.stage_environment(config, args.stage).get(
        "MLOPS_BUCKET"
    )
    if not bucket:
        raise package.BuildError("no MLOPS_BUCKET for the stage: pass --artifacts-bucket")
    if not args.reuse_build:
        package.build(build_dir)
    zips = layer_zips(build_dir / "cfn")
    package.check_requirements_empty(project)
    package.refresh_vendor(project)

    session = boto3.session.Session()
    lambda_client, s3_client = session.client("lambda"), session.client("s3")
    arns = {}
    for kind, layer in zips.items():
        name = layers.layer_name(config["app_name"], args.stage, kind)
        result = layers.ensure_layer(lambda_client, s3_client, bucket, name, layer)
        verb = "reused" if result.reused else "published"
        log(f"{verb} {result.arn} ({layer.path.name}, sha256 {layer.sha256[:12]})")
        arns[kind] = result.arn
    updated = stage_config.with_layers(
        config, args.stage, arns, package.DEFAULT_LAYERS, package.FUNCTION_LAYERS
    )
    if updated != config:
        stage_config.save(config_path, updated)
        log(f"recorded the layers for stage {args.stage} in {config_path}")

    sizes = measure_stage(project, args.stage, zips, arns)
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / f"deploy-{args.stage}.json").write_text(json.dumps(sizes, indent=2) + "\n")
    for name, function in sizes["functions"].items():
        log(
            f"{name}: code + {'+'.join(function['layers'])} = {function['unzipped_mib']} MiB "
            f"unzipped ({function['headroom_mib']} MiB under the limit)"
        )
    log(f"chalice deploy --stage {args.stage}")
    subprocess.run(
        [*CHALICE, "--project-dir", str(project), "deploy", "--stage", args.stage],
        cwd=project,
        check=True,
    )
    # Batch failures first: they need no permission beyond Lambda's, alerting's may fail.
    set_failure_destinations(lambda_client, config["app_name"], args.stage)
    apply_alerting(session, project, config["app_name"], args.stage, alerts)


def apply_alerting(
    session: Any, project: Path, app: str, stage: str, settings: stage_config.AlertSettings
) -> None:
    """The stage's alarm and email route as `settings` say (infra/alerting.py)."""
    template = json.loads((project / "infra" / "template.json").read_text())
    names = alerting.AlertingNames.of(app, stage)
    clients = alerting.AlertingClients.of(session)
    for line in alerting.ensure_alerting(clients, names, settings, template):
        log(line)


def set_failure_destinations(
    lambda_client: Any, app_name: str, stage: str, *, wait_seconds: float = 5.0
) -> dict[str, str]:
    """Point each asynchronously invoked function's failures at its destination function;
    {function: destination ARN}. Retried a few times: a role Chalice has just made may not
    yet be seen by Lambda's check that it may invoke the destination."""
    wired = {}
    for function, destination in FAILURE_DESTINATIONS.items():
        found = lambda_client.get_function(FunctionName=f"{app_name}-{stage}-{destination}")
        arn = found["Configuration"]["FunctionArn"]
        for attempt in range(6):
            try:
                lambda_client.put_function_event_invoke_config(
                    FunctionName=f"{app_name}-{stage}-{function}",
                    MaximumRetryAttempts=RETRIES,
                    DestinationConfig={"OnFailure": {"Destination": arn}},
                )
                break
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code")
                if code != "InvalidParameterValueException" or attempt == 5:
                    raise
                time.sleep(wait_seconds)
        log(f"{function}: failures after {RETRIES} retries go to {destination}")
        wired[function] = arn
    return wired


def delete_layers(args: argparse.Namespace) -> None:
    """Every published version of the stage's layers, and their record in the config."""
    project: Path = args.project_dir.resolve()
    config_path = project / ".chalice" / "config.json"
    config = stage_config.load(config_path)
    lambda_client = boto3.session.Session().client("lambda")
    for kind in package.LAYER_ZIPS:
        name = layers.layer_name(config["app_name"], args.stage, kind)
        deleted = layers.delete_layer(lambda_client, name)
        log(f"deleted {name} versions {deleted or 'none'}")
    updated = stage_config.without_layers(config, args.stage)
    if updated != config:
        stage_config.save(config_path, updated)
        log(f"removed the layers of stage {args.stage} from {config_path}")


def delete_alerting(args: argparse.Namespace) -> None:
    """The stage's alarm, rule and topic (Chalice's delete leaves them)."""
    project: Path = args.project_dir.resolve()
    config = stage_config.load(project / ".chalice" / "config.json")
    off = stage_config.AlertSettings(verdict_alarm=False, email="")
    apply_alerting(boto3.session.Session(), project, config["app_name"], args.stage, off)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--stage", default="dev", help="the Chalice stage (default dev)")
    parser.add_argument("--project-dir", type=Path, default=package.ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--build-dir", type=Path, default=package.ROOT / "build")
    parser.add_argument(
        "--reuse-build", action="store_true", help="use the layers of a previous make package"
    )
    parser.add_argument(
        "--artifacts-bucket",
        help="where layer zips pass through (default: the stage's MLOPS_BUCKET)",
    )
    parser.add_argument(
        "--delete-layers", action="store_true", help="delete the stage's published layers"
    )
    parser.add_argument(
        "--delete-alerting",
        action="store_true",
        help="delete the stage's alarm and email route",
    )
    args = parser.parse_args(argv)
    try:
        if args.delete_layers:
            delete_layers(args)
        if args.delete_alerting:
            delete_alerting(args)
        if not (args.delete_layers or args.delete_alerting):
            deploy(args)
    except (
        package.BuildError,
        KeyError,
        subprocess.CalledProcessError,
        BotoCoreError,
        ClientError,
    ) as err:
        output = getattr(err, "stderr", None)
        if output:
            print(output.decode() if isinstance(output, bytes) else output, file=sys.stderr)
        print(f"deploy: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
