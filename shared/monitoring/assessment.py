"""The verdict on a window: pure functions of a baseline, a window's counts and settings.

Per feature, a two-sample test AND a distance must both say so before a feature counts
as drifted: the test (Kolmogorov-Smirnov for numbers, a chi-square test of homogeneity
for categories) keeps small samples from raising alarms on noise, and the distance
(Wasserstein normalised by the training standard deviation, Jensen-Shannon) keeps large
samples from raising alarms on differences too small to matter. A significant change of
the missing share counts too, which tests on the present values alone never see. The
window drifts when at least `drift_share` of its columns (features and the prediction)
do. PSI is reported beside them, on deciles of the training data, in the usual bands.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from shared.data.profile import PROBABILITY_EDGES, CategoricalProfile, NumericProfile
from shared.data.spec import MonitoringSettings
from shared.monitoring import statistics
from shared.monitoring.report import (
    VERDICT_ORDER,
    FeatureDrift,
    Finding,
    Histogram,
    OutputDrift,
    Performance,
    Verdict,
    VersionSection,
)
from shared.monitoring.summary import (
    Baseline,
    CategoricalCounts,
    NumericCounts,
    PredictionCounts,
    VersionCounts,
)

DECILES = 10
# Categories drawn in a plot; the rest are summed into one bar.
PLOTTED_CATEGORIES = 20


def psi_band(value: float, bands: Sequence[float]) -> str:
    """'stable', 'moderate' or 'major', by the industry's PSI bands (0.1 and 0.25)."""
    return "stable" if value < bands[0] else "moderate" if value < bands[1] else "major"


def regroup(
    reference: Sequence[int], current: Sequence[int], groups: int = DECILES
) -> tuple[list[int], list[int], list[int]]:
    """Fine bins merged into about `groups` bins of equal reference mass.

    Returns both sides' counts and, for each group, the index of its first fine bin. PSI's
    bands assume about ten bins: on a hundred, sampling noise alone inflates it.
    """
    total = sum(reference)
    starts = [0]
    if total:
        cumulative = 0
        boundary = 1
        for i, n in enumerate(reference[:-1]):
            cumulative += n
            if cumulative >= boundary * total / groups:
                starts.append(i + 1)
                while boundary * total / groups <= cumulative:
                    boundary += 1
    bounds = [*starts, len(reference)]
    ref = [sum(reference[a:b]) for a, b in itertools.pairwise(bounds)]
    cur = [sum(current[a:b]) for a, b in itertools.pairwise(bounds)]
    return ref, cur, starts


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [round(c / total, 6) if total else 0.0 for c in counts]


def _range_labels(edges: Sequence[float], starts: Sequence[int]) -> list[str]:
    labels = []
    for i, start in enumerate(starts):
        low = "-inf" if start == 0 else f"{edges[start - 1]:.4g}"
        end = starts[i + 1] if i + 1 < len(starts) else None
        high = "inf" if end is None else f"{edges[end - 1]:.4g}"
        labels.append(f"[{low}, {high})")
    return labels


def _missing(
    rows: int, missing: int, baseline_count: int, baseline_missing: int, s: MonitoringSettings
) -> tuple[float, float, float, bool]:
    rate = missing / rows if rows else 0.0
    base = baseline_missing / baseline_count if baseline_count else 0.0
    test = statistics.two_proportions(missing, rows, baseline_missing, baseline_count)
    changed = test.p_value < s.p_value and abs(rate - base) >= s.missing_rate_change
    return rate, base, test.p_value, changed


def _beyond_training_p(outside: int, present: int, training_rows: int) -> float:
    """One-sided p of seeing `outside` of `present` values beyond the training range by
    chance: a new draw from the training distribution falls outside the min and max of
    n training rows with probability 2 / (n + 1)."""
    if not present or training_rows <= 0:
        return 1.0
    expected = 2 / (training_rows + 1)
    sd = math.sqrt(present * expected * (1 - expected))
    if sd == 0:
        return 1.0 if outside <= present * expected else 0.0
    z = (outside - present * expected) / sd
    return 0.5 * math.erfc(z / math.sqrt(2))


def _scale(profile: NumericProfile) -> float:
    # A constant training column has std 0: fall back to its range, then to 1.
    if profile.std:
        return profile.std
    if profile.min is not None and profile.max is not None and profile.max > profile.min:
        return profile.max - profile.min
    return 1.0


def assess_numeric(
    name: str, profile: NumericProfile, counts: NumericCounts, s: MonitoringSettings
) -> FeatureDrift:
    """A numeric feature's drift: KS test, normalised Wasserstein, PSI, missing share."""
    present = sum(counts.counts)
    rows = present + counts.missing
    ks = statistics.ks_binned(profile.counts, counts.counts)
    distance = 0.0
    if profile.min is not None and profile.max is not None and present:
        # The outer bins end at the training minimum and maximum, not at the window's: one
        # wild value would otherwise stretch a bin across the whole axis and turn a shift
        # too small to matter into a large distance. Values outside the training range
        # are judged on their own, below.
        distance = statistics.wasserstein_binned(
            profile.edges, profile.counts, counts.counts, profile.min, profile.max
        ) / _scale(profile)
    outside = counts.below + counts.above
    outside_share = outside / present if present else 0.0
    outside_p = _beyond_training_p(outside, present, profile.count - profile.missing)
    ref10, cur10, starts = regroup(profile.counts, counts.counts)
    psi = statistics.psi(ref10, cur10) if present else 0.0
    rate, base, missing_p, missing_changed = _missing(
        rows, counts.missing, profile.count, profile.missing, s
    )
    reasons = []
    if ks.p_value < s.p_value and distance >= s.numeric_distance:
        reasons.append(
            f"distribution moved: KS p={ks.p_value:.2g}, normalised Wasserstein {distance:.3f}"
        )
    if missing_changed:
        reasons.append(f"missing share {base:.1%} -> {rate:.1%} (p={missing_p:.2g})")
    expected_outside = 2 / (profile.count - profile.missing + 1)
    if outside_p < s.p_value and outside_share - expected_outside >= s.out_of_range_change:
        # A constant or few-valued training column cannot show a shift above its maximum
        # in its bins (every such value lands in the top bin): this reason can.
        reasons.append(
            f"{outside_share:.1%} of values outside the training range "
            f"[{profile.min:.4g}, {profile.max:.4g}] (p={outside_p:.2g})"
        )
    return FeatureDrift(
        name=name,
        kind="numeric",
        rows=rows,
        test="ks",
        statistic=round(ks.statistic, 6),
        p_value=ks.p_value,
        distance_name="wasserstein_normed",
        distance=round(distance, 6),
        psi=round(psi, 6),
        psi_band=psi_band(psi, s.psi_bands),  # type: ignore[arg-type]
        missing_rate=round(rate, 6),
        baseline_missing_rate=round(base, 6),
        missing_p_value=missing_p,
        out_of_range=round(outside_share, 6),
        ks_error_bound=round(ks.error_bound, 6),
        training_range=(
            [profile.min, profile.max]
            if profile.min is not None and profile.max is not None
            else None
        ),
        out_of_range_p_value=outside_p,
        drifted=bool(reasons),
        reasons=reasons,
        histogram=Histogram(
            bins=_range_labels(profile.edges, starts),
            baseline=_shares(ref10),
            current=_shares(cur10),
        ),
    )


def _category_bins(
    profile: CategoricalProfile, counts: CategoricalCounts
) -> tuple[list[str], list[int], list[int]]:
    """Both sides over the baseline's kept categories plus one bin for all others."""
    names = sorted(profile.counts)
    reference = [profile.counts[c] for c in names] + [profile.other]
    kept = set(names)
    current = [counts.counts.get(c, 0) for c in names]
    current.append(sum(n for c, n in counts.counts.items() if c not in kept) + counts.overflow)
    return [*names, "(other)"], reference, current


def _plotted(names: list[str], reference: list[int], current: list[int]) -> Histogram:
    # The categories that weigh most on either side, the rest summed in one bar.
    order = sorted(range(len(names) - 1), key=lambda i: -(reference[i] + current[i]))[
        :PLOTTED_CATEGORIES
    ]
    shown = sorted(order)
    rest_ref = sum(reference) - sum(reference[i] for i in shown)
    rest_cur = sum(current) - sum(current[i] for i in shown)
    ref = [reference[i] for i in shown] + [rest_ref]
    cur = [current[i] for i in shown] + [rest_cur]
    return Histogram(
        bins=[names[i] for i in shown] + ["(other)"], baseline=_shares(ref), current=_shares(cur)
    )


def assess_categorical(
    name: str,
    profile: CategoricalProfile,
    counts: CategoricalCounts,
    known: Sequence[str],
    s: MonitoringSettings,
) -> FeatureDrift:
    """A categorical feature's drift: chi-square test, Jensen-Shannon, PSI, unseen share."""
    names, reference, current = _category_bins(profile, counts)
    present = sum(current)
    rows = present + counts.missing
    test = statistics.chi2_contingency(reference, current)
    distance = statistics.jensen_shannon(reference, current)
    psi = statistics.psi(reference, current) if present else 0.0
    known_set = set(known)
    unseen = sum(n for c, n in counts.counts.items() if c not in known_set) + counts.overflow
    # Against training's own unseen share, which is 0 of its present rows by definition.
    unseen_test = statistics.two_proportions(
        unseen, present, 0, max(profile.count - profile.missing, 0)
    )
    rate, base, missing_p, missing_changed = _missing(
        rows, counts.missing, profile.count, profile.missing, s
    )
    reasons = []
    if test.p_value < s.p_value and distance >= s.categorical_distance:
        reasons.append(
            f"categories moved: chi-square p={test.p_value:.2g}, Jensen-Shannon {distance:.3f}"
        )
    if missing_changed:
        reasons.append(f"missing share {base:.1%} -> {rate:.1%} (p={missing_p:.2g})")
    return FeatureDrift(
        name=name,
        kind="categorical",
        rows=rows,
        test="chi2",
        statistic=round(test.statistic, 6),
        p_value=test.p_value,
        distance_name="jensen_shannon",
        distance=round(distance, 6),
        psi=round(psi, 6),
        psi_band=psi_band(psi, s.psi_bands),  # type: ignore[arg-type]
        missing_rate=round(rate, 6),
        baseline_missing_rate=round(base, 6),
        missing_p_value=missing_p,
        unseen=round(unseen / present, 6) if present else 0.0,
        unseen_p_value=unseen_test.p_value,
        drifted=bool(reasons),
        reasons=reasons,
        histogram=_plotted(names, reference, current),
    )


def _binned_std(edges: Sequence[float], counts: Sequence[int]) -> float:
    """A standard deviation from a histogram (bin midpoints; outer bins one width out)."""
    if len(edges) < 2 or not sum(counts):
        return 1.0
    width = (edges[-1] - edges[0]) / (len(edges) - 1)
    points = [edges[0] - width / 2]
    points += [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    points.append(edges[-1] + width / 2)
    total = sum(counts)
    mean = sum(p * n for p, n in zip(points, counts, strict=True)) / total
    var = sum(n * (p - mean) ** 2 for p, n in zip(points, counts, strict=True)) / total
    return math.sqrt(var) or 1.0


def assess_output(
    baseline: Baseline, counts: PredictionCounts, s: MonitoringSettings
) -> OutputDrift:
    """The predictions' drift against the served model's outputs on its held-out rows."""
    reference = baseline.metadata.baseline.predictions
    if baseline.metadata.task == "classification":
        labels = sorted(set(reference.class_counts) | set(counts.class_counts))
        ref = [reference.class_counts.get(c, 0) for c in labels]
        cur = [counts.class_counts.get(c, 0) for c in labels]
        test = statistics.chi2_contingency(ref, cur)
        distance = statistics.jensen_shannon(ref, cur)
        classes = [str(c) for c in baseline.metadata.classes or []]
        # Binary: the positive class's probability; otherwise the first class's.
        shown = classes[1] if len(classes) == 2 else (classes[0] if classes else None)
        probability = None
        if shown is not None and shown in reference.probability_counts:
            ref_p = reference.probability_counts[shown]
            cur_p = counts.probability_counts.get(shown, [0] * len(ref_p))
            edges = [0.0, *PROBABILITY_EDGES, 1.0]
            probability = Histogram(
                bins=[f"{a:.2f}-{b:.2f}" for a, b in itertools.pairwise(edges)],
                baseline=_shares(ref_p),
                current=_shares(cur_p),
            )
        drifted = test.p_value < s.p_value and distance >= s.categorical_distance
        return OutputDrift(
            what="predicted class",
            test="chi2",
            statistic=round(test.statistic, 6),
            p_value=test.p_value,
            distance_name="jensen_shannon",
            distance=round(distance, 6),
            psi=round(statistics.psi(ref, cur), 6),
            drifted=drifted,
            histogram=Histogram(bins=labels, baseline=_shares(ref), current=_shares(cur)),
            probability=probability,
            probability_class=shown if probability is not None else None,
        )
    edges = reference.edges
    cur_counts = counts.value_counts or [0] * (len(edges) + 1)
    ks = statistics.ks_binned(reference.counts, cur_counts)
    low = min(v for v in (edges[0] if edges else 0.0, counts.low) if v is not None)
    high = max(v for v in (edges[-1] if edges else 0.0, counts.high) if v is not None)
    distance = 0.0
    if sum(cur_counts) and edges:
        distance = statistics.wasserstein_binned(
            edges, reference.counts, cur_counts, low, high
        ) / _binned_std(edges, reference.counts)
    ref10, cur10, starts = regroup(reference.counts, cur_counts)
    return OutputDrift(
        what="predicted value",
        test="ks",
        statistic=round(ks.statistic, 6),
        p_value=ks.p_value,
        distance_name="wasserstein_normed",
        distance=round(distance, 6),
        psi=round(statistics.psi(ref10, cur10), 6),
        drifted=ks.p_value < s.p_value and distance >= s.numeric_distance,
        histogram=Histogram(
            bins=_range_labels(edges, starts), baseline=_shares(ref10), current=_shares(cur10)
        ),
    )


def assess_version(
    baseline: Baseline,
    counts: VersionCounts,
    performance: Performance | None,
    s: MonitoringSettings,
) -> VersionSection:
    """One version's section of the report, and its verdict."""
    features: list[FeatureDrift] = []
    for feature in baseline.metadata.features:
        observed = counts.features.get(feature.name)
        if feature.kind == "numeric":
            numeric = observed if isinstance(observed, NumericCounts) else None
            profile = baseline.numeric(feature.name)
            features.append(
                assess_numeric(
                    feature.name,
                    profile,
                    numeric or NumericCounts(counts=[0] * len(profile.counts)),
                    s,
                )
            )
        else:
            categorical = observed if isinstance(observed, CategoricalCounts) else None
            features.append(
                assess_categorical(
                    feature.name,
                    baseline.categorical(feature.name),
                    categorical or CategoricalCounts(),
                    feature.categories,
                    s,
                )
            )
    output = assess_output(baseline, counts.predictions, s)
    drifted = [f.name for f in features if f.drifted]
    columns = len(features) + 1
    share = (len(drifted) + output.drifted) / columns
    found = findings(features, output, performance, s)
    problems = [f for f in found if f.kind == "data_problem"]
    decays = [f for f in found if f.kind == "decay"]
    moved = [f for f in found if f.kind == "drift"]
    reasons: list[str] = []
    verdict: Verdict
    if problems and counts.rows >= s.min_rows:
        verdict = "data_problem"
        reasons.append(
            f"data problem in {len({f.column for f in problems})} column(s): fix the feed; "
            "retraining on these rows would learn the problem"
        )
    elif decays:
        verdict = "decay"
    elif counts.rows < s.min_rows:
        verdict = "insufficient_data"
        reasons.append(f"{counts.rows} rows; at least {s.min_rows} are needed to judge drift")
    elif share >= s.drift_share or moved:
        verdict = "drift"
    else:
        verdict = "ok"
    if share >= s.drift_share:
        names = drifted + (["prediction"] if output.drifted else [])
        reasons.append(
            f"{len(names)} of {columns} columns drifted ({share:.0%} >= {s.drift_share:.0%}): "
            + ", ".join(names[:10])
        )
    reasons.extend(f.message for f in found)
    flagged = [f.name for f in features if f.drifted and f.name not in {g.column for g in found}]
    if flagged and share < s.drift_share:
        # Flagged at the per-feature level only: about p_value of the columns are, by chance.
        reasons.append(
            f"{len(flagged)} of {columns} columns differ at p < {s.p_value:g} alone, within "
            "chance across that many columns: " + ", ".join(flagged[:10])
        )
    if not decays and performance is not None and performance.value is not None:
        state = (
            "enough labelled rows to judge"
            if performance.decided
            else "too few labelled rows to judge"
        )
        reasons.append(
            f"{performance.metric} {performance.value:.3f} on {performance.labelled_rows} "
            f"labelled rows ({state})"
        )
    ordered = sorted(features, key=lambda f: (not f.drifted, -f.distance, f.name))
    return VersionSection(
        version=baseline.version,
        rows=counts.rows,
        resolution="percentiles" if baseline.fine else "deciles",
        features=ordered,
        drifted_features=drifted,
        drift_share=round(share, 6),
        output=output,
        performance=performance,
        verdict=verdict,
        reasons=reasons,
        findings=found,
    )


def _largest_change(histogram: Histogram) -> str:
    """The bin that says most, e.g. "; 'north' 50% -> 0%" (names cut short).

    A category or class that vanished, or appeared, in bulk comes first: it is what a
    reader must hear, even when another bin's share moved by as much to make up for it.
    """
    bins = list(zip(histogram.bins, histogram.baseline, histogram.current, strict=False))
    gone = [b for b in bins if (b[1] == 0) != (b[2] == 0) and max(b[1], b[2]) >= 0.05]
    best = max(gone or bins, key=lambda b: abs(b[2] - b[1]), default=None)
    if best is None:
        return ""
    return f"; {best[0][:24]!r} {best[1]:.0%} -> {best[2]:.0%}"


def _data_problems(feature: FeatureDrift, level: float, s: MonitoringSettings) -> list[Finding]:
    found = []
    outside = feature.out_of_range or 0.0
    outside_p = feature.out_of_range_p_value
    if outside >= s.data_problem_share and outside_p is not None and outside_p < level:
        low, high = feature.training_range or [math.nan, math.nan]
        found.append(
            Finding(
                kind="data_problem",
                column=feature.name,
                what="out_of_range",
                message=f"{feature.name[:40]}: {outside:.0%} of values outside the training "
                f"range [{low:.4g}, {high:.4g}] (p={outside_p:.2g}); a unit or scale bug?",
                figures={"share": outside, "low": low, "high": high, "p_value": outside_p},
            )
        )
    unseen = feature.unseen or 0.0
    unseen_p = feature.unseen_p_value
    if unseen >= s.data_problem_share and unseen_p is not None and unseen_p < level:
        found.append(
            Finding(
                kind="data_problem",
                column=feature.name,
                what="unseen_categories",
                message=f"{feature.name[:40]}: {unseen:.0%} of values are categories the model "
                f"never saw (p={unseen_p:.2g})",
                figures={"share": unseen, "p_value": unseen_p},
            )
        )
    jump = abs(feature.missing_rate - feature.baseline_missing_rate)
    if jump >= s.missing_rate_change and feature.missing_p_value < level:
        found.append(
            Finding(
                kind="data_problem",
                column=feature.name,
                what="missing_share",
                message=f"{feature.name[:40]}: missing share {feature.baseline_missing_rate:.1%}"
                f" at training, {feature.missing_rate:.1%} now (p={feature.missing_p_value:.2g})",
                figures={
                    "share": feature.missing_rate,
                    "baseline": feature.baseline_missing_rate,
                    "p_value": feature.missing_p_value,
                },
            )
        )
    return found


def findings(
    features: Sequence[FeatureDrift],
    output: OutputDrift | None,
    performance: Performance | None,
    s: MonitoringSettings,
) -> list[Finding]:
    """What keeps a version's window from `ok`, each at a family-wise level.

    Per-feature flags run at `p_value` each, so with 30 columns one or two are flagged in
    most windows by chance: they decide a window only together (`drift_share`). One column
    decides alone when it is off at `window_p_value` after a Bonferroni correction over
    the columns (and its distance is large enough to matter), so a single broken column
    is seen without raising the false alarms of 30 separate tests.
    """
    found: list[Finding] = []
    # Two data-problem tests per feature (range or unseen, and missing share).
    problem_level = s.window_p_value / max(2 * len(features), 1)
    drift_level = s.window_p_value / max(len(features) + (output is not None), 1)
    for feature in features:
        problems = _data_problems(feature, problem_level, s)
        found.extend(problems)
        threshold = s.numeric_distance if feature.kind == "numeric" else s.categorical_distance
        # A column with a data problem has moved because of it: not drift on top.
        if not problems and feature.p_value < drift_level and feature.distance >= threshold:
            change = "" if feature.kind == "numeric" else _largest_change(feature.histogram)
            found.append(
                Finding(
                    kind="drift",
                    column=feature.name,
                    what="distribution",
                    message=f"{feature.name[:40]}: distribution moved ({feature.test} "
                    f"p={feature.p_value:.2g}, {_DISTANCES[feature.distance_name]} "
                    f"{feature.distance:.3f}{change})",
                    figures={"p_value": feature.p_value, "distance": feature.distance},
                )
            )
    if output is not None:
        numeric = output.distance_name == "wasserstein_normed"
        threshold = s.numeric_distance if numeric else s.categorical_distance
        if output.p_value < drift_level and output.distance >= threshold:
            change = "" if numeric else _largest_change(output.histogram)
            found.append(
                Finding(
                    kind="drift",
                    column="prediction",
                    what="distribution",
                    message=f"prediction: {output.what} distribution moved ({output.test} "
                    f"p={output.p_value:.2g}, {_DISTANCES[output.distance_name]} "
                    f"{output.distance:.3f}{change})",
                    figures={"p_value": output.p_value, "distance": output.distance},
                )
            )
    if performance is not None and performance.decided:
        for check in performance.checks:
            if not check.decayed:
                continue
            low, high = check.interval or [math.nan, math.nan]
            found.append(
                Finding(
                    kind="decay",
                    column=check.metric,
                    what="metric",
                    message=f"{check.metric} {check.value:.3f} ({low:.3f}-{high:.3f}) on "
                    f"{performance.labelled_rows} labelled rows, worse than training "
                    f"{check.training_value:.3f} beyond the threshold {check.threshold:.3f}",
                    figures={
                        "value": check.value,
                        "low": low,
                        "high": high,
                        "training": check.training_value,
                        "threshold": check.threshold,
                    },
                )
            )
    return found


_DISTANCES = {"wasserstein_normed": "normalised Wasserstein", "jensen_shannon": "Jensen-Shannon"}


def window_verdict(sections: Sequence[VersionSection]) -> Verdict:
    """The worst verdict of the versions that could be judged (insufficient_data if none)."""
    if not sections:
        return "insufficient_data"
    return min((s.verdict for s in sections), key=VERDICT_ORDER.index)
