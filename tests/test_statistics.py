"""The monitoring statistics against scipy and scikit-learn, the independent truth.

scipy and scikit-learn are dev dependencies only: shared/monitoring/statistics.py may not
import them, so every function there is checked against them here, on seeded data.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
import scipy.stats
from scipy.spatial.distance import jensenshannon
from sklearn import metrics

from shared.monitoring.statistics import (
    KsResult,
    TestResult,
    accuracy,
    bootstrap_interval,
    chi2_contingency,
    chi2_sf,
    f1,
    jensen_shannon,
    kolmogorov_sf,
    ks_binned,
    log_loss,
    mae,
    normal_quantile,
    psi,
    r2,
    rmse,
    roc_auc,
    two_proportions,
    wasserstein_binned,
    wilson_interval,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _quantile_edges(reference: FloatArray, bins: int) -> FloatArray:
    """The interior edges of `bins` reference quantile bins, as the profile stores them."""
    edges: FloatArray = np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return edges


def _histogram(edges: FloatArray, values: FloatArray) -> IntArray:
    """Counts over bins (edge i-1, edge i]: searchsorted 'left' counts the edges below a value."""
    counts: IntArray = np.bincount(
        np.searchsorted(edges, values, side="left"), minlength=edges.size + 1
    ).astype(np.int64)
    return counts


# --- distributions -------------------------------------------------------------------------


def test_kolmogorov_sf_matches_scipy() -> None:
    x = np.concatenate([np.linspace(0.005, 1.5, 300), np.linspace(1.5, 8.0, 300)])
    ours = np.array([kolmogorov_sf(float(v)) for v in x])
    # Both series branches, and the switch between them at x = 1, to 1e-12 relative
    # (measured: 1e-14), down to the tail at x = 8 where P is 5e-56.
    np.testing.assert_allclose(ours, scipy.stats.kstwobign.sf(x), rtol=1e-12, atol=0)
    assert kolmogorov_sf(0.0) == 1.0
    assert kolmogorov_sf(-1.0) == 1.0
    assert kolmogorov_sf(0.01) == 1.0


def test_chi2_sf_matches_scipy_to_1e_10_relative() -> None:
    dofs = [*range(1, 31), 37, 50, 99, 100, 101, 199, 250, 333, 499, 500]
    x = np.concatenate(
        [[0.0, 1e-9, 1e-3], np.linspace(0.05, 60.0, 80), np.geomspace(60.0, 5000.0, 60)]
    )
    for dof in dofs:
        truth = scipy.stats.chi2.sf(x, dof)
        ours = np.array([chi2_sf(float(v), dof) for v in x])
        representable = truth > 1e-290
        # Measured worst over a denser grid: 3.4e-13 relative.
        np.testing.assert_allclose(ours[representable], truth[representable], rtol=1e-10)
        # Where scipy underflows to (nearly) zero, so do we.
        assert np.all(ours[~representable] < 1e-280)
    assert chi2_sf(-1.0, 3) == 1.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        chi2_sf(1.0, 0)


def test_normal_quantile_matches_scipy() -> None:
    p = np.concatenate(
        [
            np.geomspace(1e-300, 0.02425, 300),  # lower tail, down to the smallest floats
            np.linspace(0.001, 0.999, 999),  # the central branch
            1.0 - np.geomspace(1e-15, 0.02425, 100),  # upper tail, by symmetry
        ]
    )
    ours = np.array([normal_quantile(float(v)) for v in p])
    # Acklam alone is good to 1.15e-9; with the Halley step, measured 1.4e-14 at |x| = 34.
    np.testing.assert_allclose(ours, scipy.stats.norm.ppf(p), rtol=1e-12, atol=1e-12)
    assert normal_quantile(0.5) == 0.0
    assert normal_quantile(0.0) == -math.inf
    assert normal_quantile(1.0) == math.inf
    with pytest.raises(ValueError, match="probability"):
        normal_quantile(1.5)


# --- intervals -----------------------------------------------------------------------------


def test_wilson_interval_known_values() -> None:
    # 8 of 10 at 95% (z = 1.959964): centre (8 + z^2/2) / (10 + z^2) = 0.71675, half-width
    # z sqrt(8 * 2 / 10 + z^2 / 4) / (10 + z^2) = 0.22657.
    low, high = wilson_interval(8, 10, 0.95)
    assert low == pytest.approx(0.4902, abs=5e-5)
    assert high == pytest.approx(0.9433, abs=5e-5)
    # 0 of 10: the interval is [0, z^2 / (n + z^2)] exactly.
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10, 0.95) == pytest.approx((0.0, z2 / (10 + z2)), abs=1e-12)
    # 10 of 10 mirrors it.
    assert wilson_interval(10, 10, 0.95) == pytest.approx((10 / (10 + z2), 1.0), abs=1e-12)
    # 50 of 100 at 90% (z = 1.644854): symmetric about one half.
    low, high = wilson_interval(50, 100, 0.90)
    assert (low + high) / 2 == pytest.approx(0.5, abs=1e-12)
    assert high - low == pytest.approx(2 * 1.644854 * math.sqrt(25 + 0.676388) / 102.705545, 1e-5)
    assert wilson_interval(0, 0, 0.95) == (0.0, 1.0)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, 1.0)


def test_bootstrap_interval_is_deterministic_and_contains_the_estimate() -> None:
    rng = np.random.default_rng(11)
    truth = rng.integers(0, 2, size=4000)
    score = truth + rng.normal(0.0, 1.0, size=4000)
    positive = truth == 1

    def auc_on(rows: IntArray) -> float:
        return roc_auc(positive[rows], score[rows])

    estimate = roc_auc(positive, score)
    low, high = bootstrap_interval(auc_on, truth.size, 0.95, resamples=100, seed=5)
    assert low < estimate < high
    # A 95% interval of an AUC near 0.76 on 4000 rows is about +-0.015 wide.
    assert 0.005 < high - low < 0.06
    assert bootstrap_interval(auc_on, truth.size, 0.95, resamples=100, seed=5) == (low, high)
    assert bootstrap_interval(auc_on, truth.size, 0.95, resamples=100, seed=6) != (low, high)


def test_bootstrap_interval_skips_nan_resamples() -> None:
    calls: list[int] = []

    def sometimes_nan(rows: IntArray) -> float:
        calls.append(rows.size)
        return math.nan if len(calls) % 2 else float(np.mean(rows))

    low, high = bootstrap_interval(sometimes_nan, 10, 0.9, resamples=40, seed=1)
    assert len(calls) == 40
    assert all(size == 10 for size in calls)
    assert 0.0 <= low <= high <= 9.0
    assert all(math.isnan(v) for v in bootstrap_interval(lambda _: math.nan, 5, 0.9, 10))
    assert all(math.isnan(v) for v in bootstrap_interval(sometimes_nan, 0, 0.9))


# --- two-sample tests ----------------------------------------------------------------------


def test_ks_binned_with_a_bin_per_value_is_the_exact_statistic() -> None:
    rng = np.random.default_rng(1)
    # Rounded values: many ties, within and across the samples.
    reference = np.round(rng.normal(0.0, 1.0, size=2000), 1)
    current = np.round(rng.normal(0.2, 1.0, size=300), 1)
    edges = np.unique(np.concatenate([reference, current]))  # one bin per distinct value
    result = ks_binned(_histogram(edges, reference), _histogram(edges, current))
    exact = scipy.stats.ks_2samp(reference, current, method="asymp")
    assert result.statistic == pytest.approx(exact.statistic, abs=1e-14)
    # scipy's asymptotic p uses kstwo(round(en)); ours, kstwobign with Stephens' correction.
    # They differ by at most 0.008 over 200 seeded pairs of this size (measured), so 0.01.
    assert result.p_value == pytest.approx(exact.pvalue, abs=0.01)


def test_ks_binned_brackets_the_exact_statistic_on_quantile_bins() -> None:
    rng = np.random.default_rng(2)
    en_root = math.sqrt(5000 * 500 / 5500)
    for shift in (0.0, 0.1, 0.2, 0.3):
        reference = rng.normal(0.0, 1.0, size=5000)
        current = rng.normal(shift, 1.0, size=500)
        edges = _quantile_edges(reference, 100)
        result = ks_binned(_histogram(edges, reference), _histogram(edges, current))
        exact = scipy.stats.ks_2samp(reference, current, method="asymp")
        assert result.statistic <= exact.statistic <= result.statistic + result.error_bound
        assert result.error_bound <= 0.0101  # one reference percentile, plus quantile ties
        # The p-value of the exact statistic lies between ours and the one at the upper
        # bound (loose: 0.01 allows for scipy's different asymptotic formula; never needed
        # over 200 measured pairs).
        upper = kolmogorov_sf(
            (en_root + 0.12 + 0.11 / en_root) * (result.statistic + result.error_bound)
        )
        assert upper - 0.01 <= exact.pvalue <= result.p_value + 0.01


def test_ks_binned_error_bound_is_attained() -> None:
    # One bin, each sample all at one end of it: binned D = 0, exact D = 1 = min(1, 1).
    assert ks_binned([5], [7]) == KsResult(statistic=0.0, p_value=1.0, error_bound=1.0)
    # Shares 0.6/0.4 and 0.2/0.8: D = 0.4 at the middle boundary. In bin 2, with the
    # reference's 0.4 at its left end and the current's 0.8 at its right end, the exact
    # difference reaches 1.0 - 0.2 = 0.8 = D + min(0.4, 0.8).
    result = ks_binned([6, 4], [2, 8])
    assert result.statistic == pytest.approx(0.4)
    assert result.error_bound == pytest.approx(0.4)
    reference = np.array([1.0] * 6 + [2.0] * 4)
    current = np.array([1.5] * 2 + [3.0] * 8)
    exact = scipy.stats.ks_2samp(reference, current).statistic
    assert exact == pytest.approx(result.statistic + result.error_bound)


def test_ks_binned_degenerate_inputs() -> None:
    assert ks_binned([0, 0, 0], [1, 2, 3]) == KsResult(0.0, 1.0, 0.0)
    assert ks_binned([1, 2, 3], [0, 0, 0]) == KsResult(0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="same bins"):
        ks_binned([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        ks_binned([1, -2], [1, 2])


def test_ks_binned_false_alarms_and_power() -> None:
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(200):
        reference = rng.normal(0.0, 1.0, size=5000)
        current = rng.normal(0.0, 1.0, size=500)
        edges = _quantile_edges(reference, 100)
        alarms += ks_binned(_histogram(edges, reference), _histogram(edges, current)).p_value < 0.05
    # Nominal 5% (binning only lowers D). Measured 5.0% on this seed, 4.0% and 6.0% on two
    # others; the binomial sd of 200 pairs at 5% is 1.5 points, so 8% is two sd above.
    assert alarms <= 16
    reference = rng.normal(0.0, 1.0, size=5000)
    current = rng.normal(0.5, 1.0, size=500)
    edges = _quantile_edges(reference, 100)
    shifted = ks_binned(_histogram(edges, reference), _histogram(edges, current))
    assert shifted.p_value < 1e-6  # measured 9e-16


def test_chi2_contingency_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    for categories in (2, 3, 10, 40):
        probabilities = rng.dirichlet(np.ones(categories))
        reference = rng.multinomial(3000, probabilities)
        current = rng.multinomial(400, rng.dirichlet(probabilities * 50))
        reference[0] = current[0] = 0  # a column empty in both samples is dropped
        ours = chi2_contingency(reference, current)
        seen = (reference + current) > 0
        table = np.vstack([reference[seen], current[seen]])
        if table.shape[1] < 2:
            continue
        truth = scipy.stats.chi2_contingency(table, correction=False)
        assert ours.statistic == pytest.approx(truth.statistic, rel=1e-12)
        assert ours.p_value == pytest.approx(truth.pvalue, rel=1e-10, abs=1e-300)


def test_chi2_contingency_edge_cases() -> None:
    # One row of a category the reference never saw: a small effect, not p = 0.
    unseen = chi2_contingency([1000, 0], [99, 1])
    assert 0.0 < unseen.p_value < 1.0
    truth = scipy.stats.chi2_contingency([[1000, 0], [99, 1]], correction=False)
    assert unseen.p_value == pytest.approx(truth.pvalue, rel=1e-10)
    assert chi2_contingency([5, 0, 0], [3, 0, 0]) == TestResult(0.0, 1.0)  # one column left
    assert chi2_contingency([0, 0], [3, 4]) == TestResult(0.0, 1.0)
    assert chi2_contingency([], []) == TestResult(0.0, 1.0)


@pytest.mark.parametrize("categories", [10, 50])
def test_chi2_contingency_false_alarms(categories: int) -> None:
    rng = np.random.default_rng(categories)
    probabilities = rng.dirichlet(np.full(categories, 5.0))
    alarms = sum(
        chi2_contingency(
            rng.multinomial(5000, probabilities), rng.multinomial(500, probabilities)
        ).p_value
        < 0.05
        for _ in range(200)
    )
    # Nominal 5%. Measured on this seed 3.0% (10 categories) and 4.0% (50, where expected
    # counts of the current sample go down to 1.4); 6.0-6.5% on other seeds.
    assert alarms <= 18


def test_chi2_contingency_power_on_a_shift() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(0.0, 1.0, size=5000)
    current = rng.normal(0.5, 1.0, size=500)
    edges = _quantile_edges(reference, 10)
    result = chi2_contingency(_histogram(edges, reference), _histogram(edges, current))
    assert result.p_value < 1e-6


def test_two_proportions_matches_the_2x2_chi_square() -> None:
    # 50/100 against 30/100: pooled 0.4, se sqrt(0.4 * 0.6 * 0.02), z = 0.2 / 0.069282.
    result = two_proportions(50, 100, 30, 100)
    assert result.statistic == pytest.approx(2.886751, rel=1e-6)
    # z^2 is the 2 x 2 chi-square statistic, with the same two-sided p-value.
    truth = scipy.stats.chi2_contingency([[50, 50], [30, 70]], correction=False)
    assert result.statistic**2 == pytest.approx(truth.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(truth.pvalue, rel=1e-10)
    assert two_proportions(30, 100, 50, 100).statistic == pytest.approx(-2.886751, rel=1e-6)
    assert two_proportions(0, 0, 3, 10) == TestResult(0.0, 1.0)
    assert two_proportions(0, 10, 0, 20) == TestResult(0.0, 1.0)
    assert two_proportions(10, 10, 20, 20) == TestResult(0.0, 1.0)
    with pytest.raises(ValueError, match="0 <= x <= n"):
        two_proportions(11, 10, 0, 20)


# --- distances -----------------------------------------------------------------------------


def test_psi_hand_computed() -> None:
    # Shares 0.5/0.3/0.2 -> 0.4/0.3/0.3:
    # (0.4 - 0.5) ln(0.8) + 0 + (0.3 - 0.2) ln(1.5) = 0.0223144 + 0.0405465.
    assert psi([50, 30, 20], [40, 30, 30]) == pytest.approx(0.0628609, abs=1e-7)
    # An empty reference bin is floored at 1e-4: (0.9 - 1) ln(0.9) + (0.1 - 1e-4) ln(1000).
    assert psi([100, 0], [90, 10]) == pytest.approx(0.0105361 + 0.6900848, abs=1e-6)
    assert psi([100, 0], [90, 10], epsilon=0.01) == pytest.approx(
        0.0105361 + 0.09 * math.log(10), abs=1e-6
    )
    assert psi([3, 5, 2], [6, 10, 4]) == 0.0
    assert psi([0, 0], [1, 2]) == 0.0


def test_jensen_shannon_matches_scipy() -> None:
    rng = np.random.default_rng(6)
    for _ in range(20):
        reference = rng.integers(0, 50, size=12)
        current = rng.integers(0, 50, size=12)
        reference[rng.integers(0, 12)] = 0  # zero bins in one sample only
        truth = jensenshannon(reference, current, base=2)
        assert jensen_shannon(reference, current) == pytest.approx(truth, rel=1e-12)
    assert jensen_shannon([3, 0], [0, 5]) == pytest.approx(1.0)  # disjoint supports
    assert jensen_shannon([3, 5], [6, 10]) == 0.0
    assert jensen_shannon([0, 0], [1, 1]) == 0.0


def _uniform_mixture(boundaries: list[float], counts: list[int], points: int) -> FloatArray:
    """`points` evenly spaced values per unit of count, spread uniformly over each bin."""
    values = [
        low + (high - low) * (np.arange(count * points) + 0.5) / (count * points)
        for low, high, count in zip(boundaries[:-1], boundaries[1:], counts, strict=True)
        if count
    ]
    return np.concatenate(values)


@pytest.mark.parametrize(
    ("edges", "low", "high", "reference", "current", "distance"),
    [
        # U(0, 1) against U(0, 2): quantiles u and 2u, W = integral of u = 0.5.
        ([1.0], 0.0, 2.0, [10, 0], [5, 5], 0.5),
        # U(0, 1) against U(1, 2): a shift by 1.
        ([1.0], 0.0, 2.0, [1, 0], [0, 1], 1.0),
        # U([0, 1] u [2, 3]) against U(1, 2): F_ref - F_cur changes sign in the middle bin
        # (two triangles of 0.125), with 0.25 on each side.
        ([1.0, 2.0], 0.0, 3.0, [2, 0, 2], [0, 4, 0], 0.75),
    ],
)
def test_wasserstein_binned_is_exact_for_uniform_bins(
    edges: list[float],
    low: float,
    high: float,
    reference: list[int],
    current: list[int],
    distance: float,
) -> None:
    # Exact whenever the mass really is uniform within each bin, the one assumption made.
    assert wasserstein_binned(edges, reference, current, low, high) == pytest.approx(distance)
    # scipy on the same distributions, discretised finely: agrees to O(1 / points).
    boundaries = [low, *edges, high]
    truth = scipy.stats.wasserstein_distance(
        _uniform_mixture(boundaries, reference, 20_000),
        _uniform_mixture(boundaries, current, 20_000),
    )
    assert truth == pytest.approx(distance, abs=1e-4)


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_wasserstein_binned_approximates_scipy_on_quantile_bins(shift: float) -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(0.0, 1.0, size=5000)
    current = rng.normal(shift, 1.0, size=500)
    edges = _quantile_edges(reference, 100)
    low = float(min(reference.min(), current.min()))
    high = float(max(reference.max(), current.max()))
    ours = wasserstein_binned(
        edges, _histogram(edges, reference), _histogram(edges, current), low, high
    )
    truth = scipy.stats.wasserstein_distance(reference, current)
    # The error is the uniform-within-bin assumption, mostly in the two outer bins, which
    # stretch to the extremes. Over 400 seeded pairs it stayed below 0.018 sd without a shift;
    # with a 0.5 sd shift (more current mass in the outer bin) its 95th percentile over 200
    # pairs was 0.02 sd and its maximum 0.045 sd. This seed: 0.0006 and 0.012.
    assert ours == pytest.approx(truth, abs=0.02 if shift == 0.0 else 0.05)


@pytest.mark.parametrize("seed", range(5))
def test_wasserstein_binned_is_within_1_5_percent_of_scipy_at_the_threshold(seed: int) -> None:
    # A shift of 0.1 sd, the default threshold, on 50,000 rows each side and 100 quantile
    # bins as the baseline keeps them. Uniform mass in the outer bins read 3-4% above the
    # exact distance here (0.1004 for 0.0964 with seed 0): enough to decide a shift on
    # the threshold by the binning.
    rng = np.random.default_rng(seed)
    reference = rng.normal(0.0, 1.0, size=50_000)
    current = rng.normal(0.1, 1.0, size=50_000)
    edges = _quantile_edges(reference, 100)
    ours = wasserstein_binned(
        edges,
        _histogram(edges, reference),
        _histogram(edges, current),
        float(reference.min()),
        float(reference.max()),
    )
    truth = scipy.stats.wasserstein_distance(reference, current)
    assert ours == pytest.approx(truth, rel=0.015)


def test_wasserstein_binned_outer_bins_thin_out_like_a_tail() -> None:
    # Four unit bins over [0, 4], reference shares 0.4, 0.2, 0.1, 0.3. Upper outer bin:
    # the density at 3, extrapolated from the inner bins (0.2 at 1.5, 0.1 at 2.5), is
    # 0.1 / sqrt(2) = 0.071, below the bin's own 0.3: it does not thin out, so its mass
    # stays uniform. Lower outer bin: 0.2 * sqrt(2) = 0.28 at 1, below its 0.4: uniform
    # too. Where no tail thins out, the answer is the uniform one, exactly.
    edges, reference, current = [1.0, 2.0, 3.0], [4, 2, 1, 3], [3, 3, 1, 3]
    boundaries = [0.0, *edges, 4.0]
    truth = scipy.stats.wasserstein_distance(
        _uniform_mixture(boundaries, reference, 20_000),
        _uniform_mixture(boundaries, current, 20_000),
    )
    assert wasserstein_binned(edges, reference, current, 0.0, 4.0) == pytest.approx(truth, abs=1e-4)


def test_wasserstein_binned_clamps_edges_to_the_extremes() -> None:
    # Edges beyond the data's range: the outer bins are empty and get zero width, which
    # is the same as binning over the edges inside [low, high] only.
    clamped = wasserstein_binned([-5.0, 0.0, 1.0, 10.0], [0, 3, 2, 5, 0], [0, 1, 4, 5, 0], -1, 2)
    inner = wasserstein_binned([0.0, 1.0], [3, 2, 5], [1, 4, 5], -1.0, 2.0)
    assert clamped == pytest.approx(inner)
    assert inner > 0.0
    assert wasserstein_binned([0.0], [0, 0], [1, 1], -1.0, 1.0) == 0.0
    assert wasserstein_binned([], [4], [9], 0.0, 1.0) == 0.0
    with pytest.raises(ValueError, match="interior edges"):
        wasserstein_binned([0.0], [1, 2, 3], [1, 2, 3], -1.0, 1.0)


# --- performance metrics -------------------------------------------------------------------


def test_classification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(8)
    labels = np.array(["no", "yes"])
    y_true = labels[rng.integers(0, 2, size=1000)]
    y_pred = np.where(rng.random(1000) < 0.8, y_true, labels[rng.integers(0, 2, size=1000)])
    assert accuracy(y_true, y_pred) == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    for positive in ("yes", "no"):
        truth = metrics.f1_score(y_true, y_pred, pos_label=positive)
        assert f1(y_true, y_pred, positive) == pytest.approx(truth, rel=1e-12)
    # No positives, true or predicted: 0, as with zero_division=0.
    negatives = np.array(["no"] * 5)
    assert f1(negatives, negatives, "yes") == 0.0
    assert metrics.f1_score(negatives, negatives, pos_label="yes", zero_division=0) == 0.0
    assert math.isnan(accuracy([], []))


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(9)
    positive = rng.random(2000) < 0.3
    score = np.round(positive * 0.7 + rng.random(2000), 1)  # 18 distinct values: many ties
    truth = metrics.roc_auc_score(positive, score)
    assert roc_auc(positive, score) == pytest.approx(truth, rel=1e-12)
    assert roc_auc([True, False, True], [0.5, 0.5, 0.5]) == 0.5
    assert roc_auc([True, False], [0.9, 0.1]) == 1.0
    assert math.isnan(roc_auc([True, True], [0.1, 0.2]))


def test_log_loss_matches_sklearn() -> None:
    rng = np.random.default_rng(10)
    probabilities = rng.dirichlet(np.ones(4), size=500)
    probabilities[0] = [0.0, 1.0, 0.0, 0.0]  # certain, and (below) wrong: clipped
    y_index = rng.integers(0, 4, size=500)
    y_index[0] = 2
    truth = metrics.log_loss(y_index, y_proba=probabilities, labels=[0, 1, 2, 3])
    assert log_loss(y_index, probabilities) == pytest.approx(truth, rel=1e-12)
    with pytest.raises(ValueError, match="out of range"):
        log_loss([4], [[0.5, 0.5]])


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(11)
    y_true = rng.normal(10.0, 3.0, size=800)
    y_pred = y_true + rng.normal(0.5, 1.0, size=800)
    assert rmse(y_true, y_pred) == pytest.approx(
        metrics.root_mean_squared_error(y_true, y_pred), rel=1e-12
    )
    assert mae(y_true, y_pred) == pytest.approx(
        metrics.mean_absolute_error(y_true, y_pred), rel=1e-12
    )
    assert r2(y_true, y_pred) == pytest.approx(metrics.r2_score(y_true, y_pred), rel=1e-12)
    constant = np.full(5, 2.0)
    assert r2(constant, constant) == metrics.r2_score(constant, constant) == 1.0
    assert r2(constant, constant + 1) == metrics.r2_score(constant, constant + 1) == 0.0
    assert math.isnan(rmse([], []))
