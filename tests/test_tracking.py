"""MLflow tracking: run folders -> params/metrics/tags (pure), a run logged to a temporary SQLite store and read back,
`abqa evaluate/report --mlflow`, and a tracking store that is down (the results stay on disk)."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest

from abqa.analysis.report import build_report
from abqa.cli import main
from abqa.client.summary import summarize
from abqa.integrations import mlflow_tracking as tracking
from abqa.core.records import STANDIN_WARNING
from abqa.core.run import EvalRecord, LoadDocument, LoadRow, MachineInfo, write_eval_records
from abqa.core.squad import load_builtin_sample
import run_builders

FAST = 200  # bootstrap resamples: the shapes, not the precision
MLFLOW_NAME = re.compile(r"^[A-Za-z0-9_\-. /]+$")  # what tracking promises (MLflow's rule, ASCII, no colon)
DATASET_SHA = "d" * 64


# --- hand-made run folders -------------------------------------------------------------------------------------------


def eval_records(arm: str, n: int, *, p_right: float, latency_ms: float | None, seed: int) -> list[EvalRecord]:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        right = bool(rng.random() < p_right)
        failed = i == 0 and latency_ms is not None  # one failed answer on served arms
        records.append(EvalRecord(
            id=f"q{i:03d}", arm=arm, prediction=None if failed else "x", em=float(right and not failed),
            f1=0.0 if failed else (1.0 if right else float(rng.random()) * 0.5),
            latency_ms=None if failed or latency_ms is None else float(rng.lognormal(np.log(latency_ms), 0.2)),
            windows=1, tokens=100, started_at="2026-01-01T00:00:00+00:00", status="failed" if failed else "ok",
            error="timed out" if failed else None))
    return records


def served_arm(source: str, *, standin: bool) -> dict:
    return {"kind": "served", "standin": standin, "source": source, "revision": "0123456789abcdef",
            "onnx_file_size": 4_000_000, "onnx_sha256": "e" * 64, "parameters": 1_000_000, "architecture": "bert",
            "variant": "fp32", "source_kind": "standin" if standin else "hub"}


MACHINE = MachineInfo(cpu_model="Test CPU", cores=2, cpu_flags=["avx2", "avx512_vnni"], platform="test",
                      python="3.11")


def write_meta(run_dir: Path, records: list[EvalRecord], arms: dict[str, dict], **extra) -> None:
    kinds = {arm: info["kind"] for arm, info in arms.items()}
    summaries = summarize(records, list(arms), kinds)
    run_builders.meta(
        run_dir.name, arms, order="random", seed=7,
        dataset=run_builders.dataset(path="/data/dev-v1.1.json", sha256=DATASET_SHA, evaluated_questions=60,
                                     sample=60, seed=7),
        qa={"max_seq_length": 384, "doc_stride": 128, "n_best": 20, "max_answer_length": 30, "pad_multiple": 64},
        server={"kind": "abqa-serve", "url": "127.0.0.1:8001", "protocol": "grpc", "peak_rss_mb": 812.5},
        client={"peak_rss_mb": 150.25}, versions={"abqa": "0.1.0", "onnxruntime": "1.32.0"}, machine=MACHINE,
        summary={summary.arm: summary for summary in summaries}, records=len(records), **extra,
    ).write(run_dir / "meta.json")


def load_rows(arm: str, base_ms: float) -> list[LoadRow]:
    rows = []
    for users in (1, 2, 4):
        requests = int(400 * users / base_ms)
        rows.append(LoadRow(
            arm=arm, users=users, requests=requests, failures=0, requests_per_s=requests / 10 if users < 4 else 9.5,
            latency_ms={"p50": base_ms * users, "p90": base_ms * users * 1.3, "p95": base_ms * users * 1.5,
                        "p99": base_ms * users * 2, "mean": base_ms * users * 1.1, "max": base_ms * users * 3},
            server={"request_count": requests, "queue_us_per_request": 250.0 * users,
                    "compute_infer_us_per_request": 900.0 * base_ms, "batch_sizes": {"1": requests}}))
    return rows


def write_load(run_dir: Path, rows: list[LoadRow], standin: dict) -> None:
    arms = list(dict.fromkeys(row.arm for row in rows))
    dataset = run_builders.pool_dataset(arms).model_copy(update={"sha256": DATASET_SHA, "questions": 10570, "seed": 7,
                                                                 "pool_questions": 50})
    run_builders.load_document(rows, standin=standin, dataset=dataset, machine=MACHINE).write(run_dir / "load.json")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    """A benchmark-shaped folder: eval.jsonl + meta.json, load.json and the report; `bert` is a stand-in; a nested
    replay-shared/ run folder of two replayed arms with its own report."""
    run_dir = tmp_path_factory.mktemp("runs") / "benchmark-20260101-000000"
    run_dir.mkdir()
    records = (eval_records("distilbert", 60, p_right=0.7, latency_ms=20, seed=1)
               + eval_records("bert", 60, p_right=0.8, latency_ms=40, seed=2))
    write_eval_records(run_dir / "eval.jsonl", records)
    write_meta(run_dir, records, {"distilbert": served_arm("distilbert/distilbert-base", standin=False),
                                  "bert": served_arm("standin:bert", standin=True)})
    write_load(run_dir, load_rows("distilbert", 20) + load_rows("bert", 40), {"distilbert": False, "bert": True})
    build_report(run_dir, n_resamples=FAST, seed=0)

    child = run_dir / "replay-shared"
    child.mkdir()
    replays = (eval_records("bert-finetuned", 40, p_right=0.8, latency_ms=None, seed=3)
               + eval_records("distilbert-finetuned", 40, p_right=0.75, latency_ms=None, seed=4))
    write_eval_records(child / "eval.jsonl", replays)
    write_meta(child, replays, {arm: {"kind": "replay", "standin": False, "source": f"{arm}.json",
                                      "replay_file": f"/p/{arm}.json", "replay_sha256": "f" * 64}
                                for arm in ("bert-finetuned", "distilbert-finetuned")})
    build_report(child, n_resamples=FAST, seed=0)
    return run_dir


def read(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name).read_text())


# --- pure mapping ----------------------------------------------------------------------------------------------------


def test_evaluate_maps_meta_to_provenance_params_and_summary_metrics(full_run):
    meta = read(full_run, "meta.json")
    run = tracking.collect_run(full_run, "evaluate")

    assert run.name == full_run.name and run.stage == "evaluate" and run.artifacts == ["meta.json"]
    params = run.params
    assert params["stage"] == "evaluate" and params["arms"] == "distilbert,bert"
    assert params["dataset.sha256"] == DATASET_SHA and params["dataset.sample"] == "60"
    assert params["seed"] == "7" and params["order"] == "random"
    assert "dataset.limit" not in params  # None is not a value
    assert params["arm.bert.standin"] == "true" and params["arm.distilbert.standin"] == "false"
    assert params["arm.distilbert.source"] == "distilbert/distilbert-base"
    assert params["arm.bert.onnx_sha256"] == "e" * 64 and params["server.kind"] == "abqa-serve"
    assert params["machine.cpu_flags"] == "avx2,avx512_vnni" and params["versions.onnxruntime"] == "1.32.0"

    for arm in ("distilbert", "bert"):
        summary = meta["summary"][arm]
        assert run.metrics[f"{arm}.em"] == summary["exact_match"]
        assert run.metrics[f"{arm}.f1"] == summary["f1"]
        assert run.metrics[f"{arm}.latency_p50_ms"] == summary["latency_p50_ms"]
        assert run.metrics[f"{arm}.latency_p95_ms"] == summary["latency_p95_ms"]
        assert run.metrics[f"{arm}.failed"] == 1
    assert run.metrics["client.peak_rss_mb"] == 150.25 and run.metrics["server.peak_rss_mb"] == 812.5

    assert run.standin_arms == ["bert"]
    assert run.tags["standin.bert"] == "true" and "standin.distilbert" not in run.tags
    assert run.tags["abqa.standin"] == "true" and run.tags["abqa.status"] == "complete"
    assert STANDIN_WARNING in run.tags["mlflow.note.content"]


def test_loadtest_maps_each_step_and_the_best_throughput(full_run):
    load = read(full_run, "load.json")
    run = tracking.collect_run(full_run, "loadtest")

    assert run.artifacts == ["load.json"]  # no load.csv in this folder: only what exists
    assert run.params["load.users"] == "1,2,4" and run.params["load.mode"] == "split"
    assert run.params["load.dataset.sha256"] == DATASET_SHA and run.params["seed"] == "7"
    assert run.params["arm.bert.standin"] == "true" and run.tags["standin.bert"] == "true"
    for row in load["rows"]:
        prefix = f"{row['arm']}.users_{row['users']}"
        assert run.metrics[f"{prefix}.requests_per_s"] == row["requests_per_s"]
        for name in ("p50", "p95", "p99"):
            assert run.metrics[f"{prefix}.latency_{name}_ms"] == row["latency_ms"][name]
        assert run.metrics[f"{prefix}.queue_ms_per_request"] == pytest.approx(row["server"]["queue_us_per_request"] / 1000)
    for arm in ("distilbert", "bert"):
        best = max(row["requests_per_s"] for row in load["rows"] if row["arm"] == arm)
        assert run.metrics[f"{arm}.max_requests_per_s"] == best
    assert run.metrics["load.requests"] == load["totals"]["requests"]


def test_report_maps_cis_latency_and_pair_tests(full_run):
    report = read(full_run, "report.json")
    run = tracking.collect_run(full_run, "report")

    assert set(run.artifacts) == {"report.html", "report.md", "report.json", "plots", "meta.json", "load.json"}
    assert run.params["report.bootstrap_resamples"] == str(FAST)
    assert run.params["dataset.sha256"] == DATASET_SHA and run.params["arm.bert.standin"] == "true"
    assert run.params["arm.bert.parameters"] == "1000000"
    bert = report["arms"]["bert"]
    assert run.metrics["bert.em"] == bert["em"]
    assert (run.metrics["bert.f1_ci_low"], run.metrics["bert.f1_ci_high"]) == tuple(bert["f1_ci"])
    for name in ("p50", "p90", "p95", "p99", "mean"):
        assert run.metrics[f"bert.latency_{name}_ms"] == bert["latency_ms"][name]
    test = report["tests"]["distilbert__vs__bert"]
    assert run.metrics["distilbert__vs__bert.mcnemar_p"] == test["mcnemar"]["p_value"]
    assert run.metrics["distilbert__vs__bert.f1_diff_points"] == test["f1_diff"]["value"]
    assert run.metrics["distilbert__vs__bert.latency_ratio_of_medians"] == test["latency"]["ratio_of_medians"]["value"]
    assert run.metrics["bert.users_4.requests_per_s"] == 9.5
    assert report["verdict"][0] in run.tags["mlflow.note.content"]


def test_every_key_and_value_meets_mlflow_rules(full_run):
    for stage in tracking.STAGES:
        run = tracking.collect_run(full_run, stage)
        for key in [*run.params, *run.metrics, *run.tags]:
            assert MLFLOW_NAME.match(key) and len(key) <= tracking.MAX_KEY, key
        assert all(len(value) <= tracking.MAX_PARAM_VALUE for value in run.params.values())


def test_keys_and_values_are_made_safe():
    assert tracking.metric_key("arm+1", "users_2", "p95 ms") == "arm_1.users_2.p95 ms"
    assert tracking.metric_key("a/b/", "x") == "a/b.x"
    assert tracking.param_value(True) == "true" and tracking.param_value(None) is None
    assert tracking.param_value([1, 2, 4]) == "1,2,4" and tracking.param_value({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    long = tracking.param_value("x" * 1000)
    assert len(long) == tracking.MAX_PARAM_VALUE and long.endswith("...")
    assert [tracking.metric_value(v) for v in (3, 2.5, float("nan"), float("inf"), True, "7", None)] == \
        [3.0, 2.5, None, None, None, None, None]


def test_a_stand_in_named_only_by_load_json_is_still_marked():
    run = tracking.build_tracked_run("r", "benchmark",
                                     meta=run_builders.meta("r", {"bert": {"kind": "served", "standin": None}}),
                                     load=run_builders.load_document([], arms=["bert"], standin={"bert": True}))
    assert run.params["arm.bert.standin"] == "true" and run.tags["standin.bert"] == "true"
    with pytest.raises(ValueError, match="unknown stage"):
        tracking.build_tracked_run("r", "export")


def test_tracking_uri_resolution(tmp_path):
    assert tracking.resolve_tracking_uri(None) is None
    assert tracking.resolve_tracking_uri("", environ={}) == tracking.DEFAULT_TRACKING_URI == "sqlite:///runs/mlflow.db"
    assert tracking.resolve_tracking_uri("", environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000"}) == "http://mlflow:5000"
    assert tracking.resolve_tracking_uri("exp/track.db", environ={}) == "sqlite:///exp/track.db"
    assert tracking.resolve_tracking_uri("http://host:5000", environ={}) == "http://host:5000"
    assert tracking.sqlite_path("sqlite:////abs/m.db") == Path("/abs/m.db")
    assert tracking.sqlite_path("sqlite:///runs/mlflow.db") == Path("runs/mlflow.db")
    assert tracking.default_artifact_location(f"sqlite:///{tmp_path}/m.db") == (tmp_path / "mlartifacts").as_uri()
    assert tracking.default_artifact_location("http://host:5000") is None


def test_a_run_folder_taken_as_the_uri_is_a_clear_error_and_the_flag_after_it_works(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "meta.json").write_text("{}")
    with pytest.raises(SystemExit) as exited:
        main(["report", "--mlflow", str(run)])
    assert exited.value.code == 2
    assert f"'{run}' is a run folder, not a tracking URI" in capsys.readouterr().err
    from abqa.cli import build_parser

    for argv in (["report", str(run), "--mlflow"], ["report", f"--mlflow={tmp_path / 'store.db'}", str(run)]):
        args = build_parser().parse_args(argv)
        assert args.run_dir == str(run) and args.mlflow in ("", str(tmp_path / "store.db"))


# --- a real (temporary) MLflow store ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One SQLite store for the module: creating its schema takes MLflow a few seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_a_benchmark_run_is_logged_and_read_back(full_run, store_uri):
    result = tracking.log_stage(full_run, "benchmark", store_uri, experiment="abqa-test",
                                children=[full_run / "replay-shared"])
    client = client_for(store_uri)
    run = client.get_run(result.run_id)
    expected = tracking.collect_run(full_run, "benchmark")
    meta, report = read(full_run, "meta.json"), read(full_run, "report.json")

    assert run.info.run_name == full_run.name and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "abqa-test"
    assert run.data.params == expected.params
    assert run.data.params["dataset.sha256"] == DATASET_SHA and run.data.params["seed"] == "7"
    assert run.data.params["arm.bert.standin"] == "true"
    for arm in ("distilbert", "bert"):  # the report's word stands: accuracy on the answers given
        assert run.data.metrics[f"{arm}.em"] == pytest.approx(report["arms"][arm]["em"])
        assert run.data.metrics[f"{arm}.f1"] == pytest.approx(report["arms"][arm]["f1"])
        assert run.data.metrics[f"{arm}.failed"] == pytest.approx(meta["summary"][arm]["failed"])
        assert run.data.metrics[f"{arm}.latency_p95_ms"] == pytest.approx(report["arms"][arm]["latency_ms"]["p95"])
    assert run.data.metrics["distilbert.max_requests_per_s"] == pytest.approx(expected.metrics["distilbert.max_requests_per_s"])
    assert run.data.tags["standin.bert"] == "true" and run.data.tags["abqa.standin"] == "true"
    assert run.data.tags["abqa.stage"] == "benchmark"

    paths = artifact_paths(client, result.run_id)
    assert {"report.html", "report.md", "report.json", "meta.json", "load.json"} <= paths
    assert {f"plots/{plot.name}" for plot in (full_run / "plots").glob("*.png")} <= paths and len(paths) > 6
    assert str(tracking.sqlite_path(store_uri).parent / "mlartifacts") in run.info.artifact_uri

    (child_id,) = result.child_run_ids.values()
    child = client.get_run(child_id)
    assert child.info.run_name == "replay-shared"
    assert child.data.tags["mlflow.parentRunId"] == result.run_id and child.data.tags["abqa.standin"] == "false"
    assert child.data.params["arm.bert-finetuned.replay_sha256"] == "f" * 64


# --- the CLI ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def replay_run(tmp_path) -> tuple[Path, dict[str, Path]]:
    """A run folder made by `abqa evaluate` from two replayed prediction files (no server)."""
    dataset = load_builtin_sample()
    files = {}
    for arm, right in (("good", 12), ("fair", 7)):
        predictions = {q.id: (q.answers[0].text if i < right else "no idea") for i, q in enumerate(dataset.questions)}
        files[arm] = tmp_path / f"{arm}.json"
        files[arm].write_text(json.dumps(predictions))
    return tmp_path / "replay-run", files


def test_evaluate_and_report_log_to_mlflow(replay_run, store_uri, capsys):
    out, files = replay_run
    code = main(["evaluate", "--squad", "builtin", "--replay", f"good={files['good']}",
                 "--replay", f"fair={files['fair']}", "--out", str(out), "--no-progress", f"--mlflow={store_uri}"])
    assert code == 0
    code = main(["report", str(out), "--bootstrap", str(FAST), "--mlflow", store_uri])
    assert code == 0
    printed = capsys.readouterr().out
    run_ids = re.findall(r"MLflow: run ([0-9a-f]{32}) in experiment 'abqa'", printed)
    assert len(run_ids) == 2

    client = client_for(store_uri)
    meta = read(out, "meta.json")
    evaluate_run, report_run = (client.get_run(run_id) for run_id in run_ids)
    assert evaluate_run.data.tags["abqa.stage"] == "evaluate" and report_run.data.tags["abqa.stage"] == "report"
    for run in (evaluate_run, report_run):
        assert run.info.run_name == "replay-run"
        assert run.data.params["dataset.sha256"] == meta["dataset"]["sha256"]
        assert run.data.params["arm.good.replay_sha256"] == meta["arms"]["good"]["replay_sha256"]
        assert run.data.params["arm.good.standin"] == "false" and run.data.tags["abqa.standin"] == "false"
        for arm in ("good", "fair"):
            assert run.data.metrics[f"{arm}.em"] == pytest.approx(meta["summary"][arm]["exact_match"])
    assert report_run.data.metrics["good__vs__fair.mcnemar_b"] == 5
    assert {"report.html", "report.md", "report.json", "meta.json"} <= artifact_paths(client, run_ids[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_tracking_server_that_is_down_loses_no_result(replay_run, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once rather than after retries
    out, files = replay_run
    uri = f"http://127.0.0.1:{free_port()}"
    code = main(["evaluate", "--squad", "builtin", "--replay", f"good={files['good']}", "--out", str(out),
                 "--no-progress", f"--mlflow={uri}"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"MLflow tracking to {uri} failed" in err and f"abqa report {out} --mlflow={uri}" in err
    assert read(out, "meta.json")["status"] == "complete" and (out / "eval.jsonl").stat().st_size > 0

    assert main(["report", str(out), "--bootstrap", str(FAST), f"--mlflow={uri}"]) == 1
    assert (out / "report.html").is_file() and f"MLflow tracking to {uri} failed" in capsys.readouterr().err
    assert main(["report", str(out), "--bootstrap", str(FAST)]) == 0  # without --mlflow nothing is tried


def test_benchmark_logs_one_parent_run_with_the_replay_nested(full_run, store_uri, monkeypatch, capsys):
    """The CLI wiring of `abqa benchmark --mlflow` (the pipeline itself is stubbed: test_benchmark runs it)."""
    from abqa import benchmark

    result = benchmark.BenchmarkResult(full_run, full_run / "report.html", full_run / "replay-shared" / "report.html", 0)
    monkeypatch.setattr(benchmark, "run_benchmark", lambda args: result)
    assert main(["benchmark", "--offline", f"--mlflow={store_uri}"]) == 0
    run_id = re.search(r"MLflow: run ([0-9a-f]{32}) \(\+1 nested\)", capsys.readouterr().out).group(1)
    client = client_for(store_uri)
    assert client.get_run(run_id).data.tags["abqa.stage"] == "benchmark"
    children = client.search_runs([client.get_run(run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert [child.info.run_name for child in children] == ["replay-shared"]


def test_loadtest_logs_its_sweep_and_keeps_its_exit_code(full_run, store_uri, tmp_path, monkeypatch, capsys):
    """The CLI wiring of `abqa loadtest --mlflow` (Locust stubbed: tests/test_loadtest_runs.py drives it for real)."""
    from abqa.loadtest import runner
    from abqa.loadtest.runner import LoadTestResult

    out = tmp_path / "load-run"

    def fake_run_loadtest(options, echo=print):
        out.mkdir(exist_ok=True)   # the CLI has created it to hold its lock
        document = LoadDocument.read(full_run / "load.json")
        document.rows[0].failures = 3  # a failed request: exit code 1, and the run is still logged
        document.write(out / "load.json")
        return LoadTestResult(document)

    monkeypatch.setattr(runner, "run_loadtest", fake_run_loadtest)
    code = main(["loadtest", "--arms", "distilbert,bert", "--metrics-url", "none", "--out", str(out),
                 f"--mlflow={store_uri}"])
    assert code == 1
    run_id = re.search(r"MLflow: run ([0-9a-f]{32})", capsys.readouterr().out).group(1)
    run = client_for(store_uri).get_run(run_id)
    assert run.info.run_name == "load-run" and run.data.params["load.users"] == "1,2,4"
    assert run.data.metrics["distilbert.users_1.failures"] == 3 and run.data.tags["standin.bert"] == "true"
