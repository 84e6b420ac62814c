"""Retraining: a verdict assembles a new training set once, from data and labelled rows only."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from functions import inference
from functions.monitoring import retrain
from shared.data.spec import RetrainingSettings, parse_spec
from shared.maintenance.retraining import RetrainingSources, due, retraining_key
from shared.monitoring.capture import CaptureWriter
from shared.monitoring.job import check_model
from shared.monitoring.report import window_id
from shared.registry.audit import read_trail
from shared.registry.metadata import decode_metadata
from shared.registry.records import version_prefix
from shared.serving.cache import ModelCache
from shared.store.local import LocalStore
from shared.training.job import train_from_dataset
from tests.test_maintenance import HEADER, MODEL, dataset
from tests.test_monitoring import HOUR, draw, records

WINDOW = window_id(HOUR, 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    local = LocalStore(tmp_path / "store")
    local.put(
        f"specs/{MODEL}.json",
        json.dumps({"retraining": {"keep_base_rows": 1000}}).encode(),
    )
    local.put(f"datasets/{MODEL}/week0.csv", dataset(3000, seed=20))
    assert train_from_dataset(local, f"datasets/{MODEL}/week0.csv", trigger="t").version == 1
    inference.reset_cache(
        ModelCache(local), CaptureWriter(local, clock=lambda: HOUR.timestamp() + 300)
    )
    yield local
    inference.reset_cache()


def shifted_traffic_with_labels(store: LocalStore, n: int = 400) -> None:
    """Preferences turned around: what sold before does not now. Served, then labelled."""
    traffic = draw(n, seed=21)
    for start in range(0, n, 100):
        body = json.dumps({"id": f"w1-{start}", "records": records(traffic, start, start + 100)})
        assert inference.predict_records(MODEL, None, body.encode(), {}).status == 200
    inference.capture_writer().flush()
    truth = ["no" if t == "yes" else "yes" for t in traffic["target"]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["request_id", "row", "target"])
    writer.writerows((f"w1-{100 * (i // 100)}", i % 100, truth[i]) for i in range(n))
    store.put(f"labels/{MODEL}/week1.csv", out.getvalue().encode())


def test_a_decay_verdict_retrains_once_from_the_data_and_the_labelled_rows(
    store: LocalStore,
) -> None:
    shifted_traffic_with_labels(store)
    outcome = check_model(store, MODEL, WINDOW)
    assert outcome.verdict == "decay"
    started = retrain(store, outcome)
    assert started is not None
    assert started.started
    key = retraining_key(MODEL, WINDOW)
    assert started.data_key == key
    rows = list(csv.reader(io.StringIO(store.get(key).body.decode())))
    assert rows[0] == HEADER
    assert len(rows) == 1 + 1000 + 400  # the last 1,000 rows of the data, 400 labelled rows
    sources = msgspec.json.decode(
        store.get(key.removesuffix(".csv") + ".sources.json").body, type=RetrainingSources
    )
    assert (sources.parent_version, sources.base_key) == (1, f"datasets/{MODEL}/week0.csv")
    assert (sources.base_rows, sources.labelled_rows) == (1000, 400)
    assert sources.label_files == [f"labels/{MODEL}/week1.csv"]
    assert len(sources.captured) == 400
    # The spec it trains under pins what version 1 learnt.
    spec = parse_spec(store.get(key.removesuffix(".csv") + ".spec.json").body)
    assert (spec.task, spec.target) == ("classification", "target")
    assert spec.features == ["x0", "x1", "x2", "x3", "x4", "region", "plan"]
    assert spec.categorical == ["region", "plan"]

    # The same window's verdict delivered again assembles nothing new.
    again = retrain(store, outcome)
    assert again is not None
    assert not again.started
    assert again.reason.startswith("a retraining started for the window") or "already" in (
        again.reason
    )

    trained = train_from_dataset(store, key, trigger="test")
    assert trained.status == "registered"
    meta = decode_metadata(store.get(version_prefix(MODEL, 2) + "metadata.json").body)
    assert meta.lineage.data.key == key
    assert meta.lineage.spec_key == key.removesuffix(".csv") + ".spec.json"
    events = [e.event for e in read_trail(store, MODEL)]
    assert events.count("retraining_started") == 1


def test_without_labelled_rows_nothing_is_retrained(store: LocalStore) -> None:
    traffic = draw(600, seed=22, shift={"x0": 1.5, "x1": 1.5, "x2": -1.5, "region": 1})
    for start in range(0, 600, 100):
        body = json.dumps({"id": f"d-{start}", "records": records(traffic, start, start + 100)})
        assert inference.predict_records(MODEL, None, body.encode(), {}).status == 200
    inference.capture_writer().flush()
    outcome = check_model(store, MODEL, WINDOW)
    assert outcome.verdict == "drift"
    for _ in range(2):
        result = retrain(store, outcome)
        assert result is not None
        assert not result.started
        assert "no new labelled captured rows" in result.reason
    assert [e.event for e in read_trail(store, MODEL)].count("retraining_skipped") == 1
    assert store.head(retraining_key(MODEL, WINDOW)) is None


def test_when_a_verdict_is_due() -> None:
    settings = RetrainingSettings(on=["decay"], min_interval_hours=24)
    assert due("decay", HOUR, [], settings) == (True, "verdict decay")
    assert not due("drift", HOUR, [], settings)[0]
    assert not due("ok", HOUR, [], settings)[0]
    assert not due("decay", HOUR, [HOUR - timedelta(hours=23)], settings)[0]
    assert due("decay", HOUR, [HOUR - timedelta(hours=24)], settings)[0]
    assert not due("decay", HOUR, [], RetrainingSettings(enabled=False))[0]


def test_assembled_values_round_trip_through_the_csv_reader() -> None:
    from shared.maintenance.retraining import _cell

    assert _cell(None) == ""
    assert float(_cell(0.1 + 0.2)) == 0.1 + 0.2
    assert _cell("north") == "north"
    assert _cell(3) == "3"
