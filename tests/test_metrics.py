"""The official SQuAD v1.1 metric: normalisation edge cases, EM/F1, scoring over a split, the published scores."""

from __future__ import annotations

import json

import pytest

from abqa.core.metrics import (
    QuestionScore,
    exact_match_score,
    f1_score,
    metric_max_over_ground_truths,
    normalize_answer,
    references_for_scoring,
    score_answer,
    score_predictions,
)


@pytest.mark.parametrize("text, expected", [
    ("The Denver Broncos", "denver broncos"),
    ("Denver Broncos!", "denver broncos"),
    ("  a   cat\tand\nan owl ", "cat and owl"),          # articles go, whitespace collapses; "and" stays
    ("theatre, another, anthem", "theatre another anthem"),  # articles only as whole words
    ("THE END.", "end"),
    ("rock'n'roll", "rocknroll"),                          # ASCII punctuation is removed, not replaced by a space
    ("U.S.-based", "usbased"),
    ("", ""),
    ("   ", ""),
    ("the a an", ""),
    ("...", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_normalize_keeps_unicode_that_is_not_ascii_punctuation():
    # The official script strips string.punctuation only: curly quotes, en dashes and accents survive.
    assert normalize_answer("“Ünïcode” – Café") == "“ünïcode” – café"
    assert normalize_answer("Straße") == "straße"
    # \b is Unicode-aware in Python 3: an article next to a non-ASCII letter is still a separate word.
    assert normalize_answer("the é") == "é"
    assert normalize_answer("théâtre") == "théâtre"


def test_exact_match_after_normalisation():
    assert exact_match_score("the Broncos.", "Broncos") == 1.0
    assert exact_match_score("Broncos", "Denver Broncos") == 0.0
    # Both sides normalise to "": the official script calls that a match (and F1 0).
    assert exact_match_score("the", "a") == 1.0
    assert f1_score("the", "a") == 0.0


def test_f1_counts_shared_tokens_with_multiplicity():
    assert f1_score("cat sat", "the cat sat on the mat") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert f1_score("cat cat cat", "cat") == pytest.approx(2 * (1 / 3) * 1.0 / (1 / 3 + 1.0))
    assert f1_score("dog", "cat") == 0.0
    assert f1_score("", "cat") == 0.0
    assert f1_score("cat", "") == 0.0
    assert f1_score("Denver Broncos", "the denver broncos!") == 1.0


def test_max_over_ground_truths():
    references = ["Denver Broncos", "The Broncos", "Broncos team"]
    assert metric_max_over_ground_truths(exact_match_score, "broncos", references) == 1.0
    assert metric_max_over_ground_truths(f1_score, "denver", references) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        metric_max_over_ground_truths(f1_score, "x", [])


def test_score_answer_none_scores_zero_and_unknown_version_is_refused():
    assert score_answer(None, ["x"]) == QuestionScore(0.0, 0.0)
    assert score_answer("X!", ["x"]) == QuestionScore(1.0, 1.0)
    with pytest.raises(ValueError, match="3.0"):
        references_for_scoring(["x"], "3.0")


def test_score_predictions_over_exactly_the_split():
    references = {"q1": ["Paris"], "q2": ["two million", "2 million"], "q3": ["France"]}
    predictions = {"q1": "paris", "q2": "about two million", "extra": "ignored", "other": "also ignored"}
    summary = score_predictions(references, predictions)
    assert list(summary.per_question) == ["q1", "q2", "q3"]
    assert summary.missing_ids == ["q3"]
    assert sorted(summary.unknown_ids) == ["extra", "other"]
    assert summary.per_question["q3"] == QuestionScore(0.0, 0.0)
    assert summary.exact_match == pytest.approx(100 / 3)
    # q2: "about two million" vs "two million": precision 2/3, recall 1 -> 0.8
    assert summary.f1 == pytest.approx(100 * (1 + 0.8 + 0) / 3)


SHARED_SCORES = {
    "bert-base-uncased-finetuned.json": (80.927, 88.333),
    "distilbert-base-uncased-finetuned.json": (75.932, 84.550),
    "logistic-regression-baseline.json": (40.142, 50.982),
    "match-lstm-boundary-ensemble.json": (67.635, 76.756),
}


@pytest.mark.parametrize("filename", sorted(SHARED_SCORES))
def test_shared_prediction_files_reproduce_their_listed_dev_scores(shared_data, filename):
    from abqa.core.squad import load_squad_file

    dataset = load_squad_file(shared_data / "squad-v1.1" / "dev-v1.1.json")
    predictions = json.loads((shared_data / "squad-v1.1" / "predictions" / filename).read_text(encoding="utf-8"))
    summary = score_predictions(dataset.references(), predictions)
    assert summary.total == 10570
    assert (round(summary.exact_match, 3), round(summary.f1, 3)) == SHARED_SCORES[filename]
    if filename.startswith("logistic"):
        # 10,585 ids in the file: the ones outside the split are ignored, the split's unanswered ones score 0.
        assert len(predictions) == 10585
        assert len(predictions) - len(summary.unknown_ids) + len(summary.missing_ids) == 10570
        assert summary.unknown_ids and summary.missing_ids
