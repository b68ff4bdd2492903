"""`abqa report`: a report renders for every shape of run folder, and says what it should.

Run folders are built here from synthetic EvalRecords, meta.json and load.json through the run-folder contract
(abqa/core/run): served, replayed, stand-in, mixed, single-arm, load-only, failures, unpaired ids.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from abqa.analysis.report import build_report
from abqa.cli import main
from abqa.core.errors import AbqaError
from abqa.core.run import EvalRecord, LoadRow
from run_builders import write_run

FAST = 300  # bootstrap resamples: enough for the shapes, quick on 2 cores


def arm_records(arm: str, n: int, *, p_right: float, latency_ms: float | None, seed: int,
                failed: int = 0, missing: int = 0, ids: list[str] | None = None) -> list[EvalRecord]:
    """n answers of one arm; the first `failed` and the next `missing` questions did not get an answer."""
    rng = np.random.default_rng(seed)
    records = []
    for i, question in enumerate(ids or [f"q{i:04d}" for i in range(n)]):
        status = "failed" if i < failed else "missing" if i < failed + missing else "ok"
        right = status == "ok" and rng.random() < p_right
        f1 = 1.0 if right else (float(rng.random()) * 0.7 if status == "ok" else 0.0)
        latency = None if latency_ms is None or status != "ok" else float(rng.lognormal(np.log(latency_ms), 0.3))
        records.append(EvalRecord(
            id=question, arm=arm, prediction=None if status != "ok" else "an answer", em=float(right), f1=f1,
            latency_ms=latency, windows=1, tokens=120, started_at="2026-01-01T00:00:00+00:00", status=status,
            error={"failed": "timed out after 60 s", "missing": "no prediction for this id"}.get(status)))
    return records


def served(source: str, *, standin: bool = False, parameters: int = 66_000_000) -> dict:
    return {"kind": "served", "standin": standin, "source": source, "revision": "0123456789abcdef",
            "onnx_file_size": parameters * 4, "parameters": parameters, "architecture": "bert", "variant": "fp32"}


def replay(path: str) -> dict:
    return {"kind": "replay", "standin": False, "source": path, "replay_file": path, "replay_sha256": "ab" * 32}


def load_rows(arm: str, base_ms: float) -> list[LoadRow]:
    rows = []
    for users in (1, 2, 4):
        requests = int(100 * users / base_ms * 10)
        queue_us, infer_us = 200.0 * (users - 1) * base_ms, 900.0 * base_ms
        rows.append(LoadRow(
            arm=arm, users=users, requests=requests, failures=users - 1, requests_per_s=requests / 10,
            latency_ms={"p50": base_ms * users ** 0.5, "p90": base_ms * 1.4 * users ** 0.5,
                        "p95": base_ms * 1.6 * users ** 0.5, "p99": base_ms * 2 * users ** 0.5,
                        "mean": base_ms * 1.1, "max": base_ms * 3},
            server={"request_count": requests, "queue_us": queue_us * requests, "compute_input_us": 40.0 * requests,
                    "compute_infer_us": infer_us * requests, "compute_output_us": 20.0 * requests,
                    "batch_sizes": {"1": requests // 2, "2": requests // 4}},
            failure_messages={"HTTP 503": users - 1} if users > 1 else {}))
    return rows


def pair_line(report, a: str, b: str) -> str:
    """The verdict's line about the pair a vs b (after the decision lines)."""
    return next(line for line in report.verdict if line.startswith(f"{a} vs {b} ("))


def read_outputs(report) -> tuple[str, str, dict]:
    return (report.paths.html.read_text(), report.paths.markdown.read_text(),
            json.loads(report.paths.json.read_text()))


def assert_self_contained(html: str, plots: dict) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", html), "the HTML must not load anything"
    assert "<script" not in html and "<link" not in html
    assert html.count('src="data:image/png;base64,') == len(plots)


# ---------------------------------------------------------------- shapes of runs


def test_two_served_arms_with_load(tmp_path):
    records = (arm_records("distilbert", 400, p_right=0.74, latency_ms=20, seed=1)
               + arm_records("bert", 400, p_right=0.80, latency_ms=40, seed=2))
    run = write_run(tmp_path / "served", records,
                    {"distilbert": served("distilbert/distilbert-base"), "bert": served("bert-base", parameters=110_000_000)},
                    load_rows("distilbert", 20) + load_rows("bert", 40))
    report = build_report(run, n_resamples=FAST, seed=0)
    html, md, data = read_outputs(report)

    assert set(report.paths.plots) == {"latency_histogram", "latency_cdf", "accuracy", "contingency", "load",
                                       "queue_compute", "pareto"}
    assert all(path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in report.paths.plots.values())
    assert_self_contained(html, report.paths.plots)
    for plot in data["plots"].values():
        assert f"]({plot})" in md

    test = data["tests"]["distilbert__vs__bert"]
    for key in ("b", "c", "p_value"):
        assert test["mcnemar"][key] is not None
    assert test["paired_t_f1"]["statistic"] is not None and test["paired_t_f1"]["p_value"] is not None
    assert test["latency"]["ratio_of_medians"]["value"] == pytest.approx(0.5, rel=0.1)
    for arm in ("distilbert", "bert"):
        summary = data["arms"][arm]
        assert 0 < summary["em"] < 100 and summary["em_ci"][0] < summary["em"] < summary["em_ci"][1]
        assert summary["latency_ms"]["p50"] < summary["latency_ms"]["p95"]
        assert [step["users"] for step in summary["load"]] == [1, 2, 4]
    bert_step = data["arms"]["bert"]["load"][1]
    assert bert_step["queue_ms_per_request"] == pytest.approx(0.2 * 40)  # 200 us x (2 - 1) x 40
    assert bert_step["mean_batch_size"] == pytest.approx((50 * 1 + 25 * 2) / 75, rel=0.05)

    assert report.verdict[0].startswith("No shipping decision: no non-inferiority margin was declared")
    line = pair_line(report, "distilbert", "bert")
    assert line.startswith("distilbert vs bert (400 paired questions, served models)")
    assert "faster than bert at p50" in line and "block bootstrap in time order" in line
    assert any(line.startswith("Under load (4 concurrent users, split mode)") for line in report.verdict)
    assert line in html.replace("&#x27;", "'")
    assert "110.0 M" in html and "server 1,834 MB (all arms)" in html


def test_two_replayed_arms(tmp_path):
    records = (arm_records("bert", 300, p_right=0.8, latency_ms=None, seed=1)
               + arm_records("distilbert", 300, p_right=0.75, latency_ms=None, seed=2))
    run = write_run(tmp_path / "replay", records,
                    {"bert": replay("/data/bert.json"), "distilbert": replay("/data/distilbert.json")})
    report = build_report(run, n_resamples=FAST)
    html, md, data = read_outputs(report)
    test = data["tests"]["bert__vs__distilbert"]
    assert test["latency"] is None
    assert all(data["arms"][arm]["latency_ms"] is None for arm in ("bert", "distilbert"))
    assert "replayed prediction files" in pair_line(report, "bert", "distilbert")
    assert "latency not compared" in pair_line(report, "bert", "distilbert")
    assert "replayed prediction file bert.json" in html
    assert set(report.paths.plots) == {"accuracy", "contingency"}
    assert "No load results" in md


def test_served_and_replayed_arm_mixed(tmp_path):
    records = (arm_records("distilbert", 200, p_right=0.75, latency_ms=20, seed=1)
               + arm_records("bert-paper", 200, p_right=0.8, latency_ms=None, seed=2))
    run = write_run(tmp_path / "mix", records, {"distilbert": served("d"), "bert-paper": replay("/x/bert.json")})
    report = build_report(run, n_resamples=FAST)
    html, _, data = read_outputs(report)
    assert data["arms"]["distilbert"]["provenance"]["tag"] == "served"
    assert data["arms"]["bert-paper"]["provenance"]["tag"] == "replay"
    assert data["tests"]["distilbert__vs__bert-paper"]["latency"] is None
    assert "bert-paper has no per-question latency (replayed)" in pair_line(report, "distilbert", "bert-paper")
    assert "distilbert (served), bert-paper (replay)" in pair_line(report, "distilbert", "bert-paper")
    assert "latency_histogram" in report.paths.plots  # the served arm still has its latency drawn


def test_run_without_load_results(tmp_path):
    records = (arm_records("a", 150, p_right=0.7, latency_ms=15, seed=1)
               + arm_records("b", 150, p_right=0.7, latency_ms=15, seed=2))
    run = write_run(tmp_path / "noload", records, {"a": served("a"), "b": served("b")})
    (run / "plots").mkdir()
    (run / "plots" / "load.png").write_bytes(b"stale figure from an earlier report")
    report = build_report(run, n_resamples=FAST)
    html, md, data = read_outputs(report)
    assert data["load"] is None and all(arm["load"] is None for arm in data["arms"].values())
    assert "load" not in report.paths.plots and not (run / "plots" / "load.png").exists()
    assert "No load results (no load.json)" in html
    assert not any(line.startswith("Under load") for line in report.verdict)


def test_single_arm_says_there_are_no_tests(tmp_path):
    run = write_run(tmp_path / "single", arm_records("bert", 120, p_right=0.8, latency_ms=30, seed=1),
                    {"bert": served("bert-base")})
    report = build_report(run, n_resamples=FAST)
    html, md, data = read_outputs(report)
    assert data["tests"] == {}
    assert "No comparison tests: a single arm has nothing to be compared with." in report.verdict[0]
    assert "No comparison tests: only one arm answered questions" in md
    assert "contingency" not in report.paths.plots


def test_load_only_run(tmp_path):
    run = write_run(tmp_path / "loadonly", load_rows=load_rows("distilbert", 20) + load_rows("bert", 40))
    report = build_report(run, n_resamples=FAST)
    _, _, data = read_outputs(report)
    assert data["tests"] == {} and data["run"]["files"] == {"eval.jsonl": False, "meta.json": False,
                                                            "load.json": True}
    assert report.verdict[0].startswith("No answers to score")
    assert report.verdict[1] == ("Under load (4 concurrent users, split mode): distilbert p95 64 ms, 20.0 req/s "
                                 "(3 of 200 requests failed); bert p95 128 ms, 10.0 req/s (3 of 100 requests "
                                 "failed). In split mode each request goes to one arm by weight (1:1), so req/s follows "
                                 "the split; compare the latencies.")
    assert set(report.paths.plots) == {"load", "queue_compute"}


def test_standins_are_named_next_to_their_accuracy(tmp_path):
    records = (arm_records("distilbert", 200, p_right=0.01, latency_ms=20, seed=1)
               + arm_records("bert", 200, p_right=0.01, latency_ms=40, seed=2))
    run = write_run(tmp_path / "standin", records,
                    {"distilbert": served("standin:distilbert", standin=True), "bert": served("standin:bert", standin=True)})
    report = build_report(run, n_resamples=FAST)
    html, md, data = read_outputs(report)
    assert data["tests"]["distilbert__vs__bert"]["accuracy_meaningful"] is False
    assert "accuracy not compared: distilbert and bert are stand-ins" in report.verdict[0]
    assert "faster than bert at p50" in report.verdict[0]  # their latency is still real
    # The EM and F1 cells of each arm carry the warning beside the number.
    assert md.count("— STAND-IN: meaningless") == 6  # the arms table and the trade-off's F1
    assert "STAND-IN: untrained weights" in html


def test_failed_and_missing_answers_are_no_answers_compared_apart(tmp_path):
    records = (arm_records("a", 100, p_right=1.0, latency_ms=10, seed=1, failed=7, missing=3)
               + arm_records("b", 100, p_right=1.0, latency_ms=10, seed=2))
    run = write_run(tmp_path / "failures", records, {"a": served("a"), "b": served("b")})
    report = build_report(run, n_resamples=FAST)
    data = report.data
    a = data["arms"]["a"]
    assert (a["questions"], a["ok"], a["failed"], a["missing"]) == (100, 90, 7, 3)
    assert a["em"] == pytest.approx(100.0) and a["f1"] == pytest.approx(100.0)  # on the 90 answers given
    assert a["latency_ms"]["n"] == 90 and a["latency_ms"]["excluded_failed_or_missing"] == 10
    assert a["error_messages"] == {"timed out after 60 s": 7, "no prediction for this id": 3}
    test = data["tests"]["a__vs__b"]
    assert (test["paired_questions"], test["only_a"], test["only_b"]) == (90, 0, 10)
    assert test["mcnemar"]["c"] == 0
    failures = test["failures"]
    assert (failures["failed_a"], failures["failed_b"], failures["only_a"], failures["only_b"]) == (10, 0, 10, 0)
    assert failures["p_value"] == pytest.approx(2 * 0.5 ** 10)
    assert any("7 failed and 3 missing answers are left out of accuracy" in note for note in data["notes"])
    assert "failures apart: a gave no answer to 10 of 100 questions (10.0%)" in pair_line(report, "a", "b")


def test_pairing_is_by_id_and_unpaired_questions_are_counted(tmp_path):
    ids = [f"q{i:04d}" for i in range(100)]
    records = (arm_records("a", 100, p_right=0.5, latency_ms=10, seed=1, ids=ids)
               + arm_records("b", 90, p_right=0.5, latency_ms=10, seed=2, ids=list(reversed(ids[5:95]))))
    run = write_run(tmp_path / "unpaired", records)
    data = build_report(run, n_resamples=FAST).data
    test = data["tests"]["a__vs__b"]
    assert (test["paired_questions"], test["only_a"], test["only_b"]) == (90, 10, 0)
    # Independently: the table over the shared ids, matched by id.
    by_id = {(r.arm, r.id): r.em for r in records}
    b_count = sum(1 for q in ids[5:95] if by_id["a", q] == 1 and by_id["b", q] == 0)
    assert test["mcnemar"]["b"] == b_count
    assert any("10 answered only by a" in note for note in data["notes"])
    # Without meta.json the arms' kind is inferred and said to be.
    assert data["arms"]["a"]["provenance"]["inferred"] is True


def test_repeated_records_keep_the_last(tmp_path):
    first = arm_records("a", 50, p_right=0.0, latency_ms=10, seed=1)
    retried = [EvalRecord(**{**r.to_dict(), "em": 1.0, "f1": 1.0}) for r in first[:10]]
    records = first + retried + arm_records("b", 50, p_right=0.0, latency_ms=10, seed=2)
    data = build_report(write_run(tmp_path / "dupes", records), n_resamples=FAST).data
    assert data["arms"]["a"]["questions"] == 50 and data["arms"]["a"]["duplicates"] == 10
    assert data["arms"]["a"]["em"] == pytest.approx(20.0)


def test_three_arms_get_all_pairs_with_holm(tmp_path):
    records = (arm_records("a", 300, p_right=0.6, latency_ms=10, seed=1)
               + arm_records("b", 300, p_right=0.7, latency_ms=20, seed=2)
               + arm_records("c", 300, p_right=0.8, latency_ms=30, seed=3))
    report = build_report(write_run(tmp_path / "three", records), n_resamples=FAST)
    tests = report.data["tests"]
    assert list(tests) == ["a__vs__b", "a__vs__c", "b__vs__c"]
    for family in ("mcnemar", "paired_t_f1"):
        raw = [tests[key][family]["p_value"] for key in tests]
        expected = multipletests(raw, method="holm")[1]
        assert [tests[key][family]["p_value_holm"] for key in tests] == pytest.approx(list(expected))
    assert report.data["settings"]["multiple_comparisons"] == "holm"
    lines = [pair_line(report, a, b) for a, b in (("a", "b"), ("a", "c"), ("b", "c"))]
    assert all("Bonferroni-adjusted over 3 pairs" in line and "98.3% CI" in line for line in lines)
    assert "Holm" in report.paths.html.read_text()


# ---------------------------------------------------------------- errors and the command line


def test_empty_or_broken_run_folders_are_named(tmp_path):
    with pytest.raises(AbqaError, match="no such run folder"):
        build_report(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AbqaError, match="none of eval.jsonl, meta.json, load.json"):
        build_report(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "eval.jsonl").write_text('{"id": "q1", "arm": "a"\n{"id": "q2"}\n')
    with pytest.raises(AbqaError, match=r"eval.jsonl: line 1 is not valid JSON"):
        build_report(broken)
    bad_status = tmp_path / "status"
    bad_status.mkdir()
    (bad_status / "eval.jsonl").write_text(json.dumps({
        "id": "q1", "arm": "a", "prediction": "x", "em": 1.0, "f1": 1.0, "latency_ms": None, "started_at": "t",
        "status": "weird"}) + "\n")
    with pytest.raises(AbqaError, match=r"eval.jsonl: line 1 \(id 'q1', arm 'a'\): status: .*'weird'"):
        build_report(bad_status)


def test_cli_prints_the_verdict_and_three_paths(tmp_path, capsys):
    records = (arm_records("a", 80, p_right=0.6, latency_ms=10, seed=1)
               + arm_records("b", 80, p_right=0.7, latency_ms=20, seed=2))
    run = write_run(tmp_path / "cli", records, {"a": served("a"), "b": served("b")})
    assert main(["report", str(run), "--bootstrap", "200", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("No shipping decision") and "\na vs b (80 paired questions, served models)" in out
    for name in ("report.html", "report.md", "report.json"):
        assert str(run / name) in out
    assert json.loads((run / "report.json").read_text())["settings"]["bootstrap_resamples"] == 200
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_tiny_samples_are_called_too_few(tmp_path):
    records = (arm_records("a", 2, p_right=0.5, latency_ms=10, seed=1)
               + arm_records("b", 2, p_right=0.5, latency_ms=20, seed=2))
    report = build_report(write_run(tmp_path / "tiny", records), n_resamples=FAST)
    line = pair_line(report, "a", "b")
    assert line.startswith("a vs b (2 paired questions")
    assert line.endswith("Only 2 paired questions: too few for these intervals and p-values to mean much.")
    assert "-0.0" not in line
    one = build_report(write_run(tmp_path / "one", records[:1] + records[2:3]), n_resamples=FAST)
    assert pair_line(one, "a", "b").startswith("a vs b (1 paired question,")
    assert one.data["tests"]["a__vs__b"]["paired_t_f1"]["p_value"] is None


def test_latencies_measured_under_concurrency_are_labelled_so(tmp_path):
    records = (arm_records("distilbert", 60, p_right=0.7, latency_ms=20, seed=1)
               + arm_records("bert", 60, p_right=0.8, latency_ms=40, seed=2))
    arms = {"distilbert": served("distilbert-base"), "bert": served("bert-base")}
    loaded = {"concurrency": 2, "isolated": False, "how": "--order parallel: every served arm's request in flight"}
    report = build_report(write_run(tmp_path / "parallel", records, arms, latency=loaded), n_resamples=FAST)
    html, md, data = read_outputs(report)
    assert data["run"]["latency"] == loaded
    assert "p50 ms [CI] @2 in flight" in md and "Latencies measured under concurrency: up to 2 requests" in md
    assert "not lone-request latencies" in html

    isolated = {"concurrency": 1, "isolated": True, "how": "--order random: one request at a time"}
    _, md, _ = read_outputs(build_report(write_run(tmp_path / "random", records, arms, latency=isolated),
                                         n_resamples=FAST))
    assert "in flight" not in md and "p50 ms [CI] |" in md
