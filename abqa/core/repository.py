"""The Triton model repository's layout: what `abqa export` writes for an arm and where every other stage finds it.

    model_repository/<arm>/config.pbtxt         Triton's model configuration (onnxruntime backend)
    model_repository/<arm>/1/model.onnx         the graph; Triton serves the newest numeric version folder
    model_repository/<arm>/abqa-metadata.json   ExportMetadata: source, stand-in flag, sizes, versions
    model_repository/<arm>/tokenizer/           the tokenizer files the client encodes this arm's questions with

Triton ignores non-numeric folders and unknown files in a model folder, so abqa's files live beside its config.
Paths only: nothing here reads or writes a file but `arm_folders` and `ArmPaths.version_dirs`, which list folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_FILENAME = "config.pbtxt"
MODEL_FILENAME = "model.onnx"
METADATA_FILENAME = "abqa-metadata.json"
TOKENIZER_DIRNAME = "tokenizer"
EXPORT_VERSION = "1"  # the version folder `abqa export` writes


@dataclass(frozen=True)
class ArmPaths:
    """Where one arm's files are in a model repository."""

    repository: Path
    arm: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "repository", Path(self.repository))

    @property
    def folder(self) -> Path:
        return self.repository / self.arm

    @property
    def config(self) -> Path:
        return self.folder / CONFIG_FILENAME

    @property
    def version_dir(self) -> Path:
        """The version folder `abqa export` writes (a server reads the newest of `version_dirs()`)."""
        return self.folder / EXPORT_VERSION

    @property
    def model(self) -> Path:
        return self.version_dir / MODEL_FILENAME

    @property
    def metadata(self) -> Path:
        return self.folder / METADATA_FILENAME

    @property
    def tokenizer(self) -> Path:
        return self.folder / TOKENIZER_DIRNAME

    @property
    def exported(self) -> bool:
        """A Triton model is there: the folder holds a config.pbtxt."""
        return self.config.is_file()

    def version_dirs(self) -> list[Path]:
        """The numeric version folders, newest first (Triton's default version policy serves the first)."""
        if not self.folder.is_dir():
            return []
        versions = [child for child in self.folder.iterdir() if child.name.isdigit() and child.is_dir()]
        return sorted(versions, key=lambda child: int(child.name), reverse=True)


def arm_folders(repository: str | Path) -> list[ArmPaths]:
    """Every sub-folder of the repository as an arm, sorted by name; [] when the repository is not there."""
    repository = Path(repository)
    if not repository.is_dir():
        return []
    return [ArmPaths(repository, child.name) for child in sorted(repository.iterdir()) if child.is_dir()]
