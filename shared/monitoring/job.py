"""The monitoring check of one model over one window: read, decide, write.

    captures of the window -> counts per version (against each version's baseline)
    labels + captures of the label window -> labelled rows per version -> metrics
    -> verdict per version and for the window (assessment.py, pure)
    -> monitoring/<model>/<window>.json and .html; an audit record when the verdict changes

Streaming: one capture file is decoded, counted and dropped at a time, so memory follows
the largest file, not the window. A corrupt capture or label file is reported by name
and skipped. The same window checked twice gives the same bytes and no second record.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from shared.data.spec import MonitoringSettings, load_spec
from shared.errors import MlopsError, ObjectNotFound
from shared.monitoring import html
from shared.monitoring.assessment import assess_version, window_verdict
from shared.monitoring.capture import (
    CAPTURE_SCHEMA_VERSION,
    CaptureRow,
    decode_capture_file,
    partition_prefix,
)
from shared.monitoring.decoding import DICT_ACCESS, CaptureDecoder, FeatureAccess
from shared.monitoring.file_summary import CaptureSummary
from shared.monitoring.labels import LabelFileError, Labels, labels_prefix, parse_labels
from shared.monitoring.performance import LabelledRow, measure
from shared.monitoring.report import (
    DriftReport,
    FileProblem,
    HistoryPoint,
    LabelSummary,
    Performance,
    ShadowComparison,
    decode_report,
    encode_report,
    parse_window_id,
    report_key,
    report_prefix,
    window_id,
)
from shared.monitoring.schema import check_schema
from shared.monitoring.summary import (
    Baseline,
    WindowCounts,
    finished,
    merge_windows,
    summarise,
)
from shared.monitoring.summary_reading import SummaryReader
from shared.registry.audit import record_event_once
from shared.registry.metadata import decode_metadata
from shared.registry.records import RegistryRecord, version_prefix
from shared.registry.registry import ModelRegistry, list_models
from shared.store.base import ObjectInfo, ObjectStore
from shared.store.fetch import fetch_in_order

logger = logging.getLogger(__name__)

HISTORY_POINTS = 24  # earlier windows drawn in the trend plots

Progress = Callable[[int, int], None]  # (files done, files in all)


@dataclass(frozen=True)
class CheckOutcome:
    """What one check did."""

    model: str
    window: str
    verdict: str
    rows: int
    report_key: str
    written: bool  # False: the stored report already said exactly this
    verdict_recorded: bool  # an audit record of a changed verdict was written


class _SlimRow(msgspec.Struct, kw_only=True):
    """What the labels join needs of a capture row (the features are skipped unread)."""

    schema_version: int = CAPTURE_SCHEMA_VERSION
    capture_id: str
    row: int
    request_id: str
    version: int
    role: str = "served"
    prediction: int | float | str | None
    probabilities: dict[str, float] | None = None


@dataclass
class _Baselines:
    """Each version's baseline, read once per check (None: its metadata is unreadable)."""

    store: ObjectStore
    model: str
    found: dict[int, Baseline | None] = field(default_factory=dict)

    def get(self, version: int) -> Baseline | None:
        if version not in self.found:
            try:
                body = self.store.get(version_prefix(self.model, version) + "metadata.json").body
                self.found[version] = Baseline(decode_metadata(body))
            except (ObjectNotFound, msgspec.DecodeError) as exc:
                logger.warning("no baseline for %s v%s: %s", self.model, version, exc)
                self.found[version] = None
        return self.found[version]


def last_complete_window(now: datetime, hours: int) -> datetime:
    """The start of the latest window of `hours` that has ended by `now` (windows are
    aligned to multiples of `hours` since the epoch, so each hour belongs to one window)."""
    epoch_hours = int(now.astimezone(UTC).timestamp() // 3600)
    end = epoch_hours - epoch_hours % hours
    return datetime.fromtimestamp((end - hours) * 3600, UTC)


def capture_files(
    store: ObjectStore, model: str, start: datetime, end: datetime
) -> list[ObjectInfo]:
    """The capture objects of the hours in [start, end), in key order."""
    files: list[ObjectInfo] = []
    hour = start
    while hour < end:
        files.extend(store.list(partition_prefix(model, hour)))
        hour += timedelta(hours=1)
    return files


def _read_labels(
    store: ObjectStore,
    model: str,
    target: str,
    problems: list[FileProblem],
    since: datetime | None = None,
) -> Labels:
    labels = Labels()
    # A label names a row captured before the file was uploaded: a file uploaded before
    # `since` (the label window's start) can only name rows outside the window.
    infos = sorted(
        (i for i in store.list(labels_prefix(model)) if since is None or i.last_modified >= since),
        key=lambda i: (i.last_modified, i.key),
    )
    for info in infos:
        try:
            labels.add(parse_labels(store.get(info.key).body, info.key, target))
        except LabelFileError as exc:
            problems.append(FileProblem(key=info.key, error=str(exc)))
            # Once per uploaded object: its ETag is in the dedupe key.
            record_event_once(
                store,
                model,
                "labels_rejected",
                at=info.last_modified,
                dedupe=f"{info.key}\n{info.etag}",
                key=info.key,
                reason=str(exc),
            )
    return labels


def _slim_rows(body: bytes, key: str) -> Iterator[_SlimRow]:
    decoder = msgspec.json.Decoder(_SlimRow)
    try:
        text = gzip.decompress(body)
    except (OSError, EOFError) as exc:
        raise MlopsError(f"{key}: not a gzip file ({exc})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                row = decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise MlopsError(f"{key} line {number}: {str(exc)[:200]}") from None
            check_schema("capture", row.schema_version, CAPTURE_SCHEMA_VERSION, key)
            yield row


@dataclass
class _Join:
    """Captured rows of the label window by (request id, row), for the labels to meet."""

    wanted: dict[tuple[str, int], str] = field(default_factory=dict)
    answered: dict[tuple[str, int], list[tuple[str, int, object, dict[str, float] | None]]] = field(
        default_factory=dict
    )

    def add(self, row: Any) -> None:
        # Only rows a label names are kept: memory follows the labels, not the traffic.
        if row.role != "served" or (row.request_id, row.row) not in self.wanted:
            return
        self.answered.setdefault((row.request_id, row.row), []).append(
            (row.capture_id, row.version, row.prediction, row.probabilities)
        )


@dataclass
class _ShadowPairs:
    """Shadow rows paired with the served rows of the same request (same capture id, row)."""

    # (shadow version, served version) -> [pairs, summed agreement or absolute difference]
    agree: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)
    labelled: dict[tuple[int, int], tuple[list[LabelledRow], list[LabelledRow]]] = field(
        default_factory=dict
    )

    def add_file(
        self, rows: list[Any], labels: Labels, regression: bool, *, agreement: bool = True
    ) -> None:
        """Pair a file's shadow rows; without `agreement`, only the labelled pairs (the
        rest came from the file's summary)."""
        served = {(r.capture_id, r.row): r for r in rows if r.role == "served"}
        for shadow in rows:
            if shadow.role != "shadow":
                continue
            if agreement:
                self.rows[shadow.version] = self.rows.get(shadow.version, 0) + 1
            answer = served.get((shadow.capture_id, shadow.row))
            if answer is None:
                continue
            pair = (shadow.version, answer.version)
            if regression:
                try:
                    score = abs(float(shadow.prediction) - float(answer.prediction))
                except (TypeError, ValueError):  # a null or non-numeric prediction: no pair
                    continue
            else:
                score = float(str(shadow.prediction) == str(answer.prediction))
            if agreement:
                scores = self.agree.setdefault(pair, [0, 0.0])
                scores[0] += 1
                scores[1] += score
            label = labels.values.get((shadow.request_id, shadow.row))
            if label is not None:
                mine, theirs = self.labelled.setdefault(pair, ([], []))
                mine.append(LabelledRow(label, shadow.prediction, shadow.probabilities))
                theirs.append(LabelledRow(label, answer.prediction, answer.probabilities))

    def add_summary(self, summary: CaptureSummary) -> None:
        """A summarised object's shadow rows (it has no labelled row, or it would be read)."""
        for version, rows in summary.shadow_rows.items():
            self.rows[version] = self.rows.get(version, 0) + rows
        for pair in summary.shadow_pairs:
            scores = self.agree.setdefault((pair.version, pair.served_version), [0, 0.0])
            scores[0] += pair.paired
            scores[1] += pair.score_sum

    def comparisons(
        self, baselines: _Baselines, settings: MonitoringSettings
    ) -> list[ShadowComparison]:
        out = []
        for (version, served), (paired, total) in sorted(self.agree.items()):
            shadow_base, served_base = baselines.get(version), baselines.get(served)
            regression = shadow_base is not None and shadow_base.metadata.task == "regression"
            mean = round(total / paired, 6) if paired else None
            mine, theirs = self.labelled.get((version, served), ([], []))
            out.append(
                ShadowComparison(
                    version=version,
                    served_version=served,
                    rows=self.rows.get(version, 0),
                    paired_rows=int(paired),
                    agreement=None if regression else mean,
                    mean_abs_difference=mean if regression else None,
                    labelled_rows=len(mine),
                    performance=measure(shadow_base.metadata, mine, settings)
                    if shadow_base is not None and mine
                    else None,
                    served_performance=measure(served_base.metadata, theirs, settings)
                    if served_base is not None and theirs
                    else None,
                )
            )
        return out


def _decoder_for(
    record: RegistryRecord, baselines: _Baselines, *, with_ids: bool
) -> CaptureDecoder | None:
    """A decoder typed for the features of the versions the aliases name (None: no alias)."""
    kinds: dict[str, str] = {}
    for version in sorted(set(record.aliases.values())):
        baseline = baselines.get(version)
        for feature in baseline.metadata.features if baseline is not None else ():
            # A name that is numeric in one version and categorical in another takes any value.
            kinds[feature.name] = (
                feature.kind if kinds.get(feature.name, feature.kind) == feature.kind else "any"
            )
    return CaptureDecoder(kinds, with_ids=with_ids) if kinds else None


def _decode(
    decoder: CaptureDecoder | None, body: bytes, key: str, baselines: _Baselines
) -> tuple[list[Any], FeatureAccess]:
    """A file's rows, typed when the decoder knows every feature of their versions."""
    if decoder is not None:
        rows = decoder.decode(body, key)
        known = set(decoder.fields)
        covered = True
        for version in {row.version for row in rows}:
            baseline = baselines.get(version)
            if baseline is not None and any(
                f.name not in known for f in baseline.metadata.features
            ):
                covered = False
        if covered:
            return rows, decoder
    # A version no alias names any more, with features the decoder does not know.
    return list(decode_capture_file(body, key)), DICT_ACCESS


def _join(labels: Labels, join: _Join) -> tuple[dict[int, list[LabelledRow]], LabelSummary]:
    by_version: dict[int, list[LabelledRow]] = {}
    matched = unmatched = ambiguous = 0
    for key, label in labels.values.items():
        answers = join.answered.get(key, [])
        if not answers:
            unmatched += 1
            continue
        if len({capture_id for capture_id, *_ in answers}) > 1:
            ambiguous += 1
            continue
        _, version, prediction, probabilities = answers[0]
        by_version.setdefault(version, []).append(
            LabelledRow(
                label=label,
                prediction=prediction,  # type: ignore[arg-type]
                probabilities=probabilities,
            )
        )
        matched += 1
    summary = LabelSummary(
        files=labels.files,
        labels=len(labels.values),
        matched=matched,
        unmatched=unmatched,
        ambiguous=ambiguous,
        duplicates=labels.duplicates,
    )
    return by_version, summary


def _history(store: ObjectStore, model: str, window: str) -> list[HistoryPoint]:
    keys = [
        info.key
        for info in store.list(report_prefix(model))
        if info.key.endswith(".json") and info.key < report_key(model, window)
    ]
    points: list[HistoryPoint] = []
    for key in keys[-(HISTORY_POINTS - 1) :]:
        try:
            report = decode_report(store.get(key).body, key)
        except (msgspec.DecodeError, ObjectNotFound):
            continue
        points.append(_point(report))
    return points


def _point(report: DriftReport) -> HistoryPoint:
    main = max(report.versions, key=lambda v: v.rows, default=None)
    performance = main.performance if main is not None else None
    return HistoryPoint(
        window=report.window,
        verdict=report.verdict,
        rows=report.rows,
        drift_share=main.drift_share if main is not None else 0.0,
        metric=performance.metric if performance is not None else None,
        metric_value=performance.value if performance is not None else None,
    )


def check_model(
    store: ObjectStore,
    model: str,
    window: str | None = None,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> CheckOutcome:
    """Check `model` over `window` (default: the last complete one) and store the report."""
    spec, _ = load_spec(store, model)
    settings: MonitoringSettings = spec.monitoring
    if window is None:
        start = last_complete_window(now or datetime.now(UTC), settings.window_hours)
        window = window_id(start, settings.window_hours)
    start, end = parse_window_id(window)
    problems: list[FileProblem] = []
    baselines = _Baselines(store, model)

    target = spec.target
    record, etag = ModelRegistry(store, model).read()
    if etag is not None and "production" in record.aliases:
        production = baselines.get(record.aliases["production"])
        if production is not None:
            target = production.metadata.target
    label_start = min(start, end - timedelta(hours=settings.label_window_hours))
    labels = _read_labels(store, model, target, problems, since=label_start)

    in_window = capture_files(store, model, start, end)
    earlier = capture_files(store, model, label_start, start) if labels.values else []
    total = len(in_window) + len(earlier)
    join = _Join(wanted=labels.values)
    counts = WindowCounts()
    shadowing = spec.shadow.enabled
    pairs = _ShadowPairs()
    served = record.aliases.get("production")
    production = baselines.get(served) if shadowing and served is not None else None
    regression = production is not None and production.metadata.task == "regression"
    # Most objects are counted from their summaries; the rest are read row by row below.
    summaries = SummaryReader(
        labelled_requests={rid for rid, _ in labels.values}, baseline_of=baselines.get
    )
    window_keys = {info.key for info in in_window}
    used = 0
    for info, summary in summaries.read(store, [*earlier, *in_window]):
        if info.key in window_keys:
            used += 1
            counts = merge_windows(counts, summary.counts)
            if shadowing:
                pairs.add_summary(summary)
        if progress is not None:
            progress(summaries.done, total)
    done = summaries.done
    # Rows read for the labels join only: objects of the label window before this one, and
    # objects counted from their summaries whose rows a label names.
    joined = summaries.unread | summaries.to_join
    for_join = [i.key for i in earlier if i.key in joined]
    for_join += [i.key for i in in_window if i.key in summaries.to_join]
    for key, body in fetch_in_order(store, for_join):
        try:
            if isinstance(body, Exception):
                raise body
            slim = list(_slim_rows(body, key))
        except MlopsError as exc:
            problems.append(FileProblem(key=key, error=str(exc)[:300]))
        else:
            for row in slim:
                join.add(row)
            if shadowing and key in window_keys:  # its pairs' agreement is in its summary
                pairs.add_file(slim, labels, regression, agreement=False)
        if key not in summaries.to_join:
            done += 1
            if progress is not None:
                progress(done, total)
    raw_in_window = [i for i in in_window if i.key in summaries.unread]
    decoder = _decoder_for(record, baselines, with_ids=bool(labels.values) or shadowing)
    for key, body in fetch_in_order(store, [i.key for i in raw_in_window]):
        try:
            if isinstance(body, Exception):
                raise body
            rows, access = _decode(decoder, body, key, baselines)
            versions = {row.version for row in rows}
            part = summarise(rows, {v: baselines.get(v) for v in versions}, access)
        except (MlopsError, ValueError, TypeError) as exc:
            # A line that decodes but holds values of the wrong kind (a string where the
            # task predicts numbers) makes the file unusable, not the check.
            problems.append(FileProblem(key=key, error=str(exc)[:300]))
        else:
            counts = merge_windows(counts, part)
            if shadowing:
                pairs.add_file(rows, labels, regression)
            if labels.values:
                for row in rows:
                    join.add(row)
        done += 1
        if progress is not None:
            progress(done, total)

    counts = finished(counts)
    labelled, label_summary = _join(labels, join)
    performances: dict[int, Performance] = {}
    for version, rows_of_version in labelled.items():
        baseline = baselines.get(version)
        if baseline is not None:
            performances[version] = measure(baseline.metadata, rows_of_version, settings)
    sections = []
    # Only versions that answered in this window are judged: labelled rows of a version
    # that no longer serves must not keep the window in decay (nor retrain again and again).
    for version in sorted(counts.versions):
        baseline = baselines.get(version)
        if baseline is None:
            continue
        version_counts = counts.versions[version]
        sections.append(
            assess_version(baseline, version_counts, performances.get(version), settings)
        )
    verdict = window_verdict(sections)
    reasons = [f"v{s.version}: {reason}" for s in sections for reason in s.reasons]
    if not sections:
        reasons.append(f"no captured rows between {start:%Y-%m-%d %H:%M} and {end:%H:%M} UTC")
    if counts.unknown_version_rows:
        reasons.append(f"{counts.unknown_version_rows} rows of versions with no readable metadata")
    key = report_key(model, window)
    report = DriftReport(
        model=model,
        window=window,
        start=start.isoformat(),
        end=end.isoformat(),
        verdict=verdict,
        reasons=reasons,
        rows=counts.rows,
        capture_files=len(in_window),
        skipped_files=sorted(problems, key=lambda p: p.key),
        labels=label_summary,
        versions=sections,
        history=[],
        settings=msgspec.to_builtins(settings),
        shadows=pairs.comparisons(baselines, settings),
        summarised_files=used,
        summary_problems=sorted(summaries.problems, key=lambda p: p.key),
    )
    history = [*_history(store, model, window), _point(report)]
    report = msgspec.structs.replace(report, history=history)
    return _store_report(store, report, key)


def _store_report(store: ObjectStore, report: DriftReport, key: str) -> CheckOutcome:
    body = encode_report(report)
    try:
        existing = store.get(key).body
    except ObjectNotFound:
        existing = None
    if existing is not None:
        # A newer code version's report is refused here, before anything is rewritten.
        decode_report(existing, key)
    written = existing != body
    if written:
        store.put(
            report_key(report.model, report.window, "html"),
            html.render_report(report).encode(),
            content_type="text/html; charset=utf-8",
        )
        store.put(key, body, content_type="application/json")
    recorded = False
    earlier = report.history[-2] if len(report.history) >= 2 else None
    changed = earlier is None or earlier.verdict != report.verdict
    # Deduplicated by (window, verdict): a retry after a delivery that died between the
    # report and the record still records the change, and a re-check adds nothing.
    if changed:
        recorded = record_event_once(
            store,
            report.model,
            "verdict_changed",
            at=datetime.fromisoformat(report.end),
            dedupe=f"{report.window}\n{report.verdict}",
            window=report.window,
            verdict=report.verdict,
            previous=earlier.verdict if earlier is not None else None,
            reasons=report.reasons[:10],
        )
    return CheckOutcome(
        model=report.model,
        window=report.window,
        verdict=report.verdict,
        rows=report.rows,
        report_key=key,
        written=written,
        verdict_recorded=recorded,
    )


def labelled_captures(
    store: ObjectStore, model: str, start: datetime, end: datetime, target: str
) -> list[tuple[CaptureRow, str]]:
    """Served rows captured in [start, end) that a label names unambiguously, with it.

    Maintenance scores such rows with two versions; a row carries its inputs and its
    label, and an ambiguous or unmatched label is left out, as in the check.
    """
    labels = _read_labels(store, model, target, [], since=start)
    if not labels.values:
        return []
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    files = capture_files(store, model, hour, end)
    # Only objects whose summaries list a labelled request (or that have none) are read.
    summaries = SummaryReader(
        labelled_requests={rid for rid, _ in labels.values},
        baseline_of=_Baselines(store, model).get,
    )
    for _ in summaries.read(store, files):
        pass
    found: dict[tuple[str, int], list[CaptureRow]] = {}
    wanted = summaries.unread | summaries.to_join
    unread = [info.key for info in files if info.key in wanted]
    for object_key, body in fetch_in_order(store, unread):
        try:
            if isinstance(body, Exception):
                raise body
            rows = decode_capture_file(body, object_key)
        except MlopsError as exc:
            logger.warning("skipping %s: %s", object_key, exc)
            continue
        for row in rows:
            key = (row.request_id, row.row)
            if row.role == "served" and key in labels.values and start <= row.captured_at < end:
                found.setdefault(key, []).append(row)
    return [
        (rows[0], labels.values[key])
        for key, rows in sorted(found.items())
        if len({r.capture_id for r in rows}) == 1
    ]


def has_traffic(store: ObjectStore, model: str, start: datetime, end: datetime) -> bool:
    """Whether `model` has a capture object in [start, end) (one listing per hour)."""
    hour = start
    while hour < end:
        if next(iter(store.list(partition_prefix(model, hour))), None) is not None:
            return True
        hour += timedelta(hours=1)
    return False


def check_all(store: ObjectStore, now: datetime | None = None) -> list[CheckOutcome]:
    """The scheduled run: every model with traffic in its last complete window.

    A model whose check fails is recorded (`monitoring_failed`) and the others go on.
    """
    now = now or datetime.now(UTC)
    outcomes = []
    for model in list_models(store):
        try:
            spec, _ = load_spec(store, model)
            hours = spec.monitoring.window_hours
            start = last_complete_window(now, hours)
            end = start + timedelta(hours=hours)
            if not has_traffic(store, model, start, end):
                continue
            outcomes.append(check_model(store, model, window_id(start, hours)))
        except Exception as exc:  # one model's failure must not stop the others' checks
            logger.exception("monitoring %s failed", model)
            record_event_once(
                store,
                model,
                "monitoring_failed",
                at=now,
                dedupe=f"{now:%Y%m%dT%H}\n{exc}",
                reason=str(exc)[:500],
            )
    return outcomes
