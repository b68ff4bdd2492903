"""Shared fixtures: tiny exported arms (2 layers, hidden 64, the real vocabulary) and the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from abqa.core.config import shared_data_dir

# Tiny versions of the two published architectures: same code paths, seconds instead of minutes.
TINY_OVERRIDES = {
    "bert": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128},
    "distilbert": {"n_layers": 2, "dim": 64, "n_heads": 2, "hidden_dim": 128},
}


def tiny_checkpoint(architecture: str, out_dir: Path, seed: int = 0) -> Path:
    from abqa.export.standins import build_standin_checkpoint

    return build_standin_checkpoint(architecture, out_dir, seed=seed, config_overrides=TINY_OVERRIDES[architecture])


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Local QA checkpoints (model + tokenizer) of both tiny architectures."""
    root = tmp_path_factory.mktemp("tiny-checkpoints")
    return {arch: tiny_checkpoint(arch, root / arch) for arch in TINY_OVERRIDES}


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory, tiny_checkpoints) -> Path:
    """A Triton model repository with tiny `bert` and `distilbert` arms, exported by abqa's own export stage.

    Treat it as read-only: it is shared by the whole session.
    """
    from abqa.core.config import ArmSpec
    from abqa.export.pipeline import ExportOptions, export_arms
    from abqa.export.triton_config import InstanceConfig

    repository = tmp_path_factory.mktemp("tiny-repo") / "model_repository"
    specs = [ArmSpec(name, str(path)) for name, path in tiny_checkpoints.items()]
    export_arms(specs, ExportOptions(repository=repository, instances=InstanceConfig(intra_op_threads=1)))
    return repository


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data (SQuAD dev set and predictions) is not beside the project")
    return path


@pytest.fixture(scope="session")
def triton_server(tiny_repository):
    """A real Triton (`abqa serve`) on free loopback ports serving the tiny `bert` and `distilbert` arms.

    An `abqa.serve.process.ServerHandle`: `.grpc` / `.http` Endpoints (`.address` for tritonclient, `.url`,
    `.metrics_url`), `.pid`, `.models`. Shared by the session and stopped at its end; do not stop it in a test.
    """
    from abqa.serve.process import start_server

    with start_server(tiny_repository) as server:
        yield server
