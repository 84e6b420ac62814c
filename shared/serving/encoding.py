"""HTTP content codings, as Triton's HTTP endpoint takes them: gzip and deflate.

Requests: a body sent with ``Content-Encoding: gzip`` or ``deflate`` (zlib format, as
RFC 9110 and tritonclient mean it) is decompressed in bounded steps, so that its
decompressed size counts against the body limit and a zip bomb costs O(limit) work, never
O(its decompressed size). Responses: `compress` for whatever plays the gateway's part.
"""

from __future__ import annotations

import gzip
import zlib

from shared.errors import BadRequest, PayloadTooLarge, quoted

CODINGS = ("gzip", "deflate")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_STEP = 1 << 20  # decompressed bytes per step: memory stays O(limit), not O(bomb)


def _looks_encoded(body: bytes, coding: str) -> bool:
    if coding == "gzip":
        return body[:2] == b"\x1f\x8b"
    # A zlib stream's first two bytes: method 8 (deflate), and a multiple of 31 together.
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body without its content coding, refused once it decompresses past `limit`."""
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in CODINGS:
        raise BadRequest(
            f"Content-Encoding {quoted(coding)} is not supported; use gzip, deflate or none"
        )
    if not _looks_encoded(body, coding) and body.lstrip()[:1] == b"{":
        # API Gateway decompresses request bodies itself before the function sees them and
        # may pass the header on; a JSON object can never start a gzip or zlib stream.
        return body
    out = bytearray()
    stream = zlib.decompressobj(_WBITS[coding])
    chunk = body
    try:
        while not stream.eof:
            piece = stream.decompress(chunk, min(_STEP, limit + 1 - len(out)))
            out += piece
            if len(out) > limit:
                raise PayloadTooLarge(
                    f"request body decompresses to more than {limit} bytes, the limit "
                    "(split the batch into several requests)"
                )
            chunk = stream.unconsumed_tail
            if not piece and not chunk:
                raise BadRequest(f"request body ends inside its {coding} stream")
    except zlib.error:
        raise BadRequest(f"request body is not valid {coding} data") from None
    if stream.unused_data:
        # One stream per body, as clients send it: a gzip body of many members would be
        # legal (RFC 1952) but each member costs a copy of the rest, quadratic in all.
        raise BadRequest(f"request body has data after its {coding} stream")
    return bytes(out)


def accepted_coding(accept_encoding: str | None) -> str | None:
    """The coding to answer in: gzip, else deflate, if the Accept-Encoding header allows it."""
    accepted: dict[str, float] = {}
    for item in (accept_encoding or "").split(",")[:32]:
        name, _, params = item.partition(";")
        q = 1.0
        key, _, value = params.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value[:8])
            except ValueError:
                q = 0.0
        accepted[name.strip().lower()] = q
    for coding in CODINGS:
        if accepted.get(coding, accepted.get("*", 0.0)) > 0:
            return coding
    return None


def compress(body: bytes, coding: str) -> bytes:
    """`body` in `coding` (gzip or deflate, zlib format)."""
    return gzip.compress(body, compresslevel=6) if coding == "gzip" else zlib.compress(body, 6)
