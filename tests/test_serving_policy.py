"""Serving under the IAM policy it is deployed with: every store call it makes is allowed.

Tests elsewhere run serving with full access to the store; on AWS a write outside
infra/policy-serving.json is AccessDenied. Here a store enforces that policy's statements
(actions and resource patterns, read from the file), so a call the policy does not grant
fails as it would deployed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from chalice.test import Client
from moto import mock_aws

from app import DATA_BUCKET, app
from functions import inference
from shared.registry.audit import read_trail
from shared.registry.registry import ModelRegistry
from shared.serving.cache import ModelCache
from shared.store.base import ObjectInfo, ObjectStore, StoredObject
from shared.store.s3 import S3Store
from shared.training.job import train_from_dataset
from tests.factories import classification_csv

POLICY = Path(__file__).resolve().parent.parent / "infra" / "policy-serving.json"
ROW = {"x0": 0.3, "x1": -1.2, "x2": 0.0, "x3": 1.5, "x4": 0.2, "region": "north", "plan": "pro"}


def _pattern(resource: str) -> re.Pattern[str]:
    # IAM's wildcards: * is any run of characters ("/" included), ? is one character.
    return re.compile("".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in resource))


class PolicyStore(ObjectStore):
    """A store that allows only what an IAM policy's Allow statements grant on the bucket."""

    def __init__(self, inner: ObjectStore, policy: dict[str, Any], bucket: str) -> None:
        self.inner = inner
        self.bucket = bucket
        self.grants: list[tuple[str, re.Pattern[str]]] = []
        for statement in policy["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            actions = statement["Action"]
            resources = statement["Resource"]
            for action in [actions] if isinstance(actions, str) else actions:
                for resource in [resources] if isinstance(resources, str) else resources:
                    self.grants.append((action, _pattern(resource)))
        self.refused: list[tuple[str, str]] = []

    def _check(self, action: str, resource: str) -> None:
        if not any(
            granted in (action, "s3:*") and pattern.fullmatch(resource)
            for granted, pattern in self.grants
        ):
            self.refused.append((action, resource))
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}},
                action.removeprefix("s3:"),
            )

    def _object(self, action: str, key: str) -> None:
        self._check(action, f"arn:aws:s3:::{self.bucket}/{key}")

    @property
    def uri(self) -> str:
        return self.inner.uri

    # As the store it wraps: a deployed role meets AWS S3's guarantees, unprobed.
    @property
    def checked_before_registry_writes(self) -> bool:
        return self.inner.checked_before_registry_writes

    @property
    def service(self) -> str:
        return self.inner.service

    @property
    def sorts_listings(self) -> bool:
        return self.inner.sorts_listings

    def get(self, key: str, *, version_id: str | None = None) -> StoredObject:
        self._object("s3:GetObject", key)
        return self.inner.get(key, version_id=version_id)

    def head(self, key: str) -> ObjectInfo | None:
        self._object("s3:GetObject", key)  # HeadObject is authorised as GetObject
        return self.inner.head(key)

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> str:
        self._object("s3:PutObject", key)
        return self.inner.put(
            key, body, if_none_match=if_none_match, if_match=if_match, content_type=content_type
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._check("s3:ListBucket", f"arn:aws:s3:::{self.bucket}")
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._object("s3:DeleteObject", key)
        self.inner.delete(key)


@pytest.fixture
def bucket(aws_env: None) -> Iterator[S3Store]:
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=DATA_BUCKET)
        yield S3Store(DATA_BUCKET)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def train(store: ObjectStore, name: str, seed: int) -> None:
    store.put(f"datasets/churn/{name}", classification_csv(seed=seed))
    outcome = train_from_dataset(store, f"datasets/churn/{name}", trigger="test")
    assert outcome.status == "registered", outcome.reason


def predict(client: Client, path: str) -> tuple[int, dict[str, Any]]:
    response = client.http.post(
        path, headers={"Content-Type": "application/json"}, body=json.dumps({"records": [ROW]})
    )
    return response.status_code, json.loads(response.body)


def test_the_policy_store_refuses_what_the_serving_policy_does_not_grant(
    bucket: S3Store,
) -> None:
    store = PolicyStore(bucket, json.loads(POLICY.read_text()), DATA_BUCKET)
    with pytest.raises(ClientError, match="AccessDenied"):
        store.put("models/churn/registry.json", b"{}")
    with pytest.raises(ClientError, match="AccessDenied"):
        store.delete("captures/churn/x.jsonl.gz")
    store.put("captures/churn/x.jsonl.gz", b"")  # granted
    assert store.refused == [
        ("s3:PutObject", f"arn:aws:s3:::{DATA_BUCKET}/models/churn/registry.json"),
        ("s3:DeleteObject", f"arn:aws:s3:::{DATA_BUCKET}/captures/churn/x.jsonl.gz"),
    ]


def test_serving_under_its_policy_refuses_a_tampered_version_and_keeps_answering(
    bucket: S3Store,
) -> None:
    train(bucket, "a.csv", seed=0)  # training runs under its own policy, not this one
    store = PolicyStore(bucket, json.loads(POLICY.read_text()), DATA_BUCKET)
    clock = FakeClock()
    inference.reset_cache(ModelCache(store, alias_ttl=10.0, clock=clock))
    try:
        with Client(app) as client:
            status, body = predict(client, "/models/churn/predict")
            assert (status, body["version"]) == (200, 1)
            train(bucket, "b.csv", seed=3)
            genuine = bucket.get("models/churn/versions/1/model.onnx").body
            bucket.put("models/churn/versions/2/model.onnx", genuine)  # someone swaps it
            ModelRegistry(bucket, "churn").set_alias("production", 2, reason="test")
            clock.now += 11

            status, body = predict(client, "/models/churn/predict")
            assert (status, body["version"]) == (200, 1)  # the fallback, not AccessDenied
            status, body = predict(client, "/models/churn/versions/2/predict")
            assert status == 503
            assert "version 2 of 'churn' refused" in body["error"]
            assert client.http.get("/v2/health/ready").status_code == 200
    finally:
        inference.reset_cache()  # writes the captured rows, under the policy too

    assert store.refused == []
    rejected = [e for e in read_trail(bucket, "churn") if e.event == "artifact_rejected"]
    assert [e.details["version"] for e in rejected] == [2]
    captured = [info.key for info in bucket.list("captures/churn/")]
    assert captured  # every answered row was captured
