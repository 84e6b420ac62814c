"""The store check: does this store keep every guarantee the project relies on?

Each probe writes scratch keys under ``store-check/<run>/`` (deleted afterwards) and asks one
question of the service, e.g. "is a second create-only write of a key refused?". The verdict
is trusted when every probe the registry needs held; it is recorded at ``store-check/
verdict.json``. `ensure_trusted` runs the check before a process's first registry write, once
per service and process, and takes a trusted verdict recorded in the last day by this code
version instead of probing again, so a cold start costs one read.

The probes show that a service honours each condition; whether it does so atomically under
real races is what the contract suite (tests/test_store_contract.py) tests on each server.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from shared import __version__
from shared.errors import (
    MlopsError,
    ObjectNotFound,
    ObjectVersionNotFound,
    PreconditionFailed,
    StoreNotTrusted,
)
from shared.store.base import ObjectStore

CHECK_PREFIX = "store-check/"
VERDICT_KEY = CHECK_PREFIX + "verdict.json"
# A recorded verdict is taken on trust for this long; a server can change under a bucket.
VERDICT_MAX_AGE = timedelta(days=1)
# An id of S3's shape that no service has handed out.
_UNKNOWN_VERSION = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
# What to do when the registry cannot be kept: said once, in every refusal.
REMEDY = (
    "use a store whose service supports conditional writes (AWS S3, or a server that passes"
    " `mlops store check`), or an unversioned bucket if only the versioned one fails"
)


@dataclass(frozen=True)
class ProbeResult:
    """One guarantee and whether it held: True, False, or None where it does not apply."""

    name: str
    held: bool | None
    detail: str
    registry_needs: bool


@dataclass(frozen=True)
class StoreVerdict:
    """What a store check found, as recorded in the store."""

    store: str
    service: str
    checked_at: str
    code_version: str
    probes: tuple[ProbeResult, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[ProbeResult]:
        """The probes that did not hold."""
        return [probe for probe in self.probes if probe.held is False]

    @property
    def trusted(self) -> bool:
        """Whether every guarantee the registry needs held."""
        return not any(probe.registry_needs for probe in self.failed)

    def refusal(self) -> str:
        """Why the registry will not write to this store, naming each failed probe."""
        failed = "; ".join(
            f"{probe.name}: {probe.detail}" for probe in self.failed if probe.registry_needs
        )
        return (
            f"the store {self.store} cannot keep the model registry: the store check failed"
            f" ({failed}); nothing was written to models/. {REMEDY}; `mlops store check`"
            " prints every probe"
        )


def encode_verdict(verdict: StoreVerdict) -> bytes:
    """The verdict as the JSON recorded in the store."""
    return msgspec.json.format(msgspec.json.encode(verdict), indent=2)


def decode_verdict(body: bytes) -> StoreVerdict:
    """A recorded verdict; msgspec.ValidationError / DecodeError if it is not one."""
    return msgspec.json.decode(body, type=StoreVerdict)


class _Probes:
    """The probes, in order, over scratch keys of one run."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.scratch = f"{CHECK_PREFIX}{uuid.uuid4().hex}/"
        self.as_given = store.as_the_service_answers("as given")
        self.unquoted = store.as_the_service_answers("unquoted")

    def key(self, name: str) -> str:
        return self.scratch + name

    def read_after_write(self) -> ProbeResult:
        key = self.key("written")
        self.store.put(key, b"first")
        first = self.store.get(key).body
        self.store.put(key, b"second")
        second = self.store.get(key).body
        held = (first, second) == (b"first", b"second")
        detail = "a write is read back at once" if held else f"read {first!r}, then {second!r}"
        return ProbeResult("read-after-write", held, detail, registry_needs=True)

    def create_only(self) -> ProbeResult:
        key = self.key("created")
        self.store.put(key, b"first", if_none_match=True)
        try:
            self.store.put(key, b"second", if_none_match=True)
        except PreconditionFailed:
            body = self.store.get(key).body
            held = body == b"first"
            detail = "a second If-None-Match: * write is refused"
            return ProbeResult("create-only", held, detail if held else f"but read {body!r}", True)
        return ProbeResult(
            "create-only",
            False,
            "a second If-None-Match: * write of an existing key succeeded (the service ignores"
            " If-None-Match), so two writers could both create a version",
            registry_needs=True,
        )

    def compare_and_swap(self, store: ObjectStore, name: str, unquote: bool) -> ProbeResult:
        key = self.key("swapped")
        self.store.put(key, b"before")
        etag = self.store.get(key).etag
        sent = etag.strip('"') if unquote else etag
        try:
            store.put(key, b"after", if_match=sent)
        except MlopsError as exc:
            return ProbeResult(name, False, f"If-Match {sent} was refused ({exc})", False)
        body = self.store.get(key).body
        return ProbeResult(name, body == b"after", f"If-Match {sent} replaced the object", False)

    def compare_and_swap_as_sent(self) -> ProbeResult:
        key = self.key("swapped-by-store")
        self.store.put(key, b"before")
        etag = self.store.get(key).etag
        name = "compare-and-swap"
        try:
            self.store.put(key, b"after", if_match=etag)
        except MlopsError as exc:
            return ProbeResult(
                name, False, f"If-Match with the current ETag was refused ({exc})", True
            )
        held = self.store.get(key).body == b"after"
        spelling = getattr(self.store, "etag_spelling", "as given")
        detail = f"If-Match with the current ETag replaces the object (ETags sent {spelling})"
        return ProbeResult(name, held, detail, registry_needs=True)

    def lost_race(self) -> ProbeResult:
        key = self.key("raced")
        stale = self.store.put(key, b"read by the loser")
        self.store.put(key, b"written by the winner")
        try:
            self.store.put(key, b"written by the loser", if_match=stale)
        except PreconditionFailed:
            held = self.store.get(key).body == b"written by the winner"
            detail = "If-Match with a stale ETag is refused as a lost condition"
            return ProbeResult("lost race detected", held, detail, registry_needs=True)
        return ProbeResult(
            "lost race detected",
            False,
            "If-Match with a stale ETag overwrote the newer object: a lost update",
            registry_needs=True,
        )

    def missing_key(self) -> ProbeResult:
        key = self.key("never-written")
        name = "If-Match on a missing key"
        try:
            self.store.put(key, b"x", if_match='"0123456789abcdef0123456789abcdef"')
        except (ObjectNotFound, PreconditionFailed):
            held = self.store.head(key) is None
            return ProbeResult(name, held, "refused; nothing is created", registry_needs=True)
        return ProbeResult(name, False, "it created the object", registry_needs=True)

    def version_ids(self) -> ProbeResult:
        key = self.key("versioned")
        self.store.put(key, b"old")
        old = self.store.get(key).version_id
        if old is None:
            return ProbeResult(
                "version ids", None, "the bucket is not versioned; lineage records ETags", False
            )
        self.store.put(key, b"new")
        body = self.store.get(key, version_id=old).body
        detail = "an object's earlier version is read by its id"
        return ProbeResult("version ids", body == b"old", detail, registry_needs=False)

    def unknown_version(self) -> ProbeResult:
        key = self.key("written")
        name = "an unknown version id is refused"
        try:
            self.store.get(key, version_id=_UNKNOWN_VERSION)
        except ObjectVersionNotFound:
            return ProbeResult(name, True, "rather than the current object served", False)
        return ProbeResult(name, False, "the current object was served for it", False)

    def listing_order(self) -> ProbeResult:
        written = ["b", "a/1", "a-b"]  # "a-b" sorts before "a/1": a folder walk gets it wrong
        for name in written:
            self.store.put(self.key(f"listed/{name}"), b"")
        prefix = self.key("listed/")
        raw = [info.key.removeprefix(prefix) for info in self.as_given.list(prefix)]
        listed = [info.key.removeprefix(prefix) for info in self.store.list(prefix)]
        held = listed == sorted(written)
        if raw == sorted(written):
            detail = "in ascending key order, every new key listed"
        elif held:
            detail = f"the service lists {raw}; this store sorts its listings"
        else:
            detail = f"listed {listed}, expected {sorted(written)}"
        return ProbeResult("listing order", held, detail, registry_needs=False)

    def clean_up(self) -> None:
        for info in list(self.store.list(self.scratch)):
            self.store.delete(info.key)


def check_store(store: ObjectStore, *, record: bool = True) -> StoreVerdict:
    """Probe every guarantee on scratch keys; record the verdict in the store if `record`.

    Errors that stop the first write (credentials, a missing bucket) propagate as they are:
    they say nothing about the guarantees. A probe that errs later fails, with the error.
    """
    probes = _Probes(store)
    results = [probes.read_after_write()]
    try:
        steps: list[tuple[str, bool, Callable[[], ProbeResult]]] = [
            ("create-only", True, probes.create_only),
            (
                "compare-and-swap, ETag as returned",
                False,
                lambda: probes.compare_and_swap(
                    probes.as_given, "compare-and-swap, ETag as returned", unquote=False
                ),
            ),
            (
                "compare-and-swap, ETag unquoted",
                False,
                lambda: probes.compare_and_swap(
                    probes.unquoted, "compare-and-swap, ETag unquoted", unquote=True
                ),
            ),
            ("compare-and-swap", True, probes.compare_and_swap_as_sent),
            ("lost race detected", True, probes.lost_race),
            ("If-Match on a missing key", True, probes.missing_key),
            ("version ids", False, probes.version_ids),
            ("an unknown version id is refused", False, probes.unknown_version),
            ("listing order", False, probes.listing_order),
        ]
        for name, needed, probe in steps:
            try:
                results.append(probe())
            except Exception as exc:  # any failure of a probe is its verdict, named
                results.append(ProbeResult(name, False, f"{type(exc).__name__}: {exc}", needed))
    finally:
        probes.clean_up()
    verdict = StoreVerdict(
        store=store.uri,
        service=store.service,
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        code_version=__version__,
        probes=tuple(results),
    )
    if record:
        store.put(VERDICT_KEY, encode_verdict(verdict), content_type="application/json")
    return verdict


_TRUSTED: dict[str, StoreVerdict] = {}
_CHECKING = threading.Lock()


def ensure_trusted(store: ObjectStore) -> None:
    """Raise StoreNotTrusted unless the store keeps what the registry needs.

    Checked once per service and process (a refusal is not cached: the next write checks
    again, in case the service was fixed); a trusted verdict recorded in the store within
    VERDICT_MAX_AGE by this code version is taken instead of probing.
    """
    if not store.checked_before_registry_writes or store.service in _TRUSTED:
        return
    with _CHECKING:  # threads of one process check once, not side by side
        if store.service in _TRUSTED:
            return
        verdict = _recorded_verdict(store) or check_store(store)
        if not verdict.trusted:
            raise StoreNotTrusted(verdict.refusal())
        _TRUSTED[store.service] = verdict


def forget_verdicts() -> None:
    """Forget the verdicts of this process (for tests, and after reconfiguring a service)."""
    with _CHECKING:
        _TRUSTED.clear()


def _recorded_verdict(store: ObjectStore) -> StoreVerdict | None:
    """The verdict recorded in the store, if trusted, recent, of this code and this service."""
    try:
        verdict = decode_verdict(store.get(VERDICT_KEY).body)
        checked_at = datetime.fromisoformat(verdict.checked_at)
    except (ObjectNotFound, msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None
    fresh = datetime.now(UTC) - checked_at < VERDICT_MAX_AGE
    ours = (verdict.code_version, verdict.service) == (__version__, store.service)
    return verdict if verdict.trusted and fresh and ours else None
