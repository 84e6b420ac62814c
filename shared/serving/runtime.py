"""Running a registered ONNX model with onnxruntime, fed by feature name.

This is the serving path: numpy and onnxruntime only, never scikit-learn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from shared.errors import ExportError
from shared.registry.metadata import NUMERIC_INPUT, FeatureSchema


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of `data` (artifact and dataset fingerprints)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelInput:
    """A validated batch: numeric features as one matrix, categorical ones by name."""

    numeric: np.ndarray  # float64 [rows, numeric features], NaN = missing, model order
    categorical: dict[str, np.ndarray]  # feature name -> str array [rows], "" = missing

    @property
    def rows(self) -> int:
        """How many rows the batch has."""
        return int(self.numeric.shape[0])


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
        self.numeric_features = tuple(f for f in self.features if f.kind == "numeric")
        self.categorical_features = tuple(f for f in self.features if f.kind == "categorical")
        self.numeric_names = tuple(f.name for f in self.numeric_features)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def feed(self, batch: ModelInput) -> dict[str, np.ndarray]:
        """The ONNX inputs of a batch: one float32 matrix, one [N, 1] tensor per category."""
        feed: dict[str, np.ndarray] = {}
        if self.numeric_features:
            feed[NUMERIC_INPUT] = batch.numeric.astype(np.float32)
        for feature in self.categorical_features:
            feed[feature.input_name] = batch.categorical[feature.name].reshape(-1, 1)
        return feed

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the graph, by output name."""
        outputs = self.session.run(self.output_names, dict(feed))
        return {
            name: np.asarray(value) for name, value in zip(self.output_names, outputs, strict=True)
        }
