"""Build, fit and score the scikit-learn pipeline a spec describes.

Preparation (imputation, scaling, one-hot) lives inside the pipeline, so it is part
of the exported ONNX graph and serving takes raw feature values by name. The pipeline
takes PreparedData.X: numeric features, then categorical features as codes (the
export puts the step from a category's name to its code in front of the graph).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shared.data.dataset import PreparedData
from shared.data.spec import EstimatorName, ModelSpec, Task
from shared.errors import SpecError

_ESTIMATORS: dict[tuple[EstimatorName, Task], type[BaseEstimator]] = {
    ("linear", "classification"): LogisticRegression,
    ("linear", "regression"): Ridge,
    ("random_forest", "classification"): RandomForestClassifier,
    ("random_forest", "regression"): RandomForestRegressor,
    ("gradient_boosting", "classification"): HistGradientBoostingClassifier,
    ("gradient_boosting", "regression"): HistGradientBoostingRegressor,
}
# Defaults that differ from scikit-learn's, each for a reason.
_DEFAULT_PARAMS: dict[EstimatorName, dict[str, Any]] = {
    "linear": {},
    "random_forest": {"n_estimators": 100, "n_jobs": 1},  # Lambda bills cores it may not have
    "gradient_boosting": {},
}


def build_estimator(spec: ModelSpec, task: Task) -> BaseEstimator:
    """The estimator the spec names, with its parameters checked by scikit-learn itself."""
    cls = _ESTIMATORS[(spec.estimator, task)]
    params: dict[str, Any] = dict(_DEFAULT_PARAMS[spec.estimator])
    if cls is LogisticRegression:
        params["max_iter"] = 1000  # the default 100 often stops short on unscaled one-hot data
    known = set(cls().get_params())
    unknown = sorted(set(spec.params) - known)
    if unknown:
        raise SpecError(
            f"params: {unknown} not accepted by {cls.__name__}; accepted: {sorted(known)}"
        )
    if "random_state" in known:
        params["random_state"] = spec.random_seed
    params.update(spec.params)
    estimator = cls(**params)
    try:
        # scikit-learn's own constraint check (types, ranges), run now rather than mid-fit.
        estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise SpecError(f"params: {exc}") from None
    return estimator


def check_params(spec: ModelSpec) -> None:
    """Raise SpecError unless scikit-learn accepts the spec's estimator parameters.

    For the spec's task; without one, for either task, since the data decides which (a
    linear model's "C" is LogisticRegression's, its "alpha" Ridge's). Checked before a spec
    is uploaded, so that a spec which can only fail never reaches the store.
    """
    tasks: list[Task] = [spec.task] if spec.task else ["classification", "regression"]
    refusals: dict[str, str] = {}
    for task in tasks:
        try:
            build_estimator(spec, task)
        except SpecError as exc:
            refusals.setdefault(str(exc), task)
        else:
            return
    if len(refusals) == 1:
        raise SpecError(next(iter(refusals)))
    reasons = (
        f"for {task}, {message.removeprefix('params: ')}" for message, task in refusals.items()
    )
    raise SpecError("params: " + "; ".join(reasons))


def _median(values: np.ndarray) -> float:
    """The median of a column's present values, NaN if it has none.

    SimpleImputer's own "median", a column at a time: the built-in strategy sorts a masked
    copy of all numeric columns at once, which took 5.5 times their size in memory.
    """
    return float(np.median(values)) if values.size else math.nan


def build_pipeline(data: PreparedData, estimator: BaseEstimator, *, scale: bool) -> Pipeline:
    """Preparation by column kind, then the estimator, on PreparedData.X's columns."""
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy=_median))]
    if scale:
        # In place on the imputer's output (a copy already): one numeric block less at once.
        numeric_steps.append(("scale", StandardScaler(copy=False)))
    k, width = data.n_numeric, len(data.features)
    transformers: list[tuple[str, Any, slice]] = []
    if k:
        # Slices, not lists of positions: a slice of X's columns is a view, not a copy.
        transformers.append(("numeric", Pipeline(numeric_steps), slice(0, k)))
    if width > k:
        # A missing category is a code like any other (its own one-hot column); a code not
        # seen in the training rows, like a category unknown to the served model, is all
        # zeros. float32: the one-hot block is half the size, and 0/1 are exact in it.
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)
        transformers.append(("categorical", onehot, slice(k, width)))
    prepare = ColumnTransformer(transformers, sparse_threshold=0.0)
    return Pipeline([("prepare", prepare), ("model", estimator)])


@dataclass(frozen=True)
class Split:
    """Row indices of the training and held-out parts."""

    train: np.ndarray
    test: np.ndarray


def split_rows(data: PreparedData, spec: ModelSpec) -> Split:
    """A deterministic split, stratified by class for classification."""
    indices = np.arange(data.n_rows)
    stratify = data.y if data.task == "classification" else None
    test_size = spec.test_fraction
    if stratify is not None:
        # Every class needs a row on each side.
        n_classes = len(np.unique(data.y))
        test_size = max(test_size, n_classes / data.n_rows)
    train, test = train_test_split(
        indices, test_size=test_size, random_state=spec.random_seed, stratify=stratify
    )
    return Split(train=np.sort(train), test=np.sort(test))


def rare_category_codes(train: PreparedData, limit: int | None) -> list[np.ndarray] | None:
    """Per categorical feature, the code each category takes in the model's input, when
    `limit` (the spec's max_categories) groups the rare ones; None when it groups none.

    As scikit-learn's OneHotEncoder(max_categories=...), which skl2onnx cannot export: the
    `limit - 1` categories most frequent in the training rows keep their codes (ties: the
    first in sorted order), the other categories seen there share one code past them all.
    A category the training rows never had keeps its code, which the one-hot step has no
    column for, as for a category unknown to the served model.
    """
    if limit is None:
        return None
    k, codes = train.n_numeric, []
    for i, values in enumerate(train.categories):
        counts = np.bincount(train.X[:, k + i].astype(np.intp), minlength=len(values))
        remap = np.arange(len(values))
        seen = np.flatnonzero(counts)
        if seen.size > limit:
            ranked = seen[np.lexsort((seen, -counts[seen]))]
            remap[ranked[limit - 1 :]] = len(values)  # one code past every category's
        codes.append(remap)
    if all(bool((remap == np.arange(len(remap))).all()) for remap in codes):
        return None
    return codes


def with_codes(data: PreparedData, codes: list[np.ndarray]) -> np.ndarray:
    """data.X with its categorical columns recoded by `codes` (rare_category_codes): a copy."""
    X = data.X.copy()
    k = data.n_numeric
    for i, remap in enumerate(codes):
        X[:, k + i] = remap[X[:, k + i].astype(np.intp)]
    return X


def fit_pipeline(train: PreparedData, spec: ModelSpec) -> Pipeline:
    """Fit the spec's pipeline on `train` (the training rows)."""
    estimator = build_estimator(spec, train.task)
    # Trees are scale-invariant; scaling before them only adds float32 rounding that
    # can move values across split thresholds in the ONNX graph.
    pipeline = build_pipeline(train, estimator, scale=spec.estimator == "linear")
    try:
        pipeline.fit(train.X, train.y)
    except ValueError as exc:
        # Parameter combinations scikit-learn only refuses at fit time (e.g. penalty="l1"
        # with the lbfgs solver): the spec's fault, so a failure record, not a retry.
        raise SpecError(f"params: {type(estimator).__name__} could not fit: {exc}") from None
    return pipeline


def classification_metrics(
    y_true: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray
) -> dict[str, float]:
    """Accuracy, F1 (positive class when binary, macro otherwise), ROC AUC and log loss."""
    # scikit-learn's metrics sort and compare labels in Python when they are strings; as
    # positions in `classes` (sorted, as the estimator keeps them) the same work is ~6x faster.
    true_idx = np.searchsorted(classes, y_true)
    label_idx = np.searchsorted(classes, labels)
    # ONNX computes in float32: a forest's averaged votes can sum to 1.0000001, which
    # log_loss refuses. Work in float64, inside [0, 1], rows summing to 1.
    probabilities = np.clip(probabilities.astype(np.float64), 0.0, 1.0)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    positions = np.arange(len(classes))
    binary = len(classes) == 2
    metrics = {
        "accuracy": float(accuracy_score(true_idx, label_idx)),
        "f1": float(
            f1_score(true_idx, label_idx, pos_label=1, average="binary")
            if binary
            else f1_score(true_idx, label_idx, average="macro")
        ),
        "log_loss": float(log_loss(true_idx, probabilities, labels=positions)),
    }
    if binary:
        metrics["roc_auc"] = float(roc_auc_score(true_idx == 1, probabilities[:, 1]))
    else:
        metrics["roc_auc"] = float(
            roc_auc_score(true_idx, probabilities, multi_class="ovr", labels=positions)
        )
    return metrics


def per_class_figures(
    classes: np.ndarray, y_train: np.ndarray, y_test: np.ndarray, predicted: np.ndarray
) -> dict[str, dict[str, float]]:
    """Each class's share of the training rows and the served model's figures on it."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y_test, predicted, labels=classes, zero_division=0
    )
    return {
        str(c.item() if isinstance(c, np.generic) else c): {
            "share": round(float(np.mean(y_train == c)), 6),
            "support": float(support[i]),
            "precision": round(float(precision[i]), 6),
            "recall": round(float(recall[i]), 6),
            "f1": round(float(f1[i]), 6),
        }
        for i, c in enumerate(classes)
    }


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R2."""
    return {
        "rmse": math.sqrt(float(mean_squared_error(y_true, predicted))),
        "mae": float(mean_absolute_error(y_true, predicted)),
        "r2": float(r2_score(y_true, predicted)),
    }


def trivial_metrics(
    task: str, y_train: np.ndarray, y_test: np.ndarray, classes: np.ndarray | None
) -> tuple[dict[str, float], str]:
    """The metrics of a predictor that ignores the features, on the held-out rows.

    Classification: the training rows' majority class as the label and their class
    shares as the probabilities; regression: the training rows' mean.
    """
    if task == "classification" and classes is not None:
        counts = np.array([(y_train == c).sum() for c in classes], dtype=np.float64)
        priors = counts / counts.sum()
        labels = np.full(len(y_test), classes[int(np.argmax(counts))], dtype=classes.dtype)
        probabilities = np.tile(priors, (len(y_test), 1))
        with warnings.catch_warnings():
            # F1 of a predictor that never predicts the positive class is 0, with a warning.
            warnings.simplefilter("ignore")
            metrics = classification_metrics(y_test, labels, probabilities, classes)
        return metrics, "majority class and class priors"
    mean = float(np.mean(y_train.astype(np.float64)))
    return regression_metrics(y_test, np.full(len(y_test), mean)), "training mean"


def effective_params(pipeline: Pipeline) -> dict[str, Any]:
    """The estimator's parameters as JSON-safe values, for the version's metadata."""
    params = pipeline.steps[-1][1].get_params()
    safe: dict[str, Any] = {}
    for name, value in sorted(params.items()):
        if value is None or isinstance(value, bool | int | float | str):
            safe[name] = value
        else:
            safe[name] = repr(value)
    return safe
