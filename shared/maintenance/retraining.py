"""Retraining: a new training set, assembled from labelled traffic and uploaded.

A retraining starts when a window's verdict is one the spec's `retraining.on` lists (at
most one per `min_interval_hours`), or on a schedule whatever the verdict (`every_hours`,
so that a version that is merely "ok" meets a fresh rival); never on a `data_problem`
window unless listed, since a set of a broken feed teaches the bug. The new set is, by
default, a sliding window: the labelled captured rows of the label window (a row carries
its inputs and its label; no unlabelled row is used), without the parent's old rows
(`keep_base_rows` carries some or all of them over, without adding a row twice). The
newest `holdback_fraction` of the rows the parent never saw is held back: the challenger
and production are judged on them. The set is written as
``datasets/<model>/retrain-<window>.csv`` so that the ordinary trigger trains it, with,
beside it, the spec it trains under (the parent's task, target, features and categorical
columns pinned: a CSV re-read could infer them differently) and ``.sources.json`` naming
every source. Its version then meets the quality gate and the challenger rule like any
other. One retraining per window (create-only writes): it cannot retrain in a tight loop.
"""

from __future__ import annotations

import csv
import io
import math
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
from shared.maintenance.sources import RetrainingSources, read_sources, sources_key
from shared.monitoring.capture import CaptureRow
from shared.monitoring.job import labelled_captures
from shared.monitoring.performance import usable_label
from shared.monitoring.report import MONITORING_PREFIX, DriftReport, parse_window_id
from shared.registry.audit import record_event_once
from shared.registry.metadata import ModelMetadata, decode_metadata
from shared.registry.records import version_prefix
from shared.registry.registry import ModelRegistry
from shared.serving.runtime import sha256_hex
from shared.store.base import ObjectStore

RETRAIN_PREFIX = "retrain-"


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
    data_problem_since: datetime | None = None,
) -> tuple[bool, str]:
    """Whether this window should start a retraining, and why (pure).

    `data_problem_since`: the start of the first window of the current run of
    `data_problem` verdicts (None: not known, or not in one).
    """
    if not settings.enabled:
        return False, "retraining is disabled in the spec"
    since = [s for s in earlier_starts if s <= window_start]
    last = max(since, default=None)
    interval = timedelta(hours=settings.min_interval_hours)
    recent = last is not None and window_start - interval < last
    if verdict in settings.on:
        if recent:
            return False, (
                f"a retraining started for the window of {last:%Y-%m-%d %H:00}, less than "
                f"{settings.min_interval_hours} h before this one"
            )
        return True, f"verdict {verdict}"
    if verdict == "data_problem":
        hold = settings.data_problem_hold_hours
        if hold is None or data_problem_since is None:
            return False, "verdict data_problem: fix the feed; a set of it would teach the bug"
        lasted = window_start - data_problem_since
        if lasted < timedelta(hours=hold):
            return False, (
                f"verdict data_problem since the window of {data_problem_since:%Y-%m-%d %H:00}: "
                f"fix the feed; if it stays so for {hold} h, the model learns it as it is"
            )
        if recent:
            return False, (
                f"a retraining started for the window of {last:%Y-%m-%d %H:00}, less than "
                f"{settings.min_interval_hours} h before this one"
            )
        return True, (
            f"the data problem has lasted since the window of {data_problem_since:%Y-%m-%d %H:00}"
            f" ({hold} h or more): the feed is taken as it is now"
        )
    if settings.every_hours is None:
        return False, f"verdict {verdict} is not one of {settings.on}"
    if last is not None and window_start - timedelta(hours=settings.every_hours) < last:
        return False, (
            f"verdict {verdict}; the last challenger was retrained for the window of "
            f"{last:%Y-%m-%d %H:00}, less than {settings.every_hours} h before this one"
        )
    return True, f"scheduled: no challenger retrained in the {settings.every_hours} h before"


class DataProblemRun(msgspec.Struct, frozen=True, kw_only=True):
    """Since when a model's windows have been `data_problem` (``data-problem.json``)."""

    since: str | None  # the first window's start, ISO; None: the run ended
    window: str | None = None


def data_problem_key(model: str) -> str:
    """Where the current run of `data_problem` windows of `model` is remembered."""
    return f"{MONITORING_PREFIX}{model}/data-problem.json"


def data_problem_since(
    store: ObjectStore, model: str, verdict: str, start: datetime, window: str
) -> datetime | None:
    """Track the run of `data_problem` windows (written only when it starts or ends) and
    return when the current one started (None: not in one)."""
    key = data_problem_key(model)
    try:
        run = msgspec.json.decode(store.get(key).body, type=DataProblemRun)
    except ObjectNotFound:
        run = DataProblemRun(since=None)
    if verdict == "data_problem":
        if run.since is None:
            run = DataProblemRun(since=start.isoformat(), window=window)
            store.put(key, msgspec.json.encode(run), content_type="application/json")
        return datetime.fromisoformat(run.since) if run.since else None
    if verdict in ("ok", "drift", "decay") and run.since is not None:
        # A window that is not a data problem ends the run; too few rows says nothing.
        store.put(
            key, msgspec.json.encode(DataProblemRun(since=None)), content_type="application/json"
        )
    return None


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
    base: bytes | None,
    parent: ModelMetadata,
    rows: list[tuple[CaptureRow, str]],
    keep_base_rows: int | None = None,
) -> tuple[bytes, int]:
    """The base CSV (its last `keep_base_rows` rows; none when `base` is None: the header is
    then the parent's features and target) with the labelled rows appended in its columns
    (pure); returns (bytes, base rows kept)."""
    if base is None:
        header = [*(f.name for f in parent.features), parent.target]
        body: list[list[str]] = []
    else:
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
    sources = read_sources(store, base_key)
    return set(sources.captured) if sources is not None else set()


def hold_back(
    rows: list[tuple[CaptureRow, str]], parent_saw: set[str], fraction: float
) -> tuple[list[tuple[CaptureRow, str]], list[tuple[CaptureRow, str]]]:
    """(rows to train on, rows held back): the newest `fraction` of the rows the parent
    never saw is held back, to judge the new version and the parent on (pure)."""
    fresh = [r for r in rows if r[0].row_id not in parent_saw]
    count = math.floor(len(fresh) * fraction)
    order = sorted(fresh, key=_arrival)
    newest = order[len(order) - count :] if count else []
    held = {(r.capture_id, r.row) for r, _ in newest}
    kept = [r for r in rows if (r[0].capture_id, r[0].row) not in held]
    return kept, newest


def _arrival(pair: tuple[CaptureRow, str]) -> tuple[datetime, str, int]:
    row = pair[0]
    return row.captured_at, row.capture_id, row.row


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
    """Start a retraining for this window if the spec says so (idempotent)."""
    model = report.model
    spec, _ = load_spec(store, model)
    settings = spec.retraining
    start, end = parse_window_id(report.window)
    run_since = data_problem_since(store, model, report.verdict, start, report.window)
    go, why = due(report.verdict, start, _earlier_starts(store, model), settings, run_since)
    if not go:
        return RetrainingOutcome(False, why)
    # A scheduled retraining that finds too little to learn from says so without a record:
    # every hourly check of a quiet model would otherwise add one.
    scheduled = report.verdict not in settings.on and report.verdict != "data_problem"
    record = ModelRegistry(store, model).load()
    parent_version = record.aliases.get("production")
    if parent_version is None:
        return RetrainingOutcome(False, "no production version to retrain from")
    prefix = version_prefix(model, parent_version)
    parent = decode_metadata(store.get(prefix + "metadata.json").body)
    base_body: bytes | None = None
    base_etag = parent.lineage.data.etag
    if settings.keep_base_rows != 0:
        base = store.get(parent.lineage.data.key)
        if sha256_hex(base.body) != parent.lineage.data.sha256:
            # The key was overwritten since: these are not the bytes the parent learnt from.
            note = (
                f"{base.key} changed since v{parent_version} trained on it (sha256 differs): "
                "not retrained from different data"
            )
            return _skipped(store, report, end, "base-changed", note)
        base_body, base_etag = base.body, base.etag
    label_start = end - timedelta(hours=spec.monitoring.label_window_hours)
    included = _already_included(store, parent.lineage.data.key)
    usable = [
        (row, label)
        for row, label in labelled_captures(store, model, label_start, end, parent.target)
        # A label that is no class of the parent (a typo) must not become a new class.
        if usable_label(parent, label)
    ]
    new = [(row, label) for row, label in usable if row.row_id not in included]
    if not new:
        note = "no new labelled captured rows to learn from: nothing retrained"
        if scheduled:
            return RetrainingOutcome(False, note)
        return _skipped(store, report, end, "no-labels", note)
    # A sliding window learns from every labelled row of the label window; carried-over
    # rows already hold the ones the parent's set had, which must not be added twice.
    candidates = usable if settings.keep_base_rows == 0 else new
    minimum = spec.monitoring.min_labelled_rows
    if settings.keep_base_rows == 0 and len(candidates) < minimum:
        note = (
            f"{len(candidates)} labelled captured rows in the label window; a set of them "
            f"alone needs at least {minimum} (monitoring.min_labelled_rows): nothing retrained"
        )
        if scheduled:
            return RetrainingOutcome(False, note)
        return _skipped(store, report, end, "few-labels", note)
    rows, held = hold_back(candidates, included, settings.holdback_fraction)
    body, base_rows = assemble(base_body, parent, rows, settings.keep_base_rows)
    key = retraining_key(model, report.window)
    appended = {row.row_id for row, _ in rows}
    sources = RetrainingSources(
        model=model,
        window=report.window,
        verdict=report.verdict,
        reason=why,
        parent_version=parent_version,
        base_key=parent.lineage.data.key,
        base_etag=base_etag,
        base_sha256=parent.lineage.data.sha256,
        base_rows=base_rows,
        label_window=[label_start.isoformat(), end.isoformat()],
        labelled_rows=len(rows),
        captured=sorted(appended if settings.keep_base_rows == 0 else included | appended),
        label_files=sorted({i.key for i in store.list(f"labels/{model}/")}),
        held_back=[row.row_id for row, _ in held],
        csv_sha256=sha256_hex(body),
        held_back_range=[held[0][0].at, held[-1][0].at] if held else [],
    )
    pinned = pinned_spec(spec, parent)
    if store.head(key) is not None:
        return RetrainingOutcome(False, f"already started for {report.window}", key)
    # The spec and sources first (a run that died before the CSV is redone whole): the
    # CSV is what the trigger trains, and it must find them. The CSV is written
    # create-only: the same window's verdict delivered twice assembles and trains once.
    store.put(
        sources_key(key),
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
        reason=why,
        data_key=key,
        parent_version=parent_version,
        base_key=parent.lineage.data.key,
        base_rows=base_rows,
        labelled_rows=len(rows),
        held_back_rows=len(held),
    )
    detail = f"{base_rows} + {len(rows)} labelled rows, {len(held)} newest held back"
    return RetrainingOutcome(True, f"{why}: {detail}", key)
