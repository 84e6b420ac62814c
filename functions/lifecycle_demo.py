"""`mlops demo lifecycle`: a shop's recommendations kept current for eight simulated weeks.

Customers browse; the model says whether they will buy the item shown. Week 0 trains
version 1. Each week sends traffic through the serving path (captured as deployed), and
the purchases arrive as labels a few days later; then the weekly monitoring check runs,
and its verdict may retrain, gate and promote, all by the same code as deployed. At week
3 preferences shift. Each week prints the verdict, what was retrained and promoted, and
the metric of the maintained model next to a frozen version 1, on the same labelled rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from functions import inference, monitoring
from functions.promotion import challenge
from shared.maintenance.challenger import score
from shared.monitoring.capture_writer import CaptureWriter
from shared.monitoring.job import check_model
from shared.monitoring.report import window_id
from shared.registry.registry import ModelRegistry
from shared.serving.cache import ModelCache
from shared.store.base import ObjectStore
from shared.training.job import train_from_dataset

MODEL = "shop-recommendations"
NUMERIC = ["pages_viewed", "minutes_on_site", "past_purchases", "days_since_visit", "discount"]
CATEGORIES = ["books", "electronics", "fashion", "garden", "toys"]
DEVICES = ["mobile", "desktop"]
SHIFT_WEEK = 3
BATCH = 250  # rows per served request
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday: week w is [START + w weeks, + 1 week)
SPEC = {
    "target": "bought",
    "estimator": "gradient_boosting",
    "params": {"max_iter": 60},
    # A weekly check; retraining and promotion at the spec's defaults: a challenger from
    # the newest labelled week on a verdict or on schedule, promoted only on evidence.
    "monitoring": {"window_hours": 168, "label_window_hours": 168},
}


def customers(n: int, week: int, seed: int) -> dict[str, np.ndarray]:
    """A week of shoppers and whether they bought; preferences change from SHIFT_WEEK on."""
    rng = np.random.default_rng(seed)
    shifted = week >= SHIFT_WEEK
    data: dict[str, np.ndarray] = {
        "pages_viewed": rng.poisson(6, n).astype(np.float64),
        "minutes_on_site": rng.gamma(2.0, 4.0, n),
        "past_purchases": rng.poisson(2, n).astype(np.float64),
        "days_since_visit": rng.exponential(10, n),
        "discount": rng.choice([0.0, 0.1, 0.2, 0.3], n),
    }
    mix = [0.15, 0.2, 0.15, 0.35, 0.15] if shifted else [0.2, 0.3, 0.2, 0.1, 0.2]
    data["category"] = rng.choice(CATEGORIES, n, p=mix).astype(object)
    data["device"] = rng.choice(DEVICES, n, p=[0.6, 0.4]).astype(object)
    appeal = {"books": 0.3, "electronics": 1.0, "fashion": 0.2, "garden": -0.8, "toys": 0.0}
    if shifted:  # the season turns: gardens sell, gadgets do not, discounts stop working
        appeal = {"books": 0.3, "electronics": -0.9, "fashion": 0.2, "garden": 1.2, "toys": 0.0}
    discount_effect = -2.0 if shifted else 4.0
    logit = (
        0.25 * (data["pages_viewed"] - 6)
        + 0.08 * (data["minutes_on_site"] - 8)
        + 0.3 * data["past_purchases"]
        - 0.05 * data["days_since_visit"]
        + discount_effect * (data["discount"] - 0.15)
        + np.array([appeal[c] for c in data["category"]])
        - 0.6
    )
    bought = rng.random(n) < 1 / (1 + np.exp(-logit))
    data["bought"] = np.where(bought, "yes", "no").astype(object)
    missing = rng.random(n) < 0.03  # a tracker that sometimes fails
    data["minutes_on_site"][missing] = np.nan
    return data


def to_csv(data: dict[str, np.ndarray]) -> bytes:
    """Shoppers as a training CSV (empty cell = missing)."""
    columns = [*NUMERIC, "category", "device", "bought"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for i in range(len(data["bought"])):
        writer.writerow(
            [
                "" if isinstance(v, float) and np.isnan(v) else v
                for v in (data[c][i] for c in columns)
            ]
        )
    return out.getvalue().encode()


Record = dict[str, int | float | str | None]


@dataclass(frozen=True)
class ServedWeek:
    """What serving answered for a week's rows, and where each row went (for its label)."""

    request_ids: list[str]  # per row: the id of the request that carried it
    positions: list[int]  # per row: its position in that request
    predictions: list[object]  # per row: the answer served
    versions: list[int]  # per row: the version that answered


def serve_week(
    store: ObjectStore,
    model: str,
    rows: Sequence[Record],
    *,
    at: datetime,
    prefix: str,
    spread: timedelta = timedelta(0),
) -> ServedWeek:
    """Send `rows` through the serving path as deployed, captured on a simulated clock that
    starts at `at` and moves evenly over `spread` (requests arrive through the week).

    Production answers; requests carry BATCH rows and ids `<prefix>-<first row>`.
    """
    requests = max(1, -(-len(rows) // BATCH))
    now = [at.timestamp()]
    inference.reset_cache(ModelCache(store), CaptureWriter(store, clock=lambda: now[0]))
    served = ServedWeek([], [], [], [])
    for number, start in enumerate(range(0, len(rows), BATCH)):
        now[0] = at.timestamp() + spread.total_seconds() * number / requests
        part = rows[start : start + BATCH]
        rid = f"{prefix}-{start}"
        body = json.dumps({"id": rid, "records": list(part)})
        answer = inference.predict_records(model, None, body.encode(), {})
        if answer.status != 200:
            raise RuntimeError(f"{rid}: prediction failed: {answer.body}")
        served.request_ids.extend([rid] * len(part))
        served.positions.extend(range(len(part)))
        served.predictions.extend(answer.body["predictions"])
        served.versions.extend([int(answer.body["version"])] * len(part))
    inference.reset_cache()  # writes the captured rows
    return served


def upload_labels(
    store: ObjectStore, key: str, served: ServedWeek, target: str, labels: Sequence[str]
) -> None:
    """The ground truth of served rows as a labels file, by request id and row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["request_id", "row", target])
    writer.writerows(zip(served.request_ids, served.positions, labels, strict=True))
    store.put(key, out.getvalue().encode())


def _record(data: dict[str, np.ndarray], i: int) -> Record:
    record: Record = {}
    for name in NUMERIC:
        value = float(data[name][i])
        record[name] = None if np.isnan(value) else value
    record["category"] = str(data["category"][i])
    record["device"] = str(data["device"][i])
    return record


@dataclass(frozen=True)
class Week:
    """One printed line of the simulation."""

    week: int
    production: int
    verdict: str
    retrained: str
    promoted: str
    maintained: float | None
    frozen: float | None


def unused_model_name(store: ObjectStore) -> str:
    """MODEL, or MODEL-2, MODEL-3...: the first name nothing in `store` uses yet.

    A run reuses nothing of an earlier one: the same requests served again would make every
    label ambiguous, and the same week-0 file would not train again.
    """
    name, n = MODEL, 2
    while any(
        next(iter(store.list(prefix)), None) is not None
        for prefix in (f"specs/{name}.json", f"models/{name}/", f"datasets/{name}/")
    ):
        name, n = f"{MODEL}-{n}", n + 1
    return name


def simulate(
    store: ObjectStore,
    *,
    rows_per_week: int,
    weeks: int = 8,
    say: Callable[[str], None] = print,
    model: str = MODEL,
) -> list[Week]:
    """Run the weeks for `model` on `store` (a local store: training runs in-process) and
    report them."""
    store.put(f"specs/{model}.json", json.dumps(SPEC).encode())
    store.put(f"datasets/{model}/week-0.csv", to_csv(customers(rows_per_week * 2, 0, seed=0)))
    first = train_from_dataset(store, f"datasets/{model}/week-0.csv", trigger="demo week 0")
    if first.version != 1:
        raise RuntimeError(f"week 0 did not train version 1: {first.reason}")
    auc = first.metrics["roc_auc"]
    say(f"week 0: trained v1 on {rows_per_week * 2} shoppers (roc_auc {auc:.3f})")
    heading = f"{'verdict':<18} {'retrained':<20} {'promoted':<12}"
    say(f"week  prod  {heading} roc_auc: maintained  frozen v1")
    results = []
    for week in range(1, weeks + 1):
        begins = START + timedelta(weeks=week)
        data = customers(rows_per_week, week, seed=week)
        rows = [_record(data, i) for i in range(rows_per_week)]
        truth = [str(b) for b in data["bought"]]
        served = serve_week(
            store,
            model,
            rows,
            at=begins + timedelta(hours=1),
            prefix=f"w{week}",
            spread=timedelta(days=6),
        )
        # Purchases are known a few days later: the labels file, by request id and row.
        upload_labels(store, f"labels/{model}/week-{week}.csv", served, "bought", truth)
        production = ModelRegistry(store, model).load().aliases["production"]
        # Both models on the same labelled rows of the week: what the shop saw, and what it
        # would have seen with nothing maintained.
        cache = ModelCache(store)
        maintained = score(cache.get(model, str(production)), rows, truth, "roc_auc")
        frozen = score(cache.get(model, "1"), rows, truth, "roc_auc")
        # The weekly check, then what the verdict leads to, as the scheduled function does.
        window = window_id(begins, 168)
        outcome = check_model(store, model, window)
        retrained = promoted = "-"
        result = monitoring.retrain(store, outcome)
        if result is not None and result.started and result.data_key is not None:
            trained = train_from_dataset(store, result.data_key, trigger=f"demo week {week}")
            retrained = f"v{trained.version} {trained.status}"
            before = ModelRegistry(store, model).load().aliases["production"]
            challenge(store, model, now=begins + timedelta(weeks=1))
            after = ModelRegistry(store, model).load().aliases["production"]
            promoted = f"v{before} -> v{after}" if after != before else f"kept v{before}"
        line = Week(week, production, outcome.verdict, retrained, promoted, maintained, frozen)
        results.append(line)
        say(
            f"{week:>4}  v{production:<3} {outcome.verdict:<18} {retrained:<20} {promoted:<12} "
            f"{_fmt(maintained):>19}  {_fmt(frozen):>9}"
        )
    return results


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
