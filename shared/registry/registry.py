"""The model registry in ``models/<model>/registry.json``, changed only by compare-and-swap.

`ModelRegistry` applies the pure decisions of `records` with conditional writes (S3
If-Match / If-None-Match), retrying on conflict, so concurrent writers never lose an update.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import msgspec

from shared.data.spec import validate_model_name
from shared.errors import ModelNotFound, ObjectNotFound, PreconditionFailed, RegistryError
from shared.registry.audit import AuditEventName, record_event, record_event_once, utc_now
from shared.registry.records import (
    UNSET,
    Alias,
    Expected,
    RegistryRecord,
    VersionEntry,
    abandoned,
    claim_version,
    complete_version,
    fail_version,
    promote,
    registry_key,
    reject_version,
    rollback,
    source_of,
    version_prefix,
)
from shared.store.base import ObjectStore
from shared.store.check import ensure_trusted


class ModelRegistry:
    """The registry of one model, kept in the object store."""

    MAX_ATTEMPTS = 50

    def __init__(self, store: ObjectStore, model: str) -> None:
        self.store = store
        self.model = validate_model_name(model)
        self.key = registry_key(model)

    def read(self) -> tuple[RegistryRecord, str | None]:
        """The record and its ETag; an empty record and None if the model is new."""
        try:
            obj = self.store.get(self.key)
        except ObjectNotFound:
            return RegistryRecord(model=self.model), None
        return msgspec.json.decode(obj.body, type=RegistryRecord), obj.etag

    def load(self) -> RegistryRecord:
        """The record of an existing model; ModelNotFound if it has never registered."""
        record, etag = self.read()
        if etag is None:
            raise ModelNotFound(f"no model named {self.model!r} is registered")
        return record

    def update(self, change: Callable[[RegistryRecord], RegistryRecord]) -> RegistryRecord:
        """Apply `change` atomically: re-read and re-apply it whenever another writer won."""
        for attempt in range(self.MAX_ATTEMPTS):
            record, etag = self.read()
            updated = change(record)
            if updated == record:
                return record
            body = msgspec.json.format(msgspec.json.encode(updated), indent=2)
            # Before the first write, once per process: a store that ignores a condition
            # would lose updates silently, so it is refused here, with nothing written.
            ensure_trusted(self.store)
            try:
                if etag is None:
                    self.store.put(
                        self.key, body, if_none_match=True, content_type="application/json"
                    )
                else:
                    self.store.put(self.key, body, if_match=etag, content_type="application/json")
                return updated
            except (PreconditionFailed, ObjectNotFound):
                # Another writer got there first: back off a little, with jitter, and redo.
                time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
        raise RegistryError(
            f"registry of {self.model!r} stayed contended for {self.MAX_ATTEMPTS} attempts:"
            " other writers changed it each time between a read and a write"
        )

    def claim(
        self, *, run_id: str, source: str, data_key: str, delivery: str | None = None
    ) -> tuple[VersionEntry, bool]:
        """Reserve the next version number; (existing entry, True) if `source` already has one.

        A pending claim of `source` whose run died (see records.abandoned) is marked failed
        and a new number claimed.
        """
        claimed: list[tuple[VersionEntry, bool]] = []
        replaced: list[tuple[int, str]] = []

        def change(record: RegistryRecord) -> RegistryRecord:
            claimed.clear()
            replaced.clear()
            now = utc_now()
            existing = source_of(record, source)
            if existing is not None and existing.run_id == run_id:
                # Our own claim: the write succeeded but its acknowledgement was lost.
                claimed.append((existing, False))
                return record
            why = abandoned(existing, now, delivery) if existing is not None else None
            if existing is not None and why is not None:
                record = fail_version(record, existing.version, reason=why, now=now)
                replaced.append((existing.version, why))
            elif existing is not None:
                claimed.append((existing, True))
                return record
            updated, entry = claim_version(
                record, run_id=run_id, source=source, data_key=data_key, now=now, delivery=delivery
            )
            claimed.append((entry, False))
            return updated

        self.update(change)
        entry, duplicate = claimed[0]
        for version, why in replaced:
            record_event(self.store, self.model, "version_failed", version=version, reason=why)
        if not duplicate:
            record_event(
                self.store, self.model, "version_claimed", version=entry.version, run_id=run_id
            )
        return entry, duplicate

    def complete(
        self, version: int, *, sha256: str, primary_metric: str, metric_value: float
    ) -> Alias:
        """Mark `version` ready; returns the alias it was given."""
        given: list[Alias] = []

        def change(record: RegistryRecord) -> RegistryRecord:
            updated, alias = complete_version(
                record,
                version,
                sha256=sha256,
                primary_metric=primary_metric,
                metric_value=metric_value,
                now=utc_now(),
            )
            given[:] = [alias]
            return updated

        record = self.update(change)
        self.record_settled(record.entry(version))
        return given[0]

    def fail(self, version: int, *, reason: str) -> bool:
        """Mark a pending `version` failed (its artifacts could not be written).

        False, with nothing recorded, if the version was no longer pending: a ready or
        rejected version stays as it is, and so must the trail.
        """
        failed: list[bool] = []

        def change(record: RegistryRecord) -> RegistryRecord:
            updated = fail_version(record, version, reason=reason, now=utc_now())
            failed[:] = [updated != record]
            return updated

        self.update(change)
        if failed[0]:
            record_event(self.store, self.model, "version_failed", version=version, reason=reason)
        return failed[0]

    def record_settled(self, entry: VersionEntry) -> None:
        """Write the trail's record of a version that became ready or rejected, once.

        Its key comes from the version and the time the registry marked it, so the run that
        marked it and any later delivery meeting it (after that run's write failed) write
        the same object: the trail gets it exactly once.
        """
        if entry.status == "ready":
            alias = next(
                (
                    change.alias
                    for change in self.read()[0].alias_history
                    if change.version == entry.version and change.reason == "registered"
                ),
                None,
            )
            self._record_once(entry, "version_registered", alias=alias)
        elif entry.status == "rejected":
            metadata = self.store.get(version_prefix(self.model, entry.version) + "metadata.json")
            figures = msgspec.json.decode(metadata.body).get("gate")
            self._record_once(entry, "version_rejected", reason=entry.reason, figures=figures)

    def _record_once(self, entry: VersionEntry, event: AuditEventName, **details: object) -> None:
        record_event_once(
            self.store,
            self.model,
            event,
            at=datetime.fromisoformat(entry.updated_at),
            dedupe=f"{event} {entry.version}",
            version=entry.version,
            **details,
        )

    def reject(
        self,
        version: int,
        *,
        sha256: str,
        primary_metric: str,
        metric_value: float,
        reason: str,
        figures: dict[str, object],
    ) -> None:
        """Mark `version` rejected by the quality gate (recorded with the figures)."""
        record = self.update(
            lambda r: reject_version(
                r,
                version,
                sha256=sha256,
                primary_metric=primary_metric,
                metric_value=metric_value,
                reason=reason,
                now=utc_now(),
            )
        )
        self._record_once(record.entry(version), "version_rejected", reason=reason, figures=figures)

    def set_alias(
        self,
        alias: str,
        version: int,
        *,
        reason: str,
        actor: str = "system",
        expected: Expected = UNSET,
    ) -> RegistryRecord:
        """Point `alias` at `version` (recorded in the history and the audit trail).

        A version promoted to production leaves staging. With `expected`, AliasConflict
        unless the alias points there when the write happens.
        """
        before: list[int | None] = []

        def change(record: RegistryRecord) -> RegistryRecord:
            before[:] = [record.aliases.get(alias)]
            return promote(
                record,
                version,
                alias=alias,
                reason=reason,
                now=utc_now(),
                actor=actor,
                expected=expected,
            )

        record = self.update(change)
        if before and before[0] != version:
            record_event(
                self.store,
                self.model,
                "alias_moved",
                alias=alias,
                version=version,
                previous=before[0],
                reason=reason,
                actor=actor,
            )
        return record

    def rollback(
        self, *, reason: str, actor: str, expected: Expected = UNSET
    ) -> tuple[RegistryRecord, int, int]:
        """Production back to the version before its current one: (record, from, to)."""
        moved: list[tuple[int, int]] = []

        def change(record: RegistryRecord) -> RegistryRecord:
            moved.clear()
            updated = rollback(record, reason=reason, now=utc_now(), actor=actor, expected=expected)
            moved.append((record.aliases["production"], updated.aliases["production"]))
            return updated

        record = self.update(change)
        source, target = moved[0]
        record_event(
            self.store,
            self.model,
            "rolled_back",
            alias="production",
            version=target,
            previous=source,
            reason=reason,
            actor=actor,
        )
        return record, source, target


def list_models(store: ObjectStore) -> Iterator[str]:
    """Names of the models that have a registry record."""
    for info in store.list("models/"):
        parts = info.key.split("/")
        if len(parts) == 3 and parts[2] == "registry.json":
            yield parts[1]
