"""The training function: an S3 "object created" event under datasets/ starts a run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from functions.promotion import challenge
from functions.s3_events import object_records
from shared.alerts.announce import announcing
from shared.errors import InvalidKey
from shared.store import ObjectStore, open_store
from shared.training.job import TrainingOutcome, ignore_upload, train_from_dataset
from shared.training.memory import map_large_blocks

logger = logging.getLogger(__name__)


def dataset_uploads(event: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(bucket, key, version id) of every record in an S3 notification (see s3_events)."""
    return object_records(event)


def event_time(event: Mapping[str, Any]) -> datetime | None:
    """When the event's first record says the upload happened (None: it does not say)."""
    records = event.get("Records")
    first = records[0] if isinstance(records, list) and records else None
    when = first.get("eventTime") if isinstance(first, Mapping) else None
    if not isinstance(when, str):
        return None
    try:
        return datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return None


def handle_s3_event(
    event: Mapping[str, Any], store: ObjectStore | None = None, *, delivery: str | None = None
) -> list[TrainingOutcome]:
    """Train once per uploaded dataset in the event; the store defaults to MLOPS_STORE.

    `delivery` is Lambda's request id, which its retries of the invocation keep.
    """
    # This process exists to train: a lower peak for the same work (see the module).
    map_large_blocks()
    store = store or open_store()
    # A failed or rejected training, and a promotion decided after it, are announced.
    with announcing(store):
        return _train_each(store, event, delivery)


def _train_each(
    store: ObjectStore, event: Mapping[str, Any], delivery: str | None
) -> list[TrainingOutcome]:
    outcomes = []
    for bucket, key, version_id in dataset_uploads(event):
        try:
            relative = store.key_for_event(bucket, key)
        except InvalidKey as exc:
            # Another bucket's (or prefix's) event: recorded, not raised, or Lambda would
            # retry an event that can never succeed.
            outcomes.append(
                ignore_upload(store, key, location=f"s3://{bucket}/{key}", reason=str(exc))
            )
            continue
        outcome = train_from_dataset(
            store,
            relative,
            trigger=f"s3-event s3://{bucket}/{key}",
            version_id=version_id,
            delivery=delivery,
        )
        logger.info("training %s: %s", key, outcome)
        outcomes.append(outcome)
        if outcome.status in ("registered", "duplicate"):
            # The upload's time ends the label window that judges the new version.
            challenge(store, outcome.model, now=event_time(event))
    return outcomes
