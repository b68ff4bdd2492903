"""Load-test stage end to end: real Locust processes against a real Triton (`abqa serve`) and against no server."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from abqa.cli import main
from abqa.core.run import LoadDocument
from abqa.loadtest.runner import LOCUSTFILE

ARMS = ("distilbert", "bert")


def loadtest(tmp_path, *extra: str) -> tuple[int, dict, list[dict]]:
    out = tmp_path / "run"
    code = main(["loadtest", "--arms", ",".join(ARMS), "--squad", "builtin", "--pool-size", "16",
                 "--out", str(out), *extra])
    document = json.loads((out / "load.json").read_text())
    with open(out / "load.csv", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    return code, document, table


def dead_address() -> str:
    """A loopback port nothing listens on (chosen free, then released)."""
    from abqa.serve.process import free_ports

    return f"127.0.0.1:{free_ports(1)[0]}"


@pytest.mark.integration
def test_short_split_run_against_abqa_serve(tmp_path, tiny_repository, triton_server, capsys):
    code, document, table = loadtest(
        tmp_path, "--url", triton_server.http.url, "--metrics-url", triton_server.http.metrics_url,
        "--model-repository", str(tiny_repository), "--users", "2", "--duration", "3s", "--weights", "50:50")
    printed = capsys.readouterr().out
    assert code == 0, printed
    out = tmp_path / "run"
    for key in ("arms", "users", "duration_s", "mode", "weights", "url", "protocol", "started_at", "standin", "dataset"):
        assert key in document
    assert document["arms"] == list(ARMS) and document["users"] == [2] and document["duration_s"] == 3.0
    assert document["mode"] == "split" and document["protocol"] == "http"
    assert document["weights"] == {"distilbert": 50.0, "bert": 50.0}
    assert document["standin"] == {"distilbert": False, "bert": False}
    assert document["dataset"]["source"] == "builtin-sample" and document["dataset"]["inputs_from"]["bert"] == "triton"
    rows = LoadDocument.read(out / "load.json").rows
    assert [(row.arm, row.users) for row in rows] == [("distilbert", 2), ("bert", 2)]
    for row in rows:
        assert row.requests > 10 and row.failures == 0 and row.requests_per_s > 0, row
        assert row.failure_messages == {}
        assert 0 < row.latency_ms.p50 <= row.latency_ms.p95 <= row.latency_ms.p99 <= row.latency_ms.max + 1
        server = row.server.to_dict()
        assert server["error"] is None
        # The server saw what Locust sent (requests cut off at the end of the step may still complete there).
        assert row.requests <= server["request_count"] <= row.requests + 2
        assert server["queue_us"] >= 0 and server["compute_infer_us"] > 0
        assert server["compute_infer_us_per_request"] == pytest.approx(server["compute_infer_us"] / server["request_count"], rel=1e-3)
        batches = {int(size): count for size, count in server["batch_sizes"].items()}
        assert sum(batches.values()) == server["execution_count"]
        assert sum(size * count for size, count in batches.items()) == server["inference_count"]
        assert 1.0 <= server["mean_batch_size"] <= 2.0  # 2 users: at most 2 requests can meet in one batch
    assert [(r["arm"], r["users"], r["failures"]) for r in table] == [("distilbert", "2", "0"), ("bert", "2", "0")]
    assert float(table[1]["p95_ms"]) == rows[1].latency_ms.p95
    step = out / "locust" / "users-2"
    for name in ("locust_stats.csv", "locust_failures.csv", "locust_stats_history.csv", "report.html", "locust.log"):
        assert (step / name).is_file(), name
    # Locust's own CSV (completed at exit) has one line per arm, and it is what load.json reports.
    with open(step / "locust_stats.csv", encoding="utf-8") as handle:
        locust_rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert int(locust_rows["bert"]["Request Count"]) == rows[1].requests
    assert "p95 ms" in printed and "distilbert" in printed and "mean batch" in printed


@pytest.mark.integration
def test_plain_locustfile_in_parallel_mode(tmp_path, tiny_repository, triton_server):
    """`locust -f loadtest/locustfile.py` alone: builds its pool from the repository, asks every arm per request."""
    prefix = tmp_path / "plain"
    completed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "2", "-r", "2", "-t", "3s",
         "--host", triton_server.http.url, "--csv", str(prefix), "--mode", "parallel", "--arms", ",".join(ARMS),
         "--model-repository", str(tiny_repository), "--squad", "builtin", "--pool-size", "8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(f"{prefix}_stats.csv", encoding="utf-8") as handle:
        stats = {row["Name"]: row for row in csv.DictReader(handle)}
    counts = [int(stats[arm]["Request Count"]) for arm in ARMS]
    assert min(counts) > 5 and max(counts) - min(counts) <= 2  # each user request went to both arms
    assert all(int(stats[arm]["Failure Count"]) == 0 for arm in ARMS)


@pytest.mark.integration
def test_grpc_made_gevent_safe(tmp_path, tiny_repository, triton_server):
    code, document, _ = loadtest(
        tmp_path, "--protocol", "grpc", "--url", triton_server.grpc.address,
        "--metrics-url", triton_server.grpc.metrics_url,
        "--model-repository", str(tiny_repository), "--users", "2", "--duration", "2s")
    assert code == 0
    assert document["protocol"] == "grpc"
    for row in document["rows"]:
        assert row["requests"] > 5 and row["failures"] == 0
        assert row["server"]["request_count"] >= row["requests"]
    with open(tmp_path / "run" / "locust" / "users-2" / "locust_stats.csv", encoding="utf-8") as handle:
        assert {row["Type"] for row in csv.DictReader(handle) if row["Name"] in ARMS} == {"GRPC"}


@pytest.mark.slow
def test_server_down_is_failures_with_messages_and_files(tmp_path, tiny_repository, capsys):
    code, document, table = loadtest(
        tmp_path, "--url", f"http://{dead_address()}", "--metrics-url", f"http://{dead_address()}/metrics",
        "--model-repository", str(tiny_repository), "--users", "1,2", "--duration", "2s")
    printed = capsys.readouterr().out
    assert code == 1
    assert [(row["arm"], row["users"]) for row in document["rows"]] == [(a, u) for u in (1, 2) for a in ARMS]
    for row in document["rows"]:
        assert row["requests"] > 0 and row["failures"] == row["requests"]
        assert sum(row["failure_messages"].values()) == row["failures"]
        assert any("Connection refused" in message for message in row["failure_messages"])
        assert row["latency_ms"]["p95"] is None
        assert row["server"]["request_count"] is None and "Connection refused" in row["server"]["error"]
    # the pool came from the export's metadata, since the server could not say
    assert document["dataset"]["inputs_from"] == {"distilbert": "export", "bert": "export"}
    assert len(table) == 4 and all(int(r["failures"]) > 0 for r in table)
    assert (tmp_path / "run" / "locust" / "users-2" / "report.html").is_file()
    assert "Connection refused" in printed and "some requests failed" in printed


@pytest.mark.slow
def test_a_step_that_overruns_is_stopped_and_still_recorded(tmp_path, tiny_repository):
    code, document, _ = loadtest(
        tmp_path, "--url", f"http://{dead_address()}", "--metrics-url", "none",
        "--model-repository", str(tiny_repository), "--users", "1", "--duration", "60s", "--step-timeout", "5")
    assert code == 1
    (step,) = document["steps"]
    assert step["timed_out"] and "did not stop within 5 s" in step["error"]
    assert step["wall_s"] < 30
    # Locust wrote its statistics when it was told to stop: the failures it had are reported.
    assert all(row["failures"] > 0 for row in document["rows"])


@pytest.mark.slow
def test_a_locust_that_cannot_start_is_a_step_error(tmp_path):
    from abqa.loadtest.runner import LoadTestOptions, run_step
    from abqa.loadtest.traffic import TrafficPlan
    from abqa.triton.endpoint import Endpoint

    options = LoadTestOptions(TrafficPlan(ARMS, (1.0, 1.0)), (1,), 2.0, tmp_path,
                              endpoint=Endpoint.parse(f"http://{dead_address()}", "http", "none"))
    rows, step = run_step(options, 1, tmp_path / "no-such-pool.npz", client=None)
    assert [row.requests for row in rows] == [0, 0]
    assert "sent no request" in step.error and "no-such-pool.npz: not found" in step.error
    assert not step.ok
