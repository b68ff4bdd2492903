"""The accuracy-cost trade-off of A/B/n: every arm's F1 against its p95 latency and its sustained throughput, the
arms no other arm beats on every axis (the Pareto frontier), and the cost per million questions (pure).

- F1 and its CI: the arm's own (questions it answered).
- p95 latency and its CI: one question at a time (the evaluation), per question end to end.
- Sustained throughput: what the arm alone would serve at the load test's concurrency, by Little's law: users /
  the arm's mean request latency at that step, the highest over the steps where at most 1% of its requests failed.
  The measured requests/s is not it: the users share their requests among the arms (split mode) or send each to
  all of them (parallel), so every arm's rate follows the slowest. A load-test request is one window, so the rate is
  divided by the arm's mean windows per question (from the evaluation) to give questions per second. An open-loop
  (rate) step schedules each arm's arrivals on their own, so there its answered requests/s counts. Without a
  load test, the single-stream rate 1000 / mean latency stands in, named.
- Cost per million questions: --cost-per-hour / (questions per second x 3600) x 10^6, for one serving machine.

An arm is dominated when another is at least as good on every axis both have (higher F1, lower p95, higher
throughput) and better on one, on the point estimates (the table shows the CIs to judge how close). Stand-ins'
F1 is meaningless, so a run with stand-ins is judged on latency and throughput only, and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from abqa.analysis.inputs import RunInputs

MAX_FAILURE_SHARE = 0.01


def _capacity(step: dict[str, Any]) -> float | None:
    """Closed loop, Little's law: requests in flight (the users) / time per request. Open loop (a rate step): the
    arm's own arrivals are scheduled, so the rate it answered is its throughput at that step."""
    if not step.get("users"):
        return step.get("requests_per_s") or None
    mean_ms = (step.get("latency_ms") or {}).get("mean")
    return step["users"] / (mean_ms / 1000.0) if mean_ms else None


def _step_source(step: dict[str, Any]) -> str:
    if not step.get("users"):
        return f"load test, {step['step']}: answered requests/s at a scheduled rate"
    return f"load test, {step['users']} user{'' if step['users'] == 1 else 's'} / mean latency"


def sustained_step(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The load step with the highest Little's-law rate among those with at most 1% failed requests."""
    healthy = [step for step in steps or [] if step["requests"] and _capacity(step)
               and step["failures"] / step["requests"] <= MAX_FAILURE_SHARE]
    return max(healthy, key=_capacity) if healthy else None


def _mean_windows(inputs: RunInputs, arm: str) -> float | None:
    answers = inputs.answers.get(arm)
    if answers is None or answers.windows is None or not np.isfinite(answers.windows).any():
        return None
    return float(np.nanmean(answers.windows))


def _throughput(arm: str, summary: dict[str, Any], inputs: RunInputs) -> dict[str, Any] | None:
    step = sustained_step(summary.get("load"))
    windows = _mean_windows(inputs, arm)
    if step is not None:
        per_question = windows or 1.0
        return {"questions_per_s": _capacity(step) / per_question, "requests_per_s": step["requests_per_s"],
                "users": step["users"], "windows_per_question": windows,
                "source": _step_source(step) + ("" if windows else " (1 window per question assumed)")}
    latency = summary.get("latency_ms") or {}
    if latency.get("mean"):
        return {"questions_per_s": 1000.0 / latency["mean"], "requests_per_s": None, "users": 1,
                "windows_per_question": windows, "source": "single stream (1000 / mean latency; no load test)"}
    return None


def _axes(row: dict[str, Any], use_f1: bool) -> list[float]:
    """Every axis as "higher is better"; NaN where the arm has no value."""
    def value(x: float | None, sign: float) -> float:
        return np.nan if x is None else sign * x

    throughput = row["throughput"]["questions_per_s"] if row["throughput"] else None
    axes = [value(row["p95_ms"], -1.0), value(throughput, 1.0)]
    return ([value(row["f1"], 1.0)] if use_f1 else []) + axes


def _dominated_by(rows: list[dict[str, Any]], use_f1: bool) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in rows:
        mine = np.array(_axes(row, use_f1))
        for other in rows:
            if other is row:
                continue
            theirs = np.array(_axes(other, use_f1))
            shared = np.isfinite(mine) & np.isfinite(theirs)
            if shared.sum() < 2 or not np.isfinite(mine).sum() == shared.sum():
                continue  # compare only on every axis this arm has, and at least two of them
            if np.all(theirs[shared] >= mine[shared]) and np.any(theirs[shared] > mine[shared]):
                found.setdefault(row["arm"], []).append(other["arm"])
    return found


def tradeoff_table(data: dict[str, Any], inputs: RunInputs, cost_per_hour: float | None) -> dict[str, Any] | None:
    """report.json's `tradeoff`: a row per arm with latency or load figures, the dominated arms, and the rule."""
    rows = []
    for arm, summary in data["arms"].items():
        latency = summary.get("latency_ms") or {}
        if not latency:   # replayed, or a load-only run: no per-question p95 to set against its F1
            continue
        throughput = _throughput(arm, summary, inputs)
        row = {"arm": arm, "label": summary["provenance"]["label"], "f1": summary["f1"], "f1_ci": summary["f1_ci"],
               "accuracy_meaningful": summary["accuracy_meaningful"], "p95_ms": latency.get("p95"),
               "p95_ci": (latency.get("ci") or {}).get("p95"), "throughput": throughput, "cost_per_million": None}
        if cost_per_hour is not None and throughput and throughput["questions_per_s"] > 0:
            row["cost_per_million"] = cost_per_hour / (throughput["questions_per_s"] * 3600) * 1e6
        rows.append(row)
    if len(rows) < 2:
        return None
    use_f1 = all(row["accuracy_meaningful"] and row["f1"] is not None for row in rows)
    why_not_f1 = None if use_f1 else ("a stand-in's accuracy is meaningless"
                                      if any(not row["accuracy_meaningful"] for row in rows)
                                      else "not every arm has answers to score")
    dominated = _dominated_by(rows, use_f1)
    for row in rows:
        row["dominated_by"] = dominated.get(row["arm"], [])
    return {"rows": rows, "axes": (["F1"] if use_f1 else []) + ["p95 latency", "sustained throughput"],
            "f1_used": use_f1, "f1_left_out": why_not_f1, "cost_per_hour": cost_per_hour,
            "without_latency": [arm for arm, s in data["arms"].items() if s["questions"] and not s.get("latency_ms")
                                and arm not in {row["arm"] for row in rows}]}


def tradeoff_line(tradeoff: dict[str, Any] | None) -> str | None:
    """The verdict's line: which arms are dominated, on which axes."""
    if not tradeoff:
        return None
    rows = tradeoff["rows"]
    axes = ", ".join(tradeoff["axes"])
    dominated = [row for row in rows if row["dominated_by"]]
    frontier = [row["arm"] for row in rows if not row["dominated_by"]]
    text = f"Trade-off ({axes}{'' if tradeoff['f1_used'] else '; F1 left out: ' + tradeoff['f1_left_out']}): "
    if dominated:
        text += "; ".join(f"{row['arm']} is dominated by {', '.join(row['dominated_by'])}" for row in dominated)
        text += f"; the frontier is {', '.join(frontier)}"
    else:
        text += f"no arm is dominated ({', '.join(frontier)} each lead on some axis)"
    costs = [f"{row['arm']} {row['cost_per_million']:,.2f}" for row in rows if row["cost_per_million"] is not None]
    if costs:
        text += f"; cost per million questions at {tradeoff['cost_per_hour']:g}/hour: " + ", ".join(costs)
    return text + "."
