"""Mergeable counts of captured rows, over the bins of each version's training baseline.

Every capture file is summarised on its own, then the summaries are added up: a window
can be split by file, hour or partition (or computed by an engine such as Athena, see
sql.py) and merged, and a check never keeps raw rows. Each row is counted against the
baseline of the version that answered it, so a window that spans a promotion compares
each version's traffic with its own training data.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import numpy as np

from shared.data.profile import (
    LEGACY_OTHER,
    PROBABILITY_EDGES,
    CategoricalProfile,
    NumericProfile,
)
from shared.errors import MlopsError
from shared.monitoring.decoding import DICT_ACCESS, FeatureAccess
from shared.registry.metadata import ModelMetadata

# Rows that are the model's traffic, whose inputs and outputs the check compares with the
# baseline: an online answer, or a sample of a batch job's rows. A shadow's rows repeat
# served inputs and are compared with them instead.
FEED_ROLES = frozenset({"served", "batch"})


class _Answered(Protocol):
    """A row (or a request's rows): who answered it, and in which role."""

    @property
    def version(self) -> int: ...
    @property
    def role(self) -> str: ...


# A hostile or high-cardinality feature must not grow a summary without bound: past this
# many distinct values, further new categories are counted together in `overflow`.
MAX_TRACKED_CATEGORIES = 1000
_LAZY_CAP = 4 * MAX_TRACKED_CATEGORIES
# The rules rows are counted by (bins closed on the right, NaN and JSON null missing, the
# category cap, the probability edges): a summary written by serving under other rules is
# not trusted by the check (file_summary.py). Bump when any of them changes.
COUNTING_RULES = 1


class NumericCounts(msgspec.Struct, kw_only=True, tag="numeric", tag_field="kind"):
    """A numeric feature's rows in the baseline's bins (side='right', as at training)."""

    counts: list[int]
    missing: int = 0
    below: int = 0  # under the training minimum
    above: int = 0  # over the training maximum
    low: float | None = None  # smallest value seen
    high: float | None = None


class CategoricalCounts(msgspec.Struct, kw_only=True, tag="categorical", tag_field="kind"):
    """A categorical feature's rows by category (those past the cap pooled in overflow)."""

    counts: dict[str, int] = msgspec.field(default_factory=dict)
    missing: int = 0
    overflow: int = 0


class PredictionCounts(msgspec.Struct, kw_only=True):
    """Predicted classes and class-probability histograms, or predicted values in bins."""

    class_counts: dict[str, int] = msgspec.field(default_factory=dict)
    probability_counts: dict[str, list[int]] = msgspec.field(default_factory=dict)
    value_counts: list[int] = msgspec.field(default_factory=list)
    low: float | None = None
    high: float | None = None


class VersionCounts(msgspec.Struct, kw_only=True):
    """What one version answered in a window."""

    version: int
    rows: int = 0
    features: dict[str, NumericCounts | CategoricalCounts] = msgspec.field(default_factory=dict)
    predictions: PredictionCounts = msgspec.field(default_factory=PredictionCounts)


class WindowCounts(msgspec.Struct, kw_only=True):
    """The counts of a window (or of one file of it), by version."""

    versions: dict[int, VersionCounts] = msgspec.field(default_factory=dict)
    rows: int = 0
    files: int = 0
    unknown_version_rows: int = 0  # rows of a version with no readable metadata


@dataclass(frozen=True)
class Baseline:
    """The bins one version's traffic is counted in, read from its metadata."""

    metadata: ModelMetadata

    @property
    def version(self) -> int:
        return self.metadata.version

    @property
    def fine(self) -> bool:
        """Percentile bins (metadata schema 2) rather than the deciles of older versions."""
        return self.metadata.schema_version >= 2

    def numeric(self, name: str) -> NumericProfile:
        profile = self.metadata.baseline.features[name]
        assert isinstance(profile, NumericProfile)
        return profile

    def categorical(self, name: str) -> CategoricalProfile:
        """The categorical profile, with schema-1's pooled '__other__' moved to `other`."""
        profile = self.metadata.baseline.features[name]
        assert isinstance(profile, CategoricalProfile)
        if not self.fine and LEGACY_OTHER in profile.counts:
            counts = dict(profile.counts)
            pooled = counts.pop(LEGACY_OTHER)
            return msgspec.structs.replace(profile, counts=counts, other=profile.other + pooled)
        return profile


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _add_lists(a: list[int], b: list[int]) -> list[int]:
    if not a:
        return list(b)
    if not b:
        return list(a)
    if len(a) != len(b):
        raise MlopsError("counts over different bins cannot be merged")
    return list(map(operator.add, a, b))  # twice as fast as a comprehension over zip


def _capped(counts: dict[str, int], overflow: int) -> CategoricalCounts:
    """Keep the MAX_TRACKED_CATEGORIES most frequent (ties by name), pool the rest."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(sorted(ranked[:MAX_TRACKED_CATEGORIES]))
    return CategoricalCounts(
        counts=kept, overflow=overflow + sum(n for _, n in ranked[MAX_TRACKED_CATEGORIES:])
    )


def _merge_categories(a: CategoricalCounts, b: CategoricalCounts) -> CategoricalCounts:
    # Pooled only once far past the cap: ranking every category at every merge would cost a
    # sort per object for a high-cardinality feature; `finished` caps the window's total.
    # Past the cap, which categories were pooled depends on how the window was split (the
    # totals do not); below it, any split and any order give the same counts.
    counts = Counter(a.counts)
    counts.update(b.counts)
    overflow = a.overflow + b.overflow
    if len(counts) > _LAZY_CAP:
        merged = _capped(dict(counts), overflow)
    else:
        merged = CategoricalCounts(counts=dict(counts), overflow=overflow)
    merged.missing = a.missing + b.missing
    return merged


def _merge_feature(
    a: NumericCounts | CategoricalCounts, b: NumericCounts | CategoricalCounts
) -> NumericCounts | CategoricalCounts:
    if isinstance(a, NumericCounts) and isinstance(b, NumericCounts):
        return NumericCounts(
            counts=_add_lists(a.counts, b.counts),
            missing=a.missing + b.missing,
            below=a.below + b.below,
            above=a.above + b.above,
            low=_min(a.low, b.low),
            high=_max(a.high, b.high),
        )
    if isinstance(a, CategoricalCounts) and isinstance(b, CategoricalCounts):
        return _merge_categories(a, b)
    raise MlopsError("a feature counted as numeric and as categorical cannot be merged")


def _merge_predictions(a: PredictionCounts, b: PredictionCounts) -> PredictionCounts:
    classes = Counter(a.class_counts)
    classes.update(b.class_counts)
    probabilities = dict(a.probability_counts)
    for label, counts in b.probability_counts.items():
        probabilities[label] = _add_lists(probabilities.get(label, []), counts)
    return PredictionCounts(
        class_counts=dict(sorted(classes.items())),
        probability_counts=dict(sorted(probabilities.items())),
        value_counts=_add_lists(a.value_counts, b.value_counts),
        low=_min(a.low, b.low),
        high=_max(a.high, b.high),
    )


def merge_versions(a: VersionCounts, b: VersionCounts) -> VersionCounts:
    """Two summaries of one version's rows, added."""
    features = dict(a.features)
    for name, counts in b.features.items():
        features[name] = _merge_feature(features[name], counts) if name in features else counts
    return VersionCounts(
        version=a.version,
        rows=a.rows + b.rows,
        features=features,
        predictions=_merge_predictions(a.predictions, b.predictions),
    )


def merge_windows(a: WindowCounts, b: WindowCounts) -> WindowCounts:
    """Two window summaries, added version by version."""
    versions = dict(a.versions)
    for version, counts in b.versions.items():
        versions[version] = (
            merge_versions(versions[version], counts) if version in versions else counts
        )
    return WindowCounts(
        versions=dict(sorted(versions.items())),
        rows=a.rows + b.rows,
        files=a.files + b.files,
        unknown_version_rows=a.unknown_version_rows + b.unknown_version_rows,
    )


def finished(window: WindowCounts) -> WindowCounts:
    """A merged window with each categorical feature capped and sorted by name, as one
    file's counts are: what the check assesses."""
    versions = {}
    for number, version in window.versions.items():
        features: dict[str, NumericCounts | CategoricalCounts] = {}
        for name, counts in version.features.items():
            if isinstance(counts, CategoricalCounts):
                capped = _capped(counts.counts, counts.overflow)
                capped.missing = counts.missing
                counts = capped
            features[name] = counts
        versions[number] = msgspec.structs.replace(version, features=features)
    return msgspec.structs.replace(window, versions=versions)


def count_numeric(values: np.ndarray, profile: NumericProfile) -> NumericCounts:
    """A column's counts in a numeric baseline's bins (NaN = missing)."""
    present = values[~np.isnan(values)]
    edges = np.asarray(profile.edges, dtype=np.float64)
    bins = np.searchsorted(edges, present, side="right")
    counts = np.bincount(bins, minlength=len(profile.edges) + 1)
    low = float(present.min()) if present.size else None
    high = float(present.max()) if present.size else None
    return NumericCounts(
        counts=[int(c) for c in counts],
        missing=int(values.size - present.size),
        below=int((present < profile.min).sum()) if profile.min is not None else 0,
        above=int((present > profile.max).sum()) if profile.max is not None else 0,
        low=low,
        high=high,
    )


def count_categorical(values: Iterable[object]) -> CategoricalCounts:
    """A column's counts by category (None = missing)."""
    counter = Counter(values)
    missing = counter.pop(None, 0)
    counted = _capped({str(c): n for c, n in counter.items()}, 0)
    counted.missing = missing
    return counted


def count_predictions(
    predictions: Sequence[object],
    probabilities: Mapping[str, np.ndarray],
    baseline: Baseline,
) -> PredictionCounts:
    """Predicted classes and probability histograms, or values in the baseline's bins.

    `probabilities` holds each class's column (by the class's text, NaN where a row has
    none); a class of the version without a column has no histogram.
    """
    meta = baseline.metadata
    if meta.task == "classification":
        classes = Counter(str(p) for p in predictions)
        histograms: dict[str, list[int]] = {}
        for label in [str(c) for c in meta.classes or []]:
            probs = probabilities.get(label)
            present = probs[~np.isnan(probs)] if probs is not None else probs
            if present is not None and present.size:
                bins = np.searchsorted(PROBABILITY_EDGES, present, side="right")
                histograms[label] = [
                    int(c) for c in np.bincount(bins, minlength=len(PROBABILITY_EDGES) + 1)
                ]
        return PredictionCounts(
            class_counts=dict(sorted(classes.items())), probability_counts=histograms
        )
    values = np.array(predictions, dtype=np.float64)
    present = values[~np.isnan(values)]
    edges = meta.baseline.predictions.edges
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="right")
    return PredictionCounts(
        value_counts=[int(c) for c in np.bincount(bins, minlength=len(edges) + 1)],
        low=float(present.min()) if present.size else None,
        high=float(present.max()) if present.size else None,
    )


def count_columns(
    baseline: Baseline,
    numeric: np.ndarray,
    numeric_names: Sequence[str],
    categorical: Callable[[str], Iterable[object]],
    predictions: Sequence[object],
    probabilities: Mapping[str, np.ndarray],
) -> VersionCounts:
    """The counts of rows that `baseline`'s version answered, given as columns.

    `numeric` is a float64 [rows, numeric_names] matrix (NaN = missing); `categorical`
    gives a categorical feature's values (None = missing). Capture files read back
    (count_rows) and serving's own arrays (file_summary.py) both come here, so a summary
    written at serving and one computed from the file are the same counts.
    """
    features: dict[str, NumericCounts | CategoricalCounts] = {}
    column = {name: j for j, name in enumerate(numeric_names)}
    for feature in baseline.metadata.features:
        if feature.kind == "numeric":
            values = numeric[:, column[feature.name]]
            features[feature.name] = count_numeric(values, baseline.numeric(feature.name))
        else:
            features[feature.name] = count_categorical(categorical(feature.name))
    return VersionCounts(
        version=baseline.version,
        rows=len(predictions),
        features=features,
        predictions=count_predictions(predictions, probabilities, baseline),
    )


def count_rows(
    rows: Sequence[Any], baseline: Baseline, access: FeatureAccess = DICT_ACCESS
) -> VersionCounts:
    """The counts of some decoded capture rows that `baseline`'s version answered."""
    numeric = [f.name for f in baseline.metadata.features if f.kind == "numeric"]
    probabilities: dict[str, np.ndarray] = {}
    if baseline.metadata.task == "classification":
        for label in [str(c) for c in baseline.metadata.classes or []]:
            probabilities[label] = np.array(
                [(row.probabilities or {}).get(label) for row in rows], dtype=np.float64
            )
    return count_columns(
        baseline,
        access.numeric(rows, numeric),  # one pass over the rows for every number
        numeric,
        lambda name: access.column(rows, name),
        [row.prediction for row in rows],
        probabilities,
    )


def feed_by_version[R: _Answered](rows: Iterable[R]) -> list[tuple[int, list[R]]]:
    """The traffic among `rows` (FEED_ROLES: not a shadow's), grouped by the version that
    answered it, in version order: what is counted against each version's baseline."""
    by_version: dict[int, list[R]] = {}
    for row in rows:
        if row.role in FEED_ROLES:
            by_version.setdefault(row.version, []).append(row)
    return sorted(by_version.items())


def summarise(
    rows: Sequence[Any],
    baselines: dict[int, Baseline | None],
    access: FeatureAccess = DICT_ACCESS,
) -> WindowCounts:
    """The counts of one file's served rows, each against its own version's baseline.

    `baselines` maps every version in `rows` to its baseline (None: its metadata cannot
    be read, and its rows are only counted as such). Shadow rows are left out: they
    repeat served inputs.
    """
    window = WindowCounts(files=1)
    for version, version_rows in feed_by_version(rows):
        baseline = baselines.get(version)
        window.rows += len(version_rows)
        if baseline is None:
            window.unknown_version_rows += len(version_rows)
            continue
        window.versions[version] = count_rows(version_rows, baseline, access)
    return window
