"""What `abqa serve` hands tritonserver: a serving repository, a backend folder, a command line and an environment.

The tritonserver is the one nvidia-pytriton ships (2.51, python backend only). Each arm is served by Triton's python
backend running abqa.serve.backend in a stub process; its config.pbtxt is the exported one (tensors, batch size,
dynamic batching, instances and their rate-limiter resource) with the backend switched to python, the queue bound
and instance count `abqa serve` was given, and the thread plan as parameters. The model's weights are not copied:
the stub opens the exported model.onnx where it is.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from abqa.core.errors import AbqaError
from abqa.core.repository import ArmPaths
from abqa.export.triton_config import CPU_RATE_LIMITER_RESOURCE, parse_config_pbtxt
from abqa.serve.backend import plan_parameters
from abqa.serve.repository import ArmModelConfig, ThreadPlan

# Triton's repository, shared-memory, trace and logging APIs stay behind an access token nobody is given;
# statistics, metadata, health and inference are open, as on the official server, because evaluate and loadtest
# read them.
RESTRICTED_ENDPOINTS = ("model-repository", "shared-memory", "trace", "logging")
ACCESS_HEADER = "triton-access-token"

MODEL_PY = "from abqa.serve.backend import TritonPythonModel  # noqa: F401  (abqa serve's python-backend model)\n"


@dataclass(frozen=True)
class Ports:
    host: str
    http: int
    grpc: int
    metrics: int


def serving_config_pbtxt(arm: ArmModelConfig, exported_text: str, *, plan: ThreadPlan, max_queue_size: int,
                         occupancy_file: Path) -> str:
    """The arm's exported config.pbtxt as the python backend serves it (see the module note)."""
    from google.protobuf import text_format

    config = parse_config_pbtxt(exported_text)
    config.backend = "python"
    config.ClearField("default_model_filename")   # the python backend's model.py
    config.ClearField("platform")
    for key in ("intra_op_thread_count", "inter_op_thread_count"):
        if key in config.parameters:
            del config.parameters[key]
    if config.HasField("dynamic_batching"):
        if max_queue_size:
            config.dynamic_batching.default_queue_policy.max_queue_size = max_queue_size
        else:
            config.dynamic_batching.ClearField("default_queue_policy")
    # One group of CPU instances (the stubs run ONNX Runtime on the CPU), each holding the resource that makes
    # the shared plan's one-at-a-time (tritonserver --rate-limit=execution_count; ignored otherwise).
    del config.instance_group[:]
    group = config.instance_group.add()
    group.count = plan.sessions[arm.name].instances
    group.kind = group.KIND_CPU
    resource = group.rate_limiter.resources.add()
    resource.name, resource.count = CPU_RATE_LIMITER_RESOURCE, 1
    setattr(resource, "global", True)   # a Python keyword: the field has no attribute syntax
    for key, value in plan_parameters(arm.name, arm.model_path.resolve(), plan, occupancy_file).items():
        config.parameters[key].string_value = value
    return text_format.MessageToString(config)


def write_serving_repository(folder: Path, arms: list[ArmModelConfig], source: Path, *, plan: ThreadPlan,
                             queue_bounds: dict[str, int]) -> Path:
    """`folder/models/<arm>/{config.pbtxt, 1/model.py}` for every arm; returns the repository's path."""
    models = folder / "models"
    occupancy_file = folder / "occupancy.lock"
    for arm in arms:
        exported = ArmPaths(source, arm.name).config.read_text(encoding="utf-8")
        version = models / arm.name / "1"
        version.mkdir(parents=True)
        (version / "model.py").write_text(MODEL_PY, encoding="utf-8")
        (models / arm.name / "config.pbtxt").write_text(
            serving_config_pbtxt(arm, exported, plan=plan, max_queue_size=queue_bounds[arm.name],
                                 occupancy_file=occupancy_file), encoding="utf-8")
    return models


def pytriton_server_dir() -> Path:
    """nvidia-pytriton's tritonserver distribution: bin/tritonserver, backends/python, python_backend_stubs/3.X."""
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def prepare_backends(folder: Path) -> Path:
    """The python backend with the stub built for this interpreter's Python version (as PyTriton arranges it)."""
    server = pytriton_server_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise AbqaError(f"nvidia-pytriton has no python backend stub for Python {version} ({stub} is missing)")
    backend = folder / "backends" / "python"
    backend.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(server / "backends" / "python" / name, backend / name)
    shutil.copy2(stub, backend / stub.name)
    return backend.parent


def tritonserver_command(repository: Path, backends: Path, ports: Ports, log_file: Path, *, rate_limited: bool,
                         access_token: str | None = None) -> list[str]:
    token = access_token or secrets.token_urlsafe(24)
    restricted = f"{','.join(RESTRICTED_ENDPOINTS)}:{ACCESS_HEADER}={token}"
    command = [
        str(pytriton_server_dir() / "bin" / "tritonserver"),
        f"--model-repository={repository}", f"--backend-directory={backends}",
        f"--http-address={ports.host}", f"--http-port={ports.http}",
        f"--grpc-address={ports.host}", f"--grpc-port={ports.grpc}",
        f"--metrics-address={ports.host}", f"--metrics-port={ports.metrics}",
        f"--http-restricted-api={restricted}", f"--grpc-restricted-protocol={restricted}",
        f"--log-file={log_file}", "--exit-timeout-secs=5", "--strict-readiness=true",
        "--allow-gpu-metrics=false",   # CPU only; also keeps DCGM from printing 'Failed to initialize NVML'
    ]
    if rate_limited:
        command.append("--rate-limit=execution_count")
    return command


def tritonserver_environment(environ: dict[str, str]) -> dict[str, str]:
    """The stubs' embedded Python finds its prefix from the `python` first on PATH: this interpreter's folder first
    makes them import abqa and its dependencies from where this process does (a venv's site-packages, editable
    installs included; PYTHONPATH is not read). PyTriton's bundled libraries go on LD_LIBRARY_PATH (this
    interpreter's libpython is put first by abqa.serve.libpython before this is called)."""
    from pytriton.utils.distribution import get_libs_path

    env = dict(environ)
    folders = [part for part in env.get("PATH", "").split(os.pathsep) if part]
    env["PATH"] = os.pathsep.join(dict.fromkeys([str(Path(sys.executable).parent), *folders]))
    libraries = [part for part in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if part]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dict.fromkeys([*libraries, str(get_libs_path())]))
    return env
