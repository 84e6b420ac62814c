"""The quality gate at registration: a pure decision on a version's held-out figures.

A version is served only if it beats a trivial predictor on its own held-out rows by a
margin, and meets the spec's floor on its primary metric. Otherwise it is registered as
`rejected`, with the figures that failed it, and no alias moves: a CSV of random numbers
must never become production because it happened to be the first upload.
"""

from __future__ import annotations

from shared.data.spec import LOWER_IS_BETTER, GateSettings
from shared.registry.metadata import GateReport


def judge(
    metric: str,
    value: float,
    trivial: float,
    trivial_predictor: str,
    settings: GateSettings,
) -> GateReport:
    """Pass or reject a version on its primary metric against the trivial predictor's."""
    lower_better = metric in LOWER_IS_BETTER
    if lower_better:
        improvement = (trivial - value) / trivial if trivial > 0 else 0.0
    else:
        improvement = value - trivial
    reasons = []
    if improvement < settings.min_improvement:
        how = "relative " if lower_better else ""
        reasons.append(
            f"{metric} {value:.4f} does not beat the trivial predictor ({trivial_predictor}: "
            f"{trivial:.4f}) by the required {how}margin {settings.min_improvement:g} "
            f"(improvement {improvement:.4f})"
        )
    if settings.minimum is not None:
        short = value > settings.minimum if lower_better else value < settings.minimum
        if short:
            bound = "at most" if lower_better else "at least"
            reasons.append(f"{metric} {value:.4f}: the spec requires {bound} {settings.minimum:g}")
    return GateReport(
        metric=metric,
        value=round(value, 6),
        trivial=round(trivial, 6),
        trivial_predictor=trivial_predictor,
        improvement=round(improvement, 6),
        required_improvement=settings.min_improvement,
        minimum=settings.minimum,
        passed=not reasons,
        reasons=reasons,
    )
