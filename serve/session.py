"""The ONNX Runtime session behind each served model instance, and the request that proves a model answers.

`create_session` is the one way abqa builds a CPU session for an exported arm, and `PlanRuntime` the one way a
thread plan (abqa.serve.repository.ThreadPlan) opens an instance's sessions and runs requests on them, so the
server's python-backend stubs (abqa.serve.backend), the performance benchmark and the tests that compare Triton's
answer with an in-process one all run the same thing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from abqa.serve.repository import ThreadPlan

import numpy as np

from abqa.core.errors import AbqaError
from abqa.export.triton_config import TensorSpec


def create_session(model_path: str | Path, intra_op_threads: int = 0, *, arm: str | None = None,
                   spinning: bool = True, spin_between_runs: bool = True):
    """A CPU InferenceSession with a thread pool of its own of `intra_op_threads` threads (0 = ONNX Runtime's
    default: every core) whose workers spin-wait for work between operators unless `spinning` is False; with
    `spin_between_runs` False they stop spinning as soon as the last running inference returns
    (`session.force_spinning_stop`), so they spin only while there is work for them (ONNX Runtime's default keeps
    them spinning for a while after each run).

    Inter-op parallelism is off (sequential execution): BERT graphs are one chain of operators, and a second
    pool would only add threads that compete for the same cores.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(0, int(intra_op_threads))
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif not spin_between_runs:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable or invalid graphs
        who = f"arm {arm!r}: " if arm else ""
        raise AbqaError(f"{who}ONNX Runtime cannot load {model_path}: {exc}") from exc


def check_session_matches(session, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], arm: str) -> None:
    """config.pbtxt and the graph must name the same tensors, or every request would fail at run time."""
    graph_inputs = {node.name for node in session.get_inputs()}
    graph_outputs = {node.name for node in session.get_outputs()}
    declared_inputs = {spec.name for spec in inputs}
    declared_outputs = {spec.name for spec in outputs}
    if declared_inputs != graph_inputs:
        raise AbqaError(
            f"arm {arm!r}: config.pbtxt inputs {sorted(declared_inputs)} differ from the ONNX graph's {sorted(graph_inputs)}"
        )
    if not declared_outputs <= graph_outputs:
        raise AbqaError(
            f"arm {arm!r}: config.pbtxt outputs {sorted(declared_outputs - graph_outputs)} are not in the ONNX graph "
            f"(it has {sorted(graph_outputs)})"
        )


def numpy_dtype(triton_type: str) -> np.dtype:
    """TYPE_INT64 (config.pbtxt) -> np.int64."""
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(triton_type.removeprefix("TYPE_"))
    if dtype is None:
        raise AbqaError(f"Triton data type {triton_type} has no numpy equivalent")
    return np.dtype(dtype)


def probe_inputs(inputs: tuple[TensorSpec, ...], batch: int = 1, length: int = 8) -> dict[str, np.ndarray]:
    """A small valid request: every input all ones (token id 1, mask 1, segment 1 are valid for BERT-likes)."""
    return {
        spec.name: np.ones((batch, *(length if d == -1 else d for d in spec.dims)), dtype=numpy_dtype(spec.data_type))
        for spec in inputs
    }


class OneAtATime:
    """Runs every inference of the process on one thread, in arrival order: the shared plan's turn-taking within
    one process (in the server, Triton's rate limiter takes the turns across the stubs instead).

    Two sessions of every core computing at once would put more threads than cores to work; one at a time, each
    inference has every core, and no thread waits for a core.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abqa-inference")

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._executor.submit(fn, *args).result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Occupancy:
    """The adaptive plan's switch within one process: how many inferences are running in it right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    @contextlib.contextmanager
    def enter(self) -> Iterator[bool]:
        """Count one inference in for its duration; yields True when no other one was running as it began."""
        with self._lock:
            alone = self._running == 0
            self._running += 1
        try:
            yield alone
        finally:
            with self._lock:
                self._running -= 1


class ProcessOccupancy:
    """The adaptive plan's switch across processes (the server's stubs, one per model instance): every running
    inference holds a shared lock on one file; an inference began alone when it could lock that file exclusively.

    The exclusive lock is turned into a shared one without atomicity, so two inferences that begin within
    microseconds of each other may both take their wide session: the plan's choice is a heuristic, the answers are
    the same either way.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    @contextlib.contextmanager
    def enter(self) -> Iterator[bool]:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            fcntl.flock(descriptor, fcntl.LOCK_SH)
            yield alone
        finally:
            os.close(descriptor)   # releases the lock


@dataclass(frozen=True)
class Instance:
    """One model instance under a thread plan: `run(output_names, feeds)` picks the session the plan says."""

    session: Any                                # the instance's (wide) session
    run: Callable[[list[str], dict], list]
    narrow: Any = None                          # adaptive: the session of requests that arrive while others run


class PlanRuntime:
    """A thread plan at work in one process: the turns of the shared plan (unless `take_turns` is False: someone
    else takes them, as Triton's rate limiter does in the server), the occupancy of the adaptive one (this process's
    unless given), and each instance's sessions opened as its arm's SessionPlan says."""

    def __init__(self, plan: ThreadPlan, *, occupancy: Occupancy | ProcessOccupancy | None = None,
                 take_turns: bool = True) -> None:
        self.plan = plan
        self.turns = OneAtATime() if plan.one_at_a_time and take_turns else None
        self.occupancy = occupancy or Occupancy()

    def open_instance(self, arm: str, model_path: str | Path) -> Instance:
        """AbqaError naming the arm when ONNX Runtime cannot load the model."""
        session_plan = self.plan.sessions[arm]
        if self.plan.one_at_a_time:
            # Every core, spin-waiting only while the inference runs: between its operators a sleeping worker
            # would take a wake-up each time (3-6% of a lone request, benchmarks/results/), and once it returns
            # spinning workers would hold the cores that the response's way back through Triton and the next
            # inference (another session, in the server another process) need.
            session = create_session(model_path, self.plan.pool_threads, arm=arm, spin_between_runs=False)
            if self.turns is None:
                return Instance(session, session.run)
            turns = self.turns
            return Instance(session, lambda names, feeds: turns.run(session.run, names, feeds))
        session = create_session(model_path, session_plan.intra_op_threads, arm=arm, spinning=session_plan.spinning)
        if not self.plan.adaptive or session_plan.narrow_threads >= session_plan.intra_op_threads:
            return Instance(session, session.run)
        narrow = create_session(model_path, session_plan.narrow_threads, arm=arm, spinning=False)
        occupancy = self.occupancy

        def run(names: list[str], feeds: dict) -> list:
            with occupancy.enter() as alone:
                return (session if alone else narrow).run(names, feeds)

        return Instance(session, run, narrow)

    def close(self) -> None:
        if self.turns is not None:
            self.turns.close()
