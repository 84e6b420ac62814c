"""The object-store contract, run against every backend, then what is particular to each."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from shared.errors import (
    InvalidKey,
    ObjectNotFound,
    ObjectVersionNotFound,
    PreconditionFailed,
    StoreConfigError,
)
from shared.store import open_store
from shared.store.base import ObjectStore
from shared.store.local import LocalStore
from shared.store.s3 import S3Store

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

INVALID_KEYS = [
    "../x",
    "a/../../x",
    "/abs",
    "a//b",
    "a/./b",
    ".",
    "",
    "a/",
    "nul\x00byte",
    "new\nline",
    "back\\slash",
    "x" * 1025,
    "lone\ud800surrogate",
]
INVALID_PREFIXES = ["../", "/abs", "a//", "a/../", "tab\t"]
THREADS = 8
INCREMENTS = 10


def quoted_md5(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


def keys(store: ObjectStore, prefix: str = "") -> list[str]:
    return [info.key for info in store.list(prefix)]


def increment(store: ObjectStore, key: str, times: int) -> int:
    """Add one to the counter at `key` `times` times, retrying lost races; return the losses."""
    lost = 0
    for _ in range(times):
        while True:
            current = store.get(key)
            try:
                store.put(key, str(int(current.body) + 1).encode(), if_match=current.etag)
                break
            except PreconditionFailed:
                lost += 1
    return lost


def every_operation(store: ObjectStore, key: str) -> list[Callable[[], object]]:
    """Each way a store can be asked about `key`, as calls to make."""
    return [
        lambda: store.get(key),
        lambda: store.head(key),
        lambda: store.put(key, b"x"),
        lambda: store.put(key, b"x", if_none_match=True),
        lambda: store.put(key, b"x", if_match=quoted_md5(b"x")),
        lambda: store.delete(key),
    ]


def create_once(store: ObjectStore, key: str, body: bytes) -> bool:
    """Create `key` if it does not exist; say whether this call was the one that did."""
    try:
        store.put(key, body, if_none_match=True)
    except PreconditionFailed:
        return False
    return True


# --- The contract, on every backend ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"hello", b"", bytes(range(256)), os.urandom(256 * 1024)],
    ids=["text", "empty", "all-bytes", "256KiB"],
)
def test_put_then_get_returns_the_same_bytes(
    store: ObjectStore, store_is_versioned: bool, body: bytes
) -> None:
    etag = store.put("runs/1/blob.bin", body)

    stored = store.get("runs/1/blob.bin")

    assert (stored.key, stored.body, stored.etag) == ("runs/1/blob.bin", body, etag)
    assert (stored.version_id is not None) == store_is_versioned


def test_put_replaces_an_existing_object(store: ObjectStore) -> None:
    store.put("k", b"first")
    store.put("k", b"second")

    assert store.get("k").body == b"second"


def test_keys_may_hold_spaces_dots_and_unicode(store: ObjectStore) -> None:
    key = "données/été 2024/.hidden..v1.csv"
    store.put(key, b"x")

    assert store.get(key).body == b"x"
    assert keys(store) == [key]


def test_etag_is_the_quoted_md5_everywhere(store: ObjectStore) -> None:
    body = b"some model bytes"

    etag = store.put("m.onnx", body)

    assert etag == quoted_md5(body)
    assert store.get("m.onnx").etag == etag
    head = store.head("m.onnx")
    assert head is not None
    assert head.etag == etag
    assert [info.etag for info in store.list()] == [etag]


def test_get_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="no object at key 'missing/key'") as caught:
        store.get("missing/key")
    assert caught.value.key == "missing/key"


def test_the_null_version_is_the_object_written_while_versioning_is_off(
    store: ObjectStore, store_is_versioned: bool
) -> None:
    store.put("datasets/m/a.csv", b"x,y\n")

    if store_is_versioned:  # written with versioning on: it has an id of its own, not "null"
        with pytest.raises(ObjectVersionNotFound):
            store.get("datasets/m/a.csv", version_id="null")
    else:
        assert store.get("datasets/m/a.csv", version_id="null").body == b"x,y\n"


def test_a_version_id_reads_that_version(store: ObjectStore, store_is_versioned: bool) -> None:
    store.put("datasets/m/a.csv", b"first")
    first = store.get("datasets/m/a.csv")
    store.put("datasets/m/a.csv", b"second")

    if not store_is_versioned:
        pytest.skip("an unversioned bucket hands out no version ids")
    assert first.version_id is not None
    old = store.get("datasets/m/a.csv", version_id=first.version_id)
    assert (old.body, old.version_id) == (b"first", first.version_id)
    assert store.get("datasets/m/a.csv").body == b"second"


def test_a_version_that_does_not_exist_raises_object_version_not_found(
    store: ObjectStore,
) -> None:
    store.put("datasets/m/a.csv", b"x,y\n")
    gone = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"  # S3's shape of id, never handed out here

    for key in ("datasets/m/a.csv", "datasets/m/never.csv"):
        with pytest.raises(ObjectVersionNotFound, match="no version '3HL4kq") as caught:
            store.get(key, version_id=gone)
        assert (caught.value.key, caught.value.version_id) == (key, gone)
        assert isinstance(caught.value, ObjectNotFound)  # callers may treat it as missing


def test_head_describes_an_object_in_utc_and_is_none_when_absent(store: ObjectStore) -> None:
    before = datetime.now(UTC)
    store.put("a/b", b"12345")
    after = datetime.now(UTC)

    info = store.head("a/b")

    assert info is not None
    assert (info.key, info.size, info.etag) == ("a/b", 5, quoted_md5(b"12345"))
    assert info.last_modified.utcoffset() == timedelta(0)
    # S3 keeps whole seconds, so allow for truncation.
    assert before - timedelta(seconds=2) <= info.last_modified <= after + timedelta(seconds=2)
    assert store.head("a/c") is None
    assert store.head("a") is None


def test_if_none_match_creates_only_once(store: ObjectStore) -> None:
    assert store.put("lease", b"mine", if_none_match=True) == quoted_md5(b"mine")

    with pytest.raises(PreconditionFailed) as caught:
        store.put("lease", b"theirs", if_none_match=True)

    assert caught.value.key == "lease"
    assert store.get("lease").body == b"mine"


def test_if_match_with_the_current_etag_writes_and_returns_the_new_etag(
    store: ObjectStore,
) -> None:
    first = store.put("counter", b"1")

    second = store.put("counter", b"2", if_match=first)

    assert second == quoted_md5(b"2") != first
    assert store.get("counter").etag == second


def test_if_match_with_a_stale_etag_fails_and_changes_nothing(store: ObjectStore) -> None:
    stale = store.put("counter", b"1")
    store.put("counter", b"2")

    with pytest.raises(PreconditionFailed):
        store.put("counter", b"3", if_match=stale)

    assert store.get("counter").body == b"2"


def test_if_match_on_a_missing_object_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.put("absent", b"x", if_match=quoted_md5(b"x"))

    assert store.head("absent") is None


def test_if_match_and_if_none_match_together_are_refused(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="not both"):
        store.put("k", b"x", if_none_match=True, if_match=quoted_md5(b"x"))


def test_list_is_in_key_order_and_filtered_by_prefix(store: ObjectStore) -> None:
    # "a-b" sorts before "a/1" ('-' < '/'): a folder-by-folder walk would get this wrong.
    written = ["b", "a/2", "é", "a/1", "ab", "a-b", "a/sub/x", "abc/d"]
    for key in written:
        store.put(key, key.encode())

    assert keys(store) == sorted(written) == keys(store, "")
    assert keys(store, "a/") == ["a/1", "a/2", "a/sub/x"]
    assert keys(store, "ab") == ["ab", "abc/d"]
    assert keys(store, "a/s") == ["a/sub/x"]
    assert keys(store, "nothing/") == []
    [info] = store.list("a/1")
    assert (info.key, info.size, info.etag) == ("a/1", 3, quoted_md5(b"a/1"))
    assert info.last_modified.utcoffset() == timedelta(0)


def test_a_prefix_may_end_inside_a_segment(store: ObjectStore) -> None:
    store.put("a/.env", b"x")
    store.put("a/b", b"y")

    assert keys(store, "a/.") == ["a/.env"]


def test_delete_is_idempotent_and_a_key_can_be_created_again(store: ObjectStore) -> None:
    store.put("a/b/c", b"x")
    store.put("a/keep", b"y")

    store.delete("a/b/c")
    store.delete("a/b/c")
    store.delete("never/was")

    with pytest.raises(ObjectNotFound):
        store.get("a/b/c")
    assert store.head("a/b/c") is None
    assert keys(store) == ["a/keep"]
    store.put("a/b/c", b"again", if_none_match=True)
    assert store.get("a/b/c").body == b"again"


def test_invalid_keys_and_prefixes_are_rejected(store: ObjectStore) -> None:
    for key in INVALID_KEYS:
        for attempt in every_operation(store, key):
            with pytest.raises(InvalidKey):
                attempt()
    for prefix in INVALID_PREFIXES:
        with pytest.raises(InvalidKey):
            store.list(prefix)
    assert keys(store) == []


# One moto variant suffices here (a prefix changes nothing in a race), and each costs ~2 s;
# SeaweedFS races for real, over HTTP, with no lock of the tests' making.
BOTH_BACKENDS = pytest.mark.parametrize(
    "store", ["local", "s3-prefixed", "seaweedfs"], indirect=True
)


@BOTH_BACKENDS
def test_concurrent_if_match_increments_lose_nothing(racing_store: ObjectStore) -> None:
    racing_store.put("counter", b"0")

    with ThreadPoolExecutor(THREADS) as pool:
        runs = [pool.submit(increment, racing_store, "counter", INCREMENTS) for _ in range(THREADS)]
        for run in runs:
            run.result()

    assert racing_store.get("counter").body == str(THREADS * INCREMENTS).encode()


@BOTH_BACKENDS
def test_only_one_of_concurrent_creates_wins(racing_store: ObjectStore) -> None:
    start = threading.Barrier(THREADS)

    def contend(index: int) -> bool:
        start.wait(timeout=30)
        return create_once(racing_store, "lease", f"thread {index}".encode())

    with ThreadPoolExecutor(THREADS) as pool:
        won = list(pool.map(contend, range(THREADS)))

    assert won.count(True) == 1
    assert racing_store.get("lease").body == f"thread {won.index(True)}".encode()


def test_open_store_of_a_store_uri_opens_the_same_store(store: ObjectStore) -> None:
    store.put("k", b"x")

    again = open_store(store.uri)

    assert again.uri == store.uri
    assert again.get("k").body == b"x"


# --- The local folder -----------------------------------------------------------------------


def test_local_objects_are_plain_files_below_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")

    store.put("runs/1/model.onnx", b"bytes")

    assert (tmp_path / "store" / "runs" / "1" / "model.onnx").read_bytes() == b"bytes"
    assert store.uri == f"file://{tmp_path.resolve()}/store"


def test_local_invalid_keys_touch_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    before = sorted(tmp_path.rglob("*"))

    for key in INVALID_KEYS:
        for attempt in every_operation(store, key):
            with pytest.raises(InvalidKey):
                attempt()

    assert sorted(tmp_path.rglob("*")) == before


def test_local_refuses_keys_that_leave_the_root_through_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"private")
    store = LocalStore(tmp_path / "store")
    (tmp_path / "store" / "link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "store" / "file-link").symlink_to(outside / "secret")
    (tmp_path / "store" / "locks-link").symlink_to(tmp_path / "store" / ".locks")

    for key in ["link/secret", "link/new", "file-link", "locks-link/x"]:
        with pytest.raises(InvalidKey, match="symlink"):
            store.get(key)
        with pytest.raises(InvalidKey, match="symlink"):
            store.put(key, b"overwritten")
        with pytest.raises(InvalidKey, match="symlink"):
            store.delete(key)

    assert sorted(path.name for path in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"private"
    assert keys(store) == []
    assert keys(store, "link/") == []


def test_local_never_shows_or_accepts_its_own_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    etag = store.put("a", b"1")
    store.put("a", b"2", if_match=etag)
    store.put("nested/.tmp/ok", b"a folder named .tmp below the top is an ordinary key")
    (tmp_path / ".tmp" / "crashed-writer.part").write_bytes(b"half")

    assert any((tmp_path / ".locks").iterdir())
    assert keys(store) == ["a", "nested/.tmp/ok"]
    assert keys(store, ".") == keys(store, ".tmp/") == keys(store, ".locks/x") == []
    for key in [".tmp/crashed-writer.part", ".locks/x"]:
        with pytest.raises(InvalidKey, match="kept by the store"):
            store.get(key)
        with pytest.raises(InvalidKey, match="kept by the store"):
            store.put(key, b"x")


def test_local_cannot_hold_a_key_and_keys_below_it(tmp_path: Path) -> None:
    # S3 can hold both "a" and "a/b"; a folder tree cannot, and says so rather than misbehave.
    store = LocalStore(tmp_path)
    store.put("a/b", b"x")

    with pytest.raises(InvalidKey, match="collides"):
        store.put("a", b"y")
    with pytest.raises(InvalidKey, match="collides"):
        store.put("a/b/c", b"z", if_none_match=True)
    with pytest.raises(ObjectNotFound):
        store.get("a")
    with pytest.raises(ObjectNotFound):
        store.get("a/b/c")
    store.delete("a")
    assert keys(store) == ["a/b"]


def test_local_delete_removes_folders_it_empties(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("x/y/z", b"1")
    store.put("x/w", b"2")

    store.delete("x/y/z")
    assert not (tmp_path / "x" / "y").exists()
    store.delete("x/w")
    assert not (tmp_path / "x").exists()

    store.put("x", b"a file where the folder was")
    assert keys(store) == ["x"]


def test_local_refuses_file_names_too_long_for_the_filesystem(tmp_path: Path) -> None:
    with pytest.raises(InvalidKey, match="255 bytes"):
        LocalStore(tmp_path).put("a/" + "n" * 256, b"x")


def test_local_root_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")

    with pytest.raises(StoreConfigError, match="not a folder"):
        LocalStore(tmp_path / "file")


def _create_in_process(
    root: str, index: int, start: Barrier, results: Queue[tuple[int, bool]]
) -> None:
    store = LocalStore(root)
    start.wait(timeout=60)
    results.put((index, create_once(store, "lease", f"process {index}".encode())))


def _increment_in_process(root: str, start: Barrier, results: Queue[int]) -> None:
    store = LocalStore(root)
    start.wait(timeout=60)
    results.put(increment(store, "counter", INCREMENTS))


def _run_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Run `target` once per args tuple in spawned processes that start together; their results.

    Each args tuple gets a shared start barrier and a result queue appended.
    """
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(len(args))
    results: Queue[Any] = spawn.Queue()
    processes = [spawn.Process(target=target, args=(*one, start, results)) for one in args]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcomes


def test_local_create_only_is_atomic_across_processes(tmp_path: Path) -> None:
    outcomes = _run_processes(_create_in_process, [(str(tmp_path), i) for i in range(2)])

    winners = [index for index, won in outcomes if won]
    assert len(winners) == 1
    assert LocalStore(tmp_path).get("lease").body == f"process {winners[0]}".encode()


def test_local_if_match_is_atomic_across_processes(tmp_path: Path) -> None:
    LocalStore(tmp_path).put("counter", b"0")

    _run_processes(_increment_in_process, [(str(tmp_path),)] * 2)

    assert LocalStore(tmp_path).get("counter").body == str(2 * INCREMENTS).encode()


# --- S3 -------------------------------------------------------------------------------------


class _NoRequests:
    """A stand-in boto3 client that fails the test if the store uses it at all."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"the store called the S3 client ({name}) for an invalid key")


def test_s3_invalid_keys_make_no_request() -> None:
    store = S3Store("bucket", client=_NoRequests())

    for key in INVALID_KEYS:
        for attempt in every_operation(store, key):
            with pytest.raises(InvalidKey):
                attempt()
    for prefix in INVALID_PREFIXES:
        with pytest.raises(InvalidKey):
            store.list(prefix)


def test_s3_refuses_keys_the_prefix_makes_too_long() -> None:
    key = "k" * 1020  # valid alone, but not once "team/a/" is put before it
    store = S3Store("bucket", prefix="team/a", client=_NoRequests())

    for attempt in every_operation(store, key):
        with pytest.raises(InvalidKey, match="too long for S3 under the prefix 'team/a/'"):
            attempt()


def test_s3_keys_live_under_the_prefix_and_listing_stays_inside_it(s3_bucket: str) -> None:
    team_a = S3Store(s3_bucket, prefix="team/a/")
    team_ab = S3Store(s3_bucket, prefix="team/ab")
    whole = S3Store(s3_bucket)
    team_a.put("x", b"1")
    team_ab.put("y", b"2")
    # The S3 console's "Create folder" writes such a marker; it is not a readable key.
    whole.client.put_object(Bucket=s3_bucket, Key="team/a/folder/", Body=b"")

    assert keys(team_a) == ["x"]
    assert keys(team_ab) == ["y"]
    assert keys(whole) == ["team/a/x", "team/ab/y"]
    assert whole.get("team/a/x").body == b"1"
    assert (team_a.uri, team_ab.uri, whole.uri) == (
        f"s3://{s3_bucket}/team/a",
        f"s3://{s3_bucket}/team/ab",
        f"s3://{s3_bucket}",
    )


def test_s3_reads_the_version_named_on_a_versioned_bucket(s3_bucket: str, s3_client: Any) -> None:
    s3_client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    store = S3Store(s3_bucket, prefix="team", client=s3_client)
    store.put("datasets/m/a.csv", b"first")
    first = store.get("datasets/m/a.csv").version_id
    store.put("datasets/m/a.csv", b"second")
    assert first is not None

    old = store.get("datasets/m/a.csv", version_id=first)
    assert (old.body, old.version_id) == (b"first", first)
    assert store.get("datasets/m/a.csv").body == b"second"

    s3_client.delete_object(Bucket=s3_bucket, Key="team/datasets/m/a.csv", VersionId=first)
    with pytest.raises(ObjectVersionNotFound):
        store.get("datasets/m/a.csv", version_id=first)


def test_s3_list_pages_past_1000_keys(s3_bucket: str) -> None:
    store = S3Store(s3_bucket, prefix="team/a")
    written = [f"many/{i:04d}" for i in range(1001)]
    for key in written:
        store.put(key, b"")
    pages: list[object] = []
    store.client.meta.events.register(
        "after-call.s3.ListObjectsV2", lambda **kwargs: pages.append(kwargs)
    )

    assert keys(store, "many/") == written
    assert len(pages) == 2


def test_s3_conditional_write_conflict_409_is_a_lost_condition(aws_env: None) -> None:
    # moto never answers 409, but S3 does when conditional writes to one key overlap.
    client = boto3.client("s3")
    store = S3Store("bucket", client=client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "put_object", service_error_code="ConditionalRequestConflict", http_status_code=409
        )
        with pytest.raises(PreconditionFailed):
            store.put("k", b"x", if_match=quoted_md5(b"old"))


def test_s3_missing_bucket_is_a_configuration_error(aws_env: None) -> None:
    with mock_aws():
        store = S3Store("no-such-bucket", prefix="p")
        with pytest.raises(StoreConfigError, match=r"'no-such-bucket' .* does not exist"):
            store.get("k")
        with pytest.raises(StoreConfigError, match="does not exist"):
            store.put("k", b"x")
        with pytest.raises(StoreConfigError, match="does not exist"):
            keys(store)


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_s3_client_follows_the_endpoint_url_environment(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:9000")

    client = S3Store("bucket").client

    assert client.meta.endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("default_region", "region", "expected"),
    [
        ("eu-west-3", "", "eu-west-3"),
        ("", "eu-west-3", "eu-west-3"),
        ("eu-west-1", "x", "eu-west-1"),
    ],
)
def test_s3_client_region_comes_from_aws_default_region_or_else_aws_region(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, default_region: str, region: str, expected: str
) -> None:
    # botocore alone ignores AWS_REGION, which is what the other SDKs and many people set.
    monkeypatch.setenv("AWS_DEFAULT_REGION", default_region)
    monkeypatch.setenv("AWS_REGION", region)

    assert S3Store("bucket").client.meta.region_name == expected


def test_s3_bucket_name_is_required() -> None:
    with pytest.raises(StoreConfigError):
        S3Store("")


# --- open_store -----------------------------------------------------------------------------


def test_open_store_defaults_to_a_folder_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLOPS_STORE", raising=False)

    store = open_store()

    assert isinstance(store, LocalStore)
    assert store.uri == (tmp_path / ".mlops-store").resolve().as_uri()
    assert (tmp_path / ".mlops-store").is_dir()


def test_open_store_treats_an_empty_mlops_store_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_STORE", "")

    assert open_store().uri == (tmp_path / ".mlops-store").resolve().as_uri()


def test_open_store_reads_mlops_store_and_an_argument_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_STORE", "s3://env-bucket/team/a")

    from_env = open_store()
    from_argument = open_store(str(tmp_path))

    assert isinstance(from_env, S3Store)
    assert from_env.uri == "s3://env-bucket/team/a"
    assert isinstance(from_argument, LocalStore)


@pytest.mark.parametrize(
    ("location", "kind", "uri"),
    [
        ("s3://bkt", S3Store, "s3://bkt"),
        ("s3://bkt/", S3Store, "s3://bkt"),
        ("s3://bkt/team/a/", S3Store, "s3://bkt/team/a"),
        ("S3://Legacy_Bucket/p", S3Store, "s3://Legacy_Bucket/p"),
        ("file://{tmp}/by-uri", LocalStore, "file://{tmp}/by-uri"),
        ("file://localhost{tmp}/by-host", LocalStore, "file://{tmp}/by-host"),
        ("file://{tmp}/with%20space", LocalStore, "file://{tmp}/with%20space"),
        ("{tmp}/absolute", LocalStore, "file://{tmp}/absolute"),
        ("relative/folder", LocalStore, "file://{tmp}/relative/folder"),
    ],
)
def test_open_store_understands_each_form(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    location: str,
    kind: type[ObjectStore],
    uri: str,
) -> None:
    tmp = tmp_path.resolve().as_posix()
    monkeypatch.chdir(tmp)

    store = open_store(location.format(tmp=tmp))

    assert isinstance(store, kind)
    assert store.uri == uri.format(tmp=tmp)


@pytest.mark.parametrize(
    "location",
    [
        "",
        "http://example.com/store",
        "ftp://host/x",
        "s3://",
        "s3:///prefix",
        "s3://bkt:9000/x",
        "s3://bkt/a//b",
        "s3://bkt/../x",
        "s3://bkt/x?versionId=1",
        "s3:bkt",
        "file://relative/path",
        "file://",
        "file:/no/slashes",
    ],
)
def test_open_store_refuses_other_locations(location: str) -> None:
    with pytest.raises(StoreConfigError) as caught:
        open_store(location)

    message = str(caught.value)
    assert repr(location) in message
    assert "s3://bucket[/prefix]" in message
    assert "file:///" in message


def test_get_range_reads_that_slice_of_the_object_and_nothing_past_its_end(
    store: ObjectStore,
) -> None:
    body = bytes(range(256)) * 4
    store.put("batch/m/input/a.csv", body)

    assert store.get_range("batch/m/input/a.csv", 10, 20) == body[10:20]
    assert store.get_range("batch/m/input/a.csv", 1000, 2000) == body[1000:]
    assert store.get_range("batch/m/input/a.csv", 1024, 2048) == b""
    assert store.get_range("batch/m/input/a.csv", 5, 5) == b""
    with pytest.raises(ObjectNotFound):
        store.get_range("batch/m/input/missing.csv", 0, 10)


def test_local_etags_follow_files_changed_behind_the_stores_back(tmp_path: Path) -> None:
    # Listing remembers each file's MD5 beside it (an extended attribute, where the file
    # system has them) for the size and mtime it was computed at: a file rewritten by
    # other means, even to the same size, gets its new MD5.
    store = LocalStore(tmp_path / "s")
    store.put("a/b.txt", b"first")
    (listed,) = store.list("a/")
    assert listed.etag == f'"{hashlib.md5(b"first").hexdigest()}"'
    path = tmp_path / "s" / "a" / "b.txt"
    status = path.stat()
    path.write_bytes(b"other")  # same size
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000))
    (again,) = store.list("a/")
    assert again.etag == f'"{hashlib.md5(b"other").hexdigest()}"'
    assert store.head("a/b.txt") == again
    assert store.get("a/b.txt").etag == again.etag
    # Rewritten in place keeping size and mtime (as `cp -p` can): a listing may show the
    # remembered ETag, but a head and a conditional write see the bytes as they are.
    status = path.stat()
    path.write_bytes(b"third")
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    head = store.head("a/b.txt")
    assert head is not None
    assert head.etag == f'"{hashlib.md5(b"third").hexdigest()}"'
    with pytest.raises(PreconditionFailed):
        store.put("a/b.txt", b"fourth", if_match=again.etag)
    assert store.put("a/b.txt", b"fourth", if_match=head.etag)
    copy = tmp_path / "s" / "a" / "c.txt"
    copy.write_bytes(b"copied in")  # no remembered MD5 at all
    head = store.head("a/c.txt")
    assert head is not None
    assert head.etag == f'"{hashlib.md5(b"copied in").hexdigest()}"'
