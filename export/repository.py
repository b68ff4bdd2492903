"""Write one arm into the Triton model repository atomically: build it aside, then move it into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from abqa.core.errors import AbqaError
from abqa.core.records import ExportMetadata
from abqa.core.repository import ArmPaths


def arm_exists(repository: Path, arm: str) -> bool:
    return ArmPaths(repository, arm).exported


def read_arm_metadata(repository: Path, arm: str) -> ExportMetadata:
    return ExportMetadata.read(ArmPaths(repository, arm).metadata)


def ensure_writable(repository: Path) -> Path:
    try:
        repository.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AbqaError(f"model repository {repository}: cannot create it ({exc.strerror})") from exc
    if not os.access(repository, os.W_OK | os.X_OK):
        raise AbqaError(f"model repository {repository}: not writable")
    return repository


@contextlib.contextmanager
def staged_arm(repository: Path, arm: str, *, force: bool) -> Iterator[ArmPaths]:
    """Yield an empty arm folder to build the arm in; on success it replaces `repository/arm` in one rename.

    The staging folder sits beside the repository (same file system, so the rename is atomic) and not inside
    it, where a running Triton could take it for a model. A crash leaves the old arm untouched.
    """
    staging_root = repository.parent / f".{repository.name}.staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{arm}-", dir=staging_root))
    try:
        yield ArmPaths(staging_root, stage.name)
        target = ArmPaths(repository, arm).folder
        if target.exists():
            if not force:
                raise AbqaError(f"arm {arm!r} already exists in {repository}; use --force to replace it")
            retired = Path(tempfile.mkdtemp(prefix=f"{arm}-old-", dir=staging_root))
            os.replace(target, retired / arm)
            os.replace(stage, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(stage, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging_root.rmdir()  # only when empty: another export may be staging beside us
