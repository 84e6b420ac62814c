"""The registry record of one model and the decisions taken on it, as pure functions.

Which number comes next, where an alias moves, when a claim is abandoned: each takes a
record and returns a new one, with no store in sight; `registry.ModelRegistry` applies
them with compare-and-swap writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec

from shared.data.spec import validate_model_name
from shared.errors import RegistryError, VersionNotFound

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
