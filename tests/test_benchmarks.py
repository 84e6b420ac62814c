"""The benchmark scripts still run: `--quick` at tiny sizes, every figure present and sane."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import package_size
from benchmarks.common import Sizes
from benchmarks.run import FIGURES
from benchmarks.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
ENTRY_KEYS = {"ours", "reference", "ratio", "goal", "met", "unit", "details"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads(out.read_text())
    return results, done.stdout


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_every_figure_has_a_sane_entry(quick_run: tuple[dict[str, Any], str]) -> None:
    results, _ = quick_run
    assert set(FIGURES) <= set(results)
    for name in FIGURES:
        entry = results[name]
        assert set(entry) == ENTRY_KEYS, name
        assert isinstance(entry["met"], bool), name
        assert isinstance(entry["goal"], str), name
        assert entry["goal"], name
        assert isinstance(entry["unit"], str), name
        assert isinstance(entry["details"], dict), name
        assert isinstance(entry["details"]["measure"], str), name
        if entry["details"].get("status") == "not measured: run make package":
            assert name == "package_unzipped_mb"
            assert entry["ours"] is None
            continue
        if str(entry["details"].get("status", "")).startswith("not measured: pandas"):
            # pandas is the reference's own dependency, not the project's.
            assert name == "batch_rows_per_second_vs_pandas"
            assert entry["reference"] is None
            continue
        assert not str(entry["details"].get("status", "")).startswith("failed"), name
        for key in ("ours", "reference", "ratio"):
            assert _number(entry[key]), (name, key, entry[key])
        assert entry["reference"] > 0, name


def test_the_measurements_describe_what_was_run(quick_run: tuple[dict[str, Any], str]) -> None:
    results, _ = quick_run
    one_row = results["predict_warm_1row_ratio_vs_ort"]["details"]
    assert one_row["handler_us"]["n"] == Sizes.small().calls_1row
    assert _number(one_row["handler_us"]["p99"])
    assert {"predict_records_direct", "handler_v2_matrix"} <= set(one_row["variants_us"])
    speedup = results["predict_warm_1row_speedup_vs_sklearn"]["details"]["models"]
    assert len(speedup) == 2
    for model in speedup.values():
        assert model["max_abs_diff_handler_vs_sklearn"] < 1e-4  # the refit is the served model
    batch = results["predict_batch_10k_ratio_vs_ort"]["details"]
    assert batch["headline_protocol"] in ("records", "v2_matrix", "v2_binary")
    assert batch["same_labels_every_encoding"] is True
    cold = results["cold_start_seconds"]["details"]
    assert cold["heavy_modules_imported"] == []
    assert cold["answer"]["predictions"]
    assert results["cold_start_s3_seconds"]["details"]["heavy_modules_imported"] == ["boto3"]
    steps = results["train_overhead_ratio_100k"]["details"]["steps_median_s"]
    assert {"read", "prepare", "fit", "export", "parity", "metrics", "profile"} <= set(steps)
    s3 = results["s3_requests_per_1000_predictions"]["details"]
    # registry.json, metadata.json, model.onnx, and the spec (capture settings)
    assert s3["cold_request_calls"] == ["GetObject"] * 4
    small = Sizes.small()
    monitor = results["monitor_1m_rows_seconds"]["details"]
    windows = list(monitor["sizes"].values())
    assert [w["rows"] for w in windows] == [
        small.monitor_rows_small,
        small.monitor_rows,
        small.monitor_rows_large,
    ]
    for window in windows:
        assert window["files"] == window["rows"] // small.monitor_batch_rows
        assert window["verdict"] in ("ok", "drift")  # a verdict, not insufficient_data
        for key in ("ours_peak_rss_mib", "ours_s_per_million_rows", "ours_us_per_object"):
            assert _number(window[key]), key
    # From rows and the decode floor beside the check from summaries, but at the largest.
    for window in windows[:2]:
        assert window["bytes_on_disk"] > 0
        for key in ("raw_s", "floor_s", "raw_peak_rss_mib", "ratio_to_raw"):
            assert _number(window[key]), key
    alt = monitor[f"objects_of_{small.monitor_batch_rows_alt}_rows"]
    assert alt["files"] == small.monitor_rows // small.monitor_batch_rows_alt
    assert _number(monitor["projection_100m_rows_an_hour"]["projected_s"])
    assert monitor["rows"] == small.monitor_rows
    capture = results["capture_overhead_us"]["details"]
    assert capture["capture_on_us"]["n"] == capture["capture_off_us"]["n"] == small.calls_1row
    assert capture["median_includes_a_batch_write"] is False
    assert capture["flush"]["rows_per_flush"] == 1000
    assert _number(capture["amortised_write_us_per_row"])
    shadow = results["shadow_overhead_us"]["details"]
    assert shadow["shadow_on_us"]["n"] == shadow["shadow_off_us"]["n"] == small.calls_1row
    # Every timed and warm-up call captured its row and, shadowed, the staging row too.
    assert shadow["rows_captured_during_timing"] == 3 * shadow["calls_timed_and_warmed"]
    memory = results["train_peak_rss_per_csv_mb"]["details"]
    assert memory["rows"] == small.memory_csv_rows
    assert _number(memory["prepare_s"])
    assert _number(memory["reference_parse_s"])
    hostile = results["hostile_worst_seconds_per_mb"]["details"]["shapes"]
    assert set(hostile) == {
        "deep_nesting",
        "input_tensors",
        "repeated_outputs",
        "records_wrong_type_at_end",
        "gzip_bomb",
    }
    for runs in hostile.values():
        assert len(runs) == 2
        assert all(400 <= run["status"] < 500 for run in runs)
    assert results["run"]["quick"] is True
    assert results["run"]["failed"] == []
    machine = results["machine"]
    assert machine["cores"] >= 1
    assert machine["packages"]["onnxruntime"]
    assert {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} <= set(machine["env"])


def test_the_table_lists_every_figure(quick_run: tuple[dict[str, Any], str]) -> None:
    _, stdout = quick_run
    header = stdout.splitlines()[0].split()
    assert header == ["figure", "ours", "reference", "ratio", "goal", "met?", "machine"]
    for name in FIGURES:
        assert name in stdout


def test_package_sizes_not_yet_built_are_reported_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(package_size, "SIZES", tmp_path / "sizes.json")
    entry = package_size.package_unzipped_mb(Workspace(tmp_path, Sizes.small()))
    assert entry["ours"] is None
    assert entry["met"] is False
    assert entry["details"]["status"] == "not measured: run make package"
