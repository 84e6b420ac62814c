"""Judging a staging version against production: after training, and after each check."""

from __future__ import annotations

import logging
from datetime import datetime

from shared.errors import MlopsError
from shared.maintenance.challenger import consider
from shared.store import ObjectStore

logger = logging.getLogger(__name__)


def challenge(store: ObjectStore, model: str, *, now: datetime | None = None) -> None:
    """Judge a new staging version against production (the hourly check does it again).

    `now` ends the label window whose rows judge it (default: the clock).
    """
    try:
        result = consider(store, model, now=now)
    except MlopsError as exc:
        # The version is registered either way; the next hourly check judges it again.
        logger.error("promotion of %s not decided: %s", model, exc)
        return
    logger.info("promotion of %s: %s", model, result.note)
