"""The arms of an evaluation: models served by Triton, and prediction files replayed as if they were models.

A served arm answers a question end to end (tokenise into windows, one request per length bucket, best span)
and reports its latency; a replay arm looks the answer up in a SQuAD leaderboard-style file ({id: answer}).
Both turn a question into an `EvalRecord` scored with the official metric.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from abqa.core.config import MAX_SEQ_LENGTH, validate_arm_name
from abqa.core.errors import AbqaError
from abqa.core.io import read_json_file
from abqa.core.qa import (Answer, answer_with_null_threshold, best_answer, encode_question, group_by_length,
                          load_tokenizer, pad_multiple_for)
from abqa.core.records import ExportMetadata
from abqa.core.run import ArmInfo, ArmKind, EvalRecord, EvalStatus, TritonModel
from abqa.core.scoring import SQUAD_V1, ScoringRule
from abqa.core.repository import ArmPaths
from abqa.core.squad import SquadQuestion

log = logging.getLogger(__name__)

START_LOGITS, END_LOGITS = "start_logits", "end_logits"
STATUS_OK, STATUS_FAILED, STATUS_MISSING = EvalStatus.OK, EvalStatus.FAILED, EvalStatus.MISSING


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def scored_record(question: SquadQuestion, arm: str, prediction: str | None, *, started_at: str,
                  latency_ms: float | None = None, windows: int | None = None, tokens: int | None = None,
                  status: EvalStatus = STATUS_OK, error: str | None = None, rule: ScoringRule = SQUAD_V1,
                  null_score_diff: float | None = None) -> EvalRecord:
    """An eval.jsonl record scored with the data set's `rule`: no prediction (failed or missing) scores 0, never
    disappears. A multilingual run (XQuAD) scores by MLQA's convention in the question's language.

    A rule that allows "no answer" (SQuAD v2.0: "" is right when there is none): the record says whether the
    question has an answer and carries the arm's no-answer score difference, when there is one."""
    score = rule.score(prediction, question.answer_texts, question.language)
    v2 = rule.allows_no_answer
    return EvalRecord(id=question.id, arm=arm, prediction=prediction, em=score.em, f1=score.f1, latency_ms=latency_ms,
                      windows=windows, tokens=tokens, started_at=started_at, status=status, error=error,
                      language=question.language, has_answer=question.has_answer if v2 else None,
                      null_score_diff=null_score_diff if v2 else None)


# --- replay arms ---------------------------------------------------------------------------------------------------


def parse_replay_spec(text: str) -> tuple[str, Path]:
    """`NAME=predictions.json` -> (name, path)."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise AbqaError(f"--replay {text!r}: expected NAME=PREDICTIONS.json (e.g. bert=predictions/bert.json)")
    return validate_arm_name(name.strip()), Path(path.strip())


def parse_predictions(obj: Any, *, where: str) -> dict[str, str]:
    """Validate a decoded prediction file: a JSON object of question id -> answer string."""
    if not isinstance(obj, dict):
        raise AbqaError(f"{where}: expected a JSON object mapping question id to answer text, got {type(obj).__name__}")
    bad = [key for key, value in obj.items() if not isinstance(value, str)]
    if bad:
        shown = ", ".join(f"{key!r} ({type(obj[key]).__name__})" for key in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise AbqaError(f"{where}: answers must be strings; not for {shown}{more}")
    return obj


@dataclass
class ReplayArm:
    name: str
    path: Path
    sha256: str
    predictions: dict[str, str]
    unknown_ids: list[str] = field(default_factory=list)   # ids not in the data set (ignored)
    rule: ScoringRule = SQUAD_V1                            # how the data set's answers are scored
    na_probs: dict[str, float] | None = None                # SQuAD v2.0 na_prob file (id -> no-answer score)
    na_prob_path: Path | None = None
    na_prob_sha256: str | None = None
    kind = "replay"

    @classmethod
    def load(cls, name: str, path: Path, split_ids: set[str], *, rule: ScoringRule = SQUAD_V1,
             na_prob_path: Path | None = None) -> "ReplayArm":
        where = f"--replay {name}={path}"
        obj, raw = read_json_file(path, where)
        predictions = parse_predictions(obj, where=where)
        unknown = [question_id for question_id in predictions if question_id not in split_ids]
        if unknown:
            log.warning("%s: %d prediction id(s) are not in the data set and are ignored (e.g. %s)",
                        where, len(unknown), ", ".join(unknown[:3]))
        na_probs = na_prob_sha256 = None
        if na_prob_path is not None:
            na_prob_path = Path(na_prob_path)
            na_probs, na_prob_sha256 = load_na_probs(name, na_prob_path, predictions)
        return cls(name, path, hashlib.sha256(raw).hexdigest(), predictions, unknown, rule, na_probs, na_prob_path,
                   na_prob_sha256)

    def answer(self, question: SquadQuestion) -> EvalRecord:
        """The file's answer, scored as given (a replayed "" is a "no answer"; no threshold is applied to it)."""
        prediction = self.predictions.get(question.id)
        status = STATUS_OK if prediction is not None else STATUS_MISSING
        na_prob = self.na_probs.get(question.id) if self.na_probs is not None and prediction is not None else None
        return scored_record(question, self.name, prediction, started_at=utc_now(), status=status,
                             error=None if prediction is not None else "no prediction for this id in the replay file",
                             rule=self.rule, null_score_diff=na_prob)

    def provenance(self, missing_ids: int) -> ArmInfo:
        na_prob = self.na_prob_path is not None
        return ArmInfo(kind=ArmKind.REPLAY, standin=False, source=str(self.path),
                       replay_file=str(self.path.resolve()), replay_sha256=self.sha256,
                       predictions=len(self.predictions), unknown_ids=len(self.unknown_ids), missing_ids=missing_ids,
                       na_prob_file=str(self.na_prob_path.resolve()) if na_prob else None,
                       na_prob_sha256=self.na_prob_sha256 if na_prob else None)


def parse_na_prob_spec(text: str) -> tuple[str, Path]:
    """`NAME=na_prob.json` -> (name, path): the no-answer scores of replay arm NAME (SQuAD v2.0)."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise AbqaError(f"--na-prob {text!r}: expected NAME=NA_PROB.json, NAME being a --replay arm")
    return validate_arm_name(name.strip()), Path(path.strip())


def load_na_probs(name: str, path: Path, predictions: dict[str, str]) -> tuple[dict[str, float], str]:
    """An official SQuAD v2.0 na_prob file ({id: no-answer probability or score}) for replay arm `name`, and its
    sha256. Every answered id needs a number: the best-threshold search orders the questions by it."""
    where = f"--na-prob {name}={path}"
    obj, raw = read_json_file(path, where)
    if not isinstance(obj, dict):
        raise AbqaError(f"{where}: expected a JSON object mapping question id to a number, got {type(obj).__name__}")
    bad = [key for key, value in obj.items()
           if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value)]
    if bad:
        raise AbqaError(f"{where}: values must be finite numbers; not for {', '.join(repr(k) for k in bad[:5])}"
                        + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))
    absent = [question_id for question_id in predictions if question_id not in obj]
    if absent:
        raise AbqaError(f"{where}: no no-answer score for {len(absent)} predicted id(s), e.g. {absent[0]}")
    return {key: float(value) for key, value in obj.items()}, hashlib.sha256(raw).hexdigest()


# --- served arms ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """A served arm's answer to one question: the span (with its score), and what it took."""

    answer: Answer
    latency_ms: float               # tokenise, every request to Triton, post-process
    windows: int
    tokens: int


@dataclass
class ServedArm:
    """A Triton model answering questions. Not thread-safe: the runner calls it from one worker thread only."""

    name: str
    repository: Path
    url: str
    protocol: str
    timeout_s: float = 60.0
    retry: Any = None
    rule: ScoringRule = SQUAD_V1    # how answers are scored; if it allows "no answer": "" when the null score wins
    null_threshold: float = 0.0     # SQuAD v2.0: "" when null score - best span score > this
    kind = "served"

    def __post_init__(self) -> None:
        self.client = None
        self.model = None
        self.tokenizer = None
        self.export: ExportMetadata | None = None
        self.max_seq_length = MAX_SEQ_LENGTH

    @property
    def standin(self) -> bool:
        """Exported as a stand-in (untrained weights): its answers score meaninglessly. False when unknown."""
        return self.export is not None and self.export.standin

    def connect(self) -> None:
        """Connect, read the model's tensors from the server and load the arm's tokenizer (in the worker thread)."""
        from abqa.triton.client import TritonClient
        from abqa.triton.endpoint import Endpoint

        self.client = TritonClient(Endpoint.parse(self.url, self.protocol), timeout_s=self.timeout_s, retry=self.retry)
        if not self.client.server_live():
            raise AbqaError(f"no Triton server answers at {self.client.endpoint}: start one with "
                            "`abqa serve` (or pass --url/--protocol, or --start-server)")
        self.model = self.client.model_info(self.name)
        missing = [name for name in (START_LOGITS, END_LOGITS) if name not in self.model.output_names]
        if missing:
            raise AbqaError(f"arm {self.name}: the served model has no output {', '.join(missing)} "
                            f"(it has {', '.join(self.model.output_names)}); is it a question-answering export?")
        paths = ArmPaths(self.repository, self.name)
        metadata_path = paths.metadata
        if metadata_path.is_file():
            self.export = ExportMetadata.read(metadata_path)
            self.max_seq_length = min(MAX_SEQ_LENGTH, self.export.max_seq_length or MAX_SEQ_LENGTH)
        else:
            log.warning("arm %s: no %s; provenance unknown (pass --model-repository of the served repository)",
                        self.name, metadata_path)
        self.tokenizer = load_tokenizer(paths.tokenizer)

    @property
    def pad_multiple(self) -> int:
        """The length buckets of this arm's requests (abqa.core.qa.pad_multiple_for its device)."""
        return pad_multiple_for(self.model.instance_kind if self.model is not None else None)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def answer(self, question: SquadQuestion) -> EvalRecord:
        """Answer one question end to end and time it; a request that fails for good raises InferFailed."""
        started_at = utc_now()
        prediction = self.predict(question.question, question.context)
        text = prediction.answer.text
        if self.rule.allows_no_answer:
            text = answer_with_null_threshold(prediction.answer, self.null_threshold)
        return scored_record(question, self.name, text, started_at=started_at,
                             latency_ms=prediction.latency_ms, windows=prediction.windows, tokens=prediction.tokens,
                             rule=self.rule, null_score_diff=prediction.answer.null_score_diff)

    def predict(self, question: str, context: str) -> Prediction:
        """The best span for any question and context (no reference needed: the router and the app use this),
        timed end to end; a request that fails for good raises InferFailed."""
        began = time.perf_counter()
        windows = encode_question(self.tokenizer, question, context, input_names=self.model.input_names,
                                  max_seq_length=self.max_seq_length, pad_multiple=self.pad_multiple)
        start_logits: list[np.ndarray | None] = [None] * len(windows)
        end_logits: list[np.ndarray | None] = [None] * len(windows)
        batch_limit = self.model.max_batch_size or 1
        for indices, arrays in group_by_length(windows):
            for first in range(0, len(indices), batch_limit):
                chunk = indices[first:first + batch_limit]
                batch = {name: values[first:first + batch_limit] for name, values in arrays.items()}
                if not self.model.max_batch_size:  # a model without a batch dimension takes one window at a time
                    batch = {name: values[0] for name, values in batch.items()}
                outputs = self.client.infer(self.model, batch)
                starts, ends = np.atleast_2d(outputs[START_LOGITS]), np.atleast_2d(outputs[END_LOGITS])
                for row, window_index in enumerate(chunk):
                    start_logits[window_index], end_logits[window_index] = starts[row], ends[row]
        answer = best_answer(windows, start_logits, end_logits, context)
        latency_ms = (time.perf_counter() - began) * 1000.0
        return Prediction(answer, latency_ms, len(windows), sum(window.length for window in windows))

    def failed_record(self, question: SquadQuestion, started_at: str, error: str) -> EvalRecord:
        return scored_record(question, self.name, None, started_at=started_at, status=STATUS_FAILED, error=error,
                             rule=self.rule)

    def provenance(self, failed: int = 0) -> ArmInfo:
        export = self.export
        info = ArmInfo(kind=ArmKind.SERVED, failed=failed)
        if export is not None:
            info = info.model_copy(update={
                "standin": export.standin, "source": export.source, "source_kind": export.source_kind,
                "revision": export.revision, "architecture": export.architecture, "variant": export.variant,
                "base_arm": export.base_arm,
                "parameters": export.parameters, "onnx_file_size": export.onnx_file_size,
                "onnx_sha256": export.onnx_sha256,
                "metadata_file": str(ArmPaths(self.repository, self.name).metadata.resolve())})
        if self.model is not None:
            info.pad_multiple = self.pad_multiple
            info.triton = TritonModel(
                platform=self.model.platform, versions=list(self.model.versions),
                inputs=[f"{t.name}:{t.datatype}" for t in self.model.inputs],
                outputs=[f"{t.name}:{t.datatype}" for t in self.model.outputs],
                max_batch_size=self.model.max_batch_size)
        return info
