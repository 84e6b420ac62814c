"""The inference path in a fresh interpreter: what it imports, and that it answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared.store.local import LocalStore
from shared.training.job import train_from_dataset
from tests.factories import classification_csv

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
import app  # what the Lambda runtime loads for every function
from functions import inference
result = inference.predict_records("churn", None, json.dumps({"records": [{
    "x0": 0.3, "x1": None, "x2": 0.0, "x3": 1.5, "x4": 0.2, "region": "north", "plan": "pro"
}]}).encode(), {})
heavy = sorted(m for m in ("sklearn", "scipy", "pandas", "skl2onnx", "onnx") if m in sys.modules)
print(json.dumps({"status": result.status, "body": result.body, "heavy": heavy}))
"""


def test_inference_imports_no_training_stack(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("datasets/churn/data.csv", classification_csv())
    assert train_from_dataset(store, "datasets/churn/data.csv", trigger="test").version == 1
    env = {**os.environ, "MLOPS_STORE": str(tmp_path / "store")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 200, result
    assert result["body"]["version"] == 1
    assert result["heavy"] == []
