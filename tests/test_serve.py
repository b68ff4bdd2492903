"""Serve stage: config.pbtxt read and rewritten for the python backend, thread planning, the stubs' model, the
libpython fix, clear errors, and a real Triton (`abqa serve`) that answers exactly like ONNX Runtime in-process,
batches dynamically and leaves no process.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest

from abqa.cli import main
from abqa.core.errors import AbqaError
from abqa.serve.libpython import interpreter_libdir, with_libdir_first
from abqa.serve.repository import (
    ArmModelConfig,
    discover_arms,
    plan_threads,
    read_arm_model_config,
    select_arms,
)
from abqa.serve.server import ServeOptions, check_ports_free, ready_report
from abqa.serve.session import create_session

QUESTION = "What is the capital of France?"
CONTEXT = "Paris is the capital and most populous city of France, with an estimated population of two million."


def copy_repository(source: Path, target: Path, arms=("bert", "distilbert")) -> Path:
    for arm in arms:
        shutil.copytree(source / arm, target / arm)
    return target


def arm_model_config(name="a", instances=1, threads=0) -> ArmModelConfig:
    return ArmModelConfig(name, Path("m.onnx"), (), (), 8, True, (2, 4, 8), 2000, instances, threads)


# --- reading the repository ------------------------------------------------------------------------------------


def test_read_arm_model_config_takes_everything_from_config_pbtxt(tiny_repository):
    bert = read_arm_model_config(tiny_repository, "bert")
    assert bert.model_path == tiny_repository / "bert" / "1" / "model.onnx"
    assert [s.name for s in bert.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert {s.data_type for s in bert.inputs} == {"TYPE_INT64"}
    assert [(s.name, s.data_type, s.dims) for s in bert.outputs] == [
        ("start_logits", "TYPE_FP32", (-1,)), ("end_logits", "TYPE_FP32", (-1,))]
    assert bert.max_batch_size == 8 and bert.dynamic_batching
    assert bert.preferred_batch_sizes == (2, 4, 8) and bert.max_queue_delay_us == 0
    assert bert.instances == 1 and bert.intra_op_threads == 1  # the fixture exports with 1 thread
    distilbert = read_arm_model_config(tiny_repository, "distilbert")
    assert [s.name for s in distilbert.inputs] == ["input_ids", "attention_mask"]


def test_discover_and_select_arms(tiny_repository, tmp_path):
    assert discover_arms(tiny_repository) == ["bert", "distilbert"]
    assert select_arms(["bert", "distilbert"], ["distilbert"]) == ["distilbert"]
    assert select_arms(["bert", "distilbert"], None) == ["bert", "distilbert"]
    with pytest.raises(AbqaError, match="xl not in the model repository"):
        select_arms(["bert", "distilbert"], ["bert", "xl"])
    with pytest.raises(AbqaError, match="not found"):
        discover_arms(tmp_path / "missing")
    with pytest.raises(AbqaError, match="no arm in it"):
        discover_arms(tmp_path)


@pytest.mark.parametrize("breakage, message", [
    (lambda arm: (arm / "config.pbtxt").write_text("max_batch_size: eight\n"), "not a valid Triton model config"),
    (lambda arm: (arm / "1" / "model.onnx").unlink(), "model.onnx is missing"),
    (lambda arm: shutil.rmtree(arm / "1"), "no version folder"),
    (lambda arm: (arm / "config.pbtxt").write_text(
        (arm / "config.pbtxt").read_text().replace('backend: "onnxruntime"', 'backend: "pytorch"')), "backend 'pytorch'"),
])
def test_broken_arm_is_an_error_naming_the_arm(tiny_repository, tmp_path, breakage, message):
    repository = copy_repository(tiny_repository, tmp_path / "repo", arms=("bert",))
    breakage(repository / "bert")
    with pytest.raises(AbqaError, match=message) as error:
        read_arm_model_config(repository, "bert")
    assert "arm 'bert'" in str(error.value)


def test_a_model_onnx_runtime_cannot_load_is_an_error_naming_the_arm(tiny_repository, tmp_path):
    repository = copy_repository(tiny_repository, tmp_path / "repo", arms=("distilbert",))
    (repository / "distilbert" / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(AbqaError, match="arm 'distilbert': ONNX Runtime cannot load"):
        create_session(read_arm_model_config(repository, "distilbert").model_path, 1, arm="distilbert")


def serving_config_for(repository: Path, arm: ArmModelConfig, max_queue_size: int = 0, kind: str = "shared",
                       instances: int | None = None):
    """The config.pbtxt tritonserver gets for this arm (abqa.serve.launch), parsed as Triton parses it."""
    from abqa.export.triton_config import parse_config_pbtxt
    from abqa.serve.launch import serving_config_pbtxt

    plan = plan_threads([arm], 2, kind=kind, instances=instances)
    text = serving_config_pbtxt(arm, (repository / arm.name / "config.pbtxt").read_text(), plan=plan,
                                max_queue_size=max_queue_size, occupancy_file=Path("/run/occupancy.lock"))
    return parse_config_pbtxt(text)


def test_the_served_config_is_the_exported_one_on_the_python_backend(tiny_repository, tmp_path):
    from abqa.serve.backend import ONNX_MODEL, THREAD_PLAN, THREADS

    repository = copy_repository(tiny_repository, tmp_path / "delayed", arms=("bert",))
    config = repository / "bert" / "config.pbtxt"   # exported with a batch delay (the default has none)
    config.write_text(config.read_text().replace("max_queue_delay_microseconds: 0", "max_queue_delay_microseconds: 1500"))
    arm = read_arm_model_config(repository, "bert")
    served = serving_config_for(repository, arm, max_queue_size=16)
    assert served.name == "bert" and served.backend == "python" and not served.default_model_filename
    assert served.max_batch_size == 8
    assert served.dynamic_batching.max_queue_delay_microseconds == arm.max_queue_delay_us == 1500
    assert list(served.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert served.dynamic_batching.default_queue_policy.max_queue_size == 16
    assert [(t.name, list(t.dims)) for t in served.input] == [
        (name, [-1]) for name in ("input_ids", "attention_mask", "token_type_ids")]
    assert [t.name for t in served.output] == ["start_logits", "end_logits"]
    # One group of CPU stubs holding the shared plan's resource; the plan and the graph as parameters.
    (group,) = served.instance_group
    assert group.count == 1 and group.kind == group.KIND_CPU
    assert [(r.name, getattr(r, "global"), r.count) for r in group.rate_limiter.resources] == [("abqa_cpu", True, 1)]
    assert served.parameters[ONNX_MODEL].string_value == str(arm.model_path.resolve())
    assert (served.parameters[THREAD_PLAN].string_value, served.parameters[THREADS].string_value) == ("shared", "2")
    assert "intra_op_thread_count" not in served.parameters
    assert serving_config_for(tiny_repository, arm, instances=3).instance_group[0].count == 3

    # No dynamic_batching in config.pbtxt: none on the official server, so none here either.
    repository = copy_repository(tiny_repository, tmp_path / "repo", arms=("distilbert",))
    config_path = repository / "distilbert" / "config.pbtxt"
    text = config_path.read_text()
    config_path.write_text(text[:text.index("dynamic_batching")] + text[text.index("instance_group"):])
    served = serving_config_for(repository, read_arm_model_config(repository, "distilbert"))
    assert served.max_batch_size == 8 and not served.HasField("dynamic_batching")


@pytest.mark.parametrize("kind", ["shared", "adaptive", "per-session"])
def test_a_stub_rebuilds_its_arms_plan_from_the_parameters(kind):
    from abqa.serve.backend import plan_from_parameters, plan_parameters

    arms = [arm_model_config("a", threads=1), arm_model_config("b")]
    plan = plan_threads(arms, 4, kind=kind)
    rebuilt = plan_from_parameters("a", plan_parameters("a", "/m.onnx", plan, "/run/occupancy.lock"))
    assert (rebuilt.kind, rebuilt.pool_threads) == (plan.kind, plan.pool_threads)
    assert rebuilt.sessions["a"] == dataclasses.replace(plan.sessions["a"], instances=1)   # a stub serves one


def test_a_dynamic_batch_is_split_back_into_its_requests_rows():
    from abqa.serve.backend import split_batch

    start, end = np.arange(12).reshape(6, 2), -np.arange(12).reshape(6, 2)
    parts = split_batch([start, end], [1, 3, 2])
    assert [[part.tolist() for part in outputs] for outputs in parts] == [
        [start[:1].tolist(), end[:1].tolist()], [start[1:4].tolist(), end[1:4].tolist()],
        [start[4:].tolist(), end[4:].tolist()]]


# --- planning sessions and threads -----------------------------------------------------------------------------


def test_the_adaptive_plan_gives_an_idle_server_every_core_and_a_busy_one_each_its_share():
    arms = [arm_model_config("a", threads=1), arm_model_config("b")]
    plan = plan_threads(arms, 8, kind="adaptive")
    assert plan.kind == "adaptive" and plan.adaptive and not plan.one_at_a_time
    # Wide sessions get every core, narrow ones the share of 2 sessions; exported thread counts are ignored.
    assert {n: (p.instances, p.intra_op_threads, p.narrow_threads) for n, p in plan.sessions.items()} == {
        "a": (1, 8, 4), "b": (1, 8, 4)}
    assert not any(p.spinning for p in plan.sessions.values())  # two sessions may compute side by side
    assert {p.narrow_threads for p in plan_threads(arms, 8, kind="adaptive", instances=2).sessions.values()} == {2}
    assert {p.narrow_threads for p in plan_threads(arms, 2, kind="adaptive").sessions.values()} == {1}
    assert {p.narrow_threads for p in plan_threads(arms * 3, 2, kind="adaptive").sessions.values()} == {1}  # at least one
    assert {p.intra_op_threads for p in plan_threads(arms, 8, kind="adaptive", threads=6).sessions.values()} == {6}
    assert "8 thread(s) for a request that finds the server idle, 4 while other inferences run" in plan.describe()


def test_the_shared_plan_gives_every_session_every_core_one_inference_at_a_time():
    arms = [arm_model_config("a", threads=1), arm_model_config("b", instances=2)]
    plan = plan_threads(arms, 8, kind="shared")
    assert plan.kind == "shared" and plan.one_at_a_time and plan.pool_threads == 8
    assert plan_threads(arms, 8) == plan   # the default: a lone request gets what it gets in-process
    # config.pbtxt's intra_op_thread_count is ignored, as the onnxruntime backend ignores it with its global pool.
    assert {n: (p.instances, p.intra_op_threads) for n, p in plan.sessions.items()} == {"a": (1, 0), "b": (2, 0)}
    assert plan_threads(arms, 8, kind="shared", threads=3).pool_threads == 3
    assert {p.instances for p in plan_threads(arms, 8, kind="shared", instances=4).sessions.values()} == {4}
    assert plan_threads(arms, 0, kind="shared").pool_threads == 1  # at least one
    assert "every session 8 ONNX Runtime thread(s), spin-waiting during a run only" in plan.describe()
    assert "one inference at a time" in plan.describe()


def test_the_per_session_plan_shares_the_cores_out():
    arms = [arm_model_config("a"), arm_model_config("b")]
    plan = plan_threads(arms, 8, kind="per-session")
    assert not plan.one_at_a_time and plan.pool_threads == 0
    assert {n: (p.instances, p.intra_op_threads) for n, p in plan.sessions.items()} == {"a": (1, 4), "b": (1, 4)}
    assert {p.intra_op_threads for p in plan_threads(arms, 8, kind="per-session", instances=2).sessions.values()} == {2}
    assert {p.intra_op_threads for p in plan_threads(arms, 1, kind="per-session").sessions.values()} == {1}
    assert {p.intra_op_threads for p in plan_threads(arms, 8, kind="per-session", threads=3).sessions.values()} == {3}
    # Sessions side by side must not spin-wait (a spinning worker holds a core another session waits for); alone,
    # a session keeps ONNX Runtime's spinning.
    assert not any(p.spinning for p in plan.sessions.values())
    assert plan_threads(arms[:1], 8, kind="per-session").sessions["a"].spinning
    assert "spin-waiting off" in plan.describe()


def test_the_per_session_plan_honours_the_exported_thread_count_unless_overridden():
    arms = [arm_model_config("a", threads=1), arm_model_config("b")]
    sessions = plan_threads(arms, 8, kind="per-session").sessions
    assert sessions["a"].intra_op_threads == 1 and sessions["b"].intra_op_threads == 4
    # The exported figure was planned for the exported instance count: overriding instances re-plans.
    assert plan_threads(arms, 8, kind="per-session", instances=2).sessions["a"].intra_op_threads == 2
    assert plan_threads(arms, 8, kind="per-session", threads=2).sessions["a"].intra_op_threads == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"threads": 0}, "--threads must be >= 1"), ({"instances": 0}, "--instances must be >= 1"),
    ({"kind": "global"}, "--thread-plan 'global': use one of shared, adaptive, per-session"),
])
def test_a_bad_thread_plan_is_an_error_naming_the_flag(kwargs, message):
    with pytest.raises(AbqaError, match=message):
        plan_threads([arm_model_config("a")], 8, **kwargs)


def test_one_at_a_time_runs_every_inference_alone_in_arrival_order():
    import threading
    import time

    from abqa.serve.session import OneAtATime

    turns, running, overlaps, order = OneAtATime(), [], [], []
    lock = threading.Lock()

    def inference(name: str) -> str:
        with lock:
            running.append(name)
            overlaps.append(len(running))
        time.sleep(0.02)
        with lock:
            running.remove(name)
            order.append(name)
        return name.upper()

    try:
        with ThreadPoolExecutor(max_workers=4) as callers:   # four arms' handler threads asking at once
            futures = []
            for name in "abcd":
                futures.append(callers.submit(turns.run, inference, name))
                time.sleep(0.005)                              # arrival order a, b, c, d
            assert [future.result() for future in futures] == ["A", "B", "C", "D"]
    finally:
        turns.close()
    assert max(overlaps) == 1 and order == list("abcd")


def test_occupancy_says_whether_an_inference_began_alone():
    from abqa.serve.session import Occupancy

    occupancy = Occupancy()
    with occupancy.enter() as first:
        with occupancy.enter() as second:
            assert first and not second
    with occupancy.enter() as again:
        assert again


def _hold_occupancy(path: str, entered, release) -> None:
    from abqa.serve.session import ProcessOccupancy

    with ProcessOccupancy(path).enter() as alone:
        entered.put(alone)
        release.wait(30)


def test_process_occupancy_sees_an_inference_running_in_another_process(tmp_path):
    """The adaptive plan's switch across the server's stubs: another process's running inference counts."""
    import multiprocessing

    from abqa.serve.session import ProcessOccupancy

    path = tmp_path / "occupancy.lock"
    context = multiprocessing.get_context("spawn")
    entered, release = context.Queue(), context.Event()
    other = context.Process(target=_hold_occupancy, args=(str(path), entered, release))
    other.start()
    try:
        assert entered.get(timeout=60) is True           # nothing else running: it began alone
        with ProcessOccupancy(path).enter() as alone:
            assert alone is False                         # the other process's inference is still running
            with ProcessOccupancy(path).enter() as nested:
                assert nested is False
    finally:
        release.set()
        other.join(30)
    with ProcessOccupancy(path).enter() as alone:
        assert alone is True                              # it ended: alone again


def session_config(options, key: str) -> str | None:
    """A session's config entry; None when unset (ONNX Runtime raises then)."""
    try:
        return options.get_session_config_entry(key)
    except Exception:
        return None


def test_sessions_spin_wait_as_asked(tiny_repository):
    from abqa.serve.session import create_session

    model = read_arm_model_config(tiny_repository, "bert").model_path
    entries = ("session.intra_op.allow_spinning", "session.force_spinning_stop")
    defaults = create_session(model).get_session_options()            # ONNX Runtime's: spinning, also between runs
    assert [session_config(defaults, key) for key in entries] == [None, None]
    off = create_session(model, spinning=False).get_session_options()
    assert [session_config(off, key) for key in entries] == ["0", None]
    in_runs = create_session(model, spin_between_runs=False).get_session_options()
    assert [session_config(in_runs, key) for key in entries] == [None, "1"]


def test_the_shared_runtime_gives_each_session_every_core_and_takes_turns_unless_told_not_to(tiny_repository):
    from abqa.serve.session import PlanRuntime

    arms = [read_arm_model_config(tiny_repository, name) for name in ("bert", "distilbert")]
    plan = plan_threads(arms, 2, kind="shared")
    in_process = PlanRuntime(plan)
    instance = in_process.open_instance("bert", arms[0].model_path)
    options = instance.session.get_session_options()
    assert options.intra_op_num_threads == 2
    # Its workers spin between operators (a sleeping worker's wake-up costs a lone request 3-6%) and stop as the
    # run returns (spinning on, they would hold the cores the response and the next inference need).
    assert session_config(options, "session.intra_op.allow_spinning") is None
    assert session_config(options, "session.force_spinning_stop") == "1"
    assert in_process.turns is not None
    # In the server, Triton's rate limiter takes the turns: the stub runs its session directly.
    stub = PlanRuntime(plan, take_turns=False)
    served = stub.open_instance("bert", arms[0].model_path)
    assert stub.turns is None and served.run == served.session.run
    feeds = tokenized(tiny_repository, "bert")
    try:
        np.testing.assert_allclose(served.run(["start_logits"], feeds)[0], instance.run(["start_logits"], feeds)[0],
                                   rtol=1e-5, atol=1e-5)
    finally:
        in_process.close()


def test_the_adaptive_runtime_answers_alike_on_its_wide_and_narrow_sessions(tiny_repository):
    from abqa.serve.session import PlanRuntime

    arms = [read_arm_model_config(tiny_repository, name) for name in ("bert", "distilbert")]
    runtime = PlanRuntime(plan_threads(arms, 4, kind="adaptive"))
    instance = runtime.open_instance("bert", arms[0].model_path)
    assert instance.session.get_session_options().intra_op_num_threads == 4
    assert instance.narrow.get_session_options().intra_op_num_threads == 2
    feeds = tokenized(tiny_repository, "bert")
    alone = instance.run(["start_logits"], feeds)
    with runtime.occupancy.enter():     # another inference running: the narrow session answers
        busy = instance.run(["start_logits"], feeds)
    np.testing.assert_allclose(alone[0], busy[0], rtol=1e-5, atol=1e-5)
    # One arm alone has nothing to share the cores with: one session.
    single = PlanRuntime(plan_threads(arms[:1], 4, kind="adaptive")).open_instance("bert", arms[0].model_path)
    assert single.narrow is None


# --- the libpython pitfall, ports, the ready line -------------------------------------------------------------


def test_libdir_goes_first_on_ld_library_path_once():
    env = with_libdir_first({"LD_LIBRARY_PATH": "/x:/lib/py:/y", "HOME": "/root"}, Path("/lib/py"))
    assert env["LD_LIBRARY_PATH"] == "/lib/py:/x:/y" and env["HOME"] == "/root"
    assert with_libdir_first({}, Path("/lib/py"))["LD_LIBRARY_PATH"] == "/lib/py"


def test_interpreter_libdir_holds_this_interpreters_libpython():
    libdir = interpreter_libdir()
    if libdir is None:
        pytest.skip("this Python has no shared libpython")
    assert any(libdir.glob(f"libpython{sys.version_info.major}.{sys.version_info.minor}*.so*"))


def test_a_port_in_use_is_named():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AbqaError, match=f"gRPC port {port} on 127.0.0.1 is not available"):
            check_ports_free("127.0.0.1", {"HTTP": 0, "gRPC": port, "metrics": 0})
    with pytest.raises(AbqaError, match="both 9000"):
        check_ports_free("127.0.0.1", {"HTTP": 9000, "gRPC": 9000})


def test_serve_cli_reports_a_missing_repository(tmp_path, capsys):
    assert main(["serve", "--model-repository", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: not found" in capsys.readouterr().err


def test_ready_report_names_urls_pid_and_every_model(tiny_repository):
    arms = [read_arm_model_config(tiny_repository, name) for name in ("bert", "distilbert")]
    options = ServeOptions(tiny_repository, http_port=1, grpc_port=2, metrics_port=3)
    report = ready_report(arms, plan_threads(arms, 2), options, pid=42)
    first, plan, *rest = report.splitlines()
    assert first == ("abqa serve: ready (pid 42) http=http://127.0.0.1:1 grpc=127.0.0.1:2 "
                     "metrics=http://127.0.0.1:3/metrics")
    assert plan.strip() == ("thread plan shared: every session 2 ONNX Runtime thread(s), spin-waiting during a run "
                            "only, one inference at a time across arms (Triton's rate limiter)")
    assert [line.split()[:2] for line in rest[:2]] == [["bert", "READY"], ["distilbert", "READY"]]
    assert "1 instance(s)  [" in rest[0]
    adaptive = ready_report(arms, plan_threads(arms, 2, kind="adaptive"), options, pid=42)
    assert "1 instance(s) x 2/1 ONNX Runtime threads (idle/busy)" in adaptive
    per_session = ready_report(arms, plan_threads(arms, 2, kind="per-session"), options, pid=42)
    assert "1 instance(s) x 1 ONNX Runtime thread(s)" in per_session


# --- a real Triton --------------------------------------------------------------------------------------------


def tokenized(repository: Path, arm: str, question=QUESTION, context=CONTEXT) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(repository / arm / "tokenizer")
    encoded = tokenizer(question, context, return_tensors="np")
    names = [s.name for s in read_arm_model_config(repository, arm).inputs]
    return {name: encoded[name].astype(np.int64) for name in names}


def grpc_infer(client, arm: str, feeds: dict[str, np.ndarray]):
    import tritonclient.grpc as grpcclient

    inputs = []
    for name, array in feeds.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("start_logits", "end_logits")]
    return client.infer(arm, inputs, outputs=outputs)


@pytest.mark.integration
def test_both_models_ready_with_their_metadata(triton_server):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(triton_server.http.address)
    assert client.is_server_ready()
    assert triton_server.models == ("bert", "distilbert")
    for arm, inputs in (("bert", ["input_ids", "attention_mask", "token_type_ids"]),
                        ("distilbert", ["input_ids", "attention_mask"])):
        assert client.is_model_ready(arm)
        metadata = client.get_model_metadata(arm)
        assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
            (name, "INT64", [-1, -1]) for name in inputs]
        assert [(t["name"], t["datatype"]) for t in metadata["outputs"]] == [
            ("start_logits", "FP32"), ("end_logits", "FP32")]
        config = client.get_model_config(arm)
        assert config["max_batch_size"] == 8
        assert config["dynamic_batching"]["preferred_batch_size"] == [2, 4, 8]
        assert int(config["dynamic_batching"].get("max_queue_delay_microseconds", 0)) == 0
    with open(triton_server.log_path, encoding="utf-8") as log:
        assert f"abqa serve: ready (pid {triton_server.pid})" in log.read()


@pytest.mark.integration
@pytest.mark.parametrize("arm", ["bert", "distilbert"])
def test_triton_answers_exactly_like_the_same_session_in_process(triton_server, tiny_repository, arm):
    import tritonclient.grpc as grpcclient

    feeds = tokenized(tiny_repository, arm)
    served = read_arm_model_config(tiny_repository, arm)
    session = create_session(served.model_path, served.intra_op_threads)
    want_start, want_end = session.run(["start_logits", "end_logits"], feeds)

    with grpcclient.InferenceServerClient(triton_server.grpc.address) as client:
        result = grpc_infer(client, arm, feeds)
    np.testing.assert_array_equal(result.as_numpy("start_logits"), want_start)
    np.testing.assert_array_equal(result.as_numpy("end_logits"), want_end)


@pytest.mark.integration
def test_concurrent_requests_form_dynamic_batches(triton_server, tiny_repository):
    """Triton's statistics show executions of more than one request; two lengths in flight never mix."""
    import tritonclient.grpc as grpcclient

    arm = "distilbert"
    short = tokenized(tiny_repository, arm, "Where?", "In Paris.")
    long = tokenized(tiny_repository, arm)
    with grpcclient.InferenceServerClient(triton_server.grpc.address) as client:
        before = client.get_inference_statistics(arm, as_json=True)["model_stats"][0]
        with ThreadPoolExecutor(max_workers=16) as pool:
            feeds = [short if i % 2 else long for i in range(96)]
            results = list(pool.map(lambda f: grpc_infer(client, arm, f), feeds))
        after = client.get_inference_statistics(arm, as_json=True)["model_stats"][0]

    for sent, result in zip(feeds, results):
        assert result.as_numpy("start_logits").shape == sent["input_ids"].shape
    requests = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert requests == 96
    batched = {int(s["batch_size"]): int(s["compute_infer"]["count"]) for s in after["batch_stats"]}
    assert max(batched) > 1, f"no batch larger than 1 in {batched}"
    assert executions < requests  # several requests per execution


@pytest.mark.integration
def test_the_python_backend_stub_runs_on_this_interpreters_libpython(triton_server):
    libdir = interpreter_libdir()
    if libdir is None:
        pytest.skip("this Python has no shared libpython")
    stubs = [p for p in triton_server.processes() if p.name().startswith("triton_python")]
    assert len(stubs) == len(triton_server.models)  # one stub per model instance
    for stub in stubs:
        libraries = {m.path for m in stub.memory_maps() if "libpython" in Path(m.path).name}
        assert libraries and all(Path(path).parent == libdir.resolve() or Path(path).parent == libdir
                                 for path in libraries), libraries


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_server_stops_cleanly_on_a_signal_and_leaves_no_process(tiny_repository, signum):
    from abqa.serve.process import start_server

    server = start_server(tiny_repository, arms=["distilbert"])
    try:
        tree = server.processes()
        assert any(p.name() == "tritonserver" for p in tree)
        assert len(tree) >= 3  # serve, tritonserver, a python backend stub
        os.kill(server.pid, signum)
        assert server.process.wait(timeout=60) == 0
        gone, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive, [(p.pid, p.name()) for p in alive]
        assert f"{signal.Signals(signum).name} received, stopping" in server.log_tail()
    finally:
        server.stop()


@pytest.mark.integration
@pytest.mark.parametrize("thread_plan", ["shared", "adaptive", "per-session"])
def test_every_thread_plan_serves_what_onnx_runtime_answers_in_process(tiny_repository, thread_plan):
    import tritonclient.grpc as grpcclient

    from abqa.serve.process import start_server

    feeds = tokenized(tiny_repository, "distilbert")
    want = create_session(read_arm_model_config(tiny_repository, "distilbert").model_path, 1).run(["end_logits"], feeds)
    with start_server(tiny_repository, arms=["distilbert"], thread_plan=thread_plan) as server:
        assert f"thread plan {thread_plan}:" in server.log_tail()
        with grpcclient.InferenceServerClient(server.grpc.address) as client:
            got = grpc_infer(client, "distilbert", feeds).as_numpy("end_logits")
    np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.integration
def test_start_server_reports_a_port_in_use(tiny_repository):
    from abqa.serve.process import start_server

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AbqaError, match=f"HTTP port {port} on 127.0.0.1 is not available"):
            start_server(tiny_repository, http_port=port, grpc_port=None, metrics_port=None, timeout_s=60)


def test_a_server_that_exits_is_reported_with_its_signal_or_status():
    from abqa.serve.server import exit_reason

    assert exit_reason(-11) == "killed by SIGSEGV"
    assert exit_reason(-9) == "killed by SIGKILL"
    assert exit_reason(1) == "exit status 1"


def test_a_dead_servers_report_shows_its_own_output_else_its_log_file(tmp_path):
    """A crash writes its signal and stack trace to tritonserver's output; when that is empty or missing, the
    --log-file's last lines are the next best thing."""
    from abqa.serve.server import server_output

    output, log = tmp_path / "output.txt", tmp_path / "triton.log"
    log.write_text("".join(f"log line {n}\n" for n in range(30)))
    assert server_output(output, log, lines=3) == "log line 27\nlog line 28\nlog line 29"   # no output file
    output.write_text("")
    assert server_output(output, log, lines=1) == "log line 29"
    output.write_text("Signal (11) received.\n")
    assert server_output(output, log) == "Signal (11) received."
    log.unlink()
    output.unlink()
    assert server_output(output, log) == "(no output)"


def test_serve_names_the_arm_whose_model_onnx_runtime_cannot_load_before_starting_a_server(tiny_repository, tmp_path,
                                                                                          capsys):
    repository = copy_repository(tiny_repository, tmp_path / "repo")
    (repository / "distilbert" / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    from abqa.serve.process import free_ports

    http, grpc, metrics = free_ports(3)
    assert main(["serve", "--model-repository", str(repository), "--http-port", str(http), "--grpc-port", str(grpc),
                 "--metrics-port", str(metrics)]) == 2
    assert "arm 'distilbert': ONNX Runtime cannot load" in capsys.readouterr().err


def test_the_check_before_serving_loads_the_models_in_a_child_process_not_in_serve(tiny_repository):
    """Freed weights stay with the process that loaded them, and abqa serve's memory counts as the server's."""
    import subprocess

    code = ("import sys; from abqa.serve.server import check_sessions, load_arms; "
            f"check_sessions(load_arms({str(tiny_repository)!r}, None)); print('onnxruntime' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
