"""The two small registries: data sources (what `--squad` names, `abqa.core.data_sources.resolve`) and scoring
rules (`abqa.core.scoring`), and that no stage compares SQuAD version strings any more."""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from pathlib import Path

import pytest

from abqa.core import data_sources, hub
from abqa.core.data_sources import (BUILTIN, DATA_SOURCES, FILE, HUB, SHARED, XQUAD, resolve, shared_dev_path,
                                    source_for)
from abqa.core.errors import AbqaError
from abqa.core.metrics import QuestionScore
from abqa.core.scoring import MLQA, SCORING_RULES, SQUAD_V1, SQUAD_V2, rule_for, squad_rule
from abqa.core.squad import SOURCE_BUILTIN, SOURCE_HUB, SOURCE_SHARED, load_builtin_sample, parse_squad

PROJECT = Path(__file__).resolve().parents[1]
# The package's source folders (pyproject's package-dir) and the benchmarks.
SOURCE_FOLDERS = ("abqa", "export", "serve", "client", "loadtest", "analysis", "router", "ui", "benchmarks")


def squad_file(path: Path, *, unanswerable: bool = False) -> Path:
    qas = [{"id": "a", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]
    if unanswerable:
        qas.append({"id": "u", "question": "Where is Rome?", "answers": [], "is_impossible": True})
    obj = {"version": "v2.0" if unanswerable else "1.1",
           "data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": qas}]}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture
def shared_root(tmp_path, monkeypatch) -> Path:
    """A shared data folder with a small SQuAD v1.1 dev set only; no hub."""
    root = tmp_path / "shared"
    squad_file(root / "squad-v1.1" / "dev-v1.1.json")
    monkeypatch.setattr(data_sources, "shared_data_dir", lambda: root)
    monkeypatch.setattr(hub, "datasets_usable", lambda: False)
    return root


class FakeHub:
    """The hub offline: a stand-in `datasets.load_dataset` that hands back one row in SQuAD's columns, or fails."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail = False

    def load_dataset(self, name, config=None, split=None):
        self.calls.append(name)
        if self.fail:
            raise ConnectionError("hub unreachable")
        return [{"id": "h1", "title": "Rome", "context": "Rome is in Italy.", "question": "Where is Rome?",
                 "answers": {"text": ["Italy"], "answer_start": [11]}}]


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    """No shared data; `datasets` installed and the hub reachable, through FakeHub."""
    fake = FakeHub()
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake.load_dataset))
    monkeypatch.setattr(data_sources, "shared_data_dir", lambda: None)
    monkeypatch.setattr(hub, "datasets_usable", lambda: True)
    return fake


# --- data sources -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arg, source", [
    ("squad", HUB), ("shared", SHARED), ("builtin", BUILTIN), ("sample", BUILTIN),
    ("xquad.de", XQUAD), ("xquad.de,xquad.zh", XQUAD), ("xquad.th=some/file.json", XQUAD),
    ("../shared/data/squad-v1.1/dev-v1.1.json", FILE), ("dev.json", FILE),
])
def test_each_name_belongs_to_one_source(arg, source):
    assert source_for(arg) is source


def test_an_unknown_name_lists_the_available_data_sets():
    with pytest.raises(AbqaError) as info:
        resolve("sqaud")
    message = str(info.value)
    assert message.startswith("--squad sqaud: unknown data set 'sqaud'; available: ")
    assert all(f"{source.name} (" in message for source in DATA_SOURCES)
    with pytest.raises(AbqaError, match=r"SQuAD file no/such\.json: not found"):  # written like a path: a path
        resolve("no/such.json")


def test_a_file_named_like_the_hub_data_set_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    squad_file(tmp_path / "squad")
    assert source_for("squad") is FILE


def test_default_is_the_shared_dev_set(shared_root, caplog):
    with caplog.at_level(logging.WARNING, logger="abqa.core.data_sources"):
        dataset = resolve(None)
    assert (dataset.source, dataset.path) == (SOURCE_SHARED, str(shared_root / "squad-v1.1" / "dev-v1.1.json"))
    assert "SQuAD data: shared dev set" in caplog.text
    assert resolve("shared").path == dataset.path


def test_default_without_shared_data_is_the_hub_then_the_sample_loudly(fake_hub, caplog):
    with caplog.at_level(logging.WARNING, logger="abqa.core.data_sources"):
        dataset = resolve(None)
    assert dataset.source == SOURCE_HUB and dataset.ids() == ["h1"] and fake_hub.calls == ["squad"]
    assert "SQuAD data: Hugging Face hub hub:squad/validation" in caplog.text
    fake_hub.fail = True
    with caplog.at_level(logging.WARNING, logger="abqa.core.data_sources"):
        dataset = resolve(None)
    assert dataset.source == SOURCE_BUILTIN
    assert "cannot load squad/validation from the Hugging Face hub" in caplog.text
    assert "BUILT-IN SAMPLE" in caplog.text and "no --squad given, no ../shared/data, no hub" in caplog.text


def test_version_2_without_a_file_takes_the_shared_v2_dev_set(shared_root):
    with pytest.raises(AbqaError, match=r"--version 2\.0: no SQuAD v2\.0 data beside the project"):
        resolve(None, "2.0")
    v2 = squad_file(shared_root / "squad-v2.0" / "dev-v2.0.json", unanswerable=True)
    for arg in (None, "shared"):
        dataset = resolve(arg, "2.0")
        assert (dataset.path, dataset.version, dataset.source) == (str(v2), "2.0", SOURCE_SHARED)
        assert dataset.rule is SQUAD_V2
    assert shared_dev_path("2.0") == v2 and resolve(None).version == "1.1"


def test_missing_shared_folder_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(data_sources, "shared_data_dir", lambda: None)
    with pytest.raises(AbqaError, match=r"--squad shared: \.\./shared/data/squad-v1\.1/dev-v1\.1\.json is not beside"):
        resolve("shared")


def test_an_unsupported_version_names_the_flag():
    with pytest.raises(AbqaError, match=r"--version 3\.0: SQuAD version '3\.0' is not supported \(supported: 1\.1, "
                                        r"2\.0\)"):
        resolve("builtin", "3.0")


def test_xquad_is_not_scored_with_the_v2_script():
    with pytest.raises(AbqaError, match=r"--squad xquad\.de --version 2\.0: XQuAD is scored with MLQA's convention"):
        resolve("xquad.de", "2.0")


# --- scoring rules ------------------------------------------------------------------------------------------------


def test_each_rule_says_what_it_allows_and_needs():
    assert set(SCORING_RULES) == {"squad-v1.1", "squad-v2.0", "mlqa"}
    assert all(SCORING_RULES[rule.name] is rule for rule in (SQUAD_V1, SQUAD_V2, MLQA))
    assert [rule.allows_no_answer for rule in (SQUAD_V1, SQUAD_V2, MLQA)] == [False, True, False]
    assert [rule.needs_language for rule in (SQUAD_V1, SQUAD_V2, MLQA)] == [False, False, True]
    assert (SQUAD_V1.squad_version, SQUAD_V2.squad_version, MLQA.squad_version) == ("1.1", "2.0", None)


def test_rules_score_by_their_script():
    assert SQUAD_V2.score("", []) == QuestionScore(1.0, 1.0)             # "" is the answer to "no answer"
    assert SQUAD_V2.score("Paris", []) == QuestionScore(0.0, 0.0)
    with pytest.raises(ValueError):
        SQUAD_V1.score("", [])                                             # v1.1 has no unanswerable questions
    assert SQUAD_V1.score("the Paris!", ["Paris"]) == QuestionScore(1.0, 1.0)
    # MLQA splits Chinese into characters; the SQuAD script sees one token and no overlap.
    assert MLQA.score("北京", ["北京大学"], "zh").f1 == pytest.approx(2 / 3)
    assert SQUAD_V1.score("北京", ["北京大学"], "zh").f1 == 0.0
    with pytest.raises(ValueError, match="in its language"):
        MLQA.score("北京", ["北京大学"])


def test_rule_lookup_by_version_and_language():
    assert squad_rule() is SQUAD_V1 and squad_rule("1.1") is SQUAD_V1 and squad_rule("2.0") is SQUAD_V2
    assert rule_for("1.1", multilingual=True) is MLQA and rule_for("2.0") is SQUAD_V2
    with pytest.raises(AbqaError, match=r"^f\.json: SQuAD version '2\.1' is not supported"):
        squad_rule("2.1", where="f.json")


def test_a_data_set_carries_its_rule(tmp_path, monkeypatch):
    assert load_builtin_sample().rule is SQUAD_V1
    v2 = json.loads(squad_file(tmp_path / "v2.json", unanswerable=True).read_text())
    assert parse_squad(v2).rule is SQUAD_V2
    monkeypatch.setattr(hub, "datasets_usable", lambda: False)
    german = squad_file(tmp_path / "xquad.de.json")
    assert resolve(f"xquad.de={german}").rule is MLQA


def test_no_stage_compares_squad_version_strings():
    """The rule objects answer what a version used to be compared for (tests may still spell versions out)."""
    comparison = re.compile(r"""[!=]=\s*["']2\.0["']|["']2\.0["']\s*[!=]=""")
    sources = sorted(path for folder in SOURCE_FOLDERS for path in (PROJECT / folder).rglob("*.py"))
    assert len(sources) > 50
    offenders = [f"{path.relative_to(PROJECT)}:{number}" for path in sources
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if comparison.search(line)]
    assert offenders == []
