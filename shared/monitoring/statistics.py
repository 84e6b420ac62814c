"""Drift and performance statistics of the monitoring check, in numpy and the standard library.

Drift is measured from binned counts, never from raw rows: the profile of the training data
and each window of captured traffic are reduced to counts over the same bins (reference
quantile bins for numbers, categories for everything else). Counts are mergeable summaries:
hourly counts add up to a day's, and a window is judged without reading its rows again. The
functions here therefore take two count vectors over the same ordered bins, and where binning
loses information they say by how much (`KsResult.error_bound`).

The tests are two-sample tests. The reference is itself a sample (the training data), so its
frequencies carry sampling error of their own; a goodness-of-fit test against them treats
them as exact and alarms on noise (see `chi2_contingency`).

Performance metrics (accuracy, F1, ROC AUC, log loss, RMSE, MAE, R²) and their bootstrap
intervals are computed here too, because scikit-learn and scipy are too large for the
monitoring function's Lambda package; the tests check every function against them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

type Counts = Sequence[int] | npt.NDArray[np.integer[Any]]
type Values = Sequence[float] | npt.NDArray[np.floating[Any]] | npt.NDArray[np.integer[Any]]

_EPSILON = 1e-15  # relative convergence of the series and continued fractions
_TINY = 1e-300  # keeps Lentz's algorithm away from division by zero
_MAX_ITERATIONS = 100_000  # O(sqrt(dof)) are needed; this covers any realistic table


@dataclass(frozen=True)
class TestResult:
    """A test statistic and its p-value."""

    __test__ = False  # not a pytest test class, despite the name

    statistic: float
    p_value: float


@dataclass(frozen=True)
class KsResult:
    """Binned two-sample Kolmogorov-Smirnov: the exact statistic is in [statistic, +error_bound]."""

    statistic: float
    p_value: float
    error_bound: float


# --- distributions -------------------------------------------------------------------------


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (limit of sqrt(n) * D_n)."""
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        # The alternating series 2 sum (-1)^(k-1) exp(-2 k^2 x^2) converges slowly (and loses
        # everything to cancellation) for small x; Jacobi's theta transform of the CDF,
        # sqrt(2 pi)/x sum exp(-(2k-1)^2 pi^2 / (8 x^2)), converges in a few terms there.
        cdf = 0.0
        for k in range(1, 20):
            term = math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8.0 * x * x))
            cdf += term
            if term < _EPSILON * cdf:
                break
        cdf *= math.sqrt(2.0 * math.pi) / x
        return min(max(1.0 - cdf, 0.0), 1.0)
    # For x >= 1 the terms fall by exp(-6 x^2) or faster: five terms reach double precision,
    # and summing the tail directly keeps its relative accuracy.
    total = 0.0
    for k in range(1, 20):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < _EPSILON * total:
            break
    return min(max(2.0 * total, 0.0), 1.0)


def _gamma_prefactor(a: float, x: float) -> float:
    """x^a e^-x / Gamma(a), in logs so that large a and x neither overflow nor underflow early."""
    return math.exp(a * math.log(x) - x - math.lgamma(a))


def _gamma_p_series(a: float, x: float) -> float:
    """Regularized lower incomplete gamma P(a, x) by its power series (good for x < a + 1)."""
    term = 1.0 / a
    total = term
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPSILON:
            break
    return total * _gamma_prefactor(a, x)


def _gamma_q_continued_fraction(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) by Legendre's continued fraction (x >= a + 1).

    Evaluated with the modified Lentz algorithm; computing Q directly (not 1 - P) keeps its
    relative accuracy far into the tail, where drift p-values live.
    """
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPSILON:
            break
    return h * _gamma_prefactor(a, x)


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for X chi-square with `dof` degrees of freedom: Q(dof/2, x/2)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {dof}")
    if math.isnan(x):
        return math.nan
    if x <= 0.0:
        return 1.0
    a, half_x = dof / 2.0, x / 2.0
    if half_x < a + 1.0:
        # Here P(a, x) stays below 0.92 (at a = 0.5), so 1 - P keeps its relative accuracy.
        return min(max(1.0 - _gamma_p_series(a, half_x), 0.0), 1.0)
    return min(max(_gamma_q_continued_fraction(a, half_x), 0.0), 1.0)


# Acklam's rational approximation of the normal quantile (relative error < 1.15e-9), which
# one Halley step against math.erfc brings to double precision.
_ACKLAM_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_ACKLAM_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_ACKLAM_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_ACKLAM_D = (
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
)
_ACKLAM_LOW = 0.02425


def _polynomial(coefficients: tuple[float, ...], x: float) -> float:
    result = 0.0
    for coefficient in coefficients:
        result = result * x + coefficient
    return result


def normal_quantile(p: float) -> float:
    """The standard normal quantile (inverse CDF) of p in [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p}")
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    if p > 0.5:
        # Solve in the lower tail, where p itself (not 1 - p) carries the precision.
        return -normal_quantile(1.0 - p)
    if p < _ACKLAM_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        x = _polynomial(_ACKLAM_C, q) / (_polynomial(_ACKLAM_D, q) * q + 1.0)
    else:
        q = p - 0.5
        r = q * q
        x = _polynomial(_ACKLAM_A, r) * q / (_polynomial(_ACKLAM_B, r) * r + 1.0)
    # Halley's step on Phi(x) - p, with u = (Phi(x) - p) / phi(x). The density is taken
    # relative to p, so that exp(x^2 / 2) cannot overflow when p is near the smallest float.
    relative_error = 0.5 * math.erfc(-x / math.sqrt(2.0)) / p - 1.0
    u = relative_error * math.sqrt(2.0 * math.pi) * math.exp(math.log(p) + x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


# --- two-sample tests over binned counts ---------------------------------------------------


def _count_pair(
    reference: Counts, current: Counts
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Both count vectors as floats, checked to be non-negative and over the same bins."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.ndim != 1 or ref.shape != cur.shape:
        raise ValueError(
            f"counts must be 1-D over the same bins, got shapes {ref.shape} and {cur.shape}"
        )
    if np.any(ref < 0) or np.any(cur < 0) or not (np.all(np.isfinite(ref + cur))):
        raise ValueError("counts must be finite and non-negative")
    return ref, cur


def ks_binned(reference: Counts, current: Counts) -> KsResult:
    """Two-sample Kolmogorov-Smirnov test from counts over the same ordered (numeric) bins."""
    ref, cur = _count_pair(reference, current)
    n, m = float(ref.sum()), float(cur.sum())
    if n == 0.0 or m == 0.0:
        return KsResult(statistic=0.0, p_value=1.0, error_bound=0.0)
    ref_share, cur_share = ref / n, cur / m
    # Both empirical CDFs are known exactly at the bin boundaries, so D is the exact
    # |F_ref - F_cur| there, and never above the unbinned statistic.
    ref_cdf = np.cumsum(ref) / n
    cur_cdf = np.cumsum(cur) / m
    statistic = float(np.max(np.abs(ref_cdf - cur_cdf)))
    # Between two boundaries both CDFs are monotone: F_ref rises by its share r of the bin
    # and F_cur by its share c. F_ref - F_cur can therefore exceed its value at the left
    # boundary by at most r (F_cur not yet risen), and its value at the right boundary by at
    # most c (F_ref already risen): by at most min(r, c) beyond D, and symmetrically below.
    # So the unbinned statistic lies in [D, D + max over bins of min(r, c)]; min(r, c) is
    # attained (all of one sample at the bin's left end, the other at its right end).
    error_bound = float(np.max(np.minimum(ref_share, cur_share)))
    # Asymptotic distribution of sqrt(en) D, with Stephens' (1970) small-sample correction.
    root_en = math.sqrt(n * m / (n + m))
    p_value = kolmogorov_sf((root_en + 0.12 + 0.11 / root_en) * statistic)
    return KsResult(statistic=statistic, p_value=p_value, error_bound=error_bound)


def chi2_contingency(reference: Counts, current: Counts) -> TestResult:
    """Chi-square test of homogeneity of two samples over the same categories (2 x K table).

    Categories empty in both samples are dropped; no continuity correction.
    """
    # Two samples, not goodness of fit: testing the current counts against the reference's
    # frequencies treats those frequencies as exact, when they are a sample too. Their noise
    # then counts as drift: with a current window as large as the reference, about half of
    # 10-category columns drawn from the same distribution alarm at 5%, and one row of a
    # category unseen in the reference gives p = 0. The homogeneity test pools both samples
    # for the expected counts, so neither is privileged.
    ref, cur = _count_pair(reference, current)
    n, m = float(ref.sum()), float(cur.sum())
    seen = (ref + cur) > 0
    ref, cur = ref[seen], cur[seen]
    if ref.size < 2 or n == 0.0 or m == 0.0:
        return TestResult(statistic=0.0, p_value=1.0)
    column = ref + cur
    total = n + m
    expected_ref = column * (n / total)
    expected_cur = column * (m / total)
    statistic = float(
        np.sum((ref - expected_ref) ** 2 / expected_ref)
        + np.sum((cur - expected_cur) ** 2 / expected_cur)
    )
    return TestResult(statistic=statistic, p_value=chi2_sf(statistic, ref.size - 1))


def two_proportions(x1: int, n1: int, x2: int, n2: int) -> TestResult:
    """Pooled two-proportion z test of x1/n1 against x2/n2, two-sided."""
    if not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        raise ValueError(f"need 0 <= x <= n, got {x1}/{n1} and {x2}/{n2}")
    if n1 == 0 or n2 == 0:
        return TestResult(statistic=0.0, p_value=1.0)
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        # Both proportions are 0 (or both 1): no variance, and no evidence of a difference.
        return TestResult(statistic=0.0, p_value=1.0)
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    return TestResult(statistic=z, p_value=math.erfc(abs(z) / math.sqrt(2.0)))


# --- distances between binned distributions ------------------------------------------------


def psi(reference: Counts, current: Counts, epsilon: float = 1e-4) -> float:
    """Population stability index over the same bins, shares floored at `epsilon`."""
    ref, cur = _count_pair(reference, current)
    n, m = float(ref.sum()), float(cur.sum())
    if n == 0.0 or m == 0.0:
        return 0.0
    # The floor keeps a bin empty in one sample finite (log of zero) without dropping it.
    ref_share = np.maximum(ref / n, epsilon)
    cur_share = np.maximum(cur / m, epsilon)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def jensen_shannon(reference: Counts, current: Counts) -> float:
    """Jensen-Shannon distance (square root of the base-2 divergence), in [0, 1]."""
    ref, cur = _count_pair(reference, current)
    n, m = float(ref.sum()), float(cur.sum())
    if n == 0.0 or m == 0.0:
        return 0.0
    p, q = ref / n, cur / m
    mixture = (p + q) / 2.0

    def kl_to_mixture(share: npt.NDArray[np.float64]) -> float:
        # 0 log 0 = 0; where share > 0 the mixture is positive too.
        positive = share > 0
        return float(np.sum(share[positive] * np.log2(share[positive] / mixture[positive])))

    divergence = (kl_to_mixture(p) + kl_to_mixture(q)) / 2.0
    return math.sqrt(min(max(divergence, 0.0), 1.0))


def _tail_depth(width: float, share: float, inner: Sequence[tuple[float, float]]) -> float:
    """Mean distance of an outer bin's mass from its inner edge.

    `inner` holds (width, share) of the two bins next to it, nearest first. Uniform mass
    would put it at width / 2, but a tail thins out away from the body: on normal data the
    outer percentile's mass sits about 0.33 sd from its edge, not 0.58, and that overstated
    the distance by several percent exactly where it is compared with its threshold. So
    the density is continued into the bin as an exponential: its value at the edge is
    extrapolated log-linearly from the two inner bins, and its rate makes the bin hold
    its share. Where that does not apply (too few or empty bins, a density that does not
    fall outward), the mass stays uniform.
    """
    uniform = width / 2.0
    (w1, s1), (w2, s2) = inner
    if width <= 0.0 or share <= 0.0 or min(w1, w2, s1, s2) <= 0.0:
        return uniform
    d1, d2 = s1 / w1, s2 / w2
    slope = math.log(d1 / d2) / ((w1 + w2) / 2.0)  # per unit of distance toward the edge
    edge_density = d1 * math.exp(slope * w1 / 2.0)
    target = edge_density / share  # rate / (1 - exp(-rate * width)) must equal this
    if target * width <= 1.0 + 1e-9:
        return uniform
    low, high = 0.0, 2.0 * target
    for _ in range(100):
        rate = (low + high) / 2.0
        if rate / -math.expm1(-rate * width) < target:
            low = rate
        else:
            high = rate
    rate = (low + high) / 2.0
    if rate * width < 1e-6:
        return uniform
    if rate * width > 700.0:  # exp would overflow; the truncation no longer matters
        return 1.0 / rate
    return 1.0 / rate - width / math.expm1(rate * width)


def wasserstein_binned(
    edges: Values, reference: Counts, current: Counts, low: float, high: float
) -> float:
    """1-Wasserstein distance between two binned distributions, mass uniform within a bin
    except in the two outer bins, where it thins out as an exponential tail.

    `edges` are the k interior edges of k + 1 bins; the outer bins end at `low` and `high`.
    Within each bin both samples are given the same shape, so |F_ref - F_cur| is
    integrated exactly over the piecewise CDFs that shape makes.
    """
    ref, cur = _count_pair(reference, current)
    interior = np.asarray(edges, dtype=np.float64)
    if interior.ndim != 1 or interior.size + 1 != ref.size:
        raise ValueError(f"{interior.size} interior edges need {interior.size + 1} bins")
    if interior.size > 1 and np.any(np.diff(interior) < 0):
        raise ValueError("edges must be sorted")
    n, m = float(ref.sum()), float(cur.sum())
    if n == 0.0 or m == 0.0:
        return 0.0
    # Every value lies in [low, high], so a bin's mass lies in its part of that interval:
    # clipping the edges to it gives bins past the extremes zero width (their mass, if the
    # caller's extremes and counts disagree, becomes a point at the extreme).
    high = max(high, low)
    boundaries = np.concatenate(([low], np.clip(interior, low, high), [high]))
    width = np.diff(boundaries)
    # W1 = integral of |F_ref - F_cur|. Both CDFs are linear inside a bin, so their
    # difference is too: from d0 at the left boundary to d1 at the right one.
    difference = np.concatenate(([0.0], np.cumsum(ref) / n - np.cumsum(cur) / m))
    d0, d1 = difference[:-1], difference[1:]
    magnitude = np.abs(d0) + np.abs(d1)
    same_sign = d0 * d1 >= 0
    # Same sign: a trapezoid. A sign change at the crossing point: two triangles, of total
    # area width * (d0^2 + d1^2) / (2 (|d0| + |d1|)).
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = (d0 * d0 + d1 * d1) / (2.0 * magnitude)
    area = np.where(same_sign, magnitude / 2.0, crossing) * width
    if ref.size >= 4:
        # In an outer bin the difference runs from 0 at the extreme to its value at the
        # inner edge, as the shared within-bin CDF does: its integral is that value times
        # the mass's mean distance from the inner edge (width / 2 when uniform).
        shares = ref / n
        area[0] = abs(d1[0]) * _tail_depth(
            width[0], shares[0], [(width[1], shares[1]), (width[2], shares[2])]
        )
        area[-1] = abs(d0[-1]) * _tail_depth(
            width[-1], shares[-1], [(width[-2], shares[-2]), (width[-3], shares[-3])]
        )
    return float(np.sum(area))


# --- intervals -----------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion successes / n."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    z = normal_quantile(1.0 - (1.0 - confidence) / 2.0)
    z2 = z * z
    center = (successes + z2 / 2.0) / (n + z2)
    half_width = z * math.sqrt(successes * (n - successes) / n + z2 / 4.0) / (n + z2)
    return max(center - half_width, 0.0), min(center + half_width, 1.0)


def bootstrap_interval(
    statistic: Callable[[npt.NDArray[np.int64]], float],
    n: int,
    confidence: float,
    resamples: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic`, which is given resampled row positions.

    Resamples where the statistic is nan (e.g. ROC AUC with one class drawn) are skipped;
    (nan, nan) when none is left. The same seed gives the same interval.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n <= 0 or resamples <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    values = np.empty(resamples, dtype=np.float64)
    for i in range(resamples):
        # One resample at a time: a (resamples, n) index matrix would not fit a small Lambda
        # for large windows, and the draws (hence the interval) are the same either way.
        values[i] = statistic(rng.integers(0, n, size=n, dtype=np.int64))
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


# --- performance metrics -------------------------------------------------------------------


def _paired(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    truth, prediction = np.asarray(y_true), np.asarray(y_pred)
    if truth.shape[:1] != prediction.shape[:1]:
        raise ValueError(f"{truth.shape[:1]} labels but {prediction.shape[:1]} predictions")
    return truth, prediction


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Share of predictions equal to the label; nan for no rows."""
    truth, prediction = _paired(y_true, y_pred)
    if truth.size == 0:
        return math.nan
    return float(np.mean(truth == prediction))


def f1(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, positive: object) -> float:
    """Binary F1 of the `positive` label; 0 when there are no true and no predicted positives."""
    truth, prediction = _paired(y_true, y_pred)
    is_true, is_predicted = truth == positive, prediction == positive
    true_positives = int(np.sum(is_true & is_predicted))
    # 2 TP / (2 TP + FP + FN) = 2 TP / (true positives + predicted positives)
    denominator = int(np.sum(is_true)) + int(np.sum(is_predicted))
    return 2.0 * true_positives / denominator if denominator else 0.0


def roc_auc(y_true_is_positive: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties half); nan with only one class."""
    positive = np.asarray(y_true_is_positive, dtype=bool)
    scores = np.asarray(score, dtype=np.float64)
    if positive.shape != scores.shape or positive.ndim != 1:
        raise ValueError(f"labels {positive.shape} and scores {scores.shape} must be 1-D alike")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    n_positive = int(np.sum(positive))
    n_negative = positive.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return math.nan
    # Average ranks of tied scores: a tied positive-negative pair counts one half, as in the
    # ROC curve's diagonal segment through the tie.
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ordered)) + 1))
    ends = np.concatenate((starts[1:], [ordered.size]))
    ranks = np.empty(ordered.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    u = float(np.sum(ranks[positive])) - n_positive * (n_positive + 1) / 2.0
    return u / (n_positive * n_negative)


def log_loss(y_index: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    """Mean negative log-probability of the true class (column `y_index` of each row)."""
    index = np.asarray(y_index, dtype=np.int64)
    proba = np.asarray(probabilities, dtype=np.float64)
    if proba.ndim != 2 or index.shape != (proba.shape[0],):
        raise ValueError(f"need n class indices and n x C probabilities, got {index.shape}")
    if index.size == 0:
        return math.nan
    if np.any(index < 0) or np.any(index >= proba.shape[1]):
        raise ValueError("class index out of range")
    # Clipped, not renormalised, at the float64 machine epsilon: what scikit-learn >= 1.5
    # does, so that a confident miss costs -log(eps) = 36 rather than infinity.
    eps = float(np.finfo(np.float64).eps)
    chosen = np.clip(proba[np.arange(index.size), index], eps, 1.0 - eps)
    return float(-np.mean(np.log(chosen)))


def _residuals(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> npt.NDArray[np.float64]:
    truth = np.asarray(y_true, dtype=np.float64)
    prediction = np.asarray(y_pred, dtype=np.float64)
    if truth.shape != prediction.shape:
        raise ValueError(f"shapes differ: {truth.shape} and {prediction.shape}")
    return truth - prediction


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error; nan for no rows."""
    residual = _residuals(y_true, y_pred)
    return math.sqrt(float(np.mean(residual * residual))) if residual.size else math.nan


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error; nan for no rows."""
    residual = _residuals(y_true, y_pred)
    return float(np.mean(np.abs(residual))) if residual.size else math.nan


def r2(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Coefficient of determination; for constant labels 1 if predicted exactly, else 0."""
    residual = _residuals(y_true, y_pred)
    if residual.size == 0:
        return math.nan
    truth = np.asarray(y_true, dtype=np.float64)
    residual_ss = float(np.sum(residual * residual))
    total_ss = float(np.sum((truth - truth.mean()) ** 2))
    if total_ss == 0.0:
        # scikit-learn's force_finite convention, rather than -inf or nan.
        return 1.0 if residual_ss == 0.0 else 0.0
    return 1.0 - residual_ss / total_ss
