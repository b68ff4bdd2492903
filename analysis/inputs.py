"""Read a run folder (eval.jsonl, meta.json, load.json: whichever exist) into arrays the statistics can use.

This is the reading edge of the analysis stage; everything after it is pure. Failed and missing answers
count as wrong (EM 0, F1 0) and carry no latency; the counts are kept so the report can say how many.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abqa.core.errors import AbqaError
from abqa.core.io import read_jsonl
from abqa.core.records import EVAL_FILENAME, LOAD_JSON_FILENAME, META_FILENAME, EvalRecord, LoadRow

OK = "ok"


@dataclass
class ArmAnswers:
    """One arm's per-question results, aligned by position with `ids`."""

    arm: str
    ids: list[str]
    em: np.ndarray                   # 0/1 per question; failed/missing answers are 0
    f1: np.ndarray                   # 0..1 per question; failed/missing answers are 0
    latency_ms: np.ndarray           # NaN where there is none (replayed, failed or missing)
    status: list[str]
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

    def count(self, status: str) -> int:
        return sum(1 for s in self.status if s == status)

    @property
    def has_latency(self) -> bool:
        return bool(np.any(np.isfinite(self.latency_ms)))

    def valid_latency(self) -> np.ndarray:
        return self.latency_ms[np.isfinite(self.latency_ms)]


@dataclass
class RunInputs:
    """Everything the report reads from one run folder; any part may be absent."""

    run_dir: Path
    meta: dict[str, Any] | None
    answers: dict[str, ArmAnswers]   # arm -> answers, in the run's arm order
    load: dict[str, Any] | None      # load.json without its rows
    load_rows: list[LoadRow]
    arm_order: list[str]             # every arm any file mentions: meta's order, then eval's, then load's

    @property
    def files(self) -> dict[str, bool]:
        return {
            EVAL_FILENAME: bool(self.answers) or (self.run_dir / EVAL_FILENAME).exists(),
            META_FILENAME: self.meta is not None,
            LOAD_JSON_FILENAME: self.load is not None,
        }


def _read_json_object(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AbqaError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise AbqaError(f"{path}: expected a JSON object at the top level, found {type(data).__name__}")
    return data


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
        ok = np.array([r.status == OK for r in rows], dtype=bool)
        # Only an answer that came back scores; the latency of a failed request is not a latency of the model.
        em = np.where(ok, [float(r.em or 0.0) for r in rows], 0.0)
        f1 = np.where(ok, [float(r.f1 or 0.0) for r in rows], 0.0)
        latency = np.where(ok, [_number_or_nan(r.latency_ms) for r in rows], np.nan)
        errors: dict[str, int] = {}
        for r in rows:
            if r.status != OK and r.error:
                errors[r.error] = errors.get(r.error, 0) + 1
        answers[arm] = ArmAnswers(
            arm=arm, ids=[r.id for r in rows], em=em.astype(float), f1=f1.astype(float),
            latency_ms=latency.astype(float), status=[r.status for r in rows],
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


def _read_eval(path: Path) -> list[EvalRecord]:
    if not path.exists():
        return []
    records = []
    for number, data in enumerate(read_jsonl(path), start=1):
        try:
            record = EvalRecord.from_dict(data)
        except TypeError as exc:
            raise AbqaError(f"{path}: record {number} lacks a required field ({exc})") from exc
        if record.status not in (OK, "failed", "missing"):
            raise AbqaError(f"{path}: record {number} (id {record.id!r}, arm {record.arm!r}) has unknown "
                            f"status {record.status!r}; expected ok, failed or missing")
        if record.status == OK and not (0.0 <= float(record.f1) <= 1.0 and float(record.em) in (0.0, 1.0)):
            raise AbqaError(f"{path}: record {number} (id {record.id!r}, arm {record.arm!r}) has em={record.em!r}, "
                            f"f1={record.f1!r}; expected em 0 or 1 and f1 in 0..1")
        records.append(record)
    return records


def _read_load(path: Path) -> tuple[dict[str, Any] | None, list[LoadRow]]:
    data = _read_json_object(path)
    if data is None:
        return None, []
    rows = []
    for number, row in enumerate(data.get("rows") or [], start=1):
        try:
            rows.append(LoadRow.from_dict(row))
        except TypeError as exc:
            raise AbqaError(f"{path}: rows[{number - 1}] lacks a required field ({exc})") from exc
    return {key: value for key, value in data.items() if key != "rows"}, rows


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))


def read_run(run_dir: str | Path) -> RunInputs:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AbqaError(f"{run_dir}: no such run folder (runs are written by `abqa evaluate` and `abqa loadtest`)")
    meta = _read_json_object(run_dir / META_FILENAME)
    records = _read_eval(run_dir / EVAL_FILENAME)
    load, load_rows = _read_load(run_dir / LOAD_JSON_FILENAME)
    if meta is None and not records and load is None:
        raise AbqaError(
            f"{run_dir}: none of {EVAL_FILENAME}, {META_FILENAME}, {LOAD_JSON_FILENAME} holds anything to report; "
            "run `abqa evaluate` or `abqa loadtest` into this folder first"
        )
    answers = answers_from_records(records)
    meta_arms = list(((meta or {}).get("arms") or {}).keys())
    load_arms = list((load or {}).get("arms") or []) + [row.arm for row in load_rows]
    order = _unique(meta_arms + list(answers) + load_arms)
    answers = {arm: answers[arm] for arm in order if arm in answers}
    return RunInputs(run_dir=run_dir, meta=meta, answers=answers, load=load, load_rows=load_rows, arm_order=order)
