"""Seeded data and trained models for the benchmarks, made with the project's own code."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.store.base import ObjectStore

SEED = 20_260_101
BREAST_CANCER_SPEC: dict[str, Any] = {"target": "diagnosis", "estimator": "linear"}

# Named columns for the generated data: numeric ones, then categorical ones.
MIXED_NUMERIC = (
    "tenure_months",
    "monthly_spend",
    "support_calls",
    "sessions_per_week",
    "discount_pct",
    "age",
    "days_since_login",
    "satisfaction",
)
MIXED_CATEGORICAL = ("region", "plan", "channel")
MIXED_SPEC: dict[str, Any] = {"target": "churned"}
# The training-memory figure's data: many rows of 17 numbers and 4 categories.
WIDE_NUMERIC = tuple(f"reading_{i:02d}" for i in range(17))
WIDE_CATEGORICAL = ("region", "plan", "channel", "segment")
WIDE_SPEC: dict[str, Any] = {"target": "label", "estimator": "linear"}
NUMERIC_FEATURES = tuple(f"signal_{i:02d}" for i in range(10))
NUMERIC_SPEC: dict[str, Any] = {"target": "label"}


def breast_cancer_csv() -> bytes:
    """scikit-learn's breast-cancer data as the demo writes it (30 numeric features)."""
    from functions.cli import breast_cancer_csv as demo_csv

    return demo_csv()


def _csv(header: list[str], columns: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns, strict=True))
    return out.getvalue().encode()


def mixed_csv(n_rows: int, *, seed: int = SEED) -> bytes:
    """Churn-like data: 8 numeric and 3 categorical columns, ~2% missing cells, yes/no target.

    make_classification gives the numeric signal; region follows the first informative
    column and channel the target (noisily), so the categorical columns carry signal too.
    """
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_rows,
        n_features=len(MIXED_NUMERIC),
        n_informative=5,
        n_redundant=1,
        random_state=seed,
    )
    rng = np.random.default_rng(seed)
    columns: list[list[str]] = []
    for j in range(X.shape[1]):
        text = np.char.mod("%.6g", X[:, j]).astype(object)
        text[rng.random(n_rows) < 0.02] = ""  # a missing number
        columns.append(list(text))
    regions = np.array(["north", "south", "east", "west", "central"])[
        np.digitize(X[:, 0], [-1.0, -0.3, 0.3, 1.0])
    ]
    plans = rng.choice(["basic", "plus", "pro"], size=n_rows)
    channels = np.array([f"channel-{i}" for i in range(12)])[
        (y * 6 + rng.integers(0, 6, n_rows) + (rng.random(n_rows) < 0.3) * 3) % 12
    ]
    for values in (regions, plans, channels):
        text = values.astype(object)
        text[rng.random(n_rows) < 0.02] = ""  # a missing category
        columns.append(list(text))
    columns.append(list(np.array(["no", "yes"], dtype=object)[y]))
    return _csv([*MIXED_NUMERIC, *MIXED_CATEGORICAL, MIXED_SPEC["target"]], columns)


def wide_csv(n_rows: int, *, seed: int = SEED) -> bytes:
    """17 numeric and 4 categorical columns and a 0/1 label, about 180 bytes a row.

    Written column-wise with NumPy, since a row-by-row writer would take longer than the
    training run it feeds at 100 MB. About 1% of the numbers are missing (empty fields).
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, len(WIDE_NUMERIC))) * rng.uniform(1, 100, len(WIDE_NUMERIC))
    columns: list[np.ndarray] = []
    for j in range(X.shape[1]):
        text = np.char.mod("%.6g", X[:, j]).astype(object)
        text[rng.random(n_rows) < 0.01] = ""
        columns.append(text)
    levels = (4, 3, 12, 2)
    for name, count in zip(WIDE_CATEGORICAL, levels, strict=True):
        names = np.array([f"{name}-{i}" for i in range(count)], dtype=object)
        columns.append(names[rng.integers(0, count, n_rows)])
    noisy = X[:, 0] / np.abs(X[:, 0]).mean() + X[:, 1] / np.abs(X[:, 1]).mean()
    label = (noisy + rng.normal(size=n_rows) > 0).astype(np.int64)
    columns.append(np.array(["0", "1"], dtype=object)[label])
    header = ",".join([*WIDE_NUMERIC, *WIDE_CATEGORICAL, WIDE_SPEC["target"]])
    lines = map(",".join, zip(*(column.tolist() for column in columns), strict=True))
    return (header + "\n" + "\n".join(lines) + "\n").encode()


def numeric_data(n_rows: int, *, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """All-numeric classification data (10 features, labels 0/1), values to 6 digits."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_rows,
        n_features=len(NUMERIC_FEATURES),
        n_informative=6,
        n_redundant=2,
        random_state=seed,
    )
    X = np.asarray([[float(f"{v:.6g}") for v in row] for row in X], dtype=np.float64)
    return X, np.asarray(y)


def numeric_csv(X: np.ndarray, y: np.ndarray) -> bytes:
    """`X`, `y` from numeric_data as a CSV."""
    columns = [[repr(float(v)) for v in X[:, j]] for j in range(X.shape[1])]
    columns.append([str(int(v)) for v in y])
    return _csv([*NUMERIC_FEATURES, NUMERIC_SPEC["target"]], columns)


@dataclass(frozen=True)
class Trained:
    """A model trained and registered in a store."""

    model: str
    version: int
    spec: dict[str, Any]
    data: bytes
    data_key: str
    onnx: bytes


def train_into(store: ObjectStore, model: str, data: bytes, spec: dict[str, Any]) -> Trained:
    """Upload `data` and `spec` and train `model` with the project's training function."""
    from shared.data.spec import spec_key
    from shared.registry.records import version_prefix
    from shared.training.job import train_from_dataset

    store.put(spec_key(model), json.dumps(spec).encode(), content_type="application/json")
    key = f"datasets/{model}/data.csv"
    store.put(key, data, content_type="text/csv")
    outcome = train_from_dataset(store, key, trigger="benchmark")
    if outcome.status != "registered" or outcome.version is None:
        raise RuntimeError(f"training {model} did not register: {outcome.reason}")
    onnx = store.get(version_prefix(model, outcome.version) + "model.onnx").body
    return Trained(
        model=model, version=outcome.version, spec=spec, data=data, data_key=key, onnx=onnx
    )
