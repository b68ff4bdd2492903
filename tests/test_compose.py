"""docker-compose.yml, its GPU override and the Dockerfile, checked statically (no Docker engine here):
pinned images, read-only model repository, ports, healthcheck, start order, and a model repository that the
official image's onnxruntime backend accepts.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml comes with the [test] extra")

ROOT = Path(__file__).resolve().parent.parent
TRITON_IMAGE = re.compile(r"^nvcr\.io/nvidia/tritonserver:(?P<yy>\d\d)\.(?P<mm>\d\d)-py3$")
# Keys the official onnxruntime backend reads from config.pbtxt `parameters` (its README, "Model Config Options").
ONNXRUNTIME_BACKEND_PARAMETERS = {
    "intra_op_thread_count", "inter_op_thread_count", "execution_mode", "enable_mem_arena", "enable_mem_pattern",
    "memory.enable_memory_arena_shrinkage", "session.use_device_allocator_for_initializers",
    "cudnn_conv_algo_search", "gpu_mem_limit", "arena_extend_strategy", "do_copy_in_default_stream",
}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


def triton_release(image: str) -> str:
    """NGC container YY.MM -> Triton 2.N (monthly releases: 23.10 is 2.39, 24.10 is 2.51)."""
    match = TRITON_IMAGE.match(image)
    assert match, f"{image} is not a pinned nvcr.io/nvidia/tritonserver:YY.MM-py3 tag"
    yy, mm = int(match["yy"]), int(match["mm"])
    assert yy >= 23, "the YY.MM -> 2.N rule below holds from 23.01 on"
    return f"2.{12 * (yy - 23) + mm + 29}"


def published_ports(service: dict) -> dict[int, str]:
    """container port -> host address for each `[host_ip:]host_port:container_port` entry."""
    ports = {}
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        ports[int(parts[-1].split("/")[0])] = host_ip
    return ports


def test_triton_runs_the_pinned_official_image_matching_pytritons_server(compose):
    triton = compose["services"]["triton"]
    # 24.10 is the release of the tritonserver that nvidia-pytriton 0.7.0 bundles (2.51).
    assert triton_release(triton["image"]) == "2.51"
    assert triton_release("nvcr.io/nvidia/tritonserver:23.10-py3") == "2.39"


def test_every_image_is_pinned(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"service {name} names no image"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and "/" not in tag, f"service {name}: image {image!r} has no tag"
        assert tag != "latest", f"service {name}: image {image!r} is not pinned"
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)[1]
    assert base == "python:3.11-slim"


def test_triton_mounts_the_model_repository_read_only_where_it_serves_from(compose):
    triton = compose["services"]["triton"]
    mounts = [str(volume).split(":") for volume in triton["volumes"]]
    assert ["./model_repository", "/models", "ro"] in mounts
    assert all(len(mount) == 3 and mount[2] == "ro" for mount in mounts), "every Triton mount must be read-only"
    assert "--model-repository=/models" in triton["command"]
    assert (ROOT / "model_repository").is_dir()


def test_ports_and_healthcheck(compose):
    triton = compose["services"]["triton"]
    assert published_ports(triton) == {8000: "127.0.0.1", 8001: "127.0.0.1", 8002: "127.0.0.1"}
    assert published_ports(compose["services"]["locust"]) == {8089: "127.0.0.1"}
    test = triton["healthcheck"]["test"]
    assert test[0] == "CMD" and "http://localhost:8000/v2/health/ready" in test
    assert "--strict-readiness=true" in triton["command"]  # ready only when every model is loaded


def test_client_services_start_after_triton_is_healthy_and_reach_it_by_name(compose):
    for name in ("evaluate", "locust"):
        service = compose["services"][name]
        assert service["depends_on"] == {"triton": {"condition": "service_healthy"}}
        assert service["build"] == "."
        command = " ".join(service.get("entrypoint", []) + service["command"])
        assert "triton:800" in command, f"{name} does not talk to the triton service: {command}"
    assert compose["services"]["evaluate"]["command"][:3] == ["evaluate", "--url", "triton:8001"]
    locust = compose["services"]["locust"]
    assert locust["entrypoint"] == ["locust"]
    assert "loadtest/locustfile.py" in locust["command"]
    assert "--web-port" in locust["command"] and "8089" in locust["command"]


def test_locustfile_the_compose_file_runs_exists():
    if not (ROOT / "loadtest").is_dir():
        pytest.skip("no loadtest/ stage folder")
    path = ROOT / "loadtest" / "locustfile.py"
    if not path.is_file():
        pytest.skip("loadtest/locustfile.py is not written yet (loadtest stage)")
    assert "HttpUser" in path.read_text() or "User" in path.read_text()


def test_gpu_override_reserves_nvidia_gpus_for_triton_only(compose):
    override = load("docker-compose.gpu.yml")
    assert set(override["services"]) == {"triton"} <= set(compose["services"])
    devices = override["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "deploy" not in compose["services"]["triton"], "the base file must stay CPU-only"


def test_dockerfile_installs_the_whole_project_with_cpu_torch():
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = set(re.findall(r"^COPY\s+(\S+)/\s", dockerfile, re.MULTILINE))
    # Every folder the package installs from is in the image, or `pip install .` would miss a stage.
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    assert folders <= copied, f"not copied into the image: {folders - copied}"
    assert re.search(r"pip install --extra-index-url https://download\.pytorch\.org/whl/cpu \.", dockerfile)
    assert re.search(r'^ENTRYPOINT \["abqa"\]', dockerfile, re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "model_repository", "runs", ".git"} <= set(ignored)


def test_docs_say_how_to_run_both_servers():
    serving = (ROOT / "docs" / "serve.md").read_text()
    for needed in ("abqa serve", "docker compose up", "docker-compose.gpu.yml", "abqa export --gpu"):
        assert needed in serving, f"docs/serve.md does not mention {needed!r}"


@pytest.mark.parametrize("arm", ["bert", "distilbert"])
def test_exported_config_is_valid_for_the_official_onnxruntime_backend(tiny_repository, arm):
    from abqa.export.triton_config import parse_config_pbtxt

    config = parse_config_pbtxt((tiny_repository / arm / "config.pbtxt").read_text())
    assert config.name == arm  # Triton requires the folder name
    assert config.backend == "onnxruntime" and config.platform in ("", "onnxruntime_onnx")
    assert (tiny_repository / arm / "1" / (config.default_model_filename or "model.onnx")).is_file()
    assert set(config.parameters) <= ONNXRUNTIME_BACKEND_PARAMETERS
    for key, value in config.parameters.items():
        assert value.string_value.isdigit(), f"{key} must be a string_value holding an integer"
    # Non-numeric entries (tokenizer/, abqa-metadata.json) are ignored by Triton's version policy.
    assert [p.name for p in (tiny_repository / arm).iterdir() if p.is_dir() and p.name.isdigit()] == ["1"]


def test_the_official_image_runs_one_cpu_inference_at_a_time_on_one_pool_of_every_core(compose, tiny_repository):
    """abqa serve --thread-plan shared on the official image: the rate limiter (each CPU instance holds the one
    copy of a global resource while it computes) and the onnxruntime backend's global thread pool."""
    from abqa.export.triton_config import (CPU_RATE_LIMITER_RESOURCE, InstanceConfig, TritonModelConfig,
                                           parse_config_pbtxt, render_config_pbtxt)

    command = compose["services"]["triton"]["command"]
    assert "--rate-limit=execution_count" in command
    assert "--backend-config=onnxruntime,enable-global-threadpool=1" in command
    for arm in ("bert", "distilbert"):
        (group,) = parse_config_pbtxt((tiny_repository / arm / "config.pbtxt").read_text()).instance_group
        (resource,) = group.rate_limiter.resources
        assert (resource.name, resource.count, getattr(resource, "global")) == (CPU_RATE_LIMITER_RESOURCE, 1, True)
    # A GPU runs its instances side by side: no rate limiter there.
    gpu = render_config_pbtxt(TritonModelConfig("a", (), (), instances=InstanceConfig("KIND_GPU")))
    assert not parse_config_pbtxt(gpu).instance_group[0].HasField("rate_limiter")


@pytest.mark.integration
def test_abqa_serve_runs_the_same_triton_release_as_compose(triton_server, compose):
    import tritonclient.http as httpclient

    version = httpclient.InferenceServerClient(triton_server.http.address).get_server_metadata()["version"]
    assert version.rsplit(".", 1)[0] == triton_release(compose["services"]["triton"]["image"])
