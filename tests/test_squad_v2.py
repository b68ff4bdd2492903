"""SQuAD v2.0: the official v2.0 metric (hand-made cases and the shared prediction file's listed scores), the
no-answer threshold on crafted logits, replayed v2.0 predictions through `abqa evaluate` and `abqa report`
(HasAns/NoAns, best threshold, McNemar on per-question outcomes), and two tiny stand-in arms through Triton."""

from __future__ import annotations

import contextlib
import io
import json
import random

import numpy as np
import pytest

from abqa.analysis.report import build_report
from abqa.cli import main
from abqa.client.arms import scored_record
from abqa.core.data_sources import resolve as resolve_squad_version
from abqa.core.errors import AbqaError
from abqa.core.io import read_jsonl
from abqa.core.metrics import (
    QuestionScore,
    apply_no_answer_threshold,
    evaluate_v2,
    f1_score,
    f1_score_v2,
    find_best_threshold,
    references_for_scoring,
    score_answer,
    score_predictions,
)
from abqa.core.qa import Window, answer_with_null_threshold, best_answer, null_score
from abqa.core.scoring import SQUAD_V2
from abqa.core.squad import (
    SquadAnswer,
    SquadQuestion,
    detect_version,
    load_builtin_sample,
    load_squad_file,
    parse_squad,
)

# The shared file and the scores its README lists for it (official v2.0 metric, whole dev set).
SHARED_V2_PREDICTIONS = "bidaf-self-attention-elmo.json"
SHARED_V2_SCORES = (65.704, 67.876)
DEV_V2_QUESTIONS, DEV_V2_UNANSWERABLE = 11873, 5945


@pytest.fixture(scope="module")
def v2_dev(shared_data):
    path = shared_data / "squad-v2.0" / "dev-v2.0.json"
    if not path.is_file():
        pytest.skip("../shared/data/squad-v2.0/dev-v2.0.json is not beside the project")
    return path


@pytest.fixture(scope="module")
def v2_predictions(v2_dev):
    return v2_dev.parent / "predictions" / SHARED_V2_PREDICTIONS


# --- the metric on hand-made cases ----------------------------------------------------------------------------------


def test_v2_references_are_the_non_empty_answers_or_the_empty_string():
    assert references_for_scoring([], "2.0") == [""]
    assert references_for_scoring(["the", "Paris", "..."], "2.0") == ["Paris"]   # normalised-empty answers dropped
    assert references_for_scoring(["a"], "2.0") == [""]
    assert references_for_scoring(["the", "Paris"], "1.1") == ["the", "Paris"]   # v1.1 unchanged


@pytest.mark.parametrize("prediction, reference, expected", [
    ("", "", 1.0), ("the", "", 1.0), ("", "Paris", 0.0), ("Paris", "", 0.0),
    ("Paris France", "paris", 2 * 0.5 * 1.0 / 1.5), ("London", "Paris", 0.0),
])
def test_v2_f1_scores_empty_against_empty_as_right(prediction, reference, expected):
    assert f1_score_v2(prediction, reference) == pytest.approx(expected)
    if prediction.strip() and reference:
        assert f1_score_v2(prediction, reference) == f1_score(prediction, reference)
    assert f1_score("", "") == 0.0  # v1.1's F1 stays as it was


def test_score_answer_v2_on_answerable_and_unanswerable_questions():
    assert score_answer("", [], "2.0") == QuestionScore(1.0, 1.0)
    assert score_answer("Paris", [], "2.0") == QuestionScore(0.0, 0.0)
    assert score_answer("", ["Paris"], "2.0") == QuestionScore(0.0, 0.0)
    assert score_answer(None, [], "2.0") == QuestionScore(0.0, 0.0)       # no prediction is not "no answer"
    assert score_answer("the Paris!", ["Paris", "City of Paris"], "2.0") == QuestionScore(1.0, 1.0)


# Four questions: two answerable, two not; no-answer scores all different.
REFERENCES = {"has1": ["Paris"], "has2": ["two million", "2 million"], "no1": [], "no2": []}
PREDICTIONS = {"has1": "Paris", "has2": "about two million", "no1": "Lyon", "no2": ""}
NA_PROBS = {"has1": 0.1, "has2": 0.9, "no1": 0.5, "no2": 0.2}


def test_evaluate_v2_totals_and_breakdown_by_hand():
    result = evaluate_v2(REFERENCES, PREDICTIONS)
    # has1 right; has2 F1 0.8 (precision 2/3, recall 1); no1 wrong ("Lyon" instead of ""); no2 right.
    assert result["total"] == 4 and result["HasAns_total"] == 2 and result["NoAns_total"] == 2
    assert result["exact"] == pytest.approx(100 * 2 / 4)
    assert result["f1"] == pytest.approx(100 * (1 + 0.8 + 0 + 1) / 4)
    assert result["HasAns_exact"] == pytest.approx(50.0) and result["HasAns_f1"] == pytest.approx(90.0)
    assert result["NoAns_exact"] == result["NoAns_f1"] == pytest.approx(50.0)
    assert "best_exact" not in result  # only with no-answer scores, as in the official script


def test_best_threshold_by_hand():
    result = evaluate_v2(REFERENCES, PREDICTIONS, NA_PROBS)
    # All "" first: 2 of 4 right (the NoAns). In na order: has1 (0.1) +1 -> 3, best; no2 (0.2) "" +0; no1 (0.5)
    # answered "Lyon" -1 -> 2; has2 (0.9) +0 (EM) / +0.8 (F1) -> 2 / 2.8.
    assert result["best_exact"] == pytest.approx(75.0) and result["best_exact_thresh"] == 0.1
    assert result["best_f1"] == pytest.approx(75.0) and result["best_f1_thresh"] == 0.1
    # With the default na_prob threshold (1.0) nothing is forced to "": the totals are the raw ones.
    assert result["exact"] == pytest.approx(50.0)
    forced = evaluate_v2(REFERENCES, PREDICTIONS, NA_PROBS, na_prob_threshold=0.3)
    assert forced["exact"] == pytest.approx(75.0)  # has2 and no1 become "": has2 stays wrong, no1 becomes right


def test_best_threshold_is_the_best_of_every_threshold_on_random_cases():
    """find_best_thresh equals a brute force over thresholds of apply_no_ans_threshold (distinct no-answer scores)."""
    rng = random.Random(7)
    for _ in range(50):
        ids = [f"q{i}" for i in range(rng.randint(1, 12))]
        has_answer = {q: rng.random() < 0.5 for q in ids}
        predictions = {q: rng.choice(["", "x"]) for q in ids}
        scores = {q: (rng.choice([0.0, 0.5, 1.0]) if predictions[q] else 0.0) if has_answer[q]
                  else float(not predictions[q]) for q in ids}
        na_probs = {q: rng.uniform(-5, 5) for q in ids}
        best, threshold = find_best_threshold(predictions, scores, na_probs, has_answer)
        candidates = [min(na_probs.values()) - 1.0, *na_probs.values()]
        totals = [100 * sum(apply_no_answer_threshold(scores, na_probs, has_answer, t).values()) / len(ids)
                  for t in candidates]
        assert best == pytest.approx(max(totals))
        if best > totals[0] + 1e-12:  # the threshold found achieves it
            achieved = apply_no_answer_threshold(scores, na_probs, has_answer, threshold)
            assert 100 * sum(achieved.values()) / len(ids) == pytest.approx(best)


# --- the data ----------------------------------------------------------------------------------------------------


def v2_file(questions: list[dict], version: str | None = "v2.0") -> dict:
    obj = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": questions}]}]}
    if version is not None:
        obj["version"] = version
    return obj


ANSWERABLE = {"id": "a", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}],
              "is_impossible": False}
UNANSWERABLE = {"id": "u", "question": "Where is Rome?", "answers": [], "is_impossible": True}


def test_version_is_detected_from_the_file_or_its_questions():
    assert detect_version(v2_file([ANSWERABLE])) == "2.0"                  # "v2.0", as the official file says
    assert detect_version(v2_file([ANSWERABLE, UNANSWERABLE], version=None)) == "2.0"
    assert detect_version({"version": "1.1", "data": []}) == "1.1"
    for broken in (True, 3, "text", {"qas": []}):   # a mistyped level is parse_squad's to name, not a TypeError here
        assert detect_version({"data": [{"paragraphs": broken}, {"paragraphs": [{"qas": broken}]}]}) == "1.1"
        with pytest.raises(AbqaError):
            parse_squad({"data": [{"title": "t", "paragraphs": broken}]})
    dataset = parse_squad(v2_file([ANSWERABLE, UNANSWERABLE]))
    assert dataset.version == "2.0"
    assert [q.has_answer for q in dataset.questions] == [True, False]
    with pytest.raises(AbqaError, match="use --version 2.0"):
        parse_squad(v2_file([ANSWERABLE, UNANSWERABLE]), version="1.1")


def test_forced_version_on_the_builtin_sample_and_refused_on_v2_data(tmp_path):
    dataset = resolve_squad_version("builtin", "2.0")
    assert dataset.version == "2.0" and all(q.has_answer for q in dataset.questions)
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(v2_file([ANSWERABLE, UNANSWERABLE])))
    assert resolve_squad_version(str(path)).version == "2.0"
    with pytest.raises(AbqaError, match="only SQuAD v2.0 scores"):
        resolve_squad_version(str(path), "1.1")


def test_records_of_a_v2_run_carry_has_answer_and_the_score_difference():
    question = SquadQuestion("u", "Where is Rome?", "Paris is in France.", (), "T")
    record = scored_record(question, "arm", "", started_at="t", rule=SQUAD_V2, null_score_diff=1.5)
    assert (record.em, record.f1, record.has_answer, record.null_score_diff) == (1.0, 1.0, False, 1.5)
    answerable = SquadQuestion("a", "Where is Paris?", "Paris is in France.", (SquadAnswer("France", 12),), "T")
    v1 = scored_record(answerable, "arm", "France", started_at="t")
    assert (v1.em, v1.has_answer, v1.null_score_diff) == (1.0, None, None)  # v1.1 records unchanged


def test_shared_v2_dev_set_and_prediction_file_reproduce_the_listed_scores(v2_dev, v2_predictions):
    dataset = load_squad_file(v2_dev)
    assert dataset.version == "2.0" and len(dataset) == DEV_V2_QUESTIONS
    assert sum(not q.has_answer for q in dataset.questions) == DEV_V2_UNANSWERABLE
    predictions = json.loads(v2_predictions.read_text(encoding="utf-8"))
    result = evaluate_v2(dataset.references(), predictions)
    assert (round(result["exact"], 3), round(result["f1"], 3)) == SHARED_V2_SCORES
    assert result["total"] == DEV_V2_QUESTIONS and result["NoAns_total"] == DEV_V2_UNANSWERABLE
    assert result["HasAns_total"] == DEV_V2_QUESTIONS - DEV_V2_UNANSWERABLE
    assert result["NoAns_exact"] == result["NoAns_f1"]
    weighted = (result["HasAns_exact"] * result["HasAns_total"] + result["NoAns_exact"] * result["NoAns_total"])
    assert weighted / DEV_V2_QUESTIONS == pytest.approx(result["exact"])
    # The per-question path the evaluate stage uses gives the same totals.
    summary = score_predictions(dataset.references(), predictions, "2.0")
    assert (round(summary.exact_match, 3), round(summary.f1, 3)) == SHARED_V2_SCORES


# --- the no-answer threshold on crafted logits ----------------------------------------------------------------------


def window(length: int, context: range) -> Window:
    """Token 0 is [CLS]; token i covers characters [10i, 10i + 5) of the context."""
    mask = np.zeros(length, dtype=bool)
    mask[list(context)] = True
    offsets = np.array([[10 * i, 10 * i + 5] for i in range(length)], dtype=np.int64)
    return Window({"input_ids": np.zeros(length, dtype=np.int64)}, length, mask, offsets)


def peaks(length: int, values: dict[int, float]) -> np.ndarray:
    logits = np.zeros(length, dtype=np.float32)
    for position, value in values.items():
        logits[position] = value
    return logits


def test_null_score_is_cls_start_plus_end_lowest_over_windows_and_the_threshold_decides():
    context = "".join(f"tok{i:02d}     " for i in range(20))
    windows = [window(12, range(3, 12)), window(12, range(3, 12))]
    # Window 0: [CLS] 4 + 3 = 7, best span 2 + 3 = 5 (tokens 4..5). Window 1: [CLS] 1 + 2 = 3, best span 2.
    starts = [peaks(12, {0: 4.0, 4: 2.0}), peaks(12, {0: 1.0, 6: 1.0})]
    ends = [peaks(12, {0: 3.0, 5: 3.0}), peaks(12, {0: 2.0, 7: 1.0})]
    assert null_score(windows, starts, ends) == pytest.approx(3.0)
    answer = best_answer(windows, starts, ends, context)
    assert answer.text == context[40:55] and answer.score == pytest.approx(5.0)
    assert answer.null_score == pytest.approx(3.0) and answer.null_score_diff == pytest.approx(-2.0)
    assert answer_with_null_threshold(answer, 0.0) == answer.text          # -2 is not above 0
    assert answer_with_null_threshold(answer, -2.5) == ""                  # -2 is above -2.5: no answer
    # When every window's [CLS] beats the best span, the question gets "" at threshold 0.
    strong = [peaks(12, {0: 9.0, 4: 2.0}), peaks(12, {0: 8.0, 6: 1.0})]
    answer = best_answer(windows, strong, ends, context)
    assert answer.null_score_diff == pytest.approx(8.0 + 2.0 - 5.0)
    assert answer_with_null_threshold(answer) == "" and answer_with_null_threshold(answer, 6.0) == answer.text


def test_no_possible_span_means_no_answer_without_a_score_difference():
    no_context = window(6, range(0))
    answer = best_answer([no_context], [np.zeros(6)], [np.zeros(6)], "ctx")
    assert answer.null_score_diff is None
    assert answer_with_null_threshold(answer, 100.0) == ""


# --- replayed v2.0 predictions through abqa evaluate and abqa report ------------------------------------------------


@pytest.fixture(scope="module")
def replay_run(v2_dev, v2_predictions, tmp_path_factory):
    """The shared v2.0 file (with made-up no-answer scores) against an arm that always answers "" (no answer)."""
    root = tmp_path_factory.mktemp("v2-replay")
    predictions = json.loads(v2_predictions.read_text(encoding="utf-8"))
    rng = random.Random(0)
    # A made-up but informative no-answer score: high where the system answered "", plus noise.
    na_probs = {qid: (1.0 if answer == "" else 0.0) + rng.random() for qid, answer in predictions.items()}
    (root / "na_prob.json").write_text(json.dumps(na_probs))
    (root / "empty.json").write_text(json.dumps({qid: "" for qid in predictions}))
    run = root / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["evaluate", "--squad", str(v2_dev), "--replay", f"bidaf={v2_predictions}",
                     "--na-prob", f"bidaf={root / 'na_prob.json'}", "--replay", f"no-answer={root / 'empty.json'}",
                     "--out", str(run), "--no-progress"]) == 0
    (root / "stdout.txt").write_text(printed.getvalue(), encoding="utf-8")  # the end-of-run tables
    report = build_report(run, n_resamples=200, seed=0)
    return run, report, predictions, na_probs


def test_end_of_run_table_breaks_v2_scores_down_into_has_ans_and_no_ans(replay_run):
    run = replay_run[0]
    rows = [line.split() for line in (run.parent / "stdout.txt").read_text(encoding="utf-8").splitlines()]
    breakdown = {(row[0], row[1]): row[2:] for row in rows if row[:1] in (["HasAns"], ["NoAns"])}
    # answerability, arm, questions, failed, EM, F1, p50: the "always no answer" arm is right exactly on NoAns.
    assert breakdown[("HasAns", "no-answer")][:4] == [str(DEV_V2_QUESTIONS - DEV_V2_UNANSWERABLE), "0", "0.000", "0.000"]
    assert breakdown[("NoAns", "no-answer")][:4] == [str(DEV_V2_UNANSWERABLE), "0", "100.000", "100.000"]
    assert set(breakdown) == {(group, arm) for group in ("HasAns", "NoAns") for arm in ("bidaf", "no-answer")}


def test_replay_records_and_report_reproduce_the_listed_scores(replay_run, v2_dev):
    run, report, predictions, na_probs = replay_run
    meta = json.loads((run / "meta.json").read_text())
    assert meta["dataset"]["version"] == "2.0" and meta["arms"]["bidaf"]["na_prob_sha256"]
    records = [r for r in read_jsonl(run / "eval.jsonl") if r["arm"] == "bidaf"]
    assert len(records) == DEV_V2_QUESTIONS
    assert sum(r["has_answer"] is False for r in records) == DEV_V2_UNANSWERABLE
    assert all(r["null_score_diff"] == pytest.approx(na_probs[r["id"]]) for r in records)
    arms = report.data["arms"]
    assert (round(arms["bidaf"]["em"], 3), round(arms["bidaf"]["f1"], 3)) == SHARED_V2_SCORES
    # The report's HasAns/NoAns and best threshold equal the official functions on the same inputs.
    official = evaluate_v2(load_squad_file(v2_dev).references(), predictions, na_probs)
    v2 = arms["bidaf"]["squad_v2"]
    assert v2["has_ans"]["em"] == pytest.approx(official["HasAns_exact"])
    assert v2["has_ans"]["f1"] == pytest.approx(official["HasAns_f1"])
    assert v2["no_ans"]["em"] == pytest.approx(official["NoAns_exact"]) == pytest.approx(v2["no_ans"]["f1"])
    assert (v2["has_ans"]["questions"], v2["no_ans"]["questions"]) == (official["HasAns_total"], official["NoAns_total"])
    best = v2["best_threshold"]
    assert best["available"] and best["label"] == "tuned on the evaluated questions"
    assert best["best_em"] == pytest.approx(official["best_exact"])
    assert best["best_em_threshold"] == pytest.approx(official["best_exact_thresh"])
    assert best["best_f1"] == pytest.approx(official["best_f1"])
    assert best["best_em"] >= arms["bidaf"]["em"] - 1e-9
    # An arm that always says "no answer": every NoAns question right, every HasAns one wrong.
    empty = arms["no-answer"]["squad_v2"]
    assert (empty["has_ans"]["em"], empty["no_ans"]["em"]) == (0.0, 100.0)
    assert arms["no-answer"]["em"] == pytest.approx(100 * DEV_V2_UNANSWERABLE / DEV_V2_QUESTIONS)
    assert not empty["best_threshold"]["available"]


def test_mcnemar_works_unchanged_on_v2_outcomes(replay_run):
    run, report, predictions, _ = replay_run
    by_arm: dict[str, dict[str, float]] = {}
    for r in read_jsonl(run / "eval.jsonl"):
        by_arm.setdefault(r["arm"], {})[r["id"]] = r["em"]
    ids = list(by_arm["bidaf"])
    right_a = np.array([by_arm["bidaf"][q] == 1 for q in ids])
    right_b = np.array([by_arm["no-answer"][q] == 1 for q in ids])
    test = report.data["tests"]["bidaf__vs__no-answer"]
    assert test["paired_questions"] == DEV_V2_QUESTIONS
    assert (test["mcnemar"]["b"], test["mcnemar"]["c"]) == (int(np.sum(right_a & ~right_b)),
                                                            int(np.sum(~right_a & right_b)))


def test_report_renders_has_ans_no_ans_and_the_tuned_threshold(replay_run):
    run, report, _, _ = replay_run
    markdown = (run / "report.md").read_text()
    html = report.paths.html.read_text()
    for text in (markdown, html):
        assert "HasAns EM % [95% CI]" in text and "NoAns EM = F1 % [95% CI]" in text
        assert "best no-answer threshold (tuned on the evaluated questions)" in text
        assert "TUNED ON THE EVALUATED QUESTIONS" in text
        assert "SQuAD v2.0" in text
    assert any("SQuAD v2.0: 5,945 of 11,873 questions have no answer" in note for note in report.data["notes"])


def test_v1_reports_have_no_v2_section(tmp_path):
    dataset = load_builtin_sample()
    predictions = tmp_path / "p.json"
    predictions.write_text(json.dumps({q.id: q.answers[0].text for q in dataset.questions[:10]}))
    run = tmp_path / "v1"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["evaluate", "--squad", "builtin", "--replay", f"a={predictions}", "--out", str(run),
                     "--no-progress"]) == 0
    assert "HasAns" not in printed.getvalue() and "answerability" not in printed.getvalue()
    records = list(read_jsonl(run / "eval.jsonl"))
    assert all(r["has_answer"] is None and r["null_score_diff"] is None for r in records)
    report = build_report(run, n_resamples=100)
    assert "squad_v2" not in report.data["arms"]["a"]
    assert "HasAns" not in (run / "report.md").read_text()
    assert "Accuracy: SQuAD v1.1 exact match" in (run / "report.md").read_text()


def test_cli_refuses_na_prob_for_an_arm_that_is_not_replayed(tmp_path, capsys):
    assert main(["evaluate", "--squad", "builtin", "--replay", f"a={tmp_path / 'p.json'}",
                 "--na-prob", f"b={tmp_path / 'n.json'}", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "not a --replay arm" in capsys.readouterr().err


# --- two tiny stand-in arms through a real Triton on 50 v2.0 questions --------------------------------------------


@pytest.mark.integration
def test_standin_arms_on_50_v2_questions_through_triton(triton_server, tiny_repository, v2_dev, tmp_path):
    run = tmp_path / "v2-served"
    assert main(["evaluate", "--squad", str(v2_dev), "--sample", "50", "--seed", "1", "--arms", "bert,distilbert",
                 "--url", triton_server.grpc.address, "--protocol", "grpc", "--model-repository", str(tiny_repository),
                 "--out", str(run), "--no-progress"]) == 0
    records = list(read_jsonl(run / "eval.jsonl"))
    assert len(records) == 100 and all(r["status"] == "ok" for r in records)
    dataset = load_squad_file(v2_dev)
    has_answer = {q.id: q.has_answer for q in dataset.questions}
    answers = {q.id: q.answer_texts for q in dataset.questions}
    for r in records:
        assert r["has_answer"] == has_answer[r["id"]]
        assert isinstance(r["null_score_diff"], float)
        # The default threshold 0: "" exactly when the null score beats the best span.
        assert (r["prediction"] == "") == (r["null_score_diff"] > 0.0)
        assert score_answer(r["prediction"], answers[r["id"]], "2.0") == QuestionScore(r["em"], r["f1"])
    meta = json.loads((run / "meta.json").read_text())
    assert meta["dataset"]["version"] == "2.0" and meta["qa"]["squad_v2"]["null_threshold"] == 0.0
    report = build_report(run, n_resamples=200)
    for arm in ("bert", "distilbert"):
        v2 = report.data["arms"][arm]["squad_v2"]
        assert v2["has_ans"]["questions"] + v2["no_ans"]["questions"] == 50
        assert v2["best_threshold"]["available"] and v2["best_threshold"]["questions"] == 50
        assert v2["best_threshold"]["best_f1"] >= report.data["arms"][arm]["f1"] - 1e-9
    assert report.data["tests"]["bert__vs__distilbert"]["paired_questions"] == 50
    markdown = (run / "report.md").read_text()
    assert "HasAns EM % [95% CI]" in markdown and "tuned on the evaluated questions" in markdown


def test_benchmark_picks_the_squad2_pair_only_on_v2_data(tmp_path):
    from abqa.benchmark import arms_for_version, benchmark_squad_version
    from abqa.core.config import DEFAULT_ARMS_V2, ArmSpec

    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps(v2_file([ANSWERABLE, UNANSWERABLE])))
    assert benchmark_squad_version(str(v2), None) == "2.0"
    assert benchmark_squad_version("builtin", None) is None and benchmark_squad_version(None, "2.0") == "2.0"
    assert benchmark_squad_version(str(v2), "1.1") == "1.1"  # --version wins; the evaluate stage then refuses it
    pair = [ArmSpec.parse(text) for text in arms_for_version("2.0", None)]
    assert {(spec.name, spec.source) for spec in pair} == set(DEFAULT_ARMS_V2.items())
    assert arms_for_version("2.0", ["bert"]) == ["bert"] and arms_for_version(None, None) is None
    assert ArmSpec.parse("distilbert-squad2").source == "twmkn9/distilbert-base-uncased-squad2"
