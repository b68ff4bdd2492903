"""Routing policy as pure functions: which arm answers a request, and which arms only shadow it.

- split:  a weighted random draw per request (`arm_for_draw(weights, u)` with u uniform in [0, 1)).
- sticky: the same draw, but u comes from sha256(experiment, user_id), so a user always lands on the same arm
          (for as long as the experiment name and weights stay the same) and users split by the weights.
          Python's hash() is salted per process, so it would reassign users at every restart.
- shadow: the primary arm answers; every other arm answers the same request off the response path, logged only.

A request may pin an arm (`arm` in the body, for the app and for debugging): it bypasses the policy and is
logged as `pinned`, so that the split statistics can leave it out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from abqa.core.config import validate_arm_name
from abqa.core.errors import AbqaError
from abqa.core.weights import check_weights

MODES = ("split", "sticky", "shadow")
ROLE_PRIMARY, ROLE_SHADOW = "primary", "shadow"
# How the answering arm was chosen (logged with every request).
ASSIGN_RANDOM, ASSIGN_STICKY, ASSIGN_PRIMARY, ASSIGN_PINNED = "random", "sticky", "primary", "pinned"


@dataclass(frozen=True)
class RoutingPolicy:
    experiment: str
    mode: str
    arms: tuple[str, ...]
    weights: tuple[float, ...]      # normalised to sum to 1, one per arm
    primary: str | None = None      # shadow mode only

    @classmethod
    def build(cls, experiment: str, mode: str, arms: Sequence[str], weights: Sequence[float] | None = None,
              primary: str | None = None) -> "RoutingPolicy":
        """Validate the CLI's choices; every error names the flag to fix."""
        if mode not in MODES:
            raise AbqaError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
        if not experiment or not experiment.strip():
            raise AbqaError("--experiment: the experiment needs a name")
        arms = tuple(validate_arm_name(arm) for arm in arms)
        if not arms:
            raise AbqaError("--arms: give at least one arm (a Triton model name)")
        duplicates = sorted({arm for arm in arms if arms.count(arm) > 1})
        if duplicates:
            raise AbqaError(f"--arms: {', '.join(duplicates)} given twice")
        weights = check_weights(weights or tuple(1.0 for _ in arms), arms)
        if mode == "shadow":
            if len(arms) < 2:
                raise AbqaError("--mode shadow needs at least two arms: a primary and one to shadow it")
            primary = primary or arms[0]
            if primary not in arms:
                raise AbqaError(f"--primary {primary!r}: not one of --arms {','.join(arms)}")
        elif primary is not None and primary not in arms:
            raise AbqaError(f"--primary {primary!r}: not one of --arms {','.join(arms)}")
        total = sum(weights)
        return cls(experiment.strip(), mode, arms, tuple(w / total for w in weights), primary)

    def to_dict(self) -> dict:
        return {"experiment": self.experiment, "mode": self.mode, "arms": list(self.arms),
                "weights": dict(zip(self.arms, self.weights)), "primary": self.primary}


@dataclass(frozen=True)
class RouteDecision:
    arm: str                        # answers the request
    shadows: tuple[str, ...]        # answer too, off the response path, logged only
    assignment: str                 # random | sticky | primary | pinned


def arm_for_draw(arms: Sequence[str], weights: Sequence[float], u: float) -> str:
    """The arm whose interval [w_0 + .. + w_(i-1), w_0 + .. + w_i) holds u (weights summing to 1, u in [0, 1)).

    A zero weight is an empty interval, so that arm is never drawn; rounding at the top end falls to the
    last arm with a positive weight.
    """
    if not 0.0 <= u < 1.0:
        raise ValueError(f"draw {u} is not in [0, 1)")
    upper = 0.0
    for arm, weight in zip(arms, weights):
        upper += weight
        if weight > 0 and u < upper:
            return arm
    return next(arm for arm, weight in zip(reversed(arms), reversed(weights)) if weight > 0)


def stable_draw(key: str) -> float:
    """A uniform number in [0, 1) from sha256(key): the same on every machine and every run."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def sticky_key(experiment: str, user_id: str) -> str:
    # The experiment is part of the key so that a new experiment reshuffles users instead of putting the
    # same people in the treatment group every time.
    return f"{experiment}\x00{user_id}"


def route(policy: RoutingPolicy, *, draw: float, user_id: str | None = None, pinned: str | None = None) -> RouteDecision:
    """Where one request goes; `draw` is a fresh uniform [0, 1) number (used by split, and by sticky without user)."""
    if pinned is not None:
        if pinned not in policy.arms:
            raise AbqaError(f"arm {pinned!r} is not in experiment {policy.experiment} (arms: {', '.join(policy.arms)})")
        return RouteDecision(pinned, (), ASSIGN_PINNED)
    if policy.mode == "shadow":
        return RouteDecision(policy.primary, tuple(a for a in policy.arms if a != policy.primary), ASSIGN_PRIMARY)
    if policy.mode == "sticky" and user_id:
        u = stable_draw(sticky_key(policy.experiment, user_id))
        return RouteDecision(arm_for_draw(policy.arms, policy.weights, u), (), ASSIGN_STICKY)
    # split, or sticky for an anonymous request: nothing to stick to, so a random draw (logged as such).
    return RouteDecision(arm_for_draw(policy.arms, policy.weights, draw), (), ASSIGN_RANDOM)
