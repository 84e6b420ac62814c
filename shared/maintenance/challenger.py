"""Champion and challenger: both versions' ONNX models score the same rows; the rule acts.

The rows: the challenger's held-out rows (stored with it; it never trained on them) and
the labelled captured rows served since the challenger was trained (neither version can
have trained on those). Both artifacts are loaded through serving's checked cache, so a
tampered artifact is refused here as it is when serving. Two versions are compared only
if they take the same features and answer the same task and classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np

from shared.data.spec import load_spec
from shared.errors import ArtifactRejected, RegistryError
from shared.maintenance.promotion import PromotionDecision, compare, decide
from shared.monitoring.job import labelled_captures
from shared.monitoring.performance import LabelledRow, metric_values
from shared.registry.audit import record_event_once
from shared.registry.holdout import HOLDOUT_FILE, decode_holdout
from shared.registry.metadata import ModelMetadata
from shared.registry.records import AliasConflict, version_prefix
from shared.registry.registry import ModelRegistry
from shared.serving.cache import LoadedModel, ModelCache, Prediction, predict
from shared.serving.runtime import ModelInput, sha256_hex
from shared.store.base import ObjectStore

Row = dict[str, int | float | str | None]


@dataclass(frozen=True)
class PromotionOutcome:
    """What considering a challenger did."""

    decision: PromotionDecision | None  # None: nothing to consider
    promoted: bool
    note: str


def same_schema(a: ModelMetadata, b: ModelMetadata) -> str | None:
    """Why two versions cannot be compared on the same rows, or None if they can."""
    if a.task != b.task:
        return f"v{a.version} is {a.task}, v{b.version} is {b.task}"
    if [(f.name, f.kind) for f in a.features] != [(f.name, f.kind) for f in b.features]:
        return f"v{a.version} and v{b.version} take different features"
    if a.classes != b.classes:
        return f"v{a.version} and v{b.version} predict different classes"
    return None


def batch_of(loaded: LoadedModel, rows: Sequence[Row]) -> ModelInput:
    """Feature rows by name as the model's input (None = missing, as in serving)."""
    names = loaded.onnx.numeric_names
    numeric = np.array(
        [[math.nan if r.get(n) is None else r.get(n) for n in names] for r in rows],
        dtype=np.float64,
    ).reshape(len(rows), len(names))
    categorical = {
        f.name: np.array([str(r.get(f.name) or "") for r in rows], dtype=object)
        for f in loaded.onnx.categorical_features
    }
    return ModelInput(numeric=numeric, categorical=categorical)


def _labelled(prediction: Prediction, labels: Sequence[str]) -> list[LabelledRow]:
    classes = [str(c) for c in prediction.classes or []]
    probabilities = prediction.probabilities
    values = prediction.values.tolist()
    rows = []
    for i, label in enumerate(labels):
        probs = None
        if probabilities is not None:
            probs = dict(zip(classes, probabilities[i].tolist(), strict=True))
        rows.append(LabelledRow(label=label, prediction=values[i], probabilities=probs))
    return rows


def score(
    loaded: LoadedModel, rows: Sequence[Row], labels: Sequence[str], metric: str
) -> float | None:
    """`metric` of `loaded` on `rows` against `labels` (None for no rows)."""
    if not rows:
        return None
    prediction = predict(loaded, batch_of(loaded, rows))
    return metric_values(loaded.metadata, _labelled(prediction, labels)).get(metric)


def evaluate(store: ObjectStore, model: str, champion: int, challenger: int) -> PromotionDecision:
    """Score both versions on the same rows and apply the spec's promotion rule."""
    cache = ModelCache(store)
    old, new = cache.get(model, str(champion)), cache.get(model, str(challenger))
    spec = load_spec(store, model)[0]
    settings = spec.promotion
    metric = settings.metric or new.metadata.primary_metric
    why_not = same_schema(old.metadata, new.metadata)
    if why_not is not None:
        empty = compare("rows", 0, None, None, metric)
        return msgspec.structs.replace(
            decide(champion, challenger, metric, empty, empty, settings),
            outcome="incomparable",
            reason=why_not,
        )
    key = version_prefix(model, challenger) + HOLDOUT_FILE
    body = store.get(key).body
    if new.metadata.holdout_sha256 is not None and sha256_hex(body) != new.metadata.holdout_sha256:
        # Rows that are not the ones stored at registration must not decide a promotion.
        raise ArtifactRejected(
            f"{key} does not match the sha256 in v{challenger}'s metadata: not compared"
        )
    held = decode_holdout(body, key)
    held_rows: list[Row] = [h.features for h in held]
    held_labels = [str(h.label) for h in held]
    now = datetime.now(UTC)
    label_window = timedelta(hours=spec.monitoring.label_window_hours)
    # Rows served since the challenger was trained, within the label window: a challenger
    # waiting in staging for a month must not make every hourly check read a month.
    since = max(datetime.fromisoformat(new.metadata.created_at), now - label_window)
    captured = labelled_captures(store, model, since, now, new.metadata.target)
    cap_rows: list[Row] = [dict(row.features) for row, _ in captured]
    cap_labels = [label for _, label in captured]
    held_out = compare(
        f"held-out rows of v{challenger}",
        len(held_rows),
        score(old, held_rows, held_labels, metric),
        score(new, held_rows, held_labels, metric),
        metric,
    )
    labelled = compare(
        "labelled captured rows",
        len(cap_rows),
        score(old, cap_rows, cap_labels, metric),
        score(new, cap_rows, cap_labels, metric),
        metric,
    )
    return decide(champion, challenger, metric, held_out, labelled, settings)


def consider(store: ObjectStore, model: str, *, actor: str = "rule") -> PromotionOutcome:
    """Judge the staging version against production, record the decision, act on it.

    Safe to run again (a retried event, the hourly check): the decision is recorded once
    per (challenger, production, outcome), and the move expects production unchanged.
    """
    registry = ModelRegistry(store, model)
    record = registry.load()
    champion, challenger = record.aliases.get("production"), record.aliases.get("staging")
    if champion is None or challenger is None or champion == challenger:
        return PromotionOutcome(None, False, "no challenger in staging")
    if record.entry(challenger).status != "ready":
        return PromotionOutcome(None, False, f"staging v{challenger} is not ready")
    decision = evaluate(store, model, champion, challenger)
    created = datetime.fromisoformat(record.entry(challenger).created_at)
    record_event_once(
        store,
        model,
        "promotion_decided",
        at=created,
        dedupe=f"{challenger}\n{champion}\n{decision.outcome}",
        **msgspec.to_builtins(decision),
    )
    if not decision.act:
        return PromotionOutcome(decision, False, decision.reason)
    try:
        registry.set_alias(
            "production", challenger, reason=decision.reason, actor=actor, expected=champion
        )
    except AliasConflict as exc:
        # Someone moved production meanwhile: their move stands; the next check re-judges.
        return PromotionOutcome(decision, False, str(exc))
    except RegistryError as exc:
        return PromotionOutcome(decision, False, str(exc))
    return PromotionOutcome(decision, True, decision.reason)
