"""An ObjectStore over an S3 bucket, or an S3-compatible service, through boto3.

Conditional writes are S3's own (If-None-Match / If-Match on PutObject), so their atomicity is
the service's: a compatible service must support both headers for the store to be safe, which
`shared.store.check` verifies before the registry is written. What differs only in spelling
between services is tolerated here, each case after a HeadObject that shows what happened:
- an If-Match ETag wanted without its quotes (Ceph RGW): retried unquoted, then sent so;
- 412 rather than 404 for If-Match on a missing key (Ceph RGW, SeaweedFS);
- a 500 for a conditional write that lost a race (Ceph RGW);
- NoSuchKey rather than NoSuchVersion for a version of a missing key (Ceph RGW), and a
  VersionId ignored on an unversioned bucket (SeaweedFS serves the current object);
- listings walked folder by folder (SeaweedFS: "a/1" before "a-b"): off AWS, a listing is
  collected and sorted before it is returned.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC
from typing import Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.errors import (
    ConditionRefused,
    InvalidKey,
    ObjectNotFound,
    ObjectVersionNotFound,
    PreconditionFailed,
    StoreConfigError,
)
from shared.store.base import (
    MAX_KEY_BYTES,
    NULL_VERSION,
    EtagSpelling,
    ObjectInfo,
    ObjectStore,
    StoredObject,
    validate_key,
    validate_prefix,
)

# boto3's default session is not thread-safe, so stores create their clients one at a time.
_CLIENT_LOCK = threading.Lock()
# GETs in flight when the monitoring check reads a window (shared/store/fetch.py). A GET of a
# small object waits tens of milliseconds on S3 (AWS's performance guidelines), so one at a
# time the 100,000 objects of 100M rows an hour (1,000 rows an object, the default) would
# take most of a Lambda invocation; 32 at a time, a few minutes (docs/monitoring.md).
READ_CONCURRENCY = 32
# GetObject says NoSuchKey; HeadObject has no body, so its error code is the bare status.
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# A condition that did not hold: 412, or 409 when conditional writes to one key overlap on S3.
_LOST_CONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``, keys relative to the prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any | None = None,
        *,
        etag_spelling: EtagSpelling | None = None,
        sort_listings: bool | None = None,
    ) -> None:
        """Use `bucket`, keeping every key under `prefix` (a folder, so "team/a" means "team/a/").

        Without `client`, ``boto3.client("s3")`` is made on first use, so boto3's usual
        configuration applies: credential chain, AWS_DEFAULT_REGION (or else AWS_REGION),
        AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL for S3-compatible services, ~/.aws/config.
        `etag_spelling` fixes how If-Match ETags are sent; by default the store learns it
        from the service (the first If-Match refused although the ETag matched is retried
        unquoted). `sort_listings` says whether list() sorts what the service lists; by
        default it does unless the service is AWS S3, whose listings are in key order.
        """
        if not bucket or "/" in bucket:
            raise StoreConfigError(f"S3 bucket name must be non-empty and without '/': {bucket!r}")
        folder = prefix.removesuffix("/")
        if folder:
            validate_key(folder)
        self._bucket = bucket
        self._prefix = f"{folder}/" if folder else ""
        self._client = client
        self._fixed_spelling = etag_spelling is not None
        self._spelling: EtagSpelling = etag_spelling or "as given"
        self._sort_listings = sort_listings

    @property
    def etag_spelling(self) -> EtagSpelling:
        """How this store sends If-Match ETags now (learned from the service unless fixed)."""
        return self._spelling

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bucket

    @property
    def endpoint(self) -> str:
        """The URL of the S3 service this store talks to."""
        return str(self.client.meta.endpoint_url)

    @property
    def service(self) -> str:
        """The bucket at its endpoint: one bucket's guarantees hold for all its prefixes."""
        return f"{self.endpoint.rstrip('/')}/{self._bucket}"

    @property
    def on_aws(self) -> bool:
        """Whether the service is AWS S3's general-purpose buckets (the reference semantics)."""
        host = urllib.parse.urlsplit(self.endpoint).hostname or ""
        # Directory buckets (S3 Express One Zone) do not list in key order. China's regions
        # answer under amazonaws.com.cn: AWS S3 as well.
        aws = host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
        return aws and "s3express" not in host

    @property
    def sorts_listings(self) -> bool:
        """Whether list() sorts the service's listing (it does off AWS general-purpose S3)."""
        if self._sort_listings is None:
            self._sort_listings = not self.on_aws
        return self._sort_listings

    @property
    def read_concurrency(self) -> int:
        """Reads kept in flight by shared.store.fetch: a GET's time is mostly waiting."""
        return READ_CONCURRENCY

    @property
    def checked_before_registry_writes(self) -> bool:
        """Only off AWS: S3 itself defines the guarantees, and the deployed functions' roles
        grant no access to the check's scratch keys (`mlops store check` probes it on request)."""
        return not self.on_aws

    def as_the_service_answers(self, spelling: EtagSpelling) -> S3Store:
        """This store without its tolerances of spelling: ETags sent as `spelling`, listings
        as the service orders them (what the store check probes)."""
        return S3Store(
            self._bucket,
            self._prefix,
            client=self.client,
            etag_spelling=spelling,
            sort_listings=False,
        )

    @property
    def uri(self) -> str:
        """``s3://bucket`` or ``s3://bucket/prefix`` (no trailing slash)."""
        return f"s3://{self._bucket}/{self._prefix.removesuffix('/')}".removesuffix("/")

    def key_for_event(self, bucket: str, key: str) -> str:
        """The store-relative key of ``s3://bucket/key``; refuses other buckets and prefixes."""
        if bucket != self._bucket or not key.startswith(self._prefix):
            raise InvalidKey(f"s3://{bucket}/{key} is outside this store ({self.uri})")
        return validate_key(key.removeprefix(self._prefix))

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use so that building a store needs no AWS."""
        if self._client is None:
            with _CLIENT_LOCK:
                if self._client is None:
                    # botocore reads only AWS_DEFAULT_REGION; the other AWS SDKs use AWS_REGION.
                    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
                    # One connection per concurrent read (botocore's default pool is 10).
                    config = Config(max_pool_connections=READ_CONCURRENCY)
                    self._client = boto3.client("s3", region_name=region or None, config=config)
        return self._client

    def get(self, key: str, *, version_id: str | None = None) -> StoredObject:
        """Read an object, or one version of it (GetObject VersionId); see ObjectStore.get."""
        request = {"Bucket": self._bucket, "Key": self._full_key(key)}
        if version_id is not None:
            request["VersionId"] = version_id
        try:
            response = self.client.get_object(**request)
        except ClientError as err:
            # NoSuchVersion: deleted or never there; InvalidArgument: not an id S3 could
            # have made. Either way the version named cannot be read, now or on a retry.
            # NoSuchKey: Ceph RGW's answer for a version of a missing key, where S3 says
            # NoSuchVersion.
            codes = ("NoSuchVersion", "InvalidArgument", "NoSuchKey")
            if version_id is not None and _code(err) in codes:
                raise ObjectVersionNotFound(key, version_id) from err
            self._raise_domain_error(err, key)
        # SeaweedFS ignores a VersionId on an unversioned bucket and serves the current object:
        # only the version asked for may be returned as it (no VersionId means "null").
        if version_id is not None and response.get("VersionId", NULL_VERSION) != version_id:
            response["Body"].close()
            raise ObjectVersionNotFound(key, version_id)
        return StoredObject(
            key=key,
            body=response["Body"].read(),
            etag=response["ETag"],
            version_id=response.get("VersionId"),
        )

    def get_range(self, key: str, start: int, end: int, *, version_id: str | None = None) -> bytes:
        """GetObject with a Range header (and VersionId); see ObjectStore.get_range."""
        if start >= end:
            return b""
        request = {"Bucket": self._bucket, "Key": self._full_key(key)}
        request["Range"] = f"bytes={start}-{end - 1}"
        if version_id is not None:
            request["VersionId"] = version_id
        try:
            response = self.client.get_object(**request)
        except ClientError as err:
            if _code(err) == "InvalidRange":  # past the end: S3 refuses what a file reads as b""
                return b""
            if version_id is not None and _code(err) in ("NoSuchVersion", "InvalidArgument"):
                raise ObjectVersionNotFound(key, version_id) from err
            self._raise_domain_error(err, key)
        body: bytes = response["Body"].read()
        if "ContentRange" not in response:
            # A server that ignores Range sends the whole object: take the slice asked for.
            body = body[start:end]
        return body

    def head(self, key: str) -> ObjectInfo | None:
        """Describe an object without reading it; None if absent."""
        full_key = self._full_key(key)
        try:
            response = self.client.head_object(Bucket=self._bucket, Key=full_key)
        except ClientError as err:
            if _code(err) in _NOT_FOUND_CODES:
                return None
            self._raise_domain_error(err, key)
        return ObjectInfo(
            key=key,
            size=response["ContentLength"],
            etag=response["ETag"],
            last_modified=response["LastModified"].astimezone(UTC),
        )

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Write an object and return its ETag; see ObjectStore.put for the conditions."""
        if if_none_match and if_match is not None:
            raise ValueError("put takes if_none_match or if_match, not both")
        request: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._full_key(key),
            "Body": body,
            "ContentType": content_type,
        }
        if if_match is not None:
            return self._put_if_match(request, key, if_match)
        if if_none_match:
            request["IfNoneMatch"] = "*"
        try:
            response = self.client.put_object(**request)
        except ClientError as err:
            if if_none_match and _status(err) >= 500:
                self._settle_server_error(err, key, body, expected=None)
            self._raise_domain_error(err, key, "if_none_match" if if_none_match else "")
        etag: str = response["ETag"]
        return etag

    def _put_if_match(self, request: dict[str, Any], key: str, if_match: str) -> str:
        """PutObject If-Match, telling a lost race from a refusal and learning the spelling."""
        tried: list[EtagSpelling] = []
        for spelling in (self._spelling, _other(self._spelling)):
            if tried and self._fixed_spelling:
                break
            tried.append(spelling)
            sent = if_match.strip('"') if spelling == "unquoted" else if_match
            try:
                response = self.client.put_object(**request, IfMatch=sent)
            except ClientError as err:
                if _status(err) >= 500:
                    self._settle_server_error(err, key, request["Body"], expected=if_match)
                if _status(err) != 412:  # a 409 (a race on S3 itself) or another error
                    self._raise_domain_error(err, key, f"if_match {if_match}")
                current = self.head(key)
                if current is None:
                    # 412, not 404, from Ceph RGW and SeaweedFS: the object is missing all the same.
                    raise ObjectNotFound(key) from err
                if _bare(current.etag) != _bare(if_match):
                    raise PreconditionFailed(
                        key, f"if_match {if_match} but the object's ETag is {current.etag}"
                    ) from err
                continue  # refused although the ETag matched: try the other spelling
            if spelling != self._spelling:
                self._spelling = spelling  # the service wants it so; a race to set it is benign
            etag: str = response["ETag"]
            return etag
        sent = " and ".join(
            f"{spelling} ({if_match if spelling == 'as given' else _bare(if_match)})"
            for spelling in tried
        )
        raise ConditionRefused(self.uri, key, f"If-Match with the object's current ETag, {sent}")

    def _settle_server_error(
        self, err: ClientError, key: str, body: bytes, *, expected: str | None
    ) -> NoReturn:
        """A 5xx to a conditional write: PreconditionFailed if another writer's object is there.

        Ceph RGW answers a lost race with 500 UnknownError. Where the object now is neither
        what was expected nor this write's own body, the condition no longer holds, whatever
        the server said; otherwise the outcome is unknown and the error stands.
        """
        current = self.head(key)
        if expected is not None and current is None:
            raise ObjectNotFound(key) from err
        ours = hashlib.md5(body, usedforsecurity=False).hexdigest()
        if current is not None and _bare(current.etag) not in (ours, _bare(expected or "")):
            raise PreconditionFailed(
                key, f"the store answered {_status(err)} and the object is another writer's"
            ) from err
        raise err

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in ascending key order.

        Objects whose keys are not valid keys, such as the "folder/" markers the S3 console
        creates, are not listed: get() could not read them.
        """
        validate_prefix(prefix)  # here, not in the generator, so a bad prefix fails at the call
        if self.sorts_listings:
            return iter(sorted(self._list(prefix), key=lambda info: info.key))
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix + prefix
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"].removeprefix(self._prefix)
                    if _is_key(key):
                        yield ObjectInfo(
                            key=key,
                            size=item["Size"],
                            etag=item["ETag"],
                            last_modified=item["LastModified"].astimezone(UTC),
                        )
        except ClientError as err:
            self._raise_domain_error(err, prefix)

    def delete(self, key: str) -> None:
        """Remove an object; absent objects are not an error (as on S3)."""
        full_key = self._full_key(key)
        try:
            self.client.delete_object(Bucket=self._bucket, Key=full_key)
        except ClientError as err:
            self._raise_domain_error(err, key)

    def _full_key(self, key: str) -> str:
        full_key = self._prefix + validate_key(key)
        if len(full_key.encode("utf-8")) > MAX_KEY_BYTES:
            raise InvalidKey(
                f"object key {key[:80]!r} is too long for S3 under the prefix {self._prefix!r}:"
                f" together they exceed {MAX_KEY_BYTES} bytes"
            )
        return full_key

    def _raise_domain_error(self, err: ClientError, key: str, condition: str = "") -> NoReturn:
        """Re-raise `err` as the domain error it means, or unchanged if it means none."""
        code = _code(err)
        if code == "NoSuchBucket":
            raise StoreConfigError(
                f"bucket {self._bucket!r} of store {self.uri} does not exist"
            ) from err
        if code in _NOT_FOUND_CODES:
            raise ObjectNotFound(key) from err
        # 409 ConditionalRequestConflict: another conditional write to the key won the race.
        if code in _LOST_CONDITION_CODES:
            raise PreconditionFailed(key, condition) from err
        raise err


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _bare(etag: str) -> str:
    return etag.strip('"')


def _other(spelling: EtagSpelling) -> EtagSpelling:
    return "unquoted" if spelling == "as given" else "as given"


def _is_key(text: str) -> bool:
    try:
        validate_key(text)
    except InvalidKey:
        return False
    return True
