"""eval.jsonl: one `EvalRecord` per (question, arm), appended as each answer completes.

Written by `abqa evaluate` (client/runner.py, appending) and by the router's export (router/export.py, whole file);
read by the report, the app and resume. Versioned by the folder's meta.json (`schema_version`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import model_validator

from abqa.core.run.document import Record, read_record_lines, write_record_lines


class EvalStatus(str, Enum):
    """How a (question, arm) pair ended."""

    OK = "ok"               # answered and scored
    FAILED = "failed"       # the request failed for good: no answer, scores 0, no latency
    MISSING = "missing"     # a replayed prediction file had no answer for the id: scores 0
    UNSCORED = "unscored"   # answered, with nothing to score it against (a routed request without a SQuAD id):
                            # its latency counts, it has no accuracy


class RoutedInfo(Record):
    """Where a routed answer came from (router export only)."""

    role: str                       # "primary" (the answer returned) or "shadow" (asked too, not returned)
    assignment: str | None = None   # how the router chose the arm (split, sticky, shadow)
    squad_id: str | None = None     # the SQuAD id the request carried, if any
    span_score: float | None = None # start + end logit of the answer's span


class EvalRecord(Record):
    """One question answered by one arm."""

    id: str
    arm: str
    prediction: str | None
    em: float | None                # 0 or 1; None only when unscored
    f1: float | None                # 0..1; None only when unscored
    latency_ms: float | None        # client end to end for the question; None for replayed or failed answers
    # Served answers: requests of the run in flight on the server while this one was measured, itself included
    # (1 = in isolation; the arms of --order parallel run at once). None for replayed answers and older runs.
    concurrency: int | None = None
    windows: int | None = None
    tokens: int | None = None
    started_at: str                 # ISO 8601, UTC
    status: EvalStatus = EvalStatus.OK
    error: str | None = None
    # SQuAD v2.0 only: whether the question has an answer (HasAns/NoAns), and the no-answer score minus the best
    # span score (served arms; replayed arms from their na_prob file), for the best-threshold search.
    has_answer: bool | None = None
    null_score_diff: float | None = None
    # Multilingual runs only: the question's language, e.g. "de" for xquad.de (its scoring rule and table).
    language: str | None = None
    routed: RoutedInfo | None = None

    @model_validator(mode="after")
    def _scores_fit_status(self) -> "EvalRecord":
        if self.status is EvalStatus.UNSCORED:
            if self.em is not None or self.f1 is not None:
                raise ValueError("an unscored record has em and f1 null")
            return self
        if self.em is None or self.f1 is None:
            raise ValueError(f"a {self.status.value} record needs em and f1")
        if self.em not in (0.0, 1.0) or not 0.0 <= self.f1 <= 1.0:
            raise ValueError(f"em must be 0 or 1 and f1 within 0..1 (em={self.em}, f1={self.f1})")
        if self.status is not EvalStatus.OK and (self.em or self.f1):
            raise ValueError(f"a {self.status.value} record scores 0 (em={self.em}, f1={self.f1})")
        return self

    @property
    def scored(self) -> bool:
        """Counts toward accuracy: answered (ok) or not answered at all (failed, missing: they score 0)."""
        return self.status is not EvalStatus.UNSCORED

    @property
    def answered(self) -> bool:
        """An answer came back (its latency is a latency of the model)."""
        return self.status in (EvalStatus.OK, EvalStatus.UNSCORED)


def read_eval_records(path: str | Path) -> list[EvalRecord]:
    """eval.jsonl's records in file order ([] when there is no file)."""
    path = Path(path)
    return list(read_record_lines(EvalRecord, path)) if path.is_file() else []


def write_eval_records(path: str | Path, records: list[EvalRecord]) -> Path:
    """Replace eval.jsonl as a whole (the router's export, and --retry-failed dropping failed records)."""
    return write_record_lines(path, records)
