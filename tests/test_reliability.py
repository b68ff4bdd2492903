"""Reliability without a server: one writer per run folder, signals, full and read-only folders, input bounds, and a
fuzz loop over SQuAD and prediction files. Every failure must end as a named error (exit 2) or a saved, resumable
run, never as a traceback. Servers killed by signal: test_reliability_servers.py; what is promised: docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from abqa.cli import main
from abqa.client.runner import OutputFailed, RecordWriter, ServerGone, StopSignals, _FailureStreak, append_whole
from abqa.core.errors import AbqaError
from abqa.core.io import read_json_file, read_jsonl
from abqa.core.run import EvalRecord, RunFolder, RunFolderBusy
from abqa.core.squad import load_builtin_sample, to_squad_json

# --- data -------------------------------------------------------------------------------------------------------------


def squad_and_predictions(folder: Path, copies: int = 1, answer_chars: int = 0) -> tuple[Path, Path, int]:
    """The built-in sample (repeated with new ids) and a prediction file answering every question; with
    `answer_chars`, answers padded to that length (bigger records, to fill a small disk)."""
    sample = load_builtin_sample()
    questions = [type(q)(f"{q.id}-c{copy}", q.question, q.context, q.answers, f"{q.title} {copy}")
                 for copy in range(copies) for q in sample.questions]
    squad, predictions = folder / "squad.json", folder / "predictions.json"
    squad.write_text(json.dumps(to_squad_json(questions)), encoding="utf-8")
    answers = {q.id: (q.answers[0].text + " " * answer_chars)[:max(answer_chars, len(q.answers[0].text))]
               for q in questions}
    predictions.write_text(json.dumps(answers), encoding="utf-8")
    return squad, predictions, len(questions)


def evaluate_args(squad: Path, predictions: Path, out: Path) -> list[str]:
    return ["evaluate", "--squad", str(squad), "--replay", f"model={predictions}", "--out", str(out), "--no-progress"]


def run_abqa(args: list[str], timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abqa", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def no_traceback(completed: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]


# --- one writer per run folder ------------------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from abqa.core.run import RunFolder
    with RunFolder(sys.argv[1]).lock("abqa evaluate (test)"):
        print("locked", flush=True)
        time.sleep(600)
""")


def hold_lock(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path, caplog):
    squad, predictions, _ = squad_and_predictions(tmp_path)
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        refused = run_abqa(evaluate_args(squad, predictions, out))
        assert refused.returncode == 2, refused.stderr
        assert f"in use by pid {holder.pid} (abqa evaluate (test)" in refused.stderr
        no_traceback(refused)
        assert not RunFolder(out).eval.exists()   # refused before anything was written
        # The report and the router's export are writers too.
        assert main(["report", str(out)]) == 2
    finally:
        holder.kill()   # no clean-up: the lock file still names it
        holder.wait()
    assert str(holder.pid) in RunFolder(out).lock_file.read_text()
    with caplog.at_level("WARNING"):
        assert main(evaluate_args(squad, predictions, out)) == 0
    assert f"taking over the lock left by pid {holder.pid}" in caplog.text
    assert RunFolder(out).lock_file.read_text() == ""   # released cleanly


def test_the_lock_is_reentrant_in_its_thread_and_refuses_other_threads(tmp_path):
    folder = RunFolder(tmp_path / "run")
    refused: list[BaseException] = []

    def other_thread():
        try:
            with folder.lock("other"):
                pass
        except RunFolderBusy as exc:
            refused.append(exc)

    with folder.lock("outer"):
        with folder.lock("inner"):          # abqa benchmark holds it while its stages take it again
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
    assert refused and "another thread of this process" in str(refused[0])
    with folder.lock("again"):              # released at the end of the outer block
        pass


@pytest.mark.slow
def test_two_evaluations_started_together_on_one_folder_write_each_pair_once(tmp_path):
    squad, predictions, total = squad_and_predictions(tmp_path, copies=40)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "abqa", *evaluate_args(squad, predictions, out)]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(process.wait(timeout=120), process.stderr.read()) for process in both]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results        # the second either waited its turn (resumed) or was refused
    if codes == [0, 2]:
        assert any("in use by pid" in err for code, err in results if code == 2)
    pairs = [(record["id"], record["arm"]) for record in read_jsonl(RunFolder(out).eval)]
    assert len(pairs) == len(set(pairs)) == total


def test_the_report_flags_a_folder_with_repeated_pairs(tmp_path, capsys):
    # As two writers at once left it before the lock (or an older abqa that appended retries).
    squad, predictions, total = squad_and_predictions(tmp_path)
    out = tmp_path / "run"
    assert main(evaluate_args(squad, predictions, out)) == 0
    eval_path = RunFolder(out).eval
    eval_path.write_text(eval_path.read_text() * 2)
    capsys.readouterr()
    assert main(["report", str(out), "--bootstrap", "100"]) == 0
    assert f"abqa report: WARNING model: {total} (question, arm) pairs appear more than once" in capsys.readouterr().err
    notes = json.loads(RunFolder(out).report_json.read_text())["notes"]
    assert any(note.startswith(f"WARNING model: {total} ") for note in notes)


# --- signals --------------------------------------------------------------------------------------------------------

# Both scripts take a first Ctrl+C inside StopSignals, then a second one at a different moment of the stop.
FIRST_SIGNAL = textwrap.dedent("""
    import signal, time
    from abqa.client.runner import Interrupted, StopSignals
    with StopSignals("abqa evaluate --out runs/x") as stop:
        try:
            signal.raise_signal(signal.SIGINT)
        except Interrupted:
            print("first: interrupted", flush=True)
""")

SECOND_SIGNAL = FIRST_SIGNAL + textwrap.indent(textwrap.dedent("""
    signal.raise_signal(signal.SIGINT)   # while the run stops: once the outcome is saved, or after the grace
    time.sleep(30)
    print("not reached", flush=True)
"""), "    ")

SECOND_SIGNAL_WHILE_SAVING = FIRST_SIGNAL + textwrap.indent(textwrap.dedent("""
    stop.stopping()
    signal.raise_signal(signal.SIGINT)   # lands before meta.json's final write: it waits for it
    with stop.critical():
        print("meta.json saved", flush=True)
    stop.saved()
    print("not reached", flush=True)
"""), "    ")


def run_script(script: str) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert completed.returncode == 128 + signal.SIGINT
    assert "SIGINT again: stopped at once" in completed.stderr
    no_traceback(completed)
    return completed


def test_a_second_ctrl_c_before_the_final_save_waits_for_it_then_exits():
    completed = run_script(SECOND_SIGNAL_WHILE_SAVING)
    assert completed.stdout.split() == ["first:", "interrupted", "meta.json", "saved"]


def test_a_second_ctrl_c_while_stopping_exits_at_once_without_a_traceback():
    completed = run_script(SECOND_SIGNAL)
    assert completed.stdout.strip() == "first: interrupted"
    assert "abqa evaluate --out runs/x" in completed.stderr


def test_the_failure_streak_holds_failures_until_an_answer_and_stops_a_broken_server():
    def record(i: int, ok: bool) -> EvalRecord:
        return EvalRecord(id=f"q{i}", arm="a", prediction="x" if ok else None, em=0.0, f1=0.0, latency_ms=1.0 if ok
                          else None, started_at="t", status="ok" if ok else "failed", error=None if ok else "boom")

    streak = _FailureStreak(limit=3)
    assert streak.admit(record(1, False)) == [] and streak.admit(record(2, False)) == []
    written = streak.admit(record(3, True))          # the model failed those two: they are written now
    assert [r.id for r in written] == ["q1", "q2", "q3"]
    streak.admit(record(4, False))
    assert [r.id for r in streak.release()] == ["q4"]
    streak.admit(record(5, False))
    streak.admit(record(6, False))
    with pytest.raises(ServerGone, match="3 answers failed in a row"):
        streak.admit(record(7, False))               # held ones are not written: a resume asks again


# --- full disk, read-only folder --------------------------------------------------------------------------------------


def test_a_write_that_fails_is_cut_back_so_no_torn_line_is_left(tmp_path, monkeypatch):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"kept": 1}\n')
    real_write = os.write
    calls = []

    def half_then_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[:5])   # a partial write, then the disk is full
        raise OSError(28, "No space left on device")

    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        monkeypatch.setattr(os, "write", half_then_full)
        with pytest.raises(OSError, match="No space"):
            append_whole(fd, b'{"torn": "line"}\n')
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert path.read_text() == '{"kept": 1}\n'

    writer = RecordWriter(tmp_path / "missing-folder" / "eval.jsonl", StopSignals())
    with pytest.raises(OutputFailed, match="cannot write"):
        writer.__enter__()


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str, *, read_only: bool = False):
    """A small tmpfs (a disk that fills up, or a read-only one) when this process may mount one; else skip."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                                 text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def test_a_read_only_output_folder_is_one_clear_error(tmp_path):
    squad, predictions, _ = squad_and_predictions(tmp_path)
    if os.geteuid() != 0:
        readonly = tmp_path / "readonly"
        readonly.mkdir()
        readonly.chmod(0o555)
        context = contextlib.nullcontext(readonly)
    else:   # root writes through permissions: a read-only mount it is
        context = mounted_tmpfs(tmp_path / "readonly", "1m", read_only=True)
    with context as readonly:
        completed = run_abqa(evaluate_args(squad, predictions, readonly / "run"))
    assert completed.returncode == 2
    assert "cannot write to the run folder" in completed.stderr and "run again: abqa evaluate" in completed.stderr
    no_traceback(completed)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_saved_and_failed_and_it_resumes_once_there_is_room(tmp_path):
    squad, predictions, total = squad_and_predictions(tmp_path, copies=60, answer_chars=200)
    with mounted_tmpfs(tmp_path / "small", "384k") as disk:
        out = disk / "run"
        full = run_abqa(evaluate_args(squad, predictions, out))
        assert full.returncode == 1, full.stderr[-2000:]
        no_traceback(full)
        assert "No space left on device" in full.stderr and "resume with:" in full.stderr
        meta = RunFolder(out).read_meta()
        assert meta.status == "failed" and "No space left" in meta.message and meta.resume_command
        text = RunFolder(out).eval.read_text()
        assert text.endswith("\n")                                  # no torn line: the failed write was cut back
        assert 0 < meta.records == text.count("\n") < total
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True, timeout=30)
        resumed = run_abqa(evaluate_args(squad, predictions, out))
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        pairs = [(record["id"], record["arm"]) for record in read_jsonl(RunFolder(out).eval)]
        assert len(pairs) == len(set(pairs)) == total
        assert RunFolder(out).read_meta().status == "complete"


# --- input bounds ---------------------------------------------------------------------------------------------------


def test_input_bounds_are_named_errors_the_user_can_raise(tmp_path, monkeypatch, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(AbqaError, match="nested deeper than 1000 levels.*ABQA_MAX_JSON_DEPTH"):
        read_json_file(deep, "--squad deep.json")

    squad, predictions, _ = squad_and_predictions(tmp_path)
    monkeypatch.setenv("ABQA_MAX_INPUT_MB", "0.001")
    with pytest.raises(AbqaError, match=r"over the 0.001 MB abqa reads.*ABQA_MAX_INPUT_MB"):
        read_json_file(squad, f"--squad {squad}")
    monkeypatch.setenv("ABQA_MAX_INPUT_MB", "5")
    assert read_json_file(squad, "squad")[0]["data"]

    long = json.loads(squad.read_text())
    first = long["data"][0]["paragraphs"][0]
    first["context"] = first["context"] + " filler" * 20_000
    (tmp_path / "long.json").write_text(json.dumps(long))
    out = tmp_path / "run"
    assert main(["evaluate", "--squad", str(tmp_path / "long.json"), "--replay", f"model={predictions}",
                 "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"question {first['qas'][0]['id']}" in error and "over the 100,000" in error
    assert "ABQA_MAX_CONTEXT_CHARS" in error
    monkeypatch.setenv("ABQA_MAX_CONTEXT_CHARS", "1000000")
    assert main(["evaluate", "--squad", str(tmp_path / "long.json"), "--replay", f"model={predictions}",
                 "--out", str(out), "--no-progress"]) == 0


def test_a_bad_replay_file_leaves_no_run_folder_behind(tmp_path, capsys):
    squad, _, _ = squad_and_predictions(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": 1')
    assert main(["evaluate", "--squad", str(squad), "--replay", f"model={bad}", "--out", str(tmp_path / "run")]) == 2
    assert "looks truncated" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- fuzz -------------------------------------------------------------------------------------------------------------


def mutate(obj, rng: random.Random, depth: int = 0):
    """One random structural change somewhere in a decoded JSON value."""
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        key = rng.choice(list(obj))
        choice = rng.random()
        if choice < 0.2:
            return {k: v for k, v in obj.items() if k != key}
        if choice < 0.7:
            return {**obj, key: mutate(obj[key], rng, depth + 1)}
        return {**obj, key: rng.choice([None, 0, -1, 1e308, True, "", "\ud800", [], {}, "x" * 50, [[[[]]]]])}
    if isinstance(obj, list) and obj and rng.random() < 0.8:
        index = rng.randrange(len(obj))
        choice = rng.random()
        if choice < 0.2:
            return obj[:index] + obj[index + 1:]
        if choice < 0.3:
            return obj + [obj[index]]
        return obj[:index] + [mutate(obj[index], rng, depth + 1)] + obj[index + 1:]
    return rng.choice([None, 0, 3.5, -7, "", "text", "\ud800", [], {}, {"id": None}, [None], True])


def fuzzed_bytes(text: str, rng: random.Random) -> bytes:
    """Either a structural mutation or damage to the bytes (truncation, flipped bytes, invalid UTF-8)."""
    if rng.random() < 0.6:
        return json.dumps(mutate(json.loads(text), rng)).encode("utf-8")
    data = bytearray(text.encode("utf-8"))
    choice = rng.random()
    if choice < 0.3:
        return bytes(data[:rng.randrange(len(data))])
    if choice < 0.7:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    return b"\xff\xfe" + bytes(data)


FUZZ_SEED, FUZZ_CASES = 20260101, 80


@pytest.mark.slow
def test_fuzzed_squad_prediction_and_run_files_give_named_errors_or_scores_never_a_traceback(tmp_path, capsys):
    rng = random.Random(FUZZ_SEED)
    squad, predictions, total = squad_and_predictions(tmp_path)
    good_run = tmp_path / "good"
    assert main(evaluate_args(squad, predictions, good_run)) == 0
    outcomes = {"scored": 0, "named error": 0}
    for case in range(FUZZ_CASES):
        target = ("squad", "predictions", "eval.jsonl", "meta.json")[case % 4]
        work = tmp_path / f"case-{case}"
        work.mkdir()
        squad_file, predictions_file, out = work / "squad.json", work / "predictions.json", work / "run"
        squad_file.write_bytes(squad.read_bytes())
        predictions_file.write_bytes(predictions.read_bytes())
        if target == "squad":
            squad_file.write_bytes(fuzzed_bytes(squad.read_text(), rng))
        elif target == "predictions":
            predictions_file.write_bytes(fuzzed_bytes(predictions.read_text(), rng))
        else:   # a resumed run folder with a damaged file
            out.mkdir()
            for name in ("eval.jsonl", "meta.json"):
                (out / name).write_bytes((good_run / name).read_bytes())
            original = (good_run / target).read_text()
            if target == "eval.jsonl":
                lines = original.splitlines(keepends=True)
                index = rng.randrange(len(lines))
                lines[index] = fuzzed_bytes(lines[index], rng).decode("utf-8", "replace") + "\n"
                (out / target).write_text("".join(lines))
            else:
                (out / target).write_bytes(fuzzed_bytes(original, rng))
        code = main(evaluate_args(squad_file, predictions_file, out))   # anything but AbqaError would raise here
        captured = capsys.readouterr()
        assert code in (0, 2), (case, target, code, captured.err[-1500:])
        assert "Traceback" not in captured.err
        outcomes["scored" if code == 0 else "named error"] += 1
    assert outcomes["scored"] and outcomes["named error"]   # the loop did reach both ends


# --- overload: the queue bound ---------------------------------------------------------------------------------------


def test_the_queue_bound_goes_from_the_export_through_config_pbtxt_to_the_server(tiny_repository):
    from abqa.core.config import DEFAULT_MAX_QUEUE_SIZE
    from abqa.serve.repository import read_arm_model_config
    from abqa.serve.server import queue_bound
    from test_serve import serving_config_for

    arm = read_arm_model_config(tiny_repository, "bert")
    assert "default_queue_policy" in (tiny_repository / "bert" / "config.pbtxt").read_text()
    assert arm.max_queue_size == DEFAULT_MAX_QUEUE_SIZE
    assert [queue_bound(arm, override) for override in (None, 0, 3)] == [DEFAULT_MAX_QUEUE_SIZE, 0, 3]
    exported_before = dataclasses.replace(arm, max_queue_size=0)   # a config.pbtxt without a queue policy
    assert queue_bound(exported_before, None) == DEFAULT_MAX_QUEUE_SIZE
    with pytest.raises(AbqaError, match="--max-queue-size"):
        queue_bound(arm, -1)
    assert serving_config_for(tiny_repository, arm, 5).dynamic_batching.default_queue_policy.max_queue_size == 5
    assert not serving_config_for(tiny_repository, arm, 0).dynamic_batching.HasField("default_queue_policy")


# --- router, app -------------------------------------------------------------------------------------------------------


def test_the_router_answers_a_lone_surrogate_with_a_422_not_a_500(tmp_path):
    from fastapi.testclient import TestClient

    from test_router import make_app

    app, _backend, _log = make_app(tmp_path)
    with TestClient(app) as client:
        response = client.post("/v1/answer", content='{"question": "who\\ud800?", "context": "The Danube."}',
                               headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "question"]


def test_the_app_shows_reports_only_from_its_runs_folder_and_plots_only_inside_the_run(tmp_path):
    from abqa.ui.logic import report_figure, runs_folder

    root = tmp_path / "runs"
    (root / "a").mkdir(parents=True)
    assert runs_folder("a", root) == (root / "a").resolve()
    assert runs_folder(str(root), root) == root.resolve()
    for elsewhere in ("/", "..", str(tmp_path), "a/../../x"):
        with pytest.raises(AbqaError, match="outside"):
            runs_folder(elsewhere, root)
    run = root / "a"
    assert report_figure(run, "plots/accuracy.png") == (run / "plots" / "accuracy.png").resolve()
    assert report_figure(run, "../../../etc/passwd") is None
    assert report_figure(run, "/etc/passwd") is None
