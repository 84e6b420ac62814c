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
import dataclasses
import gc
import io
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import chain
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shared.data.profile import FeatureProfile, profile_category_counts, profile_numeric
from shared.data.spec import ModelSpec, Task
from shared.errors import DataError, quoted

__all__ = [
    "MAX_INTEGER_CLASSES",
    "MISSING_CATEGORY",
    "NUMERIC_MISSING",
    "Feature",
    "FeatureKind",
    "PreparedData",
    "is_number",
    "prepare",
]

FeatureKind = Literal["numeric", "categorical"]

# What a missing categorical value is: an empty field, kept as read (a category of its own, as
# serving feeds it for a missing value).
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
# Codes are held in X's float32: beyond 2**24 it cannot hold every integer.
_MAX_CATEGORIES = 2**24


@dataclass(frozen=True)
class Feature:
    """A feature column: its name in the CSV and how it is prepared."""

    name: str
    kind: FeatureKind


@dataclass(frozen=True)
class PreparedData:
    """A checked dataset, ready to split and fit, its features in model order.

    Model order is the numeric features first, then the categorical ones: the exported
    graph takes all numeric features as one [N, k] tensor (one feed, one cast) and each
    categorical feature as its own string tensor, in this order.

    X is float32 [rows, features]. A numeric feature's column holds its values (NaN when
    missing), rounded to float32, which is what the exported model computes in: the
    pipeline learns from the values it will be served. A categorical feature's column holds
    codes: code i stands for `categories[f][i]` (the feature's values, sorted, with
    MISSING_CATEGORY among them when a cell was empty). A dataset so costs about its CSV's
    size in memory, where an object matrix of Python floats and strings cost four times it.

    y is float64 for regression; for classification it is int64 when every label is an
    integer, else an object array of str. `profiles` summarises each feature over every
    row, computed before the rounding to float32 (the baseline that traffic, as sent, is
    compared with).
    """

    task: Task
    features: tuple[Feature, ...]
    X: npt.NDArray[np.float32]
    y: npt.NDArray[Any]
    n_rows: int
    categories: tuple[tuple[str, ...], ...] = ()  # one tuple per categorical feature
    profiles: dict[str, FeatureProfile] = dataclasses.field(default_factory=dict)
    profile_seconds: float = 0.0  # of preparation's time, what the profiles took

    @property
    def n_numeric(self) -> int:
        """How many features are numeric (the first columns of X)."""
        return len(self.features) - len(self.categories)

    def rows(self, indices: npt.NDArray[np.intp]) -> PreparedData:
        """The rows at `indices` (a copy of them), profiles left out."""
        return replace(self, X=self.X[indices], y=self.y[indices], n_rows=len(indices), profiles={})

    def numeric(self) -> npt.NDArray[np.float64]:
        """The numeric features as a float64 matrix, NaN where missing."""
        return self.X[:, : self.n_numeric].astype(np.float64)

    def categorical(self) -> dict[str, npt.NDArray[np.object_]]:
        """Each categorical feature's cells as written, by name (MISSING_CATEGORY if empty)."""
        k = self.n_numeric
        return {
            feature.name: _objects(values)[self.X[:, k + i].astype(np.intp)]
            for i, (feature, values) in enumerate(
                zip(self.features[k:], self.categories, strict=True)
            )
        }

    def cells(self) -> npt.NDArray[np.object_]:
        """X as an object matrix of floats and strings (for a few rows: it is 4x the size)."""
        out = np.empty(self.X.shape, dtype=object)
        out[:, : self.n_numeric] = self.numeric()
        for i, column in enumerate(self.categorical().values()):
            out[:, self.n_numeric + i] = column
        return out


def prepare(body: bytes, spec: ModelSpec, *, source: str) -> PreparedData:
    """Parse the CSV `body` and check that it can train the model `spec` describes.

    Raises DataError, starting with `source` (the data key) and naming the column and the
    line, when it cannot.
    """
    table, parsed = _read(body, spec, source)
    _check_header(table, spec)
    target, chosen = _select_columns(table, spec)
    _check_rows(table, spec)
    categorical = {table.header.index(name) for name in spec.categorical}
    columns = _parse_columns(table, parsed, [target, *chosen], categorical)
    del parsed
    task, y = _target(table, spec, columns[target], target)

    for j in chosen:
        column = columns[j]
        if column.is_empty():
            raise table.error(
                f"column {table.header[j]!r} is empty on every row; "
                'remove it, or list it under "drop" in the spec'
            )
        if column.kind == "categorical" and j not in categorical:
            _check_not_all_distinct(table, table.header[j], column)
    # Checked: from here on no message quotes the file, so its bytes (as large as the data)
    # need not be held while X is built. The caller's reference is its own to drop.
    table.release()
    del body
    order = [j for j in chosen if columns[j].kind == "numeric"]
    order += [j for j in chosen if columns[j].kind == "categorical"]
    # Column-major: filling a column touches only its own pages, so X grows as the parsed
    # columns are released rather than taking its whole size at the first column.
    X = np.empty((table.n_rows, len(order)), dtype=np.float32, order="F")
    features: list[Feature] = []
    profiles: dict[str, FeatureProfile] = {}
    categories: list[tuple[str, ...]] = []
    profile_seconds = 0.0
    for position, j in enumerate(order):
        # Each column is released once copied in, so that X and the columns are not both
        # held whole.
        column = columns.pop(j)
        name = table.header[j]
        features.append(Feature(name, column.kind))
        start = time.perf_counter()
        if column.kind == "numeric":
            profiles[name] = profile_numeric(column.values)
        else:
            if len(column.categories) > _MAX_CATEGORIES:
                raise table.error(
                    f"column {name!r} has {len(column.categories)} different values, more than "
                    f"the {_MAX_CATEGORIES} a categorical feature may have"
                )
            counts = np.bincount(column.values, minlength=len(column.categories)).tolist()
            profiles[name] = profile_category_counts(
                dict(zip(column.categories, counts, strict=True)), missing_marker=MISSING_CATEGORY
            )
            categories.append(column.categories)
        profile_seconds += time.perf_counter() - start
        X[:, position] = column.values
    return PreparedData(
        task=task,
        features=tuple(features),
        X=X,
        y=y,
        n_rows=table.n_rows,
        categories=tuple(categories),
        profiles=profiles,
        profile_seconds=profile_seconds,
    )


class _Table:
    """The CSV's header and what was read of its rows, with what error messages need.

    The rows themselves are not kept: _read parses them into columns as it goes. Errors
    need a column's cells as written, or a row's line; both are read again from `body`
    then, which only a failing (or unusual) file pays for.
    """

    def __init__(self, source: str, body: bytes, header: list[str]) -> None:
        self.source = source
        self.body = body
        self.header = header
        self.n_rows = 0
        self.ragged: list[int] = []  # data rows (0-based) with a wrong number of fields
        self.first_ragged_fields = 0

    def error(self, message: str) -> DataError:
        """A DataError about this file."""
        return DataError(f"{self.source}: {message}")

    def release(self) -> None:
        """Drop the file's bytes: only messages that quote no line or cell may follow."""
        self.body = b""

    def _records(self) -> Iterator[list[str]]:
        return (record for record in csv.reader(_lines(self.body)) if record)

    @cached_property
    def _record_lines(self) -> list[int]:
        # Only error messages need line numbers, so the file is read a second time for them
        # rather than slowing down every read: a quoted field may span lines, and blank lines
        # are skipped, so record k does not simply start on line k + 1.
        reader = csv.reader(_lines(self.body))
        lines: list[int] = []
        start = 1
        for record in reader:
            if record:
                lines.append(start)
            start = reader.line_num + 1
        return lines

    def column(self, j: int) -> npt.NDArray[np.object_]:
        """Column j's cells as written (data rows only), read again from the file."""
        records = self._records()
        next(records)
        with _gc_paused():
            return _objects([record[j] for record in records])

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
    """A parsed column: float64 with NaN for missing, or codes into `categories`."""

    kind: FeatureKind
    values: npt.NDArray[Any]  # numeric: float64; categorical: int32, code i = categories[i]
    categories: tuple[str, ...] = ()  # categorical: the distinct cells as read, sorted

    @classmethod
    def text(cls, codes: npt.NDArray[np.int32], values: Sequence[str]) -> _Column:
        """A categorical column from codes into `values` (in any order), recoded sorted."""
        order = sorted(range(len(values)), key=values.__getitem__)
        rank = np.empty(len(values), dtype=np.int32)
        rank[order] = np.arange(len(values), dtype=np.int32)
        return cls("categorical", rank[codes], tuple(values[i] for i in order))

    def is_empty(self) -> bool:
        """Whether every value is missing."""
        if self.kind == "numeric":
            return bool(np.isnan(self.values).all())
        return self.categories == (MISSING_CATEGORY,)

    def missing(self) -> npt.NDArray[np.bool_]:
        """Where a categorical cell is empty."""
        if MISSING_CATEGORY not in self.categories:
            return np.zeros(len(self.values), dtype=bool)
        missing: npt.NDArray[np.bool_] = self.values == self.categories.index(MISSING_CATEGORY)
        return missing

    def cells(self) -> npt.NDArray[np.object_]:
        """A categorical column's cells as read (one pointer a row: for errors and labels)."""
        cells: npt.NDArray[np.object_] = _objects(self.categories)[self.values]
        return cells


class _Codes(dict[str, int]):
    """A code for each distinct cell, in the order cells first appear.

    Looked up through map(), a known cell costs one C-level dict lookup; only a new one
    runs Python (__missing__). Keeping a 4-byte code a cell instead of the str csv made
    (about 55 bytes) is what keeps a text column small.
    """

    def __missing__(self, key: str) -> int:
        code = self[key] = len(self)
        return code

    def encode(self, cells: Sequence[str]) -> npt.NDArray[np.int32]:
        """The codes of `cells`, new cells getting the next codes."""
        return np.fromiter(map(self.__getitem__, cells), np.int32, len(cells))


def _lines(body: bytes) -> io.TextIOWrapper:
    # Decoded as csv reads it, a buffer at a time: neither a str of the whole file nor a
    # StringIO (which holds 4 bytes a character) is made. "utf-8-sig" drops a leading BOM.
    return io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")


def _utf8_error(body: bytes, source: str) -> DataError | None:
    """The error for a body that is not UTF-8, or None if it is."""
    bom = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    try:
        codecs.decode(body[bom:], "utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = body.count(b"\n", 0, offset) + 1
        return DataError(
            f"{source}: not UTF-8 text: byte {offset} (line {line}) is 0x{body[offset]:02x}; "
            "save the file as UTF-8 (CSV UTF-8 in Excel)"
        )
    return None


class _Columns:
    """The wanted columns of the rows read so far: float64 numbers, or codes of text cells.

    A column starts as numbers unless the spec calls it categorical. One whose first chunk
    does not parse as numbers becomes text from there; one that stops parsing later (rare:
    a stray value far down a numeric column) is read again from the file at the end.

    Each column is one array of `capacity` rows, filled chunk by chunk: pieces joined at
    the end would leave as much freed memory behind as the columns take (small arrays come
    from the heap, which keeps it), and the join would need the column twice at once. Pages
    beyond the rows read are never touched, so they take no memory.
    """

    def __init__(self, wanted: Iterable[int], categorical: set[int], capacity: int) -> None:
        self.capacity = capacity
        self.rows = 0
        self.numbers: dict[int, npt.NDArray[np.float64]] = {}
        self.text: dict[int, npt.NDArray[np.int32]] = {}
        self.codes: dict[int, _Codes] = {}
        self.late: set[int] = set()
        # Columns with a missing marker somewhere: parsed the slower way from then on.
        self.marked: set[int] = set()
        for j in wanted:
            if j in categorical:
                self._to_text(j)
            else:
                self.numbers[j] = np.empty(capacity, dtype=np.float64)

    def _to_text(self, j: int) -> None:
        self.text[j] = np.empty(self.capacity, dtype=np.int32)
        self.codes[j] = _Codes()

    def take(self, chunk: _Chunk, first: bool) -> None:
        """Parse a chunk of rectangular rows into the columns."""
        start, end = self.rows, self.rows + len(chunk)
        if end > self.capacity:  # capacity counts line breaks, so this cannot happen
            raise RuntimeError(f"more rows than line breaks: {end} > {self.capacity}")
        self.rows = end
        # csv and str.split allocate a row's strings together, so reading the cells row by
        # row follows memory: parsing all numeric columns in one row-major pass is about
        # twice as fast as column by column. A group that fails is parsed column by column.
        unmarked = [j for j in self.numbers if j not in self.marked]
        marked = [j for j in self.numbers if j in self.marked]
        alone: list[int] = []
        for group, parse in ((unmarked, _plain_floats), (marked, _floats)):
            block = parse(_row_major(chunk, group)) if group else None
            if block is None:
                alone += group
                continue
            block = block.reshape(len(chunk), len(group))
            for position, j in enumerate(group):
                self.numbers[j][start:end] = block[:, position]
        for j in alone:
            cells = _row_major(chunk, [j])
            numbers = None if j in self.marked else _plain_floats(cells)
            if numbers is None:
                self.marked.add(j)
                numbers = _floats(cells)
            if numbers is None:
                numbers = _floats(cells, strip=True)
            if numbers is not None:
                self.numbers[j][start:end] = numbers
                continue
            del self.numbers[j]
            if first:
                self._to_text(j)
            else:
                self.late.add(j)
        for j, out in self.text.items():
            out[start:end] = self.codes[j].encode(_row_major(chunk, [j]))


def _row_major(chunk: _Chunk, group: list[int]) -> list[str]:
    """The cells of columns `group`, row after row."""
    if isinstance(chunk, _Flat):
        cells, width = chunk.cells, chunk.width
        if len(group) == 1:
            return cells[group[0] :: width]
        # Slice assignments interleave the columns in C, not a Python loop over rows.
        out = [""] * (len(chunk) * len(group))
        for position, j in enumerate(group):
            out[position :: len(group)] = cells[j::width]
        return out
    if len(group) == 1:
        return list(map(itemgetter(group[0]), chunk))
    return list(chain.from_iterable(map(itemgetter(*group), chunk)))


# Rows parsed together: enough that NumPy's per-call cost vanishes, few enough that the
# chunk's rows as csv returns them (a list and a str per cell, ~60 bytes) stay a few MB
# (and in the CPU's cache: 3,000 rows parsed faster than 10,000, and 512 KB than 2 MB).
_CHUNK_ROWS = 3_000
# The same, in bytes, for files read without the csv module (see _plain_chunks).
_CHUNK_BYTES = 1 << 19


class _NotPlain(Exception):
    """A field is too large for the csv module: read the file with it, for its error."""


def _read(body: bytes, spec: ModelSpec, source: str) -> tuple[_Table, _Columns]:
    """Read the file once, parsing the columns `spec` wants as it goes."""
    if b'"' not in body and b"\r" not in body and b"\0" not in body:
        try:
            return _read_chunks(body, spec, source, plain=True)
        except _NotPlain:
            pass
    return _read_chunks(body, spec, source, plain=False)


def _read_chunks(
    body: bytes, spec: ModelSpec, source: str, *, plain: bool
) -> tuple[_Table, _Columns]:
    reader = csv.reader(_lines(body))
    chunks = _plain_chunks(body) if plain else _csv_chunks(reader)
    header: list[str] | None = None
    try:
        with _gc_paused():
            for chunk in chunks:
                if header is None:
                    if not chunk:
                        continue
                    assert not isinstance(chunk, _Flat)  # the header's block is rows
                    header, chunk = chunk[0], chunk[1:]
                    _check_not_blank(body, source, header)
                    table = _Table(source, body, header)
                    # Every record ends at a line break, or at the end: a bound on the rows.
                    capacity = body.count(b"\n") + body.count(b"\r") + 1
                    columns = _Columns(*_wanted(table, spec), capacity)
                    width, first = len(header), True
                if not table.ragged and (
                    isinstance(chunk, _Flat) or all(len(record) == width for record in chunk)
                ):
                    if chunk:
                        columns.take(chunk, first)
                        first = False
                else:
                    # Once a row is ragged the file is refused: stop parsing, keep counting.
                    # (A _Flat block has none: each of its lines has the header's width.)
                    rows = [] if isinstance(chunk, _Flat) else chunk
                    for row, record in enumerate(rows, start=table.n_rows):
                        if len(record) != width:
                            if not table.ragged:
                                table.first_ragged_fields = len(record)
                            table.ragged.append(row)
                table.n_rows += len(chunk)
    except UnicodeDecodeError:
        raise _utf8_error(body, source) or DataError(f"{source}: not UTF-8 text") from None
    except csv.Error as exc:
        # Undecodable bytes are the first thing to fix, wherever in the file they are.
        raise _utf8_error(body, source) or DataError(
            f"{source}: line {reader.line_num} is not valid CSV: {exc}"
        ) from None
    if header is None:
        _check_not_blank(body, source, [" "])
        raise DataError(f"{source}: the file is empty")
    return table, columns


def _check_not_blank(body: bytes, source: str, header: list[str]) -> None:
    """The error for a file that is only whitespace (or nothing), whose header says so."""
    # Only such a file reads as a single blank cell, but a long one could: decode it to tell.
    if len(header) != 1 or (header[0] and not header[0].isspace()):
        return
    error = _utf8_error(body, source)
    if error is not None:
        raise error
    text = body.decode("utf-8-sig")
    if not text or text.isspace():
        raise DataError(f"{source}: the file is empty")


def _csv_chunks(reader: Iterator[list[str]]) -> Iterator[_Chunk]:
    """The non-blank records, _CHUNK_ROWS at a time."""
    chunk: list[list[str]] = []
    for record in reader:
        if record:
            chunk.append(record)
            if len(chunk) == _CHUNK_ROWS:
                yield chunk
                chunk = []
    yield chunk


@dataclass(frozen=True)
class _Flat:
    """Rows of a plain file as one list of cells, row after row, `width` cells each."""

    cells: list[str]
    width: int

    def __len__(self) -> int:
        return len(self.cells) // self.width


_Chunk = list[list[str]] | _Flat


def _plain_chunks(body: bytes) -> Iterator[_Chunk]:
    """The non-blank records of a file without quotes, carriage returns or NULs.

    There csv's rules come down to one record a line and a field between commas, which
    str.split does twice as fast as csv.reader. A block of whole lines is decoded at a time,
    so no str of the whole file is made (a block ends at a newline, never inside a
    character). Once the header's width is known, a block whose lines all have it is split
    in one call into a flat list of cells (_Flat), the fastest form to pick columns from.
    """
    start = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    limit = csv.field_size_limit()
    commas = -1  # in each line, once the header is read
    while start < len(body):
        end = body.find(b"\n", start + _CHUNK_BYTES)
        end = len(body) if end < 0 else end + 1
        lines = [line for line in body[start:end].decode("utf-8").split("\n") if line]
        start = end
        if (
            lines
            and max(map(len, lines)) > limit
            and any(len(field) > limit for line in lines for field in line.split(","))
        ):
            raise _NotPlain
        if commas >= 0 and all(line.count(",") == commas for line in lines):
            yield _Flat(",".join(lines).split(","), commas + 1) if lines else []
            continue
        if commas < 0 and lines:
            commas = lines[0].count(",")
        yield [line.split(",") for line in lines]


def _wanted(table: _Table, spec: ModelSpec) -> tuple[list[int], set[int]]:
    """The columns to parse (target and features) and the spec's categorical ones.

    A spec that does not fit the header wants none: its error is raised after the read,
    in the order the checks have always had.
    """
    header = table.header
    categorical = {header.index(name) for name in spec.categorical if name in header}
    names = [spec.target, *(spec.features or [])]
    if any(name not in header for name in names) or len(set(header)) != len(header):
        return [], categorical
    if spec.features is None:
        names += [name for name in header if name != spec.target and name not in spec.drop]
    return [header.index(name) for name in names], categorical


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
    if spec.target not in header and all(is_number(name) for name in header):
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


def _check_rows(table: _Table, spec: ModelSpec) -> None:
    """The data rows are rectangular, and enough."""
    width, ragged = len(table.header), table.ragged
    if ragged:
        first, fields = ragged[0], table.first_ragged_fields
        message = f"line {table.line(first)} has {fields} fields, the header has {width}"
        if len(ragged) > 1:
            message += f"; {len(ragged)} rows in all have the wrong number of fields"
        if fields > width:
            message += "; a value that contains a comma must be in double quotes"
        raise table.error(message + _separator_hint(table))
    if not table.n_rows:
        raise table.error("the file has a header row but no data rows")
    if table.n_rows < spec.min_rows:
        raise table.error(
            f"the file has {table.n_rows} data rows, fewer than the {spec.min_rows} the spec's "
            '"min_rows" asks for'
        )


def _objects(cells: Sequence[str]) -> npt.NDArray[np.object_]:
    """A 1-D object array of `cells` (np.array would make a 2-D one of a list of tuples)."""
    out = np.empty(len(cells), dtype=object)
    out[:] = cells
    return out


def _parse_columns(
    table: _Table, parsed: _Columns, wanted: list[int], categorical: set[int]
) -> dict[int, _Column]:
    """Type each wanted column (by position) from what _read parsed, following the rules."""
    columns: dict[int, _Column] = {}
    for j in wanted:
        if j in columns:
            continue
        name = table.header[j]
        if j in parsed.numbers:
            columns[j] = _numeric(table, name, parsed.numbers.pop(j)[: table.n_rows], j)
            continue
        if j in parsed.late:
            # Numbers in its first rows, then something else: read its cells again.
            codes = _Codes()
            column = _Column.text(codes.encode(table.column(j).tolist()), list(codes))
        else:
            codes = parsed.codes.pop(j)
            column = _Column.text(parsed.text.pop(j)[: table.n_rows], list(codes))
        columns[j] = column if j in categorical else _categorical(table, name, column)
    return columns


def _floats(cells: Sequence[str], *, strip: bool = False) -> npt.NDArray[np.float64] | None:
    """The cells as float64, NaN where missing, or None if some cell is not a number.

    float() ignores whitespace around numbers; `strip` ignores it around missing markers too,
    at some cost, so the fast path leaves it out and a failure retries with it.
    """
    keys: Iterable[str] = map(str.strip, cells) if strip else cells
    try:
        return np.fromiter(map(float, map(_AS_NAN.get, keys, cells)), np.float64, len(cells))
    except ValueError:
        return None


def _plain_floats(cells: Sequence[str]) -> npt.NDArray[np.float64] | None:
    """The cells as float64 if float() reads every one (no missing markers but nan), else None.

    A third faster than _floats, which looks every cell up among the missing markers first.
    """
    try:
        return np.fromiter(map(float, cells), np.float64, len(cells))
    except ValueError:
        return None


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _numeric(table: _Table, name: str, numbers: npt.NDArray[np.float64], j: int) -> _Column:
    infinite = np.flatnonzero(np.isinf(numbers)).tolist()
    if infinite:
        raise table.error(
            f"column {name!r} holds numbers that are not finite: "
            f"{table.values(infinite, table.column(j))}; "
            "use finite numbers, or leave a field empty if its value is missing"
        )
    # The exported model computes in float32, where these would become infinities.
    huge = np.flatnonzero(np.abs(numbers) > _FLOAT32_MAX).tolist()
    if huge:
        raise table.error(
            f"column {name!r} holds numbers beyond float32's range (about 3.4e38), which the "
            f"exported model computes in: {table.values(huge, table.column(j))}"
        )
    return _Column("numeric", numbers)


def _categorical(table: _Table, name: str, column: _Column) -> _Column:
    """A column with values that are not numbers; an error if most of them are numbers."""
    # Testing each distinct value once, with its count, is much faster than every cell.
    counts = dict(
        zip(
            column.categories,
            np.bincount(column.values, minlength=len(column.categories)).tolist(),
            strict=True,
        )
    )
    given = {value for value in counts if value.strip() not in NUMERIC_MISSING}
    text = {value for value in given if not is_number(value)}
    # "67,36": a number written with a decimal comma (or "1,234" with a thousands
    # separator). Taken as categories, every value would be its own, and the served model
    # would refuse numbers: an error, whichever way the file meant it.
    comma = {
        value for value in text if value.count(",") == 1 and is_number(value.replace(",", "."))
    }
    if 2 * sum(counts[value] for value in comma) > sum(counts[value] for value in given):
        cells = column.cells()
        rows = [row for row, value in enumerate(cells) if value in comma]
        raise table.error(
            f"column {name!r} holds numbers written with a comma: {table.values(rows, cells)}; "
            "write them with a decimal point and no thousands separator ('67.36'; in a "
            "spreadsheet, export the CSV with '.' as the decimal separator), or list the "
            'column under "categorical" in the spec if it holds categories'
        )
    if 2 * sum(counts[value] for value in text) <= sum(counts[value] for value in given):
        cells = column.cells()
        rows = [row for row, value in enumerate(cells) if value in text]
        raise table.error(
            f"column {name!r} holds numbers, but not everywhere: {table.values(rows, cells)}; "
            "correct such values (a missing value may be left empty or written NA), "
            'or list the column under "categorical" in the spec if it holds categories'
        )
    return column


def _check_not_all_distinct(table: _Table, name: str, column: _Column) -> None:
    """An inferred categorical feature with (nearly) one category per row is an error.

    Ids, timestamps, free text, or numbers written in a way that is not read as numbers:
    as categories they teach the model nothing and make a one-hot column per row. A
    column the spec lists under "categorical" is taken as the user says.
    """
    present = np.flatnonzero(~column.missing())
    # Every category was read from the column, so each has a row.
    distinct = len(column.categories) - (MISSING_CATEGORY in column.categories)
    if present.size < _MIN_ROWS_FOR_DISTINCT or distinct < _MOST_DISTINCT * present.size:
        return
    first = int(present[0])
    value = column.categories[int(column.values[first])]
    raise table.error(
        f"column {name!r} has {distinct} different values in {present.size} rows, such as "
        f"{quoted(value)} (line {table.line(first)}): nearly one category per "
        'row, which teaches a model nothing; list it under "drop" in the spec if it is an id '
        'or free text, correct its values if they are numbers, or list it under "categorical" '
        "if these really are its categories"
    )


def _target(
    table: _Table, spec: ModelSpec, column: _Column, j: int
) -> tuple[Task, npt.NDArray[Any]]:
    """The task, given or inferred, and the labels or values to learn (column j)."""
    name = spec.target
    if column.kind == "numeric":
        unlabeled = np.flatnonzero(np.isnan(column.values)).tolist()
    else:
        unlabeled = np.flatnonzero(column.missing()).tolist()
    if unlabeled:
        raise table.error(
            f"target column {name!r} is empty on {len(unlabeled)} of {table.n_rows} rows "
            f"({table.lines(unlabeled)}); remove the unlabeled rows or fill in their targets"
        )

    task = spec.task or _infer_task(column)
    if task == "regression":
        if column.kind == "categorical":
            if name in spec.categorical:
                why = 'the spec lists it under "categorical"'
            else:
                cells = column.cells()
                row = next(row for row, cell in enumerate(cells) if not is_number(cell))
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
        labels = column.cells() if column.kind == "categorical" else table.column(j)
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


def is_number(value: str) -> bool:
    """Whether float() reads `value` (NaN and infinity spellings included)."""
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
