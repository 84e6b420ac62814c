"""Baseline profiles: compact, mergeable summaries of features and predictions.

A profile is a set of counts over fixed bins (numeric quantile edges learnt from
the training data, categories seen in it), so profiles of traffic batches computed
against the same bins add up bin by bin: drift checks run in bounded memory.
Only numpy here: the monitoring path must not need scikit-learn.

Resolution: 100 quantile bins per numeric feature (percentiles). A statistic computed
on bins cannot see a change inside a bin; with percentiles the binned Kolmogorov-Smirnov
statistic is within one bin's share (about 0.01) of the exact one, and monitoring reports
that bound. Versions trained before kept deciles (metadata schema_version 1); monitoring
still checks them, more coarsely, and says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec
import numpy as np

NUMERIC_BINS = 100
# Enough categories for real vocabularies, few enough to keep metadata small.
MAX_CATEGORIES = 50
# Where schema_version 1 metadata pooled the categories beyond MAX_CATEGORIES; a real
# category may have this name, so pooled rows now have a field of their own (`other`).
LEGACY_OTHER = "__other__"
# Class probabilities are histogrammed over fixed twentieths: the same for every version.
PROBABILITY_EDGES = [i / 20 for i in range(1, 20)]


class NumericProfile(msgspec.Struct, frozen=True, kw_only=True, tag="numeric", tag_field="kind"):
    """Counts of a numeric feature over quantile edges, plus its moments."""

    count: int
    missing: int
    edges: list[float]  # interior bin edges; counts has len(edges) + 1 bins
    counts: list[int]
    min: float | None
    max: float | None
    mean: float | None
    std: float | None

    @property
    def missing_rate(self) -> float:
        """Share of rows where the value was missing."""
        return self.missing / self.count if self.count else 0.0


class CategoricalProfile(
    msgspec.Struct, frozen=True, kw_only=True, tag="categorical", tag_field="kind"
):
    """Counts per category (the most frequent ones), the rest pooled in `other`."""

    count: int
    missing: int
    counts: dict[str, int]
    other: int = 0  # rows of categories beyond the kept ones

    @property
    def missing_rate(self) -> float:
        """Share of rows where the value was missing."""
        return self.missing / self.count if self.count else 0.0


FeatureProfile = NumericProfile | CategoricalProfile


class PredictionProfile(msgspec.Struct, frozen=True, kw_only=True):
    """What the model predicted on held-out rows: class counts and a histogram of each
    class's probability over PROBABILITY_EDGES, or a value histogram (regression)."""

    task: Literal["classification", "regression"]
    count: int
    class_counts: dict[str, int] = msgspec.field(default_factory=dict)
    edges: list[float] = msgspec.field(default_factory=list)
    counts: list[int] = msgspec.field(default_factory=list)
    # Empty in versions trained before (metadata schema_version 1).
    probability_counts: dict[str, list[int]] = msgspec.field(default_factory=dict)


class BaselineProfile(msgspec.Struct, frozen=True, kw_only=True):
    """The training-time picture that later traffic is compared with."""

    rows: int
    features: dict[str, FeatureProfile]
    predictions: PredictionProfile


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def quantile_edges(values: np.ndarray, bins: int = NUMERIC_BINS) -> list[float]:
    """Interior edges splitting `values` into about `bins` equally filled bins."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    # Repeated quantiles (a feature with few distinct values) collapse into one edge.
    return [float(q) for q in np.unique(qs)]


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> list[int]:
    """Counts of the non-missing `values` in the bins that `edges` delimit."""
    finite = values[~np.isnan(values)]
    # side="right": a value equal to an edge falls in the bin above it, as in np.digitize.
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="right")
    return [int(c) for c in np.bincount(idx, minlength=len(edges) + 1)]


def profile_numeric(values: np.ndarray, edges: Sequence[float] | None = None) -> NumericProfile:
    """Profile a float column (NaN = missing), over `edges` or over its own quantiles."""
    values = np.asarray(values, dtype=np.float64)
    missing = int(np.isnan(values).sum())
    # Sorted once (a copy: the caller's array is left alone), the values give the quantiles,
    # the extremes and the bin counts (as the positions of the edges among them) at a third
    # less than binning each value.
    present = np.sort(values[~np.isnan(values)])
    chosen = list(edges) if edges is not None else quantile_edges(present)
    lo: float | None
    hi: float | None
    mean: float | None
    std: float | None
    if present.size:
        lo, hi = float(present[0]), float(present[-1])
        mean, std = _finite_or_none(present.mean()), _finite_or_none(present.std())
    else:
        lo = hi = mean = std = None
    # Bin k holds the values with k edges at or below them (a value equal to an edge falls
    # in the bin above it, as bin_counts says): its end is where values reach edge k.
    ends = np.searchsorted(present, np.asarray(chosen, dtype=np.float64), side="left")
    bounds = np.concatenate([[0], ends, [present.size]])
    return NumericProfile(
        count=int(values.size),
        missing=missing,
        edges=chosen,
        counts=[int(c) for c in np.diff(bounds)],
        min=lo,
        max=hi,
        mean=mean,
        std=std,
    )


def profile_categorical(
    values: np.ndarray, *, missing_marker: str = "", known: Sequence[str] | None = None
) -> CategoricalProfile:
    """Profile a string column; categories beyond the kept ones are pooled in `other`.

    `known` fixes the kept categories (those of a baseline), so that traffic profiles
    line up with it; without it the MAX_CATEGORIES most frequent ones are kept.
    """
    return profile_category_counts(
        Counter(str(v) for v in values), missing_marker=missing_marker, known=known
    )


def profile_category_counts(
    counts: Mapping[str, int], *, missing_marker: str = "", known: Sequence[str] | None = None
) -> CategoricalProfile:
    """profile_categorical of a column given as its rows per value (zero counts allowed)."""
    counter = Counter({value: n for value, n in counts.items() if n})
    total = counter.total()
    missing = counter.pop(missing_marker, 0)
    keep = set(known) if known is not None else {c for c, _ in counter.most_common(MAX_CATEGORIES)}
    kept: dict[str, int] = {}
    other = 0
    for category, n in sorted(counter.items()):
        if category in keep:
            kept[category] = n
        else:
            other += n
    return CategoricalProfile(count=total, missing=missing, counts=kept, other=other)


def profile_predictions(
    task: Literal["classification", "regression"],
    predictions: np.ndarray,
    probabilities: np.ndarray | None = None,
    classes: Sequence[str | int] | None = None,
) -> PredictionProfile:
    """Class counts and per-class probability histograms (classification), or a quantile
    histogram of the predicted values (regression)."""
    if task == "classification":
        counter = Counter(str(p) for p in predictions.ravel())
        histograms: dict[str, list[int]] = {}
        if probabilities is not None and classes is not None:
            for j, label in enumerate(classes):
                histograms[str(label)] = bin_counts(
                    probabilities[:, j].astype(np.float64), PROBABILITY_EDGES
                )
        return PredictionProfile(
            task=task,
            count=int(predictions.size),
            class_counts=dict(counter),
            probability_counts=histograms,
        )
    numeric = profile_numeric(predictions.ravel().astype(np.float64))
    return PredictionProfile(
        task=task, count=int(predictions.size), edges=numeric.edges, counts=numeric.counts
    )


def merge_numeric(a: NumericProfile, b: NumericProfile) -> NumericProfile:
    """Add two profiles taken over the same edges (e.g. two traffic batches)."""
    if a.edges != b.edges:
        raise ValueError("numeric profiles over different edges cannot be merged")
    count = a.count + b.count
    present_a, present_b = a.count - a.missing, b.count - b.missing
    present = present_a + present_b
    mins = [m for m in (a.min, b.min) if m is not None]
    maxs = [m for m in (a.max, b.max) if m is not None]
    mean = std = None
    if present:
        # Pooled mean and variance from each side's moments (parallel-variance formula).
        ma, mb = a.mean or 0.0, b.mean or 0.0
        va, vb = (a.std or 0.0) ** 2, (b.std or 0.0) ** 2
        mean = (ma * present_a + mb * present_b) / present
        var = (present_a * (va + (ma - mean) ** 2) + present_b * (vb + (mb - mean) ** 2)) / present
        std = float(np.sqrt(var))
    return NumericProfile(
        count=count,
        missing=a.missing + b.missing,
        edges=a.edges,
        counts=[x + y for x, y in zip(a.counts, b.counts, strict=True)],
        min=min(mins) if mins else None,
        max=max(maxs) if maxs else None,
        mean=mean,
        std=std,
    )


def merge_categorical(a: CategoricalProfile, b: CategoricalProfile) -> CategoricalProfile:
    """Add two categorical profiles bin by bin."""
    counts = Counter(a.counts)
    counts.update(b.counts)
    return CategoricalProfile(
        count=a.count + b.count,
        missing=a.missing + b.missing,
        counts=dict(sorted(counts.items())),
        other=a.other + b.other,
    )
