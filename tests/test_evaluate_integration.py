"""`abqa evaluate` against a real Triton (`abqa serve`) serving the tiny exported bert and distilbert arms:
every order mode and both protocols, answers identical to ONNX Runtime in process, long contexts, and nothing
lost when the client is interrupted or killed, or when the server dies."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abqa.cli import main
from abqa.client.runner import arm_order
from abqa.core.config import shared_data_dir
from abqa.core.io import read_jsonl
from abqa.core.metrics import score_answer
from abqa.core.qa import best_answer, encode_question, group_by_length, load_tokenizer
from abqa.core.squad import load_builtin_sample, load_squad_file, select_questions, to_squad_json

pytestmark = pytest.mark.integration

ARMS = ("distilbert", "bert")


def dev_questions_args() -> list[str]:
    """20 real dev questions when the shared dev set is there, else the built-in sample's first 20."""
    return ["--squad", "shared" if shared_data_dir() else "builtin", "--limit", "20"]


def question_set():
    dataset = load_squad_file(shared_data_dir() / "squad-v1.1" / "dev-v1.1.json") if shared_data_dir() \
        else load_builtin_sample()
    return select_questions(dataset, limit=20)


def records_of(out: Path) -> list[dict]:
    return list(read_jsonl(out / "eval.jsonl"))


def server_args(server, protocol: str, repository: Path) -> list[str]:
    url = server.endpoint(protocol).address
    return ["--url", url, "--protocol", protocol, "--model-repository", str(repository), "--arms", ",".join(ARMS)]


@pytest.mark.parametrize("order, protocol", [("random", "grpc"), ("interleaved", "http"), ("parallel", "grpc"),
                                             ("parallel", "http")])
def test_every_order_mode_answers_each_question_with_each_arm_once(triton_server, tiny_repository, tmp_path,
                                                                   order, protocol):
    out = tmp_path / "run"
    args = dev_questions_args()
    code = main(["evaluate", *args, *server_args(triton_server, protocol, tiny_repository), "--order", order,
                 "--seed", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    questions = {q.id: q for q in question_set()}
    records = records_of(out)
    assert len(records) == 40 and {(r["id"], r["arm"]) for r in records} == {(i, a) for i in questions for a in ARMS}
    for record in records:
        question = questions[record["id"]]
        assert record["status"] == "ok" and record["prediction"] and record["prediction"] in question.context
        expected = score_answer(record["prediction"], question.answer_texts)
        assert (record["em"], record["f1"]) == (expected.em, expected.f1)
        assert record["latency_ms"] > 0 and record["windows"] >= 1 and record["tokens"] > len(question.question.split())
        # Every latency says how many of the run's requests were in flight when it was measured.
        assert record["concurrency"] == (len(ARMS) if order == "parallel" else 1)
    if order != "parallel":
        # Records are written in the order the arms answered, which is the order the mode prescribes.
        for position, question_id in enumerate(questions):
            answered = [r["arm"] for r in records if r["id"] == question_id]
            assert answered == arm_order(list(ARMS), order, 3, question_id, position)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["order"] == order
    isolated = order != "parallel"
    assert meta["latency"]["isolated"] is isolated and meta["latency"]["concurrency"] == (1 if isolated else len(ARMS))
    assert meta["server"]["kind"] == "abqa-serve" and meta["server"]["pid"] == triton_server.pid
    assert meta["server"]["protocol"] == protocol and meta["server"]["peak_rss_mb"] > 50
    assert meta["server"]["triton_version"].startswith("triton")
    for arm in ARMS:
        info = meta["arms"][arm]
        assert info["kind"] == "served" and info["architecture"] == arm and info["standin"] is False
        assert info["parameters"] > 1_000_000 and info["onnx_file_size"] > 1_000_000
        assert info["triton"]["max_batch_size"] == 8
        assert info["base_arm"] is None and info["variant"] == "fp32" and info["pad_multiple"] == 8
    assert meta["arms"]["bert"]["triton"]["inputs"] == ["input_ids:INT64", "attention_mask:INT64", "token_type_ids:INT64"]
    assert meta["arms"]["distilbert"]["triton"]["inputs"] == ["input_ids:INT64", "attention_mask:INT64"]


def test_served_answers_equal_onnxruntime_in_process(triton_server, tiny_repository, tmp_path):
    """The whole client path (windows -> Triton -> logits -> span) gives what the exported graph gives locally."""
    import onnxruntime

    out = tmp_path / "run"
    args = dev_questions_args()
    assert main(["evaluate", *args, *server_args(triton_server, "grpc", tiny_repository), "--order", "interleaved",
                 "--out", str(out), "--no-progress"]) == 0
    served = {(r["id"], r["arm"]): r["prediction"] for r in records_of(out)}
    for arm in ARMS:
        tokenizer = load_tokenizer(tiny_repository / arm / "tokenizer")
        session = onnxruntime.InferenceSession(str(tiny_repository / arm / "1" / "model.onnx"),
                                               providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        for question in question_set():
            windows = encode_question(tokenizer, question.question, question.context, input_names=names)
            starts, ends = [None] * len(windows), [None] * len(windows)
            for indices, arrays in group_by_length(windows):
                start, end = session.run(["start_logits", "end_logits"], arrays)
                for row, index in enumerate(indices):
                    starts[index], ends[index] = start[row], end[row]
            assert served[(question.id, arm)] == best_answer(windows, starts, ends, question.context).text


def test_a_context_far_longer_than_384_tokens_is_answered(triton_server, tiny_repository, tmp_path):
    sample = load_builtin_sample()
    long_context = " ".join([q.context for q in sample.questions] * 4)  # ~ 40 windows, more than max_batch_size
    question = sample.questions[0]
    data = {"version": "1.1", "data": [{"title": "Long", "paragraphs": [{"context": long_context, "qas": [
        {"id": "long-1", "question": question.question,
         "answers": [{"text": a.text, "answer_start": long_context.index(a.text)} for a in question.answers]}]}]}]}
    path = tmp_path / "long.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "run"
    assert main(["evaluate", "--squad", str(path), *server_args(triton_server, "grpc", tiny_repository),
                 "--out", str(out), "--no-progress"]) == 0
    records = records_of(out)
    assert len(records) == 2
    for record in records:
        assert record["status"] == "ok" and record["windows"] > 8 and record["prediction"] in long_context
        assert record["tokens"] > 8 * 384 * 0.5


# --- nothing lost ------------------------------------------------------------------------------------------------------


def synthetic_squad(path: Path, copies: int = 12) -> int:
    """The built-in sample repeated with new ids: enough questions that a run can be stopped half way."""
    sample = load_builtin_sample()
    questions = []
    for copy in range(copies):
        for q in sample.questions:
            questions.append(type(q)(f"{q.id}-c{copy}", q.question, q.context, q.answers, f"{q.title} {copy}"))
    path.write_text(json.dumps(to_squad_json(questions)), encoding="utf-8")
    return len(questions)


def start_client(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "abqa", *args], stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)


def wait_for_lines(path: Path, at_least: int, process: subprocess.Popen, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = path.read_bytes().count(b"\n") if path.exists() else 0
        if lines >= at_least:
            return lines
        assert process.poll() is None, f"client ended early with {process.returncode}"
        time.sleep(0.02)
    raise AssertionError(f"{path}: fewer than {at_least} lines after {timeout_s} s")


def assert_each_pair_once(out: Path, total_questions: int) -> list[dict]:
    records = records_of(out)
    pairs = [(r["id"], r["arm"]) for r in records]
    assert len(pairs) == len(set(pairs)) == total_questions * len(ARMS)
    return records


def test_interrupt_then_kill_then_resume_keeps_each_pair_exactly_once(triton_server, tiny_repository, tmp_path):
    total = synthetic_squad(tmp_path / "data.json")
    out = tmp_path / "run"
    args = ["evaluate", "--squad", str(tmp_path / "data.json"), *server_args(triton_server, "grpc", tiny_repository),
            "--order", "random", "--out", str(out), "--no-progress"]
    log = tmp_path / "client.log"

    client = start_client(args, log)
    seen = wait_for_lines(out / "eval.jsonl", 10, client)
    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=60) == 130
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "interrupted" and "--out" in meta["resume_command"]
    assert "resume with:" in log.read_text()
    interrupted_at = len(records_of(out))
    assert seen <= interrupted_at < total * len(ARMS)

    client = start_client(args, log)
    wait_for_lines(out / "eval.jsonl", interrupted_at + 10, client)
    client.kill()  # no chance to clean up: a torn last line is possible
    client.wait(timeout=30)
    assert len(records_of(out)) < total * len(ARMS)

    resume = shlex.split(meta["resume_command"])
    assert resume[:2] == ["abqa", "evaluate"]
    finished = subprocess.run([sys.executable, "-m", "abqa", *resume[1:], "--no-progress"], capture_output=True,
                              text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    records = assert_each_pair_once(out, total)
    assert all(r["status"] == "ok" for r in records)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["sessions"] == 3 and meta["records"] == total * len(ARMS)


def test_a_server_that_dies_ends_the_run_with_everything_saved(triton_server, tiny_repository, tmp_path):
    from abqa.serve.process import start_server

    total = synthetic_squad(tmp_path / "data.json")
    out = tmp_path / "run"
    log = tmp_path / "client.log"
    doomed = start_server(tiny_repository)
    try:
        client = start_client(["evaluate", "--squad", str(tmp_path / "data.json"),
                               *server_args(doomed, "grpc", tiny_repository), "--order", "parallel",
                               "--out", str(out), "--no-progress", "--retries", "2"], log)
        wait_for_lines(out / "eval.jsonl", 10, client)
        os.killpg(doomed.pid, signal.SIGKILL)  # a crash: the whole server tree at once
        assert client.wait(timeout=120) == 1
    finally:
        doomed.stop()
    text = log.read_text()
    assert "stopped answering" in text and "resume with:" in text
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "failed" and "stopped answering" in meta["message"]
    before = records_of(out)
    assert 10 <= len(before) < total * len(ARMS)
    # Resume against another server with the same models; pairs that failed while it died are asked again.
    code = main(["evaluate", "--squad", str(tmp_path / "data.json"), *server_args(triton_server, "grpc", tiny_repository),
                 "--order", "parallel", "--out", str(out), "--no-progress", "--retry-failed"])
    assert code == 0
    records = assert_each_pair_once(out, total)
    assert all(r["status"] == "ok" for r in records)
    assert json.loads((out / "meta.json").read_text())["status"] == "complete"
