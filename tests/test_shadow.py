"""Shadow: staging scores live requests beside production, and the caller never notices."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from chalice.test import Client

from app import app
from functions import inference
from shared.monitoring.capture import decode_capture_file
from shared.monitoring.capture_writer import CaptureWriter
from shared.monitoring.job import check_model
from shared.monitoring.report import decode_report
from shared.registry.records import version_prefix
from shared.serving.cache import ModelCache
from shared.store.local import LocalStore
from shared.training.job import train_from_dataset
from tests.test_maintenance import MODEL, dataset
from tests.test_monitoring import HOUR, WINDOW, draw, records


def _spec(store: LocalStore, shadow: bool) -> None:
    spec = {"shadow": {"enabled": shadow, "sample_rate": 1.0}}
    store.put(f"specs/{MODEL}.json", json.dumps(spec).encode())


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStore]:
    local = LocalStore(tmp_path / "store")
    monkeypatch.setenv("MLOPS_STORE", str(tmp_path / "store"))
    _spec(local, shadow=False)
    for name, seed in (("a", 30), ("b", 31)):
        local.put(f"datasets/{MODEL}/{name}.csv", dataset(2000, seed=seed))
        assert train_from_dataset(local, f"datasets/{MODEL}/{name}.csv", trigger="t").version
    yield local
    inference.reset_cache()


def _serve_fresh(store: LocalStore) -> ModelCache:
    cache = ModelCache(store)
    inference.reset_cache(cache, CaptureWriter(store, clock=lambda: HOUR.timestamp() + 60))
    return cache


def _answers(client: Client, bodies: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    for body in bodies:
        response = client.http.post(
            f"/models/{MODEL}/predict", headers={"Content-Type": "application/json"}, body=body
        )
        out.append((response.status_code, dict(response.headers), response.body))
    return out


def test_responses_are_byte_identical_with_shadowing_on_or_off(store: LocalStore) -> None:
    traffic = draw(40, seed=32)
    bodies = [
        json.dumps({"id": f"r{i}", "records": records(traffic, i * 10, i * 10 + 10)})
        for i in range(4)
    ]
    with Client(app) as client:
        _serve_fresh(store)
        plain = _answers(client, bodies)
        _spec(store, shadow=True)
        cache = _serve_fresh(store)
        _answers(client, bodies[:1])  # the first shadowed request starts loading staging
        cache.wait_for_background()
        shadowed = _answers(client, bodies)
    assert shadowed == plain
    inference.capture_writer().flush()
    rows = [
        row
        for info in store.list(f"captures/{MODEL}/")
        for row in decode_capture_file(store.get(info.key).body, info.key)
    ]
    served = {(r.capture_id, r.row): r for r in rows if r.role == "served" and r.request_id != "r0"}
    shadows = [r for r in rows if r.role == "shadow"]
    assert len(shadows) == 40  # every row of the four requests after staging loaded
    assert {r.version for r in shadows} == {2}
    assert all(served[(r.capture_id, r.row)].version == 1 for r in shadows if r.request_id != "r0")


def test_a_broken_shadow_changes_nothing_for_the_caller(store: LocalStore) -> None:
    body = json.dumps({"id": "x", "records": records(draw(5, seed=33))})
    with Client(app) as client:
        _serve_fresh(store)
        plain = _answers(client, [body])
        # Staging's artifact no longer matches its hash: it must never be loaded or used.
        key = version_prefix(MODEL, 2) + "model.onnx"
        store.delete(key)
        store.put(key, b"not the model")
        _spec(store, shadow=True)
        cache = _serve_fresh(store)
        first = _answers(client, [body])
        cache.wait_for_background()
        again = _answers(client, [body, body])
    assert first == plain
    assert again == plain * 2


def test_the_check_reports_agreement_and_both_metrics_on_labelled_rows(
    store: LocalStore,
) -> None:
    _spec(store, shadow=True)
    cache = _serve_fresh(store)
    traffic = draw(300, seed=34)
    first = json.dumps({"id": "warm", "records": records(traffic, 0, 1)}).encode()
    assert inference.predict_records(MODEL, None, first, {}).status == 200
    cache.wait_for_background()
    for start in range(0, 300, 100):
        body = json.dumps({"id": f"s-{start}", "records": records(traffic, start, start + 100)})
        assert inference.predict_records(MODEL, None, body.encode(), {}).status == 200
    inference.capture_writer().flush()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["request_id", "row", "target"])
    writer.writerows(
        (f"s-{100 * (i // 100)}", i % 100, str(traffic["target"][i])) for i in range(300)
    )
    store.put(f"labels/{MODEL}/s.csv", out.getvalue().encode())
    outcome = check_model(store, MODEL, WINDOW)
    report = decode_report(store.get(outcome.report_key).body, "r")
    (comparison,) = report.shadows
    assert (comparison.version, comparison.served_version) == (2, 1)
    assert comparison.paired_rows == 300
    assert comparison.agreement is not None
    assert 0.7 < comparison.agreement <= 1.0
    assert comparison.labelled_rows == 300
    assert comparison.performance is not None
    assert comparison.served_performance is not None
    assert report.rows == 301  # the shadow's rows are not traffic: counted once, as served
    page = store.get(outcome.report_key.removesuffix(".json") + ".html").body.decode()
    assert "v2 beside v1" in page


def test_shadow_settings_are_checked_like_the_rest_of_the_spec() -> None:
    from shared.data.spec import parse_spec
    from shared.errors import SpecError

    with pytest.raises(SpecError, match=r"shadow.sample_rate: must be between 0 and 1"):
        parse_spec(b'{"shadow": {"enabled": true, "sample_rate": 2}}')
