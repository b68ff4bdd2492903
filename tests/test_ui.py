"""abqa ui: the app's logic (pure and with fakes), the Streamlit script under AppTest, and a headless Chromium run."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

from abqa.core.errors import AbqaError
from abqa.core.repository import METADATA_FILENAME, TOKENIZER_DIRNAME
from abqa.core.processes import spawn, stop_process
from abqa.core.squad import load_builtin_sample
from abqa.router.backend import AnswerFailed, ArmAnswer, BackendUnavailable
from abqa.ui import logic

APP = str(Path(logic.__file__).with_name("app.py"))
QUESTION = "Which river flows through the city?"
CONTEXT = "The city of Vienna lies on the Danube, which flows east to the Black Sea."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def app_settings(monkeypatch):
    """Start each AppTest with these settings (as `abqa ui` passes them) and fresh Streamlit caches."""
    import streamlit as st

    def apply(**fields) -> logic.UiSettings:
        settings = logic.UiSettings(**fields)
        monkeypatch.setenv(logic.SETTINGS_ENV, settings.to_json())
        return settings

    st.cache_resource.clear()
    yield apply
    st.cache_resource.clear()


def run_app() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120).run()
    assert not app.exception, app.exception
    return app


def replay_file(tmp_path: Path, answers: dict[str, str]) -> Path:
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(answers))
    return path


class FakeBackend:
    """Answers with the context's first word; `fail` maps an arm to the exception it raises."""

    def __init__(self, fail: dict[str, Exception] | None = None):
        self.fail = fail or {}
        self.calls: list[tuple] = []

    def answer(self, arm, question, context, squad_id=None) -> ArmAnswer:
        self.calls.append((arm, question, squad_id))
        if arm in self.fail:
            raise self.fail[arm]
        return ArmAnswer(arm, context.split()[0], 2.5, 4.0 if arm == "bert" else 2.0)

    def close(self) -> None:
        pass


# --- settings and questions (pure) ---------------------------------------------------------------------------------


def test_settings_travel_through_the_environment_and_bad_ones_are_named():
    settings = logic.UiSettings(triton_url="http://127.0.0.1:9000", replays=(("real", "/tmp/p.json"),),
                                shared_replay=False)
    assert logic.UiSettings.from_environ({logic.SETTINGS_ENV: settings.to_json()}) == settings
    assert logic.UiSettings.from_environ({}) == logic.UiSettings()
    with pytest.raises(AbqaError, match="unknown setting.*colour"):
        logic.UiSettings.from_environ({logic.SETTINGS_ENV: json.dumps({"colour": "blue"})})
    with pytest.raises(AbqaError, match="not valid JSON"):
        logic.UiSettings.from_environ({logic.SETTINGS_ENV: "{"})


def test_triton_target_takes_the_protocol_from_the_url():
    def target(*args):
        endpoint = logic.triton_target(*args)
        return endpoint.address, endpoint.protocol

    assert target("http://127.0.0.1:9000") == ("127.0.0.1:9000", "http")
    assert target("127.0.0.1:9001") == ("127.0.0.1:9001", "grpc")
    assert target("grpc://localhost") == ("localhost:8001", "grpc")
    assert target("localhost", "http") == ("localhost:8000", "http")


def test_search_finds_by_id_title_and_words():
    questions = load_builtin_sample().questions
    first = questions[0]
    assert logic.search_questions(questions, first.id) == ([first], 1)
    by_title, total = logic.search_questions(questions, first.title.replace("_", " ").upper())
    assert total == len(logic.questions_of(questions, first.title)) and first in by_title
    words = first.question.split()[1:3]
    matches, _ = logic.search_questions(questions, " ".join(words))
    assert first in matches and all(all(w.lower() in (q.title + " " + q.question).lower() for w in words)
                                    for q in matches)
    assert logic.search_questions(questions, "zzz-no-such-thing") == ([], 0)
    limited, total = logic.search_questions(questions, "the", limit=3)
    assert len(limited) == 3 and total > 3
    assert logic.article_titles(questions)[0] == first.title


def test_served_card_reads_the_export_metadata(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / METADATA_FILENAME).write_text(json.dumps({
        "arm": "bert", "source": "standin:bert", "source_kind": "standin", "standin": True, "architecture": "bert"}))
    card = logic.served_card("bert", tmp_path)
    assert card.standin is True and card.kind == "served" and card.source == "standin:bert"
    unknown = logic.served_card("distilbert", tmp_path)
    assert unknown.standin is None and "no " in unknown.source and METADATA_FILENAME in unknown.source
    assert logic.dom_key("bert-O2.int8") == "bert-O2-int8"
    assert logic.md_escape("a_b *c* $5") == r"a\_b \*c\* \$5"


# --- answering with every arm (fake backend, real replay arm) ----------------------------------------------------


def test_every_arm_answers_side_by_side_with_scores_and_errors_kept_per_arm(tmp_path):
    from abqa.client.arms import ReplayArm

    dataset = load_builtin_sample()
    question = dataset.questions[0]
    reference = question.answer_texts[0]
    replay = ReplayArm.load("real", replay_file(tmp_path, {question.id: reference}), set(dataset.ids()))
    cards = [logic.ArmCard("distilbert", "served", False, "x"), logic.ArmCard("bert", "served", True, "standin:bert"),
             logic.ArmCard("broken", "served", False, "y")]
    backend = FakeBackend(fail={"broken": AnswerFailed("model broken: bad input")})
    results = logic.answer_with_every_arm(question, backend, cards, {"real": replay})
    by_arm = {r.arm: r for r in results}
    assert [r.arm for r in results] == ["distilbert", "bert", "broken", "real"]
    first_word = question.context.split()[0]
    assert by_arm["bert"].answer == first_word and by_arm["bert"].latency_ms == 4.0 and by_arm["bert"].standin
    expected_em = float(first_word.lower().strip(".,") in [a.lower() for a in question.answer_texts])
    assert by_arm["distilbert"].em == expected_em
    assert by_arm["broken"].answer is None and "bad input" in by_arm["broken"].error
    assert by_arm["real"].answer == reference and (by_arm["real"].em, by_arm["real"].f1) == (1.0, 1.0)
    assert by_arm["real"].latency_ms is None and by_arm["real"].kind == "replay"
    assert [call[2] for call in backend.calls] == [question.id] * 3   # the router can log the SQuAD id
    rows = logic.results_table(results)
    assert rows[1]["note"] == logic.STANDIN_LABEL and rows[3]["EM"] == 100.0 and rows[2]["answer"].startswith("(error)")

    other = dataset.questions[1]
    missing = logic.answer_with_every_arm(other, backend, [], {"real": replay})[0]
    assert missing.answer is None and other.id in missing.error

    free = logic.answer_with_every_arm(logic.free_question(QUESTION, CONTEXT), backend, cards[:1], {"real": replay})
    assert free[0].answer == "The" and free[0].em is None and free[0].f1 is None
    assert free[1].answer is None and "typed" in free[1].error


def test_app_scores_an_xquad_question_like_evaluate_does():
    from abqa.core.scoring import rule_for
    from abqa.core.squad import SquadAnswer, SquadQuestion

    chinese = SquadQuestion("zh:q1", "哪所大学？", "他在北京大学读书。", (SquadAnswer("北京大学", 2),), "t", language="zh")
    # MLQA splits Chinese into characters: half the answer is partly right (the v1.1 script would say 0).
    em, f1 = logic.score("北京", chinese, rule_for("1.1", multilingual=True))   # an XQuAD data set's rule
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    english = dataclasses.replace(chinese, id="q1", language=None)
    assert logic.score("北京", english, rule_for("1.1")) == (0.0, 0.0)


def test_shared_replays_only_on_the_shared_dev_set(shared_data):
    from abqa.core.data_sources import resolve as resolve_squad

    from abqa.benchmark import SHARED_REPLAY_PAIR

    dev = resolve_squad("shared")
    specs = dict(logic.replay_specs(logic.UiSettings(), dev))
    assert set(specs) == set(SHARED_REPLAY_PAIR) and all(p.is_file() for p in specs.values())
    assert logic.replay_specs(logic.UiSettings(shared_replay=False), dev) == []
    assert logic.replay_specs(logic.UiSettings(), load_builtin_sample()) == []
    arms, errors = logic.load_replays([*specs.items(), ("gone", Path("/nonexistent.json"))], dev)
    assert set(arms) == set(specs) and len(errors) == 1 and "gone" in errors[0]
    # The real fine-tuned BERT answers the first dev question (Super Bowl 50) correctly.
    first = dev.questions[0]
    bert = next(name for name in SHARED_REPLAY_PAIR if name.startswith("bert"))
    result = logic.answer_with_every_arm(first, None, [], {bert: arms[bert]})[0]
    assert result.answer == arms[bert].predictions[first.id] and result.f1 == 1.0


# --- through a router (its FastAPI app with a fake backend) ---------------------------------------------------------


def test_router_arms_pin_every_arm_and_map_errors(tmp_path):
    from abqa.router.app import create_app
    from abqa.router.policy import RoutingPolicy
    from abqa.router.requestlog import RequestLog, make_engine, read_entries

    policy = RoutingPolicy.build("exp-ui", "split", ["distilbert", "bert"], [1, 0])
    fake = FakeBackend(fail={"bert": BackendUnavailable("no Triton server answers at grpc://127.0.0.1:1")})
    db = f"sqlite:///{tmp_path / 'router.db'}"
    with TestClient(create_app(policy, fake, RequestLog(db))) as client:
        arms = logic.RouterArms("http://testserver", client=client)
        assert arms.arm_names() == ["distilbert", "bert"]
        answer = arms.answer("distilbert", QUESTION, CONTEXT, squad_id="q-1")
        assert (answer.arm, answer.answer, answer.latency_ms) == ("distilbert", "The", 2.0)
        with pytest.raises(BackendUnavailable, match="503.*no Triton server"):
            arms.answer("bert", QUESTION, CONTEXT)
        with pytest.raises(AnswerFailed, match="422"):
            arms.answer("gpt", QUESTION, CONTEXT)
    entries = [e for e in read_entries(make_engine(db)) if e.status == "ok"]
    assert [(e.arm, e.assignment, e.squad_id) for e in entries] == [("distilbert", "pinned", "q-1")]


def test_router_arms_without_a_router_say_how_to_start_one():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendUnavailable, match=f"No abqa router answers at {url}.*abqa router"):
        logic.RouterArms(url, timeout_s=5).arm_names()


# --- reports ---------------------------------------------------------------------------------------------------


def tiny_run(run_dir: Path, questions: int = 24) -> dict:
    """A run folder with a real (small) report: two served arms over the built-in sample."""
    from abqa.analysis.report import build_report

    run_dir.mkdir(parents=True)
    lines = []
    for index, question in enumerate(load_builtin_sample().questions[:questions]):
        for arm, latency, right in (("distilbert", 10.0 + index % 3, index % 3 != 0), ("bert", 20.0 + index % 5, index % 4 != 0)):
            prediction = question.answer_texts[0] if right else "nothing"
            lines.append(json.dumps({"id": question.id, "arm": arm, "prediction": prediction, "em": float(right),
                                     "f1": float(right), "latency_ms": latency, "windows": 1, "tokens": 90,
                                     "started_at": "2026-01-01T00:00:00+00:00", "status": "ok", "error": None}))
    (run_dir / "eval.jsonl").write_text("\n".join(lines) + "\n")
    return build_report(run_dir, n_resamples=200).data


def test_report_browser_shows_verdict_tables_and_plots(tmp_path, app_settings):
    runs = tmp_path / "runs"
    data = tiny_run(runs / "tiny-ab")
    (runs / "broken").mkdir()
    (runs / "broken" / "report.json").write_text("{not json")
    os.utime(runs / "broken" / "report.json", (time.time() - 60, time.time() - 60))   # tiny-ab is the newest
    app_settings(triton_url=f"127.0.0.1:{free_port()}", squad="builtin", runs=str(runs))
    app = run_app()
    run_box = next(box for box in app.selectbox if box.label == "Run")
    assert run_box.value == runs / "tiny-ab" and set(run_box.options) == {"tiny-ab", "broken"}
    verdict = next(info.value for info in app.info if "distilbert vs bert" in info.value)
    assert verdict.replace("\\", "") == "- " + "\n- ".join(data["verdict"])
    tables = [table.value for table in app.table]
    arms_table = next(table for table in tables if "EM % [95% CI]" in table.columns)
    assert list(arms_table.index) == list(data["arms"])
    assert any("exact match: McNemar" in table.index for table in tables)
    images = app.get("image")
    assert len(images) == len(data["plots"]) >= 3
    assert any(button.label == "Download report.html" for button in app.get("download_button"))

    app = run_box.set_value(runs / "broken").run()
    assert not app.exception
    assert any("broken/report.json" in error.value and "abqa report" in error.value for error in app.error)


# --- the app under AppTest ------------------------------------------------------------------------------------------


def test_app_without_a_server_says_so_and_how_to_start_one(tmp_path, app_settings):
    port = free_port()
    app_settings(triton_url=f"127.0.0.1:{port}", squad="builtin", runs=str(tmp_path))
    app = run_app()
    errors = [error.value for error in app.error]
    assert len(errors) == 1 and f"grpc://127.0.0.1:{port}" in errors[0] and "`abqa serve`" in errors[0]
    # Nothing to ask (no served arm, no replay file), and the report tab says where reports come from.
    assert next(b for b in app.button if b.label == "Answer with every arm").disabled
    assert any("No report under" in info.value for info in app.info)

    app_settings(router_url=f"http://127.0.0.1:{port}", squad="builtin", runs=str(tmp_path))
    app = run_app()
    errors = [error.value for error in app.error]
    assert len(errors) == 1 and f"http://127.0.0.1:{port}" in errors[0] and "`abqa router`" in errors[0]


def test_app_shows_replayed_answers_and_references_without_a_server(tmp_path, app_settings):
    dataset = load_builtin_sample()
    question = dataset.questions[0]
    predictions = replay_file(tmp_path, {question.id: question.answer_texts[0]})
    app_settings(triton_url=f"127.0.0.1:{free_port()}", squad="builtin", runs=str(tmp_path),
                 replays=(("real", str(predictions)),))
    app = run_app()
    assert any(question.answer_texts[0] in md.value for md in app.markdown if "Reference answers" in md.value)
    app = next(b for b in app.button if b.label == "Answer with every arm").click().run()
    table = app.dataframe[0].value
    assert list(table["arm"]) == ["real"] and table["answer"][0] == question.answer_texts[0]
    assert table["EM"][0] == 100.0 and table["F1"][0] == 100.0


def standin_repository(source: Path, out: Path, standin_arms: set[str]) -> Path:
    """A repository for the app beside the served one: the same tokenizers, metadata saying who is a stand-in."""
    for arm_dir in source.iterdir():
        if not (arm_dir / METADATA_FILENAME).is_file():
            continue
        (out / arm_dir.name).mkdir(parents=True)
        (out / arm_dir.name / TOKENIZER_DIRNAME).symlink_to(arm_dir / TOKENIZER_DIRNAME)
        metadata = json.loads((arm_dir / METADATA_FILENAME).read_text())
        metadata["standin"] = arm_dir.name in standin_arms
        (out / arm_dir.name / METADATA_FILENAME).write_text(json.dumps(metadata))
    return out


@pytest.mark.integration
def test_app_answers_with_both_served_arms_and_labels_the_stand_in(triton_server, tiny_repository, tmp_path,
                                                                    app_settings):
    from abqa.client.arms import ServedArm

    dataset = load_builtin_sample()
    question = dataset.questions[2]
    repository = standin_repository(tiny_repository, tmp_path / "repo", {"bert"})
    predictions = replay_file(tmp_path, {question.id: question.answer_texts[0]})
    app_settings(triton_url=triton_server.grpc.address, model_repository=str(repository), squad="builtin",
                 runs=str(tmp_path), replays=(("real", str(predictions)),))
    app = run_app()
    assert not app.error
    app = app.text_input(key="search").input(question.id).run()
    assert app.selectbox(key="question").value == question
    app = app.button(key="ask-squad").click().run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value.set_index("arm")
    assert list(table.index) == ["bert", "distilbert", "real"]
    direct = ServedArm("distilbert", tiny_repository, triton_server.grpc.address, "grpc")
    direct.connect()
    try:
        expected = direct.predict(question.question, question.context).answer.text
    finally:
        direct.close()
    assert table.loc["distilbert", "answer"] == expected    # the evaluate stage's answer
    for arm in ("bert", "distilbert"):
        assert table.loc[arm, "answer"] in question.context and table.loc[arm, "latency ms"] > 0
        assert 0 <= table.loc[arm, "F1"] <= 100
    assert table.loc["bert", "note"] == logic.STANDIN_LABEL and table.loc["distilbert", "note"] == ""
    assert [w.value for w in app.warning if w.value == logic.STANDIN_LABEL] == [logic.STANDIN_LABEL]
    assert table.loc["real", "answer"] == question.answer_texts[0] and table.loc["real", "EM"] == 100.0

    app = app.radio(key="mode").set_value("Your own question").run()
    app.text_input(key="free-question").input(QUESTION)
    app.text_area(key="free-context").input(CONTEXT)
    app = next(button for button in app.button if button.label == "Answer with every arm").click().run()
    assert not app.exception
    free = app.dataframe[0].value.set_index("arm")
    # A typed question has no references (nothing to score) and no recorded answers (replays are left out).
    assert list(free.index) == ["bert", "distilbert"] and free["EM"].isna().all()
    assert all(free.loc[arm, "answer"] in CONTEXT for arm in ("bert", "distilbert"))


# --- the app in a headless browser ----------------------------------------------------------------------------------


def find_browser() -> str | None:
    for candidate in (os.environ.get("ABQA_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def wait_for_health(url: str, process: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"abqa ui exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"abqa ui did not answer at {url} within {timeout_s:.0f} s")


@pytest.mark.integration
def test_browser_asks_a_question_and_reads_both_arms_answers(triton_server, tiny_repository, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    browser_path = find_browser()
    if browser_path is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set ABQA_CHROMIUM)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "ui.log"
    with open(log_path, "wb") as log_file:
        process = spawn(
            [sys.executable, "-m", "abqa", "ui", "--triton-url", triton_server.grpc.address, "--model-repository",
             str(tiny_repository), "--squad", "builtin", "--runs", str(tmp_path), "--port", str(port)],
            stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_for_health(url, process)
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.get_by_text("Your own question").click()
                page.get_by_label("Your question").fill(QUESTION)
                page.get_by_label("Context (the passage that holds the answer)").fill(CONTEXT)
                page.get_by_role("button", name="Answer with every arm").click()
                answers = {}
                for arm in ("bert", "distilbert"):
                    line = page.locator(f".st-key-answer-{arm} [data-testid=stMarkdownContainer]", has_text="Answer:")
                    line.wait_for(timeout=60_000)
                    answers[arm] = line.inner_text().split("Answer:", 1)[1].strip()
            finally:
                browser.close()
    finally:
        stop_process(process, grace_s=20)
    assert set(answers) == {"bert", "distilbert"}
    for arm, answer in answers.items():
        assert answer and answer in CONTEXT, (arm, answer, log_path.read_text()[-2000:])
