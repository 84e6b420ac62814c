"""The outbox: each decision sent at most once per channel, a failed send retried later.

The first send needs no record: only the process whose create-only write made the audit
record is told of it (shared/registry/audit.py), and it sends once on each channel.

A send that fails is kept in the model's registry record (`unsent`): the one object each
deciding function's role may already read and write, so alerting widens no S3 grant, and
one that the hourly check reads for every model anyway. The check sends again what is due
there, one entry at a time, claiming each attempt with the registry's compare-and-swap
write first: of two checks, one claims it and the other sees it claimed. A claimed attempt
whose process died is never repeated by the outbox (a send that timed out after the
channel took it is the one case it cannot tell, docs/alerts.md). Entries leave when sent,
after MAX_ATTEMPTS tries or RETRY_DAYS, and at most MAX_UNSENT are kept a model: the
record never grows without bound. Nothing here raises into the decision that was
recorded: errors are counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from shared.alerts.decisions import Decision, decision_of
from shared.registry.audit import AuditEvent, utc_now
from shared.registry.records import RegistryRecord, UnsentAnnouncement
from shared.registry.registry import ModelRegistry, list_models
from shared.store.base import ObjectStore

logger = logging.getLogger(__name__)

# Attempts per channel: with one retry per hourly check, a day of outage.
MAX_ATTEMPTS = 24
# A failure older than this is dropped: a decision two days late is news no more.
RETRY_DAYS = 2
# Failed announcements kept a model, the newest: a registry record stays small.
MAX_UNSENT = 20


class Channel(Protocol):
    """Somewhere a decision is sent; `send` raises if it was not accepted."""

    name: str

    def send(self, decision: Decision) -> None: ...


@dataclass
class DeliveryCounts:
    """What the outbox did in this process (logged; tests and people read it)."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0  # another check claimed the attempt
    dropped: int = 0  # attempts or time ran out, the channel went, or MAX_UNSENT was passed
    lost: int = 0  # a failed send that could not be kept for a retry


def _same(a: UnsentAnnouncement, b: UnsentAnnouncement) -> bool:
    return (a.audit_key, a.channel) == (b.audit_key, b.channel)


@dataclass
class Outbox:
    """Collects the decisions a run records (as an audit listener), then delivers them.

    `keep` says whether a failed send is kept for the hourly check: only the functions
    whose role may write the registry record can (docs/alerts.md).
    """

    store: ObjectStore
    channels: Sequence[Channel]
    clock: Callable[[], datetime] = utc_now
    keep: bool = True
    counts: DeliveryCounts = field(default_factory=DeliveryCounts)
    _new: list[Decision] = field(default_factory=list)
    # Kept by this process: a failure waits for the next check, not for this one's retry.
    _kept: set[tuple[str, str]] = field(default_factory=set)

    def recorded(self, key: str, record: AuditEvent) -> None:
        """Audit listener: queue the record if it is a decision and anyone is listening."""
        if not self.channels:
            return
        decision = decision_of(key, record)
        if decision is not None:
            self._new.append(decision)

    def deliver_new(self) -> DeliveryCounts:
        """Send what this run recorded, on every channel; keep what failed."""
        new, self._new = self._new, []
        for decision in new:
            for channel in self.channels:
                error = self._send(channel, decision, attempt=1)
                if error is not None:
                    self._keep(decision, channel.name, error)
        return self.counts

    def _send(self, channel: Channel, decision: Decision, *, attempt: int) -> str | None:
        """None if `channel` accepted `decision`, else what went wrong (counted, logged)."""
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
            return str(exc)[:1000] or type(exc).__name__
        self.counts.sent += 1
        logger.info("%s: sent %s of %s", channel.name, decision.detail_type, decision.audit_key)
        return None

    def _keep(self, decision: Decision, channel: str, error: str) -> None:
        if not self.keep:
            self.counts.lost += 1
            logger.error("%s: %s is not retried (see docs/alerts.md)", channel, decision.audit_key)
            return
        entry = UnsentAnnouncement(
            audit_key=decision.audit_key,
            channel=channel,
            attempts=1,
            since=self.clock().isoformat(),
            error=error,
            announcement=msgspec.to_builtins(decision),
        )
        dropped: list[UnsentAnnouncement] = []

        def add(record: RegistryRecord) -> RegistryRecord:
            dropped.clear()
            if any(_same(entry, kept) for kept in record.unsent):
                return record
            unsent = [*record.unsent, entry]
            dropped.extend(unsent[:-MAX_UNSENT])
            return msgspec.structs.replace(record, unsent=unsent[-MAX_UNSENT:])

        try:
            registry = ModelRegistry(self.store, str(decision.detail["model"]))
            if registry.read()[1] is None:
                # Kept nowhere rather than in a registry made for it, which would make a
                # model appear that never trained (the first upload's training failed).
                self.counts.lost += 1
                logger.error("%s: %s not kept: no registry record", channel, decision.audit_key)
                return
            registry.update(add)
        except Exception:
            self.counts.lost += 1
            logger.exception("%s: %s could not be kept for a retry", channel, decision.audit_key)
            return
        self._kept.add((entry.audit_key, channel))
        for gone in dropped:
            self.counts.dropped += 1
            logger.error("%s: %s dropped: over %d unsent", gone.channel, gone.audit_key, MAX_UNSENT)

    def retry_unsent(self) -> DeliveryCounts:
        """Send again, once, what is due in every model's registry record (hourly check)."""
        if not self.channels:
            return self.counts
        try:
            models = list(list_models(self.store))
        except Exception:  # a broken listing never fails the check that reads it
            self.counts.failed += 1
            logger.exception("could not list the models to retry their announcements")
            return self.counts
        for model in models:
            try:
                self._retry_model(ModelRegistry(self.store, model))
            except Exception:
                self.counts.failed += 1
                logger.exception("could not retry the announcements of %s", model)
        return self.counts

    def _stale(self, entry: UnsentAnnouncement, now: datetime) -> bool:
        # A channel this process was not given (a setting missing for one run) is not a
        # reason to drop: the entry waits, within its days, for a run that has it.
        if now - datetime.fromisoformat(entry.since) > timedelta(days=RETRY_DAYS):
            return True
        return entry.attempts >= MAX_ATTEMPTS and not entry.sending

    def _due(self, entry: UnsentAnnouncement) -> bool:
        return (entry.audit_key, entry.channel) not in self._kept

    def _retry_model(self, registry: ModelRegistry) -> None:
        record, _ = registry.read()
        if not record.unsent:
            return
        now = self.clock()
        channels = {c.name: c for c in self.channels}
        tried: set[tuple[str, str]] = set()
        # One entry claimed, sent and settled at a time: a check that dies mid-send loses
        # only the attempt in flight (never sent twice), not every entry it had claimed.
        mine, busy = self._claim_one(registry, now, channels, tried)
        self.counts.skipped += busy
        while mine is not None:
            tried.add((mine.audit_key, mine.channel))
            decision = msgspec.convert(mine.announcement, Decision)
            error = self._send(channels[mine.channel], decision, attempt=mine.attempts)
            self._settle_one(registry, mine, error)
            mine, _ = self._claim_one(registry, now, channels, tried)

    def _claim_one(
        self,
        registry: ModelRegistry,
        now: datetime,
        channels: Mapping[str, Channel],
        tried: set[tuple[str, str]],
    ) -> tuple[UnsentAnnouncement | None, int]:
        """Claim the next due entry (and drop the stale ones); (the claim, entries busy)."""
        claimed: list[UnsentAnnouncement] = []
        dropped: list[UnsentAnnouncement] = []
        busy: list[UnsentAnnouncement] = []

        def claim(record: RegistryRecord) -> RegistryRecord:
            for found in (claimed, dropped, busy):
                found.clear()
            kept = []
            for entry in record.unsent:
                if self._stale(entry, now):
                    dropped.append(entry)
                    continue
                if entry.sending:
                    busy.append(entry)  # claimed by another check, or by one that died
                elif (
                    not claimed
                    and self._due(entry)
                    and (entry.audit_key, entry.channel) not in tried
                    and entry.channel in channels
                ):
                    entry = msgspec.structs.replace(
                        entry, attempts=entry.attempts + 1, sending=True
                    )
                    claimed.append(entry)
                kept.append(entry)
            return msgspec.structs.replace(record, unsent=kept)

        registry.update(claim)
        for entry in dropped:
            self.counts.dropped += 1
            logger.error(
                "%s: %s dropped after %d attempts since %s (last: %s)",
                entry.channel,
                entry.audit_key,
                entry.attempts,
                entry.since,
                entry.error,
            )
        return (claimed[0] if claimed else None), len(busy)

    @staticmethod
    def _settle_one(registry: ModelRegistry, mine: UnsentAnnouncement, error: str | None) -> None:
        """Remove the claimed entry once sent, or note its failure for a later check."""

        def settle(record: RegistryRecord) -> RegistryRecord:
            kept = []
            for entry in record.unsent:
                ours = _same(entry, mine) and entry.attempts == mine.attempts
                if not (ours and entry.sending):
                    kept.append(entry)
                elif error is not None:
                    kept.append(msgspec.structs.replace(entry, sending=False, error=error))
            return msgspec.structs.replace(record, unsent=kept)

        registry.update(settle)
