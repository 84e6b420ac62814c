"""One run's scratch space: a local store and the models the figures share, trained once."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Sizes
from benchmarks.fixtures import (
    BREAST_CANCER_SPEC,
    NUMERIC_FEATURES,
    NUMERIC_SPEC,
    Trained,
    breast_cancer_csv,
    numeric_csv,
    numeric_data,
    train_into,
)
from shared.data.dataset import PreparedData, prepare
from shared.data.spec import parse_spec
from shared.registry.metadata import NUMERIC_INPUT, FeatureSchema, ModelMetadata, decode_metadata
from shared.registry.records import version_prefix
from shared.store.local import LocalStore


@dataclass(frozen=True)
class BatchData:
    """An all-numeric model and a batch of rows it has not seen."""

    trained: Trained
    X: np.ndarray  # float64 [rows, features], columns in NUMERIC_FEATURES order
    features: tuple[str, ...]


class Workspace:
    """Scratch files under `root`, the sizes to run at, and lazily trained models."""

    def __init__(self, root: Path, sizes: Sizes, *, profile: bool = False) -> None:
        self.root = root
        self.sizes = sizes
        self.profile = profile
        self.memo: dict[str, Any] = {}  # measurements that several figures report

    def path(self, name: str) -> Path:
        """A fresh folder under the workspace."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=False)
        return folder

    @functools.cached_property
    def store(self) -> LocalStore:
        """The local store the in-process prediction figures serve from."""
        return LocalStore(self.root / "store")

    @functools.cached_property
    def breast_cancer(self) -> Trained:
        """The demo's model: logistic regression on the breast-cancer data."""
        return train_into(self.store, "breast-cancer", breast_cancer_csv(), BREAST_CANCER_SPEC)

    @functools.cached_property
    def breast_cancer_rf(self) -> Trained:
        """A random forest on the same data (100 trees; fewer with --quick)."""
        spec = {
            **BREAST_CANCER_SPEC,
            "estimator": "random_forest",
            "params": {"n_estimators": self.sizes.rf_trees},
        }
        return train_into(self.store, "breast-cancer-rf", breast_cancer_csv(), spec)

    @functools.cached_property
    def batch(self) -> BatchData:
        """An all-numeric logistic model, and `batch_rows` further rows of the same source."""
        n_train = self.sizes.batch_train_rows
        X, y = numeric_data(n_train + self.sizes.batch_rows)
        trained = train_into(
            self.store, "numeric-batch", numeric_csv(X[:n_train], y[:n_train]), NUMERIC_SPEC
        )
        return BatchData(trained=trained, X=X[n_train:], features=NUMERIC_FEATURES)

    def metadata(self, trained: Trained) -> ModelMetadata:
        """The registered version's metadata.json."""
        prefix = version_prefix(trained.model, trained.version)
        return decode_metadata(self.store.get(prefix + "metadata.json").body)


def prepared(trained: Trained) -> PreparedData:
    """The training data as training prepares it (model order: numeric, then categorical)."""
    spec = parse_spec(json.dumps(trained.spec).encode())
    return prepare(trained.data, spec, source=trained.data_key)


def row_cells(data: PreparedData, row: int) -> np.ndarray:
    """Row `row` of `data` as a 1-row object matrix of floats and strings (model order)."""
    return data.rows(np.arange(row, row + 1)).cells()


def record_of(data: PreparedData, row: int) -> dict[str, Any]:
    """Row `row` of `data` as a records-protocol record (None for a missing value)."""
    record: dict[str, Any] = {}
    cells = row_cells(data, row)[0]
    for j, feature in enumerate(data.features):
        value = cells[j]
        if feature.kind == "numeric":
            record[feature.name] = None if np.isnan(value) else float(value)
        else:
            record[feature.name] = value or None
    return record


def ort_feed(
    input_names: list[str], features: list[FeatureSchema], X: np.ndarray
) -> dict[str, np.ndarray]:
    """The ONNX feed for rows `X` (model order), one entry per session input name."""
    numeric = [j for j, f in enumerate(features) if f.kind == "numeric"]
    by_input = {f.input_name: j for j, f in enumerate(features) if f.kind == "categorical"}
    feed: dict[str, np.ndarray] = {}
    for name in input_names:
        if name in by_input:
            j = by_input[name]
            feed[name] = X[:, j : j + 1].astype(str).astype(object)
        elif name == NUMERIC_INPUT:  # the [N, k] tensor of every numeric feature
            feed[name] = X[:, numeric].astype(np.float32)
        else:
            raise ValueError(f"the session has an input {name!r} no feature maps to")
    return feed
