"""The evaluation run: every question answered by every arm, scored, timed and appended to runs/<name>/eval.jsonl.

Side effects live here: the run folder, resuming, signals, worker threads, the server's process.
Nothing is lost: a record is appended and fsynced as soon as it is complete; a re-run with the same `--out`
skips the (id, arm) pairs already in eval.jsonl; SIGINT/SIGTERM or a server that dies ends the run with
meta.json saying so and how to resume; a question that still fails after retries is recorded as failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import shlex
import signal
import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from abqa.core import config as core_config
from abqa.core import data_sources
from abqa.core.errors import AbqaError
from abqa.core.machine import machine_info, package_versions
from abqa.core.records import STANDIN_WARNING
from abqa.core.run import (ArmInfo, ClientInfo, DatasetInfo, DecisionPlan, EvalRecord, LanguagePart,
                           LatencyConditions, MachineInfo,
                           QaSettings, RunFolder, RunMeta, RunStatus, ServerInfo, SquadV2Settings, read_eval_records,
                           write_eval_records)
from abqa.core.run.lock import RunFolderUnwritable, cannot_write
from abqa.core.run.document import record_line
from abqa.core.scoring import ScoringRule
from abqa.core.squad import SquadDataset, SquadQuestion, select_questions
from abqa.core.xquad import describe_parts
from abqa.client.arms import STATUS_FAILED, ReplayArm, ServedArm, utc_now
from abqa.client.resources import PeakSampler, client_peak_rss_mb, find_server_process
from abqa.client.summary import KIND_STANDIN, ArmSummary, format_table, summarize
from abqa.client.summary import answerability_groups, format_group_table, summarize_by_group
from abqa.triton.client import HEALTH_TIMEOUT_S, InferFailed, RetryPolicy
from abqa.triton.endpoint import Endpoint

log = logging.getLogger(__name__)

ORDERS = ("random", "interleaved", "parallel")
STATUS_RUNNING, STATUS_COMPLETE, STATUS_INTERRUPTED, STATUS_FAILED_RUN = (
    RunStatus.RUNNING, RunStatus.COMPLETE, RunStatus.INTERRUPTED, RunStatus.FAILED)
# Replayed records cost nothing to make: write them in blocks rather than one fsync each.
_REPLAY_BLOCK = 500
# Failed answers in a row that mean the server, not the model, is broken: the run stops (see _FailureStreak).
FAILURE_STREAK_LIMIT = 10
# An answer still pending after this long has the server's health asked every PROBE_INTERVAL_S (see _ServerWatch).
PROBE_AFTER_S, PROBE_INTERVAL_S = 5.0, 2.0


@dataclass
class EvalOptions:
    out: Path
    squad: str | None = None
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    arms: list[str] = field(default_factory=list)                     # served arms (Triton model names)
    replays: list[tuple[str, Path]] = field(default_factory=list)     # (arm name, predictions file)
    url: str | None = None
    protocol: str = "grpc"
    order: str = "random"
    model_repository: Path = core_config.DEFAULT_MODEL_REPOSITORY
    timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_failed: bool = False
    start_server: bool = False
    progress: bool | None = None                                      # None: a bar when stderr is a terminal
    version: str | None = None                                        # SQuAD rules: None detects from the data
    null_threshold: float = 0.0                                       # SQuAD v2.0: "" when null - span score > this
    na_probs: list[tuple[str, Path]] = field(default_factory=list)    # (replay arm, SQuAD v2.0 na_prob file)
    decision: DecisionPlan | None = None                              # --baseline/--margin, declared before the data

    @property
    def arm_names(self) -> list[str]:
        return [*self.arms, *(name for name, _ in self.replays)]

    def endpoint(self) -> Endpoint:
        """--url and --protocol as one Endpoint (the default server when --url is not given)."""
        return Endpoint.parse(self.url, self.protocol)


@dataclass
class EvalResult:
    out: Path
    status: RunStatus
    summaries: list[ArmSummary]
    message: str = ""
    resume_command: str | None = None
    # Breakdowns of the summaries, {column: {group: summaries}}: "language" for a multilingual run, "answerability"
    # (HasAns/NoAns) for SQuAD v2.0; empty for a plain v1.1 run.
    breakdowns: dict[str, dict[str, list[ArmSummary]]] = field(default_factory=dict)


class Interrupted(BaseException):
    """SIGINT or SIGTERM: stop after saving (a BaseException so that no `except Exception` swallows it)."""


class ServerGone(Exception):
    """The server stopped answering (or answers nothing but errors): nothing more can be evaluated in this run."""


class OutputFailed(Exception):
    """The run folder stopped taking writes (disk full, read-only): the run stops, what was written stays."""


# --- pure pieces ---------------------------------------------------------------------------------------------------


def validate_options(options: EvalOptions) -> None:
    if options.order not in ORDERS:
        raise AbqaError(f"--order {options.order!r}: use one of {', '.join(ORDERS)}")
    names = options.arm_names
    if not names:
        raise AbqaError("no arm to evaluate: give --arms (served by Triton) and/or --replay NAME=FILE")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise AbqaError(f"arm name(s) given twice: {', '.join(duplicates)}; every arm needs its own name")
    for name in options.arms:
        core_config.validate_arm_name(name)
    plan = options.decision
    if plan is not None and plan.margins and plan.baseline is None:
        raise AbqaError("--margin needs --baseline ARM: the arm every other arm is a candidate against")
    if plan is not None and plan.baseline is not None and plan.baseline not in names:
        raise AbqaError(f"--baseline {plan.baseline}: not an arm of this run ({', '.join(names)})")
    replayed = {name for name, _ in options.replays}
    for name, path in options.na_probs:
        if name not in replayed:
            raise AbqaError(f"--na-prob {name}={path}: {name} is not a --replay arm (na_prob files go with replayed "
                            "prediction files; served arms record their own no-answer scores)")


def arm_order(arms: Sequence[str], order: str, seed: int, question_id: str, position: int) -> list[str]:
    """The order in which the arms answer one question.

    random: a permutation drawn from (seed, question id), so a resumed run draws the same one;
    interleaved: the arm list rotated by the question's position (A,B then B,A ...), so each arm goes first
    equally often; parallel: the given order (all are sent at once anyway).
    """
    arms = list(arms)
    if order == "random":
        random.Random(f"{seed}:{question_id}").shuffle(arms)
        return arms
    if order == "interleaved" and arms:
        shift = position % len(arms)
        return arms[shift:] + arms[:shift]
    return arms


def request_concurrency(order: str, served_arms: int) -> int:
    """How many requests of a run are in flight on the server at once: every served arm under --order parallel,
    else one (each question's arms take turns, so each latency is measured in isolation)."""
    return max(1, served_arms) if order == "parallel" else 1


def latency_conditions(order: str, served_arms: int, records: Sequence[EvalRecord]) -> LatencyConditions | None:
    """meta.json's `latency`: the most requests in flight at once over the run's records (a resumed run may have
    been written by another abqa), or what the order implies when there is no served record yet."""
    if not served_arms:
        return None
    recorded = [record.concurrency for record in records if record.concurrency is not None]
    concurrency = max(recorded, default=request_concurrency(order, served_arms))
    how = (f"--order {order}: every served arm's request in flight at once" if order == "parallel"
           else f"--order {order}: one request at a time, each question's arms in turn")
    return LatencyConditions(concurrency=concurrency, isolated=concurrency == 1, how=how)


def options_to_argv(options: EvalOptions) -> list[str]:
    """The `abqa evaluate` arguments that repeat this run into the same folder (the resume command)."""
    argv = ["evaluate"]
    if options.squad:
        argv += ["--squad", options.squad]
    if options.limit is not None:
        argv += ["--limit", str(options.limit)]
    if options.sample is not None:
        argv += ["--sample", str(options.sample)]
    argv += ["--seed", str(options.seed), "--order", options.order]
    if options.arms:
        argv += ["--arms", ",".join(options.arms)]
        argv += ["--url", options.url or options.endpoint().address, "--protocol", options.protocol]
        argv += ["--model-repository", str(options.model_repository)]
        if options.start_server:
            argv.append("--start-server")
    for name, path in options.replays:
        argv += ["--replay", f"{name}={path}"]
    if options.version is not None:
        argv += ["--version", options.version]
    if options.null_threshold != 0.0:
        argv += ["--null-threshold", repr(options.null_threshold)]
    for name, path in options.na_probs:
        argv += ["--na-prob", f"{name}={path}"]
    if options.decision is not None and options.decision.baseline is not None:
        argv += ["--baseline", options.decision.baseline]
    if options.decision is not None and options.decision.margins:
        argv += ["--margin", ",".join(f"{metric}={points:g}" for metric, points in options.decision.margins.items())]
    argv += ["--out", str(options.out)]
    return argv


def resume_command(options: EvalOptions) -> str:
    return shlex.join(["abqa", *options_to_argv(options)])


def check_resumable(previous: RunMeta | None, dataset: SquadDataset, options: EvalOptions) -> None:
    """A folder continues only the same evaluation: same data, same subset, same order."""
    if previous is None:
        return
    where = f"--out {options.out}"
    old = previous.dataset
    if old is not None and old.sha256 and old.sha256 != dataset.sha256:
        raise AbqaError(f"{where} holds a run on another data set ({old.path}, sha256 {old.sha256[:12]}) "
                        f"than this one ({dataset.path}, sha256 {dataset.sha256[:12]}); use another --out")
    for key, value in (("limit", options.limit), ("sample", options.sample)):
        before = getattr(old, key) if old is not None else value
        if before != value:
            raise AbqaError(f"{where} holds a run with --{key} {before}, this one has --{key} {value}; "
                            "use the same settings to resume, or another --out")
    if options.sample is not None and old is not None and old.seed is not None and old.seed != options.seed:
        raise AbqaError(f"{where} holds a run sampled with --seed {old.seed}, this one has --seed {options.seed}; "
                        "use the same seed to resume, or another --out")
    if previous.order and previous.order != options.order:
        raise AbqaError(f"{where} holds a run in --order {previous.order}, this one asks for {options.order}; "
                        "mixing orders in one run would bias the comparison: use the same order, or another --out")
    for name, path in options.replays:
        arm = previous.arms.get(name)
        if arm is not None and arm.kind == "served":
            raise AbqaError(f"{where}: arm {name} was a served arm in this run; give the replay another name")
    declared, given = previous.decision, options.decision
    if declared is not None and given is not None and (declared.baseline, declared.margins) != (given.baseline,
                                                                                                given.margins):
        raise AbqaError(f"{where} holds a run declared with --baseline {declared.baseline} --margin "
                        f"{declared.margins}; a margin is declared once, before the data: resume with the same (or "
                        "none), or give another to `abqa report`, where it is marked as chosen after the data")
    old_v2 = previous.qa.squad_v2 if previous.qa is not None else None
    if dataset.rule.allows_no_answer and old_v2 is not None and old_v2.null_threshold != options.null_threshold:
        raise AbqaError(f"{where} holds a run with --null-threshold {old_v2.null_threshold}, this one has "
                        f"{options.null_threshold}; use the same threshold to resume, or another --out")


# --- files ---------------------------------------------------------------------------------------------------------


def repair_torn_tail(path: Path) -> bool:
    """Cut a last line the writer did not finish (killed mid-write), so that new records start on a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return False
        handle.truncate(data.rfind(b"\n") + 1)
    log.warning("%s: dropped a torn last line (the previous run was killed while writing it)", path)
    return True


def load_records(path: Path) -> list[EvalRecord]:
    repair_torn_tail(path)
    return read_eval_records(path)


# A second signal while the run saves its outcome waits at most this long for meta.json's final write.
SAVE_GRACE_S = 2.0


class StopSignals:
    """SIGINT/SIGTERM raise Interrupted in the main thread, but never in the middle of writing a record; once the run
    is stopping, another one ends the process as soon as the outcome is in meta.json (`saved`, milliseconds; at most
    SAVE_GRACE_S), without a traceback: what is written stays, and `resume` says how to go on."""

    def __init__(self, resume: str | None = None) -> None:
        self.resume = resume
        self._critical = 0
        self._pending: int | None = None
        self._stopping = False
        self._saved = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._pending is not None:   # a second signal that waited for a save that never came (an early stop)
            self._exit_now(self._pending)

    def stopping(self) -> None:
        """From now on (the run's clean-up) a signal ends the process once the outcome is saved."""
        self._stopping = True

    def saved(self) -> None:
        """The outcome is in meta.json: a second signal that waited for it ends the process now."""
        self._saved = True
        if self._pending is not None:
            self._exit_now(self._pending)

    def _saving(self) -> bool:
        return self._stopping and not self._saved

    def _handle(self, signum, _frame) -> None:
        if self._critical or self._saving():
            if self._saving() and self._pending is None:   # the save gets a grace period, not forever
                timer = threading.Timer(SAVE_GRACE_S, self._exit_now, (signum,))
                timer.daemon = True
                timer.start()
            self._pending = signum
            return
        self._raise_or_exit(signum)

    def _raise_or_exit(self, signum: int) -> None:
        if self._stopping:
            self._exit_now(signum)
        self._stopping = True
        raise Interrupted(signal.Signals(signum).name)

    def _exit_now(self, signum: int) -> None:
        resume = f"; resume with:\n  {self.resume}" if self.resume else ""
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            print(f"abqa evaluate: {signal.Signals(signum).name} again: stopped at once (every answer written so far "
                  f"is kept){resume}", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._pending is not None and not self._saving():
            signum, self._pending = self._pending, None
            self._raise_or_exit(signum)


class RecordWriter:
    """Appends records to eval.jsonl and fsyncs; replayed records are buffered into blocks. A write that fails
    (disk full, read-only) is cut back off the file, so that no torn line is left, and raises OutputFailed."""

    def __init__(self, path: Path, stop: StopSignals):
        self.path = path
        self.stop = stop
        self.buffer: list[EvalRecord] = []
        self.written: list[EvalRecord] = []
        self.broken = False

    def __enter__(self) -> "RecordWriter":
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputFailed(f"cannot write {self.path} ({exc.strerror})") from None
        return self

    def __exit__(self, *_exc) -> None:
        try:
            self.flush()
        finally:
            os.close(self.fd)

    def add(self, records: Sequence[EvalRecord], *, durable: bool) -> None:
        self.buffer.extend(records)
        if durable or len(self.buffer) >= _REPLAY_BLOCK:
            self.flush()

    def flush(self) -> None:
        if not self.buffer or self.broken:
            return
        with self.stop.critical():
            data = "".join(record_line(record) for record in self.buffer).encode("utf-8")
            try:
                append_whole(self.fd, data)
            except OSError as exc:
                self.broken = True   # what is still buffered is made again on resume
                raise OutputFailed(f"cannot write {self.path} ({exc.strerror})") from None
            self.written.extend(self.buffer)
            self.buffer = []


def append_whole(fd: int, data: bytes) -> None:
    """All of `data` at the end of the file, fsynced; or, when a write fails, none of it (cut back off)."""
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise


def write_meta(meta: RunMeta, path: Path) -> None:
    try:
        meta.write(path)
    except OSError as exc:
        raise OutputFailed(f"cannot write {path} ({exc.strerror})") from None


# --- the run -------------------------------------------------------------------------------------------------------


class _Worker:
    """One thread per served arm: its Triton client lives and is used only there (tritonclient is not thread-safe).

    A daemon thread: a request still in flight when the run stops is abandoned with it (its pair is not written,
    so a resume asks again) instead of holding the process up to --timeout x retries.
    """

    def __init__(self, arm: ServedArm):
        self.arm = arm
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=f"arm-{arm.name}", daemon=True).start()

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)

    def shutdown(self) -> None:
        self.submit(self.arm.close)
        self._jobs.put(None)


def answer_or_fail(arm: ServedArm, question: SquadQuestion, concurrency: int = 1) -> EvalRecord:
    """A served answer, or a failed record when the model failed, saying how many of the run's requests were in
    flight meanwhile (`concurrency`, this one included); ServerGone when the server no longer serves the arm (dead,
    shutting down: NOT_FOUND while it unloads the models, UNAVAILABLE, connection refused)."""
    started_at = utc_now()
    try:
        record = arm.answer(question)
    except InferFailed as exc:
        if not serves(arm.client, arm.name):
            raise ServerGone(f"the server at {arm.client.endpoint} stopped answering for arm {arm.name} "
                             f"(question {question.id}: {exc})") from None
        log.warning("arm %s, question %s: failed: %s", arm.name, question.id, exc)
        record = arm.failed_record(question, started_at, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad question must not end the run; it is recorded
        log.warning("arm %s, question %s: failed: %s: %s", arm.name, question.id, type(exc).__name__, exc)
        record = arm.failed_record(question, started_at, f"{type(exc).__name__}: {exc}")
    record.concurrency = concurrency
    return record


def serves(client, model: str) -> bool:
    """The health probe after an error: the server is live and the model ready."""
    return client.server_live() and client.model_ready(model)


class _FailureStreak:
    """Failed answers in a row are held back: the next answer that comes back writes them (the model failed on
    those questions); `limit` failures in a row stop the run instead (ServerGone: a server that answers nothing but
    errors is broken), and the held pairs stay unanswered, so that a resume asks for them again."""

    def __init__(self, limit: int = FAILURE_STREAK_LIMIT):
        self.limit = limit
        self.held: list[EvalRecord] = []

    def admit(self, record: EvalRecord) -> list[EvalRecord]:
        """The records to write now."""
        if record.status != STATUS_FAILED:
            ready, self.held = [*self.held, record], []
            return ready
        self.held.append(record)
        if len(self.held) >= self.limit:
            raise ServerGone(f"{len(self.held)} answers failed in a row (the last: arm {record.arm}, question "
                             f"{record.id}: {record.error}); the server answers nothing but errors")
        return []

    def release(self) -> list[EvalRecord]:
        """At the end of the run: the failures still held are the model's."""
        held, self.held = self.held, []
        return held


class _ServerWatch:
    """While an answer is slow, the server's health is asked every PROBE_INTERVAL_S from the main thread (its own
    client): a server that stops answering ends the run in seconds rather than after --timeout x retries."""

    def __init__(self, endpoint: Endpoint | None):
        self.endpoint = endpoint
        self._client = None

    def wait(self, futures: set[Future], what: str) -> tuple[set[Future], set[Future]]:
        """wait(futures, FIRST_EXCEPTION), probing the server's health while nothing comes back."""
        waited = 0.0
        while True:
            done, pending = wait(futures, timeout=PROBE_INTERVAL_S, return_when=FIRST_EXCEPTION)
            if done or not pending:
                return done, pending
            waited += PROBE_INTERVAL_S
            if waited >= PROBE_AFTER_S and self.endpoint is not None and not self._live():
                raise ServerGone(f"the server at {self.endpoint} stopped answering health checks while {what}")

    def result(self, future: Future, what: str):
        self.wait({future}, what)
        return future.result()

    def _live(self) -> bool:
        from abqa.triton.client import TritonClient

        if self._client is None:
            self._client = TritonClient(self.endpoint, timeout_s=HEALTH_TIMEOUT_S, retry=RetryPolicy(attempts=1))
        return self._client.server_live()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def run_evaluation(options: EvalOptions) -> EvalResult:
    validate_options(options)
    dataset = data_sources.resolve(options.squad, options.version)
    questions = select_questions(dataset, limit=options.limit, sample=options.sample, seed=options.seed)
    replays = _load_replays(options, dataset)   # before the run folder exists: a bad file leaves nothing behind
    folder = RunFolder(Path(options.out))
    with contextlib.ExitStack() as stack:
        _hold_lock(stack, folder, options)
        stop = stack.enter_context(StopSignals(resume_command(options)))
        try:
            previous, existing = _prepare(folder, options, dataset, replays)
        except Interrupted as exc:
            return EvalResult(folder.path, STATUS_INTERRUPTED, [], f"interrupted by {exc}", resume_command(options))
        return _run(options, dataset, questions, replays, folder, previous, existing, stop)


def _load_replays(options: EvalOptions, dataset: SquadDataset) -> dict[str, ReplayArm]:
    split_ids = set(dataset.ids())
    na_prob_files = dict(options.na_probs)
    return {name: ReplayArm.load(name, Path(path), split_ids, rule=dataset.rule, na_prob_path=na_prob_files.get(name))
            for name, path in options.replays}


def _hold_lock(stack: contextlib.ExitStack, folder: RunFolder, options: EvalOptions) -> None:
    """The run folder's writer lock, for the whole run; a folder that cannot be written is one clear error."""
    try:
        stack.enter_context(folder.lock("abqa evaluate"))
    except RunFolderUnwritable as exc:
        raise RunFolderUnwritable(f"{exc}; then run again: {resume_command(options)}") from None


def _prepare(folder: RunFolder, options: EvalOptions, dataset: SquadDataset,
             replays: dict[str, ReplayArm]) -> tuple[RunMeta | None, list[EvalRecord]]:
    """What the folder already holds, checked against this run: (meta.json, eval.jsonl's records)."""
    previous = folder.read_meta()
    check_resumable(previous, dataset, options)
    _check_replay_files(previous, replays, folder.path)
    try:
        existing = load_records(folder.eval)
        if options.retry_failed and any(r.status == STATUS_FAILED for r in existing):
            kept = [r for r in existing if r.status != STATUS_FAILED]
            log.warning("--retry-failed: asking again for %d failed (id, arm) pair(s)", len(existing) - len(kept))
            write_eval_records(folder.eval, kept)
            existing = kept
    except OSError as exc:
        raise cannot_write(folder.path, exc) from None
    if options.decision is not None and (previous is None or previous.decision is None) and existing:
        raise AbqaError(f"--out {folder.path} already holds {len(existing):,} answers without a declared margin: one "
                        "declared now would come after the data. Resume without --baseline/--margin and give them to "
                        "`abqa report`, where they are marked as chosen after the data, or use another --out")
    if existing:
        log.warning("resuming %s: %d (id, arm) pair(s) already done are skipped", folder.path,
                    len({(record.id, record.arm) for record in existing}))
    return previous, existing


def _run(options: EvalOptions, dataset: SquadDataset, questions: list[SquadQuestion], replays: dict[str, ReplayArm],
         folder: RunFolder, previous: RunMeta | None, existing: list[EvalRecord], stop: StopSignals) -> EvalResult:
    meta_path, eval_path = folder.meta, folder.eval
    done = {(record.id, record.arm) for record in existing}
    server_handle = None
    started = contextlib.ExitStack()    # the server this run started (--start-server), stopped at its end
    workers: dict[str, _Worker] = {}
    endpoint = options.endpoint()
    status, message = STATUS_FAILED_RUN, ""
    sampler = PeakSampler(None)
    server_info: dict = {"kind": None, "url": None, "protocol": None, "pid": None, "peak_rss_mb": None}
    writer: RecordWriter | None = None
    opened_at = utc_now()   # a new run's created_at and its decision's declared_at, in every write of this session
    watch = _ServerWatch(None)
    try:
        if options.arms:
            if options.start_server:
                from abqa.serve.process import server_for_run

                server_handle, endpoint = started.enter_context(server_for_run(
                    options.model_repository, options.arms, options.protocol, echo=log.warning))
            for name in options.arms:
                arm = ServedArm(name, Path(options.model_repository), endpoint.url, options.protocol, options.timeout_s,
                                options.retry, rule=dataset.rule, null_threshold=options.null_threshold)
                workers[name] = _Worker(arm)
                workers[name].submit(arm.connect).result()
            found = find_server_process(endpoint)
            if server_handle is not None:
                server_info.update(kind="abqa-serve", pid=server_handle.pid)
            elif found is not None:
                server_info.update(kind=found.kind, pid=found.pid)
            else:
                server_info.update(kind="triton")
            server_info.update(url=endpoint.address, protocol=options.protocol)
            server_info["triton_version"] = _server_version(workers)
            sampler = PeakSampler(server_info["pid"])
            watch = _ServerWatch(endpoint)
        meta = _build_meta(options, dataset, questions, previous, opened_at, workers, replays, existing, server_info,
                           STATUS_RUNNING, sampler)
        write_meta(meta, meta_path)
        _announce_arms(workers, replays)

        with sampler, RecordWriter(eval_path, stop) as writer:
            _evaluate(questions, options, workers, replays, done, writer, watch)
        status = STATUS_COMPLETE
    except Interrupted as exc:
        status, message = STATUS_INTERRUPTED, f"interrupted by {exc}"
    except ServerGone as exc:
        status, message = STATUS_FAILED_RUN, str(exc) + _crash_note(server_handle)
    except OutputFailed as exc:
        status, message = STATUS_FAILED_RUN, f"{exc}; free space or make the folder writable"
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stop.stopping()   # a second signal from here on ends the process at once, once the outcome is saved
        if server_handle is not None:
            with contextlib.suppress(Exception):
                server_info["peak_rss_mb"] = sampler.peak_mb
        records = existing + (writer.written if writer is not None else [])
        if meta_path.exists() or records:
            try:
                # Saved first, before the workers and the server stop (seconds), and a second signal waits for it
                # (milliseconds): a run is never left "running".
                with stop.critical():
                    write_meta(_build_meta(options, dataset, questions, previous, opened_at, workers, replays,
                                           records, server_info, status, sampler, message), meta_path)
            except OutputFailed as exc:
                status, message = STATUS_FAILED_RUN, f"{message + '; ' if message else ''}{exc}"
        stop.saved()
        for worker in workers.values():
            worker.shutdown()
        watch.close()
        if status == STATUS_INTERRUPTED and server_handle is not None:
            server_handle.let_stop()   # asked to stop now: the server stops on its own, not waited for
        started.close()
    kinds = arm_kinds(options, workers)
    summaries = summarize(records, options.arm_names, kinds, {q.id for q in questions})
    resume = resume_command(options) if status != STATUS_COMPLETE else None
    return EvalResult(folder.path, status, summaries, message, resume,
                      _breakdowns(records, options, questions, dataset.rule, kinds))


def _crash_note(server) -> str:
    """When the server this run started (--start-server) has exited: the end of its output, which says why."""
    if server is None:
        return ""
    with contextlib.suppress(Exception):
        server.process.wait(timeout=3)   # it notices a dead tritonserver within a second, then reports and exits
    if server.is_running():
        return ""
    return f"; abqa serve exited with code {server.process.returncode}, its output ends:\n{server.log_tail(15)}"


def _breakdowns(records: list[EvalRecord], options: EvalOptions, questions: list[SquadQuestion], rule: ScoringRule,
                kinds: dict[str, str]) -> dict[str, dict[str, list[ArmSummary]]]:
    groupings = {
        "language": {q.id: q.language for q in questions},
        "answerability": answerability_groups({q.id: q.has_answer if rule.allows_no_answer else None
                                               for q in questions}),
    }
    found = {column: summarize_by_group(records, options.arm_names, kinds, groups)
             for column, groups in groupings.items()}
    return {column: by_group for column, by_group in found.items() if by_group}


def _evaluate(questions: list[SquadQuestion], options: EvalOptions, workers: dict[str, _Worker],
              replays: dict[str, ReplayArm], done: set[tuple[str, str]], writer: RecordWriter,
              watch: _ServerWatch) -> None:
    from tqdm import tqdm

    arms = options.arm_names
    remaining = [(position, q) for position, q in enumerate(questions) if any((q.id, arm) not in done for arm in arms)]
    show = options.progress if options.progress is not None else sys.stderr.isatty()
    streak = _FailureStreak()
    failed = 0
    with tqdm(total=len(questions), initial=len(questions) - len(remaining), unit="q", desc="evaluate",
              disable=not show, dynamic_ncols=True) as bar:
        for position, question in remaining:
            pending = [arm for arm in arm_order(arms, options.order, options.seed, question.id, position)
                       if (question.id, arm) not in done]
            if options.order == "parallel":
                records = _answer_parallel(question, pending, workers, replays, writer, watch, streak)
            else:
                records = []
                for arm in pending:
                    if arm in replays:
                        record = replays[arm].answer(question)
                        writer.add([record], durable=False)
                        records.append(record)
                    else:
                        future = workers[arm].submit(answer_or_fail, workers[arm].arm, question)
                        answered = streak.admit(watch.result(future, f"arm {arm} answered question {question.id}"))
                        writer.add(answered, durable=True)
                        records += answered
            failed += sum(record.status == STATUS_FAILED for record in records)
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed, refresh=False)
    writer.add(streak.release(), durable=True)


def _answer_parallel(question: SquadQuestion, pending: list[str], workers: dict[str, _Worker],
                     replays: dict[str, ReplayArm], writer: RecordWriter, watch: _ServerWatch,
                     streak: _FailureStreak) -> list[EvalRecord]:
    """Every served arm in flight at once; each record is written as soon as its arm is done."""
    served = [arm for arm in pending if arm in workers]
    futures = {workers[arm].submit(answer_or_fail, workers[arm].arm, question, len(served)): arm for arm in served}
    records = [replays[arm].answer(question) for arm in pending if arm in replays]
    writer.add(records, durable=False)
    not_done = set(futures)
    error: BaseException | None = None
    while not_done:
        finished, not_done = watch.wait(not_done, f"arms {', '.join(futures[f] for f in not_done)} answered "
                                                  f"question {question.id}")
        for future in finished:
            if future.exception() is not None:
                error = error or future.exception()
                continue
            answered = streak.admit(future.result())
            writer.add(answered, durable=True)
            records += answered
    if error is not None:
        raise error
    return records


def _server_version(workers: dict[str, _Worker]) -> str | None:
    if not workers:
        return None
    worker = next(iter(workers.values()))
    try:
        metadata = worker.submit(worker.arm.client.server_metadata).result()
        return f"{metadata.get('name', '')} {metadata.get('version', '')}".strip() or None
    except AbqaError:
        return None


def _check_replay_files(previous: RunMeta | None, replays: dict[str, ReplayArm], out: Path) -> None:
    for name, arm in replays.items():
        old = previous.arms.get(name) if previous is not None else None
        if old is not None and old.replay_sha256 and old.replay_sha256 != arm.sha256:
            raise AbqaError(f"--out {out}: arm {name} was replayed from a different file "
                            f"(sha256 {old.replay_sha256[:12]}, now {arm.sha256[:12]}); "
                            "give it another name or use another --out")


def arm_kinds(options: EvalOptions, workers: Mapping[str, _Worker]) -> dict[str, str]:
    """served | stand-in (served, untrained: its EM/F1 is meaningless) | replay, for the summary tables."""
    served = {name: KIND_STANDIN if name in workers and workers[name].arm.standin else "served"
              for name in options.arms}
    return {**served, **{name: "replay" for name, _ in options.replays}}


def _announce_arms(workers: dict[str, _Worker], replays: dict[str, ReplayArm]) -> None:
    for name, worker in workers.items():
        if worker.arm.standin:
            log.warning("arm %s is a %s", name, STANDIN_WARNING)
        log.info("arm %s: served by %s, inputs %s", name, worker.arm.client.endpoint,
                 ", ".join(worker.arm.model.input_names))
    for name, replay in replays.items():
        log.info("arm %s: replay of %s (%d predictions)", name, replay.path, len(replay.predictions))


def _build_meta(options: EvalOptions, dataset: SquadDataset, questions: list[SquadQuestion],
                previous: RunMeta | None, opened_at: str, workers: dict[str, _Worker],
                replays: dict[str, ReplayArm], records: list[EvalRecord], server_info: dict, status: RunStatus,
                sampler: PeakSampler, message: str = "") -> RunMeta:
    """meta.json: what was evaluated, with what, where, and how it ended (read by the analysis stage). A new run
    is created, and its decision declared, when this session opened (`opened_at`), before its first answer,
    whichever write this is; a resumed run keeps the first session's."""
    question_ids = {q.id for q in questions}
    summaries = summarize(records, options.arm_names, question_ids=question_ids)   # only the failed counts
    by_arm = {summary.arm: summary for summary in summaries}
    arms: dict[str, ArmInfo] = dict(previous.arms) if previous is not None else {}
    for name, worker in workers.items():
        arms[name] = worker.arm.provenance(failed=by_arm[name].failed)
    for name, replay in replays.items():
        missing = sum(1 for q in questions if q.id not in replay.predictions)
        arms[name] = replay.provenance(missing)
    server = ServerInfo(**server_info)
    old_server = previous.server if previous is not None else None
    server.peak_rss_mb = _max_or_none(sampler.peak_mb, server.peak_rss_mb,
                                      old_server.peak_rss_mb if old_server and old_server.url == server.url else None)
    if not options.arms:
        server.kind = None
    old_client = previous.client.peak_rss_mb if previous is not None and previous.client else None
    return RunMeta(
        name=Path(options.out).name,
        created_at=previous.created_at if previous is not None else opened_at,
        updated_at=utc_now(),
        sessions=(previous.sessions if previous is not None else 0) + 1,  # this session included
        dataset=DatasetInfo(
            source=dataset.source, path=dataset.path, sha256=dataset.sha256, version=dataset.version,
            questions=len(dataset), evaluated_questions=len(questions),
            limit=options.limit, sample=options.sample, seed=options.seed,
            # A multilingual run (--squad xquad.de,xquad.zh): each language's file and how many were evaluated.
            languages=[LanguagePart(**part) for part in describe_parts(dataset, questions)] if dataset.parts else None,
        ),
        order=options.order,
        seed=options.seed,
        qa=QaSettings(max_seq_length=core_config.MAX_SEQ_LENGTH, doc_stride=core_config.DOC_STRIDE,
                      n_best=core_config.N_BEST, max_answer_length=core_config.MAX_ANSWER_LENGTH,
                      pad_multiple=_pad_multiple(workers),
                      squad_v2=squad_v2_meta(options) if dataset.rule.allows_no_answer else None),
        latency=latency_conditions(options.order, len(options.arms), records),
        arms=arms,
        server=server,
        client=ClientInfo(peak_rss_mb=_max_or_none(client_peak_rss_mb(), old_client)),
        versions=package_versions(),
        machine=MachineInfo(**machine_info()),
        status=status,
        message=message or None,
        resume_command=resume_command(options) if status != STATUS_COMPLETE else None,
        records=len(records),
        summary={summary.arm: summary for summary in summaries},
        decision=_declared_decision(options, previous, opened_at),
    )


def _declared_decision(options: EvalOptions, previous: RunMeta | None, opened_at: str) -> DecisionPlan | None:
    """The plan as first declared (a resume keeps it and its time); a new one is stamped when this session opened."""
    if previous is not None and previous.decision is not None:
        return previous.decision
    if options.decision is None:
        return None
    return options.decision.model_copy(update={"declared_at": options.decision.declared_at or opened_at})


def _pad_multiple(workers: dict[str, _Worker]) -> int:
    """The served arms' length buckets when they agree (one device), else the CPU policy's (each arm has its own in
    meta.json's arms.<arm>.pad_multiple)."""
    multiples = {worker.arm.pad_multiple for worker in workers.values()}
    return multiples.pop() if len(multiples) == 1 else core_config.PAD_MULTIPLE


def squad_v2_meta(options: EvalOptions) -> SquadV2Settings:
    """How a SQuAD v2.0 run decides "no answer" (meta.json qa.squad_v2)."""
    return SquadV2Settings(
        null_threshold=options.null_threshold,
        rule="served arms answer \"\" when null score - best span score > null_threshold; the null score is "
             "start + end logit at [CLS], lowest over the windows; replayed answers are taken as given",
        na_prob_files={name: str(path) for name, path in options.na_probs},
    )


def _max_or_none(*values: float | None) -> float | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def print_result(result: EvalResult, out=None) -> None:
    """The summary table on stdout; how the run ended (and how to resume) on stderr."""
    out = out or sys.stdout
    print(format_table(result.summaries), file=out)
    for column, by_group in result.breakdowns.items():  # per language (MLQA scoring), HasAns/NoAns (v2.0)
        print(format_group_table(column, by_group), file=out)
    folder = RunFolder(result.out)
    print(f"records: {folder.eval}, metadata: {folder.meta}", file=out)
    if result.status != STATUS_COMPLETE:
        print(f"abqa evaluate: {result.status.value}: {result.message}. Everything answered so far is saved in "
              f"{folder.eval}; resume with:\n  {result.resume_command}", file=sys.stderr)
    failed = sum(summary.failed for summary in result.summaries)
    if failed:
        print(f"abqa evaluate: {failed} (question, arm) pair(s) failed and score 0; re-run with --retry-failed "
              "to ask for them again", file=sys.stderr)
