"""`abqa loadtest`: one headless Locust run per concurrency step, the server read before and after each.

For each step: snapshot Triton's counters and batch statistics, run
`python -m locust -f loadtest/locustfile.py --headless -u N -r N -t DURATION --csv ... --html ...` as a child
process (Locust is gevent-monkeypatched: it stays out of this process) with a hard timeout, snapshot again,
read Locust's CSVs, and rewrite load.json / load.csv with every step so far. A step that cannot run, a
server that is down, a Locust that hangs: each is recorded with its message and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abqa.core.config import DEFAULT_MODEL_REPOSITORY
from abqa.core.processes import spawn, stop_process
from abqa.core.run import LoadDocument, LoadRow, MachineInfo, PoolDataset, RunFolder, StepRecord
from abqa.loadtest import results
from abqa.loadtest.pool import DEFAULT_POOL_SIZE, DEFAULT_SEED, build_pool, read_standin_flags
from abqa.loadtest.server_metrics import server_view, take_snapshot
from abqa.loadtest.traffic import TrafficPlan, locust_run_time
from abqa.triton.endpoint import Endpoint

log = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOCUST_PREFIX = "locust"          # <step dir>/locust_stats.csv, _failures.csv, _exceptions.csv, _stats_history.csv
# Beyond --duration, time for Locust to start (imports, loading the pool) and to shut down cleanly.
STARTUP_GRACE_S = 60.0
SHUTDOWN_GRACE_S = 15.0
# Requests still in flight when a step ends finish on the server a moment later; count them in that step.
SETTLE_S = 0.5


@dataclass(frozen=True)
class LoadTestOptions:
    plan: TrafficPlan
    users: tuple[int, ...]
    duration_s: float
    out: Path
    # Triton (with its metrics URL; None there: no Prometheus view). The default: HTTP on 127.0.0.1.
    endpoint: Endpoint = field(default_factory=lambda: Endpoint.parse(None, "http"))
    model_repository: Path = DEFAULT_MODEL_REPOSITORY
    squad: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    seed: int = DEFAULT_SEED
    request_timeout_s: float = 30.0
    step_timeout_s: float | None = None     # None: duration + STARTUP_GRACE_S

    @property
    def hard_timeout_s(self) -> float:
        return self.step_timeout_s if self.step_timeout_s is not None else self.duration_s + STARTUP_GRACE_S


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
        """0 when every request was answered and every step ran; 1 otherwise (the files are written either way)."""
        failed = any(row.failures for row in self.rows) or not any(row.requests for row in self.rows)
        return 1 if failed or not all(step.ok for step in self.steps) else 0


def step_dir(out: Path, users: int) -> Path:
    return RunFolder(out).locust / f"users-{users}"


def locust_command(options: LoadTestOptions, users: int, directory: Path, pool_file: Path) -> list[str]:
    # Locust runs with the step's folder as its working directory: every path it gets must be absolute.
    plan = options.plan
    directory, pool_file = Path(directory).resolve(), Path(pool_file).resolve()
    return [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless", "--only-summary",
        "-u", str(users), "-r", str(users),
        "-t", locust_run_time(options.duration_s),
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
    ]


def run_locust(command: list[str], directory: Path, timeout_s: float) -> tuple[int | None, bool, float]:
    """Run one Locust step; (exit code, timed out, seconds). Past the timeout: SIGTERM (Locust then writes its
    files), and SIGKILL to its process group if it still does not stop."""
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Locust reads ./locust.conf and ./pyproject.toml's [tool.locust]: run it where there are none.
    # It dies with this process (SIGTERM: it writes its files), so that a killed `abqa loadtest` leaves no load.
    with open(directory / "locust.log", "wb") as log_file:
        process = spawn(command, cwd=directory, stdout=log_file, stderr=subprocess.STDOUT, die_with_parent=True)
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_process(process, grace_s=SHUTDOWN_GRACE_S)
        except BaseException:  # Ctrl+C: stop the step, let the caller write what it has
            stop_process(process, grace_s=SHUTDOWN_GRACE_S)
            raise
    return process.returncode, timed_out, time.monotonic() - started


def read_step(directory: Path) -> tuple[dict, dict, dict]:
    """(stats by arm, failures by arm, exceptions) from a step's Locust CSVs; empty where a file is missing."""
    def text(suffix: str) -> str:
        try:
            return (directory / f"{LOCUST_PREFIX}_{suffix}.csv").read_text(encoding="utf-8")
        except OSError:
            return ""

    return (results.read_locust_stats(text("stats")), results.read_locust_failures(text("failures")),
            results.read_locust_exceptions(text("exceptions")))


def log_tail(directory: Path, lines: int = 15) -> str:
    try:
        content = (directory / "locust.log").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(content[-lines:])


def run_step(options: LoadTestOptions, users: int, pool_file: Path, client) -> tuple[list[LoadRow], StepRecord]:
    arms = options.plan.arms
    directory = step_dir(options.out, users)
    record = StepRecord(users=users, locust_dir=str(directory.relative_to(options.out)))
    before = take_snapshot(options.endpoint.metrics_url, client, arms)
    try:
        code, timed_out, wall = run_locust(locust_command(options, users, directory, pool_file), directory,
                                           options.hard_timeout_s)
    except OSError as exc:  # the interpreter or locust could not be started at all
        code, timed_out, wall = None, False, 0.0
        record.error = f"locust could not start: {exc}"
    time.sleep(SETTLE_S)
    after = take_snapshot(options.endpoint.metrics_url, client, arms)
    stats, failures, exceptions = read_step(directory)
    record.exit_code, record.timed_out, record.wall_s = code, timed_out, round(wall, 2)
    record.exceptions = exceptions
    record.server_errors = list(dict.fromkeys([*before.all_errors(), *after.all_errors()]))
    if timed_out:
        record.error = f"locust did not stop within {options.hard_timeout_s:.0f} s and was stopped"
    elif record.error is None and not stats:
        # Not one request recorded: Locust did not get to run the users (its log says why).
        record.error = f"locust (exit code {code}) sent no request; its log ends:\n{log_tail(directory)}"
    servers = {arm: server_view(arm, before, after) for arm in arms}
    return results.rows_for_step(arms, users, stats, failures, servers), record


def run_loadtest(options: LoadTestOptions, *, echo=print) -> LoadTestResult:
    """The sweep. Writes <out>/pool.npz, <out>/locust/users-N/, and load.json + load.csv after every step."""
    from abqa.core.machine import machine_info
    from abqa.triton.client import RetryPolicy, TritonClient

    folder = RunFolder(Path(options.out))
    folder.path.mkdir(parents=True, exist_ok=True)
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    plan = options.plan
    # The server's metadata and statistics, asked once each: what cannot be read is recorded, not retried.
    client = TritonClient(options.endpoint, timeout_s=10, retry=RetryPolicy(attempts=1))
    try:
        pool = build_pool(plan.arms, options.model_repository, squad=options.squad, size=options.pool_size,
                          seed=options.seed, fetch_metadata=client.model_metadata)
        pool_file = pool.save(folder.pool)
        echo(f"request pool: {len(pool)} windows of {pool.dataset.get('questions')} questions "
             f"({pool.dataset.get('source')}: {pool.dataset.get('path')}) -> {pool_file}")
        header = {
            "arms": list(plan.arms),
            "users": list(options.users),
            "duration_s": float(options.duration_s),
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
        rows: list[LoadRow] = []
        steps: list[StepRecord] = []
        for users in options.users:
            echo(f"step: {users} user(s), {options.duration_s:g} s, {plan.mode} traffic to {', '.join(plan.arms)} ...")
            step_rows, record = run_step(options, users, pool_file, client)
            rows += step_rows
            steps.append(record)
            _echo_step(echo, step_rows, record)
            document = LoadDocument.build({**header, "finished_at": _now()}, rows, steps)
            results.write_outputs(folder.path, document)
    finally:
        client.close()
    return LoadTestResult(document)


def _echo_step(echo, rows: list[LoadRow], record: StepRecord) -> None:
    for row in rows:
        p95 = row.latency_ms.p95
        echo(f"  {row.arm}: {row.requests} requests, {row.failures} failed, {row.requests_per_s:.2f} req/s, "
             f"p95 {'-' if p95 is None else f'{p95:g}'} ms")
        for message, count in list(row.failure_messages.items())[:3]:
            echo(f"    failure x{count}: {message}")
    if record.error:
        echo(f"  step error: {record.error}")
    for message, count in list(record.exceptions.items())[:3]:
        echo(f"  exception in the locustfile x{count}: {message}")
    for message in record.server_errors[:2]:
        echo(f"  server view unavailable: {message}")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
