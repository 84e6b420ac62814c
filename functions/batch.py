"""The batch functions: an upload under batch/<model>/input/ starts a job, parts fan out.

`on_batch_uploaded` plans the job (one pass over the input) and invokes `score_batch_part`
asynchronously once per part: Lambda queues the invocations, runs them concurrently, and
retries a failed one twice. No queue or scheduler of ours. Whichever part finishes last
writes the manifest. An invocation of either that fails for good (its retries exhausted,
or too old in Lambda's queue) goes to their on-failure destination, `record_batch_failure`,
which writes why beside the job's output: a job never stays incomplete without saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus

import msgspec

from functions.s3_events import object_records
from shared.alerts.announce import announcing
from shared.batch.job import finish_job, record_failure, score_part, scored_here, start_job
from shared.batch.records import (
    JobFailure,
    decode_job,
    job_key,
    split_input_key,
    split_job_key,
)
from shared.batch.split import BadInput
from shared.errors import InvalidKey, MlopsError
from shared.registry.audit import utc_now
from shared.serving.cache import ModelCache
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
    """Start a job per uploaded input and send out its parts; the job keys started.

    A version refused for its artifact is announced (not kept for a retry: this role may
    not write the registry record; see docs/alerts.md).
    """
    store = store or open_store()
    with announcing(store, keep=False):
        return _start_each(store, event, invoke)


def _start_each(store: ObjectStore, event: Mapping[str, Any], invoke: Invoke) -> list[str]:
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
        if scored_here(store, relative):  # `mlops batch --here`: its own machine scores it
            logger.info("scored by mlops batch --here, not started: %s", relative)
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


# One per process, as serving's: a warm function scoring part after part keeps the job's
# version loaded (artifact fetched, hash checked, session made) instead of loading it again
# for each part. A job names its version by number, whose artifact never changes.
_cache: ModelCache | None = None


def _process_cache() -> ModelCache:
    global _cache
    if _cache is None:
        _cache = ModelCache(open_store())
    return _cache


def handle_part(event: Mapping[str, Any], store: ObjectStore | None = None) -> dict[str, Any]:
    """Score one part (a retry or a second delivery finds it done), then try to finish.

    A version refused for its artifact is announced, as in handle_upload.
    """
    cache = None
    if store is None:  # deployed: the function's own store, and its loaded versions
        cache = _process_cache()
        store = cache.store
    where, index = event["job"], event["part"]
    if not isinstance(where, str) or not isinstance(index, int):
        raise ValueError(f"a part event is {{'job': key, 'part': n}}, not {str(event)[:200]}")
    with announcing(store, keep=False):
        job = decode_job(store.get(where).body, where)
        done = score_part(store, job, index, cache=cache)
        manifest = finish_job(store, job)
    return {
        "part": done.part,
        "rows": done.rows,
        "rejected": done.rejected,
        "complete": manifest is not None,
    }


def handle_failure(event: Mapping[str, Any], store: ObjectStore | None = None) -> list[str]:
    """Record an invocation of a batch function that Lambda gave up on; the records written.

    `event` is Lambda's invocation record for an on-failure destination: `requestContext`
    (`condition` RetriesExhausted or EventAgeExceeded, `approximateInvokeCount`,
    `requestId`), `requestPayload` (the event the function was given: a part, or the S3
    notification of an upload) and `responsePayload` (the function's error, if it ran).
    Nothing here raises on a record it cannot place: Lambda would only retry it.
    """
    store = store or open_store()
    context = event.get("requestContext")
    context = context if isinstance(context, Mapping) else {}
    attempts = context.get("approximateInvokeCount")
    request_id = context.get("requestId")
    common = {
        "condition": str(context.get("condition") or "unknown"),
        "error": _error(event.get("responsePayload"), str(context.get("condition") or "")),
        "attempts": attempts if isinstance(attempts, int) else None,
        "request_id": request_id if isinstance(request_id, str) else None,
        "failed_at": utc_now().isoformat(),
    }
    payload = event.get("requestPayload")
    payload = payload if isinstance(payload, Mapping) else {}
    if "Records" in payload:  # on_batch_uploaded's: the upload's S3 notification
        failures = _start_failures(store, payload, common)
    else:  # score_batch_part's: {"job": key, "part": n}
        failures = _part_failure(store, payload, common)
    if not failures:
        logger.error("a failed batch invocation names no job or input: %.500r", dict(event))
    written = []
    for failure in failures:
        record_failure(store, failure)
        logger.error("batch %s/%s failed: %s", failure.model, failure.name, failure.error)
        written.append(f"{failure.model}/{failure.name}")
    return written


def _error(response: Any, condition: str) -> str:
    """The function's own error if it ran (Lambda's message for a timeout or a crash)."""
    said = (
        [str(response[k]) for k in ("errorType", "errorMessage") if response.get(k)]
        if isinstance(response, Mapping)
        else []
    )
    if said:  # a MemoryError's message is empty: its type says it
        text = ": ".join(said)
    elif isinstance(response, str) and response:
        text = response
    elif condition == "EventAgeExceeded":
        text = "the invocation waited in Lambda's queue past its maximum age (throttled?)"
    else:
        text = f"Lambda gave up on the invocation ({condition or 'no condition given'})"
    return text[:2000]


def _part_failure(
    store: ObjectStore, payload: Mapping[str, Any], common: dict[str, Any]
) -> list[JobFailure]:
    where, index = payload.get("job"), payload.get("part")
    if not isinstance(where, str) or not isinstance(index, int):
        return []
    try:
        found = split_job_key(where)
    except MlopsError:
        found = None
    if found is None:
        return []
    model, name = found
    input_key = job_id = None
    try:
        job = decode_job(store.get(where).body, where)
        input_key, job_id = job.input.key, job.job_id
    except MlopsError as exc:  # the failure is still worth its record
        logger.error("reading %s for a failed part: %s", where, exc)
    return [
        JobFailure(model=model, name=name, part=index, input_key=input_key, job_id=job_id, **common)
    ]


def _start_failures(
    store: ObjectStore, payload: Mapping[str, Any], common: dict[str, Any]
) -> list[JobFailure]:
    failures = []
    etags = _event_etags(payload)
    for bucket, key, _ in object_records(payload):
        try:
            relative = store.key_for_event(bucket, key)
            found = split_input_key(relative)
        except MlopsError as exc:
            logger.error("ignoring s3://%s/%s: %s", bucket, key, exc)
            continue
        if found is not None:
            model, name, _ = found
            etag = etags.get(key)
            failures.append(
                JobFailure(
                    model=model, name=name, part=None, input_key=relative, input_etag=etag, **common
                )
            )
    return failures


def _event_etags(payload: Mapping[str, Any]) -> dict[str, str]:
    """{key: ETag} of an S3 notification's records: which upload failed to start, so that
    a later upload of the same key is not taken for it."""
    etags = {}
    for record in payload.get("Records") or []:
        with contextlib.suppress(KeyError, TypeError, AttributeError):
            found = record["s3"]["object"]
            if isinstance(found["key"], str) and isinstance(found.get("eTag"), str):
                etags[unquote_plus(found["key"])] = found["eTag"]
    return etags
