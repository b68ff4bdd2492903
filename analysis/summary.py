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

PAIR_SEPARATOR = "__vs__"
SCHEMA_VERSION = 1
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
    arm: str, meta_arm: dict[str, Any] | None, load_standin: bool | None, answers: ArmAnswers | None,
) -> dict[str, Any]:
    """Where an arm's numbers come from: a served model, a stand-in, or a replayed prediction file.

    meta.json says so; without it, an arm that answered with no latency at all is taken for a replay and the
    guess is flagged `inferred`.
    """
    meta_arm = meta_arm or {}
    kind = meta_arm.get("kind")
    inferred = kind not in ("served", "replay")
    if inferred:
        if answers is not None and not answers.has_latency and load_standin is None:
            kind = "replay"
        elif answers is not None or load_standin is not None:
            kind = "served"
        else:
            kind = "unknown"
    standin = bool(meta_arm["standin"]) if meta_arm.get("standin") is not None else bool(load_standin)
    if kind == "replay":
        tag = "replay"
        replay_file = meta_arm.get("replay_file")
        description = f"replayed prediction file {Path(replay_file).name}" if replay_file else "replayed prediction file"
        if meta_arm.get("replay_sha256"):
            description += f" (sha256 {str(meta_arm['replay_sha256'])[:12]})"
        description += "; no latency"
    elif standin:
        tag = "STAND-IN"
        description = STANDIN_WARNING
    elif kind == "served":
        tag = "served"
        description = "served by Triton"
        if meta_arm.get("source"):
            description += f" from {meta_arm['source']}"
        if meta_arm.get("revision"):
            description += f" @ {str(meta_arm['revision'])[:12]}"
    else:
        tag, description = "unknown", "source unknown (no meta.json entry)"
    if inferred and kind != "unknown":
        description += " (inferred: meta.json does not say)"
    return {
        "kind": kind, "standin": standin, "tag": tag, "label": f"{arm} ({tag})", "description": description,
        "inferred": inferred, "source": meta_arm.get("source"), "revision": meta_arm.get("revision"),
        "replay_file": meta_arm.get("replay_file"), "replay_sha256": meta_arm.get("replay_sha256"),
        "unknown_ids": meta_arm.get("unknown_ids"), "missing_ids": meta_arm.get("missing_ids"),
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


def load_step(row) -> dict[str, Any]:
    """One LoadRow, with Triton's cumulative server times turned into milliseconds per request."""
    server = row.server or {}
    requests = server.get("request_count") or 0

    def per_request_ms(name: str) -> float | None:
        if server.get(f"{name}_us_per_request") is not None:
            return float(server[f"{name}_us_per_request"]) / 1000.0
        if server.get(f"{name}_us") is not None and requests:
            return float(server[f"{name}_us"]) / requests / 1000.0
        return None

    # Executions per batch size, as dynamic batching formed them.
    batch_sizes = {int(size): int(count) for size, count in (server.get("batch_sizes") or {}).items()}
    executions = sum(batch_sizes.values())
    mean_batch = server.get("mean_batch_size")
    if mean_batch is None and executions:
        mean_batch = sum(size * count for size, count in batch_sizes.items()) / executions
    return {
        "users": row.users, "requests": row.requests, "failures": row.failures,
        "requests_per_s": row.requests_per_s, "latency_ms": dict(row.latency_ms or {}),
        "server_requests": server.get("request_count"),
        "queue_ms_per_request": per_request_ms("queue"),
        "compute_input_ms_per_request": per_request_ms("compute_input"),
        "compute_infer_ms_per_request": per_request_ms("compute_infer"),
        "compute_output_ms_per_request": per_request_ms("compute_output"),
        "server_request_ms_per_request": per_request_ms("request"),
        "batch_sizes": batch_sizes,
        "mean_batch_size": mean_batch,
        "server_error": server.get("error"),
        "failure_messages": dict(row.failure_messages or {}),
    }


def summarise_arm(
    arm: str, inputs: RunInputs, settings: ReportSettings,
) -> dict[str, Any]:
    meta_arm = ((inputs.meta or {}).get("arms") or {}).get(arm)
    load_standin = ((inputs.load or {}).get("standin") or {}).get(arm)
    answers = inputs.answers.get(arm)
    provenance = arm_provenance(arm, meta_arm, load_standin, answers)
    summary: dict[str, Any] = {
        "provenance": provenance,
        "accuracy_meaningful": not provenance["standin"],
        "questions": 0, "ok": 0, "failed": 0, "missing": 0, "duplicates": 0,
        "em": None, "em_ci": [None, None], "f1": None, "f1_ci": [None, None],
        "latency_ms": None,
    }
    if answers is not None and answers.n:
        failed, missing = answers.count("failed"), answers.count("missing")
        summary.update({
            "questions": answers.n, "ok": answers.count("ok"), "failed": failed, "missing": missing,
            "duplicates": answers.duplicates,
            **stats.accuracy_percent(answers.em, answers.f1, **settings.bootstrap),
            "latency_ms": latency_block(answers.latency_ms, failed + missing, settings),
            "error_messages": dict(sorted(answers.errors.items(), key=lambda item: -item[1])[:5]),
        })
    meta_arm = meta_arm or {}
    summary["model"] = {key: meta_arm.get(key) for key in ("architecture", "variant", "parameters", "onnx_file_size")}
    summary["peak_rss_mb"] = meta_arm.get("peak_rss_mb")
    steps = [load_step(row) for row in inputs.load_rows if row.arm == arm]
    steps.sort(key=lambda step: step["users"])
    summary["load"] = steps or None
    squad_v2 = squad_v2_block(answers, settings, (inputs.meta or {}).get("qa"))
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
    """Every test of a against b on the questions both answered; differences are a - b."""
    ia, ib, only_a, only_b = _pairing(a, b)
    em_a, em_b, f1_a, f1_b = a.em[ia], b.em[ib], a.f1[ia], b.f1[ib]
    n = len(ia)
    result: dict[str, Any] = {
        "arm_a": a.arm, "arm_b": b.arm, "difference": f"{a.arm} - {b.arm}",
        "paired_questions": n, "only_a": only_a, "only_b": only_b,
    }
    if n == 0:
        result["error"] = "no question was answered by both arms"
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
    result["latency"] = compare_latency(a, b, ia, ib, settings)
    if result["latency"]:
        result["effect_sizes"]["latency_log_cohens_dz"] = result["latency"]["log_t"]["cohens_dz"]
    return result


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
    meta = inputs.meta or {}
    return {
        "name": meta.get("name") or inputs.run_dir.name,
        "dir": str(inputs.run_dir),
        "files": inputs.files,
        **{key: meta.get(key) for key in ("created_at", "status", "order", "seed", "dataset", "server", "client",
                                          "machine", "versions")},
    }


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
        load = {key: inputs.load.get(key) for key in ("mode", "users", "duration_s", "weights", "url", "started_at")}
        load["arms"] = inputs.load.get("arms")
    data: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
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
