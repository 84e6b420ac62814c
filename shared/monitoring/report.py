"""The monitoring report of one window (``monitoring/<model>/<window>.json``), as stored.

Written by the check, read by people (through the HTML page beside it), by the next
check (the verdict history and its plots) and, later, by maintenance (retraining on a
verdict). Readers check `schema_version` and refuse a newer one rather than rewrite it
without the fields they do not know.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from shared.data.spec import validate_model_name
from shared.errors import MlopsError
from shared.monitoring.schema import check_schema

REPORT_SCHEMA_VERSION = 1
MONITORING_PREFIX = "monitoring/"

Verdict = Literal["ok", "drift", "decay", "data_problem", "insufficient_data"]
# Worst first: a window's verdict is the worst of its versions'. A data problem (a unit
# bug, a column arriving empty, codes the model never saw) ranks above decay because it
# causes decay too, and retraining on it would teach the model the bug.
VERDICT_ORDER: tuple[Verdict, ...] = ("data_problem", "decay", "drift", "ok", "insufficient_data")

FindingKind = Literal["data_problem", "drift", "decay"]
# What a finding is about; readers (the CLI, the page, alerting) branch on this, not on text.
FindingWhat = Literal[
    "out_of_range", "missing_share", "unseen_categories", "distribution", "metric"
]


class Histogram(msgspec.Struct, frozen=True, kw_only=True):
    """Baseline and current shares over the same bins, for the report's plots."""

    bins: list[str]  # bin labels: value ranges, categories, classes
    baseline: list[float]  # shares, each list sums to 1 (or is all 0)
    current: list[float]


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One reason a window is not `ok`: a column or a metric, what is wrong, and by how much."""

    kind: FindingKind
    column: str  # a feature, "prediction", or the metric's name for decay
    what: FindingWhat
    message: str  # one line for people, e.g. "length_mm: 100% of values outside ..."
    figures: dict[str, float]  # the numbers behind the message (shares, p-values, ...)


class FeatureDrift(msgspec.Struct, frozen=True, kw_only=True):
    """One feature of one version in one window, against that version's baseline."""

    name: str
    kind: Literal["numeric", "categorical"]
    rows: int  # rows in the window, missing ones included
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    distance_name: Literal["wasserstein_normed", "jensen_shannon"]
    distance: float
    psi: float
    psi_band: Literal["stable", "moderate", "major"]
    missing_rate: float
    baseline_missing_rate: float
    missing_p_value: float
    out_of_range: float | None = None  # numeric: share outside the training range
    unseen: float | None = None  # categorical: share of categories the model never saw
    ks_error_bound: float | None = None  # numeric: the exact KS lies within D + this
    training_range: list[float] | None = None  # numeric: [min, max] at training
    out_of_range_p_value: float | None = None  # numeric: that many outside by chance
    unseen_p_value: float | None = None  # categorical: that unseen share against training's 0
    drifted: bool
    reasons: list[str]
    histogram: Histogram


class OutputDrift(msgspec.Struct, frozen=True, kw_only=True):
    """The predictions' distribution (needs no labels) against the held-out predictions."""

    what: str  # "predicted class" or "predicted value"
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    distance_name: Literal["wasserstein_normed", "jensen_shannon"]
    distance: float
    psi: float
    drifted: bool
    histogram: Histogram
    probability: Histogram | None = None  # classification: positive/first class probability
    # The class whose probability `probability` shows (binary: the positive class, else the
    # model's first); None in reports written before it was recorded.
    probability_class: str | None = None


class MetricCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One labelled metric against its training figure, with its own interval."""

    metric: str
    value: float
    interval: list[float] | None  # [low, high]; Bonferroni over the metrics checked
    training_value: float
    threshold: float  # decayed when the whole interval is worse than this
    decayed: bool


class Performance(msgspec.Struct, frozen=True, kw_only=True):
    """The served version's metrics on the labelled rows, next to their training figures.

    The top-level fields are the primary metric's; `checks` holds every metric that has a
    training figure, each judged on its own interval. `decayed` is true when any is.
    """

    metric: str
    labelled_rows: int
    value: float | None
    interval: list[float] | None  # [low, high], at the confidence `method` names
    method: str  # how the interval was computed
    training_value: float
    threshold: float  # decay when the whole interval is worse than this
    decided: bool  # enough labelled rows to decide anything
    decayed: bool
    metrics: dict[str, float]  # every metric on the labelled rows
    unusable_labels: int = 0  # labels that are not a class of the version (or not a number)
    checks: list[MetricCheck] = msgspec.field(default_factory=list)


class VersionSection(msgspec.Struct, frozen=True, kw_only=True):
    """What one version served in the window, compared with its own baseline."""

    version: int
    rows: int
    resolution: Literal["percentiles", "deciles"]  # deciles: trained before schema 2
    features: list[FeatureDrift]
    drifted_features: list[str]
    drift_share: float
    output: OutputDrift | None
    performance: Performance | None
    verdict: Verdict
    reasons: list[str]
    # What made the verdict, column by column; empty in reports written before findings.
    findings: list[Finding] = msgspec.field(default_factory=list)


class FileProblem(msgspec.Struct, frozen=True, kw_only=True):
    """A capture or label file that was skipped, and why."""

    key: str
    error: str


class LabelSummary(msgspec.Struct, frozen=True, kw_only=True):
    """How the uploaded labels met the captured rows."""

    files: int
    labels: int
    matched: int  # labels joined to exactly one captured row in the label window
    unmatched: int  # no captured row has that request id and row
    ambiguous: int  # several captured requests share that client request id: not used
    duplicates: int  # the same (request id, row) labelled again: the last upload wins


class ShadowComparison(msgspec.Struct, frozen=True, kw_only=True):
    """A staging version scored on live requests beside production (shadow mode)."""

    version: int  # the shadow
    served_version: int  # what answered the same rows
    rows: int  # shadow rows in the window
    paired_rows: int  # shadow rows whose served row was found
    agreement: float | None  # classification: share of paired rows with the same class
    mean_abs_difference: float | None  # regression: mean |shadow - served|
    labelled_rows: int
    performance: Performance | None  # the shadow's metrics on the labelled paired rows
    served_performance: Performance | None  # the served version's, on the same rows


class HistoryPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One earlier window, for the trend plots."""

    window: str
    verdict: Verdict
    rows: int
    drift_share: float
    metric: str | None = None
    metric_value: float | None = None


class DriftReport(msgspec.Struct, frozen=True, kw_only=True):
    """The monitoring report of one model over one window."""

    schema_version: int = REPORT_SCHEMA_VERSION
    model: str
    window: str  # e.g. 2026-11-30T10-1h: start hour (UTC) and length
    start: str
    end: str
    verdict: Verdict
    reasons: list[str]
    rows: int
    capture_files: int
    skipped_files: list[FileProblem]
    labels: LabelSummary
    versions: list[VersionSection]
    history: list[HistoryPoint]
    settings: dict[str, object]
    shadows: list[ShadowComparison] = msgspec.field(default_factory=list)
    # Capture objects counted from the summary serving wrote beside them (the rest were
    # read row by row), and summaries that could not be used (their objects were read).
    summarised_files: int = 0
    summary_problems: list[FileProblem] = msgspec.field(default_factory=list)


def window_id(start: datetime, hours: int) -> str:
    """The name of the window that starts at `start` (a whole UTC hour)."""
    return f"{start.astimezone(UTC):%Y-%m-%dT%H}-{hours}h"


def parse_window_id(window: str) -> tuple[datetime, datetime]:
    """(start, end) of a window name such as 2026-11-30T10-1h; only the canonical spelling.

    One window has one name, so one report, one audit record and one retraining: "10-01h"
    or a start with minutes would otherwise name the same hours again.
    """
    problem = f"window {window[:40]!r} is not like 2026-11-30T10-1h (UTC start hour, hours)"
    try:
        stamp, length = window.rsplit("-", 1)
        start = datetime.strptime(stamp, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        if not (length.endswith("h") and length[:-1].isascii() and length[:-1].isdigit()):
            raise ValueError(length)
        hours = int(length[:-1])
        if not 1 <= hours <= 24 * 7:
            raise MlopsError(f"window {window[:40]!r}: length must be 1 to 168 hours")
        end = start + timedelta(hours=hours)
    except (ValueError, OverflowError):
        raise MlopsError(problem) from None
    if window_id(start, hours) != window:
        raise MlopsError(f"{problem}; did you mean {window_id(start, hours)}?")
    return start, end


def report_prefix(model: str) -> str:
    """Where the reports of `model` live."""
    return f"{MONITORING_PREFIX}{validate_model_name(model)}/"


def report_key(model: str, window: str, extension: str = "json") -> str:
    """The key of one window's report (json) or page (html)."""
    return f"{report_prefix(model)}{window}.{extension}"


def encode_report(report: DriftReport) -> bytes:
    """The report as indented JSON (people read it too); same report, same bytes."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2)


def decode_report(body: bytes, key: str) -> DriftReport:
    """A stored report; NewerRecordError if a newer version of this code wrote it."""
    head = msgspec.json.decode(body, type=_Versioned)
    check_schema("report", head.schema_version, REPORT_SCHEMA_VERSION, key)
    return msgspec.json.decode(body, type=DriftReport)


class _Versioned(msgspec.Struct):
    schema_version: int = 1
