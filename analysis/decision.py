"""The decision: may each candidate ship in place of the baseline? Non-inferiority and equivalence within declared
margins, on one test procedure whose p-value and CI always agree (pure: arrays and report data in, dicts out).

The procedure is the sign-flip permutation test on per-question differences (candidate - baseline, questions both
arms answered). Under "the mean difference is delta" the signs of (d_i - delta) are exchangeable when the
differences are symmetric about delta, and the test is asymptotically valid without symmetry (the flipped sums
have the variance of the mean's sampling distribution). It needs no normality, which per-question F1 differences
never have (most are exactly 0).

One set of random flips tests every null value at once: flipping the subset F of (d - delta) leaves a sum at least
the observed one exactly when delta is at or above c_F, the mean of d over F. So the p-value at any delta counts
subset means on one side of it, and the CI (the deltas no test rejects) is a pair of order statistics of the same
subset means: the interval and the p-value cannot disagree, at any level. With several candidates both are
Bonferroni-adjusted together (p x m, and the 1 - alpha/m interval).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from abqa.analysis.inputs import ArmAnswers, RunInputs, pair_positions
from abqa.core.errors import AbqaError
from abqa.core.run import DecisionPlan

METHOD = "sign-flip permutation test"
METRICS = {"f1": "F1", "em": "EM"}
# Non-inferiority is one-sided at half the two-sided level: "the 95% CI's lower bound is above -margin" is "the
# one-sided p of H0 difference <= -margin is below 0.025". Equivalence (TOST) is the usual 90% CI within +-margin.
NONINFERIORITY_ALPHA = 0.025
EQUIVALENCE_ALPHA = 0.05
# Flips are drawn in batches of about this many elements (float64 after the product: ~16 MB).
_BATCH_ELEMENTS = 2_000_000


# ---------------------------------------------------------------- the sign-flip distribution


@dataclass(frozen=True)
class SignFlip:
    """The sign-flip randomisation distribution of a mean of paired differences, as the subset means c_F.

    `subset_means` is sorted; `always` counts flips that flipped nothing (they tie the observed sum at every delta).
    """

    n: int
    mean: float
    subset_means: np.ndarray
    always: int

    @property
    def resamples(self) -> int:
        return len(self.subset_means) + self.always

    def p_above(self, delta: float) -> float:
        """One-sided p of H0 "mean <= delta" against "mean > delta"."""
        count = int(np.searchsorted(self.subset_means, delta, side="right")) + self.always
        return (1 + count) / (self.resamples + 1)

    def p_below(self, delta: float) -> float:
        """One-sided p of H0 "mean >= delta" against "mean < delta"."""
        count = len(self.subset_means) - int(np.searchsorted(self.subset_means, delta, side="left")) + self.always
        return (1 + count) / (self.resamples + 1)

    def p_two_sided(self, delta: float = 0.0) -> float:
        return min(1.0, 2 * min(self.p_above(delta), self.p_below(delta)))

    def interval(self, confidence: float) -> tuple[float | None, float | None]:
        """The deltas that neither one-sided test rejects at (1 - confidence) / 2; None where the flips are too few
        to bound it (fewer resamples than the level needs)."""
        tail = (1 - confidence) / 2
        k = math.floor(tail * (self.resamples + 1) - 1 - self.always) + 1   # subset means needed on each side
        size = len(self.subset_means)
        if k < 1 or k > size:
            return None, None
        return float(self.subset_means[k - 1]), float(self.subset_means[size - k])


def sign_flips(diffs: dict[str, np.ndarray], *, resamples: int, seed: int) -> dict[str, SignFlip]:
    """One sign-flip distribution per column of paired differences, all from the same seeded flips."""
    names = list(diffs)
    matrix = np.column_stack([np.asarray(diffs[name], dtype=float) for name in names])
    n = matrix.shape[0]
    if n == 0:
        raise ValueError("no paired differences")
    rng = np.random.default_rng(seed)
    batch = max(1, _BATCH_ELEMENTS // n)
    sums, counts = [], []
    for start in range(0, resamples, batch):
        flipped = rng.random((min(batch, resamples - start), n)) < 0.5
        sums.append(flipped @ matrix)
        counts.append(flipped.sum(axis=1))
    total, flipped_count = np.concatenate(sums), np.concatenate(counts)
    some = flipped_count > 0
    result = {}
    for column, name in enumerate(names):
        means = np.sort(total[some, column] / flipped_count[some])
        result[name] = SignFlip(n=n, mean=float(matrix[:, column].mean()), subset_means=means,
                                always=int((~some).sum()))
    return result


# ---------------------------------------------------------------- difference statements (pairs of arms)


def difference_block(flip: SignFlip, confidence: float, family: int) -> dict[str, Any]:
    """A mean difference in points with its two-sided p and CI, raw and adjusted over `family` comparisons
    (Bonferroni: p x m and the 1 - alpha/m interval, which agree with each other as the raw ones do)."""
    alpha = 1 - confidence
    raw_p = flip.p_two_sided(0.0)
    return {
        "difference": 100 * flip.mean,
        "ci": _points(flip.interval(confidence)),
        "p_value": raw_p,
        "family": family,
        "ci_adjusted": _points(flip.interval(1 - alpha / family)),
        "p_value_adjusted": min(1.0, raw_p * family),
    }


def _points(interval: tuple[float | None, float | None]) -> list[float | None]:
    return [None if value is None else 100 * value for value in interval]


def normality(diffs: np.ndarray) -> dict[str, Any]:
    """How far per-question differences are from normal: the t-test's assumption, checked (Dror et al. 2018)."""
    from scipy import stats

    diffs = np.asarray(diffs, dtype=float)
    block: dict[str, Any] = {"n": int(diffs.size), "zero_share": float(np.mean(diffs == 0)) if diffs.size else None,
                             "shapiro_w": None, "shapiro_p": None, "skewness": None, "excess_kurtosis": None}
    if diffs.size >= 3 and np.ptp(diffs) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # scipy: "for N > 5000, the p-value may not be accurate"
            shapiro = stats.shapiro(diffs)
        block.update(shapiro_w=float(shapiro.statistic), shapiro_p=float(shapiro.pvalue),
                     skewness=float(stats.skew(diffs)), excess_kurtosis=float(stats.kurtosis(diffs)))
    block["normal"] = block["shapiro_p"] is not None and block["shapiro_p"] >= 0.05
    return block


def test_choice(check: dict[str, Any], t_p: float | None, flip_p: float | None, alpha: float) -> dict[str, Any]:
    """Which test the verdict rests on, and why: always the sign-flip test; the paired t-test beside it, with
    whether it reaches the same conclusion."""
    if check["shapiro_w"] is None:
        why = "the differences are constant or too few to check normality"
    elif check["normal"]:
        why = (f"the differences look normal (Shapiro-Wilk W = {check['shapiro_w']:.3f}), so the t-test would do "
               "too; the permutation test is used throughout for one procedure in every sentence")
    else:
        why = (f"the differences are far from normal (Shapiro-Wilk W = {check['shapiro_w']:.3f}, "
               f"{check['zero_share']:.0%} exactly zero), which the t-test assumes and the permutation test does not")
    agree = None if t_p is None or flip_p is None else (t_p < alpha) == (flip_p <= alpha)
    return {"test": METHOD, "why": why, "paired_t_p": t_p, "signflip_p": flip_p, "agree": agree}


# ---------------------------------------------------------------- the declared plan


@dataclass(frozen=True)
class PlanChoice:
    """The baseline and margins the report uses, and whether they were declared before the data."""

    baseline: str | None
    margins: dict[str, float]
    declared: DecisionPlan | None
    chosen_after_data: bool

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "margins": dict(self.margins),
                "declared": self.declared.to_dict() if self.declared is not None else None,
                "chosen_after_data": self.chosen_after_data}


def choose_plan(declared: DecisionPlan | None, baseline: str | None, margins: dict[str, float] | None,
                arms: list[str]) -> PlanChoice:
    """What `abqa report` was given, falling back on meta.json's declaration; anything given that meta.json did not
    declare is marked as chosen after the data."""
    declared_baseline = declared.baseline if declared is not None else None
    declared_margins = dict(declared.margins) if declared is not None else {}
    used_baseline = baseline if baseline is not None else declared_baseline
    used_margins = dict(margins) if margins is not None else declared_margins
    if used_margins and used_baseline is None:
        raise AbqaError("--margin needs a baseline: give --baseline ARM (one of " + ", ".join(arms) + ")")
    if used_baseline is not None and used_baseline not in arms:
        raise AbqaError(f"--baseline {used_baseline}: no such arm in this run; its arms with answers are "
                        + (", ".join(arms) or "none"))
    after = (used_baseline != declared_baseline or used_margins != declared_margins) and bool(used_margins)
    return PlanChoice(used_baseline, used_margins, declared, after)


# ---------------------------------------------------------------- non-inferiority and equivalence


def _paired_ok(candidate: ArmAnswers, baseline: ArmAnswers) -> tuple[ArmAnswers, ArmAnswers, np.ndarray, np.ndarray]:
    a, b = candidate.answered_ok(), baseline.answered_ok()
    ia, ib, _, _ = pair_positions(a, b)
    return a, b, ia, ib


def _t_one_sided_p(diffs: np.ndarray, delta: float) -> float | None:
    from scipy import stats

    if diffs.size < 2 or np.ptp(diffs) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        p = stats.ttest_1samp(diffs, delta, alternative="greater").pvalue
    return float(p) if math.isfinite(p) else None


def noninferiority(inputs: RunInputs, plan: PlanChoice, *, resamples: int, seed: int,
                   meaningful: dict[str, bool]) -> dict[str, Any]:
    """report.json's `noninferiority` and `equivalence` lists and the per-candidate details behind them.

    Every candidate (every other arm with answers) against the baseline, on the questions both answered, for every
    metric with a margin; adjusted over the candidates (a candidate ships when it passes on every metric, an
    intersection-union test that needs no adjustment over the metrics)."""
    empty: dict[str, Any] = {"noninferiority": [], "equivalence": [], "details": {}}
    if plan.baseline is None or not plan.margins:
        return empty
    candidates = [arm for arm, answers in inputs.answers.items() if arm != plan.baseline and answers.n]
    m = max(1, len(candidates))
    rows, equivalence, details = [], [], {}
    for candidate in candidates:
        a, b, ia, ib = _paired_ok(inputs.answers[candidate], inputs.answers[plan.baseline])
        if ia.size == 0:
            details[candidate] = {"paired_questions": 0, "error": "no question was answered by both"}
            continue
        diffs = {metric: getattr(a, metric)[ia] - getattr(b, metric)[ib] for metric in plan.margins}
        flips = sign_flips(diffs, resamples=resamples, seed=seed)
        checks = {}
        for metric, margin in plan.margins.items():
            flip, delta = flips[metric], -margin / 100
            row = _noninferiority_row(candidate, plan.baseline, metric, margin, flip, m)
            rows.append(row)
            equivalence.append(_equivalence_row(candidate, plan.baseline, metric, margin, flip, m))
            check = normality(diffs[metric])
            t_p = _t_one_sided_p(diffs[metric], delta)
            checks[metric] = {"normality": check, "test": test_choice(
                check, None if t_p is None else min(1.0, t_p * m), row["p_value"], NONINFERIORITY_ALPHA),
                # What "inferior" rests on: H0 "difference >= -margin", adjusted with the same CI.
                "p_inferior": min(1.0, flip.p_below(delta) * m)}
        both_meaningful = meaningful.get(candidate, True) and meaningful.get(plan.baseline, True)
        details[candidate] = {"paired_questions": int(ia.size), "accuracy_meaningful": both_meaningful,
                              "resamples": resamples, "family": m, "metrics": checks}
    return {"noninferiority": rows, "equivalence": equivalence, "details": details}


def _noninferiority_row(candidate: str, baseline: str, metric: str, margin: float, flip: SignFlip,
                        family: int) -> dict[str, Any]:
    delta = -margin / 100
    low, high = _points(flip.interval(1 - 2 * NONINFERIORITY_ALPHA / family))
    p = min(1.0, flip.p_above(delta) * family)
    if low is not None and low > -margin:
        conclusion = "non-inferior"
    elif high is not None and high < -margin:
        conclusion = "inferior"
    else:
        conclusion = "inconclusive"
    return {"candidate": candidate, "baseline": baseline, "metric": metric, "margin": margin,
            "difference": 100 * flip.mean, "ci_low": low, "ci_high": high, "p_value": p, "conclusion": conclusion}


def _equivalence_row(candidate: str, baseline: str, metric: str, margin: float, flip: SignFlip,
                     family: int) -> dict[str, Any]:
    """TOST: equivalent when both one-sided tests reject, i.e. the 1 - 2 alpha interval lies within +-margin."""
    low, high = _points(flip.interval(1 - 2 * EQUIVALENCE_ALPHA / family))
    p = min(1.0, max(flip.p_above(-margin / 100), flip.p_below(margin / 100)) * family)
    equivalent = low is not None and high is not None and -margin < low and high < margin
    return {"candidate": candidate, "baseline": baseline, "metric": metric, "margin": margin,
            "difference": 100 * flip.mean, "ci_low": low, "ci_high": high,
            "confidence": 1 - 2 * EQUIVALENCE_ALPHA / family, "p_value": p,
            "conclusion": "equivalent" if equivalent else "not shown equivalent"}


# ---------------------------------------------------------------- the verdict's first lines


def _signed(value: float) -> str:
    text = f"{value:+.1f}"
    return "0.0" if float(text) == 0 else text


def decision_lines(data: dict[str, Any]) -> list[str]:
    """The decision in plain words, one line per candidate, margins named; or why there is no decision."""
    decision = data.get("decision") or {}
    rows = data.get("noninferiority") or []
    if not rows:
        return _no_decision_line(data, decision)
    details = decision.get("candidates") or {}
    lines = []
    for candidate in dict.fromkeys(row["candidate"] for row in rows):
        lines.append(_candidate_line(candidate, [row for row in rows if row["candidate"] == candidate],
                                     details.get(candidate) or {}, data, decision))
    return lines


def _no_decision_line(data: dict[str, Any], decision: dict[str, Any]) -> list[str]:
    meaningful = [test for test in data["tests"].values() if test.get("accuracy_meaningful") and not test.get("error")]
    if not meaningful:
        return []
    example = decision.get("baseline") or meaningful[0]["arm_b"]
    return [f"No shipping decision: no non-inferiority margin was declared, so the lines below say only whether the "
            f"arms differ, not whether one is good enough to replace another. Declare one before the data "
            f"(`abqa evaluate ... --baseline {example} --margin f1=1.0`), or at report time (marked as chosen "
            f"after the data)."]


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _one_sided(row: dict[str, Any], detail: dict[str, Any]) -> str:
    """The one-sided test the conclusion rests on: "worse by the margin or more" rejected (non-inferior), or
    "within the margin" rejected (inferior); both when inconclusive, neither rejected."""
    margin = f"{row['margin']:g}"
    against_worse = f"{_p_text(row['p_value'])} against 'worse by {margin} or more'"
    p_inferior = ((detail.get("metrics") or {}).get(row["metric"]) or {}).get("p_inferior")
    against_within = None if p_inferior is None else f"{_p_text(p_inferior)} against 'within {margin}'"
    if row["conclusion"] == "inferior" and against_within:
        return f"one-sided {against_within}"
    if row["conclusion"] == "non-inferior" or against_within is None:
        return f"one-sided {against_worse}"
    return f"one-sided {against_worse}, {against_within}"



def _candidate_line(candidate: str, rows: list[dict[str, Any]], detail: dict[str, Any], data: dict[str, Any],
                    decision: dict[str, Any]) -> str:
    baseline = rows[0]["baseline"]
    conclusions = {row["conclusion"] for row in rows}
    if "inferior" in conclusions:
        overall = "INFERIOR: do not ship"
    elif conclusions == {"non-inferior"}:
        overall = "NON-INFERIOR: may ship"
    else:
        overall = "INCONCLUSIVE: the sample cannot tell"
    if not detail.get("accuracy_meaningful", True):
        # The figures still show the procedure at work; a ship/do-not-ship word would read as a finding.
        overall = "NO DECISION: a stand-in's accuracy is meaningless (untrained weights)"
    family = detail.get("family", 1)
    level = 1 - 2 * NONINFERIORITY_ALPHA / family
    parts = []
    for row in rows:
        ci = ("CI not available" if row["ci_low"] is None or row["ci_high"] is None
              else f"{level:.1%} CI [{_signed(row['ci_low'])}, {_signed(row['ci_high'])}]".replace(".0%", "%"))
        parts.append(f"{METRICS[row['metric']]} {_signed(row['difference'])} points, {ci} against a margin of "
                     f"-{row['margin']:g}: {row['conclusion']} ({_one_sided(row, detail)})")
    adjusted = f", Bonferroni over {family} candidates" if family > 1 else ""
    text = (f"Decision: {candidate} against {baseline}: {overall}. " + "; ".join(parts)
            + f" ({METHOD}, {detail.get('paired_questions', 0):,} questions both answered{adjusted}).")
    caveats = []
    if decision.get("chosen_after_data"):
        caveats.append("the margin was chosen after the data (not declared in meta.json)")
    caveats += data.get("sample_caveats") or []
    if caveats:
        text += " Caution: " + "; ".join(caveats) + "."
    return text


# ---------------------------------------------------------------- is the sample a sample?


def sample_caveats(inputs: RunInputs) -> list[str]:
    """Why the questions may not stand for the data set: a --limit prefix, or a run that stopped early. Both keep
    the questions in file order, and SQuAD's file order is by article, so they are a handful of topics, not a
    random sample, however many questions they are."""
    meta = inputs.meta
    if meta is None or meta.dataset is None:
        return []
    dataset, caveats = meta.dataset, []
    if dataset.limit is not None and dataset.limit < (dataset.sample or dataset.questions):
        caveats.append(f"--limit {dataset.limit}: the questions are the first {dataset.limit:,} "
                       + (f"of a random sample of {dataset.sample:,} " if dataset.sample else "")
                       + "in file order, which SQuAD groups by article: a few topics, not a random sample, so the "
                       "intervals describe these questions only (use --sample N for a seeded random sample)")
    status = meta.status.value
    short = {arm: answers.n for arm, answers in inputs.answers.items() if answers.n < dataset.evaluated_questions}
    if status != "complete" or short:
        counts = ", ".join(f"{arm} {n:,}" for arm, n in short.items())
        caveats.append(f"partial run (status {status}"
                       + (f"; of {dataset.evaluated_questions:,} questions, answered: {counts}" if short else "")
                       + "): the questions done are the first ones in the run's order, not a random sample")
    return caveats
