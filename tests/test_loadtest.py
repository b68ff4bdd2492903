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
from abqa.core.run import LoadDocument, LoadRow, StepRecord
import run_builders
from abqa.loadtest import results, traffic
from abqa.loadtest.pool import ArmTensors, PoolItem, RequestPool, build_items, build_pool
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
    for bad in ("", "0,1", "one"):
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


# --- Locust's CSVs -> rows -> files -------------------------------------------------------------------------------

STATS_CSV = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
HTTP,bert,493,0,8,8.04,3.17,15.45,1645.0,123.19,0.0,8,8,9,9,10,11,12,13,15,15,15
HTTP,distilbert,20,20,1,1.2,0.9,2.2,0.0,8.1,8.1,1,1,1,1,2,2,2,2,2,2,2
,Aggregated,513,20,8,7.9,0.9,15.45,1603.5,131.3,8.1,8,8,9,9,10,11,12,13,15,15,15
"""
FAILURES_CSV = """Method,Name,Error,Occurrences
HTTP,distilbert,"ConnectionRefusedError(111, 'Connection refused')",18
HTTP,distilbert,"InferenceServerException('[400] bad input')",2
"""


def test_rows_from_locust_csvs():
    stats = results.read_locust_stats(STATS_CSV)
    failures = results.read_locust_failures(FAILURES_CSV)
    assert set(stats) == {"bert", "distilbert"}
    rows = results.rows_for_step(["distilbert", "bert", "idle"], 2, stats, failures, {"bert": {"request_count": 493}})
    distilbert, bert, idle = rows
    assert (bert.requests, bert.failures, bert.requests_per_s) == (493, 0, 123.19)
    assert bert.latency_ms.to_dict() == {"p50": 8.0, "p90": 10.0, "p95": 11.0, "p99": 13.0, "mean": 8.04, "max": 15.45}
    assert bert.server.request_count == 493 and bert.server.queue_us is None
    # every request failed: no answer latency, the messages with their counts
    assert distilbert.failures == 20 and all(value is None for value in distilbert.latency_ms.to_dict().values())
    assert distilbert.failure_messages == {"ConnectionRefusedError(111, 'Connection refused')": 18,
                                           "InferenceServerException('[400] bad input')": 2}
    # an arm Locust never reported is a row of zeros, not a missing row
    assert (idle.requests, idle.failures, idle.requests_per_s) == (0, 0, 0.0)


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
    assert loaded["steps"][1]["locust_dir"] == "locust/users-2"
    table = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [(r["arm"], r["users"], r["requests"], r["p95_ms"]) for r in table] == [("bert", "1", "100", "55.0"),
                                                                                   ("bert", "2", "180", "65.0")]
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
    assert lines[0].split()[:3] == ["arm", "users", "req/s"]
    assert "bert (stand-in)" in lines[2] and "25.00" in lines[3] and "2.50" in lines[3]
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


def test_locust_command(tmp_path):
    from abqa.loadtest.runner import LOCUSTFILE, LoadTestOptions, locust_command

    options = LoadTestOptions(traffic.TrafficPlan(("distilbert", "bert"), (3.0, 1.0), "split"), (1, 4), 2.5,
                              tmp_path, endpoint=Endpoint.parse("http://127.0.0.1:9999", "http"))
    command = locust_command(options, 4, tmp_path / "step", tmp_path / "pool.npz")
    text = " ".join(command)
    assert str(LOCUSTFILE) in command and LOCUSTFILE.is_file()
    for expected in ("--headless", "-u 4 -r 4", "-t 3s", "--host http://127.0.0.1:9999", "--weights 3:1",
                     "--arms distilbert,bert", "--mode split", f"--pool-file {tmp_path / 'pool.npz'}",
                     f"--csv {tmp_path / 'step' / 'locust'}", "--html"):
        assert expected in text


def test_locust_command_paths_are_absolute_because_locust_runs_in_the_step_folder(tmp_path, monkeypatch):
    """`abqa loadtest --out runs/x` (relative) once handed Locust a pool path it could not find from its cwd."""
    from abqa.loadtest.runner import LoadTestOptions, locust_command

    monkeypatch.chdir(tmp_path)
    options = LoadTestOptions(traffic.TrafficPlan(("distilbert", "bert"), (1.0, 1.0), "split"), (1,), 1.0,
                              "runs/x", endpoint=Endpoint.parse("http://127.0.0.1:9999", "http"),
                              model_repository="model_repository")
    command = locust_command(options, 1, "runs/x/locust/users-1", "runs/x/pool.npz")
    value = {flag: command[index + 1] for index, flag in enumerate(command) if flag.startswith("--")}
    assert value["--pool-file"] == str(tmp_path / "runs/x/pool.npz")
    assert value["--model-repository"] == str(tmp_path / "model_repository")
    assert value["--csv"].startswith(str(tmp_path / "runs/x/locust/users-1"))
    assert options.hard_timeout_s > options.duration_s


# --- the request pool ---------------------------------------------------------------------------------------------

def fake_questions(n):
    return [SimpleNamespace(id=f"q{i}", question=f"question {i}", context=f"context {i}") for i in range(n)]


def fake_encoder(windows_per_arm):
    """arm -> number of windows for every question; arrays encode (question number, window) for checking."""
    def encode(arm, question, context):
        number = int(question.split()[-1])
        return [{"input_ids": np.array([number, window, 0, 0], dtype=np.int64)} for window in range(windows_per_arm[arm])]
    return encode


def test_build_items_aligns_arms_and_stops_at_the_size():
    items = build_items(fake_questions(50), ["a", "b"], fake_encoder({"a": 3, "b": 2}), size=20, seed=1)
    assert len(items) == 20
    for item in items:
        assert item.window < 2  # only the windows both arms have
        a, b = item.tensors["a"]["input_ids"], item.tensors["b"]["input_ids"]
        assert a.shape == (1, 4)  # one window per request: batch 1
        assert np.array_equal(a, b) and a[0, 0] == int(item.question_id[1:]) and a[0, 1] == item.window
    again = build_items(fake_questions(50), ["a", "b"], fake_encoder({"a": 3, "b": 2}), size=20, seed=1)
    assert [(i.question_id, i.window) for i in again] == [(i.question_id, i.window) for i in items]
    other = build_items(fake_questions(50), ["a", "b"], fake_encoder({"a": 3, "b": 2}), size=20, seed=2)
    assert [i.question_id for i in other] != [i.question_id for i in items]
    assert len(build_items(fake_questions(3), ["a"], fake_encoder({"a": 1}), size=20)) == 3
    with pytest.raises(AbqaError, match="--pool-size"):
        build_items(fake_questions(3), ["a"], fake_encoder({"a": 1}), size=0)


def test_pool_round_trips_through_its_file(tmp_path):
    arms = {"a": ArmTensors("a", (("input_ids", "INT64"), ("attention_mask", "INT64")), ("start_logits", "end_logits")),
            "b": ArmTensors("b", (("input_ids", "INT32"),), ("start_logits",), "export")}
    items = [PoolItem("q1", 0, {"a": {"input_ids": np.arange(64).reshape(1, 64), "attention_mask": np.ones((1, 64), np.int64)},
                                "b": {"input_ids": np.arange(128, dtype=np.int32).reshape(1, 128)}}),
             PoolItem("q1", 1, {"a": {"input_ids": np.zeros((1, 64), np.int64), "attention_mask": np.zeros((1, 64), np.int64)},
                                "b": {"input_ids": np.zeros((1, 64), np.int32)}})]
    pool = RequestPool(arms, items, {"path": "x.json", "questions": 1})
    loaded = RequestPool.load(pool.save(tmp_path / "pool.npz"))
    assert loaded.arms == arms and loaded.dataset == pool.dataset
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
