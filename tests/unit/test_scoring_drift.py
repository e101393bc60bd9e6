"""Drift math (pipelines/drift.py) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.score.drift import ScoreSketch, baseline_cdf, check_drift, ks_pvalue, psi, psi_bins, sketch_edges

UNIFORM = np.linspace(0.0, 100.0, 101)  # baseline: validation scores uniform on [0, 100]


def _calibration(q=UNIFORM, n=5000):
    return {"baseline_quantiles": list(q), "val_count": n, "val_mean": 50.0, "val_std": 100 / math.sqrt(12)}


def _sketch(scores, q=UNIFORM):
    return ScoreSketch.empty(sketch_edges(q)).add(np.asarray(scores))


def test_psi_two_bins_by_hand():
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5), abs=1e-12)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_bins_deciles_and_tied_quantiles():
    edges, expected = psi_bins(UNIFORM, 10)
    np.testing.assert_allclose(edges, np.arange(10, 100, 10))
    np.testing.assert_allclose(expected, np.full(10, 0.1))
    # half the validation scores are exactly 0, the rest uniform on (0, 100]: the five tied deciles merge
    tied = np.concatenate([np.zeros(51), np.linspace(2, 100, 50)])
    edges, expected = psi_bins(tied, 10)
    np.testing.assert_allclose(edges, [0, 20, 40, 60, 80])
    np.testing.assert_allclose(expected, [0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="divide 100"):
        psi_bins(UNIFORM, 7)


def test_ks_pvalue_matches_kolmogorov_distribution():
    # n = m = 200 -> sqrt(nm/(n+m)) = 10; D = 0.136 -> lambda = 1.36, Q(1.36) = 0.0495 (the 5% critical value)
    assert ks_pvalue(0.136, 200, 200) == pytest.approx(2 * (math.exp(-2 * 1.36**2) - math.exp(-8 * 1.36**2)), rel=1e-6)
    assert ks_pvalue(0.136, 200, 200) == pytest.approx(0.0495, abs=5e-4)
    assert ks_pvalue(0.0, 10, 10) == 1.0


def test_baseline_cdf_interpolates_between_quantiles():
    np.testing.assert_allclose(baseline_cdf(UNIFORM, [-1, 0.5, 25, 100, 200]), [0, 0.005, 0.25, 1, 1])


def test_sketch_counts_merge_and_quantiles():
    scores = np.arange(100, dtype=np.float64)  # 0, 1, ..., 99
    whole = _sketch(scores)
    merged = _sketch(scores[:37]).merge(_sketch(scores[37:]))
    np.testing.assert_array_equal(whole.counts, merged.counts)
    assert merged.n == 100 and merged.mean() == pytest.approx(49.5)
    # bins are 0.1 wide inside the baseline range: quantiles are exact to that resolution
    np.testing.assert_allclose(whole.quantile([0.25, 0.5, 0.9]), [24, 49, 89], atol=0.11)
    # far outside the baseline range the geometric tail still resolves to a few percent
    far = _sketch(np.full(10, 5000.0))
    assert far.quantile([0.5])[0] == pytest.approx(5000.0, rel=0.05)
    restored = ScoreSketch.from_dict(whole.edges, whole.to_dict())
    np.testing.assert_array_equal(restored.counts, whole.counts)
    with pytest.raises(ValueError, match="different edges"):
        whole.merge(ScoreSketch.empty(sketch_edges(UNIFORM * 2)))


def test_check_drift_by_hand():
    # one score per decile, ten times: actual fractions equal the expected 0.1 -> PSI 0
    report = check_drift(_sketch(np.tile(np.arange(5, 100, 10), 10)), _calibration())
    assert report.psi == pytest.approx(0.0, abs=1e-12)
    # all 100 scores in the first decile: PSI = 0.9 ln(10) + 9 (1e-4 - 0.1) ln(1e-4 / 0.1) (floor 1e-4)
    report = check_drift(_sketch(np.full(100, 5.0)), _calibration())
    assert report.psi == pytest.approx(0.9 * math.log(10) + 9 * (1e-4 - 0.1) * math.log(1e-3), rel=1e-9)
    # KS: every score is 50 -> the CDF jumps 0 -> 1 where the baseline is at 0.5
    assert report.drifted and "PSI" in report.reason
    report = check_drift(_sketch(np.full(100, 50.0)), _calibration())
    assert report.ks == pytest.approx(0.5)
    assert report.mean_shift_std == pytest.approx(0.0)


def test_check_drift_quiet_on_baseline_distribution_and_loud_when_shifted():
    rng = np.random.default_rng(0)
    same = check_drift(_sketch(rng.uniform(0, 100, 5000)), _calibration())
    assert not same.drifted and same.psi < 0.01 and same.ks < 0.03, same
    shifted = check_drift(_sketch(rng.uniform(30, 130, 5000)), _calibration())
    assert shifted.drifted and shifted.psi > 1.0 and shifted.ks == pytest.approx(0.3, abs=0.03), shifted
    assert shifted.mean_shift_std == pytest.approx(30 / (100 / math.sqrt(12)), abs=0.05)
    assert shifted.metrics()["drift_alarm"] == 1.0
    # 20,000 rows shifted by 4% of the range: KS ~0.04 is significant (p << 1e-3) but below ks_min = 0.1
    slight = check_drift(_sketch(rng.uniform(4, 104, 20000)), _calibration())
    assert slight.ks_pvalue < 1e-3 and 0.02 < slight.ks < 0.1 and slight.psi < 0.2 and not slight.drifted, slight
    strict = check_drift(_sketch(rng.uniform(4, 104, 20000)), _calibration(), ks_min=0.0)
    assert strict.drifted and strict.reason.startswith("KS"), strict
