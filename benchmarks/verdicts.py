"""Seeded simulations of the window verdict: false alarms on unchanged traffic, and detection.

A synthetic model of 30 features (normal, skewed, integer-valued and categorical columns)
and three predicted classes, with its baseline profiled from 4,000 training rows as
training does, and windows counted as the check counts them. Nothing here trains: the
verdict is a pure function of a baseline and counts, which is what is measured.

    .venv/bin/python -m benchmarks.verdicts [windows]

prints the figures docs/monitoring.md and the tests quote.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import Figure, figure
from benchmarks.workspace import Workspace
from shared.data.profile import (
    BaselineProfile,
    profile_categorical,
    profile_numeric,
    profile_predictions,
)
from shared.data.spec import MonitoringSettings
from shared.monitoring.assessment import assess_version
from shared.monitoring.performance import LabelledRow, measure, metric_values
from shared.monitoring.report import VersionSection
from shared.monitoring.summary import (
    Baseline,
    PredictionCounts,
    VersionCounts,
    count_categorical,
    count_numeric,
)
from shared.registry.metadata import (
    DataLineage,
    FeatureSchema,
    Lineage,
    ModelMetadata,
    OnnxArtifact,
    ParityReport,
)

Columns = dict[str, np.ndarray]
KINDS = ("normal", "skewed", "integer", "categorical")
CATEGORIES = [f"c{i}" for i in range(10)]
# Zipf-like shares: a few common categories and a tail of rare ones.
CATEGORY_P = np.array([1 / (i + 1) for i in range(10)]) / sum(1 / (i + 1) for i in range(10))
CLASSES = ["a", "b", "c"]
TRAINING_ROWS = 4000


def feature_names(features: int = 30) -> list[tuple[str, str]]:
    """(name, kind) of each feature, the kinds in turn: n0 normal, s1 skewed, i2, k3, ..."""
    return [(f"{KINDS[i % 4][0]}{i}", KINDS[i % 4]) for i in range(features)]


def draw(n: int, rng: np.random.Generator, features: int = 30) -> Columns:
    """Rows of the synthetic model's inputs, from the training distribution."""
    columns: Columns = {}
    for name, kind in feature_names(features):
        if kind == "normal":
            columns[name] = rng.normal(10.0, 2.0, size=n)
        elif kind == "skewed":
            columns[name] = rng.lognormal(0.0, 1.0, size=n)
        elif kind == "integer":
            columns[name] = rng.poisson(3.0, size=n).astype(np.float64)
        else:
            columns[name] = rng.choice(CATEGORIES, size=n, p=CATEGORY_P).astype(object)
    # A few percent missing in one numeric column, as real feeds have.
    columns["n0"][rng.random(n) < 0.03] = np.nan
    return columns


def predict(columns: Columns) -> np.ndarray:
    """The synthetic model: three classes by n0 (missing: the middle class)."""
    score = np.nan_to_num(columns["n0"], nan=10.0)
    return np.array(CLASSES)[np.digitize(score, [9.0, 11.0])]


def metadata(seed: int = 0, features: int = 30) -> ModelMetadata:
    """A version's metadata whose baseline is profiled from TRAINING_ROWS drawn rows."""
    rng = np.random.default_rng(seed)
    columns = draw(TRAINING_ROWS, rng, features)
    profiles: dict[str, object] = {}
    schema = []
    for name, kind in feature_names(features):
        if kind == "categorical":
            profiles[name] = profile_categorical(columns[name])
            schema.append(
                FeatureSchema(name=name, kind="categorical", input_name=name, categories=CATEGORIES)
            )
        else:
            profiles[name] = profile_numeric(columns[name])
            schema.append(FeatureSchema(name=name, kind="numeric", input_name="numeric"))
    predictions = profile_predictions("classification", predict(columns))
    baseline = BaselineProfile(
        rows=TRAINING_ROWS,
        features=profiles,  # type: ignore[arg-type]
        predictions=predictions,
    )
    return ModelMetadata(
        model="simulated",
        version=1,
        run_id="sim",
        created_at="2026-11-30T00:00:00Z",
        task="classification",
        target="y",
        estimator="rule",
        params={},
        spec={},
        features=schema,
        classes=list(CLASSES),
        metrics={},
        primary_metric="roc_auc",
        parity=ParityReport(
            rows=0,
            max_abs_diff=0.0,
            atol=0.0,
            rtol=0.0,
            violations=0,
            label_mismatches=0,
            passed=True,
        ),
        onnx=OnnxArtifact(
            file="model.onnx",
            sha256="0" * 64,
            size_bytes=0,
            opsets={},
            label_output="label",
            probabilities_output=None,
        ),
        baseline=baseline,
        lineage=Lineage(
            data=DataLineage(
                key="k",
                etag="e",
                version_id=None,
                sha256="0" * 64,
                size_bytes=0,
                rows=TRAINING_ROWS,
                train_rows=TRAINING_ROWS,
                test_rows=0,
            ),
            spec_key="s",
            spec_etag=None,
            code_version="sim",
            packages={},
            trigger="sim",
        ),
        timings={},
    )


def counts(baseline: Baseline, columns: Columns, predictions: np.ndarray) -> VersionCounts:
    """A window's counts, as the check adds them up from capture files."""
    features: dict[str, object] = {}
    for feature in baseline.metadata.features:
        values = columns[feature.name]
        if feature.kind == "numeric":
            features[feature.name] = count_numeric(
                values.astype(np.float64), baseline.numeric(feature.name)
            )
        else:
            features[feature.name] = count_categorical(
                None if v is None else str(v) for v in values
            )
    return VersionCounts(
        version=baseline.version,
        rows=len(predictions),
        features=features,  # type: ignore[arg-type]
        predictions=PredictionCounts(class_counts=dict(Counter(str(p) for p in predictions))),
    )


def judge(
    baseline: Baseline,
    columns: Columns,
    settings: MonitoringSettings,
    predictions: np.ndarray | None = None,
) -> VersionSection:
    """The verdict on one window of `columns` (predicted by the rule unless given)."""
    answered = predict(columns) if predictions is None else predictions
    return assess_version(baseline, counts(baseline, columns, answered), None, settings)


def false_alarms(
    rows: int, windows: int, settings: MonitoringSettings, seed: int = 1000
) -> tuple[Counter[str], float]:
    """Verdicts of `windows` unchanged windows, and the per-feature alarm rate."""
    baseline = Baseline(metadata())
    verdicts: Counter[str] = Counter()
    flagged = tested = 0
    for i in range(windows):
        section = judge(baseline, draw(rows, np.random.default_rng(seed + i)), settings)
        verdicts[section.verdict] += 1
        flagged += len(section.drifted_features)
        tested += len(section.features)
    return verdicts, flagged / tested


def _shift_sd(name: str, by: float) -> Callable[[Columns], None]:
    def change(columns: Columns) -> None:
        columns[name] = columns[name] + by * 2.0  # the normal features' sd is 2

    return change


def _scale(name: str, factor: float) -> Callable[[Columns], None]:
    def change(columns: Columns) -> None:
        columns[name] = columns[name] * factor

    return change


def _missing(name: str, share: float) -> Callable[[Columns], None]:
    def change(columns: Columns) -> None:
        values = columns[name].copy()
        values[: int(len(values) * share)] = np.nan
        columns[name] = values

    return change


def _unseen(name: str, share: float) -> Callable[[Columns], None]:
    def change(columns: Columns) -> None:
        values = columns[name].copy()
        values[: int(len(values) * share)] = "NEW"
        columns[name] = values

    return change


def _class_vanishes(columns: Columns) -> None:
    # The inputs stay; the served model stops answering "c" (e.g. a broken threshold).
    columns["__predictions__"] = np.where(predict(columns) == "c", "b", predict(columns))


CHANGES: dict[str, tuple[Callable[[Columns], None], str]] = {
    "one normal feature shifted by 2 sd": (_shift_sd("n4", 2.0), "drift"),
    "one normal feature shifted by 1 sd": (_shift_sd("n4", 1.0), "drift"),
    "one normal feature shifted by 0.5 sd": (_shift_sd("n4", 0.5), "drift"),
    "one feature x10 (mm sent as cm)": (_scale("n4", 0.1), "data_problem"),
    "one feature 30% missing": (_missing("s5", 0.3), "data_problem"),
    "one category column 30% unseen": (_unseen("c3", 0.3), "data_problem"),
    "one predicted class vanishes": (_class_vanishes, "drift"),
}


def detection(
    name: str, rows: int, windows: int, settings: MonitoringSettings, seed: int = 5000
) -> Counter[str]:
    """Verdicts of `windows` windows with one change applied."""
    change, _ = CHANGES[name]
    baseline = Baseline(metadata())
    verdicts: Counter[str] = Counter()
    for i in range(windows):
        columns = draw(rows, np.random.default_rng(seed + i))
        change(columns)
        predictions = columns.pop("__predictions__", None)
        verdicts[judge(baseline, columns, settings, predictions).verdict] += 1
    return verdicts


# --- labelled rows: the any-metric decay rule ----------------------------------------------


def labelled(
    n: int, rng: np.random.Generator, *, boundary: float = 0.0, noise: float = 0.0
) -> list[LabelledRow]:
    """Binary rows: score s ~ N(0, 1), truth P(yes) = sigmoid(4 (s - boundary)), flipped at
    `noise`; the model answers with P(yes) = sigmoid(4 s), i.e. the training concept."""
    score = rng.normal(size=n)
    truth = rng.random(n) < 1.0 / (1.0 + np.exp(-4.0 * (score - boundary)))
    flip = rng.random(n) < noise
    truth = truth ^ flip
    p_yes = 1.0 / (1.0 + np.exp(-4.0 * score))
    return [
        LabelledRow(
            label="yes" if t else "no",
            prediction="yes" if p > 0.5 else "no",
            probabilities={"no": float(1.0 - p), "yes": float(p)},
        )
        for t, p in zip(truth, p_yes, strict=True)
    ]


def labelled_metadata(held_out: int = 1000, seed: int = 1) -> ModelMetadata:
    """The synthetic binary model, its training metrics measured on `held_out` rows."""
    import msgspec

    meta = msgspec.structs.replace(metadata(), classes=["no", "yes"])
    rows = labelled(held_out, np.random.default_rng(seed))
    lineage = msgspec.structs.replace(
        meta.lineage, data=msgspec.structs.replace(meta.lineage.data, test_rows=held_out)
    )
    return msgspec.structs.replace(meta, metrics=metric_values(meta, rows), lineage=lineage)


def false_decays(
    labelled_rows: int, windows: int, settings: MonitoringSettings, seed: int = 7000
) -> tuple[int, Counter[str]]:
    """Windows (of `windows`) that decay on unchanged labelled rows, and by which metric.

    Each window has its own held-out draw too: the training figure is a sample as well.
    """
    decayed = 0
    metrics: Counter[str] = Counter()
    for i in range(windows):
        meta = labelled_metadata(seed=seed + 10_000 + i)
        performance = measure(
            meta, labelled(labelled_rows, np.random.default_rng(seed + i)), settings
        )
        decayed += performance.decayed
        metrics.update(c.metric for c in performance.checks if c.decayed)
    return decayed, metrics


def verdict_false_alarm_rate(ws: Workspace) -> Figure:
    """Unchanged windows called anything but ok, by window size; and the changes caught."""
    windows = ws.sizes.verdict_windows
    settings = MonitoringSettings(min_rows=10)
    by_size: dict[str, Any] = {}
    alarms = judged = 0
    worst_feature_rate = 0.0
    for rows in (50, 200, 500, 5000, 50_000):
        n = windows if rows < 50_000 else max(windows // 10, 2)
        verdicts, rate = false_alarms(rows, n, settings)
        by_size[str(rows)] = {"windows": n, "verdicts": dict(verdicts), "per_feature": rate}
        alarms += n - verdicts["ok"]
        judged += n
        worst_feature_rate = max(worst_feature_rate, rate)
    caught: dict[str, Any] = {}
    missed = 0
    for name, (_, expected) in CHANGES.items():
        for rows in (200, 1000):
            n = max(windows // 4, 2)
            verdicts = detection(name, rows, n, MonitoringSettings())
            caught[f"{name}, {rows} rows"] = {"expected": expected, "verdicts": dict(verdicts)}
            missed += n - verdicts[expected]
    decays: dict[str, Any] = {}
    false_decay = 0
    for rows in (100, 500, 2000):
        n = max(windows // 2, 2)
        decayed, by = false_decays(rows, n, MonitoringSettings())
        decays[str(rows)] = {"windows": n, "decayed": decayed, "by_metric": dict(by)}
        false_decay += decayed
    share = alarms / judged
    return figure(
        ours=share,
        reference=settings.window_p_value,
        ratio=share / settings.window_p_value,
        goal="<= 1% of unchanged windows not ok; per-feature flags <= the nominal 5%",
        met=share <= 0.01 and worst_feature_rate <= 0.05,
        unit="share of windows",
        measure=(
            "unchanged windows (30 features: normal, skewed, integer, categorical; three "
            "predicted classes; 50 to 50,000 rows) given a verdict other than ok"
        ),
        ratio_is="that share over monitoring.window_p_value, the family-wise level per window",
        details={
            "unchanged": by_size,
            "worst_per_feature_rate": worst_feature_rate,
            "changes": caught,
            "changed_windows_not_caught": missed,
            "false_decays": decays,
            "false_decay_windows": false_decay,
        },
    )


def main(windows: int = 200) -> None:
    """Print the figures: false alarms by window size, detection by change, false decays."""
    settings = MonitoringSettings(min_rows=10)
    print(f"unchanged windows ({windows} each, 30 features: 8 normal, 8 skewed, 7 integer,")
    print(" 7 categorical, three predicted classes), min_rows 10:")
    for rows in (50, 200, 500, 5000, 50_000):
        n = windows if rows < 50_000 else max(windows // 10, 20)
        verdicts, rate = false_alarms(rows, n, settings)
        print(f"  {rows:>6} rows: {dict(verdicts)}  per-feature flags {rate:.1%}")
    print("changed windows:")
    for name, (_, expected) in CHANGES.items():
        for rows in (200, 1000):
            verdicts = detection(name, rows, max(windows // 4, 20), MonitoringSettings())
            print(f"  {name}, {rows} rows (expect {expected}): {dict(verdicts)}")
    print("unchanged labelled rows (training figures from 1,000 held-out rows):")
    for rows in (100, 500, 2000):
        decayed, by = false_decays(rows, max(windows // 2, 20), MonitoringSettings())
        print(f"  {rows:>5} labelled rows: {decayed} decayed {dict(by)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
