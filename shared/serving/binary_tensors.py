"""The binary tensor data extension of the inference protocol (as Triton and KServe do it).

A request or response body is the JSON object followed by raw tensor bytes, in the order
of the tensors that carry a ``binary_data_size`` parameter; the HTTP header
``Inference-Header-Content-Length`` gives the JSON part's length. Numbers are
little-endian, row-major; a BYTES element is a 4-byte little-endian length, then its bytes.
Large batches skip JSON number parsing entirely this way.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from shared.errors import BadRequest, quoted

HEADER = "inference-header-content-length"
NUMERIC_DTYPES: dict[str, str] = {"FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}


def _input(name: str) -> str:
    return f"input {quoted(name)}"


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, binary part) of a body, from the Inference-Header-Content-Length value."""
    if header_length is None:
        return body, b""
    # Optional whitespace around a field value is not part of it (RFC 9110, 5.5), on
    # either side: a server may pass it on when its HTTP parser does not strip it.
    value = header_length.strip(" \t")
    # Length checked before int(): Python refuses to parse more than 4,300 digits.
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > len(str(len(body)))
        or not 0 < int(value) <= len(body)
    ):
        raise BadRequest(
            f"Inference-Header-Content-Length {quoted(header_length)} must be the length of "
            f"the JSON part of the {len(body)}-byte body"
        )
    length = int(value)
    return body[:length], body[length:]


def binary_sizes(binary: bytes, sizes: list[tuple[str, int]]) -> dict[str, bytes]:
    """Cut the binary part into each tensor's bytes, checking the sizes add up."""
    for name, size in sizes:
        if size > len(binary):
            # Before anything adds or prints the sizes: msgspec decodes integers of any
            # length, and a sum past 4,300 digits cannot even be formatted (a 500 once).
            raise BadRequest(
                f"{_input(name)}: binary_data_size {quoted(size)} is more than the "
                f"{len(binary)} bytes the body carries after the JSON header"
            )
    total = sum(size for _, size in sizes)
    if total != len(binary):
        raise BadRequest(
            f"the inputs' binary_data_size add up to {total} bytes, "
            f"the body carries {len(binary)} after the JSON header"
        )
    out: dict[str, bytes] = {}
    offset = 0
    for name, size in sizes:
        out[name] = binary[offset : offset + size]
        offset += size
    return out


def decode_numbers(name: str, datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    """A numeric tensor's bytes as float64 in its shape (NaN stays NaN: a missing value)."""
    dtype = np.dtype(NUMERIC_DTYPES[datatype])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise BadRequest(
            f"{_input(name)}: {datatype} {quoted(shape)} needs {quoted(expected)} bytes, "
            f"binary_data_size gives {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).astype(np.float64).reshape(shape)


def decode_strings(name: str, raw: bytes) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length, then UTF-8 text."""
    values: list[str] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BadRequest(f"{_input(name)}: BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise BadRequest(f"{_input(name)}: BYTES element {len(values)} runs past the data")
        try:
            values.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(f"{_input(name)}: BYTES element {len(values)} is not UTF-8") from None
        offset += length
    return values


def encode_strings(values: list[str]) -> bytes:
    """BYTES elements for a response: length-prefixed UTF-8."""
    parts = []
    for value in values:
        data = value.encode("utf-8")
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)
