"""load.json (the sweep: one `LoadRow` per arm and step, with how each step went) and requests.jsonl (one
`RequestRecord` per request).

Written by `abqa loadtest` (loadtest/runner.py, after every step); read by the report, MLflow tracking and the app.
requests.jsonl is versioned by load.json's `schema_version`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from abqa.core.run.document import Document, Record, read_record_lines
from abqa.core.run.meta import MachineInfo

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "mean", "max")


class LatencyPercentiles(Record):
    """Milliseconds over one arm's answered requests in one step (None: no answered request)."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    max: float | None = None


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


class LoadRow(Record):
    """One arm at one concurrency step (perf_analyzer's metric names)."""

    arm: str
    users: int
    requests: int
    failures: int
    requests_per_s: float
    latency_ms: LatencyPercentiles = LatencyPercentiles()
    server: ServerStepView = ServerStepView()
    failure_messages: dict[str, int] = {}


class StepRecord(Record):
    """How one Locust step went: its folder, exit code, and anything that went wrong."""

    users: int
    locust_dir: str
    exit_code: int | None = None
    wall_s: float | None = None
    timed_out: bool = False
    error: str | None = None
    exceptions: dict[str, int] = {}
    server_errors: list[str] = []

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and not self.exceptions


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
    duration_s: float
    mode: str                       # split | parallel
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
    totals: LoadTotals

    @classmethod
    def build(cls, header: dict[str, Any], rows: list[LoadRow], steps: list[StepRecord]) -> "LoadDocument":
        return cls(**header, rows=rows, steps=steps, totals=LoadTotals(
            requests=sum(row.requests for row in rows), failures=sum(row.failures for row in rows)))


class RequestRecord(Record):
    """One load-test request (requests.jsonl)."""

    arm: str
    step: str                       # e.g. users-4, rate-8
    scheduled_at: float | None      # open loop: when the schedule said to send it (epoch seconds); closed: None
    sent_at: float                  # epoch seconds
    latency_ms: float | None        # open loop: from scheduled_at; closed loop: from sent_at; None if it failed
    status: str                     # ok | failed
    tokens: int | None = None
    padded_tokens: int | None = None
    warmup: bool = False
    error: str | None = None


def read_request_records(path: str | Path) -> list[RequestRecord]:
    path = Path(path)
    return list(read_record_lines(RequestRecord, path)) if path.is_file() else []
