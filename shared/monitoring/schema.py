"""Versioned records: a reader meeting a record newer than itself refuses to go on.

msgspec drops fields it does not know, so an older container that read a newer record
and wrote it back would lose them; refusing is the only safe answer.
"""

from __future__ import annotations

from shared.errors import MlopsError


class NewerRecordError(MlopsError):
    """A stored record has a schema newer than this code knows."""


def check_schema(kind: str, version: int, known: int, where: str) -> None:
    """Refuse a record written by newer code (its unknown fields would be dropped)."""
    if version > known:
        raise NewerRecordError(
            f"{where}: {kind} schema_version {version} is newer than this code's {known}; "
            "upgrade before reading or rewriting it"
        )
