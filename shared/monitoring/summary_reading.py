"""Which capture objects a check (or maintenance) may count from their summaries.

An object is counted from its summary when one is listed beside it, decodes, is not newer
than this code, was counted by this code's rules, names the object and agrees with the
listing's size, and its counts fit the baselines they claim (bins, features, kinds,
totals). Every other object goes to `unread`, for its caller to count from its rows; a
summary that could not be used is named in `problems` (the report's `summary_problems`),
its object never lost. An object counted from its summary whose served rows a label names
goes to `to_join` as well: its rows are read for the labels join only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import msgspec

from shared.data.profile import PROBABILITY_EDGES
from shared.errors import MlopsError, ObjectNotFound
from shared.monitoring.file_summary import (
    CaptureSummary,
    capture_key_of,
    decode_summary,
    names_any,
    summary_partition,
)
from shared.monitoring.report import FileProblem
from shared.monitoring.summary import (
    COUNTING_RULES,
    MAX_TRACKED_CATEGORIES,
    Baseline,
    CategoricalCounts,
    NumericCounts,
    VersionCounts,
    WindowCounts,
)
from shared.store.base import ObjectInfo, ObjectStore
from shared.store.fetch import fetch_in_order


def _version_problem(counts: VersionCounts, baseline: Baseline) -> str | None:
    """Why one version's counts cannot be the counts of rows against `baseline`."""
    meta = baseline.metadata
    rows = counts.rows
    if rows < 0 or list(counts.features) != [f.name for f in meta.features]:
        return f"v{counts.version}: not the features of its metadata"
    for feature in meta.features:
        found = counts.features[feature.name]
        if feature.kind == "numeric":
            bins = len(baseline.numeric(feature.name).edges) + 1
            if not isinstance(found, NumericCounts) or len(found.counts) != bins:
                return f"v{counts.version}: {feature.name!r} not counted in its {bins} bins"
            present = rows - found.missing
            if min(found.counts, default=0) < 0 or sum(found.counts) != present:
                return f"v{counts.version}: {feature.name!r} counts do not add up to its rows"
            if not (0 <= found.below <= present and 0 <= found.above <= present):
                return f"v{counts.version}: {feature.name!r} out-of-range counts past its rows"
        else:
            if not isinstance(found, CategoricalCounts):
                return f"v{counts.version}: {feature.name!r} not counted by category"
            total = sum(found.counts.values()) + found.missing + found.overflow
            if len(found.counts) > MAX_TRACKED_CATEGORIES or total != rows:
                return f"v{counts.version}: {feature.name!r} counts do not add up to its rows"
            if min(found.counts.values(), default=0) < 0 or min(found.missing, found.overflow) < 0:
                return f"v{counts.version}: {feature.name!r} has a negative count"
    predicted = counts.predictions
    if meta.task == "classification":
        classes = {str(c) for c in meta.classes or []}
        bins = len(PROBABILITY_EDGES) + 1
        if sum(predicted.class_counts.values()) != rows or not set(
            predicted.probability_counts
        ) <= (classes):
            return f"v{counts.version}: predictions do not add up to its rows"
        for histogram in predicted.probability_counts.values():
            if len(histogram) != bins or min(histogram) < 0 or sum(histogram) > rows:
                return f"v{counts.version}: probabilities not counted in their {bins} bins"
    else:
        bins = len(meta.baseline.predictions.edges) + 1
        values = predicted.value_counts
        if len(values) != bins or min(values) < 0 or sum(values) > rows:
            return f"v{counts.version}: predicted values not counted in their {bins} bins"
    return None


def fitted(
    counts: WindowCounts, baseline_of: Callable[[int], Baseline | None]
) -> tuple[WindowCounts, str | None]:
    """`counts` checked against each version's baseline: (counts, None) when they fit,
    with the rows of a version whose metadata cannot be read moved to
    `unknown_version_rows` (as the check counts such rows); else (counts, why not)."""
    if counts.files != 1 or counts.unknown_version_rows != 0:
        return counts, "not the counts of one object"
    if counts.rows != sum(v.rows for v in counts.versions.values()):
        return counts, "its versions' rows do not add up to its rows"
    kept: dict[int, VersionCounts] = {}
    unknown = 0
    for number, version in counts.versions.items():
        if version.version != number:
            return counts, f"v{number}: counts of v{version.version}"
        baseline = baseline_of(number)
        if baseline is None:
            unknown += version.rows
            continue
        problem = _version_problem(version, baseline)
        if problem is not None:
            return counts, problem
        kept[number] = version
    return msgspec.structs.replace(counts, versions=kept, unknown_version_rows=unknown), None


@dataclass
class SummaryReader:
    """Reads the summaries of some capture objects, sorting out those to read row by row."""

    labelled_requests: set[str]
    baseline_of: Callable[[int], Baseline | None]
    unread: set[str] = field(default_factory=set)  # capture keys to count from their rows
    to_join: set[str] = field(default_factory=set)  # counted here; rows read for labels
    problems: list[FileProblem] = field(default_factory=list)
    done: int = 0  # objects counted from their summary

    def read(
        self, store: ObjectStore, files: Sequence[ObjectInfo]
    ) -> Iterator[tuple[ObjectInfo, CaptureSummary]]:
        """The usable summaries of `files` (capture objects), in the order of `files`."""
        listed: dict[str, ObjectInfo] = {}
        for partition in sorted({info.key.rsplit("/", 1)[0] + "/" for info in files}):
            for info in store.list(summary_partition(partition)):
                listed[capture_key_of(info.key)] = info
        by_capture = {info.key: info for info in files}
        self.unread.update(info.key for info in files if info.key not in listed)
        keys = [listed[info.key].key for info in files if info.key in listed]
        for key, body in fetch_in_order(store, keys):
            capture = by_capture[capture_key_of(key)]
            summary = self._usable(key, body, capture)
            if summary is None:
                self.unread.add(capture.key)
                continue
            if names_any(summary, self.labelled_requests):
                self.to_join.add(capture.key)
            self.done += 1
            yield capture, summary

    def _usable(
        self, key: str, body: bytes | Exception, capture: ObjectInfo
    ) -> CaptureSummary | None:
        if isinstance(body, ObjectNotFound):
            return None  # listed, then expired or removed: as if never written
        try:
            if isinstance(body, Exception):
                raise body
            # Without labels to join, the ids are not needed: they are most of a summary.
            summary = decode_summary(body, key, with_ids=bool(self.labelled_requests))
            if summary.counting != COUNTING_RULES:
                raise MlopsError(
                    f"{key}: counted by rules {summary.counting}, this code's are {COUNTING_RULES}"
                )
            if summary.capture_key != capture.key:
                raise MlopsError(f"{key}: summarises {summary.capture_key[:120]!r}")
            if summary.capture_bytes != capture.size:
                raise MlopsError(
                    f"{key}: summarises {summary.capture_bytes} bytes, "
                    f"but the capture object holds {capture.size}"
                )
            counts, problem = fitted(summary.counts, self.baseline_of)
            if problem is not None:
                raise MlopsError(f"{key}: {problem[:200]}")
        except Exception as exc:  # any failure costs a read of the rows, never the rows
            self.problems.append(
                FileProblem(key=key, error=f"{str(exc)[:240]}; its capture object was read")
            )
            return None
        return msgspec.structs.replace(summary, counts=counts)
