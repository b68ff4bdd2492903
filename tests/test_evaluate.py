"""`abqa evaluate` without a server: replayed arms, resuming, arm order, retries, bad input, and a served arm
driven by a fake Triton client (batching of windows, failures recorded, a dead server detected)."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import numpy as np
import pytest

from abqa.cli import build_parser, main
from abqa.client.arms import ReplayArm, ServedArm, parse_predictions, parse_replay_spec
from abqa.client.cli import build_options
from abqa.client.runner import (
    EvalOptions,
    Interrupted,
    ServerGone,
    StopSignals,
    answer_or_fail,
    arm_kinds,
    arm_order,
    latency_conditions,
    load_records,
    options_to_argv,
    request_concurrency,
    run_evaluation,
)
from abqa.client.summary import KIND_STANDIN, format_group_table, format_table, summarize, summarize_by_group
from abqa.triton.client import (
    InferFailed,
    ModelInfo,
    RetryPolicy,
    TensorInfo,
    call_with_retries,
    model_info_from_json,
)
from abqa.core.errors import AbqaError
from abqa.core.io import read_jsonl
from abqa.core.run import EvalRecord, write_eval_records
from abqa.core.squad import SquadAnswer, SquadQuestion, load_builtin_sample
from abqa.triton.endpoint import Endpoint

SAMPLE_IDS = load_builtin_sample().ids()


def sample_predictions(correct: int, wrong: int) -> dict[str, str]:
    """The first `correct` questions answered right, the next `wrong` ones wrong, the rest not at all."""
    dataset = load_builtin_sample()
    predictions = {q.id: q.answers[0].text for q in dataset.questions[:correct]}
    predictions.update({q.id: "no idea" for q in dataset.questions[correct:correct + wrong]})
    return predictions


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def records_of(out: Path) -> list[dict]:
    return list(read_jsonl(out / "eval.jsonl"))


# --- replayed arms -----------------------------------------------------------------------------------------------------


def test_replay_arms_score_every_question_and_count_missing_and_unknown(tmp_path):
    good = write_json(tmp_path / "good.json", sample_predictions(20, 6))
    partial = write_json(tmp_path / "partial.json", {**sample_predictions(10, 0), "not-a-question": "x", "other": "y"})
    out = tmp_path / "run"
    code = main(["evaluate", "--squad", "builtin", "--replay", f"good={good}", "--replay", f"partial={partial}",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    records = records_of(out)
    assert len(records) == 2 * len(SAMPLE_IDS)
    assert {(r["id"], r["arm"]) for r in records} == {(i, a) for i in SAMPLE_IDS for a in ("good", "partial")}
    by_arm = {arm: [r for r in records if r["arm"] == arm] for arm in ("good", "partial")}
    assert sum(r["em"] for r in by_arm["good"]) == 20
    missing = [r for r in by_arm["partial"] if r["status"] == "missing"]
    assert len(missing) == len(SAMPLE_IDS) - 10
    assert all(r["prediction"] is None and r["em"] == 0 and r["f1"] == 0 for r in missing)
    assert all(r["latency_ms"] is None for r in records)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["resume_command"] is None
    assert meta["dataset"]["source"] == "builtin-sample" and meta["dataset"]["evaluated_questions"] == len(SAMPLE_IDS)
    partial_meta = meta["arms"]["partial"]
    assert partial_meta["kind"] == "replay" and partial_meta["unknown_ids"] == 2
    assert partial_meta["missing_ids"] == len(SAMPLE_IDS) - 10 and len(partial_meta["replay_sha256"]) == 64
    assert meta["summary"]["good"]["exact_match"] == pytest.approx(100 * 20 / len(SAMPLE_IDS))
    assert meta["server"]["kind"] is None and meta["client"]["peak_rss_mb"] > 0
    assert meta["machine"]["cores"] >= 1 and "numpy" in meta["versions"]


def test_shared_prediction_files_as_arms_reproduce_the_listed_scores(shared_data, tmp_path, capsys):
    predictions = shared_data / "squad-v1.1" / "predictions"
    out = tmp_path / "shared"
    code = main(["evaluate", "--squad", str(shared_data / "squad-v1.1" / "dev-v1.1.json"), "--no-progress",
                 "--replay", f"bert={predictions / 'bert-base-uncased-finetuned.json'}",
                 "--replay", f"distilbert={predictions / 'distilbert-base-uncased-finetuned.json'}",
                 "--replay", f"lr={predictions / 'logistic-regression-baseline.json'}",
                 "--replay", f"mlstm={predictions / 'match-lstm-boundary-ensemble.json'}", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "meta.json").read_text())["summary"]
    scores = {arm: (round(s["exact_match"], 3), round(s["f1"], 3)) for arm, s in summary.items()}
    assert scores == {"bert": (80.927, 88.333), "distilbert": (75.932, 84.550),
                      "lr": (40.142, 50.982), "mlstm": (67.635, 76.756)}
    # The table printed at the end shows the same numbers.
    table = capsys.readouterr().out
    assert "80.927" in table and "88.333" in table and "84.550" in table
    # Per-question records add up to the same totals (what the analysis pairs on).
    records = records_of(out)
    assert len(records) == 4 * 10570
    bert = [r for r in records if r["arm"] == "bert"]
    assert round(100 * sum(r["f1"] for r in bert) / len(bert), 3) == 88.333


@pytest.mark.parametrize("content, message", [
    ('{"a": "b"', "not valid JSON"),
    ('["a", "b"]', "expected a JSON object mapping question id to answer text, got list"),
    ('{"lh-01": 1871, "lh-02": ["x"]}', r"answers must be strings; not for 'lh-01' \(int\), 'lh-02' \(list\)"),
])
def test_bad_prediction_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AbqaError, match=rf"--replay x={path}: .*{message}"):
        ReplayArm.load("x", path, set(SAMPLE_IDS))


def test_replay_spec_and_missing_file(tmp_path):
    assert parse_replay_spec("bert=a/b.json") == ("bert", Path("a/b.json"))
    for bad in ("bert", "=x.json", "bert="):
        with pytest.raises(AbqaError, match="expected NAME=PREDICTIONS.json"):
            parse_replay_spec(bad)
    with pytest.raises(AbqaError, match="arm name 'b a' is not valid"):
        parse_replay_spec("b a=x.json")
    with pytest.raises(AbqaError, match=r"--replay x=.*none.json: not found"):
        ReplayArm.load("x", tmp_path / "none.json", set())
    assert parse_predictions({"a": "b"}, where="w") == {"a": "b"}


def test_arm_names_must_be_unique_and_present(tmp_path):
    good = write_json(tmp_path / "good.json", {})
    with pytest.raises(AbqaError, match="given twice: a"):
        run_evaluation(EvalOptions(out=tmp_path / "r", squad="builtin", replays=[("a", good), ("a", good)]))
    with pytest.raises(AbqaError, match="no arm to evaluate"):
        run_evaluation(EvalOptions(out=tmp_path / "r", squad="builtin"))


# --- resuming ------------------------------------------------------------------------------------------------------------


def test_rerun_skips_done_pairs_and_repairs_a_torn_line(tmp_path):
    predictions = write_json(tmp_path / "p.json", sample_predictions(26, 0))
    out = tmp_path / "run"
    options = EvalOptions(out=out, squad="builtin", limit=10, replays=[("a", predictions), ("b", predictions)])
    assert run_evaluation(options).status == "complete"
    lines = (out / "eval.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 20
    # Simulate a kill in the middle of writing: drop the last 3 records and leave half a line.
    (out / "eval.jsonl").write_text("".join(lines[:17]) + lines[17][:25], encoding="utf-8")
    result = run_evaluation(options)
    assert result.status == "complete"
    records = records_of(out)
    assert len(records) == 20 and len({(r["id"], r["arm"]) for r in records}) == 20
    assert [s.exact_match for s in result.summaries] == [100.0, 100.0]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sessions"] == 2 and meta["records"] == 20
    # A third run has nothing left to do and writes nothing.
    run_evaluation(options)
    assert len(records_of(out)) == 20


def test_resume_refuses_a_different_subset_or_order(tmp_path):
    predictions = write_json(tmp_path / "p.json", sample_predictions(5, 0))
    out = tmp_path / "run"
    run_evaluation(EvalOptions(out=out, squad="builtin", limit=5, replays=[("a", predictions)]))
    with pytest.raises(AbqaError, match="--limit 5, this one has --limit 6"):
        run_evaluation(EvalOptions(out=out, squad="builtin", limit=6, replays=[("a", predictions)]))
    with pytest.raises(AbqaError, match="--order random, this one asks for interleaved"):
        run_evaluation(EvalOptions(out=out, squad="builtin", limit=5, order="interleaved", replays=[("a", predictions)]))
    other = write_json(tmp_path / "other.json", {"lh-01": "x"})
    with pytest.raises(AbqaError, match="arm a was replayed from a different file"):
        run_evaluation(EvalOptions(out=out, squad="builtin", limit=5, replays=[("a", other)]))
    other_data = write_json(tmp_path / "d.json", {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": "c d", "qas": [{"id": "q", "question": "q?", "answers": [{"text": "d", "answer_start": 2}]}]}]}]})
    with pytest.raises(AbqaError, match="another data set"):
        run_evaluation(EvalOptions(out=out, squad=str(other_data), limit=5, replays=[("a", predictions)]))


def test_retry_failed_asks_again_and_keeps_each_pair_once(tmp_path):
    predictions = write_json(tmp_path / "p.json", sample_predictions(26, 0))
    out = tmp_path / "run"
    options = EvalOptions(out=out, squad="builtin", limit=4, replays=[("a", predictions)])
    run_evaluation(options)
    records = load_records(out / "eval.jsonl")
    records[1] = EvalRecord.model_validate({**records[1].to_dict(), "status": "failed", "prediction": None,
                                            "em": 0.0, "f1": 0.0})
    write_eval_records(out / "eval.jsonl", records)
    run_evaluation(options)
    assert [r["status"] for r in records_of(out)].count("failed") == 1  # failed pairs count as done by default
    options.retry_failed = True
    result = run_evaluation(options)
    after = records_of(out)
    assert len(after) == 4 and all(r["status"] == "ok" for r in after)
    assert result.summaries[0].exact_match == 100.0


# --- the concurrency latencies are measured under -------------------------------------------------------------------


def record(arm: str, concurrency: int | None) -> EvalRecord:
    return EvalRecord(id="q", arm=arm, prediction="x", em=1.0, f1=1.0, latency_ms=10.0, started_at="t",
                      concurrency=concurrency)


def test_only_the_parallel_order_puts_several_requests_in_flight():
    assert [request_concurrency(order, 3) for order in ("random", "interleaved", "parallel")] == [1, 1, 3]
    assert request_concurrency("parallel", 1) == 1


def test_latency_conditions_say_whether_the_run_measured_in_isolation():
    isolated = latency_conditions("random", 2, [record("a", 1), record("b", 1)])
    assert isolated.isolated and isolated.concurrency == 1 and "one request at a time" in isolated.how
    loaded = latency_conditions("parallel", 2, [record("a", 2), record("b", None)])
    assert not loaded.isolated and loaded.concurrency == 2 and "in flight at once" in loaded.how
    # Before any record, what the order implies; a resumed run keeps the worst its records say.
    assert latency_conditions("parallel", 3, []).concurrency == 3
    assert latency_conditions("random", 2, [record("a", 1), record("a", 2)]).concurrency == 2
    assert latency_conditions("random", 0, []) is None  # replayed arms only: no latency at all


def test_a_served_answer_records_the_concurrency_it_was_measured_under(bert_tokenizer):
    client = FakeClient(bert_tokenizer, answer="Martha Doyle")
    assert answer_or_fail(fake_served_arm(bert_tokenizer, client), long_question()).concurrency == 1
    assert answer_or_fail(fake_served_arm(bert_tokenizer, client), long_question(), 2).concurrency == 2
    failing = FakeClient(bert_tokenizer, fail=InferFailed("400", transient=False, attempts=1))
    assert answer_or_fail(fake_served_arm(bert_tokenizer, failing), long_question(), 2).concurrency == 2


def test_a_variant_arm_names_its_fp32_base_arm_in_its_provenance(bert_tokenizer):
    from abqa.core.records import ExportMetadata

    arm = fake_served_arm(bert_tokenizer, FakeClient(bert_tokenizer))
    arm.export = ExportMetadata(arm="bert-int8", source="standin:bert", source_kind="standin", standin=True,
                                architecture="bert", variant="int8", base_arm="bert")
    info = arm.provenance()
    assert (info.variant, info.base_arm, info.pad_multiple) == ("int8", "bert", 8)
    arm.model = dataclasses.replace(arm.model, instance_kind="KIND_GPU")
    assert arm.provenance().pad_multiple == 64


# --- arm order ---------------------------------------------------------------------------------------------------------


def test_random_order_is_seeded_per_question_and_balanced_enough():
    arms = ["distilbert", "bert"]
    orders = [arm_order(arms, "random", 7, f"q{i}", i) for i in range(40)]
    assert orders == [arm_order(arms, "random", 7, f"q{i}", 99) for i in range(40)]  # position does not matter
    firsts = [order[0] for order in orders]
    assert 5 <= firsts.count("bert") <= 35
    assert orders != [arm_order(arms, "random", 8, f"q{i}", i) for i in range(40)]
    assert all(sorted(order) == sorted(arms) for order in orders)


def test_interleaved_rotates_and_parallel_keeps_the_order():
    arms = ["a", "b", "c"]
    assert [arm_order(arms, "interleaved", 0, "q", i) for i in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert arm_order(arms, "parallel", 0, "q", 5) == arms


# --- command line --------------------------------------------------------------------------------------------------------


def test_resume_command_rebuilds_the_same_options(tmp_path):
    options = EvalOptions(out=tmp_path / "r", squad="x.json", limit=20, sample=100, seed=3, arms=["distilbert", "bert"],
                          replays=[("real", Path("p.json"))], url="127.0.0.1:9001", protocol="http", order="parallel",
                          model_repository=Path("repo"), start_server=True)
    argv = options_to_argv(options)
    rebuilt = build_options(build_parser().parse_args(argv))
    for field in ("out", "squad", "limit", "sample", "seed", "arms", "replays", "url", "protocol", "order",
                  "model_repository", "start_server"):
        assert getattr(rebuilt, field) == getattr(options, field), field


def test_default_arms_unless_only_replays(tmp_path):
    parse = build_parser().parse_args
    assert build_options(parse(["evaluate"])).arms == ["distilbert", "bert"]
    assert build_options(parse(["evaluate", "--replay", "a=p.json"])).arms == []
    assert build_options(parse(["evaluate", "--replay", "a=p.json", "--arms", "bert"])).arms == ["bert"]
    assert build_options(parse(["evaluate", "--name", "x", "--runs-dir", str(tmp_path)])).out == tmp_path / "x"


def test_unreachable_server_is_a_clear_error(tmp_path, capsys):
    from abqa.serve.process import free_ports

    (port,) = free_ports(1)
    code = main(["evaluate", "--squad", "builtin", "--arms", "bert", "--url", f"127.0.0.1:{port}",
                 "--out", str(tmp_path / "r"), "--retries", "0"])
    assert code == 2
    assert f"no Triton server answers at grpc://127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "r" / "eval.jsonl").exists()


# --- the Triton boundary -----------------------------------------------------------------------------------------------


def test_normalize_url():
    assert Endpoint.parse("localhost", "grpc").address == "localhost:8001"
    assert Endpoint.parse("http://127.0.0.1:9000/", "http").address == "127.0.0.1:9000"
    assert Endpoint.parse("[::1]", "http").address == "[::1]:8000"
    with pytest.raises(AbqaError, match="--protocol 'tcp'"):
        Endpoint.parse("x", "tcp")


def test_model_info_from_either_protocols_json():
    metadata = {"name": "bert", "versions": ["1"], "platform": "onnxruntime_onnx",
                "inputs": [{"name": "input_ids", "datatype": "INT64", "shape": ["-1", "-1"]}],
                "outputs": [{"name": "start_logits", "datatype": "FP32", "shape": [-1, -1]}]}
    grpc_config = {"config": {"name": "bert", "max_batch_size": 8}}
    http_config = {"name": "bert", "max_batch_size": 8}
    for config in (grpc_config, http_config):
        info = model_info_from_json(metadata, config)
        assert info.input_names == ["input_ids"] and info.output_names == ["start_logits"]
        assert info.inputs[0].shape == (-1, -1) and info.max_batch_size == 8
        assert info.instance_kind == "KIND_CPU"   # no instance group: Triton's CPU default
    gpu = {"name": "bert", "max_batch_size": 8, "instance_group": [{"count": 1, "kind": "KIND_GPU"}]}
    assert model_info_from_json(metadata, gpu).instance_kind == "KIND_GPU"


def _server_error(status: str):
    from tritonclient.utils import InferenceServerException

    return InferenceServerException(msg="boom", status=status)


def test_transient_errors_are_retried_with_backoff():
    waits, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _server_error("StatusCode.UNAVAILABLE")
        return "ok"

    policy = RetryPolicy(attempts=4, initial_delay_s=0.1, multiplier=2.0, max_delay_s=0.15)
    assert call_with_retries(flaky, policy, what="x", sleep=waits.append) == "ok"
    assert waits == [0.1, 0.15]
    with pytest.raises(InferFailed, match=r"x: StatusCode.UNAVAILABLE: boom \(after 4 tries\)") as info:
        call_with_retries(lambda: (_ for _ in ()).throw(_server_error("StatusCode.UNAVAILABLE")), policy,
                          what="x", sleep=waits.append)
    assert info.value.transient and info.value.attempts == 4
    with pytest.raises(InferFailed) as info:
        call_with_retries(lambda: (_ for _ in ()).throw(ConnectionRefusedError("refused")), policy,
                          what="x", sleep=lambda _s: None)
    assert info.value.transient


def test_errors_that_will_not_go_away_fail_at_once():
    calls = []

    def invalid():
        calls.append(1)
        raise _server_error("400")

    with pytest.raises(InferFailed, match="x: 400: boom") as info:
        call_with_retries(invalid, RetryPolicy(), what="x", sleep=lambda _s: None)
    assert not info.value.transient and calls == [1]


class FakeClient:
    """Stands in for TritonClient: logits that peak on the tokens of `answer` in each window."""

    def __init__(self, tokenizer, answer: str | None = None, fail: BaseException | None = None, live: bool = True):
        self.tokenizer, self.answer, self.fail, self.live = tokenizer, answer, fail, live
        self.endpoint, self.requests = Endpoint.parse("fake:1", "grpc"), []

    def infer(self, model, batch):
        self.requests.append({name: array.shape for name, array in batch.items()})
        if self.fail is not None:
            raise self.fail
        n, length = batch["input_ids"].shape
        target = self.tokenizer(self.answer, add_special_tokens=False)["input_ids"] if self.answer else []
        starts, ends = np.zeros((n, length), np.float32), np.zeros((n, length), np.float32)
        for row in range(n):
            ids = list(batch["input_ids"][row])
            for i in range(length - len(target)):
                if target and ids[i:i + len(target)] == target:
                    starts[row, i], ends[row, i + len(target) - 1] = 10.0, 10.0
        return {"start_logits": starts, "end_logits": ends}

    def server_live(self):
        return self.live

    def model_ready(self, _model):
        return self.live


@pytest.fixture(scope="module")
def bert_tokenizer():
    import transformers

    from abqa.export.standins import real_vocab_file

    return transformers.BertTokenizerFast(vocab_file=str(real_vocab_file()), do_lower_case=True)


def fake_served_arm(tokenizer, client, max_batch_size=2) -> ServedArm:
    arm = ServedArm("bert", Path("repo"), "fake:1", "grpc")
    arm.tokenizer, arm.client = tokenizer, client
    arm.model = ModelInfo("bert", ("1",), "onnxruntime_onnx",
                          tuple(TensorInfo(n, "INT64", (-1, -1)) for n in ("input_ids", "attention_mask", "token_type_ids")),
                          tuple(TensorInfo(n, "FP32", (-1, -1)) for n in ("start_logits", "end_logits")),
                          max_batch_size)
    return arm


def long_question() -> SquadQuestion:
    context = " ".join(f"Paragraph {i} describes the harbour of town number {i}." for i in range(300))
    context += " The lighthouse keeper was Martha Doyle."
    return SquadQuestion("long", "Who was the lighthouse keeper?", context,
                         (SquadAnswer("Martha Doyle", context.index("Martha Doyle")),), "Long")


def test_served_arm_batches_windows_within_max_batch_size_and_finds_the_answer(bert_tokenizer):
    client = FakeClient(bert_tokenizer, answer="Martha Doyle")
    question = long_question()
    record = fake_served_arm(bert_tokenizer, client, max_batch_size=2).answer(question)
    assert record.status == "ok" and record.prediction == "Martha Doyle" and record.em == 1.0
    assert record.windows > 8 and record.tokens > 8 * 384 * 0.5
    batch_sizes = [shape["input_ids"][0] for shape in client.requests]
    assert max(batch_sizes) <= 2 and sum(batch_sizes) == record.windows
    # Full windows go together; the last one alone, padded to its CPU bucket (a multiple of 8).
    assert sorted(shape["input_ids"][1] for shape in client.requests)[-1] == 384
    assert all(shape["input_ids"][1] % 8 == 0 for shape in client.requests)
    assert record.latency_ms > 0 and record.started_at.endswith("+00:00")


def test_a_failed_request_is_recorded_and_a_dead_server_ends_the_run(bert_tokenizer):
    question = long_question()
    failing = InferFailed("model bert: 400: bad input", transient=False, attempts=1)
    record = answer_or_fail(fake_served_arm(bert_tokenizer, FakeClient(bert_tokenizer, fail=failing)), question)
    assert record.status == "failed" and record.prediction is None and record.em == 0 and record.f1 == 0
    assert "bad input" in record.error
    busy = InferFailed("model bert: StatusCode.UNAVAILABLE", transient=True, attempts=4)
    record = answer_or_fail(fake_served_arm(bert_tokenizer, FakeClient(bert_tokenizer, fail=busy, live=True)), question)
    assert record.status == "failed"
    with pytest.raises(ServerGone, match="stopped answering for arm bert"):
        answer_or_fail(fake_served_arm(bert_tokenizer, FakeClient(bert_tokenizer, fail=busy, live=False)), question)
    # Anything else that goes wrong with one question is recorded too, never a crash.
    record = answer_or_fail(fake_served_arm(bert_tokenizer, FakeClient(bert_tokenizer, fail=RuntimeError("oops"))),
                            question)
    assert record.status == "failed" and record.error == "RuntimeError: oops"


def test_a_signal_during_a_write_waits_for_the_write():
    # what the process had before (a shell's background job starts with SIGINT ignored): StopSignals puts it back
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals() as stop:
        with pytest.raises(Interrupted, match="SIGINT"):
            with stop.critical():
                signal.raise_signal(signal.SIGINT)
                written = True  # reached: the signal was held until the critical section ended
        assert written
    # (a second signal in the same run would end the process at once: test_reliability.py tries that in a child)
    with StopSignals():
        with pytest.raises(Interrupted, match="SIGTERM"):
            signal.raise_signal(signal.SIGTERM)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_summary_and_table():
    records = [
        EvalRecord(id="q1", arm="a", prediction="x", em=1.0, f1=1.0, latency_ms=10.0, windows=1, tokens=50, started_at="t"),
        EvalRecord(id="q2", arm="a", prediction="y", em=0.0, f1=0.5, latency_ms=30.0, windows=1, tokens=50, started_at="t"),
        EvalRecord(id="q3", arm="a", prediction=None, em=0.0, f1=0.0, latency_ms=None, windows=None, tokens=None, started_at="t", status="failed", error="e"),
        EvalRecord(id="q1", arm="b", prediction=None, em=0.0, f1=0.0, latency_ms=None, windows=None, tokens=None, started_at="t", status="missing"),
        EvalRecord(id="other", arm="a", prediction="z", em=1.0, f1=1.0, latency_ms=99.0, windows=1, tokens=1, started_at="t"),
    ]
    (a, b) = summarize(records, ["a", "b"], {"a": "served", "b": "replay"}, {"q1", "q2", "q3"})
    assert (a.questions, a.ok, a.failed, b.missing) == (3, 2, 1, 1)
    assert a.exact_match == pytest.approx(100 / 3) and a.f1 == pytest.approx(50.0)
    assert a.latency_p50_ms == 20.0 and b.latency_p50_ms is None
    table = format_table([a, b])
    assert "33.333" in table and "50.000" in table and table.splitlines()[0].startswith("arm")


def test_tables_say_which_arms_are_stand_ins():
    records = [EvalRecord(id="q1", arm="tiny", prediction="x", em=1.0, f1=1.0, latency_ms=10.0, windows=1, tokens=50, started_at="t"),
               EvalRecord(id="q1", arm="real", prediction="x", em=0.0, f1=0.5, latency_ms=None, windows=None, tokens=None, started_at="t")]
    kinds = {"tiny": KIND_STANDIN, "real": "replay"}
    summaries = summarize(records, ["tiny", "real"], kinds)
    lines = format_table(summaries).splitlines()
    assert lines[-1].startswith("tiny: STAND-IN") and "meaningless" in lines[-1]
    assert not any(line.startswith("real:") for line in lines)
    grouped = format_group_table("language", summarize_by_group(records, ["tiny", "real"], kinds, {"q1": "zh"}))
    assert "tiny (stand-in)" in grouped and "real (stand-in)" not in grouped and "meaningless" in grouped
    assert "STAND-IN" not in format_table(summarize(records, ["tiny", "real"], {"tiny": "served", "real": "replay"}))


def test_a_served_arm_exported_as_a_stand_in_is_labelled_so():
    from types import SimpleNamespace

    def worker(standin):   # a ServedArm as connect() leaves it: export metadata read, or none found
        arm = ServedArm("arm", Path("repo"), "127.0.0.1:8001", "grpc")
        arm.export = None if standin is None else SimpleNamespace(standin=standin)
        return SimpleNamespace(arm=arm)

    options = EvalOptions(out=Path("run"), arms=["standin", "trained", "unknown"], replays=[("file", Path("p.json"))])
    kinds = arm_kinds(options, {"standin": worker(True), "trained": worker(False), "unknown": worker(None)})
    assert kinds == {"standin": KIND_STANDIN, "trained": "served", "unknown": "served", "file": "replay"}
