"""The ONNX Runtime session behind each served model instance, and the request that proves a model answers.

`create_session` is the one way abqa builds a CPU session for an exported arm, so the server, the serving
overhead benchmark and the tests that compare Triton's answer with an in-process one all run the same thing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from abqa.core.errors import AbqaError
from abqa.export.triton_config import TensorSpec


def create_session(model_path: str | Path, intra_op_threads: int, *, arm: str | None = None):
    """A CPU InferenceSession with `intra_op_threads` threads (0 = ONNX Runtime's default: every core).

    Inter-op parallelism is off (1 thread, sequential execution): BERT graphs are one chain of operators, and
    a second pool would only add threads that compete for the same cores.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, int(intra_op_threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
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
