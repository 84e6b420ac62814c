"""Profiles of traffic batches, taken over a baseline's bins, add up to the whole."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data.profile import (
    merge_categorical,
    merge_numeric,
    profile_categorical,
    profile_numeric,
)
from shared.monitoring.summary import count_numeric


def test_numeric_profiles_over_the_same_edges_merge_to_the_whole() -> None:
    rng = np.random.default_rng(0)
    baseline = profile_numeric(rng.normal(size=1000))
    a = rng.normal(1.0, 2.0, size=300)
    b = rng.normal(-0.5, 0.5, size=200)
    a[::7] = np.nan
    merged = merge_numeric(profile_numeric(a, baseline.edges), profile_numeric(b, baseline.edges))
    whole = profile_numeric(np.concatenate([a, b]), baseline.edges)
    assert merged.counts == whole.counts
    assert (merged.count, merged.missing, merged.min, merged.max) == (
        whole.count,
        whole.missing,
        whole.min,
        whole.max,
    )
    assert merged.mean == pytest.approx(whole.mean)
    assert merged.std == pytest.approx(whole.std)


def test_numeric_profiles_over_different_edges_do_not_merge() -> None:
    with pytest.raises(ValueError, match="different edges"):
        merge_numeric(profile_numeric(np.arange(10.0)), profile_numeric(np.arange(50.0)))


def test_categorical_profiles_merge_bin_by_bin() -> None:
    known = ["north", "south"]
    a = profile_categorical(np.array(["north", "east", "", "south"], dtype=object), known=known)
    b = profile_categorical(np.array(["north", "west"], dtype=object), known=known)
    merged = merge_categorical(a, b)
    assert merged.counts == {"north": 2, "south": 1}
    assert merged.other == 2
    assert (merged.count, merged.missing) == (6, 1)


def test_a_category_named_like_the_old_pool_is_a_category() -> None:
    values = np.array(["__other__", "north", "east"], dtype=object)
    profile = profile_categorical(values, known=["__other__", "north"])
    assert profile.counts == {"__other__": 1, "north": 1}
    assert profile.other == 1


# Values on an edge: the baseline and every monitoring window must put them in the same bin,
# or a window of the training data itself would look drifted. The convention, fixed here by
# hand: a value equal to an edge falls in the bin above it (bins are [edge, next edge)).
EDGE_VALUES = np.array([0.0, 1.0, 1.0, 1.5, 2.0, 3.0, np.nan])
EDGES = [1.0, 2.0]
EDGE_COUNTS = [1, 3, 2]  # below 1: 0.0 | [1, 2): 1.0, 1.0, 1.5 | from 2: 2.0, 3.0


def test_a_value_on_a_bin_edge_counts_in_the_bin_above_it() -> None:
    profile = profile_numeric(EDGE_VALUES, EDGES)
    assert profile.counts == EDGE_COUNTS
    assert profile.missing == 1


def test_monitoring_bins_traffic_on_the_edges_as_the_baseline_did() -> None:
    baseline = profile_numeric(EDGE_VALUES, EDGES)
    counts = count_numeric(EDGE_VALUES, baseline)
    assert counts.counts == EDGE_COUNTS
    assert counts.missing == 1


def test_own_quantile_bins_count_as_numpy_s_digitize_does_with_many_ties() -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=5000), 1)  # about 70 distinct values: ties on edges
    values[rng.random(5000) < 0.05] = np.nan
    profile = profile_numeric(values)
    present = values[~np.isnan(values)]
    # numpy's own rule for [edge, next edge) bins, and its own quantiles, as the truth.
    expected = np.bincount(np.digitize(present, profile.edges), minlength=len(profile.edges) + 1)
    assert profile.counts == expected.tolist()
    quantiles = np.unique(np.quantile(present, np.linspace(0, 1, 101)[1:-1]))
    assert profile.edges == quantiles.tolist()
    assert (profile.min, profile.max, profile.missing) == (
        present.min(),
        present.max(),
        5000 - present.size,
    )
