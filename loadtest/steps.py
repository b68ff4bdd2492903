"""The steps of a sweep and when each one ends (pure).

A step is closed loop (`users-4`: four users, each asking again when answered), open loop (`rate-8`: eight user
requests per second on a schedule drawn in advance) or a step of the SLO search (`slo-<arm>-rate-6.5`: open
loop, one arm alone). Each step starts with a warm-up whose requests are recorded but not measured, then measures
in windows of `window` answers per arm, and ends as soon as

- the last three windows agree within the tolerance (figures.is_stable) and every arm has the answered requests
  its p99 needs (100), or
- (SLO steps) the bound is already broken: a request failed, or two measured requests took longer than it, or
- the step has measured for its maximum duration; it then says it did not stabilise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from abqa.core.run import RequestRecord, WindowArm
from abqa.loadtest import figures, slo

# An SLO step measures long enough for the requests p99 needs at its rate (20% spare), up to this long.
SLO_MAX_MEASURE_S = 120.0


@dataclass(frozen=True)
class StepPlan:
    name: str
    kind: str                       # users | rate | slo
    arms: tuple[str, ...]
    users: int | None = None
    rate: float | None = None

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @classmethod
    def closed(cls, users: int, arms: Sequence[str]) -> "StepPlan":
        return cls(f"users-{users}", "users", tuple(arms), users=users)

    @classmethod
    def open(cls, rate: float, arms: Sequence[str]) -> "StepPlan":
        return cls(f"rate-{rate:g}", "rate", tuple(arms), rate=rate)

    @classmethod
    def slo(cls, arm: str, rate: float) -> "StepPlan":
        return cls(f"slo-{arm}-rate-{rate:g}", "slo", (arm,), rate=rate)


def sweep(users: Sequence[int], rates: Sequence[float], arms: Sequence[str]) -> list[StepPlan]:
    """The steps given on the command line: the closed-loop ones, then the open-loop ones."""
    return [StepPlan.closed(n, arms) for n in users] + [StepPlan.open(rate, arms) for rate in rates]


def max_measure_s(step: StepPlan, duration_s: float) -> float:
    """How long a step may measure: --duration; an SLO step at least what p99 needs at its rate (up to
    SLO_MAX_MEASURE_S)."""
    if step.kind != "slo" or not step.rate:
        return duration_s
    return max(duration_s, min(1.2 * slo.P99_SAMPLES / step.rate, SLO_MAX_MEASURE_S))


@dataclass(frozen=True)
class StepState:
    """Where a running step stands: its measured start, complete windows, and why it should stop (None: go on)."""

    start: float | None
    windows: dict[str, list[WindowArm]]
    stable: bool
    stop: str | None


def step_state(records: Sequence[RequestRecord], step: StepPlan, now: float, *, window: int, tolerance: float,
               max_s: float, slo_ms: float | None = None) -> StepState:
    span = figures.measured_span(records)
    if span is None:
        return StepState(None, {}, False, None)
    measured = figures.measured(records)
    window_figures = figures.windows(records, step.arms, window, start=span.start)
    stable = figures.is_stable(window_figures, tolerance, open_loop=step.open_loop)
    answered = {arm: sum(1 for record in measured if record.arm == arm and record.ok) for arm in step.arms}
    stop = None
    if step.kind == "slo" and slo_ms is not None:
        failed = sum(1 for record in measured if not record.ok)
        over = slo.over_bound([record.latency_ms for record in measured if record.ok], slo_ms)
        if failed:
            stop = f"the bound is broken: {failed} request(s) failed"
        elif over >= slo.OVER_BOUND_TO_FAIL:
            stop = f"the bound is broken: {over} measured requests took longer than {slo_ms:g} ms"
    if stop is None and stable and min(answered.values()) >= slo.P99_SAMPLES:
        stop = (f"stable: the last {figures.STABLE_WINDOWS} windows agreed within {tolerance:.0%} and every arm had "
                f"{slo.P99_SAMPLES} answers")
    if stop is None and now - span.start >= max_s:
        if stable:
            reason = f"stable, but {min(answered.values())} answers (p99 needs {slo.P99_SAMPLES})"
        elif figures.stability(window_figures, tolerance, open_loop=step.open_loop) is None:
            reason = f"too few answers for three windows ({min(answered.values())})"
        else:
            reason = "did not stabilise"
        stop = f"maximum duration ({max_s:.0f} s measured): {reason}"
    return StepState(span.start, window_figures, stable, stop)
