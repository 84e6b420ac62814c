"""Capture summaries: serving counts each capture object as it writes it, and the check
reads those counts instead of the rows, with the same results.

The equality of a summary and the raw rows' counts on hostile values (every kind of
feature, NaN, edges, float32, odd categories, both tasks, shadow rows) is shown in
tests/test_monitoring_sql.py, beside the SQL path's; here, the check and its fallbacks.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import msgspec
import numpy as np
import pytest
from moto import mock_aws

from functions import inference
from shared.data.spec import CaptureSettings
from shared.errors import ObjectNotFound
from shared.monitoring.capture import decode_capture_file
from shared.monitoring.capture_writer import CaptureWriter
from shared.monitoring.file_summary import (
    SUMMARIES_PREFIX,
    decode_summary,
    summary_key,
)
from shared.monitoring.job import check_model, labelled_captures
from shared.monitoring.report import DriftReport, decode_report
from shared.monitoring.summary import summarise
from shared.serving.cache import ModelCache
from shared.store.base import ObjectStore, StoredObject
from shared.store.fetch import fetch_in_order
from shared.store.local import LocalStore
from shared.store.s3 import S3Store
from tests.test_monitoring import (
    HOUR,
    MODEL,
    WINDOW,
    baseline,
    draw,
    serve,
)

# The shop model's fixtures: `trained` (made once) and `store` (a copy, served through).
from tests.test_monitoring import store as store
from tests.test_monitoring import trained as trained


def _traffic(store: LocalStore, n: int = 600, seed: int = 5) -> list[str]:
    """Served rows with what a summary must count right: missing values, values past the
    training range, categories never seen in training; in objects of 100 rows, so that a
    window has several. Returns the capture keys."""
    spec = {"target": "target", "monitoring": {"capture": {"batch_rows": 100}}}
    store.put(f"specs/{MODEL}.json", json.dumps(spec).encode())
    columns = draw(n, seed=seed)
    columns["x0"][:7] = 50.0  # out of the training range
    columns["x1"][7:20] = np.nan
    columns["region"][20:40] = "atlantis"  # unseen in training
    serve(columns, "req", batch=25)
    return [i.key for i in store.list(f"captures/{MODEL}/")]


def _check(store: ObjectStore) -> DriftReport:
    outcome = check_model(store, MODEL, WINDOW)
    return decode_report(store.get(outcome.report_key).body, outcome.report_key)


def _same_findings(a: DriftReport, b: DriftReport) -> None:
    """Two reports of one window that differ only in how the objects were read."""
    assert a.verdict == b.verdict
    assert a.reasons == b.reasons
    assert a.rows == b.rows
    assert a.capture_files == b.capture_files
    assert msgspec.to_builtins(a.versions) == msgspec.to_builtins(b.versions)
    assert a.labels == b.labels
    assert a.shadows == b.shadows


def test_serving_writes_each_objects_counts_beside_it(store: LocalStore) -> None:
    keys = _traffic(store)
    assert keys
    base = baseline(store)
    for key in keys:
        body = store.get(key).body
        summary = decode_summary(store.get(summary_key(key)).body, summary_key(key))
        rows = decode_capture_file(body, key)
        assert summary.capture_key == key
        assert summary.capture_bytes == len(body)
        assert summary.capture_sha256 == hashlib.sha256(body).hexdigest()
        assert summary.request_ids == sorted({r.request_id for r in rows})
        assert summary.counts == summarise(rows, {1: base})
    # Outside captures/: a table over the captures (Athena, DuckDB's glob) never reads them.
    assert all(not i.key.startswith("captures/") for i in store.list(SUMMARIES_PREFIX))
    assert inference.capture_writer().failed_summaries == 0


def test_the_check_reads_summaries_and_says_so(store: LocalStore) -> None:
    keys = _traffic(store)
    report = _check(store)
    assert report.summarised_files == report.capture_files == len(keys)
    assert report.summary_problems == []
    (section,) = report.versions
    # The summaries carried what the rows said: the unseen region, the out-of-range x0 and
    # the missing x1 (13 rows on top of none at training).
    features = {f.name: f for f in section.features}
    assert section.rows == 600
    assert features["region"].unseen == pytest.approx(20 / 600, abs=1e-6)
    assert features["x0"].out_of_range == pytest.approx(7 / 600, abs=1e-6)
    assert features["x1"].missing_rate == pytest.approx(13 / 600, abs=1e-6)


def test_a_window_mixing_objects_with_and_without_summaries(store: LocalStore) -> None:
    keys = _traffic(store)
    assert len(keys) >= 4
    from_summaries = _check(store)
    for key in keys[::2]:  # half the objects: as written before summaries existed
        store.delete(summary_key(key))
    mixed = _check(store)
    for key in keys[1::2]:
        store.delete(summary_key(key))
    from_rows = _check(store)

    assert from_summaries.summarised_files == len(keys)
    assert mixed.summarised_files == len(keys) // 2
    assert from_rows.summarised_files == 0
    _same_findings(from_summaries, mixed)
    _same_findings(from_summaries, from_rows)


def _rewrite_summary(store: LocalStore, key: str, **changes: Any) -> str:
    where = summary_key(key)
    document = json.loads(store.get(where).body)
    document.update(changes)
    store.put(where, json.dumps(document).encode())
    return where


def test_a_newer_corrupt_or_mismatched_summary_is_named_and_its_rows_read(
    store: LocalStore,
) -> None:
    keys = _traffic(store)
    expected = _check(store)
    newer = _rewrite_summary(store, keys[0], schema_version=99)
    mismatched = _rewrite_summary(store, keys[1], capture_bytes=12)
    corrupt = summary_key(keys[2])
    store.put(corrupt, b'{"schema_version": 1, "counts": [')

    report = _check(store)

    problems = {p.key: p.error for p in report.summary_problems}
    assert set(problems) == {newer, mismatched, corrupt}
    assert "schema_version 99 is newer" in problems[newer]
    assert "summarises 12 bytes" in problems[mismatched]
    assert "not a capture summary" in problems[corrupt]
    assert all(e.endswith("its capture object was read") for e in problems.values())
    assert report.summarised_files == len(keys) - 3
    assert report.skipped_files == []  # no rows were lost
    _same_findings(expected, report)


def _labels(store: LocalStore, request_ids: list[str]) -> None:
    lines = ["request_id,row,target"]
    lines += [f"{rid},{row},yes" for rid in request_ids for row in range(25)]
    store.put(f"labels/{MODEL}/batch.csv", "\n".join(lines).encode())


def test_labels_join_the_rows_their_summaries_list(store: LocalStore) -> None:
    keys = _traffic(store)
    labelled = ["req-0", "req-275"]  # two requests of 25 rows, in two objects at most
    _labels(store, labelled)
    holding = {
        key
        for key in keys
        if set(decode_summary(store.get(summary_key(key)).body, key).request_ids) & set(labelled)
    }
    assert 1 <= len(holding) <= 2
    read: list[str] = []
    original = LocalStore.get

    def get(self: LocalStore, key: str, **kwargs: Any) -> StoredObject:
        read.append(key)
        return original(self, key, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalStore, "get", get)
        with_summaries = _check(store)
    for key in keys:
        store.delete(summary_key(key))
    from_rows = _check(store)

    assert with_summaries.labels.matched == 50
    # Every object counted from its summary; only those holding labelled rows read, for
    # the join.
    assert with_summaries.summarised_files == len(keys)
    assert {k for k in read if k.startswith("captures/")} == holding
    _same_findings(with_summaries, from_rows)
    # Maintenance's labelled rows (a challenger's judgement) are found the same way.
    start, end = HOUR, HOUR + timedelta(hours=1)
    without = labelled_captures(store, MODEL, start, end, "target")
    assert len(without) == 50


def test_maintenance_reads_only_objects_with_labelled_rows(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = _traffic(store)
    _labels(store, ["req-100"])
    read: list[str] = []
    original = LocalStore.get

    def get(self: LocalStore, key: str, **kwargs: Any) -> StoredObject:
        read.append(key)
        return original(self, key, **kwargs)

    monkeypatch.setattr(LocalStore, "get", get)
    start, end = HOUR, HOUR + timedelta(hours=1)
    found = labelled_captures(store, MODEL, start, end, "target")

    assert len(found) == 25
    assert {r.request_id for r, _ in found} == {"req-100"}
    rows_read = [k for k in read if k.startswith("captures/")]
    assert len(rows_read) == 1 < len(keys)


class _FailingSummaries(LocalStore):
    def put(self, key: str, body: bytes, **kwargs: Any) -> str:
        if key.startswith(SUMMARIES_PREFIX):
            raise OSError("disk full")
        return super().put(key, body, **kwargs)


def test_a_summary_that_cannot_be_written_costs_a_read_not_rows(
    store: LocalStore, tmp_path: Path
) -> None:
    failing = _FailingSummaries(tmp_path / "store")  # the same folder as `store`
    inference.reset_cache(
        ModelCache(failing), CaptureWriter(failing, clock=lambda: HOUR.timestamp() + 600)
    )
    keys = _traffic(failing)
    writer = inference.capture_writer()
    assert writer.failed_summaries == writer.written_objects == len(keys)
    assert writer.failed_writes == 0
    assert writer.written_rows == 600
    report = _check(store)
    assert report.summarised_files == 0
    assert report.rows == 600


# --- reading many objects -----------------------------------------------------------------


class _CountingStore(LocalStore):
    """Reads that wait until told to go on, counting how many are in flight at once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.reads = 0
        self.go = threading.Semaphore(0)

    def get(self, key: str, *, version_id: str | None = None) -> StoredObject:
        with self.lock:
            self.in_flight += 1
            self.reads += 1
            self.most = max(self.most, self.in_flight)
        self.go.acquire()
        try:
            return super().get(key, version_id=version_id)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_fetch_keeps_order_bounds_reads_in_flight_and_hands_over_failures(
    tmp_path: Path,
) -> None:
    store = _CountingStore(tmp_path / "s")
    keys = [f"k/{i:03d}" for i in range(40)]
    for key in keys:
        if key != "k/007":
            store.put(key, key.encode())
    for _ in keys:
        store.go.release()  # every read may finish, in whatever order the threads run

    results = list(fetch_in_order(store, keys, concurrency=4))

    assert [k for k, _ in results] == keys
    assert all(body == k.encode() for k, body in results if k != "k/007")
    assert isinstance(dict(results)["k/007"], ObjectNotFound)
    assert 1 <= store.most <= 4


def test_fetch_stops_reading_when_its_reader_stops(tmp_path: Path) -> None:
    store = _CountingStore(tmp_path / "s")
    keys = [f"k/{i:03d}" for i in range(100)]
    for key in keys:
        store.put(key, b"x")
    for _ in range(10):
        store.go.release()
    reader = fetch_in_order(store, keys, concurrency=2)
    assert next(reader)[0] == "k/000"
    for _ in range(100):
        store.go.release()
    reader.close()  # the consumer is done: queued reads are cancelled, running ones end
    assert store.in_flight == 0
    assert store.reads <= 2 * 2  # at most twice the concurrency were ever queued


@pytest.fixture
def s3_store(aws_env: None) -> Iterator[S3Store]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="summaries")
        yield S3Store("summaries", client=client)


def test_the_check_on_s3_reads_summaries_concurrently(store: LocalStore, s3_store: S3Store) -> None:
    _traffic(store)
    _labels(store, ["req-50"])
    local = _check(store)
    for info in store.list(""):
        if not info.key.startswith("monitoring/"):
            s3_store.put(info.key, store.get(info.key).body)
    assert s3_store.read_concurrency > 1

    remote = _check(s3_store)

    _same_findings(local, remote)
    assert remote.summarised_files == local.summarised_files > 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda v: v["features"]["x0"]["counts"].pop(), "'x0' not counted in its"),
        (lambda v: v["features"].__setitem__("x0", {"kind": "categorical"}), "'x0' not counted"),
        (lambda v: v["features"]["region"]["counts"].__setitem__("north", 10**6), "add up"),
        (lambda v: v["features"].pop("plan"), "not the features of its metadata"),
        (lambda v: v["predictions"]["class_counts"].__setitem__("yes", -5), "add up"),
    ],
    ids=["a bin short", "another kind", "a total off", "a feature missing", "negative"],
)
def test_a_summary_that_does_not_fit_its_baseline_is_named_and_its_rows_read(
    store: LocalStore, change: Any, why: str
) -> None:
    # It decodes and names its object, but its counts are not counts of that object's rows
    # against the version's baseline: trusting it would fail the merge or the verdict.
    keys = _traffic(store)
    expected = _check(store)
    where = summary_key(keys[1])
    document = json.loads(store.get(where).body)
    change(document["counts"]["versions"]["1"])
    store.put(where, json.dumps(document).encode())

    report = _check(store)

    (problem,) = report.summary_problems
    assert problem.key == where
    assert why in problem.error
    assert report.summarised_files == len(keys) - 1
    _same_findings(expected, report)


def test_rows_of_a_version_without_metadata_are_named_from_summaries_too(
    store: LocalStore,
) -> None:
    _traffic(store)
    store.delete(f"models/{MODEL}/versions/1/metadata.json")
    from_summaries = _check(store)
    for info in list(store.list(SUMMARIES_PREFIX)):
        store.delete(info.key)
    from_rows = _check(store)
    assert "600 rows of versions with no readable metadata" in from_summaries.reasons
    assert from_summaries.reasons == from_rows.reasons
    assert from_summaries.versions == from_rows.versions == []


def test_a_labelled_object_keeps_its_counts_when_its_rows_cannot_be_joined(
    store: LocalStore,
) -> None:
    # Counted from its summary, an object a label names is read for the join only: when
    # its rows cannot be decoded (here a NaN probability, written as null), the labels of
    # its rows are lost and named, never its counts.
    keys = _traffic(store)
    meta = baseline(store).metadata
    writer = CaptureWriter(store, clock=lambda: HOUR.timestamp() + 900)
    numeric = [f.name for f in meta.features if f.kind == "numeric"]
    writer.add(
        CaptureSettings(),
        model=MODEL,
        version=1,
        served_by="production",
        request_id="odd",
        numeric_names=numeric,
        numeric=np.zeros((10, len(numeric))),
        categorical={"region": np.full(10, "north"), "plan": np.full(10, "basic")},
        predictions=np.full(10, "yes", dtype=object),
        probabilities=np.full((10, 2), np.nan),
        classes=["no", "yes"],
        metadata=meta,
    )
    writer.flush()
    before = _check(store)
    _labels(store, ["odd"])

    after = _check(store)

    assert before.rows == after.rows == 610
    assert after.summarised_files == len(keys) + 1
    (skipped,) = after.skipped_files
    assert skipped.key.startswith(f"captures/{MODEL}/")
    assert after.labels.unmatched == 25
