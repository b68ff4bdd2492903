"""The router's request log as a run folder that `abqa report` reads: eval.jsonl + meta.json.

Every logged answer (primary and shadow) becomes one eval.jsonl record keyed by the request id, so the arms
that answered the same request (shadow mode) pair up in the report's tests, and each arm's latency is the
arm's own end to end time as the router measured it. A request that carried a SQuAD id is scored with the
official metric against the data set (`--squad`, default as `abqa evaluate`); a request without one (or with
an id the data set does not have) keeps its latency but has no accuracy: status "unscored", em/f1 null, which the
report counts apart (latency yes, accuracy no).
Failed answers are status "failed" (em/f1 0, no latency), as `abqa evaluate` writes them.
Each record's `routed` says where the answer came from (role, assignment, the SQuAD id it carried, its span score).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

from abqa.core.errors import AbqaError
from abqa.core.run import (ArmInfo, ArmKind, DatasetInfo, EvalRecord, EvalStatus, RoutedInfo, RouterInfo,
                           RouterRecordCounts, RunFolder, RunKind, RunMeta, RunStatus, ServerInfo, write_eval_records)
from abqa.core.scoring import SQUAD_V1, ScoringRule
from abqa.core.squad import SquadQuestion
from abqa.router.requestlog import (STATUS_OK, LogEntry, experiments, latest_session, make_engine, read_entries,
                                    redact_url)

log = logging.getLogger(__name__)

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
                    rule: ScoringRule = SQUAD_V1) -> EvalRecord:
    """One eval.jsonl record, with where the answer came from in the router (`routed`)."""
    started_at = entry.received_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    question = questions.get(entry.squad_id) if (questions is not None and entry.squad_id) else None
    common = dict(id=entry.request_id, arm=entry.arm, windows=entry.windows, tokens=entry.tokens,
                  started_at=started_at, routed=RoutedInfo(role=entry.role, assignment=entry.assignment,
                                                           squad_id=entry.squad_id, span_score=entry.score))
    if entry.status != STATUS_OK:
        return EvalRecord(**common, prediction=None, em=0.0, f1=0.0, latency_ms=None, status=EvalStatus.FAILED,
                          error=entry.error)
    if question is not None and (question.has_answer or rule.allows_no_answer):
        score = rule.score(entry.answer or "", question.answer_texts, question.language)
        return EvalRecord(**common, prediction=entry.answer, em=score.em, f1=score.f1, latency_ms=entry.latency_ms)
    return EvalRecord(**common, prediction=entry.answer, em=None, f1=None, latency_ms=entry.latency_ms,
                      status=EvalStatus.UNSCORED)


def log_to_records(entries: Iterable[LogEntry], questions: Mapping[str, SquadQuestion] | None,
                   rule: ScoringRule = SQUAD_V1) -> list[EvalRecord]:
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
    folder = RunFolder(Path(out))
    folder.path.mkdir(parents=True, exist_ok=True)
    write_eval_records(folder.eval, records)
    meta = build_meta(name, entries, records, session, db, dataset, package_versions())
    meta.write(folder.meta)
    counts = meta.router.records
    return ExportResult(folder.path, name, len(records), counts.scored, counts.unscored, counts.failed, len(unknown))


def build_meta(experiment: str, entries: list[LogEntry], records: list[EvalRecord], session: dict, db: str,
               dataset, versions: dict) -> RunMeta:
    """meta.json of an exported log: a run of kind router-log, answers paired by request id."""
    policy = session.get("policy") or {}
    arms_seen = list(dict.fromkeys([*(policy.get("arms") or []), *(entry.arm for entry in entries)]))
    provenance = session.get("arms") or {}
    arms = {arm: ArmInfo.model_validate({"kind": ArmKind.SERVED, **(provenance.get(arm) or {}), "routed": True})
            for arm in arms_seen}
    backend = session.get("backend") or {}
    first = min(entry.received_at for entry in entries).isoformat(timespec="milliseconds")
    return RunMeta(
        name=experiment,
        kind=RunKind.ROUTER_LOG,
        created_at=first,
        updated_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        status=RunStatus.COMPLETE,
        dataset=None if dataset is None else DatasetInfo(
            source=dataset.source, path=dataset.path, sha256=dataset.sha256, version=dataset.version,
            questions=len(dataset),
            evaluated_questions=len({e.squad_id for e in entries if e.squad_id} & set(dataset.ids()))),
        order=f"router-{policy.get('mode', 'unknown')}",
        seed=None,
        arms=arms,
        server=ServerInfo(kind="triton", url=backend.get("url"), protocol=backend.get("protocol")),
        versions=versions,
        router=RouterInfo(
            db=db, experiment=experiment, policy=policy or None, limits=session.get("limits"),
            entries=len(entries), first=first,
            last=max(e.received_at for e in entries).isoformat(timespec="milliseconds"),
            records=RouterRecordCounts(
                scored=sum(1 for r in records if r.status is EvalStatus.OK),
                unscored=sum(1 for r in records if r.status is EvalStatus.UNSCORED),
                failed=sum(1 for r in records if r.status is EvalStatus.FAILED),
                shadow=sum(1 for r in records if r.routed is not None and r.routed.role == "shadow")),
        ),
        records=len(records),
    )


def _check_sqlite_exists(db_url: str) -> None:
    """Reading must not create an empty SQLite file where the user mistyped a path."""
    import sqlalchemy as sa

    url = sa.engine.make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).expanduser().is_file():
            raise AbqaError(f"--db {db_url}: no such SQLite file ({url.database}); the router writes "
                            "sqlite:///runs/router.db by default")
