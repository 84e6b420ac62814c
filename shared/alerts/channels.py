"""Where decisions go: EventBridge's default bus, and a signed webhook.

Each channel's `send` is bounded in time and raises when the decision was not accepted;
the outbox counts, logs and retries (shared/alerts/outbox.py).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.alerts.decisions import Decision
from shared.alerts.outbox import Channel
from shared.errors import MlopsError
from shared.store.base import ObjectStore
from shared.store.local import LocalStore

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Mlops-Signature"
# A receiver refuses a signature older than this (replays); see docs/alerts.md.
SIGNATURE_TOLERANCE_SECONDS = 300


class ChannelError(MlopsError):
    """A channel did not accept a decision."""


def _body(decision: Decision) -> bytes:
    return json.dumps(
        {"source": decision.source, "detail-type": decision.detail_type, "detail": decision.detail},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


class EventBridgeChannel:
    """PutEvents on the account's default bus (the only bus the functions' roles name)."""

    name = "eventbridge"

    def __init__(self, client: Any = None) -> None:
        self._client = client

    def _events(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Bounded: an hourly check must not wait on a slow endpoint for long.
            config = Config(connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 2})
            self._client = boto3.client("events", config=config)
        return self._client

    def send(self, decision: Decision) -> None:
        """One PutEvents entry; a refused entry (FailedEntryCount) is a failure."""
        answer = self._events().put_events(
            Entries=[
                {
                    "Source": decision.source,
                    "DetailType": decision.detail_type,
                    "Detail": json.dumps(decision.detail, sort_keys=True),
                    "EventBusName": "default",
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            entry = answer["Entries"][0]
            raise ChannelError(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of t.body>``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookChannel:
    """POST the decision as JSON to a URL, signed, with bounded time and retries."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout: float = 2.0,
        attempts: int = 2,
        pause: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ChannelError(f"webhook URL {url!r}: only http:// and https:// are sent to")
        self.url, self._secret = url, secret
        self._timeout, self._attempts, self._pause, self._clock = timeout, attempts, pause, clock

    def send(self, decision: Decision) -> None:
        """At most `attempts` tries of at most 2 x `timeout` seconds each, whatever the
        receiver does (a socket timeout bounds each read, not a trickle of bytes)."""
        # Here, not at the top: serving imports this module, and urllib.request costs its
        # cold start milliseconds for a call that is rare.
        import urllib.error
        import urllib.request

        def post(request: urllib.request.Request) -> None:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:
                answer.read(1024)

        body = _body(decision)
        problem = "not tried"
        for attempt in range(1, self._attempts + 1):
            # Signed at each try: a retry later carries its own time.
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "serverless-mlops",
                SIGNATURE_HEADER: sign(self._secret, int(self._clock()), body),
            }
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                _within(2 * self._timeout, post, request)
                return
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    break  # the receiver refuses this body: trying again changes nothing
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                problem = str(getattr(exc, "reason", exc))
            if attempt < self._attempts:
                time.sleep(self._pause)
        raise ChannelError(f"webhook {self.url}: {problem}")


def _within(seconds: float, call: Callable[[Any], None], argument: Any) -> None:
    """`call(argument)` in a thread given `seconds` in all; TimeoutError past them (the
    thread is left to end on its own socket timeout: it holds one connection, no lock)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call(argument)
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, name="webhook", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        raise TimeoutError(f"no whole answer within {seconds:g} s")
    if outcome[0] is not None:
        raise outcome[0]


def channels_for(store: ObjectStore, environ: Mapping[str, str]) -> list[Channel]:
    """The channels the stage's settings name; none is an empty list (nothing sent).

    MLOPS_EVENTS=1 sends to EventBridge (not from a local store: a laptop has no bus);
    MLOPS_WEBHOOK_URL with MLOPS_WEBHOOK_SECRET posts to a webhook from anywhere.
    """
    events = environ.get("MLOPS_EVENTS", "0") == "1" and not isinstance(store, LocalStore)
    url = environ.get("MLOPS_WEBHOOK_URL", "")
    return list(_configured(events, url, environ.get("MLOPS_WEBHOOK_SECRET", "") if url else ""))


# Made once per process and settings: serving asks on every request, a warm container keeps
# its EventBridge client, and a missing secret is logged once, not per request.
@functools.lru_cache(maxsize=8)
def _configured(events: bool, url: str, secret: str) -> tuple[Channel, ...]:
    channels: list[Channel] = [EventBridgeChannel()] if events else []
    if url:
        if len(secret) < 16:
            # Unsigned calls would let anyone forge a promotion notice: send none.
            logger.error("MLOPS_WEBHOOK_URL is set but MLOPS_WEBHOOK_SECRET (16+ chars) is not")
        else:
            try:
                channels.append(WebhookChannel(url, secret.encode()))
            except ChannelError as exc:
                logger.error("%s", exc)
    return tuple(channels)
