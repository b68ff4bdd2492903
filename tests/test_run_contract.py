"""The run folder as a contract: every JSON document carries schema_version, is refused with a clear error when it
was written by another abqa, names the bad field when it is malformed, and round-trips through its typed model."""

from __future__ import annotations

import json

import pytest

from abqa.analysis.report import build_report
from abqa.cli import main
from abqa.core.errors import AbqaError
from abqa.core.run import (SCHEMA_VERSION, EvalRecord, EvalStatus, LoadDocument, LoadRow, ReportData, RequestRecord,
                           RunFolder, RunMeta, read_eval_records, read_request_records)
from abqa.core.run.document import write_record_lines
from abqa.core.squad import load_builtin_sample
import run_builders


@pytest.fixture(scope="module")
def replay_run(tmp_path_factory):
    """A real evaluation (two replayed arms on the built-in sample) and its report."""
    tmp = tmp_path_factory.mktemp("contract")
    questions = load_builtin_sample().questions
    right = tmp / "right.json"
    right.write_text(json.dumps({q.id: q.answers[0].text for q in questions}))
    half = tmp / "half.json"
    half.write_text(json.dumps({q.id: q.answers[0].text if i % 2 else "no idea" for i, q in enumerate(questions)}))
    run = tmp / "run"
    assert main(["evaluate", "--squad", "builtin", "--replay", f"right={right}", "--replay", f"half={half}",
                 "--out", str(run), "--no-progress"]) == 0
    build_report(run, n_resamples=100)
    return RunFolder(run)


def round_trips(model, path, tmp_path):
    document = model.read(path)
    copy = tmp_path / path.name
    document.write(copy)
    assert json.loads(copy.read_text()) == json.loads(path.read_text())
    return document


def test_every_document_of_a_run_carries_the_schema_version_and_round_trips(replay_run, tmp_path):
    for path in (replay_run.meta, replay_run.report_json):
        assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    meta = round_trips(RunMeta, replay_run.meta, tmp_path)
    assert meta.status.value == "complete" and set(meta.arms) == {"right", "half"}
    assert meta.arms["right"].kind.value == "replay" and meta.summary["right"].exact_match == 100.0
    report = round_trips(ReportData, replay_run.report_json, tmp_path)
    assert report.arms["half"].f1 < report.arms["right"].f1 == 100.0
    records = read_eval_records(replay_run.eval)
    assert len(records) == 2 * meta.dataset.evaluated_questions == meta.records
    assert {record.status for record in records} == {EvalStatus.OK}


def test_load_document_and_request_records_round_trip(tmp_path):
    rows = [LoadRow(arm="bert", users=users, requests=10 * users, failures=users - 1, requests_per_s=2.0 * users,
                    latency_ms={"p50": 10.0, "p95": 20.0, "p99": None}, server={"batch_sizes": {"1": 10}})
            for users in (1, 2)]
    document = run_builders.load_document(rows, standin={"bert": True})
    (tmp_path / "made").mkdir()
    document.write(tmp_path / "made" / "load.json")
    assert round_trips(LoadDocument, tmp_path / "made" / "load.json", tmp_path) == document
    requests = [RequestRecord(arm="bert", step="rate-4", scheduled_at=10.0, sent_at=10.002, latency_ms=41.5,
                              status="ok", tokens=120, padded_tokens=128),
                RequestRecord(arm="bert", step="users-1", scheduled_at=None, sent_at=11.0, latency_ms=None,
                              status="failed", error="refused", warmup=True)]
    write_record_lines(tmp_path / "requests.jsonl", requests)
    assert read_request_records(tmp_path / "requests.jsonl") == requests


@pytest.mark.parametrize("version, message", [
    (None, "written by an abqa older than the run-folder schema"),
    (SCHEMA_VERSION + 1, f"written by a newer abqa \\(schema_version {SCHEMA_VERSION + 1}; this abqa reads "
                         f"{SCHEMA_VERSION}\\); upgrade abqa"),
    (0, "written by an older abqa \\(schema_version 0"),
    ("1", "schema_version '1' is not a whole number"),
])
def test_a_document_from_another_abqa_is_refused_by_name(replay_run, tmp_path, version, message):
    data = json.loads(replay_run.meta.read_text())
    if version is None:
        del data["schema_version"]
    else:
        data["schema_version"] = version
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AbqaError, match=f"{path}: {message}"):
        RunMeta.read(path)


def test_a_malformed_document_names_the_field(replay_run, tmp_path):
    data = json.loads(replay_run.meta.read_text())
    data["arms"]["right"]["standin"] = "maybe"
    data["sumary"] = {}
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AbqaError) as raised:
        RunMeta.read(path)
    message = str(raised.value)
    assert "arms.right.standin: Input should be a valid boolean" in message and "(got 'maybe')" in message
    assert "sumary: unknown field" in message


def test_eval_records_are_checked_line_by_line(tmp_path):
    path = tmp_path / "eval.jsonl"
    good = EvalRecord(id="q1", arm="a", prediction="x", em=1.0, f1=1.0, latency_ms=3.0, started_at="t")
    bad = {**good.to_dict(), "id": "q2", "em": 1.0, "f1": 0.4, "status": "failed"}
    unscored_with_score = {**good.to_dict(), "id": "q3", "status": "unscored"}
    for line, expected in ((bad, "line 2 \\(id 'q2', arm 'a'\\): a failed record scores 0"),
                           (unscored_with_score, "line 2 \\(id 'q3', arm 'a'\\): an unscored record has em and f1 null"),
                           ({**good.to_dict(), "id": "q4", "em": 0.5}, "em must be 0 or 1")):
        path.write_text(json.dumps(good.to_dict()) + "\n" + json.dumps(line) + "\n")
        with pytest.raises(AbqaError, match=expected):
            read_eval_records(path)
    path.write_text(json.dumps(good.to_dict()) + "\n" + '{"id": "q5", "ar')   # torn last line: the writer died
    assert read_eval_records(path) == [good]


def test_an_unscored_record_is_a_latency_without_accuracy():
    record = EvalRecord(id="r1", arm="a", prediction="x", em=None, f1=None, latency_ms=12.0, started_at="t",
                        status="unscored")
    assert record.answered and not record.scored
    with pytest.raises(ValueError, match="needs em and f1"):
        EvalRecord(id="r1", arm="a", prediction="x", em=None, f1=None, latency_ms=12.0, started_at="t")
