"""`abqa benchmark`, the main job, end to end on tiny arms: export, serve, evaluate, load, report, stop."""

from __future__ import annotations

import json

import psutil
import pytest

from abqa.cli import main


@pytest.mark.integration
@pytest.mark.slow
def test_benchmark_runs_the_whole_pipeline_and_stops_the_server(tmp_path, tiny_checkpoints, capsys):
    out = tmp_path / "run"
    code = main([
        "benchmark",
        "--arm", f"bert={tiny_checkpoints['bert']}", "--arm", f"distilbert={tiny_checkpoints['distilbert']}",
        "--model-repository", str(tmp_path / "repo"),
        "--squad", "builtin", "--sample", "12", "--users", "1,2", "--rate", "5", "--duration", "3s",
        "--no-shared-replay", "--bootstrap", "500", "--out", str(out),
    ])
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    assert f"report:        {out / 'report.html'}" in printed

    records = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["arm"]) for r in records) == sorted(
        {(r["id"], arm) for r in records for arm in ("bert", "distilbert")}
    )
    assert len(records) == 24 and all(r["status"] == "ok" and r["latency_ms"] > 0 for r in records)
    load = json.loads((out / "load.json").read_text())
    assert {(row["arm"], row["step"]) for row in load["rows"]} == {
        (arm, step) for arm in ("bert", "distilbert") for step in ("users-1", "users-2", "rate-5")
    }
    assert all(row["requests"] > 0 and row["failures"] == 0 for row in load["rows"])
    # the answers under load were checked against the evaluation's, in the same run folder
    assert all(row["answers"]["compared"] > 0 for row in load["rows"])
    report = json.loads((out / "report.json").read_text())
    assert set(report["arms"]) == {"bert", "distilbert"}
    pair = report["tests"].get("bert__vs__distilbert") or report["tests"]["distilbert__vs__bert"]
    assert pair["mcnemar"]["b"] + pair["mcnemar"]["c"] <= 12
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dataset"]["source"] == "builtin-sample"

    left = [p.cmdline() for p in psutil.Process().children(recursive=True)]
    assert left == [], f"the benchmark left processes running: {left}"
