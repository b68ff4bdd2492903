"""Triton model configuration (config.pbtxt) for an exported ONNX graph: pure functions, no I/O but reading the graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from abqa.core.config import DEFAULT_MAX_QUEUE_SIZE

# ONNX TensorProto element types -> Triton data types.
ONNX_TO_TRITON_DTYPE = {1: "TYPE_FP32", 6: "TYPE_INT32", 7: "TYPE_INT64", 10: "TYPE_FP16", 11: "TYPE_FP64", 9: "TYPE_BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str          # Triton type, e.g. TYPE_INT64
    dims: tuple[int, ...]   # without the batch dimension; -1 is dynamic


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = (2, 4, 8)
    # Triton's recommended start (its batcher guide): no delay. Requests that queue while the instance is busy still
    # merge; a delay only makes a request that finds the instance idle wait for company, and a lone request, which
    # is what a paired evaluation sends, paid all of it (2.0 ms per request at 2000 us, in Triton's own trace:
    # benchmarks/results/serve-trace-2026-12-04-xeon.txt). --queue-delay-us sets one where throughput matters more.
    max_queue_delay_us: int = 0
    # Requests the dynamic batcher holds before it rejects more (overload gets fast refusals, not a crash); 0 = none.
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE


# The rate limiter's resource every CPU instance holds while it computes (one copy in the whole server): with
# `tritonserver --rate-limit=execution_count` one inference runs at a time, on the onnxruntime backend's global
# pool of every core (`--backend-config=onnxruntime,enable-global-threadpool=1`). That is `abqa serve
# --thread-plan shared` (abqa.serve.repository.ThreadPlan); docker-compose.yml starts the official image so.
CPU_RATE_LIMITER_RESOURCE = "abqa_cpu"


@dataclass(frozen=True)
class InstanceConfig:
    kind: str = "KIND_CPU"   # KIND_CPU | KIND_GPU
    count: int = 1
    # Threads per session when the backend runs without its global pool (a plain tritonserver): ONNX Runtime
    # uses every core per session by default, and with several models or instances on one machine their
    # threads must add up to the cores, or they fight.
    intra_op_threads: int = 0  # 0 = ONNX Runtime's default


@dataclass(frozen=True)
class TritonModelConfig:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    instances: InstanceConfig = field(default_factory=InstanceConfig)
    backend: str = "onnxruntime"
    default_model_filename: str = "model.onnx"


def tensor_specs_from_onnx(onnx_path: str | Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of the graph, with the leading batch axis dropped (Triton adds it back)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}

    def spec(value) -> TensorSpec:
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        dtype = ONNX_TO_TRITON_DTYPE.get(tensor_type.elem_type)
        if dtype is None:
            raise ValueError(f"{onnx_path}: tensor {value.name!r} has an unsupported element type {tensor_type.elem_type}")
        return TensorSpec(value.name, dtype, dims[1:])

    inputs = tuple(spec(v) for v in graph.input if v.name not in initializers)
    outputs = tuple(spec(v) for v in graph.output)
    return inputs, outputs


def render_config_pbtxt(config: TritonModelConfig) -> str:
    """The protobuf text format Triton reads; parses with tritonclient's model_config_pb2.ModelConfig."""

    def tensors(kind: str, specs: tuple[TensorSpec, ...]) -> str:
        blocks = [
            f'  {{\n    name: "{s.name}"\n    data_type: {s.data_type}\n    dims: [ {", ".join(map(str, s.dims))} ]\n  }}'
            for s in specs
        ]
        return f"{kind} [\n" + ",\n".join(blocks) + "\n]\n"

    batching = config.batching
    instances = config.instances
    lines = [
        f'name: "{config.name}"',
        f'backend: "{config.backend}"',
        f'default_model_filename: "{config.default_model_filename}"',
        f"max_batch_size: {batching.max_batch_size}",
        tensors("input", config.inputs) + tensors("output", config.outputs),
    ]
    if batching.max_batch_size > 0:
        preferred = ", ".join(str(size) for size in batching.preferred_batch_sizes if size <= batching.max_batch_size)
        lines.append(
            "dynamic_batching {\n"
            + (f"  preferred_batch_size: [ {preferred} ]\n" if preferred else "")
            + f"  max_queue_delay_microseconds: {batching.max_queue_delay_us}\n"
            + (f"  default_queue_policy {{\n    max_queue_size: {batching.max_queue_size}\n  }}\n"
               if batching.max_queue_size > 0 else "")
            + "}"
        )
    # GPU instances keep Triton's default, every instance computing at once: a GPU runs them side by side.
    rate_limiter = (f'\n    rate_limiter {{\n      resources [ {{ name: "{CPU_RATE_LIMITER_RESOURCE}" global: true count: 1 }} ]'
                    '\n    }' if instances.kind == "KIND_CPU" else "")
    lines.append(f"instance_group [\n  {{\n    count: {instances.count}\n    kind: {instances.kind}{rate_limiter}\n  }}\n]")
    if instances.intra_op_threads > 0:
        lines.append(_parameter("intra_op_thread_count", instances.intra_op_threads))
        lines.append(_parameter("inter_op_thread_count", 1))
    return "\n".join(lines) + "\n"


def _parameter(key: str, value: int) -> str:
    return f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}'


def parse_config_pbtxt(text: str):
    """Parse config.pbtxt into Triton's ModelConfig protobuf (raises on anything Triton would reject as syntax)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())
