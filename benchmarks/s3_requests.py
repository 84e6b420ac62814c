"""S3 API calls made by warm predictions, under moto's mock_aws, counted with botocore hooks."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import boto3
from moto import mock_aws

from benchmarks.common import (
    BUCKET,
    Figure,
    LambdaContext,
    fake_aws_environ,
    figure,
    patched_environ,
    predict_event,
    serving_from,
)
from benchmarks.fixtures import BREAST_CANCER_SPEC, breast_cancer_csv, train_into
from benchmarks.workspace import Workspace, prepared, record_of
from functions import inference
from shared.store.s3 import S3Store

MODEL = "breast-cancer"
TTL_S = 10.0  # MLOPS_ALIAS_TTL_SECONDS' default, which serving_from sets


def s3_requests_per_1000_predictions(ws: Workspace) -> Figure:
    """S3 calls of `s3_predictions` warm handler calls, scaled to 1,000, in real time."""
    import app as app_module

    n = ws.sizes.s3_predictions
    context = LambdaContext()
    with patched_environ(fake_aws_environ(os.environ)), mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        trained = train_into(S3Store(BUCKET), MODEL, breast_cancer_csv(), BREAST_CANCER_SPEC)
        event = predict_event(MODEL, json.dumps({"records": [record_of(prepared(trained), 0)]}))
        with serving_from(f"s3://{BUCKET}"):
            store = inference.model_cache().store
            if not isinstance(store, S3Store):
                raise TypeError(f"expected an S3 store, got {type(store).__name__}")
            calls: list[str] = []

            def count(model: Any, **_: Any) -> None:
                calls.append(model.name)

            store.client.meta.events.register("before-call.s3", count)
            first = app_module.app(event, context)
            cold_calls = list(calls)
            calls.clear()
            statuses: set[int] = set()
            start = time.perf_counter()
            for _ in range(n):
                statuses.add(app_module.app(event, context)["statusCode"])
            elapsed = time.perf_counter() - start
            warm_calls = list(calls)
    if first["statusCode"] != 200 or statuses != {200}:
        raise RuntimeError(f"predictions failed: {first['body']} / statuses {statuses}")
    per_1000 = len(warm_calls) * 1000 / n
    # Without the container cache each prediction would make the cold request's calls.
    uncached_per_1000 = len(cold_calls) * 1000
    return figure(
        ours=per_1000,
        reference=float(uncached_per_1000),
        ratio=per_1000 / uncached_per_1000 if uncached_per_1000 else None,
        goal="ours <= 5",
        met=per_1000 <= 5,
        unit="calls/1000",
        measure="S3 API calls per 1,000 warm predictions through the handler",
        ratio_is="ours / reference",
        details={
            "predictions": n,
            "warm_calls": len(warm_calls),
            "warm_call_names": sorted(set(warm_calls)),
            "elapsed_s": round(elapsed, 4),
            "predictions_per_s": round(n / elapsed, 1),
            "cold_request_calls": cold_calls,
            "reference": "the cold request's S3 calls x 1,000: what 1,000 predictions would "
            "cost if nothing were cached",
            "alias_ttl_s": TTL_S,
            "note": "warm requests re-read registry.json once per alias TTL, so the count "
            f"depends on how long the predictions take: at most ceil(elapsed / {TTL_S:g} s) "
            "reads. 1,000 predictions spread over T seconds cost about T / 10 reads: the "
            "goal of <= 5 holds for a container that serves 1,000 predictions within ~50 s "
            "(>= 20 per second); at 1 per second it would be ~100",
            "bound_for_this_elapsed": math.ceil(elapsed / TTL_S),
            "capture": "on, with the spec's defaults: two PutObjects per 1,000 captured rows "
            "(batch_rows): the capture object and its summary, and one spec read per minute "
            "per model",
        },
    )
