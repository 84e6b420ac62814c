"""moto's standalone server, mended where moto 5.2.5 differs from AWS for `chalice deploy`.

Usage: ``python tests/aws_emulator.py PORT`` serves on 127.0.0.1:PORT (tests/test_deploy.py
starts it). Each mend changes moto in this process only and makes it do what AWS does; none is
a workaround for a product bug:

1. PutBucketNotificationConfiguration: moto accepts only ``prefix`` / ``suffix`` as filter rule
   names; AWS also accepts ``Prefix`` / ``Suffix``, which Chalice sends.
2. ImportRestApi: moto reads ``info.description``, which OpenAPI leaves optional and Chalice
   omits.
3. ImportRestApi / PutRestApi: moto reads only OpenAPI 3 documents; Chalice sends Swagger 2.0.
   The parts moto reads (paths, methods, responses, integrations) have the same shape in both,
   so the document is relabelled; the API-level extensions AWS applies on import and moto
   ignores (binary media types, minimum compression size) are applied here. Without the
   integrations, CreateDeployment would refuse an API with no integrated method.
4. GetFunction / GetLayerVersion: AWS answers with a pre-signed URL from which the code can be
   downloaded; moto's is a fake AWS host (function) or ``s3://`` (layer). Here the code is put
   in this emulator's S3 and the URL points at it, so a test reads back what was deployed.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import boto3
from moto.apigateway.models import APIGatewayBackend
from moto.awslambda.models import LambdaFunction, LayerVersion
from moto.s3.models import s3_backends
from moto.s3.responses import S3Response
from moto.server import main

HOST = "127.0.0.1"
# Where the code of functions and layers is exposed (AWS keeps it in a bucket of its own too).
CODE_BUCKET = "emulator-lambda-code"
FILTER_RULE_NAME = re.compile(r"<Name>\s*(Prefix|Suffix)\s*</Name>")


def lenient_filter_rule_names() -> None:
    original = S3Response._notification_config_from_body

    def parse(self: Any) -> dict[str, Any]:
        body = self.body.decode() if isinstance(self.body, bytes) else self.body
        self.body = FILTER_RULE_NAME.sub(lambda m: f"<Name>{m[1].lower()}</Name>", body)
        result: dict[str, Any] = original(self)
        return result

    S3Response._notification_config_from_body = parse  # type: ignore[method-assign]


def swagger_import() -> None:
    original_import = APIGatewayBackend.import_rest_api
    original_put = APIGatewayBackend.put_rest_api

    def import_rest_api(self: Any, api_doc: dict[str, Any], fail_on_warnings: bool) -> Any:
        api_doc = {**api_doc, "info": {"description": "", **api_doc.get("info", {})}}
        return original_import(self, api_doc, fail_on_warnings)

    def put_rest_api(
        self: Any,
        function_id: str,
        api_doc: dict[str, Any],
        fail_on_warnings: bool,
        mode: str = "merge",
    ) -> Any:
        if str(api_doc.get("swagger", "")).startswith("2"):
            api_doc = {k: v for k, v in api_doc.items() if k != "swagger"} | {"openapi": "3.0.1"}
            fail_on_warnings = False  # moto would validate the relabelled document as OpenAPI 3
        api = original_put(self, function_id, api_doc, fail_on_warnings, mode)
        if "x-amazon-apigateway-binary-media-types" in api_doc:
            api.binaryMediaTypes = list(api_doc["x-amazon-apigateway-binary-media-types"])
        if "x-amazon-apigateway-minimum-compression-size" in api_doc:
            api.minimum_compression_size = api_doc["x-amazon-apigateway-minimum-compression-size"]
        return api

    APIGatewayBackend.import_rest_api = import_rest_api  # type: ignore[method-assign]
    APIGatewayBackend.put_rest_api = put_rest_api  # type: ignore[method-assign]


def _code_url(account_id: str, key: str, code: bytes, port: int) -> str:
    """A pre-signed URL of `code`, as AWS gives (signed with dummy keys: nothing is sent)."""
    backend = s3_backends[account_id]["aws"]
    if CODE_BUCKET not in backend.buckets:
        backend.create_bucket(CODE_BUCKET, "us-east-1")
    backend.put_object(CODE_BUCKET, key, code)
    signer = boto3.session.Session(
        aws_access_key_id="emulator", aws_secret_access_key="emulator", region_name="us-east-1"
    ).client("s3", endpoint_url=f"http://{HOST}:{port}")
    url: str = signer.generate_presigned_url(
        "get_object", Params={"Bucket": CODE_BUCKET, "Key": key}, ExpiresIn=600
    )
    return url


def downloadable_code(port: int) -> None:
    original_code = LambdaFunction.get_code
    original_layer = LayerVersion.get_layer_version

    def get_code(self: Any) -> dict[str, Any]:
        response: dict[str, Any] = original_code(self)
        if "Code" in response and self.code_bytes:
            key = f"functions/{self.function_name}/{self.code_digest}.zip"
            response["Code"]["Location"] = _code_url(self.account_id, key, self.code_bytes, port)
        return response

    def get_layer_version(self: Any) -> dict[str, Any]:
        response: dict[str, Any] = original_layer(self)
        if self.code_bytes:
            key = f"layers/{self.name}/{self.version}/{self.code_digest}.zip"
            response["Content"]["Location"] = _code_url(self.account_id, key, self.code_bytes, port)
        return response

    LambdaFunction.get_code = get_code  # type: ignore[method-assign]
    LayerVersion.get_layer_version = get_layer_version  # type: ignore[method-assign]


if __name__ == "__main__":
    port = int(sys.argv[1])
    lenient_filter_rule_names()
    swagger_import()
    downloadable_code(port)
    main(["--host", HOST, "--port", str(port)])
