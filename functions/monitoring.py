"""The monitoring function: on its schedule, check every model that had traffic."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from functions.promotion import challenge
from shared.alerts.announce import announcing
from shared.alerts.metrics import emit_check_metrics
from shared.errors import MlopsError
from shared.maintenance.retraining import RetrainingOutcome, maybe_retrain
from shared.monitoring.job import CheckOutcome, check_all
from shared.monitoring.report import decode_report
from shared.registry.registry import ModelRegistry, list_models
from shared.store import ObjectStore, open_store

logger = logging.getLogger(__name__)


def retrain(store: ObjectStore, outcome: CheckOutcome) -> RetrainingOutcome | None:
    """Act on a window's verdict: assemble a new training set if the spec says so.

    On S3 the written CSV starts the ordinary training trigger; `mlops monitor` trains it
    in-process on a local store.
    """
    try:
        report = decode_report(store.get(outcome.report_key).body, outcome.report_key)
        result = maybe_retrain(store, report)
    except MlopsError as exc:
        logger.error(
            "retraining of %s after %s not started: %s", outcome.model, outcome.window, exc
        )
        return None
    logger.info("retraining of %s after %s: %s", outcome.model, outcome.window, result.reason)
    return result


def handle_schedule(
    event: Mapping[str, Any], store: ObjectStore | None = None
) -> list[CheckOutcome]:
    """A scheduled (EventBridge) event: check the last complete window of each model.

    The event's own time decides the window, so a delivery retried later checks the same
    window again (and writes the same report, with no second audit record, so no second
    announcement). Each decision recorded is announced after the check (shared/alerts),
    and announcements that failed before are sent again.
    """
    when = event.get("time")
    now = datetime.fromisoformat(when.replace("Z", "+00:00")) if isinstance(when, str) else None
    store = store or open_store()
    now = now or datetime.now(UTC)
    with announcing(store, retry=True):
        return _check_and_act(store, now)


def _check_and_act(store: ObjectStore, now: datetime) -> list[CheckOutcome]:
    outcomes = check_all(store, now)
    for outcome in outcomes:
        logger.info(
            "monitored %s %s: %s (%d rows)",
            outcome.model,
            outcome.window,
            outcome.verdict,
            outcome.rows,
        )
    for outcome in outcomes:
        emit_check_metrics(store, outcome.report_key)
    for outcome in outcomes:
        retrain(store, outcome)
    # The labelled rows the check just counted may be what a waiting challenger needs.
    for model in list_models(store):
        record, _ = ModelRegistry(store, model).read()
        if record.aliases.get("staging") not in (None, record.aliases.get("production")):
            challenge(store, model, now=now)
    return outcomes
