"""The report's sections for the decision: non-inferiority and equivalence, failures, variants, where the
difference lives, the trade-off, and their Methods text, as render.py's neutral blocks (pure)."""

from __future__ import annotations

from typing import Any

from abqa.analysis.decision import EQUIVALENCE_ALPHA, METHOD, METRICS, NONINFERIORITY_ALPHA
from abqa.analysis.render import Block, Bullets, Heading, Paragraph, Table, num, p_cell, with_ci
from abqa.analysis.verdict import format_p

DECISION_CAPTIONS = {
    "latency_vs_tokens": "Per-question latency against its tokens, per arm, with the least-squares line: the fixed "
                         "cost of a question and the cost per 100 tokens (a capacity planner's length curve).",
    "pareto": "The trade-off: F1 (95% CI) against p95 latency and against sustained throughput; hollow markers are "
              "dominated arms (another arm is at least as good on every axis and better on one).",
}


def _interval(low: float | None, high: float | None, digits: int = 2) -> str:
    return "–" if low is None or high is None else f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def decision_blocks(data: dict[str, Any]) -> list[Block]:
    """The "Decision" section: the plan, then one row per candidate and metric, TOST beside it."""
    decision = data.get("decision") or {}
    blocks: list[Block] = [Heading("Decision: non-inferiority within a declared margin")]
    if not data.get("noninferiority"):
        blocks.append(Paragraph(
            "No margin declared, so no decision: the comparisons below say whether the arms differ, not whether a "
            "candidate is good enough. Declare the baseline and the margins before the data, on `abqa evaluate` or "
            "`abqa benchmark` (`--baseline bert --margin f1=1.0,em=1.5`, recorded in meta.json), or give them to "
            "`abqa report` (marked as chosen after the data).", css="warn"))
        return blocks
    standins = [candidate for candidate, detail in (decision.get("candidates") or {}).items()
                if detail.get("accuracy_meaningful") is False]
    if standins:
        blocks.append(Paragraph(f"STAND-INS: {', '.join(standins)} (or the baseline) have untrained weights, so these "
                                "accuracy decisions are meaningless about the real models; only a variant's agreement "
                                "with its base says something.", css="warn"))
    declared = decision.get("declared")
    if decision.get("chosen_after_data"):
        before = (f"meta.json declared baseline {declared.get('baseline')} and margins {declared.get('margins')}"
                  if declared else "meta.json declared none")
        blocks.append(Paragraph(f"CHOSEN AFTER THE DATA: the baseline and margins used here were given to `abqa "
                                f"report`, not declared before the run ({before}). A margin picked after seeing the "
                                "difference can be picked to pass.", css="warn"))
    else:
        blocks.append(Paragraph(f"Declared before the data: baseline {decision['baseline']}, margins "
                                + ", ".join(f"{METRICS[m]} {_points(v)}" for m, v in decision["margins"].items())
                                + f" (meta.json, {declared.get('declared_at') or 'time not recorded'})."))
    equivalence = {(row["candidate"], row["metric"]): row for row in data.get("equivalence") or []}
    candidates = decision.get("candidates") or {}
    rows = []
    for row in data["noninferiority"]:
        tost = equivalence.get((row["candidate"], row["metric"]))
        check = ((candidates.get(row["candidate"]) or {}).get("metrics") or {}).get(row["metric"]) or {}
        level = 1 - 2 * NONINFERIORITY_ALPHA / (candidates.get(row["candidate"]) or {}).get("family", 1)
        rows.append([
            f"{row['candidate']} − {row['baseline']}", METRICS[row["metric"]], f"{row['margin']:g}",
            f"{row['difference']:+.2f}", f"{_interval(row['ci_low'], row['ci_high'])} ({level:.1%})".replace(".0%", "%"),
            p_cell(row["p_value"]), p_cell(check.get("p_inferior")), row["conclusion"].upper(),
            (f"{tost['conclusion']} ({tost['confidence']:.0%} CI {_interval(tost['ci_low'], tost['ci_high'])}, "
             f"p {p_cell(tost['p_value'])})") if tost else "–",
        ])
    blocks.append(Table(["candidate − baseline", "metric", "margin, points", "difference, points", "CI",
                         "p, H0: worse by ≥ margin", "p, H0: within margin", "conclusion", "equivalence (TOST)"],
                        rows))
    blocks.append(Paragraph("Non-inferior when the first p is at most 0.025 (the CI's lower bound above −margin), "
                            "inferior when the second is (its upper bound below −margin), inconclusive otherwise. "
                            f"Both p-values and the CI come from the {METHOD}, adjusted together over the "
                            "candidates (Bonferroni)."))
    blocks += _test_choice_blocks(decision)
    return blocks


def _points(value: float) -> str:
    return f"{value:g} point{'' if value == 1 else 's'}"


def _test_choice_blocks(decision: dict[str, Any]) -> list[Block]:
    items = []
    for candidate, detail in (decision.get("candidates") or {}).items():
        for metric, check in (detail.get("metrics") or {}).items():
            normality, test = check["normality"], check["test"]
            agree = {True: "reaches the same conclusion", False: "DISAGREES", None: "is not defined here"}[test["agree"]]
            items.append(f"{candidate}, {METRICS[metric]}: the decision rests on the {test['test']} because "
                         f"{test['why']}. The paired t-test {agree} (one-sided {format_p(test['paired_t_p'])}). "
                         f"Differences: {normality['n']:,}, {_share(normality['zero_share'])} zero, skewness "
                         f"{num(normality['skewness'], 2)}, excess kurtosis {num(normality['excess_kurtosis'], 2)}.")
    return [Heading("Which test, and why", 3), Bullets(items)] if items else []


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def pair_rows(test: dict[str, Any]) -> list[list[str]]:
    """Rows added to a pair's table: the verdict's sign-flip test, the normality check, failures, agreement."""
    rows = []
    flips = test.get("signflip")
    if flips:
        for metric in ("f1", "em"):
            block = flips[metric]
            adjusted = (f"; Bonferroni over {block['family']} pairs: CI {_interval(*block['ci_adjusted'])}, p "
                        f"{p_cell(block['p_value_adjusted'])}" if block["family"] > 1 else "")
            rows.append([f"{METRICS[metric]}: {METHOD} (the verdict's)",
                         f"difference {block['difference']:+.2f} points, 95% CI {_interval(*block['ci'])}"
                         f"{adjusted}; {flips['resamples']:,} flips", p_cell(block["p_value"]), ""])
    assumptions = test.get("assumptions")
    if assumptions:
        check = assumptions["f1_differences"]
        agree = {True: "agrees", False: "DISAGREES", None: "not comparable"}[assumptions["agree"]]
        rows.append(["F1 differences: normality (Shapiro–Wilk)",
                     f"W = {num(check['shapiro_w'], 3)}, {_share(check['zero_share'])} exactly zero; the paired "
                     f"t-test {agree} with the sign-flip test at alpha 0.05", p_cell(check["shapiro_p"]), ""])
    failures = test.get("failures")
    if failures:
        rows.append([f"failures apart ({test['arm_a']} vs {test['arm_b']})",
                     f"no answer: {failures['failed_a']:,} ({failures['rate_a_pct']:.1f}%) vs {failures['failed_b']:,} "
                     f"({failures['rate_b_pct']:.1f}%) of {failures['questions']:,}; McNemar exact on failed vs "
                     "answered", p_cell(failures["p_value"]), ""])
    agreement = test.get("agreement")
    if agreement:
        rows.append(["answer agreement", f"identical answer text on {agreement['identical']:,} of "
                     f"{agreement['questions']:,} questions both answered ({agreement['share_pct']:.1f}%)", "", ""])
    return rows


def variant_blocks(data: dict[str, Any]) -> list[Block]:
    variants = data.get("variants") or []
    if not variants:
        return []
    rows = []
    for entry in variants:
        speedup, agreement = entry["speedup"], entry["agreement"]
        rows.append([entry["arm"], entry["variant"] or "–",
                     entry["base_arm"] + (" (inferred from the names)" if entry["base_inferred"] else ""),
                     with_ci(speedup["value"], speedup["ci"], 2) if speedup else "–",
                     f"{num(entry['median_ms'])} vs {num(entry['base_median_ms'])}",
                     num(entry["block_length"]) if entry["block_length"] else "–",
                     f"{agreement['share_pct']:.1f}% of {agreement['questions']:,}" if agreement else "–"])
    return [Heading("Variants against their fp32 base"),
            Paragraph("Speed-up: the base arm's median latency over the variant's (2.00 = twice as fast), 95% CI from "
                      "the circular block bootstrap over the questions in time order. Agreement: the share of "
                      "questions both answered with the identical answer text (meaningful for stand-ins too)."),
            Table(["variant arm", "variant", "base arm", "speed-up [95% CI]", "p50 ms (variant vs base)",
                   "block length", "identical answers"], rows)]


def where_blocks(data: dict[str, Any]) -> list[Block]:
    where = data.get("where")
    blocks: list[Block] = [Heading("Where the difference lives")]
    if not where:
        blocks.append(Paragraph("Not available: no arm recorded token counts (replayed arms carry none)."))
        return blocks
    blocks.append(Paragraph(f"Questions bucketed by their length as {where['length_from']} tokenised them. Per "
                            "bucket: each arm's F1 on the questions it answered and its median latency; each pair's "
                            "F1 gap on the questions both answered, with a 95% sign-flip CI (2,000 flips); pairs with a "
                            "stand-in get no gap, and a stand-in's F1 is meaningless."))
    for key, title in (("by_tokens", "tokens over the windows"), ("by_windows", "windows per question")):
        rows = []
        for row in where[key]:
            cells = [row["bucket"], num(row["questions"])]
            cells += [f"{num(arm['f1'])} / {num(arm['p50_ms'])}" for arm in row["arms"].values()]
            cells += [("–" if gap is None else f"{gap['f1_points']:+.1f} {_interval(*gap['ci'], 1)}")
                      for gap in row["gaps"].values()]
            rows.append(cells)
        if rows:
            first = where[key][0]
            headers = [title, "questions"] + [f"{arm}: F1 % / p50 ms" for arm in first["arms"]]
            headers += [f"F1 gap {pair}, points [CI]" for pair in first["gaps"]]
            blocks += [Heading(f"By {title}", 3), Table(headers, rows)]
    fits = where.get("fits") or {}
    if fits:
        blocks += [Heading("Latency as a line in tokens", 3), Table(
            ["arm", "questions", "fixed cost, ms", "ms per 100 tokens [95% CI]", "R²"],
            [[arm, num(fit["questions"]), num(fit["intercept_ms"], 2),
              with_ci(fit["ms_per_100_tokens"], fit["ms_per_100_tokens_ci"], 2), num(fit["r2"], 2)]
             for arm, fit in fits.items()])]
    return blocks


def tradeoff_blocks(data: dict[str, Any]) -> list[Block]:
    tradeoff = data.get("tradeoff")
    if not tradeoff:
        return []
    rows = []
    for row in tradeoff["rows"]:
        throughput = row["throughput"] or {}
        f1 = with_ci(row["f1"], row["f1_ci"]) + ("" if row["accuracy_meaningful"] else " — STAND-IN: meaningless")
        rows.append([row["label"], f1, with_ci(row["p95_ms"], row["p95_ci"]),
                     num(throughput.get("questions_per_s"), 2), throughput.get("source", "–"),
                     "–" if row["cost_per_million"] is None else f"{row['cost_per_million']:,.2f}",
                     ", ".join(row["dominated_by"]) or "no (frontier)"])
    blocks: list[Block] = [
        Heading("Trade-off: accuracy against latency, throughput and cost"),
        Paragraph("Axes: " + ", ".join(tradeoff["axes"]) + ". An arm is dominated when another is at least as good on "
                  "every axis and better on one (point estimates; the CIs show how close)."
                  + ("" if tradeoff["f1_used"] else f" F1 is left out: {tradeoff['f1_left_out']}.")),
        Table(["arm", "F1 % [95% CI]", "p95 ms [95% CI]", "sustained questions/s", "throughput from",
               "cost per million questions" + (f" (at {tradeoff['cost_per_hour']:g}/hour)"
                                               if tradeoff["cost_per_hour"] is not None else " (give --cost-per-hour)"),
               "dominated by"], rows),
    ]
    if tradeoff["without_latency"]:
        blocks.append(Paragraph(f"Not on the trade-off (no latency: replayed): {', '.join(tradeoff['without_latency'])}."))
    return blocks


def decision_methods(data: dict[str, Any]) -> list[str]:
    s = data["settings"]
    return [
        "Accuracy is measured on the answers given: a failed request or a missing prediction is no answer, left out "
        "of EM/F1 and latency. Paired accuracy tests use only the questions both arms answered (status ok). How "
        "often each arm failed to answer is compared on its own, on the questions both were asked: McNemar's exact "
        "test on failed versus answered.",
        f"The verdict's test: the {METHOD} on per-question differences (first arm − second; candidate − baseline), "
        f"{s['bootstrap_resamples']:,} seeded random flips (seed {s['seed']}). Its p-value at any null difference "
        "and its CI (the differences no test rejects) come from the same flips, so they always agree; with several "
        "pairs (or candidates) both are Bonferroni-adjusted together (p × m and the 1 − alpha/m interval). Holm's "
        "step-down p-values, in the tables, are never larger but have no simultaneous intervals that agree with "
        "them, so the verdict does not use them.",
        "Why not the t-test: per-question F1 differences are mostly exactly zero and far from normal (the "
        "Shapiro–Wilk W of each pair's differences is in its table). The paired t-test and the Wilcoxon test stay "
        "beside it, and the report says whether the t-test reaches the same conclusion.",
        f"Non-inferiority: for every candidate and every metric with a declared margin M, H0 \"difference ≤ −M\" "
        f"against \"difference > −M\", one-sided at {NONINFERIORITY_ALPHA} (the level of a two-sided 95% CI): "
        "non-inferior when the CI's lower bound is above −M, inferior when its upper bound is below −M, otherwise "
        "inconclusive. A candidate may ship when it is non-inferior on every metric (an intersection-union test: no "
        f"adjustment over metrics). Equivalence (TOST): both one-sided tests at {EQUIVALENCE_ALPHA}, i.e. the 90% CI "
        "within ±M.",
        "Latency CIs: the circular block bootstrap (arch) over each arm's questions in the order they were asked "
        "(started_at), so that a slow stretch counts once and not as independent evidence; the block length is "
        "Politis and White's automatic rule (2004; Patton, Politis and White 2009) on the series, at most a quarter "
        "of it (1 below 30 questions). A paired ratio uses the larger of the two arms' lengths. With --order parallel "
        "the arms competed for the same cores: the report says so.",
        "Samples: --sample draws a seeded random subset; --limit N takes the first N questions in file order (by "
        "article, a few topics) and a run that stopped early holds the first questions of its order: the verdict "
        "marks both as not a random sample.",
    ]
