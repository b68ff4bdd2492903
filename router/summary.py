"""Live per-arm figures of an experiment from its request log (pure: rows in, a JSON-ready dict out)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from abqa.router.policy import ASSIGN_PINNED, ROLE_PRIMARY, ROLE_SHADOW
from abqa.router.requestlog import STATUS_OK

PERCENTILES = (50, 90, 95, 99)


def latency_stats(latencies_ms: Iterable[float]) -> dict[str, float | None]:
    """p50/p90/p95/p99, mean and max in ms (numpy's linear interpolation); all None without data."""
    values = np.asarray([v for v in latencies_ms if v is not None], dtype=float)
    if values.size == 0:
        return {**{f"p{p}": None for p in PERCENTILES}, "mean": None, "max": None}
    quantiles = np.percentile(values, PERCENTILES)
    return {**{f"p{p}": float(q) for p, q in zip(PERCENTILES, quantiles)},
            "mean": float(values.mean()), "max": float(values.max())}


def summarize_experiment(experiment: str, rows: Iterable[tuple[str, str, str, str, float | None]],
                         policy: dict | None = None) -> dict:
    """Counts and latency percentiles per arm.

    `rows` are (arm, role, assignment, status, latency_ms). `routed` counts the requests the arm answered for
    users (role primary) excluding pinned ones, and `share` is its fraction of all routed requests: the split
    to compare with the weights. Latency percentiles are over successful answers, shadow ones included (the
    arm did the same work); `primary_latency_ms` is over what users waited for.
    """
    def no_requests() -> dict[str, int]:
        return {"requests": 0, "routed": 0, "pinned": 0, "shadow": 0, "ok": 0, "failed": 0}

    by_arm: dict[str, dict] = {}
    latencies: dict[str, list[float]] = {}
    primary_latencies: dict[str, list[float]] = {}
    for arm, role, assignment, status, latency in rows:
        entry = by_arm.setdefault(arm, no_requests())
        entry["requests"] += 1
        if role == ROLE_SHADOW:
            entry["shadow"] += 1
        elif assignment == ASSIGN_PINNED:
            entry["pinned"] += 1
        elif role == ROLE_PRIMARY:
            entry["routed"] += 1
        if status == STATUS_OK:
            entry["ok"] += 1
            if latency is not None:
                latencies.setdefault(arm, []).append(latency)
                if role == ROLE_PRIMARY:
                    primary_latencies.setdefault(arm, []).append(latency)
        else:
            entry["failed"] += 1
    routed_total = sum(entry["routed"] for entry in by_arm.values())
    # The policy's arms in its order (with zeros when they have not answered yet), then any other arm in the log.
    policy_arms = list((policy or {}).get("arms") or [])
    arms = policy_arms + sorted(arm for arm in by_arm if arm not in policy_arms)
    result = {}
    for arm in arms:
        entry = by_arm.get(arm) or no_requests()
        result[arm] = {
            **entry,
            "share": entry["routed"] / routed_total if routed_total else None,
            "weight": ((policy or {}).get("weights") or {}).get(arm),
            "latency_ms": latency_stats(latencies.get(arm, [])),
            "primary_latency_ms": latency_stats(primary_latencies.get(arm, [])),
        }
    return {
        "experiment": experiment,
        "requests": sum(entry["requests"] for entry in by_arm.values()),
        "routed": routed_total,
        "policy": policy,
        "arms": result,
    }
