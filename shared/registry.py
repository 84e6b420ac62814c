"""The model registry: versions and aliases of one model in ``models/<model>/registry.json``.

Decisions (which number comes next, where an alias moves) are pure functions of the
record; `ModelRegistry` applies them with compare-and-swap writes (S3 If-Match /
If-None-Match), retrying on conflict, so concurrent writers never lose an update.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from shared.audit import record_event, utc_now
from shared.errors import (
    ModelNotFound,
    ObjectNotFound,
    PreconditionFailed,
    RegistryError,
    VersionNotFound,
)
from shared.spec import validate_model_name
from shared.store.base import ObjectStore

Alias = Literal["production", "staging"]
ALIASES: tuple[Alias, ...] = ("production", "staging")
VersionStatus = Literal["pending", "ready", "failed"]
REGISTRY_SCHEMA_VERSION = 1


class VersionEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One version number and what became of it."""

    version: int
    status: VersionStatus
    run_id: str
    source: str  # fingerprint of (data object, spec): the same event twice -> same source
    data_key: str
    created_at: str
    updated_at: str
    sha256: str | None = None
    primary_metric: str | None = None
    metric_value: float | None = None
    reason: str | None = None


class AliasChange(msgspec.Struct, frozen=True, kw_only=True):
    """An alias moved (or was set for the first time)."""

    alias: Alias
    version: int
    previous: int | None
    at: str
    reason: str


class RegistryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Versions, current aliases and the full alias history of one model."""

    schema_version: int = REGISTRY_SCHEMA_VERSION
    model: str
    versions: list[VersionEntry] = msgspec.field(default_factory=list)
    aliases: dict[str, int] = msgspec.field(default_factory=dict)
    alias_history: list[AliasChange] = msgspec.field(default_factory=list)

    def entry(self, version: int) -> VersionEntry:
        """The entry of `version`; VersionNotFound if there is none."""
        for entry in self.versions:
            if entry.version == version:
                return entry
        raise VersionNotFound(f"model {self.model!r} has no version {version}")

    def resolve(self, ref: str) -> VersionEntry:
        """A version by number, alias (production, staging) or 'latest' ready version."""
        if is_version_number(ref):
            return self.entry(int(ref))
        if ref in self.aliases:
            return self.entry(self.aliases[ref])
        if ref == "latest":
            ready = [e for e in self.versions if e.status == "ready"]
            if ready:
                return ready[-1]
            raise VersionNotFound(f"model {self.model!r} has no ready version")
        if ref in ALIASES:
            raise VersionNotFound(f"model {self.model!r} has no {ref!r} version yet")
        raise VersionNotFound(
            f"model {self.model!r} has no version or alias {ref!r}; "
            f"use a version number, {', '.join(ALIASES)} or latest"
        )

    def alias_at(self, alias: Alias, when: datetime) -> int | None:
        """Which version `alias` pointed at, at time `when` (None: not yet set)."""
        current: int | None = None
        for change in self.alias_history:
            if change.alias == alias and datetime.fromisoformat(change.at) <= when:
                current = change.version
        return current


# Longer than any training run can live (Lambda stops a function at 15 minutes): a claim
# still pending after this was abandoned by a run that died, and is marked failed.
PENDING_LEASE = timedelta(minutes=20)


def is_version_number(ref: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses."""
    return ref.isascii() and ref.isdigit()


def source_of(existing: RegistryRecord, source: str) -> VersionEntry | None:
    """A live (pending or ready) version trained from `source`, if any."""
    for entry in existing.versions:
        if entry.source == source and entry.status != "failed":
            return entry
    return None


def abandoned(entry: VersionEntry, now: datetime) -> bool:
    """A pending claim whose run must have died (a timeout, a killed container)."""
    return (
        entry.status == "pending" and now - datetime.fromisoformat(entry.created_at) > PENDING_LEASE
    )


def claim_version(
    record: RegistryRecord, *, run_id: str, source: str, data_key: str, now: datetime
) -> tuple[RegistryRecord, VersionEntry]:
    """Append a pending entry numbered one past the last: numbers have no gaps."""
    entry = VersionEntry(
        version=len(record.versions) + 1,
        status="pending",
        run_id=run_id,
        source=source,
        data_key=data_key,
        created_at=now.isoformat(),
        updated_at=now.isoformat(),
    )
    return msgspec.structs.replace(record, versions=[*record.versions, entry]), entry


def _replace_entry(record: RegistryRecord, entry: VersionEntry) -> RegistryRecord:
    versions = [entry if e.version == entry.version else e for e in record.versions]
    return msgspec.structs.replace(record, versions=versions)


def move_alias(
    record: RegistryRecord, alias: Alias, version: int, *, reason: str, now: datetime
) -> RegistryRecord:
    """Point `alias` at a ready `version`, keeping the history."""
    if record.entry(version).status != "ready":
        raise RegistryError(
            f"version {version} of {record.model!r} is {record.entry(version).status}, not ready"
        )
    change = AliasChange(
        alias=alias,
        version=version,
        previous=record.aliases.get(alias),
        at=now.isoformat(),
        reason=reason,
    )
    return msgspec.structs.replace(
        record,
        aliases={**record.aliases, alias: version},
        alias_history=[*record.alias_history, change],
    )


def complete_version(
    record: RegistryRecord,
    version: int,
    *,
    sha256: str,
    primary_metric: str,
    metric_value: float,
    now: datetime,
) -> tuple[RegistryRecord, Alias]:
    """Mark a pending version ready and give it its first alias.

    The first ready version goes to production; later ones to staging, where the
    promotion rules (a later step of the lifecycle) pick them up.
    """
    entry = record.entry(version)
    if entry.status == "ready" and entry.sha256 == sha256:
        # Our own earlier write, whose acknowledgement was lost and the write retried.
        current: Alias = "production" if record.aliases.get("production") == version else "staging"
        return record, current
    if entry.status != "pending":
        raise RegistryError(f"version {version} of {record.model!r} is {entry.status}, not pending")
    ready = msgspec.structs.replace(
        entry,
        status="ready",
        sha256=sha256,
        primary_metric=primary_metric,
        metric_value=metric_value,
        updated_at=now.isoformat(),
    )
    record = _replace_entry(record, ready)
    alias: Alias = "production" if "production" not in record.aliases else "staging"
    return move_alias(record, alias, version, reason="registered", now=now), alias


def fail_version(
    record: RegistryRecord, version: int, *, reason: str, now: datetime
) -> RegistryRecord:
    """Mark a pending version failed; its number stays taken, its aliases untouched."""
    entry = record.entry(version)
    if entry.status != "pending":
        # A ready version never goes back: whatever failed came after it was complete.
        return record
    failed = msgspec.structs.replace(
        entry, status="failed", reason=reason, updated_at=now.isoformat()
    )
    return _replace_entry(record, failed)


def registry_key(model: str) -> str:
    """Where the registry record of `model` lives."""
    return f"models/{validate_model_name(model)}/registry.json"


def version_prefix(model: str, version: int) -> str:
    """The folder of one version's artifacts."""
    return f"models/{validate_model_name(model)}/versions/{version}/"


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
            f"registry of {self.model!r} stayed contended for {self.MAX_ATTEMPTS} attempts"
        )

    def claim(self, *, run_id: str, source: str, data_key: str) -> tuple[VersionEntry, bool]:
        """Reserve the next version number; (existing entry, True) if `source` already has one."""
        claimed: list[tuple[VersionEntry, bool]] = []

        def change(record: RegistryRecord) -> RegistryRecord:
            claimed.clear()
            now = utc_now()
            existing = source_of(record, source)
            if existing is not None and existing.run_id == run_id:
                # Our own claim: the write succeeded but its acknowledgement was lost.
                claimed.append((existing, False))
                return record
            if existing is not None and abandoned(existing, now):
                record = fail_version(
                    record, existing.version, reason="abandoned: its run never completed", now=now
                )
            elif existing is not None:
                claimed.append((existing, True))
                return record
            updated, entry = claim_version(
                record, run_id=run_id, source=source, data_key=data_key, now=now
            )
            claimed.append((entry, False))
            return updated

        self.update(change)
        entry, duplicate = claimed[0]
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

        self.update(change)
        record_event(self.store, self.model, "version_registered", version=version, alias=given[0])
        return given[0]

    def fail(self, version: int, *, reason: str) -> None:
        """Mark `version` failed (its artifacts could not be written)."""
        self.update(lambda r: fail_version(r, version, reason=reason, now=utc_now()))
        record_event(self.store, self.model, "version_failed", version=version, reason=reason)

    def set_alias(self, alias: Alias, version: int, *, reason: str) -> RegistryRecord:
        """Point `alias` at `version` (recorded in the history and the audit trail)."""
        record = self.update(lambda r: move_alias(r, alias, version, reason=reason, now=utc_now()))
        record_event(
            self.store, self.model, "alias_moved", alias=alias, version=version, reason=reason
        )
        return record


def list_models(store: ObjectStore) -> Iterator[str]:
    """Names of the models that have a registry record."""
    for info in store.list("models/"):
        parts = info.key.split("/")
        if len(parts) == 3 and parts[2] == "registry.json":
            yield parts[1]
