"""A version's held-out rows (``versions/<n>/holdout.jsonl.gz``): what it was judged on.

Stored with the version so that a later comparison (champion and challenger) scores both
models on rows the challenger never trained on, with nothing pickled: gzip JSON Lines,
one row a line, ``{"features": {...}, "label": ...}``, null for a missing value.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence

import msgspec
import numpy as np

from shared.errors import MlopsError

HOLDOUT_FILE = "holdout.jsonl.gz"


class HoldoutRow(msgspec.Struct, kw_only=True):
    """One held-out row: its feature values by name and its true value."""

    features: dict[str, int | float | str | None]
    label: int | float | str


def encode_holdout(
    names: Sequence[str], kinds: Sequence[str], X: np.ndarray, y: np.ndarray
) -> bytes:
    """Rows of X (object matrix in `names` order; NaN or '' = missing) and their labels."""
    encoder = msgspec.json.Encoder()
    lines = []
    for row, label in zip(X.tolist(), y.tolist(), strict=True):
        features: dict[str, int | float | str | None] = {}
        for name, kind, value in zip(names, kinds, row, strict=True):
            if kind == "numeric":
                number = float(value)
                features[name] = None if number != number else number  # NaN -> null
            else:
                features[name] = str(value) or None
        lines.append(encoder.encode(HoldoutRow(features=features, label=label)))
    return gzip.compress(b"\n".join(lines) + b"\n", mtime=0)


def decode_holdout(body: bytes, key: str) -> list[HoldoutRow]:
    """The rows of a holdout file; MlopsError naming the key if it is unreadable."""
    try:
        text = gzip.decompress(body)
        return msgspec.json.Decoder(HoldoutRow).decode_lines(text)
    except (OSError, EOFError, msgspec.DecodeError) as exc:
        raise MlopsError(f"{key}: unreadable held-out rows ({str(exc)[:200]})") from None
