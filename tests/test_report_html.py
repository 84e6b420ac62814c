"""The monitoring report's HTML page: self-contained, escaped, deterministic, and drawn.

The static tests read the markup; the browser tests open it in Debian's headless
Chromium (Playwright cannot download its own browser here) with every request outside
the page refused, and check that the charts are really painted.
"""

from __future__ import annotations

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
    edges = [round(10 * i / bins, 2) for i in range(bins + 1)]
    labels = [f"[{edges[i]}, {edges[i + 1]})" for i in range(bins)]
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
        settings={"alpha": 0.001, "psi_major": 0.25, "window_hours": 1},
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
        metrics={"roc_auc": 0.78, "accuracy": 0.81, "log_loss": 0.44},
    )
    section = VersionSection(
        version=3,
        rows=5000,
        resolution="percentiles",
        features=features,
        drifted_features=["age", "income", "plan"],
        drift_share=0.6,
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
        charts += min(12, sum(feature.drifted for feature in section.features))
        if section.output is not None:
            charts += 1 + (section.output.probability is not None)
        if section.performance is not None and section.performance.value is not None:
            charts += 1
    return charts


# -- the markup ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build", [drifting_report, data_problem_report, insufficient_report, hostile_report]
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


def test_a_large_report_renders_small_and_fast() -> None:
    report = many_features_report(features=30, bins=100)
    started = time.perf_counter()
    page = render_report(report)
    elapsed = time.perf_counter() - started
    assert len(page.encode()) < 1_500_000
    assert elapsed < 2.0


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
