"""Retraining on the monitoring check's verdict: a new training set, assembled and uploaded.

When a window's verdict is one the spec's `retraining.on` lists, and no retraining was
started for a window in the last `min_interval_hours`, the new training set is the
production version's own training data plus the labelled captured rows of the label
window (a row carries its inputs and its label; no unlabelled row is used, and a row
already in that data is not added twice). It is written as
``datasets/<model>/retrain-<window>.csv`` so that the ordinary trigger trains it, with,
beside it, the spec it trains under (the parent's task, target, features and categorical
columns pinned: a CSV re-read could infer them differently) and ``.sources.json`` naming
every source. Its version then meets the quality gate and the challenger rule like any
other. One retraining per window (create-only writes), at most one per interval: it
cannot retrain in a tight loop.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from shared.data.spec import (
    ModelSpec,
    RetrainingSettings,
    dataset_spec_key,
    load_spec,
    spec_to_dict,
)
from shared.errors import MlopsError, ObjectNotFound, PreconditionFailed
from shared.monitoring.capture import CaptureRow
from shared.monitoring.job import labelled_captures
from shared.monitoring.performance import usable_label
from shared.monitoring.report import DriftReport, parse_window_id
from shared.registry.audit import record_event_once
from shared.registry.metadata import ModelMetadata, decode_metadata
from shared.registry.records import version_prefix
from shared.registry.registry import ModelRegistry
from shared.serving.runtime import sha256_hex
from shared.store.base import ObjectStore

RETRAIN_PREFIX = "retrain-"


class RetrainingSources(msgspec.Struct, frozen=True, kw_only=True):
    """Where every row of an assembled training set came from (``.sources.json``)."""

    model: str
    window: str
    verdict: str
    parent_version: int
    base_key: str  # the parent's training data
    base_etag: str
    base_sha256: str
    base_rows: int
    label_window: list[str]  # [start, end) of the captures whose labels were used
    labelled_rows: int
    captured: list[str]  # "capture_id/row" of every added row
    label_files: list[str]


@dataclass(frozen=True)
class RetrainingOutcome:
    """What the verdict of one window led to."""

    started: bool
    reason: str
    data_key: str | None = None


def retraining_key(model: str, window: str) -> str:
    """The training set assembled for `window`'s verdict."""
    return f"datasets/{model}/{RETRAIN_PREFIX}{window}.csv"


def due(
    verdict: str,
    window_start: datetime,
    earlier_starts: list[datetime],
    settings: RetrainingSettings,
) -> tuple[bool, str]:
    """Whether this window's verdict should start a retraining (pure)."""
    if not settings.enabled:
        return False, "retraining is disabled in the spec"
    if verdict not in settings.on:
        return False, f"verdict {verdict} is not one of {settings.on}"
    interval = timedelta(hours=settings.min_interval_hours)
    recent = [s for s in earlier_starts if window_start - interval < s <= window_start]
    if recent:
        return False, (
            f"a retraining started for the window of {max(recent):%Y-%m-%d %H:00}, less than "
            f"{settings.min_interval_hours} h before this one"
        )
    return True, f"verdict {verdict}"


def pinned_spec(spec: ModelSpec, parent: ModelMetadata) -> ModelSpec:
    """The model's spec with what the parent learnt pinned, so the new set reads the same."""
    return msgspec.structs.replace(
        spec,
        task=parent.task,
        target=parent.target,
        features=[f.name for f in parent.features],
        categorical=[f.name for f in parent.features if f.kind == "categorical"],
        drop=[],
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def assemble(
    base: bytes,
    parent: ModelMetadata,
    rows: list[tuple[CaptureRow, str]],
    keep_base_rows: int | None = None,
) -> tuple[bytes, int]:
    """The base CSV (its last `keep_base_rows` rows) with the labelled rows appended in
    its columns (pure); returns (bytes, base rows kept)."""
    records = list(csv.reader(io.StringIO(base.decode("utf-8-sig"), newline="")))
    header, body = records[0], [r for r in records[1:] if any(cell.strip() for cell in r)]
    if keep_base_rows is not None:
        body = body[max(0, len(body) - keep_base_rows) :] if keep_base_rows else []
    out = io.StringIO()
    # Verbatim, unlike what is written for people (shared.data.cells): this file is training
    # input, and an apostrophe before "=x" would teach the model a category it never sees.
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    for row, label in rows:
        values = {**row.features, parent.target: label}
        writer.writerow([_cell(values.get(column)) for column in header])
    return out.getvalue().encode("utf-8"), len(body)


def _earlier_starts(store: ObjectStore, model: str) -> list[datetime]:
    starts = []
    for info in store.list(f"datasets/{model}/{RETRAIN_PREFIX}"):
        if info.key.endswith(".csv"):
            window = info.key.rsplit("/", 1)[1][len(RETRAIN_PREFIX) : -len(".csv")]
            try:
                starts.append(parse_window_id(window)[0])
            except MlopsError:  # a file of the user's that only looks like ours
                continue
    return starts


def _already_included(store: ObjectStore, base_key: str) -> set[str]:
    try:
        body = store.get(base_key.removesuffix(".csv") + ".sources.json").body
    except ObjectNotFound:
        return set()
    return set(msgspec.json.decode(body, type=RetrainingSources).captured)


def _skipped(
    store: ObjectStore, report: DriftReport, end: datetime, why: str, note: str
) -> RetrainingOutcome:
    """Record, once per window and reason, that the verdict retrained nothing."""
    record_event_once(
        store,
        report.model,
        "retraining_skipped",
        at=end,
        dedupe=f"{report.window}\n{why}",
        window=report.window,
        verdict=report.verdict,
        reason=note,
    )
    return RetrainingOutcome(False, note)


def maybe_retrain(store: ObjectStore, report: DriftReport) -> RetrainingOutcome:
    """Start a retraining for this window's verdict if the spec says so (idempotent)."""
    model = report.model
    spec, _ = load_spec(store, model)
    start, end = parse_window_id(report.window)
    go, why = due(report.verdict, start, _earlier_starts(store, model), spec.retraining)
    if not go:
        return RetrainingOutcome(False, why)
    record = ModelRegistry(store, model).load()
    parent_version = record.aliases.get("production")
    if parent_version is None:
        return RetrainingOutcome(False, "no production version to retrain from")
    prefix = version_prefix(model, parent_version)
    parent = decode_metadata(store.get(prefix + "metadata.json").body)
    base = store.get(parent.lineage.data.key)
    if sha256_hex(base.body) != parent.lineage.data.sha256:
        # The key was overwritten since: these are not the bytes the parent learnt from.
        note = (
            f"{base.key} changed since v{parent_version} trained on it (sha256 differs): "
            "not retrained from different data"
        )
        return _skipped(store, report, end, "base-changed", note)
    label_start = end - timedelta(hours=spec.monitoring.label_window_hours)
    included = _already_included(store, parent.lineage.data.key)
    labelled = [
        (row, label)
        for row, label in labelled_captures(store, model, label_start, end, parent.target)
        # A label that is no class of the parent (a typo) must not become a new class.
        if f"{row.capture_id}/{row.row}" not in included and usable_label(parent, label)
    ]
    if not labelled:
        note = "no new labelled captured rows to learn from: nothing retrained"
        return _skipped(store, report, end, "no-labels", note)
    body, base_rows = assemble(base.body, parent, labelled, spec.retraining.keep_base_rows)
    key = retraining_key(model, report.window)
    sources = RetrainingSources(
        model=model,
        window=report.window,
        verdict=report.verdict,
        parent_version=parent_version,
        base_key=base.key,
        base_etag=base.etag,
        base_sha256=parent.lineage.data.sha256,
        base_rows=base_rows,
        label_window=[label_start.isoformat(), end.isoformat()],
        labelled_rows=len(labelled),
        captured=sorted(included | {f"{row.capture_id}/{row.row}" for row, _ in labelled}),
        label_files=sorted({i.key for i in store.list(f"labels/{model}/")}),
    )
    pinned = pinned_spec(spec, parent)
    if store.head(key) is not None:
        return RetrainingOutcome(False, f"already started for {report.window}", key)
    # The spec and sources first (a run that died before the CSV is redone whole): the
    # CSV is what the trigger trains, and it must find them. The CSV is written
    # create-only: the same window's verdict delivered twice assembles and trains once.
    store.put(
        key.removesuffix(".csv") + ".sources.json",
        msgspec.json.format(msgspec.json.encode(sources), indent=2),
        content_type="application/json",
    )
    store.put(
        dataset_spec_key(key),
        msgspec.json.encode(spec_to_dict(pinned)),
        content_type="application/json",
    )
    try:
        store.put(key, body, if_none_match=True, content_type="text/csv")
    except PreconditionFailed:
        return RetrainingOutcome(False, f"already started for {report.window}", key)
    record_event_once(
        store,
        model,
        "retraining_started",
        at=end,
        dedupe=report.window,
        window=report.window,
        verdict=report.verdict,
        data_key=key,
        parent_version=parent_version,
        base_key=base.key,
        base_rows=base_rows,
        labelled_rows=len(labelled),
    )
    return RetrainingOutcome(True, f"{why}: {base_rows} + {len(labelled)} labelled rows", key)
