"""Batch scoring: upload a table, score it part by part, read the output and the manifest.

The truth for every probability is scikit-learn: the pipeline the registered version was
exported from, caught as training fitted it, run on the same rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import numpy as np
import pytest
from moto import mock_aws

from functions import batch as batch_function
from functions.cli import main
from shared.batch.job import run_job, score_part, start_job
from shared.batch.records import (
    JobFailure,
    Manifest,
    decode_failure,
    decode_job,
    decode_manifest,
    job_key,
    manifest_key,
    output_prefix,
    part_output_key,
)
from shared.batch.split import BadInput, scan_csv
from shared.batch.status import summarise
from shared.monitoring.job import check_model
from shared.monitoring.report import window_id
from shared.registry.audit import read_trail
from shared.store.base import ObjectStore
from shared.store.local import LocalStore
from shared.store.s3 import S3Store

FEATURES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, Any]]:
    """A store where "numbers" has versions 1 (production) and 2 (staging), and the
    scikit-learn pipeline of each, caught as training fitted it."""
    import shared.training.job as training_job
    from shared.training.job import train_from_dataset
    from tests.factories import numeric_csv

    root = tmp_path_factory.mktemp("batch-models")
    store = LocalStore(root)
    fitted: list[Any] = []
    real_fit = getattr(training_job, "fit_pipeline")  # noqa: B009 (job's own name for it)

    def catching(*args: Any, **kwargs: Any) -> Any:
        pipeline = real_fit(*args, **kwargs)
        fitted.append(pipeline)
        return pipeline

    pipelines: dict[int, Any] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training_job, "fit_pipeline", catching)
        for seed in (0, 1):
            key = f"datasets/numbers/data-{seed}.csv"
            store.put(key, numeric_csv(400, seed=seed))
            outcome = train_from_dataset(store, key, trigger="test")
            assert outcome.status == "registered", outcome.reason
            assert outcome.version is not None
            pipelines[outcome.version] = fitted[-1]
    return root, pipelines


@pytest.fixture
def local(models: tuple[Path, dict[int, Any]], tmp_path: Path) -> LocalStore:
    """A copy of the models' store of its own: jobs write into it."""
    shutil.copytree(models[0], tmp_path / "store")
    return LocalStore(tmp_path / "store")


@pytest.fixture
def s3(models: tuple[Path, dict[int, Any]], aws_env: None) -> Iterator[S3Store]:
    """The same models in a moto bucket."""
    with mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="batch-test")
        store = S3Store("batch-test", client=client)
        source = LocalStore(models[0])
        for info in source.list():
            store.put(info.key, source.get(info.key).body)
        yield store


def table(n: int, *, seed: int = 7, bad: dict[int, str] | None = None) -> tuple[bytes, np.ndarray]:
    """An input of `n` rows: an id, a free-text note (some holding a quoted newline), the
    four features and an extra column; and its feature matrix (NaN = missing)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[rng.random((n, 4)) < 0.05] = np.nan
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["customer_id", "note", *FEATURES, "segment"])
    for i in range(n):
        note = f'called twice,\nsaid "later" ({i})' if i % 7 == 0 else f"row {i}"
        cells = ["" if np.isnan(v) else repr(float(v)) for v in X[i]]
        if bad and i in bad:
            cells[1] = bad[i]
        writer.writerow([f"c{i:05d}", note, *cells, "gold" if i % 3 else "silver"])
    return out.getvalue().encode(), X


def output_rows(store: ObjectStore, model: str, name: str) -> list[dict[str, str]]:
    """Every scored row of a complete job, parts in order."""
    manifest = decode_manifest(store.get(manifest_key(model, name)).body, "manifest")
    rows: list[dict[str, str]] = []
    for done in manifest.parts:
        text = gzip.decompress(store.get(done.output_key).body).decode()
        rows += list(csv.DictReader(io.StringIO(text)))
    return rows


def assert_scored_as_sklearn(rows: list[dict[str, str]], X: np.ndarray, pipeline: Any) -> None:
    expected = pipeline.predict_proba(X.astype(np.float32))
    classes = [str(c) for c in pipeline.classes_]
    got = np.array([[float(r[f"probability_{c}"]) for c in classes] for r in rows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [r["prediction"] for r in rows] == [str(c) for c in pipeline.predict(X)]


# Splitting


def test_no_part_boundary_falls_inside_a_quoted_field_whatever_the_part_size() -> None:
    body, _ = table(40)
    whole = list(csv.reader(io.StringIO(body.decode())))
    assert any("\n" in row[1] for row in whole)  # the quoted newlines are there
    for part_bytes in range(1, len(body), 7):
        for chunk in (5, 4096):
            pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
            scan = scan_csv(pieces, part_bytes=part_bytes, name="t.csv")
            records: list[list[str]] = []
            for part in scan.parts:
                text = body[part.start : part.end].decode()
                # Each part parses alone into whole records, and its first line is the file's.
                assert text.count("\n")
                assert body[: part.start].count(b"\n") + 1 == part.first_line
                records += list(csv.reader(io.StringIO(text)))
            assert records == whole, part_bytes
    assert scan.columns == ("customer_id", "note", *FEATURES, "segment")


# Whole jobs, local and S3


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_job_scores_every_row_in_order_as_scikit_learn_does(
    backend: str, request: pytest.FixtureRequest, models: tuple[Path, dict[int, Any]]
) -> None:
    store: ObjectStore = request.getfixturevalue(backend)
    body, X = table(500)
    store.put("batch/numbers/input/week-49.csv", body)

    manifest = run_job(store, "batch/numbers/input/week-49.csv", part_bytes=4000)

    assert (manifest.version, manifest.rows, manifest.rejected) == (1, 500, 0)
    assert len(manifest.parts) > 5
    assert manifest.input.bytes == len(body)
    rows = output_rows(store, "numbers", "week-49")
    # Joined to the input's columns, row for row, across every part.
    assert [r["customer_id"] for r in rows] == [f"c{i:05d}" for i in range(500)]
    assert rows[7]["note"] == 'called twice,\nsaid "later" (7)'
    assert rows[1]["segment"] == "gold"
    assert_scored_as_sklearn(rows, X, models[1][1])


def test_a_gzip_input_is_scored_as_one_part(
    local: LocalStore, models: tuple[Path, dict[int, Any]]
) -> None:
    body, X = table(300)
    local.put("batch/numbers/input/w.csv.gz", gzip.compress(body))

    manifest = run_job(local, "batch/numbers/input/w.csv.gz", part_bytes=1000)

    assert (manifest.rows, len(manifest.parts)) == (300, 1)
    assert_scored_as_sklearn(output_rows(local, "numbers", "w"), X, models[1][1])


# Idempotence


def test_a_part_delivered_twice_writes_its_rows_once(local: LocalStore) -> None:
    body, _ = table(200)
    local.put("batch/numbers/input/w.csv", body)
    job = start_job(local, "batch/numbers/input/w.csv", part_bytes=3000).job

    first = score_part(local, job, 1)
    written = {i.key: i.etag for i in local.list("batch/numbers/output/")}
    second = score_part(local, job, 1)

    assert second == first
    assert {i.key: i.etag for i in local.list("batch/numbers/output/")} == written
    assert part_output_key(job, 1) in written
    # Until every part is done, nothing claims the output is complete.
    assert local.head(manifest_key("numbers", "w")) is None


def test_a_job_started_twice_for_the_same_bytes_scores_once(local: LocalStore) -> None:
    body, _ = table(200)
    local.put("batch/numbers/input/w.csv", body)
    first = run_job(local, "batch/numbers/input/w.csv", part_bytes=3000)
    written = {i.key: i.etag for i in local.list("batch/numbers/output/")}

    again = start_job(local, "batch/numbers/input/w.csv", part_bytes=3000)
    second = run_job(local, "batch/numbers/input/w.csv", part_bytes=3000)

    assert again.status == "complete"
    assert second == first
    assert {i.key: i.etag for i in local.list("batch/numbers/output/")} == written
    events = [e.event for e in read_trail(local, "numbers")]
    assert events.count("batch_started") == 1
    assert events.count("batch_completed") == 1
    assert "batch_duplicate_ignored" in events


def test_other_bytes_under_a_name_already_scored_are_refused_not_mixed(local: LocalStore) -> None:
    local.put("batch/numbers/input/w.csv", table(50)[0])
    run_job(local, "batch/numbers/input/w.csv")
    local.put("batch/numbers/input/w.csv", table(60, seed=3)[0])

    with pytest.raises(BadInput, match=r"already holds job .* under another name"):
        run_job(local, "batch/numbers/input/w.csv")


# Bad rows, bad files


def test_bad_rows_are_rejected_with_their_line_numbers_and_the_rest_scored(
    local: LocalStore, models: tuple[Path, dict[int, Any]]
) -> None:
    # Row i starts on line 2 + i, plus one line per earlier row holding a quoted newline
    # (rows 0, 7, 14...), plus one from line 21 on for the short row put there.
    body, X = table(40, bad={3: "abc", 12: "1,5", 30: "inf"})
    lines = body.decode().split("\n")
    lines.insert(20, "c99999,short row")
    local.put("batch/numbers/input/w.csv", "\n".join(lines).encode())

    manifest = run_job(local, "batch/numbers/input/w.csv", part_bytes=300)

    assert (manifest.rows, manifest.rejected) == (40 - 3, 4)
    rejects = []
    for done in manifest.parts:
        if done.rejects_key:
            text = gzip.decompress(local.get(done.rejects_key).body).decode()
            rejects += [(int(r["line"]), r["reason"]) for r in csv.DictReader(io.StringIO(text))]
    assert rejects == [
        (6, "column 'b': 'abc' is not a number"),
        (16, "column 'b': '1,5' is not a number; write numbers with a decimal point"),
        (21, "2 fields; the header has 7"),
        (38, "column 'b': 'inf' is not finite"),
    ]
    kept = [i for i in range(40) if i not in (3, 12, 30)]
    rows = output_rows(local, "numbers", "w")
    assert [r["customer_id"] for r in rows] == [f"c{i:05d}" for i in kept]
    assert_scored_as_sklearn(rows, X[kept], models[1][1])


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        (
            "batch/numbers/input/w.csv",
            b"1.0,2.0,3.0,4.0\n5.0,6.0,7.0,8.0\n",
            "the header has no column 'a', 'b', 'c', 'd'; its first line looks like data",
        ),
        (
            "batch/numbers/input/w.csv",
            b"a,b,c\n1,2,3\n",
            "batch/numbers/input/w.csv: the header has no column 'd'",
        ),
        (
            "batch/numbers/input/w.csv",
            "a,b,c,d,city\n1,2,3,4,Zürich\n".encode("latin-1"),
            r"batch/numbers/input/w.csv is not UTF-8 text \(line 2.*save it as UTF-8",
        ),
        ("batch/numbers/input/w.csv", b"", "is empty: the first line must be a header"),
        (
            "batch/nobody/input/w.csv",
            b"a,b,c,d\n1,2,3,4\n",
            "no model named 'nobody' is registered; upload its training data under datasets/",
        ),
    ],
    ids=["no-header", "missing-feature", "not-utf8", "empty", "no-model"],
)
def test_a_bad_file_fails_the_job_with_an_audit_record_and_no_manifest(
    local: LocalStore, key: str, body: bytes, message: str
) -> None:
    local.put(key, body)
    model = key.split("/")[1]

    with pytest.raises(BadInput, match=message):
        run_job(local, key)

    # No job.json, no part, no manifest: only the record of why, where status reads it.
    where = f"batch/{model}/output/w/failed/start.json"
    assert [info.key for info in local.list(f"batch/{model}/output/")] == [where]
    failure = decode_failure(local.get(where).body, where)
    assert (failure.part, failure.condition, failure.input_key) == (None, "bad_input", key)
    assert re.search(message, failure.error)
    failed = [e for e in read_trail(local, model) if e.event == "batch_failed"]
    assert len(failed) == 1
    assert failed[0].details["input_key"] == key


# Versions


def test_a_job_keeps_the_version_it_started_with_while_production_moves(
    local: LocalStore, models: tuple[Path, dict[int, Any]]
) -> None:
    body, X = table(300)
    local.put("batch/numbers/input/w.csv", body)
    job = start_job(local, "batch/numbers/input/w.csv", part_bytes=3000).job
    score_part(local, job, 0)
    assert main(["promote", "numbers", "2", "--store", local.uri]) == 0

    manifest = run_job(local, "batch/numbers/input/w.csv", part_bytes=3000)

    assert (manifest.version, manifest.requested) == (1, "production")
    assert_scored_as_sklearn(output_rows(local, "numbers", "w"), X, models[1][1])
    # A new input is scored by the version production points at now.
    local.put("batch/numbers/input/w2.csv", body)
    assert run_job(local, "batch/numbers/input/w2.csv").version == 2


def test_a_job_request_beside_the_input_names_the_version_and_the_columns_kept(
    local: LocalStore, models: tuple[Path, dict[int, Any]]
) -> None:
    body, X = table(100)
    local.put("batch/numbers/input/w.csv", body)
    local.put("batch/numbers/input/w.job.json", b'{"version": "2", "id_columns": ["customer_id"]}')

    manifest = run_job(local, "batch/numbers/input/w.csv")

    rows = output_rows(local, "numbers", "w")
    assert manifest.version == 2
    assert list(rows[0]) == ["customer_id", "prediction", "probability_0", "probability_1"]
    assert_scored_as_sklearn(rows, X, models[1][2])


# Monitoring


def test_a_sample_of_the_scored_rows_is_in_the_next_check(local: LocalStore) -> None:
    local.put("batch/numbers/input/w.csv", table(400)[0])
    run_job(local, "batch/numbers/input/w.csv", part_bytes=5000)

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    outcome = check_model(local, "numbers", window_id(hour, 1))

    # 1% of each block of each part, at least one row a block: a few rows, all role "batch".
    assert 4 <= outcome.rows <= 20
    captured = [
        info.key for info in local.list("captures/numbers/") if info.key.endswith(".jsonl.gz")
    ]
    lines = b"".join(gzip.decompress(local.get(k).body) for k in captured)
    assert lines.count(b'"role":"batch"') == outcome.rows


# The command and the deployed functions


def test_mlops_batch_scores_a_file_in_parts_on_two_workers(
    local: LocalStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], models: Any
) -> None:
    body, X = table(300)
    (tmp_path / "week.csv").write_bytes(body)

    code = main(
        ["batch", "numbers", str(tmp_path / "week.csv"), "--store", local.uri, "--workers", "2",
         "--part-mb", "0.004", "--out", str(tmp_path / "out")]
    )  # fmt: skip

    assert code == 0
    printed = capsys.readouterr().out
    assert "numbers version 1 (production): 300 rows scored, 0 rejected" in printed
    scored = list(csv.DictReader(io.StringIO((tmp_path / "out" / "week.scored.csv").read_text())))
    assert [r["customer_id"] for r in scored] == [f"c{i:05d}" for i in range(300)]
    assert_scored_as_sklearn(scored, X, models[1][1])


def test_the_upload_function_fans_parts_out_and_the_last_part_writes_the_manifest(
    s3: S3Store, models: tuple[Path, dict[int, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.batch.job.PART_BYTES", 5000)
    body, X = table(300)
    s3.put("batch/numbers/input/w.csv", body)
    s3.put("batch/numbers/input/w.job.json", b"{}")  # an upload that is no input: ignored
    sent: list[dict[str, Any]] = []
    event = {
        "Records": [
            {"s3": {"bucket": {"name": "batch-test"}, "object": {"key": k}}}
            for k in ("batch/numbers/input/w.job.json", "batch/numbers/input/w.csv")
        ]
    }

    started = batch_function.handle_upload(event, s3, invoke=sent.append)

    assert started == [job_key("numbers", "w")]
    assert len(sent) > 2
    answers = [batch_function.handle_part(payload, s3) for payload in reversed(sent)]
    batch_function.handle_part(sent[0], s3)  # Lambda's retry of a part: nothing new
    assert [a["complete"] for a in answers] == [False] * (len(sent) - 1) + [True]
    rows = output_rows(s3, "numbers", "w")
    assert [r["customer_id"] for r in rows] == [f"c{i:05d}" for i in range(300)]
    assert_scored_as_sklearn(rows, X, models[1][1])
    assert s3.head(output_prefix("numbers", "w") + "manifest.json") is not None


def test_json_lines_are_scored_and_bad_objects_rejected_by_line(
    local: LocalStore, models: tuple[Path, dict[int, Any]]
) -> None:
    _, X = table(60)
    lines = []
    for i in range(60):
        record: dict[str, Any] = {"customer_id": f"c{i:05d}", "note": 'say "hi"\n'}
        record |= {
            f: None if np.isnan(v) else float(v) for f, v in zip(FEATURES, X[i], strict=True)
        }
        lines.append(json.dumps(record))
    lines[4] = lines[4].replace('"a": ', '"a": "7", "_": ', 1)  # a number written as a string
    lines[9] = json.dumps({"customer_id": "x", "a": 1.0, "b": 2.0, "c": 3.0})  # no "d"
    lines[20] = "[1, 2, 3, 4]"
    lines.insert(30, "")  # a blank line: skipped, but it counts
    local.put("batch/numbers/input/w.jsonl.gz", gzip.compress("\n".join(lines).encode()))
    local.put("batch/numbers/input/w.job.json", b'{"id_columns": ["customer_id", "note"]}')

    manifest = run_job(local, "batch/numbers/input/w.jsonl.gz")

    assert (manifest.rows, manifest.rejected) == (57, 3)
    (done,) = manifest.parts
    assert done.rejects_key is not None
    text = gzip.decompress(local.get(done.rejects_key).body).decode()
    assert [(r["line"], r["reason"]) for r in csv.DictReader(io.StringIO(text))] == [
        ("5", "'a': expected a number or null, got '7'"),
        ("10", "no 'd' (null is a missing value)"),
        ("21", "not a JSON object of feature values"),
    ]
    rows = output_rows(local, "numbers", "w")
    kept = [i for i in range(60) if i not in (4, 9, 20)]
    assert [r["customer_id"] for r in rows] == [f"c{i:05d}" for i in kept]
    assert rows[0]["note"] == 'say "hi"\n'
    assert_scored_as_sklearn(rows, X[kept], models[1][1])


def test_json_lines_split_into_parts_keep_their_order(
    local: LocalStore, models: tuple[Path, dict[int, Any]]
) -> None:
    _, X = table(300)
    values = [[None if np.isnan(v) else float(v) for v in row] for row in X]
    lines = [
        json.dumps({"id": i} | dict(zip(FEATURES, values[i], strict=True))) for i in range(300)
    ]
    local.put("batch/numbers/input/w.jsonl", ("\n".join(lines) + "\n").encode())
    local.put("batch/numbers/input/w.job.json", b'{"id_columns": ["id"]}')

    manifest = run_job(local, "batch/numbers/input/w.jsonl", part_bytes=2000)

    assert (manifest.rows, manifest.rejected) == (300, 0)
    assert len(manifest.parts) > 5
    rows = output_rows(local, "numbers", "w")
    assert [r["id"] for r in rows] == [str(i) for i in range(300)]
    assert_scored_as_sklearn(rows, X, models[1][1])


def s3_event(*keys: str) -> dict[str, Any]:
    """An S3 notification of uploads to the test bucket (keys URL-encoded, as S3 sends them)."""
    return {
        "Records": [
            {"s3": {"bucket": {"name": "batch-test"}, "object": {"key": quote_plus(k, safe="/")}}}
            for k in keys
        ]
    }


def test_the_upload_function_starts_every_input_kind_and_nothing_else(
    s3: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deployed trigger is on the prefix batch/ alone: every object the jobs write there
    # invokes it too, and must start nothing.
    body, X = table(40)
    lines = [
        json.dumps(
            {"id": i} | {f: float(v) for f, v in zip(FEATURES, np.nan_to_num(row), strict=True)}
        )
        for i, row in enumerate(X)
    ]
    inputs = {
        "batch/numbers/input/a.csv.gz": gzip.compress(body),
        "batch/numbers/input/b.jsonl": "\n".join(lines).encode(),
        "batch/numbers/input/c d.jsonl.gz": gzip.compress("\n".join(lines).encode()),
    }
    for key, data in inputs.items():
        s3.put(key, data)
    others = [
        "batch/numbers/input/a.job.json",
        "batch/numbers/output/a/part-00000.csv.gz",
        "batch/numbers/output/a/parts/00000.json",
        "batch/numbers/output/a/manifest.json",
        "batch/Not A Model/input/x.csv",
        "batch/readme.txt",
    ]
    sent: list[dict[str, Any]] = []

    started = batch_function.handle_upload(s3_event(*inputs, *others), s3, invoke=sent.append)

    assert started == [job_key("numbers", n) for n in ("a", "b", "c d")]
    assert sorted(p["job"] for p in sent) == sorted(started)
    for payload in sent:
        batch_function.handle_part(payload, s3)
    for name in ("a", "b", "c d"):
        assert s3.head(manifest_key("numbers", name)) is not None


# What Lambda gives up on


def destination_record(payload: dict[str, Any], function: str) -> dict[str, Any]:
    """What Lambda sends an on-failure destination once it gives up on an asynchronous
    invocation: here a function that timed out three times."""
    request_id = "e4b46cbf-b738-4d1e-8880-a18cdf61200e"
    return {
        "version": "1.0",
        "timestamp": "2026-12-07T03:12:09.568Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": payload,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {request_id} Error: Task timed out after 900.00 seconds",
        },
    }


def test_a_part_lambda_gave_up_on_is_recorded_beside_the_job_and_in_the_audit_trail(
    s3: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.batch.job.PART_BYTES", 5000)
    s3.put("batch/numbers/input/w.csv", table(300)[0])
    sent: list[dict[str, Any]] = []
    batch_function.handle_upload(s3_event("batch/numbers/input/w.csv"), s3, invoke=sent.append)
    record = destination_record(sent[1], "serverless-mlops-dev-score_batch_part")

    assert batch_function.handle_failure(record, s3) == ["numbers/w"]

    where = "batch/numbers/output/w/failed/00001.json"
    failure = decode_failure(s3.get(where).body, where)
    assert (failure.part, failure.condition, failure.attempts) == (1, "RetriesExhausted", 3)
    assert failure.error == (
        "Sandbox.Timedout: RequestId: e4b46cbf-b738-4d1e-8880-a18cdf61200e Error: Task timed "
        "out after 900.00 seconds"
    )
    job = decode_job(s3.get(job_key("numbers", "w")).body, "job.json")
    assert (failure.job_id, failure.input_key) == (job.job_id, "batch/numbers/input/w.csv")
    (failed,) = [e for e in read_trail(s3, "numbers") if e.event == "batch_failed"]
    assert (failed.details["part"], failed.details["attempts"]) == (1, 3)
    assert failed.details["failure"] == where
    # No manifest: the job is not complete, and now says why.
    assert s3.head(manifest_key("numbers", "w")) is None


def test_a_job_lambda_could_not_start_is_recorded_with_the_upload_it_was(s3: S3Store) -> None:
    key = "batch/numbers/input/huge.csv"
    etag = s3.put(key, table(20)[0])
    event = s3_event(key)
    event["Records"][0]["s3"]["object"]["eTag"] = etag.strip('"')
    record = destination_record(event, "serverless-mlops-dev-on_batch_uploaded")

    assert batch_function.handle_failure(record, s3) == ["numbers/huge"]

    where = "batch/numbers/output/huge/failed/start.json"
    failure = decode_failure(s3.get(where).body, where)
    assert (failure.part, failure.input_key) == (None, key)
    assert failure.input_etag == etag.strip('"')


def test_a_destination_record_that_names_no_job_is_logged_not_raised(s3: S3Store) -> None:
    for payload in ({}, {"job": "models/x/registry.json", "part": 0}, {"job": 3}, s3_event()):
        record = destination_record(payload, "serverless-mlops-dev-score_batch_part")
        assert batch_function.handle_failure(record, s3) == []
    assert batch_function.handle_failure({"requestContext": "?", "requestPayload": []}, s3) == []
    assert not list(s3.list("batch/"))


def test_the_chalice_path_sends_what_lambda_gives_up_on_to_the_failure_recorder(
    aws_env: None,
) -> None:
    import boto3

    from infra import deploy

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "")
    with mock_aws():
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role = boto3.client("iam").create_role(
            RoleName="batch", AssumeRolePolicyDocument=json.dumps(trust)
        )["Role"]["Arn"]
        lam = boto3.client("lambda")
        arns = {
            name: lam.create_function(
                FunctionName=f"serverless-mlops-dev-{name}",
                Runtime="python3.12",
                Role=role,
                Handler=f"app.{name}",
                Code={"ZipFile": code.getvalue()},
            )["FunctionArn"]
            for name in ("on_batch_uploaded", "score_batch_part", "record_batch_failure")
        }

        wired = deploy.set_failure_destinations(lam, "serverless-mlops", "dev")

        assert set(wired) == {"on_batch_uploaded", "score_batch_part"}
        for name in wired:
            config = lam.get_function_event_invoke_config(FunctionName=arns[name])
            assert config["MaximumRetryAttempts"] == 2
            destination = config["DestinationConfig"]["OnFailure"]["Destination"]
            assert destination == arns["record_batch_failure"]


# The deployed job from the command line: started, followed, reported


class PlayedLambda:
    """Lambda's part of a deployed job, played where `mlops batch --wait` sleeps between two
    looks: the upload's S3 event at the first, then one queued part at each later one."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self.store, self.key = store, key
        self.queue: list[dict[str, Any]] = []
        self.looks = 0

    def __call__(self, seconds: float) -> None:
        if self.looks == 0:
            batch_function.handle_upload(s3_event(self.key), self.store, invoke=self.queue.append)
        elif self.queue:
            batch_function.handle_part(self.queue.pop(0), self.store)
        self.looks += 1


def test_mlops_batch_on_s3_starts_the_deployed_job_and_follows_it_to_the_manifest(
    s3: S3Store,
    models: tuple[Path, dict[int, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shared.batch.job.PART_BYTES", 5000)
    played = PlayedLambda(s3, "batch/numbers/input/week.csv")
    monkeypatch.setattr("functions.cli.time.sleep", played)
    body, X = table(300)
    (tmp_path / "week.csv").write_bytes(body)
    command = ["batch", "numbers", str(tmp_path / "week.csv"), "--store", "s3://batch-test"]

    code = main([*command, "--version", "2", "--id-columns", "customer_id", "--wait"])

    assert code == 0
    out, err = capsys.readouterr()
    assert "the deployed job starts from it" in out
    assert "numbers version 2 (2): 300 rows scored, 0 rejected" in out
    assert "output: s3://batch-test/batch/numbers/output/week/manifest.json" in out
    # Followed as it went: waiting for the upload's event, then part after part.
    assert "numbers/week: waiting for the deployed job to start" in err
    manifest = decode_manifest(s3.get(manifest_key("numbers", "week")).body, "manifest")
    parts = len(manifest.parts)
    assert parts > 3
    assert f"numbers/week: running, 1/{parts} parts" in err
    # The request went up before the input: the job read its version and columns.
    rows = output_rows(s3, "numbers", "week")
    assert list(rows[0]) == ["customer_id", "prediction", "probability_0", "probability_1"]
    assert [r["customer_id"] for r in rows] == [f"c{i:05d}" for i in range(300)]
    assert_scored_as_sklearn(rows, X, models[1][2])

    # The same again: the job that scored these bytes is found, nothing is uploaded.
    uploaded = s3.head("batch/numbers/input/week.csv")
    assert main([*command, "--version", "2"]) == 0
    assert "started from these bytes already; not uploaded again" in capsys.readouterr().out
    assert s3.head("batch/numbers/input/week.csv") == uploaded
    # Another version under the same name is refused here, before anything is uploaded.
    assert main([*command, "--version", "1"]) == 2
    assert "already holds job" in capsys.readouterr().err


def test_mlops_batch_status_reports_a_failed_part_and_the_rest_is_scored_from_here(
    s3: S3Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shared.batch.job.PART_BYTES", 5000)
    body, _ = table(300)
    s3.put("batch/numbers/input/w.csv", body)
    sent: list[dict[str, Any]] = []
    batch_function.handle_upload(s3_event("batch/numbers/input/w.csv"), s3, invoke=sent.append)
    done = batch_function.handle_part(sent[0], s3)
    record = destination_record(sent[1], "serverless-mlops-dev-score_batch_part")

    assert batch_function.handle_failure(record, s3) == ["numbers/w"]

    status = ["batch", "status", "numbers", "w.csv", "--store", "s3://batch-test"]
    assert main(status) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"numbers/w: failed, 1/{len(sent)} parts, {done['rows']} rows scored")
    assert (
        "numbers/w part 1 failed (RetriesExhausted after 3 attempts): Sandbox.Timedout: "
        "RequestId: e4b46cbf-b738-4d1e-8880-a18cdf61200e Error: Task timed out after 900.00"
    ) in err
    assert "--here" in err
    assert main([*status, "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert (document["state"], document["parts_done"], document["manifest"]) == ("failed", 1, None)
    assert document["failures"][0]["condition"] == "RetriesExhausted"

    # The parts left (the failed one among them) scored from here: the same job completes.
    (tmp_path / "w.csv").write_bytes(body)
    here = ["batch", "numbers", str(tmp_path / "w.csv"), "--here", "--store", "s3://batch-test"]
    assert main([*here, "--part-mb", str(5000 / 2**20)]) == 0
    assert "300 rows scored" in capsys.readouterr().out
    assert main(status) == 0
    assert "numbers version 1 (production): 300 rows scored" in capsys.readouterr().out
    assert main([*status, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["state"], document["failures"], document["manifest"]["rows"]) == (
        "complete",
        [],
        300,
    )


def test_a_job_that_could_not_start_is_reported_until_the_input_is_uploaded_again(
    s3: S3Store, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "batch/numbers/input/huge.csv"
    etag = s3.put(key, table(20)[0])
    event = s3_event(key)
    event["Records"][0]["s3"]["object"]["eTag"] = etag.strip('"')
    record = destination_record(event, "serverless-mlops-dev-on_batch_uploaded")

    assert batch_function.handle_failure(record, s3) == ["numbers/huge"]

    status = ["batch", "status", "numbers", "huge", "--store", "s3://batch-test"]
    assert main(status) == 1
    err = capsys.readouterr().err
    assert "numbers/huge could not start (RetriesExhausted after 3 attempts)" in err
    s3.put(key, table(21)[0])  # other bytes: a new upload, whose job has yet to start
    assert main(status) == 0
    assert "numbers/huge: waiting for the deployed job to start" in capsys.readouterr().out


def test_a_start_failure_stands_until_an_upload_after_it_and_a_refusal_beside_a_manifest(
    local: LocalStore,
) -> None:
    local.put("batch/numbers/input/w.csv", table(50)[0])
    manifest = run_job(local, "batch/numbers/input/w.csv")
    upload = local.head("batch/numbers/input/w.csv")
    assert upload is not None
    at = upload.last_modified

    def failure(condition: str, seconds: float) -> JobFailure:
        failed_at = at + timedelta(seconds=seconds)
        return JobFailure(
            model="numbers", name="w", part=None, input_key=upload.key, condition=condition,
            error="...", failed_at=failed_at.isoformat(),
        )  # fmt: skip

    def state(*failures: JobFailure, done: Manifest | None = manifest) -> str:
        return summarise("numbers", "w", upload, None, {}, list(failures), done).state

    assert state() == "complete"
    # Other bytes under a name already scored are refused: the bytes uploaded last are not
    # scored, whatever the manifest of the first says.
    assert state(failure("bad_input", 1)) == "failed"
    assert state(failure("bad_input", -1)) == "complete"  # uploaded again since
    # Lambda gave up on the planning pass of an upload whose parts were sent out: the parts
    # may still all be scored.
    assert state(failure("RetriesExhausted", 1)) == "complete"
    assert state(failure("RetriesExhausted", 1), done=None) == "failed"
    assert state(failure("RetriesExhausted", -1), done=None) == "waiting"
    # A file refused (its model not trained yet), then the same bytes scored once it was.
    job = decode_job(local.get(job_key("numbers", "w")).body, "job.json")
    started = datetime.fromisoformat(job.started_at) - at
    refused = failure("bad_input", started.total_seconds() - 1)
    assert summarise("numbers", "w", upload, job, {}, [refused], manifest).state == "complete"


def test_mlops_batch_here_on_s3_is_not_started_again_by_the_deployed_trigger(
    s3: S3Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --here uploads the input, and S3 tells the deployed trigger: the request beside it
    # says this machine scores it, so the trigger starts nothing (with another version, the
    # two planners would have started two different jobs, one refused as failed).
    body, _ = table(200)
    (tmp_path / "rows.csv").write_bytes(body)
    here = ["batch", "numbers", str(tmp_path / "rows.csv"), "--store", "s3://batch-test"]
    assert main([*here, "--here", "--version", "1"]) == 0
    sent: list[dict[str, Any]] = []
    started = batch_function.handle_upload(
        s3_event("batch/numbers/input/rows.csv"), s3, invoke=sent.append
    )
    assert (started, sent) == ([], [])
    capsys.readouterr()
    status = ["batch", "status", "numbers", "rows", "--store", "s3://batch-test", "--json"]
    assert main(status) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["state"], document["failures"], document["manifest"]["rows"]) == (
        "complete",
        [],
        200,
    )
    # A later plain `mlops batch` of another input under that name hands it to the deployed
    # job again: the request no longer says "here".
    (tmp_path / "rows.csv").write_bytes(table(201)[0])
    s3.delete("batch/numbers/input/rows.csv")
    for info in list(s3.list("batch/numbers/output/rows/")):
        s3.delete(info.key)
    assert main(here) == 0
    started = batch_function.handle_upload(
        s3_event("batch/numbers/input/rows.csv"), s3, invoke=sent.append
    )
    assert len(started) == 1
    assert sent
