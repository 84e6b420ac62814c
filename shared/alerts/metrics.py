"""CloudWatch metrics as Embedded Metric Format lines: no API call, no permission.

Lambda sends what a function prints to CloudWatch Logs, and CloudWatch turns each line
that is an EMF JSON object into metrics. Lambda's logging handler prefixes its lines, so
EMF lines go to stdout directly.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from shared.monitoring.report import DriftReport, FeatureDrift, VersionSection, decode_report
from shared.store.base import ObjectStore

logger = logging.getLogger(__name__)

NAMESPACE = "serverless-mlops"

# The verdict as a number, worse is higher: an alarm on ">= 2" fires on drift, decay and
# data_problem; insufficient_data (too few rows) is 1, apart from ok.
VERDICT_LEVELS = {"ok": 0, "insufficient_data": 1, "drift": 2, "decay": 3, "data_problem": 4}
# Per-feature lines a version's check writes at most: each feature is a metric of its own
# (billed as one), and a wide table would otherwise cost one per column every hour.
MAX_FEATURE_METRICS = 20


def emf_line(
    dimensions: dict[str, str],
    metrics: dict[str, tuple[float, str]],
    *,
    timestamp_ms: int,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One EMF object: `metrics` maps a name to (value, CloudWatch unit)."""
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [
                        {"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()
                    ],
                }
            ],
        },
        **(properties or {}),
        **dimensions,
        **{name: value for name, (value, _) in metrics.items()},
    }


def watched_features(section: VersionSection) -> list[FeatureDrift]:
    """The features whose drift is written as metrics: the drifted ones first, then the
    farthest from their baseline, at most MAX_FEATURE_METRICS."""
    ranked = sorted(section.features, key=lambda f: (not f.drifted, -f.distance, f.name))
    return ranked[:MAX_FEATURE_METRICS]


def feature_metric_lines(
    model: str, section: VersionSection, timestamp_ms: int, window: dict[str, str]
) -> list[dict[str, Any]]:
    """One line per watched feature: its drift from the training baseline (SageMaker Model
    Monitor's feature_baseline_drift_<f>), dimensions Model, Version and Feature."""
    return [
        emf_line(
            {"Model": model, "Version": str(section.version), "Feature": feature.name},
            {
                "FeatureDrift": (feature.distance, "None"),
                "FeaturePSI": (feature.psi, "None"),
                "FeatureDrifted": (int(feature.drifted), "Count"),
            },
            timestamp_ms=timestamp_ms,
            properties={**window, "Distance": feature.distance_name},
        )
        for feature in watched_features(section)
    ]


def check_metric_lines(report: DriftReport, timestamp_ms: int) -> list[dict[str, Any]]:
    """The hourly check's metrics: one line for the model's window, one per version, and
    one per watched feature of each version."""
    window = {"Window": report.window}
    lines = [
        emf_line(
            {"Model": report.model},
            {
                "Verdict": (VERDICT_LEVELS[report.verdict], "None"),
                "RowsChecked": (report.rows, "Count"),
            },
            timestamp_ms=timestamp_ms,
            properties={**window, "VerdictName": report.verdict},
        )
    ]
    for section in report.versions:
        labelled = section.performance.labelled_rows if section.performance else 0
        metrics: dict[str, tuple[float, str]] = {
            "Verdict": (VERDICT_LEVELS[section.verdict], "None"),
            "RowsChecked": (section.rows, "Count"),
            "DriftedFeatures": (len(section.drifted_features), "Count"),
            "DriftShare": (section.drift_share, "None"),
            "DataProblemFindings": (
                sum(1 for f in section.findings if f.kind == "data_problem"),
                "Count",
            ),
            "LabelledRows": (labelled, "Count"),
        }
        if section.performance is not None and section.performance.decided:
            for name, value in sorted(section.performance.metrics.items()):
                metrics[f"Labelled_{name}"] = (value, "None")
        lines.append(
            emf_line(
                {"Model": report.model, "Version": str(section.version)},
                metrics,
                timestamp_ms=timestamp_ms,
                properties={**window, "VerdictName": section.verdict},
            )
        )
        lines.extend(feature_metric_lines(report.model, section, timestamp_ms, window))
    return lines


def emf_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether metric lines go to stdout: on Lambda (CloudWatch reads it), or when
    MLOPS_EMF=1 says so. Elsewhere stdout is the user's (`mlops predict | head`)."""
    env = os.environ if environ is None else environ
    default = "1" if env.get("AWS_LAMBDA_FUNCTION_NAME") else "0"
    return env.get("MLOPS_EMF", default) == "1"


def write_lines(lines: list[dict[str, Any]], stream: TextIO | None = None) -> None:
    """Print each object as one line (CloudWatch reads a log event as one EMF object)."""
    if stream is None and not emf_enabled():
        return
    out = stream or sys.stdout
    for line in lines:
        out.write(json.dumps(line, allow_nan=False, separators=(",", ":")) + "\n")
    out.flush()


def emit_check_metrics(store: ObjectStore, report_key: str) -> None:
    """The metrics of the report at `report_key`; never fails the check (logged)."""
    try:
        report = decode_report(store.get(report_key).body, report_key)
        write_lines(check_metric_lines(report, int(time.time() * 1000)))
    except Exception:
        logger.exception("metrics of %s not written", report_key)


@dataclass
class ServingTally:
    """What one serving container did since its last metrics line (thread-safe)."""

    requests: int = 0
    rows: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _shadow_seen: int = 0
    _capture_seen: int = 0

    def answered(self, status: int, rows: int = 0) -> None:
        """Count one prediction request, its rows and its status class."""
        with self._lock:
            self.requests += 1
            self.rows += rows
            self.errors_4xx += 400 <= status < 500
            self.errors_5xx += status >= 500

    def line(
        self, shadow_failures: int, capture_failures: int, timestamp_ms: int
    ) -> dict[str, Any]:
        """The metrics since the last line (counters are reset); failures are running totals."""
        with self._lock:
            metrics: dict[str, tuple[float, str]] = {
                "Requests": (self.requests, "Count"),
                "RowsPredicted": (self.rows, "Count"),
                "Errors4xx": (self.errors_4xx, "Count"),
                "Errors5xx": (self.errors_5xx, "Count"),
                "ShadowFailures": (shadow_failures - self._shadow_seen, "Count"),
                "CaptureFailures": (capture_failures - self._capture_seen, "Count"),
            }
            self.requests = self.rows = self.errors_4xx = self.errors_5xx = 0
            self._shadow_seen, self._capture_seen = shadow_failures, capture_failures
        return emf_line({"Service": "serving"}, metrics, timestamp_ms=timestamp_ms)
