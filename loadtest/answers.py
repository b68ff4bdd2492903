"""Answers under load against answers in isolation (pure): did batching, padding or concurrency change an answer?

Each load-test response is decoded where it arrives (the locustfile, `decode_window`) with the evaluation's own
post-processing (`abqa.core.qa.best_answer` on that window: the n-best start and end logits among the context
tokens, spans of at most max_answer_length tokens, score = start + end logit) into the window's best span, its
score and its null score. A question's answer under load is then composed as `best_answer` composes it over the
windows: the highest-scoring span (the earlier window on a tie), and for SQuAD v2.0 "" when the lowest null score
beats it by more than the run's threshold. A question counts once all of its pool windows were answered in the step.

A question's answer is *identical* when every request for each of its windows decoded to the same text and the
composed answer is the arm's answer to that question in eval.jsonl (same run folder, same post-processing).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from abqa.core.run import AnswerCheck, RequestRecord
from abqa.core.scoring import ScoringRule

# How many differing question ids an AnswerCheck lists.
LISTED = 5


def decode_window(layout: Any, tensors: Mapping[str, np.ndarray], start_logits: np.ndarray, end_logits: np.ndarray,
                  context: str) -> tuple[str, float | None, float | None]:
    """(answer text, span score, null score) of one window's logits, decoded exactly as `abqa evaluate` decodes a
    question of one window; ("", None, None) when the window allows no span."""
    from abqa.core.qa import Window, best_answer

    window = Window({name: array[0] for name, array in tensors.items()}, layout.length, layout.context_mask,
                    layout.offsets)
    answer = best_answer([window], [np.asarray(start_logits).reshape(-1)], [np.asarray(end_logits).reshape(-1)],
                         context)
    score = float(answer.score) if np.isfinite(answer.score) else None
    return answer.text, score, answer.null_score


def compose(decoded: Mapping[int, tuple[str, float | None, float | None]], null_threshold: float | None) -> str:
    """A question's answer from its windows' (text, score, null score), in window order: `best_answer`'s rule
    (highest score, earlier window on a tie); with a null threshold (SQuAD v2.0), "" when null - best > it."""
    best_text, best_score = "", -np.inf
    nulls = []
    for window in sorted(decoded):
        text, score, null = decoded[window]
        if score is not None and score > best_score:
            best_text, best_score = text, score
        if null is not None:
            nulls.append(null)
    if null_threshold is None:
        return best_text
    if not np.isfinite(best_score) or (nulls and min(nulls) - best_score > null_threshold):
        return ""
    return best_text


def answer_check(records: Sequence[RequestRecord], windows_per_question: Mapping[str, int],
                 isolated: Mapping[str, str] | None, *, references: Mapping[str, Sequence[str]],
                 languages: Mapping[str, str | None], rule: ScoringRule | None,
                 null_threshold: float | None = None) -> AnswerCheck | None:
    """One arm's answers in one step against `isolated` ({question id: the arm's answer in eval.jsonl}); None when
    no response carried a decoded answer."""
    by_window: dict[str, dict[int, list[tuple[str, float | None, float | None]]]] = {}
    for record in records:
        if record.ok and record.answer is not None and record.question_id is not None and record.window is not None:
            decoded = (record.answer, record.answer_score, record.null_score)
            by_window.setdefault(record.question_id, {}).setdefault(record.window, []).append(decoded)
    if not by_window:
        return None
    complete = {qid: windows for qid, windows in by_window.items()
                if len(windows) == windows_per_question.get(qid, len(windows))}
    compared = identical = 0
    differing: list[str] = []
    em, f1 = [], []
    for qid, windows in complete.items():
        steady = all(len({text for text, _, _ in decodings}) == 1 for decodings in windows.values())
        answer = compose({window: Counter(decodings).most_common(1)[0][0] for window, decodings in windows.items()},
                         null_threshold)
        if rule is not None and qid in references:
            score = rule.score(answer, list(references[qid]), languages.get(qid))
            em.append(score.em)
            f1.append(score.f1)
        if isolated is None or qid not in isolated:
            continue
        compared += 1
        if steady and answer == isolated[qid]:
            identical += 1
        elif len(differing) < LISTED:
            differing.append(qid)
    note = None
    if isolated is None:
        note = "no eval.jsonl answers of this arm in the run folder to compare with (run `abqa evaluate` into it)"
    elif not compared:
        note = "none of the questions answered under load was evaluated in isolation"
    return AnswerCheck(
        questions=len(complete), compared=compared, identical=identical,
        identical_share=round(identical / compared, 4) if compared else None,
        em=round(100.0 * float(np.mean(em)), 2) if em else None,
        f1=round(100.0 * float(np.mean(f1)), 2) if f1 else None,
        differing=differing, note=note)


@dataclass(frozen=True)
class AnswerKey:
    """What a sweep checks its answers against: the pool's questions and references, and each arm's answers in
    eval.jsonl ({arm: {question id: answer}}; an arm missing from it was not evaluated in this run folder)."""

    windows_per_question: Mapping[str, int]
    references: Mapping[str, Sequence[str]]
    languages: Mapping[str, str | None]
    rule: ScoringRule | None
    isolated: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    null_threshold: float | None = None

    def check(self, records: Sequence[RequestRecord], arm: str) -> AnswerCheck | None:
        return answer_check(records, self.windows_per_question, self.isolated.get(arm), references=self.references,
                            languages=self.languages, rule=self.rule, null_threshold=self.null_threshold)
