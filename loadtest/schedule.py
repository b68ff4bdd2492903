"""Open-loop arrivals: when each request is sent, fixed before the step starts and never waiting for an answer.

A closed-loop user sends its next request when the previous answer comes back, so a slow server slows the
offered load down with it and hides its own tail (coordinated omission). Here the arrival times are drawn
first, from a seeded generator that knows nothing of the responses (Poisson: independent exponential gaps of mean
1/rate; constant: exactly 1/rate apart), together with which pool window each arrival sends and to which arm(s).
`run_schedule` sleeps until each arrival and spawns its request, so a request late to come back never delays
the next one; the latency of a request counts from its scheduled time (MLPerf LoadGen's Server scenario,
perf_analyzer's --request-rate-range), so time the generator itself lost counts too, and is reported apart as
lateness (sent_at - scheduled_at).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from abqa.core.config import split_csv
from abqa.core.errors import AbqaError
from abqa.loadtest.traffic import TrafficPlan

ARRIVALS = ("poisson", "constant")


@dataclass(frozen=True)
class Arrival:
    """One user request of the schedule: when (seconds after the schedule's start), which pool item, which arms."""

    offset_s: float
    item: int
    arms: tuple[str, ...]


def parse_rates(text: str) -> tuple[float, ...]:
    """`2,4,8` -> (2.0, 4.0, 8.0): the open-loop steps, each a request rate above 0 (requests per second)."""
    if not text or not text.strip():
        return ()
    try:
        rates = tuple(float(part) for part in split_csv(text))
    except ValueError as exc:
        raise AbqaError(f"--rate {text!r}: use request rates separated by commas, e.g. 2,4,8 (per second)") from exc
    if not rates or any(not rate > 0 for rate in rates):
        raise AbqaError(f"--rate {text!r}: every rate must be above 0 requests per second")
    return tuple(dict.fromkeys(rates))


def check_arrivals(name: str) -> str:
    if name not in ARRIVALS:
        raise AbqaError(f"--arrivals {name!r}: use one of {', '.join(ARRIVALS)}")
    return name


def arrival_offsets(rate: float, arrivals: str, rng: random.Random) -> Iterator[float]:
    """Seconds after the start of each arrival, without end: Poisson (exponential gaps) or constant gaps."""
    check_arrivals(arrivals)
    if not rate > 0:
        raise AbqaError(f"rate {rate!r}: must be above 0 requests per second")
    offset = 0.0
    index = 0
    while True:
        if arrivals == "poisson":
            offset += rng.expovariate(rate)
        else:
            offset = index / rate
            index += 1
        yield offset


def schedule(rate: float, arrivals: str, plan: TrafficPlan, pool_size: int, seed: int | str) -> Iterator[Arrival]:
    """The arrivals of one generator: times from one seeded stream, requests (pool item, arms by weight) from
    another, so the times do not depend on what is asked and nothing depends on the answers."""
    if pool_size < 1:
        raise AbqaError("the request pool is empty")
    times = random.Random(f"{seed}:times")
    choices = random.Random(f"{seed}:requests")
    for offset in arrival_offsets(rate, arrivals, times):
        yield Arrival(offset, choices.randrange(pool_size), tuple(plan.arms_for_request(choices)))


def run_schedule(arrivals: Iterable[Arrival], send: Callable[[Arrival, float], object], *,
                 clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], object] | None = None,
                 spawn: Callable[..., object] | None = None, start: float | None = None) -> None:
    """Send each arrival at `start + offset_s` (on `clock`): sleep until it is due, then `spawn(send, arrival,
    scheduled)` and go on at once. Runs until the arrivals end or the calling greenlet is killed."""
    import gevent

    sleep = sleep or gevent.sleep
    spawn = spawn or gevent.spawn
    start = clock() if start is None else start
    for arrival in arrivals:
        scheduled = start + arrival.offset_s
        # gevent's timers may wake a fraction of a millisecond early: sleep again rather than send early.
        while (wait := scheduled - clock()) > 0:
            sleep(wait)
        spawn(send, arrival, scheduled)
