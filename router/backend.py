"""What answers a question for the router and the app: an `AnswerBackend`, injected so tests can use a fake.

`TritonBackend` answers with a model served by Triton through the client stage (the same tokenisation into
windows and the same best-span post-processing as `abqa evaluate`). `tritonclient` connections belong to the
thread that made them, so each worker thread gets its own connected arm (the router's request threads are a
fixed pool, so there are only ever a few).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence

from abqa.core.config import DEFAULT_MODEL_REPOSITORY
from abqa.triton.endpoint import Endpoint


@dataclass(frozen=True)
class ArmAnswer:
    arm: str
    answer: str                 # a substring of the context ("" when no span is possible)
    score: float | None         # start logit + end logit of the span (None when the backend has none)
    latency_ms: float           # the arm's end to end time: tokenise, every request to Triton, post-process
    windows: int | None = None
    tokens: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class BackendUnavailable(Exception):
    """No server answers (down, not started, wrong URL): the router says 503, the app says so plainly."""


class AnswerFailed(Exception):
    """The server is up but this request failed (bad input for the model, a timeout after retries)."""


class AnswerBackend(Protocol):
    def answer(self, arm: str, question: str, context: str) -> ArmAnswer: ...

    def close(self) -> None: ...


class TritonBackend:
    """Arms served by Triton at `endpoint`, with their tokenizers from `model_repository/<arm>/tokenizer/`."""

    def __init__(self, endpoint: Endpoint, *, model_repository: str | Path = DEFAULT_MODEL_REPOSITORY,
                 timeout_s: float = 30.0):
        self.endpoint = endpoint
        self.model_repository = Path(model_repository)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list = []

    def _arm(self, name: str):
        """This thread's connected arm (connect = server live check, model metadata, tokenizer)."""
        from abqa.client.arms import ServedArm
        from abqa.core.errors import AbqaError
        from abqa.triton.client import RetryPolicy

        arms = getattr(self._local, "arms", None)
        if arms is None:
            arms = self._local.arms = {}
        if name not in arms:
            arm = ServedArm(name, self.model_repository, self.endpoint.url, self.endpoint.protocol, self.timeout_s,
                            RetryPolicy(attempts=2, initial_delay_s=0.1))
            try:
                arm.connect()
            except AbqaError as exc:
                arm.close()
                raise BackendUnavailable(str(exc)) from None
            arms[name] = arm
            with self._lock:
                self._all.append(arm)
        return arms[name]

    def answer(self, arm: str, question: str, context: str) -> ArmAnswer:
        from abqa.triton.client import InferFailed

        served = self._arm(arm)
        try:
            result = served.predict(question, context)
        except InferFailed as exc:
            if exc.transient and not served.client.server_live():
                self._forget(arm)
                raise BackendUnavailable(f"Triton at {served.client.endpoint} stopped answering: {exc}") from None
            raise AnswerFailed(str(exc)) from None
        return ArmAnswer(arm, result.answer.text, _finite_or_none(result.answer.score), result.latency_ms,
                         result.windows, result.tokens)

    def arm_info(self, arm: str) -> dict:
        """The arm's provenance (export metadata, Triton tensors) as the evaluate stage records it."""
        return self._arm(arm).provenance().to_dict()

    def _forget(self, arm: str) -> None:
        # The server went away: reconnect on the next request instead of reusing a dead connection.
        served = self._local.arms.pop(arm, None)
        if served is not None:
            served.close()

    def close(self) -> None:
        with self._lock:
            arms, self._all = self._all, []
        for arm in arms:
            arm.close()


def _finite_or_none(value: float) -> float | None:
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def check_arms(backend: AnswerBackend, arms: Sequence[str]) -> dict[str, dict]:
    """Connect every arm once at start-up, so a wrong URL or arm fails before the first user does."""
    info = {}
    for arm in arms:
        getter = getattr(backend, "arm_info", None)
        info[arm] = getter(arm) if getter else {}
    return info
