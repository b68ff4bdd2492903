"""Load-test stage without a server: traffic options, the request pool, Triton's counters, Locust's CSVs, the outputs."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from abqa.core.errors import AbqaError
from abqa.core.run import LoadDocument, LoadRow, RequestRecord, StepRecord
import run_builders
from abqa.loadtest import results, traffic
from abqa.loadtest.pool import (ArmTensors, PoolItem, PoolQuestion, RequestPool, WindowLayout, build_items,
                                build_pool)
from abqa.loadtest.server_metrics import (
    ServerSnapshot,
    executions_by_batch_size,
    parse_triton_metrics,
    server_view,
)
from abqa.triton.endpoint import Endpoint

# --- traffic options ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("50:50", (50.0, 50.0)),
    ("3:1", (3.0, 1.0)),
    ("bert=3,distilbert=1", (1.0, 3.0)),      # by name, in --arms order (distilbert, bert)
    ("bert=1", (0.0, 1.0)),                   # an unnamed arm gets no traffic
    ("", (1.0, 1.0)),
])
def test_parse_weights(text, expected):
    assert traffic.parse_weights(text, ("distilbert", "bert")) == expected


@pytest.mark.parametrize("text, message", [
    ("1:2:3", "3 weights for 2 arms"),
    ("roberta=1", "'roberta' is not one of the arms"),
    ("a:b", "not numbers"),
])
def test_parse_weights_rejects(text, message):
    with pytest.raises(AbqaError, match=message):
        traffic.parse_weights(text, ("distilbert", "bert"))


def test_plan_rejects_negative_and_all_zero_weights():
    with pytest.raises(AbqaError, match=">= 0"):
        traffic.TrafficPlan(("a", "b"), (1.0, -1.0))
    with pytest.raises(AbqaError, match="not all 0"):
        traffic.TrafficPlan(("a", "b"), (0.0, 0.0))
    with pytest.raises(AbqaError, match="--mode"):
        traffic.TrafficPlan(("a", "b"), (1.0, 1.0), "roundrobin")


def test_split_follows_the_weights_and_parallel_asks_every_arm():
    rng = random.Random(7)
    plan = traffic.TrafficPlan(("distilbert", "bert", "off"), (3.0, 1.0, 0.0), "split")
    drawn = Counter(arm for _ in range(8000) for arm in plan.arms_for_request(rng))
    assert drawn["off"] == 0
    assert sum(drawn.values()) == 8000  # one arm per request
    assert drawn["distilbert"] / 8000 == pytest.approx(0.75, abs=0.02)
    parallel = traffic.TrafficPlan(("distilbert", "bert"), (1.0, 1.0), "parallel")
    assert parallel.arms_for_request(rng) == ["distilbert", "bert"]
    assert parallel.weight_map == {"distilbert": 1.0, "bert": 1.0}


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("30", 30), ("1m30s", 90), ("2m", 120), ("1h", 3600), ("2.5", 2.5)])
def test_parse_duration(text, seconds):
    assert traffic.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0s", "30ms", "-5"])
def test_parse_duration_rejects(text):
    with pytest.raises(AbqaError, match="--duration"):
        traffic.parse_duration(text)


def test_locust_run_time_never_shortens_a_step():
    assert traffic.locust_run_time(30) == "30s"
    assert traffic.locust_run_time(2.1) == "3s"


def test_parse_users_and_arms():
    assert traffic.parse_users("1, 2,4,8") == (1, 2, 4, 8)
    assert traffic.parse_users("1,2,2,4") == (1, 2, 4)
    assert traffic.parse_users("none") == traffic.parse_users("") == ()
    for bad in ("0,1", "one"):
        with pytest.raises(AbqaError, match="--users"):
            traffic.parse_users(bad)
    assert traffic.parse_arms("distilbert,bert,distilbert") == ("distilbert", "bert")
    with pytest.raises(AbqaError):
        traffic.parse_arms("bad name")


@pytest.mark.parametrize("url, protocol, expected", [
    ("http://127.0.0.1:8000", "http", ("127.0.0.1:8000", False)),
    ("127.0.0.1:9000", "http", ("127.0.0.1:9000", False)),
    ("https://triton.example:8443/", "http", ("triton.example:8443", True)),
    ("http://localhost", "http", ("localhost:8000", False)),
    ("127.0.0.1:8001", "grpc", ("127.0.0.1:8001", False)),
    ("http://[::1]:8000", "http", ("[::1]:8000", False)),
])
def test_split_url(url, protocol, expected):
    endpoint = Endpoint.parse(url, protocol)
    assert (endpoint.address, endpoint.ssl) == expected


def test_default_metrics_url_is_port_8002_of_the_same_host():
    assert Endpoint.parse("http://127.0.0.1:18000", "http").metrics_url == "http://127.0.0.1:8002/metrics"
    assert Endpoint.parse("10.0.0.5:8001", "grpc").metrics_url == "http://10.0.0.5:8002/metrics"


# --- Triton's view ------------------------------------------------------------------------------------------------

def prometheus_text(success: dict[str, int], queue_us: dict[str, int], executions: dict[str, int],
                    failures: dict[str, int] | None = None) -> str:
    """Prometheus text in the shape Triton 2.51 writes (HELP/TYPE lines, model and version labels)."""
    lines = [
        "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes",
        "# TYPE nv_inference_request_success counter",
        *(f'nv_inference_request_success{{model="{m}",version="1"}} {v}' for m, v in success.items()),
        "# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes",
        "# TYPE nv_inference_request_failure counter",
    ]
    for model in success:
        for reason in ("OTHER", "BACKEND", "REJECTED"):
            value = (failures or {}).get(model, 0) if reason == "BACKEND" else 0
            lines.append(f'nv_inference_request_failure{{model="{model}",reason="{reason}",version="1"}} {value}')
    for name, values in (("nv_inference_count", success), ("nv_inference_exec_count", executions),
                         ("nv_inference_request_duration_us", {m: 10 * q for m, q in queue_us.items()}),
                         ("nv_inference_queue_duration_us", queue_us),
                         ("nv_inference_compute_input_duration_us", {m: 2 * v for m, v in success.items()}),
                         ("nv_inference_compute_infer_duration_us", {m: 5000 * v for m, v in success.items()}),
                         ("nv_inference_compute_output_duration_us", {m: 3 * v for m, v in success.items()})):
        lines += [f"# HELP {name} cumulative", f"# TYPE {name} counter"]
        lines += [f'{name}{{model="{m}",version="1"}} {v}' for m, v in values.items()]
    lines += ["# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]", "# TYPE nv_cpu_utilization gauge",
              "nv_cpu_utilization 0.5"]
    return "\n".join(lines) + "\n"


def test_parse_triton_metrics_reads_every_counter_per_model():
    text = prometheus_text({"bert": 10, "distilbert": 4}, {"bert": 2000, "distilbert": 900}, {"bert": 6, "distilbert": 4},
                           failures={"bert": 2})
    metrics = parse_triton_metrics(text)
    assert set(metrics) == {"bert", "distilbert"}
    assert metrics["bert"]["nv_inference_request_success"] == 10
    assert metrics["bert"]["nv_inference_request_failure"] == 2  # summed over reasons
    assert metrics["distilbert"]["nv_inference_queue_duration_us"] == 900
    assert metrics["bert"]["nv_inference_exec_count"] == 6
    assert len(metrics["bert"]) == 9


def test_server_view_differences_the_counters_of_one_step():
    before = ServerSnapshot(
        parse_triton_metrics(prometheus_text({"bert": 10, "distilbert": 4}, {"bert": 2000, "distilbert": 900},
                                             {"bert": 10, "distilbert": 4})),
        {"bert": {1: 10}, "distilbert": {1: 4}},
    )
    after = ServerSnapshot(
        parse_triton_metrics(prometheus_text({"bert": 110, "distilbert": 4}, {"bert": 52000, "distilbert": 900},
                                             {"bert": 60, "distilbert": 4})),
        {"bert": {1: 30, 2: 20, 4: 10}, "distilbert": {1: 4}},
    )
    view = server_view("bert", before, after)
    assert view["request_count"] == 100
    assert view["queue_us"] == 50000
    assert view["queue_us_per_request"] == 500.0
    assert view["compute_infer_us"] == 500000 and view["compute_infer_us_per_request"] == 5000.0
    assert view["execution_count"] == 50 and view["mean_batch_size"] == 2.0
    assert view["batch_sizes"] == {"1": 20, "2": 20, "4": 10}
    assert sum(int(size) * count for size, count in view["batch_sizes"].items()) == view["inference_count"]
    assert view["error"] is None
    idle = server_view("distilbert", before, after)
    assert idle["request_count"] == 0 and idle["queue_us_per_request"] is None and idle["batch_sizes"] == {}


def test_server_view_without_a_server_says_why():
    down = ServerSnapshot(errors=["metrics http://x:8002/metrics: URLError: refused"],
                          arm_errors={"distilbert": ["statistics of distilbert: refused"]})
    view = server_view("bert", down, down)
    assert view["request_count"] is None and view["batch_sizes"] is None
    assert "URLError" in view["error"] and "distilbert" not in view["error"]


def test_server_view_reports_counters_the_server_does_not_expose():
    text = "\n".join(line for line in prometheus_text({"bert": 5}, {"bert": 10}, {"bert": 5}).splitlines()
                     if "compute_output" not in line) + "\n"
    metrics = parse_triton_metrics(text)
    view = server_view("bert", ServerSnapshot(metrics), ServerSnapshot(metrics))
    assert view["compute_output_us"] is None
    assert view["missing_counters"] == ["nv_inference_compute_output_duration_us"]


def test_executions_by_batch_size_reads_http_and_grpc_json():
    http = {"model_stats": [{"name": "bert", "batch_stats": [
        {"batch_size": 1, "compute_infer": {"count": 7, "ns": 1}}, {"batch_size": 4, "compute_infer": {"count": 2, "ns": 1}}]}]}
    grpc = {"model_stats": [{"name": "bert", "batch_stats": [
        {"batch_size": "1", "compute_infer": {"count": "7", "ns": "1"}}, {"batch_size": "4", "compute_infer": {"count": "2"}}]}]}
    assert executions_by_batch_size(http) == executions_by_batch_size(grpc) == {1: 7, 4: 2}
    assert executions_by_batch_size({"model_stats": [{"name": "bert"}]}) == {}


# --- request records -> rows -> files -----------------------------------------------------------------------------


def request(arm, sent, latency, *, status="ok", warmup=False, step="users-2", scheduled=None, request_id=None,
            question="q1", window=0, answer=None, score=None, error=None):
    return RequestRecord(arm=arm, step=step, request_id=request_id, question_id=question, window=window,
                         scheduled_at=scheduled, sent_at=sent, latency_ms=latency if status == "ok" else None,
                         status=status, tokens=100, padded_tokens=128, warmup=warmup,
                         error=error if status != "ok" else None, answer=answer, answer_score=score)


def test_rows_from_request_records():
    from abqa.loadtest.steps import StepPlan

    step = StepPlan.closed(2, ("distilbert", "bert", "idle"))
    plan = traffic.TrafficPlan(step.arms, (1.0, 1.0, 1.0))
    records = [request("bert", 100.0 + i, 10.0 + i) for i in range(30)]
    records += [request("bert", 99.0, 5000.0, warmup=True)]          # the warm-up is not measured
    records += [request("distilbert", 100.0 + i, None, status="failed",
                        error="ConnectionRefusedError: [Errno 111] Connection refused") for i in range(20)]
    rows = results.rows_for_step(step, plan, records, {"bert": {"request_count": 30}})
    distilbert, bert, idle = rows
    assert (bert.step, bert.users, bert.requests, bert.failures) == ("users-2", 2, 30, 0)
    # measured from the first measured request (100.0) to the last answer (129.0 + 39 ms)
    assert bert.requests_per_s == pytest.approx(30 / 29.039, rel=1e-3)
    assert bert.tokens_per_s == pytest.approx(30 * 100 / 29.039, rel=1e-3)
    assert bert.padded_tokens_per_s == pytest.approx(30 * 128 / 29.039, rel=1e-3)
    assert bert.latency_ms.samples == 30 and bert.latency_ms.max == 39.0 and bert.latency_ms.p50 == 24.5
    assert bert.latency_ms.p99 is None and bert.latency_ms.withheld == {"p99": "n<100"}
    assert bert.server.request_count == 30 and bert.server.queue_us is None
    # every request failed: no answer latency, the messages with their counts
    assert distilbert.failures == 20 and distilbert.latency_ms.samples == 0 and distilbert.latency_ms.p50 is None
    assert distilbert.failure_messages == {"ConnectionRefusedError: [Errno 111] Connection refused": 20}
    # an arm that got no request is a row of zeros, not a missing row
    assert (idle.requests, idle.failures, idle.requests_per_s) == (0, 0, 0.0)
    assert results.latency_cell(bert, "p99") == "n<100" and results.latency_cell(idle, "p99") == "-"


def test_exact_percentiles_on_known_samples():
    from abqa.loadtest.figures import latency_percentiles, min_samples

    assert [min_samples(p) for p in (50, 90, 95, 99)] == [2, 10, 20, 100]
    exact = latency_percentiles(list(range(1, 201)))      # 1..200 ms
    assert exact.samples == 200 and exact.withheld == {}
    assert (exact.p50, exact.p90, exact.p95, exact.p99) == (100.5, 180.1, 190.05, 198.01)
    assert exact.max == 200.0 and exact.mean == 100.5
    # Locust would report 143 ms as 140 and a p99 above the max; these are the values themselves
    odd = latency_percentiles([143.0] * 99 + [238.4])
    assert odd.p50 == 143.0 and odd.p99 == pytest.approx(143.0 + 0.01 * 95.4) and odd.p99 <= odd.max == 238.4
    few = latency_percentiles([5.0] * 19)
    assert few.p50 == few.p90 == 5.0 and few.p95 is None and few.p99 is None
    assert few.withheld == {"p95": "n<20", "p99": "n<100"}
    assert latency_percentiles([]).samples == 0


def test_load_document_and_csv(tmp_path):
    rows = [
        LoadRow(arm="bert", users=1, requests=100, failures=0, requests_per_s=20.5,
                latency_ms={"p50": 40.0, "p90": 50.0, "p95": 55.0, "p99": 70.0, "mean": 41.2, "max": 80.0},
                server={"request_count": 100, "queue_us_per_request": 30.0, "mean_batch_size": 1.0,
                        "batch_sizes": {"1": 100}}),
        LoadRow(arm="bert", users=2, requests=180, failures=2, requests_per_s=36.0,
                latency_ms={"p50": 50.0, "p90": 60.0, "p95": 65.0, "p99": 90.0, "mean": 52.0, "max": 99.0},
                server={"request_count": 178, "mean_batch_size": 1.5, "batch_sizes": {"1": 60, "2": 59}},
                failure_messages={"ConnectionResetError(104)": 2}),
    ]
    document = run_builders.load_document(rows)
    json_path, csv_path = results.write_outputs(tmp_path, document)
    loaded = json.loads(json_path.read_text())
    assert LoadDocument.read(json_path).rows == rows
    assert loaded["totals"] == {"requests": 280, "failures": 2}
    assert loaded["steps"][1]["locust_dir"] == "locust/users-2" and loaded["rows"][1]["step"] == "users-2"
    table = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [(r["arm"], r["step"], r["users"], r["requests"], r["p95_ms"]) for r in table] == [
        ("bert", "users-1", "1", "100", "55.0"), ("bert", "users-2", "2", "180", "65.0")]
    assert table[1]["server_batch_sizes"] == "1:60 2:59"
    assert table[0]["server_queue_us_per_request"] == "30.0" and table[1]["server_queue_us_per_request"] == ""
    assert json.loads(table[1]["failure_messages"]) == {"ConnectionResetError(104)": 2}


def test_table_and_scaling_summary():
    def row(users, rate, batch):
        return LoadRow(arm="bert", users=users, requests=100 * users, failures=0, requests_per_s=rate,
                       latency_ms={"p50": 10.0, "p95": 20.0, "p99": 30.0}, server={"mean_batch_size": batch})
    rows = [row(1, 10.0, 1.0), row(4, 25.0, 2.5)]
    table = results.format_table(rows, {"bert": True})
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["arm", "step", "req/s"]
    assert "bert (stand-in)" in lines[2] and "users-4" in lines[3] and "25.00" in lines[3] and "2.50" in lines[3]
    (summary,) = results.scaling_summary(rows)
    assert "x2.50" in summary and "1.00 -> 2.50" in summary and "raised throughput" in summary
    assert "did not raise" in results.scaling_summary([row(1, 10.0, 1.0), row(4, 10.2, 1.0)])[0]


def test_exit_code_is_nonzero_when_anything_failed():
    from abqa.loadtest.runner import LoadTestResult

    def result(rows: list[LoadRow], step: StepRecord) -> LoadTestResult:
        document = run_builders.load_document(rows)
        return LoadTestResult(document.model_copy(update={"steps": [step]}))

    good = LoadRow(arm="bert", users=1, requests=10, failures=0, requests_per_s=1.0)
    bad = LoadRow(arm="bert", users=2, requests=10, failures=1, requests_per_s=1.0)
    ok_step = StepRecord(users=1, locust_dir="d")
    assert result([good], ok_step).exit_code == 0
    assert result([good, bad], ok_step).exit_code == 1
    nothing_sent = LoadRow(arm="bert", users=1, requests=0, failures=0, requests_per_s=0.0)
    assert result([nothing_sent], ok_step).exit_code == 1
    assert result([good], StepRecord(users=1, locust_dir="d", timed_out=True)).exit_code == 1
    assert result([good], StepRecord(users=1, locust_dir="d", exceptions={"KeyError": 1})).exit_code == 1
    # an SLO probe above the arm's capacity is refused by the full queue: a finding of the search, not a failure
    refused = LoadRow(arm="bert", step="slo-bert-rate-8", rate=8.0, requests=9, failures=9, requests_per_s=0.0)
    probe = StepRecord(name="slo-bert-rate-8", kind="slo", rate=8.0, locust_dir="d", exit_code=1)
    assert result([good, refused], probe).exit_code == 0
    assert result([good, refused.model_copy(update={"step": "rate-8"})],
                  probe.model_copy(update={"name": "rate-8", "kind": "rate"})).exit_code == 1


def test_locust_command(tmp_path):
    from abqa.loadtest.runner import LOCUSTFILE, LoadTestOptions, locust_command
    from abqa.loadtest.steps import StepPlan

    options = LoadTestOptions(traffic.TrafficPlan(("distilbert", "bert"), (3.0, 1.0), "split"), (1, 4), 2.5,
                              tmp_path, endpoint=Endpoint.parse("http://127.0.0.1:9999", "http"), warmup_s=1.0)
    command = locust_command(options, StepPlan.closed(4, ("distilbert", "bert")), tmp_path / "step",
                             tmp_path / "pool.npz")
    text = " ".join(command)
    assert str(LOCUSTFILE) in command and LOCUSTFILE.is_file()
    for expected in ("--headless", "-u 4 -r 4", "-t 9s", "--host http://127.0.0.1:9999", "--weights 3:1",
                     "--arms distilbert,bert", "--mode split", f"--pool-file {tmp_path / 'pool.npz'}",
                     f"--csv {tmp_path / 'step' / 'locust'}", "--html", "--step users-4", "--warmup 1",
                     f"--requests-file {tmp_path / 'requests.jsonl'}", f"--stop-file {tmp_path / 'step' / 'stop'}"):
        assert expected in text
    assert "--rate" not in command and "--processes" not in command
    # open loop: one scheduler per process; an SLO step sends to its arm alone
    options = LoadTestOptions(options.plan, (), 2.5, tmp_path, endpoint=options.endpoint, processes=2)
    text = " ".join(locust_command(options, StepPlan.slo("bert", 6.5), tmp_path / "step", tmp_path / "pool.npz"))
    for expected in ("-u 2 -r 2", "--rate 6.5 --arrivals poisson", "--arms bert", "--weights 1",
                     "--step slo-bert-rate-6.5", "--processes 2 --master-bind-host 127.0.0.1"):
        assert expected in text


def test_locust_command_paths_are_absolute_because_locust_runs_in_the_step_folder(tmp_path, monkeypatch):
    """`abqa loadtest --out runs/x` (relative) once handed Locust a pool path it could not find from its cwd."""
    from abqa.loadtest.runner import LoadTestOptions, locust_command
    from abqa.loadtest.steps import StepPlan

    monkeypatch.chdir(tmp_path)
    options = LoadTestOptions(traffic.TrafficPlan(("distilbert", "bert"), (1.0, 1.0), "split"), (1,), 1.0,
                              "runs/x", endpoint=Endpoint.parse("http://127.0.0.1:9999", "http"),
                              model_repository="model_repository")
    step = StepPlan.closed(1, ("distilbert", "bert"))
    command = locust_command(options, step, "runs/x/locust/users-1", "runs/x/pool.npz")
    value = {flag: command[index + 1] for index, flag in enumerate(command) if flag.startswith("--")}
    assert value["--pool-file"] == str(tmp_path / "runs/x/pool.npz")
    assert value["--model-repository"] == str(tmp_path / "model_repository")
    assert value["--requests-file"] == str(tmp_path / "runs/x/requests.jsonl")
    assert value["--csv"].startswith(str(tmp_path / "runs/x/locust/users-1"))
    assert options.hard_timeout_s(step) > options.duration_s


# --- the request pool ---------------------------------------------------------------------------------------------

def fake_questions(n):
    return [SimpleNamespace(id=f"q{i}", question=f"question {i}", context=f"context {i}") for i in range(n)]


def fake_encoder(windows_per_arm):
    """arm -> number of windows for every question; arrays encode (question number, window) for checking."""
    from abqa.core.qa import Window

    def encode(arm, question, context):
        number = int(question.split()[-1])
        return [Window({"input_ids": np.array([number, window, 0, 0], dtype=np.int64)}, 2,
                       np.array([False, True]), np.array([[0, 0], [0, 7]]))
                for window in range(windows_per_arm[arm])]
    return encode


def test_build_items_aligns_arms_and_stops_at_the_size():
    items = build_items(fake_questions(50), ["a", "b"], fake_encoder({"a": 3, "b": 2}), size=20, seed=1)
    assert len(items) == 20
    for item in items:
        assert item.window < 2  # only the windows both arms have
        a, b = item.tensors["a"]["input_ids"], item.tensors["b"]["input_ids"]
        assert a.shape == (1, 4)  # one window per request: batch 1
        assert np.array_equal(a, b) and a[0, 0] == int(item.question_id[1:]) and a[0, 1] == item.window
        assert item.tokens("a") == 2 and item.padded_tokens("a") == 4  # real tokens from the window's layout
    again = build_items(fake_questions(50), ["a", "b"], fake_encoder({"a": 3, "b": 2}), size=20, seed=1)
    assert [(i.question_id, i.window) for i in again] == [(i.question_id, i.window) for i in items]
    other = build_items(fake_questions(50), ["a", "b"], fake_encoder({"a": 3, "b": 2}), size=20, seed=2)
    assert [i.question_id for i in other] != [i.question_id for i in items]
    assert len(build_items(fake_questions(3), ["a"], fake_encoder({"a": 1}), size=20)) == 3
    # the questions eval.jsonl answered come first (their answers under load can be checked), in the seeded order
    preferred = build_items(fake_questions(50), ["a", "b"], fake_encoder({"a": 1, "b": 1}), size=5, seed=1,
                            prefer={"q7", "q30", "q44"})
    assert {item.question_id for item in preferred[:3]} == {"q7", "q30", "q44"} and len(preferred) == 5
    seeded = dict.fromkeys(i.question_id for i in again if i.question_id not in {"q7", "q30", "q44"})
    assert [i.question_id for i in preferred[3:]] == list(seeded)[:2]
    with pytest.raises(AbqaError, match="--pool-size"):
        build_items(fake_questions(3), ["a"], fake_encoder({"a": 1}), size=0)


def test_pool_round_trips_through_its_file(tmp_path):
    arms = {"a": ArmTensors("a", (("input_ids", "INT64"), ("attention_mask", "INT64")), ("start_logits", "end_logits")),
            "b": ArmTensors("b", (("input_ids", "INT32"),), ("start_logits",), "export")}
    items = [PoolItem("q1", 0, {"a": {"input_ids": np.arange(64).reshape(1, 64), "attention_mask": np.ones((1, 64), np.int64)},
                                "b": {"input_ids": np.arange(128, dtype=np.int32).reshape(1, 128)}}),
             PoolItem("q1", 1, {"a": {"input_ids": np.zeros((1, 64), np.int64), "attention_mask": np.zeros((1, 64), np.int64)},
                                "b": {"input_ids": np.zeros((1, 64), np.int32)}})]
    items[0].layouts["a"] = WindowLayout(np.array([False, True, True]), np.array([[0, 0], [0, 3], [4, 9]]))
    questions = {"q1": PoolQuestion("the context", ("the", "context"), None)}
    pool = RequestPool(arms, items, {"path": "x.json", "questions": 1}, questions)
    loaded = RequestPool.load(pool.save(tmp_path / "pool.npz"))
    assert loaded.arms == arms and loaded.dataset == pool.dataset and loaded.questions == questions
    assert loaded.windows_per_question() == {"q1": 2}
    layout = loaded.items[0].layouts["a"]
    assert layout.length == 3 and layout.context_mask.dtype == bool and layout.offsets.tolist()[2] == [4, 9]
    assert "b" not in loaded.items[0].layouts  # no layout: its answers cannot be decoded, the rest works
    assert loaded.items[0].tokens("a") == 3 and loaded.items[1].tokens("a") == 0 and loaded.items[0].tokens("b") == 128
    assert [(i.question_id, i.window) for i in loaded.items] == [("q1", 0), ("q1", 1)]
    assert np.array_equal(loaded.items[0].tensors["b"]["input_ids"], items[0].tensors["b"]["input_ids"])
    assert loaded.items[0].tensors["b"]["input_ids"].dtype == np.int32
    assert loaded.describe()["padded_lengths"] == {"a": {"64": 2}, "b": {"64": 1, "128": 1}}
    only_b = loaded.for_arms(["b"])
    assert list(only_b.arms) == ["b"] and list(only_b.items[1].tensors) == ["b"]
    with pytest.raises(AbqaError, match="no requests for arm"):
        loaded.for_arms(["c"])
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(AbqaError, match="not a valid abqa pool"):
        RequestPool.load(tmp_path / "broken.npz")


def test_build_pool_tokenises_real_squad_windows_with_each_arms_tokenizer(tiny_repository):
    from abqa.core.config import PAD_MULTIPLE
    from abqa.core.records import ExportMetadata

    pool = build_pool(["distilbert", "bert"], tiny_repository, squad="builtin", size=12)
    assert len(pool) == 12
    for arm in ("distilbert", "bert"):
        exported = ExportMetadata.read(tiny_repository / arm / "abqa-metadata.json")
        assert pool.arms[arm].input_names == exported.inputs  # no server: the export's names
        assert list(pool.arms[arm].outputs) == exported.outputs
    for item in pool.items:
        for arm, tensors in item.tensors.items():
            assert list(tensors) == pool.arms[arm].input_names
            ids = tensors["input_ids"]
            assert ids.dtype == np.int64 and ids.shape[0] == 1 and ids.shape[1] % PAD_MULTIPLE == 0
            assert ids[0, 0] == 101 and 102 in ids[0]  # [CLS] question [SEP] context [SEP] (bert-base-uncased vocabulary)
            assert tensors["attention_mask"].sum() == np.count_nonzero(ids)
    description = pool.describe()
    assert description["source"] == "builtin-sample" and description["pool_size"] == 12
    assert description["inputs_from"] == {"distilbert": "export", "bert": "export"}


def test_build_pool_draws_from_several_xquad_languages(tiny_repository, shared_data):
    pool = build_pool(["bert"], tiny_repository, squad="xquad.de,xquad.zh", size=40, seed=3)
    languages = {item.question_id.split(":", 1)[0] for item in pool.items}
    assert languages == {"de", "zh"} and len(pool) == 40
    assert pool.describe()["languages"] == ["de", "zh"]


def test_build_pool_prefers_the_servers_metadata(tiny_repository):
    served = {"name": "bert", "inputs": [{"name": "input_ids", "datatype": "INT32", "shape": [-1, -1]},
                                         {"name": "attention_mask", "datatype": "INT32", "shape": [-1, -1]}],
              "outputs": [{"name": "start_logits", "datatype": "FP32", "shape": [-1, -1]}]}
    pool = build_pool(["bert"], tiny_repository, squad="builtin", size=3, fetch_metadata=lambda arm: served)
    assert pool.arms["bert"].inputs == (("input_ids", "INT32"), ("attention_mask", "INT32"))
    assert pool.arms["bert"].source == "triton"
    assert all(item.tensors["bert"]["input_ids"].dtype == np.int32 for item in pool.items)


def test_build_pool_names_an_arm_the_repository_lacks(tiny_repository):
    with pytest.raises(AbqaError, match="abqa-metadata.json"):
        build_pool(["nope"], tiny_repository, squad="builtin", size=3)


# --- the CLI ------------------------------------------------------------------------------------------------------

def test_cli_options(tmp_path):
    from abqa.cli import build_parser
    from abqa.loadtest.cli import build_options

    args = build_parser().parse_args(["loadtest", "--arms", "distilbert,bert", "--users", "1,2,4,8", "--duration", "1m",
                                      "--weights", "1:3", "--out", str(tmp_path / "run"), "--url", "http://10.1.2.3:18000"])
    options = build_options(args)
    assert options.plan.weight_map == {"distilbert": 1.0, "bert": 3.0}
    assert options.users == (1, 2, 4, 8) and options.duration_s == 60.0
    assert options.endpoint.metrics_url == "http://10.1.2.3:8002/metrics"
    args = build_parser().parse_args(["loadtest", "--metrics-url", "none", "--protocol", "grpc"])
    options = build_options(args)
    assert options.endpoint.metrics_url is None and options.endpoint.address == "127.0.0.1:8001"
    assert options.out.name.startswith("load-")
