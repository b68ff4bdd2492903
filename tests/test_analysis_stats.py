"""The report's statistics (abqa.analysis.stats) against scipy/statsmodels and hand-countable cases."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from abqa.analysis import stats


def test_bootstrap_means_contain_the_mean_and_repeat_under_a_seed():
    rng = np.random.default_rng(3)
    em = (rng.random(500) < 0.7).astype(float)
    f1 = np.clip(em + rng.normal(0, 0.2, 500), 0, 1)
    first = stats.bootstrap_means([em, f1], n_resamples=2000, seed=11)
    again = stats.bootstrap_means([em, f1], n_resamples=2000, seed=11)
    other = stats.bootstrap_means([em, f1], n_resamples=2000, seed=12)
    assert first == again
    assert first != other
    for estimate, column in zip(first, (em, f1)):
        assert estimate.value == pytest.approx(column.mean())
        assert estimate.ci_low < estimate.value < estimate.ci_high
        # Percentile CI of a mean is close to the normal one: mean +- 1.96 SE.
        se = column.std(ddof=1) / np.sqrt(len(column))
        assert estimate.ci_high - estimate.ci_low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_bootstrap_of_a_constant_or_tiny_sample():
    constant = stats.bootstrap_means([np.ones(50)], n_resamples=500)[0]
    assert (constant.value, constant.ci_low, constant.ci_high) == (1.0, 1.0, 1.0)
    single = stats.bootstrap_means([np.array([0.5])], n_resamples=500)[0]
    assert single.value == 0.5 and single.ci_low is None and single.ci_high is None
    empty = stats.bootstrap_means([np.array([])], n_resamples=500)[0]
    assert empty.value is None


def test_full_dev_set_size_bootstrap_takes_seconds():
    rng = np.random.default_rng(0)
    diffs = [rng.integers(-1, 2, 10_570).astype(float), rng.normal(0, 0.3, 10_570)]
    start = time.perf_counter()
    stats.paired_mean_differences(diffs, n_resamples=10_000, seed=0)
    assert time.perf_counter() - start < 30  # about 2 s on one free core; minutes would mean it is not vectorised


def test_latency_summary_quantiles_and_cis():
    latency = np.random.default_rng(1).lognormal(np.log(30), 0.4, 2000)
    found = stats.latency_summary(latency, n_resamples=1000, seed=0)
    assert found.block == 1  # independent draws: the rule finds no dependence to carry
    summary = found.estimates
    for q in (50, 90, 95, 99):
        estimate = summary[f"p{q}"]
        assert estimate.value == pytest.approx(np.percentile(latency, q))
        assert estimate.ci_low <= estimate.value <= estimate.ci_high
    assert summary["mean"].value == pytest.approx(latency.mean())
    assert summary["p50"].value < summary["p90"].value < summary["p95"].value < summary["p99"].value


def test_mcnemar_counts_and_p_values():
    a = np.array([1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1], dtype=bool)
    b = np.array([1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1], dtype=bool)
    result = stats.mcnemar_test(a, b)
    # Counted by hand: both right at 0, 8, 11; a only at 1, 2, 5, 6, 9; b only at 3; both wrong at 4, 7, 10.
    assert (result.both_right, result.b, result.c, result.both_wrong) == (3, 5, 1, 3)
    assert result.p_value == pytest.approx(sps.binomtest(1, 6, 0.5).pvalue)
    assert result.chi2 == pytest.approx((abs(5 - 1) - 1) ** 2 / 6)
    assert result.chi2_p_value == pytest.approx(sps.chi2.sf(result.chi2, 1))


def test_mcnemar_without_discordant_pairs():
    same = np.array([1, 0, 1, 1], dtype=bool)
    result = stats.mcnemar_test(same, same)
    assert (result.b, result.c, result.p_value, result.chi2) == (0, 0, 1.0, None)


def test_paired_t_and_wilcoxon_match_scipy():
    rng = np.random.default_rng(5)
    a = rng.random(300)
    b = np.clip(a - 0.05 + rng.normal(0, 0.2, 300), 0, 1)
    t = stats.paired_t_test(a, b)
    reference = sps.ttest_rel(a, b)
    assert t.statistic == pytest.approx(reference.statistic)
    assert t.p_value == pytest.approx(reference.pvalue)
    assert t.ci_low < t.mean_diff < t.ci_high
    w = stats.wilcoxon_test(a, b)
    assert w.p_value == pytest.approx(sps.wilcoxon(a, b).pvalue)


def test_tests_without_variance_say_none_instead_of_nan():
    a = np.array([0.5, 0.5, 0.5])
    t = stats.paired_t_test(a, a)
    assert t.statistic is None and t.p_value is None and t.mean_diff == 0
    assert stats.wilcoxon_test(a, a).p_value is None
    assert stats.cohens_dz(a - a) is None
    assert stats.minimum_detectable_difference(a - a) is None


def test_latency_ratio_and_log_test():
    rng = np.random.default_rng(2)
    slow = rng.lognormal(np.log(40), 0.3, 400)
    fast = slow / 2 * rng.lognormal(0, 0.05, 400)
    ratio = stats.ratio_of_medians(fast, slow, n_resamples=1000, seed=0)
    assert ratio.value == pytest.approx(np.median(fast) / np.median(slow))
    assert ratio.ci_low < ratio.value < ratio.ci_high < 1.0
    log_t = stats.log_latency_test(fast, slow)
    assert log_t.geometric_mean_ratio == pytest.approx(0.5, rel=0.02)
    assert log_t.p_value == pytest.approx(sps.ttest_rel(np.log(fast), np.log(slow)).pvalue)
    assert log_t.ci_low < log_t.geometric_mean_ratio < log_t.ci_high


def test_effect_sizes():
    assert stats.mcnemar_odds_ratio(30, 10) == 3.0 and stats.mcnemar_odds_ratio(3, 0) is None
    assert stats.cohens_g(30, 10) == pytest.approx(0.25) and stats.cohens_g(0, 0) is None
    diff = np.array([1.0, 2.0, 3.0])
    assert stats.cohens_dz(diff) == pytest.approx(2.0 / 1.0)


def test_minimum_detectable_difference_scales_with_sample_size():
    rng = np.random.default_rng(4)
    small, large = rng.normal(0, 0.3, 400), rng.normal(0, 0.3, 1600)
    mde_small = stats.minimum_detectable_difference(small)
    mde_large = stats.minimum_detectable_difference(large)
    # Normal approximation: (z_0.975 + z_0.8) * SD / sqrt(n).
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert mde_small == pytest.approx(z * small.std(ddof=1) / np.sqrt(400), rel=0.01)
    assert mde_small / mde_large == pytest.approx(2 * small.std(ddof=1) / large.std(ddof=1), rel=0.01)


def test_holm_matches_statsmodels_and_keeps_missing_values():
    raw = [0.01, None, 0.04, 0.03]
    adjusted = stats.holm_adjust(raw)
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    assert adjusted[1] is None
    assert [adjusted[0], adjusted[2], adjusted[3]] == pytest.approx(list(expected))
    assert adjusted[0] == pytest.approx(0.03)  # smallest of three: times 3
    assert stats.holm_adjust([None]) == [None]
