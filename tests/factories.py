"""Datasets for tests: small, seeded, with numeric and categorical columns and gaps."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np
from sklearn.datasets import make_classification, make_regression


def to_csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    """Rows as CSV bytes with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _with_categorical(
    X: np.ndarray, rng: np.random.Generator
) -> tuple[list[str], list[list[object]]]:
    header = [f"x{i}" for i in range(X.shape[1])] + ["region", "plan"]
    # region depends on x0 so the categorical column carries signal.
    regions = np.where(X[:, 0] > 0, "north", "south")
    plans = [str(p) for p in np.asarray(rng.choice(["basic", "plus", "pro"], size=X.shape[0]))]
    rows: list[list[object]] = []
    for i in range(X.shape[0]):
        values: list[object] = [repr(float(v)) for v in X[i]]
        values += [str(regions[i]), plans[i]]
        if i % 17 == 3:
            values[1] = ""  # a missing number
        if i % 23 == 5:
            values[-1] = ""  # a missing category
        rows.append(values)
    return header, rows


def classification_csv(n_rows: int = 300, *, seed: int = 0, n_classes: int = 2) -> bytes:
    """A classification dataset with string labels, numeric + categorical features."""
    X, y = make_classification(
        n_samples=n_rows,
        n_features=5,
        n_informative=3,
        n_redundant=0,
        n_classes=n_classes,
        random_state=seed,
    )
    header, rows = _with_categorical(X, np.random.default_rng(seed))
    labels = np.array(["no", "yes", "maybe"])[y]
    return to_csv([*header, "target"], [[*r, lab] for r, lab in zip(rows, labels, strict=True)])


def regression_csv(n_rows: int = 300, *, seed: int = 0) -> bytes:
    """A regression dataset with numeric + categorical features."""
    X, y = make_regression(n_samples=n_rows, n_features=5, noise=5.0, random_state=seed)
    header, rows = _with_categorical(X, np.random.default_rng(seed))
    return to_csv([*header, "target"], [[*r, repr(float(v))] for r, v in zip(rows, y, strict=True)])


def numeric_csv(n_rows: int = 200, *, seed: int = 0) -> bytes:
    """An all-numeric classification dataset with integer labels 0/1."""
    X, y = make_classification(n_samples=n_rows, n_features=4, random_state=seed)
    header = ["a", "b", "c", "d", "target"]
    return to_csv(
        header, [[*map(repr, map(float, row)), int(label)] for row, label in zip(X, y, strict=True)]
    )
