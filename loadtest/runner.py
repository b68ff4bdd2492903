"""`abqa loadtest`: one headless Locust run per step, followed while it runs, the server read before and after.

For each step (loadtest/steps.py): snapshot Triton's counters and batch statistics, run
`python -m locust -f loadtest/locustfile.py --headless ...` as a child process (Locust is gevent-monkeypatched: it
stays out of this process), follow the request records it appends to requests.jsonl and its CPU, and create its
stop file as soon as the step's figures are stable (or its maximum duration is up); then snapshot the server
again, compute the step's figures from its records (loadtest/figures.py), check its answers against eval.jsonl
(loadtest/answers.py), and rewrite load.json / load.csv with every step so far. With --slo-ms, each arm is then
searched alone for the highest rate that keeps its p99 within the bound (loadtest/slo.py). A step that cannot
run, a server that is down, a Locust that hangs: each is recorded with its message and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from abqa.core.config import DEFAULT_MODEL_REPOSITORY, LOAD_TOLERANCE, LOAD_WARMUP_S, LOAD_WINDOW
from abqa.core.processes import spawn, stop_process
from abqa.core.run import (LoadDocument, LoadRow, MachineInfo, PoolDataset, RequestLogTail, RequestRecord, RunFolder,
                           SloResult, StepRecord)
from abqa.loadtest import figures, results, slo
from abqa.loadtest.answers import AnswerKey
from abqa.loadtest.pool import DEFAULT_POOL_SIZE, DEFAULT_SEED, RequestPool, build_pool, read_standin_flags
from abqa.loadtest.schedule import ARRIVALS
from abqa.loadtest.server_metrics import server_view, take_snapshot
from abqa.loadtest.steps import StepPlan, StepState, max_measure_s, step_state, sweep
from abqa.loadtest.traffic import TrafficPlan, locust_run_time
from abqa.triton.endpoint import Endpoint

log = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOCUST_PREFIX = "locust"          # <step dir>/locust_stats.csv, _failures.csv, _exceptions.csv, _stats_history.csv
STOP_FILENAME = "stop"
# Beyond a step's warm-up and longest measurement, time for Locust to start (imports, loading the pool) and to
# shut down cleanly; Locust's own -t is a backstop a little past the longest measurement.
STARTUP_GRACE_S = 60.0
RUN_TIME_SPARE_S = 5.0
SHUTDOWN_GRACE_S = 15.0
# Requests still in flight when a step ends finish on the server a moment later; count them in that step.
SETTLE_S = 0.5
# How often a running step's records and CPU are read.
POLL_S = 0.5


@dataclass(frozen=True)
class LoadTestOptions:
    plan: TrafficPlan
    users: tuple[int, ...]
    duration_s: float                       # the longest a step measures, after its warm-up
    out: Path
    # Triton (with its metrics URL; None there: no Prometheus view). The default: HTTP on 127.0.0.1.
    endpoint: Endpoint = field(default_factory=lambda: Endpoint.parse(None, "http"))
    model_repository: Path = DEFAULT_MODEL_REPOSITORY
    squad: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    seed: int = DEFAULT_SEED
    request_timeout_s: float = 30.0
    step_timeout_s: float | None = None     # None: warm-up + longest measurement + STARTUP_GRACE_S
    rates: tuple[float, ...] = ()
    arrivals: str = ARRIVALS[0]
    warmup_s: float = LOAD_WARMUP_S
    window: int = LOAD_WINDOW
    tolerance: float = LOAD_TOLERANCE
    slo_ms: float | None = None
    slo_steps: int = slo.DEFAULT_STEPS
    processes: int = 1
    workers: int = 0                        # Locust workers on other machines, connecting to this master
    master_bind_host: str = "127.0.0.1"

    @property
    def generators(self) -> int:
        """Open-loop schedulers: one per Locust worker process (local or remote), else one."""
        return max(1, self.processes, self.workers)

    def max_measure_s(self, step: StepPlan) -> float:
        return max_measure_s(step, self.duration_s)

    def hard_timeout_s(self, step: StepPlan) -> float:
        if self.step_timeout_s is not None:
            return self.step_timeout_s
        return self.warmup_s + self.max_measure_s(step) + STARTUP_GRACE_S


@dataclass
class LoadTestResult:
    document: LoadDocument

    @property
    def rows(self) -> list[LoadRow]:
        return self.document.rows

    @property
    def steps(self) -> list[StepRecord]:
        return self.document.steps

    @property
    def exit_code(self) -> int:
        """0 when every request was answered and every step ran; 1 otherwise (the files are written either way).
        The SLO search's refusals are left out: a probe above what the arm sustains fails requests by design (a
        full queue answers 503), and that is the search's finding, stated in load.json's slo."""
        probes = {step.name for step in self.steps if step.kind == "slo"}
        failed = (any(row.failures for row in self.rows if row.step not in probes)
                  or not any(row.requests for row in self.rows))
        return 1 if failed or not all(step.ok for step in self.steps) else 0


def step_dir(out: Path, step: StepPlan) -> Path:
    return RunFolder(out).locust / step.name


def locust_command(options: LoadTestOptions, step: StepPlan, directory: Path, pool_file: Path) -> list[str]:
    # Locust runs with the step's folder as its working directory: every path it gets must be absolute.
    plan = step_traffic(options.plan, step)
    directory, pool_file = Path(directory).resolve(), Path(pool_file).resolve()
    # Open loop: one scheduler per worker process; closed loop: the step's users.
    users = step.users if not step.open_loop else options.generators
    command = [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless", "--only-summary",
        "-u", str(users), "-r", str(users),
        "-t", locust_run_time(options.warmup_s + options.max_measure_s(step) + RUN_TIME_SPARE_S),
        "--stop-timeout", "0",
        "--host", options.endpoint.url,
        "--csv", str(directory / LOCUST_PREFIX),
        "--html", str(directory / "report.html"),
        "--exit-code-on-error", "1",
        "--arms", ",".join(plan.arms),
        "--weights", ":".join(f"{weight:g}" for weight in plan.weights),
        "--mode", plan.mode,
        "--protocol", options.endpoint.protocol,
        "--pool-file", str(pool_file),
        "--model-repository", str(Path(options.model_repository).resolve()),
        "--request-timeout", f"{options.request_timeout_s:g}",
        "--seed", str(options.seed),
        "--step", step.name,
        "--warmup", f"{options.warmup_s:g}",
        "--requests-file", str(RunFolder(Path(options.out)).requests.resolve()),
        "--stop-file", str(directory / STOP_FILENAME),
    ]
    if step.open_loop:
        command += ["--rate", f"{step.rate:g}", "--arrivals", options.arrivals]
    if options.workers:
        # Locust's own distributed mode across machines: this master waits for the workers that connect to it.
        command += ["--master", "--expect-workers", str(options.workers), "--expect-workers-max-wait",
                    f"{STARTUP_GRACE_S:g}", "--master-bind-host", options.master_bind_host]
    elif options.processes > 1:
        # Locust's own distributed mode on this machine: a master and N worker processes.
        command += ["--processes", str(options.processes), "--master-bind-host", options.master_bind_host]
    return command


def step_traffic(plan: TrafficPlan, step: StepPlan) -> TrafficPlan:
    """The traffic of a step: the sweep's, or one arm alone (SLO steps)."""
    if tuple(step.arms) == tuple(plan.arms):
        return plan
    return TrafficPlan(tuple(step.arms), tuple(1.0 for _ in step.arms), "split")


# --- following a running step ----------------------------------------------------------------------------------------


class ProcessTreeCpu:
    """CPU seconds of a process and its children (Locust's master and workers), sampled with psutil."""

    def __init__(self, pid: int):
        import psutil

        self._psutil = psutil
        self._root = psutil.Process(pid)
        self._known: dict[int, object] = {}
        self.samples: list[tuple[float, dict[int, float]]] = []
        self.processes = 1

    def sample(self) -> None:
        psutil = self._psutil
        try:
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return
        times: dict[int, float] = {}
        for process in tree:
            process = self._known.setdefault(process.pid, process)  # psutil keeps each process's last reading
            try:
                cpu = process.cpu_times()
            except psutil.Error:
                continue
            times[process.pid] = cpu.user + cpu.system
        self.processes = max(self.processes, len(times))
        self.samples.append((time.time(), times))


class StepMonitor:
    """Reads a running step's records and CPU every poll and says when to stop it."""

    def __init__(self, options: LoadTestOptions, step: StepPlan, tail: RequestLogTail):
        self.options, self.step, self.tail = options, step, tail
        self.records: list[RequestRecord] = []
        self.cpu: ProcessTreeCpu | None = None
        self.state = StepState(None, [], False, None)

    def watch(self, pid: int) -> None:
        try:
            self.cpu = ProcessTreeCpu(pid)
        except Exception as exc:  # noqa: BLE001 - without psutil's view the step still runs, without CPU figures
            log.warning("cannot follow the CPU of Locust (pid %s): %s", pid, exc)

    def read(self) -> None:
        self.records += [record for record in self.tail.read_new() if record.step == self.step.name]

    def poll(self) -> str | None:
        self.read()
        if self.cpu is not None:
            self.cpu.sample()
        options = self.options
        self.state = step_state(self.records, self.step, time.time(), window=options.window,
                                tolerance=options.tolerance, max_s=options.max_measure_s(self.step),
                                slo_ms=options.slo_ms)
        return self.state.stop


def run_locust(command: list[str], directory: Path, timeout_s: float,
               monitor: StepMonitor | None = None) -> tuple[int | None, bool, float]:
    """Run one Locust step; (exit code, timed out, seconds). While it runs, the monitor decides when the step is
    done (the stop file tells Locust). Past the timeout: SIGTERM (Locust then writes its files), and SIGKILL to
    its process group if it still does not stop."""
    directory.mkdir(parents=True, exist_ok=True)
    stop_file = directory / STOP_FILENAME
    stop_file.unlink(missing_ok=True)
    started = time.monotonic()
    # Locust reads ./locust.conf and ./pyproject.toml's [tool.locust]: run it where there are none.
    # It dies with this process (SIGTERM: it writes its files), so that a killed `abqa loadtest` leaves no load.
    with open(directory / "locust.log", "wb") as log_file:
        process = spawn(command, cwd=directory, stdout=log_file, stderr=subprocess.STDOUT, die_with_parent=True)
        if monitor is not None:
            monitor.watch(process.pid)
        timed_out = False
        try:
            while True:
                try:
                    process.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() - started > timeout_s:
                    timed_out = True
                    stop_process(process, grace_s=SHUTDOWN_GRACE_S)
                    break
                if monitor is not None and monitor.poll() and not stop_file.exists():
                    stop_file.touch()
        except BaseException:  # Ctrl+C: stop the step, let the caller write what it has
            stop_process(process, grace_s=SHUTDOWN_GRACE_S)
            raise
    return process.returncode, timed_out, time.monotonic() - started


def log_tail(directory: Path, lines: int = 15) -> str:
    try:
        content = (directory / "locust.log").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(content[-lines:])


def read_exceptions(directory: Path) -> dict[str, int]:
    """Errors in the locustfile's own code, from Locust's exceptions CSV (not request failures)."""
    try:
        return results.read_locust_exceptions(
            (directory / f"{LOCUST_PREFIX}_exceptions.csv").read_text(encoding="utf-8"))
    except OSError:
        return {}


# --- one step ---------------------------------------------------------------------------------------------------------


@dataclass
class StepOutcome:
    rows: list[LoadRow]
    record: StepRecord
    records: list[RequestRecord]


def run_step(options: LoadTestOptions, step: StepPlan, pool_file: Path, client,
             answer_key: AnswerKey | None = None) -> StepOutcome:
    arms = step.arms
    directory = step_dir(options.out, step)
    record = StepRecord(name=step.name, kind=step.kind, users=step.users, rate=step.rate,
                        arrivals=options.arrivals if step.open_loop else None, arms=list(arms),
                        locust_dir=str(directory.relative_to(options.out)), warmup_s=options.warmup_s)
    monitor = StepMonitor(options, step, RequestLogTail(RunFolder(options.out).requests, from_end=True))
    before = take_snapshot(options.endpoint.metrics_url, client, arms)
    try:
        code, timed_out, wall = run_locust(locust_command(options, step, directory, pool_file), directory,
                                           options.hard_timeout_s(step), monitor)
    except OSError as exc:  # the interpreter or locust could not be started at all
        code, timed_out, wall = None, False, 0.0
        record.error = f"locust could not start: {exc}"
    time.sleep(SETTLE_S)
    after = take_snapshot(options.endpoint.metrics_url, client, arms)
    monitor.read()
    records = monitor.records
    record.exit_code, record.timed_out, record.wall_s = code, timed_out, round(wall, 2)
    record.exceptions = read_exceptions(directory)
    record.server_errors = list(dict.fromkeys([*before.all_errors(), *after.all_errors()]))
    if timed_out:
        record.error = f"locust did not stop within {options.hard_timeout_s(step):.0f} s and was stopped"
    elif record.error is None and not records:
        # Not one request recorded: Locust did not get to run the users (its log says why).
        record.error = f"locust (exit code {code}) sent no request; its log ends:\n{log_tail(directory)}"
    describe_step(record, records, options, step, monitor)
    servers = {arm: server_view(arm, before, after) for arm in arms}
    rows = results.rows_for_step(step, step_traffic(options.plan, step), records, servers, answer_key)
    return StepOutcome(rows, record, records)


def describe_step(record: StepRecord, records: list[RequestRecord], options: LoadTestOptions, step: StepPlan,
                  monitor: StepMonitor) -> None:
    """The step's stability (final windows) and the generator's view, from its records and CPU samples."""
    span = figures.measured_span(records)
    if span is not None:
        final = figures.windows(records, step.arms, options.window, start=span.start)
        record.windows = final
        record.stable = figures.stability(final, options.tolerance, open_loop=step.open_loop)
        record.measured_s = round(span.seconds, 3)
    record.stop_reason = monitor.state.stop or ("the step ended by itself" if records else None)
    samples = monitor.cpu.samples if monitor.cpu is not None else []
    processes = monitor.cpu.processes if monitor.cpu is not None else max(1, options.processes)
    cpu = figures.cpu_percent(samples, span.start if span else None, span.end if span else None)
    record.generator = figures.generator_view(records, processes=processes, cpu=cpu,
                                              rate_per_generator=step.rate / options.generators if step.rate else None)


# --- the sweep --------------------------------------------------------------------------------------------------------


def run_loadtest(options: LoadTestOptions, *, echo: Callable[[str], None] = print) -> LoadTestResult:
    """The sweep. Writes <out>/pool.npz, <out>/requests.jsonl, <out>/locust/<step>/, and load.json + load.csv after
    every step."""
    from abqa.triton.client import RetryPolicy, TritonClient

    folder = RunFolder(Path(options.out))
    folder.path.mkdir(parents=True, exist_ok=True)
    started_at = _now()
    plan = options.plan
    # The server's metadata and statistics, asked once each: what cannot be read is recorded, not retried.
    client = TritonClient(options.endpoint, timeout_s=10, retry=RetryPolicy(attempts=1))
    try:
        isolated = evaluated_answers(folder)
        pool = build_pool(plan.arms, options.model_repository, squad=options.squad, size=options.pool_size,
                          seed=options.seed, fetch_metadata=client.model_metadata,
                          prefer={qid for answers in isolated.values() for qid in answers})
        pool_file = pool.save(folder.pool)
        echo(f"request pool: {len(pool)} windows of {pool.dataset.get('questions')} questions "
             f"({pool.dataset.get('source')}: {pool.dataset.get('path')}) -> {pool_file}")
        # The request log of this sweep (like load.json, it is the sweep's own: a new sweep starts it afresh).
        folder.requests.write_text("", encoding="utf-8")
        answer_key = answer_key_for(pool, folder, isolated)
        header = sweep_header(options, started_at, pool)
        rows: list[LoadRow] = []
        steps: list[StepRecord] = []
        slo_results: dict[str, SloResult] = {}

        def run_and_record(step: StepPlan) -> StepOutcome:
            echo(f"step {step.name}: {describe_plan(step, options)} ...")
            outcome = run_step(options, step, pool_file, client, answer_key)
            rows.extend(outcome.rows)
            steps.append(outcome.record)
            _echo_step(echo, outcome.rows, outcome.record)
            document = LoadDocument.build({**header, "finished_at": _now()}, rows, steps, slo_results)
            results.write_outputs(folder.path, document)
            return outcome

        for step in sweep(options.users, options.rates, plan.arms):
            run_and_record(step)
        if options.slo_ms is not None:
            for arm in plan.arms:
                slo_results[arm] = search_slo(arm, options, rows, run_and_record)
                echo(f"  SLO: {slo_results[arm].statement}")
            document = LoadDocument.build({**header, "finished_at": _now()}, rows, steps, slo_results)
            results.write_outputs(folder.path, document)
        document = LoadDocument.build({**header, "finished_at": _now()}, rows, steps, slo_results)
    finally:
        client.close()
    return LoadTestResult(document)


def search_slo(arm: str, options: LoadTestOptions, rows: list[LoadRow],
               run: Callable[[StepPlan], StepOutcome]) -> SloResult:
    """The arm alone, at rates from slo.next_rate until the highest one within the bound is bracketed."""
    bound = float(options.slo_ms)
    trials: list[slo.SloTrial] = []
    start = slo.starting_rate(rows, arm)
    while (rate := slo.next_rate(trials, start, options.slo_steps)) is not None:
        outcome = run(StepPlan.slo(arm, rate))
        if not outcome.rows:
            break
        measured = [record.latency_ms for record in figures.measured(outcome.records) if record.ok]
        trials.append(slo.judge(outcome.rows[0], outcome.record, bound, slo.over_bound(measured, bound)))
    return slo.slo_result(arm, bound, trials)


def evaluated_answers(folder: RunFolder) -> dict[str, dict[str, str]]:
    """{arm: {question id: answer}} of the run folder's eval.jsonl (its answered records); empty without one."""
    isolated: dict[str, dict[str, str]] = {}
    for record in folder.read_eval():
        if record.status == "ok" and record.prediction is not None:
            isolated.setdefault(record.arm, {})[record.id] = record.prediction
    return isolated


def answer_key_for(pool: RequestPool, folder: RunFolder, isolated: dict[str, dict[str, str]]) -> AnswerKey:
    """What the answers under load are checked against: eval.jsonl's answers of each arm (when the run has them)
    and the pool's references, scored with the data set's rule."""
    from abqa.core.scoring import rule_for

    meta = folder.read_meta()
    squad_v2 = meta.qa.squad_v2 if meta is not None and meta.qa is not None else None
    version = pool.dataset.get("version")
    return AnswerKey(
        windows_per_question=pool.windows_per_question(),
        references={qid: question.references for qid, question in pool.questions.items()},
        languages={qid: question.language for qid, question in pool.questions.items()},
        rule=rule_for(version, multilingual=bool(pool.dataset.get("languages"))) if version else None,
        isolated=isolated,
        null_threshold=squad_v2.null_threshold if squad_v2 is not None else None,
    )


def sweep_header(options: LoadTestOptions, started_at: str, pool: RequestPool) -> dict:
    plan = options.plan
    from abqa.core.machine import machine_info

    return {
        "arms": list(plan.arms),
        "users": list(options.users),
        "rates": list(options.rates),
        "arrivals": options.arrivals,
        "duration_s": float(options.duration_s),
        "warmup_s": float(options.warmup_s),
        "window": options.window,
        "tolerance": float(options.tolerance),
        "slo_ms": options.slo_ms,
        "processes": options.processes,
        "mode": plan.mode,
        "weights": plan.weight_map,
        "url": options.endpoint.url,
        "protocol": options.endpoint.protocol,
        "metrics_url": options.endpoint.metrics_url,
        "started_at": started_at,
        "standin": read_standin_flags(options.model_repository, plan.arms),
        "dataset": PoolDataset(**pool.describe()),
        "machine": MachineInfo(**machine_info()),
    }


def describe_plan(step: StepPlan, options: LoadTestOptions) -> str:
    if step.kind == "users":
        what = f"{step.users} user(s), closed loop"
    else:
        what = f"{step.rate:g} req/s, {options.arrivals} arrivals"
    traffic = "alone" if step.kind == "slo" else f"{options.plan.mode} traffic"
    return (f"{what}, {traffic} to {', '.join(step.arms)}; warm-up {options.warmup_s:g} s, then windows of "
            f"{options.window} answers for at most {options.max_measure_s(step):.0f} s")


def _echo_step(echo, rows: list[LoadRow], record: StepRecord) -> None:
    for row in rows:
        echo(f"  {row.arm}: {row.requests} requests, {row.failures} failed, {row.requests_per_s:.2f} req/s, "
             f"p50 {_ms(row, 'p50')}, p99 {_ms(row, 'p99')}"
             + (f", answers identical {row.answers.identical}/{row.answers.compared}"
                if row.answers is not None and row.answers.compared else ""))
        for message, count in list(row.failure_messages.items())[:3]:
            echo(f"    failure x{count}: {message}")
    if record.stop_reason:
        echo(f"  {record.stop_reason}")
    generator = record.generator
    if generator is not None and (generator.saturated or generator.behind):
        echo(f"  LOAD GENERATOR {'SATURATED' if generator.saturated else 'BEHIND'}: CPU {generator.cpu_percent}% "
             f"of a core, {generator.late_requests} late requests (p99 lateness {generator.lateness_p99_ms} ms)"
             " - these figures describe the generator as much as the server; try --processes")
    if record.error:
        echo(f"  step error: {record.error}")
    for message, count in list(record.exceptions.items())[:3]:
        echo(f"  exception in the locustfile x{count}: {message}")
    for message in record.server_errors[:2]:
        echo(f"  server view unavailable: {message}")


def _ms(row: LoadRow, key: str) -> str:
    value = getattr(row.latency_ms, key)
    return f"{value:.1f} ms" if value is not None else f"- ({row.latency_ms.withheld.get(key, 'no answer')})"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
