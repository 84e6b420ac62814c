"""The object-store contract every backend honours (see tests/test_store_contract.py)."""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.errors import InvalidKey

# S3's id of the version an object gets while its bucket is not versioned.
NULL_VERSION = "null"
# Keys are S3-style relative paths; the same rules keep the local backend inside its root.
_SEGMENT_FORBIDDEN = re.compile(r"[\x00-\x1f\\]")
MAX_KEY_BYTES = 1024
# How an If-Match ETag is sent: as the caller gives it (as S3 returned it, quoted), or bare.
EtagSpelling = Literal["as given", "unquoted"]


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing says of one object."""

    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes with the identity used for lineage and conditional writes."""

    key: str
    body: bytes
    etag: str
    version_id: str | None = None


def _key_problem(text: str, *, open_ended: bool) -> str | None:
    """Why `text` is not a safe key (or, if `open_ended`, a start of one); None if it is."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        # Lone surrogates (e.g. undecodable file names) have no UTF-8 form, so S3 cannot hold them.
        return "is not valid Unicode text"
    if size > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    if text.startswith("/"):
        return "must be relative, not absolute"
    if _SEGMENT_FORBIDDEN.search(text):
        return "has a control character or backslash"
    segments = text.split("/")
    if open_ended:
        # What follows the last "/" may be an unfinished segment: "a/." still starts "a/.env".
        segments.pop()
    if any(segment in ("", ".", "..") for segment in segments):
        return "has an empty, '.' or '..' segment"
    return None


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe relative key, else raise InvalidKey naming why.

    A safe key is non-empty UTF-8 of at most MAX_KEY_BYTES bytes, relative, free of control
    characters and backslashes, and made of "/"-separated segments none of which is empty,
    "." or "..": so it maps onto exactly one file below a local root, and "a/" folder markers
    are not keys.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key must be a non-empty string")
    problem = _key_problem(key, open_ended=False)
    if problem is not None:
        raise InvalidKey(f"object key {key[:80]!r} {problem}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` unchanged if some safe key could start with it, else raise InvalidKey.

    The empty prefix matches every key. A prefix may end with "/" or stop inside a segment
    ("runs/ab" matches "runs/abc/x"), so only the segments before its last "/" must be whole
    safe segments; "a//" and "../" are rejected, "a/." is allowed (it matches "a/.env").
    """
    if prefix == "":
        return prefix
    problem = _key_problem(prefix, open_ended=True)
    if problem is not None:
        raise InvalidKey(f"key prefix {prefix[:80]!r} {problem}")
    return prefix


class ObjectStore(abc.ABC):
    """Bytes under keys, with S3's semantics including its conditional writes."""

    @property
    @abc.abstractmethod
    def uri(self) -> str:
        """Where this store lives, e.g. ``s3://bucket/prefix`` or ``file:///path``."""

    @abc.abstractmethod
    def get(self, key: str, *, version_id: str | None = None) -> StoredObject:
        """Read an object (the version `version_id` names, else the current one).

        Raise ObjectNotFound if absent, ObjectVersionNotFound (a kind of ObjectNotFound) if
        the object has no such version. "null" names the one version of an object written
        while versioning was off, as on S3.
        """

    def get_range(self, key: str, start: int, end: int, *, version_id: str | None = None) -> bytes:
        """Bytes `start` to `end` (exclusive) of an object, fewer at its end; b"" past it.

        What a batch part reads: its own slice of a large input, never the whole object.
        This fallback reads the whole object; the backends read only the range.
        """
        if start >= end:
            return b""
        return self.get(key, version_id=version_id).body[start:end]

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Describe an object without reading it; None if absent."""

    @abc.abstractmethod
    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Write an object and return its new ETag.

        ``if_none_match=True`` writes only if no object exists at ``key``;
        ``if_match=etag`` writes only if the current object has that ETag.
        A lost condition raises PreconditionFailed and changes nothing.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in ascending key order."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; absent objects are not an error (as on S3)."""

    @property
    def checked_before_registry_writes(self) -> bool:
        """Whether the registry checks the store (shared.store.check) before its first write.

        A service's guarantees vary by server; a backend whose guarantees are known (this
        project's own code, or AWS S3 itself) says False.
        """
        return True

    @property
    def service(self) -> str:
        """What keeps this store's guarantees (the store check's verdict is cached per service)."""
        return self.uri

    @property
    def sorts_listings(self) -> bool:
        """Whether list() sorts what the service lists (the service's own order differs)."""
        return False

    @property
    def read_concurrency(self) -> int:
        """How many reads shared.store.fetch keeps in flight: one where a read is a local
        file (threads only add their overhead), more where each read waits on a network."""
        return 1

    def as_the_service_answers(self, spelling: EtagSpelling) -> ObjectStore:
        """This store without tolerances of spelling, sending If-Match ETags as `spelling`
        and listing in the service's order: what the store check probes. A backend with no
        wire to spell anything on is itself."""
        return self

    def key_for_event(self, bucket: str, key: str) -> str:
        """The store-relative key of an object that a storage event names.

        A local folder has no buckets, so the key is taken as it is; the S3 backend
        checks the bucket and strips its prefix.
        """
        return validate_key(key)
