"""Turn an uploaded CSV into checked training data: typed feature columns and a target.

Everything that makes a CSV unusable is a DataError that starts with the data key and names
the column, the 1-based line (the header is line 1) and the value, so that a failed training
run tells the user what to fix. Only the csv module and NumPy are used, not pandas.

The rules:

* The first line is a header naming every column, uniquely. Blank lines are skipped.
* A column the spec lists under "categorical" is categorical. Any other column is numeric when
  every value is a number or missing (an empty field, NA, N/A, NaN, nan, null, NULL, None, or
  another spelling that float() reads as NaN), categorical when fewer than half of its values
  are numbers, and an error in between, where a typo is the likely cause. So is infinity.
* Errors too: a column of numbers written with a decimal comma ("67,36"), which would become
  one category per value, and any feature inferred categorical with a different value on
  nearly every row (an id, free text). The spec's "categorical" overrides both.
* A header that is one column holding ";", a tab or "|" gets a hint about the separator.
* Numbers and missing markers may have whitespace around them; nothing else is stripped. In a
  categorical column only the empty field is missing: "NA" or " " may be a category.
* Without a task in the spec, a non-numeric target means classification, and so does a numeric
  one holding at most MAX_INTEGER_CLASSES distinct integers; anything else is regression.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shared.data.spec import ModelSpec, Task
from shared.errors import DataError, quoted

__all__ = [
    "MAX_INTEGER_CLASSES",
    "MISSING_CATEGORY",
    "NUMERIC_MISSING",
    "Feature",
    "FeatureKind",
    "PreparedData",
    "prepare",
]

FeatureKind = Literal["numeric", "categorical"]

# The marker categorical missing values carry in X: skl2onnx's string imputer needs an explicit
# string marker, not NaN. It is also what an empty field reads as, so cells are kept as read.
MISSING_CATEGORY = ""
NUMERIC_MISSING = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"})
# A numeric target with at most this many distinct integer values holds class labels.
MAX_INTEGER_CLASSES = 20

# A message names at most this many lines (or classes) and columns, then says "and N more".
_SHOWN = 5
_SHOWN_COLUMNS = 30
# Enough rows to tell which columns are worth parsing together as numbers (see _parse_columns).
_PROBE_ROWS = 1000
# A feature inferred categorical with distinct values on this share of its rows (or more) is
# an error; below this many rows, a share says too little to judge.
_MOST_DISTINCT = 0.9
_MIN_ROWS_FOR_DISTINCT = 50
# Separators other than "," that spreadsheets write (";" where "," is the decimal mark).
_OTHER_SEPARATORS = (";", "\t", "|")
# float("nan") is NaN, so mapping the missing tokens to "nan" lets one C-level pass of float()
# parse the numbers and mark the missing values.
_AS_NAN: dict[str, str] = dict.fromkeys(NUMERIC_MISSING, "nan")
# Beyond 2**53 a float64 cannot hold every integer, so larger values are no integer labels.
_EXACT_INTEGERS = 2.0**53


@dataclass(frozen=True)
class Feature:
    """A feature column: its name in the CSV and how it is prepared."""

    name: str
    kind: FeatureKind


@dataclass(frozen=True)
class PreparedData:
    """A checked dataset, ready to split and fit.

    X has dtype object: numeric cells are floats (NaN when missing), categorical cells are the
    strings as read (MISSING_CATEGORY when missing). y is float64 for regression; for
    classification it is int64 when every label is an integer, else an object array of str.
    """

    task: Task
    features: tuple[Feature, ...]
    X: npt.NDArray[np.object_]
    y: npt.NDArray[Any]
    n_rows: int

    @property
    def numeric_indices(self) -> list[int]:
        """Positions of the numeric features in `features` and in X's columns."""
        return [i for i, feature in enumerate(self.features) if feature.kind == "numeric"]

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the categorical features in `features` and in X's columns."""
        return [i for i, feature in enumerate(self.features) if feature.kind == "categorical"]

    def in_model_order(self) -> PreparedData:
        """The same data with numeric features first, then categorical ones.

        The exported graph takes all numeric features as one [N, k] tensor (one feed, one
        cast) and each categorical feature as its own string tensor, in this order.
        """
        order = self.numeric_indices + self.categorical_indices
        return replace(self, features=tuple(self.features[i] for i in order), X=self.X[:, order])

    def numeric_matrix(self) -> npt.NDArray[np.float64]:
        """The numeric features as a float64 matrix, NaN where missing."""
        return self.X[:, self.numeric_indices].astype(np.float64)

    def categorical_matrix(self) -> npt.NDArray[np.object_]:
        """The categorical features as a matrix of str, MISSING_CATEGORY where missing."""
        return self.X[:, self.categorical_indices]


def prepare(body: bytes, spec: ModelSpec, *, source: str) -> PreparedData:
    """Parse the CSV `body` and check that it can train the model `spec` describes.

    Raises DataError, starting with `source` (the data key) and naming the column and the
    line, when it cannot.
    """
    table = _read(body, source)
    _check_header(table, spec)
    target, chosen = _select_columns(table, spec)
    cells = _grid(table, spec)
    categorical = {table.header.index(name) for name in spec.categorical}
    columns = _parse_columns(table, cells, [target, *chosen], categorical)
    task, y = _target(table, spec, columns[target], cells[:, target])

    features: list[Feature] = []
    X = np.empty((len(table.rows), len(chosen)), dtype=object)
    for position, j in enumerate(chosen):
        column = columns[j]
        if column.is_empty():
            raise table.error(
                f"column {table.header[j]!r} is empty on every row; "
                'remove it, or list it under "drop" in the spec'
            )
        if column.kind == "categorical" and j not in categorical:
            _check_not_all_distinct(table, table.header[j], column.values)
        features.append(Feature(table.header[j], column.kind))
        X[:, position] = column.values
    return PreparedData(task=task, features=tuple(features), X=X, y=y, n_rows=len(table.rows))


@dataclass(frozen=True)
class _Table:
    """The CSV's records, with what error messages need to say where things are."""

    source: str
    text: str
    header: list[str]
    rows: list[list[str]]

    def error(self, message: str) -> DataError:
        """A DataError about this file."""
        return DataError(f"{self.source}: {message}")

    @cached_property
    def _record_lines(self) -> list[int]:
        # Only error messages need line numbers, so the file is read a second time for them
        # rather than slowing down every read: a quoted field may span lines, and blank lines
        # are skipped, so record k does not simply start on line k + 1.
        reader = csv.reader(io.StringIO(self.text, newline=""))
        lines: list[int] = []
        start = 1
        for record in reader:
            if record:
                lines.append(start)
            start = reader.line_num + 1
        return lines

    @property
    def header_line(self) -> int:
        """The line the header is on."""
        return self._record_lines[0]

    def line(self, row: int) -> int:
        """The line data row `row` (0-based) starts on."""
        return self._record_lines[row + 1]

    def lines(self, rows: Sequence[int]) -> str:
        """'line 4', or 'lines 4, 9 and 12', naming at most a few."""
        numbers = [str(self.line(row)) for row in rows[:_SHOWN]]
        if len(rows) == 1:
            return f"line {numbers[0]}"
        if len(rows) > _SHOWN:
            return f"lines {', '.join(numbers)} and {len(rows) - _SHOWN} more"
        return f"lines {', '.join(numbers[:-1])} and {numbers[-1]}"

    def values(self, rows: Sequence[int], cells: npt.NDArray[np.object_]) -> str:
        """Each row's line and value, as in "line 4 has 'x'", naming at most a few."""
        shown = ", ".join(f"line {self.line(row)} has {cells[row]!r}" for row in rows[:_SHOWN])
        hidden = len(rows) - _SHOWN
        more = f" and {hidden} more line{'s' if hidden > 1 else ''}" if hidden > 0 else ""
        return shown + more


@dataclass(frozen=True)
class _Column:
    """A parsed column: float64 with NaN for missing, or object (the cells as read)."""

    kind: FeatureKind
    values: npt.NDArray[Any]

    def is_empty(self) -> bool:
        """Whether every value is missing."""
        if self.kind == "numeric":
            return bool(np.isnan(self.values).all())
        return all(cell == MISSING_CATEGORY for cell in self.values)


def _read(body: bytes, source: str) -> _Table:
    bom = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    try:
        text = body[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = body.count(b"\n", 0, offset) + 1
        raise DataError(
            f"{source}: not UTF-8 text: byte {offset} (line {line}) is 0x{body[offset]:02x}; "
            "save the file as UTF-8 (CSV UTF-8 in Excel)"
        ) from None
    if not text or text.isspace():
        raise DataError(f"{source}: the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        with _gc_paused():
            records = [record for record in reader if record]
    except csv.Error as exc:
        raise DataError(f"{source}: line {reader.line_num} is not valid CSV: {exc}") from None
    return _Table(source=source, text=text, header=records[0], rows=records[1:])


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Each row is a new list, so reading 100,000 rows runs the cyclic garbage collector a few
    # hundred times over an ever larger heap, to find nothing: lists of str form no cycles.
    # Pausing it cuts the time to read a large file by about a quarter.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_header(table: _Table, spec: ModelSpec) -> None:
    header = table.header
    # Columns may be named by numbers (years, say), but a header naming the target is a header.
    if spec.target not in header and all(_is_number(name) for name in header):
        raise table.error(
            f"line {table.header_line} holds only numbers, so it looks like data; "
            "a header row naming the columns is required as the first line"
        )
    seen: dict[str, int] = {}
    for number, name in enumerate(header, start=1):
        if not name.strip():
            raise table.error(
                f"column {number} has no name in the header (line {table.header_line}); "
                "every column needs one"
            )
        if name in seen:
            raise table.error(
                f"the header (line {table.header_line}) names two columns {name!r} "
                f"(columns {seen[name]} and {number}); column names must be unique"
            )
        seen[name] = number


def _select_columns(table: _Table, spec: ModelSpec) -> tuple[int, list[int]]:
    """The target's position and the features' positions, in the order they will have in X."""
    header = table.header
    present = f"the columns are {_names(header)}"
    if spec.target not in header:
        raise table.error(
            f'no target column {spec.target!r} ("target" in the spec); {present}'
            + _separator_hint(table)
        )
    listed = {"features": spec.features or [], "drop": spec.drop, "categorical": spec.categorical}
    for field, names in listed.items():
        unknown = [name for name in names if name not in header]
        if unknown:
            raise table.error(
                f'the spec\'s "{field}" names {_names(unknown)}, which the file does not have; '
                f"{present}"
            )
    if spec.features is not None:
        chosen = spec.features
    else:
        chosen = [name for name in header if name != spec.target and name not in spec.drop]
    if not chosen:
        dropped = f' and the columns under "drop" ({_names(spec.drop)})' if spec.drop else ""
        raise table.error(
            f"no feature columns are left: the file has only the target {spec.target!r}{dropped}"
        )
    return header.index(spec.target), [header.index(name) for name in chosen]


def _separator_hint(table: _Table) -> str:
    """What to say when the header is one column holding another separator, or nothing."""
    if len(table.header) != 1:
        return ""
    for separator in _OTHER_SEPARATORS:
        if separator in table.header[0]:
            return (
                f"; the header (line {table.header_line}) is one column holding "
                f"{separator!r}: the file looks separated by {separator!r}, not by commas; "
                "save it as comma-separated (CSV UTF-8), with '.' as the decimal separator"
            )
    return ""


def _grid(table: _Table, spec: ModelSpec) -> npt.NDArray[np.object_]:
    """The data rows as a matrix of str, once they are known to be rectangular and enough."""
    rows, width = table.rows, len(table.header)
    lengths = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
    ragged = np.flatnonzero(lengths != width)
    if ragged.size:
        first = int(ragged[0])
        message = f"line {table.line(first)} has {lengths[first]} fields, the header has {width}"
        if ragged.size > 1:
            message += f"; {ragged.size} rows in all have the wrong number of fields"
        if lengths[first] > width:
            message += "; a value that contains a comma must be in double quotes"
        raise table.error(message + _separator_hint(table))
    if not rows:
        raise table.error("the file has a header row but no data rows")
    if len(rows) < spec.min_rows:
        raise table.error(
            f"the file has {len(rows)} data rows, fewer than the {spec.min_rows} the spec's "
            '"min_rows" asks for'
        )
    return np.array(rows, dtype=object)


def _parse_columns(
    table: _Table, cells: npt.NDArray[np.object_], wanted: list[int], categorical: set[int]
) -> dict[int, _Column]:
    """Type and parse each wanted column (by position), following the module's rules."""
    # csv allocates the strings row by row, so reading them in row order follows memory; one
    # row-major pass over all the numeric columns parses twice as fast as column by column.
    # The first rows tell which columns to try; a column the pass fails on is judged alone.
    likely = [
        j
        for j in wanted
        if j not in categorical and _floats(cells[:_PROBE_ROWS, j], strip=True) is not None
    ]
    block = _floats(cells[:, likely]) if likely else None
    parsed: dict[int, npt.NDArray[np.float64]] = {}
    if block is not None:
        parsed = dict(zip(likely, block.T, strict=True))

    columns: dict[int, _Column] = {}
    for j in wanted:
        name = table.header[j]
        if j in categorical:
            columns[j] = _Column("categorical", cells[:, j])
        elif j in parsed:
            columns[j] = _numeric(table, name, parsed[j], cells[:, j])
        else:
            # Unlikely columns hold a non-number in their first rows; likely ones get here when
            # the block pass failed, maybe on another column.
            numbers = _floats(cells[:, j], strip=True) if j in likely else None
            if numbers is None:
                columns[j] = _categorical(table, name, cells[:, j])
            else:
                columns[j] = _numeric(table, name, numbers, cells[:, j])
    return columns


def _floats(
    cells: npt.NDArray[np.object_], *, strip: bool = False
) -> npt.NDArray[np.float64] | None:
    """The cells as float64, NaN where missing, or None if some cell is not a number.

    float() ignores whitespace around numbers; `strip` ignores it around missing markers too,
    at some cost, so the fast path leaves it out and a failure retries with it.
    """
    flat: Iterable[str] = cells.ravel()
    keys = map(str.strip, flat) if strip else flat
    try:
        numbers = np.fromiter(map(float, map(_AS_NAN.get, keys, flat)), np.float64, cells.size)
    except ValueError:
        return None
    return numbers.reshape(cells.shape)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _numeric(
    table: _Table, name: str, numbers: npt.NDArray[np.float64], cells: npt.NDArray[np.object_]
) -> _Column:
    infinite = np.flatnonzero(np.isinf(numbers)).tolist()
    if infinite:
        raise table.error(
            f"column {name!r} holds numbers that are not finite: {table.values(infinite, cells)}; "
            "use finite numbers, or leave a field empty if its value is missing"
        )
    # The exported model computes in float32, where these would become infinities.
    huge = np.flatnonzero(np.abs(numbers) > _FLOAT32_MAX).tolist()
    if huge:
        raise table.error(
            f"column {name!r} holds numbers beyond float32's range (about 3.4e38), which the "
            f"exported model computes in: {table.values(huge, cells)}"
        )
    return _Column("numeric", numbers)


def _categorical(table: _Table, name: str, cells: npt.NDArray[np.object_]) -> _Column:
    """A column with values that are not numbers; an error if most of them are numbers."""
    # Categories repeat, so testing each distinct value once is much faster than every cell.
    counts: Counter[str] = Counter(cells)
    given = {value for value in counts if value.strip() not in NUMERIC_MISSING}
    text = {value for value in given if not _is_number(value)}
    # "67,36": a number written with a decimal comma (or "1,234" with a thousands
    # separator). Taken as categories, every value would be its own, and the served model
    # would refuse numbers: an error, whichever way the file meant it.
    comma = {
        value for value in text if value.count(",") == 1 and _is_number(value.replace(",", "."))
    }
    if 2 * sum(counts[value] for value in comma) > sum(counts[value] for value in given):
        rows = [row for row, value in enumerate(cells) if value in comma]
        raise table.error(
            f"column {name!r} holds numbers written with a comma: {table.values(rows, cells)}; "
            "write them with a decimal point and no thousands separator ('67.36'; in a "
            "spreadsheet, export the CSV with '.' as the decimal separator), or list the "
            'column under "categorical" in the spec if it holds categories'
        )
    if 2 * sum(counts[value] for value in text) <= sum(counts[value] for value in given):
        rows = [row for row, value in enumerate(cells) if value in text]
        raise table.error(
            f"column {name!r} holds numbers, but not everywhere: {table.values(rows, cells)}; "
            "correct such values (a missing value may be left empty or written NA), "
            'or list the column under "categorical" in the spec if it holds categories'
        )
    return _Column("categorical", cells)


def _check_not_all_distinct(table: _Table, name: str, cells: npt.NDArray[np.object_]) -> None:
    """An inferred categorical feature with (nearly) one category per row is an error.

    Ids, timestamps, free text, or numbers written in a way that is not read as numbers:
    as categories they teach the model nothing and make a one-hot column per row. A
    column the spec lists under "categorical" is taken as the user says.
    """
    present = np.flatnonzero(cells != MISSING_CATEGORY)
    distinct = len(set(cells[present].tolist()))
    if present.size < _MIN_ROWS_FOR_DISTINCT or distinct < _MOST_DISTINCT * present.size:
        return
    first = int(present[0])
    raise table.error(
        f"column {name!r} has {distinct} different values in {present.size} rows, such as "
        f"{quoted(str(cells[first]))} (line {table.line(first)}): nearly one category per "
        'row, which teaches a model nothing; list it under "drop" in the spec if it is an id '
        'or free text, correct its values if they are numbers, or list it under "categorical" '
        "if these really are its categories"
    )


def _target(
    table: _Table, spec: ModelSpec, column: _Column, cells: npt.NDArray[np.object_]
) -> tuple[Task, npt.NDArray[Any]]:
    """The task, given or inferred, and the labels or values to learn."""
    name = spec.target
    if column.kind == "numeric":
        unlabeled = np.flatnonzero(np.isnan(column.values)).tolist()
    else:
        unlabeled = np.flatnonzero(column.values == MISSING_CATEGORY).tolist()
    if unlabeled:
        raise table.error(
            f"target column {name!r} is empty on {len(unlabeled)} of {len(cells)} rows "
            f"({table.lines(unlabeled)}); remove the unlabeled rows or fill in their targets"
        )

    task = spec.task or _infer_task(column)
    if task == "regression":
        if column.kind == "categorical":
            if name in spec.categorical:
                why = 'the spec lists it under "categorical"'
            else:
                row = next(row for row, cell in enumerate(cells) if not _is_number(cell))
                why = table.values([row], cells)
            raise table.error(
                f'the spec says task "regression", but target column {name!r} is not numeric: {why}'
            )
        # Copies, here and below, so that y does not keep the whole parsed file alive.
        return task, column.values.copy()

    labels: npt.NDArray[Any]
    if column.kind == "numeric" and _integral(column.values):
        labels = column.values.astype(np.int64)
    else:
        # Labels that are not all integers keep their spelling in the file, like categories.
        labels = cells.copy()
    _check_classes(table, name, labels)
    return task, labels


def _infer_task(column: _Column) -> Task:
    if column.kind == "categorical":
        return "classification"
    values = column.values
    if _integral(values) and np.unique(values).size <= MAX_INTEGER_CLASSES:
        return "classification"
    return "regression"


def _integral(values: npt.NDArray[np.float64]) -> bool:
    return bool(np.all((values == np.trunc(values)) & (np.abs(values) <= _EXACT_INTEGERS)))


def _check_classes(table: _Table, name: str, labels: npt.NDArray[Any]) -> None:
    values = labels.tolist()
    counts = Counter(values)
    if len(counts) == 1:
        raise table.error(
            f"target column {name!r} has a single class, {values[0]!r}; "
            "classification needs at least two"
        )
    # Each class needs a row on each side of the stratified train/test split.
    single = [label for label, count in counts.items() if count < 2]
    if single:
        where = ", ".join(
            f"{label!r} (line {table.line(values.index(label))})" for label in single[:_SHOWN]
        )
        more = f" and {len(single) - _SHOWN} more" if len(single) > _SHOWN else ""
        raise table.error(
            f"in target column {name!r}, {'class' if len(single) == 1 else 'classes'} "
            f"{where}{more} {'has' if len(single) == 1 else 'have'} only one row; every class "
            "needs at least 2 for the stratified train/test split: add rows or remove these"
        )


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_SHOWN_COLUMNS])
    if len(names) > _SHOWN_COLUMNS:
        return f"{shown} and {len(names) - _SHOWN_COLUMNS} more"
    return shown
