"""The plain-language verdict at the top of the report, written from the report's data (pure).

First the decision (each candidate against the baseline within the declared margins, `analysis/decision.py`) or
why there is none, and whether the questions are a sample at all; then one line per pair of arms (a single arm or a
load-only run gets its own wording). Every line says how many questions it rests on, names stand-ins and replayed
files, gives each CI with the p-value of the same procedure (adjusted together), names that procedure, and, when a
difference is not significant, how large a difference the sample could have detected.
"""

from __future__ import annotations

from typing import Any

from abqa.analysis.load_report import answers_line, paired_line, slo_lines

# Below this many paired questions a verdict line always states the smallest detectable difference.
SMALL_SAMPLE = 1000
# Below this many, bootstrap intervals and test p-values are too rough to lean on, and the verdict says so.
TOO_FEW = 30


def format_p(p: float | None) -> str:
    if p is None:
        return "p not defined"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.995 else "p = 1"


def _fixed(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0"


def _ci_text(low: float | None, high: float | None, digits: int = 1) -> str:
    if low is None or high is None:
        return "CI not available"
    return f"95% CI [{_fixed(low, digits)}, {_fixed(high, digits)}]"


def _questions(n: int) -> str:
    return f"{n:,} paired question{'s' if n != 1 else ''}"


def _provenance_phrase(arms: dict[str, Any], names: list[str]) -> str:
    kinds = {arms[name]["provenance"]["tag"] for name in names}
    if kinds == {"replay"}:
        return "replayed prediction files"
    if kinds == {"served"}:
        return "served models"
    if kinds == {"STAND-IN"}:
        return "served stand-ins"
    return ", ".join(arms[name]["provenance"]["label"] for name in names)


def latency_phrase(test: dict[str, Any], arms: dict[str, Any], order: str | None = None) -> str:
    a, b = test["arm_a"], test["arm_b"]
    latency = test.get("latency")
    if not latency:
        no_latency = [arm for arm in (a, b) if arms[arm]["latency_ms"] is None]
        reason = (f"{' and '.join(no_latency)} {'has' if len(no_latency) == 1 else 'have'} no per-question latency"
                  + (" (replayed)" if all(arms[arm]["provenance"]["kind"] == "replay" for arm in no_latency) else "")
                  if no_latency else "no question has a latency for both")
        return f"latency not compared: {reason}"
    ratio = latency["ratio_of_medians"]
    value, (low, high) = ratio["value"], ratio["ci"]
    if value is None:
        return "latency not compared: the median latency is zero"
    method = "block bootstrap in time order" + (
        "; order parallel: the arms competed for the same cores" if order == "parallel" else "")
    if low is not None and high is not None and (high < 1 or low > 1):
        if value < 1:
            return (f"{a} answers {1 / value:.2f}x faster than {b} at p50 "
                    f"({latency['median_a_ms']:.1f} vs {latency['median_b_ms']:.1f} ms, "
                    f"{_ci_text(1 / high, 1 / low, 2)}, {method})")
        return (f"{a} is {value:.2f}x slower than {b} at p50 "
                f"({latency['median_a_ms']:.1f} vs {latency['median_b_ms']:.1f} ms, {_ci_text(low, high, 2)}, "
                f"{method})")
    return (f"no clear p50 latency difference ({a}/{b} median ratio {value:.2f}, {_ci_text(low, high, 2)}, "
            f"{method})")


def _confidence_text(family: int, confidence: float = 0.95) -> str:
    level = 1 - (1 - confidence) / family
    return f"{level:.1%}".replace(".0%", "%")


def _difference_phrase(metric: str, owner: str, block: dict[str, Any]) -> str:
    """One metric's difference with the CI and p of the same sign-flip test, adjusted together over the family."""
    value, (low, high), p = block["difference"], block["ci_adjusted"], block["p_value_adjusted"]
    level = _confidence_text(block["family"])
    if value == 0:
        return f"{owner} {metric} is the same ({_ci_text(low, high).replace('95%', level)}, {format_p(p)})"
    direction = "lower" if value < 0 else "higher"
    # Said as a magnitude ("1.6 points lower"), so the interval is of the magnitude too.
    lo, hi = (-high, -low) if value < 0 and low is not None and high is not None else (low, high)
    return (f"{owner} {metric} is {abs(value):.1f} points {direction}, {_ci_text(lo, hi).replace('95%', level)}, "
            f"{format_p(p)}")


def accuracy_phrase(test: dict[str, Any], arms: dict[str, Any], alpha: float, adjusted: bool) -> str:
    a, b = test["arm_a"], test["arm_b"]
    if not test.get("accuracy_meaningful", True):
        standins = [arm for arm in (a, b) if arms[arm]["provenance"]["standin"]]
        return (f"accuracy not compared: {' and '.join(standins)} "
                f"{'is a stand-in' if len(standins) == 1 else 'are stand-ins'} with untrained weights, "
                "so EM/F1 are meaningless")
    flips = test["signflip"]
    family = flips["f1"]["family"]
    f1 = _difference_phrase("F1", f"{a}'s", flips["f1"])
    em = _difference_phrase("EM", "its", flips["em"])
    procedure = (f"{flips['method']}, {flips['resamples']:,} flips"
                 + (f", Bonferroni-adjusted over {family} pairs" if family > 1 else ""))
    text = f"{f1}; {em} ({procedure})"
    power = test.get("power") or {}
    p_f1 = flips["f1"]["p_value_adjusted"]
    significant = p_f1 <= alpha
    if (not significant or test["paired_questions"] < SMALL_SAMPLE) and power.get("mde_f1_points") is not None:
        prefix = "the F1 difference is not significant" if not significant else "small sample"
        mde_em = power.get("mde_em_points")
        text += (f" ({prefix}: {_questions(test['paired_questions'])} detect F1 differences of about "
                 f"{power['mde_f1_points']:.1f} points"
                 + (f" and EM differences of about {mde_em:.1f} points" if mde_em is not None else "")
                 + f" or more, with power {power['power']:.0%} at alpha {power['alpha']})")
    return text


def failures_phrase(test: dict[str, Any]) -> str | None:
    """How often each arm failed to answer, compared on its own (accuracy is on the questions both answered)."""
    failures = test.get("failures")
    if not failures or not (failures["failed_a"] or failures["failed_b"]):
        return None
    a, b = test["arm_a"], test["arm_b"]
    return (f"failures apart: {a} gave no answer to {failures['failed_a']:,} of {failures['questions']:,} questions "
            f"({failures['rate_a_pct']:.1f}%), {b} to {failures['failed_b']:,} ({failures['rate_b_pct']:.1f}%), "
            f"{format_p(failures['p_value'])} (McNemar exact, failed vs answered); accuracy is compared on the "
            f"{test['paired_questions']:,} both answered")


def pair_line(test: dict[str, Any], arms: dict[str, Any], alpha: float, adjusted: bool,
              order: str | None = None) -> str:
    a, b = test["arm_a"], test["arm_b"]
    head = f"{a} vs {b} ({_questions(test['paired_questions'])}, {_provenance_phrase(arms, [a, b])})"
    if test.get("error"):
        return f"{head}: {test['error']}."
    latency, accuracy = latency_phrase(test, arms, order), accuracy_phrase(test, arms, alpha, adjusted)
    # Lead with what was measured: a speed-up first when there is one, otherwise the accuracy difference.
    first, second = (accuracy, latency) if test.get("latency") is None else (latency, accuracy)
    failures = failures_phrase(test)
    if failures:
        second += f"; {failures}"
    caveat = ""
    if test["paired_questions"] < TOO_FEW:
        caveat = (f" Only {_questions(test['paired_questions'])}: too few for these intervals and p-values "
                  "to mean much.")
    return f"{head}: {first}; {second}.{caveat}"


def single_arm_line(arm: str, summary: dict[str, Any]) -> str:
    text = (f"One arm only ({summary['provenance']['label']}): EM {summary['em']:.1f} "
            f"({_ci_text(*summary['em_ci'])}), F1 {summary['f1']:.1f} ({_ci_text(*summary['f1_ci'])}) "
            f"on {summary['questions']:,} questions")
    if summary["provenance"]["standin"]:
        text += " (STAND-IN: this accuracy is meaningless)"
    latency = summary.get("latency_ms")
    if latency:
        text += f"; latency p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms"
    return text + ". No comparison tests: a single arm has nothing to be compared with."


def load_line(data: dict[str, Any]) -> str | None:
    """p95 and throughput of every arm at the highest closed-loop step that all loaded arms reached."""
    steps = {arm: {step["users"]: step for step in summary["load"] if step.get("users")}
             for arm, summary in data["arms"].items() if summary.get("load")}
    steps = {arm: by_users for arm, by_users in steps.items() if by_users}
    if not steps:
        return None
    common = set.intersection(*(set(by_users) for by_users in steps.values()))
    if not common:
        return None
    users = max(common)
    load = data.get("load") or {}
    mode = load.get("mode")
    parts = []
    for arm, by_users in steps.items():
        step = by_users[users]
        p95 = (step["latency_ms"] or {}).get("p95")
        part = f"{arm} p95 {p95:.0f} ms" if p95 is not None else \
            f"{arm} p95 not measured ({step.get('withheld', {}).get('p95', 'no answer')})"
        part += f", {step['requests_per_s']:.1f} req/s"
        if step["failures"]:
            part += f" ({step['failures']} of {step['requests']} requests failed)"
        parts.append(part)
    where = f"{users} concurrent user{'s' if users != 1 else ''}" + (f", {mode} mode" if mode else "")
    text = f"Under load ({where}): " + "; ".join(parts) + "."
    # The users drive both arms, so an arm's request rate is set by the traffic split, not by its capacity alone.
    if mode == "split" and len(steps) > 1:
        weights = load.get("weights")
        share = (" (" + ":".join(f"{weights[arm]:g}" for arm in steps if arm in weights) + ")") \
            if isinstance(weights, dict) and all(arm in weights for arm in steps) else ""
        text += (f" In split mode each request goes to one arm by weight{share}, so req/s follows the split; "
                 "compare the latencies.")
    elif mode == "parallel" and len(steps) > 1:
        text += " In parallel mode every request goes to all arms at once, so req/s is shared; compare the latencies."
    return text


def head_lines(data: dict[str, Any]) -> list[str]:
    """The decision (or why there is none), then whether the questions are a random sample at all."""
    from abqa.analysis.decision import decision_lines

    lines = decision_lines(data)
    caveats = data.get("sample_caveats") or []
    if caveats and data["tests"]:
        lines.append("NOT A RANDOM SAMPLE: " + "; ".join(caveats) + ".")
    return lines


def pair_lines_end(data: dict[str, Any]) -> int:
    """Where the per-pair lines end in the verdict (more lines about the pairs go right after them)."""
    return len(head_lines(data)) + len(data["tests"])


def verdict_lines(data: dict[str, Any]) -> list[str]:
    from abqa.analysis.tradeoff import tradeoff_line
    from abqa.analysis.variants import variant_lines

    arms, tests = data["arms"], data["tests"]
    alpha = data["settings"]["alpha"]
    adjusted = len(tests) > 1
    order = data["run"].get("order")
    lines = head_lines(data) + [pair_line(test, arms, alpha, adjusted, order) for test in tests.values()]
    answered = [arm for arm, summary in arms.items() if summary["questions"]]
    if len(answered) == 1:
        lines.append(single_arm_line(answered[0], arms[answered[0]]))
    if not answered:
        lines.append("No answers to score (no eval.jsonl records): accuracy and per-question latency are not "
                     "reported.")
    lines += variant_lines(data.get("variants") or [])
    loaded = load_line(data)
    if loaded:
        lines.append(loaded)
    lines += slo_lines(data)
    lines += [line for line in (paired_line(data), answers_line(data)) if line]
    tradeoff = tradeoff_line(data.get("tradeoff"))
    if tradeoff:
        lines.append(tradeoff)
    standins = [arm for arm, summary in arms.items() if summary["provenance"]["standin"]]
    if standins:
        lines.append(f"Stand-ins ({', '.join(standins)}): untrained weights; their latency, memory and size are "
                     "the real architecture's, their accuracy is meaningless.")
    return lines
