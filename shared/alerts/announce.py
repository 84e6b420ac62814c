"""Around a function's work: every decision it records is announced when it is done."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from shared.alerts.channels import channels_for
from shared.alerts.outbox import DeliveryCounts, Outbox
from shared.registry.audit import AuditEvent, listening
from shared.store.base import ObjectStore

logger = logging.getLogger(__name__)


@contextmanager
def announcing(
    store: ObjectStore,
    environ: Mapping[str, str] | None = None,
    *,
    retry: bool = False,
    keep: bool = True,
) -> Iterator[Outbox]:
    """Queue the decisions recorded in the block; send them after it, even if it raised.

    `retry` also sends again what failed in earlier runs (the hourly check does). `keep`
    False: a failed send is logged, not kept for a retry (serving and batch, whose roles
    may not write the registry record).
    """
    env = os.environ if environ is None else environ
    outbox = Outbox(store, channels_for(store, env), keep=keep)
    try:
        with listening(outbox.recorded):
            yield outbox
    finally:
        outbox.deliver_new()
        if retry:
            outbox.retry_unsent()
        if outbox.counts != DeliveryCounts():
            logger.info("announcements: %s", outbox.counts)


@contextmanager
def announcing_if_recorded(store: ObjectStore, *, keep: bool = False) -> Iterator[None]:
    """`announcing`, paying for the outbox (settings, channels) only once a record is
    written in the block: for a block that almost never records one, such as a request
    to a model already loaded (serving's one decision is refusing an artifact it loads)."""
    heard: list[tuple[str, AuditEvent]] = []
    try:
        with listening(lambda key, record: heard.append((key, record))):
            yield
    finally:
        if heard:
            with announcing(store, keep=keep) as outbox:
                for key, record in heard:
                    outbox.recorded(key, record)
