"""The drift statistics against hand-computed values and scipy, and the accumulator's verdicts.

Pure functions on small known data: no files, no server. A feature shifted by one standard
deviation must be drifted and an unshifted one not; a new category is named; accumulating in
batches (or merging partials) gives exactly the report of accumulating all at once.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial import distance

from scoring.monitoring import stats
from scoring.monitoring.accumulate import DriftAccumulator
from scoring.monitoring.profile import Profile, build_profile
from scoring.monitoring.report import DRIFTED, NOT_COMPARED, STABLE, Thresholds


def test_psi_by_hand():
    # p = (0.5, 0.5), q = (0.25, 0.75): (0.25-0.5)·ln(0.5) + (0.75-0.5)·ln(1.5)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert stats.psi(np.array([50, 50]), np.array([25, 75])) == pytest.approx(expected)
    assert expected == pytest.approx(0.274653, abs=1e-6)
    assert stats.psi(np.array([10, 30]), np.array([1, 3])) == pytest.approx(0.0)


def test_psi_gives_an_empty_bin_epsilon_not_infinity():
    # the reference's empty bin is raised to EPSILON: p = (1, 1e-4), q = (0.5, 0.5)
    eps = stats.EPSILON
    expected = (0.5 - 1) * math.log(0.5 / 1) + (0.5 - eps) * math.log(0.5 / eps)
    assert stats.psi(np.array([100, 0]), np.array([50, 50])) == pytest.approx(expected)
    assert math.isfinite(expected)


def test_jensen_shannon_by_hand_and_as_scipy():
    # m = (0.75, 0.25); KL(p||m) = 0.5·log2(2/3) + 0.5·log2(2), KL(q||m) = log2(4/3)
    divergence = 0.5 * (0.5 * math.log2(2 / 3) + 0.5) + 0.5 * math.log2(4 / 3)
    assert stats.js_distance(np.array([5, 5]), np.array([8, 0])) == pytest.approx(
        math.sqrt(divergence)
    )
    assert stats.js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 100, 12), rng.integers(0, 100, 12)
    assert stats.js_distance(a, b) == pytest.approx(
        distance.jensenshannon(a / a.sum(), b / b.sum(), base=2)
    )


def test_ks_and_wasserstein_by_hand_and_as_scipy():
    assert stats.ks(np.array([1.0, 2, 3]), np.array([4.0, 5, 6]))[0] == 1.0
    assert stats.wasserstein(np.array([0.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=500), rng.normal(0.3, 1.0, size=700)
    expected = sps.ks_2samp(a, b)
    assert stats.ks(a, b) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    assert stats.wasserstein(a, b) == pytest.approx(sps.wasserstein_distance(a, b))


SHIFTS = (0.0, 0.03, 0.06, 1.0)  # in standard deviations: none, borderline at 10,000 rows, one


@pytest.mark.parametrize("sizes", [(300, 400), (1000, 1000)])
def test_small_samples_get_scipys_exact_ks_pvalue(sizes):
    rng = np.random.default_rng(2)
    for shift in SHIFTS:
        a, b = rng.normal(size=sizes[0]), rng.normal(shift, 1.0, size=sizes[1])
        exact = sps.ks_2samp(a, b, method="exact")
        statistic, pvalue, distance = stats.two_sample(a, b)
        assert statistic == pytest.approx(exact.statistic, rel=1e-12)
        assert pvalue == pytest.approx(exact.pvalue, rel=1e-9, abs=1e-300)
        assert distance == pytest.approx(sps.wasserstein_distance(a, b), rel=1e-9)


@pytest.mark.parametrize("sizes", [(442, 10_000), (10_000, 10_000)])
def test_large_samples_get_the_asymptotic_ks_pvalue_within_its_tolerance_of_the_exact_one(sizes):
    """Past EXACT_CELLS the p-value is scipy's ``method="asymp"`` (not its exact default, the
    cost of a drop's report), within ASYMP_TOLERANCE of the exact one, with the same verdict."""
    rng = np.random.default_rng(3)
    for shift in SHIFTS:
        a, b = rng.normal(size=sizes[0]), rng.normal(shift, 1.0, size=sizes[1])
        exact = sps.ks_2samp(a, b, method="exact")
        asymp = sps.ks_2samp(a, b, method="asymp")
        statistic, pvalue, distance = stats.two_sample(a, b)
        assert statistic == pytest.approx(exact.statistic, rel=1e-12)
        assert pvalue == pytest.approx(asymp.pvalue, rel=1e-9, abs=1e-300)
        assert abs(pvalue - exact.pvalue) <= stats.ASYMP_TOLERANCE
        if not 0.005 < exact.pvalue < 0.02:  # away from the threshold the verdict is the same
            assert (pvalue < 0.01) == (exact.pvalue < 0.01), (shift, pvalue, exact.pvalue)
        assert distance == pytest.approx(sps.wasserstein_distance(a, b), rel=1e-9)
        assert stats.ks(a, b) == (statistic, pvalue)
    statistic, pvalue, _ = stats.two_sample(a, a + 10.0)
    assert statistic == 1.0 and pvalue < 1e-100


def test_bins_nulls_range_and_unseen_categories():
    edges = np.array([1.0, 2.0])
    assert stats.bin_counts(edges, np.array([0.5, 1.0, 1.5, 2.0, 9.0])).tolist() == [1, 2, 2]
    assert stats.null_rates(1, 10, 5, 10) == pytest.approx((0.1, 0.5, 0.4))
    assert stats.out_of_range_share(3, 12) == 0.25
    unseen = stats.unseen_categories({"a": 5, "b": 1}, {"a": 2, "zz": 1, "new": 4})
    assert unseen == {"new": 4, "zz": 1}
    assert list(unseen) == ["new", "zz"]


def _profile(rng: np.random.Generator, n: int = 5000) -> Profile:
    columns = {
        "x": ("numeric", rng.normal(10.0, 2.0, n)),
        "y": ("numeric", rng.normal(0.0, 1.0, n)),
        "z": ("numeric", rng.exponential(3.0, n)),
        "colour": ("categorical", rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])),
    }
    predictions = ("numeric", rng.normal(1.0, 1.0, n // 4))
    return build_profile(columns, predictions, seed=7)


def _current(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "x": rng.normal(10.0 + shift * 2.0, 2.0, n),  # shifted by `shift` standard deviations
        "y": rng.normal(0.0, 1.0, n),
        "z": rng.exponential(3.0, n),
        "colour": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
    }


def test_a_feature_shifted_by_one_standard_deviation_is_drifted_an_unshifted_one_not():
    rng = np.random.default_rng(3)
    profile = _profile(rng)
    acc = DriftAccumulator(profile)
    acc.update(_current(rng, 4000, shift=1.0), rng.normal(1.0, 1.0, 4000))
    report = acc.report(Thresholds())
    by_name = {one.name: one for one in report.features}
    assert by_name["x"].drifted is True
    assert by_name["x"].stats["psi"] > 0.2 and by_name["x"].stats["ks_pvalue"] < 0.01
    assert by_name["x"].stats["wasserstein"] == pytest.approx(2.0, rel=0.15)
    for name in ("y", "z", "colour"):
        assert by_name[name].drifted is False, (name, by_name[name].stats)
    assert report.verdict == DRIFTED and report.drifted_features == ["x"]
    assert report.features[0].name == "x"  # drifted first
    assert report.prediction is not None and report.prediction.drifted is False


def test_unshifted_data_is_stable():
    rng = np.random.default_rng(4)
    profile = _profile(rng)
    acc = DriftAccumulator(profile)
    acc.update(_current(rng, 3000), rng.normal(1.0, 1.0, 3000))
    report = acc.report(Thresholds())
    assert report.verdict == STABLE, report.reason
    assert not report.drifted_features


def test_a_new_category_is_reported_by_name():
    rng = np.random.default_rng(5)
    profile = _profile(rng)
    current = _current(rng, 2000)
    current["colour"] = np.where(rng.random(2000) < 0.3, "purple", current["colour"])
    acc = DriftAccumulator(profile)
    acc.update({k: pa.array(v) for k, v in current.items()})
    colour = next(one for one in acc.report(Thresholds()).features if one.name == "colour")
    assert colour.drifted is True
    assert list(colour.stats["unseen_categories"]) == ["purple"]
    assert any("purple" in why for why in colour.why)


def test_null_rate_and_out_of_range_are_counted():
    rng = np.random.default_rng(6)
    profile = _profile(rng)
    current = _current(rng, 1000)
    current["y"][:100] = np.nan
    current["z"][:50] = 1e6
    acc = DriftAccumulator(profile)
    acc.update(current)
    by_name = {one.name: one for one in acc.report(Thresholds()).features}
    assert by_name["y"].stats["null_rate_current"] == pytest.approx(0.1)
    assert by_name["y"].stats["null_rate_change"] == pytest.approx(0.1)
    assert by_name["z"].stats["out_of_range_share"] == pytest.approx(0.05)


def test_what_cannot_be_compared_says_why():
    rng = np.random.default_rng(8)
    profile = _profile(rng)
    current = _current(rng, 500)
    del current["colour"]
    acc = DriftAccumulator(profile)
    acc.update(current)
    report = acc.report(Thresholds())
    colour = next(one for one in report.features if one.name == "colour")
    assert colour.drifted is None and colour.reason == "absent from the data"
    assert report.verdict in (STABLE, DRIFTED)
    empty = DriftAccumulator(profile).report(Thresholds())
    assert empty.verdict == NOT_COMPARED and empty.reason == "no rows to compare"
    few = DriftAccumulator(profile)
    few.update(_current(rng, 20))
    assert few.report(Thresholds()).verdict == NOT_COMPARED
    assert "min_rows" in few.report(Thresholds()).reason


def test_drift_share_decides_the_verdict():
    rng = np.random.default_rng(9)
    profile = _profile(rng)
    acc = DriftAccumulator(profile)
    acc.update(_current(rng, 2000, shift=1.0))
    assert acc.report(Thresholds(share=0.0)).verdict == DRIFTED
    assert acc.report(Thresholds(share=0.5)).verdict == STABLE  # 1 of 4 is 25%


def test_profile_round_trips_through_json_exactly():
    rng = np.random.default_rng(10)
    profile = _profile(rng)
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == profile
    with pytest.raises(ValueError, match="format"):
        Profile.from_dict({**profile.to_dict(), "format": 999})


def _report(acc: DriftAccumulator) -> dict:
    return acc.report(Thresholds(min_rows=1)).to_dict()


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=599), max_size=6, unique=True),
    sample_rows=st.sampled_from([50, 10_000]),
)
def test_batches_and_merged_partials_equal_all_at_once(cuts, sample_rows):
    rng = np.random.default_rng(11)
    profile = _profile(rng, 800)
    data = _current(rng, 600, shift=0.3)
    data["y"][::7] = np.nan
    predictions = rng.normal(1.0, 1.0, 600)
    whole = DriftAccumulator(profile, sample_rows)
    whole.update(data, predictions)
    bounds = [0, *sorted(cuts), 600]
    batched = DriftAccumulator(profile, sample_rows)
    merged = DriftAccumulator(profile, sample_rows)
    for lo, hi in itertools.pairwise(bounds):
        part = {k: pa.array(v[lo:hi]) for k, v in data.items()}
        batched.update(part, predictions[lo:hi])
        partial = DriftAccumulator(profile, sample_rows)  # a worker's, told where it starts
        partial.update(part, predictions[lo:hi], start=lo)
        merged.merge(partial)
    assert _report(batched) == _report(whole)
    assert _report(merged) == _report(whole)
