"""load.json (the sweep: one `LoadRow` per arm and step, with how each step went) and requests.jsonl (one
`RequestRecord` per request).

Written by `abqa loadtest` (loadtest/runner.py: load.json after every step; requests.jsonl appended by the Locust
processes as each request completes); read by the report, MLflow tracking and the app. requests.jsonl is versioned
by load.json's `schema_version`. Every figure of a `LoadRow` is computed from the step's request records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Iterable

from pydantic import model_validator

from abqa.core.io import jsonl_line
from abqa.core.run.document import Document, Record, read_record_lines, validate
from abqa.core.run.meta import MachineInfo

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "mean", "max")
STEP_KINDS = ("users", "rate", "slo")


class LatencyPercentiles(Record):
    """Milliseconds over one arm's answered requests in one step, warm-up left out (None: no answered request,
    or, for a percentile, too few of them: `withheld` says why)."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    max: float | None = None
    samples: int = 0                        # the answered requests these figures rest on
    withheld: dict[str, str] = {}           # percentile -> why it is not given, e.g. {"p99": "n<100"}


class ServerStepView(Record):
    """Triton's own view of one arm during one step: counter differences (Prometheus), their per-request means,
    and the executions per batch size dynamic batching formed (statistics API); None where it could not be read."""

    request_count: int | None = None
    request_failures: int | None = None
    inference_count: int | None = None
    execution_count: int | None = None
    request_us: float | None = None
    queue_us: float | None = None
    compute_input_us: float | None = None
    compute_infer_us: float | None = None
    compute_output_us: float | None = None
    request_us_per_request: float | None = None
    queue_us_per_request: float | None = None
    compute_input_us_per_request: float | None = None
    compute_infer_us_per_request: float | None = None
    compute_output_us_per_request: float | None = None
    mean_batch_size: float | None = None
    batch_sizes: dict[str, int] | None = None      # batch size -> executions
    missing_counters: list[str] | None = None
    error: str | None = None


class AnswerCheck(Record):
    """The answers decoded from one arm's responses under load, against the same arm's answers to the same
    questions in isolation (eval.jsonl of the same run folder)."""

    questions: int                          # questions whose every window was answered under load
    compared: int                           # of those, with an answer of the arm in eval.jsonl
    identical: int                          # ... and the same answer text
    identical_share: float | None = None    # identical / compared
    em: float | None = None                 # percent, under load, over `questions` (scored with the data's rule)
    f1: float | None = None
    differing: list[str] = []               # a few question ids whose answers differed
    note: str | None = None                 # why nothing was compared


class LoadRow(Record):
    """One arm at one step (perf_analyzer's metric names), from the step's request records."""

    arm: str
    step: str                               # users-4 | rate-8 | slo-<arm>-rate-6.5
    users: int | None = None                # closed loop: simultaneous users
    rate: float | None = None               # open loop: this arm's scheduled arrivals per second
    requests: int                           # measured requests (warm-up left out), failed ones included
    failures: int
    requests_per_s: float                   # answered requests per measured second
    tokens_per_s: float | None = None       # real tokens (attention mask 1) of the answered requests per second
    padded_tokens_per_s: float | None = None  # tokens as sent (padded to the length bucket) per second
    latency_ms: LatencyPercentiles = LatencyPercentiles()
    answers: AnswerCheck | None = None
    server: ServerStepView = ServerStepView()
    failure_messages: dict[str, int] = {}

    _name_closed_loop_step = model_validator(mode="before")(lambda data: _closed_loop_name(data, "step"))


def _closed_loop_name(data: Any, key: str) -> Any:
    """A closed-loop step may be given by its users alone: its name is then users-N."""
    if isinstance(data, dict) and key not in data and data.get("users"):
        return {**data, key: f"users-{data['users']}"}
    return data


class WindowArm(Record):
    """One measurement window of one arm: its next `answered` answers (by completion time)."""

    start_s: float                          # since the end of the warm-up
    end_s: float
    answered: int
    requests_per_s: float
    mean_ms: float
    p50_ms: float


class GeneratorView(Record):
    """The load generator's own state during a step's measured part: was it the bottleneck?"""

    processes: int = 1                      # Locust processes (master and workers)
    cpu_percent: float | None = None        # mean CPU of the busiest process (100 = one core)
    cpu_peak_percent: float | None = None   # its highest one-poll sample
    saturated: bool = False                 # cpu_percent at or above the saturation mark
    lateness_p50_ms: float | None = None    # open loop: sent_at - scheduled_at
    lateness_p99_ms: float | None = None
    lateness_max_ms: float | None = None
    late_requests: int = 0                  # sent later than the lateness mark
    late_share: float | None = None
    behind: bool = False                    # too many late requests: the schedule was not kept


class StepRecord(Record):
    """How one Locust step went: what it sent, its folder, exit code, stability, and anything that went wrong."""

    name: str                               # users-4 | rate-8 | slo-<arm>-rate-6.5
    kind: str = "users"                     # users (closed loop) | rate (open loop) | slo (open loop, one arm)
    users: int | None = None
    rate: float | None = None               # scheduled user requests per second (open loop)
    arrivals: str | None = None             # poisson | constant (open loop)
    arms: list[str] = []                    # the arms the step sent to
    locust_dir: str
    exit_code: int | None = None
    wall_s: float | None = None
    timed_out: bool = False
    error: str | None = None
    exceptions: dict[str, int] = {}
    server_errors: list[str] = []
    warmup_s: float | None = None
    measured_s: float | None = None         # from the end of the warm-up to the last measured answer
    windows: dict[str, list[WindowArm]] = {}  # per arm, its windows of --window answers
    stable: bool | None = None              # every arm's last three windows agreed (None: fewer than three)
    stop_reason: str | None = None
    generator: GeneratorView | None = None

    _name_closed_loop_step = model_validator(mode="before")(lambda data: _closed_loop_name(data, "name"))

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and not self.exceptions


class SloResult(Record):
    """The highest rate one arm sustained alone with its p99 within the bound (MLPerf's Server scenario)."""

    arm: str
    p99_bound_ms: float
    sustained_rate: float | None = None     # the highest rate that met the bound; None: none did
    p99_ms: float | None = None             # ... and its p99 there
    samples: int | None = None
    failed_rate: float | None = None        # the lowest rate that did not
    failed_because: str | None = None
    steps: list[str] = []                   # the search's steps, in order
    statement: str


class PoolDataset(Record):
    """Where the load test's requests came from, and what the pool holds."""

    path: str | None
    source: str
    version: str
    sha256: str
    questions: int
    seed: int
    languages: list[str] | None = None
    pool_size: int
    pool_questions: int
    pool_questions_evaluated: int | None = None     # of them, answered in the run folder's eval.jsonl
    padded_lengths: dict[str, dict[str, int]]       # arm -> padded length -> windows
    inputs: dict[str, list[str]]
    inputs_from: dict[str, str]                     # arm -> "triton" (the server said) | "export" (its metadata)


class LoadTotals(Record):
    requests: int
    failures: int


class LoadDocument(Document):
    FILENAME: ClassVar[str] = "load.json"
    WRITTEN_BY: ClassVar[str] = "abqa loadtest"

    arms: list[str]
    users: list[int]
    rates: list[float] = []
    arrivals: str = "poisson"
    duration_s: float                       # the longest a step measures (after its warm-up)
    warmup_s: float = 0.0
    window: int | None = None               # answers per measurement window (per arm)
    tolerance: float | None = None
    slo_ms: float | None = None
    processes: int = 1
    mode: str                               # split | parallel
    weights: dict[str, float]
    url: str
    protocol: str
    metrics_url: str | None
    started_at: str
    finished_at: str
    standin: dict[str, bool | None]
    dataset: PoolDataset
    machine: MachineInfo
    rows: list[LoadRow]
    steps: list[StepRecord]
    slo: dict[str, SloResult] = {}
    totals: LoadTotals

    @classmethod
    def build(cls, header: dict[str, Any], rows: list[LoadRow], steps: list[StepRecord],
              slo: dict[str, SloResult] | None = None) -> "LoadDocument":
        return cls(**header, rows=rows, steps=steps, slo=slo or {}, totals=LoadTotals(
            requests=sum(row.requests for row in rows), failures=sum(row.failures for row in rows)))


class RequestRecord(Record):
    """One load-test request to one arm (requests.jsonl)."""

    arm: str
    step: str                       # e.g. users-4, rate-8
    request_id: str | None = None   # one user request; in parallel mode every arm's record of it shares the id
    question_id: str | None = None  # the pool window it sent
    window: int | None = None
    scheduled_at: float | None      # open loop: when the schedule said to send it (epoch seconds); closed: None
    sent_at: float                  # epoch seconds
    latency_ms: float | None        # open loop: from scheduled_at; closed loop: from sent_at; None if it failed
    status: str                     # ok | failed
    tokens: int | None = None
    padded_tokens: int | None = None
    warmup: bool = False
    error: str | None = None
    answer: str | None = None       # the best span of the window, decoded as `abqa evaluate` decodes it
    answer_score: float | None = None
    null_score: float | None = None

    @property
    def origin(self) -> float:
        """When the latency starts: the scheduled time in open loop, the send time in closed loop."""
        return self.scheduled_at if self.scheduled_at is not None else self.sent_at

    @property
    def finished_at(self) -> float:
        """When the answer (or the failure) came back, as far as the record tells (a failure: its send time)."""
        return self.origin + self.latency_ms / 1000.0 if self.latency_ms is not None else self.sent_at

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.latency_ms is not None


def read_request_records(path: str | Path) -> list[RequestRecord]:
    path = Path(path)
    return list(read_record_lines(RequestRecord, path)) if path.is_file() else []


class RequestLog:
    """requests.jsonl opened for appending: each batch of records is one write, flushed at once (no fsync: the
    log is written at request rate). One writer per file: the Locust process that runs (or masters) the step."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, records: Iterable[RequestRecord | dict[str, Any]]) -> int:
        lines = [jsonl_line(record.to_dict() if isinstance(record, RequestRecord)
                            else validate(RequestRecord, record, str(self.path)).to_dict()) for record in records]
        if lines:
            os.write(self._fd, "".join(lines).encode("utf-8"))
        return len(lines)

    def close(self) -> None:
        os.close(self._fd)


class RequestLogTail:
    """The records appended to requests.jsonl since the last call, complete lines only (a line still being
    written is read next time): how `abqa loadtest` follows a step while it runs."""

    def __init__(self, path: str | Path, *, from_end: bool = False):
        """`from_end`: only what is appended from now on (a step's records, after the sweep's earlier steps)."""
        self.path = Path(path)
        self._offset = self.path.stat().st_size if from_end and self.path.exists() else 0
        self._partial = b""
        self._lines = 0

    def read_new(self) -> list[RequestRecord]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        records = []
        for line in complete.decode("utf-8").splitlines():
            self._lines += 1
            if line.strip():
                records.append(validate(RequestRecord, _json(line, self.path, self._lines),
                                        f"{self.path}: line {self._lines}"))
        return records


def _json(line: str, path: Path, number: int) -> Any:
    from abqa.core.errors import AbqaError

    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise AbqaError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
