"""The store check: what holds on each server tried, and stores refused before the registry
is written. Quirky servers are SeaweedFS behind a proxy answering as Ceph RGW was measured to."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from functions.cli import main
from shared.errors import ConditionRefused, PreconditionFailed, StoreNotTrusted
from shared.registry.registry import ModelRegistry
from shared.store.base import ObjectStore
from shared.store.check import (
    VERDICT_KEY,
    StoreVerdict,
    check_store,
    decode_verdict,
    encode_verdict,
    ensure_trusted,
    forget_verdicts,
)
from shared.store.local import LocalStore
from shared.store.s3 import S3Store
from tests.conftest import REGION, seaweedfs_bucket
from tests.s3_proxy import Quirks, QuirkyS3Proxy
from tests.seaweedfs import RunningServer


def held(verdict: StoreVerdict) -> dict[str, bool | None]:
    return {probe.name: probe.held for probe in verdict.probes}


def client_of(endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("s3", endpoint_url=endpoint)


@pytest.fixture
def behind_proxy(
    seaweedfs: RunningServer, seaweedfs_client: Any, request: pytest.FixtureRequest
) -> Iterator[S3Store]:
    """A store on a new SeaweedFS bucket reached through a proxy with the test's quirks."""
    quirks, versioned = request.param
    bucket = seaweedfs_bucket(seaweedfs_client, versioned=versioned)
    with QuirkyS3Proxy(seaweedfs.endpoint, quirks) as proxy:
        yield S3Store(bucket, client=client_of(proxy.endpoint))


RGW_VERSIONED = (Quirks(ignore_if_none_match=True, refuse_if_match=True), True)
RGW_PLAIN = (Quirks(refuse_quoted_if_match=True, lost_race_500=True), False)
IGNORES_IF_NONE_MATCH = (Quirks(ignore_if_none_match=True), False)


@pytest.mark.parametrize("store", ["s3", "seaweedfs", "seaweedfs-versioned"], indirect=True)
def test_every_guarantee_holds_on_moto_and_seaweedfs(
    store: ObjectStore, store_is_versioned: bool
) -> None:
    verdict = check_store(store)

    assert verdict.trusted, verdict.failed
    assert verdict.failed == []
    assert held(verdict)["version ids"] is (True if store_is_versioned else None)
    # Only the verdict stays: every scratch key of the probes is deleted.
    assert [info.key for info in store.list("store-check/")] == [VERDICT_KEY]
    assert decode_verdict(store.get(VERDICT_KEY).body) == verdict


@pytest.mark.parametrize("store", ["seaweedfs"], indirect=True)
def test_seaweedfs_lists_folder_by_folder_and_the_store_sorts(store: ObjectStore) -> None:
    [listing] = [probe for probe in check_store(store).probes if probe.name == "listing order"]

    assert listing.held
    assert "this store sorts its listings" in listing.detail


@pytest.mark.parametrize("behind_proxy", [IGNORES_IF_NONE_MATCH], indirect=True)
def test_a_store_that_ignores_if_none_match_is_refused_before_the_registry_is_written(
    behind_proxy: S3Store,
) -> None:
    registry = ModelRegistry(behind_proxy, "churn")

    with pytest.raises(StoreNotTrusted) as caught:
        registry.claim(run_id="run-1", source="datasets/churn/a.csv", data_key="k")

    message = str(caught.value)
    assert "create-only" in message
    assert "ignores If-None-Match" in message
    assert "nothing was written to models/" in message
    assert "mlops store check" in message
    assert list(behind_proxy.list("models/")) == []
    assert list(behind_proxy.list("audit/")) == []


@pytest.mark.parametrize("behind_proxy", [RGW_VERSIONED], indirect=True)
def test_a_store_whose_if_match_never_succeeds_is_a_refusal_not_contention(
    behind_proxy: S3Store,
) -> None:
    etag = behind_proxy.put("k", b"1")

    with pytest.raises(ConditionRefused, match="whose condition held"):
        behind_proxy.put("k", b"2", if_match=etag)
    verdict = check_store(behind_proxy)
    assert not verdict.trusted
    assert {p.name for p in verdict.failed} >= {"create-only", "compare-and-swap"}
    with pytest.raises(StoreNotTrusted, match="compare-and-swap"):
        ensure_trusted(behind_proxy)


@pytest.mark.parametrize("behind_proxy", [RGW_PLAIN], indirect=True)
def test_unquoted_etags_and_500_lost_races_are_only_spelling(behind_proxy: S3Store) -> None:
    verdict = check_store(behind_proxy)

    assert verdict.trusted, verdict.failed
    assert held(verdict)["compare-and-swap, ETag as returned"] is False
    assert held(verdict)["compare-and-swap, ETag unquoted"] is True
    assert behind_proxy.etag_spelling == "unquoted"
    # A stale ETag answered 500 is a lost race; a missing key answered 500 is missing.
    stale = behind_proxy.put("k", b"1")
    behind_proxy.put("k", b"2")
    with pytest.raises(PreconditionFailed):
        behind_proxy.put("k", b"3", if_match=stale)
    with pytest.raises(PreconditionFailed):
        behind_proxy.put("k", b"3", if_none_match=True)
    assert behind_proxy.get("k").body == b"2"


@pytest.mark.parametrize("behind_proxy", [RGW_PLAIN], indirect=True)
def test_racing_registry_writers_lose_nothing_on_a_store_that_wants_unquoted_etags(
    behind_proxy: S3Store,
) -> None:
    # The failure the issue measured: "stayed contended for 50 attempts", version 1 pending.
    registry = ModelRegistry(behind_proxy, "churn")

    def claim(index: int) -> int:
        entry, _ = registry.claim(
            run_id=f"run-{index}", source=f"datasets/churn/{index}.csv", data_key="k"
        )
        return entry.version

    with ThreadPoolExecutor(6) as pool:
        versions = sorted(pool.map(claim, range(6)))

    assert versions == [1, 2, 3, 4, 5, 6]
    assert len(registry.load().versions) == 6


def test_a_recorded_verdict_spares_the_probes_until_it_is_old(
    seaweedfs: RunningServer, seaweedfs_client: Any
) -> None:
    client = client_of(seaweedfs.endpoint)  # its own: the session's client keeps no hook
    store = S3Store(seaweedfs_bucket(seaweedfs_client, versioned=False), client=client)
    puts: list[object] = []
    client.meta.events.register("before-call.s3.PutObject", lambda **kw: puts.append(kw))
    check_store(store)
    puts.clear()

    ensure_trusted(store)  # a new process: nothing cached, a fresh verdict in the bucket
    assert puts == []

    forget_verdicts()
    verdict = decode_verdict(store.get(VERDICT_KEY).body)
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="seconds")
    store.put(VERDICT_KEY, encode_verdict(dataclasses.replace(verdict, checked_at=old)))
    puts.clear()
    ensure_trusted(store)
    assert len(puts) > 5  # probed again, and recorded


def test_aws_itself_is_not_probed_before_registry_writes(s3_bucket: str, s3_client: Any) -> None:
    # The deployed roles grant nothing under store-check/: probing AWS would fail the run.
    store = S3Store(s3_bucket, client=s3_client)

    ModelRegistry(store, "churn").claim(run_id="r", source="datasets/churn/a.csv", data_key="k")

    assert list(store.list("store-check/")) == []


def test_a_local_folder_is_not_probed_before_registry_writes(tmp_path: Any) -> None:
    store = LocalStore(tmp_path)

    ModelRegistry(store, "churn").claim(run_id="r", source="datasets/churn/a.csv", data_key="k")

    assert list(store.list("store-check/")) == []


def test_mlops_store_check_prints_what_holds(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--store", str(tmp_path), "store", "check"]) == 0

    out = capsys.readouterr().out
    for line in ("held  create-only", "held  compare-and-swap", "n/a  version ids"):
        assert line in out
    assert "the registry can be kept here" in out


@pytest.mark.parametrize("behind_proxy", [IGNORES_IF_NONE_MATCH], indirect=True)
def test_mlops_store_check_exits_1_naming_the_failed_probe(
    behind_proxy: S3Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", behind_proxy.endpoint)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")

    assert main(["--store", f"s3://{behind_proxy.bucket}", "store", "check"]) == 1

    captured = capsys.readouterr()
    assert "FAILED  create-only" in captured.out
    assert "cannot keep the model registry" in captured.err


def test_a_refusing_service_is_named_in_the_error(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was "the store  refused" with an empty name when no --store was given.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: refused

    assert main(["bucket", "check", "--bucket", "b"]) == 2

    assert "the S3 service at http://127.0.0.1:9 refused" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("region", "endpoint", "aws"),
    [
        ("eu-west-1", None, True),
        ("cn-north-1", None, True),  # China's partition: amazonaws.com.cn
        ("us-east-1", "http://127.0.0.1:8333", False),
        ("us-east-1", "https://minio.example.org", False),
    ],
)
def test_which_endpoints_are_aws_s3(region: str, endpoint: str | None, aws: bool) -> None:
    import boto3

    client = boto3.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    store = S3Store("bucket", client=client)
    assert store.on_aws is aws
    assert store.checked_before_registry_writes is not aws
