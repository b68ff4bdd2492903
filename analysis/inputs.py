"""Read a run folder (eval.jsonl, meta.json, load.json: whichever exist) into arrays the statistics can use.

This is the reading edge of the analysis stage; everything after it is pure. The files are read through their
typed models (`abqa.core.run`). Failed and missing answers are no answers: they stay out of accuracy (which is
measured on the answers given, `answered_ok`) and of latency, and the report compares how often each arm fails on
its own; unscored answers (routed requests with nothing to score against) carry latency and no accuracy; the counts
are kept so the report can say how many.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from abqa.core.errors import AbqaError
from abqa.core.run import (EVAL_FILENAME, LOAD_JSON_FILENAME, META_FILENAME, RUN_FILES, EvalRecord, EvalStatus,
                           LoadDocument, LoadRow, RequestRecord, RunFolder, RunMeta)

OK = EvalStatus.OK


@dataclass
class ArmAnswers:
    """One arm's per-question results, aligned by position with `ids`."""

    arm: str
    ids: list[str]
    em: np.ndarray                   # 0/1 per question; failed/missing answers are 0; NaN where unscored
    f1: np.ndarray                   # 0..1 per question; failed/missing answers are 0; NaN where unscored
    latency_ms: np.ndarray           # NaN where there is none (replayed, failed or missing)
    status: list[EvalStatus]
    predictions: list[str | None] = field(default_factory=list)  # the answer texts (agreement between arms)
    started_at: list[str] = field(default_factory=list)         # when the arm started each question (time order)
    tokens: np.ndarray | None = None                             # tokens over the windows; NaN where unknown
    windows: np.ndarray | None = None                            # context windows sent; NaN where unknown
    duplicates: int = 0              # extra records for an id already seen (the last one is used)
    errors: dict[str, int] = field(default_factory=dict)  # error message -> count, for failed answers
    languages: list[str | None] = field(default_factory=list)  # per question (multilingual runs); else empty
    # SQuAD v2.0 runs only (None otherwise), aligned with `ids`: the question has an answer; the prediction is
    # not "" (a "no answer"); the no-answer score difference (NaN where the arm gave none).
    has_answer: np.ndarray | None = None
    answered: np.ndarray | None = None
    null_score_diff: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def scored_mask(self) -> np.ndarray:
        return np.array([status is not EvalStatus.UNSCORED for status in self.status], dtype=bool)

    def scored(self) -> "ArmAnswers":
        """The questions the arm was asked to answer and be scored on (every one but the unscored), answered or not:
        the base of the failure rate."""
        return self.subset(self.scored_mask)

    def answered_ok(self) -> "ArmAnswers":
        """The answers that count toward accuracy: those given (status ok); failed and missing ones are compared
        apart, as a failure rate."""
        return self.subset(np.array([status is EvalStatus.OK for status in self.status], dtype=bool))

    def subset(self, mask: np.ndarray) -> "ArmAnswers":
        """The answers where `mask` is true, every column kept aligned (self when it keeps everything)."""
        if mask.all():
            return self
        keep = np.flatnonzero(mask)

        def pick(values):
            return None if values is None else values[keep]

        def pick_list(values: list) -> list:
            return [values[i] for i in keep] if values else []

        return replace(self, ids=[self.ids[i] for i in keep], em=self.em[keep], f1=self.f1[keep],
                       latency_ms=self.latency_ms[keep], status=[self.status[i] for i in keep],
                       predictions=pick_list(self.predictions), started_at=pick_list(self.started_at),
                       tokens=pick(self.tokens), windows=pick(self.windows),
                       languages=pick_list(self.languages),
                       has_answer=pick(self.has_answer), answered=pick(self.answered),
                       null_score_diff=pick(self.null_score_diff))

    def count(self, status: str) -> int:
        return sum(1 for s in self.status if s == status)

    @property
    def has_latency(self) -> bool:
        return bool(np.any(np.isfinite(self.latency_ms)))

    def valid_latency(self) -> np.ndarray:
        return self.latency_ms[np.isfinite(self.latency_ms)]

    def time_order(self) -> np.ndarray:
        """Positions in the order the arm started the questions (`started_at`); file order where it cannot tell."""
        return time_order(self.started_at) if len(self.started_at) == self.n else np.arange(self.n)


def time_order(started_at: list[str]) -> np.ndarray:
    """A stable argsort of ISO 8601 times; file order when any of them does not parse."""
    from datetime import datetime

    try:
        stamps = [datetime.fromisoformat(text).timestamp() for text in started_at]
    except (TypeError, ValueError):
        return np.arange(len(started_at))
    return np.argsort(np.array(stamps, dtype=float), kind="stable")


def pair_positions(a: ArmAnswers, b: ArmAnswers) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Positions of the ids both arms have (in a's order), and how many ids only one of them has."""
    position_b = {question: i for i, question in enumerate(b.ids)}
    index_a, index_b = [], []
    for i, question in enumerate(a.ids):
        j = position_b.get(question)
        if j is not None:
            index_a.append(i)
            index_b.append(j)
    paired = len(index_a)
    return np.array(index_a, dtype=int), np.array(index_b, dtype=int), a.n - paired, b.n - paired


@dataclass
class RunInputs:
    """Everything the report reads from one run folder; any part may be absent."""

    run_dir: Path
    meta: RunMeta | None
    answers: dict[str, ArmAnswers]   # arm -> answers, in the run's arm order
    load: LoadDocument | None
    arm_order: list[str]             # every arm any file mentions: meta's order, then eval's, then load's
    requests: list[RequestRecord] = field(default_factory=list)  # requests.jsonl (with load.json)

    @property
    def load_rows(self) -> list[LoadRow]:
        return self.load.rows if self.load is not None else []

    @property
    def files(self) -> dict[str, bool]:
        return {
            EVAL_FILENAME: bool(self.answers) or (self.run_dir / EVAL_FILENAME).exists(),
            META_FILENAME: self.meta is not None,
            LOAD_JSON_FILENAME: self.load is not None,
        }


def _number_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def answers_from_records(records: list[EvalRecord]) -> dict[str, ArmAnswers]:
    """Group records by arm (first-appearance order); a repeated (id, arm) keeps its last record."""
    by_arm: dict[str, dict[str, EvalRecord]] = {}
    duplicates: dict[str, int] = {}
    for record in records:
        seen = by_arm.setdefault(record.arm, {})
        if record.id in seen:
            duplicates[record.arm] = duplicates.get(record.arm, 0) + 1
            del seen[record.id]  # re-insert so a retried answer keeps its new position
        seen[record.id] = record

    answers: dict[str, ArmAnswers] = {}
    for arm, by_id in by_arm.items():
        rows = list(by_id.values())
        answered = np.array([r.answered for r in rows], dtype=bool)
        # Failed and missing answers score 0 (the records say so); the latency of a failed request is not a latency
        # of the model.
        em = np.array([_number_or_nan(r.em) if r.scored else np.nan for r in rows], dtype=float)
        f1 = np.array([_number_or_nan(r.f1) if r.scored else np.nan for r in rows], dtype=float)
        latency = np.where(answered, [_number_or_nan(r.latency_ms) for r in rows], np.nan)
        errors: dict[str, int] = {}
        for r in rows:
            if not r.answered and r.error:
                errors[r.error] = errors.get(r.error, 0) + 1
        answers[arm] = ArmAnswers(
            arm=arm, ids=[r.id for r in rows], em=em.astype(float), f1=f1.astype(float),
            latency_ms=latency.astype(float), status=[r.status for r in rows],
            predictions=[r.prediction for r in rows], started_at=[r.started_at for r in rows],
            tokens=np.array([_number_or_nan(r.tokens) for r in rows], dtype=float),
            windows=np.array([_number_or_nan(r.windows) for r in rows], dtype=float),
            duplicates=duplicates.get(arm, 0), errors=errors,
            languages=[r.language for r in rows] if any(r.language for r in rows) else [],
            **squad_v2_columns(rows),
        )
    return answers


def squad_v2_columns(rows: list[EvalRecord]) -> dict[str, np.ndarray]:
    """The SQuAD v2.0 columns of one arm's records (none when no record says whether its question has an answer)."""
    if not any(r.has_answer is not None for r in rows):
        return {}
    ok = [r.status == OK for r in rows]
    return {
        "has_answer": np.array([bool(r.has_answer) for r in rows], dtype=bool),
        "answered": np.array([bool(r.prediction) for r in rows], dtype=bool),
        "null_score_diff": np.array([_number_or_nan(r.null_score_diff) if good else np.nan
                                     for r, good in zip(rows, ok)], dtype=float),
    }


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))


def read_run(run_dir: str | Path) -> RunInputs:
    folder = RunFolder(Path(run_dir))
    if not folder.path.is_dir():
        raise AbqaError(f"{folder.path}: no such run folder (runs are written by `abqa evaluate` and `abqa loadtest`)")
    meta = folder.read_meta()
    records = folder.read_eval()
    load = folder.read_load()
    if meta is None and not records and load is None:
        raise AbqaError(
            f"{folder.path}: none of {', '.join(RUN_FILES)} holds anything to report; "
            "run `abqa evaluate` or `abqa loadtest` into this folder first"
        )
    answers = answers_from_records(records)
    meta_arms = list(meta.arms) if meta is not None else []
    load_arms = (list(load.arms) + [row.arm for row in load.rows]) if load is not None else []
    order = _unique(meta_arms + list(answers) + load_arms)
    answers = {arm: answers[arm] for arm in order if arm in answers}
    requests = folder.read_requests() if load is not None else []
    return RunInputs(run_dir=folder.path, meta=meta, answers=answers, load=load, arm_order=order, requests=requests)
