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

from abqa.analysis import stats
from abqa.analysis.inputs import ArmAnswers, RunInputs
from abqa.analysis.squad_v2 import squad_v2_block, squad_v2_notes
from abqa.core.records import STANDIN_WARNING
from abqa.core.run import SCHEMA_VERSION, ArmInfo, LoadRow, LoadStepReport

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


def latency_block(latency_ms: np.ndarray, excluded: int, settings: ReportSettings) -> dict[str, Any] | None:
    latency = latency_ms[np.isfinite(latency_ms)]
    if latency.size == 0:
        return None
    summary = stats.latency_summary(
        latency, n_resamples=settings.n_resamples, seed=settings.seed, confidence=settings.confidence)
    block: dict[str, Any] = {"n": int(latency.size), "excluded_failed_or_missing": excluded}
    block.update({name: estimate.value for name, estimate in summary.items()})
    block["min"], block["max"] = float(latency.min()), float(latency.max())
    block["ci"] = {name: _ci(estimate) for name, estimate in summary.items()}
    return block


def load_step(row: LoadRow) -> dict[str, Any]:
    return LoadStepReport.from_row(row).to_dict()


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
    scored = answers.scored() if answers is not None else None
    if answers is not None and answers.n:
        failed, missing = answers.count("failed"), answers.count("missing")
        summary.update({
            "questions": answers.n, "ok": answers.count("ok"), "failed": failed, "missing": missing,
            "unscored": answers.count("unscored"), "duplicates": answers.duplicates,
            "latency_ms": latency_block(answers.latency_ms, failed + missing, settings),
            "error_messages": dict(sorted(answers.errors.items(), key=lambda item: -item[1])[:5]),
        })
    if scored is not None and scored.n:
        summary.update(stats.accuracy_percent(scored.em, scored.f1, **settings.bootstrap))
    info = meta_arm or ArmInfo(kind="served")
    summary["model"] = {"architecture": info.architecture, "variant": info.variant, "parameters": info.parameters,
                        "onnx_file_size": info.onnx_file_size}
    steps = [load_step(row) for row in inputs.load_rows if row.arm == arm]
    steps.sort(key=lambda step: step["users"])
    summary["load"] = steps or None
    qa = inputs.meta.qa.to_dict() if inputs.meta is not None and inputs.meta.qa is not None else None
    squad_v2 = squad_v2_block(scored, settings, qa)
    if squad_v2 is not None:  # a SQuAD v2.0 run: HasAns/NoAns and the best threshold (a v1.1 report is unchanged)
        summary["squad_v2"] = squad_v2
    return summary


# ---------------------------------------------------------------- per pair


def _pairing(a: ArmAnswers, b: ArmAnswers) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Positions of the ids both arms answered (in a's order), and how many ids only one of them has."""
    position_b = {question: i for i, question in enumerate(b.ids)}
    index_a, index_b = [], []
    for i, question in enumerate(a.ids):
        j = position_b.get(question)
        if j is not None:
            index_a.append(i)
            index_b.append(j)
    paired = len(index_a)
    return np.array(index_a, dtype=int), np.array(index_b, dtype=int), a.n - paired, b.n - paired


def compare_pair(a: ArmAnswers, b: ArmAnswers, settings: ReportSettings) -> dict[str, Any]:
    """Every test of a against b on the questions both answered; differences are a - b. Accuracy is compared on
    the scored answers, latency on every answer (unscored ones too: a routed request is still a request)."""
    latency = _compare_latency_on_all(a, b, settings)
    a, b = a.scored(), b.scored()
    ia, ib, only_a, only_b = _pairing(a, b)
    em_a, em_b, f1_a, f1_b = a.em[ia], b.em[ib], a.f1[ia], b.f1[ib]
    n = len(ia)
    result: dict[str, Any] = {
        "arm_a": a.arm, "arm_b": b.arm, "difference": f"{a.arm} - {b.arm}",
        "paired_questions": n, "only_a": only_a, "only_b": only_b,
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
    result["effect_sizes"] = {
        "f1_cohens_dz": stats.cohens_dz(f1_a - f1_b),
        "em_cohens_dz": stats.cohens_dz(em_a - em_b),
        "em_odds_ratio_b_over_c": stats.mcnemar_odds_ratio(mcnemar.b, mcnemar.c),
        "em_cohens_g": stats.cohens_g(mcnemar.b, mcnemar.c),
    }
    mde_f1 = stats.minimum_detectable_difference(f1_a - f1_b, alpha=settings.alpha, power=settings.power)
    mde_em = stats.minimum_detectable_difference(em_a - em_b, alpha=settings.alpha, power=settings.power)
    result["power"] = {
        "n": n, "alpha": settings.alpha, "power": settings.power,
        "mde_f1_points": _pct(mde_f1), "mde_em_points": _pct(mde_em),
        "method": "two-sided paired t (statsmodels TTestPower) at the SD of the observed per-question "
                  "differences; for EM this is the normal approximation to McNemar's test",
    }
    result["latency"] = latency
    if result["latency"]:
        result["effect_sizes"]["latency_log_cohens_dz"] = result["latency"]["log_t"]["cohens_dz"]
    return result


def _compare_latency_on_all(a: ArmAnswers, b: ArmAnswers, settings: ReportSettings) -> dict[str, Any] | None:
    ia, ib, _, _ = _pairing(a, b)
    return compare_latency(a, b, ia, ib, settings)


def compare_latency(
    a: ArmAnswers, b: ArmAnswers, ia: np.ndarray, ib: np.ndarray, settings: ReportSettings,
) -> dict[str, Any] | None:
    lat_a, lat_b = a.latency_ms[ia], b.latency_ms[ib]
    both = np.isfinite(lat_a) & np.isfinite(lat_b) & (lat_a > 0) & (lat_b > 0)
    if not np.any(both):
        return None
    lat_a, lat_b = lat_a[both], lat_b[both]
    ratio = stats.ratio_of_medians(
        lat_a, lat_b, n_resamples=settings.n_resamples, seed=settings.seed, confidence=settings.confidence)
    log_t = stats.log_latency_test(lat_a, lat_b, settings.confidence)
    return {
        "paired_questions": int(both.sum()),
        "median_a_ms": float(np.median(lat_a)), "median_b_ms": float(np.median(lat_b)),
        "ratio_of_medians": ratio.to_dict(),
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
            notes.append(f"{arm}: {summary['failed']} failed and {summary['missing']} missing answers count as wrong "
                         "(EM 0, F1 0) and are left out of latency statistics.")
        if summary["duplicates"]:
            notes.append(f"{arm}: {summary['duplicates']} repeated records for an already answered question; "
                         "the last one is used.")
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
                     "(p_value_holm); the verdict uses the adjusted values.")
    dataset = (data["run"].get("dataset") or {})
    if dataset.get("source") == "builtin-sample":
        notes.append("Dataset: the built-in sample, not the SQuAD dev set; accuracy is not comparable with "
                     "published scores.")
    return notes


def build_report_data(inputs: RunInputs, settings: ReportSettings = ReportSettings()) -> dict[str, Any]:
    """The whole report as JSON-ready data (report.json), verdict included."""
    from abqa.analysis.verdict import verdict_lines

    arms = {arm: summarise_arm(arm, inputs, settings) for arm in inputs.arm_order}
    answered = [arm for arm in inputs.arm_order if arm in inputs.answers and inputs.answers[arm].n]
    tests = {
        pair_key(a, b): compare_pair(inputs.answers[a], inputs.answers[b], settings)
        for a, b in itertools.combinations(answered, 2)
    }
    _holm_over_pairs(tests)
    for test in tests.values():
        test["accuracy_meaningful"] = (arms[test["arm_a"]]["accuracy_meaningful"]
                                       and arms[test["arm_b"]]["accuracy_meaningful"])
    load = None
    if inputs.load is not None:
        load = {key: getattr(inputs.load, key)
                for key in ("mode", "users", "duration_s", "weights", "url", "started_at", "arms")}
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run": run_info(inputs),
        "settings": {
            "bootstrap_resamples": settings.n_resamples, "seed": settings.seed, "confidence": settings.confidence,
            "alpha": settings.alpha, "power": settings.power,
            "bootstrap": "percentile, questions resampled with replacement (paired for differences)",
            "multiple_comparisons": "holm" if len(tests) > 1 else "none (one pair)",
        },
        "arms": arms,
        "tests": tests,
        "load": load,
    }
    data["notes"] = _notes(data) + squad_v2_notes(data)
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
    pair_lines = len(data["tests"])
    data["verdict"][pair_lines:pair_lines] = language_verdict(report, data["arms"])
