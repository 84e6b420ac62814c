"""The monitoring counts as SQL: DuckDB over the capture files gives exactly what
summary.py counts in-process, for classification and regression, hostile names and values."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from shared.data.profile import PROBABILITY_EDGES
from shared.data.spec import CaptureSettings
from shared.errors import MlopsError
from shared.monitoring.capture import capture_prefix, decode_capture_file, partition_hour
from shared.monitoring.capture_writer import CaptureWriter
from shared.monitoring.file_summary import decode_summary, summary_key
from shared.monitoring.schema import NewerRecordError
from shared.monitoring.sql import (
    athena_table_ddl,
    counts_from_rows,
    counts_sql,
    duckdb_table_sql,
    float_literal,
    measures,
    quote_string,
)
from shared.monitoring.summary import (
    MAX_TRACKED_CATEGORIES,
    Baseline,
    CategoricalCounts,
    NumericCounts,
    VersionCounts,
    WindowCounts,
    count_rows,
    merge_windows,
    summarise,
)
from shared.registry.metadata import ModelMetadata, decode_metadata
from shared.registry.records import version_prefix
from shared.store.local import LocalStore
from shared.training.job import train_from_dataset
from tests.factories import classification_csv, numeric_csv, regression_csv

# Feature names a user may choose: quotes, an injection attempt, two names equal but for
# case (a struct column could not hold both), a dot and a non-ASCII letter.
HOSTILE = {
    "x1": "we\"ird 'name",
    "x2": "Age",
    "x3": "age",
    "x4": "x'); DROP TABLE captures; --",
    "region": "Région.code",
    "plan": 'Plan "tier"',
}
# Category values to send besides the trained ones: unseen, quoted, SQL-ish, "None" (a
# real category, unlike a missing value), a number, case variants and blank.
ODD_CATEGORIES = [
    "",
    "",
    "east",
    'a"b',
    "it's",
    "naïve",
    " ",
    "None",
    "NULL",
    "0",
    "1.5",
    "North",
    "'); DROP TABLE captures; --",
]
START = datetime(2025, 3, 9, 22, 0, tzinfo=UTC)  # the window spans a day boundary


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now


def rename_columns(body: bytes, names: dict[str, str]) -> bytes:
    rows = list(csv.reader(io.StringIO(body.decode())))
    rows[0] = [names.get(name, name) for name in rows[0]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def train(store: LocalStore, model: str, body: bytes, name: str) -> ModelMetadata:
    key = f"datasets/{model}/{name}"
    store.put(key, body)
    outcome = train_from_dataset(store, key, trigger="test")
    assert outcome.status == "registered", outcome.reason
    assert outcome.version is not None
    return decode_metadata(store.get(version_prefix(model, outcome.version) + "metadata.json").body)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[ModelMetadata]]:
    """Trained once for the module: two versions of a churn model with hostile names, a
    regression model, and a classifier with integer classes."""
    store = LocalStore(tmp_path_factory.mktemp("models") / "store")
    churn = [
        train(store, "churn", rename_columns(classification_csv(seed=seed), HOSTILE), f"{seed}.csv")
        for seed in (0, 1)
    ]
    return {
        "churn": churn,
        "price": [train(store, "price", regression_csv(), "data.csv")],
        "ints": [train(store, "ints", numeric_csv(), "data.csv")],
    }


class Bucket(LocalStore):
    """A local bucket that remembers its folder, where DuckDB finds the capture files."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.folder = folder.resolve()


@pytest.fixture
def captures(tmp_path: Path) -> Bucket:
    """The bucket capture files are written to (and DuckDB reads)."""
    return Bucket(tmp_path / "captures")


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    yield connection
    connection.close()


def numeric_values(
    rng: np.random.Generator, metadata: ModelMetadata, name: str, n: int
) -> np.ndarray:
    """Values around the training data, with the cases binning can get wrong: values equal
    to an edge or a bound, just past the bounds, far out, NaN, -0.0 and float32 ones."""
    profile = Baseline(metadata).numeric(name)
    assert profile.min is not None
    assert profile.max is not None
    values = rng.normal(profile.mean or 0.0, profile.std or 1.0, n)
    special = [
        *rng.choice(profile.edges, 5).tolist(),
        profile.min,
        profile.max,
        float(np.nextafter(profile.min, -np.inf)),
        float(np.nextafter(profile.max, np.inf)),
        -1e6,
        1e6,
        -0.0,
        np.nan,
        np.nan,
    ]
    mask = rng.random(n) < 0.4
    values[mask] = rng.choice(special, int(mask.sum()))
    return values


def add_requests(
    writer: CaptureWriter,
    clock: FakeClock,
    rng: np.random.Generator,
    versions: Sequence[ModelMetadata],
    *,
    requests: int,
    settings: CaptureSettings,
    seconds_apart: float = 250.0,
) -> None:
    """Random requests to random versions, served and shadow, over the coming hours."""
    for _ in range(requests):
        clock.now += float(rng.uniform(0, seconds_apart))
        meta = versions[int(rng.integers(len(versions)))]
        n = int(rng.integers(1, 25))
        numeric_names = [f.name for f in meta.features if f.kind == "numeric"]
        numeric = np.column_stack([numeric_values(rng, meta, name, n) for name in numeric_names])
        if rng.random() < 0.2:
            numeric = numeric.astype(np.float32)  # what a binary request would hold
        categorical = {
            f.name: np.asarray(rng.choice([*f.categories, *ODD_CATEGORIES], n))
            for f in meta.features
            if f.kind == "categorical"
        }
        probabilities: np.ndarray | None = None
        if meta.task == "classification":
            assert meta.classes is not None
            predictions = np.asarray(rng.choice(np.asarray(meta.classes), n))
            if rng.random() < 0.9:  # else: a model without a probability output
                probabilities = rng.dirichlet(np.ones(len(meta.classes)), n)
                exact = rng.random(probabilities.shape) < 0.2
                probabilities[exact] = rng.choice([0.0, 1.0, *PROBABILITY_EDGES], int(exact.sum()))
        else:
            edges = meta.baseline.predictions.edges
            predictions = rng.normal(float(np.mean(edges)), float(np.std(edges)), n)
            mask = rng.random(n) < 0.3
            predictions[mask] = rng.choice(
                [*edges[:3], edges[-1], 1e9, -1e9, np.nan], int(mask.sum())
            )
        writer.add(
            settings,
            model=meta.model,
            version=meta.version,
            served_by="production",
            request_id=f"r{rng.integers(1 << 30)}",
            numeric_names=numeric_names,
            numeric=numeric,
            categorical=categorical,
            predictions=predictions,
            probabilities=probabilities,
            classes=meta.classes if probabilities is not None else None,
            role="shadow" if rng.random() < 0.3 else "served",
            metadata=meta,
        )
    writer.flush()
    assert writer.failed_writes == 0
    assert writer.failed_summaries == 0


def in_process(
    store: LocalStore,
    versions: Sequence[ModelMetadata],
    start: datetime | None = None,
    end: datetime | None = None,
) -> WindowCounts:
    """What the monitoring check counts: each file summarised, the summaries merged."""
    baselines: dict[int, Baseline | None] = {m.version: Baseline(m) for m in versions}
    window = WindowCounts()
    for info in store.list(capture_prefix(versions[0].model)):
        hour = partition_hour(info.key)
        assert hour is not None
        if (start is None or hour >= start) and (end is None or hour < end):
            rows = decode_capture_file(store.get(info.key).body, info.key)
            window = merge_windows(window, summarise(rows, baselines))
    return window


def from_summaries(
    store: LocalStore, model: str, start: datetime | None = None, end: datetime | None = None
) -> WindowCounts:
    """What serving wrote beside the same files, merged as the check merges them."""
    window = WindowCounts()
    for info in store.list(capture_prefix(model)):
        hour = partition_hour(info.key)
        assert hour is not None
        if (start is None or hour >= start) and (end is None or hour < end):
            key = summary_key(info.key)
            window = merge_windows(window, decode_summary(store.get(key).body, key).counts)
    return window


def in_sql(
    con: duckdb.DuckDBPyConnection,
    store: Bucket,
    metadata: ModelMetadata,
    start: datetime | None = None,
    end: datetime | None = None,
) -> VersionCounts:
    """The same counts from DuckDB over the same files."""
    files = store.folder / capture_prefix(metadata.model)
    con.execute(duckdb_table_sql(f"{files}/**/*.jsonl.gz"))
    rows = con.execute(counts_sql(metadata, start=start, end=end)).fetchall()
    return counts_from_rows(metadata, rows)


def assert_exercised(counts: VersionCounts) -> None:
    """The traffic reached the cases that matter, so equality is not vacuous."""
    numeric = [c for c in counts.features.values() if isinstance(c, NumericCounts)]
    categorical = [c for c in counts.features.values() if isinstance(c, CategoricalCounts)]
    assert numeric
    assert all(c.missing and c.below and c.above for c in numeric)
    assert all(c.missing and len(c.counts) > 3 for c in categorical)


def test_classification_with_hostile_names_counts_as_in_process(
    models: dict[str, list[ModelMetadata]], captures: Bucket, con: duckdb.DuckDBPyConnection
) -> None:
    versions = models["churn"]
    clock = FakeClock(START)
    writer = CaptureWriter(captures, clock=clock, sample=lambda: 0.0)
    settings = CaptureSettings(batch_rows=60, max_wait_seconds=900)

    add_requests(writer, clock, np.random.default_rng(1), versions, requests=120, settings=settings)

    assert writer.written_objects > 10
    expected = in_process(captures, versions)
    assert from_summaries(captures, "churn") == expected  # serving's counts, field by field
    assert sorted(expected.versions) == [1, 2]
    for meta in versions:
        counts = expected.versions[meta.version]
        assert_exercised(counts)
        assert counts.predictions.probability_counts
        assert set(counts.features) == set(HOSTILE.values()) | {"x0"}
        assert in_sql(con, captures, meta) == counts
    # Shadow rows are counted by neither.
    assert sum(v.rows for v in expected.versions.values()) == expected.rows
    assert expected.rows < writer.written_rows


def test_a_window_of_hours_reads_only_its_partitions(
    models: dict[str, list[ModelMetadata]], captures: Bucket, con: duckdb.DuckDBPyConnection
) -> None:
    versions = models["churn"]
    clock = FakeClock(START)
    writer = CaptureWriter(captures, clock=clock, sample=lambda: 0.0)
    settings = CaptureSettings(batch_rows=60, max_wait_seconds=900)
    add_requests(writer, clock, np.random.default_rng(2), versions, requests=80, settings=settings)
    start, end = START + timedelta(hours=1), START + timedelta(hours=3)  # 23:00 to 01:00

    expected = in_process(captures, versions, start, end)

    assert 0 < expected.rows < in_process(captures, versions).rows
    assert from_summaries(captures, "churn", start, end) == expected
    for meta in versions:
        assert in_sql(con, captures, meta, start, end) == expected.versions[meta.version]


def test_regression_counts_as_in_process(
    models: dict[str, list[ModelMetadata]], captures: Bucket, con: duckdb.DuckDBPyConnection
) -> None:
    versions = models["price"]
    clock = FakeClock(START)
    writer = CaptureWriter(captures, clock=clock, sample=lambda: 0.0)
    settings = CaptureSettings(batch_rows=50, max_wait_seconds=900)

    add_requests(writer, clock, np.random.default_rng(3), versions, requests=60, settings=settings)

    counts = in_process(captures, versions).versions[1]
    assert from_summaries(captures, "price").versions[1] == counts
    assert_exercised(counts)
    assert counts.predictions.value_counts[0]  # predictions below and above the training's
    assert counts.predictions.value_counts[-1]
    assert counts.predictions.high == 1e9
    assert in_sql(con, captures, versions[0]) == counts


def test_integer_classes_count_as_their_text(
    models: dict[str, list[ModelMetadata]], captures: Bucket, con: duckdb.DuckDBPyConnection
) -> None:
    versions = models["ints"]
    assert versions[0].classes == [0, 1]
    clock = FakeClock(START)
    writer = CaptureWriter(captures, clock=clock, sample=lambda: 0.0)
    settings = CaptureSettings(batch_rows=50, max_wait_seconds=900)

    add_requests(writer, clock, np.random.default_rng(4), versions, requests=30, settings=settings)

    counts = in_process(captures, versions).versions[1]
    assert from_summaries(captures, "ints").versions[1] == counts
    assert set(counts.predictions.class_counts) == {"0", "1"}  # not "1.0"
    assert set(counts.predictions.probability_counts) == {"0", "1"}
    assert in_sql(con, captures, versions[0]) == counts


def test_categories_past_the_cap_are_pooled_like_in_process(
    models: dict[str, list[ModelMetadata]], captures: Bucket, con: duckdb.DuckDBPyConnection
) -> None:
    # One file, and no tie at the cap: then both keep the same most frequent categories.
    # (Across files the in-process merge keeps the first seen; only the totals agree.)
    meta = models["churn"][0]
    plan = HOSTILE["plan"]
    frequent = [f"c{i:04d}'\"" for i in range(MAX_TRACKED_CATEGORIES)]
    values = np.array([*frequent, *frequent, "rare1", "rare2", "rare3", "", ""])
    n = values.size
    numeric_names = [f.name for f in meta.features if f.kind == "numeric"]
    rng = np.random.default_rng(5)
    writer = CaptureWriter(captures, clock=FakeClock(START), sample=lambda: 0.0)
    assert meta.classes is not None
    writer.add(
        CaptureSettings(batch_rows=100_000, max_rows_per_request=100_000),
        model=meta.model,
        version=meta.version,
        served_by="production",
        request_id="big",
        numeric_names=numeric_names,
        numeric=rng.normal(size=(n, len(numeric_names))),
        categorical={HOSTILE["region"]: np.full(n, "north"), plan: rng.permutation(values)},
        predictions=np.asarray(rng.choice(np.asarray(meta.classes), n)),
        probabilities=rng.dirichlet(np.ones(len(meta.classes)), n),
        classes=meta.classes,
        metadata=meta,
    )
    writer.flush()

    counts = in_process(captures, [meta]).versions[meta.version]
    assert from_summaries(captures, meta.model).versions[meta.version] == counts

    pooled = counts.features[plan]
    assert isinstance(pooled, CategoricalCounts)
    assert (len(pooled.counts), pooled.overflow, pooled.missing) == (MAX_TRACKED_CATEGORIES, 3, 2)
    assert in_sql(con, captures, meta) == counts


def test_a_version_without_rows_counts_nothing(
    models: dict[str, list[ModelMetadata]], captures: Bucket, con: duckdb.DuckDBPyConnection
) -> None:
    first, second = models["churn"]
    clock = FakeClock(START)
    writer = CaptureWriter(captures, clock=clock, sample=lambda: 0.0)
    settings = CaptureSettings(batch_rows=50, max_wait_seconds=900)
    add_requests(writer, clock, np.random.default_rng(6), [first], requests=5, settings=settings)

    for meta in (second, models["price"][0]):
        assert counts_from_rows(meta, []) == count_rows([], Baseline(meta))
    assert in_sql(con, captures, second) == count_rows([], Baseline(second))


def capture_line(meta: ModelMetadata, **fields: object) -> bytes:
    """One capture line as another writer might have made it."""
    line: dict[str, object] = {
        "schema_version": 1,
        "capture_id": "c",
        "row": 0,
        "request_id": "r",
        "model": meta.model,
        "version": meta.version,
        "served_by": "production",
        "role": "served",
        "at": "2025-03-09T22:00:00Z",
        "features": {f.name: None for f in meta.features},
        "prediction": None,
        "probabilities": None,
    }
    line.update(fields)
    return json.dumps(line).encode() + b"\n"


def test_lines_from_another_writer_count_as_in_process(
    models: dict[str, list[ModelMetadata]], captures: Bucket, con: duckdb.DuckDBPyConnection
) -> None:
    # Integers where floats are usual, a class given as text or as a number, a null
    # prediction (in-process str(None): "None"), no probabilities, no schema_version.
    meta = models["ints"][0]
    a, b, c, d = (f.name for f in meta.features)
    lines = [
        capture_line(meta, features={a: 3, b: -1, c: 0, d: None}, prediction=1),
        capture_line(meta, features={a: 1e300, b: 2.5, c: 0, d: 7}, prediction="1"),
        capture_line(meta, prediction=None, probabilities={"0": 1, "1": 0}),
        capture_line(meta, prediction=0, probabilities={"0": 0.05, "1": 0.95}),
        capture_line(meta, prediction=0, role="shadow"),
    ]
    lines.append(lines[0].replace(b'"schema_version": 1, ', b""))
    key = f"{capture_prefix(meta.model)}dt=2025-03-09/hour=22/other.jsonl.gz"
    captures.put(key, gzip.compress(b"".join(lines)))

    counts = in_process(captures, [meta]).versions[meta.version]

    assert counts.predictions.class_counts == {"0": 1, "1": 3, "None": 1}
    assert in_sql(con, captures, meta) == counts


def test_a_newer_capture_schema_is_refused_as_in_process(
    models: dict[str, list[ModelMetadata]], captures: Bucket, con: duckdb.DuckDBPyConnection
) -> None:
    meta = models["price"][0]
    key = f"{capture_prefix(meta.model)}dt=2025-03-09/hour=22/newer.jsonl.gz"
    captures.put(key, gzip.compress(capture_line(meta, schema_version=2, prediction=1.5)))

    with pytest.raises(NewerRecordError):
        in_process(captures, [meta])
    with pytest.raises(NewerRecordError, match="capture schema_version 2"):
        in_sql(con, captures, meta)


def test_literals_read_back_exactly(con: duckdb.DuckDBPyConnection) -> None:
    floats = [0.1, -2.5, 1e-05, 5e-324, 1.7976931348623157e308, 0.30000000000000004, -0.0, 3.0]
    for value in floats:
        literal = float_literal(value)
        assert con.execute(f"SELECT {literal} = ?, typeof({literal})", [value]).fetchall() == [
            (True, "DOUBLE")
        ]
    for text in HOSTILE.values():
        assert con.execute(f"SELECT {quote_string(text)}").fetchall() == [(text,)]
    with pytest.raises(MlopsError):
        float_literal(float("nan"))
    with pytest.raises(MlopsError):
        quote_string("a\x00b")


def test_the_athena_ddl_projects_the_capture_partitions(
    models: dict[str, list[ModelMetadata]],
) -> None:
    meta = models["churn"][0]

    ddl = athena_table_ddl(meta, "s3://mlops-data/captures/churn/")

    assert ddl.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `captures_churn` (")
    assert "`features` map<string,string>" in ddl
    assert "PARTITIONED BY (`dt` string, `hour` string)" in ddl
    assert "'org.openx.data.jsonserde.JsonSerDe'" in ddl
    assert (
        "'storage.location.template' = 's3://mlops-data/captures/churn/dt=${dt}/hour=${hour}/'"
        in ddl
    )
    assert "'projection.hour.values' = '00,01,02," in ddl
    with pytest.raises(MlopsError):
        athena_table_ddl(meta, "s3://bucket/x'; DROP/")
    with pytest.raises(MlopsError):
        athena_table_ddl(meta, "s3://bucket/captures/churn/", table="Bad-Name")
    with pytest.raises(MlopsError, match="table"):
        counts_sql(meta, 'captures"; DROP TABLE x; --')
    # Every measure of the model is counted, in metadata order, then the predictions.
    kinds = [m.kind for m in measures(meta)]
    assert kinds == ["numeric"] * 5 + ["categorical"] * 2 + ["class", "probability", "probability"]


def test_shadow_pairs_in_a_summary_skip_what_the_file_writes_null(
    models: dict[str, list[ModelMetadata]], captures: Bucket
) -> None:
    # A NaN or infinite prediction is null in the file, and pairs with nothing: served
    # [1, inf, nan, 3] shadowed by [2, 1, 1, 5] pairs rows 0 and 3, |2-1| + |5-3| = 3.
    meta = models["price"][0]
    numeric_names = [f.name for f in meta.features if f.kind == "numeric"]
    writer = CaptureWriter(captures, clock=FakeClock(START), sample=lambda: 0.0)
    common: dict[str, Any] = {
        "model": meta.model,
        "version": meta.version,
        "request_id": "r",
        "numeric_names": numeric_names,
        "numeric": np.zeros((4, len(numeric_names))),
        "categorical": {f.name: np.full(4, "a") for f in meta.features if f.kind != "numeric"},
        "probabilities": None,
        "classes": None,
        "metadata": meta,
    }
    settings = CaptureSettings()
    capture_id = writer.add(
        settings,
        served_by="production",
        predictions=np.array([1.0, np.inf, np.nan, 3.0]),
        hold=True,
        **common,
    )
    writer.add(
        settings,
        served_by="staging",
        predictions=np.array([2.0, 1.0, 1.0, 5.0]),
        role="shadow",
        capture_id=capture_id,
        **common,
    )
    writer.flush()
    (info,) = captures.list(capture_prefix(meta.model))
    summary = decode_summary(captures.get(summary_key(info.key)).body, info.key)
    (pair,) = summary.shadow_pairs
    assert (pair.paired, pair.score_sum) == (2, 3.0)
    assert summary.shadow_rows == {meta.version: 4}
    assert summary.counts.rows == 4  # shadow rows are not counted as traffic
