"""Which data set a run uses: the names `--squad` takes, as small data sources in one registry.

`resolve(arg, version)` is the one entry point (evaluate, benchmark, load test, router export, the app):

- `PATH`: a SQuAD JSON file, v1.1 or v2.0 (detected from the file);
- `squad`: the Hugging Face hub's SQuAD validation split, through `datasets` (installed and online);
- `shared`: the SQuAD dev set in ../shared/data beside the project (v1.1; v2.0 with `--version 2.0`);
- `builtin` (or `sample`): the small built-in SQuAD-format sample;
- `xquad.<lang>[=PATH],...`: one XQuAD data set per language (`abqa.core.xquad`).

Without `--squad`: the shared dev set when it is there, else the hub when `datasets` is installed and the hub
answers (`abqa.core.hub`), else the built-in sample, announced loudly. The shared file comes before the hub
because it is the same split, already on disk, and checked against the published scores. `--version 2.0`
without a file takes the shared v2.0 dev set. A name that no source knows is an error listing the ones there are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from abqa.core import hub
from abqa.core.config import shared_data_dir
from abqa.core.errors import AbqaError
from abqa.core.scoring import ScoringRule, squad_rule
from abqa.core.squad import (
    HUB_DATASET,
    SOURCE_BUILTIN,
    SOURCE_PATH,
    SOURCE_SHARED,
    SquadDataset,
    load_builtin_sample,
    load_squad_file,
    load_squad_hub,
)
from abqa.core.xquad import parse_xquad_arg, resolve_xquad

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedDevSet:
    relative: str       # below the shared data folder
    missing: str        # the error when it is not there


# The shared folder's dev set of each SQuAD version.
SHARED_DEV_SETS = {
    "1.1": SharedDevSet("squad-v1.1/dev-v1.1.json",
                        "--squad shared: ../shared/data/squad-v1.1/dev-v1.1.json is not beside the project"),
    "2.0": SharedDevSet("squad-v2.0/dev-v2.0.json",
                        "--version 2.0: no SQuAD v2.0 data beside the project "
                        "(../shared/data/squad-v2.0/dev-v2.0.json); pass --squad PATH/TO/dev-v2.0.json"),
}


def shared_dev_path(version: str = "1.1") -> Path | None:
    """The shared folder's dev set of `version`, when it is beside the project."""
    root = shared_data_dir()
    if root is None:
        return None
    path = root / SHARED_DEV_SETS[version].relative
    return path if path.is_file() else None


class DataSource(Protocol):
    name: str           # how --squad names it
    summary: str        # what it is, for the list of available data sets

    def claims(self, arg: str) -> bool:
        """This source is the one `--squad arg` names."""

    def load(self, arg: str | None, version: str | None) -> SquadDataset:
        """The data set, announced in the log; `version` is --version (already checked) or None."""


class XquadSource:
    name = "xquad.<lang>[=PATH],..."
    summary = "XQuAD languages, one data set each, from the shared copy or the hub's google/xquad"

    def claims(self, arg: str) -> bool:
        return parse_xquad_arg(arg) is not None

    def load(self, arg: str | None, version: str | None) -> SquadDataset:
        if version is not None and squad_rule(version).allows_no_answer:
            raise AbqaError(f"--squad {arg} --version {version}: XQuAD is scored with MLQA's convention, which has "
                            "no unanswerable questions; leave out --version")
        return resolve_xquad(arg)


class HubSource:
    name = HUB_DATASET
    summary = "the Hugging Face hub's SQuAD v1.1 validation split, through `datasets`"

    def claims(self, arg: str) -> bool:
        return arg == HUB_DATASET and not Path(arg).exists()

    def load(self, arg: str | None, version: str | None) -> SquadDataset:
        dataset = load_squad_hub(HUB_DATASET)
        log.warning("SQuAD data: Hugging Face hub %s (%d questions)", dataset.path, len(dataset))
        return dataset


class SharedSource:
    name = "shared"
    summary = "the SQuAD dev set in ../shared/data, v1.1, or v2.0 with --version 2.0"

    def claims(self, arg: str) -> bool:
        return arg == self.name

    def load(self, arg: str | None, version: str | None) -> SquadDataset:
        path = shared_dev_path(version or "1.1")
        if path is None:
            raise AbqaError(SHARED_DEV_SETS[version or "1.1"].missing)
        return announce(load_squad_file(path, source=SOURCE_SHARED, version=version))


class BuiltinSource:
    name = "builtin"
    summary = "the small built-in sample, which checks the pipeline only; also `sample`"
    aliases = ("builtin", "sample")

    def claims(self, arg: str) -> bool:
        return arg in self.aliases

    def load(self, arg: str | None, version: str | None) -> SquadDataset:
        return announce(load_builtin_sample(), reason=f"--squad {arg}")


class FileSource:
    name = "PATH"
    summary = "a SQuAD JSON file, v1.1 or v2.0"

    def claims(self, arg: str) -> bool:
        """An existing path, or text that is written like one (a folder or a file suffix): a file that is not
        there is then "not found" rather than an unknown name."""
        path = Path(arg)
        return path.exists() or "/" in arg or path.suffix != ""

    def load(self, arg: str | None, version: str | None) -> SquadDataset:
        return announce(load_squad_file(arg, source=SOURCE_PATH))


XQUAD, HUB, SHARED, BUILTIN, FILE = XquadSource(), HubSource(), SharedSource(), BuiltinSource(), FileSource()
# In the order they are asked whether they know an argument.
DATA_SOURCES: tuple[DataSource, ...] = (XQUAD, HUB, SHARED, BUILTIN, FILE)


def source_for(arg: str) -> DataSource:
    """The source `--squad arg` names; an unknown name is an error that lists the available ones."""
    for source in DATA_SOURCES:
        if source.claims(arg):
            return source
    available = "; ".join(f"{source.name} ({source.summary})" for source in DATA_SOURCES)
    raise AbqaError(f"--squad {arg}: unknown data set {arg!r}; available: {available}")


def resolve(arg: str | None, version: str | None = None) -> SquadDataset:
    """The run's data set for `--squad arg` and `--version version`, announced in the log.

    `version` None keeps the version detected from the data; a forced version must fit the data (v1.1 rules
    cannot score a question without an answer; v2.0 rules can score any v1.1 file)."""
    forced = None if version is None else squad_rule(version, where=f"--version {version}")
    dataset = source_for(arg).load(arg, version) if arg else _default(version)
    return _scored_as(dataset, forced)


def _default(version: str | None) -> SquadDataset:
    """No --squad: the shared dev set, else the hub, else the built-in sample. A run whose rule allows "no answer"
    needs questions without one: the shared v2.0 dev set (the hub's `squad` and the sample have none)."""
    needs_unanswerable = version is not None and squad_rule(version).allows_no_answer
    if needs_unanswerable or shared_dev_path() is not None:
        return SHARED.load(None, version)
    if hub.datasets_usable():
        try:
            return HUB.load(HUB_DATASET, version)
        except AbqaError as exc:
            log.warning("%s", exc)
    return announce(load_builtin_sample(), reason="no --squad given, no ../shared/data, no hub")


def _scored_as(dataset: SquadDataset, forced: ScoringRule | None) -> SquadDataset:
    """`dataset` scored with the SQuAD script `forced` (--version) instead of its own version's, when it fits."""
    if forced is None or forced.squad_version == dataset.version:
        return dataset
    unanswerable = [question.id for question in dataset.questions if not question.has_answer]
    if unanswerable and not forced.allows_no_answer:
        raise AbqaError(f"--version {forced.squad_version}: {dataset.path} has {len(unanswerable)} question(s) "
                        f"without an answer (e.g. {unanswerable[0]}), which only SQuAD v2.0 scores; use --version 2.0")
    log.warning("SQuAD data: %s is scored with the SQuAD v%s rules (--version %s; the file is v%s)",
                dataset.path, forced.squad_version, forced.squad_version, dataset.version)
    dataset.version = forced.squad_version
    return dataset


def announce(dataset: SquadDataset, reason: str = "") -> SquadDataset:
    """Log which data set the run uses; the built-in sample loudly, since its scores say little."""
    if dataset.source == SOURCE_BUILTIN:
        log.warning(
            "SQuAD data: BUILT-IN SAMPLE (%d questions, %s): %s. "
            "It checks that the pipeline works; its scores say little about the models. "
            "Pass --squad PATH for the real dev set.", len(dataset), dataset.path, reason)
    else:
        label = {SOURCE_SHARED: "shared dev set", SOURCE_PATH: "file"}.get(dataset.source, dataset.source)
        log.warning("SQuAD data: %s %s (%d questions, sha256 %s)", label, dataset.path, len(dataset), dataset.sha256[:12])
    return dataset
