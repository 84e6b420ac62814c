"""Export a fitted pipeline to ONNX and check the export against the pipeline.

The parity check is not a formality: a float32 step in an imputed constant or a
scaled value can flip a tree split, so a version is registered only if the ONNX
graph reproduces scikit-learn's outputs on held-out rows within the spec's tolerance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import ModelProto
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from shared.data.spec import ParityTolerance, Task
from shared.errors import ExportError
from shared.registry.metadata import FeatureSchema, ParityReport
from shared.serving.runtime import NUMERIC_INPUT, OnnxModel

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
REGRESSION_OUTPUT = "variable"


def onnx_input_names(names: Sequence[str]) -> list[str]:
    """Names skl2onnx keeps as they are: [A-Za-z0-9_], not starting with a digit, unique.

    NUMERIC_INPUT is reserved for the tensor of all numeric features.
    """
    result: list[str] = []
    taken: set[str] = {NUMERIC_INPUT}
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


def export_pipeline(pipeline: Pipeline, features: Sequence[FeatureSchema], task: Task) -> bytes:
    """The ONNX bytes of `pipeline` (fitted on columns in model order: numeric first).

    Inputs: NUMERIC_INPUT [N, k] float for the k numeric features, then one [N, 1] string
    tensor per categorical feature; skl2onnx maps column index i across them in order.
    """
    n_numeric = sum(f.kind == "numeric" for f in features)
    initial_types: list[tuple[str, Any]] = []
    if n_numeric:
        initial_types.append((NUMERIC_INPUT, FloatTensorType([None, n_numeric])))
    initial_types += [
        (f.input_name, StringTensorType([None, 1])) for f in features if f.kind == "categorical"
    ]
    estimator = pipeline.steps[-1][1]
    # zipmap=False: probabilities as one [N, classes] tensor, which serving returns as is.
    options = {id(estimator): {"zipmap": False}} if task == "classification" else None
    try:
        model: ModelProto = convert_sklearn(pipeline, initial_types=initial_types, options=options)
    except Exception as exc:  # skl2onnx raises many unrelated types for unsupported parts
        raise ExportError(f"skl2onnx could not convert the pipeline: {exc}") from exc
    outputs = [o.name for o in model.graph.output]
    expected = (
        [LABEL_OUTPUT, PROBABILITIES_OUTPUT] if task == "classification" else [REGRESSION_OUTPUT]
    )
    if outputs != expected:
        raise ExportError(f"exported graph has outputs {outputs}, expected {expected}")
    return bytes(model.SerializeToString())


def opsets_of(onnx_bytes: bytes) -> dict[str, int]:
    """The operator-set versions an artifact needs, by domain ('' is the ONNX core)."""
    model = ModelProto()
    model.ParseFromString(onnx_bytes)
    return {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}


def check_parity(
    pipeline: Pipeline,
    onnx_model: OnnxModel,
    X: np.ndarray,
    task: Task,
    tolerance: ParityTolerance,
) -> tuple[ParityReport, dict[str, np.ndarray]]:
    """Compare ONNX with scikit-learn on `X`; also return the ONNX outputs for reuse."""
    outputs = onnx_model.run(onnx_model.feed(onnx_model.input_from_matrix(X)))
    label_mismatches = 0
    if task == "classification":
        expected = np.asarray(pipeline.predict_proba(X), dtype=np.float64)
        got = outputs[PROBABILITIES_OUTPUT].astype(np.float64)
        sk_labels = np.asarray(pipeline.predict(X))
        label_mismatches = int((outputs[LABEL_OUTPUT].ravel() != sk_labels).sum())
    else:
        expected = np.asarray(pipeline.predict(X), dtype=np.float64).reshape(-1, 1)
        got = outputs[REGRESSION_OUTPUT].astype(np.float64).reshape(-1, 1)
    diff = np.abs(got - expected)
    allowed = tolerance.atol + tolerance.rtol * np.abs(expected)
    # "not <=" so that a NaN output (which compares False to everything) is a violation.
    violations = int((~(diff <= allowed)).any(axis=1).sum())
    report = ParityReport(
        rows=int(X.shape[0]),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        atol=tolerance.atol,
        rtol=tolerance.rtol,
        violations=violations,
        label_mismatches=label_mismatches,
        # A flipped label with probabilities inside tolerance is a tie broken differently;
        # it is reported, but only probability/value violations fail the check.
        passed=violations == 0,
    )
    return report, outputs
