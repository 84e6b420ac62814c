"""Which audit records are decisions to announce, and what an announcement says.

Pure: a decision is made from an audit record and its key, with no I/O, so that what an
event carries is tested apart from how it is sent.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.monitoring.report import report_key
from shared.registry.audit import AuditEvent

SOURCE = "serverless-mlops"

# One EventBridge detail-type per kind of decision: rules route on it.
DETAIL_TYPES: dict[str, str] = {
    "verdict_changed": "Model Verdict Changed",
    "promotion_decided": "Model Promotion Decided",
    "rolled_back": "Model Rolled Back",
    "retraining_started": "Model Retraining Started",
    "retraining_skipped": "Model Retraining Skipped",
    "training_failed": "Model Training Failed",
    "version_rejected": "Model Version Rejected",
    "monitoring_failed": "Model Monitoring Failed",
    "alias_moved": "Model Alias Moved",
    "labels_rejected": "Model Labels Rejected",
    "artifact_rejected": "Model Artifact Rejected",
}
_REJECTED = ("version_rejected", "labels_rejected", "artifact_rejected")

# An event carries a few lines and links to the bucket for the rest: EventBridge takes at
# most 256 KB an entry, and a chat message should be read at a glance.
MAX_FINDINGS = 5
MAX_LINE = 300


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """One announcement: what EventBridge and the webhook receive for one audit record."""

    source: str
    detail_type: str
    audit_key: str
    detail: dict[str, Any]


def _lines(details: dict[str, Any]) -> list[str]:
    found: list[Any] = []
    for name in ("reasons", "notes"):
        value = details.get(name)
        if isinstance(value, list):
            found.extend(value)
    for name in ("reason", "error"):
        value = details.get(name)
        if isinstance(value, str) and value not in found:
            found.append(value)
    return [str(line)[:MAX_LINE] for line in found[:MAX_FINDINGS]]


def _version(value: object) -> str:
    return f"v{value}" if isinstance(value, int) else "none"


def _outcome(event: str, details: dict[str, Any]) -> str | None:
    if isinstance(details.get("outcome"), str):  # promotion_decided: promote, keep, wait, ...
        return str(details["outcome"])
    if event == "rolled_back":
        return f"{_version(details.get('previous'))} -> {_version(details.get('version'))}"
    if event == "alias_moved":
        moved = f"{_version(details.get('previous'))} -> {_version(details.get('version'))}"
        return f"{details.get('alias')}: {moved}"
    if event in ("training_failed", "monitoring_failed"):
        return "failed"
    if event in _REJECTED:
        return "rejected"
    if event in ("retraining_started", "retraining_skipped"):
        return event.removeprefix("retraining_")
    return None


def _text(details: dict[str, Any], name: str) -> str | None:
    value = details.get(name)
    return value if isinstance(value, str) else None


def decision_of(key: str, record: AuditEvent) -> Decision | None:
    """The announcement of the audit record at `key`, or None if it is no decision."""
    detail_type = DETAIL_TYPES.get(record.event)
    if detail_type is None:
        return None
    details = record.details
    window = _text(details, "window")
    version = details.get("version", details.get("challenger"))
    detail = {
        "model": record.model,
        "event": record.event,
        "at": record.at,
        "version": version if isinstance(version, int) else None,
        "window": window,
        "verdict": _text(details, "verdict"),
        "outcome": _outcome(record.event, details),
        # Who moved an alias: an IAM principal, "cli", "rule" or "training" (a rule can
        # route people's moves apart from the automatic ones).
        "alias": _text(details, "alias"),
        "actor": _text(details, "actor"),
        "findings": _lines(details),
        "audit_key": key,
        # The report says everything the event leaves out; a window names its report.
        "report_key": report_key(record.model, window, "json") if window else None,
    }
    return Decision(source=SOURCE, detail_type=detail_type, audit_key=key, detail=detail)
