"""The S3 event path: Chalice's test client delivers the event, moto plays S3."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from app import DATA_BUCKET, app
from shared.registry.audit import read_trail
from shared.registry.registry import ModelRegistry
from shared.store.s3 import S3Store
from tests.factories import classification_csv


@pytest.fixture
def bucket(aws_env: None) -> Iterator[str]:
    """The stage's bucket (Chalice's test client applies .chalice/config.json's environment)."""
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=DATA_BUCKET)
        yield DATA_BUCKET


def upload_event(client: Client, bucket: str, key: str) -> dict[str, object]:
    event: dict[str, object] = client.events.generate_s3_event(bucket=bucket, key=key)
    return event


def test_upload_event_trains_and_registers(bucket: str) -> None:
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="specs/churn.json", Body=json.dumps({"estimator": "linear"}))
    s3.put_object(Bucket=bucket, Key="datasets/churn/2026 11.csv", Body=classification_csv())
    with Client(app) as client:
        # S3 URL-encodes keys in notifications ("2026+11.csv"); the handler decodes them.
        client.lambda_.invoke(
            "on_dataset_uploaded", upload_event(client, bucket, "datasets/churn/2026+11.csv")
        )
    store = S3Store(bucket)
    record = ModelRegistry(store, "churn").load()
    assert record.aliases == {"production": 1}
    keys = {i.key for i in store.list("models/churn/versions/1/")}
    assert keys == {
        "models/churn/versions/1/model.onnx",
        "models/churn/versions/1/holdout.jsonl.gz",
        "models/churn/versions/1/metadata.json",
        "models/churn/versions/1/model_card.md",
    }
    meta = json.loads(store.get("models/churn/versions/1/metadata.json").body)
    head = s3.head_object(Bucket=bucket, Key="datasets/churn/2026 11.csv")
    assert meta["lineage"]["data"]["etag"] == head["ETag"]
    assert meta["lineage"]["data"]["key"] == "datasets/churn/2026 11.csv"


def test_the_same_event_delivered_twice_makes_one_version(bucket: str) -> None:
    boto3.client("s3").put_object(
        Bucket=bucket, Key="datasets/churn/a.csv", Body=classification_csv()
    )
    with Client(app) as client:
        event = upload_event(client, bucket, "datasets/churn/a.csv")
        client.lambda_.invoke("on_dataset_uploaded", event)
        client.lambda_.invoke("on_dataset_uploaded", event)
    store = S3Store(bucket)
    assert len(ModelRegistry(store, "churn").load().versions) == 1
    assert [e.event for e in read_trail(store, "churn")][-1] == "duplicate_ignored"


def test_a_bad_upload_leaves_a_failure_record_and_no_version(bucket: str) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key="datasets/churn/bad.csv", Body=b"a,b\n1,2\n")
    with Client(app) as client:
        client.lambda_.invoke(
            "on_dataset_uploaded", upload_event(client, bucket, "datasets/churn/bad.csv")
        )
    store = S3Store(bucket)
    assert ModelRegistry(store, "churn").read() == (ModelRegistry(store, "churn").read()[0], None)
    (failure,) = read_trail(store, "churn")
    assert failure.event == "training_failed"
    assert failure.details["data_key"] == "datasets/churn/bad.csv"
    assert "target" in failure.details["reason"]
