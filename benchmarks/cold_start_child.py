"""A fresh interpreter's first request, run by benchmarks.cold_start (stdlib only before timing).

    python -m benchmarks.cold_start_child predict '<event JSON>'   # import app, answer once
    python -m benchmarks.cold_start_child boto3                    # import boto3, make a client

Prints one JSON line: seconds from just before the first import to the answer (the
timer starts after this module's own stdlib imports), the heavy modules loaded, max RSS.
"""

from __future__ import annotations

import base64
import json
import resource
import sys
import time
from typing import Any

HEAVY = ("sklearn", "scipy", "pandas", "skl2onnx", "onnx", "boto3")


class _Context:
    function_name = "serverless-mlops-dev"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:serverless-mlops-dev"
    memory_limit_in_mb = 1024
    aws_request_id = "5b8e1b7e-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _report(result: dict[str, Any]) -> None:
    result["heavy"] = sorted(name for name in HEAVY if name in sys.modules)
    result["modules"] = len(sys.modules)
    # Linux reports ru_maxrss in KiB.
    result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def predict(event_json: str) -> None:
    """Import the app as Lambda does, then answer one request from the cold container."""
    event = json.loads(event_json)
    started_at = time.time()  # epoch: compared with the launcher's spawn and exit times
    start = time.perf_counter()
    import app  # what the Lambda runtime loads for every function

    imported = time.perf_counter()
    response = app.app(event, _Context())
    answered = time.perf_counter()
    _report(
        {
            "import_s": imported - start,
            "first_request_s": answered - imported,
            "total_s": answered - start,
            "started_at": started_at,
            "answered_at": started_at + (answered - start),
            "status": response["statusCode"],
            "body": json.loads(
                # The API answers base64 (binary media type */*); API Gateway decodes it.
                base64.b64decode(response["body"])
                if response.get("isBase64Encoded")
                else response["body"]
            ),
        }
    )


def boto3_client() -> None:
    """The reference for an S3 store: boto3 imported and an S3 client made."""
    start = time.perf_counter()
    import boto3

    boto3.client("s3")
    done = time.perf_counter()
    _report({"total_s": done - start, "status": None})


if __name__ == "__main__":
    if sys.argv[1] == "predict":
        predict(sys.argv[2])
    elif sys.argv[1] == "boto3":
        boto3_client()
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
