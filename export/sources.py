"""Turn an arm's source (hub id, local folder, or stand-in) into a local question-answering checkpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from abqa.core.config import ArmSpec
from abqa.core.errors import AbqaError
from abqa.core.hub import offline_requested
from abqa.export.standins import (MULTILINGUAL_STANDIN_NOTE, build_standin_checkpoint,
                                 standin_architecture_for, standin_multilingual_overrides)

log = logging.getLogger(__name__)

STANDIN_BANNER = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! OFFLINE STAND-IN for arm {arm!r} (instead of {source}):
!!   the published {architecture} architecture with SEEDED RANDOM WEIGHTS.
!!   Latency, memory and size are the real model's; its ACCURACY IS MEANINGLESS.
!!   Every report that shows this arm marks it as a stand-in.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A local checkpoint folder (config, weights, tokenizer) and where it came from."""

    path: Path
    source: str
    source_kind: str  # "hub" | "local" | "standin"
    standin: bool
    revision: str | None = None


def resolve_checkpoint(
    spec: ArmSpec,
    workdir: Path,
    *,
    offline: bool,
    standin_overrides: dict | None = None,
    seed: int = 0,
) -> ResolvedCheckpoint:
    """Local folders are used as they are; hub ids are downloaded, or replaced by stand-ins when offline."""
    local = Path(spec.source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise AbqaError(f"arm {spec.name!r}: {local} is a file; a checkpoint source must be a folder or a hub id")
        check_question_answering(local, spec.name)
        return ResolvedCheckpoint(local.resolve(), str(local.resolve()), "local", standin=False)
    if _looks_like_path(spec.source):
        raise AbqaError(f"arm {spec.name!r}: local checkpoint folder {spec.source} does not exist")
    if offline or offline_requested():
        architecture = standin_architecture_for(spec.name, spec.source)
        print(STANDIN_BANNER.format(arm=spec.name, source=spec.source, architecture=architecture), flush=True)
        multilingual = standin_multilingual_overrides(spec.name, spec.source)
        if multilingual:
            print(MULTILINGUAL_STANDIN_NOTE.format(arm=spec.name, vocab_size=multilingual["vocab_size"]), flush=True)
        path = build_standin_checkpoint(
            architecture, workdir / "standin", seed=seed, config_overrides={**multilingual, **(standin_overrides or {})}
        )
        return ResolvedCheckpoint(path, f"standin:{architecture}", "standin", standin=True)
    return _download(spec, workdir / "hub")


def check_question_answering(path: Path, arm: str) -> None:
    """Refuse checkpoints without a question-answering head: exporting them would give a random head."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise AbqaError(f"arm {arm!r}: {path} is not a transformers checkpoint ({_first_line(exc)})") from exc
    architectures = config.architectures or []
    if not any(name.endswith("ForQuestionAnswering") for name in architectures):
        raise AbqaError(
            f"arm {arm!r}: {path} is not a question-answering checkpoint "
            f"(architectures: {architectures or 'none'}; expected e.g. BertForQuestionAnswering)"
        )


def _download(spec: ArmSpec, target: Path) -> ResolvedCheckpoint:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    try:
        model = AutoModelForQuestionAnswering.from_pretrained(spec.source)
        tokenizer = AutoTokenizer.from_pretrained(spec.source, use_fast=True)
    except Exception as exc:  # network errors, missing repos and bad files all surface differently
        raise AbqaError(
            f"arm {spec.name!r}: cannot load {spec.source!r} from the Hugging Face hub ({_first_line(exc)}). "
            "Check the id and your connection, or run with --offline to export a stand-in "
            "(published architecture, random weights: its accuracy is meaningless)"
        ) from exc
    architectures = model.config.architectures or []
    if architectures and not any(name.endswith("ForQuestionAnswering") for name in architectures):
        raise AbqaError(f"arm {spec.name!r}: {spec.source} is not a question-answering checkpoint ({architectures})")
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    revision = getattr(model.config, "_commit_hash", None)
    return ResolvedCheckpoint(target, spec.source, "hub", standin=False, revision=revision)


def _looks_like_path(source: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with slashes is meant as a folder.
    return source.startswith((".", "/", "~")) or source.count("/") > 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
