"""The friendly JSON protocol: records by feature name in, predictions out.

    POST /models/<model>[/versions/<ref>]/predict
    {"id": "optional", "records": [{"age": 52, "region": "north"}, ...]}

A null value is a missing value (imputed by the model, as in training).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.errors import BadRequest, quoted
from shared.serving.cache import LoadedModel, Prediction
from shared.serving.inputs import (
    check_numbers,
    check_rows,
    feature_mismatch,
    float_matrix,
    quote_names,
    string_column,
)
from shared.serving.runtime import ModelInput


def parse_records(document: Any, loaded: LoadedModel) -> ModelInput:
    """A batch from {"records": [...]}, every field checked."""
    if not isinstance(document, dict):
        raise BadRequest('request body must be a JSON object like {"records": [{...}]}')
    unknown_fields = sorted(set(document) - {"records", "id"})
    if unknown_fields:
        raise BadRequest(
            f"unknown request fields {quote_names(unknown_fields)}; expected 'records' and 'id'"
        )
    records = document.get("records")
    if not isinstance(records, list):
        raise BadRequest("'records' must be a list of objects, one per row")
    check_rows(len(records))
    expected = {f.name for f in loaded.features}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadRequest(
                f"records[{i}] must be an object of feature values, got {quoted(record)}"
            )
        if record.keys() != expected:
            error = feature_mismatch(
                "features",
                missing=sorted(expected - record.keys()),
                unknown=sorted(record.keys() - expected),
                missing_hint=" (send null for a missing value)",
                model=loaded.model,
                version=loaded.version,
                takes=sorted(expected),
            )
            raise BadRequest(f"records[{i}]: {error}")
    numeric_names = [f.name for f in loaded.onnx.numeric_features]
    rows = [[record[name] for name in numeric_names] for record in records]
    k = len(numeric_names)

    def where_numeric(i: int) -> str:
        return f"records[{i // k}].{numeric_names[i % k]}"

    flat = [value for row in rows for value in row]
    check_numbers(flat, where_numeric, allow_null=True)
    numeric = float_matrix(rows, where_numeric).reshape(len(records), k)
    categorical: dict[str, np.ndarray] = {}
    for feature in loaded.onnx.categorical_features:
        name = feature.name

        def where(i: int, name: str = name) -> str:
            return f"records[{i}].{name}"

        values = [record[name] for record in records]
        categorical[name] = string_column(values, where, allow_null=True)
    return ModelInput(numeric=numeric, categorical=categorical)


def records_response(
    loaded: LoadedModel, prediction: Prediction, request_id: str
) -> dict[str, Any]:
    """Predictions (and class probabilities by class) with the version that answered."""
    body: dict[str, Any] = {
        "model": loaded.model,
        "version": loaded.version,
        "id": request_id,
        "predictions": prediction.values.tolist(),
    }
    if prediction.probabilities is not None and prediction.classes is not None:
        labels = [str(c) for c in prediction.classes]
        body["probabilities"] = [
            dict(zip(labels, row, strict=True)) for row in prediction.probabilities.tolist()
        ]
    return body
