"""Build, fit and score the scikit-learn pipeline a spec describes.

Preparation (imputation, scaling, one-hot) lives inside the pipeline, so it is part
of the exported ONNX graph and serving takes raw feature values by name.
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
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shared.data.dataset import MISSING_CATEGORY, PreparedData
from shared.data.spec import EstimatorName, ModelSpec, Task
from shared.errors import SpecError

MISSING_FILL = "(missing)"

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


def build_pipeline(data: PreparedData, estimator: BaseEstimator, *, scale: bool) -> Pipeline:
    """Preparation by column kind, then the estimator; columns are addressed by position."""
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    categorical_steps: list[tuple[str, Any]] = [
        # skl2onnx's string imputer needs an explicit string marker, not NaN.
        (
            "impute",
            SimpleImputer(
                strategy="constant", missing_values=MISSING_CATEGORY, fill_value=MISSING_FILL
            ),
        ),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ]
    transformers: list[tuple[str, Pipeline, list[int]]] = []
    if data.numeric_indices:
        transformers.append(("numeric", Pipeline(numeric_steps), data.numeric_indices))
    if data.categorical_indices:
        transformers.append(("categorical", Pipeline(categorical_steps), data.categorical_indices))
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


def fit_pipeline(data: PreparedData, spec: ModelSpec, split: Split) -> Pipeline:
    """Fit the spec's pipeline on the training rows."""
    estimator = build_estimator(spec, data.task)
    # Trees are scale-invariant; scaling before them only adds float32 rounding that
    # can move values across split thresholds in the ONNX graph.
    pipeline = build_pipeline(data, estimator, scale=spec.estimator == "linear")
    try:
        pipeline.fit(data.X[split.train], data.y[split.train])
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
