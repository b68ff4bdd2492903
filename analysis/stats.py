"""Pure statistics for the A/B report: numpy arrays in, small frozen dataclasses out.

Nothing here reads files or draws. The tests themselves come from scipy and statsmodels; this module only
arranges their inputs (paired per-question vectors) and names their outputs. Conventions:

- Pairs are (a, b) and every difference is a - b; a ratio is a / b.
- Proportions and F1 stay on their natural 0..1 scale here; the report turns them into percentage points.
- Bootstrap CIs are percentile intervals from `scipy.stats.bootstrap` with a seeded numpy Generator,
  vectorised and resampled in batches so that 10,570 questions x 10,000 resamples takes seconds. Latency is a
  time series (a slow minute slows many questions in a row), so its CIs come from `arch`'s circular block
  bootstrap over the questions in the order they were asked, the block length chosen by Politis and White's rule.
- A statistic that does not exist for the data (no variance, too few values) is None, never NaN.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.8
LATENCY_QUANTILES = (50, 90, 95, 99)
# Resampled elements held in memory per batch (float64: 8 bytes each): ~16 MB whatever the sample size.
_BATCH_ELEMENTS = 2_000_000


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (None when it cannot be computed)."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None

    def scaled(self, factor: float) -> "Estimate":
        return Estimate(*(None if x is None else x * factor for x in (self.value, self.ci_low, self.ci_high)))

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci": [self.ci_low, self.ci_high]}


# ---------------------------------------------------------------- bootstrap


def bootstrap_cis(
    samples: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> list[tuple[float | None, float | None]]:
    """Percentile bootstrap CIs of a vector-valued statistic over paired samples (resampled by question).

    `statistic(*samples, axis=-1)` must be vectorised and return one value per output (shape (k, ...)).
    Returns one (low, high) per output; (None, None) when there are fewer than two observations or no resamples.
    """
    from scipy import stats

    arrays = [np.asarray(sample, dtype=float) for sample in samples]
    n = len(arrays[0])
    n_outputs = int(np.size(statistic(*arrays, axis=-1)))
    if n < 2 or n_resamples < 1:
        return [(None, None)] * n_outputs
    batch = max(1, _BATCH_ELEMENTS // (n * len(arrays)))
    with warnings.catch_warnings():
        # A constant sample (e.g. every answer right) has a degenerate but well-defined percentile interval.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.simplefilter("ignore", category=getattr(stats, "DegenerateDataWarning", RuntimeWarning))
        result = stats.bootstrap(
            tuple(arrays),
            statistic,
            n_resamples=n_resamples,
            batch=batch,
            vectorized=True,
            paired=True,
            axis=-1,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    lows = np.atleast_1d(result.confidence_interval.low)
    highs = np.atleast_1d(result.confidence_interval.high)
    return [(_finite_or_none(lo), _finite_or_none(hi)) for lo, hi in zip(lows, highs)]


def _means(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.stack([column.mean(axis=axis) for column in columns])


def bootstrap_means(
    columns: Sequence[np.ndarray], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> list[Estimate]:
    """Means of several per-question columns (e.g. EM and F1 of one arm) with bootstrap CIs from shared resamples."""
    arrays = [np.asarray(column, dtype=float) for column in columns]
    if len(arrays[0]) == 0:
        return [Estimate(None) for _ in arrays]
    values = _means(*arrays)
    cis = bootstrap_cis(arrays, _means, n_resamples=n_resamples, seed=seed, confidence=confidence)
    return [Estimate(float(value), lo, hi) for value, (lo, hi) in zip(values, cis)]


def accuracy_percent(
    em: np.ndarray, f1: np.ndarray, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Per-question EM (0/1) and F1 (0..1) as percentages with bootstrap CIs from shared resamples, in report.json's
    shape: em, em_ci, f1, f1_ci (None and [None, None] without questions)."""
    em_pct, f1_pct = (estimate.scaled(100) for estimate in bootstrap_means(
        [em, f1], n_resamples=n_resamples, seed=seed, confidence=confidence))
    return {"em": em_pct.value, "em_ci": [em_pct.ci_low, em_pct.ci_high],
            "f1": f1_pct.value, "f1_ci": [f1_pct.ci_low, f1_pct.ci_high]}


# ---------------------------------------------------------------- block bootstrap (series in time order)

# Below this many observations the autocorrelation cannot be estimated: blocks of one (the ordinary bootstrap).
_MIN_SERIES = 30


def block_length(series: np.ndarray) -> int:
    """The circular block bootstrap's block length for a series in time order: Politis and White's (2004) automatic
    rule as corrected by Patton, Politis and White (2009) (`arch.bootstrap.optimal_block_length`), rounded up and
    kept to at most a quarter of the series; 1 (no dependence to carry) for a short or constant series."""
    from arch.bootstrap import optimal_block_length

    values = np.asarray(series, dtype=float)
    if values.size < _MIN_SERIES or np.ptp(values) == 0:
        return 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        estimate = float(optimal_block_length(values)["circular"].iloc[0])
    if not math.isfinite(estimate):
        return 1
    return int(min(max(1, math.ceil(estimate)), values.size // 4))


def block_bootstrap_cis(
    samples: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    *,
    block: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> list[tuple[float | None, float | None]]:
    """Percentile CIs of a vector-valued `statistic(*samples)` from `arch`'s circular block bootstrap: blocks of
    `block` consecutive positions (the samples in time order, resampled together), wrapped at the end."""
    from arch.bootstrap import CircularBlockBootstrap

    arrays = [np.asarray(sample, dtype=float) for sample in samples]
    n_outputs = int(np.size(statistic(*arrays)))
    if len(arrays[0]) < 2 or n_resamples < 1:
        return [(None, None)] * n_outputs
    bootstrap = CircularBlockBootstrap(max(1, block), *arrays, seed=np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        replicates = np.asarray(bootstrap.apply(lambda *xs: np.atleast_1d(statistic(*xs)), n_resamples), dtype=float)
    tail = 100 * (1 - confidence) / 2
    lows, highs = np.percentile(replicates, [tail, 100 - tail], axis=0)
    return [(_finite_or_none(lo), _finite_or_none(hi)) for lo, hi in zip(np.atleast_1d(lows), np.atleast_1d(highs))]


def _latency_statistics(latency: np.ndarray) -> np.ndarray:
    return np.concatenate([np.percentile(latency, LATENCY_QUANTILES), [latency.mean()]])


@dataclass(frozen=True)
class LatencySummary:
    """An arm's latency quantiles and mean, each with a block-bootstrap CI, and the block length used."""

    estimates: dict[str, Estimate]
    block: int


def latency_summary(
    latency_ms: np.ndarray, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> LatencySummary:
    """p50/p90/p95/p99 and mean of one arm's latencies, given in the order the questions were asked, each with a
    circular-block-bootstrap CI."""
    latency = np.asarray(latency_ms, dtype=float)
    names = [f"p{q}" for q in LATENCY_QUANTILES] + ["mean"]
    if latency.size == 0:
        return LatencySummary({name: Estimate(None) for name in names}, 1)
    values = _latency_statistics(latency)
    block = block_length(latency)
    cis = block_bootstrap_cis([latency], _latency_statistics, block=block, n_resamples=n_resamples, seed=seed,
                              confidence=confidence)
    return LatencySummary({name: Estimate(float(v), lo, hi) for name, v, (lo, hi) in zip(names, values, cis)}, block)


# ---------------------------------------------------------------- paired tests


@dataclass(frozen=True)
class McNemarResult:
    """Exact-match agreement of two arms on the same questions.

    b: a right and b wrong; c: a wrong and b right. p_value is the exact binomial test on b of b + c;
    chi2 is McNemar's statistic with continuity correction, (|b - c| - 1)^2 / (b + c).
    """

    n: int
    both_right: int
    b: int
    c: int
    both_wrong: int
    p_value: float
    chi2: float | None
    chi2_p_value: float | None

    @property
    def discordant(self) -> int:
        return self.b + self.c

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "discordant": self.discordant}


def contingency_2x2(right_a: np.ndarray, right_b: np.ndarray) -> np.ndarray:
    """[[both right, a only], [b only, both wrong]] counts from per-question correctness."""
    a = np.asarray(right_a, dtype=bool)
    b = np.asarray(right_b, dtype=bool)
    return np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]], dtype=int)


def mcnemar_test(right_a: np.ndarray, right_b: np.ndarray) -> McNemarResult:
    from statsmodels.stats.contingency_tables import mcnemar

    table = contingency_2x2(right_a, right_b)
    b, c = int(table[0, 1]), int(table[1, 0])
    exact = mcnemar(table, exact=True)
    chi2 = chi2_p = None
    if b + c > 0:  # the chi-square statistic divides by the discordant count
        approximate = mcnemar(table, exact=False, correction=True)
        chi2, chi2_p = _finite_or_none(approximate.statistic), _finite_or_none(approximate.pvalue)
    return McNemarResult(
        n=int(table.sum()), both_right=int(table[0, 0]), b=b, c=c, both_wrong=int(table[1, 1]),
        p_value=float(exact.pvalue), chi2=chi2, chi2_p_value=chi2_p,
    )


@dataclass(frozen=True)
class PairedTResult:
    """scipy's paired t-test on a - b: the mean difference with its t-based CI."""

    n: int
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    statistic: float | None
    p_value: float | None
    df: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_t_test(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> PairedTResult:
    from scipy import stats

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n = len(a)
    if n < 2:
        return PairedTResult(n, _finite_or_none(np.mean(a - b)) if n else None, None, None, None, None, max(n - 1, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # zero variance: statistic is None below
        result = stats.ttest_rel(a, b)
        ci = result.confidence_interval(confidence)
    return PairedTResult(
        n=n, mean_diff=float(np.mean(a - b)), ci_low=_finite_or_none(ci.low), ci_high=_finite_or_none(ci.high),
        statistic=_finite_or_none(result.statistic), p_value=_finite_or_none(result.pvalue), df=int(result.df),
    )


@dataclass(frozen=True)
class WilcoxonResult:
    """scipy's Wilcoxon signed-rank test on a - b (zero differences dropped, as Wilcoxon's original)."""

    n: int
    nonzero: int
    statistic: float | None
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilcoxon_test(a: np.ndarray, b: np.ndarray) -> WilcoxonResult:
    from scipy import stats

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    nonzero = int(np.count_nonzero(diff))
    if nonzero == 0:
        return WilcoxonResult(len(diff), 0, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # "sample size too small for normal approximation"
        result = stats.wilcoxon(diff, zero_method="wilcox")
    return WilcoxonResult(len(diff), nonzero, _finite_or_none(result.statistic), _finite_or_none(result.pvalue))


def paired_mean_differences(
    diffs: Sequence[np.ndarray], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> list[Estimate]:
    """Mean per-question differences (e.g. EM and F1 of a - b) with a paired bootstrap CI each.

    Resampling the per-question differences is resampling questions with both arms' answers kept together.
    """
    return bootstrap_means(diffs, n_resamples=n_resamples, seed=seed, confidence=confidence)


def _median_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([np.median(a) / np.median(b)])


def ratio_of_medians(
    a: np.ndarray, b: np.ndarray, *, block: int = 1, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """median(a) / median(b) with a paired circular-block-bootstrap CI: the questions, in the order they were
    asked, resampled in blocks of `block` with both latencies together."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) == 0:
        return Estimate(None)
    value = _finite_or_none(_median_ratio(a, b)[0])
    (lo, hi), = block_bootstrap_cis([a, b], _median_ratio, block=block, n_resamples=n_resamples, seed=seed,
                                    confidence=confidence)
    return Estimate(value, lo, hi)


@dataclass(frozen=True)
class LogRatioResult:
    """Paired t-test on log latency: exp(mean log difference) is the geometric-mean ratio a / b."""

    n: int
    geometric_mean_ratio: float | None
    ci_low: float | None
    ci_high: float | None
    statistic: float | None
    p_value: float | None
    cohens_dz: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_latency_test(a_ms: np.ndarray, b_ms: np.ndarray, confidence: float = CONFIDENCE) -> LogRatioResult:
    log_a = np.log(np.asarray(a_ms, dtype=float))
    log_b = np.log(np.asarray(b_ms, dtype=float))
    t = paired_t_test(log_a, log_b, confidence)

    def exp(x: float | None) -> float | None:
        return None if x is None else math.exp(x)

    return LogRatioResult(
        n=t.n, geometric_mean_ratio=exp(t.mean_diff), ci_low=exp(t.ci_low), ci_high=exp(t.ci_high),
        statistic=t.statistic, p_value=t.p_value, cohens_dz=cohens_dz(log_a - log_b),
    )


# ---------------------------------------------------------------- effect sizes, power, multiplicity


def cohens_dz(diff: np.ndarray) -> float | None:
    """Standardised mean of paired differences: mean / SD (ddof 1)."""
    diff = np.asarray(diff, dtype=float)
    if len(diff) < 2:
        return None
    sd = float(np.std(diff, ddof=1))
    return float(np.mean(diff)) / sd if sd > 0 else None


def mcnemar_odds_ratio(b: int, c: int) -> float | None:
    """The conditional odds ratio b / c of a McNemar table (a right where b is wrong, per the reverse)."""
    return b / c if c > 0 else None


def cohens_g(b: int, c: int) -> float | None:
    """Cohen's g for McNemar: b / (b + c) - 0.5 (0 = no preference among discordant questions; signed here)."""
    return b / (b + c) - 0.5 if b + c > 0 else None


def minimum_detectable_difference(
    diff: np.ndarray, *, alpha: float = ALPHA, power: float = POWER,
) -> float | None:
    """The smallest mean paired difference a two-sided paired t-test on these n questions detects with `power`.

    statsmodels' TTestPower solves for the standardised effect d_z at this n; times the SD of the observed
    per-question differences, it is back on the data's scale. For exact match (differences -1/0/+1) this is
    the normal approximation to McNemar's test, its SD set by the observed discordant rate.
    """
    from statsmodels.stats.power import TTestPower

    diff = np.asarray(diff, dtype=float)
    n = len(diff)
    if n < 3:
        return None
    sd = float(np.std(diff, ddof=1))
    if sd == 0:
        return None
    d_z = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(d_z) * sd


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (statsmodels multipletests) over the p-values that exist; None stays None."""
    from statsmodels.stats.multitest import multipletests

    present = [i for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    if not present:
        return adjusted
    _, corrected, _, _ = multipletests([p_values[i] for i in present], alpha=ALPHA, method="holm")
    for i, p in zip(present, corrected):
        adjusted[i] = float(p)
    return adjusted
