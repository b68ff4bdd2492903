"""What `abqa serve` serves: each arm's config.pbtxt read into a typed `ArmModelConfig` (pure, no server).

The same config.pbtxt drives the official Triton image (onnxruntime backend) in docker compose, so this
module reads it with the export stage's parser and takes from it what the served model needs: tensors,
max_batch_size, dynamic batching, queue bound, instance count and ONNX Runtime threads; `plan_threads` decides how
the server's sessions share the cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from abqa.core.config import DEFAULT_THREAD_PLAN, THREAD_PLANS
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
    """An arm's model instances and, for each, its ONNX Runtime session(s) and their threads."""

    instances: int
    intra_op_threads: int   # the session's pool; 0 under the shared plan (ThreadPlan.pool_threads for every session)
    spinning: bool = True   # ONNX Runtime's workers spin-wait for work between operators
    narrow_threads: int = 0 # adaptive: each instance's second session, for requests that arrive while others run


@dataclass(frozen=True)
class ThreadPlan:
    """How `abqa serve` spends the cores on the arms' sessions (benchmarks/performance.py measures each kind).

    shared (the default): every session a pool of every core, spin-waiting only during a run, and one inference at
    a time across every arm and instance (Triton's rate limiter, on the resource config.pbtxt's instances hold): a
    lone request runs as the model alone in-process would, and under load each request still has every core (about 7%
    below one thread per session, measured). The official image does the same with the onnxruntime backend's
    global thread pool and the same rate limiter (export/triton_config.py, docker-compose.yml).
    adaptive: every instance has two sessions, a wide one of every core and a narrow one of the
    cores shared out. A request that finds no other inference running in the server takes the wide one (the
    whole machine, as if the model ran alone in-process); one that arrives while others run takes the narrow one,
    so that under load every core works on its own request, as with one thread per session. Costs a second copy
    of each model's weights in memory; without spin-waiting, a lone request is slower than in-process.
    per-session: every session its own pool, sessions run side by side (the onnxruntime backend's default); each
    session's threads are config.pbtxt's intra_op_thread_count or the cores shared out.
    """

    kind: str
    pool_threads: int                   # shared: every session's threads; else 0
    sessions: dict[str, SessionPlan]

    @property
    def one_at_a_time(self) -> bool:
        return self.kind == "shared"

    @property
    def adaptive(self) -> bool:
        return self.kind == "adaptive"

    def describe(self) -> str:
        if self.one_at_a_time:
            return (f"thread plan shared: every session {self.pool_threads} ONNX Runtime thread(s), spin-waiting "
                    "during a run only, one inference at a time across arms (Triton's rate limiter)")
        first = next(iter(self.sessions.values()), SessionPlan(1, 1))
        if self.adaptive:
            return (f"thread plan adaptive: each instance {first.intra_op_threads} thread(s) for a request that finds "
                    f"the server idle, {first.narrow_threads} while other inferences run (two sessions per instance)")
        threads = sorted({plan.intra_op_threads for plan in self.sessions.values()})
        spinning = "on" if all(plan.spinning for plan in self.sessions.values()) else "off"
        return (f"thread plan per-session: each session its own pool of {'/'.join(map(str, threads))} thread(s), "
                f"sessions run side by side, spin-waiting {spinning}")


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


def plan_threads(arms: list[ArmModelConfig], cores: int, *, kind: str = DEFAULT_THREAD_PLAN, threads: int | None = None,
                 instances: int | None = None) -> ThreadPlan:
    """The thread plan for these arms on `cores` cores (pure arithmetic; ThreadPlan says what each kind does).

    adaptive: the wide session has `threads` threads (default: every core), the narrow one
    cores // (arms x instances), at least 1. shared: the pool has `threads` threads (default: every core).
    Both ignore config.pbtxt's intra_op_thread_count, as the onnxruntime backend does once its global pool is on.
    per-session: a session has `threads` threads; else the intra_op_thread_count its config.pbtxt was exported
    with; else (none, or an instance count overridden, which makes the exported figure wrong) the fair share.
    Sessions that can run side by side never spin-wait: a spinning worker holds a core that another session's
    thread is waiting for (one session alone keeps ONNX Runtime's spinning).
    """
    if kind not in THREAD_PLANS:
        raise AbqaError(f"--thread-plan {kind!r}: use one of {', '.join(THREAD_PLANS)}")
    if threads is not None and threads < 1:
        raise AbqaError(f"--threads must be >= 1, got {threads}")
    if instances is not None and instances < 1:
        raise AbqaError(f"--instances must be >= 1, got {instances}")
    counts = {arm.name: instances or arm.instances for arm in arms}
    sessions = sum(counts.values())
    every_core = max(1, cores)
    fair_share = max(1, every_core // max(1, sessions))
    if kind == "shared":
        return ThreadPlan(kind, threads or every_core, {name: SessionPlan(count, 0) for name, count in counts.items()})
    if kind == "adaptive":
        return ThreadPlan(kind, 0, {name: SessionPlan(count, threads or every_core, spinning=False,
                                                      narrow_threads=fair_share)
                                    for name, count in counts.items()})
    plans = {}
    for arm in arms:
        if threads is not None:
            per_session = threads
        elif arm.intra_op_threads > 0 and instances is None:
            per_session = arm.intra_op_threads
        else:
            per_session = fair_share
        plans[arm.name] = SessionPlan(counts[arm.name], per_session, spinning=sessions == 1)
    return ThreadPlan(kind, 0, plans)
