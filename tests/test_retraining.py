"""Retraining: a verdict assembles a new training set once, from data and labelled rows only."""

from __future__ import annotations

import csv
import functools
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
from shared.maintenance.challenger import consider
from shared.maintenance.retraining import due, maybe_retrain, retraining_key
from shared.maintenance.sources import RetrainingSources
from shared.monitoring.capture_writer import CaptureWriter
from shared.monitoring.job import check_model
from shared.monitoring.report import DriftReport, window_id
from shared.registry.audit import read_trail
from shared.registry.metadata import decode_metadata
from shared.registry.records import version_prefix
from shared.registry.registry import ModelRegistry
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
    # The last 1,000 rows of the data and 320 of the 400 labelled rows: the newest 80
    # (a fifth) are held back to judge the new version against production.
    assert len(rows) == 1 + 1000 + 320
    sources = msgspec.json.decode(
        store.get(key.removesuffix(".csv") + ".sources.json").body, type=RetrainingSources
    )
    assert (sources.parent_version, sources.base_key) == (1, f"datasets/{MODEL}/week0.csv")
    assert (sources.base_rows, sources.labelled_rows) == (1000, 320)
    assert sources.label_files == [f"labels/{MODEL}/week1.csv"]
    assert len(sources.captured) == 320
    assert len(sources.held_back) == 80
    assert not set(sources.held_back) & set(sources.captured)
    assert sources.reason == "verdict decay"
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
    settings = RetrainingSettings(on=["decay"], min_interval_hours=24, every_hours=None)
    assert due("decay", HOUR, [], settings) == (True, "verdict decay")
    assert not due("drift", HOUR, [], settings)[0]
    assert not due("ok", HOUR, [], settings)[0]
    assert not due("decay", HOUR, [HOUR - timedelta(hours=23)], settings)[0]
    assert due("decay", HOUR, [HOUR - timedelta(hours=24)], settings)[0]
    assert not due("decay", HOUR, [], RetrainingSettings(enabled=False))[0]


def test_a_challenger_is_retrained_on_schedule_whatever_the_verdict_but_a_broken_feed() -> None:
    settings = RetrainingSettings()  # the defaults: drift and decay, and every 168 h
    week = timedelta(hours=168)
    assert due("ok", HOUR, [], settings)[0]
    assert due("ok", HOUR, [HOUR - week], settings)[0]
    quiet = due("ok", HOUR, [HOUR - week + timedelta(hours=1)], settings)
    assert not quiet[0]
    assert "less than 168 h" in quiet[1]
    assert due("decay", HOUR, [HOUR - timedelta(hours=24)], settings)[0]
    assert not due("decay", HOUR, [HOUR - timedelta(hours=23)], settings)[0]
    # A unit bug is fixed at the source: neither a verdict nor the schedule retrains on it.
    assert not due("data_problem", HOUR, [], settings)[0]
    assert not due("data_problem", HOUR, [HOUR - 4 * week], settings)[0]
    assert due("data_problem", HOUR, [], RetrainingSettings(on=["data_problem"]))[0]
    # A data problem that lasts the hold (336 h) is the feed as it now is: learnt, once.
    two_weeks = timedelta(hours=336)
    assert not due("data_problem", HOUR, [], settings, HOUR - two_weeks + timedelta(hours=1))[0]
    lasted = due("data_problem", HOUR, [], settings, HOUR - two_weeks)
    assert lasted[0]
    assert "taken as it is now" in lasted[1]
    assert not due("data_problem", HOUR, [HOUR - timedelta(hours=2)], settings, HOUR - 2 * week)[0]
    never = RetrainingSettings(data_problem_hold_hours=None)
    assert not due("data_problem", HOUR, [], never, HOUR - 50 * week)[0]


def test_a_run_of_data_problem_windows_is_remembered_from_its_start(tmp_path: Path) -> None:
    from shared.maintenance.retraining import data_problem_since

    local = LocalStore(tmp_path / "store")
    hours = [HOUR + timedelta(hours=i) for i in range(6)]
    verdicts = ["ok", "data_problem", "insufficient_data", "data_problem", "drift", "data_problem"]
    seen = [
        data_problem_since(local, MODEL, verdict, at, window_id(at, 1))
        for verdict, at in zip(verdicts, hours, strict=True)
    ]
    # Too few rows says nothing of the feed; drift ends the run, the next one starts anew.
    assert seen == [None, hours[1], None, hours[1], None, hours[5]]


def test_assembled_values_round_trip_through_the_csv_reader() -> None:
    from shared.maintenance.retraining import _cell

    assert _cell(None) == ""
    assert float(_cell(0.1 + 0.2)) == 0.1 + 0.2
    assert _cell("north") == "north"
    assert _cell(3) == "3"


def _label_file(store: LocalStore, name: str, pairs: list[tuple[str, int, str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["request_id", "row", "target"])
    writer.writerows(pairs)
    store.put(f"labels/{MODEL}/{name}.csv", out.getvalue().encode())


def test_the_trail_reads_in_the_order_things_happened(store: LocalStore) -> None:
    shifted_traffic_with_labels(store)
    outcome = check_model(store, MODEL, WINDOW)
    started = retrain(store, outcome)
    assert started is not None
    assert started.data_key is not None
    assert train_from_dataset(store, started.data_key, trigger="test").version == 2
    judged = consider(store, MODEL, now=HOUR + timedelta(hours=1))
    # Judged on the 80 labelled rows held back from v2's set (v1 never saw them either),
    # and on v2's held-out rows less those v1 was fitted to (rows of week0.csv).
    decision = judged.decision
    assert decision is not None
    assert decision.labelled_rows == 80
    labelled = decision.rows[0]
    assert (labelled.source, labelled.rows) == ("labelled captured rows", 80)
    assert labelled.keys == [started.data_key.removesuffix(".csv") + ".sources.json"]
    assert decision.excluded["labelled rows a version was fitted to"] == 320
    assert decision.excluded["held-out rows of v2 that v1 was fitted to"] > 0
    assert decision.comparison is not None
    assert decision.comparison.rows == 80 + decision.rows[1].rows
    events = [(e.event, e.details.get("version")) for e in read_trail(store, MODEL)]
    names = [name for name, _ in events]
    # The verdict, then the retraining it started (same window end: they once sorted by
    # name), then v2 claimed before it was judged (judged at its creation: once before).
    assert names.index("verdict_changed") < names.index("retraining_started")
    claimed = events.index(("version_claimed", 2))
    assert claimed < names.index("promotion_decided")


def test_a_row_in_the_parents_set_is_not_added_again_and_the_later_label_wins(
    tmp_path: Path,
) -> None:
    local = LocalStore(tmp_path / "store")
    # All of the parent's rows are carried over: a labelled row it held must not be added
    # a second time by the next retraining, whose label window still holds it.
    spec = {"retraining": {"keep_base_rows": None, "holdback_fraction": 0.0}}
    local.put(f"specs/{MODEL}.json", json.dumps(spec).encode())
    local.put(f"datasets/{MODEL}/week0.csv", dataset(300, seed=40))
    assert train_from_dataset(local, f"datasets/{MODEL}/week0.csv", trigger="t").version == 1
    first_hour, second_hour = HOUR, HOUR + timedelta(hours=24)
    for hour, request in ((first_hour, "a"), (second_hour, "b")):
        clock = functools.partial(float, hour.timestamp() + 300)
        inference.reset_cache(ModelCache(local), CaptureWriter(local, clock=clock))
        traffic = draw(100, seed=41 if request == "a" else 42)
        body = json.dumps({"id": request, "records": records(traffic, 0, 100)})
        assert inference.predict_records(MODEL, None, body.encode(), {}).status == 200
        inference.reset_cache()
        _label_file(local, f"{request}.csv", [(request, i, "yes") for i in range(100)])
        if request == "a":
            # Row 0 relabelled by a later upload: the later label is the one learnt.
            _label_file(local, "a-corrected.csv", [("a", 0, "no")])
        window = window_id(hour, 1)
        outcome = check_model(local, MODEL, window)
        report = msgspec.json.decode(local.get(outcome.report_key).body, type=DriftReport)
        result = maybe_retrain(local, msgspec.structs.replace(report, verdict="decay"))
        assert result.started, result.reason
        assert result.data_key is not None
        rows = list(csv.reader(io.StringIO(local.get(result.data_key).body.decode())))
        if request == "a":
            assert len(rows) == 1 + 300 + 100  # the parent's 300 rows, 100 labelled
            assert rows[301][-1] == "no"  # row 0 of request a: the corrected label
            assert [r[-1] for r in rows[302:]] == ["yes"] * 99
            version = train_from_dataset(local, result.data_key, trigger="t").version
            assert version is not None
            ModelRegistry(local, MODEL).set_alias("production", version, reason="by hand")
        else:
            # The parent's 400 rows, then only request b's 100: request a's rows, still in
            # the label window, are in the parent's set already.
            assert len(rows) == 1 + 400 + 100
            sources = msgspec.json.decode(
                local.get(result.data_key.removesuffix(".csv") + ".sources.json").body,
                type=RetrainingSources,
            )
            assert sources.labelled_rows == 100
            assert len(sources.captured) == 200


def test_a_rollback_after_a_promotion_by_hand_leaves_staging_alone(store: LocalStore) -> None:
    for name, seed in (("two", 50), ("three", 51)):
        store.put(f"datasets/{MODEL}/{name}.csv", dataset(300, seed=seed))
        train_from_dataset(store, f"datasets/{MODEL}/{name}.csv", trigger="t")
    registry = ModelRegistry(store, MODEL)
    assert registry.load().aliases == {"production": 1, "staging": 3}
    registry.set_alias("production", 2, reason="by hand", actor="alice")
    assert registry.load().aliases == {"production": 2, "staging": 3}
    record, source, target = registry.rollback(reason="v2 misbehaves", actor="alice")
    assert (source, target) == (2, 1)
    assert record.aliases == {"production": 1, "staging": 3}
    # Staging is judged against the champion now in place, not the one rolled back.
    judged = consider(store, MODEL, now=HOUR)
    assert judged.decision is not None
    assert (judged.decision.champion, judged.decision.challenger) == (1, 3)


def test_a_window_of_a_broken_feed_is_not_retrained_on(store: LocalStore) -> None:
    # x0 sent in the wrong unit (x10), the labels right: the model does badly, and a
    # retraining would learn the bug. The window is a data problem and nothing retrains.
    traffic = draw(400, seed=23)
    traffic["x0"] = traffic["x0"] * 10
    for start in range(0, 400, 100):
        body = json.dumps({"id": f"u-{start}", "records": records(traffic, start, start + 100)})
        assert inference.predict_records(MODEL, None, body.encode(), {}).status == 200
    inference.capture_writer().flush()
    _label_file(
        store,
        "bug.csv",
        [(f"u-{100 * (i // 100)}", i % 100, str(traffic["target"][i])) for i in range(400)],
    )
    outcome = check_model(store, MODEL, WINDOW)
    assert outcome.verdict == "data_problem"
    result = retrain(store, outcome)
    assert result is not None
    assert not result.started
    assert "data_problem" in result.reason
    assert store.head(retraining_key(MODEL, WINDOW)) is None
