"""Run the benchmarks, write results.json, print the table.

    .venv/bin/python -m benchmarks.run [--quick] [--out PATH] [--only NAME ...] [--profile]

--quick shrinks every size so that CI can prove the scripts work (its numbers mean little).
--profile adds cProfile / -X importtime summaries to the details of the figures that
have them. Exit status 1 if a benchmark failed (the others still run), else 0: a missed
goal is a result, not a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
    Figure,
    Sizes,
    code_state,
    cpu_steal_seconds,
    machine_info,
    machine_label,
)
from benchmarks.workspace import Workspace

DEFAULT_OUT = ROOT / "benchmarks" / "results.json"


def _figures() -> dict[str, Callable[[Workspace], Figure]]:
    # Imported here so that `--help` answers at once.
    from benchmarks import (
        batch,
        cold_start,
        decisions,
        hostile,
        monitoring,
        package_size,
        predict,
        s3_requests,
        training,
        training_memory,
        verdicts,
    )

    return {
        "predict_warm_1row_ratio_vs_ort": predict.predict_warm_1row_ratio_vs_ort,
        "predict_warm_1row_speedup_vs_sklearn": predict.predict_warm_1row_speedup_vs_sklearn,
        "predict_batch_10k_ratio_vs_ort": predict.predict_batch_10k_ratio_vs_ort,
        "cold_start_seconds": cold_start.cold_start_seconds,
        "cold_start_max_rss_mb": cold_start.cold_start_max_rss_mb,
        "cold_start_s3_seconds": cold_start.cold_start_s3_seconds,
        "train_overhead_ratio_100k": training.train_overhead_ratio_100k,
        "train_100k_max_rss_mb": training.train_100k_max_rss_mb,
        "train_peak_rss_per_csv_mb": training_memory.train_peak_rss_per_csv_mb,
        "s3_requests_per_1000_predictions": s3_requests.s3_requests_per_1000_predictions,
        "hostile_worst_seconds_per_mb": hostile.hostile_worst_seconds_per_mb,
        "capture_overhead_us": monitoring.capture_overhead_us,
        "shadow_overhead_us": monitoring.shadow_overhead_us,
        "monitor_1m_rows_seconds": monitoring.monitor_1m_rows_seconds,
        "verdict_false_alarm_rate": verdicts.verdict_false_alarm_rate,
        "package_unzipped_mb": package_size.package_unzipped_mb,
        "decisions_at_defaults": decisions.decisions_at_defaults,
        "batch_rows_per_second_vs_pandas": batch.batch_rows_per_second_vs_pandas,
        "batch_peak_rss_mb": batch.batch_peak_rss_mb,
    }


FIGURES = (
    "predict_warm_1row_ratio_vs_ort",
    "predict_warm_1row_speedup_vs_sklearn",
    "predict_batch_10k_ratio_vs_ort",
    "cold_start_seconds",
    "cold_start_max_rss_mb",
    "cold_start_s3_seconds",
    "train_overhead_ratio_100k",
    "train_100k_max_rss_mb",
    "train_peak_rss_per_csv_mb",
    "s3_requests_per_1000_predictions",
    "hostile_worst_seconds_per_mb",
    "capture_overhead_us",
    "shadow_overhead_us",
    "monitor_1m_rows_seconds",
    "verdict_false_alarm_rate",
    "package_unzipped_mb",
    "decisions_at_defaults",
    "batch_rows_per_second_vs_pandas",
    "batch_peak_rss_mb",
)


def _failed(exc: BaseException) -> Figure:
    return Figure(
        ours=None,
        reference=None,
        ratio=None,
        goal="",
        met=False,
        unit="",
        details={
            "status": f"failed: {type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc().splitlines()[-12:],
        },
    )


def run(
    names: Sequence[str], sizes: Sizes, *, profile: bool = False, command: str = ""
) -> dict[str, Any]:
    """Every figure in `names`, in FIGURES order, with the machine and run record."""
    figures = _figures()
    results: dict[str, Any] = {}
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    load: dict[str, list[float]] = {}
    steal: dict[str, float | None] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as scratch:
        workspace = Workspace(Path(scratch), sizes, profile=profile)
        for name in FIGURES:
            if name not in names:
                continue
            print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", file=sys.stderr)
            begin = time.perf_counter()
            before = os.getloadavg()[0]
            stolen = cpu_steal_seconds()
            try:
                results[name] = figures[name](workspace)
            except Exception as exc:
                results[name] = _failed(exc)
                failed.append(name)
                print(f"  FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            seconds[name] = round(time.perf_counter() - begin, 2)
            load[name] = [round(before, 2), round(os.getloadavg()[0], 2)]
            stolen_after = cpu_steal_seconds()
            steal[name] = (
                None if stolen is None or stolen_after is None else round(stolen_after - stolen, 2)
            )
    results["machine"] = machine_info()
    results["run"] = {
        "command": command,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": sizes.quick,
        "code": code_state(),
        "sizes": {k: v for k, v in vars(sizes).items() if k != "quick"},
        "seconds": round(time.perf_counter() - started, 1),
        "seconds_per_figure": seconds,
        # The 1-minute load average before and after each figure: with 2 cores, a value
        # well above what the benchmark itself adds (about 1) means something else ran.
        "load_average_1min": load,
        # CPU seconds the hypervisor gave to other guests during each figure (/proc/stat).
        "cpu_steal_s": steal,
        "failed": failed,
    }
    return results


def _number(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip()


def table(results: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    machine = machine_label(results["machine"])
    header = ("figure", "ours", "reference", "ratio", "goal", "met?", "machine")
    rows: list[tuple[str, ...]] = [header]
    for name in FIGURES:
        if name not in results:
            continue
        entry: Figure = results[name]
        status = str(entry["details"].get("status", ""))
        if status.startswith(("failed", "not measured")):
            met = status.split(":")[0] + (": run make package" if "make package" in status else "")
        else:
            met = "yes" if entry["met"] else "NO"
        rows.append(
            (
                name,
                _number(entry["ours"], entry["unit"]),
                _number(entry["reference"], entry["unit"]),
                _number(entry["ratio"]),
                entry["goal"],
                met,
                machine,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON path")
    parser.add_argument(
        "--only", nargs="+", choices=FIGURES, metavar="NAME", help=f"among {', '.join(FIGURES)}"
    )
    parser.add_argument("--profile", action="store_true", help="add profiles to the details")
    args = parser.parse_args(argv)
    sizes = Sizes.small() if args.quick else Sizes.full()
    command = " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)])
    results = run(args.only or FIGURES, sizes, profile=args.profile, command=command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {args.out} ({results['run']['seconds']} s)")
    return 1 if results["run"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
