"""The load test in the report (pure): per-arm step tables, the SLO statement per arm, the paired
per-request latency difference (parallel mode), answers under load, and what limits the figures.

Everything here reads load.json (`LoadDocument`) and requests.jsonl (`RequestRecord`), as `abqa loadtest` wrote
them; the step figures themselves were computed there from the request records (exact percentiles). The paired
difference is computed here: in parallel mode every user request went to every arm at the same moment (the same
window, the same scheduled time), so the two latencies of one request form a pair, and their difference has a
paired bootstrap CI like the evaluation's per-question differences.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from abqa.analysis import stats
from abqa.core.run import LoadDocument, LoadStepReport, RequestRecord

LOAD_HEADERS = ["arm", "step", "requests", "failures", "req/s", "tokens/s", "p50 ms", "p95 ms", "p99 ms",
                "n", "same answers", "stable", "queue ms/req", "compute ms/req", "mean batch"]
FACT_KEYS = ("mode", "users", "rates", "arrivals", "duration_s", "warmup_s", "window", "tolerance", "processes",
             "weights", "url", "started_at", "arms", "slo_ms")


# ---------------------------------------------------------------- report.json


def load_steps(load: LoadDocument | None, arm: str) -> list[dict[str, Any]] | None:
    """The arm's steps in sweep order (closed loop, open loop, then its SLO search), as report.json shows them."""
    if load is None:
        return None
    steps = {step.name: step for step in load.steps}
    rows = [LoadStepReport.from_row(row, steps.get(row.step)).to_dict() for row in load.rows if row.arm == arm]
    return rows or None


def load_facts(load: LoadDocument | None, requests: Sequence[RequestRecord],
               bootstrap: dict[str, Any]) -> dict[str, Any] | None:
    """report.json's "load": how the sweep ran, each arm's SLO result, the paired differences, the steps that did
    not stabilise and those whose generator was the bottleneck."""
    if load is None:
        return None
    facts: dict[str, Any] = {key: getattr(load, key) for key in FACT_KEYS}
    facts["slo"] = {arm: result.to_dict() for arm, result in load.slo.items()} or None
    facts["paired"] = paired_latency(load, requests, bootstrap) or None
    facts["unstable_steps"] = [step.name for step in load.steps if step.stable is False] or None
    facts["unjudged_steps"] = [step.name for step in load.steps if step.stable is None and step.measured_s] or None
    flags = {step.name: "saturated" if step.generator.saturated else "behind"
             for step in load.steps if step.generator is not None and (step.generator.saturated or step.generator.behind)}
    facts["generator_flags"] = flags or None
    return facts


def paired_latency(load: LoadDocument, requests: Sequence[RequestRecord],
                   bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    """Parallel mode: per step and pair of arms, the requests both answered (warm-up left out), a - b."""
    if load.mode != "parallel":
        return []
    by_step: dict[str, dict[str, dict[str, float]]] = {}
    for record in requests:
        if record.ok and not record.warmup and record.request_id is not None:
            by_step.setdefault(record.step, {}).setdefault(record.request_id, {})[record.arm] = record.latency_ms
    blocks = []
    for step in load.steps:
        pairs = by_step.get(step.name, {})
        for arm_a, arm_b in itertools.combinations(step.arms, 2):
            both = [(latency[arm_a], latency[arm_b]) for latency in pairs.values() if arm_a in latency and arm_b in latency]
            if len(both) < 2:
                continue
            a, b = (np.array(column, dtype=float) for column in zip(*both))
            (difference,) = stats.paired_mean_differences([a - b], **bootstrap)
            blocks.append({
                "step": step.name, "arm_a": arm_a, "arm_b": arm_b, "pairs": len(both),
                "median_a_ms": float(np.median(a)), "median_b_ms": float(np.median(b)),
                "median_diff_ms": float(np.median(a - b)),
                "mean_diff_ms": difference.to_dict(),
                "ratio_of_medians": stats.ratio_of_medians(a, b, **bootstrap).to_dict(),
            })
    return blocks


# ---------------------------------------------------------------- words


def slo_lines(data: dict[str, Any]) -> list[str]:
    """The SLO statement of each arm ("distilbert sustains X req/s at p99 <= Y ms ...")."""
    slo = (data.get("load") or {}).get("slo") or {}
    return [result["statement"] + "." for result in slo.values()]


def paired_line(data: dict[str, Any]) -> str | None:
    """The paired difference at the busiest step of the sweep (the last one measured in parallel mode)."""
    paired = (data.get("load") or {}).get("paired") or []
    if not paired:
        return None
    block = paired[-1]
    value, (low, high) = block["mean_diff_ms"]["value"], block["mean_diff_ms"]["ci"]
    interval = f"95% CI [{low:.1f}, {high:.1f}]" if low is not None and high is not None else "CI not available"
    verdict = ("a real difference" if low is not None and high is not None and (low > 0 or high < 0)
               else "no clear difference")
    return (f"Paired under load ({block['step']}, {block['pairs']:,} requests sent to both arms at once): "
            f"{block['arm_a']} - {block['arm_b']} = {value:+.1f} ms per request on average ({interval}; medians "
            f"{block['median_a_ms']:.1f} vs {block['median_b_ms']:.1f} ms): {verdict}.")


def answers_line(data: dict[str, Any]) -> str | None:
    """Answers under load against the same arm's answers in isolation, over every step."""
    parts, changed = [], []
    for arm, summary in data["arms"].items():
        checked = [step for step in summary.get("load") or [] if (step.get("answers") or {}).get("compared")]
        if not checked:
            continue
        compared = sum(step["answers"]["compared"] for step in checked)
        identical = sum(step["answers"]["identical"] for step in checked)
        parts.append(f"{arm} {identical:,}/{compared:,}")
        changed += [f"{arm} at {step['step']} ({step['answers']['identical']}/{step['answers']['compared']})"
                    for step in checked if step["answers"]["identical"] < step["answers"]["compared"]]
    if not parts:
        return None
    text = ("Answers under load identical to the same arm's in isolation (questions, summed over the steps): "
            + ", ".join(parts) + ".")
    if changed:
        text += " Changed under load: " + "; ".join(changed) + " (load.json rows[].answers.differing lists them)."
    else:
        text += " Batching, padding and concurrency changed no answer."
    return text


def load_notes(data: dict[str, Any]) -> list[str]:
    """What limits the load figures: steps that did not stabilise, a generator that was the bottleneck,
    percentiles withheld for want of requests."""
    load = data.get("load") or {}
    notes = []
    if load.get("unstable_steps"):
        notes.append(f"Load steps {', '.join(load['unstable_steps'])} did not stabilise (their last three windows "
                     f"differed by more than {load.get('tolerance') or 0:.0%}) before their maximum duration: read "
                     "their figures as a range, not a level.")
    if load.get("unjudged_steps"):
        notes.append(f"Load steps {', '.join(load['unjudged_steps'])} ended before three windows of "
                     f"{load.get('window')} answers per arm: too short to say whether they were stable.")
    for step, flag in (load.get("generator_flags") or {}).items():
        notes.append(f"Load step {step}: the load generator {'saturated a core' if flag == 'saturated' else 'fell behind its schedule'}; "
                     "the step measures the generator as much as the server (abqa loadtest --processes N).")
    withheld = sorted({f"{key} ({why})" for summary in data["arms"].values() for step in summary.get("load") or []
                       for key, why in step.get("withheld", {}).items()})
    if withheld:
        notes.append("Load percentiles resting on too few requests are not given (" + ", ".join(withheld) + "): "
                     "pXX needs at least 100 / (100 - XX) answered requests.")
    return notes


# ---------------------------------------------------------------- the table


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"


def _latency(step: dict[str, Any], key: str) -> str:
    value = (step.get("latency_ms") or {}).get(key)
    return _num(value) if value is not None else step.get("withheld", {}).get(key, "–")


def load_table_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for summary in data["arms"].values():
        for step in summary.get("load") or []:
            compute = [step.get(key) for key in ("compute_input_ms_per_request", "compute_infer_ms_per_request",
                                                 "compute_output_ms_per_request")]
            known = [value for value in compute if value is not None]
            answers = step.get("answers") or {}
            stable = {True: "yes", False: "no", None: "too short"}[step.get("stable")]
            if step.get("generator"):
                stable += f" (generator {step['generator']})"
            rows.append([
                summary["provenance"]["label"], step["step"], _num(step["requests"]), _num(step["failures"]),
                _num(step["requests_per_s"], 2), _num(step.get("tokens_per_s"), 0), _latency(step, "p50"),
                _latency(step, "p95"), _latency(step, "p99"), _num(step.get("samples", 0)),
                f"{answers['identical']}/{answers['compared']}" if answers.get("compared") else "–", stable,
                _num(step.get("queue_ms_per_request"), 2), _num(sum(known) if known else None, 2),
                _num(step.get("mean_batch_size"), 2),
            ])
    return rows


def paired_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["step", "pair", "requests", "median a / b ms", "mean a - b ms [95% CI]", "ratio of medians [CI]"]
    rows = []
    for block in (data.get("load") or {}).get("paired") or []:
        diff, ratio = block["mean_diff_ms"], block["ratio_of_medians"]
        rows.append([
            block["step"], f"{block['arm_a']} - {block['arm_b']}", _num(block["pairs"]),
            f"{block['median_a_ms']:.1f} / {block['median_b_ms']:.1f}",
            f"{_num(diff['value'])} [{_num(diff['ci'][0])}, {_num(diff['ci'][1])}]",
            f"{_num(ratio['value'], 3)} [{_num(ratio['ci'][0], 3)}, {_num(ratio['ci'][1], 3)}]",
        ])
    return headers, rows
