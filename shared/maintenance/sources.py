"""Where every row of an assembled training set came from (``<set>.sources.json``).

Written by retraining beside the CSV it assembles; read back to know which captured rows a
version was fitted to (its set's rows) and which were held back to judge it.
"""

from __future__ import annotations

import msgspec

from shared.errors import ObjectNotFound
from shared.store.base import ObjectStore


class RetrainingSources(msgspec.Struct, frozen=True, kw_only=True):
    """Every source of one assembled training set."""

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
    captured: list[str]  # "capture_id/row" of every captured row the set may hold
    label_files: list[str]
    reason: str = ""  # why it was assembled: the verdict, or the schedule
    # The newest labelled rows left out of the set, to judge its version against
    # production: "capture_id/row", and their capture times' range.
    held_back: list[str] = msgspec.field(default_factory=list)
    held_back_range: list[str] = msgspec.field(default_factory=list)
    # The sha256 of the CSV this record describes: a version trained on other bytes (a
    # concurrent retry of the same window won the CSV) must not trust it.
    csv_sha256: str | None = None


def sources_key(data_key: str) -> str:
    """Where the sources of a training set sit: beside it."""
    return data_key.removesuffix(".csv") + ".sources.json"


def read_sources(store: ObjectStore, data_key: str) -> RetrainingSources | None:
    """The sources of an assembled set (None: an upload of the user's, not assembled)."""
    try:
        body = store.get(sources_key(data_key)).body
    except ObjectNotFound:
        return None
    return msgspec.json.decode(body, type=RetrainingSources)
