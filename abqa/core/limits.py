"""Bounds on what abqa reads, so that a huge or malformed input is refused by name, at once, instead of costing hours,
gigabytes or a traceback. Each bound has an environment variable that raises it for a file that is meant to be big.

| bound | default | raise it with |
| --- | --- | --- |
| an input file (SQuAD, predictions, na_prob, a run folder's JSON) | 512 MB | ABQA_MAX_INPUT_MB |
| JSON nesting | 1,000 levels (a SQuAD file has 9) | ABQA_MAX_JSON_DEPTH |
| a context | 100,000 characters (about 100 windows of 384 tokens; the SQuAD dev sets' longest is 4,063) | ABQA_MAX_CONTEXT_CHARS |
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Iterator, Mapping

from abqa.core.errors import AbqaError

MAX_INPUT_MB_ENV, MAX_JSON_DEPTH_ENV, MAX_CONTEXT_CHARS_ENV = (
    "ABQA_MAX_INPUT_MB", "ABQA_MAX_JSON_DEPTH", "ABQA_MAX_CONTEXT_CHARS")
# Below this, the parser itself would not have room to run.
_MIN_JSON_DEPTH = 32


@dataclass(frozen=True)
class InputLimits:
    max_input_mb: float = 512.0
    max_json_depth: int = 1_000
    max_context_chars: int = 100_000

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "InputLimits":
        defaults = cls()
        return cls(
            max_input_mb=_number(environ, MAX_INPUT_MB_ENV, defaults.max_input_mb, float, 0.001),
            max_json_depth=_number(environ, MAX_JSON_DEPTH_ENV, defaults.max_json_depth, int, _MIN_JSON_DEPTH),
            max_context_chars=_number(environ, MAX_CONTEXT_CHARS_ENV, defaults.max_context_chars, int, 1),
        )

    @property
    def max_input_bytes(self) -> int:
        return int(self.max_input_mb * 1024 * 1024)


def _number(environ: Mapping[str, str], name: str, default, kind, minimum):
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise AbqaError(f"${name}={text!r}: not a number") from None
    if value < minimum:
        raise AbqaError(f"${name}={text!r}: must be at least {minimum}")
    return value


def limits() -> InputLimits:
    """The bounds in force (read from the environment each time: tests and callers may change it)."""
    return InputLimits.from_environ()


def check_file_size(size: int, where: str) -> None:
    bound = limits()
    if size > bound.max_input_bytes:
        raise AbqaError(f"{where}: {size / 1024 / 1024:,.1f} MB, over the {bound.max_input_mb:g} MB abqa reads; if the "
                        f"file is meant to be this big, raise the bound with {MAX_INPUT_MB_ENV}")


@contextlib.contextmanager
def json_depth_bound() -> Iterator[int]:
    """Python's JSON parser recurses once per nesting level, bounded by the recursion limit: for the block, that
    limit allows `max_json_depth` levels beyond the caller's own frames (a RecursionError means too deep)."""
    depth = limits().max_json_depth
    frames, frame = 0, sys._getframe()
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(frames + depth)
    try:
        yield depth
    finally:
        sys.setrecursionlimit(previous)


def context_too_long(context: str) -> str | None:
    """Why a context is refused (over max_context_chars), or None. Tokenising a context costs memory in proportion
    to it, and every window is a request: a 50 MB context would take gigabytes and hours."""
    bound = limits().max_context_chars
    if len(context) <= bound:
        return None
    return (f"context of {len(context):,} characters, over the {bound:,} abqa answers from (about "
            f"{max(1, bound // 1000):,} windows of 384 tokens); raise the bound with {MAX_CONTEXT_CHARS_ENV} if it is "
            "meant to be this long")


def too_deep(where: str, depth: int) -> AbqaError:
    return AbqaError(f"{where}: JSON nested deeper than {depth} levels (SQuAD and prediction files need fewer than 10); "
                     f"if the file is right, raise the bound with {MAX_JSON_DEPTH_ENV}")
