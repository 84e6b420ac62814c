"""The example specs in examples/ train: each is uploaded with a CSV of the columns its
README describes, as `mlops upload` does, and registers a version that serves."""

from __future__ import annotations

import json
import re
from itertools import product
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from functions.cli import upload
from shared.data.spec import ModelSpec, parse_spec
from shared.registry.metadata import decode_metadata
from shared.registry.records import version_prefix
from shared.registry.registry import ModelRegistry
from shared.store.local import LocalStore
from tests.factories import to_csv

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPECS = sorted(EXAMPLES.glob("*.json"))


def churn_csv(n_rows: int = 600, seed: int = 0) -> bytes:
    """Customers of a subscription: who churned, with an id, a zip code and a few gaps."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 73, n_rows)
    charges = rng.uniform(20, 120, n_rows).round(2)
    calls = rng.poisson(1.5, n_rows)
    region = rng.choice(["north", "south", "east", "west"], n_rows)
    plan = rng.choice(["basic", "plus", "pro"], n_rows)
    zips = rng.choice([f"{10000 + 37 * i}" for i in range(40)], n_rows)
    score = -0.06 * tenure + 0.03 * charges + 0.7 * calls + np.where(plan == "basic", 0.8, 0)
    churned = rng.random(n_rows) < 1 / (1 + np.exp(-(score - 1.5)))
    rows = []
    for i in range(n_rows):
        rows.append(
            [
                f"C{i:05d}",
                int(tenure[i]),
                "" if i % 37 == 5 else float(charges[i]),  # a missing number
                int(calls[i]),
                "" if i % 41 == 7 else str(region[i]),  # a missing category
                str(plan[i]),
                str(zips[i]),
                "yes" if churned[i] else "no",
            ]
        )
    header = ["customer_id", "tenure_months", "monthly_charges", "support_calls"]
    return to_csv([*header, "region", "plan", "zip_code", "churned"], rows)


def delivery_csv(n_rows: int = 600, seed: int = 0) -> bytes:
    """Food deliveries: how many minutes each took, with an id and a numeric-looking zone."""
    rng = np.random.default_rng(seed)
    distance = rng.uniform(0.5, 15, n_rows).round(2)
    items = rng.integers(1, 11, n_rows)
    hour = rng.integers(0, 24, n_rows)
    courier = rng.choice(["bike", "scooter", "car"], n_rows)
    zone = rng.choice([str(101 + z) for z in range(12)], n_rows)
    speed = np.select([courier == "bike", courier == "scooter"], [3.0, 2.2], 1.8)
    rush = np.where((hour >= 11) & (hour <= 13) | (hour >= 18) & (hour <= 20), 6.0, 0.0)
    minutes = 8 + speed * distance + 0.8 * items + rush + (zone.astype(int) % 4)
    minutes = (minutes + rng.normal(0, 3, n_rows)).round(1)
    rows = [
        [
            f"D{i:05d}",
            float(distance[i]),
            int(items[i]),
            int(hour[i]),
            str(courier[i]),
            str(zone[i]),
        ]
        for i in range(n_rows)
    ]
    rows = [[*row, float(value)] for row, value in zip(rows, minutes, strict=True)]
    header = ["order_id", "distance_km", "items", "hour_of_day", "courier", "zone", "minutes"]
    return to_csv(header, rows)


def written_fields(document: dict[str, Any], prefix: str = "") -> set[str]:
    """The fields a spec document writes, nested ones as `monitoring.capture.sample_rate`."""
    names = set()
    for name, value in document.items():
        names.add(prefix + name)
        if isinstance(value, dict) and name != "params":  # params are scikit-learn's
            names |= written_fields(value, f"{prefix}{name}.")
    return names


def spec_of(path: Path) -> ModelSpec:
    return parse_spec(path.read_bytes(), source=str(path))


def test_one_example_per_estimator_and_task() -> None:
    named = {path.stem for path in SPECS}
    wanted = {
        f"{task}-{estimator}"
        for task, estimator in product(
            ["classification", "regression"], ["linear", "random_forest", "gradient_boosting"]
        )
    }
    assert named == wanted
    for path in SPECS:
        spec = spec_of(path)
        assert f"{spec.task}-{spec.estimator}" == path.stem


def test_every_field_an_example_uses_is_explained_beside_it() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for path in SPECS:
        assert f"({path.name})" in readme, f"examples/README.md does not link {path.name}"
    used = set().union(*(written_fields(json.loads(path.read_text())) for path in SPECS))
    explained = set(re.findall(r"^\| `([\w.]+)` \|", readme, flags=re.MULTILINE))
    assert used <= explained, f"not explained in examples/README.md: {sorted(used - explained)}"


def test_one_example_writes_out_every_field_of_the_spec() -> None:
    def fields(struct: type[msgspec.Struct], prefix: str = "") -> set[str]:
        names = set()
        for field in msgspec.structs.fields(struct):
            names.add(prefix + field.name)
            if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
                names |= fields(field.type, f"{prefix}{field.name}.")
        return names

    complete = json.loads((EXAMPLES / "classification-gradient_boosting.json").read_text())
    assert written_fields(complete) == fields(ModelSpec)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_example_spec_trains_and_registers(path: Path, tmp_path: Path) -> None:
    spec = spec_of(path)
    data = tmp_path / f"{spec.target}.csv"
    data.write_bytes(churn_csv() if spec.task == "classification" else delivery_csv())
    store = LocalStore(tmp_path / "store")
    model = path.stem.replace("_", "-")

    outcome = upload(store, data, model, path)

    assert outcome is not None
    assert outcome.status == "registered", outcome.reason
    assert (outcome.version, outcome.alias) == (1, "production")
    assert ModelRegistry(store, model).load().aliases == {"production": 1}
    meta = decode_metadata(store.get(version_prefix(model, 1) + "metadata.json").body)
    assert (meta.task, meta.estimator, meta.primary_metric) == (
        spec.task,
        spec.estimator,
        spec.metric_for(meta.task),
    )
    assert meta.params.items() >= spec.params.items()
    names = [feature.name for feature in meta.features]
    if spec.features is not None:
        assert sorted(names) == sorted(spec.features)
    assert not set(spec.drop) & set(names)
    for column in spec.categorical:
        if column in names:
            assert meta.features[names.index(column)].kind == "categorical"
