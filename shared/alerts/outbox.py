"""The outbox: each decision sent at most once per channel, a failed send retried later.

For an audit record written by this process (the create-only audit key says it is the
only writer), ``alerts/<date>/<model>/<record>/`` holds:

- ``event.json``: the announcement, written create-only;
- ``<channel>.attempt-<k>``: the claim of the k-th send on a channel, create-only: of two
  runs trying the same attempt one wins, so no channel is sent a decision twice;
- ``<channel>.failed-<k>``: written when attempt k failed; only then may attempt k+1 be
  claimed, by the next hourly check (which reads the last two days' entries).

An attempt claimed and never finished (the process died mid-send) is never repeated: at
most once, never twice. Nothing here raises into the decision that was recorded: errors
are counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from shared.alerts.decisions import Decision, decision_of
from shared.errors import PreconditionFailed
from shared.registry.audit import AuditEvent, utc_now
from shared.store.base import ObjectStore

logger = logging.getLogger(__name__)

OUTBOX_PREFIX = "alerts/"
# Attempts per channel: with one retry per hourly check, a day of outage.
MAX_ATTEMPTS = 24
# Entries older than this are no longer read: a decision two days late is news no more.
RETRY_DAYS = 2


class Channel(Protocol):
    """Somewhere a decision is sent; `send` raises if it was not accepted."""

    name: str

    def send(self, decision: Decision) -> None: ...


@dataclass
class DeliveryCounts:
    """What the outbox did in this process (logged; tests and people read it)."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0  # another run holds the attempt, or attempts ran out
    not_queued: int = 0  # the outbox entry itself could not be written


def entry_prefix(written: datetime, audit_key: str) -> str:
    """The outbox folder of the audit record at `audit_key`, written at `written`."""
    # audit/<model>/<stamp-event-id>.json -> alerts/<date>/<model>/<stamp-event-id>/
    model, name = audit_key.removeprefix("audit/").split("/", 1)
    return f"{OUTBOX_PREFIX}{written:%Y-%m-%d}/{model}/{name.removesuffix('.json')}/"


@dataclass
class Outbox:
    """Collects the decisions a run records (as an audit listener), then delivers them."""

    store: ObjectStore
    channels: Sequence[Channel]
    clock: Callable[[], datetime] = utc_now
    counts: DeliveryCounts = field(default_factory=DeliveryCounts)
    _new: list[tuple[str, Decision]] = field(default_factory=list)
    # Entries this process tried already: a failure waits for the next check, not a second.
    _tried: set[str] = field(default_factory=set)

    def recorded(self, key: str, record: AuditEvent) -> None:
        """Audit listener: queue the record if it is a decision and anyone is listening."""
        if not self.channels:
            return  # nothing configured: no state grows in the bucket
        decision = decision_of(key, record)
        if decision is None:
            return
        prefix = entry_prefix(self.clock(), key)
        try:
            self.store.put(
                prefix + "event.json",
                msgspec.json.encode(decision),
                if_none_match=True,
                content_type="application/json",
            )
        except PreconditionFailed:
            return  # queued already (the audit key was written once; this is a replay)
        except Exception:  # the decision stands even if its announcement cannot be queued
            self.counts.not_queued += 1
            logger.exception("could not queue %s for sending", key)
            return
        self._new.append((prefix, decision))

    def deliver_new(self) -> DeliveryCounts:
        """Send what this run recorded, on every channel."""
        new, self._new = self._new, []
        for prefix, decision in new:
            try:
                self._deliver(prefix, decision)
            except Exception:  # e.g. the listing failed: left for the next check
                self.counts.failed += 1
                logger.exception("could not deliver %s", prefix)
        return self.counts

    def retry_recent(self) -> DeliveryCounts:
        """Send again what failed on a channel in the last RETRY_DAYS days (hourly check)."""
        if not self.channels:
            return self.counts
        today = self.clock()
        for days in range(RETRY_DAYS):
            day = f"{OUTBOX_PREFIX}{today - timedelta(days=days):%Y-%m-%d}/"
            try:
                folders: dict[str, set[str]] = {}
                for info in self.store.list(day):
                    folder, _, name = info.key.rpartition("/")
                    folders.setdefault(folder + "/", set()).add(name)
                for prefix, names in sorted(folders.items()):
                    if prefix in self._tried or "event.json" not in names:
                        continue
                    if any(self._due(names, channel.name) for channel in self.channels):
                        body = self.store.get(prefix + "event.json").body
                        self._deliver(prefix, msgspec.json.decode(body, type=Decision), names)
            except Exception:  # a broken outbox never fails the check that reads it
                self.counts.failed += 1
                logger.exception("could not read the outbox %s", day)
        return self.counts

    @staticmethod
    def _attempts(names: set[str], channel: str) -> int:
        return sum(1 for name in names if name.startswith(f"{channel}.attempt-"))

    def _due(self, names: set[str], channel: str) -> bool:
        # Not yet tried, or the last attempt is known to have failed.
        tried = self._attempts(names, channel)
        return tried < MAX_ATTEMPTS and (tried == 0 or f"{channel}.failed-{tried}" in names)

    def _deliver(self, prefix: str, decision: Decision, names: set[str] | None = None) -> None:
        self._tried.add(prefix)
        if names is None:
            names = {info.key.rpartition("/")[2] for info in self.store.list(prefix)}
        for channel in self.channels:
            if not self._due(names, channel.name):
                self.counts.skipped += 1
                continue
            attempt = self._attempts(names, channel.name) + 1
            try:
                self.store.put(f"{prefix}{channel.name}.attempt-{attempt}", b"", if_none_match=True)
            except PreconditionFailed:
                self.counts.skipped += 1  # a concurrent run claimed this attempt
                continue
            except Exception:
                self.counts.failed += 1
                logger.exception("could not claim %s for %s", prefix, channel.name)
                continue
            try:
                channel.send(decision)
            except Exception as exc:  # counted, logged, retried by the next check
                self.counts.failed += 1
                logger.warning(
                    "%s: %s of %s failed (attempt %d): %s",
                    channel.name,
                    decision.detail_type,
                    decision.audit_key,
                    attempt,
                    exc,
                )
                try:
                    self.store.put(
                        f"{prefix}{channel.name}.failed-{attempt}",
                        str(exc)[:1000].encode(),
                        if_none_match=True,
                    )
                except Exception:
                    logger.exception("could not mark %s failed; it will not be retried", prefix)
                continue
            self.counts.sent += 1
            logger.info("%s: sent %s of %s", channel.name, decision.detail_type, decision.audit_key)
