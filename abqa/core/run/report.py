"""report.json: everything `abqa report` computed, the verdict first among equals.

Written by the analysis stage (analysis/report.py); read by MLflow tracking and the app. The statistical blocks
of a pair (McNemar, paired t, bootstrap differences, ...) are the analysis stage's own records, kept as JSON
objects here: they are shown, not computed on, by the readers.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import field_validator

from abqa.core.run.document import Document, Record
from abqa.core.run.load import LATENCY_KEYS, LoadRow, StepRecord

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

    step: str
    kind: str = "users"                     # users (closed loop) | rate (open loop) | slo (open loop, arm alone)
    users: int | None = None
    rate: float | None = None               # the arm's scheduled arrivals per second (open loop)
    requests: int
    failures: int
    requests_per_s: float
    tokens_per_s: float | None = None
    padded_tokens_per_s: float | None = None
    latency_ms: dict[str, float | None]
    samples: int = 0                        # answered requests the latency figures rest on
    withheld: dict[str, str] = {}           # percentile -> why it is not given ("n<100")
    answers: StatBlock | None = None        # the AnswerCheck of load.json
    stable: bool | None = None
    generator: str | None = None            # "saturated" | "behind" when the load generator was the bottleneck
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
    def from_row(cls, row: LoadRow, step: StepRecord | None = None) -> "LoadStepReport":
        """A load.json row (with its step's record) with Triton's cumulative times turned into milliseconds per
        request."""
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
        latency = row.latency_ms.to_dict()
        generator = step.generator if step is not None else None
        return cls(
            step=row.step, kind=step.kind if step is not None else ("users" if row.users else "rate"),
            users=row.users, rate=row.rate, requests=row.requests, failures=row.failures,
            requests_per_s=row.requests_per_s, tokens_per_s=row.tokens_per_s,
            padded_tokens_per_s=row.padded_tokens_per_s,
            latency_ms={key: latency[key] for key in LATENCY_KEYS}, samples=row.latency_ms.samples,
            withheld=dict(row.latency_ms.withheld),
            answers=row.answers.to_dict() if row.answers is not None else None,
            stable=step.stable if step is not None else None,
            generator=("saturated" if generator.saturated else "behind" if generator.behind else None)
            if generator is not None else None,
            server_requests=server.request_count,
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
    failures: StatBlock | None = None       # failed/missing per arm, McNemar on failed vs answered
    signflip: StatBlock | None = None       # the verdict's test: EM and F1 differences, CI and p, raw and adjusted
    assumptions: StatBlock | None = None    # normality of the F1 differences; which test the verdict rests on
    agreement: StatBlock | None = None      # share of identical answer texts


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
    latency_bootstrap: str | None = None
    verdict_test: str | None = None


class LoadFacts(Record):
    mode: str | None = None
    users: list[int] | None = None
    rates: list[float] | None = None
    arrivals: str | None = None
    duration_s: float | None = None
    warmup_s: float | None = None
    window: int | None = None
    tolerance: float | None = None
    processes: int | None = None
    weights: dict[str, float] | None = None
    url: str | None = None
    started_at: str | None = None
    arms: list[str] | None = None
    slo_ms: float | None = None
    slo: dict[str, StatBlock] | None = None         # arm -> SloResult
    paired: list[StatBlock] | None = None           # parallel mode: per step, the per-request latency difference
    unstable_steps: list[str] | None = None
    unjudged_steps: list[str] | None = None         # too few answers for three windows
    generator_flags: dict[str, str] | None = None   # step -> "saturated" | "behind"


class NonInferiority(Record):
    """One candidate against the baseline on one metric: is it at most `margin` points worse?"""

    candidate: str
    baseline: str
    metric: str                     # f1 | em
    margin: float                   # points
    difference: float               # candidate - baseline, points
    ci_low: float | None            # two-sided 95% CI (Bonferroni-widened with several candidates)
    ci_high: float | None
    p_value: float                  # one-sided, H0: difference <= -margin (adjusted with the CI)
    conclusion: Literal["non-inferior", "inferior", "inconclusive"]


class Equivalence(Record):
    """TOST beside non-inferiority: both one-sided tests of +-margin, the 1 - 2 alpha CI within the margins."""

    candidate: str
    baseline: str
    metric: str
    margin: float
    difference: float
    ci_low: float | None
    ci_high: float | None
    confidence: float
    p_value: float                  # the larger of the two one-sided p-values
    conclusion: Literal["equivalent", "not shown equivalent"]


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
    decision: StatBlock | None = None           # baseline, margins, declared (meta.json), chosen_after_data, ...
    noninferiority: list[NonInferiority] = []
    equivalence: list[Equivalence] = []
    sample_caveats: list[str] = []              # why the questions are not a random sample (--limit, partial run)
    variants: list[StatBlock] = []              # variant arms against their fp32 base: speed-up, agreement
    where: StatBlock | None = None              # per token bucket / window count; latency lines in tokens
    tradeoff: StatBlock | None = None           # F1 vs p95 vs sustained throughput, dominated arms, cost

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
