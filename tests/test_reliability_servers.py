"""Reliability with real servers killed by signal: a server that goes away ends a run as failed (never "complete"),
with everything saved and the resume command; no server outlives what started it; Ctrl+C mid-question stops at once;
overload gets fast rejections, and a crash is reported with tritonserver's own last lines.

Each test starts its own `abqa serve` (tiny models, free loopback ports): they stop or kill it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from abqa.core.io import read_jsonl
from abqa.core.run import RunFolder
from abqa.serve.process import start_server
from test_evaluate_integration import ARMS, server_args, start_client, synthetic_squad, wait_for_lines
from test_processes import gone

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def tritonserver_of(server) -> "psutil.Process":  # noqa: F821
    return next(process for process in server.processes() if process.name() == "tritonserver")


def kill_leftovers(processes) -> None:
    """Whatever a failed test left running."""
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def run_args(data: Path, server, repository: Path, out: Path, *extra: str) -> list[str]:
    return ["evaluate", "--squad", str(data), *server_args(server, "grpc", repository), "--out", str(out),
            "--no-progress", *extra]


def pairs_of(out: Path) -> list[tuple[str, str]]:
    return [(record["id"], record["arm"]) for record in read_jsonl(RunFolder(out).eval)]


def test_a_server_stopped_mid_run_fails_the_run_and_records_no_failure_of_the_model(
        tiny_repository, triton_server, tmp_path):
    total = synthetic_squad(tmp_path / "data.json", copies=6)
    out, log = tmp_path / "run", tmp_path / "client.log"
    doomed = start_server(tiny_repository)
    try:
        client = start_client(run_args(tmp_path / "data.json", doomed, tiny_repository, out), log)
        wait_for_lines(RunFolder(out).eval, 10, client)
        doomed.process.send_signal(signal.SIGTERM)   # a graceful stop: NOT_FOUND while it unloads, then refused
        assert client.wait(timeout=120) == 1
    finally:
        doomed.stop()
    text = log.read_text()
    assert "abqa evaluate: failed: the server at" in text and "resume with:" in text and "Traceback" not in text
    meta = RunFolder(out).read_meta()
    assert meta.status == "failed" and meta.resume_command and meta.records < total * len(ARMS)
    records = list(read_jsonl(RunFolder(out).eval))
    assert records and all(record["status"] == "ok" for record in records)   # the server's end is not the model's
    resumed = subprocess.run([sys.executable, "-m", "abqa", *run_args(tmp_path / "data.json", triton_server,
                                                                     tiny_repository, out)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(pairs_of(out)) == len(set(pairs_of(out))) == total * len(ARMS)


def test_abqa_serve_killed_outright_takes_tritonserver_with_it_and_the_client_notices_in_seconds(
        tiny_repository, tmp_path):
    synthetic_squad(tmp_path / "data.json", copies=6)
    out, log = tmp_path / "run", tmp_path / "client.log"
    doomed = start_server(tiny_repository)
    tree = doomed.processes()
    try:
        client = start_client(run_args(tmp_path / "data.json", doomed, tiny_repository, out), log)
        wait_for_lines(RunFolder(out).eval, 10, client)
        doomed.process.kill()          # abqa serve alone, no clean-up: its guardian takes tritonserver down
        killed_at = time.monotonic()
        assert client.wait(timeout=60) == 1
        noticed_s = time.monotonic() - killed_at
        assert all(gone(process.pid, timeout_s=30) for process in tree), "a server process outlived abqa serve"
    finally:
        kill_leftovers(tree)
    assert noticed_s < 45, f"the client took {noticed_s:.1f} s to notice (the request timeout is 60 s)"
    assert RunFolder(out).read_meta().status == "failed"


def test_a_client_killed_outright_leaves_no_server_behind(tiny_repository, tmp_path):
    import psutil

    synthetic_squad(tmp_path / "data.json", copies=6)
    out, log = tmp_path / "run", tmp_path / "client.log"
    client = start_client(["evaluate", "--squad", str(tmp_path / "data.json"), "--start-server",
                           "--model-repository", str(tiny_repository), "--arms", ",".join(ARMS), "--out", str(out),
                           "--no-progress"], log)
    wait_for_lines(RunFolder(out).eval, 10, client, timeout_s=240)
    tree = psutil.Process(client.pid).children(recursive=True)
    assert any(process.name() == "tritonserver" for process in tree)
    client.kill()
    client.wait()
    try:
        assert all(gone(process.pid, timeout_s=30) for process in tree), "a server outlived the run that started it"
    finally:
        kill_leftovers(tree)


def test_ctrl_c_mid_question_stops_at_once_with_the_run_saved(tiny_repository, tmp_path):
    total = synthetic_squad(tmp_path / "data.json", copies=6)
    out, log = tmp_path / "run", tmp_path / "client.log"
    server = start_server(tiny_repository)
    tritonserver = tritonserver_of(server)
    try:
        client = start_client(run_args(tmp_path / "data.json", server, tiny_repository, out), log)
        wait_for_lines(RunFolder(out).eval, 10, client)
        tritonserver.suspend()         # the question in flight now never comes back (a hung server)
        time.sleep(1.5)
        client.send_signal(signal.SIGINT)
        assert client.wait(timeout=10) == 130      # not --timeout (60 s) x retries
    finally:
        tritonserver.resume()
        server.stop()
    meta = RunFolder(out).read_meta()
    assert meta.status == "interrupted" and meta.resume_command and "Traceback" not in log.read_text()
    records = list(read_jsonl(RunFolder(out).eval))
    assert len(records) == meta.records < total * len(ARMS)
    assert all(record["status"] == "ok" for record in records)   # the abandoned question is not recorded


def concurrent_requests(server, count: int) -> list[str]:
    """`count` requests released at once, each from its own client; the error text of each ("" when answered)."""
    from abqa.triton.client import InferFailed, RetryPolicy, TritonClient

    inputs = {name: np.ones((8, 384), dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
    barrier, outcomes = threading.Barrier(count), [""] * count

    def ask(index: int) -> None:
        with TritonClient(server.grpc, retry=RetryPolicy(attempts=1), timeout_s=60) as client:
            barrier.wait()
            try:
                client.request("bert", inputs, ["start_logits"])
            except InferFailed as exc:
                outcomes[index] = str(exc)

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_overload_is_refused_quickly_and_a_tritonserver_crash_is_reported_with_its_last_lines(tiny_repository,
                                                                                              tmp_path):
    server = start_server(tiny_repository, arms=["bert"], max_queue_size=1, log_path=tmp_path / "serve.log")
    try:
        outcomes = concurrent_requests(server, 48)
        rejected = [text for text in outcomes if "Exceeds maximum queue size" in text]
        assert rejected, outcomes
        assert all(text == "" or text in rejected for text in outcomes), set(outcomes)
        assert concurrent_requests(server, 1) == [""] and server.is_running()   # still serving

        os.kill(tritonserver_of(server).pid, signal.SIGSEGV)
        assert server.process.wait(timeout=60) == 2
    finally:
        server.stop()
    output = (tmp_path / "serve.log").read_text()
    assert "tritonserver exited unexpectedly (" in output and "); its output ends:" in output
    assert "Signal (11) received" in output
