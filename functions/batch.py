"""The batch functions: an upload under batch/<model>/input/ starts a job, parts fan out.

`on_batch_uploaded` plans the job (one pass over the input) and invokes `score_batch_part`
asynchronously once per part: Lambda queues the invocations, runs them concurrently, and
retries a failed one twice (its own retries; the deployed function's failures go to its
on-failure destination when one is configured). No queue or scheduler of ours. Whichever
part finishes last writes the manifest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from functions.s3_events import object_records
from shared.batch.job import finish_job, score_part, start_job
from shared.batch.records import decode_job, job_key, split_input_key
from shared.batch.split import BadInput
from shared.errors import InvalidKey, MlopsError
from shared.store import ObjectStore, open_store

logger = logging.getLogger(__name__)

# The scoring function's name, as both deployment paths name it.
PART_FUNCTION = os.environ.get("MLOPS_BATCH_PART_FUNCTION", "serverless-mlops-dev-score_batch_part")

Invoke = Callable[[dict[str, Any]], None]
_lambda: Any = None


def invoke_async(payload: dict[str, Any]) -> None:
    """Queue one part for the scoring function (InvocationType Event: Lambda retries it)."""
    global _lambda
    if _lambda is None:
        import boto3

        _lambda = boto3.client("lambda")
    _lambda.invoke(
        FunctionName=PART_FUNCTION, InvocationType="Event", Payload=msgspec.json.encode(payload)
    )


def handle_upload(
    event: Mapping[str, Any], store: ObjectStore | None = None, *, invoke: Invoke = invoke_async
) -> list[str]:
    """Start a job per uploaded input and send out its parts; the job keys started."""
    store = store or open_store()
    started = []
    for bucket, key, version_id in object_records(event):
        try:
            relative = store.key_for_event(bucket, key)
        except InvalidKey as exc:
            logger.error("ignoring s3://%s/%s: %s", bucket, key, exc)
            continue
        try:
            found = split_input_key(relative)
        except MlopsError as exc:  # batch/<not a model name>/input/...: nothing to record it in
            logger.error("ignoring s3://%s/%s: %s", bucket, key, exc)
            continue
        if found is None:  # the job's own outputs, a job request: the trigger is on batch/
            logger.info("not a batch input, ignored: %s", relative)
            continue
        try:
            start = start_job(store, relative, version_id=version_id)
        except BadInput as exc:
            # Recorded in audit/ by start_job; raising would have Lambda retry a bad file.
            logger.error("batch job for %s failed: %s", relative, exc)
            continue
        job = start.job
        if start.status == "complete":
            logger.info("batch %s already complete: %s", job.job_id, relative)
            continue
        where = job_key(job.model, job.name)
        for index in range(len(job.parts)):
            invoke({"job": where, "part": index})
        started.append(where)
    return started


def handle_part(event: Mapping[str, Any], store: ObjectStore | None = None) -> dict[str, Any]:
    """Score one part (a retry or a second delivery finds it done), then try to finish."""
    store = store or open_store()
    where, index = event["job"], event["part"]
    if not isinstance(where, str) or not isinstance(index, int):
        raise ValueError(f"a part event is {{'job': key, 'part': n}}, not {str(event)[:200]}")
    job = decode_job(store.get(where).body, where)
    done = score_part(store, job, index)
    manifest = finish_job(store, job)
    return {
        "part": done.part,
        "rows": done.rows,
        "rejected": done.rejected,
        "complete": manifest is not None,
    }
