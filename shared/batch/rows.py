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

import msgspec
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


def read_json_blocks(
    lines: Iterable[str],
    *,
    features: Sequence[FeatureSchema],
    keep: Sequence[str],
    first_line: int,
    block_rows: int = BLOCK_ROWS,
) -> Iterator[Block]:
    """The objects of JSON Lines in blocks, checked as the records route checks a record:
    every feature by name (null is missing), numbers for numeric ones, strings for
    categorical ones; a line that breaks this is rejected with the reason."""
    numeric_names = [f.name for f in features if f.kind == "numeric"]
    categorical_names = [f.name for f in features if f.kind == "categorical"]
    decoder = msgspec.json.Decoder()
    numbers: list[list[float]] = []
    categories: list[list[str]] = []
    kept: list[list[str]] = []
    rejects: list[Reject] = []
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        number = first_line + offset
        try:
            record = decoder.decode(line)
        except msgspec.DecodeError as exc:
            rejects.append(Reject(number, f"not a JSON object: {str(exc)[:120]}"))
            continue
        problem, row = _json_row(record, numeric_names, categorical_names)
        if problem is not None:
            rejects.append(Reject(number, problem))
            continue
        numbers.append(row)
        categories.append([record[name] or "" for name in categorical_names])
        kept.append([_cell(record.get(name)) for name in keep])
        if len(kept) >= block_rows:
            yield _json_block(numbers, categories, kept, rejects, numeric_names, categorical_names)
            numbers, categories, kept, rejects = [], [], [], []
    if kept or rejects:
        yield _json_block(numbers, categories, kept, rejects, numeric_names, categorical_names)


def _json_row(
    record: object, numeric_names: list[str], categorical_names: list[str]
) -> tuple[str | None, list[float]]:
    if not isinstance(record, dict):
        return "not a JSON object of feature values", []
    absent = [name for name in (*numeric_names, *categorical_names) if name not in record]
    if absent:
        shown = ", ".join(repr(name[:64]) for name in absent[:5])
        return f"no {shown} (null is a missing value)", []
    row: list[float] = []
    for name in numeric_names:
        value = record[name]
        if value is None:
            row.append(math.nan)
        elif type(value) in (int, float) and abs(value) < FLOAT32_OVERFLOW:
            row.append(float(value))
        elif type(value) in (int, float):
            return f"{name!r}: {value!r:.40} is outside the float32 range the model uses", []
        else:
            return f"{name!r}: expected a number or null, got {_shown(value)}", []
    for name in categorical_names:
        value = record[name]
        if value is not None and type(value) is not str:
            return f"{name!r}: expected a string or null, got {_shown(value)}", []
    return None, row


def _shown(value: object) -> str:
    return repr(value)[:40]


def _cell(value: object) -> str:
    """A kept JSON value as a CSV cell: strings as they are, null empty, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _json_block(
    numbers: list[list[float]],
    categories: list[list[str]],
    kept: list[list[str]],
    rejects: list[Reject],
    numeric_names: list[str],
    categorical_names: list[str],
) -> Block:
    numeric = np.array(numbers, dtype=np.float64).reshape(len(numbers), len(numeric_names))
    categorical = {
        name: np.array([row[j] for row in categories], dtype=object)
        for j, name in enumerate(categorical_names)
    }
    return Block(ModelInput(numeric=numeric, categorical=categorical), kept, rejects)
