"""Multilingual runs (XQuAD): the loader (names, ids unique across languages, per-language samples, errors), MLQA's
scoring convention on hand-made cases, a replayed evaluate + report on three languages, and (integration) two tiny
stand-in arms served by Triton on 20 questions of each of three XQuAD languages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abqa.analysis.report import build_report
from abqa.cli import main
from abqa.core import hub, xquad
from abqa.core.data_sources import resolve as resolve_squad
from abqa.core.errors import AbqaError
from abqa.core.metrics import (
    MULTILINGUAL_LANGUAGES,
    QuestionScore,
    f1_score,
    mixed_segmentation,
    mlqa_exact_match_score,
    mlqa_f1_score,
    mlqa_normalize_answer,
    mlqa_tokens,
    normalize_answer,
    score_answer_in_language,
)
from abqa.core.squad import select_questions
from abqa.core.xquad import parse_xquad_arg, qualify_id, split_qualified_id
from abqa.flags import SquadArgAction
import run_builders

LANGUAGES = ("de", "zh", "es")


def xquad_file(path: Path, language: str, n: int = 3) -> Path:
    """A small file in the XQuAD layout: the same ids q0..q{n-1} in every language, as XQuAD has."""
    words = {"de": "Antwort", "zh": "答案", "es": "respuesta", "en": "answer", "th": "คำตอบ"}[language]
    qas, context = [], ""
    for i in range(n):
        answer = f"{words}{i}"
        qas.append({"id": f"q{i}", "question": f"{language} question {i}?",
                    "answers": [{"text": answer, "answer_start": len(context)}]})
        context += answer + " . "
    obj = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def fake_shared(tmp_path, monkeypatch) -> Path:
    """A shared data folder with xquad.de/zh/es only, and no hub: what `xquad.<lang>` resolves against."""
    root = tmp_path / "shared"
    (root / "squad-v1.1").mkdir(parents=True)
    (root / "squad-v1.1" / "dev-v1.1.json").write_text("{}", encoding="utf-8")
    (root / "xquad").mkdir()
    for language in LANGUAGES:
        xquad_file(root / "xquad" / f"xquad.{language}.json", language)
    monkeypatch.setenv("ABQA_SHARED_DATA", str(root))
    monkeypatch.setattr(hub, "datasets_installed", lambda: False)
    return root


# --- loader ------------------------------------------------------------------------------------------------------


def test_parse_xquad_arg_names_paths_and_non_xquad(tmp_path):
    own = xquad_file(tmp_path / "german.json", "de")
    named = xquad_file(tmp_path / "xquad.es.json", "es")
    specs = parse_xquad_arg(f"xquad.zh, xquad.de={own},{named}")
    assert [(s.name, s.language, s.path) for s in specs] == [
        ("xquad.zh", "zh", None), ("xquad.de", "de", own), ("xquad.es", "es", named)]
    for single in ("squad", "shared", "builtin", str(own), "../shared/data/squad-v1.1/dev-v1.1.json"):
        assert parse_xquad_arg(single) is None
    with pytest.raises(AbqaError, match="other.json is not an XQuAD-style data set"):
        parse_xquad_arg("xquad.de,other.json")
    with pytest.raises(AbqaError, match="language 'de' is given twice"):
        parse_xquad_arg(f"xquad.de,xquad.de={own}")


def test_ids_are_unique_across_languages_and_carry_language_and_dataset(fake_shared):
    dataset = resolve_squad("xquad.de,xquad.zh,xquad.es")
    assert len(dataset) == 9 and len(set(dataset.ids())) == 9
    assert dataset.ids()[:4] == ["de:q0", "de:q1", "de:q2", "zh:q0"]
    assert [q.language for q in dataset.questions] == ["de"] * 3 + ["zh"] * 3 + ["es"] * 3
    assert {q.dataset for q in dataset.questions} == {"xquad.de", "xquad.zh", "xquad.es"}
    assert dataset.source == "shared" and dataset.path == "xquad.de,xquad.zh,xquad.es"
    assert [p["language"] for p in dataset.parts] == list(LANGUAGES)
    assert split_qualified_id("zh:q0") == ("zh", "q0") and qualify_id("zh", "q0") == "zh:q0"
    # The combined sha256 changes with the languages (so a resume cannot mix runs).
    assert resolve_squad("xquad.de,xquad.es").sha256 != dataset.sha256


def test_sample_and_limit_apply_per_language_and_pick_the_same_questions(fake_shared):
    dataset = resolve_squad("xquad.de,xquad.zh,xquad.es")
    chosen = select_questions(dataset, sample=2, seed=3)
    by_language = {lang: [split_qualified_id(q.id)[1] for q in chosen if q.language == lang] for lang in LANGUAGES}
    assert all(len(ids) == 2 for ids in by_language.values())
    assert by_language["de"] == by_language["zh"] == by_language["es"]  # parallel files: the same questions
    assert [q.id for q in select_questions(dataset, limit=1)] == ["de:q0", "zh:q0", "es:q0"]


def test_unknown_and_unavailable_languages_are_clear_errors(fake_shared):
    with pytest.raises(AbqaError, match=r"unknown XQuAD language 'fr'. XQuAD has ar, de, el, en, es, hi, ro, ru, "
                                        r"th, tr, vi, zh; here, in .*: de, es, zh"):
        resolve_squad("xquad.de,xquad.fr")
    with pytest.raises(AbqaError, match=r"xquad.vi: no local copy \(the shared folder .* has de, es, zh\) and the "
                                        r"hub's google/xquad cannot be used"):
        resolve_squad("xquad.vi")


def test_explicit_file_for_a_language(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "datasets_installed", lambda: False)
    path = xquad_file(tmp_path / "thai.json", "th", n=2)
    dataset = resolve_squad(f"xquad.th={path}")
    assert dataset.ids() == ["th:q0", "th:q1"] and dataset.source == "path"
    assert dataset.parts[0]["path"] == str(path)


def test_repeated_squad_flags_join_into_one_list():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--squad", default=None, action=SquadArgAction)
    assert parser.parse_args(["--squad", "xquad.de", "--squad", "xquad.zh,xquad.es"]).squad == "xquad.de,xquad.zh,xquad.es"
    assert parser.parse_args(["--squad", "dev.json"]).squad == "dev.json"
    assert parser.parse_args([]).squad is None


@pytest.mark.parametrize("stage", ["evaluate", "loadtest", "benchmark"])
def test_every_stage_that_reads_squad_takes_repeated_flags(stage):
    from abqa.cli import build_parser

    args = build_parser().parse_args([stage, "--squad", "xquad.de", "--squad", "xquad.zh"])
    assert args.squad == "xquad.de,xquad.zh"


def test_real_xquad_files_load_with_unique_ids(shared_data):
    dataset = resolve_squad("xquad.de,xquad.zh,xquad.es")
    assert len(dataset) == 3 * 1190 and len(set(dataset.ids())) == 3 * 1190
    assert [part["questions"] for part in dataset.parts] == [1190, 1190, 1190]


# --- MLQA's scoring convention -------------------------------------------------------------------------------------


def test_mixed_segmentation_splits_cjk_characters_and_keeps_other_runs():
    assert mixed_segmentation("2008年北京奥运会") == ["2008", "年", "北", "京", "奥", "运", "会"]
    assert mixed_segmentation("iphone 手机 pro") == ["iphone", "手", "机", "pro"]
    assert mlqa_tokens("“北京”。", "zh") == ["北", "京"]                # fullwidth punctuation goes first
    assert mlqa_normalize_answer("The 北京", "zh") == "the 北 京"       # zh has no articles


def test_chinese_f1_is_over_characters():
    # prediction 北京奥运会 (5 characters) against 2008年北京奥运会 (7 tokens): P 5/5, R 5/7 -> F1 10/12.
    assert mlqa_f1_score("北京奥运会", "2008年北京奥运会", "zh") == pytest.approx(10 / 12)
    assert mlqa_exact_match_score("北京奥运会。", "北京奥运会", "zh") == 1.0
    # The v1.1 metric sees one whitespace token each and gives 0: why zh needs its own convention.
    assert f1_score("北京奥运会", "2008年北京奥运会") == 0.0


@pytest.mark.parametrize("text, language, expected", [
    ("El Niño, la niña y los niños", "es", "niño niña y niños"),
    ("¿Unos años?", "es", "años"),                               # ¿ is Unicode punctuation
    ("Die Verteidigung der Panthers", "de", "verteidigung panthers"),
    ("„Einem“ Mann", "de", "mann"),
    ("“The Broncos” – Denver", "en", "broncos denver"),           # en dash and curly quotes are punctuation (P*)
    ("الكتاب", "ar", "كتاب"),                                    # MLQA removes every "ال"
    ("quyển sách của tôi", "vi", "quyển sách tôi"),
    ("กรุงเทพมหานคร", "th", "กรุงเทพมหานคร"),                       # th: whitespace tokens, no articles
    ("Ο Παρθενώνας", "el", "ο παρθενώνας"),                       # el: no article list (MLQA has none)
])
def test_mlqa_normalisation_per_language(text, language, expected):
    assert mlqa_normalize_answer(text, language) == expected


def test_german_and_spanish_f1_drop_their_articles():
    # "der Panthers" -> [panthers]; "Die Verteidigung der Panthers" -> [verteidigung, panthers]: P 1, R 1/2.
    assert mlqa_f1_score("der Panthers", "Die Verteidigung der Panthers", "de") == pytest.approx(2 / 3)
    assert mlqa_exact_match_score("la Casa Blanca", "Casa Blanca", "es") == 1.0
    # German articles are not Spanish ones: "die" stays a token under es.
    assert mlqa_exact_match_score("die Casa", "Casa", "es") == 0.0


def test_thai_f1_is_whole_tokens_so_close_to_exact_match():
    assert mlqa_f1_score("กรุงเทพ", "กรุงเทพมหานคร", "th") == 0.0
    assert mlqa_f1_score("ประเทศ ไทย", "ไทย", "th") == pytest.approx(2 / 3)


def test_english_v11_scoring_is_unchanged_and_mlqa_en_differs_only_by_unicode_punctuation():
    assert normalize_answer("“The Broncos”") == "“ broncos”"      # official v1.1: ASCII punctuation only
    assert mlqa_normalize_answer("“The Broncos”", "en") == "broncos"
    assert mlqa_normalize_answer("The Denver Broncos!", "en") == normalize_answer("The Denver Broncos!")


def test_score_answer_in_language_max_over_references_and_unknown_language():
    score = score_answer_in_language("北京", ["上海", "北京市"], "zh")
    assert score.em == 0.0 and score.f1 == pytest.approx(0.8)    # 北 京 vs 北 京 市: P 1, R 2/3
    assert score_answer_in_language(None, ["x"], "de") == QuestionScore(0.0, 0.0)
    assert set(xquad.XQUAD_LANGUAGES) <= set(MULTILINGUAL_LANGUAGES)
    with pytest.raises(ValueError, match="'fr'"):
        score_answer_in_language("x", ["x"], "fr")


# --- replayed evaluate + report on three languages ------------------------------------------------------------


def truncated(answer: str, language: str) -> str:
    """A worse answer whose score is known: zh keeps its first half of characters, others drop their last word."""
    if language == "zh":
        return answer[: max(1, len(answer) // 2)]
    words = answer.split()
    return " ".join(words[:-1]) if len(words) > 1 else "xyzzy"


def test_replayed_three_language_run_reports_per_language_tables(shared_data, tmp_path, capsys):
    dataset = resolve_squad("xquad.de,xquad.zh,xquad.es")
    perfect = {q.id: q.answer_texts[0] for q in dataset.questions}
    worse = {q.id: truncated(q.answer_texts[0], q.language) for q in dataset.questions}
    (tmp_path / "perfect.json").write_text(json.dumps(perfect, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "worse.json").write_text(json.dumps(worse, ensure_ascii=False), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["evaluate", "--squad", "xquad.de", "--squad", "xquad.zh,xquad.es", "--sample", "25", "--seed", "1",
                 "--replay", f"perfect={tmp_path / 'perfect.json'}", "--replay", f"worse={tmp_path / 'worse.json'}",
                 "--out", str(run), "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    # The end-of-run table per language: each language's perfect arm at 100.
    assert [line.split()[:5] for line in printed if line.split()[:2] in (["de", "perfect"], ["zh", "perfect"])] == [
        ["de", "perfect", "25", "0", "100.000"], ["zh", "perfect", "25", "0", "100.000"]]
    records = [json.loads(line) for line in (run / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 2 * 3 * 25 and {r["language"] for r in records} == set(LANGUAGES)
    meta = json.loads((run / "meta.json").read_text())
    assert [p["evaluated_questions"] for p in meta["dataset"]["languages"]] == [25, 25, 25]

    report = build_report(run, n_resamples=500)
    languages = report.data["languages"]
    assert languages["languages"] == list(LANGUAGES)
    chosen = {q.id: q for q in select_questions(dataset, sample=25, seed=1)}
    for language in LANGUAGES:
        entry = languages["per_language"][language]
        ids = [qid for qid, q in chosen.items() if q.language == language]
        # Expected per-language scores, straight from the metric over the chosen questions.
        expected_f1 = np.array([mlqa_f1_score(worse[i], chosen[i].answer_texts[0], language) for i in ids])
        expected_em = np.array([mlqa_exact_match_score(worse[i], chosen[i].answer_texts[0], language) for i in ids])
        assert entry["arms"]["perfect"]["questions"] == 25
        assert entry["arms"]["perfect"]["em"] == entry["arms"]["perfect"]["f1"] == 100.0
        assert entry["arms"]["worse"]["f1"] == pytest.approx(100 * expected_f1.mean())
        assert entry["arms"]["worse"]["em"] == pytest.approx(100 * expected_em.mean())
        test = entry["tests"]["perfect__vs__worse"]
        assert test["paired_questions"] == 25
        # McNemar per language: b = questions only the perfect arm gets exactly right.
        assert (test["mcnemar"]["b"], test["mcnemar"]["c"]) == (int((expected_em == 0).sum()), 0)
        assert test["f1_diff"]["value"] == pytest.approx(100 * (1 - expected_f1).mean())
        assert test["paired_t_f1"]["p_value_holm"] >= test["paired_t_f1"]["p_value"]
    # Chinese truncation keeps half the characters: partial credit, unlike a whitespace metric.
    assert 0 < languages["per_language"]["zh"]["arms"]["worse"]["f1"] < 100
    markdown = report.paths.markdown.read_text(encoding="utf-8")
    assert "## Languages" in markdown and "### Paired comparison per language" in markdown
    assert "every CJK character (U+4E00-U+9FA5) is its own token" in markdown
    assert "| zh (xquad.zh) | worse (replay) | 25 (25 ok, 0 failed, 0 missing) |" in markdown
    assert any(line.startswith("Per language, F1 difference perfect − worse") for line in report.verdict)
    assert "Languages" in report.paths.html.read_text(encoding="utf-8")
    # The per-language figure: a real PNG, linked from the Markdown (and embedded in the HTML).
    figure = run / "plots" / "languages.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "plots/languages.png" in markdown


def test_single_language_squad_report_has_no_language_section(tmp_path, capsys):
    predictions = tmp_path / "p.json"
    from abqa.core.squad import load_builtin_sample

    sample = load_builtin_sample()
    predictions.write_text(json.dumps({q.id: q.answer_texts[0] for q in sample.questions}), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["evaluate", "--squad", "builtin", "--replay", f"a={predictions}", "--out", str(run),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert all(json.loads(line)["language"] is None for line in (run / "eval.jsonl").read_text().splitlines())
    report = build_report(run, n_resamples=200)
    assert "languages" not in report.data and "Languages" not in report.paths.markdown.read_text()
    assert not (run / "plots" / "languages.png").exists()
    assert json.loads((run / "meta.json").read_text())["dataset"]["languages"] is None


# --- multilingual stand-ins -----------------------------------------------------------------------------------------


def test_multilingual_standin_has_the_real_vocabulary_size_and_runs_on_other_scripts(tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from abqa.export.standins import MULTILINGUAL_VOCAB_SIZE, build_standin_checkpoint, standin_multilingual_overrides
    from conftest import TINY_OVERRIDES

    overrides = standin_multilingual_overrides("mdistil", "distilbert/distilbert-base-multilingual-cased")
    assert overrides == {"vocab_size": MULTILINGUAL_VOCAB_SIZE}
    assert standin_multilingual_overrides("bert", "csarron/bert-base-uncased-squad-v1") == {}
    path = build_standin_checkpoint("distilbert", tmp_path / "m", config_overrides={**overrides,
                                                                                   **TINY_OVERRIDES["distilbert"]})
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.vocab_size == MULTILINGUAL_VOCAB_SIZE
    encoded = tokenizer("黑豹队的防守丢了多少分？", "Die Verteidigung der Panthers gab nur 308 Punkte ab", return_tensors="pt")
    assert int(encoded["input_ids"].max()) < MULTILINGUAL_VOCAB_SIZE
    assert model(**encoded).start_logits.shape[-1] == encoded["input_ids"].shape[-1]


# --- served stand-ins on three XQuAD languages (integration) ------------------------------------------------------


@pytest.mark.integration
def test_served_standins_on_three_xquad_languages(shared_data, triton_server, tiny_repository, tmp_path, capsys):
    run = tmp_path / "xquad-served"
    assert main(["evaluate", "--squad", "xquad.de,xquad.zh,xquad.es", "--sample", "20", "--url",
                 triton_server.grpc.address, "--protocol", "grpc", "--model-repository", str(tiny_repository),
                 "--arms", "distilbert,bert", "--order", "interleaved", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in (run / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 2 * 3 * 20
    assert {(r["language"], r["id"].split(":")[0]) for r in records} == {(lang, lang) for lang in LANGUAGES}
    assert all(r["status"] == "ok" and r["latency_ms"] > 0 for r in records)

    report = build_report(run, n_resamples=300)
    languages = report.data["languages"]
    assert languages["languages"] == list(LANGUAGES)
    for language in LANGUAGES:
        entry = languages["per_language"][language]
        for arm in ("distilbert", "bert"):
            assert entry["arms"][arm]["questions"] == 20 and entry["arms"][arm]["latency_p50_ms"] > 0
        test = entry["tests"]["distilbert__vs__bert"]
        assert test["paired_questions"] == 20 and test["latency"]["paired_questions"] == 20
        # Latency per language is the arms' own: the paired ratio rests on these 20 questions only.
        assert test["latency"]["median_a_ms"] > 0 and test["latency"]["median_b_ms"] > 0
    markdown = report.paths.markdown.read_text(encoding="utf-8")
    assert "### Accuracy per language" in markdown and "### Paired comparison per language" in markdown
    assert "| zh | distilbert − bert | 20 |" in markdown
    assert any(line.startswith("Per language, F1 difference distilbert − bert") for line in report.verdict)


def test_standin_arms_get_per_language_tables_but_no_accuracy_verdict(tmp_path):
    from abqa.core.run import EvalRecord

    run = tmp_path / "standins"
    run.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for arm in ("a", "b"):
        for language in ("de", "th"):
            for i in range(12):
                em = float(rng.random() < 0.5)
                lines.append(EvalRecord(id=f"{language}:q{i}", arm=arm, prediction="x", em=em, f1=em,
                                        latency_ms=10.0 + rng.random(), windows=1, tokens=50,
                                        started_at="2026-01-01T00:00:00+00:00", language=language))
    arms = {arm: {"kind": "served", "standin": True, "source": "standin:bert"} for arm in ("a", "b")}
    run_builders.write_run(run, lines, arms)
    report = build_report(run, n_resamples=200)
    assert report.data["languages"]["languages"] == ["de", "th"]   # no meta order: first appearance
    assert any(line.startswith("Per language, a vs b: accuracy not compared") for line in report.verdict)
    markdown = report.paths.markdown.read_text(encoding="utf-8")
    row = next(line for line in markdown.splitlines() if line.startswith("| th | a (STAND-IN) |"))
    assert "12 (12 ok, 0 failed, 0 missing)" in row and row.count("STAND-IN: meaningless") == 2
    assert "| th | a − b | 12 |" in markdown and "(stand-in: meaningless)" in markdown
