"""The load test in the report: step tables with withheld percentiles, the SLO statement per arm, the paired
per-request latency difference of a parallel sweep, answers under load, and the steps whose figures are limited."""

from __future__ import annotations

import json

import numpy as np

from abqa.analysis.report import build_report
from abqa.core.run import AnswerCheck, GeneratorView, LoadRow, RequestRecord, RunFolder, SloResult, StepRecord
from abqa.core.run.document import write_record_lines
from abqa.loadtest import figures
from run_builders import load_document

FAST = 300


def parallel_run(tmp_path, *, shift_ms: float) -> RunFolder:
    """A parallel-mode sweep of one open-loop step: 150 requests to both arms, distilbert `shift_ms` faster."""
    rng = np.random.default_rng(0)
    records = []
    for index in range(150):
        base = float(rng.lognormal(np.log(200.0), 0.3))
        for arm, latency in (("distilbert", base - shift_ms + rng.normal(0, 2)), ("bert", base)):
            records.append(RequestRecord(arm=arm, step="rate-4", request_id=f"r{index}", question_id=f"q{index % 40}",
                                         window=0, scheduled_at=100 + index / 4, sent_at=100 + index / 4 + 0.001,
                                         latency_ms=latency, status="ok", tokens=150, padded_tokens=192,
                                         warmup=index < 8))
    rows = []
    for arm in ("distilbert", "bert"):
        mine = [record for record in records if record.arm == arm]
        arm_figures = figures.arm_figures(mine, figures.measured_span(records))
        rows.append(LoadRow(arm=arm, step="rate-4", rate=4.0, requests=arm_figures.requests, failures=0,
                            requests_per_s=arm_figures.requests_per_s, tokens_per_s=arm_figures.tokens_per_s,
                            latency_ms=arm_figures.latency_ms,
                            answers=AnswerCheck(questions=40, compared=40, identical=40 if arm == "bert" else 39,
                                                identical_share=1.0, differing=[] if arm == "bert" else ["q7"])))
    rows += [LoadRow(arm="distilbert", step="users-1", users=1, requests=30, failures=0, requests_per_s=4.0,
                     latency_ms=figures.latency_percentiles([150.0 + i for i in range(30)]))]
    slo = {"distilbert": SloResult(arm="distilbert", p99_bound_ms=500.0, sustained_rate=4.0, p99_ms=420.0,
                                   samples=142, statement="distilbert sustains 4 req/s at p99 <= 500 ms (...)"),
           "bert": SloResult(arm="bert", p99_bound_ms=500.0, statement="bert did not meet p99 <= 500 ms at any rate")}
    document = load_document(rows, mode="parallel", rates=[4.0], slo_ms=500.0, tolerance=0.2)
    steps = [StepRecord(name="rate-4", kind="rate", rate=4.0, arms=["distilbert", "bert"], locust_dir="locust/rate-4",
                        stable=True, generator=GeneratorView(cpu_percent=20.0)),
             StepRecord(name="users-1", kind="users", users=1, arms=["distilbert"], locust_dir="locust/users-1",
                        stable=False, generator=GeneratorView(cpu_percent=95.0, saturated=True))]
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    document.model_copy(update={"steps": steps, "slo": slo}).write(folder.load)
    write_record_lines(folder.requests, records)
    return folder


def test_parallel_sweep_reports_the_paired_difference_the_slo_and_the_answers(tmp_path):
    folder = parallel_run(tmp_path, shift_ms=20.0)
    report = build_report(folder.path, n_resamples=FAST)
    data = json.loads(report.paths.json.read_text())
    (paired,) = data["load"]["paired"]
    assert (paired["step"], paired["arm_a"], paired["arm_b"], paired["pairs"]) == ("rate-4", "distilbert", "bert", 142)
    value, (low, high) = paired["mean_diff_ms"]["value"], paired["mean_diff_ms"]["ci"]
    assert -21.0 < value < -19.0 and low < value < high < 0            # the warm-up's pairs are left out
    assert paired["ratio_of_medians"]["value"] < 1
    assert data["load"]["slo"]["distilbert"]["sustained_rate"] == 4.0
    assert data["load"]["unstable_steps"] == ["users-1"] and data["load"]["generator_flags"] == {"users-1": "saturated"}
    steps = {step["step"]: step for step in data["arms"]["distilbert"]["load"]}
    assert steps["rate-4"]["samples"] == 142 and steps["rate-4"]["latency_ms"]["p99"] is not None
    assert steps["users-1"]["latency_ms"]["p99"] is None and steps["users-1"]["withheld"] == {"p99": "n<100"}
    assert steps["users-1"]["generator"] == "saturated" and steps["users-1"]["stable"] is False
    verdict = " ".join(report.verdict)
    assert "distilbert sustains 4 req/s at p99 <= 500 ms" in verdict and "bert did not meet" in verdict
    assert f"Paired under load (rate-4, 142 requests sent to both arms at once): distilbert - bert = {value:+.1f} ms" \
        in verdict
    assert "a real difference" in verdict
    assert "distilbert 39/40, bert 40/40" in verdict and "distilbert at rate-4 (39/40)" in verdict
    notes = " ".join(data["notes"])
    assert "users-1 did not stabilise" in notes and "saturated a core" in notes and "p99 (n<100)" in notes
    html, markdown = report.paths.html.read_text(), report.paths.markdown.read_text()
    for text in (html, markdown):
        assert "Highest rate within the p99 bound" in text and "Paired per-request latency under load" in text
        assert "n&lt;100" in text or "n<100" in text
    assert "latency_vs_rate" in data["plots"] and "load" in data["plots"]


def test_no_paired_difference_outside_parallel_mode_and_none_without_a_difference(tmp_path):
    folder = parallel_run(tmp_path, shift_ms=0.0)
    report = build_report(folder.path, n_resamples=FAST)
    data = json.loads(report.paths.json.read_text())
    (paired,) = data["load"]["paired"]
    low, high = paired["mean_diff_ms"]["ci"]
    assert low < 0 < high and "no clear difference" in " ".join(report.verdict)
    document = folder.read_load()
    document.model_copy(update={"mode": "split"}).write(folder.load)
    data = json.loads(build_report(folder.path, n_resamples=FAST).paths.json.read_text())
    assert data["load"].get("paired") is None
