"""Publish the dependency layers for `chalice deploy`, once per content.

A layer zip built by infra/package.py is reproducible (the same pinned wheels give the same
bytes), so its sha256 names its content. The hash goes into the layer version's description;
before publishing, the layer's versions are listed and one with that hash is reused. Layers are
uploaded through S3 (PublishLayerVersion takes at most 50 MB inline and these are ~40 MB
zipped, growing), and the uploaded object is deleted, every version of it, once Lambda has its
own copy.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNTIME = "python3.12"
ARCHITECTURE = "x86_64"
# Where a layer zip waits in the bucket while Lambda copies it (seconds; deleted after).
UPLOAD_PREFIX = "deploy/layers/"


@dataclass(frozen=True)
class LayerZip:
    """A built layer: what it is for, where its zip is and the sha256 of its bytes."""

    kind: str
    path: Path
    sha256: str

    @classmethod
    def read(cls, kind: str, path: Path) -> LayerZip:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return cls(kind, path, digest.hexdigest())

    @property
    def code_sha256(self) -> str:
        """The hash as Lambda reports it (base64 of the digest)."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()


@dataclass(frozen=True)
class PublishedLayer:
    """A layer version's ARN, and whether this deploy published it or found it."""

    kind: str
    arn: str
    reused: bool


def layer_name(app_name: str, stage: str, kind: str) -> str:
    """``serverless-mlops-dev-runtime``: one layer per app, stage and kind."""
    return f"{app_name}-{stage}-{kind}"


def description(layer: LayerZip) -> str:
    return f"{layer.kind} dependencies built by infra/package.py; sha256 {layer.sha256}"


def find_version(lambda_client: Any, name: str, layer: LayerZip) -> str | None:
    """The ARN of a version of layer `name` published from this very zip, if any."""
    paginator = lambda_client.get_paginator("list_layer_versions")
    for page in paginator.paginate(LayerName=name):
        for version in page["LayerVersions"]:
            if version.get("Description", "").endswith(f"sha256 {layer.sha256}"):
                arn: str = version["LayerVersionArn"]
                return arn
    return None


def publish(lambda_client: Any, s3_client: Any, bucket: str, name: str, layer: LayerZip) -> str:
    """Upload `layer` under UPLOAD_PREFIX, publish it as a version of `name`, delete the upload."""
    key = f"{UPLOAD_PREFIX}{name}/{layer.sha256}.zip"
    with layer.path.open("rb") as body:
        put = s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    try:
        published = lambda_client.publish_layer_version(
            LayerName=name,
            Description=description(layer),
            Content={"S3Bucket": bucket, "S3Key": key},
            CompatibleRuntimes=[RUNTIME],
            CompatibleArchitectures=[ARCHITECTURE],
        )
    finally:
        # On a versioned bucket a plain delete leaves the 40 MB as a noncurrent version.
        version = put.get("VersionId")
        extra = {"VersionId": version} if version and version != "null" else {}
        s3_client.delete_object(Bucket=bucket, Key=key, **extra)
    if published["Content"]["CodeSha256"] != layer.code_sha256:
        raise RuntimeError(
            f"layer {name} was published with sha256 {published['Content']['CodeSha256']}, "
            f"not {layer.code_sha256}: the upload was altered"
        )
    arn: str = published["LayerVersionArn"]
    return arn


def ensure_layer(
    lambda_client: Any, s3_client: Any, bucket: str, name: str, layer: LayerZip
) -> PublishedLayer:
    """The version of `name` holding `layer`: found if published before, else published now."""
    found = find_version(lambda_client, name, layer)
    if found is not None:
        return PublishedLayer(layer.kind, found, reused=True)
    return PublishedLayer(layer.kind, publish(lambda_client, s3_client, bucket, name, layer), False)


def delete_layer(lambda_client: Any, name: str) -> list[int]:
    """Delete every version of layer `name`; the version numbers deleted."""
    paginator = lambda_client.get_paginator("list_layer_versions")
    versions = [
        int(version["Version"])
        for page in paginator.paginate(LayerName=name)
        for version in page["LayerVersions"]
    ]
    for number in versions:
        lambda_client.delete_layer_version(LayerName=name, VersionNumber=number)
    return versions
