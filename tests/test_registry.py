"""The registry: numbering without gaps, aliases with history, no lost writes."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from shared.errors import ModelNotFound, RegistryError, VersionNotFound
from shared.registry.audit import read_trail
from shared.registry.records import (
    PENDING_LEASE,
    AliasConflict,
    RegistryRecord,
    abandoned,
    claim_version,
    complete_version,
    fail_version,
    move_alias,
    source_of,
)
from shared.registry.registry import ModelRegistry
from shared.store.base import ObjectStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ready_versions(n: int) -> RegistryRecord:
    record = RegistryRecord(model="m")
    for i in range(n):
        now = T0 + timedelta(hours=i)
        record, entry = claim_version(record, run_id=f"r{i}", source=f"s{i}", data_key="k", now=now)
        record, _ = complete_version(
            record, entry.version, sha256="ab", primary_metric="f1", metric_value=0.5, now=now
        )
    return record


def test_numbers_follow_each_other_and_first_ready_version_is_production() -> None:
    record = ready_versions(3)
    assert [e.version for e in record.versions] == [1, 2, 3]
    assert record.aliases == {"production": 1, "staging": 3}
    assert [(c.alias, c.version, c.previous) for c in record.alias_history] == [
        ("production", 1, None),
        ("staging", 2, None),
        ("staging", 3, 2),
    ]


def test_alias_history_answers_which_version_served_when() -> None:
    record = ready_versions(3)
    record = move_alias(record, "production", 3, reason="promoted", now=T0 + timedelta(days=1))
    assert record.alias_at("production", T0 - timedelta(seconds=1)) is None
    assert record.alias_at("production", T0 + timedelta(hours=5)) == 1
    assert record.alias_at("production", T0 + timedelta(days=2)) == 3
    assert record.alias_at("staging", T0 + timedelta(hours=1, minutes=30)) == 2


def test_resolve_by_number_alias_and_latest() -> None:
    record = ready_versions(2)
    assert record.resolve("1").version == 1
    assert record.resolve("production").version == 1
    assert record.resolve("staging").version == 2
    assert record.resolve("latest").version == 2
    with pytest.raises(VersionNotFound, match="no version 9"):
        record.resolve("9")
    with pytest.raises(VersionNotFound, match="no version or alias 'canary'"):
        record.resolve("canary")
    with pytest.raises(VersionNotFound, match="no 'staging' version yet"):
        ready_versions(1).resolve("staging")


def test_an_alias_only_points_at_a_ready_version() -> None:
    record, entry = claim_version(
        RegistryRecord(model="m"), run_id="r", source="s", data_key="k", now=T0
    )
    with pytest.raises(RegistryError, match="pending, not ready"):
        move_alias(record, "production", entry.version, reason="x", now=T0)
    failed = fail_version(record, entry.version, reason="boom", now=T0)
    assert failed.entry(1).status == "failed"
    with pytest.raises(RegistryError, match="failed, not pending"):
        complete_version(failed, 1, sha256="a", primary_metric="f1", metric_value=1.0, now=T0)


def test_unknown_model_is_named(store: ObjectStore) -> None:
    with pytest.raises(ModelNotFound, match="'ghost'"):
        ModelRegistry(store, "ghost").load()


def test_claims_are_idempotent_per_source(store: ObjectStore) -> None:
    registry = ModelRegistry(store, "m")
    first, dup1 = registry.claim(run_id="a", source="same", data_key="k")
    again, dup2 = registry.claim(run_id="b", source="same", data_key="k")
    assert (first.version, dup1, again.version, dup2) == (1, False, 1, True)


def test_concurrent_claims_never_lose_a_write(racing_store: ObjectStore) -> None:
    registry = ModelRegistry(racing_store, "m")
    barrier = threading.Barrier(6)
    claimed: list[int] = []

    def worker(i: int) -> None:
        barrier.wait()
        for j in range(3):
            entry, _ = registry.claim(run_id=f"{i}-{j}", source=f"{i}-{j}", data_key="k")
            claimed.append(entry.version)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == list(range(1, 19))
    record = registry.load()
    assert [e.version for e in record.versions] == list(range(1, 19))
    assert len({e.source for e in record.versions}) == 18


def test_alias_moves_are_recorded_in_the_audit_trail(store: ObjectStore) -> None:
    registry = ModelRegistry(store, "m")
    for source in ("a", "b"):
        entry, _ = registry.claim(run_id=source, source=source, data_key="k")
        registry.complete(entry.version, sha256="x", primary_metric="f1", metric_value=0.9)
    registry.set_alias("production", 2, reason="manual", actor="cli")
    # Promoted to production, version 2 leaves staging: no alias names it twice.
    assert registry.load().aliases == {"production": 2}
    history = registry.load().alias_history
    assert [(c.alias, c.version, c.actor) for c in history[-2:]] == [
        ("production", 2, "cli"),
        ("staging", None, "cli"),
    ]
    events = [(e.event, e.details.get("version")) for e in read_trail(store, "m")]
    assert events == [
        ("version_claimed", 1),
        ("version_registered", 1),
        ("version_claimed", 2),
        ("version_registered", 2),
        ("alias_moved", 2),
    ]


def test_a_claim_whose_acknowledgement_was_lost_is_still_ours(store: ObjectStore) -> None:
    registry = ModelRegistry(store, "m")
    first, _ = registry.claim(run_id="run-a", source="s", data_key="k")
    # The SDK retried a write that had succeeded: the same run claims again.
    again, duplicate = registry.claim(run_id="run-a", source="s", data_key="k")
    assert (again.version, duplicate) == (first.version, False)
    assert len(registry.load().versions) == 1


def test_an_abandoned_claim_is_failed_and_the_source_can_train_again() -> None:
    record, entry = claim_version(
        RegistryRecord(model="m"), run_id="dead", source="s", data_key="k", now=T0
    )
    later = T0 + PENDING_LEASE + timedelta(seconds=1)
    assert abandoned(entry, later)
    assert not abandoned(entry, T0 + timedelta(minutes=5))
    assert source_of(fail_version(record, 1, reason="x", now=later), "s") is None


def test_a_claim_met_again_by_its_own_delivery_was_left_by_a_run_that_died() -> None:
    _, entry = claim_version(
        RegistryRecord(model="m"), run_id="r1", source="s", data_key="k", now=T0, delivery="req-1"
    )
    soon = T0 + timedelta(minutes=1)
    assert abandoned(entry, soon, "req-1") == "abandoned: its run died (delivery req-1 was retried)"
    assert abandoned(entry, soon, "req-2") is None  # another delivery: the run may be alive
    assert abandoned(entry, soon) is None


def test_completing_twice_with_the_same_artifact_is_a_no_op() -> None:
    record = ready_versions(1)
    again, alias = complete_version(
        record, 1, sha256="ab", primary_metric="f1", metric_value=0.5, now=T0
    )
    assert (again, alias) == (record, "production")


def test_a_ready_version_is_never_marked_failed() -> None:
    record = ready_versions(1)
    assert fail_version(record, 1, reason="late error", now=T0) == record


def _ready_versions(registry: ModelRegistry, n: int) -> None:
    for source in [f"s{i}" for i in range(n)]:
        entry, _ = registry.claim(run_id=source, source=source, data_key="k")
        registry.complete(entry.version, sha256=source, primary_metric="f1", metric_value=0.9)


def test_an_alias_move_can_require_where_the_alias_points_now(store: ObjectStore) -> None:
    registry = ModelRegistry(store, "m")
    _ready_versions(registry, 3)
    registry.set_alias("production", 2, reason="better", actor="cli", expected=1)
    with pytest.raises(AliasConflict, match="points at version 2, not version 1 as expected"):
        registry.set_alias("production", 3, reason="stale", actor="cli", expected=1)
    assert registry.load().aliases["production"] == 2


def test_rollback_after_two_promotions_goes_back_two_steps(store: ObjectStore) -> None:
    registry = ModelRegistry(store, "m")
    _ready_versions(registry, 3)
    registry.set_alias("production", 2, reason="promoted", actor="rule")
    registry.set_alias("production", 3, reason="promoted", actor="rule")
    assert registry.rollback(reason="bad release", actor="cli")[1:] == (3, 2)
    assert registry.rollback(reason="still bad", actor="cli")[1:] == (2, 1)
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback(reason="again", actor="cli")
    assert registry.load().aliases["production"] == 1
    rolled = [e.details for e in read_trail(store, "m") if e.event == "rolled_back"]
    assert [(d["previous"], d["version"], d["actor"]) for d in rolled] == [
        (3, 2, "cli"),
        (2, 1, "cli"),
    ]


def test_a_rejected_version_is_never_served_and_moves_no_alias(store: ObjectStore) -> None:
    registry = ModelRegistry(store, "m")
    _ready_versions(registry, 1)
    entry, _ = registry.claim(run_id="r", source="r", data_key="k")
    registry.reject(
        entry.version,
        sha256="x",
        primary_metric="roc_auc",
        metric_value=0.5,
        reason="no better than chance",
        figures={"roc_auc": 0.5},
    )
    record = registry.load()
    assert record.entry(2).status == "rejected"
    assert record.aliases == {"production": 1}
    with pytest.raises(RegistryError, match="rejected, not ready"):
        registry.set_alias("production", 2, reason="by hand", actor="cli")


def test_a_registry_written_by_newer_code_still_reads() -> None:
    body = msgspec.json.encode(
        {
            "model": "m",
            "versions": [
                {
                    "version": 1,
                    "status": "archived",
                    "run_id": "r",
                    "source": "s",
                    "data_key": "k",
                    "created_at": "t",
                    "updated_at": "t",
                }
            ],
            "aliases": {"canary": 1},
            "alias_history": [
                {"alias": "canary", "version": 1, "previous": None, "at": "t", "reason": "x"}
            ],
        }
    )
    record = msgspec.json.decode(body, type=RegistryRecord)
    assert record.entry(1).status == "archived"
    assert record.aliases == {"canary": 1}


def test_twenty_racing_promotions_lose_no_write(racing_store: ObjectStore) -> None:
    registry = ModelRegistry(racing_store, "m")
    _ready_versions(registry, 5)

    def promote(i: int) -> None:
        mine = ModelRegistry(racing_store, "m")
        if i % 4 == 3:
            with contextlib.suppress(RegistryError):
                mine.rollback(reason=f"r{i}", actor=f"user{i}")
        else:
            mine.set_alias("production", 1 + i % 5, reason=f"p{i}", actor=f"user{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(promote, range(20)))
    record = registry.load()
    production = [c for c in record.alias_history if c.alias == "production"]
    # Replaying the history in its order gives the final aliases: any sequential order
    # of the same moves could have produced this record, and no move was lost.
    current = None
    for change in production:
        assert change.previous == current
        current = change.version
    assert record.aliases["production"] == current
    # Every move that reported success (it left an audit record) is in the history.
    trail = read_trail(racing_store, "m")
    reported = sorted(
        e.details["actor"]
        for e in trail
        if e.event in ("alias_moved", "rolled_back") and e.details.get("alias") == "production"
    )
    assert reported == sorted(c.actor for c in production if c.actor.startswith("user"))
    assert len(reported) >= 5
