"""Each function's IAM policy names only the prefixes and actions it uses.

Every infra/policy-*.json is read: no S3 action or resource is a wildcard over the whole
bucket, object actions name a prefix of the bucket layout (docs/bucket-layout.md),
ListBucket names the bucket itself (a missing key is then a 404, not a 403). The three
functions' grants are the ones their code needs, listed here so that widening one is a
visible change.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

INFRA = Path(__file__).resolve().parent.parent / "infra"
BUCKET_ARN = "arn:aws:s3:::serverless-mlops-data"
LAYOUT = (
    "specs",
    "datasets",
    "models",
    "captures",
    "capture-summaries",
    "labels",
    "monitoring",
    "audit",
    "batch",
)
BUCKET_ACTIONS = {"s3:ListBucket"}
OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject"}

# (action, the prefix the resource names) for each function.
EXPECTED = {
    "serving": {
        ("s3:GetObject", "models/*"),
        ("s3:GetObject", "specs/*"),  # capture and shadow settings
        ("s3:GetObject", "audit/*"),  # why a model has no version: its failed trainings
        ("s3:PutObject", "captures/*"),
        ("s3:PutObject", "capture-summaries/*"),  # each capture object's counts
        ("s3:PutObject", "audit/*"),  # a refused artifact
    },
    "training": {
        ("s3:GetObject", "specs/*"),
        ("s3:GetObject", "datasets/*"),
        ("s3:GetObject", "models/*"),
        ("s3:GetObject", "captures/*"),  # the challenger is judged on labelled captures
        ("s3:GetObject", "capture-summaries/*"),  # which objects hold labelled rows
        ("s3:GetObject", "labels/*"),
        ("s3:PutObject", "models/*"),
        ("s3:PutObject", "audit/*"),
    },
    "monitoring": {
        ("s3:GetObject", "specs/*"),
        ("s3:GetObject", "models/*"),
        ("s3:GetObject", "captures/*"),
        ("s3:GetObject", "capture-summaries/*"),  # the check counts objects from these
        ("s3:GetObject", "labels/*"),
        ("s3:GetObject", "monitoring/*"),
        ("s3:GetObject", "datasets/*"),  # a retraining set starts from the parent's data
        ("s3:PutObject", "monitoring/*"),
        ("s3:PutObject", "audit/*"),
        ("s3:PutObject", "models/*/registry.json"),  # a promotion after the check
        ("s3:PutObject", "datasets/*/retrain-*"),
    },
    "batch": {  # on_batch_uploaded: plans the job, sends its parts out
        ("s3:GetObject", "batch/*/input/*"),
        ("s3:GetObject", "batch/*/output/*"),  # a job started before: the same one again
        ("s3:GetObject", "models/*"),
        ("s3:GetObject", "audit/*"),  # why a model has no version, for the failure record
        ("s3:PutObject", "batch/*/output/*"),
        ("s3:PutObject", "audit/*"),
    },
    "batch-part": {  # score_batch_part: one part, and the manifest if it is the last
        ("s3:GetObject", "batch/*/input/*"),
        ("s3:GetObject", "batch/*/output/*"),
        ("s3:GetObject", "models/*"),
        ("s3:GetObject", "specs/*"),  # the capture settings
        ("s3:GetObject", "audit/*"),
        ("s3:PutObject", "batch/*/output/*"),
        ("s3:PutObject", "audit/*"),
        ("s3:PutObject", "captures/*"),  # a sample of the scored rows, role "batch"
        ("s3:PutObject", "capture-summaries/*"),
    },
    "batch-failure": {  # record_batch_failure: what Lambda gave up on, beside the job
        ("s3:GetObject", "batch/*/output/*"),  # the job, for its id and input
        ("s3:PutObject", "batch/*/output/*"),  # failed/<part>.json
        ("s3:PutObject", "audit/*"),
    },
}


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def grants(path: Path, wanted: Callable[[str], bool]) -> list[tuple[str, str]]:
    """(action, resource) of every allowed action `wanted` accepts in the policy file."""
    policy: dict[str, Any] = json.loads(path.read_text())
    return [
        (action, resource)
        for statement in policy["Statement"]
        if statement["Effect"] == "Allow"
        for action in _listed(statement["Action"])
        if wanted(action)
        for resource in _listed(statement["Resource"])
    ]


def s3_grants(path: Path) -> list[tuple[str, str]]:
    """(action, resource) of every S3 grant in the policy file."""
    return grants(path, lambda action: action.startswith("s3:") or action == "*")


POLICIES = sorted(INFRA.glob("policy-*.json"))


@pytest.mark.parametrize("path", POLICIES, ids=[p.stem for p in POLICIES])
def test_no_s3_wildcards_and_only_layout_prefixes(path: Path) -> None:
    for action, resource in s3_grants(path):
        assert "*" not in action, f"{path.name}: {action} is a wildcard action"
        assert action in BUCKET_ACTIONS | OBJECT_ACTIONS, f"{path.name}: {action}"
        if action in BUCKET_ACTIONS:
            assert resource == BUCKET_ARN, f"{path.name}: {action} on {resource}"
        else:
            prefix = resource.removeprefix(f"{BUCKET_ARN}/").split("/")[0]
            assert resource.startswith(f"{BUCKET_ARN}/"), f"{path.name}: {resource}"
            assert prefix in LAYOUT, f"{path.name}: {action} on {resource}"


@pytest.mark.parametrize("function", sorted(EXPECTED))
def test_each_function_is_granted_what_it_uses(function: str) -> None:
    grants = s3_grants(INFRA / f"policy-{function}.json")
    objects = {(a, r.removeprefix(f"{BUCKET_ARN}/")) for a, r in grants if a in OBJECT_ACTIONS}
    assert objects == EXPECTED[function]
    assert {a for a, _ in grants} - OBJECT_ACTIONS == BUCKET_ACTIONS


def test_the_rules_catch_a_bucket_wide_grant(tmp_path: Path) -> None:
    wide = tmp_path / "policy-wide.json"
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET_ARN}/*"}
    wide.write_text(json.dumps({"Statement": [statement]}))
    with pytest.raises(AssertionError, match=r"policy-wide\.json"):
        test_no_s3_wildcards_and_only_layout_prefixes(wide)


# Every function records decisions (serving and the batch functions: an artifact refused for
# its hash) and announces them (shared/alerts), on the default bus only. The hourly check and
# the functions whose role writes the registry record keep a failed send there for a retry.
KEEPING = {"monitoring", "training", "admin"}
ANNOUNCE_ONLY = {"serving", "batch", "batch-part"}
SILENT = {"batch-failure"}  # records batch_failed, which is a job's record, not announced


def test_every_function_is_named_a_keeper_an_announcer_or_silent() -> None:
    assert {p.stem.removeprefix("policy-") for p in POLICIES} == KEEPING | ANNOUNCE_ONLY | SILENT


def _covers(pattern: str, key: str) -> bool:
    """Whether an IAM resource pattern (`*` matches any run of characters) names `key`."""
    return fnmatch.fnmatchcase(key, pattern.removeprefix(f"{BUCKET_ARN}/"))


@pytest.mark.parametrize("path", POLICIES, ids=[p.stem for p in POLICIES])
def test_announcing_widens_no_s3_grant(path: Path) -> None:
    # A failed announcement is kept in the model's registry record, which the keepers read
    # and write for their own work, and the hourly check reads it back; the others may not
    # write it and do not keep (shared/alerts/outbox.py). No grant is alerting's own.
    grants = s3_grants(path)
    registry = "models/churn/registry.json"
    writes = any(a == "s3:PutObject" and _covers(r, registry) for a, r in grants)
    reads = any(a == "s3:GetObject" and _covers(r, registry) for a, r in grants)
    assert (writes and reads) == (path.stem.removeprefix("policy-") in KEEPING)
    assert [r for _, r in grants if "alerts" in r] == []


@pytest.mark.parametrize("path", POLICIES, ids=[p.stem for p in POLICIES])
def test_events_are_put_on_the_default_bus_only(path: Path) -> None:
    granted = grants(path, lambda action: not action.startswith(("s3:", "logs:", "lambda:")))
    if path.stem.removeprefix("policy-") in SILENT:
        assert granted == []
    else:
        assert granted == [("events:PutEvents", "arn:aws:events:*:*:event-bus/default")]


# The functions each role may invoke: by name, and nothing else.
INVOKES = {
    "serving": {"registry_admin"},
    "batch": {"score_batch_part", "record_batch_failure"},  # parts; its failures
    "batch-part": {"record_batch_failure"},  # its on-failure destination
}


@pytest.mark.parametrize("path", POLICIES, ids=[p.stem for p in POLICIES])
def test_each_role_invokes_only_the_functions_it_calls(path: Path) -> None:
    granted = grants(path, lambda action: action.startswith("lambda:") or action == "*")
    assert {action for action, _ in granted} <= {"lambda:InvokeFunction"}
    prefix = "arn:aws:lambda:*:*:function:serverless-mlops-dev-"
    assert all(resource.startswith(prefix) for _, resource in granted), granted
    invoked = {resource.removeprefix(prefix) for _, resource in granted}
    assert invoked == INVOKES.get(path.stem.removeprefix("policy-"), set())
