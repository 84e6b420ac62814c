"""Checks shared by both prediction protocols: limits, column types, request ids."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from shared.errors import BadRequest, PayloadTooLarge, quoted
from shared.serving import encoding

# Lambda's synchronous invocation payload limit is 6 MB, the request event included;
# a body close to it is refused here with a clear message rather than by the platform.
MAX_BODY_BYTES = int(os.environ.get("MLOPS_MAX_BODY_BYTES", 6_000_000))
MAX_ROWS = int(os.environ.get("MLOPS_MAX_ROWS", 10_000))
FLOAT32_MAX = float(np.finfo(np.float32).max)
# The least magnitude that rounds to float32's infinity (halfway between its maximum and
# 2**128, where round-half-even goes up): anything below rounds to a finite float32, so
# `3.4028235e38`, float32's maximum as numpy prints it, is in range.
FLOAT32_OVERFLOW = float(2**128 - 2**103)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def check_body(body: bytes) -> bytes:
    """Refuse bodies over the size limit, and empty ones."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} "
            "(split the batch into several requests)"
        )
    if not body.strip():
        raise BadRequest("request body is empty; send a JSON object")
    return body


def unpack_body(body: bytes, content_encoding: str | None) -> bytes:
    """The body as sent (within the limit), then without its gzip/deflate coding (ditto)."""
    if content_encoding is None:
        return body
    return encoding.decode_body(check_body(body), content_encoding, MAX_BODY_BYTES)


# msgspec decodes nested arrays and objects recursively, and Python's recursion limit
# stops it (RecursionError) at about a thousand levels: a client's mistake, not ours.
TOO_DEEP = (
    "request body nests arrays or objects too deeply; tensor data is flat or "
    "[rows][columns], records are flat objects"
)


def json_error(exc: Exception) -> BadRequest:
    """The 400 for a body msgspec could not decode, quoting at most a short piece of it."""
    if isinstance(exc, RecursionError):
        return BadRequest(TOO_DEEP)
    return BadRequest(f"request body is not valid JSON: {str(exc)[:200]}")


def decode_body(body: bytes) -> Any:
    """Strict JSON (NaN and Infinity are not JSON) within the size limit."""
    try:
        return msgspec.json.decode(check_body(body))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise json_error(exc) from None


def check_rows(n_rows: int) -> int:
    """Refuse empty and oversized batches."""
    if n_rows == 0:
        raise BadRequest("no rows to predict: send at least one")
    if n_rows > MAX_ROWS:
        raise PayloadTooLarge(f"{n_rows} rows in one request; the limit is {MAX_ROWS}")
    return n_rows


def is_request_id(value: str) -> bool:
    """Whether `value` may serve as a request id (and so be echoed in a header)."""
    return _REQUEST_ID.fullmatch(value) is not None


def request_id(given: object, header: str | None) -> str:
    """The caller's id (body, then X-Request-Id header) or a new one; it joins labels later."""
    for candidate in (given, header):
        if candidate is None:
            continue
        if not isinstance(candidate, str) or not _REQUEST_ID.fullmatch(candidate):
            raise BadRequest(
                "request id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'"
            )
        return candidate
    return secrets.token_hex(16)


# An error quotes at most this many names: a request with 40,000 wrong names must not get
# a 400 KB error back.
MAX_QUOTED_NAMES = 10


def quote_names(names: Sequence[str]) -> str:
    """A list of names for an error message, cut after MAX_QUOTED_NAMES."""
    shown = [name[:64] for name in names[:MAX_QUOTED_NAMES]]
    more = len(names) - len(shown)
    return f"{shown}" + (f" and {more} more" if more > 0 else "")


def feature_mismatch(
    kind: str,
    *,
    missing: Sequence[str],
    unknown: Sequence[str],
    duplicate: Sequence[str] = (),
    missing_hint: str = "",
    model: str,
    version: int,
    takes: Sequence[str],
) -> BadRequest:
    """The error for inputs that do not name the model's features exactly once each."""
    problems = []
    if missing:
        problems.append(f"missing {kind} {quote_names(missing)}{missing_hint}")
    if unknown:
        problems.append(f"unknown {kind} {quote_names(unknown)}")
    if duplicate:
        problems.append(f"duplicate {kind} {quote_names(duplicate)}")
    return BadRequest(
        f"{'; '.join(problems)}; model {model!r} version {version} takes {quote_names(takes)}"
    )


def check_numbers(values: Sequence[Any], where: Callable[[int], str], *, allow_null: bool) -> None:
    """Refuse anything but JSON numbers (and null when allowed): no strings, no booleans."""
    try:
        # msgspec checks in C (ints pass as floats; bools and strings do not), several
        # times faster than the loop below, which only runs to name the first bad value.
        msgspec.convert(values, list[float | None] if allow_null else list[float])
        return
    except msgspec.ValidationError:
        pass
    for i, value in enumerate(values):
        kind = type(value)
        if kind is float or kind is int or (value is None and allow_null):
            continue
        expected = "a number or null" if allow_null else "a number"
        raise BadRequest(f"{where(i)}: expected {expected}, got {quoted(value)}")


def float_matrix(values: Sequence[Any] | np.ndarray, where: Callable[[int], str]) -> np.ndarray:
    """Checked numbers (a flat list or a list of rows) as float64, null -> NaN."""
    try:
        matrix = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer literal beyond even float64
        raise BadRequest(
            "a number in the request is outside the float32 range the model uses"
        ) from None
    # The model computes in float32: a value beyond its range would silently become inf.
    flat = matrix.ravel()
    too_big = np.abs(flat) >= FLOAT32_OVERFLOW  # NaN compares False: missing values pass
    if too_big.any():
        i = int(np.flatnonzero(too_big)[0])
        # float(): the message shows the number as the caller wrote it, not numpy's repr.
        raise BadRequest(
            f"{where(i)}: {float(flat[i])!r} is outside the float32 range the model uses"
        )
    return matrix


def string_column(
    values: Sequence[Any], where: Callable[[int], str], *, allow_null: bool
) -> np.ndarray:
    """str values ('' = missing, as in training); numbers and objects refused."""
    for i, value in enumerate(values):
        if type(value) is str or (value is None and allow_null):
            continue
        expected = "a string or null" if allow_null else "a string"
        raise BadRequest(f"{where(i)}: expected {expected}, got {quoted(value)}")
    return np.array(["" if v is None else v for v in values], dtype=object)
