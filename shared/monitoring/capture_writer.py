"""Serving's capture buffers: rows kept as arrays, written a batch at a time.

The serving path only appends references to arrays it already has (a few microseconds);
rows are encoded when a batch is written: when it holds `batch_rows` rows, when its
oldest row has waited `max_wait_seconds`, or when the hour changes. Beside each object
goes its summary (file_summary.py), counted from the same arrays, so that the hourly
check need not decode the rows again. What a container holds when Lambda freezes it for
good is lost: fewer than `batch_rows` rows, all from the `max_wait_seconds` before its
last request (docs/monitoring.md says so).
"""

from __future__ import annotations

import gzip
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import numpy as np

from shared.data.spec import CaptureSettings
from shared.monitoring.capture import CAPTURE_SCHEMA_VERSION, FeatureValue, partition_prefix
from shared.monitoring.file_summary import encode_summary, summarise_requests, summary_key
from shared.registry.metadata import ModelMetadata
from shared.store.base import ObjectStore

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    """A request's rows, kept as the arrays serving already had until the batch is written."""

    at: float
    capture_id: str
    request_id: str
    version: int
    served_by: str
    role: str
    numeric_names: Sequence[str]
    numeric: np.ndarray  # [rows, numeric features], NaN = missing
    categorical: dict[str, np.ndarray]  # name -> [rows] str, "" = missing
    predictions: np.ndarray
    probabilities: np.ndarray | None
    classes: Sequence[str | int] | None
    positions: np.ndarray | None = None  # kept rows' positions in the request (None: all)
    metadata: ModelMetadata | None = None  # the answering version's: its rows' summary bins

    @property
    def rows(self) -> int:
        return int(self.predictions.shape[0])


@dataclass
class _Batch:
    hour: int  # hours since the epoch: a batch never spans two partitions
    first_at: float
    max_wait: float  # the model's max_wait_seconds when the batch began
    rows: int = 0
    pending: list[_Pending] = field(default_factory=list)


def encode_rows(model: str, pending: Sequence[_Pending]) -> bytes:
    """The JSON Lines of some requests' rows (NaN and missing become null).

    Built column by column and encoded in one call: the per-row work is a dict or two,
    which is what writing a batch costs on the request that fills it.
    """
    encoder = msgspec.json.Encoder()
    lines: list[dict[str, object]] = []
    for item in pending:
        at = datetime.fromtimestamp(item.at, UTC).isoformat().replace("+00:00", "Z")
        names = list(item.numeric_names)
        # msgspec writes a NaN as null: a missing number needs no per-value check.
        features: list[dict[str, FeatureValue]] = [
            dict(zip(names, row, strict=True)) for row in item.numeric.tolist()
        ]
        for name, values in item.categorical.items():
            for row_features, value in zip(features, values.tolist(), strict=True):
                row_features[name] = value or None  # "" is the missing marker
        predictions = item.predictions.tolist()
        probabilities = item.probabilities.tolist() if item.probabilities is not None else None
        class_names = [str(c) for c in item.classes] if item.classes is not None else None
        positions = item.positions.tolist() if item.positions is not None else range(item.rows)
        for i, position in enumerate(positions):
            probs = None
            if probabilities is not None and class_names is not None:
                probs = dict(zip(class_names, probabilities[i], strict=True))
            lines.append(
                {
                    "schema_version": CAPTURE_SCHEMA_VERSION,
                    "capture_id": item.capture_id,
                    "row": position,
                    "request_id": item.request_id,
                    "model": model,
                    "version": item.version,
                    "served_by": item.served_by,
                    "role": item.role,
                    "at": at,
                    "features": features[i],
                    "prediction": predictions[i],
                    "probabilities": probs,
                }
            )
    return encoder.encode_lines(lines)


class CaptureWriter:
    """A container's capture buffers, one per model; thread-safe for `chalice local`."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        clock: Callable[[], float] = time.time,
        sample: Callable[[], float] = random.random,
        on_write: Callable[[CaptureWriter], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.sample = sample
        # Told after each batch is written or fails: serving writes its metrics then.
        self.on_write = on_write
        self.container = secrets.token_hex(4)
        self._sequence = 0
        self._batches: dict[str, _Batch] = {}
        self._lock = threading.Lock()
        # Counters a person (or a test) reads to see what capture did and failed to do.
        self.written_rows = 0
        self.written_objects = 0
        self.failed_writes = 0
        self.dropped_rows = 0
        self.written_summaries = 0
        self.failed_summaries = 0  # objects written without their summary (read row by row)

    def add(
        self,
        settings: CaptureSettings,
        *,
        model: str,
        version: int,
        served_by: str,
        request_id: str,
        numeric_names: Sequence[str],
        numeric: np.ndarray,
        categorical: dict[str, np.ndarray],
        predictions: np.ndarray,
        probabilities: np.ndarray | None,
        classes: Sequence[str | int] | None,
        role: str = "served",
        capture_id: str | None = None,
        hold: bool = False,
        metadata: ModelMetadata | None = None,
    ) -> str | None:
        """Buffer one request's rows (if sampled); returns its capture id. Never raises.

        A shadow's rows pass the capture id of the production answer they shadow (that
        request was sampled already), so that the check can pair them row by row; with
        `hold` the batch is not written yet, so that the shadow's rows land in the same
        object as the answer's (`settle` writes it if it is due). With the answering
        version's `metadata`, the object's summary is written beside it (file_summary.py);
        without, the check reads its rows.
        """
        if capture_id is None and (not settings.enabled or self.sample() >= settings.sample_rate):
            return None
        now = self.clock()
        capture_id = capture_id or secrets.token_hex(8)
        positions = None
        total = int(predictions.shape[0])
        if total > settings.max_rows_per_request:
            # A large batch is captured in part, rows spread evenly over it: writing every
            # row of a 10,000-row request would cost more than predicting it.
            positions = np.unique(
                np.linspace(0, total - 1, settings.max_rows_per_request).astype(np.int64)
            )
            numeric = numeric[positions]
            categorical = {name: values[positions] for name, values in categorical.items()}
            predictions = predictions[positions]
            probabilities = probabilities[positions] if probabilities is not None else None
        item = _Pending(
            now,
            capture_id,
            request_id,
            version,
            served_by,
            role,
            numeric_names,
            numeric,
            categorical,
            predictions,
            probabilities,
            classes,
            positions,
            metadata,
        )
        hour = int(now // 3600)
        ready: list[tuple[str, _Batch]] = []
        with self._lock:
            batch = self._batches.get(model)
            if batch is not None and batch.hour != hour:
                ready.append((model, self._batches.pop(model)))
                batch = None
            if batch is None:
                batch = self._batches[model] = _Batch(
                    hour=hour, first_at=now, max_wait=settings.max_wait_seconds
                )
            batch.pending.append(item)
            batch.rows += item.rows
            if not hold and self._due(batch, settings, now):
                ready.append((model, self._batches.pop(model)))
            # Other models' batches age too: a model that gets no more requests must not
            # keep its rows past their wait (or past their hour) while others are served.
            for other, waiting in list(self._batches.items()):
                if other != model and (
                    now - waiting.first_at >= waiting.max_wait or waiting.hour != hour
                ):
                    ready.append((other, self._batches.pop(other)))
        for name, full in ready:
            self._write(name, full)
        return capture_id

    @staticmethod
    def _due(batch: _Batch, settings: CaptureSettings, now: float) -> bool:
        return (
            batch.rows >= settings.batch_rows or now - batch.first_at >= settings.max_wait_seconds
        )

    def settle(self, settings: CaptureSettings, model: str) -> None:
        """Write `model`'s batch if it is due (after rows added with `hold`)."""
        with self._lock:
            batch = self._batches.get(model)
            if batch is None or not self._due(batch, settings, self.clock()):
                return
            del self._batches[model]
        self._write(model, batch)

    def flush(self, *, older_than: float | None = None) -> int:
        """Write every buffered batch (or those older than `older_than` seconds); rows written."""
        now = self.clock()
        with self._lock:
            due = [
                (model, batch)
                for model, batch in self._batches.items()
                if older_than is None or now - batch.first_at >= older_than
            ]
            for model, _ in due:
                del self._batches[model]
        return sum(self._write(model, batch) for model, batch in due)

    @property
    def buffered_rows(self) -> int:
        """Rows waiting for their batch to be written."""
        with self._lock:
            return sum(batch.rows for batch in self._batches.values())

    def _write(self, model: str, batch: _Batch) -> int:
        # A capture must never fail a prediction: errors are counted and logged, and the
        # batch is dropped rather than kept, so a store outage cannot grow memory.
        try:
            with self._lock:
                self._sequence += 1
                sequence = self._sequence
            first = datetime.fromtimestamp(batch.first_at, UTC)
            key = (
                f"{partition_prefix(model, first)}{first:%Y%m%dT%H%M%S.%fZ}-"
                f"{self.container}-{sequence:06d}.jsonl.gz"
            )
            # Level 1: a third of level 5's time on the request that fills the batch, ~10% bigger.
            body = gzip.compress(encode_rows(model, batch.pending), compresslevel=1, mtime=0)
            self.store.put(key, body, if_none_match=True, content_type="application/x-ndjson")
            self._summarise(key, body, batch)
        except Exception:
            self.failed_writes += 1
            self.dropped_rows += batch.rows
            logger.exception("capture of %d rows of %r could not be written", batch.rows, model)
            self._written()
            return 0
        self.written_rows += batch.rows
        self.written_objects += 1
        self._written()
        return batch.rows

    def _summarise(self, key: str, body: bytes, batch: _Batch) -> None:
        # After the rows are safe: a summary that cannot be made or written costs the
        # check a read of this object's rows, never the rows themselves.
        try:
            summary = summarise_requests(batch.pending, key, body)
            if summary is None:
                return
            self.store.put(
                summary_key(key),
                encode_summary(summary),
                if_none_match=True,
                content_type="application/json",
            )
        except Exception:
            self.failed_summaries += 1
            logger.exception("summary of %s could not be written", key)
            return
        self.written_summaries += 1

    def _written(self) -> None:
        if self.on_write is None:
            return
        try:
            self.on_write(self)
        except Exception:  # metrics never fail a capture, let alone a prediction
            logger.exception("after-capture hook failed")
