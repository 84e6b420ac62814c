"""The training function: an S3 "object created" event under datasets/ starts a run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from functions.promotion import challenge
from shared.store import ObjectStore, open_store
from shared.training.job import TrainingOutcome, train_from_dataset

logger = logging.getLogger(__name__)


def dataset_keys(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of every record in an S3 notification; keys arrive URL-encoded."""
    return [
        (r["s3"]["bucket"]["name"], unquote_plus(r["s3"]["object"]["key"]))
        for r in event.get("Records", [])
    ]


def handle_s3_event(
    event: Mapping[str, Any], store: ObjectStore | None = None
) -> list[TrainingOutcome]:
    """Train once per uploaded dataset in the event; the store defaults to MLOPS_STORE."""
    store = store or open_store()
    outcomes = []
    for bucket, key in dataset_keys(event):
        relative = store.key_for_event(bucket, key)
        outcome = train_from_dataset(store, relative, trigger=f"s3-event s3://{bucket}/{key}")
        logger.info("training %s: %s", key, outcome)
        outcomes.append(outcome)
        if outcome.status in ("registered", "duplicate"):
            challenge(store, outcome.model)
    return outcomes
