"""The promotion rule: a pure function of both versions' figures on the same rows.

A challenger replaces production only when it is at least `min_improvement` better on
every set of rows compared (its own held-out rows, and the labelled captured rows once
there are enough) and strictly better on one: a worse challenger is never promoted, and
an equal one changes nothing. In `manual` mode the decision is recorded, not acted on.
"""

from __future__ import annotations

import math

import msgspec

from shared.data.spec import LOWER_IS_BETTER, PromotionSettings

# Fewer labelled captured rows than this are too noisy to weigh two versions on: a handful
# of rows must not veto (or carry) a challenger that its held-out rows judged.
MIN_COMPARED_ROWS = 100


class RowSetComparison(msgspec.Struct, frozen=True, kw_only=True):
    """Both versions' metric on one set of rows."""

    rows_from: str  # "held-out rows of vN" or "labelled captured rows"
    rows: int
    champion: float | None
    challenger: float | None
    improvement: float | None  # challenger over champion, in the better direction


class PromotionDecision(msgspec.Struct, frozen=True, kw_only=True):
    """Whether `challenger` should replace `champion`, and why, with the figures."""

    champion: int
    challenger: int
    metric: str
    promote: bool  # the rule holds
    act: bool  # promote, and the mode is auto
    outcome: str  # "promote", "keep", "wait" or "incomparable"
    reason: str
    comparisons: list[RowSetComparison]


def compare(
    rows_from: str, rows: int, champion: float | None, challenger: float | None, metric: str
) -> RowSetComparison:
    """One row set's figures, with the improvement in the metric's better direction."""
    improvement = None
    if (
        champion is not None
        and challenger is not None
        and not (math.isnan(champion) or math.isnan(challenger))
    ):
        delta = challenger - champion
        improvement = round(-delta if metric in LOWER_IS_BETTER else delta, 6)
    return RowSetComparison(
        rows_from=rows_from,
        rows=rows,
        champion=None if champion is None or math.isnan(champion) else round(champion, 6),
        challenger=None if challenger is None or math.isnan(challenger) else round(challenger, 6),
        improvement=improvement,
    )


def _quote(c: RowSetComparison, metric: str) -> str:
    return (
        f"{metric} on {c.rows} {c.rows_from}: challenger {c.challenger}, production "
        f"{c.champion} ({'+' if (c.improvement or 0) >= 0 else ''}{c.improvement})"
    )


def decide(
    champion: int,
    challenger: int,
    metric: str,
    held_out: RowSetComparison,
    labelled: RowSetComparison,
    settings: PromotionSettings,
) -> PromotionDecision:
    """Apply the spec's rule to the comparisons."""
    considered = [held_out]
    if labelled.rows >= max(settings.min_labelled_rows, MIN_COMPARED_ROWS):
        considered.append(labelled)

    def decision(outcome: str, reason: str, promote: bool = False) -> PromotionDecision:
        return PromotionDecision(
            champion=champion,
            challenger=challenger,
            metric=metric,
            promote=promote,
            act=promote and settings.mode == "auto",
            outcome=outcome,
            reason=reason,
            comparisons=[held_out, labelled],
        )

    if any(c.improvement is None for c in considered):
        return decision("incomparable", f"{metric} is undefined on some rows compared")
    quoted = "; ".join(_quote(c, metric) for c in considered)
    worse = [c for c in considered if (c.improvement or 0.0) < settings.min_improvement]
    if worse:
        return decision("keep", f"v{challenger} is not better enough: {quoted}")
    if not any((c.improvement or 0.0) > 0 for c in considered):
        return decision("keep", f"v{challenger} is no better: {quoted}")
    if labelled.rows < settings.min_labelled_rows:
        return decision(
            "wait",
            f"v{challenger} is better on its held-out rows ({quoted}) but only {labelled.rows} "
            f"labelled captured rows of the {settings.min_labelled_rows} required were scored",
        )
    mode = "" if settings.mode == "auto" else " (manual mode: promote it by hand)"
    return decision("promote", f"v{challenger} beats v{champion}: {quoted}{mode}", promote=True)
