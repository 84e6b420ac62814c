"""The record of one model version (``models/<model>/versions/<n>/metadata.json``).

Written once when the version is registered, read by serving and monitoring.
Only msgspec here, so the inference path can read it without scikit-learn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from shared.data.profile import BaselineProfile

# 2: 100 quantile bins per numeric feature, the pooled categories in their own field, and
# class probability histograms in the prediction baseline (see shared/data/profile.py).
METADATA_SCHEMA_VERSION = 2


# The ONNX input of every numeric feature, one [N, k] float tensor.
NUMERIC_INPUT = "numeric"
# The exported graph's outputs: classification's labels and probabilities, regression's
# values. No input may take their names.
OUTPUT_NAMES = ("label", "probabilities", "variable")
# Inside an exported graph with categorical features: the numeric features and the
# categories' codes side by side (what the pipeline was fitted on). Not an input clients see.
COLUMNS_INPUT = "columns"


def onnx_input_names(names: Sequence[str]) -> list[str]:
    """ONNX input names for categorical features `names`, one each, in order.

    Names skl2onnx and clients keep as they are: [A-Za-z0-9_], not starting with a digit,
    unique, and neither NUMERIC_INPUT, COLUMNS_INPUT nor an output's name.
    """
    result: list[str] = []
    taken: set[str] = {NUMERIC_INPUT, COLUMNS_INPUT, *OUTPUT_NAMES}
    for name in names:
        base = re.sub(r"\W", "_", name, flags=re.ASCII) or "feature"
        if base[0].isdigit():
            base = f"f_{base}"
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        taken.add(candidate)
        result.append(candidate)
    return result


class FeatureSchema(msgspec.Struct, frozen=True, kw_only=True):
    """One model input: its column name, kind, ONNX input name and training categories."""

    name: str
    kind: Literal["numeric", "categorical"]
    # The ONNX input carrying it: "numeric" (a column of the [N, k] numeric tensor, in the
    # order numeric features are listed) or a sanitised name of its own; clients use `name`.
    input_name: str
    categories: list[str] = msgspec.field(default_factory=list)


class DataLineage(msgspec.Struct, frozen=True, kw_only=True):
    """Exactly which bytes trained this version."""

    key: str
    etag: str
    version_id: str | None
    sha256: str
    size_bytes: int
    rows: int
    train_rows: int
    test_rows: int


class Lineage(msgspec.Struct, frozen=True, kw_only=True):
    """Where a version came from: data, spec, code and the packages that built it."""

    data: DataLineage
    spec_key: str
    spec_etag: str | None  # None: the spec's defaults, no spec object
    code_version: str
    packages: dict[str, str]
    trigger: str


class ParityReport(msgspec.Struct, frozen=True, kw_only=True):
    """How the exported ONNX graph compared with the fitted pipeline on held-out rows."""

    rows: int
    max_abs_diff: float
    atol: float
    rtol: float
    violations: int  # rows outside atol + rtol * |scikit-learn value|
    label_mismatches: int  # classification: rows whose predicted class differs
    passed: bool


class OnnxArtifact(msgspec.Struct, frozen=True, kw_only=True):
    """The served artifact and the names of its outputs."""

    file: str
    sha256: str
    size_bytes: int
    opsets: dict[str, int]
    label_output: str  # class label (classification) or value (regression)
    probabilities_output: str | None


class GateReport(msgspec.Struct, frozen=True, kw_only=True):
    """What the gate compared and decided (stored in the version's metadata)."""

    metric: str
    value: float
    trivial: float  # the trivial predictor's value on the same held-out rows
    trivial_predictor: str
    improvement: float  # in the metric's better direction; relative when lower is better
    required_improvement: float
    minimum: float | None
    passed: bool
    reasons: list[str]


class ModelMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """Everything known about one registered version."""

    schema_version: int = METADATA_SCHEMA_VERSION
    model: str
    version: int
    run_id: str
    created_at: str
    task: Literal["classification", "regression"]
    target: str
    estimator: str
    params: dict[str, Any]
    spec: dict[str, Any]
    features: list[FeatureSchema]
    classes: list[str | int] | None
    metrics: dict[str, float]
    primary_metric: str
    parity: ParityReport
    onnx: OnnxArtifact
    baseline: BaselineProfile
    lineage: Lineage
    timings: dict[str, float]
    gate: GateReport | None = None  # None: registered before the quality gate existed
    # The held-out rows stored beside the model (holdout.jsonl.gz); None: none stored.
    holdout_sha256: str | None = None
    # The rows it was fitted to (fitted-rows.u64); None: trained before they were kept.
    fitted_rows_sha256: str | None = None
    trivial_metrics: dict[str, float] = msgspec.field(default_factory=dict)
    # What a person should know before serving it (e.g. a categorical feature with nearly as
    # many values as rows); [] when there is nothing, or before warnings were recorded.
    warnings: list[str] = msgspec.field(default_factory=list)
    # Classification, per class: its share of the training rows ("share"), its held-out rows
    # ("support") and the served model's "precision", "recall" and "f1" on them.
    per_class: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)


def encode_metadata(metadata: ModelMetadata) -> bytes:
    """Metadata as indented JSON (people read it too)."""
    return msgspec.json.format(msgspec.json.encode(metadata), indent=2)


def decode_metadata(body: bytes) -> ModelMetadata:
    """Parse metadata.json back into its record."""
    return msgspec.json.decode(body, type=ModelMetadata)
