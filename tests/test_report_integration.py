"""The whole chain on a real Triton (`abqa serve`, tiny bert and distilbert arms): `abqa evaluate` and
`abqa loadtest` write one run folder, `abqa report` reads what they wrote."""

from __future__ import annotations

import json

import pytest

from abqa.analysis.report import build_report
from abqa.cli import main

pytestmark = pytest.mark.integration


def test_report_on_served_arms_with_load(triton_server, tiny_repository, tmp_path, capsys):
    run = tmp_path / "served-run"
    assert main(["evaluate", "--squad", "builtin", "--limit", "20", "--url", triton_server.grpc.address,
                 "--protocol", "grpc", "--model-repository", str(tiny_repository), "--arms", "distilbert,bert",
                 "--order", "interleaved", "--out", str(run), "--no-progress"]) == 0
    assert main(["loadtest", "--url", triton_server.http.url, "--metrics-url", triton_server.http.metrics_url,
                 "--model-repository", str(tiny_repository), "--arms", "distilbert,bert", "--users", "1,2",
                 "--duration", "3s", "--squad", "builtin", "--out", str(run)]) == 0
    capsys.readouterr()

    report = build_report(run, n_resamples=500)
    data = report.data
    assert data["run"]["files"] == {"eval.jsonl": True, "meta.json": True, "load.json": True}
    for arm in ("distilbert", "bert"):
        summary = data["arms"][arm]
        assert summary["provenance"]["kind"] == "served" and summary["provenance"]["inferred"] is False
        assert summary["questions"] == 20 and summary["latency_ms"]["n"] + summary["failed"] == 20
        assert summary["model"]["parameters"] and summary["model"]["onnx_file_size"]
        assert [step["users"] for step in summary["load"]] == [1, 2]
        assert all(step["compute_infer_ms_per_request"] > 0 for step in summary["load"])
    test = data["tests"]["distilbert__vs__bert"]
    assert test["paired_questions"] == 20 and test["latency"]["paired_questions"] > 0
    assert set(report.paths.plots) == {"latency_histogram", "latency_cdf", "accuracy", "contingency", "load",
                                       "queue_compute", "latency_vs_tokens", "pareto"}
    assert report.verdict[0].startswith("No shipping decision")
    assert report.verdict[1].startswith("NOT A RANDOM SAMPLE: --limit 20: the questions are the first 20")
    assert report.verdict[2].startswith("distilbert vs bert (20 paired questions")
    # The trade-off's throughput is the load test's, in questions: requests (windows) / windows per question.
    for row in data["tradeoff"]["rows"]:
        assert row["throughput"]["source"].startswith("load test") and row["throughput"]["questions_per_s"] > 0
    assert set(data["where"]["fits"]) == {"distilbert", "bert"}
    assert any(line.startswith("Under load (2 concurrent users, split mode)") for line in report.verdict)
    assert json.loads(report.paths.json.read_text())["tests"]["distilbert__vs__bert"]["mcnemar"]["p_value"] <= 1
