"""A step's figures, exactly, from its request records (pure): percentiles, throughput, tokens, windows, stability,
the generator's lateness and CPU.

Every latency is the client's own (requests.jsonl), never Locust's rounded histogram. Percentiles are numpy's
(linear interpolation between order statistics, as the report's per-question percentiles), over the answered
requests after the warm-up. A percentile is withheld (None, with the reason) when it would rest on too few
requests: pXX needs at least 100 / (100 - XX) of them (p50 2, p90 10, p95 20, p99 100), so that at least one
measured request lies at or beyond it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from abqa.core.run import GeneratorView, LatencyPercentiles, RequestRecord, WindowArm

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
# A request sent more than this long after its scheduled time is late (or one mean gap of its generator, if longer).
LATE_MS = 10.0
# More than this share of late requests: the generator did not keep the schedule.
BEHIND_SHARE = 0.01
# A Locust process is single-threaded (gevent): at this share of one core it is the bottleneck, not the server.
SATURATED_CPU_PERCENT = 90.0
# The stability rule compares this many consecutive windows.
STABLE_WINDOWS = 3


def min_samples(percentile: float) -> int:
    """The fewest requests a percentile may rest on: 100 / (100 - percentile), rounded up (p99: 100)."""
    return math.ceil(round(100.0 / (100.0 - percentile), 9))


def latency_percentiles(latencies_ms: Sequence[float]) -> LatencyPercentiles:
    """Exact p50..p99, mean and max of the answered requests; a percentile with too few requests is withheld."""
    values = np.asarray(latencies_ms, dtype=float)
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n == 0:
        return LatencyPercentiles(samples=0)
    figures: dict[str, float | None] = {}
    withheld: dict[str, str] = {}
    for key, percentile in PERCENTILES.items():
        needed = min_samples(percentile)
        if n < needed:
            figures[key] = None
            withheld[key] = f"n<{needed}"
        else:
            figures[key] = round(float(np.percentile(values, percentile)), 3)
    return LatencyPercentiles(**figures, mean=round(float(values.mean()), 3), max=round(float(values.max()), 3),
                              samples=n, withheld=withheld)


def measured(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    return [record for record in records if not record.warmup]


@dataclass(frozen=True)
class Span:
    """The measured part of a step: from the end of the warm-up (the first measured request's origin) to the
    last measured answer."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)


def measured_span(records: Sequence[RequestRecord]) -> Span | None:
    records = measured(records)
    if not records:
        return None
    return Span(min(record.origin for record in records), max(record.finished_at for record in records))


@dataclass(frozen=True)
class ArmFigures:
    """One arm's figures over a step's measured records (LoadRow's fields)."""

    requests: int
    failures: int
    requests_per_s: float
    tokens_per_s: float | None
    padded_tokens_per_s: float | None
    latency_ms: LatencyPercentiles
    failure_messages: dict[str, int]


def arm_figures(records: Sequence[RequestRecord], span: Span | None) -> ArmFigures:
    """Counts, throughput (answered per measured second), tokens per second and exact latency of one arm."""
    records = measured(records)
    answered = [record for record in records if record.ok]
    seconds = span.seconds if span is not None else 0.0
    failures: dict[str, int] = {}
    for record in records:
        if not record.ok:
            message = record.error or "failed"
            failures[message] = failures.get(message, 0) + 1

    def per_second(total: float | None) -> float | None:
        return round(total / seconds, 3) if total is not None and seconds > 0 else None

    tokens = [record.tokens for record in answered]
    padded = [record.padded_tokens for record in answered]
    return ArmFigures(
        requests=len(records),
        failures=len(records) - len(answered),
        requests_per_s=per_second(float(len(answered))) or 0.0,
        tokens_per_s=per_second(sum(tokens)) if answered and None not in tokens else None,
        padded_tokens_per_s=per_second(sum(padded)) if answered and None not in padded else None,
        latency_ms=latency_percentiles([record.latency_ms for record in answered]),
        failure_messages=dict(sorted(failures.items(), key=lambda item: -item[1])),
    )


# --- windows and the stability rule ----------------------------------------------------------------------------------


def windows(records: Sequence[RequestRecord], arms: Sequence[str], size: int, *, start: float) -> dict[str, list[WindowArm]]:
    """Each arm's complete windows of `size` answers, in completion order (perf_analyzer's count windows): a
    window's throughput is its answers over the time since the previous window ended (the first: since `start`,
    the end of the warm-up), its latency their mean and median."""
    answered = sorted((record for record in measured(records) if record.ok), key=lambda record: record.finished_at)
    per_arm: dict[str, list[WindowArm]] = {}
    for arm in arms:
        mine = [record for record in answered if record.arm == arm]
        figures, begin = [], start
        for first in range(0, len(mine) - size + 1, size):
            chunk = mine[first:first + size]
            end = chunk[-1].finished_at
            latencies = [record.latency_ms for record in chunk]
            figures.append(WindowArm(start_s=round(begin - start, 3), end_s=round(end - start, 3), answered=size,
                                     requests_per_s=round(size / max(end - begin, 1e-9), 3),
                                     mean_ms=round(float(np.mean(latencies)), 3),
                                     p50_ms=round(float(np.median(latencies)), 3)))
            begin = end
        per_arm[arm] = figures
    return per_arm


def _within(values: Sequence[float], tolerance: float) -> bool:
    return min(values) > 0 and max(values) / min(values) <= 1.0 + tolerance


def stability(per_arm: Mapping[str, Sequence[WindowArm]], tolerance: float, *, open_loop: bool) -> bool | None:
    """perf_analyzer's rule, for every arm: its last three windows agree, max / min within 1 + tolerance, in mean
    latency and (closed loop) throughput. In open loop the throughput is the schedule's (Poisson counts vary by
    themselves), so the latency decides: a server falling behind shows there as a growing queue. None: some arm
    has fewer than three windows, too few answers to say."""
    if not per_arm or any(len(arm_windows) < STABLE_WINDOWS for arm_windows in per_arm.values()):
        return None
    for arm_windows in per_arm.values():
        last = list(arm_windows)[-STABLE_WINDOWS:]
        if not _within([window.mean_ms for window in last], tolerance):
            return False
        if not open_loop and not _within([window.requests_per_s for window in last], tolerance):
            return False
    return True


def is_stable(per_arm: Mapping[str, Sequence[WindowArm]], tolerance: float, *, open_loop: bool) -> bool:
    return stability(per_arm, tolerance, open_loop=open_loop) is True


# --- the generator ---------------------------------------------------------------------------------------------------


def late_mark_ms(rate_per_generator: float | None) -> float:
    """How late a request may be sent before it counts as late: LATE_MS, or one mean gap of its generator if longer."""
    if not rate_per_generator:
        return LATE_MS
    return max(LATE_MS, 1000.0 / rate_per_generator)


def cpu_percent(samples: Sequence[tuple[float, Mapping[int, float]]], start: float | None,
                end: float | None) -> tuple[float | None, float | None]:
    """(mean, peak) CPU percent of the busiest process between `start` and `end`, from (wall time, {pid: CPU
    seconds so far}) samples; (None, None) without two samples in the interval."""
    inside = [(when, times) for when, times in samples
              if (start is None or when >= start) and (end is None or when <= end)]
    if len(inside) < 2:
        return None, None
    (first_time, first), (last_time, last) = inside[0], inside[-1]
    wall = last_time - first_time
    if wall <= 0:
        return None, None
    means = [100.0 * (last[pid] - first[pid]) / wall for pid in last if pid in first]
    peaks = []
    for (t0, a), (t1, b) in zip(inside, inside[1:]):
        if t1 > t0:
            peaks += [100.0 * (b[pid] - a[pid]) / (t1 - t0) for pid in b if pid in a]
    return (round(max(means), 1) if means else None), (round(max(peaks), 1) if peaks else None)


def generator_view(records: Sequence[RequestRecord], *, processes: int, rate_per_generator: float | None,
                   cpu: tuple[float | None, float | None]) -> GeneratorView:
    """Lateness of the measured open-loop requests (one record per user request: parallel mode's copies are one)
    and the busiest Locust process's CPU; flags a generator that fell behind or saturated."""
    sent: dict[str, float] = {}
    for record in measured(records):
        if record.scheduled_at is not None:
            key = record.request_id or f"{record.arm}:{record.scheduled_at}"
            sent.setdefault(key, (record.sent_at - record.scheduled_at) * 1000.0)
    mean_cpu, peak_cpu = cpu
    view = GeneratorView(processes=processes, cpu_percent=mean_cpu, cpu_peak_percent=peak_cpu,
                         saturated=mean_cpu is not None and mean_cpu >= SATURATED_CPU_PERCENT)
    if not sent:
        return view
    lateness = np.maximum(np.fromiter(sent.values(), dtype=float), 0.0)
    late = int(np.count_nonzero(lateness > late_mark_ms(rate_per_generator)))
    share = late / lateness.size
    return view.model_copy(update={
        "lateness_p50_ms": round(float(np.percentile(lateness, 50)), 3),
        "lateness_p99_ms": round(float(np.percentile(lateness, 99)), 3),
        "lateness_max_ms": round(float(lateness.max()), 3),
        "late_requests": late, "late_share": round(share, 4), "behind": share > BEHIND_SHARE,
    })
