"""The official SQuAD metric (EM and token F1), as pure functions.

`normalize_answer`, `exact_match_score`, `f1_score` and `metric_max_over_ground_truths` follow the official
SQuAD v1.1 evaluation script line for line, so the scores match the leaderboard's to the last decimal.
`score_predictions` scores a {question id: answer} mapping over exactly the questions of a split: a missing
prediction scores 0 and ids outside the split are ignored and counted.

SQuAD v2.0 differs only in how a question with no reference answer is scored (the reference is "" and F1 is
1 only when the prediction is also empty). That rule lives in one place, `references_for_scoring` and
`_RULES`, so v2.0 can be added there without touching the rest.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, remove ASCII punctuation, remove the articles a/an/the, collapse whitespace (the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 of the normalised texts (bag of tokens: a repeated token counts as often as it repeats)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def metric_max_over_ground_truths(metric_fn: Callable[[str, str], float], prediction: str,
                                  ground_truths: Sequence[str]) -> float:
    if not ground_truths:
        raise ValueError("no reference answer to score against")
    return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


# --- per-version rules -------------------------------------------------------------------------------------------


def _references_v1(answers: Sequence[str]) -> list[str]:
    # v1.1 has no unanswerable questions: the loader rejects a question without answers.
    return list(answers)


_RULES: dict[str, Callable[[Sequence[str]], list[str]]] = {"1.1": _references_v1}


def references_for_scoring(answers: Sequence[str], version: str = "1.1") -> list[str]:
    """The reference texts the metric compares against, by SQuAD version (v2.0 would map [] to [""])."""
    try:
        return _RULES[version](answers)
    except KeyError:
        raise ValueError(f"SQuAD version {version!r} is not supported (supported: {', '.join(_RULES)})") from None


@dataclass(frozen=True)
class QuestionScore:
    em: float  # 0.0 or 1.0
    f1: float  # 0.0 .. 1.0


def score_answer(prediction: str | None, answers: Sequence[str], version: str = "1.1") -> QuestionScore:
    """EM and F1 of one prediction, max over the references; no prediction (None) scores 0."""
    references = references_for_scoring(answers, version)
    if prediction is None:
        return QuestionScore(0.0, 0.0)
    return QuestionScore(
        metric_max_over_ground_truths(exact_match_score, prediction, references),
        metric_max_over_ground_truths(f1_score, prediction, references),
    )


@dataclass
class ScoreSummary:
    """Scores of one prediction set over one split: per question (in split order) and the totals, in percent."""

    per_question: dict[str, QuestionScore]
    missing_ids: list[str]        # questions of the split without a prediction (scored 0)
    unknown_ids: list[str] = field(default_factory=list)  # predicted ids not in the split (ignored)

    @property
    def total(self) -> int:
        return len(self.per_question)

    @property
    def exact_match(self) -> float:
        return 100.0 * sum(s.em for s in self.per_question.values()) / self.total if self.total else 0.0

    @property
    def f1(self) -> float:
        return 100.0 * sum(s.f1 for s in self.per_question.values()) / self.total if self.total else 0.0


def score_predictions(references: Mapping[str, Sequence[str]], predictions: Mapping[str, str | None],
                      version: str = "1.1") -> ScoreSummary:
    """Score `predictions` ({id: answer}) over exactly the questions in `references` ({id: answer texts})."""
    per_question: dict[str, QuestionScore] = {}
    missing: list[str] = []
    for question_id, answers in references.items():
        prediction = predictions.get(question_id)
        if prediction is None:
            missing.append(question_id)
        per_question[question_id] = score_answer(prediction, answers, version)
    unknown = [question_id for question_id in predictions if question_id not in references]
    return ScoreSummary(per_question, missing, unknown)


def mean_percent(values: Iterable[float]) -> float:
    values = list(values)
    return 100.0 * sum(values) / len(values) if values else 0.0
