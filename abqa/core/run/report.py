"""report.json: everything `abqa report` computed, the verdict first among equals.

Written by the analysis stage (analysis/report.py); read by MLflow tracking and the app. The statistical blocks
of a pair (McNemar, paired t, bootstrap differences, ...) are the analysis stage's own records, kept as JSON
objects here: they are shown, not computed on, by the readers.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import field_validator

from abqa.core.run.document import Document, Record
from abqa.core.run.load import LoadRow

StatBlock = dict[str, Any]
Interval = list[float | None]       # [low, high]


class Provenance(Record):
    """Where an arm's numbers come from: a served model, a stand-in, a replayed file (or unknown)."""

    kind: str                       # served | replay | unknown
    standin: bool
    tag: str
    label: str
    description: str
    inferred: bool                  # meta.json did not say; guessed from the records
    source: str | None = None
    revision: str | None = None
    replay_file: str | None = None
    replay_sha256: str | None = None
    unknown_ids: int | None = None
    missing_ids: int | None = None


class LoadStepReport(Record):
    """One arm at one load step, with Triton's cumulative times per request in milliseconds."""

    users: int
    requests: int
    failures: int
    requests_per_s: float
    latency_ms: dict[str, float | None]
    server_requests: int | None = None
    queue_ms_per_request: float | None = None
    compute_input_ms_per_request: float | None = None
    compute_infer_ms_per_request: float | None = None
    compute_output_ms_per_request: float | None = None
    server_request_ms_per_request: float | None = None
    batch_sizes: dict[str, int] = {}
    mean_batch_size: float | None = None
    server_error: str | None = None
    failure_messages: dict[str, int] = {}

    @classmethod
    def from_row(cls, row: LoadRow) -> "LoadStepReport":
        """A load.json row with Triton's cumulative times turned into milliseconds per request."""
        server = row.server
        requests = server.request_count or 0

        def per_request_ms(name: str) -> float | None:
            per_request = getattr(server, f"{name}_us_per_request")
            if per_request is not None:
                return float(per_request) / 1000.0
            total = getattr(server, f"{name}_us")
            return float(total) / requests / 1000.0 if total is not None and requests else None

        # Executions per batch size, as dynamic batching formed them.
        batch_sizes = {str(int(size)): int(count) for size, count in (server.batch_sizes or {}).items()}
        executions = sum(batch_sizes.values())
        mean_batch = server.mean_batch_size
        if mean_batch is None and executions:
            mean_batch = sum(int(size) * count for size, count in batch_sizes.items()) / executions
        return cls(
            users=row.users, requests=row.requests, failures=row.failures, requests_per_s=row.requests_per_s,
            latency_ms=row.latency_ms.to_dict(), server_requests=server.request_count,
            queue_ms_per_request=per_request_ms("queue"),
            compute_input_ms_per_request=per_request_ms("compute_input"),
            compute_infer_ms_per_request=per_request_ms("compute_infer"),
            compute_output_ms_per_request=per_request_ms("compute_output"),
            server_request_ms_per_request=per_request_ms("request"),
            batch_sizes=batch_sizes, mean_batch_size=mean_batch, server_error=server.error,
            failure_messages=dict(row.failure_messages),
        )


class ArmModel(Record):
    architecture: str | None = None
    variant: str | None = None
    parameters: int | None = None
    onnx_file_size: int | None = None


class ArmReport(Record):
    provenance: Provenance
    accuracy_meaningful: bool
    questions: int
    ok: int
    failed: int
    missing: int
    unscored: int = 0
    duplicates: int
    em: float | None                # percent
    em_ci: Interval
    f1: float | None
    f1_ci: Interval
    latency_ms: StatBlock | None    # n, p50..p99, mean, min, max, ci{...}
    error_messages: dict[str, int] = {}
    model: ArmModel
    load: list[LoadStepReport] | None = None
    squad_v2: StatBlock | None = None


class PairTest(Record):
    """Every paired test of arm_a against arm_b; differences are a - b."""

    arm_a: str
    arm_b: str
    difference: str
    paired_questions: int
    only_a: int
    only_b: int
    error: str | None = None
    accuracy_meaningful: bool = True
    mcnemar: StatBlock | None = None
    paired_t_f1: StatBlock | None = None
    wilcoxon_f1: StatBlock | None = None
    em_diff: StatBlock | None = None
    f1_diff: StatBlock | None = None
    effect_sizes: StatBlock | None = None
    power: StatBlock | None = None
    latency: StatBlock | None = None


class RunFacts(Record):
    """What the report says about the run itself (from meta.json, or the folder when there is none)."""

    name: str
    dir: str
    files: dict[str, bool]
    kind: str | None = None
    created_at: str | None = None
    status: str | None = None
    order: str | None = None
    seed: int | None = None
    dataset: StatBlock | None = None
    server: StatBlock | None = None
    client: StatBlock | None = None
    machine: StatBlock | None = None
    latency: StatBlock | None = None    # meta.json's latency conditions: concurrency, isolated, how
    versions: dict[str, str | None] | None = None


class ReportSettingsInfo(Record):
    bootstrap_resamples: int
    seed: int
    confidence: float
    alpha: float
    power: float
    bootstrap: str
    multiple_comparisons: str


class LoadFacts(Record):
    mode: str | None = None
    users: list[int] | None = None
    duration_s: float | None = None
    weights: dict[str, float] | None = None
    url: str | None = None
    started_at: str | None = None
    arms: list[str] | None = None


class ReportData(Document):
    FILENAME: ClassVar[str] = "report.json"
    WRITTEN_BY: ClassVar[str] = "abqa report"

    run: RunFacts
    settings: ReportSettingsInfo
    arms: dict[str, ArmReport]
    tests: dict[str, PairTest]
    load: LoadFacts | None = None
    notes: list[str]
    verdict: list[str]
    languages: StatBlock | None = None
    plots: dict[str, str] = {}      # plot name -> PNG path relative to the run folder

    def to_dict(self) -> dict[str, Any]:
        """Blocks the analysis did not compute (a v1.1 run's squad_v2, a single-language run's languages) stay out
        of the file rather than appearing as null."""
        return self.model_dump(mode="json", exclude_unset=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nan(cls, value: Any) -> Any:
        """NaN and infinity are not JSON: they are written as null."""
        return json_safe(value)


def json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
