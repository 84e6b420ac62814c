"""The append-only audit trail: one create-only object per event under ``audit/<model>/``.

Keys sort by time, so listing the prefix reads the trail in order.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from shared.data.spec import validate_model_name
from shared.errors import PreconditionFailed
from shared.store.base import ObjectStore

AuditEventName = Literal[
    "version_claimed",
    "version_registered",
    "version_failed",
    "alias_moved",
    "training_failed",
    "duplicate_ignored",
    "artifact_rejected",
    "verdict_changed",
    "version_rejected",
    "rolled_back",
    "promotion_decided",
    "retraining_started",
    "retraining_skipped",
    "labels_rejected",
    "monitoring_failed",
    "upload_ignored",
    "batch_started",
    "batch_completed",
    "batch_failed",
    "batch_duplicate_ignored",
]


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One thing that happened to a model, with enough detail to act on."""

    at: str
    model: str
    # Read as a plain string: an event name added by a newer version must not make an
    # older container fail to read the trail (writers still use AuditEventName).
    event: str
    details: dict[str, Any]


AuditListener = Callable[[str, AuditEvent], None]

# Who hears of each record this process writes: the functions that decide set it around
# their work (shared/alerts turns decisions into events); nothing is told otherwise.
_listener: ContextVar[AuditListener | None] = ContextVar("audit_listener", default=None)


@contextmanager
def listening(listener: AuditListener) -> Iterator[None]:
    """Tell `listener` (key, event) of each record written in this block, after the write."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def _written(key: str, entry: AuditEvent) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(key, entry)


def utc_now() -> datetime:
    """The current time, timezone-aware (every record stores UTC)."""
    return datetime.now(UTC)


def audit_prefix(model: str) -> str:
    """The prefix under which the trail of `model` lives."""
    return f"audit/{validate_model_name(model)}/"


def record_event(
    store: ObjectStore, model: str, event: AuditEventName, **details: Any
) -> AuditEvent:
    """Append one event to the trail; never overwrites (create-only write, unique key)."""
    now = utc_now()
    entry = AuditEvent(at=now.isoformat(), model=model, event=event, details=details)
    stamp = now.strftime("%Y%m%dT%H%M%S.%fZ")
    key = f"{audit_prefix(model)}{stamp}-{event}-{uuid.uuid4().hex[:8]}.json"
    store.put(key, msgspec.json.encode(entry), if_none_match=True, content_type="application/json")
    _written(key, entry)
    return entry


def event_key(model: str, event: AuditEventName, at: datetime, dedupe: str) -> str:
    """The key record_event_once writes for (`event`, `at`, `dedupe`): to ask if it was."""
    digest = hashlib.sha256(dedupe.encode()).hexdigest()[:16]
    return f"{audit_prefix(model)}{at.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}-{event}-{digest}.json"


def record_event_once(
    store: ObjectStore,
    model: str,
    event: AuditEventName,
    *,
    at: datetime,
    dedupe: str,
    **details: Any,
) -> bool:
    """Append an event under a key made from `at` and `dedupe`: whoever writes it second
    (a retried or concurrent run doing the same thing) writes nothing. True if written."""
    entry = AuditEvent(at=utc_now().isoformat(), model=model, event=event, details=details)
    key = event_key(model, event, at, dedupe)
    try:
        store.put(
            key, msgspec.json.encode(entry), if_none_match=True, content_type="application/json"
        )
    except PreconditionFailed:
        return False
    # Only the writer that created the key is told: a retried or concurrent run is not.
    _written(key, entry)
    return True


def read_trail(store: ObjectStore, model: str) -> Iterator[AuditEvent]:
    """Every event of `model`, in the order they were written.

    Not in key order: a key's time is the time the event is about (a window's end, a
    version's creation), which makes a retried write land on the same key; two events
    about the same moment (a verdict and the retraining it started) would sort by name.
    """
    events = [
        (msgspec.json.decode(store.get(info.key).body, type=AuditEvent), info.key)
        for info in store.list(audit_prefix(model))
    ]
    events.sort(key=lambda pair: (datetime.fromisoformat(pair[0].at), pair[1]))
    yield from (event for event, _ in events)
