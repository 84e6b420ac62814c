"""The model spec (``specs/<model>.json``): what to train and how to judge it.

Every field has a default, so a model with no spec trains too. Unknown fields are
rejected so that a typo (``"estimater"``) is an error, not a silent default.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from shared.errors import ObjectNotFound, SpecError, quoted
from shared.store.base import ObjectStore

Task = Literal["classification", "regression"]
EstimatorName = Literal["linear", "random_forest", "gradient_boosting"]

CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# Metrics where a smaller value is better; the rest are maximised.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
DEFAULT_PRIMARY_METRIC: dict[str, str] = {"classification": "roc_auc", "regression": "rmse"}

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class ParityTolerance(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How far ONNX outputs may stray from scikit-learn's: |onnx - sk| <= atol + rtol * |sk|."""

    atol: float = 1e-4
    rtol: float = 1e-4


class CaptureSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How serving records its traffic under ``captures/<model>/`` for monitoring."""

    enabled: bool = True
    sample_rate: float = 1.0  # share of requests captured (all rows of a sampled request)
    batch_rows: int = 1000  # rows per capture object: S3 writes per 1,000 predictions
    max_wait_seconds: float = 60.0  # a buffered row waits at most this long for its batch
    # Rows of one request captured at most (spread evenly over it): a batch-scoring request
    # of 10,000 rows would otherwise spend more on its capture than on its prediction.
    max_rows_per_request: int = 1000
    # Share of a batch job's scored rows captured (spread evenly, role "batch"): enough for
    # the hourly check to see the batch feed drift, never a copy of a million-row table.
    batch_sample_rate: float = 0.01

    def check(self) -> None:
        """Raise SpecError naming the first setting out of range."""
        if not 0.0 <= self.sample_rate <= 1.0:
            raise SpecError(
                f"monitoring.capture.sample_rate: must be between 0 and 1, got {self.sample_rate}"
            )
        if not 0.0 <= self.batch_sample_rate <= 1.0:
            raise SpecError(
                "monitoring.capture.batch_sample_rate: must be between 0 and 1, "
                f"got {self.batch_sample_rate}"
            )
        if not 1 <= self.batch_rows <= 100_000:
            raise SpecError(
                f"monitoring.capture.batch_rows: must be 1 to 100000, got {self.batch_rows}"
            )
        if not 1 <= self.max_rows_per_request <= 100_000:
            raise SpecError(
                "monitoring.capture.max_rows_per_request: must be 1 to 100000, "
                f"got {self.max_rows_per_request}"
            )
        if not 0.0 < self.max_wait_seconds <= 3600.0:
            raise SpecError(
                "monitoring.capture.max_wait_seconds: must be above 0 and at most 3600, "
                f"got {self.max_wait_seconds}"
            )


class MonitoringSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the scheduled check judges a window of traffic; see docs/monitoring.md."""

    window_hours: int = 1  # the length of one checked window
    min_rows: int = 100  # fewer rows in a window: insufficient_data, not a verdict
    p_value: float = 0.05  # a feature's test must be below this...
    numeric_distance: float = 0.1  # ...and its normalised Wasserstein distance above this
    categorical_distance: float = 0.1  # ...or its Jensen-Shannon distance above this
    missing_rate_change: float = 0.05  # a significant change of the missing share this large
    out_of_range_change: float = 0.05  # values beyond the training range, this share more
    drift_share: float = 0.5  # the window drifts when at least this share of features does
    # ...or when one column is off at this family-wise level (Bonferroni over the
    # columns): one broken column must not hide among many. At 0.01, unchanged windows of
    # a 30-feature model were called drift 1-2% of the time (a fixed training sample is
    # itself off here and there); at 0.001 that falls tenfold, and a 1-sd shift of one
    # feature in 200 rows still has p ~1e-20.
    window_p_value: float = 0.001
    # This share of a column outside the training range, or of categories the model never
    # saw, is a data problem (fix the feed), not drift: a 2-sd shift puts ~7% outside.
    data_problem_share: float = 0.25
    psi_bands: list[float] = msgspec.field(default_factory=lambda: [0.1, 0.25])
    min_labelled_rows: int = 100  # below this, labels are reported but decide nothing
    max_metric_drop: float = 0.05  # decay: the metric's interval is this much (relative) worse
    label_window_hours: int = 168  # labelled captures of this many hours count for decay
    confidence: float = 0.95  # of the metric's interval
    capture: CaptureSettings = msgspec.field(default_factory=CaptureSettings)

    def check(self) -> None:
        """Raise SpecError naming the first setting out of range."""
        bounded = {
            "p_value": (self.p_value, 0.0, 0.5),
            "numeric_distance": (self.numeric_distance, 0.0, 10.0),
            "categorical_distance": (self.categorical_distance, 0.0, 1.0),
            "missing_rate_change": (self.missing_rate_change, 0.0, 1.0),
            "out_of_range_change": (self.out_of_range_change, 0.0, 1.0),
            "drift_share": (self.drift_share, 0.0, 1.0),
            "window_p_value": (self.window_p_value, 0.0, 0.5),
            "data_problem_share": (self.data_problem_share, 0.0, 1.0),
            "max_metric_drop": (self.max_metric_drop, 0.0, 1.0),
            "confidence": (self.confidence, 0.5, 0.999),
        }
        for name, (value, lo, hi) in bounded.items():
            if not lo < value <= hi:
                raise SpecError(
                    f"monitoring.{name}: must be above {lo} and at most {hi}, got {value}"
                )
        counts = {
            "window_hours": (self.window_hours, 1, 24 * 7),
            "min_rows": (self.min_rows, 10, 10_000_000),
            "min_labelled_rows": (self.min_labelled_rows, 10, 10_000_000),
            "label_window_hours": (self.label_window_hours, 1, 24 * 90),
        }
        for name, (number, lo_n, hi_n) in counts.items():
            if not lo_n <= number <= hi_n:
                raise SpecError(f"monitoring.{name}: must be {lo_n} to {hi_n}, got {number}")
        if len(self.psi_bands) != 2 or not 0 < self.psi_bands[0] < self.psi_bands[1]:
            raise SpecError(
                "monitoring.psi_bands: must be two increasing positive numbers, "
                f"got {self.psi_bands}"
            )
        self.capture.check()


class GateSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a version must show on its held-out rows to be served at all."""

    # Over the trivial predictor (majority class and class priors; the mean for
    # regression), on the primary metric: absolute for accuracy, F1, ROC AUC and R2,
    # relative (a share of the trivial value) for log loss, RMSE and MAE.
    min_improvement: float = 0.02
    minimum: float | None = None  # the primary metric's floor (ceiling when lower is better)

    def check(self) -> None:
        """Raise SpecError naming the first setting out of range."""
        if not 0.0 <= self.min_improvement <= 1.0:
            raise SpecError(
                f"gate.min_improvement: must be between 0 and 1, got {self.min_improvement}"
            )


class PromotionSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a challenger (a new ready version in staging) replaces production."""

    mode: Literal["auto", "manual"] = "auto"  # manual: decisions are recorded, never acted on
    metric: str | None = None  # None: the primary metric
    # Both versions are scored on the same rows that neither was fitted to, and the
    # challenger replaces production only when the one-sided lower confidence bound of its
    # improvement (a paired bootstrap, at `confidence`) is above the margin: the larger of
    # `min_improvement` (absolute, in the metric's better direction) and
    # `min_relative_improvement` times production's figure. A difference the rows cannot
    # tell from noise never promotes; one too small to matter does not either, or equally
    # good versions would trade places by chance week after week.
    min_improvement: float = 0.0
    min_relative_improvement: float = 0.005
    confidence: float = 0.95
    # Labelled captured rows both versions must be scored on before an automatic move;
    # 0: rows of the challenger's held-out set that production never saw are enough.
    min_labelled_rows: int = 0

    def check(self) -> None:
        """Raise SpecError naming the first setting out of range."""
        known = CLASSIFICATION_METRICS + REGRESSION_METRICS
        if self.metric is not None and self.metric not in known:
            raise SpecError(f"promotion.metric: {self.metric!r} is not one of {list(known)}")
        if not 0.0 <= self.min_improvement <= 1.0:
            raise SpecError(
                f"promotion.min_improvement: must be between 0 and 1, got {self.min_improvement}"
            )
        if not 0.0 <= self.min_relative_improvement <= 1.0:
            raise SpecError(
                "promotion.min_relative_improvement: must be between 0 and 1, "
                f"got {self.min_relative_improvement}"
            )
        if not 0.5 <= self.confidence <= 0.999:
            raise SpecError(f"promotion.confidence: must be 0.5 to 0.999, got {self.confidence}")
        if not 0 <= self.min_labelled_rows <= 10_000_000:
            raise SpecError(
                f"promotion.min_labelled_rows: must be 0 to 10000000, got {self.min_labelled_rows}"
            )


class RetrainingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When the monitoring check assembles a new training set (a challenger) by itself."""

    enabled: bool = True
    # Verdicts that start a retraining. A `data_problem` window (values out of range,
    # missing, unseen) is not listed by default: retraining on a broken feed learns the bug.
    on: list[Literal["drift", "decay", "data_problem"]] = msgspec.field(
        default_factory=lambda: ["drift", "decay"]
    )
    # ...until the data problem has lasted this long (None: never): a feed that stays so
    # for weeks (a unit changed for good, a feature that trends beyond its training range)
    # is what the model will see, and a model that cannot follow it stays wrong for good.
    data_problem_hold_hours: int | None = 336
    min_interval_hours: int = 24  # at most one retraining per this many hours (window time)
    # A challenger is also retrained this often whatever the verdict (None: only on a
    # verdict), so that a version that is merely "ok" meets a fresh rival: its own held-out
    # figure says nothing of what a model of today's data would do.
    every_hours: int | None = 168
    # Rows of the parent's training data carried over (the most recent ones, at its end).
    # 0: none, the set is the labelled rows of the label window (a sliding window: after a
    # change, old rows teach the old behaviour); None: all of them.
    keep_base_rows: int | None = 0
    # The newest share of the new labelled rows, held back from the set: production and
    # the challenger are judged on them (and on other rows neither was fitted to).
    holdback_fraction: float = 0.2

    def check(self) -> None:
        """Raise SpecError naming the first setting out of range."""
        if not 1 <= self.min_interval_hours <= 24 * 365:
            raise SpecError(
                f"retraining.min_interval_hours: must be 1 to 8760, got {self.min_interval_hours}"
            )
        if self.every_hours is not None and not 1 <= self.every_hours <= 24 * 365:
            raise SpecError(
                f"retraining.every_hours: must be 1 to 8760 (or null), got {self.every_hours}"
            )
        if self.data_problem_hold_hours is not None and not (
            1 <= self.data_problem_hold_hours <= 24 * 365
        ):
            raise SpecError(
                "retraining.data_problem_hold_hours: must be 1 to 8760 (or null), "
                f"got {self.data_problem_hold_hours}"
            )
        if self.keep_base_rows is not None and self.keep_base_rows < 0:
            raise SpecError(
                f"retraining.keep_base_rows: must be 0 or more, got {self.keep_base_rows}"
            )
        if not 0.0 <= self.holdback_fraction <= 0.5:
            raise SpecError(
                "retraining.holdback_fraction: must be between 0 and 0.5, "
                f"got {self.holdback_fraction}"
            )


class ShadowSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Scoring the staging version on live requests, beside production, for comparison."""

    enabled: bool = False
    sample_rate: float = 0.1  # share of captured production requests also scored by staging

    def check(self) -> None:
        """Raise SpecError naming the first setting out of range."""
        if not 0.0 <= self.sample_rate <= 1.0:
            raise SpecError(f"shadow.sample_rate: must be between 0 and 1, got {self.sample_rate}")


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to train for one model; see docs/spec.md."""

    target: str = "target"
    task: Task | None = None  # None: inferred from the target column
    features: list[str] | None = None  # None: every column but the target and `drop`
    drop: list[str] = msgspec.field(default_factory=list)
    categorical: list[str] = msgspec.field(default_factory=list)  # force categorical
    # One-hot columns per categorical feature at most (None: one per category); the rarest
    # categories of the training rows share the last one.
    max_categories: int | None = None
    estimator: EstimatorName = "linear"
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    primary_metric: str | None = None  # None: roc_auc (classification) or rmse (regression)
    random_seed: int = 0
    test_fraction: float = 0.2
    min_rows: int = 20
    parity: ParityTolerance = msgspec.field(default_factory=ParityTolerance)
    monitoring: MonitoringSettings = msgspec.field(default_factory=MonitoringSettings)
    gate: GateSettings = msgspec.field(default_factory=GateSettings)
    promotion: PromotionSettings = msgspec.field(default_factory=PromotionSettings)
    retraining: RetrainingSettings = msgspec.field(default_factory=RetrainingSettings)
    shadow: ShadowSettings = msgspec.field(default_factory=ShadowSettings)

    def __post_init__(self) -> None:
        # msgspec has checked types; these are the rules between fields.
        if not self.target:
            raise SpecError("target: must be a non-empty column name")
        if not 0.05 <= self.test_fraction <= 0.5:
            raise SpecError(
                f"test_fraction: must be between 0.05 and 0.5, got {self.test_fraction}"
            )
        if self.min_rows < 10:
            raise SpecError(f"min_rows: must be at least 10, got {self.min_rows}")
        if self.max_categories is not None and self.max_categories < 2:
            raise SpecError(
                f"max_categories: must be at least 2 (or left out), got {self.max_categories}"
            )
        if self.target in self.drop:
            raise SpecError(f"drop: lists the target column {self.target!r}")
        if self.features is not None:
            if not self.features:
                raise SpecError("features: must list at least one column, or be left out")
            if self.target in self.features:
                raise SpecError(f"features: lists the target column {self.target!r}")
            both = sorted(set(self.features) & set(self.drop))
            if both:
                raise SpecError(f"features and drop both list {both}")
        for name in ("features", "drop", "categorical"):
            columns = getattr(self, name) or []
            repeated = sorted({c for c in columns if columns.count(c) > 1})
            if repeated:
                raise SpecError(f"{name}: lists {repeated} more than once")
        if self.parity.atol < 0 or self.parity.rtol < 0:
            raise SpecError("parity: atol and rtol must be >= 0")
        known = CLASSIFICATION_METRICS + REGRESSION_METRICS
        if self.primary_metric is not None and self.primary_metric not in known:
            raise SpecError(f"primary_metric: {self.primary_metric!r} is not one of {list(known)}")
        self.monitoring.check()
        self.gate.check()
        self.promotion.check()
        self.retraining.check()
        self.shadow.check()
        if self.task is not None:
            self.check_task(self.task)

    def check_task(self, task: Task) -> None:
        """Raise SpecError if a field contradicts the task (given or inferred)."""
        allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
        if self.primary_metric is not None and self.primary_metric not in allowed:
            raise SpecError(
                f"primary_metric: {self.primary_metric!r} does not apply to {task}; "
                f"use one of {list(allowed)}"
            )

    def metric_for(self, task: Task) -> str:
        """The primary metric for `task`, with the default filled in."""
        return self.primary_metric or DEFAULT_PRIMARY_METRIC[task]


def validate_model_name(name: str) -> str:
    """Return `name` if it can name a model (and a key prefix), else raise SpecError."""
    if not _MODEL_NAME.fullmatch(name):
        raise SpecError(
            f"model name {quoted(name)} is invalid: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def spec_key(model: str) -> str:
    """Where the spec of `model` lives in the bucket."""
    return f"specs/{validate_model_name(model)}.json"


def parse_spec(body: bytes, *, source: str = "spec") -> ModelSpec:
    """Decode and validate a spec document; errors name the source and the field."""
    try:
        return msgspec.json.decode(body, type=ModelSpec)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    except msgspec.ValidationError as exc:
        # msgspec says e.g. "Expected `int`, got `str` - at `$.min_rows`"
        raise SpecError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise SpecError(f"{source}: not valid JSON ({exc})") from None


def dataset_spec_key(data_key: str) -> str:
    """Where a dataset's own spec may sit: beside it, ``<name>.spec.json``."""
    return data_key.removesuffix(".csv") + ".spec.json"


def load_spec_for_dataset(
    store: ObjectStore, model: str, data_key: str
) -> tuple[ModelSpec, str, str | None]:
    """The spec a dataset trains under: its own (beside it) if any, else the model's.

    (spec, key it came from, ETag). Retraining writes one beside each set it assembles,
    pinning what the parent version learnt (task, target, features).
    """
    key = dataset_spec_key(data_key)
    try:
        obj = store.get(key)
    except ObjectNotFound:
        spec, etag = load_spec(store, model)
        return spec, spec_key(model), etag
    return parse_spec(obj.body, source=key), key, obj.etag


def load_spec(store: ObjectStore, model: str) -> tuple[ModelSpec, str | None]:
    """The spec of `model` and its ETag; the defaults (and None) when there is no spec."""
    key = spec_key(model)
    try:
        obj = store.get(key)
    except ObjectNotFound:
        return ModelSpec(), None
    return parse_spec(obj.body, source=key), obj.etag


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """The spec as plain JSON data, defaults included (it is recorded with each version)."""
    data: dict[str, Any] = msgspec.to_builtins(spec)
    return data


__all__ = [
    "CLASSIFICATION_METRICS",
    "LOWER_IS_BETTER",
    "REGRESSION_METRICS",
    "CaptureSettings",
    "GateSettings",
    "ModelSpec",
    "MonitoringSettings",
    "ParityTolerance",
    "PromotionSettings",
    "RetrainingSettings",
    "ShadowSettings",
    "Task",
    "dataset_spec_key",
    "load_spec",
    "load_spec_for_dataset",
    "parse_spec",
    "spec_key",
    "spec_to_dict",
    "validate_model_name",
]
