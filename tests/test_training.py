"""Upload a dataset, train, and find a checked ONNX version registered."""

from __future__ import annotations

import json
import platform
import re
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from shared.data.dataset import prepare
from shared.data.spec import parse_spec
from shared.errors import ObjectNotFound
from shared.registry.audit import read_trail
from shared.registry.metadata import NUMERIC_INPUT, FeatureSchema, decode_metadata
from shared.registry.records import version_prefix
from shared.registry.registry import ModelRegistry
from shared.serving.runtime import ModelInput, OnnxModel, sha256_hex
from shared.store.base import ObjectStore
from shared.store.local import LocalStore
from shared.training.export import export_pipeline, float32_at_or_below
from shared.training.job import source_fingerprint, train_from_dataset
from shared.training.pipeline import classification_metrics, fit_pipeline
from tests.factories import classification_csv, regression_csv, to_csv


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def put_spec(store: ObjectStore, model: str, **spec: object) -> None:
    store.put(f"specs/{model}.json", json.dumps(spec).encode())


def train(store: ObjectStore, model: str, body: bytes, name: str = "data.csv"):  # type: ignore[no-untyped-def]
    key = f"datasets/{model}/{name}"
    store.put(key, body)
    return train_from_dataset(store, key, trigger="test")


@pytest.mark.parametrize("estimator", ["linear", "random_forest", "gradient_boosting"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_each_estimator_trains_exports_and_registers(
    local: LocalStore, estimator: str, task: str
) -> None:
    params = {"n_estimators": 20} if estimator == "random_forest" else {}
    put_spec(local, "m", estimator=estimator, params=params)
    body = classification_csv() if task == "classification" else regression_csv()

    outcome = train(local, "m", body)

    assert outcome.status == "registered", outcome.reason
    assert (outcome.version, outcome.alias) == (1, "production")
    prefix = version_prefix("m", 1)
    onnx_bytes = local.get(prefix + "model.onnx").body
    meta = decode_metadata(local.get(prefix + "metadata.json").body)
    assert meta.task == task
    assert meta.estimator == estimator
    assert meta.onnx.sha256 == sha256_hex(onnx_bytes)
    assert meta.lineage.data.sha256 == sha256_hex(body)
    assert meta.lineage.data.rows == 300
    assert meta.lineage.data.train_rows + meta.lineage.data.test_rows == 300
    assert meta.parity.passed
    assert meta.parity.violations == 0
    assert meta.parity.max_abs_diff <= meta.parity.atol + 1e-3
    expected = (
        {"accuracy", "f1", "roc_auc", "log_loss"}
        if task == "classification"
        else {"rmse", "mae", "r2"}
    )
    assert set(meta.metrics) == expected
    # The data carries signal: a working pipeline beats chance by a wide margin.
    if task == "classification":
        assert meta.metrics["roc_auc"] > 0.8
        assert meta.classes == ["no", "yes"]
    else:
        assert meta.metrics["r2"] > 0.5
    assert [f.name for f in meta.features] == ["x0", "x1", "x2", "x3", "x4", "region", "plan"]
    assert meta.features[5].categories == ["north", "south"]
    assert set(meta.timings) >= {"read", "prepare", "fit", "export", "parity", "profile"}
    assert b"version 1" in local.get(prefix + "model_card.md").body
    record = ModelRegistry(local, "m").load()
    assert record.aliases == {"production": 1}
    assert record.entry(1).status == "ready"
    assert record.entry(1).sha256 == meta.onnx.sha256


def test_exported_graph_takes_raw_values_by_name_with_gaps_and_unknown_categories(
    local: LocalStore,
) -> None:
    assert train(local, "m", classification_csv()).status == "registered"
    prefix = version_prefix("m", 1)
    meta = decode_metadata(local.get(prefix + "metadata.json").body)
    model = OnnxModel(local.get(prefix + "model.onnx").body, meta.features)
    assert [f.name for f in model.numeric_features] == ["x0", "x1", "x2", "x3", "x4"]
    batch = ModelInput(
        numeric=np.array([[0.5, 1.0, 0.0, -1.0, 0.1], [np.nan, 2.0, 0.0, 1.0, 0.2]]),
        categorical={
            "region": np.array(["north", ""], dtype=object),
            "plan": np.array(["never-seen", "pro"], dtype=object),
        },
    )
    out = model.run(model.feed(batch))
    assert out["probabilities"].shape == (2, 2)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    assert set(out["label"]) <= {"no", "yes"}
    # The artifact is a plain ONNX file: onnxruntime alone can open it.
    session = ort.InferenceSession(local.get(prefix + "model.onnx").body)
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("numeric", [None, 5]),
        ("region", [None, 1]),
        ("plan", [None, 1]),
    ]


def test_baseline_profile_is_stored_and_compact(local: LocalStore) -> None:
    train(local, "m", classification_csv())
    raw = local.get(version_prefix("m", 1) + "metadata.json").body
    baseline = json.loads(raw)["baseline"]
    assert baseline["rows"] == 300
    x1 = baseline["features"]["x1"]
    assert x1["kind"] == "numeric"
    assert x1["missing"] == 18
    assert sum(x1["counts"]) == 300 - 18
    assert len(x1["counts"]) == len(x1["edges"]) + 1 <= 101
    plan = baseline["features"]["plan"]
    assert plan["kind"] == "categorical"
    assert set(plan["counts"]) == {"basic", "plus", "pro"}
    assert sum(baseline["predictions"]["class_counts"].values()) == 60
    assert len(raw) < 40_000  # 100 bins for each of 5 numeric features, indented


def test_multiclass(local: LocalStore) -> None:
    outcome = train(local, "m", classification_csv(n_classes=3))
    assert outcome.status == "registered", outcome.reason
    meta = decode_metadata(local.get(version_prefix("m", 1) + "metadata.json").body)
    assert meta.classes == ["maybe", "no", "yes"]


def test_same_dataset_twice_trains_once(local: LocalStore) -> None:
    body = classification_csv()
    first = train(local, "m", body)
    second = train_from_dataset(local, "datasets/m/data.csv", trigger="test")
    assert (first.status, second.status) == ("registered", "duplicate")
    assert second.version == 1
    assert len(ModelRegistry(local, "m").load().versions) == 1


def test_new_data_becomes_staging_and_production_stays(local: LocalStore) -> None:
    train(local, "m", classification_csv(seed=0))
    second = train(local, "m", classification_csv(seed=1), name="more.csv")
    assert (second.version, second.alias) == (2, "staging")
    record = ModelRegistry(local, "m").load()
    assert record.aliases == {"production": 1, "staging": 2}
    assert [c.alias for c in record.alias_history] == ["production", "staging"]


def test_changed_spec_retrains_the_same_data(local: LocalStore) -> None:
    body = classification_csv()
    train(local, "m", body)
    put_spec(local, "m", estimator="random_forest", params={"n_estimators": 10})
    outcome = train_from_dataset(local, "datasets/m/data.csv", trigger="test")
    assert (outcome.status, outcome.version) == ("registered", 2)


def test_parity_beyond_tolerance_registers_nothing(local: LocalStore) -> None:
    # float32 serving can never match float64 exactly: a zero tolerance must fail.
    put_spec(local, "m", parity={"atol": 0.0, "rtol": 0.0})
    outcome = train(local, "m", regression_csv())
    assert outcome.status == "failed"
    assert "ONNX export disagrees with scikit-learn" in (outcome.reason or "")
    # It names what to try: a tolerance above the difference seen, or the other estimators.
    advice = re.search(r'"parity": \{"atol": ([0-9.e-]+)\}', outcome.reason or "")
    assert advice is not None, outcome.reason
    seen = float(re.search(r"max \|difference\| ([0-9.e-]+)", outcome.reason or "")[1])  # type: ignore[index]
    assert float(advice[1]) > seen
    assert 'try "estimator": "random_forest" or "gradient_boosting"' in (outcome.reason or "")
    with pytest.raises(ObjectNotFound):
        local.get("models/m/registry.json")
    assert [e.event for e in read_trail(local, "m")] == ["training_failed"]


@pytest.mark.parametrize(
    ("body", "spec", "message"),
    [
        (b"", {}, "empty"),
        (b"a,b,target\n1,2,x\n", {}, "rows"),
        (classification_csv(), {"target": "label"}, "label"),
        (classification_csv(), {"estimater": "linear"}, "estimater"),
        (classification_csv(), {"params": {"n_trees": 3}}, "n_trees"),
        (
            classification_csv(),
            {"estimator": "random_forest", "params": {"n_estimators": -1}},
            "n_estimators",
        ),
        (classification_csv(), {"task": "regression", "primary_metric": "f1"}, "primary_metric"),
        (classification_csv(), {"primary_metric": "rmse"}, "primary_metric"),
    ],
)
def test_bad_input_fails_with_a_clear_error_and_no_version(
    local: LocalStore, body: bytes, spec: dict[str, object], message: str
) -> None:
    if spec:
        put_spec(local, "m", **spec)
    outcome = train(local, "m", body)
    assert outcome.status == "failed"
    assert message in (outcome.reason or "")
    with pytest.raises(ObjectNotFound):
        local.get("models/m/registry.json")
    failures = [e for e in read_trail(local, "m") if e.event == "training_failed"]
    assert len(failures) == 1
    assert failures[0].details["data_key"] == "datasets/m/data.csv"
    assert message in failures[0].details["reason"]


def test_failed_run_after_a_good_one_moves_no_alias(local: LocalStore) -> None:
    train(local, "m", classification_csv())
    before = ModelRegistry(local, "m").load()
    outcome = train(local, "m", b"x0,target\n", name="broken.csv")
    assert outcome.status == "failed"
    assert ModelRegistry(local, "m").load() == before


class FailingArtifactStore(LocalStore):
    """A store whose artifact writes fail, as a full disk or a revoked permission would."""

    def put(self, key: str, body: bytes, **kwargs: Any) -> str:
        if key.endswith("model.onnx"):
            raise OSError("disk full")
        return super().put(key, body, **kwargs)


def test_artifact_write_failure_marks_the_version_failed(tmp_path: Path) -> None:
    store = FailingArtifactStore(tmp_path / "s")
    store.put("datasets/m/data.csv", classification_csv())
    with pytest.raises(OSError, match="disk full"):
        train_from_dataset(store, "datasets/m/data.csv", trigger="test")
    record = ModelRegistry(store, "m").load()
    assert record.entry(1).status == "failed"
    assert "disk full" in (record.entry(1).reason or "")
    assert record.aliases == {}


class LosesOneAuditWrite(LocalStore):
    """A store whose first write of one kind of audit record fails (a throttled request)."""

    def __init__(self, root: Path, event: str) -> None:
        super().__init__(root)
        self.event = event
        self.failed = False

    def put(self, key: str, body: bytes, **kwargs: Any) -> str:
        if f"-{self.event}-" in key and not self.failed:
            self.failed = True
            raise OSError("SlowDown")
        return super().put(key, body, **kwargs)


@pytest.mark.parametrize(
    ("body", "settled", "event"),
    [
        (classification_csv(), "ready", "version_registered"),
        (
            to_csv(["w", "target"], [[float(i % 7), "ab"[i % 2]] for i in range(200)]),
            "rejected",
            "version_rejected",
        ),
    ],
)
def test_the_trail_agrees_with_the_registry_when_its_record_of_a_version_fails(
    tmp_path: Path, body: bytes, settled: str, event: str
) -> None:
    store = LosesOneAuditWrite(tmp_path / "s", event)
    store.put("datasets/m/data.csv", body)

    with pytest.raises(Exception, match="SlowDown"):  # raised: the platform retries
        train_from_dataset(store, "datasets/m/data.csv", trigger="test")
    assert ModelRegistry(store, "m").load().entry(1).status == settled
    trail = [e.event for e in read_trail(store, "m")]
    assert trail == ["version_claimed"]  # neither version_failed nor training_failed

    retry = train_from_dataset(store, "datasets/m/data.csv", trigger="test")
    again = train_from_dataset(store, "datasets/m/data.csv", trigger="test")

    assert (retry.status, again.status) == ("duplicate", "duplicate")
    assert ModelRegistry(store, "m").load().entry(1).status == settled
    trail = [e.event for e in read_trail(store, "m")]
    assert trail == ["version_claimed", event, "duplicate_ignored", "duplicate_ignored"]


def test_two_concurrent_trainings_get_versions_1_and_2(racing_store: ObjectStore) -> None:
    store = racing_store  # every backend: local folder, S3, S3 under a prefix
    store.put("datasets/m/a.csv", classification_csv(seed=0))
    store.put("datasets/m/b.csv", classification_csv(seed=1))
    outcomes = []
    barrier = threading.Barrier(2)

    def run(key: str) -> None:
        barrier.wait()
        outcomes.append(train_from_dataset(store, key, trigger="test"))

    threads = [
        threading.Thread(target=run, args=(k,)) for k in ("datasets/m/a.csv", "datasets/m/b.csv")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.version for o in outcomes if o.version) == [1, 2]
    record = ModelRegistry(store, "m").load()
    assert [e.status for e in record.versions] == ["ready", "ready"]
    assert sorted(record.aliases) == ["production", "staging"]


def test_the_same_event_twice_at_once_makes_one_version(racing_store: ObjectStore) -> None:
    racing_store.put("datasets/m/a.csv", classification_csv())
    barrier = threading.Barrier(2)
    outcomes = []

    def run() -> None:
        barrier.wait()
        outcomes.append(train_from_dataset(racing_store, "datasets/m/a.csv", trigger="test"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.status for o in outcomes) == ["duplicate", "registered"]
    assert len(ModelRegistry(racing_store, "m").load().versions) == 1


def test_metadata_round_trips(local: LocalStore) -> None:
    train(local, "m", regression_csv())
    raw = local.get(version_prefix("m", 1) + "metadata.json").body
    meta = decode_metadata(raw)
    assert msgspec.json.decode(msgspec.json.encode(meta)) == json.loads(raw)
    assert meta.lineage.packages["scikit-learn"]
    assert meta.lineage.spec_etag is None  # trained on the defaults


def test_spec_listing_a_column_twice_is_rejected(local: LocalStore) -> None:
    put_spec(local, "m", features=["x0", "x1", "x0"])
    outcome = train(local, "m", classification_csv())
    assert outcome.status == "failed"
    assert "features: lists ['x0'] more than once" in (outcome.reason or "")


def test_float32_probabilities_just_over_one_still_score() -> None:
    # A random forest's float32 votes can add up to 1.0000001 (seen on 20 trees, 5,000 rows).
    classes = np.array(["no", "yes"], dtype=object)
    probabilities = np.array([[1.0000001, 0.0], [0.2, 0.8], [0.3, 0.7]], dtype=np.float32)
    y_true = np.array(["no", "yes", "no"], dtype=object)
    labels = np.array(["no", "yes", "yes"], dtype=object)
    metrics = classification_metrics(y_true, labels, probabilities, classes)
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert np.isfinite(metrics["log_loss"])


def test_a_parameter_refused_at_fit_time_is_a_spec_failure(local: LocalStore) -> None:
    put_spec(local, "m", params={"l1_ratio": 1.0})  # lbfgs, the default solver, refuses l1
    outcome = train(local, "m", classification_csv())
    assert outcome.status == "failed"
    assert "params: LogisticRegression could not fit" in (outcome.reason or "")


def test_the_same_bytes_uploaded_again_train_once_even_on_a_versioned_bucket() -> None:
    # The fingerprint takes no ETag or version id: the same bytes under a new version id
    # (uploaded again to a versioned bucket) are the same source.
    key, first, changed = "datasets/m/a.csv", sha256_hex(b"x"), sha256_hex(b"y")
    assert source_fingerprint(key, first, None) == source_fingerprint(key, sha256_hex(b"x"), None)
    assert source_fingerprint(key, first, None) != source_fingerprint(key, changed, None)
    assert source_fingerprint(key, first, None) != source_fingerprint(key, first, '"spec"')
    assert source_fingerprint(key, first, None) != source_fingerprint(
        "datasets/m/b.csv", first, None
    )


def test_an_upload_outside_a_model_folder_fails_without_a_retry(local: LocalStore) -> None:
    local.put("datasets/bad..name/a.csv", classification_csv())
    outcome = train_from_dataset(local, "datasets/bad..name/a.csv", trigger="test")
    assert outcome.status == "failed"
    assert "model name" in (outcome.reason or "")


def test_the_quality_gate_rejects_random_labels_and_passes_a_real_model(
    local: LocalStore,
) -> None:
    rng = np.random.default_rng(0)
    rows = [[*map(float, rng.normal(size=4)), str(rng.choice(["a", "b"]))] for _ in range(400)]
    local.put("datasets/noise/data.csv", to_csv(["w", "x", "y", "z", "target"], rows))
    outcome = train_from_dataset(local, "datasets/noise/data.csv", trigger="test")
    assert outcome.status == "rejected"
    assert outcome.reason is not None
    assert (
        "does not beat the trivial predictor (majority class and class priors: 0.5000)"
        in outcome.reason
    )
    record = ModelRegistry(local, "noise").load()
    assert record.entry(1).status == "rejected"
    assert record.aliases == {}  # no alias moves: nothing is served
    meta = decode_metadata(local.get(version_prefix("noise", 1) + "metadata.json").body)
    assert meta.gate is not None
    assert not meta.gate.passed
    assert meta.trivial_metrics["roc_auc"] == 0.5
    rejected = [e for e in read_trail(local, "noise") if e.event == "version_rejected"]
    assert rejected[0].details["figures"]["trivial"] == 0.5

    local.put("datasets/churn/data.csv", classification_csv())
    good = train_from_dataset(local, "datasets/churn/data.csv", trigger="test")
    assert good.status == "registered"
    meta = decode_metadata(local.get(version_prefix("churn", 1) + "metadata.json").body)
    assert meta.gate is not None
    assert meta.gate.passed
    assert meta.gate.improvement > 0.2


def test_a_spec_floor_on_the_primary_metric_rejects_too(local: LocalStore) -> None:
    local.put("specs/churn.json", json.dumps({"gate": {"minimum": 0.999}}).encode())
    local.put("datasets/churn/data.csv", classification_csv())
    outcome = train_from_dataset(local, "datasets/churn/data.csv", trigger="test")
    assert outcome.status == "rejected"
    assert "the spec requires at least 0.999" in (outcome.reason or "")


def test_a_regression_no_better_than_the_mean_is_rejected(local: LocalStore) -> None:
    rng = np.random.default_rng(1)
    rows = [[*map(float, rng.normal(size=3)), float(rng.normal())] for _ in range(400)]
    local.put("datasets/flat/data.csv", to_csv(["a", "b", "c", "target"], rows))
    outcome = train_from_dataset(local, "datasets/flat/data.csv", trigger="test")
    assert outcome.status == "rejected"
    assert "training mean" in (outcome.reason or "")


def test_f1_is_the_positive_class_s_the_second_in_sorted_order() -> None:
    # docs/training.md: F1 of the second class in sorted order ("yes"), by scikit-learn itself.
    classes = np.array(["no", "yes"], dtype=object)
    y_true = np.array(["no", "no", "no", "yes", "yes"], dtype=object)
    labels = np.array(["no", "yes", "no", "yes", "no"], dtype=object)
    p_yes = np.array([0.1, 0.6, 0.3, 0.8, 0.4])
    probabilities = np.column_stack([1 - p_yes, p_yes]).astype(np.float32)

    metrics = classification_metrics(y_true, labels, probabilities, classes)

    assert metrics["f1"] == pytest.approx(0.5)  # "yes": 1 hit, 1 false alarm, 1 miss
    assert metrics["f1"] == pytest.approx(f1_score(y_true, labels, pos_label="yes"))
    assert metrics["f1"] != pytest.approx(f1_score(y_true, labels, pos_label="no"))  # 2/3
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y_true == "yes", p_yes))
    assert metrics["accuracy"] == pytest.approx(0.6)


def test_f1_of_integer_classes_is_the_larger_one_s() -> None:
    classes = np.array([3, 7])
    y_true = np.array([3, 3, 3, 7, 7])
    labels = np.array([3, 7, 3, 7, 3])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    metrics = classification_metrics(y_true, labels, probabilities, classes)
    assert metrics["f1"] == pytest.approx(f1_score(y_true, labels, pos_label=7)) == 0.5


class NaNOnOneRow:
    """An ONNX model stand-in whose outputs are NaN on one row and exact elsewhere."""

    def __init__(self, pipeline: Any, row: int) -> None:
        self.pipeline = pipeline
        self.row = row

    def feed(self, X: np.ndarray) -> np.ndarray:
        return X

    def run(self, X: np.ndarray) -> dict[str, np.ndarray]:
        probabilities = np.asarray(self.pipeline.predict_proba(X), dtype=np.float32)
        probabilities[self.row] = np.nan
        return {"label": np.asarray(self.pipeline.predict(X)), "probabilities": probabilities}


def test_a_nan_output_fails_the_parity_check() -> None:
    from sklearn.linear_model import LogisticRegression

    from shared.data.spec import ParityTolerance
    from shared.training.export import check_parity

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    pipeline = LogisticRegression().fit(X, y)
    tolerance = ParityTolerance(atol=1.0, rtol=1.0)  # wide: only the NaN can violate it

    stand_in = NaNOnOneRow(pipeline, row=5)
    report, _ = check_parity(pipeline, stand_in, X, X, "classification", tolerance)  # type: ignore[arg-type]

    assert (report.violations, report.passed) == (1, False)


def test_a_feature_named_like_the_graph_s_inner_input_gets_an_input_of_its_own(
    local: LocalStore,
) -> None:
    # "columns" names the graph's inner tensor (numbers and category codes side by side).
    body = classification_csv().replace(b",region,", b",columns,", 1)
    assert train(local, "m", body).status == "registered"
    prefix = version_prefix("m", 1)
    meta = decode_metadata(local.get(prefix + "metadata.json").body)
    assert {f.name: f.input_name for f in meta.features}["columns"] == "columns_2"
    session = ort.InferenceSession(local.get(prefix + "model.onnx").body)
    assert [i.name for i in session.get_inputs()] == ["numeric", "columns_2", "plan"]


def test_categories_the_model_never_saw_score_alike_and_as_none_of_the_known(
    local: LocalStore,
) -> None:
    put_spec(local, "m", estimator="linear")
    assert train(local, "m", classification_csv()).status == "registered"
    prefix = version_prefix("m", 1)
    meta = decode_metadata(local.get(prefix + "metadata.json").body)
    model = OnnxModel(local.get(prefix + "model.onnx").body, meta.features)
    plans = ["never-seen", "also-unknown", "basic", "plus", "pro"]
    batch = ModelInput(
        numeric=np.tile([0.5, 1.0, 0.0, -1.0, 0.1], (len(plans), 1)),
        categorical={
            "region": np.array(["north"] * len(plans), dtype=object),
            "plan": np.array(plans, dtype=object),
        },
    )
    p = model.run(model.feed(batch))["probabilities"][:, 1]
    assert p[0] == p[1]  # both unknown: the same (no one-hot column set)
    assert len({float(v) for v in p[2:]}) == 3  # each known plan has its own effect
    assert all(p[0] != v for v in p[2:])


def test_held_out_rows_are_encoded_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.registry import holdout

    monkeypatch.setattr(holdout, "_BLOCK_ROWS", 7)
    x = np.arange(20, dtype=np.float64)
    x[[3, 15]] = np.nan
    city = np.array([("Oslo", "", "Lima")[i % 3] for i in range(20)], dtype=object)
    body = holdout.encode_holdout({"x": x, "city": city}, np.arange(20) % 2)
    rows = holdout.decode_holdout(body, "k")
    assert len(rows) == 20
    assert [r.features["x"] for r in rows[:5]] == [0.0, 1.0, 2.0, None, 4.0]
    assert rows[15].features["x"] is None
    assert [r.features["city"] for r in rows[:3]] == ["Oslo", None, "Lima"]
    assert [r.label for r in rows[6:9]] == [0, 1, 0]  # across the first block's end


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_the_mmap_threshold_is_set_on_glibc() -> None:
    from shared.training.memory import map_large_blocks

    assert map_large_blocks() is True


@pytest.mark.parametrize(
    "name", ["variable", "variable1", "shape_tensor", "plan_code", "numeric", "label"]
)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_categorical_feature_named_like_a_tensor_of_the_graph_trains_and_serves(
    local: LocalStore, name: str, task: str
) -> None:
    put_spec(local, "m", estimator="linear")
    body = classification_csv() if task == "classification" else regression_csv()
    body = body.replace(b",region,", f",{name},".encode(), 1)
    outcome = train(local, "m", body)
    assert outcome.status == "registered", outcome.reason
    prefix = version_prefix("m", 1)
    meta = decode_metadata(local.get(prefix + "metadata.json").body)
    model = OnnxModel(local.get(prefix + "model.onnx").body, meta.features)
    batch = ModelInput(
        numeric=np.zeros((2, 5)),
        categorical={
            name: np.array(["north", "south"], dtype=object),
            "plan": np.array(["pro", "basic"], dtype=object),
        },
    )
    out = model.run(model.feed(batch))
    assert len(out) == 2 if task == "classification" else len(out) == 1


def test_held_out_float32_numbers_are_written_in_their_shortest_decimals() -> None:
    from shared.registry.holdout import decode_holdout, encode_holdout, short_decimals

    rng = np.random.default_rng(5)
    values = np.concatenate(
        [
            np.round(rng.normal(size=2000) * 50, 2),
            rng.normal(size=2000) * 1e-4,
            [0.0, -0.0, 0.1, 0.7, 1e-45, 3.4e38, -2.5, 16777217.0, 1 / 3],
        ]
    ).astype(np.float32)
    short = short_decimals(values)
    # Exact for the model: each reads back as the same float32.
    assert np.array_equal(short.astype(np.float32), values)
    # As short as numpy's own shortest float32 spelling (the truth).
    for got, value in zip(short.tolist(), values, strict=True):
        assert repr(got) == repr(float(str(value))), value
    rows = decode_holdout(
        encode_holdout({"x": np.array([0.13, np.nan], np.float32)}, np.array([1, 0])), "k"
    )
    assert [r.features["x"] for r in rows] == [0.13, None]


def test_max_categories_groups_the_rare_categories_in_fit_and_graph_alike(
    local: LocalStore,
) -> None:
    rng = np.random.default_rng(11)
    n = 600
    shops = [f"s{i:02d}" for i in range(30)]
    weights = np.array([30.0, 20, 15, 10, 8, *([1.0] * 25)])
    shop = rng.choice(shops, size=n, p=weights / weights.sum())
    x = rng.normal(size=n)
    y = (x + np.isin(shop, ["s00", "s02"]) + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    body = to_csv(["x", "shop", "target"], list(zip(x.round(4), shop, y, strict=True)))
    put_spec(local, "m", estimator="linear", max_categories=4)

    outcome = train(local, "m", body)

    assert outcome.status == "registered", outcome.reason  # parity held with grouped codes
    prefix = version_prefix("m", 1)
    meta = decode_metadata(local.get(prefix + "metadata.json").body)
    assert meta.spec["max_categories"] == 4
    model = OnnxModel(local.get(prefix + "model.onnx").body, meta.features)
    asked = ["s00", "s01", "s02", "s03", "s04", "s17", "s29", "never-seen"]
    batch = ModelInput(
        numeric=np.zeros((len(asked), 1)),
        categorical={"shop": np.array(asked, dtype=object)},
    )
    p = dict(zip(asked, model.run(model.feed(batch))["probabilities"][:, 1].tolist(), strict=True))
    # The three most frequent keep a column each; s03, s04 and the 25 rare ones share one.
    assert p["s03"] == p["s04"] == p["s17"] == p["s29"]
    assert len({p["s00"], p["s01"], p["s02"], p["s03"]}) == 4
    assert p["never-seen"] not in {p["s00"], p["s01"], p["s02"], p["s03"]}


def test_max_categories_below_two_is_refused() -> None:
    from shared.data.spec import parse_spec
    from shared.errors import SpecError

    with pytest.raises(SpecError, match="max_categories: must be at least 2"):
        parse_spec(b'{"max_categories": 1}')


def test_the_gate_reads_lower_is_better_metrics_the_right_way_round() -> None:
    from shared.data.spec import GateSettings
    from shared.training.gate import judge

    settings = GateSettings(min_improvement=0.1)
    # RMSE 8 against the mean's 10: (10 - 8) / 10 = 0.2 better, relative: passes.
    passed = judge("rmse", 8.0, 10.0, "the training mean", settings)
    assert (passed.passed, passed.improvement) == (True, 0.2)
    # RMSE 9.5 against 10: 0.05 better, under the 0.1 margin; 12 against 10 is worse.
    assert judge("rmse", 9.5, 10.0, "the training mean", settings).improvement == 0.05
    assert not judge("rmse", 9.5, 10.0, "the training mean", settings).passed
    worse = judge("log_loss", 0.8, 0.6931, "class priors", settings)
    assert worse.improvement == round((0.6931 - 0.8) / 0.6931, 6)
    assert not worse.passed
    # A floor is a ceiling for them: at most 9 allowed, 9.5 refused even past the margin.
    capped = GateSettings(min_improvement=0.0, minimum=9.0)
    assert judge("mae", 9.0, 20.0, "the training median", capped).passed
    refused = judge("mae", 9.5, 20.0, "the training median", capped)
    assert not refused.passed
    assert refused.reasons == ["mae 9.5000: the spec requires at most 9"]
    # And higher-is-better the other way: accuracy 0.80 over 0.75 is +0.05, absolute.
    assert judge("accuracy", 0.80, 0.75, "majority class", settings).improvement == 0.05


def _on_the_boundary(n: int, task: str, seed: int = 0) -> bytes:
    """Rows whose x is 12.1 or the float32 just below it (written 12.099999), with y set by
    which side of 12.1 x is: a split between the two must decide them as the data does."""
    rng = np.random.default_rng(seed)
    x = rng.choice([5.0, 12.099999, 12.1, 20.0], size=n)
    high = x >= 12.1
    if task == "regression":
        y: list[object] = list(np.where(high, 10.0, 0.0) + rng.normal(scale=0.1, size=n))
    else:
        y = list(np.where(high, "high", "low"))
    return to_csv(["x", "z", "y"], list(zip(x, rng.normal(size=n).round(3), y, strict=True)))


@pytest.mark.parametrize("estimator", ["random_forest", "gradient_boosting"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_value_beside_a_float32_rounded_threshold_takes_scikit_learns_branch(
    local: LocalStore, estimator: str, task: str
) -> None:
    # The case: 12.1 is 12.100000381 in float32 and the split between it and the
    # float32 below sits at 12.0999999046, whose nearest float32 is 12.100000381 itself.
    assert np.float32(np.float32(12.1) / 2 + np.float32(12.099999) / 2) == np.float32(12.1)
    put_spec(local, "m", target="y", estimator=estimator, task=task)

    outcome = train(local, "m", _on_the_boundary(400, task))

    assert outcome.status == "registered", outcome.reason
    prefix = version_prefix("m", 1)
    meta = decode_metadata(local.get(prefix + "metadata.json").body)
    model = OnnxModel(local.get(prefix + "model.onnx").body, meta.features)
    batch = ModelInput(numeric=np.array([[12.1, 0.0], [12.099999, 0.0]]), categorical={})
    outputs = model.run(model.feed(batch))
    # The truth is the rule the rows were made by: 12.1 is high, the float32 below it low.
    if task == "regression":
        assert outputs["variable"].ravel() == pytest.approx([10.0, 0.0], abs=0.5)
    else:
        assert outputs["label"].ravel().tolist() == ["high", "low"]


@pytest.mark.parametrize(
    ("estimator", "task", "n_classes"),
    [
        ("random_forest", "classification", 2),
        ("random_forest", "classification", 3),
        ("random_forest", "regression", 0),
        ("gradient_boosting", "classification", 2),
        ("gradient_boosting", "classification", 3),
        ("gradient_boosting", "regression", 0),
    ],
)
def test_every_split_decides_float32_values_on_its_threshold_as_scikit_learn(
    estimator: str, task: str, n_classes: int
) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3)).round(2)
    signal = X[:, 0] + X[:, 1] * X[:, 2]
    y: list[object] = (
        list(np.digitize(signal, np.quantile(signal, np.linspace(0, 1, n_classes + 1)[1:-1])))
        if task == "classification"
        else list(signal)
    )
    body = to_csv(["a", "b", "c", "y"], [[*row, target] for row, target in zip(X, y, strict=True)])
    params = {"n_estimators": 10} if estimator == "random_forest" else {"max_iter": 20}
    spec = parse_spec(
        json.dumps({"target": "y", "estimator": estimator, "task": task, "params": params}).encode()
    )
    data = prepare(body, spec, source="probe")
    pipeline = fit_pipeline(data, spec)
    schema = [FeatureSchema(name=n, kind="numeric", input_name=NUMERIC_INPUT) for n in "abc"]
    session = ort.InferenceSession(
        export_pipeline(pipeline, schema, data.task, []), providers=["CPUExecutionProvider"]
    )
    fitted = pipeline.steps[-1][1]
    if estimator == "random_forest":
        splits = [
            (int(f), float(t))
            for tree in fitted.estimators_
            for f, t in zip(tree.tree_.feature, tree.tree_.threshold, strict=True)
            if f >= 0
        ]
    else:
        splits = [
            (int(node["feature_idx"]), float(node["num_threshold"]))
            for trees in fitted._predictors
            for tree in trees
            for node in tree.nodes
            if not node["is_leaf"]
        ]
    # Per split, rows whose feature sits on the threshold's float32 neighbours: the one below,
    # the nearest (what a plain cast gives) and the one above; the rest of the row typical.
    probes = []
    for feature, threshold in splits:
        below = np.float32(float32_at_or_below(threshold))
        for value in (below, np.nextafter(below, np.float32(np.inf)), np.float32(threshold)):
            row = np.median(data.X, axis=0)
            row[feature] = value
            probes.append(row)
    rows = np.array(probes, dtype=np.float32)
    # Without the rounding down, some of these would flip: a nearest float32 above its
    # threshold is a value that scikit-learn sends right and a plain cast left.
    assert any(float(np.float32(t)) > t for _, t in splits) or estimator == "random_forest"
    outputs = session.run(None, {NUMERIC_INPUT: rows})
    if task == "classification":
        assert outputs[0].ravel().tolist() == pipeline.predict(rows).tolist()
        np.testing.assert_allclose(outputs[1], pipeline.predict_proba(rows), atol=1e-5)
    else:
        np.testing.assert_allclose(outputs[0].ravel(), pipeline.predict(rows), atol=1e-4, rtol=1e-5)
