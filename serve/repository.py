"""What `abqa serve` serves: each arm's config.pbtxt read into a typed `ArmModelConfig` (pure, no server).

The same config.pbtxt drives the official Triton image (onnxruntime backend) in docker compose, so this
module reads it with the export stage's parser and takes from it what a PyTriton binding needs: tensors,
max_batch_size, dynamic batching, instance count and ONNX Runtime threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from abqa.core.errors import AbqaError
from abqa.core.repository import CONFIG_FILENAME, MODEL_FILENAME, ArmPaths, arm_folders
from abqa.export.triton_config import TensorSpec


@dataclass(frozen=True)
class ArmModelConfig:
    """One arm's config.pbtxt as the server binds it: a Triton model named `name` running `model_path` in ONNX
    Runtime."""

    name: str
    model_path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    dynamic_batching: bool
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int
    instances: int
    intra_op_threads: int  # from the config's intra_op_thread_count parameter; 0 = not set
    max_queue_size: int = 0  # requests the dynamic batcher holds before it rejects more; 0 = unbounded


@dataclass(frozen=True)
class SessionPlan:
    """How many ONNX Runtime sessions an arm gets (one per instance) and threads per session."""

    instances: int
    intra_op_threads: int


def discover_arms(repository: Path) -> list[str]:
    """Arm names in the repository: sub-folders holding a config.pbtxt, sorted."""
    repository = Path(repository)
    if not repository.is_dir():
        raise AbqaError(
            f"model repository {repository}: not found; run `abqa export` first (or pass --model-repository)"
        )
    arms = [arm.arm for arm in arm_folders(repository) if arm.exported]
    if not arms:
        raise AbqaError(f"model repository {repository}: no arm in it (no <arm>/{CONFIG_FILENAME}); run `abqa export`")
    return arms


def select_arms(available: list[str], requested: list[str] | None) -> list[str]:
    """The requested subset in the order asked, or every arm; an unknown name is an error that lists the known ones."""
    if not requested:
        return list(available)
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise AbqaError(f"--arms: {', '.join(unknown)} not in the model repository (it has: {', '.join(available)})")
    return list(dict.fromkeys(requested))


def read_arm_model_config(repository: Path, name: str) -> ArmModelConfig:
    """Parse `repository/name/config.pbtxt` and find the model file of its newest version."""
    from abqa.export.triton_config import parse_config_pbtxt
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    paths = ArmPaths(repository, name)
    config_path = paths.config
    try:
        config = parse_config_pbtxt(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AbqaError(f"arm {name!r}: cannot read {config_path} ({exc.strerror})") from exc
    except text_format.ParseError as exc:
        raise AbqaError(f"arm {name!r}: {config_path} is not a valid Triton model config ({exc})") from exc

    if config.name and config.name != name:
        raise AbqaError(f"arm {name!r}: {config_path} names the model {config.name!r}; Triton requires the folder name")
    if config.backend and config.backend != "onnxruntime":
        raise AbqaError(f"arm {name!r}: {config_path} uses backend {config.backend!r}; abqa serve runs ONNX models only")
    if not config.input or not config.output:
        raise AbqaError(f"arm {name!r}: {config_path} declares no input or no output tensor")

    def specs(tensors) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(t.name, model_config_pb2.DataType.Name(t.data_type), tuple(int(d) for d in t.dims))
            for t in tensors
        )

    batching = config.HasField("dynamic_batching")
    return ArmModelConfig(
        name=name,
        model_path=_model_file(paths, config.default_model_filename or MODEL_FILENAME),
        inputs=specs(config.input),
        outputs=specs(config.output),
        max_batch_size=int(config.max_batch_size),
        dynamic_batching=batching,
        preferred_batch_sizes=tuple(int(s) for s in config.dynamic_batching.preferred_batch_size) if batching else (),
        max_queue_delay_us=int(config.dynamic_batching.max_queue_delay_microseconds) if batching else 0,
        instances=max(1, sum(group.count or 1 for group in config.instance_group)) if config.instance_group else 1,
        intra_op_threads=_int_parameter(config, "intra_op_thread_count", name),
        max_queue_size=int(config.dynamic_batching.default_queue_policy.max_queue_size) if batching else 0,
    )


def _model_file(paths: ArmPaths, filename: str) -> Path:
    """Triton's default version policy serves the newest numeric version folder."""
    versions = paths.version_dirs()
    if not versions:
        raise AbqaError(f"arm {paths.arm!r}: no version folder (e.g. {paths.version_dir}/) in the model repository")
    path = versions[0] / filename
    if not path.is_file():
        raise AbqaError(f"arm {paths.arm!r}: {path} is missing; re-run `abqa export --force` for this arm")
    return path


def _int_parameter(config, key: str, arm: str) -> int:
    if key not in config.parameters:
        return 0
    text = config.parameters[key].string_value
    try:
        value = int(text)
    except ValueError:
        raise AbqaError(f"arm {arm!r}: parameter {key} = {text!r} in config.pbtxt is not an integer") from None
    return max(0, value)


def plan_sessions(
    arms: list[ArmModelConfig], cores: int, *, threads: int | None = None, instances: int | None = None
) -> dict[str, SessionPlan]:
    """ONNX Runtime sessions per arm and threads per session.

    Each session would take every core by default, and sessions that fight over 2 cores are slower than
    sessions that share them; so unless `threads` says otherwise, an arm keeps the intra_op_thread_count its
    config.pbtxt was exported with, and an arm without one (or whose instance count is overridden, which makes
    the exported figure wrong) gets cores // (arms x instances), at least 1.
    """
    if threads is not None and threads < 1:
        raise AbqaError(f"--threads must be >= 1, got {threads}")
    if instances is not None and instances < 1:
        raise AbqaError(f"--instances must be >= 1, got {instances}")
    counts = {arm.name: instances or arm.instances for arm in arms}
    sessions = sum(counts.values())
    fair_share = max(1, cores // max(1, sessions))
    plans = {}
    for arm in arms:
        if threads is not None:
            per_session = threads
        elif arm.intra_op_threads > 0 and instances is None:
            per_session = arm.intra_op_threads
        else:
            per_session = fair_share
        plans[arm.name] = SessionPlan(counts[arm.name], per_session)
    return plans
