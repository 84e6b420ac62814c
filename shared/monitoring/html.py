"""The monitoring report of one window as one self-contained HTML page.

The page is stored beside the report's JSON and opened by people from the bucket, often
offline or through a pre-signed link, so it fetches nothing: no scripts (none at all),
fonts, images or stylesheets. Plots are inline SVG drawn here in plain Python, which keeps
this module to the standard library and the report record: it runs in the small
monitoring Lambda, where a plotting or templating library would not fit.

Everything taken from the report is escaped: feature names and category values come from
the callers' traffic; text a spreadsheet would run as a formula gets an apostrophe in
front (shared.data.cells), so the tables can be pasted into one. The page is
deterministic (same report, same bytes): no render time, no random ids, floats formatted
to fixed precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from shared.data.cells import inert
from shared.monitoring.report import (
    DriftReport,
    FeatureDrift,
    FileProblem,
    Finding,
    Histogram,
    HistoryPoint,
    LabelSummary,
    OutputDrift,
    Performance,
    ShadowComparison,
    Verdict,
    VersionSection,
)

LABEL_CAP = 40  # characters of a name or category shown before "…"
MAX_FEATURE_CHARTS = 12  # per version: the page stays short and small
WIDE_BINS = 40  # more bins than this: the chart takes a whole row
MAX_SKIPPED_ROWS = 50  # a broken uploader can skip thousands of files; show the first ones
# viewBox widths: about the width each chart gets on a desktop screen (two per row, or a
# whole row), so its text shows at the size it is set in.
CHART_WIDTH = 480
WIDE_WIDTH = 1000

VERDICT_COLOURS: dict[str, str] = {
    "ok": "#15803d",
    "drift": "#b45309",
    "decay": "#b91c1c",
    "data_problem": "#7c2d12",
    "insufficient_data": "#4b5563",
}
VERDICT_TITLES: dict[str, str] = {
    "ok": "OK",
    "drift": "Drift",
    "decay": "Decay",
    "data_problem": "Data problem",
    "insufficient_data": "Insufficient data",
}
VERDICT_MEANINGS: dict[str, str] = {
    "ok": "no column or metric differs from training beyond chance",
    "drift": "inputs or predictions moved away from training",
    "decay": "a labelled metric fell below its threshold",
    "data_problem": "the feed is broken: fix it, do not retrain on it",
    "insufficient_data": "too few rows or labels to decide",
}
BASELINE_COLOUR = "#9ca3af"
CURRENT_COLOUR = "#2563eb"
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
FONT = "system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif"
CHAR_WIDTH = 0.58  # average glyph width of the sans-serif above, in ems, to lay out labels

# Characters that would make a name lie about itself (controls, bidi overrides) or break
# UTF-8 encoding (lone surrogates) are shown as U+FFFD instead.
_UNSAFE = {c: "\ufffd" for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]}
_UNSAFE.update({c: "\ufffd" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]})
_UNSAFE.update({c: "\ufffd" for c in range(0xD800, 0xE000)})


def render_report(report: DriftReport) -> str:
    """The report as one HTML page that opens offline; same report, same string."""
    parts = [
        "<!doctype html>\n",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        # No referrer and nothing loaded from anywhere, should a later edit slip one in.
        '<meta name="referrer" content="no-referrer">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        f"<title>{_e(report.model)} · {_e(report.window)} · "
        f"{_e(VERDICT_TITLES.get(report.verdict, report.verdict))}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        _header(report),
        _trends(report),
    ]
    if report.versions:
        parts.extend(_version(section, report.settings) for section in report.versions)
    else:
        parts.append(
            '<section class="card"><h2>Versions</h2>'
            '<p class="note">No version served traffic in this window.</p></section>'
        )
    if report.shadows:
        parts.append(_shadows(report.shadows))
    parts.append(_settings(report.settings))
    parts.append("</main></body></html>\n")
    return "".join(parts)


# -- text ------------------------------------------------------------------------------


def _clean(value: object) -> str:
    # Inert: a name or category copied from the page into a spreadsheet must not run.
    return inert(str(value).translate(_UNSAFE))


def _cap(value: object, cap: int = LABEL_CAP) -> str:
    # Cut before escaping, so an entity is never cut in half.
    text = _clean(value)
    return text if len(text) <= cap else text[:cap] + "…"


def _e(value: object, cap: int = LABEL_CAP) -> str:
    """Escaped text for an element or attribute, at most `cap` characters."""
    return escape(_cap(value, cap), quote=True)


def _named(value: object, cap: int = LABEL_CAP) -> str:
    """A capped name whose full text (up to 300 characters) shows on hover."""
    text = _clean(value)
    if len(text) <= cap:
        return escape(text, quote=True)
    return f'<span title="{_e(text, 300)}">{_e(text, cap)}</span>'


def _int(value: int) -> str:
    return f"{value:,}"


def _pct(share: float | None) -> str:
    """A share as plain text (escape it for HTML): "<0.1%" rather than a false 0.0%."""
    if share is None or not math.isfinite(share):
        return "—"
    if 0 < share < 0.001:
        return "<0.1%"
    return f"{share * 100:.1f}%"


def _pcth(share: float | None) -> str:
    return escape(_pct(share))


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    if value <= 0:
        return "≈0"  # underflowed: smaller than a float can hold, not exactly zero
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def _xy(value: float) -> str:
    # One decimal is finer than a pixel; fixed precision keeps the bytes stable.
    return f"{value:.1f}"


def _badge(verdict: Verdict | str, big: bool = False) -> str:
    colour = VERDICT_COLOURS.get(verdict, VERDICT_COLOURS["insufficient_data"])
    size = " big verdict-badge" if big else ""
    title = _e(VERDICT_TITLES.get(verdict, verdict))
    return f'<span class="badge{size}" style="background:{colour}">{title}</span>'


def _reasons(reasons: Sequence[str]) -> str:
    if not reasons:
        return ""
    items = "".join(f"<li>{_e(reason, 300)}</li>" for reason in reasons)
    return f'<ul class="reasons">{items}</ul>'


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    # Keys are ours, values already escaped by the callers.
    cells = "".join(f"<div><dt>{key}</dt><dd>{value}</dd></div>" for key, value in pairs)
    return f'<dl class="facts">{cells}</dl>'


def _setting(settings: dict[str, object], name: str) -> float | None:
    """A number from the check's settings, or None in a report that does not carry it."""
    value = settings.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# -- header ----------------------------------------------------------------------------


def _header(report: DriftReport) -> str:
    meaning = VERDICT_MEANINGS.get(report.verdict, "")
    facts = _facts(
        [
            ("rows", _int(report.rows)),
            ("capture files", _int(report.capture_files)),
            ("skipped files", _int(len(report.skipped_files))),
            ("versions", _int(len(report.versions))),
            ("labels", _labels(report.labels)),
        ]
    )
    return (
        '<header class="card head">'
        '<div class="title"><p class="kicker">Monitoring report</p>'
        f"<h1>{_named(report.model, 80)}</h1>"
        f'<p class="window">window <b>{_e(report.window)}</b> · '
        f"{_e(report.start)} → {_e(report.end)}</p></div>"
        f'<div class="verdict">{_badge(report.verdict, big=True)}'
        f'<p class="meaning">{_e(meaning, 80)}</p></div>'
        f"{_reasons(report.reasons)}{facts}{_skipped(report.skipped_files)}</header>"
    )


def _labels(labels: LabelSummary) -> str:
    if labels.files == 0 and labels.labels == 0:
        return "none uploaded"
    parts = [
        f"{_int(labels.labels)} in {_int(labels.files)} file{'s' * (labels.files != 1)}",
        f"{_int(labels.matched)} matched",
    ]
    for count, what in (
        (labels.unmatched, "unmatched"),
        (labels.ambiguous, "ambiguous"),
        (labels.duplicates, "duplicates"),
    ):
        if count:
            parts.append(f"{_int(count)} {what}")
    return ", ".join(parts)


def _skipped(problems: Sequence[FileProblem]) -> str:
    if not problems:
        return ""
    rows = "".join(
        f"<tr><td><code>{_e(problem.key, 120)}</code></td><td>{_e(problem.error, 240)}</td></tr>"
        for problem in problems[:MAX_SKIPPED_ROWS]
    )
    more = len(problems) - MAX_SKIPPED_ROWS
    tail = f'<p class="note">and {_int(more)} more skipped files.</p>' if more > 0 else ""
    return (
        '<h3 class="warn">Skipped files</h3><div class="scroll"><table class="table">'
        f"<thead><tr><th>key</th><th>error</th></tr></thead><tbody>{rows}</tbody>"
        f"</table></div>{tail}"
    )


# -- per version -----------------------------------------------------------------------


def _version(section: VersionSection, settings: dict[str, object]) -> str:
    coarse = ""
    if section.resolution == "deciles":
        # Said in words: a reader comparing versions should not take the coarser check of
        # an old version for a calmer one.
        coarse = (
            '<p class="note">Version trained before fine bins were stored: its numeric '
            "features are checked more coarsely, over deciles (10 bins) instead of "
            "percentiles.</p>"
        )
    min_rows = _setting(settings, "min_rows")
    judged = _drift_judged(section, min_rows)
    pairs = [
        ("rows", _int(section.rows)),
        ("numeric bins", f"{_e(section.resolution)} of training"),
    ]
    if judged:
        drifted = [feature for feature in section.features if feature.drifted]
        names = section.drifted_features
        listed = ", ".join(_named(name) for name in names[:20])
        if len(names) > 20:
            listed += f" and {_int(len(names) - 20)} more"
        pairs += [
            ("drift share", _drift_share(section, _setting(settings, "drift_share"))),
            ("drifted features", listed or "none"),
        ]
        unjudged = ""
    else:
        # A handful of rows moves every test and every PSI band: painting them as drift
        # would make noise look like a finding (the check itself did not judge them).
        drifted = []
        needed = f"; at least {_int(int(min_rows))} are needed" if min_rows else ""
        pairs.append(("drift", "not judged"))
        unjudged = (
            f'<p class="note not-judged">Drift not judged: {_int(section.rows)} '
            f"row{'s' * (section.rows != 1)} in this window{needed}. The figures below are "
            "what those rows show, not a verdict.</p>"
        )
    return (
        '<section class="card version">'
        f"<h2>Version {section.version} {_badge(section.verdict)}</h2>"
        f"{_reasons(section.reasons)}{_facts(pairs)}{unjudged}{coarse}"
        f"{_findings(section.findings, judged)}"
        f"{_feature_table(section.features, judged)}{_feature_charts(drifted)}"
        f"{_output(section.output, judged)}"
        f"{_performance(section.performance, _setting(settings, 'min_labelled_rows'))}"
        "</section>"
    )


def _drift_judged(section: VersionSection, min_rows: float | None) -> bool:
    """Whether the check had enough rows to call this version's columns drifted."""
    if section.verdict == "insufficient_data":
        return False
    return min_rows is None or section.rows >= min_rows


def _drift_share(section: VersionSection, threshold: float | None) -> str:
    """'1 of 7 columns (6 features and the prediction) · 14.3%', as the check counts it."""
    drifted = len(section.drifted_features)
    columns = len(section.features)
    of = f"{_int(columns)} feature{'s' * (columns != 1)}"
    if section.output is not None:
        # The prediction is a column of the share too: its drift counts like a feature's.
        drifted += section.output.drifted
        columns += 1
        of += " and the prediction"
    text = (
        f"{_int(drifted)} of {_int(columns)} columns <small>({of})</small> · "
        f"{_pcth(section.drift_share)}"
    )
    if threshold is not None:
        text += f" <small>(threshold {_pcth(threshold)})</small>"
    return text


_NOT_JUDGED = '<span class="pill">not judged</span>'


def _findings(findings: Sequence[Finding], judged: bool) -> str:
    if not findings:
        return ""
    rows = "".join(
        f'<tr class="finding {_e(f.kind)}">'
        # Metrics are judged on labels, not on the window's rows: decay stands either way.
        f"<td>{_badge(f.kind) if judged or f.kind == 'decay' else _NOT_JUDGED}</td>"
        f"<td>{_named(f.column)}</td>"
        f"<td>{_e(f.what.replace('_', ' '))}</td><td>{_e(f.message, 240)}</td></tr>"
        for f in findings
    )
    return (
        '<h3>Findings</h3><div class="scroll"><table class="table findings">'
        "<thead><tr><th>kind</th><th>column</th><th>what</th><th>how much</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def _ordered(features: Sequence[FeatureDrift], judged: bool = True) -> list[FeatureDrift]:
    # Drifted first (when judged), then the farthest from training; the name breaks ties so
    # the order (and the page) never depends on the order the check listed them in.
    def key(feature: FeatureDrift) -> tuple[bool, float, str]:
        distance = feature.distance if math.isfinite(feature.distance) else -1.0
        return (judged and not feature.drifted, -distance, feature.name)

    return sorted(features, key=key)


# Short names for the table; the report stores the long ones.
_DISTANCE_NAMES = {"wasserstein_normed": "Wasserstein/sd", "jensen_shannon": "Jensen-Shannon"}


def _feature_table(features: Sequence[FeatureDrift], judged: bool) -> str:
    if not features:
        return '<p class="note">No features recorded for this version.</p>'
    rows = []
    for feature in _ordered(features, judged):
        bound = (
            f' title="the exact KS statistic lies within D + {_num(feature.ks_error_bound)}"'
            if feature.ks_error_bound is not None
            else ""
        )
        if feature.kind == "numeric":
            outside = f"{_pcth(feature.out_of_range)} out of range"
        else:
            outside = f"{_pcth(feature.unseen)} unseen"
        if feature.out_of_range is None and feature.unseen is None:
            outside = "—"
        if not judged:
            verdict, why, band = _NOT_JUDGED, "", ""
        else:
            verdict = (
                '<span class="pill bad">yes</span>'
                if feature.drifted
                else '<span class="pill">no</span>'
            )
            why = "; ".join(_e(reason, 200) for reason in feature.reasons)
            band = f' <span class="pill {_e(feature.psi_band)}">{_e(feature.psi_band)}</span>'
        rows.append(
            f"<tr{' class=drifted' if judged and feature.drifted else ''}>"
            f"<td>{_named(feature.name)} <small>{_e(feature.kind)}</small></td>"
            f"<td{bound}>{_e(feature.test)} {_num(feature.statistic)}</td>"
            f"<td>{_p(feature.p_value)}</td>"
            f"<td>{_num(feature.distance)} "
            f"<small>{_e(_DISTANCE_NAMES.get(feature.distance_name, feature.distance_name))}"
            "</small></td>"
            f"<td>{_num(feature.psi)}{band}</td>"
            f'<td title="p = {_p(feature.missing_p_value)}">{_pcth(feature.missing_rate)} '
            f"<small>vs {_pcth(feature.baseline_missing_rate)}</small></td>"
            f"<td>{outside}</td>"
            f"<td>{verdict}{f'<small class=why>{why}</small>' if why else ''}</td></tr>"
        )
    return (
        '<h3>Features</h3><div class="scroll"><table class="table features"><thead><tr>'
        "<th>feature</th><th>test · statistic</th><th>p-value</th><th>distance</th>"
        "<th>PSI</th><th>missing vs baseline</th><th>out of range / unseen</th>"
        f"<th>drifted</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _feature_charts(drifted: Sequence[FeatureDrift]) -> str:
    if not drifted:
        return ""
    shown = _ordered(drifted)[:MAX_FEATURE_CHARTS]
    figures = []
    for feature in shown:
        caption = (
            f"{_named(feature.name)} <small>{_e(feature.kind)} · PSI {_num(feature.psi)} "
            f"({_e(feature.psi_band)}) · p {_p(feature.p_value)}</small>"
        )
        chart = _bar_chart(feature.histogram, "feature", feature.name, axis=_scale(feature))
        figures.append(_figure(caption, chart, feature.histogram))
    more = len(drifted) - len(shown)
    tail = (
        f'<p class="note">and {_int(more)} more drifted features: see the table above.</p>'
        if more > 0
        else ""
    )
    return f'<h3>Drifted features</h3><div class="grid">{"".join(figures)}</div>{tail}'


def _scale(feature: FeatureDrift) -> str:
    """The x axis's title: what the bins are, and the scale a numeric feature had at training."""
    name = _cap(feature.name, 30)
    if feature.kind == "categorical":
        return f"{name}: categories"
    # The bins are in whatever unit the column was uploaded in; the training range says
    # which scale that is (years or months, metres or millimetres) at a glance.
    text = f"{name}: value ranges, in the column's own units"
    bounds = feature.training_range
    if bounds is None or len(bounds) != 2:
        return text
    return f"{text} (training range {_num(bounds[0])} to {_num(bounds[1])})"


def _figure(caption: str, chart: str, histogram: Histogram | None = None) -> str:
    # Histograms with many bins span the whole row, so their bars stay wider than a line.
    wide = " wide" if histogram is not None and _is_wide(histogram) else ""
    return f'<figure class="fig{wide}"><figcaption>{caption}</figcaption>{chart}</figure>'


def _is_wide(histogram: Histogram) -> bool:
    return len(histogram.bins) > WIDE_BINS


def _output(output: OutputDrift | None, judged: bool) -> str:
    if output is None:
        return ""
    drifted = '<span class="pill bad">drifted</span>' if judged and output.drifted else ""
    summary = (
        f"{_e(output.test)} {_num(output.statistic)} · p {_p(output.p_value)} · "
        f"{_e(_DISTANCE_NAMES.get(output.distance_name, output.distance_name))} "
        f"{_num(output.distance)} · PSI {_num(output.psi)}"
    )
    figures = [
        _figure(
            f"Predictions <small>{_e(output.what, 60)}</small>",
            _bar_chart(output.histogram, "output", output.what, axis=output.what),
            output.histogram,
        )
    ]
    if output.probability is not None:
        if output.probability_class is not None:
            of = f'class "{_clean(output.probability_class)}"'
            caption = f"Predicted probability of {escape(_cap(of, 60))}"
        else:
            # Older reports do not say; naming a guess would be worse than naming none.
            of = "one class"
            caption = "Predicted probability <small>(this report does not name the class)</small>"
        figures.append(
            _figure(
                caption,
                _bar_chart(
                    output.probability,
                    "probability",
                    f"probability of {of}",
                    axis=f"predicted probability of {_cap(of, 60)}",
                ),
                output.probability,
            )
        )
    return (
        f'<h3>Output drift {drifted}</h3><p>{summary}</p><div class="grid">{"".join(figures)}</div>'
    )


def _performance(performance: Performance | None, min_labelled: float | None) -> str:
    if performance is None:
        return ""
    if not performance.decided:
        needed = f", {_int(int(min_labelled))} needed" if min_labelled else ""
        state = (
            f'<span class="pill">not judged: {_int(performance.labelled_rows)} labelled '
            f"row{'s' * (performance.labelled_rows != 1)}{needed}</span>"
        )
    elif performance.decayed:
        state = '<span class="pill bad">decayed</span>'
    else:
        state = '<span class="pill good">no decay</span>'
    interval = performance.interval
    if performance.value is None:
        value = "no value (no labelled rows)"
    elif interval is not None and len(interval) == 2:
        value = f"{_num(performance.value)} [{_num(interval[0])}, {_num(interval[1])}]"
    else:
        value = _num(performance.value)
    text = (
        f"<p><b>{_e(performance.metric)}</b> on {_int(performance.labelled_rows)} labelled "
        f"rows: <b>{value}</b> <small>({_e(performance.method, 80)})</small> · training "
        f"{_num(performance.training_value)} · threshold {_num(performance.threshold)}</p>"
    )
    chart = _performance_chart(performance) if performance.value is not None else ""
    return f"<h3>Performance {state}</h3>{text}{chart}{_metrics_table(performance)}"


def _metrics_table(performance: Performance) -> str:
    """Every metric on the labelled rows beside its training value and threshold."""
    checks = {check.metric: check for check in performance.checks}
    names = [*checks, *sorted(name for name in performance.metrics if name not in checks)]
    if not names:
        return ""
    rows = []
    for name in names:
        check = checks.get(name)
        if check is not None:
            window = f"{_num(check.value)} {_interval(check.interval)}"
            training, threshold = check.training_value, check.threshold
            if check.decayed:
                state = '<span class="pill bad">decayed</span>'
            else:
                state = "no decay" if performance.decided else "not judged"
        else:
            window = _num(performance.metrics[name])
            # Reports written before `checks` carry the primary metric's figures only.
            primary = name == performance.metric
            training = performance.training_value if primary else math.nan
            threshold = performance.threshold if primary else math.nan
            state = "" if primary else "no training value recorded"
        rows.append(
            f"<tr{' class=drifted' if check is not None and check.decayed else ''}>"
            f"<td>{_e(name)}</td><td>{window}</td><td>{_num(training)}</td>"
            f"<td>{_num(threshold)}</td><td>{state}</td></tr>"
        )
    return (
        '<div class="scroll"><table class="table metrics"><thead><tr><th>metric</th>'
        "<th>window [interval]</th><th>training</th><th>threshold</th><th>against training</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _interval(interval: Sequence[float] | None) -> str:
    if interval is None or len(interval) != 2:
        return ""
    return f"<small>[{_num(interval[0])}, {_num(interval[1])}]</small>"


def _shadows(shadows: Sequence[ShadowComparison]) -> str:
    rows = []
    for s in shadows:
        if s.agreement is not None:
            together = f"{_pct(s.agreement)} same class"
        else:
            together = f"mean |difference| {_num(s.mean_abs_difference)}"
        mine, theirs = s.performance, s.served_performance
        metrics = "—"
        if mine is not None and theirs is not None and mine.value is not None:
            metrics = (
                f"{_e(mine.metric)}: shadow {_num(mine.value)} · served {_num(theirs.value)} "
                f"on {_int(s.labelled_rows)} labelled rows"
            )
        rows.append(
            f"<tr><td>v{s.version} beside v{s.served_version}</td><td>{_int(s.rows)}</td>"
            f"<td>{_int(s.paired_rows)}</td><td>{together}</td><td>{metrics}</td></tr>"
        )
    return (
        '<section class="card"><h2>Shadow</h2><p class="note">The staging version scored a '
        "share of live requests beside production; callers only ever saw production's "
        "answers.</p><table><thead><tr><th>versions</th><th>shadow rows</th><th>paired</th>"
        f"<th>agreement</th><th>with labels</th></tr></thead><tbody>{''.join(rows)}"
        "</tbody></table></section>"
    )


# -- charts ----------------------------------------------------------------------------


def _svg(kind: str, width: int, height: int, label: str, body: str) -> str:
    # width/height in the viewBox only: CSS scales the chart to its column.
    return (
        f'<svg class="chart" data-chart="{kind}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label, 120)}">{body}</svg>'
    )


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * power * (1 + 1e-9):
            return factor * power
    return 10.0 * power


def _ticks(low: float, high: float, count: int = 4, step: float | None = None) -> list[float]:
    step = step or _nice_step(high - low, count)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    k = first
    while k * step <= high + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


def _axis(low: float, high: float, count: int) -> tuple[float, float, list[float], float]:
    """(low, high, ticks, step): the range widened to whole ticks, so the top is labelled."""
    step = _nice_step(high - low, count)
    low = math.floor(low / step + 1e-9) * step
    high = math.ceil(high / step - 1e-9) * step
    if high <= low:
        high = low + step
    return low, high, _ticks(low, high, count, step), step


def _decimals(step: float) -> int:
    # Enough decimals to tell neighbouring ticks apart, no more.
    if step <= 0:
        return 0
    digits = max(0, -math.floor(math.log10(step) + 1e-9))
    return digits + (1 if round(step / 10.0**-digits, 6) % 1 else 0)


def _text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_WIDTH


def _legend(x: float, y: float, entries: Sequence[tuple[str, str]]) -> str:
    parts = []
    for colour, name in entries:
        parts.append(
            f'<rect x="{_xy(x)}" y="{_xy(y - 9)}" width="10" height="10" rx="2" '
            f'fill="{colour}"/><text x="{_xy(x + 14)}" y="{_xy(y)}" font-size="11" '
            f'fill="{INK}">{escape(name)}</text>'
        )
        x += 14 + _text_width(name, 11) + 16
    return "".join(parts)


def _ordinal(number: int) -> str:
    teen = number % 100 in (11, 12, 13)
    suffix = "th" if teen else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _bin_label(label: str) -> str:
    """A bin as people write it: "< 14.1" and "≥ 25.2" rather than "[-inf, 14.1)"."""
    if label == "[-inf, inf)":
        return "any value"
    if label.startswith("[-inf, ") and label.endswith(")"):
        return f"< {label[7:-1]}"
    if label.startswith("[") and label.endswith(", inf)"):
        return f"≥ {label[1:-6]}"
    return label


def _bar_chart(histogram: Histogram, kind: str, name: str, *, axis: str = "") -> str:
    """Grouped bars: baseline (grey) and current (blue) share of each bin; `axis` titles x."""
    baseline, current = histogram.baseline, histogram.current
    bins = [_bin_label(label) for label in histogram.bins]
    count = len(bins)
    if count == 0:
        return '<p class="note">no histogram recorded.</p>'
    if len(baseline) != count or len(current) != count:
        return (
            f'<p class="note">histogram not drawn: {_int(count)} bins but '
            f"{_int(len(baseline))} baseline and {_int(len(current))} current shares.</p>"
        )
    width = WIDE_WIDTH if _is_wide(histogram) else CHART_WIDTH
    left, right, top, size = 46.0, 10.0, 30.0, 10.5
    group = (width - left - right) / count
    angle = math.radians(40)

    # Tick labels. A few bins (classes, categories): every label, flat, cut to its slot.
    # Many: flat when they all fit, else slanted and thinned to stay apart. The full text
    # of every bin is in its bars' tooltip.
    step = 1
    slanted = False
    if count <= 8:
        fit = max(4, int((group - 6) / (size * CHAR_WIDTH)) - 1)
        labels = [_cap(label, min(fit, LABEL_CAP)) for label in bins]
    else:
        labels = [_cap(label, LABEL_CAP) for label in bins]
        slanted = max(_text_width(label, size) for label in labels) + 6 > group
    if slanted:
        labels = [_cap(label, 22) for label in bins]
        step = max(math.ceil(18.0 / group), math.ceil(count / 16))
        # Room on the left for the first label, which leans out past the axis.
        reach = _text_width(labels[0], size) * math.cos(angle) - group / 2 - 1
        if reach > left:
            left = reach
            group = (width - left - right) / count
    shown = labels[::step]
    longest = max(_text_width(label, size) for label in shown)
    bottom = (longest * math.sin(angle) + size + 14) if slanted else size + 14
    title_y = bottom + 14
    if axis:
        bottom += 20
    height = 190.0 + bottom + top
    plot_h = height - top - bottom

    peak = max([*baseline, *current, 0.0])
    peak = peak if math.isfinite(peak) and peak > 0 else 1.0
    _, y_max, ticks, tick_step = _axis(0.0, peak, 4)
    digits = max(0, _decimals(tick_step) - 2)

    def y_of(share: float) -> float:
        return top + plot_h * (1 - share / y_max)

    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{_xy(left)}" x2="{_xy(width - right)}" y1="{_xy(y)}" y2="{_xy(y)}" '
            f'stroke="{GRID}"/><text x="{_xy(left - 6)}" y="{_xy(y + 3.5)}" font-size="{size}" '
            f'text-anchor="end" fill="{MUTED}">{tick * 100:.{digits}f}%</text>'
        )
    pad = group * 0.12 if group >= 6 else 0.0
    bar = (group - 2 * pad) / 2
    for index, (label, base, cur) in enumerate(zip(bins, baseline, current, strict=True)):
        x0 = left + index * group + pad
        tip = f"{_cap(label, 80)}: baseline {_pct(base)}, current {_pct(cur)}"
        rects = []
        for offset, share, colour in ((0.0, base, BASELINE_COLOUR), (bar, cur, CURRENT_COLOUR)):
            if not (math.isfinite(share) and share > 0):
                continue
            # A share too small for a pixel still gets one: it is not zero.
            h = max(plot_h * share / y_max, 1.0)
            rects.append(
                f'<rect class="bar" x="{_xy(x0 + offset)}" y="{_xy(top + plot_h - h)}" '
                f'width="{_xy(max(bar - 0.6, 0.8))}" height="{_xy(h)}" fill="{colour}"/>'
            )
        parts.append(f"<g><title>{escape(tip)}</title>{''.join(rects)}</g>")
    base_y = top + plot_h
    parts.append(
        f'<line x1="{_xy(left)}" x2="{_xy(width - right)}" y1="{_xy(base_y)}" '
        f'y2="{_xy(base_y)}" stroke="{MUTED}"/>'
    )
    for index in range(0, count, step):
        x = left + (index + 0.5) * group
        text = escape(_clean(labels[index]))
        parts.append(
            f'<line x1="{_xy(x)}" x2="{_xy(x)}" y1="{_xy(base_y)}" y2="{_xy(base_y + 4)}" '
            f'stroke="{MUTED}"/>'
        )
        if slanted:
            parts.append(
                f'<text transform="translate({_xy(x + 3)},{_xy(base_y + 10)}) rotate(-40)" '
                f'font-size="{size}" text-anchor="end" fill="{INK}">{text}</text>'
            )
        else:
            parts.append(
                f'<text x="{_xy(x)}" y="{_xy(base_y + 6 + size)}" font-size="{size}" '
                f'text-anchor="middle" fill="{INK}">{text}</text>'
            )
    parts.append(
        _legend(left, 16, [(BASELINE_COLOUR, "baseline (training)"), (CURRENT_COLOUR, "window")])
    )
    if slanted and step > 1:
        parts.append(
            f'<text x="{_xy(width - right)}" y="16" font-size="10" text-anchor="end" '
            f'fill="{MUTED}">every {_ordinal(step)} of {_int(count)} bins named</text>'
        )
    if axis:
        parts.append(
            f'<text class="axis-title" x="{_xy((left + width - right) / 2)}" '
            f'y="{_xy(base_y + title_y)}" font-size="{size}" text-anchor="middle" '
            f'fill="{MUTED}">{_e(axis, 120)}</text>'
        )
    label = f"{name}: baseline and window shares over {count} bins"
    return _svg(kind, width, math.ceil(height), label, "".join(parts))


def _performance_chart(performance: Performance) -> str:
    """The window's value with its interval, against training and the threshold."""
    value = performance.value
    assert value is not None  # the caller draws nothing without a value
    interval = (
        performance.interval if performance.interval and len(performance.interval) == 2 else None
    )
    points = [value, performance.training_value, performance.threshold, *(interval or [])]
    points = [point for point in points if math.isfinite(point)]
    low, high = min(points), max(points)
    span = high - low or abs(high) or 1.0
    low, high = low - span * 0.12, high + span * 0.12
    width, height, left, right, size = 720, 112, 24.0, 24.0, 12.0
    axis_y, dot_y = 86.0, 62.0

    def x_of(v: float) -> float:
        return left + (width - left - right) * (v - low) / (high - low)

    parts = [
        f'<line x1="{_xy(left)}" x2="{_xy(width - right)}" y1="{_xy(axis_y)}" '
        f'y2="{_xy(axis_y)}" stroke="{MUTED}"/>'
    ]
    ticks = _ticks(low, high, 5)
    digits = _decimals(ticks[1] - ticks[0]) if len(ticks) > 1 else 2
    for tick in ticks:
        x = x_of(tick)
        parts.append(
            f'<line x1="{_xy(x)}" x2="{_xy(x)}" y1="{_xy(axis_y)}" y2="{_xy(axis_y + 4)}" '
            f'stroke="{MUTED}"/><text x="{_xy(x)}" y="{_xy(axis_y + 18)}" font-size="{size}" '
            f'text-anchor="middle" fill="{MUTED}">{tick:.{digits}f}</text>'
        )
    # Two reference lines on two label rows, so close values never print over each other.
    for row, (ref, name, colour) in enumerate(
        (
            (performance.training_value, "training", MUTED),
            (performance.threshold, "threshold", VERDICT_COLOURS["decay"]),
        )
    ):
        if not math.isfinite(ref):
            continue
        x = x_of(ref)
        label = f"{name} {_num(ref)}"
        anchor = _anchor(x, _text_width(label, size), width)
        label_y = 14.0 + row * 16
        parts.append(
            f'<line x1="{_xy(x)}" x2="{_xy(x)}" y1="{_xy(label_y + 4)}" y2="{_xy(axis_y)}" '
            f'stroke="{colour}" stroke-dasharray="4 3"/><text x="{_xy(x)}" y="{_xy(label_y)}" '
            f'font-size="{size}" text-anchor="{anchor}" fill="{colour}">{label}</text>'
        )
    if not performance.decided:
        colour = VERDICT_COLOURS["insufficient_data"]
    elif performance.decayed:
        colour = VERDICT_COLOURS["decay"]
    else:
        colour = VERDICT_COLOURS["ok"]
    if interval is not None and all(math.isfinite(v) for v in interval):
        a, b = x_of(interval[0]), x_of(interval[1])
        parts.append(
            f'<line x1="{_xy(a)}" x2="{_xy(b)}" y1="{_xy(dot_y)}" y2="{_xy(dot_y)}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<line x1="{_xy(a)}" x2="{_xy(a)}" y1="{_xy(dot_y - 6)}" y2="{_xy(dot_y + 6)}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<line x1="{_xy(b)}" x2="{_xy(b)}" y1="{_xy(dot_y - 6)}" y2="{_xy(dot_y + 6)}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
    x = x_of(value)
    label = f"window {_num(value)}"
    parts.append(
        f'<circle cx="{_xy(x)}" cy="{_xy(dot_y)}" r="5.5" fill="{colour}"/>'
        f'<text x="{_xy(x)}" y="{_xy(dot_y - 11)}" font-size="{size}" font-weight="600" '
        f'text-anchor="{_anchor(x, _text_width(label, size), width)}" fill="{colour}">'
        f"{label}</text>"
    )
    label = f"{performance.metric} {_num(value)} against training and threshold"
    return _svg("performance", width, height, label, "".join(parts))


def _anchor(x: float, text_width: float, width: float) -> str:
    # Centre a label on its mark unless that would push it out of the chart.
    if x - text_width / 2 < 2:
        return "start"
    if x + text_width / 2 > width - 2:
        return "end"
    return "middle"


# -- trends ----------------------------------------------------------------------------


def _trends(report: DriftReport) -> str:
    history = report.history
    if not history:
        return (
            '<section class="card"><h2>Trend</h2>'
            '<p class="note">No windows recorded yet.</p></section>'
        )
    threshold = _setting(report.settings, "drift_share")
    line = [] if threshold is None else [(threshold, "threshold", VERDICT_COLOURS["drift"])]
    drift = _line_chart(
        history,
        [point.drift_share for point in history],
        "trend-drift",
        "drift share",
        percent=True,
        references=line,
    )
    metric_name = next(
        (p.metric for p in reversed(history) if p.metric and p.metric_value is not None), None
    )
    if metric_name is None:
        metric = '<p class="note">no labelled windows yet.</p>'
        metric_title = "Performance"
    else:
        # Only one metric per chart: a version of another task may have scored another.
        values = [
            p.metric_value if p.metric == metric_name and p.metric_value is not None else None
            for p in history
        ]
        references = []
        for section in report.versions:
            performance = section.performance
            if performance is not None and performance.metric == metric_name:
                references = [
                    (performance.training_value, "training", MUTED),
                    (performance.threshold, "threshold", VERDICT_COLOURS["decay"]),
                ]
        metric = _line_chart(
            history, values, "trend-metric", metric_name, percent=False, references=references
        )
        metric_title = f"{_e(metric_name)} per window"
    keys = "".join(
        f'<span><i style="background:{VERDICT_COLOURS[v]}"></i>{VERDICT_TITLES[v]}</span>'
        for v in ("ok", "drift", "decay", "data_problem", "insufficient_data")
    )
    return (
        f'<section class="card"><h2>Trend <small>{_int(len(history))} '
        f"window{'s' * (len(history) != 1)}, this one last</small></h2>"
        f'<div class="grid"><figure class="fig"><figcaption>Drift share per window '
        "<small>(drifted columns: features and the prediction)</small>"
        f"</figcaption>{drift}</figure>"
        f'<figure class="fig"><figcaption>{metric_title}</figcaption>{metric}</figure></div>'
        f'<p class="keys">{keys}</p></section>'
    )


def _line_chart(
    history: Sequence[HistoryPoint],
    values: Sequence[float | None],
    kind: str,
    name: str,
    *,
    percent: bool,
    references: Sequence[tuple[float, str, str]],
) -> str:
    """Values over windows, each point coloured by its window's verdict; gaps stay gaps."""
    width, height, left, right, top, bottom = CHART_WIDTH, 230, 48.0, 14.0, 22.0, 34.0
    plot_w, plot_h = width - left - right, height - top - bottom
    count = len(history)
    known = [v for v in values if v is not None and math.isfinite(v)]
    refs = [(v, n, c) for v, n, c in references if math.isfinite(v)]
    if percent:
        # The threshold stays on the chart: how far below it a window was is the point.
        low, high = 0.0, max([*known, *(v for v, _, _ in refs), 0.1])
    else:
        span_values = known + [v for v, _, _ in refs]
        low, high = min(span_values), max(span_values)
        # A little room, so the extreme points do not sit on the frame.
        pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
        low, high = low - pad, high + pad
    low, high, ticks, step = _axis(low, high, 5)
    digits = max(0, _decimals(step) - 2) if percent else _decimals(step)

    def x_of(index: int) -> float:
        return left + plot_w / 2 if count == 1 else left + plot_w * index / (count - 1)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    parts = []
    for tick in ticks:
        y = y_of(tick)
        text = f"{tick * 100:.{digits}f}%" if percent else f"{tick:.{digits}f}"
        parts.append(
            f'<line x1="{_xy(left)}" x2="{_xy(width - right)}" y1="{_xy(y)}" y2="{_xy(y)}" '
            f'stroke="{GRID}"/><text x="{_xy(left - 6)}" y="{_xy(y + 3.5)}" font-size="10.5" '
            f'text-anchor="end" fill="{MUTED}">{text}</text>'
        )
    for row, (ref, ref_name, colour) in enumerate(refs):
        y = y_of(ref)
        shown = _pct(ref) if percent else _num(ref)
        parts.append(
            f'<g class="reference"><line x1="{_xy(left)}" x2="{_xy(width - right)}" '
            f'y1="{_xy(y)}" y2="{_xy(y)}" stroke="{colour}" stroke-dasharray="4 3"/>'
            f'<text x="{_xy(width - right - 2 - row * 96)}" y="{_xy(y - 4)}" font-size="10.5" '
            f'text-anchor="end" fill="{colour}">{escape(ref_name)} {escape(shown)}</text></g>'
        )
    # Connect consecutive known points only: a window without a value is a gap, not a slope.
    segments = []
    for index in range(1, count):
        a, b = values[index - 1], values[index]
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            segments.append(
                f"M{_xy(x_of(index - 1))} {_xy(y_of(a))}L{_xy(x_of(index))} {_xy(y_of(b))}"
            )
    if segments:
        parts.append(
            f'<path d="{"".join(segments)}" fill="none" stroke="{MUTED}" stroke-width="1.5"/>'
        )
    for index, (point, value) in enumerate(zip(history, values, strict=True)):
        if value is None or not math.isfinite(value):
            continue
        last = index == count - 1
        shown = _pct(value) if percent else _num(value)
        tip = f"{_cap(point.window, 40)}: {VERDICT_TITLES.get(point.verdict, point.verdict)}, "
        tip += f"{point.rows:,} rows, {name} {shown}"
        # The current window is the last point: larger and outlined.
        ring = f' r="5.5" stroke="{INK}" stroke-width="1.5"' if last else ' r="4"'
        parts.append(
            f'<circle cx="{_xy(x_of(index))}" cy="{_xy(y_of(value))}"{ring} '
            f'fill="{VERDICT_COLOURS.get(point.verdict, MUTED)}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    # Window names are long: label a few, always the current (last) one.
    label_w = max(_text_width(_cap(p.window, 24), 10.5) for p in history) + 14
    every = max(1, math.ceil(count / max(1, int(plot_w // label_w))))
    base_y = top + plot_h
    for index in range(count - 1, -1, -every):
        x = x_of(index)
        text = _cap(history[index].window, 24)
        anchor = _anchor(x, _text_width(text, 10.5), width)
        parts.append(
            f'<line x1="{_xy(x)}" x2="{_xy(x)}" y1="{_xy(base_y)}" y2="{_xy(base_y + 4)}" '
            f'stroke="{MUTED}"/><text x="{_xy(x)}" y="{_xy(base_y + 16)}" font-size="10.5" '
            f'text-anchor="{anchor}" fill="{INK}">{escape(text)}</text>'
        )
    parts.append(
        f'<line x1="{_xy(left)}" x2="{_xy(width - right)}" y1="{_xy(base_y)}" '
        f'y2="{_xy(base_y)}" stroke="{MUTED}"/>'
    )
    label = f"{name} over {count} windows"
    return _svg(kind, width, height, label, "".join(parts))


# -- settings --------------------------------------------------------------------------


def _settings(settings: dict[str, object]) -> str:
    if not settings:
        return ""
    rows = "".join(
        f"<tr><td><code>{_e(key, 60)}</code></td><td>{_e(value, 200)}</td></tr>"
        for key, value in sorted(settings.items())
    )
    return (
        '<details class="card"><summary>Settings of this check</summary>'
        f'<table class="table">{rows}</table></details>'
    )


_CSS = f"""
*{{box-sizing:border-box}}
body{{margin:0;background:#f3f4f6;color:{INK};font:14px/1.45 {FONT}}}
main{{max-width:1120px;margin:0 auto;padding:20px}}
.card{{background:#fff;border:1px solid {GRID};border-radius:10px;padding:18px 22px;
margin:0 0 18px}}
.head{{display:grid;grid-template-columns:1fr auto;gap:6px 24px}}
.head>.reasons,.head>.facts,.head>h3,.head>.scroll,.head>.note{{grid-column:1/-1}}
.kicker{{margin:0;color:{MUTED};text-transform:uppercase;letter-spacing:.08em;font-size:12px}}
h1{{margin:2px 0 4px;font-size:26px;overflow-wrap:anywhere}}
h2{{margin:0 0 10px;font-size:20px;display:flex;align-items:center;gap:10px}}
h3{{margin:20px 0 8px;font-size:16px;display:flex;align-items:center;gap:8px}}
h2 small,h3 small{{font-weight:400;color:{MUTED};font-size:13px}}
.window{{margin:0;color:{MUTED}}}
.window b{{color:{INK}}}
.verdict{{text-align:right}}
.badge{{display:inline-block;color:#fff;border-radius:999px;padding:2px 12px;font-size:13px;
font-weight:600;white-space:nowrap}}
.badge.big{{font-size:22px;padding:8px 22px;border-radius:12px}}
.meaning{{margin:6px 0 0;color:{MUTED};font-size:13px}}
.reasons{{margin:6px 0;padding-left:20px}}
.facts{{display:flex;flex-wrap:wrap;gap:8px 28px;margin:10px 0 0}}
.facts div{{min-width:90px;max-width:100%}}
.facts dt{{color:{MUTED};font-size:12px}}
.facts dd{{margin:0;font-weight:600}}
.facts.small dd{{font-weight:400}}
.warn{{color:{VERDICT_COLOURS["decay"]}}}
.note{{color:{MUTED};font-style:italic}}
.scroll{{overflow-x:auto}}
.table{{border-collapse:collapse;width:100%;font-size:13px}}
.table th{{text-align:left;font-weight:600;color:{MUTED};border-bottom:2px solid {GRID};
padding:6px 8px;white-space:nowrap}}
.table td{{border-bottom:1px solid {GRID};padding:5px 8px;vertical-align:top}}
.table code{{overflow-wrap:anywhere}}
.features td:first-child{{font-weight:600;overflow-wrap:anywhere;min-width:120px}}
.features td small{{display:block}}
.features td:nth-child(4) small,.features td:nth-child(5){{white-space:nowrap}}
.table small{{color:{MUTED};font-weight:400}}
tr.drifted{{background:#fffbeb}}
.why{{display:block;max-width:260px}}
.pill{{display:inline-block;border-radius:999px;padding:0 8px;font-size:12px;
background:{GRID};color:{INK}}}
.pill.bad,.pill.major{{background:#fee2e2;color:{VERDICT_COLOURS["decay"]}}}
.pill.moderate{{background:#fef3c7;color:{VERDICT_COLOURS["drift"]}}}
.pill.good,.pill.stable{{background:#dcfce7;color:{VERDICT_COLOURS["ok"]}}}
/* dense: a narrow chart fills the gap a whole-row chart would leave beside another */
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px;
grid-auto-flow:dense}}
.fig{{margin:0;border:1px solid {GRID};border-radius:8px;padding:10px 12px;min-width:0}}
.fig.wide{{grid-column:1/-1}}
figcaption{{font-weight:600;margin-bottom:4px;overflow-wrap:anywhere}}
figcaption small{{font-weight:400;color:{MUTED}}}
svg.chart{{display:block;width:100%;height:auto}}
svg[data-chart=performance]{{max-width:720px}}
.keys{{display:flex;gap:18px;color:{MUTED};font-size:12px;margin:10px 0 0}}
.keys i{{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px}}
details summary{{cursor:pointer;font-weight:600}}
@media (max-width:600px){{.head{{grid-template-columns:1fr}}.verdict{{text-align:left}}
.grid{{grid-template-columns:1fr}}}}
""".replace("\n", "")
