"""Cells of a CSV read as a model's input: the rules `mlops predict --csv` and batch scoring share.

Numeric cells are numbers, or missing as training's markers say (empty, NA, null..., with
whitespace around); categorical cells are kept as written, the empty one missing.
"""

from __future__ import annotations

import math

from shared.data.dataset import NUMERIC_MISSING, is_number
from shared.errors import quoted

__all__ = ["CellError", "number_cell"]


class CellError(ValueError):
    """A numeric cell that is not a number: the message says why, quoting a short piece."""


def number_cell(text: str) -> float:
    """A numeric cell's value, NaN when missing; CellError if it is no finite number."""
    raw = text.strip()
    if raw in NUMERIC_MISSING:
        return math.nan
    try:
        number = float(raw)
    except ValueError:
        comma = raw.count(",") == 1 and is_number(raw.replace(",", "."))
        hint = "; write numbers with a decimal point" if comma else ""
        raise CellError(f"{quoted(raw)} is not a number{hint}") from None
    if math.isinf(number):
        raise CellError(f"{quoted(raw)} is not finite")
    # "NAN", "-nan": other spellings float() reads as missing, as training does.
    return number
