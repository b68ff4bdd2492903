"""The router's request log: one row per arm that answered a request, in SQLite or PostgreSQL (SQLAlchemy).

Writes never touch the response path: the request thread puts a `LogEntry` on a bounded queue and returns;
one writer thread inserts them in batches. When the queue is full (the database is down or too slow) entries
are dropped and counted rather than making users wait. `flush()` waits until everything queued so far is in
the database (the summary endpoint and shutdown use it); `close()` flushes and stops the writer.

Tables:
- `abqa_router_requests`: time, experiment, request id, arm, role (primary | shadow), how the arm was chosen,
  status (ok | failed), latency, answer, score, windows, tokens, the SQuAD id when the request carried one,
  a hash of the user id (never the id itself), the question and context lengths.
- `abqa_router_sessions`: one row per router start: the experiment's policy and the arms' provenance, so that
  a log exported as a run can say which models answered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa

log = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///runs/router.db"
STATUS_OK, STATUS_FAILED = "ok", "failed"

metadata = sa.MetaData()

requests_table = sa.Table(
    "abqa_router_requests", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("experiment", sa.String(200), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("arm", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("assignment", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("latency_ms", sa.Float),
    sa.Column("answer", sa.Text),
    sa.Column("score", sa.Float),
    sa.Column("windows", sa.Integer),
    sa.Column("tokens", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("squad_id", sa.String(200)),
    sa.Column("user_hash", sa.String(64)),
    sa.Column("question_chars", sa.Integer),
    sa.Column("context_chars", sa.Integer),
    sa.Index("ix_abqa_router_requests_experiment_arm", "experiment", "arm"),
)

sessions_table = sa.Table(
    "abqa_router_sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("experiment", sa.String(200), nullable=False),
    sa.Column("config", sa.Text, nullable=False),     # JSON: policy, limits, backend URL, arms' provenance
)


@dataclass(frozen=True)
class LogEntry:
    received_at: datetime
    experiment: str
    request_id: str
    arm: str
    role: str
    assignment: str
    status: str
    latency_ms: float | None = None
    answer: str | None = None
    score: float | None = None
    windows: int | None = None
    tokens: int | None = None
    error: str | None = None
    squad_id: str | None = None
    user_hash: str | None = None
    question_chars: int | None = None
    context_chars: int | None = None

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


_ENTRY_FIELDS = [f.name for f in fields(LogEntry)]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything the router writes is UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def hash_user(user_id: str | None) -> str | None:
    """Enough to count distinct users and check stickiness in the log, without storing who they are."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:16] if user_id else None


def redact_url(url: str) -> str:
    """The database URL without its password, for logs and meta.json."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given minus anything after '@'
        return url.split("@")[-1]


def make_engine(url: str) -> sa.Engine:
    """An engine for `url`; a SQLite file's folder is created, and SQLite may be used from any thread."""
    parsed = sa.engine.make_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    return sa.create_engine(parsed, **kwargs)


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    pass


class RequestLog:
    """The background writer. `submit` never blocks; see the module note."""

    def __init__(self, url: str = DEFAULT_DB_URL, *, batch_size: int = 500, max_queue: int = 100_000,
                 retry_delays_s: tuple[float, ...] = (0.2, 1.0, 3.0)):
        self.url = url
        self.batch_size = batch_size
        self.retry_delays_s = retry_delays_s
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self.engine: sa.Engine | None = None
        self.written = 0
        self.dropped = 0            # queue full, or the database refused a batch after every retry
        self._lock = threading.Lock()

    # -- life cycle ------------------------------------------------------------------------------------------------

    def start(self) -> "RequestLog":
        if self._thread is not None:
            return self
        from abqa.core.errors import AbqaError

        try:
            self.engine = make_engine(self.url)
            metadata.create_all(self.engine)
        except Exception as exc:  # noqa: BLE001 - bad URL, missing driver, server down: all a user error here
            raise AbqaError(f"--db {redact_url(self.url)}: cannot open the request log ({type(exc).__name__}: {exc})") from None
        self._thread = threading.Thread(target=self._run, name="abqa-router-log", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop the writer (called at shutdown)."""
        if self._thread is None:
            return
        self.flush(timeout_s)
        self._queue.put(_Stop())
        self._thread.join(timeout_s)
        self._thread = None
        if self.engine is not None:
            self.engine.dispose()

    def __enter__(self) -> "RequestLog":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------------------------

    def submit(self, entry: LogEntry) -> bool:
        """Queue one entry; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(entry)
            return True
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything submitted before this call is written; False on timeout."""
        if self._thread is None:
            return True
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout_s)
        except queue.Full:
            return False
        return marker.done.wait(timeout_s)

    def record_session(self, experiment: str, config: dict) -> None:
        """One row per router start (synchronously: it happens once, before serving)."""
        with self.engine.begin() as connection:
            connection.execute(sessions_table.insert().values(
                started_at=utc_now(), experiment=experiment, config=json.dumps(config, default=str)))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[LogEntry] = []
            markers: list[_Flush] = []
            stop = False
            while True:
                if isinstance(item, LogEntry):
                    batch.append(item)
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    stop = True
                if stop or len(batch) >= self.batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            for marker in markers:
                marker.done.set()
            if stop:
                return

    def _write(self, batch: list[LogEntry]) -> None:
        rows = [entry.to_row() for entry in batch]
        for attempt, delay in enumerate((*self.retry_delays_s, None)):
            try:
                with self.engine.begin() as connection:
                    connection.execute(requests_table.insert(), rows)
                with self._lock:
                    self.written += len(rows)
                return
            except Exception as exc:  # noqa: BLE001 - the log must never take the service down
                if delay is None:
                    log.error("request log %s: dropped %d entries after %d tries: %s", redact_url(self.url),
                              len(rows), attempt + 1, exc)
                    with self._lock:
                        self.dropped += len(rows)
                    return
                log.warning("request log %s: write failed (%s); retrying in %.1f s", redact_url(self.url), exc, delay)
                time.sleep(delay)


# --- reading (summary endpoint, exporter) --------------------------------------------------------------------------


def read_entries(engine: sa.Engine, experiment: str | None = None) -> Iterator[LogEntry]:
    """Every logged entry (of one experiment), in the order written."""
    query = sa.select(*[requests_table.c[name] for name in _ENTRY_FIELDS]).order_by(requests_table.c.id)
    if experiment is not None:
        query = query.where(requests_table.c.experiment == experiment)
    with engine.connect() as connection:
        for row in connection.execute(query):
            values = dict(row._mapping)
            values["received_at"] = as_utc(values["received_at"])
            yield LogEntry(**values)


def read_latencies(engine: sa.Engine, experiment: str) -> list[tuple[str, str, str, str, float | None]]:
    """(arm, role, assignment, status, latency_ms) of every entry of an experiment: what the summary needs."""
    c = requests_table.c
    query = (sa.select(c.arm, c.role, c.assignment, c.status, c.latency_ms)
             .where(c.experiment == experiment).order_by(c.id))
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def experiments(engine: sa.Engine) -> list[tuple[str, int, datetime, datetime]]:
    """(experiment, entries, first, last) for every experiment in the log, most recent last."""
    c = requests_table.c
    query = (sa.select(c.experiment, sa.func.count(), sa.func.min(c.received_at), sa.func.max(c.received_at))
             .group_by(c.experiment).order_by(sa.func.max(c.received_at)))
    with engine.connect() as connection:
        return [(name, count, as_utc(first), as_utc(last)) for name, count, first, last in connection.execute(query)]


def latest_session(engine: sa.Engine, experiment: str) -> dict | None:
    """The config the router last started this experiment with."""
    c = sessions_table.c
    query = sa.select(c.config).where(c.experiment == experiment).order_by(c.id.desc()).limit(1)
    with engine.connect() as connection:
        text = connection.execute(query).scalar()
    return json.loads(text) if text else None
