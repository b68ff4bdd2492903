"""What traffic a load test sends: arms, their weights, the mode, the concurrency steps (pure, no I/O).

Parsed the same way by `abqa loadtest` and by the locustfile's custom arguments, so a plain
`locust -f loadtest/locustfile.py --arms bert,distilbert --weights 3:1` means what `abqa loadtest` means.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

from abqa.core.config import split_csv, validate_arm_name
from abqa.core.errors import AbqaError
# parse_weights: the one --weights grammar (abqa router's too), as the cli and the locustfile call it.
from abqa.core.weights import check_weights, parse_weights  # noqa: F401

MODES = ("split", "parallel")
PROTOCOLS = ("http", "grpc")

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?!s))?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


@dataclass(frozen=True)
class TrafficPlan:
    """Split mode: each request goes to one arm drawn by weight. Parallel mode: each request goes to every arm."""

    arms: tuple[str, ...]
    weights: tuple[float, ...]
    mode: str = "split"

    def __post_init__(self) -> None:
        if not self.arms:
            raise AbqaError("--arms: no arm given")
        if self.mode not in MODES:
            raise AbqaError(f"--mode {self.mode!r}: use one of {', '.join(MODES)}")
        check_weights(self.weights, self.arms)

    @property
    def weight_map(self) -> dict[str, float]:
        return dict(zip(self.arms, self.weights))

    def arms_for_request(self, rng: random.Random) -> list[str]:
        """The arms one user request goes to."""
        if self.mode == "parallel":
            return list(self.arms)
        return rng.choices(self.arms, weights=self.weights, k=1)


def parse_arms(text: str | Sequence[str]) -> tuple[str, ...]:
    names = split_csv(text) if isinstance(text, str) else [name.strip() for name in text if name.strip()]
    if not names:
        raise AbqaError("--arms: no arm given (e.g. --arms distilbert,bert)")
    return tuple(dict.fromkeys(validate_arm_name(name) for name in names))


def parse_users(text: str) -> tuple[int, ...]:
    """`1,2,4,8` -> (1, 2, 4, 8): the closed-loop steps, each a whole positive number of users; `none` (or "") for
    none."""
    if not text or text.strip().lower() == "none":
        return ()
    try:
        steps = tuple(int(part) for part in split_csv(text))
    except ValueError as exc:
        raise AbqaError(f"--users {text!r}: use whole numbers separated by commas, e.g. 1,2,4,8 (or none)") from exc
    if not steps or any(step < 1 for step in steps):
        raise AbqaError(f"--users {text!r}: give at least one step, each >= 1 (or none)")
    return tuple(dict.fromkeys(steps))  # a repeated step would overwrite its own folder


def parse_duration(text: str | float | int, *, flag: str = "--duration", allow_zero: bool = False) -> float:
    """`30s`, `30`, `1m30s`, `2m`, `1h` -> seconds (Locust's --run-time forms, plus bare seconds)."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(text or "")
        if not match or not any(match.groups()):
            raise AbqaError(f"{flag} {text!r}: use seconds or Locust's forms, e.g. 30s, 1m30s, 2m")
        hours, minutes, secs = (float(group or 0) for group in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise AbqaError(f"{flag} {text!r}: must be more than 0 seconds")
    return seconds


def locust_run_time(seconds: float) -> str:
    """Locust's -t takes whole seconds (`30s`); round up so a step never runs shorter than asked."""
    whole = int(seconds) if float(seconds).is_integer() else int(seconds) + 1
    return f"{max(whole, 1)}s"
