"""Monitoring, as a user meets it: serve, find the traffic, upload labels, check a window."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from chalice.test import Client
from moto import mock_aws

from app import DATA_BUCKET, app
from functions import inference
from shared.data.spec import CaptureSettings, MonitoringSettings
from shared.errors import MlopsError
from shared.monitoring.assessment import assess_version
from shared.monitoring.capture import decode_capture_file, partition_hour
from shared.monitoring.capture_writer import CaptureWriter
from shared.monitoring.job import check_model
from shared.monitoring.labels import LabelFileError, parse_labels
from shared.monitoring.report import decode_report, report_key, window_id
from shared.monitoring.schema import NewerRecordError
from shared.monitoring.summary import (
    Baseline,
    VersionCounts,
    count_categorical,
    count_numeric,
)
from shared.registry.audit import read_trail
from shared.registry.metadata import decode_metadata
from shared.registry.records import version_prefix
from shared.serving.cache import ModelCache
from shared.store.base import ObjectStore
from shared.store.local import LocalStore
from shared.store.s3 import S3Store
from shared.training.job import train_from_dataset
from tests.factories import to_csv

MODEL = "shop"
NUMERIC = ["x0", "x1", "x2", "x3", "x4"]
REGIONS = ["north", "south", "east"]
PLANS = ["basic", "plus", "pro"]
# 10:00 UTC: every capture of these tests lands in the window 2026-11-30T10-1h.
HOUR = datetime(2026, 11, 30, 10, tzinfo=UTC)
WINDOW = window_id(HOUR, 1)


def draw(n: int, seed: int, *, shift: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Rows of the shop's data: five normal features (x4 5% missing), two categories."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {name: rng.normal(size=n) for name in NUMERIC}
    for name, by in (shift or {}).items():
        if name in columns:
            columns[name] = columns[name] + by
    columns["x4"][rng.random(n) < 0.05] = np.nan
    region_p = [0.5, 0.3, 0.2] if "region" not in (shift or {}) else [0.1, 0.2, 0.7]
    columns["region"] = rng.choice(REGIONS, size=n, p=region_p).astype(object)
    columns["plan"] = rng.choice(PLANS, size=n).astype(object)
    score = columns["x0"] + 0.8 * columns["x1"] + (columns["region"] == "north")
    columns["target"] = np.where(score + rng.normal(scale=0.5, size=n) > 0.5, "yes", "no")
    return columns


def records(columns: dict[str, np.ndarray], start: int = 0, stop: int | None = None) -> list[Any]:
    stop = len(columns["x0"]) if stop is None else stop
    out = []
    for i in range(start, stop):
        record: dict[str, Any] = {}
        for name in NUMERIC:
            value = float(columns[name][i])
            record[name] = None if np.isnan(value) else value
        record["region"] = str(columns["region"][i])
        record["plan"] = str(columns["plan"][i])
        out.append(record)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the shop model trained on 4,000 rows (made once, copied per test)."""
    root = tmp_path_factory.mktemp("trained") / "store"
    store = LocalStore(root)
    data = draw(4000, seed=0)
    header = [*NUMERIC, "region", "plan", "target"]
    rows = [
        ["" if name in NUMERIC and np.isnan(data[name][i]) else data[name][i] for name in header]
        for i in range(4000)
    ]
    store.put(f"datasets/{MODEL}/week0.csv", to_csv(header, rows))
    store.put(f"specs/{MODEL}.json", json.dumps({"target": "target"}).encode())
    outcome = train_from_dataset(store, f"datasets/{MODEL}/week0.csv", trigger="test")
    assert outcome.version == 1, outcome.reason
    return root


@pytest.fixture
def store(trained: Path, tmp_path: Path) -> Iterator[LocalStore]:
    shutil.copytree(trained, tmp_path / "store")
    local = LocalStore(tmp_path / "store")
    inference.reset_cache(
        ModelCache(local), CaptureWriter(local, clock=lambda: HOUR.timestamp() + 600)
    )
    yield local
    inference.reset_cache()


def serve(columns: dict[str, np.ndarray], request_id: str, batch: int = 100) -> None:
    """Predict every row in-process through the records route, `batch` rows a request."""
    n = len(columns["x0"])
    for start in range(0, n, batch):
        body = json.dumps(
            {"id": f"{request_id}-{start}", "records": records(columns, start, start + batch)}
        )
        result = inference.predict_records(MODEL, None, body.encode(), {})
        assert result.status == 200, result.body
    inference.capture_writer().flush()


def baseline(store: ObjectStore, version: int = 1) -> Baseline:
    body = store.get(version_prefix(MODEL, version) + "metadata.json").body
    return Baseline(decode_metadata(body))


# --- capture ---------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def add(writer: CaptureWriter, settings: CaptureSettings, rows: int, rid: str = "r") -> None:
    writer.add(
        settings,
        model=MODEL,
        version=1,
        served_by="production",
        request_id=rid,
        numeric_names=["a"],
        numeric=np.arange(rows, dtype=np.float64).reshape(rows, 1),
        categorical={"c": np.array(["x"] * rows, dtype=object)},
        predictions=np.array(["yes"] * rows, dtype=object),
        probabilities=np.full((rows, 2), 0.5),
        classes=["no", "yes"],
    )


def test_captures_are_batched_by_rows_time_and_hour(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    clock = Clock(HOUR.timestamp())
    writer = CaptureWriter(store, clock=clock)
    settings = CaptureSettings(batch_rows=5, max_wait_seconds=30)
    for _ in range(4):
        add(writer, settings, 1)
    assert list(store.list("captures/")) == []  # 4 rows wait for the fifth
    add(writer, settings, 1)
    assert len(list(store.list("captures/"))) == 1
    add(writer, settings, 1)
    clock.now += 31  # the oldest buffered row has now waited longer than max_wait
    add(writer, settings, 1)
    assert len(list(store.list("captures/"))) == 2
    clock.now = HOUR.timestamp() + 3599
    add(writer, settings, 1)
    clock.now += 2  # the next hour: a batch never spans two partitions
    add(writer, settings, 1)
    writer.flush()
    keys = [info.key for info in store.list("captures/")]
    assert len(keys) == 4
    assert {partition_hour(k) for k in keys} == {HOUR, HOUR + timedelta(hours=1)}
    assert keys[0].startswith(f"captures/{MODEL}/dt=2026-11-30/hour=10/")
    assert writer.written_rows == 9
    assert writer.buffered_rows == 0


def test_a_capture_file_is_gzip_json_lines_that_tools_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    writer = CaptureWriter(store, clock=Clock(HOUR.timestamp()))
    writer.add(
        CaptureSettings(),
        model=MODEL,
        version=1,
        served_by="production",
        request_id="client-7",
        numeric_names=["a", "b"],
        numeric=np.array([[1.5, np.nan], [2.0, 3.0]]),
        categorical={"c": np.array(["x", ""], dtype=object)},
        predictions=np.array(["yes", "no"], dtype=object),
        probabilities=np.array([[0.25, 0.75], [0.5, 0.5]]),
        classes=["no", "yes"],
    )
    writer.flush()
    (info,) = store.list("captures/")
    lines = gzip.decompress(store.get(info.key).body).decode().splitlines()
    first, second = (json.loads(line) for line in lines)  # plain JSON, one row a line
    assert first["features"] == {"a": 1.5, "b": None, "c": "x"}
    assert second["features"] == {"a": 2.0, "b": 3.0, "c": None}
    assert (first["row"], second["row"]) == (0, 1)
    assert first["capture_id"] == second["capture_id"]
    assert first["request_id"] == "client-7"
    assert first["probabilities"] == {"no": 0.25, "yes": 0.75}
    assert first["at"] == "2026-11-30T10:00:00Z"
    assert first["schema_version"] == 1


def test_a_failing_store_never_fails_a_prediction(store: LocalStore) -> None:
    class Broken(LocalStore):
        def put(self, *args: Any, **kwargs: Any) -> str:
            raise OSError("disk full")

    broken = Broken(store._root)
    writer = CaptureWriter(broken, clock=Clock(HOUR.timestamp()))
    inference.reset_cache(ModelCache(store), writer)
    body = json.dumps({"records": records(draw(3, seed=1))}).encode()
    answers = [inference.predict_records(MODEL, None, body, {}) for _ in range(2)]
    writer.flush()
    assert [a.status for a in answers] == [200, 200]
    assert answers[0].body["predictions"] == answers[1].body["predictions"]
    assert writer.failed_writes == 1
    assert writer.dropped_rows == 6


def test_sampling_keeps_a_share_of_requests(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    draws = iter([0.1, 0.9, 0.2, 0.7])
    writer = CaptureWriter(store, clock=Clock(HOUR.timestamp()), sample=lambda: next(draws))
    settings = CaptureSettings(sample_rate=0.5)
    for _ in range(4):
        add(writer, settings, 2)
    assert writer.buffered_rows == 4


# --- labels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,target\nr1,yes\n", "labels/shop/a.csv: line 1: no 'request_id' column"),
        ("request_id,outcome\nr1,yes\n", "no column 'target'"),
        ("request_id,row,target\nr1,0,yes\nr2,two,no\n", "line 3, column 'row': 'two'"),
        ("request_id,target\nr1,yes\nr2,\n", "line 3, column 'target': empty"),
        ("request_id,target\nr1,yes,extra\n", "line 2: 3 fields, the header has 2"),
        ("", "empty file"),
    ],
)
def test_bad_label_files_are_named_by_file_column_and_line(text: str, message: str) -> None:
    with pytest.raises(LabelFileError, match=message.replace("(", r"\(")):
        parse_labels(text.encode(), "labels/shop/a.csv", "target")


def _labels_csv(pairs: list[tuple[str, int, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["request_id", "row", "target"])
    writer.writerows(pairs)
    return out.getvalue().encode()


def test_labels_join_rows_of_single_and_multi_row_requests(store: LocalStore) -> None:
    data = draw(300, seed=3)
    serve(data, "req", batch=100)  # requests req-0, req-100, req-200 of 100 rows each
    # The same client id used twice: the join cannot tell which request a label means.
    for _ in range(2):
        body = json.dumps({"id": "reused", "records": records(data, 0, 1)}).encode()
        assert inference.predict_records(MODEL, None, body, {}).status == 200
    inference.capture_writer().flush()
    truth = [str(t) for t in data["target"]]
    pairs = [(f"req-{100 * (i // 100)}", i % 100, truth[i]) for i in range(150)]
    store.put("labels/shop/day1.csv", _labels_csv(pairs))
    # A later file labels row 5 again (the last upload wins), an unknown id, the reused id.
    store.put(
        "labels/shop/day2.csv",
        _labels_csv([("req-0", 5, truth[5]), ("nobody", 0, "yes"), ("reused", 0, "no")]),
    )
    check_model(store, MODEL, WINDOW)
    report = decode_report(store.get(report_key(MODEL, WINDOW)).body, "r")
    labels = report.labels
    assert (labels.files, labels.labels, labels.matched) == (2, 152, 150)
    assert (labels.unmatched, labels.ambiguous, labels.duplicates) == (1, 1, 1)
    (section,) = report.versions
    assert section.performance is not None
    assert section.performance.labelled_rows == 150


def test_a_bad_label_file_is_recorded_once_and_changes_nothing_else(store: LocalStore) -> None:
    serve(draw(200, seed=4), "req")
    store.put("labels/shop/bad.csv", b"request_id,target\nreq-0,yes\n,no\n")
    first = check_model(store, MODEL, WINDOW)
    second = check_model(store, MODEL, WINDOW)
    report = decode_report(store.get(first.report_key).body, "r")
    assert [p.key for p in report.skipped_files] == ["labels/shop/bad.csv"]
    assert "line 3, column 'request_id'" in report.skipped_files[0].error
    rejected = [e for e in read_trail(store, MODEL) if e.event == "labels_rejected"]
    assert len(rejected) == 1
    assert rejected[0].details["key"] == "labels/shop/bad.csv"
    assert second.verdict == first.verdict == "ok"


# --- verdicts --------------------------------------------------------------------------


def test_traffic_like_training_is_ok(store: LocalStore) -> None:
    serve(draw(600, seed=5), "req")
    outcome = check_model(store, MODEL, WINDOW)
    assert outcome.verdict == "ok", decode_report(store.get(outcome.report_key).body, "r").reasons
    assert outcome.rows == 600


def test_shifted_traffic_is_drift(store: LocalStore) -> None:
    serve(draw(600, seed=6, shift={"x0": 1.5, "x1": 1.5, "x2": -1.5, "region": 1}), "req")
    outcome = check_model(store, MODEL, WINDOW)
    report = decode_report(store.get(outcome.report_key).body, "r")
    assert outcome.verdict == "drift"
    (section,) = report.versions
    assert {"x0", "x1", "x2", "region"} <= set(section.drifted_features)
    assert section.output is not None
    assert section.output.drifted
    assert section.resolution == "percentiles"
    x0 = next(f for f in section.features if f.name == "x0")
    assert x0.ks_error_bound is not None
    assert x0.ks_error_bound <= 0.05
    assert x0.psi_band == "major"


def test_wrong_answers_on_labelled_rows_are_decay(store: LocalStore) -> None:
    data = draw(400, seed=7)
    serve(data, "req")
    # The world changed: the true answer is now the opposite of what training learnt.
    flipped = ["no" if t == "yes" else "yes" for t in data["target"]]
    pairs = [(f"req-{100 * (i // 100)}", i % 100, flipped[i]) for i in range(400)]
    store.put("labels/shop/week1.csv", _labels_csv(pairs))
    outcome = check_model(store, MODEL, WINDOW)
    report = decode_report(store.get(outcome.report_key).body, "r")
    assert outcome.verdict == "decay"
    performance = report.versions[0].performance
    assert performance is not None
    assert performance.decided
    assert performance.decayed
    assert performance.interval is not None
    assert performance.interval[1] < performance.threshold < performance.training_value


def test_too_few_rows_are_insufficient_data_not_an_alarm(store: LocalStore) -> None:
    serve(draw(30, seed=8, shift={"x0": 3.0, "x1": 3.0, "x2": 3.0}), "req", batch=10)
    outcome = check_model(store, MODEL, WINDOW)
    assert outcome.verdict == "insufficient_data"
    empty = check_model(store, MODEL, window_id(HOUR - timedelta(hours=5), 1))
    assert (empty.verdict, empty.rows) == ("insufficient_data", 0)


def _counts(b: Baseline, columns: dict[str, np.ndarray], predictions: np.ndarray) -> VersionCounts:
    """A window's counts straight from arrays (the pure path the capture files feed)."""
    from shared.monitoring.summary import PredictionCounts

    features: dict[str, Any] = {}
    for name in NUMERIC:
        features[name] = count_numeric(columns[name], b.numeric(name))
    for name in ("region", "plan"):
        features[name] = count_categorical(str(v) for v in columns[name])
    classes, counts = np.unique(predictions, return_counts=True)
    return VersionCounts(
        version=b.version,
        rows=len(columns["x0"]),
        features=features,
        predictions=PredictionCounts(
            class_counts={str(c): int(n) for c, n in zip(classes, counts, strict=True)}
        ),
    )


def _predict(b: Baseline, columns: dict[str, np.ndarray]) -> np.ndarray:
    # The shop model is close to this rule; the prediction's distribution is what matters.
    score = columns["x0"] + 0.8 * columns["x1"] + (columns["region"] == "north")
    return np.where(score > 0.5, "yes", "no")


@pytest.mark.parametrize("rows", [50, 500, 50_000])
def test_no_false_alarm_at_any_sample_size(store: LocalStore, rows: int) -> None:
    b = baseline(store)
    # min_rows 10: even the 50-row windows get a verdict (by default they would be
    # insufficient_data, which says nothing about false alarms).
    settings = MonitoringSettings(min_rows=10)
    verdicts = []
    alarms = 0
    trials = 0
    for seed in range(20):
        columns = draw(rows, seed=1000 + seed)
        section = assess_version(b, _counts(b, columns, _predict(b, columns)), None, settings)
        verdicts.append(section.verdict)
        alarms += len(section.drifted_features)
        trials += len(section.features)
    assert "drift" not in verdicts
    # 20 windows x 7 features: at a nominal 5%, 7 alarms are expected; 14 is 3 sd above.
    assert alarms <= 14, (rows, alarms, trials)


def test_half_a_standard_deviation_in_one_feature_is_seen_at_500_rows(store: LocalStore) -> None:
    b = baseline(store)
    settings = MonitoringSettings()
    seen = 0
    for seed in range(20):
        columns = draw(500, seed=2000 + seed, shift={"x2": 0.5})
        section = assess_version(b, _counts(b, columns, _predict(b, columns)), None, settings)
        seen += "x2" in section.drifted_features
    assert seen >= 19


def test_a_change_in_the_missing_share_alone_is_drift_of_that_feature(store: LocalStore) -> None:
    b = baseline(store)
    columns = draw(2000, seed=9)
    columns["x3"][: len(columns["x3"]) // 3] = np.nan  # a third missing, none at training
    section = assess_version(
        b, _counts(b, columns, _predict(b, columns)), None, MonitoringSettings()
    )
    x3 = next(f for f in section.features if f.name == "x3")
    assert x3.drifted
    assert any("missing share" in reason for reason in x3.reasons)


# --- windows, records, the schedule -----------------------------------------------------


def test_the_same_window_twice_gives_the_same_report_and_one_audit_record(
    store: LocalStore,
) -> None:
    serve(draw(600, seed=10, shift={"x0": 1.5, "x1": 1.5, "x2": -1.5, "region": 1}), "req")
    first = check_model(store, MODEL, WINDOW)
    body = store.get(first.report_key).body
    html = store.get(report_key(MODEL, WINDOW, "html")).body
    second = check_model(store, MODEL, WINDOW)
    assert (first.written, first.verdict_recorded) == (True, True)
    assert (second.written, second.verdict_recorded) == (False, False)
    assert store.get(first.report_key).body == body
    assert store.get(report_key(MODEL, WINDOW, "html")).body == html
    changes = [e for e in read_trail(store, MODEL) if e.event == "verdict_changed"]
    assert [(e.details["window"], e.details["verdict"]) for e in changes] == [(WINDOW, "drift")]


def test_a_report_written_by_newer_code_is_not_overwritten(store: LocalStore) -> None:
    serve(draw(200, seed=11), "req")
    newer = json.dumps({"schema_version": 99, "model": MODEL, "future": True}).encode()
    store.put(report_key(MODEL, WINDOW), newer)
    with pytest.raises(NewerRecordError, match="schema_version 99 is newer"):
        check_model(store, MODEL, WINDOW)
    assert store.get(report_key(MODEL, WINDOW)).body == newer


def test_a_corrupt_capture_file_is_named_and_skipped(store: LocalStore) -> None:
    serve(draw(300, seed=12), "req")
    bad_key = f"captures/{MODEL}/dt=2026-11-30/hour=10/zz-corrupt.jsonl.gz"
    store.put(bad_key, b"not gzip at all")
    outcome = check_model(store, MODEL, WINDOW)
    report = decode_report(store.get(outcome.report_key).body, "r")
    assert [p.key for p in report.skipped_files] == [bad_key]
    assert "not a gzip file" in report.skipped_files[0].error
    assert (outcome.rows, outcome.verdict) == (300, "ok")
    with pytest.raises(MlopsError, match="zz-corrupt"):
        decode_capture_file(b"not gzip", bad_key)


def test_the_hourly_schedule_checks_the_last_window_through_chalice(
    trained: Path, aws_env: None
) -> None:
    bucket = DATA_BUCKET  # the dev stage's MLOPS_STORE, which Chalice's test client sets
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=bucket)
        s3 = S3Store(bucket)
        local = LocalStore(trained)
        for info in local.list():
            s3.put(info.key, local.get(info.key).body)
        inference.reset_cache(
            ModelCache(s3), CaptureWriter(s3, clock=lambda: HOUR.timestamp() + 120)
        )
        try:
            serve(draw(300, seed=13), "req")
        finally:
            inference.reset_cache()
        event = {
            "version": "0",
            "id": "0d0f4b0c-schedule",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": (HOUR + timedelta(hours=1, minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/check_monitoring"],
            "detail": {},
        }
        with Client(app) as client:
            for _ in range(2):  # delivered twice: one report, one audit record
                client.lambda_.invoke("check_monitoring", event)
        report = decode_report(s3.get(report_key(MODEL, WINDOW)).body, "r")
        assert (report.verdict, report.rows) == ("ok", 300)
        assert s3.get(report_key(MODEL, WINDOW, "html")).body.startswith(b"<!doctype html>")
        changes = [e for e in read_trail(s3, MODEL) if e.event == "verdict_changed"]
        assert len(changes) == 1


def test_a_version_trained_before_fine_bins_is_checked_on_deciles(store: LocalStore) -> None:
    # Rewrite v1's metadata as the first metadata schema stored it: deciles, and the
    # pooled categories under a '__other__' key.
    import msgspec

    from shared.data.profile import CategoricalProfile, profile_numeric, quantile_edges
    from shared.registry.metadata import encode_metadata

    key = version_prefix(MODEL, 1) + "metadata.json"
    meta = decode_metadata(store.get(key).body)
    reference = draw(4000, seed=0)
    features: dict[str, Any] = {}
    for name, profile in meta.baseline.features.items():
        if isinstance(profile, CategoricalProfile):
            counts = dict(profile.counts)
            rare = min(counts, key=lambda c: counts[c])
            counts["__other__"] = counts.pop(rare)
            features[name] = msgspec.structs.replace(profile, counts=counts, other=0)
        else:
            values = reference[name].astype(np.float64)
            features[name] = profile_numeric(values, quantile_edges(values[~np.isnan(values)], 10))
    old = msgspec.structs.replace(
        meta,
        schema_version=1,
        baseline=msgspec.structs.replace(meta.baseline, features=features),
    )
    store.delete(key)
    store.put(key, encode_metadata(old))
    serve(draw(600, seed=14, shift={"x0": 1.5, "x1": 1.5, "x2": -1.5, "region": 1}), "req")
    report = decode_report(store.get(check_model(store, MODEL, WINDOW).report_key).body, "r")
    (section,) = report.versions
    assert section.resolution == "deciles"
    assert report.verdict == "drift"
    x0 = next(f for f in section.features if f.name == "x0")
    assert len(x0.histogram.bins) <= 10


# --- found in review: each failed before its fix ---------------------------------------


def _measured(store: LocalStore, correct: int, wrong: int, *, min_rows: int = 100) -> Any:
    import msgspec

    from shared.monitoring.performance import LabelledRow, measure

    meta = msgspec.structs.replace(
        baseline(store).metadata,
        primary_metric="accuracy",
        metrics={**baseline(store).metadata.metrics, "accuracy": 0.9},
    )
    rows = [LabelledRow("yes", "yes", None)] * correct + [LabelledRow("yes", "no", None)] * wrong
    return measure(meta, rows, MonitoringSettings(min_labelled_rows=min_rows))


def test_decay_needs_the_whole_interval_below_the_threshold(store: LocalStore) -> None:
    # 84% right on 100 rows: below the 85.5% threshold, but the interval reaches above it.
    straddling = _measured(store, correct=84, wrong=16)
    assert straddling.decided
    assert straddling.interval[0] < straddling.threshold < straddling.interval[1]
    assert not straddling.decayed
    assert _measured(store, correct=600, wrong=400).decayed


def test_too_few_labelled_rows_decide_nothing(store: LocalStore) -> None:
    few = _measured(store, correct=10, wrong=40)
    assert not few.decided
    assert not few.decayed


def test_a_label_that_is_no_class_of_the_model_is_not_a_wrong_answer(store: LocalStore) -> None:
    data = draw(300, seed=40)
    serve(data, "req")
    # The right answers, capitalised: "Yes" is not a class of the model ("yes"/"no").
    pairs = [
        (f"req-{100 * (i // 100)}", i % 100, str(data["target"][i]).title()) for i in range(300)
    ]
    store.put("labels/shop/typo.csv", _labels_csv(pairs))
    report = decode_report(store.get(check_model(store, MODEL, WINDOW).report_key).body, "r")
    assert report.verdict == "ok"
    performance = report.versions[0].performance
    assert performance is not None
    assert (performance.labelled_rows, performance.unusable_labels) == (0, 300)


def test_a_window_spanning_a_promotion_compares_each_version_with_its_own_baseline(
    store: LocalStore,
) -> None:
    from shared.registry.registry import ModelRegistry

    header = [*NUMERIC, "region", "plan", "target"]
    moved = draw(4000, seed=41, shift={"x0": 2.0})
    rows = [
        ["" if n in NUMERIC and np.isnan(moved[n][i]) else moved[n][i] for n in header]
        for i in range(4000)
    ]
    store.put(f"datasets/{MODEL}/moved.csv", to_csv(header, rows))
    assert train_from_dataset(store, f"datasets/{MODEL}/moved.csv", trigger="t").version == 2
    traffic = draw(400, seed=42, shift={"x0": 2.0})
    serve({k: v[:200] for k, v in traffic.items()}, "before")  # v1 answers
    ModelRegistry(store, MODEL).set_alias("production", 2, reason="test", actor="test")
    inference.model_cache().record(MODEL)  # the alias moved; serving sees it after its TTL
    inference.reset_cache(
        ModelCache(store, alias_ttl=0.0), CaptureWriter(store, clock=lambda: HOUR.timestamp() + 900)
    )
    serve({k: v[200:] for k, v in traffic.items()}, "after")  # v2 answers
    report = decode_report(store.get(check_model(store, MODEL, WINDOW).report_key).body, "r")
    by_version = {s.version: s for s in report.versions}
    assert (by_version[1].rows, by_version[2].rows) == (200, 200)
    assert "x0" in by_version[1].drifted_features  # x0 moved away from v1's training data
    assert "x0" not in by_version[2].drifted_features  # and is what v2 was trained on


def test_a_line_of_the_wrong_kind_skips_its_file_only(store: LocalStore) -> None:
    serve(draw(200, seed=43), "req")
    line = json.dumps(
        {
            "capture_id": "c",
            "row": 0,
            "request_id": "r",
            "model": MODEL,
            "version": 1,
            "served_by": "production",
            "at": "2026-11-30T10:00:00Z",
            "prediction": "yes",
            "features": {
                "x0": "not a number",
                "x1": 1.0,
                "x2": 1.0,
                "x3": 1.0,
                "x4": 1.0,
                "region": "north",
                "plan": "pro",
            },
        }
    ).encode()
    bad = f"captures/{MODEL}/dt=2026-11-30/hour=10/zz-typed.jsonl.gz"
    store.put(bad, gzip.compress(line + b"\n"))
    report = decode_report(store.get(check_model(store, MODEL, WINDOW).report_key).body, "r")
    assert [p.key for p in report.skipped_files] == [bad]
    assert report.rows == 200


def test_one_wild_value_does_not_make_a_tiny_shift_drift(store: LocalStore) -> None:
    b = baseline(store)
    settings = MonitoringSettings()
    columns = draw(50_000, seed=44, shift={"x2": 0.06})
    columns["x2"][0] = 1e4
    section = assess_version(b, _counts(b, columns, _predict(b, columns)), None, settings)
    assert "x2" not in section.drifted_features


def test_values_beyond_a_constant_training_column_drift(store: LocalStore) -> None:
    from shared.data.profile import profile_numeric
    from shared.monitoring.assessment import assess_numeric

    profile = profile_numeric(np.full(1000, 5.0))
    counts = count_numeric(np.full(500, 1000.0), profile)
    drift = assess_numeric("flag", profile, counts, MonitoringSettings())
    assert drift.drifted
    assert "outside the training range" in drift.reasons[0]
    same = assess_numeric(
        "flag", profile, count_numeric(np.full(500, 5.0), profile), MonitoringSettings()
    )
    assert not same.drifted


def test_a_quiet_model_s_rows_are_written_when_another_model_is_served(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    clock = Clock(HOUR.timestamp())
    writer = CaptureWriter(store, clock=clock)
    settings = CaptureSettings(max_wait_seconds=60)
    add(writer, settings, 1)  # MODEL, then silence
    clock.now += 61
    writer.add(
        settings,
        model="other",
        version=1,
        served_by="production",
        request_id="o",
        numeric_names=["a"],
        numeric=np.zeros((1, 1)),
        categorical={},
        predictions=np.array([1.0]),
        probabilities=None,
        classes=None,
    )
    assert [k.key.split("/")[1] for k in store.list("captures/")] == [MODEL]


@pytest.mark.parametrize("window", ["2026-11-30T10-01h", "2026-11-30T10-1H", "9999-12-31T23-2h"])
def test_a_window_has_one_name(window: str) -> None:
    from shared.monitoring.report import parse_window_id

    with pytest.raises(MlopsError, match="is not like 2026-11-30T10-1h"):
        parse_window_id(window)


def test_a_verdict_change_is_recorded_even_if_the_first_delivery_died_after_the_report(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.monitoring.job as job

    serve(draw(600, seed=45, shift={"x0": 1.5, "x1": 1.5, "x2": -1.5, "region": 1}), "req")

    def dies(*args: Any, **kwargs: Any) -> bool:
        raise OSError("the container was reaped")

    with monkeypatch.context() as patched:
        patched.setattr(job, "record_event_once", dies)
        with pytest.raises(OSError, match="reaped"):
            check_model(store, MODEL, WINDOW)
    retried = check_model(store, MODEL, WINDOW)
    assert (retried.written, retried.verdict_recorded) == (False, True)
    assert [e.event for e in read_trail(store, MODEL)].count("verdict_changed") == 1


def test_a_large_request_is_captured_in_part_with_its_row_positions(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    writer = CaptureWriter(store, clock=Clock(HOUR.timestamp()))
    add(writer, CaptureSettings(max_rows_per_request=10), 1000, rid="batch")
    writer.flush()
    (info,) = store.list("captures/")
    rows = decode_capture_file(store.get(info.key).body, info.key)
    positions = [r.row for r in rows]
    assert len(positions) == 10
    assert (positions[0], positions[-1]) == (0, 999)  # spread over the whole request
    # Each kept row carries its own values: row i had feature a == i.
    assert all(r.features["a"] == float(r.row) for r in rows)


def test_a_feature_in_the_wrong_unit_is_a_data_problem_that_mlops_monitor_names(
    store: LocalStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from functions.cli import main

    data = draw(300, seed=45)
    data["x0"] = data["x0"] * 10  # sent in the wrong unit
    serve(data, "req")
    assert main(["--store", str(tmp_path / "store"), "monitor", MODEL, "--window", WINDOW]) == 0
    out = capsys.readouterr().out
    assert f"{MODEL} {WINDOW}: data_problem (300 rows, 1 data problem" in out
    assert "v1: x0: " in out
    assert "of values outside the training range [" in out
    page = store.get(report_key(MODEL, WINDOW, "html")).body.decode()
    assert "Data problem" in page
    assert "look like training" not in page
