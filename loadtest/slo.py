"""`--slo-ms`: the highest request rate each arm sustains alone with its p99 within a bound (pure).

MLPerf's Server scenario asks for the highest Poisson arrival rate whose p99 latency, measured from the scheduled
arrival, meets a bound. Each arm is searched alone (only it gets traffic), so one arm's load does not set the
other's latency: from a starting rate, up by FACTOR while the bound holds, down while it does not, then bisecting
(geometric mean) between the highest rate that held and the lowest that did not, until they are within RESOLUTION
of each other or the steps run out.

A step holds the bound when its p99 (from at least 100 answered requests, warm-up left out) is within it, no
request failed and the generator kept its schedule. It breaks the bound as soon as two of its measured requests
took longer: p99 over 100 requests (linear interpolation) then exceeds the bound whatever the others do, so a
failing step can end early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from abqa.core.run import LoadRow, SloResult, StepRecord
from abqa.loadtest.figures import min_samples

FACTOR = 1.5
RESOLUTION = 0.15          # stop bisecting when the bracket's upper end is within 15% of its lower end
DEFAULT_STEPS = 4          # steps per arm
P99_SAMPLES = min_samples(99.0)
# Two measured requests over the bound: p99 over up to 199 requests is over it.
OVER_BOUND_TO_FAIL = 2


@dataclass(frozen=True)
class SloTrial:
    rate: float
    held: bool | None           # None: the step could not say (too few requests, no answers)
    reason: str                 # why it held, broke, or could not say
    step: str
    p99_ms: float | None = None
    samples: int = 0


def round_rate(rate: float) -> float:
    """Two significant digits (a step's name carries its rate)."""
    if rate <= 0:
        return rate
    digits = 1 - int(math.floor(math.log10(rate)))
    return round(rate, max(digits, 0))


def next_rate(trials: Sequence[SloTrial], start: float, max_steps: int = DEFAULT_STEPS) -> float | None:
    """The rate to try next, or None when the search is done."""
    if not trials:
        return round_rate(start)
    if len(trials) >= max_steps:
        return None
    held = [trial.rate for trial in trials if trial.held]
    broke = [trial.rate for trial in trials if not trial.held]
    low, high = max(held, default=None), min(broke, default=None)
    if low is None:
        rate = high / FACTOR
    elif high is None:
        rate = low * FACTOR
    elif high <= low * (1.0 + RESOLUTION):
        return None
    else:
        rate = math.sqrt(low * high)
    rate = round_rate(rate)
    return None if any(trial.rate == rate for trial in trials) else rate


def starting_rate(rows: Sequence[LoadRow], arm: str) -> float:
    """Where the search starts: three quarters of what one user got from the arm alone (1000 / its median
    latency at the fewest users), else of the highest answered rate seen, else 1 request per second."""
    closed = sorted((row for row in rows if row.arm == arm and row.users and row.latency_ms.p50),
                    key=lambda row: row.users or 0)
    if closed:
        return 0.75 * 1000.0 / closed[0].latency_ms.p50
    rates = [row.requests_per_s for row in rows if row.arm == arm and row.requests_per_s > 0]
    return 0.75 * max(rates) if rates else 1.0


def over_bound(latencies_ms: Sequence[float], bound_ms: float) -> int:
    return sum(1 for latency in latencies_ms if latency > bound_ms)


def judge(row: LoadRow, step: StepRecord, bound_ms: float, over: int) -> SloTrial:
    """Did the arm hold p99 <= bound at this step? `over`: its measured answered requests above the bound."""
    rate = row.rate or step.rate or 0.0
    latency = row.latency_ms
    if row.failures:
        return SloTrial(rate, False, f"{row.failures} of {row.requests} requests failed", step.name, None,
                        latency.samples)
    if step.generator is not None and (step.generator.behind or step.generator.saturated):
        return SloTrial(rate, None, "the load generator could not keep the schedule", step.name, latency.p99,
                        latency.samples)
    if over >= OVER_BOUND_TO_FAIL and (latency.p99 is None or latency.p99 > bound_ms):
        reason = f"p99 {latency.p99:.0f} ms > {bound_ms:g} ms" if latency.p99 is not None else \
            f"{over} of its first {latency.samples} measured requests took longer than {bound_ms:g} ms"
        return SloTrial(rate, False, reason, step.name, latency.p99, latency.samples)
    if latency.p99 is None:
        return SloTrial(rate, None, f"p99 not measured: {latency.samples} answered requests (p99 needs "
                        f"{P99_SAMPLES})", step.name, None, latency.samples)
    held = latency.p99 <= bound_ms
    return SloTrial(rate, held, f"p99 {latency.p99:.0f} ms {'<=' if held else '>'} {bound_ms:g} ms from "
                    f"{latency.samples} requests", step.name, latency.p99, latency.samples)


def slo_result(arm: str, bound_ms: float, trials: Sequence[SloTrial]) -> SloResult:
    held = [trial for trial in trials if trial.held]
    broke = [trial for trial in trials if trial.held is False]
    best = max(held, key=lambda trial: trial.rate, default=None)
    above = [trial for trial in broke if best is None or trial.rate > best.rate]
    worst = min(above, key=lambda trial: trial.rate, default=None)
    if best is not None:
        statement = (f"{arm} sustains {best.rate:g} req/s at p99 <= {bound_ms:g} ms "
                     f"(p99 {best.p99_ms:.0f} ms from {best.samples} requests")
        statement += f"; {worst.rate:g} req/s did not: {worst.reason})" if worst else "; no higher rate was tried)"
    elif broke:
        lowest = min(broke, key=lambda trial: trial.rate)
        statement = f"{arm} did not meet p99 <= {bound_ms:g} ms at any rate tried (lowest {lowest.rate:g} req/s: " \
                    f"{lowest.reason})"
    else:
        statement = f"{arm}: p99 <= {bound_ms:g} ms could not be judged (" + \
                    "; ".join(f"{trial.rate:g} req/s: {trial.reason}" for trial in trials) + ")" if trials else \
                    f"{arm}: no rate was tried"
    return SloResult(arm=arm, p99_bound_ms=bound_ms, sustained_rate=best.rate if best else None,
                     p99_ms=best.p99_ms if best else None, samples=best.samples if best else None,
                     failed_rate=worst.rate if worst else None, failed_because=worst.reason if worst else None,
                     steps=[trial.step for trial in trials], statement=statement)
