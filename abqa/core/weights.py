"""How traffic splits between arms: the one `--weights` grammar of `abqa loadtest` and `abqa router` (pure).

    50:50  3,1  9/1          one weight per arm, in the order of --arms
    bert=3,distilbert=1      by name; an arm left out gets 0 (no traffic)
    (empty)                  equal weights
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from abqa.core.config import split_csv
from abqa.core.errors import AbqaError

_POSITIONAL_SEPARATORS = re.compile(r"[:,/]")


def parse_weights(text: str | None, arms: Sequence[str], *, flag: str = "--weights") -> tuple[float, ...]:
    """One weight per arm, in the order of `arms`, checked (see `check_weights`); every error names `flag`."""
    if not text or not text.strip():
        return check_weights(tuple(1.0 for _ in arms), arms, flag=flag)
    text = text.strip()
    where = f"{flag} {text!r}"
    try:
        weights = _by_name(text, arms, where) if "=" in text else _in_order(text)
    except ValueError as exc:
        raise AbqaError(f"{where}: not numbers ({exc}); use e.g. 50:50, 3,1 or bert=1,distilbert=1") from None
    return check_weights(weights, arms, flag=where)


def check_weights(weights: Sequence[float], arms: Sequence[str], *, flag: str = "--weights") -> tuple[float, ...]:
    """One finite weight >= 0 per arm, not all 0 (a positive sum); `flag` starts every error."""
    weights = tuple(float(weight) for weight in weights)
    if len(weights) != len(arms):
        raise AbqaError(f"{flag}: {len(weights)} weights for {len(arms)} arms ({', '.join(arms)})")
    if not all(math.isfinite(weight) and weight >= 0 for weight in weights) or sum(weights) <= 0:
        shown = ",".join(f"{weight:g}" for weight in weights)
        raise AbqaError(f"{flag}: weights ({shown}) must be >= 0 and not all 0 (a positive sum)")
    return weights


def _in_order(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in _POSITIONAL_SEPARATORS.split(text) if part.strip())


def _by_name(text: str, arms: Sequence[str], where: str) -> tuple[float, ...]:
    named: dict[str, float] = {}
    for part in split_csv(text):
        name, _, value = (piece.strip() for piece in part.partition("="))
        if name not in arms:
            raise AbqaError(f"{where}: {name!r} is not one of the arms ({', '.join(arms)})")
        named[name] = float(value)
    return tuple(named.get(arm, 0.0) for arm in arms)
