"""Turn a store location (an argument, or the MLOPS_STORE environment variable) into a store."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, unquote, urlsplit

from shared.errors import InvalidKey, StoreConfigError
from shared.store.base import ObjectStore
from shared.store.local import LocalStore

if TYPE_CHECKING:
    from shared.store.s3 import S3Store

ENV_VAR = "MLOPS_STORE"
DEFAULT_LOCATION = ".mlops-store"
FORMS = "s3://bucket[/prefix], file:///absolute/path, or a folder path"
# Legacy us-east-1 buckets may have capitals and underscores, so this is looser than today's rules.
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# "s3:bucket" or "file:/x" are typos for URLs, not folder names to create in the cwd.
_URL_TYPO = re.compile(r"(?i)(s3|file):(?!//)")


def open_store(location: str | None = None) -> ObjectStore:
    """Open the store at `location`: ``s3://bucket[/prefix]``, ``file:///path`` or a folder path.

    Without `location`, MLOPS_STORE is used if set and non-empty, else the folder
    ``.mlops-store`` in the current directory. Raise StoreConfigError for anything else.
    """
    source = repr(location)
    if location is None:
        location = os.environ.get(ENV_VAR) or DEFAULT_LOCATION
        source = f"{ENV_VAR}={location!r}"
    if not location:
        raise _bad(source, "it is empty")
    if "://" not in location:
        if _URL_TYPO.match(location):
            raise _bad(source, "it looks like a URL missing '//'")
        return LocalStore(location)
    url = urlsplit(location)
    if url.query or url.fragment:
        raise _bad(source, "a store location takes no '?query' or '#fragment'")
    try:
        if url.scheme == "s3":
            return _s3_store(source, url)
        if url.scheme == "file":
            return _local_store(source, url)
    except InvalidKey as err:
        raise _bad(source, f"its prefix is not a valid key folder ({err})") from None
    raise _bad(source, f"the scheme {url.scheme!r} is not supported")


def _s3_store(source: str, url: SplitResult) -> S3Store:
    if not _BUCKET.fullmatch(url.netloc):
        raise _bad(source, "it needs a bucket name after 's3://'")
    # Imported here: boto3 costs a cold start ~0.3 s that a local store does not need.
    from shared.store.s3 import S3Store

    # AWS tools take S3 URIs literally (no %-decoding), and so does this.
    return S3Store(url.netloc, url.path.removeprefix("/"))


def _local_store(source: str, url: SplitResult) -> LocalStore:
    # "file://data/x" names host "data", the usual slip for the relative path "data/x".
    if url.netloc not in ("", "localhost") or not url.path:
        raise _bad(source, "a file URI needs an absolute path, as in file:///srv/store")
    return LocalStore(unquote(url.path))


def _bad(source: str, reason: str) -> StoreConfigError:
    return StoreConfigError(f"cannot use store location {source}: {reason}; use {FORMS}")
