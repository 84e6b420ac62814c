"""Fixtures shared by the test suite: a fake AWS, a moto bucket, and every store backend."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from shared.store.base import ObjectStore
from shared.store.check import forget_verdicts
from shared.store.local import LocalStore
from shared.store.s3 import S3Store
from tests.seaweedfs import RunningServer, start_seaweedfs

BUCKET = "mlops-test"
REGION = "us-east-1"
# Store kinds whose bucket is versioned: objects get version ids there.
VERSIONED_KINDS = frozenset({"seaweedfs-versioned"})
_BUCKET_NUMBERS = itertools.count()


def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials in us-east-1, and nothing from the developer's own AWS setup.

    An endpoint URL or profile left in the environment or ~/.aws/config could send boto3
    past moto to a real service, so those are removed.
    """
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials and region for the test, with any real endpoint or profile unset."""
    _fake_aws(monkeypatch)


@pytest.fixture(autouse=True)
def _store_verdicts_per_test() -> Iterator[None]:
    """Each test starts as a new process would: no store check verdict cached in memory."""
    forget_verdicts()
    yield
    forget_verdicts()


@pytest.fixture(scope="session")
def s3_client() -> Any:
    """One boto3 S3 client for every test: making a client takes about 0.1 s.

    It is made under the fake environment and keeps that configuration afterwards; moto
    intercepts it in whichever test has mock_aws active, with that test's fresh state.
    """
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fake_aws(monkeypatch)
        return boto3.session.Session().client("s3")


@pytest.fixture
def s3_bucket(aws_env: None, s3_client: Any) -> Iterator[str]:
    """The name of an empty bucket in moto's fake S3, which lasts for the test."""
    with mock_aws():
        s3_client.create_bucket(Bucket=BUCKET)
        yield BUCKET


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A SeaweedFS server on a loopback port, started once for the run and stopped after it."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs_client(seaweedfs: RunningServer) -> Any:
    """A boto3 S3 client of the SeaweedFS server (any credentials do: it has no identities)."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("s3", endpoint_url=seaweedfs.endpoint)


def seaweedfs_bucket(client: Any, *, versioned: bool) -> str:
    """A new, empty bucket on the SeaweedFS server (the server lasts the run, so names differ)."""
    name = f"contract-{next(_BUCKET_NUMBERS)}"
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def seaweedfs_env(seaweedfs: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    """boto3's environment pointed at the SeaweedFS server, as a user of such a service sets it."""
    _fake_aws(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweedfs.endpoint)
    return seaweedfs


@pytest.fixture(params=["local", "s3", "s3-prefixed", "seaweedfs", "seaweedfs-versioned"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each backend in turn: a local folder, a moto bucket, a folder inside one, and buckets
    of a real S3-compatible server over HTTP (SeaweedFS), unversioned and versioned."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    if request.param.startswith("seaweedfs"):
        request.getfixturevalue("seaweedfs_env")
        client = request.getfixturevalue("seaweedfs_client")
        name = seaweedfs_bucket(client, versioned=request.param in VERSIONED_KINDS)
        return S3Store(name, client=client)
    bucket: str = request.getfixturevalue("s3_bucket")
    prefix = "team/a" if request.param == "s3-prefixed" else ""
    return S3Store(bucket, prefix=prefix, client=request.getfixturevalue("s3_client"))


@pytest.fixture
def store_is_versioned(request: pytest.FixtureRequest) -> bool:
    """Whether the test's `store` hands out version ids (its bucket is versioned)."""
    return request.node.callspec.params.get("store") in VERSIONED_KINDS


@pytest.fixture
def racing_store(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """The store, for tests that race threads: moto is made to answer one request at a time.

    moto checks If-Match / If-None-Match and then writes without holding any lock, so under
    threads two puts conditional on the same ETag can both succeed, and a read can crash on an
    object another thread is replacing ("I/O operation on closed file"). S3 decides each
    conditional write atomically; serialising moto's requests restores that, while threads
    still interleave freely between requests, where a read-modify-write loop can go wrong.
    """
    if isinstance(store, S3Store):
        handle = BotocoreStubber.process_request
        one_at_a_time = threading.Lock()

        def serialised(stubber: BotocoreStubber, request: Any) -> Any:
            with one_at_a_time:
                return handle(stubber, request)

        monkeypatch.setattr(BotocoreStubber, "process_request", serialised)
    return store


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """A local store with two trained models, made once per run for the serving tests.

    "churn": string labels, five numeric and two categorical features; "numbers": all
    numeric (a, b, c, d), integer labels.
    """
    # Imported here: the training stack is slow to import and most tests do not need it.
    from shared.training.job import train_from_dataset
    from tests.factories import classification_csv, numeric_csv

    store = LocalStore(tmp_path_factory.mktemp("served"))
    for model, body in (("churn", classification_csv()), ("numbers", numeric_csv())):
        key = f"datasets/{model}/data.csv"
        store.put(key, body)
        outcome = train_from_dataset(store, key, trigger="test")
        assert outcome.status == "registered", outcome.reason
    return store


@pytest.fixture
def served(trained_store: LocalStore) -> Iterator[LocalStore]:
    """The serving function over `trained_store`, with a fresh per-container cache."""
    from functions import inference
    from shared.serving.cache import ModelCache

    inference.reset_cache(ModelCache(trained_store))
    yield trained_store
    inference.reset_cache()
