"""One training run: from a dataset object to a registered, checked ONNX version.

    read spec + data -> validate/prepare -> split -> fit -> export -> parity check
    -> held-out metrics (from the ONNX outputs: what will be served) -> baseline profile
    -> claim a version number -> write artifacts -> mark ready (first: production)

Bad data or spec never registers anything: it leaves a `training_failed` audit record.
The same dataset object (key + ETag + version id) under the same spec trains once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import logging
import math
import os
import platform
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, get_args

import msgspec
import numpy as np

import shared
from shared.data.dataset import MISSING_CATEGORY, PreparedData, prepare
from shared.data.profile import BaselineProfile, profile_predictions
from shared.data.spec import (
    EstimatorName,
    ModelSpec,
    load_spec_for_dataset,
    spec_to_dict,
    validate_model_name,
)
from shared.errors import (
    DataError,
    ExportError,
    MlopsError,
    ObjectVersionNotFound,
    PreconditionFailed,
    quoted,
)
from shared.registry.audit import record_event, utc_now
from shared.registry.fitted_rows import (
    FITTED_ROWS_FILE,
    Fingerprints,
    encode_fitted_rows,
    fingerprints,
    label_hashes,
    text_hash,
)
from shared.registry.holdout import HOLDOUT_FILE, encode_holdout
from shared.registry.metadata import (
    NUMERIC_INPUT,
    DataLineage,
    FeatureSchema,
    Lineage,
    ModelMetadata,
    OnnxArtifact,
    encode_metadata,
    onnx_input_names,
)
from shared.registry.records import abandoned, source_of, version_prefix
from shared.registry.registry import ModelRegistry
from shared.store.base import ObjectStore, StoredObject
from shared.training.gate import judge
from shared.training.model_card import render_model_card
from shared.training.pipeline import (
    classification_metrics,
    effective_params,
    fit_pipeline,
    per_class_figures,
    rare_category_codes,
    regression_metrics,
    split_rows,
    trivial_metrics,
    with_codes,
)

logger = logging.getLogger(__name__)

DATASETS_PREFIX = "datasets/"
_PACKAGES = ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "msgspec", "boto3")


@dataclass(frozen=True)
class TrainingOutcome:
    """What a run did: registered a version, recognised a duplicate, or failed (why)."""

    model: str
    data_key: str
    run_id: str
    status: Literal["registered", "rejected", "duplicate", "failed"]
    version: int | None = None
    alias: str | None = None
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def model_of_data_key(key: str) -> str:
    """The model an upload trains: ``datasets/<model>/<file>.csv`` -> ``<model>``."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != DATASETS_PREFIX.rstrip("/") or not key.endswith(".csv"):
        raise DataError(f"{key!r} is not a dataset key: expected datasets/<model>/<name>.csv")
    return validate_model_name(parts[1])


def source_fingerprint(key: str, sha256: str, spec_etag: str | None) -> str:
    """Identity of (dataset key, its bytes' SHA-256, spec): a redelivered event maps to the
    same value.

    The bytes' hash rather than the ETag or version id: on a versioned bucket the same file
    uploaded again gets a new version id, and it still trains once.
    """
    ident = f"{key}\n{sha256}\n{spec_etag or 'defaults'}"
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


class _Upload:
    """The dataset object a run trains: what its lineage records, and its bytes until parsed.

    The bytes are handed over once (take_body), so that nothing holds the CSV while the
    model is fitted: it is as large as the prepared data.
    """

    def __init__(self, stored: StoredObject) -> None:
        self.key = stored.key
        self.etag = stored.etag
        self.version_id = stored.version_id
        self.sha256 = hashlib.sha256(stored.body).hexdigest()
        self.size_bytes = len(stored.body)
        self._body: bytes | None = stored.body

    def take_body(self) -> bytes:
        """The bytes, which this object then no longer holds."""
        body, self._body = self._body, None
        if body is None:
            raise RuntimeError(f"{self.key}: the dataset's bytes were taken already")
        return body


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.timings[name] = round(self.timings.get(name, 0.0) + elapsed, 6)

    def move(self, source: str, target: str, seconds: float) -> None:
        """Count `seconds` of step `source` as step `target`'s."""
        self.timings[source] = round(self.timings[source] - seconds, 6)
        self.timings[target] = round(self.timings.get(target, 0.0) + seconds, 6)


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _code_version() -> str:
    # Deployments stamp MLOPS_CODE_VERSION (e.g. a git commit); else the package version.
    return os.environ.get("MLOPS_CODE_VERSION") or f"serverless-mlops {shared.__version__}"


def _parity_advice(spec: ModelSpec, max_abs_diff: float) -> str:
    """What to try when the export still disagrees: the spec's tolerance, or other estimators."""
    others = [e for e in get_args(EstimatorName) if e != spec.estimator]
    instead = f'try "estimator": "{others[0]}" or "{others[1]}"'
    if not math.isfinite(max_abs_diff):  # a NaN output: no tolerance admits it
        return instead[0].upper() + instead[1:]
    allowance = float(f"{max_abs_diff * 2:.1g}")  # one significant digit, above the difference
    return (
        f"If a difference of that size does not matter for your use, allow it in the spec: "
        f'"parity": {{"atol": {allowance:g}}}; otherwise {instead}'
    )


# A categorical feature with distinct values on this share of its training rows (or more) is
# warned of: each value is an input the model sees a few times (the data check refuses 90%).
_MANY_CATEGORIES = 0.5
_MIN_ROWS_FOR_CATEGORIES = 50


def many_categories_warnings(schema: list[FeatureSchema], rows: int, spec: ModelSpec) -> list[str]:
    """A warning per inferred categorical feature with nearly a category per row.

    Not for a feature the spec lists under "categorical" (its author decided), nor when
    max_categories groups the values already.
    """
    if rows < _MIN_ROWS_FOR_CATEGORIES or spec.max_categories is not None:
        return []
    found = []
    for feature in schema:
        n = len(feature.categories)
        if feature.kind != "categorical" or feature.name in spec.categorical:
            continue
        if n >= _MANY_CATEGORIES * rows:
            found.append(
                f"column {feature.name!r} is categorical with {n} different values in {rows} "
                f"training rows ({n / rows:.0%}): the model learns little from each, and every "
                "value it never saw counts as none; if it is an id or free text, list it under "
                f'"drop" in the spec; else group the rare values with "max_categories" '
                f"(e.g. {max(2, min(20, n // 10))})"
            )
    return found


def _feature_schema(train: PreparedData) -> list[FeatureSchema]:
    """Each feature's input and, if categorical, the categories of the training rows."""
    k = train.n_numeric
    categorical = [f.name for f in train.features[k:]]
    input_names = onnx_input_names(categorical)
    schema = [
        FeatureSchema(name=f.name, kind=f.kind, input_name=NUMERIC_INPUT)
        for f in train.features[:k]
    ]
    for i, (feature, values) in enumerate(zip(train.features[k:], train.categories, strict=True)):
        seen = np.unique(train.X[:, k + i]).astype(np.intp).tolist()
        schema.append(
            FeatureSchema(
                name=feature.name,
                kind=feature.kind,
                input_name=input_names[i],
                categories=[values[code] for code in seen if values[code] != MISSING_CATEGORY],
            )
        )
    return schema


@dataclass(frozen=True)
class _Candidate:
    """A checked model, ready to be registered."""

    onnx_bytes: bytes
    holdout_bytes: bytes
    fitted_rows_bytes: bytes
    metadata_without_version: ModelMetadata


def _fitted_fingerprints(train: PreparedData) -> Fingerprints:
    """The rows the model is fitted to, as the fingerprints a later comparison checks."""
    k = train.n_numeric
    categorical = [
        (np.array([text_hash(v) for v in values], dtype=np.uint64), train.X[:, k + i])
        for i, values in enumerate(train.categories)
    ]
    labels = label_hashes(train.y, train.task == "regression")
    return fingerprints(train.X[:, :k], categorical, labels)


def _build_candidate(
    model: str,
    upload: _Upload,
    spec: ModelSpec,
    spec_source: str,
    spec_etag: str | None,
    run_id: str,
    trigger: str,
    watch: _Stopwatch,
) -> _Candidate:
    with watch.step("prepare"):
        data = prepare(upload.take_body(), spec, source=upload.key)
        spec.check_task(data.task)
        split = split_rows(data, spec)
        train, test = data.rows(split.train), data.rows(split.test)
        task, n_rows, categories = data.task, data.n_rows, data.categories
        # Features: every row of the dataset, profiled as it was prepared (training and
        # held-out rows come from one distribution, and more rows make a less noisy
        # reference). Predictions, below: the held-out rows only.
        feature_profiles = data.profiles
        profile_seconds = data.profile_seconds
        del data  # from here on, only its two parts are held
        schema = _feature_schema(train)
        warnings = many_categories_warnings(schema, train.n_rows, spec)
    # Profiling the features is timed as profiling (as before it moved into preparation).
    watch.move("prepare", "profile", profile_seconds)
    with watch.step("fit"):
        # Taken once the whole dataset is freed, before rare categories are regrouped: the
        # fingerprints add their output (8 bytes a row) to the peak, not a copy of the data.
        fitted_rows = encode_fitted_rows(_fitted_fingerprints(train))
        codes = rare_category_codes(train, spec.max_categories)
        if codes is not None:
            train = dataclasses.replace(train, X=with_codes(train, codes))
        pipeline = fit_pipeline(train, spec)
    y_train = train.y
    del train
    # Imported only now, with the training rows and the fit's matrices freed: skl2onnx,
    # onnx and onnxruntime take about 45 MiB, which would otherwise add to the fit's peak.
    from shared.serving.runtime import ModelInput, OnnxModel, sha256_hex
    from shared.training.export import (
        LABEL_OUTPUT,
        PROBABILITIES_OUTPUT,
        REGRESSION_OUTPUT,
        check_parity,
        export_pipeline,
        opsets_of,
    )

    with watch.step("export"):
        onnx_bytes = export_pipeline(pipeline, schema, task, categories, codes)
        onnx_model = OnnxModel(onnx_bytes, schema)
    with watch.step("parity"):
        y_test = test.y
        test_input = ModelInput(numeric=test.numeric(), categorical=test.categorical())
        test_X = test.X if codes is None else with_codes(test, codes)
        parity, outputs = check_parity(pipeline, onnx_model, test_X, test_input, task, spec.parity)
        if not parity.passed:
            raise ExportError(
                f"ONNX export disagrees with scikit-learn on {parity.violations} of "
                f"{parity.rows} held-out rows (max |difference| {parity.max_abs_diff:.3g}, "
                f"allowed {spec.parity.atol:g} + {spec.parity.rtol:g}*|value|); not registered. "
                + _parity_advice(spec, parity.max_abs_diff)
            )
    with watch.step("metrics"):
        classes: list[str | int] | None = None
        probabilities: np.ndarray | None = None
        fitted_classes = np.asarray(pipeline.classes_) if task == "classification" else None
        if fitted_classes is not None:
            classes = [c.item() if isinstance(c, np.generic) else c for c in fitted_classes]
            predictions = outputs[LABEL_OUTPUT].ravel()
            probabilities = outputs[PROBABILITIES_OUTPUT]
            metrics = classification_metrics(y_test, predictions, probabilities, fitted_classes)
            per_class = per_class_figures(fitted_classes, y_train, y_test, predictions)
        else:
            predictions = outputs[REGRESSION_OUTPUT].ravel()
            metrics = regression_metrics(y_test, predictions)
            per_class = {}
        trivial, trivial_name = trivial_metrics(task, y_train, y_test, fitted_classes)
        primary = spec.metric_for(task)
        gate = judge(primary, metrics[primary], trivial[primary], trivial_name, spec.gate)
    with watch.step("profile"):
        # The served model's outputs on the held-out rows: on the rows it was fitted to, a
        # model is more confident than it will ever be on traffic.
        baseline = BaselineProfile(
            rows=n_rows,
            features={feature.name: feature_profiles[feature.name] for feature in schema},
            predictions=profile_predictions(task, predictions, probabilities, classes),
        )
        holdout = encode_holdout(
            {
                **{f.name: test.X[:, i] for i, f in enumerate(onnx_model.numeric_features)},
                **test_input.categorical,
            },
            y_test,
        )
    metadata = ModelMetadata(
        model=model,
        version=0,  # set once a number is claimed
        run_id=run_id,
        created_at=utc_now().isoformat(),
        task=task,
        target=spec.target,
        estimator=spec.estimator,
        params=effective_params(pipeline),
        spec=spec_to_dict(spec),
        features=schema,
        classes=classes,
        metrics=metrics,
        primary_metric=primary,
        parity=parity,
        onnx=OnnxArtifact(
            file="model.onnx",
            sha256=sha256_hex(onnx_bytes),
            size_bytes=len(onnx_bytes),
            opsets=opsets_of(onnx_bytes),
            label_output=LABEL_OUTPUT if task == "classification" else REGRESSION_OUTPUT,
            probabilities_output=PROBABILITIES_OUTPUT if task == "classification" else None,
        ),
        baseline=baseline,
        lineage=Lineage(
            data=DataLineage(
                key=upload.key,
                etag=upload.etag,
                version_id=upload.version_id,
                sha256=upload.sha256,
                size_bytes=upload.size_bytes,
                rows=n_rows,
                train_rows=int(split.train.size),
                test_rows=int(split.test.size),
            ),
            spec_key=spec_source,
            spec_etag=spec_etag,
            code_version=_code_version(),
            packages=_package_versions(),
            trigger=trigger,
        ),
        timings={},
        gate=gate,
        holdout_sha256=sha256_hex(holdout),
        fitted_rows_sha256=sha256_hex(fitted_rows),
        trivial_metrics={k: round(v, 6) for k, v in trivial.items()},
        warnings=warnings,
        per_class=per_class,
    )
    return _Candidate(
        onnx_bytes=onnx_bytes,
        holdout_bytes=holdout,
        fitted_rows_bytes=fitted_rows,
        metadata_without_version=metadata,
    )


def _read_dataset(store: ObjectStore, data_key: str, version_id: str | None) -> StoredObject:
    try:
        return store.get(data_key, version_id=version_id)
    except ObjectVersionNotFound:
        # Final: a retry cannot bring it back, and training the key's current bytes would
        # train something the event did not name.
        raise DataError(
            f"{data_key}: version {quoted(version_id)} named by the upload event no longer "
            "exists (deleted since it was uploaded); nothing was trained"
        ) from None


def _put_once(store: ObjectStore, key: str, body: bytes, content_type: str) -> None:
    """Create-only write: a claimed number's folder is written once, by its claimer.

    If the object is already there with the same bytes, this run wrote it and the
    acknowledgement was lost (the SDK's retry then meets its own write): that is success.
    """
    try:
        store.put(key, body, if_none_match=True, content_type=content_type)
    except PreconditionFailed:
        if store.get(key).body != body:
            raise


class _TrailIncomplete(Exception):
    """The registry settled the version (ready or rejected); only its trail record failed."""


def _register(
    store: ObjectStore,
    registry: ModelRegistry,
    candidate: _Candidate,
    source: str,
    watch: _Stopwatch,
    delivery: str | None,
) -> TrainingOutcome:
    meta = candidate.metadata_without_version
    entry, duplicate = registry.claim(
        run_id=meta.run_id, source=source, data_key=meta.lineage.data.key, delivery=delivery
    )
    if duplicate:
        # A concurrent delivery of the same event claimed it first.
        record_event(
            store,
            meta.model,
            "duplicate_ignored",
            data_key=meta.lineage.data.key,
            version=entry.version,
        )
        return TrainingOutcome(
            model=meta.model,
            data_key=meta.lineage.data.key,
            run_id=meta.run_id,
            status="duplicate",
            version=entry.version,
        )
    prefix = version_prefix(meta.model, entry.version)
    try:
        with watch.step("register"):
            final = msgspec.structs.replace(
                meta, version=entry.version, timings=dict(watch.timings)
            )
            _put_once(
                store, prefix + "model.onnx", candidate.onnx_bytes, "application/octet-stream"
            )
            _put_once(store, prefix + HOLDOUT_FILE, candidate.holdout_bytes, "application/x-ndjson")
            _put_once(
                store,
                prefix + FITTED_ROWS_FILE,
                candidate.fitted_rows_bytes,
                "application/octet-stream",
            )
            _put_once(
                store,
                prefix + "model_card.md",
                render_model_card(final).encode(),
                "text/markdown; charset=utf-8",
            )
            # metadata.json last: its presence means the folder is complete.
            _put_once(store, prefix + "metadata.json", encode_metadata(final), "application/json")
            if final.gate is not None and not final.gate.passed:
                reason = "quality gate: " + "; ".join(final.gate.reasons)
                registry.reject(
                    entry.version,
                    sha256=final.onnx.sha256,
                    primary_metric=final.primary_metric,
                    metric_value=final.metrics[final.primary_metric],
                    reason=reason,
                    figures=msgspec.to_builtins(final.gate),
                )
                return TrainingOutcome(
                    model=meta.model,
                    data_key=meta.lineage.data.key,
                    run_id=meta.run_id,
                    status="rejected",
                    version=entry.version,
                    reason=reason,
                    metrics=dict(final.metrics),
                    warnings=list(final.warnings),
                )
            alias = registry.complete(
                entry.version,
                sha256=final.onnx.sha256,
                primary_metric=final.primary_metric,
                metric_value=final.metrics[final.primary_metric],
            )
    except Exception as exc:
        if registry.fail(entry.version, reason=f"registration failed: {exc}"):
            raise
        # The version was settled before the failure, so only the trail's write failed:
        # no failure record, which would contradict the registry. The platform's retry
        # meets the settled version and writes the missing record (record_settled).
        raise _TrailIncomplete(
            f"version {entry.version} of {meta.model!r} is settled, but its audit record "
            f"was not written: {exc}"
        ) from exc
    return TrainingOutcome(
        model=meta.model,
        data_key=meta.lineage.data.key,
        run_id=meta.run_id,
        status="registered",
        version=entry.version,
        alias=alias,
        metrics=dict(final.metrics),
        warnings=list(final.warnings),
    )


def ignore_upload(store: ObjectStore, key: str, *, location: str, reason: str) -> TrainingOutcome:
    """Record an upload event for `location` (holding `key`) that names no object of this
    store, and train nothing: raising would make the platform retry it forever."""
    logger.error("ignoring upload event for %s: %s", location, reason)
    try:
        model = model_of_data_key(key)
    except MlopsError:
        # No model to file it under; the log line above is the record.
        return TrainingOutcome(model="", data_key=key, run_id="", status="failed", reason=reason)
    record_event(store, model, "upload_ignored", location=location, reason=reason)
    return TrainingOutcome(model=model, data_key=key, run_id="", status="failed", reason=reason)


def train_from_dataset(
    store: ObjectStore,
    data_key: str,
    *,
    trigger: str,
    version_id: str | None = None,
    delivery: str | None = None,
) -> TrainingOutcome:
    """Train the model that `data_key` belongs to and register the result.

    `version_id` names the version of the dataset to train (an S3 event's versionId; None:
    the current bytes). `delivery` identifies the delivery of the event across the
    platform's own retries (Lambda's request id): a retry meeting the pending claim of
    its earlier attempt knows that attempt died, and takes over.

    Returns a failed outcome (and leaves an audit record) for bad data, a bad spec, a
    dataset version that no longer exists or a failed export check; other errors are
    recorded and raised, so the platform retries.
    """
    try:
        model = model_of_data_key(data_key)
    except MlopsError as exc:
        # No valid model name, so no audit trail to write to: say it, and do not retry.
        logger.error("ignoring upload %s: %s", data_key, exc)
        return TrainingOutcome(
            model="", data_key=data_key, run_id="", status="failed", reason=str(exc)
        )
    watch = _Stopwatch()
    registry = ModelRegistry(store, model)
    run_id = "pending"
    try:
        with watch.step("read"):
            spec, spec_source, spec_etag = load_spec_for_dataset(store, model, data_key)
            upload = _Upload(_read_dataset(store, data_key, version_id))
        source = source_fingerprint(upload.key, upload.sha256, spec_etag)
        # Unique per run, even for two deliveries of one event in the same second.
        run_id = f"{utc_now().strftime('%Y%m%dT%H%M%SZ')}-{source[:12]}-{uuid.uuid4().hex[:6]}"
        existing = source_of(registry.read()[0], source)
        if existing is not None and abandoned(existing, utc_now(), delivery) is None:
            # A settled version's record may be missing if its run failed writing it.
            registry.record_settled(existing)
            record_event(
                store, model, "duplicate_ignored", data_key=data_key, version=existing.version
            )
            return TrainingOutcome(
                model=model,
                data_key=data_key,
                run_id=existing.run_id,
                status="duplicate",
                version=existing.version,
            )
        candidate = _build_candidate(
            model, upload, spec, spec_source, spec_etag, run_id, trigger, watch
        )
        return _register(store, registry, candidate, source, watch, delivery)
    except _TrailIncomplete:
        raise  # retried by the platform; see _register
    except Exception as exc:
        # Bad data, spec or export: recorded and final. Anything else: recorded, and raised
        # so that the platform retries (a duplicate check makes the retry safe).
        expected = isinstance(exc, MlopsError)
        record_event(
            store,
            model,
            "training_failed",
            data_key=data_key,
            run_id=run_id,
            error=type(exc).__name__,
            reason=str(exc) if expected else f"unexpected: {exc}",
        )
        if not expected:
            raise
        return TrainingOutcome(
            model=model, data_key=data_key, run_id=run_id, status="failed", reason=str(exc)
        )
