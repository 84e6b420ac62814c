"""Champion and challenger: a better version replaces production, a worse one never does."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from functions import inference, monitoring
from shared.data.spec import PromotionSettings
from shared.maintenance.challenger import consider
from shared.maintenance.promotion import compare, decide
from shared.monitoring.capture import CaptureWriter
from shared.registry.audit import read_trail
from shared.registry.registry import ModelRegistry
from shared.serving.cache import ModelCache
from shared.store.local import LocalStore
from shared.training.job import train_from_dataset
from tests.factories import to_csv
from tests.test_monitoring import HOUR, NUMERIC, draw, records

MODEL = "shop"
HEADER = [*NUMERIC, "region", "plan", "target"]


def dataset(n: int, seed: int, *, noise: float = 0.0) -> bytes:
    """The shop's rows; `noise` is the share of labels replaced by coin flips."""
    data = draw(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    flip = rng.random(n) < noise
    data["target"] = np.where(flip, rng.choice(["yes", "no"], size=n), data["target"])
    rows = [
        ["" if name in NUMERIC and np.isnan(data[name][i]) else data[name][i] for name in HEADER]
        for i in range(n)
    ]
    return to_csv(HEADER, rows)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    local = LocalStore(tmp_path / "store")
    yield local
    inference.reset_cache()


def train(
    store: LocalStore, name: str, body: bytes, spec: Mapping[str, object] | None = None
) -> int:
    if spec is not None:
        store.put(f"specs/{MODEL}.json", json.dumps(spec).encode())
    store.put(f"datasets/{MODEL}/{name}.csv", body)
    outcome = train_from_dataset(store, f"datasets/{MODEL}/{name}.csv", trigger="test")
    assert outcome.status == "registered", outcome.reason
    assert outcome.version is not None
    return outcome.version


def test_a_better_challenger_replaces_production_with_its_figures(store: LocalStore) -> None:
    train(store, "small", dataset(80, seed=1, noise=0.4))
    train(store, "large", dataset(4000, seed=2))
    result = consider(store, MODEL)
    assert result.promoted
    record = ModelRegistry(store, MODEL).load()
    assert record.aliases == {"production": 2}
    move = record.alias_history[-2]
    assert (move.alias, move.version, move.previous, move.actor) == ("production", 2, 1, "rule")
    assert "roc_auc on 800 held-out rows of v2: challenger" in move.reason
    decided = [e for e in read_trail(store, MODEL) if e.event == "promotion_decided"]
    assert [d.details["outcome"] for d in decided] == ["promote"]
    held_out = decided[0].details["comparisons"][0]
    assert held_out["challenger"] > held_out["champion"]
    # Judged again (a retried event, the next hourly check): nothing more happens.
    again = consider(store, MODEL)
    assert again.decision is None
    assert len([e for e in read_trail(store, MODEL) if e.event == "promotion_decided"]) == 1


def test_a_worse_challenger_is_never_promoted(store: LocalStore) -> None:
    train(store, "good", dataset(4000, seed=3))
    train(store, "noisy", dataset(4000, seed=4, noise=0.6))
    result = consider(store, MODEL)
    assert not result.promoted
    assert result.decision is not None
    assert result.decision.outcome == "keep"
    assert ModelRegistry(store, MODEL).load().aliases == {"production": 1, "staging": 2}


def test_versions_with_different_features_are_not_compared(store: LocalStore) -> None:
    train(store, "all", dataset(2000, seed=5))
    train(store, "fewer", dataset(2000, seed=6), spec={"drop": ["plan"]})
    result = consider(store, MODEL)
    assert result.decision is not None
    assert result.decision.outcome == "incomparable"
    assert "different features" in result.decision.reason
    assert ModelRegistry(store, MODEL).load().aliases["production"] == 1


def _labels(pairs: list[tuple[str, int, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["request_id", "row", "target"])
    writer.writerows(pairs)
    return out.getvalue().encode()


def test_a_challenger_waits_for_labelled_rows_then_the_hourly_check_promotes_it(
    store: LocalStore,
) -> None:
    spec = {"promotion": {"min_labelled_rows": 150}}
    train(store, "small", dataset(80, seed=7, noise=0.4), spec=spec)
    train(store, "large", dataset(4000, seed=8), spec=spec)
    waiting = consider(store, MODEL)
    assert waiting.decision is not None
    assert waiting.decision.outcome == "wait"
    assert "only 0 labelled captured rows of the 150 required" in waiting.decision.reason

    # Traffic after the challenger was trained, answered by production, then its labels.
    inference.reset_cache(ModelCache(store), CaptureWriter(store))
    traffic = draw(200, seed=9)
    for start in range(0, 200, 50):
        body = json.dumps({"id": f"t-{start}", "records": records(traffic, start, start + 50)})
        assert inference.predict_records(MODEL, None, body.encode(), {}).status == 200
    inference.capture_writer().flush()
    truth = [str(t) for t in traffic["target"]]
    store.put(
        f"labels/{MODEL}/day1.csv",
        _labels([(f"t-{50 * (i // 50)}", i % 50, truth[i]) for i in range(200)]),
    )
    monitoring.handle_schedule({"time": HOUR.isoformat()}, store)
    record = ModelRegistry(store, MODEL).load()
    assert record.aliases == {"production": 2}
    decided = [e.details for e in read_trail(store, MODEL) if e.event == "promotion_decided"]
    assert [d["outcome"] for d in decided] == ["wait", "promote"]
    labelled = decided[-1]["comparisons"][1]
    assert labelled["rows"] == 200


def test_the_rule_never_promotes_a_worse_challenger_on_any_row_set() -> None:
    settings = PromotionSettings()
    better_held = compare("held-out rows", 500, 0.80, 0.85, "roc_auc")
    worse_labelled = compare("labelled captured rows", 300, 0.82, 0.79, "roc_auc")
    decision = decide(1, 2, "roc_auc", better_held, worse_labelled, settings)
    assert (decision.promote, decision.outcome) == (False, "keep")
    equal = compare("held-out rows", 500, 0.80, 0.80, "roc_auc")
    none = compare("labelled captured rows", 0, None, None, "roc_auc")
    assert decide(1, 2, "roc_auc", equal, none, settings).outcome == "keep"
    lower = compare("held-out rows", 500, 0.50, 0.40, "log_loss")  # lower log loss is better
    promoted = decide(1, 2, "log_loss", lower, none, settings)
    assert (promoted.promote, promoted.act) == (True, True)
    manual = decide(1, 2, "log_loss", lower, none, PromotionSettings(mode="manual"))
    assert (manual.promote, manual.act) == (True, False)
    margin = decide(1, 2, "log_loss", lower, none, PromotionSettings(min_improvement=0.2))
    assert margin.outcome == "keep"
