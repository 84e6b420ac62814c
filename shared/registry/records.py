"""The registry record of one model and the decisions taken on it, as pure functions.

Which number comes next, where an alias moves, when a claim is abandoned: each takes a
record and returns a new one, with no store in sight; `registry.ModelRegistry` applies
them with compare-and-swap writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from shared.data.spec import validate_model_name
from shared.errors import RegistryError, VersionNotFound

Alias = Literal["production", "staging"]
ALIASES: tuple[Alias, ...] = ("production", "staging")
# pending -> ready | failed | rejected (trained and checked, but refused by the quality gate).
VersionStatus = Literal["pending", "ready", "failed", "rejected"]
REGISTRY_SCHEMA_VERSION = 1


class _Unset:
    """No expectation about an alias's current value (the default of a move)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()
Expected = int | None | _Unset  # the version an alias must point at now (None: unset)


class AliasConflict(RegistryError):
    """An alias did not point where the caller expected: someone moved it first."""


class VersionEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One version number and what became of it."""

    version: int
    # Read as a plain string: a status added by newer code must not make an older
    # container fail to read the registry during a rolling deploy (it serves only "ready").
    status: str
    run_id: str
    source: str  # fingerprint of (data object, spec): the same event twice -> same source
    data_key: str
    created_at: str
    updated_at: str
    sha256: str | None = None
    primary_metric: str | None = None
    metric_value: float | None = None
    reason: str | None = None
    # The platform's id of the delivery that claimed it (Lambda's request id, which its own
    # retries of one invocation keep): a retry with the same id means the claimer died.
    delivery: str | None = None


class AliasChange(msgspec.Struct, frozen=True, kw_only=True):
    """An alias moved, was set for the first time, or was cleared (version None)."""

    alias: str  # a plain string for the same reason as VersionEntry.status
    version: int | None
    previous: int | None
    at: str
    reason: str
    actor: str = "system"  # who moved it: an IAM principal, "cli", "rule", "training"


class UnsentAnnouncement(msgspec.Struct, frozen=True, kw_only=True):
    """A decision about the model that a channel did not accept, kept for the hourly
    check to send again (shared/alerts/outbox.py decides; the registry only keeps it)."""

    audit_key: str  # the audit record announced: one entry per record and channel
    channel: str
    attempts: int  # sends tried so far, the failed first one included
    # Attempt `attempts` was claimed and has not settled; a process that died mid-send
    # leaves it so, and it is never tried again (at most once), only dropped when stale.
    sending: bool = False
    since: str  # when the first send failed
    error: str
    announcement: dict[str, Any]  # what the channel is sent, as shared/alerts encodes it


class RegistryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Versions, current aliases and the full alias history of one model."""

    schema_version: int = REGISTRY_SCHEMA_VERSION
    model: str
    versions: list[VersionEntry] = msgspec.field(default_factory=list)
    aliases: dict[str, int] = msgspec.field(default_factory=dict)
    alias_history: list[AliasChange] = msgspec.field(default_factory=list)
    # Almost always empty: the one object every deciding function may already read and
    # write holds the few announcements whose send failed (docs/alerts.md).
    unsent: list[UnsentAnnouncement] = msgspec.field(default_factory=list)

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

    def alias_at(self, alias: str, when: datetime) -> int | None:
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


def abandoned(entry: VersionEntry, now: datetime, delivery: str | None = None) -> str | None:
    """Why a pending claim's run must have died (a timeout, out of memory), or None.

    Lambda retries a failed invocation (one and two minutes later) under the same request
    id, and only once the failed attempt has ended: a claim made under `delivery` that a
    new run meets again was left by a run that died. Without a delivery id, only the lease
    tells.
    """
    if entry.status != "pending":
        return None
    if delivery is not None and entry.delivery == delivery:
        return f"abandoned: its run died (delivery {delivery} was retried)"
    if now - datetime.fromisoformat(entry.created_at) > PENDING_LEASE:
        return "abandoned: its run never completed"
    return None


def claim_version(
    record: RegistryRecord,
    *,
    run_id: str,
    source: str,
    data_key: str,
    now: datetime,
    delivery: str | None = None,
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
        delivery=delivery,
    )
    return msgspec.structs.replace(record, versions=[*record.versions, entry]), entry


def _replace_entry(record: RegistryRecord, entry: VersionEntry) -> RegistryRecord:
    versions = [entry if e.version == entry.version else e for e in record.versions]
    return msgspec.structs.replace(record, versions=versions)


def _check_expected(record: RegistryRecord, alias: str, expected: Expected) -> None:
    if isinstance(expected, _Unset):
        return
    current = record.aliases.get(alias)
    if current != expected:
        raise AliasConflict(
            f"{alias} of {record.model!r} points at "
            f"{'nothing' if current is None else f'version {current}'}, not "
            f"{'nothing' if expected is None else f'version {expected}'} as expected: "
            "it moved meanwhile; read the registry again and retry"
        )


def move_alias(
    record: RegistryRecord,
    alias: str,
    version: int,
    *,
    reason: str,
    now: datetime,
    actor: str = "system",
    expected: Expected = UNSET,
) -> RegistryRecord:
    """Point `alias` at a ready `version`, keeping the history.

    With `expected`, the move happens only if the alias points there now: a compare-and-
    swap on the alias itself, on top of the one on the registry file.
    """
    _check_expected(record, alias, expected)
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
        actor=actor,
    )
    return msgspec.structs.replace(
        record,
        aliases={**record.aliases, alias: version},
        alias_history=[*record.alias_history, change],
    )


def clear_alias(
    record: RegistryRecord,
    alias: str,
    *,
    reason: str,
    now: datetime,
    actor: str = "system",
    expected: Expected = UNSET,
) -> RegistryRecord:
    """Make `alias` point at nothing (e.g. staging once its version was promoted)."""
    _check_expected(record, alias, expected)
    if alias not in record.aliases:
        return record
    change = AliasChange(
        alias=alias,
        version=None,
        previous=record.aliases[alias],
        at=now.isoformat(),
        reason=reason,
        actor=actor,
    )
    aliases = {k: v for k, v in record.aliases.items() if k != alias}
    return msgspec.structs.replace(
        record, aliases=aliases, alias_history=[*record.alias_history, change]
    )


def promote(
    record: RegistryRecord,
    version: int,
    *,
    reason: str,
    now: datetime,
    actor: str,
    alias: str = "production",
    expected: Expected = UNSET,
) -> RegistryRecord:
    """Point `alias` at `version`; a version promoted to production leaves staging."""
    if record.aliases.get(alias) == version and isinstance(expected, _Unset):
        return record  # already there: a retried promotion changes nothing
    record = move_alias(
        record, alias, version, reason=reason, now=now, actor=actor, expected=expected
    )
    if alias == "production" and record.aliases.get("staging") == version:
        record = clear_alias(
            record, "staging", reason=f"v{version} promoted to production", now=now, actor=actor
        )
    return record


def rollback_target(record: RegistryRecord) -> int:
    """The version production pointed at before the change that put the current one there.

    Rollbacks themselves are skipped, so that rolling back twice after two promotions
    goes back two steps (v3 -> v2 -> v1), not back and forth.
    """
    current = record.aliases.get("production")
    if current is None:
        raise RegistryError(f"{record.model!r} has no production version to roll back")
    for change in reversed(record.alias_history):
        if change.alias != "production" or change.version != current:
            continue
        if change.reason.startswith("rollback"):
            continue
        if change.previous is None:
            break
        return change.previous
    raise RegistryError(
        f"production of {record.model!r} (version {current}) has no earlier version to go back to"
    )


def rollback(
    record: RegistryRecord, *, reason: str, now: datetime, actor: str, expected: Expected = UNSET
) -> RegistryRecord:
    """Move production back to the version before its current one (see rollback_target)."""
    _check_expected(record, "production", expected)
    target = rollback_target(record)
    return move_alias(
        record, "production", target, reason=f"rollback: {reason}", now=now, actor=actor
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
    return (
        move_alias(record, alias, version, reason="registered", now=now, actor="training"),
        alias,
    )


def reject_version(
    record: RegistryRecord,
    version: int,
    *,
    sha256: str,
    primary_metric: str,
    metric_value: float,
    reason: str,
    now: datetime,
) -> RegistryRecord:
    """Mark a pending version rejected by the quality gate: kept, never served, no alias."""
    entry = record.entry(version)
    if entry.status == "rejected" and entry.sha256 == sha256:
        return record  # our own earlier write, retried
    if entry.status != "pending":
        raise RegistryError(f"version {version} of {record.model!r} is {entry.status}, not pending")
    rejected = msgspec.structs.replace(
        entry,
        status="rejected",
        sha256=sha256,
        primary_metric=primary_metric,
        metric_value=metric_value,
        reason=reason,
        updated_at=now.isoformat(),
    )
    return _replace_entry(record, rejected)


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
