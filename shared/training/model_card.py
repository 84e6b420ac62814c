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
        "## Held-out metrics",
        "",
        "| metric | value | better |",
        "|---|---|---|",
    ]
    for name, value in sorted(meta.metrics.items()):
        marker = " (primary)" if name == meta.primary_metric else ""
        better = "lower" if name in LOWER_IS_BETTER else "higher"
        lines.append(f"| {name}{marker} | {value:.4f} | {better} |")
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
        "| feature | kind | missing in training |",
        "|---|---|---|",
    ]
    for feature in meta.features:
        profile = meta.baseline.features[feature.name]
        # Names come from the uploaded CSV; a card's table pasted into a spreadsheet must
        # not run one that reads as a formula.
        lines.append(f"| {inert(feature.name)} | {feature.kind} | {profile.missing_rate:.1%} |")
    lines += [
        "",
        "Missing values are imputed inside the model; categories unseen in training are "
        "ignored (all one-hot columns zero).",
        "",
    ]
    return "\n".join(lines)
