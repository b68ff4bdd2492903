"""The router's request log as a run folder that `abqa report` reads: eval.jsonl + meta.json.

Every logged answer (primary and shadow) becomes one eval.jsonl record keyed by the request id, so the arms
that answered the same request (shadow mode) pair up in the report's tests, and each arm's latency is the
arm's own end to end time as the router measured it. A request that carried a SQuAD id is scored with the
official metric against the data set (`--squad`, default as `abqa evaluate`); a request without one (or with
an id the data set does not have) keeps its latency but has no accuracy: status "unscored", em/f1 null.
Failed answers are status "failed" (em/f1 0, no latency), as `abqa evaluate` writes them.
Extra keys beside EvalRecord's (role, assignment, squad_id, score) are ignored by readers that do not know them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

from abqa.core.errors import AbqaError
from abqa.core.io import write_json_atomic, write_text_atomic
from abqa.core.records import EVAL_FILENAME, META_FILENAME, EvalRecord
from abqa.core.scoring import SQUAD_V1, ScoringRule
from abqa.core.squad import SquadQuestion
from abqa.router.requestlog import (STATUS_OK, LogEntry, experiments, latest_session, make_engine, read_entries,
                                    redact_url)

log = logging.getLogger(__name__)

STATUS_UNSCORED = "unscored"


@dataclass(frozen=True)
class ExportResult:
    out: Path
    experiment: str
    records: int
    scored: int
    unscored: int
    failed: int
    unknown_squad_ids: int


def entry_to_record(entry: LogEntry, questions: Mapping[str, SquadQuestion] | None,
                    rule: ScoringRule = SQUAD_V1) -> dict:
    """One eval.jsonl line (a dict: EvalRecord's fields, plus where the answer came from in the router)."""
    started_at = entry.received_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    question = questions.get(entry.squad_id) if (questions is not None and entry.squad_id) else None
    if entry.status != STATUS_OK:
        record = EvalRecord(entry.request_id, entry.arm, None, 0.0, 0.0, None, entry.windows, entry.tokens,
                            started_at, "failed", entry.error)
        data = record.to_dict()
    elif question is not None and (question.has_answer or rule.allows_no_answer):
        score = rule.score(entry.answer or "", question.answer_texts, question.language)
        data = EvalRecord(entry.request_id, entry.arm, entry.answer, score.em, score.f1, entry.latency_ms,
                          entry.windows, entry.tokens, started_at).to_dict()
    else:
        data = EvalRecord(entry.request_id, entry.arm, entry.answer, None, None, entry.latency_ms,  # type: ignore[arg-type]
                          entry.windows, entry.tokens, started_at, STATUS_UNSCORED).to_dict()
    data.update(role=entry.role, assignment=entry.assignment, squad_id=entry.squad_id, score=entry.score)
    return data


def log_to_records(entries: Iterable[LogEntry], questions: Mapping[str, SquadQuestion] | None,
                   rule: ScoringRule = SQUAD_V1) -> list[dict]:
    return [entry_to_record(entry, questions, rule) for entry in entries]


def choose_experiment(available: list[tuple[str, int, datetime, datetime]], wanted: str | None, db: str) -> str:
    """The experiment to export: the one asked for, else the only (or most recently active) one."""
    names = [name for name, *_ in available]
    if not names:
        raise AbqaError(f"--db {db}: the request log is empty (no request has been answered)")
    if wanted is None:
        if len(names) > 1:
            log.warning("--db %s holds %d experiments (%s); exporting the most recent, %s (choose with --experiment)",
                        db, len(names), ", ".join(names), names[-1])
        return names[-1]
    if wanted not in names:
        raise AbqaError(f"--experiment {wanted!r}: not in the request log {db}; it has {', '.join(names)}")
    return wanted


def export_log(db_url: str, out: str | Path, *, experiment: str | None = None, squad: str | None = None) -> ExportResult:
    """Write `out/eval.jsonl` and `out/meta.json` from the router's log (an existing folder's files are replaced)."""
    from abqa.core.machine import package_versions

    db = redact_url(db_url)
    _check_sqlite_exists(db_url)
    engine = make_engine(db_url)
    try:
        try:
            available = experiments(engine)
        except Exception as exc:  # noqa: BLE001 - a database that is not a router log, or unreachable
            raise AbqaError(f"--db {db}: cannot read a router request log ({type(exc).__name__}: {exc})") from None
        name = choose_experiment(available, experiment, db)
        entries = list(read_entries(engine, name))
        session = latest_session(engine, name) or {}
    finally:
        engine.dispose()

    squad_ids = {entry.squad_id for entry in entries if entry.squad_id}
    dataset = None
    questions = None
    if squad_ids:
        from abqa.core.data_sources import resolve

        dataset = resolve(squad)
        questions = {question.id: question for question in dataset.questions}
    records = log_to_records(entries, questions, dataset.rule if dataset is not None else SQUAD_V1)
    unknown = sorted(squad_ids - set(questions or {}))
    if unknown:
        log.warning("%d SQuAD id(s) in the log are not in %s (e.g. %s): those answers are unscored",
                    len(unknown), dataset.path, ", ".join(unknown[:3]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / EVAL_FILENAME, "".join(_json_line(record) for record in records))
    meta = build_meta(name, entries, records, session, db, dataset, package_versions())
    write_json_atomic(out / META_FILENAME, meta)
    counts = meta["router"]["records"]
    return ExportResult(out, name, len(records), counts["scored"], counts["unscored"], counts["failed"], len(unknown))


def build_meta(experiment: str, entries: list[LogEntry], records: list[dict], session: dict, db: str,
               dataset, versions: dict) -> dict:
    """meta.json of an exported log, in the shape `abqa evaluate` writes (what the report reads) plus `router`."""
    policy = session.get("policy") or {}
    arms_seen = list(dict.fromkeys([*(policy.get("arms") or []), *(entry.arm for entry in entries)]))
    provenance = session.get("arms") or {}
    arms = {}
    for arm in arms_seen:
        info = dict(provenance.get(arm) or {})
        info.setdefault("kind", "served")
        info.setdefault("standin", None)
        info["routed"] = True
        arms[arm] = info
    backend = session.get("backend") or {}
    return {
        "name": experiment,
        "kind": "router-log",
        "created_at": min(entry.received_at for entry in entries).isoformat(timespec="milliseconds"),
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "status": "complete",
        "dataset": None if dataset is None else {
            "source": dataset.source, "path": dataset.path, "sha256": dataset.sha256, "version": dataset.version,
            "questions": len(dataset),
            "evaluated_questions": len({e.squad_id for e in entries if e.squad_id} & set(dataset.ids())),
        },
        "order": f"router-{policy.get('mode', 'unknown')}",
        "seed": None,
        "arms": arms,
        "server": {"kind": "triton", "url": backend.get("url"), "protocol": backend.get("protocol"), "pid": None,
                   "peak_rss_mb": None},
        "versions": versions,
        "router": {
            "db": db, "experiment": experiment, "policy": policy or None, "limits": session.get("limits"),
            "entries": len(entries),
            "first": min(e.received_at for e in entries).isoformat(timespec="milliseconds"),
            "last": max(e.received_at for e in entries).isoformat(timespec="milliseconds"),
            "records": {
                "scored": sum(1 for r in records if r["status"] == STATUS_OK),
                "unscored": sum(1 for r in records if r["status"] == STATUS_UNSCORED),
                "failed": sum(1 for r in records if r["status"] == "failed"),
                "shadow": sum(1 for r in records if r["role"] == "shadow"),
            },
        },
        "records": len(records),
    }


def _json_line(record: dict) -> str:
    import json

    return json.dumps(record, ensure_ascii=False) + "\n"


def _check_sqlite_exists(db_url: str) -> None:
    """Reading must not create an empty SQLite file where the user mistyped a path."""
    import sqlalchemy as sa

    url = sa.engine.make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).expanduser().is_file():
            raise AbqaError(f"--db {db_url}: no such SQLite file ({url.database}); the router writes "
                            "sqlite:///runs/router.db by default")
