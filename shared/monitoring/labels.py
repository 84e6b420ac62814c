"""Ground truth uploaded later: ``labels/<model>/*.csv``, joined to captured rows.

A label file has a header with ``request_id``, optionally ``row`` (the row's position in
a multi-row request, 0 when absent), and the true value under the model's target column
name or ``label``. The join key is (request id, row): the id the caller sent (or that
serving made and returned). A client may reuse an id; then several captured requests
share it and the label is ambiguous: it is counted as such and not used.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from dataclasses import dataclass, field

from shared.data.spec import validate_model_name
from shared.errors import MlopsError
from shared.monitoring.performance import usable_label
from shared.registry.metadata import ModelMetadata

LABELS_PREFIX = "labels/"
MAX_ID_LENGTH = 128


class LabelFileError(MlopsError):
    """A label file that cannot be used; the message names the file, column and line."""


@dataclass
class Labels:
    """True values by (request id, row), the last upload winning."""

    values: dict[tuple[str, int], str] = field(default_factory=dict)
    files: int = 0
    duplicates: int = 0

    def add(self, parsed: dict[tuple[str, int], str]) -> None:
        """Add one file's labels (files are added oldest first)."""
        self.files += 1
        for key, value in parsed.items():
            if key in self.values:
                self.duplicates += 1
            self.values[key] = value


def labels_prefix(model: str) -> str:
    """Where the label files of `model` are uploaded."""
    return f"{LABELS_PREFIX}{validate_model_name(model)}/"


def _short(value: str) -> str:
    return repr(value[:40] + ("..." if len(value) > 40 else ""))


def parse_labels(body: bytes, key: str, target: str) -> dict[tuple[str, int], str]:
    """One label file's values; LabelFileError naming file, column and line if it is bad."""
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{key}: not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise LabelFileError(f"{key}: empty file; expected a header line") from None
    except csv.Error as exc:
        raise LabelFileError(f"{key}: line 1: {exc}") from None
    header = [h.strip() for h in header]
    if "request_id" not in header:
        raise LabelFileError(
            f"{key}: line 1: no 'request_id' column (found {[_short(h) for h in header[:10]]})"
        )
    value_column = target if target in header else "label" if "label" in header else None
    if value_column is None:
        raise LabelFileError(
            f"{key}: line 1: no column {target!r} (the model's target) or 'label' for the "
            "true values"
        )
    id_at = header.index("request_id")
    row_at = header.index("row") if "row" in header else None
    value_at = header.index(value_column)
    values: dict[tuple[str, int], str] = {}
    try:
        for number, cells in enumerate(reader, start=2):
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise LabelFileError(
                    f"{key}: line {number}: {len(cells)} fields, the header has {len(header)}"
                )
            request_id = cells[id_at].strip()
            if not request_id or len(request_id) > MAX_ID_LENGTH:
                raise LabelFileError(
                    f"{key}: line {number}, column 'request_id': {_short(request_id)} is not a "
                    f"request id (1-{MAX_ID_LENGTH} characters)"
                )
            row = 0
            if row_at is not None:
                raw = cells[row_at].strip()
                if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
                    raise LabelFileError(
                        f"{key}: line {number}, column 'row': {_short(raw)} is not a row "
                        "position (0, 1, 2, ...)"
                    )
                row = int(raw)
            value = cells[value_at].strip()
            if not value:
                raise LabelFileError(
                    f"{key}: line {number}, column {value_column!r}: empty; every line needs "
                    "its true value"
                )
            values[(request_id, row)] = value
    except csv.Error as exc:
        raise LabelFileError(f"{key}: line {reader.line_num}: {exc}") from None
    return values


def check_label_file(body: bytes, source: str, meta: ModelMetadata) -> dict[tuple[str, int], str]:
    """A label file's values, read as the check reads them for `meta`'s model.

    LabelFileError where the check would skip the file (parse_labels), where it has no label,
    or where a true value could never score the model (no class of it, or no number): the
    check would count such rows unusable and never use them, a typo ("Yes" for "yes") that
    is better fixed before upload than found in a report.
    """
    values = parse_labels(body, source, meta.target)
    if not values:
        raise LabelFileError(f"{source}: no labels; expected a line per labelled row")
    unusable = Counter(v for v in values.values() if not usable_label(meta, v))
    if unusable:
        shown = ", ".join(f"{_short(v)} ({n})" for v, n in unusable.most_common(5))
        more = f" and {len(unusable) - 5} other values" if len(unusable) > 5 else ""
        expected = (
            "one of the classes " + ", ".join(repr(str(c)) for c in meta.classes or [])
            if meta.task == "classification"
            else "a number"
        )
        raise LabelFileError(
            f"{source}: {sum(unusable.values())} of {len(values)} true values cannot score "
            f"{meta.model} version {meta.version}: {shown}{more}; each must be {expected}"
        )
    return values
