"""The monitoring function: on its schedule, check every model that had traffic."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from functions.training import challenge
from shared.monitoring.job import CheckOutcome, check_all
from shared.registry.registry import ModelRegistry, list_models
from shared.store import ObjectStore, open_store

logger = logging.getLogger(__name__)


def handle_schedule(
    event: Mapping[str, Any], store: ObjectStore | None = None
) -> list[CheckOutcome]:
    """A scheduled (EventBridge) event: check the last complete window of each model.

    The event's own time decides the window, so a delivery retried later checks the same
    window again (and writes the same report, with no second audit record).
    """
    when = event.get("time")
    now = datetime.fromisoformat(when.replace("Z", "+00:00")) if isinstance(when, str) else None
    store = store or open_store()
    outcomes = check_all(store, now or datetime.now(UTC))
    for outcome in outcomes:
        logger.info(
            "monitored %s %s: %s (%d rows)",
            outcome.model,
            outcome.window,
            outcome.verdict,
            outcome.rows,
        )
    # The labelled rows the check just counted may be what a waiting challenger needs.
    for model in list_models(store):
        record, _ = ModelRegistry(store, model).read()
        if record.aliases.get("staging") not in (None, record.aliases.get("production")):
            challenge(store, model)
    return outcomes
