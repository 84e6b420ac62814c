"""A short, human-readable model card written beside each version's artifact."""

from __future__ import annotations

from shared.data.cells import inert
from shared.data.spec import LOWER_IS_BETTER
from shared.registry.metadata import ModelMetadata


def render_model_card(meta: ModelMetadata) -> str:
    """Markdown that a reviewer can read without opening metadata.json."""
    data = meta.lineage.data
    lines = [
        f"# {meta.model} — version {meta.version}",
        "",
        f"- **Task**: {meta.task} of `{meta.target}`"
        + (f" (classes: {', '.join(inert(str(c)) for c in meta.classes)})" if meta.classes else ""),
        f"- **Estimator**: {meta.estimator}",
        f"- **Trained**: {meta.created_at} by run `{meta.run_id}` ({meta.lineage.trigger})",
        f"- **Data**: `{data.key}` (sha256 `{data.sha256[:16]}…`, {data.rows} rows: "
        f"{data.train_rows} train, {data.test_rows} held out)",
        f"- **Code**: {meta.lineage.code_version}",
        f"- **Artifact**: `{meta.onnx.file}` sha256 `{meta.onnx.sha256}`",
        "",
    ]
    if meta.warnings:
        lines += ["## Warnings", "", *(f"- {inert(w)}" for w in meta.warnings), ""]
    trivial = meta.gate.trivial_predictor if meta.gate is not None else "trivial predictor"
    lines += [
        "## Held-out metrics",
        "",
        f"| metric | value | {trivial} | better |",
        "|---|---|---|---|",
    ]
    for name, value in sorted(meta.metrics.items()):
        marker = " (primary)" if name == meta.primary_metric else ""
        better = "lower" if name in LOWER_IS_BETTER else "higher"
        base = meta.trivial_metrics.get(name)
        shown = "-" if base is None else f"{base:.4f}"
        lines.append(f"| {name}{marker} | {value:.4f} | {shown} | {better} |")
    if meta.per_class:
        lines += [
            "",
            "## Classes",
            "",
            "| class | share of training rows | held-out rows | precision | recall | f1 |",
            "|---|---|---|---|---|---|",
        ]
        for name, figures in meta.per_class.items():
            lines.append(
                f"| {inert(name)} | {figures['share']:.1%} | {figures['support']:.0f} | "
                f"{figures['precision']:.4f} | {figures['recall']:.4f} | {figures['f1']:.4f} |"
            )
    lines += [
        "",
        "## Estimator parameters",
        "",
        ", ".join(f"`{name}={value}`" for name, value in sorted(meta.params.items())) or "none",
    ]
    parity = meta.parity
    lines += [
        "",
        "## Export check",
        "",
        f"ONNX vs scikit-learn on {parity.rows} held-out rows: max |difference| "
        f"{parity.max_abs_diff:.2e} (allowed {parity.atol:g} + {parity.rtol:g}·|value|), "
        f"{parity.violations} rows outside, {parity.label_mismatches} labels differing.",
        "",
        "## Inputs",
        "",
        "| feature | kind | missing in training | categories |",
        "|---|---|---|---|",
    ]
    for feature in meta.features:
        profile = meta.baseline.features[feature.name]
        # Names come from the uploaded CSV; a card's table pasted into a spreadsheet must
        # not run one that reads as a formula.
        lines.append(
            f"| {inert(feature.name)} | {feature.kind} | {profile.missing_rate:.1%} | "
            f"{_categories(feature.categories) if feature.kind == 'categorical' else ''} |"
        )
    lines += [
        "",
        "Missing values are imputed inside the model; categories unseen in training are "
        "ignored (all one-hot columns zero).",
        "",
    ]
    return "\n".join(lines)


def _categories(values: list[str], shown: int = 10) -> str:
    """The categories, or their count and the first few when there are many."""
    names = ", ".join(inert(v).replace("|", "\\|") for v in values[:shown])
    return names if len(values) <= shown else f"{len(values)}: {names}, …"
