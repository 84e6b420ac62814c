"""A capture object's counts, written beside it by serving, so the check never re-reads rows.

    captures/<model>/dt=D/hour=H/<name>.jsonl.gz             the rows (DuckDB, Athena, jq)
    capture-summaries/<model>/dt=D/hour=H/<name>.json        their counts, ids and identity

Serving already holds each batch's rows as arrays when it writes them, so counting them
against the answering version's baseline costs it about a microsecond a row; the hourly
check then reads one small summary per object instead of decoding every row (its cost
follows the objects, not the rows). Summaries live outside ``captures/`` because an
Athena table over a model's captures reads every object under its location.

A summary names the object it counts (key, size, sha256): the check uses it only when
the listing's size agrees, and reads the rows themselves when there is no summary (older
objects, a failed write), when it is corrupt or newer than this code, and for the rows
that labels name (the summary lists its served rows' request ids for that join).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import msgspec
import numpy as np

from shared.errors import MlopsError
from shared.monitoring.schema import check_schema
from shared.monitoring.summary import (
    COUNTING_RULES,
    Baseline,
    VersionCounts,
    WindowCounts,
    count_columns,
    feed_by_version,
    merge_versions,
)
from shared.registry.metadata import ModelMetadata

SUMMARY_SCHEMA_VERSION = 1
SUMMARIES_PREFIX = "capture-summaries/"
_CAPTURES = "captures/"
_CAPTURE_SUFFIX = ".jsonl.gz"


class ShadowPair(msgspec.Struct, kw_only=True, frozen=True):
    """A shadow version's rows paired with the served rows they repeat, in one object."""

    version: int  # the shadow's
    served_version: int
    paired: int
    # Agreements (classification: 1 per equal prediction) or absolute differences
    # (regression), summed: the check divides the window's sum by its pairs.
    score_sum: float


class CaptureSummary(msgspec.Struct, kw_only=True):
    """The counts of one capture object, as the check would compute them from its rows."""

    schema_version: int = SUMMARY_SCHEMA_VERSION
    counting: int = COUNTING_RULES  # the rules it was counted by (summary.COUNTING_RULES)
    capture_key: str
    capture_bytes: int
    # Its identity for a person or an audit (the check compares the size, from the listing,
    # and does not read the object to hash it).
    capture_sha256: str
    counts: WindowCounts
    request_ids: list[str]  # of its served rows, sorted, distinct: the labels join on them
    shadow_rows: dict[int, int] = msgspec.field(default_factory=dict)
    shadow_pairs: list[ShadowPair] = msgspec.field(default_factory=list)


class _Versioned(msgspec.Struct):
    schema_version: int = 1


def summary_key(capture_key: str) -> str:
    """Where the summary of the capture object `capture_key` is written."""
    if not capture_key.startswith(_CAPTURES) or not capture_key.endswith(_CAPTURE_SUFFIX):
        raise MlopsError(f"{capture_key[:120]!r} is not a capture object's key")
    inner = capture_key[len(_CAPTURES) : -len(_CAPTURE_SUFFIX)]
    return f"{SUMMARIES_PREFIX}{inner}.json"


def summary_partition(capture_partition: str) -> str:
    """The prefix of the summaries of a capture partition (captures/<model>/dt=../hour=../)."""
    return f"{SUMMARIES_PREFIX}{capture_partition.removeprefix(_CAPTURES)}"


def capture_key_of(key: str) -> str:
    """The capture object a summary key names (the inverse of summary_key)."""
    return f"{_CAPTURES}{key[len(SUMMARIES_PREFIX) :].removesuffix('.json')}{_CAPTURE_SUFFIX}"


def encode_summary(summary: CaptureSummary) -> bytes:
    return msgspec.json.encode(summary)


class _WithoutIds(msgspec.Struct, kw_only=True):
    """A summary but its request ids, which msgspec then skips without building them: what
    a check with no labels to join needs."""

    schema_version: int = SUMMARY_SCHEMA_VERSION
    counting: int = COUNTING_RULES
    capture_key: str
    capture_bytes: int
    capture_sha256: str
    counts: WindowCounts
    shadow_rows: dict[int, int] = msgspec.field(default_factory=dict)
    shadow_pairs: list[ShadowPair] = msgspec.field(default_factory=list)


_DECODER = msgspec.json.Decoder(CaptureSummary)
_COUNTS_DECODER = msgspec.json.Decoder(_WithoutIds)
_HEAD_DECODER = msgspec.json.Decoder(_Versioned)


def decode_summary(body: bytes, key: str, *, with_ids: bool = True) -> CaptureSummary:
    """A stored summary; MlopsError naming `key` if it is corrupt or newer than this code.

    Without `with_ids`, its `request_ids` are left unread (empty): a fifth of the work.
    """
    try:
        head = _HEAD_DECODER.decode(body)
        check_schema("capture summary", head.schema_version, SUMMARY_SCHEMA_VERSION, key)
        if with_ids:
            return _DECODER.decode(body)
        part = _COUNTS_DECODER.decode(body)
        return CaptureSummary(
            schema_version=part.schema_version,
            counting=part.counting,
            capture_key=part.capture_key,
            capture_bytes=part.capture_bytes,
            capture_sha256=part.capture_sha256,
            counts=part.counts,
            request_ids=[],
            shadow_rows=part.shadow_rows,
            shadow_pairs=part.shadow_pairs,
        )
    except msgspec.DecodeError as exc:
        raise MlopsError(f"{key}: not a capture summary ({str(exc)[:200]})") from None


class RequestRows(Protocol):
    """One request's rows as serving holds them until its batch is written."""

    @property
    def version(self) -> int: ...
    @property
    def role(self) -> str: ...
    @property
    def capture_id(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def numeric_names(self) -> Sequence[str]: ...
    @property
    def numeric(self) -> np.ndarray: ...
    @property
    def categorical(self) -> dict[str, np.ndarray]: ...
    @property
    def predictions(self) -> np.ndarray: ...
    @property
    def probabilities(self) -> np.ndarray | None: ...
    @property
    def classes(self) -> Sequence[str | int] | None: ...
    @property
    def positions(self) -> np.ndarray | None: ...
    @property
    def metadata(self) -> ModelMetadata | None: ...


def _count_version(items: Sequence[RequestRows], baseline: Baseline) -> VersionCounts:
    """The counts of one version's requests, their arrays joined (one count per column)."""
    names = list(items[0].numeric_names)
    same_columns = all(list(item.numeric_names) == names for item in items)
    if not same_columns:  # not expected within a version; counted apart rather than wrong
        counted = [_count_version([item], baseline) for item in items]
        merged = counted[0]
        for part in counted[1:]:
            merged = merge_versions(merged, part)
        return merged
    # Whole columns at once: a batch is often a thousand one-row requests.
    # The capture file holds JSON, where a NaN or an infinity is written null: missing.
    numeric = _finite(np.concatenate([np.asarray(i.numeric, dtype=np.float64) for i in items]))
    values = np.concatenate([i.predictions for i in items])
    predictions: list[object] = values.tolist()
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        predictions = [None if not np.isfinite(v) else v for v in values.tolist()]
    # Per class of the version, a column over every request (NaN where a request has no
    # probability for it), as the check reads them from each row's `probabilities`.
    probabilities: dict[str, np.ndarray] = {}
    if baseline.metadata.task == "classification":
        classes = items[0].classes
        if classes is not None and all(
            i.probabilities is not None
            and i.classes is not None
            and list(i.classes) == list(classes)
            for i in items
        ):
            matrix = _finite(
                np.concatenate([np.asarray(i.probabilities, dtype=np.float64) for i in items])
            )
            by_name = {str(c): j for j, c in enumerate(classes)}
            for label in [str(c) for c in baseline.metadata.classes or []]:
                if label in by_name:
                    probabilities[label] = matrix[:, by_name[label]]
        else:
            probabilities = _probability_columns(items, baseline)

    def categorical(name: str) -> list[object]:
        # "" is serving's missing marker, written as null in the capture file.
        columns = [
            np.full(i.predictions.shape[0], "", dtype=object)
            if name not in i.categorical
            else i.categorical[name]
            for i in items
        ]
        return [v or None for v in np.concatenate(columns).tolist()]

    return count_columns(baseline, numeric, names, categorical, predictions, probabilities)


def _probability_columns(items: Sequence[RequestRows], baseline: Baseline) -> dict[str, np.ndarray]:
    """Class columns when requests differ in what probabilities they carry (rare)."""
    probabilities: dict[str, np.ndarray] = {}
    for label in [str(c) for c in baseline.metadata.classes or []]:
        parts: list[np.ndarray] = []
        for item in items:
            names = [str(c) for c in item.classes or []]
            if item.probabilities is not None and label in names:
                column = np.asarray(item.probabilities[:, names.index(label)], np.float64)
                parts.append(_finite(column))
            else:
                parts.append(np.full(item.predictions.shape[0], np.nan))
        probabilities[label] = np.concatenate(parts)
    return probabilities


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.nan)


def _positions(item: RequestRows) -> list[int]:
    if item.positions is not None:
        return [int(p) for p in item.positions.tolist()]
    return list(range(int(item.predictions.shape[0])))


def _shadow_pairs(items: Sequence[RequestRows]) -> tuple[dict[int, int], list[ShadowPair]]:
    """Shadow rows and their pairs, as the check pairs them: same capture id and row."""
    served = {i.capture_id: i for i in items if i.role == "served"}
    rows: dict[int, int] = {}
    pairs: dict[tuple[int, int], list[float]] = {}
    for shadow in items:
        if shadow.role != "shadow":
            continue
        rows[shadow.version] = rows.get(shadow.version, 0) + int(shadow.predictions.shape[0])
        answer = served.get(shadow.capture_id)
        if answer is None:
            continue
        regression = answer.metadata is not None and answer.metadata.task == "regression"
        theirs = dict(zip(_positions(answer), answer.predictions.tolist(), strict=True))
        scores = pairs.setdefault((shadow.version, answer.version), [0, 0.0])
        for position, mine in zip(_positions(shadow), shadow.predictions.tolist(), strict=True):
            if position not in theirs:
                continue
            other = theirs[position]
            if regression:
                # NaN and infinity are written null: a missing prediction pairs with nothing.
                if mine is None or other is None or not np.isfinite([mine, other]).all():
                    continue
                score = abs(float(mine) - float(other))
            else:
                score = float(str(mine) == str(other))
            scores[0] += 1
            scores[1] += score
    return rows, [
        ShadowPair(version=v, served_version=s, paired=int(n), score_sum=total)
        for (v, s), (n, total) in sorted(pairs.items())
    ]


def summarise_requests(
    items: Sequence[RequestRows], capture_key: str, body: bytes
) -> CaptureSummary | None:
    """The summary of the capture object `capture_key` (`body`) holding `items`' rows.

    None when a request's version came without its metadata: that object is then read
    row by row by the check, as objects written before summaries existed are.
    """
    if any(item.metadata is None for item in items):
        return None
    counts = WindowCounts(files=1)
    for version, version_items in feed_by_version(items):
        metadata = version_items[0].metadata
        assert metadata is not None
        counted = _count_version(version_items, Baseline(metadata))
        counts.versions[version] = counted
        counts.rows += counted.rows
    shadow_rows, shadow_pairs = _shadow_pairs(items)
    return CaptureSummary(
        capture_key=capture_key,
        capture_bytes=len(body),
        capture_sha256=hashlib.sha256(body).hexdigest(),
        counts=counts,
        request_ids=sorted({i.request_id for i in items if i.role == "served"}),
        shadow_rows=shadow_rows,
        shadow_pairs=shadow_pairs,
    )


def names_any(summary: CaptureSummary, request_ids: set[str]) -> bool:
    """Whether a served row of the summarised object has one of `request_ids`."""
    return bool(request_ids) and not request_ids.isdisjoint(summary.request_ids)
