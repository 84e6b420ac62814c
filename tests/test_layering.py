"""The import contracts in pyproject.toml hold, and breaking one fails the build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH puts the copy ahead of the editable install of the checkout.
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("shared", "functions"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_checkout_keeps_every_contract(tree: Path) -> None:
    done = _lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("shared/serving/cache.py", "from shared.training import job", "Lifecycle layers"),
        ("shared/store/base.py", "from shared.registry import records", "Lifecycle layers"),
        ("shared/serving/runtime.py", "import sklearn", "never load the training stack"),
        ("shared/data/profile.py", "import scipy.stats", "never load the training stack"),
        ("functions/inference.py", "import skl2onnx", "monitoring functions never load"),
        ("shared/registry/audit.py", "import chalice", "Only functions/"),
        ("shared/serving/cache.py", "import boto3", "Only the store talks to AWS"),
        ("shared/monitoring/summary.py", "import scipy", "never load the training stack"),
        ("shared/monitoring/summary.py", "import onnxruntime", "never runs a model"),
        ("shared/monitoring/capture.py", "from shared.training import job", "Lifecycle layers"),
    ],
)
def test_breaking_a_contract_fails(tree: Path, module: str, line: str, contract: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = _lint(tree)
    assert done.returncode != 0
    broken = [row for row in done.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract in row for row in broken), done.stdout
