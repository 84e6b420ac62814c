"""The monitoring report's HTML page: self-contained, escaped, deterministic, and drawn.

The static tests read the markup; the browser tests open it in Debian's headless
Chromium (Playwright cannot download its own browser here) with every request outside
the page refused, and check that the charts are really painted.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from shared.monitoring.html import render_report
from shared.monitoring.report import (
    DriftReport,
    FeatureDrift,
    FileProblem,
    Finding,
    Histogram,
    HistoryPoint,
    LabelSummary,
    MetricCheck,
    OutputDrift,
    Performance,
    Verdict,
    VersionSection,
)

REPO = Path(__file__).resolve().parents[1]
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
HOSTILE = "<script>alert(1)</script>"
HOSTILE_CATEGORY = '"><img src=x onerror=alert(2)>'
CURRENT_RGB = (0x25, 0x63, 0xEB)  # the page's colour of the window's bars
BASELINE_RGB = (0x9C, 0xA3, 0xAF)


# -- reports built by hand -------------------------------------------------------------


def _normal_shares(bins: int, centre: float, spread: float) -> list[float]:
    weights = [math.exp(-(((i + 0.5) / bins - centre) ** 2) / (2 * spread**2)) for i in range(bins)]
    total = sum(weights)
    return [w / total for w in weights]


def _numeric(name: str, *, drifted: bool, bins: int = 20, shift: float = 0.2) -> FeatureDrift:
    """Bins over [0, 10] as the check labels them: the outer two open-ended."""
    edges = [round(10 * i / bins, 2) for i in range(bins + 1)]
    labels = [f"[{edges[i]}, {edges[i + 1]})" for i in range(bins)]
    labels[0] = f"[-inf, {edges[1]})"
    labels[-1] = f"[{edges[-2]}, inf)"
    baseline = _normal_shares(bins, 0.5, 0.15)
    current = _normal_shares(bins, 0.5 + (shift if drifted else 0.01), 0.15)
    return FeatureDrift(
        name=name,
        kind="numeric",
        rows=5000,
        test="ks",
        statistic=0.31 if drifted else 0.02,
        p_value=1e-12 if drifted else 0.6,
        distance_name="wasserstein_normed",
        distance=0.4 + shift if drifted else 0.01,
        psi=0.42 if drifted else 0.01,
        psi_band="major" if drifted else "stable",
        missing_rate=0.02,
        baseline_missing_rate=0.01,
        missing_p_value=0.2,
        out_of_range=0.04 if drifted else 0.0,
        ks_error_bound=0.002,
        training_range=[0.2, 9.8],
        drifted=drifted,
        reasons=["KS p < 0.001 and distance 0.6 > 0.1"] if drifted else [],
        histogram=Histogram(bins=labels, baseline=baseline, current=current),
    )


def _categorical(name: str, *, drifted: bool, categories: list[str]) -> FeatureDrift:
    count = len(categories)
    baseline = [1 / count] * count
    current = [2 * (i + 1) / (count * (count + 1)) for i in range(count)] if drifted else baseline
    return FeatureDrift(
        name=name,
        kind="categorical",
        rows=5000,
        test="chi2",
        statistic=210.0 if drifted else 3.1,
        p_value=3e-9 if drifted else 0.7,
        distance_name="jensen_shannon",
        distance=0.35 if drifted else 0.02,
        psi=0.22 if drifted else 0.02,
        psi_band="moderate" if drifted else "stable",
        missing_rate=0.0,
        baseline_missing_rate=0.0,
        missing_p_value=1.0,
        unseen=0.03 if drifted else 0.0,
        drifted=drifted,
        reasons=["chi2 p < 0.001", "3.0% unseen categories"] if drifted else [],
        histogram=Histogram(bins=categories, baseline=baseline, current=current),
    )


def _history(verdicts: list[Verdict], metric: str | None = "roc_auc") -> list[HistoryPoint]:
    """Hourly windows ending with the report's own (09h), which the check puts last."""
    points = []
    for hour, verdict in enumerate(verdicts, start=10 - len(verdicts)):
        value = None if metric is None or hour in (2, 5) else 0.9 - 0.01 * hour
        points.append(
            HistoryPoint(
                window=f"2026-11-30T{hour:02d}-1h",
                verdict=verdict,
                rows=4000 + 100 * hour,
                drift_share=0.05 * hour,
                metric=metric if value is not None else None,
                metric_value=value,
            )
        )
    return points


# The check's own settings, as a report stores them (a few left out).
SETTINGS: dict[str, object] = {
    "window_hours": 1,
    "min_rows": 100,
    "p_value": 0.05,
    "drift_share": 0.5,
    "min_labelled_rows": 100,
    "max_metric_drop": 0.05,
}


def _report(
    *,
    verdict: Verdict,
    versions: list[VersionSection],
    history: list[HistoryPoint],
    reasons: list[str],
    skipped: list[FileProblem] | None = None,
    model: str = "churn",
    labels: LabelSummary | None = None,
) -> DriftReport:
    return DriftReport(
        model=model,
        window="2026-11-30T09-1h",
        start="2026-11-30T09:00:00Z",
        end="2026-11-30T10:00:00Z",
        verdict=verdict,
        reasons=reasons,
        rows=sum(section.rows for section in versions),
        capture_files=12,
        skipped_files=skipped or [],
        labels=labels
        or LabelSummary(files=2, labels=900, matched=850, unmatched=40, ambiguous=6, duplicates=4),
        versions=versions,
        history=history,
        settings=SETTINGS,
    )


def drifting_report() -> DriftReport:
    """Three drifted features (two numeric, one categorical), output drift, decay."""
    features = [
        _numeric("age", drifted=True, shift=0.25),
        _numeric("income", drifted=True, bins=100, shift=0.1),
        _numeric("tenure", drifted=False),
        _categorical("plan", drifted=True, categories=["basic", "standard", "premium", "pro"]),
        _categorical("region", drifted=False, categories=["north", "south", "east", "west"]),
    ]
    classes = ["no churn", "churn"]
    output = OutputDrift(
        what="predicted class",
        test="chi2",
        statistic=88.0,
        p_value=1e-9,
        distance_name="jensen_shannon",
        distance=0.12,
        psi=0.3,
        drifted=True,
        histogram=Histogram(bins=classes, baseline=[0.8, 0.2], current=[0.6, 0.4]),
        probability=Histogram(
            bins=[f"[{i / 10:.1f}, {(i + 1) / 10:.1f})" for i in range(10)],
            baseline=_normal_shares(10, 0.3, 0.2),
            current=_normal_shares(10, 0.5, 0.2),
        ),
        probability_class="churn",
    )
    performance = Performance(
        metric="roc_auc",
        labelled_rows=850,
        value=0.78,
        interval=[0.74, 0.81],
        method="bootstrap, 1000 resamples",
        training_value=0.9,
        threshold=0.85,
        decided=True,
        decayed=True,
        metrics={"roc_auc": 0.78, "accuracy": 0.81, "f1": 0.62, "log_loss": 0.44},
        checks=[
            _check("roc_auc", 0.78, [0.74, 0.81], training=0.9, threshold=0.85, decayed=True),
            _check("accuracy", 0.81, [0.78, 0.84], training=0.86, threshold=0.817),
            _check("f1", 0.62, [0.57, 0.67], training=0.71, threshold=0.6745),
        ],
    )
    section = VersionSection(
        version=3,
        rows=5000,
        resolution="percentiles",
        features=features,
        drifted_features=["age", "income", "plan"],
        drift_share=round(4 / 6, 6),  # three features and the prediction, of six columns
        output=output,
        performance=performance,
        verdict="decay",
        reasons=["roc_auc 0.78 [0.74, 0.81] below threshold 0.85", "3 of 5 features drifted"],
    )
    old = VersionSection(
        version=2,
        rows=300,
        resolution="deciles",
        features=[_numeric("age", drifted=False, bins=10), _numeric("tenure", drifted=False)],
        drifted_features=[],
        drift_share=0.0,
        output=None,
        performance=None,
        verdict="ok",
        reasons=[],
    )
    verdicts: list[Verdict] = [*("ok",) * 5, *("drift",) * 3, "decay", "decay"]
    return _report(
        verdict="decay",
        versions=[section, old],
        history=_history(verdicts),
        reasons=["version 3: roc_auc below threshold", "version 3: 3 of 5 features drifted"],
        skipped=[FileProblem(key="capture/churn/2026/11/30/09/bad.jsonl.gz", error="not gzip")],
    )


def _check(
    metric: str,
    value: float,
    interval: list[float],
    *,
    training: float,
    threshold: float,
    decayed: bool = False,
) -> MetricCheck:
    return MetricCheck(
        metric=metric,
        value=value,
        interval=interval,
        training_value=training,
        threshold=threshold,
        decayed=decayed,
    )


def multiclass_decay_report() -> DriftReport:
    """Three classes; the probability chart shows the first class's; accuracy decayed."""
    classes = ["setosa", "versicolor", "virginica"]
    features = [
        _numeric("petal_length", drifted=True),
        *(_numeric(name, drifted=False) for name in ("petal_width", "sepal_length", "sepal_width")),
    ]
    edges = [i / 20 for i in range(21)]
    output = OutputDrift(
        what="predicted class",
        test="chi2",
        statistic=4.0,
        p_value=0.13,
        distance_name="jensen_shannon",
        distance=0.05,
        psi=0.04,
        drifted=False,
        histogram=Histogram(bins=classes, baseline=[0.33, 0.34, 0.33], current=[0.3, 0.35, 0.35]),
        probability=Histogram(
            bins=[f"{a:.2f}-{b:.2f}" for a, b in itertools.pairwise(edges)],
            baseline=_normal_shares(20, 0.3, 0.2),
            current=_normal_shares(20, 0.4, 0.2),
        ),
        probability_class="setosa",
    )
    performance = Performance(
        metric="accuracy",
        labelled_rows=400,
        value=0.71,
        interval=[0.66, 0.76],
        method="Wilson, 0.975 each of 2 metrics (Bonferroni)",
        training_value=0.93,
        threshold=0.8835,
        decided=True,
        decayed=True,
        metrics={"accuracy": 0.71, "f1": 0.64},
        checks=[
            _check("accuracy", 0.71, [0.66, 0.76], training=0.93, threshold=0.8835, decayed=True),
            _check("f1", 0.64, [0.58, 0.7], training=0.92, threshold=0.874, decayed=True),
        ],
    )
    section = VersionSection(
        version=2,
        rows=400,
        resolution="percentiles",
        features=features,
        drifted_features=["petal_length"],
        drift_share=0.2,
        output=output,
        performance=performance,
        verdict="decay",
        reasons=["accuracy 0.71 (0.66-0.76) on 400 labelled rows, worse than training 0.93"],
    )
    return _report(
        verdict="decay",
        versions=[section],
        history=_history(["ok", "ok", "decay"], metric="accuracy"),
        reasons=["v2: accuracy 0.71 (0.66-0.76) on 400 labelled rows, worse than training 0.93"],
        model="iris",
    )


def few_rows_report() -> DriftReport:
    """The demo's case: 16 rows, where every test moves and most PSI bands read major."""
    features = [_numeric(f"feature_{i:02d}", drifted=i < 20) for i in range(30)]
    problem = Finding(
        kind="data_problem",
        column="feature_00",
        what="out_of_range",
        message="feature_00: 25% of values outside the training range [0.2, 9.8]",
        figures={"share": 0.25, "low": 0.2, "high": 9.8, "p_value": 0.001},
    )
    output = OutputDrift(
        what="predicted class",
        test="chi2",
        statistic=6.0,
        p_value=0.01,
        distance_name="jensen_shannon",
        distance=0.2,
        psi=0.5,
        drifted=True,
        histogram=Histogram(bins=["benign", "malignant"], baseline=[0.6, 0.4], current=[0.5, 0.5]),
    )
    section = VersionSection(
        version=1,
        rows=16,
        resolution="percentiles",
        features=features,
        drifted_features=[f.name for f in features if f.drifted],
        drift_share=round(21 / 31, 6),
        output=output,
        performance=None,
        verdict="insufficient_data",
        reasons=["16 rows; at least 100 are needed to judge drift", problem.message],
        findings=[problem],
    )
    return _report(
        verdict="insufficient_data",
        versions=[section],
        history=_history(["insufficient_data"], metric=None),
        reasons=["v1: 16 rows; at least 100 are needed to judge drift"],
        labels=LabelSummary(files=0, labels=0, matched=0, unmatched=0, ambiguous=0, duplicates=0),
        model="breast-cancer",
    )


def data_problem_report() -> DriftReport:
    """The drifting report, but one feature arrives in the wrong unit: a data problem."""
    import msgspec

    report = drifting_report()
    problem = Finding(
        kind="data_problem",
        column="age",
        what="out_of_range",
        message="age: 100% of values outside the training range [18, 95] (p=0); a unit bug?",
        figures={"share": 1.0, "low": 18.0, "high": 95.0, "p_value": 0.0},
    )
    section = msgspec.structs.replace(
        report.versions[0],
        verdict="data_problem",
        findings=[problem],
        reasons=[problem.message],
    )
    return msgspec.structs.replace(
        report,
        verdict="data_problem",
        versions=[section, *report.versions[1:]],
        reasons=[f"v3: {problem.message}"],
    )


def insufficient_report() -> DriftReport:
    """Nothing served: no versions, one window of history, no labels."""
    return _report(
        verdict="insufficient_data",
        versions=[],
        history=_history(["insufficient_data"], metric=None),
        reasons=["no captured rows in the window"],
        labels=LabelSummary(files=0, labels=0, matched=0, unmatched=0, ambiguous=0, duplicates=0),
    )


def hostile_report() -> DriftReport:
    """Feature names, categories, reasons and file keys written by an attacker."""
    feature = _categorical(
        HOSTILE, drifted=True, categories=[HOSTILE_CATEGORY, "<b>bold</b>", "x" * 300]
    )
    section = VersionSection(
        version=1,
        rows=100,
        resolution="percentiles",
        features=[feature, _numeric(f"{HOSTILE}&amp;", drifted=False)],
        drifted_features=[HOSTILE],
        drift_share=0.5,
        output=None,
        performance=None,
        verdict="drift",
        reasons=[f"{HOSTILE} drifted"],
    )
    return _report(
        verdict="drift",
        versions=[section],
        history=_history(["drift"]),
        reasons=[f"{HOSTILE} drifted"],
        skipped=[FileProblem(key=f"capture/{HOSTILE}", error=HOSTILE_CATEGORY)],
        model=f"m{HOSTILE}",
    )


def many_features_report(features: int = 30, bins: int = 100) -> DriftReport:
    """Every feature drifted over many bins: the page's worst case for size."""
    items = [_numeric(f"feature_{i:02d}", drifted=True, bins=bins) for i in range(features)]
    section = VersionSection(
        version=1,
        rows=5000,
        resolution="percentiles",
        features=items,
        drifted_features=[item.name for item in items],
        drift_share=1.0,
        output=None,
        performance=None,
        verdict="drift",
        reasons=["all features drifted"],
    )
    return _report(
        verdict="drift", versions=[section], history=_history(["drift"] * 10), reasons=["drift"]
    )


def expected_charts(report: DriftReport) -> int:
    """Charts the page should draw, counted from the report, not from the renderer."""
    charts = 1 if report.history else 0  # drift share over windows
    if any(point.metric_value is not None for point in report.history):
        charts += 1  # the metric over windows
    for section in report.versions:
        # A window with too few rows judges no feature, so draws none as drifted.
        if section.verdict != "insufficient_data":
            charts += min(12, sum(feature.drifted for feature in section.features))
        if section.output is not None:
            charts += 1 + (section.output.probability is not None)
        if section.performance is not None and section.performance.value is not None:
            charts += 1
    return charts


# -- the markup ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        drifting_report,
        data_problem_report,
        insufficient_report,
        hostile_report,
        multiclass_decay_report,
        few_rows_report,
    ],
)
def test_page_is_self_contained(build: Callable[[], DriftReport]) -> None:
    page = render_report(build())
    assert page.startswith("<!doctype html>")
    lowered = page.lower()
    assert "<script" not in lowered
    assert "javascript:" not in lowered
    # The SVG namespace names a vocabulary, it is not fetched; nothing else may be a URL.
    outside = lowered.replace(SVG_NAMESPACE, "")
    assert "http://" not in outside
    assert "https://" not in outside
    assert "url(" not in outside
    assert "<link" not in lowered
    assert "<img" not in lowered
    assert "@import" not in lowered
    page.encode("utf-8")


def test_hostile_strings_are_escaped_and_capped() -> None:
    page = render_report(hostile_report())
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    # Text that already looks like an entity is shown as written, not decoded.
    assert "&amp;amp;" in page
    # A 300-character category is cut to 40 characters and an ellipsis.
    assert "x" * 40 + "…" in page
    assert "x" * 300 not in page


def test_page_is_deterministic() -> None:
    assert render_report(drifting_report()) == render_report(drifting_report())
    assert render_report(drifting_report()).encode() == render_report(drifting_report()).encode()


def test_page_draws_one_chart_per_drifted_feature_and_the_trends() -> None:
    report = drifting_report()
    page = render_report(report)
    assert page.count('data-chart="feature"') == 3
    assert page.count('data-chart="output"') == 1
    assert page.count('data-chart="probability"') == 1
    assert page.count('data-chart="performance"') == 1
    assert page.count('data-chart="trend-drift"') == 1
    assert page.count('data-chart="trend-metric"') == 1
    assert page.count("<svg") == expected_charts(report) == 8
    assert ">Decay<" in page
    # The old version was trained before fine bins; the page says so in words.
    assert "checked more coarsely, over deciles" in page
    assert "bad.jsonl.gz" in page
    assert "not gzip" in page


def test_feature_table_lists_drifted_features_first_then_by_distance() -> None:
    page = render_report(drifting_report())
    table = page[page.index("<h3>Features</h3>") :]
    table = table[: table.index("</table>")]
    names = ("age", "income", "plan", "region", "tenure")
    order = [table.index(f"<td>{name} ") for name in names]
    assert order == sorted(order)


def test_a_window_without_versions_or_labels_says_so() -> None:
    report = insufficient_report()
    page = render_report(report)
    assert ">Insufficient data<" in page
    assert "No version served traffic in this window." in page
    assert "no labelled windows yet" in page
    assert "none uploaded" in page
    assert page.count("<svg") == expected_charts(report) == 1


def test_feature_charts_are_capped_at_twelve() -> None:
    page = render_report(many_features_report(features=15, bins=10))
    assert page.count('data-chart="feature"') == 12
    assert "and 3 more drifted features" in page


def test_a_large_report_renders_small_and_in_linear_time() -> None:
    def fastest(bins: int) -> float:
        report = many_features_report(features=30, bins=bins)
        times = []
        for _ in range(3):  # a busy moment slows one render, a slow path all three
            started = time.perf_counter()
            page = render_report(report)
            times.append(time.perf_counter() - started)
        assert len(page.encode()) < 1_500_000
        return min(times)

    # Four times the bins of 30 features: linear work takes about 4x, quadratic 16x.
    # Compared within this run, so a slow machine slows both alike.
    small, large = fastest(100), fastest(400)
    assert large < 8 * small + 0.01, (small, large)


def test_the_page_speaks_in_words_a_reader_knows() -> None:
    for build in (drifting_report, multiclass_decay_report, few_rows_report):
        page = render_report(build())
        for code_word in ("holding", "(decided)", "labelled</text>", "-inf", "inf)"):
            assert code_word not in page, (build.__name__, code_word)


def test_an_older_report_names_no_class_rather_than_guess_one() -> None:
    import msgspec

    report = drifting_report()
    section = report.versions[0]
    assert section.output is not None
    output = msgspec.structs.replace(section.output, probability_class=None)
    older = msgspec.structs.replace(
        report, versions=[msgspec.structs.replace(section, output=output)]
    )
    page = render_report(older)
    assert "Predicted probability <small>(this report does not name the class)</small>" in page
    assert "churn&quot;" not in page


# -- in a real browser -----------------------------------------------------------------


def _chromium_path() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    pytest.fail("install Debian's chromium (apt-get install chromium); .ci/run does")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, once for the module (it takes about a second to start)."""
    if os.environ.get("MLOPS_SKIP_BROWSER") == "1":
        pytest.skip("MLOPS_SKIP_BROWSER=1")
    path = _chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class Opened:
    """A page opened from a file, with every other request refused and recorded."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.outside: list[str] = []
        self.errors: list[str] = []


def _open(browser: Browser, html: str, path: Path) -> Opened:
    path.write_text(html, encoding="utf-8")
    url = path.as_uri()
    page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    opened = Opened(page, url)

    def refuse_outside(route: Route) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            opened.outside.append(route.request.url)
            route.abort()

    page.route("**/*", refuse_outside)
    page.on("request", lambda r: None if r.url == url else opened.outside.append(r.url))
    # A refused load (the page's own CSP, say) shows up as a console error.
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(str(e)))
    page.goto(url, wait_until="load")
    return opened


def _visible_svgs(page: Page) -> int:
    count = page.eval_on_selector_all(
        "svg",
        "els => els.filter(e => { const r = e.getBoundingClientRect();"
        " return r.width > 0 && r.height > 0; }).length",
    )
    assert isinstance(count, int)
    return count


def test_the_headline_of_a_data_problem_names_it_and_claims_nothing_is_like_training() -> None:
    page = render_report(data_problem_report())
    assert ">Data problem</span>" in page
    assert "the feed is broken: fix it, do not retrain on it" in page
    assert "look like training" not in page
    assert '<table class="table findings">' in page
    assert "age: 100% of values outside the training range [18, 95]" in page


def test_data_problem_page_in_a_browser_shows_the_verdict_and_the_finding(
    browser: Browser, tmp_path: Path
) -> None:
    opened = _open(browser, render_report(data_problem_report()), tmp_path / "problem.html")
    page = opened.page
    try:
        assert page.locator(".verdict-badge").inner_text().strip() == "Data problem"
        assert "fix it" in page.locator(".meaning").inner_text()
        finding = page.locator("table.findings tbody tr").first
        assert finding.is_visible()
        assert "age" in finding.inner_text()
        assert "outside the training range" in finding.inner_text()
        assert opened.outside == []
        assert opened.errors == []
    finally:
        page.close()


def test_page_in_a_browser_shows_the_verdict_and_its_charts(
    browser: Browser, tmp_path: Path
) -> None:
    report = drifting_report()
    opened = _open(browser, render_report(report), tmp_path / "report.html")
    page = opened.page
    try:
        badge = page.locator(".verdict-badge")
        assert badge.is_visible()
        assert badge.inner_text().strip() == "Decay"
        assert _visible_svgs(page) == expected_charts(report)

        # The first drifted feature's chart ("age", the farthest): a bar for every non-zero
        # share, each with a height, and as many as the histogram has non-zero shares.
        chart = page.locator('svg[data-chart="feature"]').first
        heights = [
            box["height"]
            for bar in chart.locator("rect.bar").all()
            if (box := bar.bounding_box()) is not None
        ]
        age = report.versions[0].features[0].histogram
        assert len(heights) == sum(share > 0 for share in [*age.baseline, *age.current])
        assert min(heights) > 0

        shot = page.screenshot(full_page=True)
        (tmp_path / "report.png").write_bytes(shot)
        (REPO / "build").mkdir(exist_ok=True)
        (REPO / "build" / "report-screenshot.png").write_bytes(shot)
        width, height, _ = _png_size(shot)
        assert width == 1280
        assert height > 1500  # the page is long: header, trends, two versions

        # The chart itself, decoded: both colours are really painted.
        pixels = _decode_png(chart.screenshot())
        assert _near(pixels, CURRENT_RGB) > 500
        assert _near(pixels, BASELINE_RGB) > 500
        assert sum(rgb != (255, 255, 255) for rgb in pixels) > len(pixels) // 20
        assert len(set(pixels)) > 20  # text antialiasing and two fills, not a flat image

        assert opened.outside == []
        assert opened.errors == []
    finally:
        page.close()


def _version_facts(page: Page) -> dict[str, str]:
    """The first version's facts as shown: {label: text}."""
    facts = page.locator("section.version").first.evaluate(
        "section => Object.fromEntries([...section.querySelectorAll('.facts > div')]"
        ".map(d => [d.querySelector('dt').innerText, d.querySelector('dd').innerText]))"
    )
    assert isinstance(facts, dict)
    return facts


def _metric_rows(page: Page) -> dict[str, list[str]]:
    """The metrics table as shown: {metric: [window, training, threshold, state]}."""
    rows = page.locator("table.metrics tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    assert isinstance(rows, list)
    return {row[0]: row[1:] for row in rows}


def test_page_in_a_browser_reads_its_counts_threshold_and_training_values(
    browser: Browser, tmp_path: Path
) -> None:
    opened = _open(browser, render_report(drifting_report()), tmp_path / "labels.html")
    page = opened.page
    try:
        # age, income and plan drifted, and the prediction: 4 of 5 features + 1 prediction.
        assert _version_facts(page)["drift share"] == (
            "4 of 6 columns (5 features and the prediction) · 66.7% (threshold 50.0%)"
        )

        # The threshold line (settings' drift_share, 0.5) is drawn at the 50% tick.
        trend = page.locator('svg[data-chart="trend-drift"]')
        reference = trend.locator("g.reference")
        assert reference.count() == 1
        assert reference.locator("text").text_content() == "threshold 50.0%"
        line = reference.locator("line").bounding_box()
        tick = trend.locator("text", has_text="50%").filter(has_not_text="threshold").bounding_box()
        assert line is not None
        assert tick is not None
        assert abs(line["y"] - (tick["y"] + tick["height"] / 2)) < 4

        assert page.locator("figcaption", has_text="Predicted probability").inner_text() == (
            'Predicted probability of class "churn"'
        )

        # Every metric beside its training value and threshold, as built above.
        rows = _metric_rows(page)
        assert rows["roc_auc"] == ["0.78 [0.74, 0.81]", "0.9", "0.85", "decayed"]
        assert rows["accuracy"] == ["0.81 [0.78, 0.84]", "0.86", "0.817", "no decay"]
        assert rows["f1"] == ["0.62 [0.57, 0.67]", "0.71", "0.6745", "no decay"]
        assert rows["log_loss"] == ["0.44", "—", "—", "no training value recorded"]
        assert page.locator("h3", has_text="Performance").locator(".pill").inner_text() == (
            "decayed"
        )

        # A numeric feature's bins read as ranges, on the scale it had at training.
        age = page.locator('svg[data-chart="feature"]').first
        assert age.locator("text.axis-title").text_content() == (
            "age: value ranges, in the column's own units (training range 0.2 to 9.8)"
        )
        assert "< 0.5" in age.locator("text").all_text_contents()
        # Every 2nd of the 20 bins is named under the axis; each bar's tooltip names its own.
        tips = age.locator("title").all_text_contents()
        assert tips[0].startswith("< 0.5: ")
        assert tips[-1].startswith("≥ 9.5: ")
        assert opened.errors == []
    finally:
        page.close()


def test_multiclass_page_in_a_browser_names_the_class_of_its_probability_chart(
    browser: Browser, tmp_path: Path
) -> None:
    opened = _open(browser, render_report(multiclass_decay_report()), tmp_path / "iris.html")
    page = opened.page
    try:
        figure = page.locator("figure", has=page.locator('svg[data-chart="probability"]'))
        assert figure.locator("figcaption").inner_text() == (
            'Predicted probability of class "setosa"'
        )
        assert figure.locator("text.axis-title").text_content() == (
            'predicted probability of class "setosa"'
        )
        assert _version_facts(page)["drift share"] == (
            "1 of 5 columns (4 features and the prediction) · 20.0% (threshold 50.0%)"
        )
        rows = _metric_rows(page)
        assert rows["accuracy"] == ["0.71 [0.66, 0.76]", "0.93", "0.8835", "decayed"]
        assert rows["f1"] == ["0.64 [0.58, 0.7]", "0.92", "0.874", "decayed"]
        assert opened.errors == []
    finally:
        page.close()


def test_a_window_with_too_few_rows_paints_no_drift_in_a_browser(
    browser: Browser, tmp_path: Path
) -> None:
    report = few_rows_report()
    opened = _open(browser, render_report(report), tmp_path / "few.html")
    page = opened.page
    try:
        assert page.locator(".verdict-badge").inner_text().strip() == "Insufficient data"
        version = page.locator("section.version")
        # No badge, pill, highlight or chart says drift, nor any PSI band, for 16 rows.
        assert version.locator(".badge").all_inner_texts() == ["Insufficient data"]
        for painted in (".pill.bad", ".pill.major", ".pill.moderate", ".pill.stable"):
            assert version.locator(painted).count() == 0, painted
        assert version.locator("tr.drifted").count() == 0
        assert page.locator('svg[data-chart="feature"]').count() == 0
        assert _visible_svgs(page) == expected_charts(report)
        text = version.inner_text()
        assert "major" not in text
        assert "drifted features" not in text
        # What is shown instead says why, with the counts.
        assert _version_facts(page)["drift"] == "not judged"
        assert version.locator(".not-judged").inner_text() == (
            "Drift not judged: 16 rows in this window; at least 100 are needed. The figures "
            "below are what those rows show, not a verdict."
        )
        states = version.locator("table.features tbody tr td:last-child").all_inner_texts()
        assert states == ["not judged"] * 30
        finding = version.locator("table.findings tbody tr").first
        assert finding.locator("td").first.inner_text() == "not judged"
        assert version.locator("h3", has_text="Output drift").inner_text().strip() == (
            "Output drift"
        )
        assert opened.outside == []
        assert opened.errors == []
    finally:
        page.close()


def test_blank_page_screenshot_compresses_to_nothing(browser: Browser, tmp_path: Path) -> None:
    """The size check above means something: an empty page of that size is tiny."""
    report = drifting_report()
    opened = _open(browser, render_report(report), tmp_path / "report.html")
    try:
        drawn = opened.page.screenshot(full_page=True)
        height = _png_size(drawn)[1]
        opened.page.set_viewport_size({"width": 1280, "height": height})
        opened.page.set_content("<!doctype html><body style='background:#fff'></body>")
        blank = opened.page.screenshot(full_page=True)
        assert len(drawn) > 10 * len(blank)
    finally:
        opened.page.close()


def test_the_network_guard_would_see_a_fetch(browser: Browser, tmp_path: Path) -> None:
    """The zero-request checks mean something: a page that fetches is caught."""
    html = render_report(insufficient_report()).replace(
        "</main>", '<img src="https://example.invalid/x.png"></main>'
    )
    opened = _open(browser, html, tmp_path / "fetching.html")
    try:
        # Chromium reports the request even when the page's own Content-Security-Policy
        # refuses it (and the route would abort it if that policy were ever dropped).
        assert "https://example.invalid/x.png" in opened.outside
        assert opened.errors
    finally:
        opened.page.close()


def test_hostile_page_in_a_browser_runs_nothing_and_fetches_nothing(
    browser: Browser, tmp_path: Path
) -> None:
    report = hostile_report()
    opened = _open(browser, render_report(report), tmp_path / "hostile.html")
    page = opened.page
    try:
        assert page.locator("script").count() == 0
        assert page.locator("img").count() == 0
        assert page.locator(".verdict-badge").inner_text().strip() == "Drift"
        # The attacker's name is shown as text.
        assert HOSTILE in page.locator("table.features").inner_text()
        assert _visible_svgs(page) == expected_charts(report)
        assert opened.outside == []
        assert opened.errors == []
    finally:
        page.close()


# -- PNG, just enough to read Chromium's screenshots -----------------------------------


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        yield kind, data[offset + 8 : offset + 8 + length]
        offset += 12 + length


def _png_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, bytes per pixel) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    for kind, body in _png_chunks(data):
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8, depth
            assert colour in (2, 6), colour  # RGB or RGBA
            assert interlace == 0
            return width, height, 3 if colour == 2 else 4
    raise AssertionError("PNG without IHDR")


def _decode_png(data: bytes) -> list[tuple[int, int, int]]:
    """The pixels (RGB, alpha dropped) of an 8-bit RGB(A) PNG, undoing the five filters."""
    width, height, bpp = _png_size(data)
    raw = zlib.decompress(b"".join(body for kind, body in _png_chunks(data) if kind == b"IDAT"))
    stride = width * bpp
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        row = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                row[i] = (row[i] + previous[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + (left + previous[i]) // 2) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b = previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                nearest = a if pa <= pb and pa <= pc else b if pb <= pc else c
                row[i] = (row[i] + nearest) & 0xFF
        else:
            assert kind == 0, f"unknown PNG filter {kind}"
        pixels.extend((row[i], row[i + 1], row[i + 2]) for i in range(0, stride, bpp))
        previous = row
    return pixels


def _near(pixels: list[tuple[int, int, int]], rgb: tuple[int, int, int]) -> int:
    return sum(all(abs(c - t) <= 6 for c, t in zip(pixel, rgb, strict=True)) for pixel in pixels)
