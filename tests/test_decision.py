"""The decision layer of the report: non-inferiority and equivalence within declared margins on one test procedure,
failures apart from accuracy, latency CIs that respect time, samples that are samples, variants, where the
difference lives and the trade-off. Run folders are synthetic, written through the run-folder contract."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from scipy import stats as sps

from abqa.analysis import stats
from abqa.analysis.decision import sign_flips
from abqa.analysis.report import build_report
from abqa.benchmark import replay_decision
from abqa.cli import main
from abqa.core.errors import AbqaError
from abqa.core.run import DecisionPlan, EvalRecord, LoadRow, RunStatus
from abqa.flags import margins_argument
from run_builders import dataset, write_run

RESAMPLES = 2000
WHEN = "2026-01-01T00:00:{:02d}.{:06d}+00:00"


def started(i: int) -> str:
    return WHEN.format(i // 1_000_000 % 60, i % 1_000_000)


def records(arm: str, f1: np.ndarray, *, latency: np.ndarray | None = None, failed: set[int] = frozenset(),
            predictions: list[str] | None = None, tokens: np.ndarray | None = None) -> list[EvalRecord]:
    """One record per question q0000.. with the given F1 (EM 1 where F1 is 1); `failed` positions did not answer."""
    out = []
    for i, value in enumerate(f1):
        bad = i in failed
        out.append(EvalRecord(
            id=f"q{i:04d}", arm=arm, prediction=None if bad else (predictions[i] if predictions else f"answer {i}"),
            em=0.0 if bad else float(value == 1.0), f1=0.0 if bad else float(value),
            latency_ms=None if bad or latency is None else float(latency[i]),
            windows=None if tokens is None else int(1 + tokens[i] // 384),
            tokens=None if tokens is None else int(tokens[i]), started_at=started(i),
            status="failed" if bad else "ok", error="timed out after 60 s" if bad else None))
    return out


def served(**fields) -> dict:
    return {"kind": "served", "standin": False, "source": "model", "variant": "fp32", **fields}


def shifted_pair(n: int, mean_diff: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Candidate and baseline F1 per question whose differences have exactly the mean `mean_diff` (0..1 scale),
    three quarters of them zero but for the shift, as with real models; both stay within 0..1."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.35, 0.65, n)
    diff = np.where(rng.random(n) < 0.75, 0.0, rng.uniform(-0.3, 0.3, n))
    diff += mean_diff - diff.mean()
    return base + diff, base


# ---------------------------------------------------------------- the sign-flip procedure


def test_sign_flip_p_values_match_scipys_permutation_test():
    rng = np.random.default_rng(3)
    diffs = np.where(rng.random(300) < 0.7, 0.0, rng.normal(0.05, 0.3, 300))
    flip = sign_flips({"d": diffs}, resamples=9999, seed=0)["d"]
    for delta in (0.0, -0.02, 0.04):
        expected = sps.permutation_test((diffs - delta,), np.mean, permutation_type="samples", n_resamples=9999,
                                        alternative="greater", rng=1).pvalue
        assert flip.p_above(delta) == pytest.approx(expected, abs=0.02)


def test_sign_flip_interval_agrees_with_its_p_value_and_with_t_on_large_samples():
    rng = np.random.default_rng(4)
    for seed in range(6):
        diffs = np.where(rng.random(200) < 0.8, 0.0, rng.normal(rng.normal(0, 0.05), 0.3, 200))
        flip = sign_flips({"d": diffs}, resamples=1999, seed=seed)["d"]
        for confidence in (0.95, 0.9833):
            low, high = flip.interval(confidence)
            assert low <= flip.mean <= high
            assert (flip.p_two_sided(0.0) <= 1 - confidence) == (not low <= 0.0 <= high)
    big = np.where(rng.random(10_000) < 0.8, 0.0, rng.normal(-0.2, 0.4, 10_000))
    low, high = sign_flips({"d": big}, resamples=4000, seed=0)["d"].interval(0.95)
    t_interval = sps.ttest_1samp(big, 0).confidence_interval(0.95)
    assert low == pytest.approx(t_interval.low, abs=0.002) and high == pytest.approx(t_interval.high, abs=0.002)


@pytest.mark.parametrize("true_diff, expected", [(-0.3, "non-inferior"), (-1.0, "inconclusive"),
                                                 (-3.0, "inferior")])
def test_noninferiority_inside_at_and_outside_the_margin(tmp_path, true_diff, expected):
    candidate, baseline = shifted_pair(3000, true_diff / 100)
    run = write_run(tmp_path / "pair", records("distilbert", candidate) + records("bert", baseline),
                    {"distilbert": served(), "bert": served()},
                    decision=DecisionPlan(baseline="bert", margins={"f1": 1.0}, declared_at="2026-01-01T00:00:00Z"))
    report = build_report(run, n_resamples=RESAMPLES)
    rows = report.data["noninferiority"]
    assert [set(row) for row in rows] == [{"candidate", "baseline", "metric", "margin", "difference", "ci_low",
                                           "ci_high", "p_value", "conclusion"}]
    row = rows[0]
    assert (row["candidate"], row["baseline"], row["metric"], row["margin"]) == ("distilbert", "bert", "f1", 1.0)
    assert row["difference"] == pytest.approx(true_diff)
    assert row["conclusion"] == expected
    assert (row["ci_low"] > -1.0) == (expected == "non-inferior") and (row["ci_high"] < -1.0) == (expected == "inferior")
    assert (row["p_value"] <= 0.025) == (expected == "non-inferior")
    first = report.verdict[0]
    assert first.startswith(f"Decision: distilbert against bert: {expected.upper()}")
    assert "margin of -1" in first and "sign-flip permutation test" in first and "chosen after" not in first
    assert report.data["decision"]["chosen_after_data"] is False
    tost = report.data["equivalence"][0]
    assert tost["conclusion"] == ("equivalent" if expected == "non-inferior" and tost["ci_high"] < 1.0
                                  else "not shown equivalent")


def test_a_stand_in_pair_gets_the_figures_but_no_shipping_word(tmp_path):
    candidate, baseline = shifted_pair(2000, -0.002)
    run = write_run(tmp_path / "standins", records("distilbert", candidate) + records("bert", baseline),
                    {"distilbert": served(standin=True), "bert": served(standin=True)},
                    decision=DecisionPlan(baseline="bert", margins={"f1": 1.0}, declared_at="2026-01-01T00:00:00Z"))
    report = build_report(run, n_resamples=RESAMPLES)
    assert report.data["noninferiority"][0]["conclusion"] == "non-inferior"  # the procedure still runs
    first = report.verdict[0]
    assert first.startswith("Decision: distilbert against bert: NO DECISION: a stand-in's accuracy is meaningless")
    assert "may ship" not in first and "non-inferior (one-sided" in first


def test_a_margin_given_only_to_report_is_marked_as_chosen_after_the_data(tmp_path, capsys):
    candidate, baseline = shifted_pair(500, -0.03)
    run = write_run(tmp_path / "late", records("distilbert", candidate) + records("bert", baseline),
                    {"distilbert": served(), "bert": served()})
    plain = build_report(run, n_resamples=RESAMPLES)
    assert plain.data["noninferiority"] == [] and plain.verdict[0].startswith("No shipping decision")
    assert main(["report", str(run), "--bootstrap", str(RESAMPLES), "--baseline", "bert", "--margin", "f1=1,em=2"]) == 0
    out = capsys.readouterr().out
    data = json.loads((run / "report.json").read_text())
    assert data["decision"]["chosen_after_data"] is True and data["decision"]["declared"] is None
    assert [row["metric"] for row in data["noninferiority"]] == ["f1", "em"]
    assert out.startswith("Decision: distilbert against bert: INFERIOR")
    assert "Caution: the margin was chosen after the data" in out.splitlines()[0]
    assert "CHOSEN AFTER THE DATA" in (run / "report.md").read_text()
    with pytest.raises(AbqaError, match="--baseline gpt: no such arm in this run; its arms with answers are"):
        build_report(run, n_resamples=RESAMPLES, baseline="gpt", margins={"f1": 1.0})
    with pytest.raises(AbqaError, match="--margin needs a baseline"):
        build_report(run, n_resamples=RESAMPLES, margins={"f1": 1.0})


def test_several_candidates_are_adjusted_together(tmp_path):
    near, base = shifted_pair(2000, -0.002, seed=1)
    far, _ = shifted_pair(2000, -0.05, seed=2)
    run = write_run(tmp_path / "three", records("near", near) + records("far", far) + records("bert", base),
                    {"near": served(), "far": served(), "bert": served()})
    report = build_report(run, n_resamples=RESAMPLES, baseline="bert", margins={"f1": 1.0})
    rows = {row["candidate"]: row for row in report.data["noninferiority"]}
    assert rows["far"]["conclusion"] == "inferior"
    assert report.data["decision"]["candidates"]["near"]["family"] == 2
    assert "Bonferroni over 2 candidates" in report.verdict[0] and "97.5% CI" in report.verdict[0]
    # Differences are candidate - baseline: the baseline is the second arm of every pair.
    assert set(report.data["tests"]) == {"near__vs__far", "near__vs__bert", "far__vs__bert"}
    for key, test in report.data["tests"].items():
        block = test["signflip"]["f1"]
        low, high = block["ci_adjusted"]
        assert block["family"] == 3
        assert (block["p_value_adjusted"] <= 0.05) == (not low <= 0 <= high), key


# ---------------------------------------------------------------- failures apart


def test_thirty_failures_of_400_leave_the_accuracy_comparison_unchanged(tmp_path):
    candidate, baseline = shifted_pair(400, -0.02, seed=5)
    failed = set(list(range(5, 400, 13))[:30])
    clean = write_run(tmp_path / "clean", records("distilbert", candidate) + records("bert", baseline),
                      {"distilbert": served(), "bert": served()})
    broken = write_run(tmp_path / "broken", records("distilbert", candidate, failed=failed) + records("bert", baseline),
                       {"distilbert": served(), "bert": served()})
    keep = [i for i in range(400) if i not in failed]
    restricted = write_run(tmp_path / "restricted", records("distilbert", candidate[keep]) + records("bert", baseline[keep]),
                           {"distilbert": served(), "bert": served()})
    got = build_report(broken, n_resamples=RESAMPLES).data["tests"]["distilbert__vs__bert"]
    expected = build_report(restricted, n_resamples=RESAMPLES).data["tests"]["distilbert__vs__bert"]
    both = build_report(clean, n_resamples=RESAMPLES).data["tests"]["distilbert__vs__bert"]
    assert got["paired_questions"] == 370 and both["paired_questions"] == 400
    for metric in ("f1", "em"):
        assert got["signflip"][metric]["difference"] == pytest.approx(expected["signflip"][metric]["difference"])
    assert got["f1_diff"]["value"] == pytest.approx(expected["f1_diff"]["value"])
    assert got["mcnemar"]["b"] == expected["mcnemar"]["b"] and got["mcnemar"]["c"] == expected["mcnemar"]["c"]
    # The 30 failures show as failures, not as 30 wrong answers.
    failures = got["failures"]
    assert (failures["questions"], failures["failed_a"], failures["failed_b"]) == (400, 30, 0)
    assert failures["p_value"] == pytest.approx(2 * 0.5 ** 30)
    report = build_report(broken, n_resamples=RESAMPLES)
    line = next(line for line in report.verdict if line.startswith("distilbert vs bert ("))
    assert line.startswith("distilbert vs bert (370 paired questions")
    assert "distilbert gave no answer to 30 of 400 questions (7.5%), bert to 0 (0.0%), p < 0.001" in line
    methods = report.paths.markdown.read_text()
    assert "Paired accuracy tests use only the questions both arms answered (status ok)" in methods


# ---------------------------------------------------------------- latency that respects time


def ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise, series = rng.normal(size=n), np.zeros(n)
    for i in range(1, n):
        series[i] = phi * series[i - 1] + noise[i]
    return series


def test_block_bootstrap_widens_latency_intervals_under_drift():
    drifting = 30 * np.exp(0.2 * ar1(3000, 0.95, seed=1))
    independent = np.random.default_rng(2).permutation(drifting)  # the same values, order forgotten
    block = stats.block_length(drifting)
    assert block > 10 and stats.block_length(independent) <= 3
    wide = stats.latency_summary(drifting, n_resamples=1000, seed=0).estimates["mean"]
    narrow = stats.latency_summary(independent, n_resamples=1000, seed=0).estimates["mean"]
    assert (wide.ci_high - wide.ci_low) > 3 * (narrow.ci_high - narrow.ci_low)


def test_report_resamples_latency_in_time_order_and_warns_about_parallel(tmp_path):
    n = 600
    drift = 20 * np.exp(0.2 * ar1(n, 0.95, seed=3))
    order = np.random.default_rng(4).permutation(n)   # file order is not time order
    f1 = np.ones(n)
    a = records("a", f1, latency=drift)
    b = records("b", f1, latency=drift * 2)
    shuffled = [a[i] for i in order] + [b[i] for i in order]
    run = write_run(tmp_path / "time", shuffled, {"a": served(), "b": served()}, order="parallel")
    report = build_report(run, n_resamples=500)
    latency = report.data["arms"]["a"]["latency_ms"]
    assert latency["block_length"] == stats.block_length(drift) > 1
    assert report.data["tests"]["a__vs__b"]["latency"]["block_length"] > 1
    assert any(note.startswith("Order parallel: every served arm answered each question at the same time")
               for note in report.data["notes"])
    line = next(line for line in report.verdict if line.startswith("a vs b ("))
    assert "block bootstrap in time order; order parallel: the arms competed for the same cores" in line


# ---------------------------------------------------------------- samples that are samples


def test_limit_and_partial_runs_are_marked_as_not_random_samples(tmp_path):
    candidate, baseline = shifted_pair(200, -0.01)
    body = records("distilbert", candidate) + records("bert", baseline)
    arms = {"distilbert": served(), "bert": served()}
    limited = write_run(tmp_path / "limited", body, arms, dataset=dataset(evaluated_questions=200, limit=200))
    report = build_report(limited, n_resamples=RESAMPLES, baseline="bert", margins={"f1": 1.0})
    assert any(line.startswith("NOT A RANDOM SAMPLE: --limit 200: the questions are the first 200 in file order")
               for line in report.verdict)
    assert "--limit 200" in report.verdict[0]  # the decision itself carries the caution
    partial = write_run(tmp_path / "partial", body[:150] + body[200:350], arms, status=RunStatus.INTERRUPTED,
                        dataset=dataset(evaluated_questions=200))
    lines = build_report(partial, n_resamples=RESAMPLES).verdict
    assert any("partial run (status interrupted; of 200 questions, answered: distilbert 150, bert 150)" in line
               for line in lines)
    sampled = write_run(tmp_path / "sampled", body, arms, dataset=dataset(evaluated_questions=200, sample=200))
    assert build_report(sampled, n_resamples=RESAMPLES).data["sample_caveats"] == []


# ---------------------------------------------------------------- agreement, variants, where, trade-off


def test_variants_get_their_speed_up_and_agreement_against_the_base_arm(tmp_path):
    n = 300
    rng = np.random.default_rng(6)
    base_latency = rng.lognormal(np.log(40), 0.2, n)
    answers = [f"answer {i}" for i in range(n)]
    changed = [answer if i % 10 else "something else" for i, answer in enumerate(answers)]   # 90% identical
    f1 = np.ones(n)
    run = write_run(tmp_path / "variants",
                    records("bert", f1, latency=base_latency, predictions=answers)
                    + records("bert-int8", f1, latency=base_latency / 2 * rng.lognormal(0, 0.05, n),
                              predictions=changed)
                    + records("bert-O2", f1, latency=base_latency / 1.25, predictions=answers),
                    {"bert": served(standin=True), "bert-int8": served(standin=True, variant="int8", base_arm="bert"),
                     "bert-O2": served(standin=True, variant="O2")})
    report = build_report(run, n_resamples=500)
    variants = {entry["arm"]: entry for entry in report.data["variants"]}
    int8, o2 = variants["bert-int8"], variants["bert-O2"]
    assert (int8["base_arm"], int8["base_inferred"], o2["base_arm"], o2["base_inferred"]) == ("bert", False, "bert",
                                                                                             True)
    assert int8["speedup"]["value"] == pytest.approx(2.0, rel=0.05)
    assert int8["speedup"]["ci"][0] < int8["speedup"]["value"] < int8["speedup"]["ci"][1]
    assert o2["speedup"]["value"] == pytest.approx(1.25, rel=0.01)
    assert int8["agreement"] == {"questions": n, "identical": 270, "share_pct": 90.0}
    assert report.data["tests"]["bert__vs__bert-int8"]["agreement"]["share_pct"] == 90.0
    assert any(line.startswith("Variant bert-int8 (int8 of bert): 2.0") and "90.0% of 300" in line
               for line in report.verdict)


def test_where_the_difference_lives_by_length_with_a_fitted_line(tmp_path):
    n = 400
    rng = np.random.default_rng(7)
    tokens = rng.integers(60, 900, n)
    latency = 5 + 0.04 * tokens + rng.normal(0, 0.5, n)       # 4 ms per 100 tokens, 5 ms fixed
    long = tokens > 384
    base = np.full(n, 0.9)
    candidate = np.where(long, 0.6, 0.9)                       # the candidate loses only on long contexts
    run = write_run(tmp_path / "where", records("distilbert", candidate, latency=latency / 2, tokens=tokens)
                    + records("bert", base, latency=latency, tokens=tokens),
                    {"distilbert": served(), "bert": served()})
    report = build_report(run, n_resamples=500, baseline="bert", margins={"f1": 1.0})
    where = report.data["where"]
    by_tokens = {row["bucket"]: row for row in where["by_tokens"]}
    assert by_tokens["1–128"]["gaps"]["distilbert - bert"]["f1_points"] == pytest.approx(0.0)
    assert by_tokens["385–768"]["gaps"]["distilbert - bert"]["f1_points"] == pytest.approx(-30.0)
    assert sum(row["questions"] for row in where["by_windows"]) == n
    fit = where["fits"]["bert"]
    assert fit["ms_per_100_tokens"] == pytest.approx(4.0, rel=0.05) and fit["intercept_ms"] == pytest.approx(5, abs=0.5)
    assert fit["ms_per_100_tokens_ci"][0] < 4.0 < fit["ms_per_100_tokens_ci"][1]
    assert "latency_vs_tokens" in report.paths.plots
    assert "## Where the difference lives" in report.paths.markdown.read_text()


def load_rows(arm: str, mean_ms: list[float], failures: list[int]) -> list[LoadRow]:
    """A split-mode sweep: every arm gets the same request rate (the users share their requests), whatever its
    speed; what tells the arms apart is their latency at each concurrency."""
    return [LoadRow(arm=arm, users=users, requests=100, failures=failed, requests_per_s=10.0,
                    latency_ms={"p50": ms, "p90": ms, "p95": ms, "p99": ms, "mean": ms, "max": ms})
            for users, ms, failed in zip((1, 2, 4), mean_ms, failures)]


def test_tradeoff_names_dominated_arms_and_prices_a_million_questions(tmp_path):
    n = 300
    rng = np.random.default_rng(8)
    tokens = np.full(n, 500)   # two windows per question
    arms = {"bert": (0.9, 40.0), "distilbert": (0.85, 20.0), "slowpoke": (0.8, 60.0)}
    body = []
    for arm, (f1, ms) in arms.items():
        body += records(arm, np.clip(rng.normal(f1, 0.05, n), 0, 0.99), latency=rng.lognormal(np.log(ms), 0.2, n),
                        tokens=tokens)
    rows = (load_rows("bert", [50, 66.7, 80], [0, 0, 50]) + load_rows("distilbert", [25, 33.3, 50], [0, 0, 0])
            + load_rows("slowpoke", [100, 133.3, 200], [0, 0, 0]))
    run = write_run(tmp_path / "tradeoff", body, {arm: served() for arm in arms}, load_rows=rows)
    report = build_report(run, n_resamples=500, cost_per_hour=3.6)
    tradeoff = report.data["tradeoff"]
    by_arm = {row["arm"]: row for row in tradeoff["rows"]}
    assert by_arm["slowpoke"]["dominated_by"] == ["bert", "distilbert"]
    assert by_arm["bert"]["dominated_by"] == [] and by_arm["distilbert"]["dominated_by"] == []
    # bert's 4-user step failed half its requests: its sustained rate is the 2-user step's, 2 users / 66.7 ms = 30
    # windows/s, 15 questions/s at 2 windows a question (not 50 from the failing step, nor the 10 measured).
    assert by_arm["bert"]["throughput"]["questions_per_s"] == pytest.approx(15, rel=0.01)
    assert by_arm["distilbert"]["throughput"]["questions_per_s"] == pytest.approx(40, rel=0.01)
    assert by_arm["bert"]["cost_per_million"] == pytest.approx(3.6 / (15 * 3600) * 1e6, rel=0.01)
    assert "pareto" in report.paths.plots
    assert any(line.startswith("Trade-off (F1, p95 latency, sustained throughput): slowpoke is dominated by bert, "
                               "distilbert") for line in report.verdict)


def test_an_open_loop_step_counts_its_answered_rate_as_throughput():
    from abqa.analysis.tradeoff import sustained_step

    closed = {"step": "users-1", "users": 1, "requests": 100, "failures": 0, "requests_per_s": 9.0,
              "latency_ms": {"mean": 100.0}}                       # Little's law: 1 / 0.1 s = 10 req/s
    held = {"step": "rate-14", "users": None, "rate": 14.0, "requests": 200, "failures": 0, "requests_per_s": 13.8,
            "latency_ms": {"mean": 300.0}}
    failing = {**held, "step": "rate-20", "rate": 20.0, "failures": 10, "requests_per_s": 19.0}
    assert sustained_step([closed, held, failing])["step"] == "rate-14"
    assert sustained_step([closed, failing])["step"] == "users-1"


# ---------------------------------------------------------------- display and flags


def test_an_infinite_t_is_shown_as_infinite(tmp_path):
    n = 40
    run = write_run(tmp_path / "inf", records("a", np.full(n, 0.9)) + records("b", np.full(n, 0.5)))
    report = build_report(run, n_resamples=500)
    assert report.data["tests"]["a__vs__b"]["paired_t_f1"]["p_value"] == 0.0
    assert "t(39) = +∞ (every difference is the same)" in report.paths.markdown.read_text()


def test_margin_flag_grammar():
    assert margins_argument("f1=1.0,em=1.5") == {"f1": 1.0, "em": 1.5}
    assert margins_argument(" F1 = 2 ") == {"f1": 2.0}
    for bad in ("f1", "bleu=1", "f1=x", "f1=-1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            margins_argument(bad)


def test_benchmark_maps_the_declared_baseline_onto_the_shared_replay():
    plan = DecisionPlan(baseline="bert", margins={"f1": 1.0})
    assert replay_decision(plan).baseline == "bert-finetuned"
    assert replay_decision(plan.model_copy(update={"baseline": "bert-int8"})).baseline == "bert-finetuned"
    assert replay_decision(plan.model_copy(update={"baseline": "distilbert"})).baseline == "distilbert-finetuned"
    assert replay_decision(plan.model_copy(update={"baseline": "roberta"})) is None
    assert replay_decision(None) is None


def test_evaluate_records_the_declaration_and_refuses_a_late_one(tmp_path, shared_data, capsys):
    predictions = shared_data / "squad-v1.1" / "predictions"
    replays = ["--replay", f"bert={predictions / 'bert-base-uncased-finetuned.json'}",
               "--replay", f"distilbert={predictions / 'distilbert-base-uncased-finetuned.json'}"]
    squad = ["--squad", str(shared_data / "squad-v1.1" / "dev-v1.1.json"), "--sample", "300", "--no-progress"]
    run = tmp_path / "declared"
    assert main(["evaluate", *squad, *replays, "--baseline", "bert", "--margin", "f1=1.0", "--out", str(run)]) == 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["decision"]["baseline"] == "bert" and meta["decision"]["margins"] == {"f1": 1.0}
    first_answer = min(json.loads(line)["started_at"] for line in (run / "eval.jsonl").read_text().splitlines())
    # stamped when the run opened, before any answer, and kept by the final write (which once restamped both)
    assert meta["decision"]["declared_at"] <= first_answer and meta["created_at"] <= first_answer
    report = build_report(run, n_resamples=RESAMPLES)
    assert report.data["decision"]["chosen_after_data"] is False and report.data["noninferiority"]
    late = tmp_path / "late"
    assert main(["evaluate", *squad, *replays, "--out", str(late)]) == 0
    assert main(["evaluate", *squad, *replays, "--margin", "f1=1.0", "--baseline", "bert", "--out", str(late)]) == 2
    assert "without a declared margin: one declared now would come after the data" in capsys.readouterr().err
    assert main(["evaluate", *squad, *replays, "--margin", "f1=1.0", "--out", str(tmp_path / "x")]) == 2
    assert "--margin needs --baseline" in capsys.readouterr().err
