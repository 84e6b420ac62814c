"""The README's main job from the command line: upload, train, serve, predict."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from functions import inference
from functions.cli import main
from functions.local_server import running_server
from shared.registry.holdout import decode_holdout
from tests.factories import classification_csv, to_csv


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MLOPS_STORE", raising=False)
    inference.reset_cache()
    yield
    inference.reset_cache()


def test_demo_trains_serves_and_predicts_over_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--store", str(tmp_path / "store"), "demo", "--workdir", str(tmp_path / "w")])
    out = capsys.readouterr().out
    assert code == 0
    assert "registered breast-cancer version 1 as production" in out
    assert "POST /models/breast-cancer/predict -> 200" in out
    assert "POST /v2/models/breast-cancer/infer (Open Inference Protocol) -> 200" in out
    answers = [json.loads(line) for line in out.splitlines() if line.startswith('{"model')]
    assert answers[0]["predictions"] == ["malignant", "malignant", "benign", "benign"]
    assert answers[1]["outputs"][0]["data"] == answers[0]["predictions"]
    # The page's path opens as printed, and the next steps follow.
    page = out.split("\nreport: ")[1].split(" (and .json beside it)")[0]
    assert Path(page).read_text().startswith("<!doctype html>")
    assert f"mlops --store {tmp_path / 'store'} serve" in out
    assert f"predict breast-cancer --csv {tmp_path / 'w' / 'breast_cancer.csv'} --url" in out
    # Again: the same upload is recognised, nothing retrains, serving still answers.
    assert main(["--store", str(tmp_path / "store"), "demo", "--workdir", str(tmp_path / "w")]) == 0
    assert "already trained as version 1" in capsys.readouterr().out


def test_upload_list_show_predict_and_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", str(tmp_path / "store")]
    data = tmp_path / "churn.csv"
    data.write_bytes(classification_csv())
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"estimator": "random_forest", "params": {"n_estimators": 10}}))
    assert main([*store, "upload", str(data), "--model", "churn", "--spec", str(spec)]) == 0
    assert main([*store, "models"]) == 0
    assert main([*store, "versions", "churn"]) == 0
    assert main([*store, "show", "churn"]) == 0
    assert main([*store, "predict", "churn", "--csv", str(data)]) == 0
    out = capsys.readouterr().out
    assert "registered churn version 1 as production" in out
    assert "churn: 1 version(s), production=1" in out
    assert "# churn — version 1" in out
    body = json.loads(out[out.index('{\n  "model"') :])
    assert len(body["predictions"]) == 300
    assert main([*store, "audit", "churn"]) == 0
    assert "version_registered" in capsys.readouterr().out


def test_predict_against_a_running_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", str(tmp_path / "store")]
    data = tmp_path / "churn.csv"
    data.write_bytes(classification_csv())
    assert main([*store, "upload", str(data), "--model", "churn"]) == 0
    capsys.readouterr()
    with running_server() as url:
        assert main([*store, "predict", "churn", "--csv", str(data), "--url", url]) == 0
        out = capsys.readouterr().out
        first = json.loads(out[out.index("{") :])  # chalice's server says "Serving on ..."
        code = main(
            [*store, "predict", "churn", "--csv", str(data), "--version", "9", "--url", url]
        )
        missing = capsys.readouterr().err
    assert first["version"] == 1
    assert len(first["predictions"]) == 300
    assert code == 2
    assert "no version 9" in missing


def test_a_bad_spec_is_refused_before_anything_is_uploaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "churn.csv"
    data.write_bytes(classification_csv())
    spec = tmp_path / "spec.json"
    spec.write_text('{"estimator": "svm"}')
    code = main(
        [
            "--store",
            str(tmp_path / "s"),
            "upload",
            str(data),
            "--model",
            "churn",
            "--spec",
            str(spec),
        ]
    )
    assert code == 2
    assert "estimator" in capsys.readouterr().err
    assert not (tmp_path / "s" / "datasets").exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"estimator": "random_forest", "params": {"n_estimators": -1}},
            "The 'n_estimators' parameter of RandomForest",
        ),
        ({"estimator": "linear", "params": {"n_trees": 3}}, "['n_trees'] not accepted"),
        ({"task": "regression", "params": {"C": 0.5}}, "params: ['C'] not accepted by Ridge"),
    ],
)
def test_a_spec_with_parameters_scikit_learn_refuses_is_never_uploaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: dict[str, object], message: str
) -> None:
    data = tmp_path / "churn.csv"
    data.write_bytes(classification_csv())
    spec_path = tmp_path / "churn.spec.json"
    spec_path.write_text(json.dumps(spec))
    store = ["--store", str(tmp_path / "s")]

    code = main([*store, "upload", str(data), "--model", "churn", "--spec", str(spec_path)])

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spec_path}: params: ")
    assert message in err
    assert not (tmp_path / "s" / "specs").exists()
    assert not (tmp_path / "s" / "datasets").exists()


def test_parameters_of_either_task_are_accepted_when_the_spec_names_none(tmp_path: Path) -> None:
    data = tmp_path / "churn.csv"
    data.write_bytes(classification_csv())
    spec_path = tmp_path / "churn.spec.json"
    spec_path.write_text(json.dumps({"params": {"C": 0.5}}))  # LogisticRegression's
    store = ["--store", str(tmp_path / "s")]
    assert main([*store, "upload", str(data), "--model", "churn", "--spec", str(spec_path)]) == 0


def test_promote_and_rollback_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ["--store", str(tmp_path / "store")]
    spec = tmp_path / "spec.json"
    # Manual promotion: the rule records its decisions and leaves the moves to people.
    spec.write_text(json.dumps({"promotion": {"mode": "manual"}}))
    for seed in (0, 1, 2):
        data = tmp_path / f"churn{seed}.csv"
        data.write_bytes(classification_csv(seed=seed))
        assert main([*store, "upload", str(data), "--model", "churn", "--spec", str(spec)]) == 0
    assert "kept in staging" in capsys.readouterr().out
    assert main([*store, "promote", "churn", "2", "--expect", "1"]) == 0
    assert main([*store, "promote", "churn", "3"]) == 0
    assert "churn: production=3" in capsys.readouterr().out
    # Someone else moved production since: the expectation protects the later move.
    assert main([*store, "promote", "churn", "1", "--expect", "2"]) == 2
    assert "points at version 3, not version 2 as expected" in capsys.readouterr().err
    assert main([*store, "rollback", "churn"]) == 0
    assert main([*store, "rollback", "churn"]) == 0
    out = capsys.readouterr().out
    assert "production 3 -> 2" in out
    assert "production 2 -> 1" in out
    assert main([*store, "audit", "churn"]) == 0
    trail = capsys.readouterr().out
    assert trail.count("rolled_back") == 2
    assert '"actor": "cli' in trail
    assert main([*store, "promote", "churn", "x"]) == 2


def test_the_lifecycle_recovers_after_the_shift_and_never_promotes_worse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from functions.lifecycle_demo import SHIFT_WEEK, simulate
    from shared.store.local import LocalStore

    weeks = simulate(LocalStore(tmp_path / "store"), rows_per_week=800, weeks=5, say=print)
    printed = capsys.readouterr().out
    assert "week 0: trained v1" in printed
    before, at_shift, after = weeks[: SHIFT_WEEK - 1], weeks[SHIFT_WEEK - 1], weeks[SHIFT_WEEK:]
    assert all(w.verdict == "ok" and w.production == 1 for w in before)
    assert at_shift.verdict in ("decay", "drift")
    # At the defaults a challenger is also retrained each quiet week, and kept: production
    # moves only at the shift, to the version retrained on the newest week.
    assert all(w.promoted in ("-", "kept v1") for w in before)
    assert at_shift.promoted == f"v1 -> {at_shift.retrained.split()[0]}"
    promoted = int(at_shift.retrained.split()[0][1:])
    for week in after:
        assert week.production == promoted
        assert week.maintained is not None
        assert week.frozen is not None
        # The maintained model recovered; the frozen one stays worse on the same rows.
        assert week.maintained > week.frozen + 0.1


def test_predict_failures_print_an_error_and_exit_as_the_readme_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", str(tmp_path / "store")]
    data = tmp_path / "churn.csv"
    data.write_bytes(classification_csv())
    assert main([*store, "upload", str(data), "--model", "churn"]) == 0
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"records": [{"x0": 1}]}))
    capsys.readouterr()
    with running_server() as url:
        for where in ([], ["--url", url]):
            assert main([*store, "predict", "ghost", "--json", str(body), *where]) == 2
            # (The server in this process logs its requests to stderr too.)
            errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
            assert errors == ["error: no model named 'ghost' is registered"]
            assert main([*store, "predict", "churn", "--json", str(body), *where]) == 2
            errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
            assert errors[0].startswith("error: records[0]: missing features")


def test_a_store_that_refuses_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], aws_env: None
) -> None:
    import boto3
    from moto import mock_aws

    data = tmp_path / "churn.csv"
    data.write_bytes(classification_csv())
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::locked/*",
            }
        ],
    }
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="locked")
        s3.put_bucket_policy(Bucket="locked", Policy=json.dumps(deny))
        assert main(["--store", "s3://locked", "upload", str(data), "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the store s3://locked refused: ")
    assert "Traceback" not in err


def test_mlops_serve_stopped_by_sigterm_writes_its_buffered_captures(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    store = ["--store", str(tmp_path / "store")]
    data = tmp_path / "churn.csv"
    data.write_bytes(classification_csv())
    assert main([*store, "upload", str(data), "--model", "churn"]) == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mlops = Path(sys.executable).parent / "mlops"
    server = subprocess.Popen(
        [str(mlops), *store, "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        record = {"x0": 0.1, "x1": 0.2, "x2": 0.3, "x3": 0.4, "x4": 0.5}
        body = json.dumps({"records": [{**record, "region": "north", "plan": "pro"}]}).encode()
        for _ in range(100):  # until it listens
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/models/churn/predict",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as answer:
                    assert answer.status == 200
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("mlops serve did not answer")
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    assert list((tmp_path / "store" / "captures" / "churn").rglob("*.jsonl.gz"))


def test_predict_reads_a_csv_as_training_reads_one() -> None:
    from functions.cli import records_from_csv
    from shared.errors import BadRequest

    kinds = {"age": "numeric", "city": "categorical"}
    text = "age,city,target\n 21.5 ,  Pune ,1\nNA,,0\n,Oslo,1\n"
    assert records_from_csv(text, kinds) == [
        {"age": 21.5, "city": "  Pune "},  # categories are kept as written, as in training
        {"age": None, "city": None},
        {"age": None, "city": "Oslo"},
    ]
    with pytest.raises(
        BadRequest,
        match=r"line 3, column 'age': '67,36' is not a number; "
        r"write numbers with a decimal point",
    ):
        records_from_csv('age,city\n20,Oslo\n"67,36",Lima\n', kinds)
    with pytest.raises(BadRequest, match=r"the CSV has no column 'city'"):
        records_from_csv("age,town\n20,Oslo\n", kinds)
    # float()'s other spellings of NaN are missing values; infinities are refused.
    assert records_from_csv("age,city\nNAN,Oslo\n-nan,Lima\n", kinds) == [
        {"age": None, "city": "Oslo"},
        {"age": None, "city": "Lima"},
    ]
    with pytest.raises(BadRequest, match=r"line 2, column 'age': 'inf' is not finite"):
        records_from_csv("age,city\ninf,Oslo\n", kinds)


def test_predict_takes_the_csv_excel_writes(tmp_path: Path) -> None:
    """A byte-order mark (Excel's "CSV UTF-8") before the header, as training accepts."""
    store = ["--store", str(tmp_path / "store")]
    data = tmp_path / "data.csv"
    data.write_bytes(b"\xef\xbb\xbf" + classification_csv())
    assert main([*store, "upload", str(data), "--model", "churn"]) == 0
    assert main([*store, "predict", "churn", "--csv", str(data)]) == 0


@pytest.fixture
def churn(tmp_path: Path) -> list[str]:
    """A store with `churn` trained (linear, classes no/yes): the --store arguments to it."""
    store = ["--store", str(tmp_path / "store")]
    data = tmp_path / "churn.csv"
    data.write_bytes(classification_csv())
    assert main([*store, "upload", str(data), "--model", "churn"]) == 0
    return store


def test_labels_are_checked_then_uploaded_under_the_models_prefix(
    tmp_path: Path, churn: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("request_id,row,target\nvisit-1,0,yes\nbatch-2,0,no\nbatch-2,1,yes\n")
    capsys.readouterr()

    assert main([*churn, "labels", "churn", str(truth)]) == 0

    out = capsys.readouterr().out
    written = tmp_path / "store" / "labels" / "churn" / "truth.csv"
    assert written.read_bytes() == truth.read_bytes()
    assert f"checked {truth}: 3 labels of 'target', usable by v1" in out
    assert "/labels/churn/truth.csv" in out
    assert f"next: `mlops --store {churn[1]} monitor churn` joins them" in out
    # The same file again changes nothing; another under the same name keeps the first.
    assert main([*churn, "labels", "churn", str(truth)]) == 0
    assert "holds this file already; nothing to do" in capsys.readouterr().out
    truth.write_text("request_id,label\nvisit-3,no\n")
    assert main([*churn, "labels", "churn", str(truth)]) == 0
    files = sorted(p.name for p in written.parent.iterdir())
    assert files[0].startswith("truth-")
    assert files[1] == "truth.csv"
    assert written.read_text().startswith("request_id,row,target")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,target\nvisit-1,yes\n", "line 1: no 'request_id' column"),
        ("request_id,outcome\nvisit-1,yes\n", "line 1: no column 'target' (the model's target)"),
        ("request_id,target\nvisit-1,yes\nvisit-2\n", "line 3: 1 fields, the header has 2"),
        ("request_id,row,target\nvisit-1,first,yes\n", "line 2, column 'row': 'first'"),
        ("request_id,target\nvisit-1,\n", "line 2, column 'target': empty"),
        ("request_id,target\n", "no labels"),
        (
            "request_id,target\nvisit-1,Yes\nvisit-2,yes\nvisit-3,Yes\n",
            "2 of 3 true values cannot score churn version 1: 'Yes' (2); each must be one of "
            "the classes 'no', 'yes'",
        ),
    ],
)
def test_a_label_file_the_check_could_not_use_is_refused_and_nothing_written(
    tmp_path: Path, churn: list[str], capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text(text)
    capsys.readouterr()

    code = main([*churn, "labels", "churn", str(truth)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {truth}: {message}")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert not (tmp_path / "store" / "labels").exists()


def test_labels_for_a_model_never_trained_or_a_missing_file_are_error_lines(
    tmp_path: Path, churn: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("request_id,target\nvisit-1,yes\n")
    capsys.readouterr()
    assert main([*churn, "labels", "ghost", str(truth)]) == 2
    assert capsys.readouterr().err == "error: no model named 'ghost' is registered\n"
    assert main([*churn, "labels", "churn", str(tmp_path / "nope.csv")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.csv'}: No such file or directory\n"
    assert not (tmp_path / "store" / "labels").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_predict_from_a_server_that_is_not_running_is_an_error_line(
    tmp_path: Path, churn: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "churn.csv"
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there any more
    capsys.readouterr()

    code = main([*churn, "predict", "churn", "--csv", str(data), "--url", url])

    assert code == 2
    assert capsys.readouterr().err == (
        f"error: no answer from {url}/v2/models/churn: Connection refused; start the server "
        "(`mlops serve`) or leave out --url to predict in-process\n"
    )


def test_serve_on_a_port_in_use_is_an_error_line(
    churn: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        capsys.readouterr()

        code = main([*churn, "serve", "--port", str(port)])

    assert code == 2
    assert capsys.readouterr().err == (
        f"error: cannot serve on 127.0.0.1:{port}: Address already in use; is another server "
        "running there? Stop it, or choose another port with --port\n"
    )


def test_store_may_follow_the_command_and_version_is_the_packages(
    churn: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["versions", "churn", *churn]) == 0
    assert capsys.readouterr().out.startswith("v1\tready\t")
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"mlops {importlib.metadata.version('serverless-mlops')}\n"


def test_output_into_a_reader_that_stops_ends_quietly(tmp_path: Path, churn: list[str]) -> None:
    # More rows than a pipe holds (64 KiB), so that writing outlives the reader.
    data = tmp_path / "many.csv"
    data.write_bytes(classification_csv(3000))
    command = [
        sys.executable,
        "-m",
        "functions.cli",
        *churn,
        "predict",
        "churn",
        "--csv",
        str(data),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    mlops = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert mlops.stdout is not None
    assert mlops.stderr is not None
    assert mlops.stdout.readline() == b"{\n"  # as `| head -1` reads it, then goes away
    mlops.stdout.close()
    err = mlops.stderr.read().decode()
    assert mlops.wait(timeout=60) == 128 + signal.SIGPIPE
    assert err == ""


def test_the_lifecycle_demo_twice_on_one_store_makes_a_model_each_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    demo = ["--store", "store", "demo", "lifecycle", "--rows", "300", "--weeks", "1"]
    models = []
    for expected in ("shop-recommendations", "shop-recommendations-2"):
        assert main(demo) == 0
        out = capsys.readouterr().out
        assert f"; model: {expected}\n" in out
        page = out.split("open the last week's page: ")[1].splitlines()[0]
        # A path from here, to the page of the week just checked.
        assert page == f"store/monitoring/{expected}/2026-01-12T00-168h.html"
        assert (tmp_path / page).read_text().startswith("<!doctype html>")
        assert f"mlops --store store versions {expected}" in out
        models.append(expected)
    assert main(["--store", "store", "models"]) == 0
    listed = capsys.readouterr().out
    assert all(f"{model}: 2 version(s), production=1" in listed for model in models)


def test_a_text_column_of_nearly_a_value_per_row_is_warned_of_and_the_card_is_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(5)
    n = 400
    x = rng.normal(size=n)
    # 300 names in 400 rows (75%): under the data check's 90% id rule, so it trains.
    names = [f"name-{i % 300}" for i in range(n)]
    colour = rng.choice(["red", "green", "blue"], size=n)
    y = np.where(x + rng.normal(scale=0.5, size=n) > 0.3, "yes", "no")
    data = tmp_path / "people.csv"
    data.write_bytes(
        to_csv(
            ["x", "name", "colour", "target"], list(zip(x.round(3), names, colour, y, strict=True))
        )
    )
    store = ["--store", str(tmp_path / "store")]

    assert main([*store, "upload", str(data), "--model", "people"]) == 0

    err = capsys.readouterr().err
    # The training rows: those of the file less the rows held out (stored beside the model).
    version = tmp_path / "store/models/people/versions/1"
    held_out = decode_holdout((version / "holdout.jsonl.gz").read_bytes(), "holdout")
    held_names = Counter(str(r.features["name"]) for r in held_out)
    trained = sum(count > held_names[name] for name, count in Counter(names).items())
    train_rows = n - len(held_out)
    assert err.startswith(
        f"warning: column 'name' is categorical with {trained} different values in "
        f"{train_rows} training rows ({trained / train_rows:.0%}): "
    )
    assert 'list it under "drop" in the spec; else group the rare values with' in err
    assert "colour" not in err
    assert main([*store, "show", "people"]) == 0
    card = capsys.readouterr().out
    assert f"## Warnings\n\n- column 'name' is categorical with {trained} different" in card
    # The trivial predictor's figures beside the model's, from the same held-out rows.
    meta = json.loads((version / "metadata.json").read_text())
    accuracy = f"| accuracy | {meta['metrics']['accuracy']:.4f} | "
    assert accuracy + f"{meta['trivial_metrics']['accuracy']:.4f} | higher |" in card
    assert "| metric | value | majority class and class priors | better |" in card
    # Class balance, counted from the training rows; held-out rows, from the stored ones.
    yes_held = sum(r.label == "yes" for r in held_out)
    share_yes = (int(np.sum(y == "yes")) - yes_held) / train_rows
    assert f"| yes | {share_yes:.1%} | {yes_held} | " in card
    assert "`max_iter=1000`" in card  # the estimator's parameters
    assert "| colour | categorical | 0.0% | blue, green, red |" in card
    assert f"| name | categorical | 0.0% | {trained}: name-" in card


def test_no_many_categories_warning_once_the_spec_groups_or_drops_the_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(5)
    n = 400
    x = rng.normal(size=n)
    names = [f"name-{i % 300}" for i in range(n)]
    y = np.where(x > 0, "yes", "no")
    data = tmp_path / "people.csv"
    data.write_bytes(to_csv(["x", "name", "target"], list(zip(x.round(3), names, y, strict=True))))
    for model, spec in (("grouped", {"max_categories": 20}), ("dropped", {"drop": ["name"]})):
        spec_path = tmp_path / f"{model}.json"
        spec_path.write_text(json.dumps(spec))
        store = ["--store", str(tmp_path / "store")]
        assert main([*store, "upload", str(data), "--model", model, "--spec", str(spec_path)]) == 0
        assert "warning" not in capsys.readouterr().err


def test_monitor_says_why_a_window_is_empty_and_checks_the_hour_in_progress(
    tmp_path: Path, churn: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "churn.csv"
    assert main([*churn, "predict", "churn", "--csv", str(data)]) == 0
    capsys.readouterr()

    assert main([*churn, "monitor", "churn"]) == 0
    out = capsys.readouterr().out
    assert ": insufficient_data (0 rows" in out
    assert "(the last complete one); a running `mlops serve` holds the rows" in out
    assert "check the hour in progress with --window current" in out

    assert main([*churn, "monitor", "churn", "--window", "current"]) == 0
    out = capsys.readouterr().out
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
    assert f"churn {hour}-1h: " in out
    assert "(300 rows" in out  # the rows just predicted, all of the CSV's


def test_serving_on_port_zero_prints_the_port_it_got(capsys: pytest.CaptureFixture[str]) -> None:
    import threading
    import time

    from functions.local_server import build_server, stop_server

    server = build_server("127.0.0.1", 0)
    bound = server.server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    printed = ""
    try:
        for _ in range(200):  # Chalice prints the line as it starts serving
            printed += capsys.readouterr().out
            if "Serving on" in printed:
                break
            time.sleep(0.01)
    finally:
        server.server.shutdown()
        thread.join(timeout=5)
        stop_server(server)
    assert bound != 0
    assert f"Serving on http://127.0.0.1:{bound}" in printed
