"""A version's held-out rows (``versions/<n>/holdout.jsonl.gz``): what it was judged on.

Stored with the version so that a later comparison (champion and challenger) scores both
models on rows the challenger never trained on, with nothing pickled: gzip JSON Lines,
one row a line, ``{"features": {...}, "label": ...}``, null for a missing value.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Mapping

import msgspec
import numpy as np

from shared.errors import MlopsError

HOLDOUT_FILE = "holdout.jsonl.gz"


class HoldoutRow(msgspec.Struct, kw_only=True):
    """One held-out row: its feature values by name and its true value."""

    features: dict[str, int | float | str | None]
    label: int | float | str


# Rows encoded at a time: the Python objects of a block are a few MB, whatever the rows.
_BLOCK_ROWS = 10_000


def encode_holdout(features: Mapping[str, np.ndarray], y: np.ndarray) -> bytes:
    """The rows of `features` (one column per feature, by name, in order: float with NaN
    when missing, or str with '' when missing) and their labels `y`."""
    encoder = msgspec.json.Encoder()
    names = list(features)
    out = io.BytesIO()
    # Level 1: the file is written once per version and read by machines; level 9 (gzip's
    # default) took ten times as long for a fifth less (5.3 s against 0.5 s on 111,000 rows).
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as file:
        for start in range(0, len(y), _BLOCK_ROWS):
            block = slice(start, start + _BLOCK_ROWS)
            columns: list[list[int | float | str | None]] = []
            for values in features.values():
                if values.dtype.kind == "f":
                    columns.append([None if v != v else v for v in values[block].tolist()])
                else:
                    columns.append([str(v) or None for v in values[block].tolist()])
            rows = zip(*columns, strict=True)
            lines = [
                encoder.encode(HoldoutRow(features=dict(zip(names, row, strict=True)), label=label))
                for row, label in zip(rows, y[block].tolist(), strict=True)
            ]
            file.write(b"\n".join(lines) + b"\n")
    return out.getvalue()


def decode_holdout(body: bytes, key: str) -> list[HoldoutRow]:
    """The rows of a holdout file; MlopsError naming the key if it is unreadable."""
    try:
        text = gzip.decompress(body)
        return msgspec.json.Decoder(HoldoutRow).decode_lines(text)
    except (OSError, EOFError, msgspec.DecodeError) as exc:
        raise MlopsError(f"{key}: unreadable held-out rows ({str(exc)[:200]})") from None
