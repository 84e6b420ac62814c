"""Text shown to people cannot run in a spreadsheet; numbers and training inputs stay as read."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.data.cells import inert
from shared.monitoring.html import render_report
from shared.monitoring.report import VersionSection
from shared.registry.metadata import decode_metadata
from shared.registry.records import version_prefix
from shared.store.local import LocalStore
from shared.training.job import train_from_dataset
from shared.training.model_card import render_model_card
from tests.factories import to_csv
from tests.test_report_html import _categorical, _history, _report

FORMULAS = [
    '=HYPERLINK("http://x","y")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd",
    "@SUM(A1)",
    "\t=1+1",
    "=1",
]
NOT_FORMULAS = ["-1.5", "+3", "-1e5", "-", "+", "north", "", "a=b", "1-2"]


@pytest.mark.parametrize("text", FORMULAS)
def test_text_a_spreadsheet_would_run_gets_an_apostrophe(text: str) -> None:
    assert inert(text) == "'" + text


@pytest.mark.parametrize("text", NOT_FORMULAS)
def test_numbers_and_plain_text_are_left_alone(text: str) -> None:
    assert inert(text) == text


def test_the_monitoring_page_shows_formulas_inert() -> None:
    feature = _categorical("=cmd|' /C calc'!A0", drifted=True, categories=["@SUM(A1)", "-5"])
    section = VersionSection(
        version=1,
        rows=100,
        resolution="percentiles",
        features=[feature],
        drifted_features=[feature.name],
        drift_share=1.0,
        output=None,
        performance=None,
        verdict="drift",
        reasons=[],
    )
    page = render_report(
        _report(verdict="drift", versions=[section], history=_history(["drift"]), reasons=[])
    )
    # The apostrophe is escaped like every other character from the report.
    assert "<td>&#x27;=cmd|&#x27; /C calc&#x27;!A0 <small>" in page
    assert ">=cmd" not in page
    assert ">&#x27;@SUM(A1)</text>" in page
    assert ">@SUM" not in page
    assert ">-5</text>" in page  # a number


def test_the_model_card_shows_formulas_inert_and_training_data_is_kept_as_read(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "s")
    rows = [
        [float(i % 10), "=1+1" if i % 3 else "north", "@yes" if i % 2 else "-no"] for i in range(60)
    ]
    store.put("datasets/m/a.csv", to_csv(["-x", "=zone", "target"], rows))
    outcome = train_from_dataset(store, "datasets/m/a.csv", trigger="test")
    assert outcome.status in ("registered", "rejected"), outcome.reason
    meta = decode_metadata(store.get(version_prefix("m", 1) + "metadata.json").body)
    # What the model learnt and serves is the data as written...
    assert [f.name for f in meta.features] == ["-x", "=zone"]
    assert meta.features[1].categories == ["=1+1", "north"]
    assert meta.classes == ["-no", "@yes"]
    # ...and what people read is inert.
    card = render_model_card(meta)
    assert "| '-x | numeric |" in card
    assert "| '=zone | categorical |" in card
    assert "classes: '-no, '@yes" in card
