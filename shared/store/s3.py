"""An ObjectStore over an S3 bucket, or an S3-compatible service, through boto3.

Conditional writes are S3's own (If-None-Match / If-Match on PutObject), so their atomicity is
the service's: a compatible service must support both headers for the store to be safe.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC
from typing import Any, NoReturn

import boto3
from botocore.exceptions import ClientError

from shared.errors import (
    InvalidKey,
    ObjectNotFound,
    ObjectVersionNotFound,
    PreconditionFailed,
    StoreConfigError,
)
from shared.store.base import (
    MAX_KEY_BYTES,
    ObjectInfo,
    ObjectStore,
    StoredObject,
    validate_key,
    validate_prefix,
)

# boto3's default session is not thread-safe, so stores create their clients one at a time.
_CLIENT_LOCK = threading.Lock()
# GetObject says NoSuchKey; HeadObject has no body, so its error code is the bare status.
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``, keys relative to the prefix."""

    def __init__(self, bucket: str, prefix: str = "", client: Any | None = None) -> None:
        """Use `bucket`, keeping every key under `prefix` (a folder, so "team/a" means "team/a/").

        Without `client`, ``boto3.client("s3")`` is made on first use, so boto3's usual
        configuration applies: credential chain, AWS_DEFAULT_REGION (or else AWS_REGION),
        AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL for S3-compatible services, ~/.aws/config.
        """
        if not bucket or "/" in bucket:
            raise StoreConfigError(f"S3 bucket name must be non-empty and without '/': {bucket!r}")
        folder = prefix.removesuffix("/")
        if folder:
            validate_key(folder)
        self._bucket = bucket
        self._prefix = f"{folder}/" if folder else ""
        self._client = client

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
                    self._client = boto3.client("s3", region_name=region or None)
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
            if version_id is not None and _code(err) in ("NoSuchVersion", "InvalidArgument"):
                raise ObjectVersionNotFound(key, version_id) from err
            self._raise_domain_error(err, key)
        return StoredObject(
            key=key,
            body=response["Body"].read(),
            etag=response["ETag"],
            version_id=response.get("VersionId"),
        )

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
        if if_none_match:
            request["IfNoneMatch"] = "*"
        if if_match is not None:
            request["IfMatch"] = if_match
        try:
            response = self.client.put_object(**request)
        except ClientError as err:
            condition = "if_none_match" if if_none_match else f"if_match {if_match}"
            self._raise_domain_error(err, key, condition)
        etag: str = response["ETag"]
        return etag

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in ascending key order.

        Objects whose keys are not valid keys, such as the "folder/" markers the S3 console
        creates, are not listed: get() could not read them.
        """
        validate_prefix(prefix)  # here, not in the generator, so a bad prefix fails at the call
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
        if code in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise PreconditionFailed(key, condition) from err
        raise err


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _is_key(text: str) -> bool:
    try:
        validate_key(text)
    except InvalidKey:
        return False
    return True
