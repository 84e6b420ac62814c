"""The served version's metrics on labelled captured rows, with an interval: pure numpy.

The same metrics training reports (accuracy, F1, ROC AUC, log loss; RMSE, MAE, R2),
computed from what the model answered (the captured outputs) against the labels, so
they sit next to the training figures. Each metric gets an interval (Wilson for accuracy,
a seeded percentile bootstrap otherwise, Bonferroni over the metrics); the version has
decayed when the whole interval of any metric is worse than its training figure by more
than `max_metric_drop` of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from shared.data.spec import LOWER_IS_BETTER, MonitoringSettings
from shared.monitoring import statistics
from shared.monitoring.report import MetricCheck, Performance
from shared.registry.metadata import ModelMetadata


@dataclass(frozen=True)
class LabelledRow:
    """A captured row that a label joined: what was answered, and the truth."""

    label: str
    prediction: int | float | str | None
    probabilities: dict[str, float] | None


def _classification(
    meta: ModelMetadata, rows: Sequence[LabelledRow]
) -> dict[str, Callable[[np.ndarray], float]]:
    classes = [str(c) for c in meta.classes or []]
    position = {c: i for i, c in enumerate(classes)}
    truth = np.array([position.get(r.label, -1) for r in rows])
    answered = np.array([position.get(str(r.prediction), -2) for r in rows])
    probs = np.array(
        [[(r.probabilities or {}).get(c, math.nan) for c in classes] for r in rows],
        dtype=np.float64,
    ).reshape(len(rows), len(classes))
    scored = (truth >= 0) & ~np.isnan(probs).any(axis=1)

    def f1(idx: np.ndarray) -> float:
        if len(classes) == 2:
            return statistics.f1(truth[idx], answered[idx], 1)
        return float(
            np.mean([statistics.f1(truth[idx], answered[idx], k) for k in range(len(classes))])
        )

    def auc(idx: np.ndarray) -> float:
        idx = idx[scored[idx]]
        if len(classes) == 2:
            return statistics.roc_auc(truth[idx] == 1, probs[idx, 1])
        per_class = [
            statistics.roc_auc(truth[idx] == k, probs[idx, k]) for k in range(len(classes))
        ]
        return float(np.mean(per_class))

    def log_loss(idx: np.ndarray) -> float:
        idx = idx[scored[idx]]
        return statistics.log_loss(truth[idx], probs[idx]) if idx.size else math.nan

    return {
        "accuracy": lambda idx: statistics.accuracy(truth[idx], answered[idx]),
        "f1": f1,
        "roc_auc": auc,
        "log_loss": log_loss,
    }


def _regression(rows: Sequence[LabelledRow]) -> dict[str, Callable[[np.ndarray], float]]:
    def number(value: object) -> float:
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return math.nan

    truth = np.array([number(r.label) for r in rows])
    answered = np.array([number(r.prediction) for r in rows])
    valid = ~(np.isnan(truth) | np.isnan(answered))

    def on_valid(
        metric: Callable[[np.ndarray, np.ndarray], float],
    ) -> Callable[[np.ndarray], float]:
        def compute(idx: np.ndarray) -> float:
            idx = idx[valid[idx]]
            return metric(truth[idx], answered[idx]) if idx.size else math.nan

        return compute

    return {
        "rmse": on_valid(statistics.rmse),
        "mae": on_valid(statistics.mae),
        "r2": on_valid(statistics.r2),
    }


def usable_label(meta: ModelMetadata, label: str) -> bool:
    """Whether a true value can score `meta`'s version: one of its classes, or a number.

    Anything else ("Yes" for a model of "yes"/"no", "n/a" for a price) would count as a
    wrong answer and raise a false decay, or teach a retraining a class that is a typo.
    """
    if meta.task == "classification":
        return label in {str(c) for c in meta.classes or []}
    try:
        return math.isfinite(float(label))
    except ValueError:
        return False


def metric_values(meta: ModelMetadata, rows: Sequence[LabelledRow]) -> dict[str, float]:
    """Every metric of `meta`'s task on `rows` (nan where undefined, e.g. one class only)."""
    if not rows:
        return {}
    metrics = _classification(meta, rows) if meta.task == "classification" else _regression(rows)
    everything = np.arange(len(rows))
    return {name: fn(everything) for name, fn in metrics.items()}


def decay_threshold(training: float, metric: str, max_drop: float) -> float:
    """The value past which `metric` counts as decayed: `max_drop` of |training| worse.

    Of |training|, not of training: a negative training R2 times (1 - drop) would be a
    threshold above it, and a model no worse than at training would decay.
    """
    margin = max_drop * abs(training)
    return training + margin if metric in LOWER_IS_BETTER else training - margin


def _interval(
    name: str,
    value: float,
    metric: Callable[[np.ndarray], float],
    rows: int,
    confidence: float,
) -> tuple[list[float], str]:
    if name == "accuracy":
        low, high = statistics.wilson_interval(round(value * rows), rows, confidence)
        return [round(low, 6), round(high, 6)], "wilson"
    low, high = statistics.bootstrap_interval(metric, rows, confidence)
    return [round(low, 6), round(high, 6)], "bootstrap (200 resamples, seed 0)"


def _with_training_error(
    interval: list[float], value: float, rows: int, held_out: int
) -> list[float]:
    """The interval widened by the training figure's own sampling error.

    The training figure was measured on `held_out` rows, so it is an estimate too: on
    1,000 held-out rows, log loss alone varies by about 5%, the default drop, and an
    unchanged model decayed in 9 of 60 windows of 10,000 labelled rows. With the same
    spread per row on both sides, the difference's error is the window's times
    sqrt(1 + rows / held_out).
    """
    if held_out <= 0:
        return interval
    widen = (1.0 + rows / held_out) ** 0.5
    low, high = interval
    return [round(value - (value - low) * widen, 6), round(value + (high - value) * widen, 6)]


def measure(meta: ModelMetadata, rows: Sequence[LabelledRow], s: MonitoringSettings) -> Performance:
    """The version's metrics on `rows`, each with an interval, and the decay rule.

    Every metric with a training figure is checked, not only the primary one: a model can
    lose a class (macro F1, accuracy) while its ROC AUC holds. The intervals are at a
    Bonferroni-corrected confidence, so that checking four metrics instead of one does not
    quadruple the false decays. Rows whose label cannot score this version (see
    usable_label) are counted, not used.
    """
    usable = [r for r in rows if usable_label(meta, r.label)]
    unusable = len(rows) - len(usable)
    rows = usable
    primary = meta.primary_metric
    metrics = _classification(meta, rows) if meta.task == "classification" else _regression(rows)
    everything = np.arange(len(rows))
    values = {name: fn(everything) for name, fn in metrics.items()} if rows else {}
    checked = [m for m in metrics if m in meta.metrics and math.isfinite(meta.metrics[m])]
    confidence = 1.0 - (1.0 - s.confidence) / max(len(checked), 1)
    enough = len(rows) >= s.min_labelled_rows
    held_out = meta.lineage.data.test_rows
    checks: list[MetricCheck] = []
    method = "none"
    for name in checked:
        value = values.get(name, math.nan)
        if math.isnan(value):
            continue
        training = float(meta.metrics[name])
        threshold = decay_threshold(training, name, s.max_metric_drop)
        interval, how = _interval(name, value, metrics[name], len(rows), confidence)
        interval = _with_training_error(interval, value, len(rows), held_out)
        if name == primary:
            method = f"{how}, {confidence:.4g} each of {len(checked)} metrics (Bonferroni)"
        lower_better = name in LOWER_IS_BETTER
        decayed = enough and (interval[0] > threshold if lower_better else interval[1] < threshold)
        checks.append(
            MetricCheck(
                metric=name,
                value=round(value, 6),
                interval=interval,
                training_value=round(training, 6),
                threshold=round(threshold, 6),
                decayed=bool(decayed),
            )
        )
    primary_check = next((c for c in checks if c.metric == primary), None)
    training = float(meta.metrics[primary])
    primary_value = values.get(primary)
    return Performance(
        metric=primary,
        labelled_rows=len(rows),
        value=(
            None if primary_value is None or math.isnan(primary_value) else round(primary_value, 6)
        ),
        interval=primary_check.interval if primary_check is not None else None,
        method=method,
        training_value=round(training, 6),
        threshold=round(decay_threshold(training, primary, s.max_metric_drop), 6),
        decided=enough and bool(checks),
        decayed=any(c.decayed for c in checks),
        metrics={k: round(v, 6) for k, v in sorted(values.items()) if not math.isnan(v)},
        unusable_labels=unusable,
        checks=checks,
    )


def metric_functions(
    meta: ModelMetadata, rows: Sequence[LabelledRow]
) -> dict[str, Callable[[np.ndarray], float]]:
    """Each metric of `meta`'s task as a function of positions in `rows` (to resample)."""
    return _classification(meta, rows) if meta.task == "classification" else _regression(rows)
