"""The data bucket's protective settings: what `mlops bucket create` makes and `check` verifies.

Public access blocked, objects owned by the bucket owner (no ACLs), default encryption
(SSE-S3), versioning (lineage records object version ids), a policy refusing plain-HTTP
requests, and lifecycle rules: captures and monitoring reports expire after a number of days
(a stage's settings, with defaults), and incomplete multipart uploads are cleaned up. The
CloudFormation path's bucket (infra/template.json) has the same settings; a test compares them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any

from shared.errors import StoreConfigError

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
OWNERSHIP = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
# An expired object of a versioned bucket becomes a noncurrent version; this many days later
# it is gone for good, so an expired capture stops costing storage.
NONCURRENT_DAYS = 1
MAX_DAYS = 36_500


@dataclass(frozen=True)
class BucketSettings:
    """Retention of what piles up: a stage's ``data_bucket`` settings, defaults below."""

    captures_days: int = 90  # captures/: monitoring reads the last few windows and labels
    reports_days: int = 400  # monitoring/: a year of hourly reports, with a month to spare
    multipart_days: int = 7  # an upload that never completed

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
                raise StoreConfigError(
                    f"data_bucket.{field.name}: must be a whole number of days from 1 to "
                    f"{MAX_DAYS}, got {value!r}"
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BucketSettings:
        """Settings from a ``data_bucket`` object; unknown names are refused, not ignored."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise StoreConfigError(
                f"data_bucket: unknown settings {unknown}; known: {sorted(known)}"
            )
        return cls(**dict(values))


def lifecycle_rules(settings: BucketSettings) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules, in S3's API shape."""
    rules: list[dict[str, Any]] = [
        {
            "ID": f"expire-{prefix.rstrip('/')}",
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "Expiration": {"Days": days},
            "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS},
        }
        for prefix, days in (
            ("captures/", settings.captures_days),
            ("capture-summaries/", settings.captures_days),  # they go with their objects
            ("monitoring/", settings.reports_days),
        )
    ]
    rules.append(
        {
            "ID": "abort-incomplete-uploads",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": settings.multipart_days},
        }
    )
    return rules


def tls_only_policy(bucket: str) -> dict[str, Any]:
    """A bucket policy refusing every request not made over TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def s3_client(region: str | None = None) -> Any:
    """boto3's S3 client under its usual configuration (AWS_ENDPOINT_URL included)."""
    import boto3  # here: only the bucket commands need it

    return boto3.session.Session().client("s3", region_name=region)


def create_bucket(client: Any, bucket: str, settings: BucketSettings) -> tuple[bool, list[str]]:
    """Create `bucket` in the client's region if it does not exist, then apply every setting.

    Returns whether it was created, and what could not be applied (see apply_settings). An
    existing bucket of this account gets the settings too.
    """
    region = client.meta.region_name
    created = True
    try:
        if region in (None, "us-east-1"):  # the one region S3 refuses a LocationConstraint for
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
    except client.exceptions.BucketAlreadyOwnedByYou:
        created = False
    return created, apply_settings(client, bucket, settings)


def apply_settings(client: Any, bucket: str, settings: BucketSettings) -> list[str]:
    """Put each protective setting on `bucket` (each call replaces that setting whole).

    Every setting is tried, whatever became of the others: an S3-compatible server may
    support some (SeaweedFS answers 501 to PublicAccessBlock, Ceph RGW refuses
    OwnershipControls and SSE-S3). Returns one line per setting not applied, saying why.
    """
    endpoint = str(client.meta.endpoint_url)
    calls: list[tuple[str, Any]] = [
        (
            "public access block",
            lambda: client.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK
            ),
        ),
        (
            "object ownership",
            lambda: client.put_bucket_ownership_controls(
                Bucket=bucket, OwnershipControls=OWNERSHIP
            ),
        ),
        (
            "default encryption",
            lambda: client.put_bucket_encryption(
                Bucket=bucket, ServerSideEncryptionConfiguration=ENCRYPTION
            ),
        ),
        (
            "versioning",
            lambda: client.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            ),
        ),
        (
            "TLS-only policy",
            lambda: client.put_bucket_policy(
                Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket))
            ),
        ),
        (
            "lifecycle rules",
            lambda: client.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules(settings)}
            ),
        ),
    ]
    not_applied = []
    for name, call in calls:
        if name == "TLS-only policy" and endpoint.startswith("http://"):
            # A server that enforces the policy (SeaweedFS does) would then refuse every
            # request made through this endpoint, the project's own included.
            not_applied.append(
                f"{name}: not applied: the endpoint {endpoint} is plain HTTP, and the policy"
                " would refuse every request made through it"
            )
            continue
        try:
            call()
        except client.exceptions.ClientError as err:
            not_applied.append(f"{name}: not applied: the server answered {_said(err)}")
            continue
        if name == "default encryption":
            refused = _write_refused(client, bucket)
            if refused:
                # SeaweedFS 4.48 accepts SSE-S3 with no key configured, then answers every
                # PutObject 500: a bucket nobody can write is worse than an unencrypted one.
                client.delete_bucket_encryption(Bucket=bucket)
                not_applied.append(
                    f"{name}: not applied: the server accepted it, then refused a write"
                    f" ({refused}), so it was removed; configure the server's SSE keys first"
                )
    return not_applied


def _write_refused(client: Any, bucket: str) -> str | None:
    """Why an object cannot be written to `bucket` now; None if it can (the probe is removed)."""
    key = "store-check/bucket-create-probe"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"")
    except client.exceptions.ClientError as err:
        return _said(err)
    client.delete_object(Bucket=bucket, Key=key)
    return None


def _said(err: Any) -> str:
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
    error = err.response.get("Error", {})
    return f"{status} {error.get('Code', '')} ({error.get('Message', '')})".strip()


class _Unreadable(Exception):
    """A setting the server would not report (e.g. 501 NotImplemented)."""


def _read(client: Any, call: str, bucket: str, missing: str) -> Any:
    """One GetBucket* answer, or None where S3 says the setting is absent (`missing` code)."""
    try:
        return getattr(client, call)(Bucket=bucket)
    except client.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") == missing:
            return None
        raise _Unreadable(_said(err)) from err


def check_bucket(
    client: Any, bucket: str, settings: BucketSettings, *, skip: Collection[str] = ()
) -> list[str]:
    """What differs between `bucket` and the settings; an empty list means all are in place.

    A setting the server will not report is named as such, and the others are still checked;
    settings named in `skip` (e.g. known not applied) are not.
    """
    problems = []
    for name, check in (
        ("public access block", _check_public_access),
        ("default encryption", _check_encryption),
        ("versioning", _check_versioning),
        ("TLS-only policy", _check_policy),
        ("lifecycle rules", _check_lifecycle),
    ):
        if name in skip:
            continue
        try:
            problems.extend(check(client, bucket, settings))
        except _Unreadable as err:
            problems.append(f"{name}: the server would not report it: {err}")
    return problems


def _check_public_access(client: Any, bucket: str, settings: BucketSettings) -> list[str]:
    block = _read(client, "get_public_access_block", bucket, "NoSuchPublicAccessBlockConfiguration")
    blocked = block and block["PublicAccessBlockConfiguration"]
    return (
        [] if blocked == PUBLIC_ACCESS_BLOCK else [f"public access is not fully blocked: {blocked}"]
    )


def _check_encryption(client: Any, bucket: str, settings: BucketSettings) -> list[str]:
    encryption = _read(
        client, "get_bucket_encryption", bucket, "ServerSideEncryptionConfigurationNotFoundError"
    )
    algorithms = [
        rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        for rule in (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    ]
    if not set(algorithms) & {"AES256", "aws:kms", "aws:kms:dsse"}:
        return [f"no default encryption (found {algorithms})"]
    return []


def _check_versioning(client: Any, bucket: str, settings: BucketSettings) -> list[str]:
    versioning = _read(client, "get_bucket_versioning", bucket, "").get("Status")
    return [] if versioning == "Enabled" else [f"versioning is {versioning or 'off'}, not Enabled"]


def _check_policy(client: Any, bucket: str, settings: BucketSettings) -> list[str]:
    policy = _read(client, "get_bucket_policy", bucket, "NoSuchBucketPolicy")
    statements = json.loads(policy["Policy"])["Statement"] if policy else []
    if tls_only_policy(bucket)["Statement"][0] not in statements:
        return ["the bucket policy does not deny requests without TLS (aws:SecureTransport)"]
    return []


def _check_lifecycle(client: Any, bucket: str, settings: BucketSettings) -> list[str]:
    lifecycle = _read(
        client, "get_bucket_lifecycle_configuration", bucket, "NoSuchLifecycleConfiguration"
    )
    found = {rule["ID"]: rule for rule in (lifecycle or {}).get("Rules", [])}
    problems = []
    for rule in lifecycle_rules(settings):
        have = found.get(rule["ID"])
        if have is None or {k: have.get(k) for k in rule} != rule:
            problems.append(f"lifecycle rule {rule['ID']} is {have}, expected {rule}")
    return problems
