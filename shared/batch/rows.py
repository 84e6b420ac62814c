"""A part's records turned into model input, block by block, bad rows set aside.

Pure: lines of text in, blocks out. A block holds at most `block_rows` records, so a part's
memory is its block, never its size. Cells are read by the rules `mlops predict --csv` uses
(shared.data.cell_values); a row that breaks them is rejected with its line number and the
reason, and the rows around it are scored.
"""

from __future__ import annotations

import codecs
import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from shared.data.cell_values import CellError, number_cell
from shared.registry.metadata import FeatureSchema
from shared.serving.inputs import FLOAT32_OVERFLOW
from shared.serving.runtime import ModelInput

BLOCK_ROWS = 20_000


@dataclass(frozen=True)
class Reject:
    """A row left out: the line of the file it starts on, and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class Block:
    """Scorable rows of a part, their kept columns, and the rows rejected among them."""

    batch: ModelInput
    kept: list[list[str]]  # per scored row: the cells of the columns kept in the output
    rejects: list[Reject]


def text_lines(chunks: Iterable[bytes], *, strip_bom: bool) -> Iterator[str]:
    """Lines (with their endings) of UTF-8 bytes that arrive in arbitrary chunks."""
    decoder = codecs.getincrementaldecoder("utf-8-sig" if strip_bom else "utf-8")()
    rest = ""
    for chunk in chunks:
        text = rest + decoder.decode(chunk)
        lines = text.split("\n")
        rest = lines.pop()
        for line in lines:
            yield line + "\n"
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest


def feature_columns(
    columns: Sequence[str], features: Sequence[FeatureSchema]
) -> tuple[list[int], dict[str, int]]:
    """Where each numeric feature (model order) and each categorical one is in the header."""
    where = {name: i for i, name in enumerate(columns)}
    numeric = [where[f.name] for f in features if f.kind == "numeric"]
    categorical = {f.name: where[f.name] for f in features if f.kind == "categorical"}
    return numeric, categorical


def read_blocks(
    lines: Iterable[str],
    *,
    columns: Sequence[str],
    features: Sequence[FeatureSchema],
    keep: Sequence[int],
    first_line: int,
    skip_header: bool,
    block_rows: int = BLOCK_ROWS,
) -> Iterator[Block]:
    """The records of `lines` in blocks; `first_line` is the file's number of the first line."""
    reader = csv.reader(lines, strict=True)
    numeric_at, categorical_at = feature_columns(columns, features)
    numeric_names = [f.name for f in features if f.kind == "numeric"]
    width = len(columns)
    rows: list[list[str]] = []
    starts: list[int] = []
    rejects: list[Reject] = []
    consumed = 0  # lines the reader has taken so far
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # A stray quote: the reader says so and goes on at the next line.
            rejects.append(Reject(first_line + consumed, f"not a valid CSV record: {exc}"))
            consumed = reader.line_num
            continue
        start = first_line + consumed
        consumed = reader.line_num
        if skip_header:
            skip_header = False
            continue
        if not row:  # a blank line
            continue
        if len(row) != width:
            rejects.append(Reject(start, f"{len(row)} fields; the header has {width}"))
            continue
        rows.append(row)
        starts.append(start)
        if len(rows) >= block_rows:
            yield _block(rows, starts, rejects, numeric_at, numeric_names, categorical_at, keep)
            rows, starts, rejects = [], [], []
    if rows or rejects:
        yield _block(rows, starts, rejects, numeric_at, numeric_names, categorical_at, keep)


def _numbers(cells: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    """A column's numbers (NaN = missing) and, by row, why a cell is not one."""
    try:
        # float() on every cell, in C: the common case, a column of plain numbers.
        values = np.array(cells, dtype=object).astype(np.float64)
    except ValueError:
        values = np.empty(len(cells), dtype=np.float64)
        problems: dict[int, str] = {}
        for i, cell in enumerate(cells):
            try:
                values[i] = number_cell(cell)
            except CellError as exc:
                values[i] = math.nan
                problems[i] = str(exc)
        bad = ~np.isnan(values) & (np.abs(values) >= FLOAT32_OVERFLOW)
        for i in np.flatnonzero(bad).tolist():
            problems.setdefault(i, f"{cells[i][:40]!r} is outside the float32 range the model uses")
        return values, problems
    # float() reads "inf" and numbers beyond float32's range: the model would see infinity.
    beyond = np.flatnonzero(np.isinf(values) | (np.abs(values) >= FLOAT32_OVERFLOW))
    problems = {}
    for i in beyond.tolist():
        reason = "is not finite" if math.isinf(values[i]) else "is outside the float32 range"
        problems[i] = f"{cells[i][:40]!r} {reason}"
    return values, problems


def _block(
    rows: list[list[str]],
    starts: list[int],
    rejects: list[Reject],
    numeric_at: list[int],
    numeric_names: list[str],
    categorical_at: dict[str, int],
    keep: Sequence[int],
) -> Block:
    n = len(rows)
    numeric = np.empty((n, len(numeric_at)), dtype=np.float64)
    bad: dict[int, str] = {}
    for j, (at, name) in enumerate(zip(numeric_at, numeric_names, strict=True)):
        values, problems = _numbers([row[at] for row in rows])
        numeric[:, j] = values
        for i, reason in problems.items():
            bad.setdefault(i, f"column {name!r}: {reason}")
    if bad:
        rejects = sorted(
            rejects + [Reject(starts[i], reason) for i, reason in bad.items()],
            key=lambda r: r.line,
        )
        good = [i for i in range(n) if i not in bad]
        rows = [rows[i] for i in good]
        numeric = numeric[good]
    categorical = {
        name: np.array([row[at] for row in rows], dtype=object)
        for name, at in categorical_at.items()
    }
    # Every column kept, in order (the default): the parsed rows themselves, not copies.
    everything = list(keep) == list(range(len(rows[0]))) if rows else False
    kept = rows if everything else [[row[i] for i in keep] for row in rows]
    return Block(ModelInput(numeric=numeric, categorical=categorical), kept, rejects)
