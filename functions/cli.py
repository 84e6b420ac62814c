"""The `mlops` command: the lifecycle from a terminal, against MLOPS_STORE or --store.

On the embedded default (a local folder) there are no bucket events, so `upload`
runs the training function in-process, exactly as the S3 trigger would.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.audit import read_trail
from shared.errors import MlopsError
from shared.metadata import decode_metadata
from shared.model_card import render_model_card
from shared.registry import ModelRegistry, list_models, version_prefix
from shared.spec import parse_spec, spec_key, validate_model_name
from shared.store import ObjectStore, open_store
from shared.store.local import LocalStore
from shared.training_job import TrainingOutcome, train_from_dataset


def _print_outcome(outcome: TrainingOutcome) -> None:
    if outcome.status == "registered":
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(outcome.metrics.items()))
        print(
            f"registered {outcome.model} version {outcome.version} as {outcome.alias} ({metrics})"
        )
    elif outcome.status == "duplicate":
        print(f"{outcome.data_key} was already trained as version {outcome.version}; nothing to do")
    else:
        print(f"training of {outcome.model} failed: {outcome.reason}", file=sys.stderr)


def upload(
    store: ObjectStore, path: Path, model: str, spec_path: Path | None
) -> TrainingOutcome | None:
    """Put a CSV (and optionally its spec) where the trigger expects it; train if local."""
    validate_model_name(model)
    if spec_path is not None:
        body = spec_path.read_bytes()
        parse_spec(body, source=str(spec_path))  # refuse a bad spec before touching the store
        store.put(spec_key(model), body, content_type="application/json")
    key = f"datasets/{model}/{path.name}"
    store.put(key, path.read_bytes(), content_type="text/csv")
    print(f"uploaded {path} to {store.uri}/{key}")
    if isinstance(store, LocalStore):
        return train_from_dataset(store, key, trigger="mlops upload")
    print("the deployed training function picks it up from the bucket event")
    return None


def cmd_upload(store: ObjectStore, args: argparse.Namespace) -> int:
    outcome = upload(store, Path(args.file), args.model, Path(args.spec) if args.spec else None)
    if outcome is not None:
        _print_outcome(outcome)
        return 1 if outcome.status == "failed" else 0
    return 0


def cmd_train(store: ObjectStore, args: argparse.Namespace) -> int:
    outcome = train_from_dataset(store, args.data_key, trigger="mlops train")
    _print_outcome(outcome)
    return 1 if outcome.status == "failed" else 0


def cmd_models(store: ObjectStore, args: argparse.Namespace) -> int:
    for model in list_models(store):
        record = ModelRegistry(store, model).load()
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(record.aliases.items())) or "no aliases"
        print(f"{model}: {len(record.versions)} version(s), {aliases}")
    return 0


def cmd_versions(store: ObjectStore, args: argparse.Namespace) -> int:
    record = ModelRegistry(store, args.model).load()
    by_version: dict[int, list[str]] = {}
    for alias, version in record.aliases.items():
        by_version.setdefault(version, []).append(alias)
    for entry in record.versions:
        metric = (
            f"{entry.primary_metric}={entry.metric_value:.4f}"
            if entry.metric_value is not None
            else (entry.reason or "")
        )
        tags = ",".join(sorted(by_version.get(entry.version, [])))
        print(f"v{entry.version}\t{entry.status}\t{metric}\t{tags}\t{entry.data_key}")
    return 0


def cmd_show(store: ObjectStore, args: argparse.Namespace) -> int:
    entry = ModelRegistry(store, args.model).load().resolve(args.version)
    body = store.get(version_prefix(args.model, entry.version) + "metadata.json").body
    print(render_model_card(decode_metadata(body)))
    return 0


def cmd_audit(store: ObjectStore, args: argparse.Namespace) -> int:
    for event in read_trail(store, validate_model_name(args.model)):
        print(f"{event.at}\t{event.event}\t{json.dumps(event.details, sort_keys=True)}")
    return 0


def breast_cancer_csv() -> bytes:
    """scikit-learn's breast-cancer data as a CSV with a readable `diagnosis` target."""
    from sklearn.datasets import load_breast_cancer  # only the demo needs it

    data = load_breast_cancer()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*data.feature_names, "diagnosis"])
    for row, label in zip(data.data, data.target, strict=True):
        writer.writerow([*(repr(float(v)) for v in row), data.target_names[label]])
    return out.getvalue().encode()


def cmd_demo(store: ObjectStore, args: argparse.Namespace) -> int:
    """Train the breast-cancer model end to end on the given store."""
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data_path = workdir / "breast_cancer.csv"
    data_path.write_bytes(breast_cancer_csv())
    spec_path = workdir / "breast_cancer.spec.json"
    spec_path.write_text(json.dumps({"target": "diagnosis", "estimator": "linear"}, indent=2))
    print(f"store: {store.uri}")
    outcome = upload(store, data_path, "breast-cancer", spec_path)
    if outcome is None:
        return 0
    _print_outcome(outcome)
    if outcome.status == "failed" or outcome.version is None:
        return 1
    print()
    cmd_versions(store, argparse.Namespace(model="breast-cancer"))
    print()
    cmd_show(store, argparse.Namespace(model="breast-cancer", version=str(outcome.version)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line; each sub-command maps to one function above."""
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__)
    parser.add_argument(
        "--store",
        help="s3://bucket[/prefix] or a folder (default: $MLOPS_STORE, else ./.mlops-store)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("upload", help="upload a CSV under datasets/<model>/ (trains if local)")
    p.add_argument("file")
    p.add_argument("--model", required=True)
    p.add_argument("--spec", help="a model spec JSON file to upload first")
    p.set_defaults(func=cmd_upload)
    p = sub.add_parser("train", help="train from a dataset key already in the store")
    p.add_argument("data_key", help="e.g. datasets/<model>/data.csv")
    p.set_defaults(func=cmd_train)
    sub.add_parser("models", help="list registered models").set_defaults(func=cmd_models)
    p = sub.add_parser("versions", help="list a model's versions and aliases")
    p.add_argument("model")
    p.set_defaults(func=cmd_versions)
    p = sub.add_parser("show", help="print a version's model card")
    p.add_argument("model")
    p.add_argument("version", nargs="?", default="production", help="number, alias or latest")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("audit", help="print a model's audit trail")
    p.add_argument("model")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("demo", help="train the breast-cancer example model")
    p.add_argument("--workdir", default=".mlops-demo", help="where to write the demo CSV")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `mlops`; domain errors print their message and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        store = open_store(args.store)
        code: int = args.func(store, args)
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
