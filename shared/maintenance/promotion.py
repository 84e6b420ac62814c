"""The promotion rule: a pure function of both versions' answers on the same rows.

Both versions are scored on rows neither was fitted to (challenger.py finds them). The
challenger replaces production only when a paired comparison on those rows shows it better
by more than a margin at the spec's `confidence`: the one-sided lower bound of a paired
bootstrap of the metric's difference (the same resampled rows score both versions) must be
above the larger of `min_improvement` and `min_relative_improvement` times production's
figure. A difference the rows cannot tell from noise is kept, with its
figures; a worse challenger is never promoted. In `manual` mode the decision is recorded,
not acted on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import msgspec
import numpy as np

from shared.data.spec import LOWER_IS_BETTER, PromotionSettings
from shared.monitoring import statistics

# Fewer compared rows than this are too few to weigh two versions on, whatever the test
# says: the decision waits for labelled rows (the hourly check judges again).
MIN_COMPARED_ROWS = 100
# Resamples of the paired bootstrap: the lower bound's own sampling error at 1,000 is
# about a tenth of the interval's width at the 5% quantile.
RESAMPLES = 1000

MetricOn = Callable[[np.ndarray], float]  # a metric of one version on row positions


class RowSource(msgspec.Struct, frozen=True, kw_only=True):
    """One set of rows both versions were scored on, and where it came from."""

    source: str  # "labelled captured rows" or "held-out rows of vN"
    rows: int
    first: str | None = None  # captured rows: the earliest and latest capture times
    last: str | None = None
    keys: list[str] = msgspec.field(default_factory=list)  # the objects read (a few)


class PairedComparison(msgspec.Struct, frozen=True, kw_only=True):
    """Both versions' metric on the same rows, and the improvement's confidence bound."""

    metric: str
    rows: int
    champion: float | None
    challenger: float | None
    improvement: float | None  # challenger over champion, in the better direction
    lower_bound: float | None  # one-sided, at `confidence`
    confidence: float
    method: str


class PromotionDecision(msgspec.Struct, frozen=True, kw_only=True):
    """Whether `challenger` should replace `champion`, and why, with the figures."""

    champion: int
    challenger: int
    metric: str
    promote: bool  # the rule holds
    act: bool  # promote, and the mode is auto
    outcome: str  # "promote", "keep", "wait" or "incomparable"
    reason: str
    comparison: PairedComparison | None = None
    rows: list[RowSource] = msgspec.field(default_factory=list)
    # Rows left out because a version under comparison was fitted to them, by reason.
    excluded: dict[str, int] = msgspec.field(default_factory=dict)
    labelled_rows: int = 0  # of the compared rows, labelled captured ones
    notes: list[str] = msgspec.field(default_factory=list)  # how the rows were chosen


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def paired_comparison(
    metric: str,
    champion: MetricOn,
    challenger: MetricOn,
    rows: int,
    confidence: float,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """The challenger's improvement on `rows` rows and its one-sided lower bound.

    Each resample draws row positions once and scores both versions on them, so what the
    rows share (easy rows, hard rows) cancels out of the difference.
    """
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    everything = np.arange(rows)
    old, new = (champion(everything), challenger(everything)) if rows else (math.nan, math.nan)
    improvement = sign * (new - old)
    lower = math.nan
    if rows and not math.isnan(improvement):

        def difference(idx: np.ndarray) -> float:
            return sign * (challenger(idx) - champion(idx))

        # A two-sided interval at 2c - 1 has the one-sided bound at c as its lower end.
        lower, _ = statistics.bootstrap_interval(
            difference, rows, 2 * confidence - 1, resamples=resamples, seed=seed
        )
    return PairedComparison(
        metric=metric,
        rows=rows,
        champion=_finite(old),
        challenger=_finite(new),
        improvement=_finite(improvement),
        lower_bound=_finite(lower),
        confidence=confidence,
        method=f"paired bootstrap ({resamples} resamples, seed {seed}), one-sided",
    )


def _figures(c: PairedComparison, challenger: int, champion: int) -> str:
    sign = "+" if (c.improvement or 0.0) >= 0 else ""
    bound = "+" if (c.lower_bound or 0.0) >= 0 else ""
    return (
        f"{c.metric} on {c.rows} rows neither was fitted to: v{challenger} {c.challenger}, "
        f"v{champion} {c.champion} ({sign}{c.improvement}; {c.confidence:.0%} lower bound "
        f"{bound}{c.lower_bound})"
    )


def required_margin(comparison: PairedComparison, settings: PromotionSettings) -> float:
    """What the improvement's lower bound must be above: the larger of the two margins."""
    relative = settings.min_relative_improvement * abs(comparison.champion or 0.0)
    return max(settings.min_improvement, relative)


def decide(
    champion: int,
    challenger: int,
    comparison: PairedComparison,
    settings: PromotionSettings,
    *,
    labelled_rows: int = 0,
    rows: list[RowSource] | None = None,
    excluded: dict[str, int] | None = None,
    notes: list[str] | None = None,
) -> PromotionDecision:
    """Apply the spec's rule to the paired comparison."""

    def decision(outcome: str, reason: str, promote: bool = False) -> PromotionDecision:
        return PromotionDecision(
            champion=champion,
            challenger=challenger,
            metric=comparison.metric,
            promote=promote,
            act=promote and settings.mode == "auto",
            outcome=outcome,
            reason=reason,
            comparison=comparison,
            rows=rows or [],
            excluded=excluded or {},
            labelled_rows=labelled_rows,
            notes=notes or [],
        )

    if comparison.rows < MIN_COMPARED_ROWS:
        return decision(
            "wait",
            f"only {comparison.rows} rows neither version was fitted to; at least "
            f"{MIN_COMPARED_ROWS} are needed to compare v{challenger} with v{champion}",
        )
    if comparison.improvement is None or comparison.lower_bound is None:
        # E.g. ROC AUC on rows of one class: more rows can define it; judged again later.
        return decision(
            "wait",
            f"{comparison.metric} is undefined on the {comparison.rows} rows compared "
            "(one class only?); waiting for more labelled rows",
        )
    figures = _figures(comparison, challenger, champion)
    margin = required_margin(comparison, settings)
    if comparison.lower_bound <= margin:
        return decision(
            "keep", f"v{challenger} is not shown better by more than {margin:.4g}: {figures}"
        )
    if labelled_rows < settings.min_labelled_rows:
        return decision(
            "wait",
            f"v{challenger} is better ({figures}) but only {labelled_rows} labelled captured "
            f"rows of the {settings.min_labelled_rows} required were scored",
        )
    mode = "" if settings.mode == "auto" else " (manual mode: promote it by hand)"
    return decision("promote", f"v{challenger} beats v{champion}: {figures}{mode}", promote=True)
