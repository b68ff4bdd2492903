"""Turn a run's inputs into the report's data: per-arm summaries, per-pair tests, load tables (all JSON-ready).

Pure: `RunInputs` in, a plain dict out (this dict is report.json). Accuracy is reported in percent and
differences in percentage points; latency in milliseconds. Every arm carries its provenance (served model,
stand-in, or replayed file) so that no number is shown without where it came from.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from abqa.analysis import decision, stats
from abqa.analysis.inputs import ArmAnswers, RunInputs, pair_positions, time_order
from abqa.analysis.squad_v2 import squad_v2_block, squad_v2_notes
from abqa.core.records import STANDIN_WARNING
from abqa.analysis.load_report import load_facts, load_notes, load_steps
from abqa.core.run import SCHEMA_VERSION, ArmInfo, EvalStatus

PAIR_SEPARATOR = "__vs__"
# Family-wise: each test's p-values are Holm-adjusted over the pairs (one family per test).
HOLM_FAMILIES = ("mcnemar", "paired_t_f1", "wilcoxon_f1", "latency_log_t")


@dataclass(frozen=True)
class ReportSettings:
    n_resamples: int = stats.DEFAULT_RESAMPLES
    seed: int = stats.DEFAULT_SEED
    confidence: float = stats.CONFIDENCE
    alpha: float = stats.ALPHA
    power: float = stats.POWER
    # Given on `abqa report` (None: meta.json's declaration, if any): the decision's baseline and margins (points).
    baseline: str | None = None
    margins: dict[str, float] | None = None
    cost_per_hour: float | None = None

    @property
    def bootstrap(self) -> dict[str, Any]:
        """The keyword arguments of every bootstrap in the report (abqa.analysis.stats)."""
        return {"n_resamples": self.n_resamples, "seed": self.seed, "confidence": self.confidence}


def pair_key(arm_a: str, arm_b: str) -> str:
    return f"{arm_a}{PAIR_SEPARATOR}{arm_b}"


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _ci(estimate: stats.Estimate) -> list[float | None]:
    return [estimate.ci_low, estimate.ci_high]


# ---------------------------------------------------------------- provenance


def arm_provenance(
    arm: str, meta_arm: ArmInfo | None, load_standin: bool | None, answers: ArmAnswers | None,
) -> dict[str, Any]:
    """Where an arm's numbers come from: a served model, a stand-in, or a replayed prediction file.

    meta.json says so; without it, an arm that answered with no latency at all is taken for a replay and the
    guess is flagged `inferred`.
    """
    inferred = meta_arm is None
    if meta_arm is not None:
        kind = meta_arm.kind.value
    elif answers is not None and not answers.has_latency and load_standin is None:
        kind = "replay"
    elif answers is not None or load_standin is not None:
        kind = "served"
    else:
        kind = "unknown"
    info = meta_arm or ArmInfo(kind="served")   # an empty provenance for the guesses
    standin = bool(info.standin) if info.standin is not None else bool(load_standin)
    if kind == "replay":
        tag = "replay"
        description = (f"replayed prediction file {Path(info.replay_file).name}" if info.replay_file
                       else "replayed prediction file")
        if info.replay_sha256:
            description += f" (sha256 {info.replay_sha256[:12]})"
        description += "; no latency"
    elif standin:
        tag = "STAND-IN"
        description = STANDIN_WARNING
    elif kind == "served":
        tag = "served"
        description = "served by Triton"
        if info.source:
            description += f" from {info.source}"
        if info.revision:
            description += f" @ {info.revision[:12]}"
    else:
        tag, description = "unknown", "source unknown (no meta.json entry)"
    if inferred and kind != "unknown":
        description += " (inferred: meta.json does not say)"
    return {
        "kind": kind, "standin": standin, "tag": tag, "label": f"{arm} ({tag})", "description": description,
        "inferred": inferred, "source": info.source, "revision": info.revision,
        "replay_file": info.replay_file, "replay_sha256": info.replay_sha256,
        "unknown_ids": info.unknown_ids, "missing_ids": info.missing_ids if meta_arm is not None else None,
    }


# ---------------------------------------------------------------- per arm


def latency_block(answers: ArmAnswers, excluded: int, settings: ReportSettings) -> dict[str, Any] | None:
    """Quantiles and mean of the arm's latencies, with CIs from a block bootstrap over them in time order."""
    ordered = answers.latency_ms[answers.time_order()]
    latency = ordered[np.isfinite(ordered)]
    if latency.size == 0:
        return None
    summary = stats.latency_summary(
        latency, n_resamples=settings.n_resamples, seed=settings.seed, confidence=settings.confidence)
    block: dict[str, Any] = {"n": int(latency.size), "excluded_failed_or_missing": excluded}
    block.update({name: estimate.value for name, estimate in summary.estimates.items()})
    block["min"], block["max"] = float(latency.min()), float(latency.max())
    block["ci"] = {name: _ci(estimate) for name, estimate in summary.estimates.items()}
    block["block_length"] = summary.block
    return block


def summarise_arm(
    arm: str, inputs: RunInputs, settings: ReportSettings,
) -> dict[str, Any]:
    meta_arm = inputs.meta.arms.get(arm) if inputs.meta is not None else None
    load_standin = inputs.load.standin.get(arm) if inputs.load is not None else None
    answers = inputs.answers.get(arm)
    provenance = arm_provenance(arm, meta_arm, load_standin, answers)
    summary: dict[str, Any] = {
        "provenance": provenance,
        "accuracy_meaningful": not provenance["standin"],
        "questions": 0, "ok": 0, "failed": 0, "missing": 0, "unscored": 0, "duplicates": 0,
        "em": None, "em_ci": [None, None], "f1": None, "f1_ci": [None, None],
        "latency_ms": None,
    }
    scored = answers.answered_ok() if answers is not None else None
    if answers is not None and answers.n:
        failed, missing = answers.count("failed"), answers.count("missing")
        summary.update({
            "questions": answers.n, "ok": answers.count("ok"), "failed": failed, "missing": missing,
            "unscored": answers.count("unscored"), "duplicates": answers.duplicates,
            "latency_ms": latency_block(answers, failed + missing, settings),
            "error_messages": dict(sorted(answers.errors.items(), key=lambda item: -item[1])[:5]),
        })
    if scored is not None and scored.n:
        summary.update(stats.accuracy_percent(scored.em, scored.f1, **settings.bootstrap))
    info = meta_arm or ArmInfo(kind="served")
    summary["model"] = {"architecture": info.architecture, "variant": info.variant, "parameters": info.parameters,
                        "onnx_file_size": info.onnx_file_size}
    summary["load"] = load_steps(inputs.load, arm)
    qa = inputs.meta.qa.to_dict() if inputs.meta is not None and inputs.meta.qa is not None else None
    squad_v2 = squad_v2_block(scored, settings, qa)
    if squad_v2 is not None:  # a SQuAD v2.0 run: HasAns/NoAns and the best threshold (a v1.1 report is unchanged)
        summary["squad_v2"] = squad_v2
    return summary


# ---------------------------------------------------------------- per pair


def compare_pair(a: ArmAnswers, b: ArmAnswers, settings: ReportSettings, family: int = 1) -> dict[str, Any]:
    """Every test of a against b; differences are a - b. Accuracy is compared on the questions both arms answered
    (status ok), how often each failed to answer on its own (`failures`), latency on every answer (unscored ones
    too: a routed request is still a request). `family`: how many comparisons the verdict adjusts over."""
    latency = _compare_latency_on_all(a, b, settings)
    failures = compare_failures(a, b)
    a, b = a.answered_ok(), b.answered_ok()
    ia, ib, only_a, only_b = pair_positions(a, b)
    em_a, em_b, f1_a, f1_b = a.em[ia], b.em[ib], a.f1[ia], b.f1[ib]
    n = len(ia)
    result: dict[str, Any] = {
        "arm_a": a.arm, "arm_b": b.arm, "difference": f"{a.arm} - {b.arm}",
        "paired_questions": n, "only_a": only_a, "only_b": only_b, "failures": failures,
    }
    if n == 0:
        result["error"] = "no question was answered by both arms"
        result["latency"] = latency
        return result

    mcnemar = stats.mcnemar_test(em_a == 1, em_b == 1)
    t_f1 = stats.paired_t_test(f1_a, f1_b, settings.confidence)
    wilcoxon = stats.wilcoxon_test(f1_a, f1_b)
    em_diff, f1_diff = stats.paired_mean_differences(
        [em_a - em_b, f1_a - f1_b], n_resamples=settings.n_resamples, seed=settings.seed,
        confidence=settings.confidence)
    result["mcnemar"] = mcnemar.to_dict()
    result["paired_t_f1"] = {
        "n": t_f1.n, "statistic": t_f1.statistic, "p_value": t_f1.p_value, "df": t_f1.df,
        "mean_diff_points": _pct(t_f1.mean_diff), "ci_points": [_pct(t_f1.ci_low), _pct(t_f1.ci_high)],
    }
    result["wilcoxon_f1"] = wilcoxon.to_dict()
    result["em_diff"] = em_diff.scaled(100).to_dict()
    result["f1_diff"] = f1_diff.scaled(100).to_dict()
    flips = decision.sign_flips({"em": em_a - em_b, "f1": f1_a - f1_b}, resamples=settings.n_resamples,
                                seed=settings.seed)
    result["signflip"] = {
        "method": decision.METHOD, "resamples": flips["f1"].resamples,
        **{metric: decision.difference_block(flip, settings.confidence, family) for metric, flip in flips.items()},
    }
    check = decision.normality(f1_a - f1_b)
    result["assumptions"] = {"f1_differences": check, **decision.test_choice(
        check, t_f1.p_value, result["signflip"]["f1"]["p_value"], settings.alpha)}
    result["agreement"] = answer_agreement(a, b, ia, ib)
    result["effect_sizes"] = {
        "f1_cohens_dz": stats.cohens_dz(f1_a - f1_b),
        "em_cohens_dz": stats.cohens_dz(em_a - em_b),
        "em_odds_ratio_b_over_c": stats.mcnemar_odds_ratio(mcnemar.b, mcnemar.c),
        "em_cohens_g": stats.cohens_g(mcnemar.b, mcnemar.c),
    }
    # The verdict's tests are adjusted over the family, so the smallest detectable difference is too.
    alpha = settings.alpha / family
    mde_f1 = stats.minimum_detectable_difference(f1_a - f1_b, alpha=alpha, power=settings.power)
    mde_em = stats.minimum_detectable_difference(em_a - em_b, alpha=alpha, power=settings.power)
    result["power"] = {
        "n": n, "alpha": alpha, "power": settings.power,
        "mde_f1_points": _pct(mde_f1), "mde_em_points": _pct(mde_em),
        "method": "two-sided paired t (statsmodels TTestPower) at the SD of the observed per-question "
                  "differences; for EM this is the normal approximation to McNemar's test"
                  + (f"; alpha {settings.alpha} / {family} comparisons (Bonferroni)" if family > 1 else ""),
    }
    result["latency"] = latency
    if result["latency"]:
        result["effect_sizes"]["latency_log_cohens_dz"] = result["latency"]["log_t"]["cohens_dz"]
    return result


def answer_agreement(a: ArmAnswers, b: ArmAnswers, ia: np.ndarray, ib: np.ndarray) -> dict[str, Any] | None:
    """The share of identical answer texts on the questions both answered: meaningful even for stand-ins (a
    quantised variant that answers like its base is the same model, whatever the weights)."""
    if not a.predictions or not b.predictions or ia.size == 0:
        return None
    identical = sum(a.predictions[i] == b.predictions[j] for i, j in zip(ia, ib))
    return {"questions": int(ia.size), "identical": int(identical), "share_pct": 100.0 * identical / ia.size}


def compare_failures(a: ArmAnswers, b: ArmAnswers) -> dict[str, Any] | None:
    """How often each arm failed to answer (failed or missing) on the questions both were asked, compared paired:
    McNemar's exact test on failed versus answered."""
    a, b = a.scored(), b.scored()
    ia, ib, _, _ = pair_positions(a, b)
    if ia.size == 0:
        return None
    failed_a = np.array([a.status[i] is not EvalStatus.OK for i in ia], dtype=bool)
    failed_b = np.array([b.status[j] is not EvalStatus.OK for j in ib], dtype=bool)
    test = stats.mcnemar_test(failed_a, failed_b)
    n = int(ia.size)
    return {"questions": n, "failed_a": int(failed_a.sum()), "failed_b": int(failed_b.sum()),
            "rate_a_pct": 100.0 * failed_a.mean(), "rate_b_pct": 100.0 * failed_b.mean(),
            "difference_points": 100.0 * (failed_a.mean() - failed_b.mean()),
            "only_a": test.b, "only_b": test.c, "p_value": test.p_value,
            "method": "McNemar's exact test on failed versus answered, paired by question"}


def _compare_latency_on_all(a: ArmAnswers, b: ArmAnswers, settings: ReportSettings) -> dict[str, Any] | None:
    ia, ib, _, _ = pair_positions(a, b)
    return compare_latency(a, b, ia, ib, settings)


def compare_latency(
    a: ArmAnswers, b: ArmAnswers, ia: np.ndarray, ib: np.ndarray, settings: ReportSettings,
) -> dict[str, Any] | None:
    """Median ratio of paired latencies, its CI from a block bootstrap over the pairs in the order a asked them."""
    lat_a, lat_b = a.latency_ms[ia], b.latency_ms[ib]
    both = np.isfinite(lat_a) & np.isfinite(lat_b) & (lat_a > 0) & (lat_b > 0)
    if not np.any(both):
        return None
    order = time_order([a.started_at[i] for i in ia[both]]) if a.started_at else np.arange(int(both.sum()))
    lat_a, lat_b = lat_a[both][order], lat_b[both][order]
    block = max(stats.block_length(lat_a), stats.block_length(lat_b))
    ratio = stats.ratio_of_medians(lat_a, lat_b, block=block, n_resamples=settings.n_resamples, seed=settings.seed,
                                   confidence=settings.confidence)
    log_t = stats.log_latency_test(lat_a, lat_b, settings.confidence)
    return {
        "paired_questions": int(both.sum()),
        "median_a_ms": float(np.median(lat_a)), "median_b_ms": float(np.median(lat_b)),
        "ratio_of_medians": ratio.to_dict(), "block_length": block,
        "log_t": log_t.to_dict(),
    }


def _holm_over_pairs(tests: dict[str, dict[str, Any]]) -> None:
    """Add `p_value_holm` to each test family across the pairs (the raw p-value when there is one pair)."""
    locations = {
        "mcnemar": lambda t: t.get("mcnemar"),
        "paired_t_f1": lambda t: t.get("paired_t_f1"),
        "wilcoxon_f1": lambda t: t.get("wilcoxon_f1"),
        "latency_log_t": lambda t: (t.get("latency") or {}).get("log_t"),
    }
    for family in HOLM_FAMILIES:
        blocks = [locations[family](test) for test in tests.values()]
        present = [block for block in blocks if block is not None]
        adjusted = stats.holm_adjust([block.get("p_value") for block in present])
        for block, p in zip(present, adjusted):
            block["p_value_holm"] = p


# ---------------------------------------------------------------- the whole run


def run_info(inputs: RunInputs) -> dict[str, Any]:
    meta = inputs.meta
    facts: dict[str, Any] = {"name": meta.name if meta is not None else inputs.run_dir.name,
                             "dir": str(inputs.run_dir), "files": inputs.files}
    if meta is not None:
        facts.update(kind=meta.kind.value, created_at=meta.created_at, status=meta.status.value, order=meta.order,
                     seed=meta.seed, versions=meta.versions)
        for key in ("dataset", "server", "client", "machine", "latency"):
            part = getattr(meta, key)
            facts[key] = part.to_dict() if part is not None else None
    return facts


def _notes(data: dict[str, Any]) -> list[str]:
    notes = []
    arms = data["arms"]
    standins = [arm for arm, summary in arms.items() if summary["provenance"]["standin"]]
    if standins:
        notes.append(f"{', '.join(standins)}: {STANDIN_WARNING}.")
    replays = [arm for arm, summary in arms.items() if summary["provenance"]["kind"] == "replay"]
    if replays:
        notes.append(f"{', '.join(replays)}: replayed prediction files; their accuracy is real, but they have no "
                     "latency, memory or throughput.")
    for arm, summary in arms.items():
        if summary["unscored"]:
            notes.append(f"{arm}: {summary['unscored']} answers had nothing to score them against (routed requests "
                         "without a SQuAD id): their latency counts, their accuracy does not.")
        if summary["failed"] or summary["missing"]:
            notes.append(f"{arm}: {summary['failed']} failed and {summary['missing']} missing answers are left out of "
                         "accuracy and latency; how often each arm fails is compared on its own (Failures).")
        if summary["duplicates"]:
            notes.append(f"WARNING {arm}: {summary['duplicates']} (question, arm) pairs appear more than once in "
                         "eval.jsonl (two runs wrote the folder at once, which abqa now refuses, or an older abqa "
                         "appended retries); the last record of each is used, and its latency may be that of a "
                         "contended run: evaluate again into a new folder to be sure.")
        if summary["provenance"]["inferred"] and summary["provenance"]["kind"] != "unknown":
            notes.append(f"{arm}: meta.json does not say how it was produced; taken for "
                         f"{summary['provenance']['kind']}.")
    for key, test in data["tests"].items():
        if test.get("only_a") or test.get("only_b"):
            notes.append(f"{test['arm_a']} vs {test['arm_b']}: {test['paired_questions']} questions paired by id; "
                         f"{test['only_a']} answered only by {test['arm_a']} and {test['only_b']} only by "
                         f"{test['arm_b']} are left out of the paired tests.")
    if len(data["tests"]) > 1:
        notes.append(f"{len(data['tests'])} pairs: each test's p-values are Holm-adjusted over the pairs "
                     "(p_value_holm); the verdict's p-values and CIs are Bonferroni-adjusted together.")
    if (data["run"].get("order") == "parallel") and any(s["latency_ms"] for s in arms.values()):
        notes.append("Order parallel: every served arm answered each question at the same time, competing for the "
                     "same cores, so each arm's latency includes the others' load and the arms' latencies are "
                     "correlated; run with --order random to compare latency.")
    notes += [f"Not a random sample: {caveat}." for caveat in data["sample_caveats"]]
    dataset = (data["run"].get("dataset") or {})
    if dataset.get("source") == "builtin-sample":
        notes.append("Dataset: the built-in sample, not the SQuAD dev set; accuracy is not comparable with "
                     "published scores.")
    return notes


def build_report_data(inputs: RunInputs, settings: ReportSettings = ReportSettings()) -> dict[str, Any]:
    """The whole report as JSON-ready data (report.json), verdict included."""
    from abqa.analysis.tradeoff import tradeoff_table
    from abqa.analysis.variants import variant_comparisons
    from abqa.analysis.verdict import verdict_lines
    from abqa.analysis.where import where_difference_lives

    arms = {arm: summarise_arm(arm, inputs, settings) for arm in inputs.arm_order}
    answered = [arm for arm in inputs.arm_order if arm in inputs.answers and inputs.answers[arm].n]
    plan = decision.choose_plan(inputs.meta.decision if inputs.meta is not None else None, settings.baseline,
                                settings.margins, answered)
    if plan.baseline is not None:  # differences read candidate - baseline
        answered = [arm for arm in answered if arm != plan.baseline] + [plan.baseline]
    pairs = list(itertools.combinations(answered, 2))
    tests = {
        pair_key(a, b): compare_pair(inputs.answers[a], inputs.answers[b], settings, family=len(pairs))
        for a, b in pairs
    }
    _holm_over_pairs(tests)
    for test in tests.values():
        test["accuracy_meaningful"] = (arms[test["arm_a"]]["accuracy_meaningful"]
                                       and arms[test["arm_b"]]["accuracy_meaningful"])
    load = load_facts(inputs.load, inputs.requests, settings.bootstrap)
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run": run_info(inputs),
        "settings": {
            "bootstrap_resamples": settings.n_resamples, "seed": settings.seed, "confidence": settings.confidence,
            "alpha": settings.alpha, "power": settings.power,
            "bootstrap": "percentile, questions resampled with replacement (paired for differences)",
            "multiple_comparisons": "holm" if len(tests) > 1 else "none (one pair)",
            "latency_bootstrap": "circular block bootstrap (arch) over the questions in the order they were asked "
                                 "(started_at), block length by Politis and White's rule",
            "verdict_test": decision.METHOD,
        },
        "arms": arms,
        "tests": tests,
        "load": load,
        "sample_caveats": decision.sample_caveats(inputs),
    }
    meaningful = {arm: summary["accuracy_meaningful"] for arm, summary in arms.items()}
    found = decision.noninferiority(inputs, plan, resamples=settings.n_resamples, seed=settings.seed,
                                    meaningful=meaningful)
    data["decision"] = {**plan.to_dict(), "method": decision.METHOD, "alpha": decision.NONINFERIORITY_ALPHA,
                        "equivalence_alpha": decision.EQUIVALENCE_ALPHA, "candidates": found["details"]}
    data["noninferiority"], data["equivalence"] = found["noninferiority"], found["equivalence"]
    data["variants"] = variant_comparisons(inputs, settings)
    data["where"] = where_difference_lives(inputs, data, plan.baseline)
    data["tradeoff"] = tradeoff_table(data, inputs, settings.cost_per_hour)
    data["notes"] = _notes(data) + squad_v2_notes(data) + load_notes(data)
    data["verdict"] = verdict_lines(data)
    _add_languages(data, inputs, settings)
    return data


def _add_languages(data: dict[str, Any], inputs: RunInputs, settings: ReportSettings) -> None:
    """A multilingual run (records with a language) gets per-language tables, notes and verdict lines."""
    from abqa.analysis.languages import language_notes, language_report, language_verdict

    report = language_report(inputs, data["arms"], settings)
    if report is None:
        return
    data["languages"] = report
    data["notes"] += language_notes(report)
    from abqa.analysis.verdict import pair_lines_end

    end = pair_lines_end(data)
    data["verdict"][end:end] = language_verdict(report, data["arms"])
