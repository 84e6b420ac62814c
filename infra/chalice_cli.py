"""Chalice's own command line, able to package `@app.on_s3_event` for CloudFormation.

Run it exactly like `chalice`: ``python infra/chalice_cli.py package --stage dev ... out``.

Why this exists: Chalice 1.34 refuses to write a CloudFormation (SAM) template for an app
with `@app.on_s3_event` ("CloudFormation does not support modifying the event notifications
of existing buckets") and stops. CloudFormation can, however, wire notifications on a bucket
that the same template creates. So here the S3 subscription becomes a SAM ``S3`` event whose
bucket is the resource `BUCKET_RESOURCE`, created in the template under the name given to the
decorator; infra/template.json, merged in by `chalice package --merge-template`, adds that
bucket's settings (public access block, encryption, retention, TLS-only policy).

`chalice deploy` is unaffected: it does not use template generators and still subscribes to an
existing bucket through the S3 API.
"""

from __future__ import annotations

import sys
from typing import Any

import chalice.package
from chalice.cli import main
from chalice.deploy import models
from chalice.utils import to_cfn_resource_name

# The bucket's logical id; infra/template.json refers to it.
BUCKET_RESOURCE = "DataBucket"


def s3_event_in_template(
    generator: chalice.package.SAMTemplateGenerator,
    resource: models.S3BucketNotification,
    template: dict[str, Any],
) -> None:
    """Add `resource` as a SAM S3 event, creating its bucket in the template."""
    resources = template["Resources"]
    bucket = resources.setdefault(
        BUCKET_RESOURCE,
        {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": resource.bucket}},
    )
    if bucket["Properties"]["BucketName"] != resource.bucket:
        # One template creates one bucket here; a second would need its own logical id.
        raise ValueError(
            f"S3 events on two buckets ({bucket['Properties']['BucketName']!r} and "
            f"{resource.bucket!r}); this packager supports one"
        )
    rules = [
        {"Name": name, "Value": value}
        for name, value in (("prefix", resource.prefix), ("suffix", resource.suffix))
        if value
    ]
    properties: dict[str, Any] = {"Bucket": {"Ref": BUCKET_RESOURCE}, "Events": resource.events}
    if rules:
        properties["Filter"] = {"S3Key": {"Rules": rules}}
    function = resources[to_cfn_resource_name(resource.lambda_function.resource_name)]
    event_name = generator._register_cfn_resource_name(resource.resource_name)
    function["Properties"].setdefault("Events", {})[event_name] = {
        "Type": "S3",
        "Properties": properties,
    }


# Replaces the method that raises NotImplementedError. Patched on the class rather than
# subclassed: Chalice builds the generator itself, and its old-style super() calls name the
# class through the module, so a subclass swapped in there would recurse.
chalice.package.SAMTemplateGenerator._generate_s3bucketnotification = s3_event_in_template  # type: ignore[method-assign,assignment]

if __name__ == "__main__":
    sys.exit(main())
