"""Known answers on real data: the shared BERT-base and DistilBERT SQuAD v1.1 dev predictions as replayed arms.

The per-question vectors are computed here independently (abqa.core.metrics over the dev set, paired by id in
split order) and fed straight to scipy/statsmodels; the report must agree with them.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

from abqa.analysis import stats
from abqa.analysis.report import build_report
from abqa.cli import main
from abqa.core.metrics import score_predictions
from abqa.core.run import EvalRecord
import run_builders
from abqa.core.squad import load_squad_file

RESAMPLES, SEED = 2000, 0
PREDICTIONS = {"distilbert": "distilbert-base-uncased-finetuned.json", "bert": "bert-base-uncased-finetuned.json"}


@pytest.fixture(scope="module")
def scored(shared_data):
    """{arm: (ids, em, f1)} over the full dev set, in split order."""
    dataset = load_squad_file(shared_data / "squad-v1.1" / "dev-v1.1.json")
    references = dataset.references()
    result = {}
    for arm, filename in PREDICTIONS.items():
        predictions = json.loads((shared_data / "squad-v1.1" / "predictions" / filename).read_text())
        summary = score_predictions(references, predictions)
        ids = list(summary.per_question)
        result[arm] = (ids, np.array([summary.per_question[i].em for i in ids]),
                       np.array([summary.per_question[i].f1 for i in ids]), predictions)
    return result


@pytest.fixture(scope="module")
def report(scored, shared_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "bert-vs-distilbert-replay"
    run.mkdir()
    lines = []
    for arm, (ids, em, f1, predictions) in scored.items():
        for question, e, f in zip(ids, em, f1):
            record = EvalRecord(id=question, arm=arm, prediction=predictions.get(question), em=float(e), f1=float(f),
                                latency_ms=None, windows=None, tokens=None, started_at="2026-01-01T00:00:00+00:00")
            lines.append(record)
    arms = {arm: {"kind": "replay", "standin": False,
                  "replay_file": str(shared_data / "squad-v1.1" / "predictions" / filename)}
            for arm, filename in PREDICTIONS.items()}
    run_builders.write_run(run, lines, arms, dataset=run_builders.dataset(source="shared"))
    return build_report(run, n_resamples=RESAMPLES, seed=SEED)


def test_scores_match_the_published_dev_results(report):
    arms = report.data["arms"]
    assert arms["bert"]["em"] == pytest.approx(80.927, abs=5e-4)
    assert arms["bert"]["f1"] == pytest.approx(88.333, abs=5e-4)
    assert arms["distilbert"]["em"] == pytest.approx(75.932, abs=5e-4)
    assert arms["distilbert"]["f1"] == pytest.approx(84.550, abs=5e-4)
    assert arms["bert"]["questions"] == arms["distilbert"]["questions"] == 10570


def test_mcnemar_equals_statsmodels_on_independent_vectors(report, scored):
    _, em_d, _, _ = scored["distilbert"]
    _, em_b, _, _ = scored["bert"]
    right_d, right_b = em_d == 1, em_b == 1
    table = [[np.sum(right_d & right_b), np.sum(right_d & ~right_b)],
             [np.sum(~right_d & right_b), np.sum(~right_d & ~right_b)]]
    m = report.data["tests"]["distilbert__vs__bert"]["mcnemar"]
    assert (m["b"], m["c"]) == (table[0][1], table[1][0])
    assert m["p_value"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9)
    approximate = mcnemar(table, exact=False, correction=True)
    assert m["chi2"] == pytest.approx(approximate.statistic)
    assert m["chi2_p_value"] == pytest.approx(approximate.pvalue, rel=1e-9)


def test_paired_t_and_wilcoxon_equal_scipy_on_independent_vectors(report, scored):
    _, _, f1_d, _ = scored["distilbert"]
    _, _, f1_b, _ = scored["bert"]
    test = report.data["tests"]["distilbert__vs__bert"]
    reference = sps.ttest_rel(f1_d, f1_b)
    assert test["paired_t_f1"]["statistic"] == pytest.approx(reference.statistic)
    assert test["paired_t_f1"]["p_value"] == pytest.approx(reference.pvalue, rel=1e-6)
    assert test["paired_t_f1"]["mean_diff_points"] == pytest.approx(84.550 - 88.333, abs=1e-3)
    assert test["wilcoxon_f1"]["p_value"] == pytest.approx(sps.wilcoxon(f1_d, f1_b).pvalue, rel=1e-6)


def test_bootstrap_cis_contain_the_difference_and_are_stable_under_the_seed(report, scored):
    _, em_d, f1_d, _ = scored["distilbert"]
    _, em_b, f1_b, _ = scored["bert"]
    test = report.data["tests"]["distilbert__vs__bert"]
    for key, diff in (("em_diff", em_d - em_b), ("f1_diff", f1_d - f1_b)):
        low, high = test[key]["ci"]
        assert test[key]["value"] == pytest.approx(100 * diff.mean())
        assert low < test[key]["value"] < high
    again = stats.paired_mean_differences([em_d - em_b, f1_d - f1_b], n_resamples=RESAMPLES, seed=SEED)
    assert [100 * again[0].ci_low, 100 * again[0].ci_high] == pytest.approx(test["em_diff"]["ci"], abs=1e-9)
    assert [100 * again[1].ci_low, 100 * again[1].ci_high] == pytest.approx(test["f1_diff"]["ci"], abs=1e-9)
    other = stats.paired_mean_differences([f1_d - f1_b], n_resamples=RESAMPLES, seed=SEED + 1)[0]
    assert [100 * other.ci_low, 100 * other.ci_high] == pytest.approx(test["f1_diff"]["ci"], abs=0.15)


def test_verdict_and_outputs(report):
    assert report.verdict[0].startswith("No shipping decision: no non-inferiority margin was declared")
    verdict = report.verdict[1]
    assert verdict.startswith("distilbert vs bert (10,570 paired questions, replayed prediction files)")
    assert re.search(r"distilbert's F1 is 3.8 points lower, 95% CI \[3.[23], 4.[34]\], p < 0.001", verdict)
    assert "its EM is 5.0 points lower" in verdict and "(sign-flip permutation test, " in verdict
    assumptions = report.data["tests"]["distilbert__vs__bert"]["assumptions"]
    assert assumptions["f1_differences"]["shapiro_w"] == pytest.approx(0.575, abs=0.01)
    assert assumptions["f1_differences"]["zero_share"] == pytest.approx(0.80, abs=0.01)
    assert assumptions["agree"] is True
    assert "latency not compared" in verdict
    power = report.data["tests"]["distilbert__vs__bert"]["power"]
    assert 0 < power["mde_f1_points"] < 3.8  # the observed difference is well above what 10,570 questions resolve
    html = report.paths.html.read_text()
    assert "distilbert-base-uncased-finetuned.json" in html


def test_report_on_a_run_written_by_abqa_evaluate(shared_data, tmp_path, capsys):
    """The stages' contract end to end: `abqa evaluate --replay` writes the run, `abqa report` reads it."""
    predictions = shared_data / "squad-v1.1" / "predictions"
    run = tmp_path / "evaluated"
    assert main(["evaluate", "--squad", str(shared_data / "squad-v1.1" / "dev-v1.1.json"), "--limit", "300",
                 "--replay", f"distilbert={predictions / PREDICTIONS['distilbert']}",
                 "--replay", f"bert={predictions / PREDICTIONS['bert']}", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--bootstrap", "300"]) == 0
    out = capsys.readouterr().out
    assert "\ndistilbert vs bert (300 paired questions, replayed prediction files)" in out
    assert "NOT A RANDOM SAMPLE: --limit 300: the questions are the first 300 in file order" in out
    data = json.loads((run / "report.json").read_text())
    assert {arm["provenance"]["kind"] for arm in data["arms"].values()} == {"replay"}
    assert data["run"]["dataset"]["evaluated_questions"] == 300


def test_the_real_pair_is_inferior_at_a_one_point_f1_margin(report):
    """The project's question on the shared real pair: DistilBERT's F1 is about 3.8 points below BERT's, so with a
    1-point margin the decision is `inferior`, and with a 5-point margin `non-inferior`."""
    run = report.paths.json.parent
    strict = build_report(run, n_resamples=2000, seed=SEED, baseline="bert", margins={"f1": 1.0, "em": 1.5})
    rows = {row["metric"]: row for row in strict.data["noninferiority"]}
    f1 = rows["f1"]
    assert (f1["candidate"], f1["baseline"], f1["conclusion"]) == ("distilbert", "bert", "inferior")
    assert f1["difference"] == pytest.approx(-3.78, abs=0.01)
    assert f1["ci_low"] == pytest.approx(-4.3, abs=0.1) and f1["ci_high"] == pytest.approx(-3.25, abs=0.1)
    assert rows["em"]["conclusion"] == "inferior"
    assert strict.verdict[0].startswith("Decision: distilbert against bert: INFERIOR: do not ship. F1 -3.8 points")
    lenient = build_report(run, n_resamples=2000, seed=SEED, baseline="bert", margins={"f1": 5.0})
    assert lenient.data["noninferiority"][0]["conclusion"] == "non-inferior"
    assert lenient.data["equivalence"][0]["conclusion"] == "equivalent"
