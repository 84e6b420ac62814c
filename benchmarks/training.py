"""A full training run on 100,000 generated rows against a bare Pipeline.fit of the same rows.

Both run in fresh interpreters (benchmarks.train_child), so each one's peak memory is its
own; they alternate, `train_reps` times each, each full run on a store of its own (the
same upload twice would be recognised and not retrained).
"""

from __future__ import annotations

import json
import pickle
from typing import Any

from benchmarks.common import (
    ChildRun,
    Figure,
    figure,
    lambda_memory_mb,
    median,
    rounded,
    run_python,
)
from benchmarks.fixtures import MIXED_CATEGORICAL, MIXED_NUMERIC, MIXED_SPEC, mixed_csv
from benchmarks.workspace import Workspace
from shared.data.dataset import prepare
from shared.data.spec import parse_spec, spec_key
from shared.store.local import LocalStore
from shared.training.pipeline import split_rows

MODEL = "churn"
DATA_KEY = f"datasets/{MODEL}/data.csv"
CHILD = ["-m", "benchmarks.train_child"]


def _runs(ws: Workspace) -> dict[str, Any]:
    if "train" in ws.memo:
        memo: dict[str, Any] = ws.memo["train"]
        return memo
    body = mixed_csv(ws.sizes.train_rows)
    spec_bytes = json.dumps(MIXED_SPEC).encode()
    spec = parse_spec(spec_bytes)
    # The reference fits what the full run fits: the same preparation, split and pipeline.
    data = prepare(body, spec, source=DATA_KEY)
    split = split_rows(data, spec)
    pickled = ws.root / "train-reference.pickle"
    with pickled.open("wb") as file:
        pickle.dump((data, split.train, spec), file, protocol=pickle.HIGHEST_PROTOCOL)
    del data

    def fresh_store(name: str) -> str:
        root = ws.path(name)
        store = LocalStore(root)
        store.put(spec_key(MODEL), spec_bytes, content_type="application/json")
        store.put(DATA_KEY, body, content_type="text/csv")
        return str(root)

    ours: list[ChildRun] = []
    bare: list[ChildRun] = []
    for rep in range(ws.sizes.train_reps):
        ours.append(
            run_python([*CHILD, "ours", fresh_store(f"train-{rep}"), DATA_KEY, "--import-all"])
        )
        bare.append(run_python([*CHILD, "bare", str(pickled)]))
    profile = None
    if ws.profile:
        run = run_python(
            [*CHILD, "ours", fresh_store("train-profile"), DATA_KEY, "--profile", "--import-all"]
        )
        profile = run.result()["profile"]
    ws.memo["train"] = memo = {
        "ours": ours,
        "bare": bare,
        "profile": profile,
        "csv_bytes": len(body),
    }
    return memo


def train_overhead_ratio_100k(ws: Workspace) -> Figure:
    """Wall time of train_from_dataset over the wall time of its estimator's fit alone."""
    memo = _runs(ws)
    ours = [r.result() for r in memo["ours"]]
    bare = [r.result() for r in memo["bare"]]
    ours_s = median([r["train_s"] for r in ours])
    fit_s = median([r["fit_s"] for r in bare])
    steps = {
        step: rounded(median([r["timings"].get(step, 0.0) for r in ours]))
        for step in ours[0]["timings"]
    }
    ratio = ours_s / fit_s
    return figure(
        ours=ours_s,
        reference=fit_s,
        ratio=ratio,
        goal="ratio <= 1.5",
        met=ratio <= 1.5,
        unit="s",
        measure="median wall seconds of the full training run (ours) and of the bare fit",
        ratio_is="full training run / bare Pipeline.fit",
        details={
            "rows": ours[0]["rows"],
            "train_rows": ours[0]["train_rows"],
            "csv_bytes": memo["csv_bytes"],
            "columns": {"numeric": list(MIXED_NUMERIC), "categorical": list(MIXED_CATEGORICAL)},
            "spec": MIXED_SPEC,
            "estimator": "linear (LogisticRegression, the default spec), numeric columns "
            "median-imputed and scaled, categorical ones imputed and one-hot encoded",
            "runs": len(ours),
            "ours": "shared.training_job.train_from_dataset on a local store, in a fresh "
            "interpreter (imports not timed): read, validate/prepare, split, fit, export, "
            "parity, metrics, profile, register",
            "reference": "shared.training.build_pipeline(data, build_estimator(spec, task), "
            "scale=True).fit(X_train, y_train) in a fresh interpreter: the pipeline "
            "fit_pipeline builds, on the same prepared training rows (pickled by the parent)",
            "train_s": [rounded(r["train_s"]) for r in ours],
            "fit_s": [rounded(r["fit_s"]) for r in bare],
            "steps_median_s": steps,
            "steps_share_of_run": {
                step: rounded(float(value or 0.0) / ours_s) for step, value in steps.items()
            },
            "not_in_timings_s": rounded(ours_s - sum(float(v or 0.0) for v in steps.values())),
            "not_in_timings_note": "the run's time outside metadata.json's timings: the "
            "duplicate check, the version claim and the register step (the timings are "
            "copied into metadata.json inside the register step, so it is never among them)",
            "fit_step_over_bare_fit": rounded(float(steps.get("fit") or 0.0) / fit_s),
            "import_s": rounded(median([r["import_s"] for r in ours])),
            "metrics": ours[0]["metrics"],
            "onnx_bytes": ours[0]["onnx_bytes"],
            "max_rss_mib": {
                "ours": rounded(max(r.max_rss_mib for r in memo["ours"])),
                "bare_fit": rounded(max(r.max_rss_mib for r in memo["bare"])),
            },
            "profile_top_own_time": memo["profile"],
        },
    )


def train_100k_max_rss_mb(ws: Workspace) -> Figure:
    """Peak memory of the full training run, against the training function's memory size."""
    memo = _runs(ws)
    ours = max(r.max_rss_mib for r in memo["ours"])
    reference = max(r.max_rss_mib for r in memo["bare"])
    limit = lambda_memory_mb("on_dataset_uploaded")
    return figure(
        ours=ours,
        reference=reference,
        ratio=ours / reference,
        goal=f"ours <= {limit} MB (training memory)",
        met=limit is not None and ours <= limit,
        unit="MiB",
        measure="peak RSS of the training process; goal: on_dataset_uploaded's "
        "lambda_memory_size in .chalice/config.json",
        ratio_is="ours / reference",
        details={
            "rows": memo["ours"][0].result()["rows"],
            "ours": "the train_overhead_ratio_100k full-run child (wait4 rusage), which "
            "imports skl2onnx and onnxruntime before the run (the job alone loads them after "
            "the fit, with less held)",
            "reference": "the bare Pipeline.fit child (holds the prepared data and the fit)",
            "in_child_getrusage_mib": rounded(max(r.result()["max_rss_mib"] for r in memo["ours"])),
            "lambda_memory_size_mb": limit,
        },
    )
