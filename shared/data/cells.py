"""Text from the data shown to people in tables: neutralised so spreadsheets do not run it.

A cell starting with "=", "+", "-" or "@" (or a tab or carriage return, which some
spreadsheets skip before looking) is read as a formula when a page or file is opened in, or
pasted into, a spreadsheet: "=HYPERLINK(...)" in a feature name or a category would run on
the reader's machine. Such text gets a leading apostrophe, which spreadsheets take as "this
is text". Numbers are left alone: "-1.5" is a negative number, not a formula.

Training inputs are not touched: a CSV written for training (retraining's assembled sets)
must hold the values exactly as the model will see them.
"""

from __future__ import annotations

__all__ = ["FORMULA_STARTS", "inert"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(text: str) -> str:
    """`text`, with an apostrophe in front if a spreadsheet would run it as a formula."""
    if len(text) < 2 or not text.startswith(FORMULA_STARTS):
        return text  # a lone "-" or "+" is no formula
    try:
        float(text)
    except ValueError:
        return "'" + text
    return text  # "-1.5", "+3", "-inf": numbers (spreadsheets read them as such)
