"""The Triton python-backend model behind every arm that `abqa serve` serves: an ONNX Runtime session run inside
the backend's stub process.

tritonserver starts one stub process per model instance and calls `execute` there with each dynamic batch, so a
request goes client -> tritonserver -> stub (shared memory) -> ONNX Runtime and back, with no other process or
thread hop on its way. (PyTriton's proxy added two: the stub forwarded each batch over ZeroMQ to the process that
held the Python callable, and that process ran it on an executor thread: 5.0 against 1.8 ms per request for an
empty model on an idle server, benchmarks/results/serve-path-2026-12-03-xeon.txt.)

The stub imports this module from `<arm>/1/model.py` in the serving repository that `abqa serve` writes
(abqa.serve.launch); the model's config.pbtxt parameters say which ONNX graph to run and how (`plan_parameters`).
"""

from __future__ import annotations

import json

import numpy as np

from abqa.serve.repository import SessionPlan, ThreadPlan

# config.pbtxt parameters of a served arm (abqa.serve.launch writes them; `TritonPythonModel.initialize` reads them).
ONNX_MODEL = "abqa_onnx_model"
THREAD_PLAN = "abqa_thread_plan"
THREADS = "abqa_intra_op_threads"
NARROW_THREADS = "abqa_narrow_threads"
SPINNING = "abqa_spinning"
OCCUPANCY_FILE = "abqa_occupancy_file"


def plan_parameters(arm: str, model_path, plan: ThreadPlan, occupancy_file) -> dict[str, str]:
    """What one arm's stub needs to open its session(s) as `plan` says."""
    session = plan.sessions[arm]
    threads = plan.pool_threads if plan.one_at_a_time else session.intra_op_threads
    return {ONNX_MODEL: str(model_path), THREAD_PLAN: plan.kind, THREADS: str(threads),
            NARROW_THREADS: str(session.narrow_threads), SPINNING: "1" if session.spinning else "0",
            OCCUPANCY_FILE: str(occupancy_file)}


def plan_from_parameters(arm: str, parameters: dict[str, str]) -> ThreadPlan:
    """The one-arm ThreadPlan that `plan_parameters` wrote (one instance: a stub serves one)."""
    kind = parameters[THREAD_PLAN]
    threads = int(parameters[THREADS])
    shared = kind == "shared"
    session = SessionPlan(1, 0 if shared else threads, spinning=parameters[SPINNING] == "1",
                          narrow_threads=int(parameters[NARROW_THREADS]))
    return ThreadPlan(kind, threads if shared else 0, {arm: session})


def split_batch(results: list[np.ndarray], sizes: list[int]) -> list[list[np.ndarray]]:
    """Each request's rows of a dynamic batch's outputs, in the order the requests were stacked."""
    bounds = np.cumsum([0, *sizes])
    return [[output[start:end] for output in results] for start, end in zip(bounds[:-1], bounds[1:])]


class TritonPythonModel:
    """Triton's python-backend interface: `initialize` once per instance, `execute` once per (dynamic) batch."""

    def initialize(self, args: dict) -> None:
        from abqa.serve.session import PlanRuntime, ProcessOccupancy

        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.arm = args["model_name"]
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]
        self.batching = int(config.get("max_batch_size", 0)) > 0
        plan = plan_from_parameters(self.arm, parameters)
        # Turns under the shared plan are Triton's (its rate limiter, across every stub); the adaptive plan's
        # occupancy is counted across the stubs in a lock file.
        runtime = PlanRuntime(plan, occupancy=ProcessOccupancy(parameters[OCCUPANCY_FILE]), take_turns=False)
        self.instance = runtime.open_instance(self.arm, parameters[ONNX_MODEL])

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        feeds = [{name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
                 for request in requests]
        try:
            if self.batching and len(feeds) > 1:
                # Triton batches only requests of equal shape (the inputs are not ragged), so they stack.
                stacked = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.input_names}
                sizes = [len(feed[self.input_names[0]]) for feed in feeds]
                per_request = split_batch(self.instance.run(self.output_names, stacked), sizes)
            else:
                per_request = [self.instance.run(self.output_names, feed) for feed in feeds]
        except Exception as exc:  # onnxruntime's own exception types: a request it cannot run
            error = pb_utils.TritonError(f"arm {self.arm!r}: ONNX Runtime failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, np.ascontiguousarray(array))
                                                           for name, array in zip(self.output_names, outputs)])
                for outputs in per_request]
