"""S3 notifications as (bucket, key, version id) triples: shared by every S3-triggered function."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

logger = logging.getLogger(__name__)


def object_records(event: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(bucket, key, version id) of every record in an S3 notification.

    Keys arrive URL-encoded. The version id is there when the bucket is versioned: the
    bytes the event names, which a later upload of the same key must not replace. A record
    without a bucket name and a key is logged and left out: raising would have Lambda retry
    an event that can never succeed (S3's own test event has no records at all).
    """
    uploads = []
    records = event.get("Records")
    for record in records if isinstance(records, list) else []:
        try:
            s3 = record["s3"]
            bucket, key = s3["bucket"]["name"], s3["object"]["key"]
            version_id = s3["object"].get("versionId") or None
            if not all(isinstance(v, str) for v in (bucket, key, version_id or "")):
                raise TypeError("a name that is not a string")
        except (KeyError, TypeError, AttributeError) as exc:
            logger.error("ignoring a malformed S3 event record (%s): %.200r", exc, record)
            continue
        uploads.append((bucket, unquote_plus(key), version_id))
    return uploads
