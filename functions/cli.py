"""The `mlops` command: the lifecycle from a terminal, against MLOPS_STORE or --store.

On the embedded default (a local folder) there are no bucket events, so `upload`
runs the training function in-process, exactly as the S3 trigger would.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import getpass
import gzip
import hashlib
import io
import json
import math
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

import shared
from functions import inference, monitoring
from shared.batch.job import complete, run_job, score_part, start_job
from shared.batch.records import (
    INPUT_SUFFIXES,
    BatchJob,
    JobRequest,
    Manifest,
    PartDone,
    decode_job,
    input_prefix,
    job_key,
    output_prefix,
    request_key,
)
from shared.batch.records import encode as encode_batch
from shared.batch.status import JobStatus, read_status
from shared.data.cell_values import CellError, number_cell
from shared.data.spec import parse_spec, spec_key, validate_model_name
from shared.errors import (
    BadRequest,
    MlopsError,
    ObjectNotFound,
    SpecError,
    StoreConfigError,
)
from shared.maintenance.challenger import consider
from shared.monitoring.job import check_model
from shared.monitoring.labels import check_label_file, labels_prefix
from shared.monitoring.report import decode_report, report_key, report_prefix, window_id
from shared.registry.audit import AuditEvent, audit_prefix, read_trail
from shared.registry.metadata import decode_metadata
from shared.registry.records import UNSET, Expected, is_version_number, version_prefix
from shared.registry.registry import ModelRegistry, list_models
from shared.serving.cache import DEFAULT_ALIAS
from shared.store import ObjectStore, open_store
from shared.store import bucket as bucket_settings
from shared.store.bucket import BucketSettings
from shared.store.check import check_store
from shared.store.local import LocalStore
from shared.training.job import TrainingOutcome, train_from_dataset
from shared.training.model_card import render_model_card
from shared.training.pipeline import check_params


def _print_outcome(outcome: TrainingOutcome) -> None:
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if outcome.status == "registered":
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(outcome.metrics.items()))
        print(
            f"registered {outcome.model} version {outcome.version} as {outcome.alias} ({metrics})"
        )
    elif outcome.status == "duplicate":
        print(f"{outcome.data_key} was already trained as version {outcome.version}; nothing to do")
    elif outcome.status == "rejected":
        print(
            f"{outcome.model} version {outcome.version} was trained but rejected, "
            f"never served: {outcome.reason}",
            file=sys.stderr,
        )
    else:
        print(f"training of {outcome.model} failed: {outcome.reason}", file=sys.stderr)


def _challenge(store: ObjectStore, outcome: TrainingOutcome) -> None:
    """On a local store, judge a new staging version at once, as the deployed trigger does."""
    if outcome.status != "registered" or outcome.alias != "staging":
        return
    result = consider(store, outcome.model, actor="rule")
    if result.decision is not None:
        verb = "promoted to production" if result.promoted else "kept in staging"
        print(f"{outcome.model} v{result.decision.challenger} {verb}: {result.note}")


def upload(
    store: ObjectStore, path: Path, model: str, spec_path: Path | None
) -> TrainingOutcome | None:
    """Put a CSV (and optionally its spec) where the trigger expects it; train if local."""
    validate_model_name(model)
    if spec_path is not None:
        body = spec_path.read_bytes()
        # Refuse a bad spec before touching the store, parameters included (scikit-learn's
        # own check, as training runs it): an uploaded spec that can only fail would fail
        # every training of the model until replaced.
        spec = parse_spec(body, source=str(spec_path))
        try:
            check_params(spec)
        except SpecError as exc:
            raise SpecError(f"{spec_path}: {exc}") from None
        store.put(spec_key(model), body, content_type="application/json")
    key = f"datasets/{model}/{path.name}"
    store.put(key, path.read_bytes(), content_type="text/csv")
    print(f"uploaded {path} to {store.uri}/{key}")
    if isinstance(store, LocalStore):
        return train_from_dataset(store, key, trigger="mlops upload")
    print("the deployed training function picks it up from the bucket event")
    return None


def cmd_upload(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops upload: put a CSV (and spec) in the store; train in-process if local."""
    outcome = upload(store, Path(args.file), args.model, Path(args.spec) if args.spec else None)
    if outcome is not None:
        _print_outcome(outcome)
        _challenge(store, outcome)
        return 1 if outcome.status == "failed" else 0
    return 0


def cmd_train(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops train: train from a dataset key already in the store."""
    outcome = train_from_dataset(store, args.data_key, trigger="mlops train")
    _print_outcome(outcome)
    _challenge(store, outcome)
    return 1 if outcome.status == "failed" else 0


def cmd_models(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops models: registered models and their aliases."""
    for model in list_models(store):
        record = ModelRegistry(store, model).load()
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(record.aliases.items())) or "no aliases"
        print(f"{model}: {len(record.versions)} version(s), {aliases}")
    return 0


def cmd_versions(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops versions: a model's versions, status, primary metric and aliases."""
    record = ModelRegistry(store, args.model).load()
    by_version: dict[int, list[str]] = {}
    for alias, version in record.aliases.items():
        by_version.setdefault(version, []).append(alias)
    for entry in record.versions:
        metric = (
            f"{entry.primary_metric}={entry.metric_value:.4f}"
            if entry.metric_value is not None
            else (entry.reason or "")
        )
        tags = ",".join(sorted(by_version.get(entry.version, [])))
        print(f"v{entry.version}\t{entry.status}\t{metric}\t{tags}\t{entry.data_key}")
    return 0


def cmd_show(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops show: a version's model card."""
    entry = ModelRegistry(store, args.model).load().resolve(args.version)
    body = store.get(version_prefix(args.model, entry.version) + "metadata.json").body
    print(render_model_card(decode_metadata(body)))
    return 0


def cmd_audit(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops audit: a model's audit trail, oldest first."""
    for event in read_trail(store, validate_model_name(args.model)):
        print(f"{event.at}\t{event.event}\t{json.dumps(event.details, sort_keys=True)}")
    return 0


def _use_store_for_serving(store: ObjectStore) -> None:
    # The inference function opens MLOPS_STORE itself, as it does on Lambda.
    os.environ["MLOPS_STORE"] = store.uri
    inference.reset_cache()


def cmd_serve(store: ObjectStore, args: argparse.Namespace) -> int:
    """Serve the HTTP API (both protocols) on this machine until interrupted."""
    from functions.local_server import build_server, stop_server  # chalice's: only here

    _use_store_for_serving(store)
    try:
        server = build_server(args.host, args.port)
    except OSError as exc:  # the port is taken, or the host is not this machine's
        raise MlopsError(
            f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}; is another server "
            "running there? Stop it, or choose another port with --port"
        ) from None
    print(f"serving {store.uri} on http://{args.host}:{args.port} (Ctrl-C stops)")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # A service manager (or `kill`) stops it with SIGTERM: end as Ctrl-C does, so that the
    # rows still buffered for capture are written, not lost with the process.
    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    # A repeated SIGTERM must not cut the drain short (what it answers is captured only
    # after); a second Ctrl-C still does, as a person pressing it twice means "now".
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not stop_server(server):
        print("some requests were still being answered when the server stopped", file=sys.stderr)
    inference.reset_cache()  # then writes every row buffered for capture
    return 0


def _http_json(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"{}")
        except json.JSONDecodeError:  # e.g. a proxy's HTML error page
            return err.code, {"error": f"HTTP {err.code} {err.reason} from {url}"}
    except urllib.error.URLError as err:  # nothing answered: no server, a wrong host
        reason = getattr(err.reason, "strerror", None) or err.reason
        raise MlopsError(
            f"no answer from {url}: {reason}; start the server (`mlops serve`) or leave out "
            "--url to predict in-process"
        ) from None
    except TimeoutError:
        raise MlopsError(f"no answer from {url} within 60 seconds") from None


def _feature_kinds(model: str, version: str | None, url: str | None) -> dict[str, str]:
    """Feature name -> 'numeric' or 'categorical', from the model's own metadata."""
    if url:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
        status, meta = _http_json(url.rstrip("/") + path)
        if status != 200:
            raise BadRequest(meta.get("error", f"HTTP {status} from {url}"))
        return {
            t["name"]: "numeric" if t["datatype"] != "BYTES" else "categorical"
            for t in meta["inputs"]
        }
    loaded = inference.model_cache().get(model, version)
    return {f.name: f.kind for f in loaded.features}


def records_from_csv(text: str, kinds: dict[str, str]) -> list[dict[str, Any]]:
    """CSV rows as records, read as training reads its files; other columns are left out.

    Numeric cells are numbers, or missing as training's markers say (empty, NA, null...,
    with whitespace around); categorical cells are kept as written, the empty one missing.
    A feature the header does not name is refused: every record would send it as null.
    """
    reader = csv.DictReader(io.StringIO(text))
    absent = [name for name in kinds if name not in (reader.fieldnames or [])]
    if absent:
        shown = ", ".join(repr(name) for name in absent[:10])
        more = f" and {len(absent) - 10} more" if len(absent) > 10 else ""
        raise BadRequest(f"the CSV has no column {shown}{more}; the model's features are needed")
    records = []
    for row in reader:
        record: dict[str, Any] = {}
        for name, kind in kinds.items():
            cell = row.get(name) or ""
            if kind != "numeric":
                record[name] = cell or None
                continue
            try:
                number = number_cell(cell)
            except CellError as exc:
                raise BadRequest(f"line {reader.line_num}, column {name!r}: {exc}") from None
            record[name] = None if math.isnan(number) else number
        records.append(record)
    return records


def cmd_predict(store: ObjectStore, args: argparse.Namespace) -> int:
    """Predict rows of a CSV (or records of a JSON file) over HTTP or in-process."""
    _use_store_for_serving(store)
    if args.json:
        document = json.loads(Path(args.json).read_text())
    else:
        kinds = _feature_kinds(args.model, args.version, args.url)
        # As training reads a file: a byte-order mark (Excel's CSV UTF-8) is not a name.
        text = Path(args.csv).read_text(encoding="utf-8-sig")
        document = {"records": records_from_csv(text, kinds)}
    if args.url:
        path = f"/models/{args.model}" + (f"/versions/{args.version}" if args.version else "")
        status, body = _http_json(args.url.rstrip("/") + path + "/predict", document)
    else:
        result = inference.predict_records(
            args.model, args.version, json.dumps(document).encode(), {}
        )
        status, body = result.status, result.body
        inference.reset_cache()  # writes the captured rows before the process ends
    if status != 200:
        # As every command says a failure: a client's mistake (unknown model, version or
        # feature, bad value) is a domain error, exit 2; the server failing is exit 1.
        print(f"error: {body.get('error', f'HTTP {status}')}", file=sys.stderr)
        return 2 if 400 <= status < 500 else 1
    print(json.dumps(body, indent=2))
    return 0


def _score_part_in_process(store_uri: str, job_json: bytes, index: int) -> tuple[int, int]:
    """A worker of `mlops batch --workers`: one part, the store reopened from its URI."""
    job = decode_job(job_json, "job.json")
    done = score_part(open_store(store_uri), job, index)
    return done.part, done.rows


class _BatchProgress:
    """rows, rows/s and time left on stderr, on a terminal only, at most 4 times a second."""

    def __init__(self, total_bytes: int) -> None:
        self.total = max(total_bytes, 1)
        self.bytes = self.rows = 0
        self.started = self.shown = time.monotonic()
        self.visible = sys.stderr.isatty()

    def __call__(self, bytes_read: int, rows: int) -> None:
        self.bytes += bytes_read
        self.rows += rows
        now = time.monotonic()
        if not self.visible or now - self.shown < 0.25:
            return
        self.shown = now
        elapsed = now - self.started
        share = min(self.bytes / self.total, 1.0)
        left = elapsed * (1 - share) / share if share > 0 else math.inf
        eta = f"{left:.0f}s left" if math.isfinite(left) else "estimating"
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        print(
            f"\r{share:6.1%}  {self.rows:,} rows  {rate:,.0f} rows/s  {eta}   ",
            end="",
            file=sys.stderr,
        )

    def end(self) -> None:
        if self.visible and self.shown > self.started:
            print(file=sys.stderr)


JSON = "application/json"


def cmd_batch(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops batch: score a file with a model, part by part. On a local store (or --here) the
    parts are scored by this machine; on S3 the upload starts the deployed job."""
    path = Path(args.file)
    suffix = _input_suffix(path.name)
    if suffix is None:
        raise BadRequest(
            f"{path}: a batch input is a CSV with a header line (.csv, .csv.gz) or JSON Lines "
            "(.jsonl, .jsonl.gz)"
        )
    name = args.name or path.name[: -len(suffix)]
    key = f"{input_prefix(args.model)}{name}{suffix}"
    id_columns = [c.strip() for c in args.id_columns.split(",")] if args.id_columns else None
    if not (args.here or isinstance(store, LocalStore)):
        return _start_deployed(store, args, path, key, name, id_columns)
    # --version goes to the job directly; the columns kept only through its request. On S3
    # the request says this machine scores the input, or its upload would start the
    # deployed job too.
    here = not isinstance(store, LocalStore)
    request, changed = _job_request(store, args.model, name, None, id_columns, here=here)
    if changed:
        store.put(request_key(args.model, name), encode_batch(request), content_type=JSON)
    if not _already_uploaded(store, key, path):
        store.put(key, path.read_bytes(), content_type="text/csv")
    progress = _BatchProgress(path.stat().st_size)
    part_bytes = max(1, int((args.part_mb or 64) * (1 << 20)))
    if (args.workers or 1) <= 1:
        manifest = run_job(
            store, key, version=args.version, part_bytes=part_bytes, progress=progress
        )
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        started = start_job(store, key, version=args.version, part_bytes=part_bytes)
        job = started.job
        # Spawned, not forked: onnxruntime's threads do not survive a fork.
        spawn = multiprocessing.get_context("spawn")
        job_json = encode_batch(job)
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=spawn) as pool:
            futures = [
                pool.submit(_score_part_in_process, store.uri, job_json, index)
                for index in range(len(job.parts))
            ]
            for future in as_completed(futures):
                part, rows = future.result()
                plan = job.parts[part]
                progress(plan.end - plan.start, rows)
        manifest = complete(store, job)
    progress.end()
    _print_manifest(store, manifest, name, args.out)
    return 0


def _input_suffix(filename: str) -> str | None:
    return next((s for s in INPUT_SUFFIXES if filename.endswith(s)), None)


def _print_manifest(store: ObjectStore, manifest: Manifest, name: str, out: str | None) -> None:
    where = output_prefix(manifest.model, name)
    print(
        f"{manifest.model} version {manifest.version} ({manifest.requested}): "
        f"{manifest.rows} rows scored, {manifest.rejected} rejected, "
        f"{len(manifest.parts)} parts in {manifest.seconds:.1f}s"
    )
    print(f"output: {_openable(store, where)}manifest.json")
    if manifest.rejected:
        print(f"rejects: {_openable(store, where)}rejects-*.csv.gz (line, reason)")
    if out:
        written = _download_output(store, manifest, Path(out))
        print(f"copied to {written}")


def _job_request(
    store: ObjectStore,
    model: str,
    name: str,
    version: str | None,
    id_columns: list[str] | None,
    *,
    here: bool = False,
) -> tuple[JobRequest, bool]:
    """The job request beside the input with what the command line gives over what it said
    before (and who scores it), and whether that differs from what is stored."""
    try:
        earlier = msgspec.json.decode(store.get(request_key(model, name)).body, type=JobRequest)
    except (ObjectNotFound, msgspec.DecodeError):
        earlier = JobRequest()
    request = JobRequest(
        version=version or earlier.version,
        id_columns=earlier.id_columns if id_columns is None else id_columns,
        scored_here=here,
    )
    return request, request != earlier


def _start_deployed(
    store: ObjectStore,
    args: argparse.Namespace,
    path: Path,
    key: str,
    name: str,
    id_columns: list[str] | None,
) -> int:
    """Upload the input (its job request first) for the deployed job, unless that job has
    started already from these bytes; follow it if asked."""
    if args.workers is not None or args.part_mb is not None:
        raise BadRequest(
            "--workers and --part-mb set how this machine scores (add --here); the deployed "
            "job's parts are its functions' (MLOPS_BATCH_PART_BYTES)"
        )
    model = args.model
    request, changed = _job_request(store, model, name, args.version, id_columns)
    job = _started_job(store, model, name)
    if job is not None and _same_job(job, path, request):
        print(f"{key}: job {job.job_id} started from these bytes already; not uploaded again")
    elif job is not None:
        raise BadRequest(
            f"{output_prefix(model, name)} already holds job {job.job_id} (input sha256 "
            f"{job.input.sha256[:12]}..., {job.requested}); upload this input under another "
            "name (--name), or delete that folder to score it again"
        )
    else:
        if changed:  # before the input: the job reads it when the upload starts it
            store.put(request_key(model, name), encode_batch(request), content_type=JSON)
        store.put(key, path.read_bytes(), content_type="text/csv")
        print(f"uploaded {path} to {store.uri}/{key}: the deployed job starts from it")
    if args.wait or args.out:
        return _follow(store, model, name, args.interval, args.out)
    again = _mlops(args)
    print(f"follow it: {again} batch status {model} {name} [--wait]")
    return 0


def _started_job(store: ObjectStore, model: str, name: str) -> BatchJob | None:
    where = job_key(model, name)
    try:
        return decode_job(store.get(where).body, where)
    except ObjectNotFound:
        return None


def _same_job(job: BatchJob, path: Path, request: JobRequest) -> bool:
    """Whether `job` is the one the deployed planner would start for this file and request."""
    if job.requested != (request.version or DEFAULT_ALIAS):
        return False
    if request.id_columns is not None and job.kept != request.id_columns:
        return False
    with path.open("rb") as file:
        return job.input.sha256 == hashlib.file_digest(file, "sha256").hexdigest()


# A job not started this long after its upload: say what may be missing (once).
START_HINT_SECONDS = 60.0


def cmd_batch_status(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops batch status: where a batch job stands; 0 unless it failed (1)."""
    model = validate_model_name(args.model)
    name = args.name[: -len(suffix)] if (suffix := _input_suffix(args.name)) else args.name
    if args.wait or args.out:
        return _follow(store, model, name, args.interval, args.out, as_json=args.json)
    return _report(store, read_status(store, model, name), None, as_json=args.json)


def _follow(
    store: ObjectStore,
    model: str,
    name: str,
    interval: float,
    out: str | None,
    *,
    as_json: bool = False,
) -> int:
    """Look at the job every `interval` seconds until it is complete or failed; a changed
    state on stderr (one line rewritten on a terminal)."""
    live = sys.stderr.isatty()
    known: dict[int, PartDone] = {}
    shown = ""
    began = time.monotonic()
    hinted = False
    try:
        while True:
            status = read_status(store, model, name, known)
            if status.state in ("complete", "failed"):
                break
            line = _status_line(status)
            if line != shown:
                print(f"\r{line}   " if live else line, end="" if live else "\n", file=sys.stderr)
                sys.stderr.flush()
                shown = line
            waited = time.monotonic() - began
            if status.state == "waiting" and not hinted and waited > START_HINT_SECONDS:
                hinted = True
                print(
                    f"\nno job has started from {status.input_key} in {waited:.0f}s: is the "
                    "stack deployed with its trigger on this bucket? (--here scores the "
                    "file from this machine)",
                    file=sys.stderr,
                )
            time.sleep(interval)
    except KeyboardInterrupt:
        print(f"\nstopped following; the job goes on: mlops batch status {model} {name}")
        return 130
    if live and shown:
        print(file=sys.stderr)
    return _report(store, status, out, as_json=as_json)


def _status_line(status: JobStatus) -> str:
    where = f"{status.model}/{status.name}"
    if status.state == "waiting":
        return f"{where}: waiting for the deployed job to start from {status.input_key}"
    version = f" (version {status.job.version})" if status.job is not None else ""
    total = status.parts_total if status.parts_total is not None else "?"
    return (
        f"{where}: {status.state}, {status.parts_done}/{total} parts, "
        f"{status.rows:,} rows scored, {status.rejected:,} rejected{version}"
    )


def _report(
    store: ObjectStore, status: JobStatus, out: str | None, *, as_json: bool = False
) -> int:
    """The status printed: the manifest's summary once complete, why if it failed."""
    failed = 1 if status.state == "failed" else 0
    if as_json:
        print(json.dumps(_status_document(status), indent=2))
        return failed
    if status.manifest is not None and status.state == "complete":
        _print_manifest(store, status.manifest, status.name, out)
        return 0
    print(_status_line(status))
    for failure in status.failures:
        tries = f" after {failure.attempts} attempts" if failure.attempts else ""
        what = "could not start" if failure.part is None else f"part {failure.part} failed"
        print(
            f"error: {status.model}/{status.name} {what} ({failure.condition}{tries}): "
            f"{failure.error}",
            file=sys.stderr,
        )
    if any(f.part is not None for f in status.failures):
        print(
            "the parts done are kept: score the rest from this machine with "
            f"`mlops batch {status.model} <the same file> --here` (the same job and version), "
            "or upload the input again under another name",
            file=sys.stderr,
        )
    return failed


def _status_document(status: JobStatus) -> dict[str, Any]:
    return {
        "model": status.model,
        "name": status.name,
        "state": status.state,
        "input_key": status.input_key,
        "job_id": status.job.job_id if status.job is not None else None,
        "version": status.job.version if status.job is not None else None,
        "parts_done": status.parts_done,
        "parts_total": status.parts_total,
        "rows": status.rows,
        "rejected": status.rejected,
        "failures": msgspec.to_builtins(list(status.failures)),
        "manifest": msgspec.to_builtins(status.manifest),
    }


def _already_uploaded(store: ObjectStore, key: str, path: Path) -> bool:
    """Whether `key` holds the file's bytes already (a single-part upload's ETag is its MD5)."""
    info = store.head(key)
    if info is None:
        return False
    # Not a security check: at worst a file is uploaded again. Read in pieces (file_digest):
    # a file already uploaded is never held whole.
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False))
    return info.etag.strip('"') == digest.hexdigest()


def _download_output(store: ObjectStore, manifest: Manifest, folder: Path) -> Path:
    """The scored parts as one CSV (one header), and the rejects beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(manifest.input.key).name
    stem = next(name[: -len(s)] for s in INPUT_SUFFIXES if name.endswith(s))
    target = folder / f"{stem}.scored.csv"
    with target.open("wb") as out:
        for number, done in enumerate(manifest.parts):
            text = gzip.decompress(store.get(done.output_key).body)
            out.write(text if number == 0 else text.split(b"\n", 1)[1])
    for done in manifest.parts:
        if done.rejects_key:
            (folder / Path(done.rejects_key).name).write_bytes(store.get(done.rejects_key).body)
    return target


def breast_cancer_csv() -> bytes:
    """scikit-learn's breast-cancer data as a CSV with a readable `diagnosis` target."""
    from sklearn.datasets import load_breast_cancer  # only the demo needs it

    data = load_breast_cancer()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*data.feature_names, "diagnosis"])
    for row, label in zip(data.data, data.target, strict=True):
        writer.writerow([*(repr(float(v)) for v in row), data.target_names[label]])
    return out.getvalue().encode()


def cmd_demo(store: ObjectStore, args: argparse.Namespace) -> int:
    """Train the breast-cancer model end to end on the given store (or the lifecycle)."""
    if args.which == "lifecycle":
        from functions import lifecycle_demo  # only this demo needs it

        model = lifecycle_demo.unused_model_name(store)
        print(f"store: {store.uri}; model: {model}")
        weeks = lifecycle_demo.simulate(
            store, rows_per_week=args.rows, weeks=args.weeks, model=model
        )
        last = window_id(lifecycle_demo.START + timedelta(weeks=len(weeks)), 168)
        print(f"\nreports, one a week: {_openable(store, report_prefix(model))}")
        print(f"open the last week's page: {_openable(store, report_key(model, last, 'html'))}")
        again = _mlops(args)
        print(f"its versions: {again} versions {model}; its audit trail: {again} audit {model}")
        return 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data_path = workdir / "breast_cancer.csv"
    data_path.write_bytes(breast_cancer_csv())
    spec_path = workdir / "breast_cancer.spec.json"
    spec_path.write_text(json.dumps({"target": "diagnosis", "estimator": "linear"}, indent=2))
    print(f"store: {store.uri}")
    outcome = upload(store, data_path, "breast-cancer", spec_path)
    if outcome is None:
        return 0
    _print_outcome(outcome)
    if outcome.status == "failed" or outcome.version is None:
        return 1
    print()
    cmd_versions(store, argparse.Namespace(model="breast-cancer"))
    print()
    cmd_show(store, argparse.Namespace(model="breast-cancer", version=str(outcome.version)))
    return _demo_serving(store, data_path, args.store)


def _demo_serving(store: ObjectStore, data_path: Path, store_arg: str | None) -> int:
    """Serve over real HTTP on loopback and predict with both protocols."""
    from functions.local_server import running_server

    _use_store_for_serving(store)
    every_row = list(csv.DictReader(io.StringIO(data_path.read_text())))
    # Two patients of each diagnosis, so both classes show up in the answers.
    rows = [r for r in every_row if r["diagnosis"] == "malignant"][:2]
    rows += [r for r in every_row if r["diagnosis"] == "benign"][:2]
    features = [name for name in rows[0] if name != "diagnosis"]
    records = [{name: float(row[name]) for name in features} for row in rows]
    with running_server() as url:
        print(f"serving on {url}")
        status, body = _http_json(
            f"{url}/models/breast-cancer/predict", {"id": "demo-1", "records": records}
        )
        print(f"POST /models/breast-cancer/predict -> {status}")
        print(json.dumps(body))
        matrix = [[record[name] for name in features] for record in records]
        status, body = _http_json(
            f"{url}/v2/models/breast-cancer/infer",
            {
                "id": "demo-2",
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [len(matrix), len(features)],
                        "datatype": "FP64",
                        "data": matrix,
                    }
                ],
            },
        )
        print(f"POST /v2/models/breast-cancer/infer (Open Inference Protocol) -> {status}")
        print(json.dumps(body))
    truth = [row["diagnosis"] for row in rows]
    print(f"true diagnoses of those rows: {truth}")
    if status != 200:
        return 1
    # The predictions above were captured; check this hour's window of them.
    inference.reset_cache()
    now = datetime.now(UTC)
    window = window_id(now.replace(minute=0, second=0, microsecond=0), 1)
    print()
    cmd_monitor(
        store, argparse.Namespace(model="breast-cancer", window=window, fail_on=frozenset())
    )
    again = _mlops(argparse.Namespace(store=store_arg))
    print(
        "\nnext:\n"
        "  open the report page above in a browser\n"
        f"  {again} serve            # the HTTP API on http://127.0.0.1:8000, then:\n"
        f"  {again} predict breast-cancer --csv {data_path} --url http://127.0.0.1:8000\n"
        f"  {again} upload your.csv --model yours --spec your.spec.json   # your own data"
    )
    return 0


def cmd_labels(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops labels: check a ground-truth CSV as the monitoring check reads it, then upload it."""
    path = Path(args.file)
    body = path.read_bytes()
    entry = ModelRegistry(store, args.model).load().resolve("production")
    meta = decode_metadata(
        store.get(version_prefix(args.model, entry.version) + "metadata.json").body
    )
    # Refused here (LabelFileError, exit 2) before anything is written: in the store a bad
    # file would only be skipped by every check and named in its report.
    values = check_label_file(body, str(path), meta)
    key = labels_prefix(args.model) + path.name
    try:
        earlier = store.get(key).body
    except ObjectNotFound:
        earlier = None
    if earlier == body:
        print(f"{store.uri}/{key} holds this file already; nothing to do")
        return 0
    if earlier is not None:
        # Not over the earlier file of that name: its labels would be lost with it.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        key = f"{labels_prefix(args.model)}{path.stem}-{stamp}{path.suffix}"
    store.put(key, body, content_type="text/csv")
    print(f"checked {path}: {len(values)} labels of {meta.target!r}, usable by v{meta.version}")
    print(f"uploaded to {store.uri}/{key}")
    hours = meta.spec.get("monitoring", {}).get("label_window_hours")
    print(
        f"next: `{_mlops(args)} monitor {args.model}` joins them to the rows captured with "
        f"those request ids (up to {hours} hours before the end of the window it checks)"
    )
    return 0


def _mlops(args: argparse.Namespace) -> str:
    """The command again, on the same store: for the next steps a command suggests."""
    return "mlops" + (f" --store {args.store}" if args.store else "")


def _openable(store: ObjectStore, key: str) -> str:
    """Where a person finds `key`: a local store's file (relative to here when below it), or
    the object's URI."""
    if not isinstance(store, LocalStore):
        return f"{store.uri}/{key}"
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(store.uri).path)) / key
    with contextlib.suppress(ValueError):  # not below the working directory
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _cli_actor() -> str:
    # Who moved an alias from this machine: recorded in the alias history and the audit.
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _expected(value: str | None) -> Expected:
    if value is None:
        return UNSET
    if value == "none":
        return None
    if not is_version_number(value):
        raise BadRequest(f"--expect takes a version number or 'none', got {value[:20]!r}")
    return int(value)


def cmd_promote(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops promote: point an alias (production by default) at a version, by hand."""
    if not is_version_number(args.version):
        raise BadRequest(f"version must be a number, got {args.version[:20]!r}")
    registry = ModelRegistry(store, args.model)
    registry.load()
    record = registry.set_alias(
        args.alias,
        int(args.version),
        reason=args.reason,
        actor=_cli_actor(),
        expected=_expected(args.expect),
    )
    aliases = ", ".join(f"{a}={v}" for a, v in sorted(record.aliases.items()))
    print(f"{args.model}: {aliases}")
    return 0


def cmd_rollback(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops rollback: production back to the version it pointed at before."""
    registry = ModelRegistry(store, args.model)
    registry.load()
    _, source, target = registry.rollback(
        reason=args.reason, actor=_cli_actor(), expected=_expected(args.expect)
    )
    print(f"{args.model}: production {source} -> {target}")
    return 0


def cmd_monitor(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops monitor: check a model's window (default: the last complete one)."""
    started = time.monotonic()
    shown = False

    def progress(done: int, total: int) -> None:
        nonlocal shown
        # Only on a terminal, and only once the check takes more than a moment.
        if sys.stderr.isatty() and (shown or time.monotonic() - started > 1.0):
            shown = True
            print(f"\rchecking {args.model}: {done}/{total} capture files", end="", file=sys.stderr)

    window = args.window
    if window == "current":  # the hour in progress, traffic served a moment ago included
        window = window_id(datetime.now(UTC).replace(minute=0, second=0, microsecond=0), 1)
    outcome = check_model(store, args.model, window, progress=progress)
    if shown:
        print(file=sys.stderr)
    report = decode_report(store.get(outcome.report_key).body, outcome.report_key)
    found = Counter(f.kind for section in report.versions for f in section.findings)
    tally = "".join(f", {n} {kind.replace('_', ' ')}" for kind, n in sorted(found.items()))
    print(f"{report.model} {report.window}: {report.verdict} ({report.rows} rows{tally})")
    # The reasons name every finding (column, what, how much) in the report's words.
    for reason in report.reasons:
        print(f"  {reason}")
    if report.verdict == "insufficient_data" and (args.window is None or report.rows == 0):
        # Rows served a moment ago are not in the store yet, or not in the window checked.
        print(
            f"  the window checked is {report.window}"
            + (" (the last complete one)" if args.window is None else "")
            + "; a running `mlops serve` holds the rows it answered until its batch fills "
            "(captures.batch_rows) or waits its longest (captures.max_wait_seconds), and "
            "writes them all when it stops; check the hour in progress with --window current"
        )
    page = outcome.report_key.removesuffix(".json") + ".html"
    print(f"report: {_openable(store, page)} (and .json beside it)")
    result = monitoring.retrain(store, outcome)
    if result is not None and result.started and result.data_key is not None:
        print(f"retraining: {result.reason} -> {result.data_key}")
        if isinstance(store, LocalStore):  # S3 has the deployed trigger for that
            trained = train_from_dataset(store, result.data_key, trigger="mlops monitor")
            _print_outcome(trained)
            _challenge(store, trained)
    elif result is not None:
        print(f"no retraining: {result.reason}")
    if report.verdict in args.fail_on:
        # Asked for: cron and CI act on a window they care about (docs/alerts.md).
        print(f"failing: the verdict {report.verdict} is in --fail-on", file=sys.stderr)
        return FAIL_ON_EXIT
    return 0


# `mlops monitor --fail-on`: a window whose verdict was named; 1 and 2 mean other things.
FAIL_ON_EXIT = 3
VERDICTS = ("ok", "insufficient_data", "drift", "decay", "data_problem")


def _verdicts(text: str) -> frozenset[str]:
    named = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(named - set(VERDICTS))
    if unknown:
        raise argparse.ArgumentTypeError(f"{unknown} are no verdicts; choose from {VERDICTS}")
    return named


def cmd_watch(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops watch: print a model's audit records as they are written, until Ctrl-C."""
    model = validate_model_name(args.model)
    seen = {info.key for info in store.list(audit_prefix(model))}
    print(f"watching {store.uri} for {model}'s decisions (Ctrl-C stops)", flush=True)
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        while deadline is None or time.monotonic() < deadline:
            fresh = sorted(
                info.key for info in store.list(audit_prefix(model)) if info.key not in seen
            )
            events = []
            for key in fresh:
                seen.add(key)
                events.append(msgspec.json.decode(store.get(key).body, type=AuditEvent))
            for event in sorted(events, key=lambda e: e.at):
                details = json.dumps(event.details, sort_keys=True)
                print(f"{event.at}\t{event.event}\t{details}", flush=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def cmd_store(store: ObjectStore, args: argparse.Namespace) -> int:
    """mlops store check: probe every guarantee the project relies on; 0 if trusted, else 1."""
    print(f"checking {store.uri} on scratch keys under store-check/ ...")
    verdict = check_store(store)
    marks = {True: "held", False: "FAILED", None: "n/a"}
    for probe in verdict.probes:
        needed = " (the registry needs it)" if probe.registry_needs and not probe.held else ""
        print(f"  {marks[probe.held]:>6}  {probe.name}: {probe.detail}{needed}")
    if not verdict.trusted:
        print(f"error: {verdict.refusal()}", file=sys.stderr)
        return 1
    others = [probe.name for probe in verdict.failed]
    caveat = f", except: {', '.join(others)}" if others else ""
    print(f"{store.uri}: the registry can be kept here{caveat} (verdict in store-check/)")
    return 0


def _bucket_target(args: argparse.Namespace) -> tuple[str, BucketSettings]:
    """The bucket and its settings: flags, else the Chalice stage's, else MLOPS_STORE's bucket.

    A stage's ``data_bucket`` settings (top level of .chalice/config.json, then the stage's)
    override the defaults; --captures-days and --reports-days override both.
    """
    values: dict[str, Any] = {}
    bucket = args.bucket
    if args.stage:
        config = json.loads(Path(args.config).read_text())
        stage = config.get("stages", {}).get(args.stage)
        if stage is None:
            raise StoreConfigError(f"no stage {args.stage!r} in {args.config}")
        values = {**config.get("data_bucket", {}), **stage.get("data_bucket", {})}
        env = {**config.get("environment_variables", {}), **stage.get("environment_variables", {})}
        bucket = bucket or env.get("MLOPS_BUCKET")
    if not bucket:
        store = os.environ.get("MLOPS_STORE", "")
        bucket = store.removeprefix("s3://").split("/")[0] if store.startswith("s3://") else None
    if not bucket:
        raise StoreConfigError("name the bucket: --bucket, --stage or MLOPS_STORE=s3://bucket")
    for name in ("captures_days", "reports_days"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return bucket, BucketSettings.from_mapping(values)


def cmd_bucket(args: argparse.Namespace) -> int:
    """mlops bucket create|check: the data bucket's protective settings, made or verified.

    Exit 0: every setting in place; 1: the bucket exists but settings are missing (each
    named: not applied, and why, or found different); 2 (from main): it could not be made
    or reached.
    """
    name, settings = _bucket_target(args)
    client = bucket_settings.s3_client(args.region)
    not_applied: list[str] = []
    if args.action == "create":
        created, not_applied = bucket_settings.create_bucket(client, name, settings)
        print(f"{'created' if created else 'updated'} s3://{name}: {settings}")
        for line in not_applied:
            print(f"s3://{name}: {line}", file=sys.stderr)
    # Each setting not applied is said once, above; the check adds what else differs.
    skip = {line.split(":")[0] for line in not_applied}
    problems = bucket_settings.check_bucket(client, name, settings, skip=skip)
    for problem in problems:
        print(f"s3://{name}: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"s3://{name}: public access blocked, encrypted, versioned, TLS only, captures "
            f"expire after {settings.captures_days} days and reports after "
            f"{settings.reports_days}"
        )
    return 1 if problems or not_applied else 0


def build_parser() -> argparse.ArgumentParser:
    """The command line; each sub-command maps to one function above."""
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mlops {shared.__version__}")
    parser.add_argument(
        "--store",
        help="s3://bucket[/prefix] or a folder (default: $MLOPS_STORE, else ./.mlops-store)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("upload", help="upload a CSV under datasets/<model>/ (trains if local)")
    p.add_argument("file")
    p.add_argument("--model", required=True)
    p.add_argument("--spec", help="a model spec JSON file to upload first")
    p.set_defaults(func=cmd_upload)
    p = sub.add_parser("train", help="train from a dataset key already in the store")
    p.add_argument("data_key", help="e.g. datasets/<model>/data.csv")
    p.set_defaults(func=cmd_train)
    sub.add_parser("models", help="list registered models").set_defaults(func=cmd_models)
    p = sub.add_parser("versions", help="list a model's versions and aliases")
    p.add_argument("model")
    p.set_defaults(func=cmd_versions)
    p = sub.add_parser("show", help="print a version's model card")
    p.add_argument("model")
    p.add_argument("version", nargs="?", default="production", help="number, alias or latest")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("audit", help="print a model's audit trail")
    p.add_argument("model")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("serve", help="serve the HTTP API on this machine (chalice local)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("predict", help="predict the rows of a CSV (or a records JSON file)")
    p.add_argument("model")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--csv", help="rows with a header; extra columns (e.g. the target) are ignored"
    )
    source.add_argument("--json", help='a request body: {"records": [...]}')
    p.add_argument("--version", help="number, production, staging or latest (default production)")
    p.add_argument(
        "--url", help="a running server, e.g. http://127.0.0.1:8000 (default: in-process)"
    )
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser(
        "batch",
        help="score a CSV (.csv, .csv.gz) or JSON Lines (.jsonl, .jsonl.gz) with a model, "
        "part by part: output, rejects and manifest under batch/<model>/output/<name>/; on S3 "
        "the deployed job scores it (`mlops batch status` follows it)",
    )
    p.add_argument("model")
    p.add_argument("file", help="a CSV with a header naming every feature; other columns are kept")
    p.add_argument(
        "--version", help="number, alias or latest (default: the job request's, else production)"
    )
    p.add_argument(
        "--id-columns",
        help="comma-separated input columns repeated in the output (default: every column "
        "of a CSV, no field of JSON Lines); kept in <name>.job.json beside the input",
    )
    p.add_argument("--name", help="the input's name in the store (default: the file's)")
    p.add_argument(
        "--here",
        action="store_true",
        help="on S3, score on this machine instead of starting the deployed job",
    )
    p.add_argument("--workers", type=int, help="here: processes scoring parts at once (1)")
    p.add_argument("--part-mb", type=float, help="here: part size in MiB (default 64)")
    p.add_argument(
        "--wait", action="store_true", help="on S3: follow the deployed job until it ends"
    )
    p.add_argument("--out", help="also copy the scored rows (one CSV) and rejects to this folder")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between looks (5)")
    p.set_defaults(func=cmd_batch)
    p = sub.add_parser(
        "batch-status",
        help="where a batch job stands (also `mlops batch status`): parts done, rows scored "
        "and rejected, a failure and why, the manifest once complete; exit 1 if it failed",
    )
    p.add_argument("model")
    p.add_argument("name", help="the input's name: its file name, with or without .csv etc.")
    p.add_argument("--wait", action="store_true", help="follow it until complete or failed")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between looks (5)")
    p.add_argument("--out", help="once complete, copy the scored rows and rejects here")
    p.add_argument("--json", action="store_true", help="the status, manifest included, as JSON")
    p.set_defaults(func=cmd_batch_status)
    p = sub.add_parser(
        "labels",
        help="check a ground-truth CSV (request_id, row, the target) as monitoring reads it, "
        "then upload it under labels/<model>/",
    )
    p.add_argument("model")
    p.add_argument("file", help="a CSV: request_id, optionally row, and the target or label")
    p.set_defaults(func=cmd_labels)
    p = sub.add_parser("promote", help="point production (or --alias) at a version")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--alias", default="production", choices=["production", "staging"])
    p.add_argument("--reason", default="promoted by hand")
    p.add_argument(
        "--expect", help="only if the alias points at this version now (a number or 'none')"
    )
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("rollback", help="production back to the version it pointed at before")
    p.add_argument("model")
    p.add_argument("--reason", default="rolled back by hand")
    p.add_argument("--expect", help="only if production points at this version now")
    p.set_defaults(func=cmd_rollback)
    p = sub.add_parser("monitor", help="check a model's captured traffic for drift and decay")
    p.add_argument("model")
    p.add_argument(
        "--window",
        help="e.g. 2026-11-30T10-1h (UTC start hour and length), or current (the hour in "
        "progress); default: the last complete one",
    )
    p.add_argument(
        "--fail-on",
        type=_verdicts,
        default=frozenset(),
        metavar="VERDICTS",
        help=f"exit {FAIL_ON_EXIT} if the window's verdict is one of these, comma-separated "
        "(e.g. drift,decay,data_problem)",
    )
    p.set_defaults(func=cmd_monitor)
    p = sub.add_parser("watch", help="print a model's decisions (audit records) as they happen")
    p.add_argument("model")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between looks (2)")
    p.add_argument("--for", dest="seconds", type=float, help="stop after this many seconds")
    p.set_defaults(func=cmd_watch)
    p = sub.add_parser(
        "demo",
        help="breast-cancer: train, serve, predict over HTTP, monitor; lifecycle: eight "
        "simulated weeks of a shop's model kept current",
    )
    p.add_argument(
        "which", nargs="?", default="breast-cancer", choices=["breast-cancer", "lifecycle"]
    )
    p.add_argument("--workdir", default=".mlops-demo", help="where to write the demo CSV")
    p.add_argument("--rows", type=int, default=3000, help="lifecycle: shoppers per week")
    p.add_argument("--weeks", type=int, default=8, help="lifecycle: weeks after week 0")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser(
        "store",
        help="check that the store keeps every guarantee the registry relies on "
        "(conditional writes, read-after-write, versions, listing order)",
    )
    p.add_argument("action", choices=["check"])
    p.set_defaults(func=cmd_store)
    p = sub.add_parser(
        "bucket",
        help="create or check the S3 data bucket's settings (public access blocked, "
        "encryption, versioning, TLS only, lifecycle)",
    )
    p.add_argument("action", choices=["create", "check"])
    p.add_argument("--bucket", help="default: the stage's MLOPS_BUCKET, else MLOPS_STORE's")
    p.add_argument("--stage", help="a Chalice stage: its MLOPS_BUCKET and data_bucket settings")
    p.add_argument("--config", default=".chalice/config.json", help="the Chalice config file")
    p.add_argument("--region", help="default: boto3's (AWS_DEFAULT_REGION, ~/.aws/config)")
    p.add_argument("--captures-days", type=int, help="captures/ expire after (default 90)")
    p.add_argument("--reports-days", type=int, help="monitoring/ expires after (default 400)")
    p.set_defaults(func=cmd_bucket)
    for name, command in sub.choices.items():
        if name != "bucket":  # `mlops versions churn --store s3://b` as well as before it
            command.add_argument("--store", default=argparse.SUPPRESS, help="as mlops --store")
    return parser


def _batch_status_alias(argv: Sequence[str]) -> list[str]:
    """`mlops batch status M N` as `mlops batch-status M N`: argparse's sub-commands cannot
    also take `batch M FILE`."""
    words = list(argv)
    for i, word in enumerate(words):
        if word.startswith("-") or (i and words[i - 1] == "--store"):
            continue  # an option before the command, or the store's value
        if word == "batch" and words[i + 1 : i + 2] == ["status"]:
            return [*words[:i], "batch-status", *words[i + 2 :]]
        break
    return words


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `mlops`; domain errors print their message and exit 2."""
    args = build_parser().parse_args(_batch_status_alias(sys.argv[1:] if argv is None else argv))
    where = ""  # what refused, for a one-line error: the store once opened, else the bucket's
    try:
        if args.command == "bucket":  # the bucket itself, not a store in it
            bucket_code: int = cmd_bucket(args)
            return bucket_code
        store = open_store(args.store)
        where = f"store {store.uri}"
        code: int = args.func(store, args)
        sys.stdout.flush()  # here, so that a reader gone away (`| head`) is caught below
    except BrokenPipeError:
        # The reader stopped reading: end quietly, as a program stopped by SIGPIPE does, and
        # point stdout at nothing so that the interpreter's last flush finds no pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file named on the command line: missing, unreadable...
        if exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except Exception as exc:
        # The store refused (credentials, a bucket policy, the network): say what it said in
        # one line rather than a traceback. botocore is not imported on a local store's path.
        if not type(exc).__module__.startswith("botocore"):
            raise
        if args.command == "bucket":
            endpoint = bucket_settings.s3_client(args.region).meta.endpoint_url
            where = f"S3 service at {endpoint}"
        print(f"error: the {where or 'store'} refused: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
