"""meta.json: what a run evaluated, with what, where, and how it ended.

Written by `abqa evaluate` (client/runner.py: at the start, and again when the run ends however it ends) and by the
router's export (router/export.py); read by resume, the report, MLflow tracking and the app.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar

from abqa.core.run.document import Document, Record


class RunStatus(str, Enum):
    RUNNING = "running"             # being written now, or the writer died without a word
    COMPLETE = "complete"           # every (question, arm) pair has a record
    INTERRUPTED = "interrupted"     # stopped by a signal; the resume command continues it
    FAILED = "failed"               # stopped by an error (the server went away, ...); resumable too


class RunKind(str, Enum):
    EVALUATION = "evaluation"       # abqa evaluate
    ROUTER_LOG = "router-log"       # abqa router export: answers to live traffic, paired by request


class ArmKind(str, Enum):
    SERVED = "served"               # a model served by Triton: answers, latency, memory
    REPLAY = "replay"               # a prediction file: answers only


class MachineInfo(Record):
    cpu_model: str
    cores: int
    cpu_flags: list[str] = []
    platform: str
    python: str
    memory_gb: float | None = None


class LanguagePart(Record):
    """One language of a multilingual data set (XQuAD)."""

    name: str                       # xquad.de
    language: str
    source: str
    path: str | None
    sha256: str
    version: str
    questions: int
    evaluated_questions: int | None = None


class DatasetInfo(Record):
    source: str                     # path | hub | shared | builtin-sample | mixed
    path: str | None
    sha256: str
    version: str                    # "1.1", "2.0" (a multilingual run: each part's, comma-joined when they differ)
    questions: int
    evaluated_questions: int
    limit: int | None = None
    sample: int | None = None
    seed: int | None = None
    languages: list[LanguagePart] | None = None


class SquadV2Settings(Record):
    null_threshold: float
    rule: str
    na_prob_files: dict[str, str] = {}


class QaSettings(Record):
    """How questions were cut into windows and answers picked (the Hugging Face QA pipeline's settings)."""

    max_seq_length: int
    doc_stride: int
    n_best: int
    max_answer_length: int
    pad_multiple: int
    squad_v2: SquadV2Settings | None = None


class TritonModel(Record):
    """A served arm as the server declared it."""

    platform: str
    versions: list[str]
    inputs: list[str]               # "name:DATATYPE"
    outputs: list[str]
    max_batch_size: int


class ArmInfo(Record):
    """An arm's provenance: a served model (from its export metadata) or a replayed prediction file."""

    kind: ArmKind
    standin: bool | None = None     # untrained weights (accuracy meaningless); None when unknown
    source: str | None = None       # hub id, local path, "standin:<architecture>", or the prediction file
    source_kind: str | None = None
    revision: str | None = None
    architecture: str | None = None
    variant: str | None = None      # fp32, O1..O4, int8
    base_arm: str | None = None     # a variant's fp32 arm (bert-int8 -> bert): the report's speed-up and agreement
    pad_multiple: int | None = None # served: its windows were padded to a multiple of this (abqa.core.qa.pad_multiple_for)
    parameters: int | None = None
    onnx_file_size: int | None = None
    onnx_sha256: str | None = None
    metadata_file: str | None = None
    triton: TritonModel | None = None
    replay_file: str | None = None
    replay_sha256: str | None = None
    predictions: int | None = None
    na_prob_file: str | None = None
    na_prob_sha256: str | None = None
    unknown_ids: int | None = None  # predicted ids the data set does not have (ignored)
    missing_ids: int = 0            # questions a replay file has no answer for
    failed: int = 0                 # questions whose request failed for good
    routed: bool = False            # answers to live traffic through `abqa router`


class DecisionPlan(Record):
    """The shipping question, declared before the data: the baseline arm every other arm is a candidate against, and
    per metric the margin (points) by which a candidate may fall below it and still count as non-inferior."""

    baseline: str | None = None
    margins: dict[str, float] = {}  # metric (f1, em) -> margin in points
    declared_at: str | None = None  # when it was first recorded (ISO 8601, UTC)


class LatencyConditions(Record):
    """Under which concurrency a run's latencies were measured. Latency measured with other requests of the run in
    flight on the same server is not a lone request's latency: a run that trades that for speed says so here, and
    the report labels its latencies (MLPerf keeps accuracy and performance runs apart for the same reason)."""

    concurrency: int                # most requests of this run in flight on the server at once; 1 = in isolation
    isolated: bool                  # concurrency == 1: no other request of the run was in flight meanwhile
    how: str                        # what set it, in words (the order)


class ServerInfo(Record):
    kind: str | None = None         # abqa-serve | triton | None (no served arm)
    url: str | None = None
    protocol: str | None = None
    pid: int | None = None
    peak_rss_mb: float | None = None
    triton_version: str | None = None


class ClientInfo(Record):
    peak_rss_mb: float | None = None


class ArmSummary(Record):
    """An arm's totals over the run's questions: the table at the end of `abqa evaluate`."""

    arm: str
    kind: str                       # served | stand-in | replay
    questions: int
    ok: int
    failed: int
    missing: int
    exact_match: float              # percent, over all the questions (failed and missing score 0)
    f1: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_mean_ms: float | None


class RouterRecordCounts(Record):
    scored: int
    unscored: int
    failed: int
    shadow: int


class RouterInfo(Record):
    db: str
    experiment: str
    policy: dict[str, Any] | None = None
    limits: dict[str, Any] | None = None
    entries: int
    first: str
    last: str
    records: RouterRecordCounts


class RunMeta(Document):
    FILENAME: ClassVar[str] = "meta.json"
    WRITTEN_BY: ClassVar[str] = "abqa evaluate"

    name: str
    kind: RunKind = RunKind.EVALUATION
    created_at: str
    updated_at: str
    sessions: int = 1               # how many `abqa evaluate` invocations wrote this folder (resumes + 1)
    dataset: DatasetInfo | None     # None: a router log whose requests named no SQuAD question
    order: str                      # random | interleaved | parallel | router-<mode>
    seed: int | None
    qa: QaSettings | None = None
    latency: LatencyConditions | None = None   # None without served arms (or in a run written before it existed)
    arms: dict[str, ArmInfo]
    server: ServerInfo
    client: ClientInfo | None = None
    versions: dict[str, str | None]
    machine: MachineInfo | None = None
    status: RunStatus
    message: str | None = None
    resume_command: str | None = None
    records: int                    # lines in eval.jsonl when this was written
    summary: dict[str, ArmSummary] = {}
    router: RouterInfo | None = None
    decision: DecisionPlan | None = None    # --baseline / --margin as declared on `abqa evaluate` or `benchmark`

    @property
    def squad_version(self) -> str | None:
        return self.dataset.version if self.dataset is not None else None
