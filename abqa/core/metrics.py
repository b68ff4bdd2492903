"""The official SQuAD metric (EM and token F1), as pure functions.

`normalize_answer`, `exact_match_score`, `f1_score` and `metric_max_over_ground_truths` follow the official
SQuAD v1.1 evaluation script line for line, so the scores match the leaderboard's to the last decimal.
`score_predictions` scores a {question id: answer} mapping over exactly the questions of a split: a missing
prediction scores 0 and ids outside the split are ignored and counted.

SQuAD v2.0 differs only in how a question with no reference answer is scored (the reference is "" and F1 is
1 only when the prediction is also empty). That difference lives in `_SQUAD_SCRIPTS` (`references_for_scoring`,
`f1_function`); the v2.0 script's no-answer threshold and HasAns/NoAns breakdown are in the v2.0 section below.
Which of these functions scores a run is `abqa.core.scoring`'s choice (its rule objects).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
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


def token_f1(prediction_tokens: Sequence[str], ground_truth_tokens: Sequence[str]) -> float:
    """F1 of two bags of tokens (a repeated token counts as often as it repeats); 0 when they share none."""
    num_same = sum((Counter(prediction_tokens) & Counter(ground_truth_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 of the normalised texts (the official v1.1 script's)."""
    return token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def metric_max_over_ground_truths(metric_fn: Callable[[str, str], float], prediction: str,
                                  ground_truths: Sequence[str]) -> float:
    if not ground_truths:
        raise ValueError("no reference answer to score against")
    return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


# --- per-version rules -------------------------------------------------------------------------------------------


def _references_v1(answers: Sequence[str]) -> list[str]:
    # v1.1 has no unanswerable questions: the loader rejects a question without answers.
    return list(answers)


def _references_v2(answers: Sequence[str]) -> list[str]:
    # The official v2.0 script keeps the answers whose normalised text is not empty, and scores a question left
    # without any against the single reference "" (so only an empty prediction, "no answer", is right).
    kept = [answer for answer in answers if normalize_answer(answer)]
    return kept or [""]


def references_for_scoring(answers: Sequence[str], version: str = "1.1") -> list[str]:
    """The reference texts the metric compares against, by SQuAD version (v2.0 would map [] to [""])."""
    return _squad_script(version).references(answers)


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
        metric_max_over_ground_truths(f1_function(version), prediction, references),
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


# --- multilingual: the MLQA convention ------------------------------------------------------------------------------
# XQuAD and MLQA answers in languages other than English are scored the way MLQA's official script
# (facebookresearch/MLQA, mlqa_evaluation_v1.py) scores them: lower case, remove every Unicode punctuation
# character (category P*, plus ASCII string.punctuation), remove the language's articles, then split into
# tokens: on whitespace, or for Chinese by "mixed segmentation" (each CJK character U+4E00..U+9FA5 is a token,
# runs of other characters are split on whitespace). The official v1.1 functions above are untouched: questions
# without a language (the SQuAD v1.1 dev set) are scored by them exactly as before.

_MLQA_ARTICLES: dict[str, re.Pattern | None] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    # MLQA's Arabic rule removes every "ال" (the article is a prefix), wherever it occurs: kept as published.
    "ar": re.compile(r"\sال^|ال"),
    "hi": None,   # no formal articles
    "zh": None,
}
# XQuAD languages that MLQA's script does not know (it raises for them): scored like its whitespace languages
# with no article list. For Thai this is what XTREME does in effect (it scores XQuAD with the SQuAD v1.1 script,
# which splits on whitespace): Thai writes no spaces between words, so an answer is one or a few tokens and F1
# is close to exact match.
_WHITESPACE_NO_ARTICLES = ("el", "ro", "ru", "th", "tr")
MLQA_LANGUAGES = tuple(_MLQA_ARTICLES)
MULTILINGUAL_LANGUAGES = (*MLQA_LANGUAGES, *_WHITESPACE_NO_ARTICLES)
MIXED_SEGMENTATION_LANGUAGES = ("zh",)
_CJK = re.compile(r"[\u4e00-\u9fa5]")   # MLQA's range (CJK Unified Ideographs up to U+9FA5)

# What the report says about how F1 splits text in these languages.
MULTILINGUAL_TOKENIZATION_NOTE = (
    "Scored with MLQA's convention (mlqa_evaluation_v1.py): lower case, Unicode punctuation removed, the "
    "language's articles removed (en a/an/the; es un/una/unos/unas/el/la/los/las; de ein/eine/.../der/die/das/...; "
    "vi, ar as MLQA; none for zh, hi), then token F1. zh: mixed segmentation, every CJK character (U+4E00-U+9FA5) "
    "is its own token and runs of other characters are split on whitespace. th (no spaces between words, no CJK), "
    "and el, ro, ru, tr (which MLQA does not cover): whitespace tokens and no article list, as XTREME's XQuAD "
    "scoring splits on whitespace; for th a span is then one or a few tokens, so its F1 is close to its EM. "
    "Not comparable with scores from the SQuAD v1.1 script (English articles and ASCII punctuation only)."
)


def is_unicode_punctuation(char: str) -> bool:
    """MLQA's PUNCT set: Unicode category P* or ASCII punctuation (which adds symbols such as $ + < = > ^ ` | ~)."""
    return char in _PUNCTUATION or unicodedata.category(char).startswith("P")


def mixed_segmentation(text: str) -> list[str]:
    """MLQA's Chinese tokens: each CJK character (or punctuation mark) alone, other runs split on whitespace."""
    tokens: list[str] = []
    run: list[str] = []
    for char in text:
        if _CJK.match(char) or is_unicode_punctuation(char):
            tokens.extend("".join(run).split())
            run = []
            tokens.append(char)
        else:
            run.append(char)
    tokens.extend("".join(run).split())
    return tokens


def check_language(language: str) -> str:
    if language not in MULTILINGUAL_LANGUAGES:
        raise ValueError(f"no multilingual scoring rule for language {language!r} "
                         f"(known: {', '.join(sorted(MULTILINGUAL_LANGUAGES))})")
    return language


def mlqa_tokens(text: str, language: str) -> list[str]:
    """The tokens MLQA compares: lower, remove punctuation, remove articles, segment (its order)."""
    articles = _MLQA_ARTICLES.get(check_language(language))
    text = "".join(char for char in text.lower() if not is_unicode_punctuation(char))
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = mixed_segmentation(text) if language in MIXED_SEGMENTATION_LANGUAGES else text.split()
    return [token for token in tokens if token.strip()]


def mlqa_normalize_answer(text: str, language: str) -> str:
    return " ".join(mlqa_tokens(text, language))


def mlqa_exact_match_score(prediction: str, ground_truth: str, language: str) -> float:
    return float(mlqa_normalize_answer(prediction, language) == mlqa_normalize_answer(ground_truth, language))


def mlqa_f1_score(prediction: str, ground_truth: str, language: str) -> float:
    """Token F1 over MLQA's tokens (bag of tokens, like the v1.1 F1)."""
    return token_f1(mlqa_tokens(prediction, language), mlqa_tokens(ground_truth, language))


def score_answer_in_language(prediction: str | None, answers: Sequence[str], language: str) -> QuestionScore:
    """EM and F1 of one prediction under MLQA's convention for `language`, max over the references."""
    check_language(language)
    if not answers:
        raise ValueError("no reference answer to score against")
    if prediction is None:
        return QuestionScore(0.0, 0.0)
    return QuestionScore(
        metric_max_over_ground_truths(partial(mlqa_exact_match_score, language=language), prediction, answers),
        metric_max_over_ground_truths(partial(mlqa_f1_score, language=language), prediction, answers),
    )


# --- SQuAD v2.0: unanswerable questions, HasAns/NoAns, the no-answer threshold -----------------------------------
# The official v2.0 evaluation script ("Official evaluation script for SQuAD version 2.0"), as pure functions:
# `f1_score_v2` is its compute_f1, `apply_no_answer_threshold` its apply_no_ans_threshold, `find_best_threshold`
# its find_best_thresh and `squad_v2_breakdown` its make_eval_dict + merge_eval. Scores here are per question on
# the 0..1 scale (the script's "raw" scores); the totals are in percent like the script's output.


def f1_score_v2(prediction: str, ground_truth: str) -> float:
    """The v2.0 script's compute_f1: when either side has no tokens, 1 if both have none, else 0."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    if not prediction_tokens or not ground_truth_tokens:
        return float(prediction_tokens == ground_truth_tokens)
    return f1_score(prediction, ground_truth)


def f1_function(version: str = "1.1") -> Callable[[str, str], float]:
    """The token F1 of a SQuAD version (v1.1's gives 0 when both sides are empty, v2.0's gives 1)."""
    return _squad_script(version).f1


@dataclass(frozen=True)
class _SquadScript:
    """What the official script of one SQuAD version does differently: the references and the token F1."""

    references: Callable[[Sequence[str]], list[str]]
    f1: Callable[[str, str], float]


_SQUAD_SCRIPTS = {"1.1": _SquadScript(_references_v1, f1_score), "2.0": _SquadScript(_references_v2, f1_score_v2)}


def _squad_script(version: str) -> _SquadScript:
    try:
        return _SQUAD_SCRIPTS[version]
    except KeyError:
        raise ValueError(f"SQuAD version {version!r} is not supported (supported: {', '.join(_SQUAD_SCRIPTS)})") from None


def squad_v2_breakdown(exact: Mapping[str, float], f1: Mapping[str, float],
                       has_answer: Mapping[str, bool]) -> dict[str, float | int]:
    """exact/f1/total over all questions, then HasAns_* and NoAns_* over the questions with and without an
    answer (each block only when there are such questions), in percent: the v2.0 script's main output."""
    def block(ids: list[str]) -> dict[str, float | int]:
        total = len(ids)
        return {"exact": 100.0 * sum(exact[k] for k in ids) / total if total else 0.0,
                "f1": 100.0 * sum(f1[k] for k in ids) / total if total else 0.0, "total": total}

    result: dict[str, float | int] = block(list(exact))
    has_ids = [k for k in exact if has_answer[k]]
    no_ids = [k for k in exact if not has_answer[k]]
    for prefix, ids in (("HasAns", has_ids), ("NoAns", no_ids)):
        if ids:
            result.update({f"{prefix}_{key}": value for key, value in block(ids).items()})
    return result


def apply_no_answer_threshold(scores: Mapping[str, float], na_probs: Mapping[str, float],
                              has_answer: Mapping[str, bool], threshold: float) -> dict[str, float]:
    """Scores once every question whose no-answer score exceeds `threshold` is answered with "" instead."""
    return {qid: (float(not has_answer[qid]) if na_probs[qid] > threshold else score)
            for qid, score in scores.items()}


def find_best_threshold(predictions: Mapping[str, str | bool | None], scores: Mapping[str, float],
                        na_probs: Mapping[str, float], has_answer: Mapping[str, bool]) -> tuple[float, float]:
    """(best total in percent, its threshold): the v2.0 script's find_best_thresh.

    Start with every question answered "" (all NoAns right, all HasAns wrong), then, in increasing no-answer
    score, give each question back its prediction, and keep the best running total. The threshold is TUNED ON
    THESE QUESTIONS: the score it gives is optimistic for any other data.
    """
    current = sum(1 for qid in has_answer if not has_answer[qid])
    best, best_threshold = current, 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            change = scores[qid]
        else:
            change = -1 if predictions[qid] else 0
        current += change
        if current > best:
            best, best_threshold = current, na_probs[qid]
    return 100.0 * best / len(scores), best_threshold


def find_all_best_thresholds(predictions: Mapping[str, str | bool | None], exact: Mapping[str, float],
                             f1: Mapping[str, float], na_probs: Mapping[str, float],
                             has_answer: Mapping[str, bool]) -> dict[str, float]:
    """best_exact, best_exact_thresh, best_f1, best_f1_thresh (the script's find_all_best_thresh)."""
    best_exact, exact_threshold = find_best_threshold(predictions, exact, na_probs, has_answer)
    best_f1, f1_threshold = find_best_threshold(predictions, f1, na_probs, has_answer)
    return {"best_exact": best_exact, "best_exact_thresh": exact_threshold,
            "best_f1": best_f1, "best_f1_thresh": f1_threshold}


def evaluate_v2(references: Mapping[str, Sequence[str]], predictions: Mapping[str, str | None],
                na_probs: Mapping[str, float] | None = None, na_prob_threshold: float = 1.0) -> dict[str, float | int]:
    """The official v2.0 result over exactly the questions of `references` ({id: answer texts}, [] when none).

    exact/f1 (after the no-answer threshold, when `na_probs` are given), HasAns_*/NoAns_*, and with `na_probs`
    the best_* over thresholds. One difference from the script: a question without a prediction scores 0
    (the script would leave it out of the total), as in `score_predictions`.
    """
    summary = score_predictions(references, predictions, "2.0")
    has_answer = {qid: bool(answers) for qid, answers in references.items()}
    exact = {qid: score.em for qid, score in summary.per_question.items()}
    f1 = {qid: score.f1 for qid, score in summary.per_question.items()}
    probabilities = {qid: 0.0 for qid in references} if na_probs is None else \
        {qid: float(na_probs.get(qid, 0.0)) for qid in references}
    result = squad_v2_breakdown(apply_no_answer_threshold(exact, probabilities, has_answer, na_prob_threshold),
                                apply_no_answer_threshold(f1, probabilities, has_answer, na_prob_threshold),
                                has_answer)
    if na_probs is not None:
        answered = {qid: predictions.get(qid) for qid in references}
        result.update(find_all_best_thresholds(answered, exact, f1, probabilities, has_answer))
    return result
