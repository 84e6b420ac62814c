"""Champion and challenger: both versions' ONNX models score the same rows; the rule acts.

The rows are those neither version was fitted to:
- labelled captured rows of the label window (ending `now`) that neither version's
  training set held: the newest labelled rows a retraining held back, and every row
  labelled since (the retraining's ``.sources.json`` names the rows each set holds);
- the challenger's held-out rows, where the champion's fitted rows (fingerprints kept with
  each version) show it never saw them: a retrained challenger's held-out rows include
  rows of the champion's own training data, on which the champion would win unfairly.
Both artifacts are loaded through serving's checked cache, so a tampered artifact is
refused here as it is when serving. Two versions are compared only if they take the same
features and answer the same task and classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import numpy.typing as npt

from shared.data.dataset import MISSING_CATEGORY
from shared.data.spec import load_spec
from shared.errors import ArtifactRejected, ObjectNotFound, RegistryError
from shared.maintenance.promotion import (
    PairedComparison,
    PromotionDecision,
    RowSource,
    decide,
    paired_comparison,
)
from shared.maintenance.sources import RetrainingSources, read_sources, sources_key
from shared.monitoring.capture import CaptureRow
from shared.monitoring.job import labelled_captures
from shared.monitoring.performance import (
    LabelledRow,
    metric_functions,
    metric_values,
    usable_label,
)
from shared.registry.audit import event_key, record_event_once
from shared.registry.fitted_rows import (
    FITTED_ROWS_FILE,
    Fingerprints,
    decode_fitted_rows,
    row_fingerprints,
    seen,
)
from shared.registry.holdout import HOLDOUT_FILE, HoldoutRow, decode_holdout
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


def _checked(store: ObjectStore, key: str, sha256: str | None, version: int) -> bytes:
    """A version's file, refused unless it is the one registered (its sha256, if recorded):
    rows that are not the ones stored at registration must not decide a promotion."""
    body = store.get(key).body
    if sha256 is not None and sha256_hex(body) != sha256:
        raise ArtifactRejected(
            f"{key} does not match the sha256 in v{version}'s metadata: not compared"
        )
    return body


def _holdout(store: ObjectStore, model: str, meta: ModelMetadata) -> list[HoldoutRow]:
    key = version_prefix(model, meta.version) + HOLDOUT_FILE
    return decode_holdout(_checked(store, key, meta.holdout_sha256, meta.version), key)


# A version's fitted rows identify observations by their values only when nearly all of
# them are distinct; where values repeat (few-valued features), the same values and label
# in another row are another observation, not a leak, and content cannot tell rows apart.
IDENTIFYING_SHARE = 0.95
# More compared rows than this are sampled (seeded): the bootstrap's cost follows the rows
# and 20,000 already bound an improvement to a few thousandths.
MAX_COMPARED_ROWS = 20_000


@dataclass(frozen=True)
class FittedRows:
    """What is known of the rows one version was fitted to."""

    version: int
    sources: RetrainingSources | None  # the record of its training set, if assembled
    ids: set[str] | None  # captured rows its set held; None: its set's record is untrusted
    prints: Fingerprints | None  # None: not kept (trained before they were)
    identifying: bool  # its rows' values tell rows apart

    def holds(self, row_ids: Sequence[str], prints: Fingerprints) -> npt.NDArray[np.bool_]:
        """Which captured rows (their ids and fingerprints) this version may be fitted to."""
        if self.ids is None:
            return np.ones(len(row_ids), dtype=bool)
        ids = self.ids
        held = np.fromiter((r in ids for r in row_ids), dtype=bool, count=len(row_ids))
        if self.identifying and self.prints is not None:
            held |= seen(prints, self.prints)
        return held


def fitted_rows(store: ObjectStore, model: str, meta: ModelMetadata) -> FittedRows:
    """The rows `meta`'s version was fitted to: its set's captured rows and fingerprints."""
    ids: set[str] | None = set()
    sources = read_sources(store, meta.lineage.data.key)
    if sources is not None:
        trusted = sources.csv_sha256 in (None, meta.lineage.data.sha256)
        # A record written for other bytes (a concurrent retry of the same window) could
        # name the wrong rows: then any captured row may have been in the set.
        ids = set(sources.captured) if trusted else None
    prints: Fingerprints | None = None
    if meta.fitted_rows_sha256 is not None:
        key = version_prefix(model, meta.version) + FITTED_ROWS_FILE
        try:
            body = _checked(store, key, meta.fitted_rows_sha256, meta.version)
        except ObjectNotFound:
            pass
        else:
            prints = decode_fitted_rows(body, key)
    fitted = meta.lineage.data.train_rows
    identifying = prints is not None and (not fitted or prints.size >= IDENTIFYING_SHARE * fitted)
    return FittedRows(meta.version, sources, ids, prints, identifying)


def _fingerprints(
    meta: ModelMetadata, rows: Sequence[Mapping[str, object]], labels: Sequence[object]
) -> Fingerprints:
    numeric = [f.name for f in meta.features if f.kind == "numeric"]
    categorical = [f.name for f in meta.features if f.kind == "categorical"]
    return row_fingerprints(
        rows, labels, numeric, categorical, meta.task == "regression", MISSING_CATEGORY
    )


def unseen_holdout(
    held: Sequence[HoldoutRow],
    champion: ModelMetadata,
    fitted: FittedRows,
    compared: Fingerprints | None = None,
) -> tuple[list[HoldoutRow], int, int]:
    """The held-out rows the champion was not fitted to and that are not already among the
    `compared` captured rows: (rows, left out as fitted, left out as already compared)."""
    if fitted.prints is None:
        return [], len(held), 0
    if not held:
        return [], 0, 0
    prints = _fingerprints(champion, [h.features for h in held], [h.label for h in held])
    leaked = seen(prints, fitted.prints) if fitted.identifying else np.zeros(len(held), bool)
    twice = (
        seen(prints, np.unique(compared))
        if compared is not None and compared.size
        else np.zeros(len(held), bool)
    )
    twice &= ~leaked
    keep = ~(leaked | twice)
    return (
        [h for h, k in zip(held, keep.tolist(), strict=True) if k],
        int(leaked.sum()),
        int(twice.sum()),
    )


def _answers(loaded: LoadedModel, rows: Sequence[Row], labels: Sequence[str]) -> list[LabelledRow]:
    return _labelled(predict(loaded, batch_of(loaded, rows)), labels) if rows else []


def _capture_range(rows: Sequence[CaptureRow]) -> tuple[str | None, str | None]:
    times = sorted(rows, key=lambda r: r.captured_at)
    return (times[0].at, times[-1].at) if times else (None, None)


def evaluate(
    store: ObjectStore, model: str, champion: int, challenger: int, *, now: datetime
) -> PromotionDecision:
    """Score both versions on rows neither was fitted to and apply the promotion rule."""
    cache = ModelCache(store)
    old, new = cache.get(model, str(champion)), cache.get(model, str(challenger))
    spec = load_spec(store, model)[0]
    settings = spec.promotion
    metric = settings.metric or new.metadata.primary_metric
    why_not = same_schema(old.metadata, new.metadata)
    if why_not is not None:
        empty = paired_comparison(metric, _nan, _nan, 0, settings.confidence)
        return msgspec.structs.replace(
            decide(champion, challenger, empty, settings), outcome="incomparable", reason=why_not
        )
    excluded: dict[str, int] = {}
    notes: list[str] = []
    champion_rows = fitted_rows(store, model, old.metadata)
    challenger_rows = fitted_rows(store, model, new.metadata)
    for version in (champion_rows, challenger_rows):
        if version.prints is not None and not version.identifying:
            notes.append(
                f"v{version.version}'s fitted rows repeat values: rows are told apart by "
                "capture id, not by their values"
            )
    # Labelled captured rows of the label window, and those held back from the
    # challenger's set however late it is judged (two bounded reads, not the time between).
    window = timedelta(hours=spec.monitoring.label_window_hours)
    target = new.metadata.target
    recent = labelled_captures(store, model, now - window, now, target)
    found = {r.row_id: (r, label) for r, label in recent}
    assembled = challenger_rows.sources
    if assembled is not None and assembled.held_back_range:
        first_held = datetime.fromisoformat(assembled.held_back_range[0])
        last_held = datetime.fromisoformat(assembled.held_back_range[-1])
        if first_held < now - window:
            earlier = labelled_captures(
                store, model, first_held, min(last_held + timedelta(microseconds=1), now), target
            )
            for r, label in earlier:
                found.setdefault(r.row_id, (r, label))
    captured = [(r, lab) for r, lab in found.values() if usable_label(new.metadata, lab)]
    captured.sort(key=lambda pair: (pair[0].captured_at, pair[0].capture_id, pair[0].row))
    prints = _fingerprints(
        new.metadata, [r.features for r, _ in captured], [label for _, label in captured]
    )
    row_ids = [r.row_id for r, _ in captured]
    keep = ~(champion_rows.holds(row_ids, prints) | challenger_rows.holds(row_ids, prints))
    unseen = [pair for pair, k in zip(captured, keep.tolist(), strict=True) if k]
    if len(unseen) < len(captured):
        excluded["labelled rows a version was fitted to"] = len(captured) - len(unseen)
    # The challenger's held-out rows that the champion was not fitted to.
    held = _holdout(store, model, new.metadata)
    compared = prints[keep] if captured else None
    fair, leaked, twice = unseen_holdout(held, old.metadata, champion_rows, compared)
    if leaked:
        why = (
            f"held-out rows of v{challenger} that v{champion} was fitted to"
            if champion_rows.prints is not None
            else f"held-out rows of v{challenger} (v{champion} kept no record of its fitted rows)"
        )
        excluded[why] = leaked
    if twice:
        excluded[f"held-out rows of v{challenger} already among the labelled rows"] = twice
    rows: list[Row] = [dict(r.features) for r, _ in unseen] + [h.features for h in fair]
    labels = [label for _, label in unseen] + [str(h.label) for h in fair]
    if len(rows) > MAX_COMPARED_ROWS:
        picked = np.sort(
            np.random.default_rng(0).choice(len(rows), MAX_COMPARED_ROWS, replace=False)
        ).tolist()
        notes.append(f"compared on a seeded sample of {MAX_COMPARED_ROWS} of {len(rows)} rows")
        rows, labels = [rows[i] for i in picked], [labels[i] for i in picked]
    comparison = _compare(metric, old, new, rows, labels, settings.confidence)
    first, last = _capture_range([r for r, _ in unseen])
    # The challenger's set names the rows held back from it (when it was assembled).
    held_back = [sources_key(new.metadata.lineage.data.key)] if assembled is not None else []
    sources = [
        RowSource(
            source="labelled captured rows",
            rows=len(unseen),
            first=first,
            last=last,
            keys=held_back,
        ),
        RowSource(
            source=f"held-out rows of v{challenger}",
            rows=len(fair),
            keys=[version_prefix(model, challenger) + HOLDOUT_FILE],
        ),
    ]
    return decide(
        champion,
        challenger,
        comparison,
        settings,
        labelled_rows=len(unseen),
        rows=sources,
        excluded=excluded,
        notes=notes,
    )


def _nan(_: np.ndarray) -> float:
    return math.nan


def _compare(
    metric: str,
    old: LoadedModel,
    new: LoadedModel,
    rows: Sequence[Row],
    labels: Sequence[str],
    confidence: float,
) -> PairedComparison:
    old_fn = metric_functions(old.metadata, _answers(old, rows, labels)).get(metric, _nan)
    new_fn = metric_functions(new.metadata, _answers(new, rows, labels)).get(metric, _nan)
    return paired_comparison(metric, old_fn, new_fn, len(rows), confidence)


def consider(
    store: ObjectStore, model: str, *, actor: str = "rule", now: datetime | None = None
) -> PromotionOutcome:
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

    def _dedupe(outcome: str) -> str:
        return f"{challenger}\n{champion}\n{outcome}"

    # Judged once: a challenger that was kept (or could not be compared) stays kept
    # against this champion. Judging it again each hour as rows arrive would repeat the
    # test until noise passes it; the next challenger gets its own chance.
    created = datetime.fromisoformat(record.entry(challenger).created_at)
    # In manual mode a recorded "promote" is final too: a person acts on it.
    manual = load_spec(store, model)[0].promotion.mode == "manual"
    for final in ("keep", "incomparable", *(["promote"] if manual else [])):
        if store.head(event_key(model, "promotion_decided", created, _dedupe(final))) is not None:
            note = f"v{challenger} was judged against v{champion} already: {final}"
            return PromotionOutcome(None, False, note)
    decision = evaluate(store, model, champion, challenger, now=now or datetime.now(UTC))
    # Keyed by the challenger's creation, not `now`: only a new outcome is a new record.
    # The trail is read in the order of writing.
    record_event_once(
        store,
        model,
        "promotion_decided",
        at=created,
        dedupe=_dedupe(decision.outcome),
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
