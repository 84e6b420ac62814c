"""A batch job: started once per input, scored part by part, completed by its manifest.

Decide apart from doing: `start_job` reads the input once (hash, UTF-8, header, where parts
begin), resolves the version once and records both in `job.json`; `score_part` scores one
part by that record alone, so any process (a Lambda invocation, a local worker) can score
any part, any number of times; `finish_job` writes the manifest once every part is done.
Every write is create-only, so a part delivered twice, or a job started twice, writes once.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import msgspec
import numpy as np

from shared.batch.records import (
    BatchJob,
    InputIdentity,
    JobFailure,
    JobRequest,
    Manifest,
    PartDone,
    PartPlan,
    decode_job,
    decode_manifest,
    decode_part,
    encode,
    failure_key,
    job_key,
    manifest_key,
    output_prefix,
    part_done_key,
    part_output_key,
    part_rejects_key,
    request_key,
    split_input_key,
)
from shared.batch.rows import Block, read_blocks, read_json_blocks, text_lines
from shared.batch.split import BadInput, scan_csv
from shared.data.spec import CaptureSettings, load_spec
from shared.errors import (
    MlopsError,
    ModelNotFound,
    ModelNotReady,
    ObjectNotFound,
    PreconditionFailed,
    VersionNotFound,
    quoted,
)
from shared.monitoring.capture_writer import CaptureWriter
from shared.registry.audit import record_event, record_event_once, utc_now
from shared.serving.cache import DEFAULT_ALIAS, LoadedModel, ModelCache, Prediction, predict
from shared.store.base import ObjectStore

logger = logging.getLogger(__name__)

# A part's size: its memory is a block of rows, its time about 30 s of a 1,769 MB function
# per 64 MiB (docs/batch.md), far inside Lambda's 15 minutes.
PART_BYTES = int(os.environ.get("MLOPS_BATCH_PART_BYTES", 64 << 20))
READ_BYTES = 8 << 20  # one ranged GET at a time: a part never holds more than this of input
_GZIP = 16 + zlib.MAX_WBITS

Progress = Callable[[int, int], None]  # (bytes of input scored, rows scored) so far


@dataclass(frozen=True)
class JobStart:
    """What starting a job did: started it, found it started (resume), or found it done."""

    job: BatchJob
    status: str  # "started", "resumed" or "complete"


def object_chunks(
    store: ObjectStore, key: str, start: int, end: int, version_id: str | None
) -> Iterator[bytes]:
    """Bytes [start, end) of an object, READ_BYTES at a time."""
    position = start
    while position < end:
        chunk = store.get_range(
            key, position, min(end, position + READ_BYTES), version_id=version_id
        )
        if not chunk:
            return
        position += len(chunk)
        yield chunk


def gunzip(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    """The decompressed bytes of gzip chunks, a bounded piece at a time (no bomb is whole)."""
    stream = zlib.decompressobj(_GZIP)
    try:
        for chunk in chunks:
            data = chunk
            while data:
                yield stream.decompress(data, READ_BYTES)
                data = stream.unconsumed_tail
                if stream.eof and stream.unused_data:  # a next gzip member (as `cat a.gz b.gz`)
                    data = stream.unused_data + data
                    stream = zlib.decompressobj(_GZIP)
        yield stream.flush()
    except zlib.error as exc:
        raise BadInput(
            f"{name} is not a valid gzip file ({exc}); upload it as .csv, or gzip it again"
        ) from None
    if not stream.eof:
        raise BadInput(f"{name} ends inside its gzip stream: upload the whole file again")


def _hashed(chunks: Iterator[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _request(store: ObjectStore, model: str, name: str) -> JobRequest:
    key = request_key(model, name)
    try:
        body = store.get(key).body
    except ObjectNotFound:
        return JobRequest()
    try:
        return msgspec.json.decode(body, type=JobRequest)
    except msgspec.DecodeError as exc:
        raise BadInput(
            f"{key}: {str(exc)[:200]}; a job request is "
            '{"version": "3" or an alias, "id_columns": ["customer_id"]}'
        ) from None


def record_failure(store: ObjectStore, failure: JobFailure) -> None:
    """Say that a job could not start, or a part could not be scored: beside the job's
    output, where `mlops batch status` reads it, and in the audit trail."""
    where = failure_key(failure.model, failure.name, failure.part)
    store.put(where, encode(failure), content_type="application/json")
    details = {
        "input_key": failure.input_key,
        "job_id": failure.job_id,
        "part": failure.part,
        "condition": failure.condition,
        "attempts": failure.attempts,
        "reason": failure.error,
        "failure": where,
    }
    record_event(
        store, failure.model, "batch_failed", **{k: v for k, v in details.items() if v is not None}
    )


def _fail(store: ObjectStore, model: str, name: str, key: str, exc: Exception) -> None:
    info = store.head(key)
    failure = JobFailure(
        model=model,
        name=name,
        part=None,
        input_key=key,
        input_etag=info.etag if info else None,
        condition="bad_input",
        error=str(exc),
        failed_at=utc_now().isoformat(),
    )
    record_failure(store, failure)


def scored_here(store: ObjectStore, key: str) -> bool:
    """Whether the job request beside input `key` says a user's machine scores it (a
    request that cannot be read says no: the job's start reports it)."""
    found = split_input_key(key)
    if found is None:
        return False
    model, name, _ = found
    try:
        return _request(store, model, name).scored_here
    except BadInput:
        return False


def start_job(
    store: ObjectStore,
    key: str,
    *,
    version: str | None = None,
    version_id: str | None = None,
    part_bytes: int | None = None,
    cache: ModelCache | None = None,
) -> JobStart:
    """Plan and record the job for input `key` (or find it recorded); BadInput, recorded in
    audit/, if the file or the model cannot be scored.

    `version` (else the request file's, else production) is resolved once, here.
    """
    found = split_input_key(key)
    if found is None:
        raise BadInput(
            f"{quoted(key)} is not a batch input: upload batch/<model>/input/<name>.csv "
            "(or .csv.gz, .jsonl, .jsonl.gz)"
        )
    model, name, suffix = found
    size = part_bytes or PART_BYTES
    try:
        return _start(store, key, model, name, suffix, version, version_id, size, cache)
    except (BadInput, ModelNotFound, ModelNotReady, VersionNotFound) as exc:
        _fail(store, model, name, key, exc)
        raise BadInput(str(exc)) from None


def _start(
    store: ObjectStore,
    key: str,
    model: str,
    name: str,
    suffix: str,
    version: str | None,
    version_id: str | None,
    part_bytes: int,
    cache: ModelCache | None,
) -> JobStart:
    compressed = suffix.endswith(".gz")
    json_lines = suffix.startswith(".jsonl")
    request = _request(store, model, name)
    requested = version or request.version or DEFAULT_ALIAS
    info = store.head(key)
    if info is None:
        raise BadInput(f"{key}: no such object (deleted since it was uploaded?)")
    # Before the pass over the input: a wrong model name fails at once, not after 5 GB.
    try:
        loaded = (cache or ModelCache(store)).get(model, requested)
    except ModelNotFound:
        raise BadInput(
            f"{key}: no model named {model!r} is registered; upload its training data under "
            f"datasets/{model}/ first, or put the input under the right batch/<model>/input/"
        ) from None
    digest = hashlib.sha256()
    raw = _hashed(object_chunks(store, key, 0, info.size, version_id), digest)
    text = gunzip(raw, key) if compressed else raw
    scan = scan_csv(
        text, part_bytes=part_bytes, name=key, splittable=not compressed, json_lines=json_lines
    )
    if json_lines:  # no header: the job names the fields to keep, else none are
        kept = list(request.id_columns or [])
    else:
        kept = _kept_columns(key, scan.columns, loaded, request.id_columns)
    classes = [str(c) for c in loaded.metadata.classes or []]
    output_columns = kept + ["prediction"] + [f"probability_{c}" for c in classes]
    clash = sorted({c for c in output_columns if output_columns.count(c) > 1})
    if clash:
        raise BadInput(
            f"{key}: the input has a column named {quoted(clash)}, which the output adds; "
            f"rename it, or name the columns to keep in {request_key(model, name)} (id_columns)"
        )
    identity = digest.hexdigest()
    job_id = hashlib.sha256(
        msgspec.json.encode([identity, requested, kept, part_bytes])
    ).hexdigest()[:16]
    job = BatchJob(
        job_id=job_id,
        model=model,
        name=name,
        input=InputIdentity(
            key=key, etag=info.etag, version_id=version_id, sha256=identity, bytes=info.size
        ),
        compressed=compressed,
        format="jsonl" if json_lines else "csv",
        requested=requested,
        version=loaded.version,
        columns=list(scan.columns),
        kept=kept,
        output_columns=output_columns,
        parts=[PartPlan(start=p.start, end=p.end, first_line=p.first_line) for p in scan.parts],
        started_at=utc_now().isoformat(),
    )
    where = job_key(model, name)
    try:
        store.put(where, encode(job), if_none_match=True, content_type="application/json")
    except PreconditionFailed:
        earlier = decode_job(store.get(where).body, where)
        if earlier.job_id != job.job_id:
            raise BadInput(
                f"{output_prefix(model, name)} already holds job {earlier.job_id} (input sha256 "
                f"{earlier.input.sha256[:12]}..., {earlier.requested}); upload this input "
                "under another name, or delete that folder to score it again"
            ) from None
        done = store.head(manifest_key(model, name)) is not None
        if done:
            record_event(store, model, "batch_duplicate_ignored", input_key=key, job_id=job.job_id)
        return JobStart(earlier, "complete" if done else "resumed")
    record_event(
        store,
        model,
        "batch_started",
        input_key=key,
        job_id=job.job_id,
        version=job.version,
        requested=requested,
        parts=len(job.parts),
        input_sha256=identity,
    )
    return JobStart(job, "started")


def _kept_columns(
    key: str, columns: tuple[str, ...], loaded: LoadedModel, id_columns: list[str] | None
) -> list[str]:
    names = [f.name for f in loaded.features]
    absent = [n for n in names if n not in columns]
    if absent:
        looks_like_data = all(_is_number(c) for c in columns)
        hint = (
            "; its first line looks like data: add a header line naming the columns"
            if looks_like_data
            else ""
        )
        shown = ", ".join(repr(n[:64]) for n in absent[:10])
        more = f" and {len(absent) - 10} more" if len(absent) > 10 else ""
        raise BadInput(
            f"{key}: the header has no column {shown}{more}{hint}; model {loaded.model!r} "
            f"version {loaded.version} needs every feature by name"
        )
    if id_columns is None:
        return list(columns)
    unknown = [c for c in id_columns if c not in columns]
    if unknown:
        raise BadInput(f"{key}: id_columns {quoted(unknown)} are not in the header")
    return list(id_columns)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _capture_settings(store: ObjectStore, model: str) -> CaptureSettings:
    try:
        return load_spec(store, model)[0].monitoring.capture
    except MlopsError as exc:  # capture never fails a job: a broken spec fails training
        logger.warning("capture settings of %r unreadable, using defaults: %s", model, exc)
        return CaptureSettings()


def score_part(
    store: ObjectStore,
    job: BatchJob,
    index: int,
    *,
    cache: ModelCache | None = None,
    capture: CaptureWriter | None = None,
    progress: Progress | None = None,
) -> PartDone:
    """Score part `index` of `job` with the job's version; its record, if it was done before."""
    done_key = part_done_key(job, index)
    try:
        return decode_part(store.get(done_key).body, done_key)
    except ObjectNotFound:
        pass
    began = time.monotonic()
    loaded = (cache or ModelCache(store)).get(job.model, str(job.version))
    plan = job.parts[index]
    settings = _capture_settings(store, job.model)
    writer = capture or CaptureWriter(store)
    chunks = object_chunks(store, job.input.key, plan.start, plan.end, job.input.version_id)
    if job.compressed:
        chunks = gunzip(
            object_chunks(store, job.input.key, 0, job.input.bytes, job.input.version_id),
            job.input.key,
        )
    output = _GzipText()
    output.writer.writerow(job.output_columns)
    rejects = _GzipText()
    rejects.writer.writerow(["line", "reason"])
    rows = rejected = 0
    lines = text_lines(_counted(chunks, progress), strip_bom=plan.start == 0)
    if job.format == "jsonl":
        blocks = read_json_blocks(
            lines, features=loaded.features, keep=job.kept, first_line=plan.first_line
        )
    else:
        blocks = read_blocks(
            lines,
            columns=job.columns,
            features=loaded.features,
            keep=[job.columns.index(c) for c in job.kept],
            first_line=plan.first_line,
            skip_header=plan.start == 0,
        )
    for number, block in enumerate(blocks):
        for reject in block.rejects:
            rejects.writer.writerow([reject.line, reject.reason])
        rejected += len(block.rejects)
        if not block.kept:
            continue
        prediction = predict(loaded, block.batch)
        _write_scored(output, block.kept, prediction.values, prediction.probabilities)
        rows += len(block.kept)
        if progress is not None:
            progress(0, len(block.kept))
        _capture(writer, settings, job, loaded, index, number, block, prediction)
    if capture is None:
        writer.flush()
    output_key = part_output_key(job, index)
    _create(store, output_key, output.close(), "text/csv")
    rejects_key = None
    if rejected:
        rejects_key = part_rejects_key(job, index)
        _create(store, rejects_key, rejects.close(), "text/csv")
    done = PartDone(
        part=index,
        rows=rows,
        rejected=rejected,
        output_key=output_key,
        rejects_key=rejects_key,
        seconds=round(time.monotonic() - began, 3),
        finished_at=utc_now().isoformat(),
    )
    try:
        store.put(done_key, encode(done), if_none_match=True, content_type="application/json")
    except PreconditionFailed:  # another delivery of this part finished first: its record
        return decode_part(store.get(done_key).body, done_key)
    return done


def _counted(chunks: Iterator[bytes], progress: Progress | None) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk
        if progress is not None:
            progress(len(chunk), 0)


def _create(store: ObjectStore, key: str, body: bytes, content_type: str) -> None:
    # The same part scored twice writes the same bytes (gzip without a time in its header):
    # the second write finds the first, and that is the part delivered once.
    with contextlib.suppress(PreconditionFailed):
        store.put(key, body, if_none_match=True, content_type=content_type)


class _GzipText:
    """A CSV written straight into gzip: a part's output is held compressed, never as text."""

    def __init__(self) -> None:
        self.text = io.StringIO()
        self.writer = csv.writer(self.text, lineterminator="\n")
        # Level 1: about a third of level 6's time for outputs about 10% larger.
        self.compressor = zlib.compressobj(1, zlib.DEFLATED, _GZIP)
        self.parts: list[bytes] = []

    def drain(self) -> None:
        self.parts.append(self.compressor.compress(self.text.getvalue().encode()))
        self.text.seek(0)
        self.text.truncate()

    def close(self) -> bytes:
        self.drain()
        self.parts.append(self.compressor.flush())
        return b"".join(self.parts)


def _write_scored(
    output: _GzipText, kept: list[list[str]], values: np.ndarray, probabilities: np.ndarray | None
) -> None:
    labels = values.tolist()
    if probabilities is None:
        output.writer.writerows(
            [*row, repr(label) if isinstance(label, float) else label]
            for row, label in zip(kept, labels, strict=True)
        )
    else:
        # float32 probabilities: nine significant digits name each float32 exactly.
        shown = np.char.mod("%.9g", probabilities.astype(np.float64)).tolist()
        output.writer.writerows(
            [*row, label, *probs] for row, label, probs in zip(kept, labels, shown, strict=True)
        )
    output.drain()


def _capture(
    writer: CaptureWriter,
    settings: CaptureSettings,
    job: BatchJob,
    loaded: LoadedModel,
    index: int,
    number: int,
    block: Block,
    prediction: Prediction,
) -> None:
    if not settings.enabled or settings.batch_sample_rate <= 0:
        return
    n = len(block.kept)
    wanted = max(1, math.ceil(n * settings.batch_sample_rate))
    sample = msgspec.structs.replace(settings, sample_rate=1.0, max_rows_per_request=wanted)
    writer.add(
        sample,
        model=job.model,
        version=job.version,
        served_by=f"batch {job.job_id}",
        request_id=f"batch-{job.job_id}-{index:05d}-{number:05d}",
        numeric_names=loaded.onnx.numeric_names,
        numeric=block.batch.numeric,
        categorical=block.batch.categorical,
        predictions=prediction.values,
        probabilities=prediction.probabilities,
        classes=prediction.classes,
        role="batch",
        metadata=loaded.metadata,
    )


def finish_job(store: ObjectStore, job: BatchJob) -> Manifest | None:
    """The manifest, written once every part is done (None until then); written once."""
    where = manifest_key(job.model, job.name)
    prefix = output_prefix(job.model, job.name) + "parts/"
    # Counted before any is read: each part's function asks, and only the last reads them all.
    records = list(store.list(prefix))
    if len(records) < len(job.parts):
        return None
    done = [decode_part(store.get(info.key).body, info.key) for info in records]
    done.sort(key=lambda d: d.part)
    finished = max((d.finished_at for d in done), default=utc_now().isoformat())
    started = _parse_time(job.started_at)
    manifest = Manifest(
        job_id=job.job_id,
        model=job.model,
        version=job.version,
        requested=job.requested,
        input=job.input,
        rows=sum(d.rows for d in done),
        rejected=sum(d.rejected for d in done),
        parts=done,
        started_at=job.started_at,
        finished_at=finished,
        seconds=round(max(0.0, _parse_time(finished) - started), 3),
        scoring_seconds=round(sum(d.seconds for d in done), 3),
    )
    try:
        store.put(where, encode(manifest), if_none_match=True, content_type="application/json")
    except PreconditionFailed:  # the last two parts finished together: the first one wrote it
        return decode_manifest(store.get(where).body, where)
    record_event_once(
        store,
        job.model,
        "batch_completed",
        at=datetime.fromisoformat(job.started_at),
        dedupe=job.job_id,
        input_key=job.input.key,
        job_id=job.job_id,
        version=job.version,
        rows=manifest.rows,
        rejected=manifest.rejected,
        manifest=where,
    )
    return manifest


def read_manifest(store: ObjectStore, job: BatchJob) -> Manifest | None:
    """The job's manifest if it is complete, else None."""
    where = manifest_key(job.model, job.name)
    try:
        return decode_manifest(store.get(where).body, where)
    except ObjectNotFound:
        return None


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_job(
    store: ObjectStore,
    key: str,
    *,
    version: str | None = None,
    part_bytes: int | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Start (or resume) the job for `key`, score every part not done yet, write the manifest.

    One process, part after part; `mlops batch --workers` spreads the parts over processes.
    """
    cache = ModelCache(store)
    started = start_job(store, key, version=version, part_bytes=part_bytes, cache=cache)
    job = started.job
    if started.status == "complete":
        manifest = read_manifest(store, job)
        if manifest is not None:
            return manifest
    writer = CaptureWriter(store)
    for index in range(len(job.parts)):
        score_part(store, job, index, cache=cache, capture=writer, progress=progress)
    writer.flush()
    return complete(store, job)


def complete(store: ObjectStore, job: BatchJob) -> Manifest:
    """The manifest of a job whose parts were all scored (MlopsError if one is missing)."""
    manifest = finish_job(store, job)
    if manifest is None:
        raise MlopsError(f"batch job {job.job_id}: parts are missing after scoring them all")
    return manifest
