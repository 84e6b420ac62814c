"""The S3 event path: Chalice's test client delivers the event, moto plays S3."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from app import DATA_BUCKET, app
from shared.registry.audit import read_trail
from shared.registry.registry import ModelRegistry
from shared.store.s3 import S3Store
from shared.training import job
from tests.factories import classification_csv


@pytest.fixture
def bucket(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The stage's bucket (Chalice's test client applies .chalice/config.json's environment;
    handlers called directly, as `deliver` does, get the same store from here)."""
    monkeypatch.setenv("MLOPS_STORE", f"s3://{DATA_BUCKET}")
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
        "models/churn/versions/1/fitted-rows.u64",
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


class LambdaContext:
    """The part of Lambda's context the training function reads: its request id, which
    Lambda keeps when it retries a failed invocation."""

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id
        self.function_name = "on_dataset_uploaded"


class Killed(BaseException):
    """The process ending mid-run (Lambda's timeout, out of memory): no handler runs."""


def deliver(event: dict[str, object], request_id: str) -> None:
    """One invocation of the deployed handler, as Lambda makes it."""
    app.handler_map["on_dataset_uploaded"](event, LambdaContext(request_id))


def s3_event(bucket: str, key: str, version_id: str | None = None) -> dict[str, object]:
    with Client(app) as client:
        event = upload_event(client, bucket, key)
    if version_id is not None:
        records: list[dict[str, Any]] = event["Records"]  # type: ignore[assignment]
        records[0]["s3"]["object"]["versionId"] = version_id
    return event


def test_an_event_for_an_older_version_trains_the_bytes_it_names(bucket: str) -> None:
    s3 = boto3.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = classification_csv(seed=0)
    old = s3.put_object(Bucket=bucket, Key="datasets/churn/a.csv", Body=first)["VersionId"]
    s3.put_object(Bucket=bucket, Key="datasets/churn/a.csv", Body=b"replaced,later\n1,2\n")

    deliver(s3_event(bucket, "datasets/churn/a.csv", old), "req-1")

    meta = json.loads(S3Store(bucket).get("models/churn/versions/1/metadata.json").body)
    assert meta["lineage"]["data"]["version_id"] == old
    assert meta["lineage"]["data"]["sha256"] == hashlib.sha256(first).hexdigest()


def test_an_event_for_a_deleted_version_is_recorded_and_not_retried(bucket: str) -> None:
    s3 = boto3.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    body = classification_csv()
    gone = s3.put_object(Bucket=bucket, Key="datasets/churn/a.csv", Body=body)["VersionId"]
    s3.put_object(Bucket=bucket, Key="datasets/churn/a.csv", Body=body)
    s3.delete_object(Bucket=bucket, Key="datasets/churn/a.csv", VersionId=gone)

    deliver(s3_event(bucket, "datasets/churn/a.csv", gone), "req-1")  # returns: no retry

    store = S3Store(bucket)
    assert ModelRegistry(store, "churn").read()[1] is None  # nothing trained
    (failure,) = read_trail(store, "churn")
    assert failure.event == "training_failed"
    assert (
        f"version '{gone}' named by the upload event no longer exists"
        in (failure.details["reason"])
    )


def test_an_event_for_another_bucket_is_recorded_and_not_retried(bucket: str) -> None:
    deliver(s3_event("someone-elses-bucket", "datasets/churn/a.csv"), "req-1")  # returns

    (ignored,) = read_trail(S3Store(bucket), "churn")
    assert ignored.event == "upload_ignored"
    assert ignored.details["location"] == "s3://someone-elses-bucket/datasets/churn/a.csv"
    assert "outside this store" in ignored.details["reason"]


def test_lambdas_retry_of_a_run_killed_after_its_claim_trains(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("s3").put_object(
        Bucket=bucket, Key="datasets/churn/a.csv", Body=classification_csv()
    )
    event = s3_event(bucket, "datasets/churn/a.csv")
    writes = job._put_once

    def dies_on_the_first_artifact(*args: Any) -> None:
        monkeypatch.setattr(job, "_put_once", writes)  # the next attempt's process is new
        raise Killed

    monkeypatch.setattr(job, "_put_once", dies_on_the_first_artifact)
    with pytest.raises(Killed):
        deliver(event, "req-1")
    store = S3Store(bucket)
    assert ModelRegistry(store, "churn").load().entry(1).status == "pending"
    # S3 delivering the same event again at once is a different invocation: the claim is
    # alive as far as it can tell, and it must not train a second version.
    deliver(event, "req-2")
    assert [e.event for e in read_trail(store, "churn")][-1] == "duplicate_ignored"

    deliver(event, "req-1")  # Lambda's retry, a minute later, under the same request id

    record = ModelRegistry(store, "churn").load()
    assert [(e.version, e.status) for e in record.versions] == [(1, "failed"), (2, "ready")]
    assert record.entry(1).reason == "abandoned: its run died (delivery req-1 was retried)"
    assert record.aliases == {"production": 2}
    events = [(e.event, e.details.get("version")) for e in read_trail(store, "churn")]
    assert events == [
        ("version_claimed", 1),
        ("duplicate_ignored", 1),
        ("version_failed", 1),
        ("version_claimed", 2),
        ("version_registered", 2),
    ]


def test_malformed_records_and_s3_s_test_event_are_logged_not_retried(
    bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="datasets/churn/a.csv", Body=classification_csv())
    good = s3_event(bucket, "datasets/churn/a.csv")
    records: list[Any] = good["Records"]  # type: ignore[assignment]
    event: dict[str, object] = {
        "Records": [{"s3": {"object": {"key": "x.csv"}}}, {"eventName": "x"}, 7, *records]
    }

    deliver(event, "req-1")  # returns: nothing for Lambda to retry
    deliver({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}, "req-2")

    assert ModelRegistry(S3Store(bucket), "churn").load().aliases == {"production": 1}
    malformed = [r for r in caplog.records if "malformed S3 event record" in r.getMessage()]
    assert len(malformed) == 3
