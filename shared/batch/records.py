"""What a batch job leaves in the bucket, and the one place it is turned to and from JSON.

batch/<model>/input/<name>.csv[.gz]         you: the rows to score
batch/<model>/input/<name>.job.json         you, optional: {"version": ..., "id_columns": [...]}
batch/<model>/output/<name>/job.json        the job as started: version pinned, parts planned
batch/<model>/output/<name>/part-NNNNN.csv.gz     scored rows of part NNNNN, in input order
batch/<model>/output/<name>/rejects-NNNNN.csv.gz  its rejected rows: line, reason
batch/<model>/output/<name>/parts/NNNNN.json      part NNNNN is done: its counts
batch/<model>/output/<name>/failed/NNNNN.json     part NNNNN failed for good (Lambda gave up)
batch/<model>/output/<name>/failed/start.json     the job could not start: why
batch/<model>/output/<name>/manifest.json   written last: the output is complete
"""

from __future__ import annotations

import msgspec

from shared.data.spec import validate_model_name
from shared.errors import MlopsError

BATCH_SCHEMA_VERSION = 1
# Longest first: "a.csv.gz" is not "a.csv" + ".gz".
INPUT_SUFFIXES = (".csv.gz", ".csv", ".jsonl.gz", ".jsonl")
REQUEST_SUFFIX = ".job.json"


class JobRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A `<name>.job.json` beside an input: which version scores it, which columns are kept."""

    version: str | None = None  # a number, an alias or latest; default production
    id_columns: list[str] | None = None  # default: every column of the input
    # `mlops batch --here` on S3: the user's machine scores this input, so the deployed
    # trigger leaves its upload alone (two planners would start two different jobs).
    scored_here: bool = False


class PartPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Bytes [start, end) of the input, whose first line is line `first_line` of the file."""

    start: int
    end: int
    first_line: int


class InputIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """The bytes a job scored: enough to tell them from any later upload of the same key."""

    key: str
    etag: str
    version_id: str | None
    sha256: str
    bytes: int


class BatchJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job as started: the version resolved once, and the parts every scorer follows."""

    schema_version: int = BATCH_SCHEMA_VERSION
    job_id: str
    model: str
    name: str
    input: InputIdentity
    compressed: bool
    format: str = "csv"  # "csv" or "jsonl"
    requested: str  # the version or alias asked for
    version: int  # what it named when the job started: every part scores with this one
    columns: list[str]
    kept: list[str]  # the input's columns repeated in the output, in this order
    output_columns: list[str]
    parts: list[PartPlan]
    started_at: str


class PartDone(msgspec.Struct, frozen=True, kw_only=True):
    """One part scored: where its rows went, and how many."""

    part: int
    rows: int
    rejected: int
    output_key: str
    rejects_key: str | None
    seconds: float
    finished_at: str


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """Written last, once every part is done: its presence means the output is complete."""

    schema_version: int = BATCH_SCHEMA_VERSION
    job_id: str
    model: str
    version: int
    requested: str
    input: InputIdentity
    rows: int
    rejected: int
    parts: list[PartDone]
    started_at: str
    finished_at: str
    seconds: float  # from the job's start to its last part done
    scoring_seconds: float  # the parts' own time, summed: what the functions were billed for


class JobFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Why a job could not start, or a part could not be scored, after every retry.

    Written beside the job's output so that whoever follows the job reads it there; the
    audit trail says the same (batch_failed). A part's failure stands until the part is
    scored (a re-run); a start failure until the input is uploaded again or a job starts.
    """

    schema_version: int = BATCH_SCHEMA_VERSION
    model: str
    name: str
    part: int | None  # None: the job failed to start (its planning pass)
    input_key: str | None
    input_etag: str | None = None  # the upload that failed to start, when known
    job_id: str | None = None
    condition: str  # "bad_input" (the file, refused), or Lambda's: RetriesExhausted...
    error: str
    attempts: int | None = None
    request_id: str | None = None
    failed_at: str


def encode(record: msgspec.Struct) -> bytes:
    """A record as the JSON stored in the bucket."""
    return msgspec.json.encode(record)


def decode_job(body: bytes, key: str) -> BatchJob:
    """A job.json; MlopsError naming the key if it is not one."""
    return _decode(body, key, BatchJob)


def decode_part(body: bytes, key: str) -> PartDone:
    """A parts/NNNNN.json."""
    return _decode(body, key, PartDone)


def decode_manifest(body: bytes, key: str) -> Manifest:
    """A manifest.json."""
    return _decode(body, key, Manifest)


def decode_failure(body: bytes, key: str) -> JobFailure:
    """A failed/*.json."""
    return _decode(body, key, JobFailure)


def _decode[T](body: bytes, key: str, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        reason = str(exc)[:200]
        raise MlopsError(f"{key}: not a batch record this version reads: {reason}") from None


def split_input_key(key: str) -> tuple[str, str, str] | None:
    """(model, name, suffix) of `batch/<model>/input/<name>.csv[.gz]` (or .jsonl[.gz]);
    None for any other key."""
    parts = key.split("/", 3)
    if len(parts) != 4 or parts[0] != "batch" or parts[2] != "input":
        return None
    for suffix in INPUT_SUFFIXES:
        if parts[3].endswith(suffix) and len(parts[3]) > len(suffix):
            validate_model_name(parts[1])
            return parts[1], parts[3][: -len(suffix)], suffix
    return None


def split_job_key(key: str) -> tuple[str, str] | None:
    """(model, name) of `batch/<model>/output/<name>/job.json`; None for any other key."""
    parts = key.split("/")
    if len(parts) < 5 or parts[0] != "batch" or parts[2] != "output" or parts[-1] != "job.json":
        return None
    validate_model_name(parts[1])
    return parts[1], "/".join(parts[3:-1])


def input_prefix(model: str) -> str:
    """Where a model's batch inputs are uploaded."""
    return f"batch/{validate_model_name(model)}/input/"


def output_prefix(model: str, name: str) -> str:
    """Where the output of input `name` goes."""
    return f"batch/{validate_model_name(model)}/output/{name}/"


def request_key(model: str, name: str) -> str:
    """The optional job request beside an input."""
    return f"{input_prefix(model)}{name}{REQUEST_SUFFIX}"


def job_key(model: str, name: str) -> str:
    """The job as started."""
    return output_prefix(model, name) + "job.json"


def manifest_key(model: str, name: str) -> str:
    """The manifest, written last."""
    return output_prefix(model, name) + "manifest.json"


def part_output_key(job: BatchJob, index: int) -> str:
    """Scored rows of one part."""
    return f"{output_prefix(job.model, job.name)}part-{index:05d}.csv.gz"


def part_rejects_key(job: BatchJob, index: int) -> str:
    """Rejected rows of one part."""
    return f"{output_prefix(job.model, job.name)}rejects-{index:05d}.csv.gz"


def part_done_key(job: BatchJob, index: int) -> str:
    """The record that one part is done, written after its rows."""
    return f"{output_prefix(job.model, job.name)}parts/{index:05d}.json"


def failure_key(model: str, name: str, part: int | None) -> str:
    """Where a failure of part `part` (None: of the start) is recorded."""
    which = "start" if part is None else f"{part:05d}"
    return f"{output_prefix(model, name)}failed/{which}.json"
