"""Window verdicts a user can trust: each case built to produce one verdict, seeded.

The windows come from benchmarks/verdicts.py (30 features of four kinds, three
predicted classes); expected figures come from numpy and scikit-learn, never from the
code under test.
"""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from benchmarks import verdicts as sim
from shared.data.spec import MonitoringSettings
from shared.monitoring.assessment import assess_version
from shared.monitoring.performance import decay_threshold, measure
from shared.monitoring.report import VERDICT_ORDER, DriftReport, decode_report, encode_report
from shared.monitoring.summary import Baseline


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return Baseline(sim.metadata())


def _window(rows: int, seed: int) -> sim.Columns:
    return sim.draw(rows, np.random.default_rng(seed))


@pytest.mark.parametrize("rows", [50, 500, 50_000])
def test_unchanged_windows_are_ok_at_every_size(baseline: Baseline, rows: int) -> None:
    # min_rows 10: the 50-row windows get a verdict too, rather than insufficient_data.
    settings = MonitoringSettings(min_rows=10)
    flagged = tested = 0
    for seed in range(20):
        section = sim.judge(baseline, _window(rows, 1000 + seed), settings)
        assert section.verdict == "ok", (rows, seed, section.reasons)
        assert section.findings == []
        flagged += len(section.drifted_features)
        tested += len(section.features)
    # 600 per-feature tests at a nominal 5%: 30 expected, 46 is 3 sd above.
    assert flagged <= 46, (rows, flagged)


def test_a_feature_sent_in_centimetres_is_a_data_problem_that_names_it(
    baseline: Baseline,
) -> None:
    training = sim.draw(sim.TRAINING_ROWS, np.random.default_rng(0))["n4"]
    columns = _window(300, 11)
    columns["n4"] = columns["n4"] / 10  # millimetres expected, centimetres sent
    section = sim.judge(baseline, columns, MonitoringSettings())
    assert section.verdict == "data_problem"
    (problem,) = [f for f in section.findings if f.kind == "data_problem"]
    assert (problem.column, problem.what) == ("n4", "out_of_range")
    assert problem.figures["share"] == 1.0  # every value is below the training minimum
    low, high = float(np.min(training)), float(np.max(training))
    assert problem.figures["low"] == pytest.approx(low)
    assert problem.figures["high"] == pytest.approx(high)
    assert problem.message.startswith(
        f"n4: 100% of values outside the training range [{low:.4g}, {high:.4g}]"
    )
    assert any(reason.startswith("n4: 100% of values outside") for reason in section.reasons)


def test_one_feature_shifted_by_two_sd_on_200_rows_is_drift(baseline: Baseline) -> None:
    for seed in range(20):
        columns = _window(200, 2000 + seed)
        columns["n4"] = columns["n4"] + 2 * 2.0  # the normal features' sd is 2
        section = sim.judge(baseline, columns, MonitoringSettings())
        assert section.verdict == "drift", (seed, section.reasons)
        assert [(f.kind, f.column) for f in section.findings] == [("drift", "n4")]


def test_a_jump_in_the_missing_share_is_a_data_problem(baseline: Baseline) -> None:
    columns = _window(500, 12)
    columns["s5"][:150] = np.nan  # 30% missing, none at training
    section = sim.judge(baseline, columns, MonitoringSettings())
    assert section.verdict == "data_problem"
    (problem,) = section.findings
    assert (problem.column, problem.what) == ("s5", "missing_share")
    assert problem.figures["share"] == pytest.approx(150 / 500)


def test_categories_the_model_never_saw_in_bulk_are_a_data_problem(baseline: Baseline) -> None:
    columns = _window(500, 13)
    columns["c3"][:200] = "NEW"  # 40% of a code the model was never trained on
    section = sim.judge(baseline, columns, MonitoringSettings())
    assert section.verdict == "data_problem"
    assert [(f.column, f.what) for f in section.findings if f.kind == "data_problem"] == [
        ("c3", "unseen_categories")
    ]
    few = _window(500, 13)
    few["c3"][:3] = "NEW"  # a handful of new codes: not a broken feed
    assert sim.judge(baseline, few, MonitoringSettings()).verdict == "ok"


def test_a_predicted_class_that_vanishes_is_not_ok(baseline: Baseline) -> None:
    columns = _window(300, 14)
    answered = sim.predict(columns)
    assert (answered == "c").mean() > 0.2  # about a third of the rows, before
    answered = np.where(answered == "c", "b", answered)
    section = sim.judge(baseline, columns, MonitoringSettings(), answered)
    assert section.verdict == "drift"
    (finding,) = section.findings
    assert finding.column == "prediction"
    assert "'c'" in finding.message


def test_a_concept_change_seen_by_accuracy_but_not_auc_is_decay(baseline: Baseline) -> None:
    meta = sim.labelled_metadata()
    # The truth's boundary moved and 2% of labels are noise: the scores still rank the
    # rows well, but the answers at the old threshold are wrong more often.
    rows = sim.labelled(1000, np.random.default_rng(3), boundary=0.55, noise=0.02)
    truth = [r.label == "yes" for r in rows]
    answered = [r.prediction == "yes" for r in rows]
    scores = [(r.probabilities or {})["yes"] for r in rows]
    accuracy, auc = accuracy_score(truth, answered), roc_auc_score(truth, scores)
    assert accuracy < 0.8 < 0.95 * meta.metrics["accuracy"]
    assert auc > 0.95 * meta.metrics["roc_auc"]  # the primary metric alone says all is well
    performance = measure(meta, rows, MonitoringSettings())
    primary = next(c for c in performance.checks if c.metric == "roc_auc")
    assert not primary.decayed
    columns = _window(1000, 15)
    section = assess_version(
        Baseline(meta),
        sim.counts(Baseline(meta), columns, sim.predict(columns)),
        performance,
        MonitoringSettings(),
    )
    assert section.verdict == "decay"
    decayed = {f.column for f in section.findings if f.kind == "decay"}
    assert "accuracy" in decayed
    assert "roc_auc" not in decayed
    accuracy_check = next(c for c in performance.checks if c.metric == "accuracy")
    assert accuracy_check.value == pytest.approx(accuracy)


def test_unchanged_labelled_rows_do_not_decay() -> None:
    for rows in (100, 500, 2000):
        decayed, by = sim.false_decays(rows, 20, MonitoringSettings())
        assert decayed == 0, (rows, by)


def test_the_decay_threshold_is_relative_to_the_size_of_the_training_figure() -> None:
    # Hand-computed: 5% of |-0.4| below -0.4; 5% above an RMSE of 2; 5% below 0.9.
    assert decay_threshold(-0.4, "r2", 0.05) == pytest.approx(-0.42)
    assert decay_threshold(2.0, "rmse", 0.05) == pytest.approx(2.1)
    assert decay_threshold(0.9, "accuracy", 0.05) == pytest.approx(0.855)


def test_a_data_problem_ranks_worst() -> None:
    assert VERDICT_ORDER[0] == "data_problem"
    assert VERDICT_ORDER.index("decay") < VERDICT_ORDER.index("drift")


def test_a_report_written_before_findings_still_decodes(baseline: Baseline) -> None:
    from tests.test_report_html import drifting_report

    report = drifting_report()
    old = msgspec.to_builtins(report)
    for version in old["versions"]:
        version.pop("findings")
        if version["performance"] is not None:
            version["performance"].pop("checks")
    decoded = decode_report(msgspec.json.encode(old), "old")
    assert isinstance(decoded, DriftReport)
    assert decoded.versions[0].findings == []
    assert decode_report(encode_report(report), "new") == report
