"""Render the report data as HTML (self-contained), Markdown and JSON.

The content is laid out once, as a list of neutral blocks (heading, paragraph, list, table, figure); two small
writers turn the blocks into HTML and Markdown, so both documents always say the same thing. The HTML embeds
its PNGs as base64 data URIs and uses no external CSS or JavaScript, so it reads offline.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abqa.analysis.load_report import (FACT_KEYS, LOAD_HEADERS, answers_line, load_table_rows, paired_table,
                                       slo_lines)
from abqa.analysis.verdict import format_p
from abqa.core.scoring import SQUAD_V1, SQUAD_V2, SQUAD_VERSIONS, ScoringRule, squad_rule

# ---------------------------------------------------------------- blocks


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str
    css: str = ""


@dataclass
class Bullets:
    items: list[str]
    css: str = ""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    name: str
    caption: str


Block = Heading | Paragraph | Bullets | Table | Figure


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)


# ---------------------------------------------------------------- number formatting


def num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def with_ci(value: Any, ci: list[Any] | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if not ci or ci[0] is None or ci[1] is None:
        return num(value, digits)
    return f"{num(value, digits)} [{num(ci[0], digits)}, {num(ci[1], digits)}]"


def megabytes(size: Any) -> str:
    return "–" if size is None else f"{size / 1e6:,.1f} MB"


def millions(count: Any) -> str:
    if count is None:
        return "–"
    return f"{count / 1e6:,.1f} M" if count >= 100_000 else f"{count:,}"


def p_cell(p: float | None) -> str:
    if p is None:
        return "–"
    return "<\u00a00.001" if p < 0.001 else f"{p:.3f}"  # no-break space: keep "< 0.001" on one line


FIGURE_CAPTIONS = {
    "latency_histogram": "Per-question latency, overlaid histograms per arm (log scale; dashed p50, dotted p95).",
    "latency_cdf": "Per-question latency, cumulative distribution per arm.",
    "accuracy": "Exact match and F1 per arm with 95% bootstrap confidence intervals.",
    "contingency": "Exact-match contingency per pair; the off-diagonal cells b and c drive McNemar's test.",
    "load": "Throughput and p95 latency against concurrent users (closed-loop load steps).",
    "latency_vs_rate": "p50 and p99 latency against the scheduled request rate (open-loop load steps), with the "
                       "p99 bound.",
    "queue_compute": "Time per request inside Triton: queue versus compute, per arm and concurrency step.",
    "languages": "F1 per language and arm with 95% bootstrap CIs (MLQA scoring), and median latency per language.",
}


# ---------------------------------------------------------------- layout


def _accuracy_cell(block: dict[str, Any], metric: str, meaningful: bool) -> str:
    """"value [CI]" of a block's em or f1 (report.json's shape), flagged when a stand-in makes it meaningless."""
    flag = "" if meaningful or block[metric] is None else " — STAND-IN: meaningless"
    return with_ci(block[metric], block[f"{metric}_ci"]) + flag


def _questions_cell(block: dict[str, Any]) -> str:
    return (f"{block['questions']:,} ({block['ok']:,} ok, {block['failed']:,} failed, "
            f"{block['missing']:,} missing)")


def _arm_rows(data: dict[str, Any]) -> list[list[str]]:
    memory_note = None
    server = (data["run"].get("server") or {})
    if server.get("peak_rss_mb") is not None:
        memory_note = f"server {num(server['peak_rss_mb'], 0)} MB (all arms)"
    rows = []
    for arm, s in data["arms"].items():
        latency = s["latency_ms"] or {}
        ci = latency.get("ci") or {}
        questions = _questions_cell(s) if s["questions"] else "–"
        memory = memory_note or "–"   # the arms share one server process: its peak is all of theirs
        rows.append([
            arm, s["provenance"]["description"], questions,
            _accuracy_cell(s, "em", s["accuracy_meaningful"]), _accuracy_cell(s, "f1", s["accuracy_meaningful"]),
            with_ci(latency.get("p50"), ci.get("p50")), with_ci(latency.get("p90"), ci.get("p90")),
            with_ci(latency.get("p95"), ci.get("p95")), with_ci(latency.get("p99"), ci.get("p99")),
            with_ci(latency.get("mean"), ci.get("mean")),
            millions(s["model"].get("parameters")), megabytes(s["model"].get("onnx_file_size")), memory,
        ])
    return rows


ARM_HEADERS = ["arm", "source", "questions", "EM % [95% CI]", "F1 % [95% CI]", "p50 ms [CI]", "p90 ms [CI]",
               "p95 ms [CI]", "p99 ms [CI]", "mean ms [CI]", "parameters", "ONNX size", "peak memory"]


def concurrency_note(data: dict[str, Any]) -> str | None:
    """The label of latencies measured with other requests of the run in flight (meta.json's latency); None when
    they were measured in isolation, or nothing says."""
    conditions = data["run"].get("latency") or {}
    if conditions.get("isolated", True):
        return None
    return (f"Latencies measured under concurrency: up to {conditions['concurrency']} requests of this run in flight "
            f"on the server at once ({conditions['how']}); they are not lone-request latencies.")


def arm_headers(data: dict[str, Any]) -> list[str]:
    """ARM_HEADERS, the latency columns marked with the concurrency they were measured under when it was not 1."""
    conditions = data["run"].get("latency") or {}
    if conditions.get("isolated", True):
        return ARM_HEADERS
    mark = f" @{conditions['concurrency']} in flight"
    return [header + mark if header.split()[0] in ("p50", "p90", "p95", "p99", "mean") else header
            for header in ARM_HEADERS]


def _pair_rows(test: dict[str, Any]) -> list[list[str]]:
    a, b = test["arm_a"], test["arm_b"]
    m, t, w = test["mcnemar"], test["paired_t_f1"], test["wilcoxon_f1"]
    chi2 = ("no χ² (no discordant questions)" if m["chi2"] is None
            else f"χ² = {m['chi2']:.2f} (continuity-corrected), {format_p(m['chi2_p_value'])}")
    rows = [
        ["exact match: McNemar",
         f"b = {m['b']:,} ({a} right, {b} wrong), c = {m['c']:,} ({a} wrong, {b} right); "
         f"exact binomial test; {chi2}", p_cell(m["p_value"]), p_cell(m.get("p_value_holm"))],
        [f"EM difference ({a} − {b}), points", with_ci(test["em_diff"]["value"], test["em_diff"]["ci"], 2)
         + " (paired bootstrap 95% CI)", "", ""],
        ["F1: paired t-test", f"mean difference {with_ci(t['mean_diff_points'], t['ci_points'], 2)} points; "
         f"t({t['df']}) = {_t_statistic(t)}", p_cell(t["p_value"]), p_cell(t.get("p_value_holm"))],
        ["F1: Wilcoxon signed-rank", f"W = {num(w['statistic'], 1)} over {w['nonzero']:,} non-zero differences",
         p_cell(w["p_value"]), p_cell(w.get("p_value_holm"))],
        [f"F1 difference ({a} − {b}), points", with_ci(test["f1_diff"]["value"], test["f1_diff"]["ci"], 2)
         + " (paired bootstrap 95% CI)", "", ""],
    ]
    latency = test.get("latency")
    if latency:
        ratio, log_t = latency["ratio_of_medians"], latency["log_t"]
        rows += [
            [f"latency: ratio of medians ({a} / {b})",
             f"{with_ci(ratio['value'], ratio['ci'], 3)} (paired block bootstrap 95% CI, blocks of "
             f"{latency.get('block_length', 1)}); medians "
             f"{num(latency['median_a_ms'])} vs {num(latency['median_b_ms'])} ms over "
             f"{latency['paired_questions']:,} questions", "", ""],
            ["latency: paired t on log latency",
             f"geometric-mean ratio {with_ci(log_t['geometric_mean_ratio'], [log_t['ci_low'], log_t['ci_high']], 3)}; "
             f"t = {num(log_t['statistic'], 2)}", p_cell(log_t["p_value"]), p_cell(log_t.get("p_value_holm"))],
        ]
    else:
        rows.append(["latency", "not compared: no question has a latency from both arms", "", ""])
    e = test["effect_sizes"]
    effect = (f"F1 Cohen's d_z = {num(e['f1_cohens_dz'], 3)}; EM Cohen's d_z = {num(e['em_cohens_dz'], 3)}, "
              f"odds ratio b/c = {num(e['em_odds_ratio_b_over_c'], 3)}, Cohen's g = {num(e['em_cohens_g'], 3)}")
    if e.get("latency_log_cohens_dz") is not None:
        effect += f"; log latency d_z = {num(e['latency_log_cohens_dz'], 3)}"
    power = test["power"]
    rows += [
        ["effect sizes", effect, "", ""],
        [f"smallest detectable difference (power {power['power']:.0%}, alpha {power['alpha']:.3g})",
         f"F1 {num(power['mde_f1_points'], 2)} points, EM {num(power['mde_em_points'], 2)} points "
         f"with {power['n']:,} paired questions", "", ""],
    ]
    return rows


def _t_statistic(t: dict[str, Any]) -> str:
    """t, or ±∞ when every difference is the same non-zero value (no variance: scipy's t is infinite, p is 0)."""
    if t["statistic"] is None and t["p_value"] == 0 and t["mean_diff_points"]:
        return ("+" if t["mean_diff_points"] > 0 else "−") + "∞ (every difference is the same)"
    return num(t["statistic"], 3)


def _run_facts(data: dict[str, Any]) -> list[str]:
    run = data["run"]
    facts = [f"Run folder: {run['dir']} (files: "
             + ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in run["files"].items()) + ")"]
    for key in ("created_at", "status", "order", "seed"):
        if run.get(key) is not None:
            facts.append(f"{key.replace('_', ' ')}: {run[key]}")
    dataset = run.get("dataset") or {}
    if dataset:
        parts = [f"{key} {dataset[key]}" for key in ("source", "path", "version", "questions", "evaluated_questions",
                                                    "limit", "sample", "seed") if dataset.get(key) is not None]
        if dataset.get("sha256"):
            parts.append(f"sha256 {str(dataset['sha256'])[:16]}…")
        facts.append("dataset: " + ", ".join(parts))
    machine = run.get("machine") or {}
    if machine:
        facts.append("machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()
                                             if value not in (None, [], {})))
    for role in ("server", "client"):
        block = {key: value for key, value in (run.get(role) or {}).items() if value is not None}
        if block:
            facts.append(f"{role}: " + ", ".join(f"{key} {value}" for key, value in block.items() if value is not None))
    versions = run.get("versions") or {}
    if versions:
        facts.append("versions: " + ", ".join(f"{name} {version}" for name, version in versions.items() if version))
    load = data.get("load") or {}
    if load:
        facts.append("load test: " + ", ".join(f"{key} {value}" for key, value in load.items()
                                               if value is not None and key in FACT_KEYS))
    return facts


def _methods(data: dict[str, Any]) -> list[str]:
    s = data["settings"]
    multilingual = (" Multilingual run: each question is scored under MLQA's convention for its language "
                    "(see Languages)." if data.get("languages") else "")
    from abqa.analysis.decision_render import decision_methods

    return [
        f"Accuracy: SQuAD v{squad_rule_of(data).squad_version} exact match and token F1 per question (percent) on "
        f"the answers given. Confidence intervals of accuracy: {s['confidence']:.0%} percentile bootstrap over "
        f"questions, {s['bootstrap_resamples']:,} resamples, seed {s['seed']}.{multilingual}",
        "Pairs: questions are matched by id; only questions both arms answered enter the paired accuracy tests, and "
        "every difference is first arm − second arm (candidate − baseline when a baseline is declared).",
        *decision_methods(data),
        "Exact match: McNemar's test (statsmodels) — exact binomial p-value on the discordant counts b and c, and "
        "the chi-square statistic with continuity correction.",
        "F1: paired t-test (scipy.stats.ttest_rel) with the Wilcoxon signed-rank test (scipy, zero differences "
        "dropped) beside it; EM and F1 differences also get a paired bootstrap CI.",
        "Latency: per-question client latency of answered questions; quantiles with block-bootstrap CIs; ratio of "
        "medians with a paired block-bootstrap CI; paired t-test on log latency (its exponentiated mean is the "
        "geometric-mean ratio).",
        "Power: smallest difference a two-sided paired t-test detects with power "
        f"{s['power']:.0%} at alpha {s['alpha']} (statsmodels TTestPower, at the SD of the observed per-question "
        "differences); for EM this is the normal approximation to McNemar's test.",
        f"Multiple comparisons: {s['multiple_comparisons']}"
        + (" — Holm's step-down adjustment (statsmodels multipletests) within each test over all pairs."
           if s["multiple_comparisons"] == "holm" else "."),
    ]


SQUAD_V2_HEADERS = ["arm", "HasAns questions", "HasAns EM % [95% CI]", "HasAns F1 % [95% CI]",
                    "HasAns answered %", "NoAns questions", "NoAns EM = F1 % [95% CI]", "NoAns answered %"]
BEST_THRESHOLD_HEADERS = ["arm", "questions searched", "EM % as answered", "best EM %", "its threshold",
                          "F1 % as answered", "best F1 %", "its threshold"]


def squad_rule_of(data: dict[str, Any]) -> ScoringRule:
    """The SQuAD script the run was scored with (v1.1 unless the records or meta.json's data set say v2.0)."""
    if any(s.get("squad_v2") for s in data["arms"].values()):
        return SQUAD_V2
    version = str((data["run"].get("dataset") or {}).get("version"))
    return squad_rule(version) if version in SQUAD_VERSIONS else SQUAD_V1


def squad_v2_methods(data: dict[str, Any]) -> list[str]:
    if not squad_rule_of(data).allows_no_answer:
        return []
    served = [s for s in data["arms"].values() if s.get("squad_v2") and s["provenance"]["kind"] == "served"]
    threshold = next((s["squad_v2"]["null_threshold"] for s in served
                      if s["squad_v2"].get("null_threshold") is not None), None)
    rule = "" if not served else (f"; served arms answered \"\" when their null score ([CLS] start + end logit, lowest over the windows) "
            f"beat their best span score by more than {threshold:g}" if threshold is not None else
            "served arms answered \"\" when their null score beat their best span score by more than the run's "
            "threshold")
    return [f"SQuAD v2.0: a question without an answer has the single reference \"\"; EM as in v1.1, F1 is 1 when "
            f"prediction and reference are both empty and 0 when only one is (the official v2.0 script){rule}; "
            "replayed answers are taken as given. HasAns/NoAns are the same scores over the questions with and "
            "without an answer. The best threshold is the official find_best_thresh over the evaluated questions "
            "(tuned on them: optimistic)."]


def squad_v2_blocks(data: dict[str, Any]) -> list[Block]:
    """SQuAD v2.0: HasAns/NoAns per arm, and the best no-answer threshold, labelled as tuned on these questions."""
    arms = {arm: s for arm, s in data["arms"].items() if s.get("squad_v2")}
    if not arms:
        return []
    blocks: list[Block] = [Heading("SQuAD v2.0: questions with an answer (HasAns) and without (NoAns)", 3)]
    rows = []
    for arm, s in arms.items():
        has, no = s["squad_v2"]["has_ans"], s["squad_v2"]["no_ans"]
        meaningful = s["accuracy_meaningful"]
        rows.append([s["provenance"]["label"], num(has["questions"]), _accuracy_cell(has, "em", meaningful),
                     _accuracy_cell(has, "f1", meaningful), num(has["answered"]), num(no["questions"]),
                     _accuracy_cell(no, "em", meaningful), num(no["answered"])])
    blocks.append(Table(SQUAD_V2_HEADERS, rows))
    blocks.append(Paragraph("\"answered\": the share of those questions the arm gave a non-empty answer to. On NoAns "
                            "questions the only right answer is \"\", so EM and F1 are the same number."))
    blocks.append(Heading("SQuAD v2.0: best no-answer threshold (tuned on the evaluated questions)", 3))
    if not any(s["squad_v2"]["best_threshold"]["available"] for s in arms.values()):
        reason = next(iter(arms.values()))["squad_v2"]["best_threshold"]["reason"]
        blocks.append(Paragraph(f"Not computed for any arm: {reason}."))
        return blocks
    rows = []
    for arm, s in arms.items():
        best = s["squad_v2"]["best_threshold"]
        if not best["available"]:
            rows.append([s["provenance"]["label"], "–", num(s["em"], 3), "–", "–", num(s["f1"], 3), "–",
                         f"not available: {best['reason']}"])
            continue
        rows.append([s["provenance"]["label"], num(best["questions"]), num(s["em"], 3), num(best["best_em"], 3),
                     num(best["best_em_threshold"], 3), num(s["f1"], 3), num(best["best_f1"], 3),
                     num(best["best_f1_threshold"], 3)])
    blocks.append(Table(BEST_THRESHOLD_HEADERS, rows))
    blocks.append(Paragraph("TUNED ON THE EVALUATED QUESTIONS: the best threshold is chosen on the very questions it "
                            "scores (the official SQuAD v2.0 script's find_best_thresh), so the best EM/F1 are "
                            "optimistic and are not used by the tests or the verdict, which compare the answers as "
                            "given (served arms: at the run's --null-threshold).", css="warn"))
    return blocks


def _without_empty_columns(table: Table, keep: int) -> Table:
    """Drop the columns (after the first `keep`) that no row fills, e.g. latency for replayed arms."""
    columns = [i for i in range(len(table.headers))
               if i < keep or any(row[i] != "–" for row in table.rows)]
    return Table([table.headers[i] for i in columns], [[row[i] for i in columns] for row in table.rows])


def layout(data: dict[str, Any], figures: list[str]) -> Document:
    from abqa.analysis.decision_render import (DECISION_CAPTIONS, decision_blocks, pair_rows, tradeoff_blocks,
                                               variant_blocks, where_blocks)

    captions = {**FIGURE_CAPTIONS, **DECISION_CAPTIONS}
    doc = Document(title=f"abqa report: {data['run']['name']}")
    blocks = doc.blocks
    blocks.append(Heading("Verdict"))
    blocks.append(Bullets(list(data["verdict"]), css="verdict"))
    if data["notes"]:
        blocks.append(Heading("Read this first", 3))
        blocks.append(Bullets(list(data["notes"]), css="notes"))
    blocks.extend(decision_blocks(data))

    blocks.append(Heading("Arms"))
    blocks.append(_without_empty_columns(Table(arm_headers(data), _arm_rows(data)), keep=3))
    if concurrency_note(data):
        blocks.append(Paragraph(concurrency_note(data), css="warn"))
    blocks.extend(squad_v2_blocks(data))  # nothing on a SQuAD v1.1 run

    blocks.append(Heading("Comparisons"))
    if not data["tests"]:
        answered = [arm for arm, s in data["arms"].items() if s["questions"]]
        reason = ("only one arm answered questions, so there is nothing to compare it with"
                  if len(answered) == 1 else "no arm answered questions (no eval.jsonl records)")
        blocks.append(Paragraph(f"No comparison tests: {reason}.", css="warn"))
    for key, test in data["tests"].items():
        blocks.append(Heading(f"{test['arm_a']} vs {test['arm_b']}", 3))
        blocks.append(Paragraph(
            f"{test['paired_questions']:,} questions answered by both; {test['only_a']:,} only by {test['arm_a']}, "
            f"{test['only_b']:,} only by {test['arm_b']}. JSON key: tests.{key}."))
        if test.get("error"):
            blocks.append(Paragraph(test["error"], css="warn"))
            continue
        if not test.get("accuracy_meaningful", True):
            blocks.append(Paragraph("A stand-in (untrained weights) is in this pair: the accuracy tests below are "
                                    "computed but mean nothing about the real models.", css="warn"))
        table = Table(["test", "result", "p", "p (Holm)"], pair_rows(test) + _pair_rows(test))
        if len(data["tests"]) == 1:  # one pair: nothing to adjust, the Holm column would repeat p
            table = Table(table.headers[:3], [row[:3] for row in table.rows])
        blocks.append(table)

    if data.get("languages"):  # a multilingual run: per-language accuracy and paired tests
        blocks.extend(language_blocks(data))
    blocks.extend(variant_blocks(data) + where_blocks(data) + tradeoff_blocks(data))

    blocks.append(Heading("Load"))
    rows = load_table_rows(data)
    if rows:
        blocks.extend(load_blocks(data, rows))
    else:
        blocks.append(Paragraph("No load results (no load.json): throughput and latency under concurrency were not "
                                "measured for this run.", css="warn"))

    blocks.append(Heading("Figures"))
    if not figures:
        blocks.append(Paragraph("No figures: this run has neither answers nor load results to draw."))
    for name in figures:
        blocks.append(Figure(name, captions.get(name, name)))

    blocks.append(Heading("Run"))
    blocks.append(Bullets(_run_facts(data)))
    blocks.append(Heading("Methods"))
    blocks.append(Bullets(_methods(data) + squad_v2_methods(data)))
    return doc


def load_blocks(data: dict[str, Any], rows: list[list[str]]) -> list[Block]:
    """The load section: the steps of every arm, the SLO statements, the paired differences, answers under load."""
    blocks: list[Block] = [Table(LOAD_HEADERS, rows), Paragraph(
        "Every figure is computed from the step's own request records (requests.jsonl), warm-up left out: exact "
        "percentiles, never Locust's rounded ones; n is the answered requests they rest on, and a percentile that "
        "would rest on too few is shown as n<N. Open-loop steps (rate-R, slo-...) count latency from the scheduled "
        "arrival.")]
    if slo_lines(data):
        blocks += [Heading("Highest rate within the p99 bound", 3), Bullets(slo_lines(data))]
    headers, paired = paired_table(data)
    if paired:
        blocks += [Heading("Paired per-request latency under load", 3), Table(headers, paired)]
    answers = answers_line(data)
    if answers:
        blocks.append(Paragraph(answers))
    return blocks


LANGUAGE_ARM_HEADERS = ["language", "arm", "questions", "EM % [95% CI]", "F1 % [95% CI]", "p50 ms"]
LANGUAGE_PAIR_HEADERS = ["language", "pair", "paired questions", "EM difference, points [CI]", "McNemar b / c",
                         "McNemar p (Holm)", "F1 difference, points [CI]", "paired t p (Holm)",
                         "latency ratio of medians [CI]"]


def _language_arm_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    report = data["languages"]
    for language in report["languages"]:
        entry = report["per_language"][language]
        for arm, block in entry["arms"].items():
            meaningful = data["arms"][arm]["accuracy_meaningful"]
            rows.append([f"{language} ({entry['dataset']})" if entry.get("dataset") else language,
                         data["arms"][arm]["provenance"]["label"], _questions_cell(block),
                         _accuracy_cell(block, "em", meaningful), _accuracy_cell(block, "f1", meaningful),
                         num(block["latency_p50_ms"])])
    return rows


def _p_with_holm(block: dict[str, Any] | None) -> str:
    if not block:
        return "–"
    return f"{p_cell(block.get('p_value'))} ({p_cell(block.get('p_value_holm'))})"


def _language_pair_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    report = data["languages"]
    for language in report["languages"]:
        for test in report["per_language"][language]["tests"].values():
            pair = f"{test['arm_a']} − {test['arm_b']}"
            if test.get("error"):
                rows.append([language, pair, num(test["paired_questions"]), test["error"], "", "", "", "", ""])
                continue
            m, latency = test["mcnemar"], test.get("latency")
            flag = "" if test.get("accuracy_meaningful", True) else " (stand-in: meaningless)"
            ratio = (with_ci(latency["ratio_of_medians"]["value"], latency["ratio_of_medians"]["ci"], 3)
                     if latency else "–")
            rows.append([language, pair, num(test["paired_questions"]),
                         with_ci(test["em_diff"]["value"], test["em_diff"]["ci"], 2) + flag,
                         f"{m['b']:,} / {m['c']:,}", _p_with_holm(m),
                         with_ci(test["f1_diff"]["value"], test["f1_diff"]["ci"], 2) + flag,
                         _p_with_holm(test["paired_t_f1"]), ratio])
    return rows


def language_blocks(data: dict[str, Any]) -> list[Block]:
    """The "Languages" section of a multilingual run: how it was scored, then accuracy and tests per language."""
    report = data["languages"]
    blocks: list[Block] = [
        Heading("Languages"),
        Paragraph(f"{len(report['languages'])} language(s): {', '.join(report['languages'])}. {report['ids']}"),
        Paragraph(f"F1 tokenisation: {report['scoring']}", css="warn"),
        Heading("Accuracy per language", 3),
        Table(LANGUAGE_ARM_HEADERS, _language_arm_rows(data)),
    ]
    rows = _language_pair_rows(data)
    if rows:
        blocks += [
            Heading("Paired comparison per language", 3),
            Paragraph("Each language's questions alone, with the tests of the whole run (McNemar's exact test on EM, "
                      "paired t-test on F1, paired bootstrap CIs, ratio of median latencies). "
                      f"Multiple comparisons: {report['multiple_comparisons']}; p-values are shown raw (Holm)."),
            Table(LANGUAGE_PAIR_HEADERS, rows),
        ]
    return blocks


# ---------------------------------------------------------------- writers

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #333; padding-bottom: .2em; }
h2 { font-size: 1.3em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
ul.verdict { background: #eef5ff; border-left: 5px solid #1f77b4; padding: .8em 1em .8em 2em; }
ul.verdict li:first-child { font-weight: 600; }
ul.notes, p.warn { background: #fff6e5; border-left: 5px solid #e69500; padding: .6em 1em .6em 2em; }
p.warn { padding-left: 1em; }
table { border-collapse: collapse; font-size: .85em; margin: .6em 0; }
th, td { border: 1px solid #ccc; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
"""


def to_html(doc: Document, images: dict[str, Path]) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(doc.title)}</title><style>{_CSS}</style></head><body>", f"<h1>{esc(doc.title)}</h1>"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            css = f' class="{block.css}"' if block.css else ""
            parts.append(f"<p{css}>{esc(block.text)}</p>")
        elif isinstance(block, Bullets):
            css = f' class="{block.css}"' if block.css else ""
            parts.append(f"<ul{css}>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            encoded = base64.b64encode(images[block.name].read_bytes()).decode("ascii")
            parts.append(f'<figure><img alt="{esc(block.caption)}" src="data:image/png;base64,{encoded}">'
                         f"<figcaption>{esc(block.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document, images: dict[str, Path], base: Path) -> str:
    lines = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [f"> {block.text}" if block.css == "warn" else block.text, ""]
        elif isinstance(block, Bullets):
            if block.css == "verdict" and block.items:
                lines += [f"- **{block.items[0]}**"] + [f"- {item}" for item in block.items[1:]] + [""]
            else:
                lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            lines.append("|" + "---|" * len(block.headers))
            lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Figure):
            relative = images[block.name].relative_to(base).as_posix()
            lines += [f"![{block.caption}]({relative})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)
