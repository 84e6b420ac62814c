"""Which capture objects a check (or maintenance) may count from their summaries.

An object is counted from its summary when one is listed beside it, decodes, is not newer
than this code, names the object and agrees with the listing's size, and holds no served
row that a label names (labelled rows are joined from the rows themselves). Every other
object goes to `unread`, for its caller to read row by row; a summary that could not be
used is named in `problems` (the report's `summary_problems`), its object never lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from shared.errors import MlopsError, ObjectNotFound
from shared.monitoring.file_summary import (
    CaptureSummary,
    capture_key_of,
    decode_summary,
    names_any,
    summary_partition,
)
from shared.monitoring.report import FileProblem
from shared.store.base import ObjectInfo, ObjectStore
from shared.store.fetch import fetch_in_order


@dataclass
class SummaryReader:
    """Reads the summaries of some capture objects, sorting out those to read row by row."""

    labelled_requests: set[str]
    unread: set[str] = field(default_factory=set)  # capture keys to read row by row
    problems: list[FileProblem] = field(default_factory=list)
    done: int = 0  # objects whose summary was used

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
            if summary is None or names_any(summary, self.labelled_requests):
                self.unread.add(capture.key)
                continue
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
            if summary.capture_key != capture.key:
                raise MlopsError(f"{key}: summarises {summary.capture_key[:120]!r}")
            if summary.capture_bytes != capture.size:
                raise MlopsError(
                    f"{key}: summarises {summary.capture_bytes} bytes, "
                    f"but the capture object holds {capture.size}"
                )
        except Exception as exc:  # any failure costs a read of the rows, never the rows
            self.problems.append(
                FileProblem(key=key, error=f"{str(exc)[:240]}; its capture object was read")
            )
            return None
        return summary
