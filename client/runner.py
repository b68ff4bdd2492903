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
import random
import shlex
import signal
import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from abqa.core import config as core_config
from abqa.core import data_sources
from abqa.core.errors import AbqaError
from abqa.core.machine import machine_info, package_versions
from abqa.core.records import STANDIN_WARNING
from abqa.core.run import (ArmInfo, ClientInfo, DatasetInfo, EvalRecord, LanguagePart, LatencyConditions, MachineInfo,
                           QaSettings, RunFolder, RunMeta, RunStatus, ServerInfo, SquadV2Settings, read_eval_records,
                           write_eval_records)
from abqa.core.run.document import record_line
from abqa.core.scoring import ScoringRule
from abqa.core.squad import SquadDataset, SquadQuestion, select_questions
from abqa.core.xquad import describe_parts
from abqa.client.arms import STATUS_FAILED, ReplayArm, ServedArm, utc_now
from abqa.client.resources import PeakSampler, client_peak_rss_mb, find_server_process
from abqa.client.summary import KIND_STANDIN, ArmSummary, format_table, summarize
from abqa.client.summary import answerability_groups, format_group_table, summarize_by_group
from abqa.triton.client import InferFailed, RetryPolicy
from abqa.triton.endpoint import Endpoint

log = logging.getLogger(__name__)

ORDERS = ("random", "interleaved", "parallel")
STATUS_RUNNING, STATUS_COMPLETE, STATUS_INTERRUPTED, STATUS_FAILED_RUN = (
    RunStatus.RUNNING, RunStatus.COMPLETE, RunStatus.INTERRUPTED, RunStatus.FAILED)
# Replayed records cost nothing to make: write them in blocks rather than one fsync each.
_REPLAY_BLOCK = 500


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
    """The server stopped answering altogether: nothing more can be evaluated in this run."""


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


class StopSignals:
    """SIGINT/SIGTERM raise Interrupted in the main thread, but never in the middle of writing a record."""

    def __init__(self) -> None:
        self._critical = 0
        self._pending: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, _frame) -> None:
        if self._critical:
            self._pending = signum
            return
        raise Interrupted(signal.Signals(signum).name)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signal.Signals(signum).name)


class RecordWriter:
    """Appends records to eval.jsonl and fsyncs; replayed records are buffered into blocks."""

    def __init__(self, path: Path, stop: StopSignals):
        self.path = path
        self.stop = stop
        self.buffer: list[EvalRecord] = []
        self.written: list[EvalRecord] = []

    def __enter__(self) -> "RecordWriter":
        self.handle = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *_exc) -> None:
        try:
            self.flush()
        finally:
            self.handle.close()

    def add(self, records: Sequence[EvalRecord], *, durable: bool) -> None:
        self.buffer.extend(records)
        if durable or len(self.buffer) >= _REPLAY_BLOCK:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        with self.stop.critical():
            text = "".join(record_line(record) for record in self.buffer)
            self.handle.write(text)
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.written.extend(self.buffer)
            self.buffer = []


# --- the run -------------------------------------------------------------------------------------------------------


class _Worker:
    """One thread per served arm: its Triton client lives and is used only there (tritonclient is not thread-safe)."""

    def __init__(self, arm: ServedArm):
        self.arm = arm
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"arm-{arm.name}")

    def submit(self, fn, *args) -> Future:
        return self.executor.submit(fn, *args)

    def shutdown(self) -> None:
        self.executor.submit(self.arm.close)
        self.executor.shutdown(wait=False, cancel_futures=False)


def answer_or_fail(arm: ServedArm, question: SquadQuestion, concurrency: int = 1) -> EvalRecord:
    """A served answer, or a failed record, saying how many of the run's requests were in flight meanwhile
    (`concurrency`, this one included); ServerGone when the server no longer answers at all."""
    started_at = utc_now()
    try:
        record = arm.answer(question)
    except InferFailed as exc:
        if exc.transient and not arm.client.server_live():
            raise ServerGone(f"the server at {arm.client.endpoint} stopped answering "
                             f"(arm {arm.name}, question {question.id}: {exc})") from None
        log.warning("arm %s, question %s: failed: %s", arm.name, question.id, exc)
        record = arm.failed_record(question, started_at, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad question must not end the run; it is recorded
        log.warning("arm %s, question %s: failed: %s: %s", arm.name, question.id, type(exc).__name__, exc)
        record = arm.failed_record(question, started_at, f"{type(exc).__name__}: {exc}")
    record.concurrency = concurrency
    return record


def run_evaluation(options: EvalOptions) -> EvalResult:
    validate_options(options)
    dataset = data_sources.resolve(options.squad, options.version)
    questions = select_questions(dataset, limit=options.limit, sample=options.sample, seed=options.seed)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(out)
    meta_path, eval_path = folder.meta, folder.eval
    previous = folder.read_meta()
    check_resumable(previous, dataset, options)

    existing = load_records(eval_path)
    if options.retry_failed and any(r.status == STATUS_FAILED for r in existing):
        kept = [r for r in existing if r.status != STATUS_FAILED]
        log.warning("--retry-failed: asking again for %d failed (id, arm) pair(s)", len(existing) - len(kept))
        write_eval_records(eval_path, kept)
        existing = kept
    done = {(record.id, record.arm) for record in existing}
    if done:
        log.warning("resuming %s: %d (id, arm) pair(s) already done are skipped", out, len(done))

    split_ids = set(dataset.ids())
    na_prob_files = dict(options.na_probs)
    replays = {name: ReplayArm.load(name, Path(path), split_ids, rule=dataset.rule,
                                    na_prob_path=na_prob_files.get(name))
               for name, path in options.replays}
    _check_replay_files(previous, replays, out)

    server_handle = None
    started = contextlib.ExitStack()    # the server this run started (--start-server), stopped at its end
    workers: dict[str, _Worker] = {}
    endpoint = options.endpoint()
    status, message = STATUS_FAILED_RUN, ""
    sampler = PeakSampler(None)
    server_info: dict = {"kind": None, "url": None, "protocol": None, "pid": None, "peak_rss_mb": None}
    writer: RecordWriter | None = None
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
        meta = _build_meta(options, dataset, questions, previous, workers, replays, existing, server_info,
                           STATUS_RUNNING, sampler)
        meta.write(meta_path)
        _announce_arms(workers, replays)

        with StopSignals() as stop, sampler, RecordWriter(eval_path, stop) as writer:
            _evaluate(questions, options, workers, replays, done, writer, stop)
        status = STATUS_COMPLETE
    except Interrupted as exc:
        status, message = STATUS_INTERRUPTED, f"interrupted by {exc}"
    except ServerGone as exc:
        status, message = STATUS_FAILED_RUN, str(exc)
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        for worker in workers.values():
            worker.shutdown()
        if server_handle is not None:
            with contextlib.suppress(Exception):
                server_info["peak_rss_mb"] = sampler.peak_mb
        started.close()
        records = existing + (writer.written if writer is not None else [])
        if meta_path.exists() or records:
            final = _build_meta(options, dataset, questions, previous, workers, replays, records, server_info,
                                status, sampler, message)
            final.write(meta_path)
    kinds = arm_kinds(options, workers)
    summaries = summarize(records, options.arm_names, kinds, {q.id for q in questions})
    resume = resume_command(options) if status != STATUS_COMPLETE else None
    return EvalResult(out, status, summaries, message, resume,
                      _breakdowns(records, options, questions, dataset.rule, kinds))


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
              replays: dict[str, ReplayArm], done: set[tuple[str, str]], writer: RecordWriter, stop: StopSignals) -> None:
    from tqdm import tqdm

    arms = options.arm_names
    remaining = [(position, q) for position, q in enumerate(questions) if any((q.id, arm) not in done for arm in arms)]
    show = options.progress if options.progress is not None else sys.stderr.isatty()
    failed = 0
    with tqdm(total=len(questions), initial=len(questions) - len(remaining), unit="q", desc="evaluate",
              disable=not show, dynamic_ncols=True) as bar:
        for position, question in remaining:
            pending = [arm for arm in arm_order(arms, options.order, options.seed, question.id, position)
                       if (question.id, arm) not in done]
            if options.order == "parallel":
                records = _answer_parallel(question, pending, workers, replays, writer)
            else:
                records = []
                for arm in pending:
                    if arm in replays:
                        record = replays[arm].answer(question)
                        writer.add([record], durable=False)
                    else:
                        record = workers[arm].submit(answer_or_fail, workers[arm].arm, question).result()
                        writer.add([record], durable=True)
                    records.append(record)
            failed += sum(record.status == STATUS_FAILED for record in records)
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed, refresh=False)


def _answer_parallel(question: SquadQuestion, pending: list[str], workers: dict[str, _Worker],
                     replays: dict[str, ReplayArm], writer: RecordWriter) -> list[EvalRecord]:
    """Every served arm in flight at once; each record is written as soon as its arm is done."""
    served = [arm for arm in pending if arm in workers]
    futures = {workers[arm].submit(answer_or_fail, workers[arm].arm, question, len(served)): arm for arm in served}
    records = [replays[arm].answer(question) for arm in pending if arm in replays]
    writer.add(records, durable=False)
    not_done = set(futures)
    error: BaseException | None = None
    while not_done:
        finished, not_done = wait(not_done, return_when=FIRST_EXCEPTION)
        for future in finished:
            if future.exception() is not None:
                error = error or future.exception()
                continue
            record = future.result()
            writer.add([record], durable=True)
            records.append(record)
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
                previous: RunMeta | None, workers: dict[str, _Worker], replays: dict[str, ReplayArm],
                records: list[EvalRecord], server_info: dict, status: RunStatus, sampler: PeakSampler,
                message: str = "") -> RunMeta:
    """meta.json: what was evaluated, with what, where, and how it ended (read by the analysis stage)."""
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
        created_at=previous.created_at if previous is not None else utc_now(),
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
    )


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
