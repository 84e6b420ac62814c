"""Captured traffic: what the model saw and said, as objects under ``captures/``.

One object per batch of requests (capture_writer.py writes them), never per request:
gzip JSON Lines, one line per predicted row, at
``captures/<model>/dt=YYYY-MM-DD/hour=HH/<time>-<container>-<seq>.jsonl.gz``. Every line
of an object belongs to that hour, so a partition holds exactly its hour's rows. DuckDB's
``read_json``, Athena's JSON SerDe and ``zcat | jq`` read the files as they are.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import msgspec

from shared.data.spec import validate_model_name
from shared.errors import MlopsError
from shared.monitoring.schema import check_schema

CAPTURE_SCHEMA_VERSION = 1
CAPTURES_PREFIX = "captures/"

FeatureValue = int | float | str | None


class CaptureRow(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One predicted row, as a line of a capture file."""

    schema_version: int = CAPTURE_SCHEMA_VERSION
    capture_id: str  # made by the server, unique per request; with `row` it names the row
    row: int  # position of the row in its request
    request_id: str  # the caller's id (or one made for it): labels join on it
    model: str
    version: int  # the version that answered: its baseline is what the row is compared with
    served_by: str  # what the caller asked for: "production", "staging", "latest" or a number
    role: str = "served"  # "served" (the caller's answer), "shadow" or "batch" (a batch job's)
    at: str  # ISO 8601 UTC, microseconds
    features: dict[str, FeatureValue]  # by feature name; null = missing
    prediction: int | float | str | None
    probabilities: dict[str, float] | None = None  # classification: by class

    @property
    def row_id(self) -> str:
        """The row's name across the store: "capture_id/row" (a retraining set lists them)."""
        return f"{self.capture_id}/{self.row}"

    @property
    def captured_at(self) -> datetime:
        """`at` as a time: compared as text, "...:00Z" (no fraction) sorts after "...:00.5Z"."""
        return datetime.fromisoformat(self.at.replace("Z", "+00:00"))


def capture_prefix(model: str) -> str:
    """Where the captures of `model` live."""
    return f"{CAPTURES_PREFIX}{validate_model_name(model)}/"


def partition_prefix(model: str, hour: datetime) -> str:
    """The partition (one hour) that rows captured at `hour` go to."""
    hour = hour.astimezone(UTC)
    return f"{capture_prefix(model)}dt={hour:%Y-%m-%d}/hour={hour:%H}/"


def partition_hour(key: str) -> datetime | None:
    """The hour a capture key's partition names, or None for a key outside the scheme."""
    parts = key.split("/")
    if len(parts) != 5 or not parts[2].startswith("dt=") or not parts[3].startswith("hour="):
        return None
    try:
        return datetime.strptime(f"{parts[2][3:]} {parts[3][5:]}", "%Y-%m-%d %H").replace(
            tzinfo=UTC
        )
    except ValueError:
        return None


def decode_capture_file(body: bytes, key: str) -> list[CaptureRow]:
    """The rows of one capture object; MlopsError naming the key and line if it is corrupt."""
    try:
        text = gzip.decompress(body)
    except (OSError, EOFError) as exc:
        raise MlopsError(f"{key}: not a gzip file ({exc})") from None
    decoder = msgspec.json.Decoder(CaptureRow)
    rows: list[CaptureRow] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise MlopsError(f"{key} line {number}: {str(exc)[:200]}") from None
        check_schema("capture", row.schema_version, CAPTURE_SCHEMA_VERSION, f"{key} line {number}")
        rows.append(row)
    return rows
