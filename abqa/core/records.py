"""Typed records that pass between the stages, and the files that hold them.

export   -> model_repository/<arm>/abqa-metadata.json      (ExportMetadata)
evaluate -> runs/<name>/eval.jsonl (EvalRecord per question and arm) + runs/<name>/meta.json
loadtest -> runs/<name>/load.json (LoadResult: LoadRow per arm and concurrency step) + load.csv
report   -> runs/<name>/report.{html,md,json}
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from abqa.core.errors import AbqaError
from abqa.core.io import read_json_file

EVAL_FILENAME = "eval.jsonl"
META_FILENAME = "meta.json"
LOAD_JSON_FILENAME = "load.json"
LOAD_CSV_FILENAME = "load.csv"

STANDIN_WARNING = (
    "STAND-IN: untrained weights with the published architecture; latency, memory and size are "
    "the real model's, accuracy is meaningless"
)


@dataclass
class ExportMetadata:
    """What `abqa export` knows about one arm; written beside its config.pbtxt."""

    arm: str
    source: str                      # hub id, local path, or "standin:<architecture>"
    source_kind: str                 # "hub" | "local" | "standin"
    standin: bool
    architecture: str                # "bert" | "distilbert" | other model_type
    variant: str = "fp32"            # "fp32" | "O1".."O4" | "int8"
    base_arm: str | None = None      # for variants: the arm they were derived from
    revision: str | None = None      # hub commit sha when known
    num_layers: int | None = None
    hidden_size: int | None = None
    parameters: int | None = None
    onnx_file_size: int | None = None
    onnx_sha256: str | None = None
    opset: int | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    max_seq_length: int = 384
    max_batch_size: int = 0
    do_lower_case: bool = True
    validation_max_abs_diff: float | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    created_at: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExportMetadata":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def read(cls, path: str | Path) -> "ExportMetadata":
        if not Path(path).is_file():
            raise AbqaError(f"{path}: missing; re-run `abqa export` for this arm")
        data, _ = read_json_file(path, str(path))
        try:
            return cls.from_dict(data)
        except (AttributeError, TypeError) as exc:  # not an object, or a required field missing
            raise AbqaError(
                f"{path}: not a valid abqa metadata file ({exc}); re-run `abqa export` for this arm") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalRecord:
    """One question answered by one arm: a line of eval.jsonl."""

    id: str
    arm: str
    prediction: str | None
    em: float                        # 0.0 or 1.0
    f1: float                        # 0.0 .. 1.0
    latency_ms: float | None         # client end to end for the question; None for replayed arms
    windows: int | None
    tokens: int | None
    started_at: str                  # ISO 8601, UTC
    status: str = "ok"               # "ok" | "failed" | "missing" (replay file had no answer)
    error: str | None = None
    # SQuAD v2.0 only (None on v1.1 runs): whether the question has an answer (HasAns/NoAns), and the no-answer
    # score minus the best span score (served arms; replayed arms from their na_prob file), for the
    # best-threshold search of the report.
    has_answer: bool | None = None
    null_score_diff: float | None = None
    # Multilingual runs only (None otherwise): the question's language, e.g. "de" for xquad.de; it picks the
    # scoring rule (MLQA's convention) and the report's per-language tables.
    language: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadRow:
    """One arm at one concurrency step of `abqa loadtest` (perf_analyzer's metric names)."""

    arm: str
    users: int
    requests: int
    failures: int
    requests_per_s: float
    latency_ms: dict[str, float | None]          # p50, p90, p95, p99, mean, max
    server: dict[str, Any] = field(default_factory=dict)  # Triton's view: request count, queue/compute us, batch sizes
    failure_messages: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoadRow":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
