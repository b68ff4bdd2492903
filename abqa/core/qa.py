"""Extractive QA around a served model: question + context -> windows of token ids, logits -> answer text.

Tokenisation follows the Hugging Face question-answering pipeline (fast tokenizer): question first, only the
context truncated, `max_seq_length` 384 with `doc_stride` 128 tokens of overlap between windows, offsets kept
so that an answer is a substring of the context. Each window is padded only up to its length bucket, the next
multiple of the device's pad multiple (`pad_multiple_for`: Triton's dynamic batcher merges only requests of the
same shape, so buckets trade padding against batch formation). Post-processing is the reference SQuAD one (transformers' `run_qa.py`): the
`n_best` highest start and end logits per window among context tokens, spans of at most `max_answer_length`
tokens, score = start logit + end logit, best over all windows. For SQuAD v2.0 the answer also carries the null
score ([CLS] start + end logit, lowest over the windows), and `answer_with_null_threshold` answers "" when the
null score beats the best span by more than a threshold (transformers' run_squad `null_score_diff_threshold`).

Everything here is pure (numpy in, numpy out) except `load_tokenizer`, which reads a tokenizer folder.
The load test builds its request pool with the same `encode_question`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from abqa.core.config import (DOC_STRIDE, MAX_ANSWER_LENGTH, MAX_QUESTION_LENGTH, MAX_SEQ_LENGTH, N_BEST, PAD_MULTIPLE,
                              PAD_MULTIPLE_GPU)
from abqa.core.errors import AbqaError

TOKEN_TYPE_IDS = "token_type_ids"


@dataclass(frozen=True)
class Window:
    """One model input: question + a slice of the context, padded to a length bucket."""

    arrays: dict[str, np.ndarray]   # input name -> int64 [padded_length]
    length: int                     # real tokens; the rest is padding (attention_mask 0)
    context_mask: np.ndarray        # bool [length]: True where the token comes from the context
    offsets: np.ndarray             # int64 [length, 2]: the token's character span in the context

    @property
    def padded_length(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])


@dataclass(frozen=True)
class Answer:
    text: str                       # context[start_char:end_char]; "" when no span is possible
    start_char: int
    end_char: int
    score: float                    # start logit + end logit; -inf when no span is possible
    window: int | None              # index of the window the answer came from
    # SQuAD v2.0: the "no answer" score, start + end logit at [CLS] (position 0), lowest over the windows
    # (like transformers' run_squad / run_qa); None when it was not computed.
    null_score: float | None = None

    @property
    def null_score_diff(self) -> float | None:
        """null score - best span score (run_squad's score_diff, its null_odds.json): above the threshold, the
        question is answered "" (no answer). None without a null score or without any possible span."""
        if self.null_score is None or not np.isfinite(self.score):
            return None
        return float(self.null_score - self.score)


NO_ANSWER = Answer("", 0, 0, float("-inf"), None)


def pad_multiple_for(instance_kind: str | None) -> int:
    """The length-bucket policy: the multiple a window is padded to on the device a model runs on.

    On a CPU every padded token costs compute (latency grows about linearly with length) while batching gains
    little (benchmarks/performance.py: batch 8 against batch 1), so buckets are fine: padding to a multiple of 8
    adds 2% tokens over the SQuAD v1.1 dev set, a multiple of 64 adds 18%. On a GPU a batch costs little more
    than one request, so requests that merge matter more than padding: 64 (six buckets up to 384)."""
    return PAD_MULTIPLE_GPU if instance_kind == "KIND_GPU" else PAD_MULTIPLE


def padded_length(length: int, pad_multiple: int = PAD_MULTIPLE, max_seq_length: int = MAX_SEQ_LENGTH) -> int:
    """The bucket a window of `length` tokens is padded to: the next multiple of `pad_multiple`, at most the
    maximum sequence length (and never below `length`)."""
    if pad_multiple <= 1:
        return length
    bucket = -(-length // pad_multiple) * pad_multiple
    return max(length, min(bucket, max_seq_length))


def encode_question(
    tokenizer: Any,
    question: str,
    context: str,
    *,
    input_names: Sequence[str] | None = None,
    max_seq_length: int = MAX_SEQ_LENGTH,
    doc_stride: int = DOC_STRIDE,
    max_question_length: int = MAX_QUESTION_LENGTH,
    pad_multiple: int = PAD_MULTIPLE,
) -> list[Window]:
    """Windows of (question, context) for a fast tokenizer, with arrays for exactly `input_names`.

    `input_names` are the model's inputs as the server reports them (default: the tokenizer's own); a model
    input the tokenizer does not produce is an error, except `token_type_ids`, which is all zeros.
    A question longer than `max_question_length` tokens is cut to that many (the pipeline's slow path does the
    same), so that a very long question cannot leave no room for the context.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise AbqaError(f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer: offsets need one")
    question = _truncate_question(tokenizer, question.lstrip(), max_question_length)
    encoding = tokenizer(
        question,
        context,
        truncation="only_second",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
        padding=False,
    )
    names = list(input_names) if input_names is not None else list(tokenizer.model_input_names)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    windows = []
    for index in range(len(encoding["input_ids"])):
        sequence_ids = encoding.sequence_ids(index)
        length = len(encoding["input_ids"][index])
        context_mask = np.array([sid == 1 for sid in sequence_ids], dtype=bool)
        offsets = np.asarray(encoding["offset_mapping"][index], dtype=np.int64).reshape(length, 2)
        target = padded_length(length, pad_multiple, max_seq_length)
        arrays = {}
        for name in names:
            if name in encoding:
                values = np.asarray(encoding[name][index], dtype=np.int64)
            elif name == TOKEN_TYPE_IDS:
                values = np.zeros(length, dtype=np.int64)
            else:
                raise AbqaError(f"the model needs input {name!r}, which the tokenizer does not produce "
                                f"(it gives {', '.join(k for k in encoding if k not in ('offset_mapping', 'overflow_to_sample_mapping'))})")
            fill = pad_id if name == "input_ids" else 0
            arrays[name] = np.pad(values, (0, target - length), constant_values=fill)
        windows.append(Window(arrays, length, context_mask, offsets))
    return windows


def _truncate_question(tokenizer: Any, question: str, max_tokens: int) -> str:
    if max_tokens <= 0:
        return question
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoded["input_ids"]) <= max_tokens:
        return question
    return question[: encoded["offset_mapping"][max_tokens - 1][1]]


def group_by_length(windows: Sequence[Window]) -> list[tuple[list[int], dict[str, np.ndarray]]]:
    """Batches of windows with the same padded length: [(window indices, {input name: int64 [n, length]})].

    Windows of one question are all full-length except the last, so this makes at most two requests per
    question and pads nothing beyond each window's own bucket.
    """
    by_length: dict[int, list[int]] = {}
    for index, window in enumerate(windows):
        by_length.setdefault(window.padded_length, []).append(index)
    batches = []
    for indices in by_length.values():
        names = windows[indices[0]].arrays.keys()
        batches.append((indices, {name: np.stack([windows[i].arrays[name] for i in indices]) for name in names}))
    return batches


def best_answer(
    windows: Sequence[Window],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    context: str,
    *,
    n_best: int = N_BEST,
    max_answer_length: int = MAX_ANSWER_LENGTH,
) -> Answer:
    """The best span over all windows, as a substring of `context`.

    Per window, the `n_best` highest start and end logits among context tokens are paired; a pair is kept when
    end >= start and the span has at most `max_answer_length` tokens; its score is start + end logit. Logits
    may be longer than the window (padding): only the first `window.length` positions count. Ties keep the
    earlier window and, within one, the higher-ranked start, like `run_qa.py`'s stable sort.
    """
    if not (len(windows) == len(start_logits) == len(end_logits)):
        raise ValueError(f"{len(windows)} windows but {len(start_logits)} start and {len(end_logits)} end logits")
    best = NO_ANSWER
    for index, window in enumerate(windows):
        candidate = best_span_in_window(window, np.asarray(start_logits[index]), np.asarray(end_logits[index]),
                                        n_best=n_best, max_answer_length=max_answer_length)
        if candidate is None:
            continue
        start, end, score = candidate
        if score > best.score:
            start_char, end_char = int(window.offsets[start][0]), int(window.offsets[end][1])
            best = Answer(context[start_char:end_char], start_char, end_char, score, index)
    if best is NO_ANSWER:  # no span at all: nothing to weigh the null score against
        return best
    return dataclasses.replace(best, null_score=null_score(windows, start_logits, end_logits))


def null_score(windows: Sequence[Window], start_logits: Sequence[np.ndarray],
               end_logits: Sequence[np.ndarray]) -> float | None:
    """The "no answer" score of a question: start + end logit of the first token ([CLS]) in each window, the
    lowest over the windows (a window that holds the answer should not be outvoted by one that does not)."""
    scores = [float(np.asarray(start)[0]) + float(np.asarray(end)[0])
              for window, start, end in zip(windows, start_logits, end_logits) if window.length > 0]
    return min(scores) if scores else None


def answer_with_null_threshold(answer: Answer, threshold: float = 0.0) -> str:
    """SQuAD v2.0 post-processing: "" (no answer) when null score - best span score > `threshold`, or when no
    span is possible; otherwise the span's text."""
    diff = answer.null_score_diff
    if not np.isfinite(answer.score) or (diff is not None and diff > threshold):
        return ""
    return answer.text


def best_span_in_window(window: Window, start_logits: np.ndarray, end_logits: np.ndarray, *,
                        n_best: int = N_BEST, max_answer_length: int = MAX_ANSWER_LENGTH) -> tuple[int, int, float] | None:
    """(start token, end token, score) of the best span inside the context of one window, or None."""
    length = window.length
    if start_logits.shape[-1] < length or end_logits.shape[-1] < length:
        raise ValueError(f"logits of length {start_logits.shape[-1]}/{end_logits.shape[-1]} for a window of {length} tokens")
    start_logits = start_logits[:length].astype(np.float64)
    end_logits = end_logits[:length].astype(np.float64)
    context_tokens = np.flatnonzero(window.context_mask[:length])
    if context_tokens.size == 0:
        return None
    starts = context_tokens[np.argsort(-start_logits[context_tokens], kind="stable")[:n_best]]
    ends = context_tokens[np.argsort(-end_logits[context_tokens], kind="stable")[:n_best]]
    span_tokens = ends[None, :] - starts[:, None] + 1
    valid = (span_tokens >= 1) & (span_tokens <= max_answer_length)
    if not valid.any():
        return None
    scores = np.where(valid, start_logits[starts][:, None] + end_logits[ends][None, :], -np.inf)
    row, column = np.unravel_index(int(np.argmax(scores)), scores.shape)  # first maximum in (start, end) rank order
    return int(starts[row]), int(ends[column]), float(scores[row, column])


def load_tokenizer(path: str | Path) -> Any:
    """The fast tokenizer saved beside an exported arm (`model_repository/<arm>/tokenizer/`)."""
    path = Path(path)
    if not path.is_dir():
        raise AbqaError(f"tokenizer folder {path}: not found; re-run `abqa export` for this arm "
                        "(or pass --model-repository pointing at the repository the server uses)")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True)
    except Exception as exc:  # a corrupt folder fails in many ways inside transformers
        raise AbqaError(f"tokenizer folder {path}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not tokenizer.is_fast:
        raise AbqaError(f"tokenizer folder {path}: no fast tokenizer (tokenizer.json); answer offsets need one")
    return tokenizer
