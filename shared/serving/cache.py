"""Serving registered versions: a per-container cache of checked ONNX sessions.

The warm path does no store read per request: sessions are cached by (model, version),
which never change once registered, and an alias is re-resolved from `registry.json`
at most once per `alias_ttl` seconds. An artifact whose sha256 differs from its
metadata is refused and recorded; a request through an alias then keeps being served
by the version the alias last served from this container.
No scikit-learn, scipy or pandas here: this module is on the cold-start path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shared.data.spec import CaptureSettings, ShadowSettings, load_spec, validate_model_name
from shared.errors import (
    ArtifactRejected,
    ModelNotFound,
    ModelNotReady,
    ObjectNotFound,
    VersionNotFound,
    quoted,
)
from shared.registry.audit import read_trail, record_event
from shared.registry.metadata import FeatureSchema, ModelMetadata, decode_metadata
from shared.registry.records import RegistryRecord, VersionEntry, is_version_number, version_prefix
from shared.registry.registry import ModelRegistry
from shared.serving.runtime import ModelInput, OnnxModel, sha256_hex
from shared.store.base import ObjectStore

logger = logging.getLogger(__name__)

DEFAULT_ALIAS = "production"
# Capture and shadow settings change rarely; one spec read a minute per model is enough.
SETTINGS_TTL = 60.0
# Registry records (or why a model has none) kept per container: a client sending random
# model names must not grow a container's memory without bound; the least recently asked
# for is dropped first (and re-read from the store if asked for again).
MAX_RECORDS = 256
# Longer than any version number or alias (an int() of over 4,300 digits even raises).
MAX_REF_CHARS = 64


@dataclass(frozen=True)
class LoadedModel:
    """A checked artifact with its session, ready to predict."""

    model: str
    version: int
    metadata: ModelMetadata
    onnx: OnnxModel

    @property
    def features(self) -> tuple[FeatureSchema, ...]:
        """The inputs, in the order the model was trained on."""
        return self.onnx.features


@dataclass(frozen=True)
class Prediction:
    """Outputs for a batch: labels or values, and class probabilities if classifying."""

    values: np.ndarray  # class labels (classification) or predicted values (regression)
    probabilities: np.ndarray | None  # [rows, classes], columns in `classes` order
    classes: list[str | int] | None


def predict(loaded: LoadedModel, batch: ModelInput) -> Prediction:
    """Run the model on a validated batch."""
    outputs = loaded.onnx.run(loaded.onnx.feed(batch))
    meta = loaded.metadata
    probabilities = (
        outputs[meta.onnx.probabilities_output] if meta.onnx.probabilities_output else None
    )
    return Prediction(
        values=outputs[meta.onnx.label_output].ravel(),
        probabilities=probabilities,
        classes=meta.classes,
    )


class ModelCache:
    """Checked sessions of the versions this container has served, and alias lookups."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        alias_ttl: float = 10.0,
        max_sessions: int = 4,
        max_records: int = MAX_RECORDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.alias_ttl = alias_ttl
        self.max_sessions = max_sessions
        self.clock = clock
        # A model with no registry is remembered too (with why), so that requests for it
        # do not list the store each time.
        self._records: OrderedDict[
            str, tuple[float, RegistryRecord | ModelNotFound | ModelNotReady]
        ] = OrderedDict()
        self.max_records = max_records
        self._settings: dict[str, tuple[float, CaptureSettings, ShadowSettings]] = {}
        self._loading: set[tuple[str, int]] = set()
        self._background: list[threading.Thread] = []
        self._sessions: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._last_served: dict[tuple[str, str], int] = {}
        self._refused: dict[tuple[str, int], str] = {}
        # chalice local serves from threads; Lambda runs one request at a time.
        self._lock = threading.RLock()

    def record(self, model: str) -> RegistryRecord:
        """The registry record, re-read at most once per alias_ttl seconds."""
        validate_model_name(model)
        with self._lock:
            cached = self._records.get(model)
            if cached is None or self.clock() - cached[0] >= self.alias_ttl:
                record, etag = ModelRegistry(self.store, model).read()
                cached = (
                    self.clock(),
                    record if etag is not None else self._explain_missing(model),
                )
                self._records[model] = cached
                while len(self._records) > self.max_records:
                    self._records.popitem(last=False)
            self._records.move_to_end(model)
            if isinstance(cached[1], RegistryRecord):
                return cached[1]
            # The same instance is raised on every request: drop the traceback the last
            # raise attached, or it would grow for as long as the container lives.
            raise cached[1].with_traceback(None)

    def settings(self, model: str) -> tuple[CaptureSettings, ShadowSettings]:
        """The spec's capture and shadow settings, re-read at most once per SETTINGS_TTL s.

        A spec that cannot be read falls back to the defaults: capture must never fail
        or slow a prediction (a broken spec fails the next training run, visibly).
        """
        cached = self._settings.get(model)
        now = self.clock()
        if cached is not None and now - cached[0] < SETTINGS_TTL:
            return cached[1], cached[2]
        try:
            spec = load_spec(self.store, model)[0]
            capture, shadow = spec.monitoring.capture, spec.shadow
        except Exception as exc:  # any store or spec error: keep serving, with defaults
            logger.warning("settings of %r unreadable, using defaults: %s", model, exc)
            capture, shadow = CaptureSettings(), ShadowSettings()
        self._settings[model] = (now, capture, shadow)
        return capture, shadow

    def shadow_for(self, production: LoadedModel) -> LoadedModel | None:
        """The staging version to shadow `production` with, if it is loaded and comparable.

        Never loads on the request path: the first call starts a background load and
        returns None, so a shadow's cold start (download, hash check, session build)
        never delays or fails a production answer.
        """
        model = production.model
        with self._lock:
            record = self.record(model)
            version = record.aliases.get("staging")
            if version is None or version == production.version:
                return None
            key = (model, version)
            loaded = self._sessions.get(key)
            if loaded is not None:
                same = [(f.name, f.kind) for f in loaded.features] == [
                    (f.name, f.kind) for f in production.features
                ]
                return loaded if same else None
            if key in self._loading or key in self._refused:
                return None
            entry = record.entry(version)
            if entry.status != "ready":
                return None
            self._loading.add(key)
        worker = threading.Thread(target=self._load_in_background, args=(model, entry), daemon=True)
        self._background.append(worker)
        worker.start()
        return None

    def _load_in_background(self, model: str, entry: VersionEntry) -> None:
        key = (model, entry.version)
        try:
            loaded = self._build(model, entry)
        except Exception as exc:  # a shadow's failure is logged, never raised to a caller
            logger.warning("shadow v%s of %r not loaded: %s", entry.version, model, exc)
        else:
            with self._lock:
                self._keep(key, loaded)
        finally:
            with self._lock:
                self._loading.discard(key)

    def wait_for_background(self, timeout: float = 30.0) -> None:
        """Let background loads finish (tests and benchmarks; serving never waits)."""
        for worker in list(self._background):
            worker.join(timeout)
        self._background = [w for w in self._background if w.is_alive()]

    def _explain_missing(self, model: str) -> ModelNotFound | ModelNotReady:
        # Only on the error path: say why a model that was uploaded has no version.
        failures = [e for e in read_trail(self.store, model) if e.event == "training_failed"]
        if failures:
            last = failures[-1].details
            return ModelNotReady(
                f"model {model!r} has no version: its last training "
                f"({last.get('data_key')}) failed: {last.get('reason')}"
            )
        return ModelNotFound(f"no model named {model!r} is registered")

    def get(self, model: str, ref: str | None = None) -> LoadedModel:
        """The version `ref` names (number, alias or 'latest'; default production), loaded."""
        ref = ref or DEFAULT_ALIAS
        if len(ref) > MAX_REF_CHARS:
            validate_model_name(model)
            raise VersionNotFound(
                f"model {model!r} has no version or alias {quoted(ref)}: a version is a number, "
                "an alias or latest"
            )
        with self._lock:
            if is_version_number(ref):
                cached = self._sessions.get((model, int(ref)))
                if cached is not None:
                    self._sessions.move_to_end((model, int(ref)))
                    return cached
            entry = self._resolve(model, ref)
            try:
                loaded = self._load(model, entry)
            except ArtifactRejected:
                fallback = self._last_served.get((model, ref))
                if (
                    is_version_number(ref)
                    or fallback is None
                    or (model, fallback) not in self._sessions
                ):
                    raise
                logger.warning(
                    "serving %s v%s for %r: v%s was refused", model, fallback, ref, entry.version
                )
                return self._sessions[(model, fallback)]
            self._last_served[(model, ref)] = entry.version
            return loaded

    def _resolve(self, model: str, ref: str) -> VersionEntry:
        record = self.record(model)
        entry = record.resolve(ref)
        if entry.status != "ready":
            detail = f": {entry.reason}" if entry.reason else ""
            raise VersionNotFound(
                f"version {entry.version} of {model!r} is {entry.status}, not servable{detail}"
            )
        return entry

    def _load(self, model: str, entry: VersionEntry) -> LoadedModel:
        key = (model, entry.version)
        cached = self._sessions.get(key)
        if cached is not None:
            self._sessions.move_to_end(key)
            return cached
        if key in self._refused:
            raise ArtifactRejected(self._refused[key])
        loaded = self._build(model, entry)
        self._keep(key, loaded)
        return loaded

    def _keep(self, key: tuple[str, int], loaded: LoadedModel) -> None:
        self._sessions[key] = loaded
        self._sessions.move_to_end(key)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    def _build(self, model: str, entry: VersionEntry) -> LoadedModel:
        """Read, check and open one version's artifact (no cache lock needed)."""
        key = (model, entry.version)
        prefix = version_prefix(model, entry.version)
        try:
            metadata = decode_metadata(self.store.get(prefix + "metadata.json").body)
            artifact = self.store.get(prefix + metadata.onnx.file).body
        except ObjectNotFound as exc:
            raise VersionNotFound(
                f"version {entry.version} of {model!r} is registered but {exc.key} is missing"
            ) from None
        actual = sha256_hex(artifact)
        expected = {metadata.onnx.sha256, entry.sha256 or metadata.onnx.sha256}
        if expected != {actual}:
            registry = entry.sha256 or metadata.onnx.sha256
            reason = (
                f"version {entry.version} of {model!r} refused: model.onnx has sha256 {actual}, "
                f"its metadata says {metadata.onnx.sha256}"
                + (f", the registry says {registry}" if registry != metadata.onnx.sha256 else "")
            )
            self._refused[key] = reason
            record_event(
                self.store, model, "artifact_rejected", version=entry.version, reason=reason
            )
            raise ArtifactRejected(reason)
        return LoadedModel(
            model=model,
            version=entry.version,
            metadata=metadata,
            onnx=OnnxModel(artifact, metadata.features),
        )
