"""Telling someone: events on the bus, the webhook, EMF metrics, `--fail-on` and `watch`.

EventBridge and SQS are moto's (a rule delivers to a queue the test reads); the webhook's
receivers are real HTTP servers on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, get_args

import boto3
import msgspec
import pytest
from botocore.exceptions import EndpointConnectionError

from functions import admin, inference, monitoring
from functions.cli import FAIL_ON_EXIT, main
from shared.alerts.announce import announcing
from shared.alerts.channels import (
    SIGNATURE_HEADER,
    ChannelError,
    EventBridgeChannel,
    WebhookChannel,
)
from shared.alerts.decisions import DETAIL_TYPES, Decision, decision_of
from shared.alerts.metrics import (
    MAX_FEATURE_METRICS,
    NAMESPACE,
    ServingTally,
    check_metric_lines,
    watched_features,
)
from shared.alerts.outbox import MAX_ATTEMPTS, MAX_UNSENT, RETRY_DAYS, Outbox
from shared.registry.audit import (
    AuditEvent,
    AuditEventName,
    listening,
    record_event,
    record_event_once,
)
from shared.registry.records import RegistryRecord
from shared.registry.registry import ModelRegistry
from shared.serving.cache import ModelCache
from shared.store.base import ObjectStore
from shared.store.local import LocalStore
from shared.store.s3 import S3Store
from tests.test_report_html import data_problem_report, drifting_report
from tests.test_serving_policy import PolicyStore, train

HOUR = datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


# Events -----------------------------------------------------------------------------------


@pytest.fixture
def bus(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> tuple[S3Store, Any, str]:
    """An S3 store holding a model whose check fails, and a rule routing our events to SQS."""
    monkeypatch.setenv("MLOPS_EVENTS", "1")
    store = S3Store(s3_bucket, client=boto3.client("s3"))
    store.put("models/churn/registry.json", msgspec.json.encode(RegistryRecord(model="churn")))
    store.put("specs/churn.json", b"{not json")  # every check of churn fails: a decision
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue = sqs.create_queue(QueueName="decisions")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    events.put_rule(Name="mlops", EventPattern=json.dumps({"source": ["serverless-mlops"]}))
    events.put_targets(Rule="mlops", Targets=[{"Id": "q", "Arn": arn["Attributes"]["QueueArn"]}])
    return store, sqs, queue


def received(sqs: Any, queue: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
        if not answer.get("Messages"):
            return found
        for message in answer["Messages"]:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def test_a_decision_is_one_event_on_the_bus_however_often_the_check_is_retried(
    bus: tuple[S3Store, Any, str],
) -> None:
    store, sqs, queue = bus
    for _ in range(3):  # EventBridge retrying the hourly invocation
        monitoring.handle_schedule({"time": HOUR.isoformat()}, store)
    events = received(sqs, queue)
    assert len(events) == 1, events
    event = events[0]
    assert event["source"] == "serverless-mlops"
    assert event["detail-type"] == "Model Monitoring Failed"
    detail = event["detail"]
    assert detail["model"] == "churn"
    assert detail["outcome"] == "failed"
    assert detail["findings"]
    assert "churn" in detail["findings"][0]
    # The event links to the record it announces, which is in the bucket.
    audit = json.loads(store.get(detail["audit_key"]).body)
    assert audit["event"] == "monitoring_failed"


class Unreachable:
    """An events client whose endpoint cannot be reached (moto intercepts any URL)."""

    def put_events(self, **_: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://events.us-east-1.amazonaws.com")


def test_a_failing_bus_fails_no_check_and_the_next_check_sends_it_once(
    bus: tuple[S3Store, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket, sqs, queue = bus
    # The check runs under its deployed policy: keeping and retrying need no grant of their own.
    store = under_policy(bucket, "monitoring")
    with monkeypatch.context() as patch:
        patch.setattr(EventBridgeChannel, "_events", lambda self: Unreachable())
        monitoring.handle_schedule({"time": HOUR.isoformat()}, store)  # does not raise
    # Kept in the model's registry record, which the check's role reads and writes anyway.
    (kept,) = ModelRegistry(store, "churn").load().unsent
    assert (kept.channel, kept.attempts, kept.sending) == ("eventbridge", 1, False)
    assert "events.us-east-1" in kept.error
    assert received(sqs, queue) == []

    later = HOUR + timedelta(hours=1)  # the next check: a new failure, and the retry
    monitoring.handle_schedule({"time": later.isoformat()}, store)
    monitoring.handle_schedule({"time": later.isoformat()}, store)
    events = received(sqs, queue)
    assert sorted(e["detail"]["audit_key"] for e in events) == sorted(
        i.key for i in store.list("audit/churn/")
    )
    assert len(events) == 2
    assert ModelRegistry(store, "churn").load().unsent == []
    assert store.refused == []


def under_policy(store: S3Store, function: str) -> PolicyStore:
    """`store` as the function's deployed role sees it: what it does not grant is refused."""
    policy = json.loads((REPO / "infra" / f"policy-{function}.json").read_text())
    return PolicyStore(store, policy, "serverless-mlops-data")


@pytest.fixture
def two_versions(bus: tuple[S3Store, Any, str]) -> tuple[S3Store, Any, str]:
    """The bus, and churn trained twice (production v1, staging v2) with a working spec."""
    store, sqs, queue = bus
    store.put("specs/churn.json", b"{}")
    train(store, "a.csv", seed=0)
    train(store, "b.csv", seed=3)
    received(sqs, queue)  # what training announced is not these tests' concern
    return store, sqs, queue


def test_a_refused_artifact_is_announced_by_serving_under_its_policy(
    two_versions: tuple[S3Store, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket, sqs, queue = two_versions
    monkeypatch.setattr(inference, "tally", ServingTally())  # this test's requests stay its own
    genuine = bucket.get("models/churn/versions/1/model.onnx").body
    bucket.put("models/churn/versions/2/model.onnx", genuine)  # someone swaps it
    store = under_policy(bucket, "serving")
    inference.reset_cache(ModelCache(store))
    try:
        body = json.dumps({"records": [{"x0": 0.3, "region": "north", "plan": "pro"}]}).encode()
        assert inference.predict_records("churn", "2", body, {}).status == 503
    finally:
        inference.reset_cache()
    (event,) = received(sqs, queue)
    assert event["detail-type"] == "Model Artifact Rejected"
    detail = event["detail"]
    assert (detail["version"], detail["outcome"]) == (2, "rejected")
    assert "model.onnx has sha256" in detail["findings"][0]
    assert store.refused == []


def test_a_manual_promotion_is_announced_and_kept_under_the_admin_policy(
    two_versions: tuple[S3Store, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket, sqs, queue = two_versions
    store = under_policy(bucket, "admin")
    monkeypatch.setattr(admin, "_stores", {"": store})
    monkeypatch.delenv("MLOPS_STORE", raising=False)
    actor = "arn:aws:iam::123456789012:user/ann"
    move = {"op": "set_alias", "model": "churn", "alias": "production", "reason": "r"}
    with monkeypatch.context() as patch:
        patch.setattr(EventBridgeChannel, "_events", lambda self: Unreachable())
        answer = admin.handle_operation({**move, "version": 2, "actor": actor})
    assert answer["status"] == 200, answer
    (kept,) = ModelRegistry(bucket, "churn").load().unsent  # kept by the admin role
    assert kept.announcement["detail_type"] == "Model Alias Moved"
    assert received(sqs, queue) == []

    assert admin.handle_operation({**move, "version": 1, "actor": "cli"})["status"] == 200
    (back,) = received(sqs, queue)
    assert back["detail"]["outcome"] == "production: v2 -> v1"
    assert (back["detail"]["alias"], back["detail"]["actor"]) == ("production", "cli")
    assert store.refused == []

    # The next hourly check, under its own policy, sends the one kept.
    monitoring.handle_schedule({"time": HOUR.isoformat()}, under_policy(bucket, "monitoring"))
    (late,) = [e for e in received(sqs, queue) if e["detail-type"] == "Model Alias Moved"]
    assert (late["detail"]["outcome"], late["detail"]["actor"]) == ("production: v1 -> v2", actor)
    assert ModelRegistry(bucket, "churn").load().unsent == []


# Every kind of audit record, and whether it is announced: a new kind is a choice made here.
ANNOUNCED = {
    "verdict_changed",
    "promotion_decided",
    "rolled_back",
    "retraining_started",
    "retraining_skipped",
    "training_failed",
    "version_rejected",
    "monitoring_failed",
    "alias_moved",
    "labels_rejected",
    "artifact_rejected",
}
NOT_ANNOUNCED = {  # steps, not decisions, or a batch job's own record
    "version_claimed",
    "version_registered",
    "version_failed",
    "duplicate_ignored",
    "upload_ignored",
    "batch_started",
    "batch_completed",
    "batch_failed",
    "batch_duplicate_ignored",
}


def test_which_audit_records_are_announced() -> None:
    assert set(get_args(AuditEventName)) == ANNOUNCED | NOT_ANNOUNCED
    assert set(DETAIL_TYPES) == ANNOUNCED
    assert len(set(DETAIL_TYPES.values())) == len(DETAIL_TYPES)


def test_what_a_rejection_and_a_move_say() -> None:
    def decided(event: str, **details: Any) -> dict[str, Any]:
        record = AuditEvent(at="t", model="churn", event=event, details=details)
        decision = decision_of("audit/churn/k.json", record)
        assert decision is not None
        return decision.detail

    labels = decided("labels_rejected", key="labels/churn/a.csv", reason="labels/churn/a.csv: ...")
    assert (labels["outcome"], labels["findings"]) == ("rejected", ["labels/churn/a.csv: ..."])
    staging = decided("alias_moved", alias="staging", version=3, previous=None, actor="training")
    assert staging["outcome"] == "staging: none -> v3"
    assert decided("artifact_rejected", version=4, reason="x")["version"] == 4


class Recording:
    name = "recording"

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[Decision] = []
        self.fail = fail

    def send(self, decision: Decision) -> None:
        if self.fail:
            self.fail -= 1
            raise ChannelError("down")
        self.sent.append(decision)


def registered(root: Path) -> LocalStore:
    """A local store where churn has a registry record (where failed sends are kept)."""
    store = LocalStore(root)
    store.put("models/churn/registry.json", msgspec.json.encode(RegistryRecord(model="churn")))
    return store


def test_only_decisions_are_queued_and_a_retry_is_claimed_by_one_run(tmp_path: Path) -> None:
    store = registered(tmp_path)
    channel = Recording(fail=1)
    outbox = Outbox(store, [channel], clock=lambda: HOUR)
    with announcing(store, {}) as ignored:
        assert ignored.channels == []  # nothing configured: nothing queued, nothing written
        record_event(store, "churn", "rolled_back", version=1, previous=2, reason="r", actor="a")
    before = store.get("models/churn/registry.json").etag
    with listening(outbox.recorded):
        record_event(store, "churn", "version_claimed", version=3, run_id="x")  # no decision
        details = {"version": 1, "previous": 2, "reason": "r", "actor": "a"}
        assert record_event_once(store, "churn", "rolled_back", at=HOUR, dedupe="d", **details)
        # A second writer of the same record (a retried run) writes nothing and is not told.
        assert not record_event_once(store, "churn", "rolled_back", at=HOUR, dedupe="d", **details)
    assert store.get("models/churn/registry.json").etag == before  # queued in memory only
    outbox.deliver_new()
    assert channel.sent == []
    assert outbox.counts.failed == 1
    outbox.retry_unsent()  # the same run: a failure waits for the next check
    assert channel.sent == []
    # Two checks retry at once: one claims attempt 2 and sends, the other skips it.
    first, second = (Outbox(store, [channel], clock=lambda: HOUR) for _ in range(2))
    claimed: list[RegistryRecord] = []
    real_send = channel.send

    def send_while_the_other_checks(decision: Decision) -> None:
        claimed.append(ModelRegistry(store, "churn").load())
        second.retry_unsent()  # runs between the first's claim and its answer
        real_send(decision)

    channel.send = send_while_the_other_checks  # type: ignore[method-assign]
    first.retry_unsent()
    assert [d.detail["outcome"] for d in channel.sent] == ["v2 -> v1"]
    assert [(e.attempts, e.sending) for e in claimed[0].unsent] == [(2, True)]
    assert (first.counts.sent, second.counts.sent, second.counts.skipped) == (1, 0, 1)
    assert ModelRegistry(store, "churn").load().unsent == []  # sent: nothing is left


def clock(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def _failed_once(store: LocalStore, channel: Recording, at: datetime, n: int = 1) -> Outbox:
    outbox = Outbox(store, [channel], clock=lambda: at)
    with listening(outbox.recorded):
        for i in range(n):
            record_event(store, "churn", "training_failed", reason=f"bad data {i}", error="E")
    outbox.deliver_new()
    return outbox


def test_what_failed_is_bounded_and_never_sent_twice(tmp_path: Path) -> None:
    store = registered(tmp_path)
    outbox = _failed_once(store, Recording(fail=MAX_UNSENT + 5), HOUR, MAX_UNSENT + 5)
    kept = ModelRegistry(store, "churn").load().unsent
    assert len(kept) == MAX_UNSENT  # the newest kept, the oldest dropped and logged
    assert outbox.counts.dropped == 5
    assert kept[-1].announcement["detail"]["findings"][0] == f"bad data {MAX_UNSENT + 4}"

    # A check that claimed attempt 2 and died before the answer: never sent again.
    registry = ModelRegistry(store, "churn")
    registry.update(
        lambda r: msgspec.structs.replace(
            r, unsent=[msgspec.structs.replace(e, attempts=2, sending=True) for e in r.unsent]
        )
    )
    channel = Recording()
    later = Outbox(store, [channel], clock=lambda: HOUR + timedelta(hours=1))
    later.retry_unsent()
    assert channel.sent == []
    assert later.counts.skipped == MAX_UNSENT
    # ... and gone once stale, as is whatever ran out of attempts or time.
    stale = Outbox(store, [channel], clock=lambda: HOUR + timedelta(days=RETRY_DAYS, hours=1))
    stale.retry_unsent()
    assert (channel.sent, stale.counts.dropped) == ([], MAX_UNSENT)
    assert ModelRegistry(store, "churn").load().unsent == []


def test_attempts_run_out(tmp_path: Path) -> None:
    store = registered(tmp_path)
    channel = Recording(fail=MAX_ATTEMPTS)
    _failed_once(store, channel, HOUR)
    for hour in range(1, MAX_ATTEMPTS + 1):
        Outbox(store, [channel], clock=clock(HOUR + timedelta(hours=hour))).retry_unsent()
    assert channel.sent == []
    assert ModelRegistry(store, "churn").load().unsent == []  # 24 tries, then dropped


def test_a_failed_send_with_nowhere_to_be_kept_is_counted_lost(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)  # no registry record: a first upload's training failed
    outbox = _failed_once(store, Recording(fail=1), HOUR)
    assert outbox.counts.lost == 1
    assert not list(store.list("models/"))  # no registry made for it: no model appears
    # A function whose role may not write the registry record does not try to.
    serving = Outbox(registered(tmp_path), [Recording(fail=1)], keep=False)
    with listening(serving.recorded):
        record_event(store, "churn", "training_failed", reason="bad data", error="E")
    serving.deliver_new()
    assert serving.counts.lost == 1
    assert ModelRegistry(store, "churn").load().unsent == []


# Webhook ----------------------------------------------------------------------------------

SECRET = b"a-secret-of-twenty-chars"


class Receiver(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]]
    behaviour = "ok"
    released: threading.Event  # a hanging receiver answers only once the test says so
    answered: list[int]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append((self.headers[SIGNATURE_HEADER], body))
        if self.behaviour == "hang":
            type(self).released.wait(120)
        type(self).answered.append(1)
        status = 500 if self.behaviour == "fail" else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(params=["ok", "fail", "hang"])
def receiver(request: pytest.FixtureRequest) -> Iterator[tuple[str, type[Receiver]]]:
    handler: type[Receiver] = type(
        "Handler",
        (Receiver,),
        {
            "bodies": [],
            "behaviour": request.param,
            "released": threading.Event(),
            "answered": [],
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    handler.released.set()
    server.shutdown()
    server.server_close()


def test_the_webhook_is_signed_bounded_and_never_fails_the_decision(
    receiver: tuple[str, type[Receiver]], tmp_path: Path
) -> None:
    url, handler = receiver
    store = LocalStore(tmp_path)
    environ = {"MLOPS_WEBHOOK_URL": url, "MLOPS_WEBHOOK_SECRET": SECRET.decode()}
    before = int(time.time())
    with announcing(store, environ) as outbox:
        record_event(store, "churn", "training_failed", reason="bad data", error="SpecError")
    after = int(time.time())
    # Bounded whatever the receiver does: a hanging one has not answered yet (it waits for
    # the test), and the sender gave up on both tries and went on.
    if handler.behaviour == "hang":
        assert handler.answered == []
    tries = 1 if handler.behaviour == "ok" else 2
    assert len(handler.bodies) == tries
    assert outbox.counts.sent == (handler.behaviour == "ok")
    assert outbox.counts.failed == (handler.behaviour != "ok")
    header, body = handler.bodies[0]
    fields = dict(part.split("=", 1) for part in header.split(","))
    assert before <= int(fields["t"]) <= after  # timestamped when sent: replays are refused
    expected = hmac.new(SECRET, fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    sent = json.loads(body)
    assert sent["detail-type"] == "Model Training Failed"
    assert sent["detail"]["findings"] == ["bad data", "SpecError"]


def test_a_webhook_without_a_secret_sends_nothing(tmp_path: Path) -> None:
    with announcing(LocalStore(tmp_path), {"MLOPS_WEBHOOK_URL": "http://127.0.0.1:1/"}) as box:
        assert box.channels == []
    with pytest.raises(ChannelError):
        WebhookChannel("file:///etc/passwd", SECRET)


# Metrics ----------------------------------------------------------------------------------


def emf(line: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """The metrics of one EMF object, read by the format's rules: (value, unit) by name."""
    meta = line["_aws"]
    assert isinstance(meta["Timestamp"], int)
    out = {}
    for directive in meta["CloudWatchMetrics"]:
        assert directive["Namespace"] == NAMESPACE
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:  # every dimension's value is a top-level string
                assert isinstance(line[name], str)
        for metric in directive["Metrics"]:
            assert isinstance(line[metric["Name"]], int | float)
            out[metric["Name"]] = (line[metric["Name"]], metric["Unit"])
    return out


def test_the_check_writes_its_figures_as_emf() -> None:
    report = drifting_report()
    lines = [json.loads(json.dumps(line)) for line in check_metric_lines(report, 1_700_000_000)]
    window, *rest = lines
    versions = [x for x in rest if "Feature" not in x]
    assert window["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model"]]
    assert emf(window)["Verdict"] == (3, "None")  # decay
    assert emf(window)["RowsChecked"] == (report.rows, "Count")
    assert len(versions) == len(report.versions)
    section, figures = report.versions[0], emf(versions[0])
    assert versions[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "Version"]]
    assert versions[0]["Version"] == str(section.version)
    assert figures["DriftedFeatures"] == (len(section.drifted_features), "Count")
    assert figures["DriftShare"] == (section.drift_share, "None")
    assert section.performance is not None
    assert figures["LabelledRows"] == (section.performance.labelled_rows, "Count")
    for name, value in section.performance.metrics.items():
        assert figures[f"Labelled_{name}"] == (value, "None")
    problems = emf(check_metric_lines(data_problem_report(), 0)[1])
    assert problems["DataProblemFindings"][0] >= 1
    assert problems["Verdict"] == (4, "None")


def test_each_features_drift_is_a_metric_of_its_own_and_their_count_is_bounded() -> None:
    report = drifting_report()
    section = report.versions[0]
    every = [json.loads(json.dumps(x)) for x in check_metric_lines(report, 0) if "Feature" in x]
    assert len(every) == sum(len(v.features) for v in report.versions)  # each version's
    lines = [x for x in every if x["Version"] == str(section.version)]
    for line in lines:
        assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
            ["Feature", "Model", "Version"]
        ]
    by_name = {x["Feature"]: emf(x) for x in lines}
    for feature in section.features:
        figures = by_name[feature.name]
        assert figures["FeatureDrift"] == (feature.distance, "None")
        assert figures["FeaturePSI"] == (feature.psi, "None")
        assert figures["FeatureDrifted"] == (int(feature.drifted), "Count")
    # A wide table: the drifted features first, then the farthest, MAX_FEATURE_METRICS in all.
    wide = [
        msgspec.structs.replace(f, name=f"{f.name}_{i}", drifted=f.drifted and i == 0)
        for i in range(10)
        for f in section.features
    ]
    widened = msgspec.structs.replace(section, features=wide)
    watched = watched_features(widened)
    assert len(watched) == MAX_FEATURE_METRICS < len(wide)
    drifted = [f for f in wide if f.drifted]
    assert {f.name for f in watched[: len(drifted)]} == {f.name for f in drifted}
    rest = watched[len(drifted) :]
    assert [f.distance for f in rest] == sorted((f.distance for f in rest), reverse=True)
    left_out = [f for f in wide if f not in watched]
    assert max(f.distance for f in left_out) <= min(f.distance for f in rest)


def test_serving_writes_its_counts_at_each_capture_flush(
    served: LocalStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on Lambda (whose runtime sets the function's name): stdout goes to CloudWatch.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "api_handler")
    inference.reset_cache(ModelCache(served))
    record = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    body = json.dumps({"records": [record, record]}).encode()
    assert inference.predict_records("numbers", None, body, {}).status == 200
    assert inference.predict_records("numbers", None, b"{", {}).status == 400
    assert inference.predict_records("nobody", None, body, {}).status == 404
    capsys.readouterr()
    inference.capture_writer().flush()
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert len(lines) == 1
    figures = emf(lines[0])
    assert figures["Requests"] == (3, "Count")
    assert figures["RowsPredicted"] == (2, "Count")
    assert figures["Errors4xx"] == (2, "Count")
    assert figures["Errors5xx"] == (0, "Count")
    assert figures["CaptureFailures"] == (0, "Count")
    assert lines[0]["Service"] == "serving"
    assert lines[0]["Container"]


# The command line -------------------------------------------------------------------------


def test_monitor_fails_on_the_verdicts_named(
    trained_store: LocalStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", str(tmp_path)]
    # A copy of the trained store: this test's reports and records stay its own.
    for info in trained_store.list("models/numbers/"):
        LocalStore(tmp_path).put(info.key, trained_store.get(info.key).body)
    for info in trained_store.list("specs/"):
        LocalStore(tmp_path).put(info.key, trained_store.get(info.key).body)
    window = ["--window", "2026-11-30T09-1h"]  # no traffic: insufficient_data
    assert main([*store, "monitor", "numbers", *window]) == 0
    assert main([*store, "monitor", "numbers", *window, "--fail-on", "drift,decay"]) == 0
    code = main([*store, "monitor", "numbers", *window, "--fail-on", "drift,insufficient_data"])
    assert code == FAIL_ON_EXIT == 3
    assert "failing: the verdict insufficient_data is in --fail-on" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main([*store, "monitor", "numbers", "--fail-on", "drfit"])
    assert refused.value.code == 2


def _watch(root: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "functions.cli", "--store", str(root), "watch", "churn", *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def _wait_for_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline()


def test_watch_prints_decisions_as_they_happen_and_stops_cleanly(tmp_path: Path) -> None:
    store: ObjectStore = LocalStore(tmp_path)
    record_event(store, "churn", "rolled_back", version=1, previous=2, reason="old", actor="a")
    process = _watch(tmp_path, "--interval", "0.05")
    assert _wait_for_line(process).startswith("watching")  # the old record is not repeated
    record_event(store, "churn", "training_failed", reason="bad data", error="SpecError")
    line = _wait_for_line(process)
    assert "\ttraining_failed\t" in line
    assert "bad data" in line
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "Traceback" not in err
    assert "stopped" in err


def test_watch_is_bounded_with_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    codes: list[int] = []
    args = ["--store", str(tmp_path), "watch", "churn", "--interval", "0.05", "--for", "0.3"]
    watcher = threading.Thread(target=lambda: codes.append(main(args)), daemon=True)
    watcher.start()
    watcher.join(timeout=120)  # a guard against a watch that never ends, not a measurement
    assert codes == [0]
    assert capsys.readouterr().out.startswith("watching")


def test_emf_lines_are_one_json_object_each() -> None:
    from shared.alerts.metrics import write_lines

    out = io.StringIO()
    write_lines(check_metric_lines(drifting_report(), 0), out)
    assert all(json.loads(line)["_aws"] for line in out.getvalue().splitlines())


def test_metric_lines_stay_off_a_users_stdout(
    served: LocalStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Off Lambda, stdout is the user's (`mlops predict ... | head`): no metric lines there
    # unless MLOPS_EMF=1 asks for them.
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.delenv("MLOPS_EMF", raising=False)
    inference.reset_cache(ModelCache(served))
    record = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    body = json.dumps({"records": [record]}).encode()
    assert inference.predict_records("numbers", None, body, {}).status == 200
    capsys.readouterr()
    inference.capture_writer().flush()
    assert '"_aws"' not in capsys.readouterr().out
    monkeypatch.setenv("MLOPS_EMF", "1")
    assert inference.predict_records("numbers", None, body, {}).status == 200
    inference.capture_writer().flush()
    assert '"_aws"' in capsys.readouterr().out


class _Killed(BaseException):
    """Lambda stopping the function mid-send (not an error the outbox could catch)."""


def test_a_check_killed_mid_send_loses_only_the_attempt_in_flight(tmp_path: Path) -> None:
    store = registered(tmp_path)
    _failed_once(store, Recording(fail=3), HOUR, 3)
    assert len(ModelRegistry(store, "churn").load().unsent) == 3

    dying = Recording()

    def killed(decision: Decision) -> None:
        raise _Killed

    dying.send = killed  # type: ignore[method-assign]
    with pytest.raises(_Killed):
        Outbox(store, [dying], clock=lambda: HOUR + timedelta(hours=1)).retry_unsent()
    # One entry was claimed when the check died; the other two were never claimed.
    claims = [e.sending for e in ModelRegistry(store, "churn").load().unsent]
    assert sorted(claims) == [False, False, True]

    channel = Recording()
    later = Outbox(store, [channel], clock=lambda: HOUR + timedelta(hours=2))
    later.retry_unsent()
    assert len(channel.sent) == 2  # the two never tried are sent, the one in flight is not
    assert (later.counts.sent, later.counts.skipped) == (2, 1)


def test_a_run_without_a_channel_keeps_that_channels_entries(tmp_path: Path) -> None:
    # A check that lacks one channel's setting for one run (a missing webhook secret) does
    # not drop what that channel has yet to send: they wait, within their days.
    store = registered(tmp_path)
    _failed_once(store, Recording(fail=1), HOUR)

    class Other(Recording):
        name = "other"

    Outbox(store, [Other()], clock=lambda: HOUR + timedelta(hours=1)).retry_unsent()
    assert len(ModelRegistry(store, "churn").load().unsent) == 1
    channel = Recording()
    Outbox(store, [channel], clock=lambda: HOUR + timedelta(hours=2)).retry_unsent()
    assert len(channel.sent) == 1


def test_a_receiver_trickling_its_answer_does_not_hold_the_sender(tmp_path: Path) -> None:
    # A byte of the answer at a time, each within the socket timeout, never ending: the
    # socket's timeout never fires, and only a bound on the whole call lets the sender go.
    released = threading.Event()
    bytes_sent: list[int] = []

    class Trickle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not released.wait(0.05):
                self.wfile.write(b"a")
                self.wfile.flush()
                bytes_sent.append(1)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    channel = WebhookChannel(
        f"http://127.0.0.1:{server.server_address[1]}/hook", SECRET, timeout=0.3, pause=0.0
    )
    decision = Decision(source="s", detail_type="Model Training Failed", audit_key="k", detail={})
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            channel.send(decision)
        except BaseException as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(60)  # a hang guard, not a measurement: the bound is 2 x 0.6 s
    try:
        assert not sender.is_alive(), "the sender is still waiting on the trickle"
        (error,) = outcome
        assert isinstance(error, ChannelError)
        assert "no whole answer" in str(error)
        assert bytes_sent  # the receiver was trickling, within each read's timeout
    finally:
        released.set()
        server.shutdown()
        server.server_close()
