"""The README's main job from the command line: upload, train, serve, predict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions import inference
from functions.cli import main
from functions.local_server import running_server
from tests.factories import classification_csv


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
