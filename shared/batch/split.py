"""Splitting an input into parts at record boundaries, in one pass and bounded memory.

Pure: fed the object's bytes chunk by chunk, it finds where each part may start (after a
newline that is outside any quoted field, so a quoted field holding a newline is never cut),
checks the text is UTF-8, reads the header, and counts lines so that each part knows the
line number it starts at (rejects name lines of the file, not of the part).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from shared.errors import MlopsError, quoted

# A header longer than this is no header: a file of one endless line.
MAX_HEADER_BYTES = 1 << 20


class BadInput(MlopsError):
    """The input file cannot be scored at all (the job fails; no manifest is written)."""


@dataclass(frozen=True)
class Part:
    """One part of an input: bytes [start, end) of the object, from line `first_line` on."""

    index: int
    start: int
    end: int
    first_line: int


@dataclass(frozen=True)
class InputScan:
    """What one pass over an input found: its header, parts and size."""

    columns: tuple[str, ...]
    parts: tuple[Part, ...]
    size: int


def scan_csv(
    chunks: Iterable[bytes],
    *,
    part_bytes: int,
    name: str,
    splittable: bool = True,
    json_lines: bool = False,
) -> InputScan:
    """Parts of at least `part_bytes` bytes (the last may be shorter), cut after a newline
    outside quotes; BadInput naming `name` if the text is not UTF-8 or has no header.

    A quote character toggles "inside a quoted field" (RFC 4180: a doubled quote inside
    one toggles twice), so the parity of quotes seen so far says whether a newline ends a
    record. `splittable` False (a compressed input: no byte offset can be read alone)
    gives one part. `json_lines`: every newline ends a record (JSON escapes the newlines
    and quotes inside its strings), and there is no header.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    boundaries: list[tuple[int, int]] = [(0, 1)]  # (byte offset, first line) of each part
    header = bytearray()
    header_done = json_lines
    in_quotes = False
    newlines = 0
    base = 0
    target = part_bytes
    for chunk in chunks:
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            line = newlines + chunk.count(b"\n", 0, max(exc.start, 0)) + 1
            raise BadInput(
                f"{name} is not UTF-8 text (line {line}, byte {base + exc.start}: "
                f"{quoted(exc.object[exc.start : exc.start + 4])}); save it as UTF-8 "
                "(in Excel: CSV UTF-8) and upload it again"
            ) from None
        cursor = 0  # quotes and newlines of the chunk before `cursor` are counted
        search = 0
        while True:
            if header_done and splittable:
                search = max(search, target - 1 - base)
            elif header_done:
                break
            newline = chunk.find(b"\n", search)
            if newline < 0:
                break
            if not json_lines:
                in_quotes ^= chunk.count(b'"', cursor, newline) & 1 == 1
            newlines += chunk.count(b"\n", cursor, newline + 1)
            cursor = newline + 1
            search = newline + 1
            if in_quotes:
                continue
            if not header_done:
                header += chunk[:cursor]
                header_done = True
                continue
            boundaries.append((base + cursor, newlines + 1))
            target = base + cursor + part_bytes
        if not header_done:
            header += chunk
            if len(header) > MAX_HEADER_BYTES:
                raise BadInput(
                    f"{name}: no line ends within its first {MAX_HEADER_BYTES} bytes; "
                    "the first line must be a header of column names"
                )
        if not json_lines:
            in_quotes ^= chunk.count(b'"', cursor) & 1 == 1
        newlines += chunk.count(b"\n", cursor)
        base += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise BadInput(f"{name} is not UTF-8 text: it ends inside a character") from None
    if json_lines:
        if not base:
            raise BadInput(f"{name} is empty: upload one JSON object per line")
        columns: tuple[str, ...] = ()
    else:
        columns = _header(bytes(header), name)
    boundaries = [b for b in boundaries if b[0] < base] or [(0, 1)]
    ends = [b[0] for b in boundaries[1:]] + [base]
    parts = tuple(
        Part(index=i, start=start, end=end, first_line=line)
        for i, ((start, line), end) in enumerate(zip(boundaries, ends, strict=True))
    )
    return InputScan(columns=columns, parts=parts, size=base)


def _header(header: bytes, name: str) -> tuple[str, ...]:
    text = header.decode("utf-8-sig")  # Excel's CSV UTF-8 starts with a byte-order mark
    if not text.strip():
        raise BadInput(f"{name} is empty: the first line must be a header of column names")
    row = next(csv.reader(io.StringIO(text)), [])
    columns = tuple(cell.strip() for cell in row)
    if any(not column for column in columns):
        raise BadInput(
            f"{name}: the header has an empty column name (column {columns.index('') + 1}); "
            "the first line must name every column"
        )
    duplicate = sorted({c for c in columns if columns.count(c) > 1})
    if duplicate:
        raise BadInput(f"{name}: the header names {quoted(duplicate)} more than once")
    return columns
