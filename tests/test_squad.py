"""SQuAD data: validation errors that say where, seeded subsets, the built-in sample, and which data set is used."""

from __future__ import annotations

import copy
import json
import logging
import sys

import pytest

from abqa.core import data_sources, hub, squad
from abqa.core.data_sources import resolve as resolve_squad
from abqa.core.errors import AbqaError
from abqa.core.squad import (
    SOURCE_BUILTIN,
    SOURCE_PATH,
    SOURCE_SHARED,
    load_builtin_sample,
    load_squad_file,
    parse_squad,
    select_questions,
    to_squad_json,
)

GOOD = {
    "version": "1.1",
    "data": [
        {"title": "Paris", "paragraphs": [
            {"context": "Paris is the capital of France.", "qas": [
                {"id": "p1", "question": "What is the capital of France?", "answers": [{"text": "Paris", "answer_start": 0}]},
                {"id": "p2", "question": "Paris is the capital of what?", "answers": [{"text": "France", "answer_start": 24}]},
            ]},
        ]},
        {"title": "Rome", "paragraphs": [
            {"context": "Rome is in Italy.", "qas": [
                {"id": "r1", "question": "Where is Rome?", "answers": [{"text": "Italy", "answer_start": 11},
                                                                      {"text": "in Italy", "answer_start": 8}]},
            ]},
        ]},
    ],
}


def write(tmp_path, obj, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_parse_good_file_keeps_order_and_answers(tmp_path):
    dataset = load_squad_file(write(tmp_path, GOOD))
    assert dataset.ids() == ["p1", "p2", "r1"]
    assert dataset.version == "1.1" and dataset.source == SOURCE_PATH
    assert dataset.questions[2].title == "Rome" and dataset.questions[2].answer_texts == ["Italy", "in Italy"]
    assert len(dataset.sha256) == 64 and dataset.warnings == []
    assert dataset.references() == {"p1": ["Paris"], "p2": ["France"], "r1": ["Italy", "in Italy"]}


def test_truncated_json_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(GOOD)[:150], encoding="utf-8")
    with pytest.raises(AbqaError, match=r"cut.json: not valid JSON at line 1, column \d+.*truncated"):
        load_squad_file(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(AbqaError, match="nope.json: not found"):
        load_squad_file(tmp_path / "nope.json")


def test_question_without_answers_names_article_paragraph_and_id():
    bad = copy.deepcopy(GOOD)
    bad["data"][1]["paragraphs"][0]["qas"][0]["answers"] = []
    with pytest.raises(AbqaError, match=r"article #1 \('Rome'\), paragraph 0, question r1: no reference answers"):
        parse_squad(bad)


def test_empty_context_names_article_and_paragraph():
    bad = copy.deepcopy(GOOD)
    bad["data"][0]["paragraphs"][0]["context"] = "  "
    with pytest.raises(AbqaError, match=r"article #0 \('Paris'\), paragraph 0: \"context\" missing or empty"):
        parse_squad(bad)


def test_every_problem_is_listed_at_once():
    bad = copy.deepcopy(GOOD)
    bad["data"][0]["paragraphs"][0]["qas"][1]["id"] = "p1"                 # duplicate id
    bad["data"][0]["paragraphs"][0]["qas"][0]["question"] = ""              # empty question... of the first p1
    bad["data"][1]["paragraphs"][0]["qas"][0]["answers"][0] = {"text": "Italy"}  # no answer_start
    with pytest.raises(AbqaError) as info:
        parse_squad(bad, where="f.json")
    message = str(info.value)
    assert message.startswith("f.json: 2 problem(s)")
    assert "question p1: \"question\" missing or empty" in message
    assert "question r1: answer #0 has no integer \"answer_start\"" in message


def test_duplicate_id_is_an_error():
    bad = copy.deepcopy(GOOD)
    bad["data"][1]["paragraphs"][0]["qas"][0]["id"] = "p1"
    with pytest.raises(AbqaError, match=r"question p1: duplicate id \(first in article #0"):
        parse_squad(bad)


@pytest.mark.parametrize("obj", [[], {"version": "1.1"}, {"data": "x"}])
def test_not_a_squad_file(obj):
    with pytest.raises(AbqaError, match="not a SQuAD file"):
        parse_squad(obj)


def test_an_offset_that_misses_its_answer_is_a_warning_not_an_error():
    shifted = copy.deepcopy(GOOD)
    shifted["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    dataset = parse_squad(shifted)
    assert len(dataset) == 3
    assert dataset.warnings == ["article #0 ('Paris'), paragraph 0, question p1: answer #0 'Paris' is not at answer_start 3"]


def test_round_trip_through_the_official_layout():
    dataset = parse_squad(GOOD)
    assert to_squad_json(dataset.questions) == GOOD


def test_seeded_sample_is_reproducible_ordered_and_limit_applies_after():
    dataset = load_builtin_sample()
    first = select_questions(dataset, sample=10, seed=1)
    assert [q.id for q in first] == [q.id for q in select_questions(dataset, sample=10, seed=1)]
    assert [q.id for q in first] != [q.id for q in select_questions(dataset, sample=10, seed=2)]
    positions = [dataset.ids().index(q.id) for q in first]
    assert positions == sorted(positions) and len(set(positions)) == 10
    assert [q.id for q in select_questions(dataset, sample=10, seed=1, limit=3)] == [q.id for q in first[:3]]
    assert [q.id for q in select_questions(dataset, limit=4)] == dataset.ids()[:4]
    assert len(select_questions(dataset, sample=10_000)) == len(dataset)
    with pytest.raises(AbqaError, match="--sample 0"):
        select_questions(dataset, sample=0)
    with pytest.raises(AbqaError, match="--limit -1"):
        select_questions(dataset, limit=-1)


def test_builtin_sample_is_a_valid_squad_file_with_exact_spans():
    dataset = load_builtin_sample()
    assert dataset.source == SOURCE_BUILTIN and dataset.version == "1.1"
    assert 20 <= len(dataset) <= 30 and len(set(dataset.ids())) == len(dataset)
    assert len({q.context for q in dataset.questions}) >= 3
    for question in dataset.questions:
        assert question.answers
        for answer in question.answers:
            assert question.context[answer.answer_start:answer.answer_start + len(answer.text)] == answer.text


def test_resolve_prefers_an_explicit_path(tmp_path, caplog):
    path = write(tmp_path, GOOD)
    with caplog.at_level(logging.WARNING, logger="abqa.core.data_sources"):
        dataset = resolve_squad(str(path))
    assert dataset.source == SOURCE_PATH and dataset.path == str(path)
    assert "SQuAD data: file" in caplog.text


def test_resolve_falls_back_to_the_builtin_sample_loudly(monkeypatch, caplog):
    monkeypatch.setattr(data_sources, "shared_data_dir", lambda: None)
    monkeypatch.setattr(hub, "datasets_installed", lambda: False)
    with caplog.at_level(logging.WARNING, logger="abqa.core.data_sources"):
        dataset = resolve_squad(None)
    assert dataset.source == SOURCE_BUILTIN
    assert "BUILT-IN SAMPLE" in caplog.text
    assert resolve_squad("builtin").source == SOURCE_BUILTIN


def test_hub_without_datasets_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(AbqaError, match=r"`datasets` package is not installed.*--squad .*dev-v1.1.json"):
        resolve_squad("squad")


def test_shared_dev_set_is_used_by_default_and_is_the_listed_file(shared_data):
    dataset = resolve_squad(None)
    assert dataset.source == SOURCE_SHARED
    assert dataset.sha256 == "73d2d21e47d63fd179e41581c33ea0dc0399b6655b9717249219287533e1613f"
    assert len(dataset) == 10570 and dataset.warnings == []
    assert dataset.questions[0].title == "Super_Bowl_50" and dataset.questions[-1].title == "Force"
    assert len({q.title for q in dataset.questions}) == 48
    assert len({(q.title, q.context) for q in dataset.questions}) == 2067


def test_hub_rows_become_a_validated_data_set_for_squad_and_xquad(monkeypatch):
    """The hub path offline: a stand-in `datasets` module hands back rows in the hub's SQuAD columns."""
    import types

    from abqa.core.xquad import XquadSpec, load_xquad_hub

    calls = []
    rows = [{"id": "q1", "title": "Rome", "context": "Rome is in Italy.", "question": "Where is Rome?",
             "answers": {"text": ["in Italy", "Italy"], "answer_start": [8, 11]}}]

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        if name == "broken":
            raise ConnectionError("hub unreachable")
        return [dict(row, title=None) if config else row for row in rows]   # XQuAD rows carry no title

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    squad_set = squad.load_squad_hub()
    assert calls[-1] == ("squad", None, "validation")
    assert (squad_set.path, squad_set.source) == ("hub:squad/validation", squad.SOURCE_HUB)
    question = squad_set.questions[0]
    assert (question.id, question.title, question.answer_texts) == ("q1", "Rome", ["in Italy", "Italy"])
    assert squad_set.sha256 == squad.load_squad_hub().sha256 and len(squad_set.sha256) == 64  # content hash, stable

    german = load_xquad_hub(XquadSpec("xquad.de", "de"))
    assert calls[-1] == ("google/xquad", "xquad.de", "validation")
    assert german.path == "hub:google/xquad/xquad.de/validation" and german.questions[0].title == "xquad.de"

    with pytest.raises(AbqaError, match=r"--squad broken: cannot load broken/validation from the Hugging Face hub "
                                        r"\(ConnectionError: hub unreachable\); pass a local file"):
        squad.load_squad_hub("broken")
