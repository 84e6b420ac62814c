"""Build the AWS deployment: a CloudFormation (SAM) template, the app zip and two layers.

Run from the repository root with the project's venv: ``.venv/bin/python infra/package.py
[--out build]`` (``make package`` does). Everything lands in ``<out>/cfn``: ``sam.json``,
``deployment.zip``, ``runtime-layer.zip`` and ``training-layer.zip``, ready for ``aws
cloudformation package`` and ``deploy``; ``<out>/sizes.json`` records what each function weighs.
``make deploy`` (infra/deploy.py) publishes the same two layers for ``chalice deploy``.

One Chalice app is one zip shared by every function, and AWS caps each function at 250 MB
unzipped, code plus layers. So the zip holds the project's code alone (what `chalice deploy`
uploads on every code change: well under the 50 MB direct-upload limit), every function gets
the runtime layer (numpy, onnxruntime, msgspec, boto3) and the training function also gets the
training layer (scikit-learn, scipy, skl2onnx, onnx, ...). Even so, the training function fits
only once tests, type stubs, C headers, unused botocore service models and debug symbols are
trimmed; the build fails if a function reaches the limit.

Steps, each a function below:
1. The layers' requirements: pyproject.toml's runtime dependencies and everything they pull in,
   then the training extra's on top, pinned from constraints.txt (the one place versions live).
   requirements.txt (Chalice's) lists nothing, so no dependency lands in the app zip.
2. vendor/: links to shared/ and functions/ (Chalice zips vendor/ but not top-level packages;
   links, so that a later plain `chalice deploy` zips the current code).
3. `chalice package` (through infra/chalice_cli.py, which handles @app.on_s3_event), merging
   infra/template.json; checks the zip holds no distribution.
4. The app zip, trimmed and rewritten.
5. The layers: the pinned distributions as manylinux wheels for CPython 3.12, trimmed and
   zipped reproducibly (the same content gives the same bytes, hence the same hash).
6. sizes.json.
7. Checks: the template wires the layers, roles and bucket as intended, the admin routes are
   IAM-authorized and only the registry_admin role writes the registry; every dependency of
   every packaged distribution is packaged; a stdlib-only Python imports the app from the
   unzipped zip and runtime layer without scikit-learn, and trains and exports models with the
   training layer added; no function is at or over the size limit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"
VENDOR = ROOT / "vendor"
VENDORED_PACKAGES = ("shared", "functions")
MERGE_TEMPLATE = INFRA / "template.json"
CHALICE_CLI = INFRA / "chalice_cli.py"
SMOKE = INFRA / "smoke.py"
STAGE = "dev"

# Logical ids in the template: Chalice's names for the functions (CamelCase of the
# function names), and ours for the layer and the bucket (infra/template.json).
SERVING_FUNCTION = "APIHandler"
TRAINING_FUNCTION = "OnDatasetUploaded"
MONITORING_FUNCTION = "CheckMonitoring"
ADMIN_FUNCTION = "RegistryAdmin"
# The batch functions, invoked asynchronously, and their on-failure destination.
BATCH_FUNCTIONS = ("OnBatchUploaded", "ScoreBatchPart")
BATCH_FAILURE_FUNCTION = "RecordBatchFailure"
REST_API = "RestAPI"
LAYER_RESOURCE = "TrainingLayer"
RUNTIME_LAYER_RESOURCE = "RuntimeLayer"
BUCKET_RESOURCE = "DataBucket"
APP_ZIP = "deployment.zip"
LAYER_ZIP = "training-layer.zip"
RUNTIME_LAYER_ZIP = "runtime-layer.zip"

# The layers each function gets, in Lambda's order (later layers overlay earlier ones; none
# overlap here). Chalice's function names; a function not listed gets DEFAULT_LAYERS.
DEFAULT_LAYERS = ("runtime",)
FUNCTION_LAYERS = {"on_dataset_uploaded": ("runtime", "training")}
LAYER_ZIPS = {"runtime": RUNTIME_LAYER_ZIP, "training": LAYER_ZIP}
LAYER_RESOURCES = {"runtime": RUNTIME_LAYER_RESOURCE, "training": LAYER_RESOURCE}

# The Lambda runtime: CPython 3.12 on Amazon Linux 2023 (glibc 2.34), x86_64 (onnxruntime
# aborts on arm64). pip takes --platform tags literally, so the layer build lists every
# manylinux tag the runtime accepts: with manylinux2014 alone, a wheel tagged only
# manylinux_2_28 would be reported as missing.
PYTHON_VERSION = "3.12"
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 35)] + ["manylinux2014_x86_64"]

# AWS: code plus layers at most 250 MB unzipped (262,144,000 bytes, i.e. 250 MiB); a zip
# uploaded directly (not through S3) at most 50 MB.
LIMIT_UNZIPPED = 262_144_000
DIRECT_UPLOAD_LIMIT = 50 * 2**20
MIB = 2**20

# Trimming: nothing here is imported at run time. "test" is onnx's backend conformance suite
# (15 MB of model files under onnx/backend/test) and joblib's tests.
TRIM_DIRS = frozenset({"tests", "test", "__pycache__"})
TRIM_SUFFIXES = (".pyi", ".pxd", ".pyx", ".h", ".hpp", ".c", ".cpp")
# botocore ships the models of ~400 AWS services (~20 MB unzipped); the code calls only S3,
# and Lambda (the admin routes invoke the registry_admin function). STS stays for credential
# setups that assume a role (not Lambda's own, which uses env vars).
BOTOCORE_SERVICES = frozenset({"s3", "lambda", "sts", "events"})
# onnxruntime's model-optimisation tools (pure Python, ~10 MB); `import onnxruntime` and
# InferenceSession never load them.
ONNXRUNTIME_TOOLS = ("transformers", "tools", "quantization")


class BuildError(Exception):
    """A build step failed; the message says what to do."""


def log(message: str) -> None:
    print(f"[package] {message}", flush=True)


# 1. requirements.txt ------------------------------------------------------------------


def read_pins() -> dict[NormalizedName, str]:
    """constraints.txt as {normalized name: version}."""
    pins: dict[NormalizedName, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def declared_dependencies() -> tuple[list[str], list[str]]:
    """Names of pyproject.toml's runtime dependencies and of its `training` extra."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    runtime = [Requirement(r).name for r in project["dependencies"]]
    training = [Requirement(r).name for r in project["optional-dependencies"]["training"]]
    return runtime, training


def closure(roots: Iterable[str]) -> set[NormalizedName]:
    """`roots` and everything they require, from the metadata installed in this venv.

    The venv is installed from constraints.txt on Linux x86_64 with CPython 3.12, so its
    metadata, markers included, are those of the Lambda runtime.
    """
    seen: set[NormalizedName] = set()
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def pinned(names: Iterable[NormalizedName], pins: dict[NormalizedName, str]) -> list[str]:
    """``name==version`` lines, sorted; every name must be pinned and installed at its pin."""
    lines = []
    for name in sorted(names):
        if name not in pins:
            raise BuildError(f"{name} is needed at run time but not pinned in constraints.txt")
        installed = metadata.version(name)
        if installed != pins[name]:
            raise BuildError(
                f"{name} is {installed} in the venv but pinned to {pins[name]}: run `make install`"
            )
        lines.append(f"{name}=={pins[name]}")
    return lines


def check_requirements_empty(project: Path = ROOT) -> None:
    """Chalice's requirements.txt must list nothing: dependencies live in the layers."""
    path = project / "requirements.txt"
    listed = [
        line
        for line in (path.read_text().splitlines() if path.is_file() else [])
        if line.split("#", 1)[0].strip()
    ]
    if listed:
        raise BuildError(
            f"{path} lists {listed[:3]}: Chalice would put them in the app zip; dependencies "
            "belong in pyproject.toml and constraints.txt, from which the layers are built"
        )


# 2. vendor/ ---------------------------------------------------------------------------


def refresh_vendor(project: Path = ROOT) -> None:
    """vendor/<package> as links to the project's own packages (Chalice follows them)."""
    vendor = project / "vendor"
    shutil.rmtree(vendor, ignore_errors=True)  # removes links, never what they point to
    vendor.mkdir()
    for package in VENDORED_PACKAGES:
        (vendor / package).symlink_to(Path("..") / package, target_is_directory=True)


# 3. chalice package -------------------------------------------------------------------


def chalice_package(cfn_dir: Path) -> None:
    shutil.rmtree(cfn_dir, ignore_errors=True)
    # Chalice caches each zip in .chalice/deployments (~60 MB, one per code change) and on
    # reuse does not repeat its dropped-dependency warning; a fresh build always shows it.
    shutil.rmtree(ROOT / ".chalice" / "deployments", ignore_errors=True)
    # Chalice wants a region to name the partition in ARNs; it sends nothing to AWS here.
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    command = [
        sys.executable,
        str(CHALICE_CLI),
        "package",
        "--stage",
        STAGE,
        "--pkg-format",
        "cloudformation",
        "--merge-template",
        str(MERGE_TEMPLATE),
        str(cfn_dir),
    ]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    for line in output.splitlines():
        log(f"chalice: {line}")
    if result.returncode != 0:
        raise BuildError(f"chalice package failed (exit {result.returncode})")


def distributions_in(names: Iterable[str]) -> dict[NormalizedName, str]:
    """{normalized name: version} of the ``*.dist-info`` folders among top-level `names`."""
    found: dict[NormalizedName, str] = {}
    for name in names:
        if name.endswith(".dist-info"):
            dist, _, version = name.removesuffix(".dist-info").partition("-")
            found[canonicalize_name(dist)] = version
    return found


def check_exact_distributions(
    where: str, found: dict[NormalizedName, str], expected: Sequence[str]
) -> None:
    """`found` must be exactly the ``name==version`` lines in `expected`."""
    wanted = {canonicalize_name(n): v for n, _, v in (line.partition("==") for line in expected)}
    if found != wanted:
        missing = sorted(f"{n}=={v}" for n, v in wanted.items() if found.get(n) != v)
        extra = sorted(f"{n}=={v}" for n, v in found.items() if wanted.get(n) != v)
        raise BuildError(f"{where}: missing {missing}, unexpected {extra}")


# 4./5. trimming and zipping --------------------------------------------------------------


def trim(root: Path) -> None:
    """Delete what is never imported at run time, and strip extension modules."""
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        for name in [d for d in dirnames if d in TRIM_DIRS]:
            shutil.rmtree(here / name)
            dirnames.remove(name)
        for name in filenames:
            if name.endswith(TRIM_SUFFIXES) or name.endswith(".pyc"):
                (here / name).unlink()
    data = root / "botocore" / "data"
    if data.is_dir():
        for service in data.iterdir():
            if service.is_dir() and service.name not in BOTOCORE_SERVICES:
                shutil.rmtree(service)
    for tool in ONNXRUNTIME_TOOLS:
        shutil.rmtree(root / "onnxruntime" / tool, ignore_errors=True)
    strip_extensions(root)


def strip_extensions(root: Path) -> None:
    """``strip --strip-unneeded`` every shared object except those in ``*.libs`` folders.

    The ``*.libs`` libraries were rewritten by auditwheel (patchelf), and strip breaks them.
    """
    strip = shutil.which("strip")
    if strip is None:
        raise BuildError("`strip` (GNU binutils) is needed to fit the size limit: install it")
    shared_objects = [
        path
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and re.search(r"\.so(\.\d+)*$", path.name)
        and not any(part.endswith(".libs") for part in path.relative_to(root).parts)
    ]
    for batch in range(0, len(shared_objects), 200):
        subprocess.run(
            [strip, "--strip-unneeded", *map(str, shared_objects[batch : batch + 200])],
            check=True,
        )


def write_zip(source: Path, target: Path, prefix: str = "") -> None:
    """Zip the files under `source`, reproducibly: sorted, with fixed times and modes.

    The same content then gives the same bytes, so `aws cloudformation package` (which names
    uploads by content hash) neither re-uploads nor publishes a new layer version needlessly.
    """
    target.unlink(missing_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(prefix + path.relative_to(source).as_posix())
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            archive.writestr(info, path.read_bytes())


def rebuild_app_zip(app_zip: Path, staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(app_zip) as archive:
        archive.extractall(staging)
    trim(staging)
    write_zip(staging, app_zip)


def build_layer(layer_lines: Sequence[str], staging: Path, layer_zip: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / "python"  # a layer's python/ is on the runtime's sys.path
    platform_args = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        str(site),
        "--no-deps",  # the set is computed and checked here; pip must not re-resolve it
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        *platform_args,
        *layer_lines,
    ]
    subprocess.run(command, cwd=ROOT, check=True)
    # pip --target leaves its console scripts in python/bin; Lambda never runs them.
    shutil.rmtree(site / "bin", ignore_errors=True)
    trim(site)
    write_zip(staging, layer_zip)


# 6. checks ----------------------------------------------------------------------------


def check_template(template: dict[str, Any], cfn_dir: Path) -> None:
    resources = template["Resources"]
    serving = resources[SERVING_FUNCTION]["Properties"]
    training = resources[TRAINING_FUNCTION]["Properties"]
    monitoring = resources[MONITORING_FUNCTION]["Properties"]
    admin = resources[ADMIN_FUNCTION]["Properties"]
    for function in (serving, training, monitoring, admin):
        if function["Runtime"] != f"python{PYTHON_VERSION}" or function["Architectures"] != [
            "x86_64"
        ]:
            raise BuildError(f"a function is not python{PYTHON_VERSION} on x86_64: {function}")
    check_layers(template, cfn_dir)
    bucket = resources[BUCKET_RESOURCE]["Properties"]["BucketName"]
    for function in (training, monitoring):
        env = function["Environment"]["Variables"]
        if env.get("MLOPS_BUCKET") != bucket or env.get("MLOPS_STORE") != f"s3://{bucket}":
            raise BuildError(f"the functions' MLOPS_BUCKET/MLOPS_STORE do not name bucket {bucket}")
    for function in (serving, training, monitoring, admin):
        role = resources[function["Role"]["Fn::GetAtt"][0]]
        if f"arn:aws:s3:::{bucket}" not in json.dumps(role["Properties"]["Policies"]):
            raise BuildError(f"role {role} grants nothing on bucket {bucket}")
    check_admin(template)
    check_batch_failures(template)


def _statements(resources: dict[str, Any], function: dict[str, Any]) -> list[dict[str, Any]]:
    role = resources[function["Role"]["Fn::GetAtt"][0]]
    return [
        statement
        for policy in role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _granted(statements: list[dict[str, Any]], action: str) -> list[str]:
    """Resources on which `statements` allow `action` (or a wildcard covering it)."""
    service = action.split(":")[0]
    return [
        resource
        for s in statements
        if s["Effect"] == "Allow"
        and any(a in (action, f"{service}:*", "*") for a in _listed(s["Action"]))
        for resource in _listed(s["Resource"])
    ]


def check_admin(template: dict[str, Any]) -> None:
    """The admin routes are IAM-authorized, and registry writes stay out of the serving role.

    The serving function may invoke the registry_admin function (named in its environment)
    and nothing else, and put only captures (and their summaries) and audit events (the
    record of an artifact it refused); never a registry record. The registry_admin function
    may put only registry records and audit events.
    """
    resources = template["Resources"]
    serving = resources[SERVING_FUNCTION]["Properties"]
    admin = resources[ADMIN_FUNCTION]["Properties"]
    name = admin.get("FunctionName")
    if not name or serving["Environment"]["Variables"].get("MLOPS_ADMIN_FUNCTION") != name:
        raise BuildError(f"{SERVING_FUNCTION}'s MLOPS_ADMIN_FUNCTION does not name {name!r}")
    serving_statements = _statements(resources, serving)
    invokable = _granted(serving_statements, "lambda:InvokeFunction")
    if not invokable or any(not r.endswith(f":function:{name}") for r in invokable):
        raise BuildError(f"the serving role may invoke {invokable}, not just {name}")
    serving_puts = _granted(serving_statements, "s3:PutObject")
    serving_writes = ("/captures/*", "/capture-summaries/*", "/audit/*")
    if any(not r.endswith(serving_writes) for r in serving_puts):
        raise BuildError(
            f"the serving role may write {serving_puts}: only captures/*, capture-summaries/*, "
            "audit/*"
        )
    admin_puts = _granted(_statements(resources, admin), "s3:PutObject")
    admin_writes = ("/models/*/registry.json", "/audit/*")
    if any(not r.endswith(admin_writes) for r in admin_puts):
        raise BuildError(f"the registry_admin role may write {admin_puts}")
    swagger = resources[REST_API]["Properties"]["DefinitionBody"]
    sigv4 = swagger.get("securityDefinitions", {}).get("sigv4", {})
    if sigv4.get("x-amazon-apigateway-authtype") != "awsSigv4":
        raise BuildError(f"the API has no IAM (SigV4) security definition: {sigv4}")
    admin_methods = [
        (path, method, operation.get("security"))
        for path, methods in swagger["paths"].items()
        if path.startswith("/admin/")
        for method, operation in methods.items()
    ]
    unprotected = [(p, m) for p, m, security in admin_methods if security != [{"sigv4": []}]]
    if not admin_methods or unprotected:
        raise BuildError(f"admin routes without IAM authorization: {unprotected or 'no routes'}")


def check_batch_failures(template: dict[str, Any]) -> None:
    """Each batch function sends what Lambda gives up on to the failure recorder, and its
    role may invoke that function and no other but the ones it already calls."""
    resources = template["Resources"]
    recorder = resources[BATCH_FAILURE_FUNCTION]["Properties"]["FunctionName"]
    destination = {"Fn::GetAtt": [BATCH_FAILURE_FUNCTION, "Arn"]}
    for logical_id in BATCH_FUNCTIONS:
        configs = [
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::EventInvokeConfig"
            and r["Properties"]["FunctionName"] == {"Ref": logical_id}
        ]
        failure = [c.get("DestinationConfig", {}).get("OnFailure", {}) for c in configs]
        if failure != [{"Destination": destination}]:
            raise BuildError(f"{logical_id} has no on-failure destination {destination}: {configs}")
        invokable = _granted(
            _statements(resources, resources[logical_id]["Properties"]), "lambda:InvokeFunction"
        )
        if not any(r.endswith(f":function:{recorder}") for r in invokable):
            raise BuildError(f"{logical_id}'s role may not invoke its destination {recorder}")


def check_layers(template: dict[str, Any], cfn_dir: Path) -> None:
    """Every function has exactly its layers (FUNCTION_LAYERS), built here, not an ARN.

    A stage that `make deploy` has run records published layer ARNs in .chalice/config.json,
    and `chalice package` copies them into the template; infra/template.json must override
    them with this stack's own layer resources, or the stack would depend on another deploy.
    """
    resources = template["Resources"]
    functions = {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    for name, function in functions.items():
        chalice_name = function["Handler"].removeprefix("app.")
        chalice_name = "api_handler" if chalice_name == "app" else chalice_name
        kinds = FUNCTION_LAYERS.get(chalice_name, DEFAULT_LAYERS)
        wanted = [{"Ref": LAYER_RESOURCES[kind]} for kind in kinds]
        if function.get("Layers") != wanted:
            raise BuildError(f"{name} must have layers {wanted}, has {function.get('Layers')}")
    for kind, resource in LAYER_RESOURCES.items():
        content_uri = resources[resource]["Properties"]["ContentUri"]
        if content_uri != f"./{LAYER_ZIPS[kind]}" or not (cfn_dir / content_uri).is_file():
            raise BuildError(
                f"the {kind} layer's ContentUri {content_uri} is not next to the template"
            )


def check_dependencies_present(folders: Sequence[Path]) -> None:
    """Every requirement of every distribution in `folders` is itself in `folders`."""
    dists = list(metadata.distributions(path=[str(f) for f in folders]))
    present = {canonicalize_name(d.metadata["Name"]) for d in dists}
    for dist in dists:
        for text in dist.requires or []:
            req = Requirement(text)
            needed = req.marker is None or req.marker.evaluate({"extra": ""})
            if needed and canonicalize_name(req.name) not in present:
                raise BuildError(f"{dist.metadata['Name']} requires {req}, which is not packaged")


def stdlib_python() -> Path:
    """The interpreter this venv was made from; run with -I -S it sees only the stdlib."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return Path(sys.base_prefix) / "bin" / version


def smoke_environment() -> dict[str, str]:
    """The caller's environment without its AWS and project settings.

    The smoke checks test what was packaged, not the caller's setup: an AWS_ENDPOINT_URL
    (set by anyone deploying to an emulator or an S3-compatible endpoint) made the bundled
    botocore presign for that endpoint, and the build stopped.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLOPS_"))}
    return {**env, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def smoke(check: str, folders: Sequence[Path], workdir: Path) -> None:
    """Run infra/smoke.py `check` in a stdlib-only Python with just `folders` importable."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [str(stdlib_python()), "-I", "-S", str(SMOKE), check, *map(str, folders)]
    result = subprocess.run(
        command, cwd=workdir, env=smoke_environment(), capture_output=True, text=True, check=False
    )
    for line in (result.stdout + result.stderr).splitlines():
        log(f"smoke {check}: {line}")
    if result.returncode != 0:
        raise BuildError(f"smoke check {check!r} failed (exit {result.returncode})")


def unzip_fresh(archive: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(archive) as z:
        z.extractall(target)
    return target


# 7. sizes -----------------------------------------------------------------------------


def zip_sizes(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    by_top: Counter[str] = Counter()
    for info in infos:
        parts = info.filename.split("/")
        # A layer's packages sit under python/.
        top = "/".join(parts[:2]) if parts[0] == "python" and len(parts) > 2 else parts[0]
        by_top[top] += info.file_size
    unzipped = sum(i.file_size for i in infos)
    zipped = path.stat().st_size
    return {
        "unzipped_bytes": unzipped,
        "unzipped_mib": round(unzipped / MIB, 1),
        "zipped_bytes": zipped,
        "zipped_mib": round(zipped / MIB, 1),
        "files": len(infos),
        "largest_mib": {k: round(v / MIB, 1) for k, v in by_top.most_common(12)},
    }


def function_parts(function: str, app_zip: str = APP_ZIP) -> list[str]:
    """The zips a function is made of: the app zip, then its layers in order."""
    return [app_zip, *(LAYER_ZIPS[kind] for kind in FUNCTION_LAYERS.get(function, DEFAULT_LAYERS))]


def measure(cfn_dir: Path) -> dict[str, Any]:
    artifacts = {name: zip_sizes(cfn_dir / name) for name in (APP_ZIP, *LAYER_ZIPS.values())}
    functions: dict[str, Any] = {}
    for function in (
        "api_handler",
        "on_dataset_uploaded",
        "check_monitoring",
        "registry_admin",
        "on_batch_uploaded",
        "score_batch_part",
        "record_batch_failure",
    ):
        parts = function_parts(function)
        unzipped = sum(artifacts[p]["unzipped_bytes"] for p in parts)
        zipped = sum(artifacts[p]["zipped_bytes"] for p in parts)
        functions[function] = {
            "code_and_layers": parts,
            "unzipped_bytes": unzipped,
            "unzipped_mib": round(unzipped / MIB, 1),
            "headroom_mib": round((LIMIT_UNZIPPED - unzipped) / MIB, 1),
            "zipped_bytes": zipped,
            "zipped_mib": round(zipped / MIB, 1),
        }
    return {
        "limit_unzipped_bytes": LIMIT_UNZIPPED,
        "limit_unzipped_mib": LIMIT_UNZIPPED / MIB,
        "note": "MiB = 2**20 bytes; AWS's '250 MB' is 262,144,000 bytes = 250 MiB. Zips over "
        "50 MiB must reach Lambda through S3 (aws cloudformation package and infra/deploy.py "
        "do that for the layers).",
        "functions": functions,
        "artifacts": artifacts,
    }


def check_sizes(sizes: dict[str, Any]) -> None:
    over = [
        f"{name}: {f['unzipped_mib']} MiB unzipped (code + layers)"
        for name, f in sizes["functions"].items()
        if f["unzipped_bytes"] >= LIMIT_UNZIPPED
    ]
    if over:
        raise BuildError(
            f"over AWS Lambda's {LIMIT_UNZIPPED / MIB:.0f} MiB limit: {'; '.join(over)}"
        )
    for name, artifact in sizes["artifacts"].items():
        if artifact["zipped_bytes"] > DIRECT_UPLOAD_LIMIT:
            log(f"note: {name} is {artifact['zipped_mib']} MiB zipped: deploy it through S3")


# ---------------------------------------------------------------------------------------


def build(out: Path) -> dict[str, Any]:
    out = out.resolve()
    cfn_dir = out / "cfn"
    started = time.monotonic()

    def step(message: str) -> None:
        log(f"{time.monotonic() - started:6.1f}s  {message}")

    pins = read_pins()
    runtime_roots, training_roots = declared_dependencies()
    serving = closure(runtime_roots)
    runtime_lines = pinned(serving, pins)
    layer_lines = pinned(closure(training_roots) - serving, pins)
    step(f"runtime layer: {len(runtime_lines)} pins; training layer: {len(layer_lines)} pins")
    check_requirements_empty()
    refresh_vendor()

    step("chalice package")
    chalice_package(cfn_dir)
    app_zip = cfn_dir / APP_ZIP
    with zipfile.ZipFile(app_zip) as archive:
        tops = {n.split("/")[0] for n in archive.namelist()}
    check_exact_distributions(APP_ZIP, distributions_in(tops), [])
    untrimmed = zip_sizes(app_zip)

    step("trimming the app zip")
    rebuild_app_zip(app_zip, out / "staging" / "app")

    for kind, lines in (("runtime", runtime_lines), ("training", layer_lines)):
        step(f"building the {kind} layer")
        staging = out / "staging" / f"{kind}-layer"
        build_layer(lines, staging, cfn_dir / LAYER_ZIPS[kind])
        check_exact_distributions(
            LAYER_ZIPS[kind],
            distributions_in(p.name for p in (staging / "python").iterdir()),
            lines,
        )

    # Written before the checks, so that a failed build still says what it weighed.
    sizes = measure(cfn_dir)
    sizes["artifacts"][APP_ZIP]["before_trimming"] = {
        k: untrimmed[k] for k in ("unzipped_mib", "zipped_mib", "files", "largest_mib")
    }
    (out / "sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    step(f"wrote {out / 'sizes.json'}")
    for name, f in sizes["functions"].items():
        log(
            f"{name}: {f['unzipped_mib']} MiB unzipped (limit {LIMIT_UNZIPPED / MIB:.0f}), "
            f"{f['zipped_mib']} MiB zipped"
        )

    step("checking the template and the packaged dependencies")
    check_template(json.loads((cfn_dir / "sam.json").read_text()), cfn_dir)
    app_dir = unzip_fresh(app_zip, out / "smoke" / "app")
    runtime_dir = unzip_fresh(cfn_dir / RUNTIME_LAYER_ZIP, out / "smoke" / "runtime") / "python"
    layer_dir = unzip_fresh(cfn_dir / LAYER_ZIP, out / "smoke" / "layer") / "python"
    check_dependencies_present([app_dir, runtime_dir])  # serving and monitoring
    check_dependencies_present([app_dir, runtime_dir, layer_dir])

    step("smoke checks in a stdlib-only Python")
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        # Lambda's order: the function's code (/var/task) first, then its layers' python/
        # folders (unzipped together under /opt).
        smoke("app", [app_dir, runtime_dir], Path(scratch) / "app")
        smoke("training", [app_dir, runtime_dir, layer_dir], Path(scratch) / "training")

    check_sizes(sizes)
    step("done")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="output folder")
    args = parser.parse_args(argv)
    try:
        build(args.out)
    except (BuildError, subprocess.CalledProcessError) as err:
        print(f"package: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
