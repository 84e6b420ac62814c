"""Peak memory and preparation time of a training run on a 100 MB CSV (issue 11).

The full run (benchmarks.train_child ours) and the plainest parse of the same file
(benchmarks.train_child parse) each run in a fresh interpreter, so each peak RSS is its own.
"""

from __future__ import annotations

import json

from benchmarks.common import Figure, figure, rounded, run_python
from benchmarks.fixtures import WIDE_CATEGORICAL, WIDE_NUMERIC, WIDE_SPEC, wide_csv
from benchmarks.workspace import Workspace
from shared.data.spec import spec_key
from shared.store.local import LocalStore

MODEL = "wide"
DATA_KEY = f"datasets/{MODEL}/data.csv"
CHILD = ["-m", "benchmarks.train_child"]
MIB = 2**20
# The goal of issue 11: a 3 GB Lambda trains a 500 MB CSV, with room for the runtime.
MAX_RSS_PER_CSV = 4.0
# timings["prepare"] at the full size (555,000 rows, 95.5 MiB) before preparation parsed
# column-wise: this figure on commit 361cdcb, on the 2-core machine with nothing else running
# (load average 0.65 to 0.89; a first run beside a CI job took 12.5 s). Preparation must take
# at most half of it.
PREPARE_S_BEFORE = 7.24


def train_peak_rss_per_csv_mb(ws: Workspace) -> Figure:
    """Peak RSS of a full training run per MiB of its CSV, and the time preparation takes."""
    body = wide_csv(ws.sizes.memory_csv_rows)
    csv_path = ws.root / "wide.csv"
    csv_path.write_bytes(body)
    roots = {}
    for name in ("ours", "handler"):
        roots[name] = root = ws.path(f"train-memory-{name}")
        store = LocalStore(root)
        spec_bytes = json.dumps(WIDE_SPEC).encode()
        store.put(spec_key(MODEL), spec_bytes, content_type="application/json")
        store.put(DATA_KEY, body, content_type="text/csv")
    csv_mib = len(body) / MIB
    del body, store

    # The headline is the deployed function's own path (app.py imported first, with
    # Chalice and serving's onnxruntime, then the S3 handler); the bare job is a detail.
    handler = run_python([*CHILD, "handler", str(roots["handler"]), DATA_KEY])
    ours = run_python([*CHILD, "ours", str(roots["ours"]), DATA_KEY])
    parse = run_python([*CHILD, "parse", str(csv_path), str(len(WIDE_NUMERIC))])
    result, parsed = ours.result(), parse.result()
    prepare_s = float(result["timings"]["prepare"])
    per_mib = handler.max_rss_mib / csv_mib
    reference = parse.max_rss_mib / csv_mib
    faster = not ws.sizes.quick and prepare_s <= PREPARE_S_BEFORE / 2
    return figure(
        ours=per_mib,
        reference=reference,
        ratio=per_mib / reference,
        goal=f"ours <= {MAX_RSS_PER_CSV:g} (peak RSS / CSV size); preparation at least 2x "
        f"faster than before (was {PREPARE_S_BEFORE:g} s)",
        met=per_mib <= MAX_RSS_PER_CSV and faster,
        unit="MiB/MiB",
        measure="peak RSS of the training function's process (wait4 rusage; app.py "
        "imported, its S3 handler called with the upload's event) over the CSV's size, both "
        "in MiB; reference: the same for a process that only parses the file",
        ratio_is="ours / reference",
        details={
            "csv_bytes": csv_path.stat().st_size,
            "csv_mib": rounded(csv_mib),
            "rows": result["rows"],
            "columns": {"numeric": len(WIDE_NUMERIC), "categorical": list(WIDE_CATEGORICAL)},
            "spec": WIDE_SPEC,
            "ours": "app.on_dataset_uploaded (the training function's handler) on a local store "
            "in a fresh interpreter that imported app.py first: read, prepare, split, fit, "
            "export, parity, metrics, profile, register, then the challenger check; on S3, "
            "boto3 and its client add about 24 MiB",
            "job_alone": "shared.training.job.train_from_dataset in a fresh interpreter: the "
            "steps and timings below come from it",
            "reference": "a fresh interpreter that reads the file and parses it with csv.reader "
            "into one list per column (float for numbers, NaN when empty, str for categories)",
            "peak_rss_mib": {
                "ours": rounded(handler.max_rss_mib),
                "job_alone": rounded(ours.max_rss_mib),
                "reference": rounded(parse.max_rss_mib),
            },
            "prepare_s": rounded(prepare_s),
            "prepare_s_is": "timings['prepare']: parse and checks, as when 7.24 s was measured; "
            "the feature profiles, taken while preparing since the data is held as float32, "
            "are timed under 'profile' as they were then",
            "prepare_s_before": PREPARE_S_BEFORE,
            "prepare_speedup": rounded(PREPARE_S_BEFORE / prepare_s) if PREPARE_S_BEFORE else None,
            "reference_parse_s": rounded(parsed["parse_s"]),
            "train_s": rounded(result["train_s"]),
            "steps_s": {step: rounded(value) for step, value in result["timings"].items()},
            "quick_note": "with --quick the file is 2 MB, so the interpreter's own 100+ MiB "
            "dominate and the goal is not judged"
            if ws.sizes.quick
            else None,
        },
    )
