"""Where a batch job stands, read from what it left in the bucket (nothing else keeps it).

`read_status` gathers the records (one listing of the job's output folder, then only the
records not read before); `summarise` decides from them alone, so every rule here is tested
without a bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.batch.records import (
    INPUT_SUFFIXES,
    BatchJob,
    JobFailure,
    Manifest,
    PartDone,
    decode_failure,
    decode_job,
    decode_manifest,
    decode_part,
    input_prefix,
    output_prefix,
)
from shared.errors import MlopsError, ObjectNotFound
from shared.store.base import ObjectInfo, ObjectStore

State = Literal["waiting", "running", "complete", "failed"]


class JobNotFound(MlopsError):
    """Neither an input nor a job of that name."""


@dataclass(frozen=True)
class JobStatus:
    """A job as its records show it: waiting to start, running, complete or failed."""

    model: str
    name: str
    state: State
    input_key: str | None
    job: BatchJob | None
    parts_done: int
    rows: int
    rejected: int
    failures: tuple[JobFailure, ...]  # those that stand: nothing has made up for them since
    manifest: Manifest | None

    @property
    def parts_total(self) -> int | None:
        """How many parts the job was planned in (None before it started)."""
        return len(self.job.parts) if self.job is not None else None


def summarise(
    model: str,
    name: str,
    upload: ObjectInfo | None,
    job: BatchJob | None,
    done: dict[int, PartDone],
    failures: list[JobFailure],
    manifest: Manifest | None,
) -> JobStatus:
    """The state the records show.

    A part's failure stands until the part is done (a re-run scored it); a failure to start
    stands until the input is uploaded again or a job starts from it. A refused upload
    (`bad_input`: a bad file, or other bytes under a name already scored) is a failure even
    beside an earlier complete job: the bytes uploaded last were not scored. A manifest is
    otherwise complete.
    """
    standing = tuple(
        sorted(
            (f for f in failures if _stands(f, upload, job, done)),
            key=lambda f: -1 if f.part is None else f.part,
        )
    )
    refused = any(f.part is None and f.condition == "bad_input" for f in standing)
    if manifest is not None and not refused:
        state: State = "complete"
        standing = ()
    elif standing:
        state = "failed"
    elif job is not None:
        state = "running"
    else:
        state = "waiting"
    if manifest is not None:
        parts, rows, rejected = len(manifest.parts), manifest.rows, manifest.rejected
    else:
        parts = len(done)
        rows = sum(d.rows for d in done.values())
        rejected = sum(d.rejected for d in done.values())
    input_key = upload.key if upload is not None else job.input.key if job is not None else None
    return JobStatus(
        model=model,
        name=name,
        state=state,
        input_key=input_key,
        job=job,
        parts_done=parts,
        rows=rows,
        rejected=rejected,
        failures=standing,
        manifest=manifest,
    )


def _stands(
    failure: JobFailure, upload: ObjectInfo | None, job: BatchJob | None, done: dict[int, PartDone]
) -> bool:
    if failure.part is not None:
        return failure.part not in done
    failed_at = datetime.fromisoformat(failure.failed_at)
    if job is not None and datetime.fromisoformat(job.started_at) > failed_at:
        return False  # a job started since (the same bytes, once the model was there)
    if upload is None:
        return True
    if failure.input_etag is not None and failure.input_etag.strip('"') != upload.etag.strip('"'):
        return False  # uploaded again since (S3's events name an ETag without its quotes)
    return failed_at >= upload.last_modified


def read_status(
    store: ObjectStore, model: str, name: str, known: dict[int, PartDone] | None = None
) -> JobStatus:
    """The status of the job for input `name` of `model`; JobNotFound if there is neither
    an input nor a job of that name.

    `known`: part records read by an earlier call (they never change), filled in here, so
    that following a job of 1,000 parts does not read 1,000 records at every look.
    """
    known = {} if known is None else known
    prefix = output_prefix(model, name)
    listed = {info.key.removeprefix(prefix) for info in store.list(prefix)}
    job = _read(store, prefix + "job.json", decode_job) if "job.json" in listed else None
    manifest = None
    if "manifest.json" in listed:
        manifest = _read(store, prefix + "manifest.json", decode_manifest)
    for relative in sorted(listed):
        index = _numbered(relative, "parts/")
        if index is not None and index not in known and manifest is None:
            found = _read(store, prefix + relative, decode_part)
            if found is not None:
                known[index] = found
    failures = [
        failure
        for relative in sorted(listed)
        if relative.startswith("failed/") and relative.count("/") == 1
        if (failure := _read(store, prefix + relative, decode_failure)) is not None
    ]
    upload = _upload(store, model, name)
    if upload is None and job is None and not failures:
        raise JobNotFound(
            f"no batch input or job named {name!r} for model {model!r}: nothing under "
            f"{input_prefix(model)}{name}.* or {prefix}; the name is the input file's, "
            "without .csv, .csv.gz, .jsonl or .jsonl.gz"
        )
    return summarise(model, name, upload, job, known, failures, manifest)


def _read[T](store: ObjectStore, key: str, decode: Callable[[bytes, str], T]) -> T | None:
    try:
        body = store.get(key).body
    except ObjectNotFound:  # deleted between the listing and the read
        return None
    return decode(body, key)


def _numbered(relative: str, folder: str) -> int | None:
    stem = relative.removeprefix(folder).removesuffix(".json")
    if not relative.startswith(folder) or not relative.endswith(".json") or not stem.isdigit():
        return None
    return int(stem)


def _upload(store: ObjectStore, model: str, name: str) -> ObjectInfo | None:
    """The input named `name` (of any accepted suffix), the latest if there are several."""
    base = input_prefix(model) + name
    found = [
        info
        for info in store.list(base)
        if any(info.key == base + suffix for suffix in INPUT_SUFFIXES)
    ]
    return max(found, key=lambda info: info.last_modified, default=None)
