"""The data bucket's settings: `mlops bucket create` and `check` on moto, and the same
settings in the CloudFormation template's bucket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from functions.cli import main
from shared.errors import StoreConfigError
from shared.store.bucket import (
    ENCRYPTION,
    OWNERSHIP,
    PUBLIC_ACCESS_BLOCK,
    BucketSettings,
    lifecycle_rules,
    tls_only_policy,
)
from shared.store.s3 import S3Store
from tests.seaweedfs import RunningServer

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "mlops-locked"


def _config(tmp_path: Path, stage_settings: dict[str, Any]) -> Path:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["data_bucket"] = {"reports_days": 200}
    config["stages"]["dev"]["data_bucket"] = stage_settings
    config["stages"]["dev"]["environment_variables"]["MLOPS_BUCKET"] = BUCKET
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_bucket_create_makes_every_setting(aws_env: None, s3_client: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, {"captures_days": 30})
    with mock_aws():
        assert main(["bucket", "create", "--stage", "dev", "--config", str(config)]) == 0
        block = s3_client.get_public_access_block(Bucket=BUCKET)
        assert block["PublicAccessBlockConfiguration"] == PUBLIC_ACCESS_BLOCK
        assert s3_client.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"] == (
            OWNERSHIP
        )
        rules = s3_client.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
        assert rules[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
        assert s3_client.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
        policy = json.loads(s3_client.get_bucket_policy(Bucket=BUCKET)["Policy"])
        assert policy == tls_only_policy(BUCKET)
        lifecycle = s3_client.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
        days = {r["ID"]: r.get("Expiration", {}).get("Days") for r in lifecycle}
        # The stage's captures_days, the top level's reports_days, the default for uploads.
        assert days == {
            "expire-captures": 30,
            "expire-capture-summaries": 30,
            "expire-monitoring": 200,
            "abort-incomplete-uploads": None,
        }
        assert main(["bucket", "check", "--stage", "dev", "--config", str(config)]) == 0


def test_bucket_check_names_what_is_missing(
    aws_env: None, s3_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock_aws():
        s3_client.create_bucket(Bucket=BUCKET)
        assert main(["bucket", "check", "--bucket", BUCKET]) == 1
        errors = capsys.readouterr().err
        for missing in ("public access", "versioning is off", "TLS", "expire-captures"):
            assert missing in errors
        assert main(["bucket", "create", "--bucket", BUCKET, "--captures-days", "14"]) == 0
        s3_client.delete_bucket_policy(Bucket=BUCKET)
        assert main(["bucket", "check", "--bucket", BUCKET, "--captures-days", "14"]) == 1
        assert "does not deny requests without TLS" in capsys.readouterr().err


def test_bucket_settings_refuse_unknown_names_and_bad_days() -> None:
    with pytest.raises(StoreConfigError, match="unknown settings"):
        BucketSettings.from_mapping({"capture_days": 3})
    with pytest.raises(StoreConfigError, match="captures_days"):
        BucketSettings(captures_days=0)


def test_the_cloudformation_bucket_has_the_same_settings() -> None:
    template = json.loads((ROOT / "infra" / "template.json").read_text())["Resources"]
    bucket = template["DataBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == PUBLIC_ACCESS_BLOCK
    assert bucket["OwnershipControls"] == OWNERSHIP
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert (
        rule["ServerSideEncryptionByDefault"]
        == (ENCRYPTION["Rules"][0]["ApplyServerSideEncryptionByDefault"])
    )
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    # CloudFormation's lifecycle shape, turned into S3's API shape (the dev stage's settings).
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    settings = BucketSettings.from_mapping(
        {**config.get("data_bucket", {}), **config["stages"]["dev"].get("data_bucket", {})}
    )
    as_api = [
        {
            "ID": r["Id"],
            "Filter": {"Prefix": r["Prefix"]},
            "Status": r["Status"],
            **({"Expiration": {"Days": r["ExpirationInDays"]}} if "ExpirationInDays" in r else {}),
            **{
                k: r[k]
                for k in ("NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")
                if k in r
            },
        }
        for r in bucket["LifecycleConfiguration"]["Rules"]
    ]
    assert as_api == lifecycle_rules(settings)
    # The TLS-only policy, with the template's references to the bucket resolved.
    (statement,) = template["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    name = "serverless-mlops-data"
    statement = {
        **statement,
        "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
    }
    assert statement == tls_only_policy(name)["Statement"][0]


def test_bucket_create_on_seaweedfs_says_what_it_could_not_apply(
    seaweedfs_env: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bucket", "create", "--bucket", "made-by-mlops"]) == 1

    errors = capsys.readouterr().err
    # SeaweedFS 4.48: 501 to PublicAccessBlock, 403 to OwnershipControls; the policy would
    # refuse plain HTTP, the only way this endpoint is reached. The others are applied.
    assert "public access block: not applied: the server answered 501 NotImplemented" in errors
    assert "object ownership: not applied: the server answered 403" in errors
    assert "TLS-only policy: not applied: the endpoint http://127.0.0.1:" in errors
    # Accepted with no key configured, after which every write failed: taken back off.
    assert "default encryption: not applied: the server accepted it, then refused" in errors
    for applied in ("versioning", "lifecycle"):
        assert applied not in errors
    store = S3Store("made-by-mlops")  # and the bucket is usable, versioned
    store.put("k", b"x", if_none_match=True)
    assert store.get("k").version_id is not None
