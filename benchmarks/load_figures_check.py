"""Recompute a load test's figures from its request log, independently of abqa's own code, and compare.

For every arm and step of `load.json`: the measured requests (warm-up left out) of `requests.jsonl`, read as plain
JSON, give p50/p90/p95/p99 (numpy, linear interpolation), max and mean; each must equal load.json's figure (to its
3 decimals), a withheld percentile must rest on fewer requests than it needs, and p99 <= max. For every open-loop
step: the requests were scheduled at the step's rate (count against rate x scheduled span, with a Poisson
4-sigma allowance), and every latency runs from the schedule (latency >= send - schedule).

    .venv/bin/python benchmarks/load_figures_check.py runs/<name>        # exit 1 if anything disagrees
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}


def read_requests(path: Path) -> dict[tuple[str, str], list[dict]]:
    by_step: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[(record["arm"], record["step"])].append(record)
    return by_step


def check_row(row: dict, records: list[dict]) -> list[str]:
    measured = [r for r in records if not r.get("warmup")]
    answered = np.array([r["latency_ms"] for r in measured if r["status"] == "ok" and r["latency_ms"] is not None])
    latency, problems = row["latency_ms"], []
    if row["requests"] != len(measured):
        problems.append(f"requests {row['requests']} != {len(measured)} measured records")
    if latency.get("samples") != answered.size:
        problems.append(f"samples {latency.get('samples')} != {answered.size} answered")
    if answered.size == 0:
        return problems
    for key, q in PERCENTILES.items():
        mine = round(float(np.percentile(answered, q)), 3)
        if latency.get(key) is None:
            if answered.size >= math.ceil(100 / (100 - q)):
                problems.append(f"{key} withheld from {answered.size} requests")
        elif abs(latency[key] - mine) > 1e-3:
            problems.append(f"{key} {latency[key]} != {mine}")
    for key, mine in (("max", float(answered.max())), ("mean", float(answered.mean()))):
        if abs(latency[key] - round(mine, 3)) > 1e-3:
            problems.append(f"{key} {latency[key]} != {mine:.3f}")
    if latency.get("p99") is not None and latency["p99"] > latency["max"]:
        problems.append(f"p99 {latency['p99']} > max {latency['max']}")
    return problems


def check_schedule(step: dict, records: list[dict]) -> tuple[str, list[str]]:
    """An open-loop step's requests (all arms: the step's rate is the user requests' rate) against its rate."""
    scheduled = sorted({(r.get("request_id"), r["scheduled_at"]) for r in records}, key=lambda item: item[1])
    problems = [f"{r['arm']} {r.get('request_id')}: latency {r['latency_ms']} ms < send - schedule"
                for r in records if r["latency_ms"] is not None
                and r["latency_ms"] < (r["sent_at"] - r["scheduled_at"]) * 1000 - 0.01]
    span = scheduled[-1][1] - scheduled[0][1]
    expected = step["rate"] * span
    if abs(len(scheduled) - 1 - expected) > 4 * math.sqrt(max(expected, 1)) + 1:
        problems.append(f"{len(scheduled)} requests in {span:.1f} s at {step['rate']} req/s (expected about "
                        f"{expected + 1:.0f})")
    late = [(r["sent_at"] - r["scheduled_at"]) * 1000 for r in records]
    return (f"{len(scheduled)} user requests over {span:.1f} s = {(len(scheduled) - 1) / span:.2f} req/s "
            f"(rate {step['rate']}); send - schedule p99 {np.percentile(late, 99):.1f} ms"), problems


def main(run: Path) -> int:
    load = json.loads((run / "load.json").read_text(encoding="utf-8"))
    requests = read_requests(run / "requests.jsonl")
    failures = 0
    print(f"{'arm':<14} {'step':<22} {'n':>5} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9}  recomputed")
    for row in load["rows"]:
        problems = check_row(row, requests.get((row["arm"], row["step"]), []))
        latency = row["latency_ms"]
        cells = [f"{latency.get(key):>9}" if latency.get(key) is not None else f"{'(n<)':>9}"
                 for key in ("p50", "p95", "p99", "max")]
        print(f"{row['arm']:<14} {row['step']:<22} {latency.get('samples'):>5} {' '.join(cells)}  "
              + ("agrees" if not problems else "DISAGREES: " + "; ".join(problems)))
        failures += bool(problems)
    for step in load["steps"]:
        if step.get("kind") in ("rate", "slo"):
            records = [r for (arm, name), rs in requests.items() if name == step["name"] for r in rs]
            if records:
                summary, problems = check_schedule(step, records)
                print(f"open loop {step['name']}: {summary}: " + ("on schedule" if not problems else
                                                                  "PROBLEM: " + "; ".join(problems[:3])))
                failures += bool(problems)
    for slo in (load.get("slo") or {}).values():
        print(f"SLO: {slo['statement']}")
    print("every figure agrees with its request records" if not failures else f"{failures} rows/steps disagree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
