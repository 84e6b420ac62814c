"""Running a registered ONNX model with onnxruntime, fed by feature name.

This is the serving path: numpy and onnxruntime only, never scikit-learn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from shared.errors import ExportError
from shared.metadata import FeatureSchema


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of `data` (artifact and dataset fingerprints)."""
    return hashlib.sha256(data).hexdigest()


class OnnxModel:
    """An onnxruntime session over one artifact, with inputs named by feature."""

    def __init__(self, onnx_bytes: bytes, features: Sequence[FeatureSchema]) -> None:
        options = ort.SessionOptions()
        # Lambda and laptops alike: no thread spinning between small requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises bare RuntimeErrors of its own types
            raise ExportError(f"onnxruntime cannot load the model: {exc}") from exc
        self.features = tuple(features)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def feed_from_columns(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """ONNX inputs from 1-D arrays keyed by feature name (numeric float, categorical str)."""
        feed: dict[str, np.ndarray] = {}
        for feature in self.features:
            column = np.asarray(columns[feature.name])
            if feature.kind == "numeric":
                feed[feature.input_name] = column.astype(np.float32).reshape(-1, 1)
            else:
                feed[feature.input_name] = column.astype(str).astype(object).reshape(-1, 1)
        return feed

    def feed_from_matrix(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """ONNX inputs from a 2-D object matrix whose columns follow `features`."""
        return self.feed_from_columns(
            {feature.name: matrix[:, i] for i, feature in enumerate(self.features)}
        )

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the graph, by output name."""
        outputs = self.session.run(self.output_names, dict(feed))
        return {
            name: np.asarray(value) for name, value in zip(self.output_names, outputs, strict=True)
        }
