"""Multilingual SQuAD-layout data (XQuAD): several languages in one run.

`--squad xquad.de,xquad.zh,xquad.es` (a comma list; `abqa evaluate` also takes `--squad` repeated) names one data
set per language. Each part is

- `xquad.<lang>`: the shared copy `<shared data>/xquad/xquad.<lang>.json` when it is beside the project, else the
  Hugging Face hub's `google/xquad`, config `xquad.<lang>` (validation split; needs `datasets` and the network);
- `xquad.<lang>=PATH`: any file in the SQuAD v1.1 layout, for that language;
- a path to a file named `xquad.<lang>.json`.

Every question carries its language (a multilingual data set is scored with MLQA's convention in each
question's language: `abqa.core.scoring.MLQA`) and its data set name. XQuAD uses the same question ids in every
language (it is one set of questions, translated), so ids are made unique by a language prefix:
`de:56beb4343aeaaa14008c925b`. Paired tests stay per question and per language, and prediction files replayed in
a multilingual run use these prefixed ids.
`--sample N` and `--limit N` apply to each language; with one seed the sample takes the same positions in every
language, which in XQuAD's parallel files are the same questions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from abqa.core import hub
from abqa.core.config import shared_data_dir
from abqa.core.errors import AbqaError
from abqa.core.metrics import MULTILINGUAL_LANGUAGES
from abqa.core.squad import SOURCE_PATH, SOURCE_SHARED, SquadDataset, SquadQuestion, load_hub_split, load_squad_file

log = logging.getLogger(__name__)

HUB_XQUAD = "google/xquad"
HUB_SPLIT = "validation"
SHARED_DIRNAME = "xquad"
# The twelve languages XQuAD was translated into (Artetxe et al. 2020; ro was added after the paper).
XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
ID_SEPARATOR = ":"

_NAME = re.compile(r"^xquad\.([A-Za-z][A-Za-z_-]*)$")
_FILE_NAME = re.compile(r"^xquad\.([A-Za-z][A-Za-z_-]*)\.json$")


@dataclass(frozen=True)
class XquadSpec:
    """One language of a multilingual --squad: its name (xquad.de), language code and optional explicit file."""

    name: str
    language: str
    path: Path | None = None


# --- names and ids (pure) --------------------------------------------------------------------------------------------


def qualify_id(language: str, question_id: str) -> str:
    """The run's id of an XQuAD question: unique across languages (XQuAD repeats ids in every language)."""
    return f"{language}{ID_SEPARATOR}{question_id}"


def split_qualified_id(question_id: str) -> tuple[str | None, str]:
    """(language, original id) of a prefixed id; (None, id) for an id without a prefix."""
    language, sep, original = question_id.partition(ID_SEPARATOR)
    return (language, original) if sep and language else (None, question_id)


def _parse_part(part: str) -> XquadSpec | None:
    name, sep, path = part.partition("=")
    if sep:
        match = _NAME.match(name.strip())
        if not match or not path.strip():
            return None
        return XquadSpec(name.strip().lower(), match.group(1).lower(), Path(path.strip()).expanduser())
    match = _NAME.match(part)
    if match and not Path(part).exists():
        return XquadSpec(part.lower(), match.group(1).lower())
    match = _FILE_NAME.match(Path(part).name)
    if match:
        language = match.group(1).lower()
        return XquadSpec(f"xquad.{language}", language, Path(part).expanduser())
    return None


def parse_xquad_arg(arg: str) -> list[XquadSpec] | None:
    """The languages of a multilingual --squad, in the order given; None when `arg` is not one (a single SQuAD
    file, `squad`, `shared`, ...). Mixing XQuAD parts with other data sets, or naming a language twice, is an
    error that says which part."""
    parts = [part.strip() for part in arg.split(",") if part.strip()]
    specs = [_parse_part(part) for part in parts]
    if not any(specs):
        return None
    others = [part for part, spec in zip(parts, specs) if spec is None]
    if others:
        raise AbqaError(f"--squad {arg}: {', '.join(others)} is not an XQuAD-style data set; in a multilingual "
                        "--squad every part is xquad.<lang>, xquad.<lang>=PATH or a file named xquad.<lang>.json")
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.language in seen:
            raise AbqaError(f"--squad {arg}: language {spec.language!r} is given twice "
                            f"({seen[spec.language]} and {spec.name}); each language is one data set of the run")
        seen[spec.language] = spec.name
    return specs


def with_language(questions: list[SquadQuestion], language: str, name: str) -> list[SquadQuestion]:
    """The questions of one language's file, with prefixed ids, their language and their data set name."""
    return [dataclasses.replace(q, id=qualify_id(language, q.id), language=language, dataset=name) for q in questions]


def combine(parts: list[tuple[XquadSpec, SquadDataset]]) -> SquadDataset:
    """One data set of several languages, in the order given; its sha256 covers every part's name and sha256."""
    questions: list[SquadQuestion] = []
    warnings: list[str] = []
    described = []
    for spec, dataset in parts:
        questions += with_language(dataset.questions, spec.language, spec.name)
        warnings += [f"{spec.name}: {warning}" for warning in dataset.warnings]
        described.append({"name": spec.name, "language": spec.language, "source": dataset.source,
                          "path": dataset.path, "sha256": dataset.sha256, "version": dataset.version,
                          "questions": len(dataset)})
    digest = hashlib.sha256("".join(f"{p['name']}\t{p['sha256']}\n" for p in described).encode("utf-8")).hexdigest()
    sources = {p["source"] for p in described}
    versions = {p["version"] for p in described}
    return SquadDataset(
        version=versions.pop() if len(versions) == 1 else ",".join(p["version"] for p in described),
        sha256=digest, path=",".join(p["name"] for p in described), questions=questions,
        source=sources.pop() if len(sources) == 1 else "mixed", warnings=warnings, parts=described,
    )


# --- loading (side effects at the edge) ---------------------------------------------------------------------------


def shared_xquad_dir() -> Path | None:
    root = shared_data_dir()
    return root / SHARED_DIRNAME if root is not None else None


def local_languages(directory: Path | None = None) -> list[str]:
    """Languages with an xquad.<lang>.json in the shared folder (none when it is not beside the project)."""
    directory = directory if directory is not None else shared_xquad_dir()
    if directory is None or not directory.is_dir():
        return []
    found = (_FILE_NAME.match(path.name) for path in directory.glob("xquad.*.json"))
    return sorted(match.group(1) for match in found if match)


def _unknown_language(spec: XquadSpec) -> AbqaError:
    local = local_languages()
    where = f"; here, in {shared_xquad_dir()}: {', '.join(local)}" if local else ""
    return AbqaError(f"--squad {spec.name}: unknown XQuAD language {spec.language!r}. XQuAD has "
                     f"{', '.join(XQUAD_LANGUAGES)}{where}")


def load_xquad_hub(spec: XquadSpec) -> SquadDataset:
    """The hub's google/xquad config xquad.<lang> through `datasets` (only when installed and online)."""
    return load_hub_split(HUB_XQUAD, HUB_SPLIT, config=f"xquad.{spec.language}", flag=f"--squad {spec.name}",
                          instead=f"give a file: {spec.name}=PATH")


def load_xquad_part(spec: XquadSpec) -> SquadDataset:
    """One language: its explicit file, else the shared copy, else the hub; an error that says what exists."""
    if spec.language not in MULTILINGUAL_LANGUAGES:
        raise _unknown_language(spec)
    if spec.path is not None:
        return load_squad_file(spec.path, source=SOURCE_PATH)
    directory = shared_xquad_dir()
    shared = directory / f"xquad.{spec.language}.json" if directory is not None else None
    if shared is not None and shared.is_file():
        return load_squad_file(shared, source=SOURCE_SHARED)
    if hub.datasets_usable():
        return load_xquad_hub(spec)
    local = local_languages()
    here = (f"the shared folder {directory} has {', '.join(local)}" if local
            else "no shared XQuAD folder is beside the project")
    raise AbqaError(f"--squad {spec.name}: no local copy ({here}) and the hub's {HUB_XQUAD} cannot be used "
                    f"(offline, or `datasets` is not installed); give a file: {spec.name}=PATH")


def resolve_xquad(arg: str) -> SquadDataset:
    """The run's multilingual data set, each language announced in the log."""
    specs = parse_xquad_arg(arg)
    if specs is None:
        raise AbqaError(f"--squad {arg}: not a multilingual data set (expected e.g. xquad.de,xquad.zh)")
    parts = [(spec, load_xquad_part(spec)) for spec in specs]
    for spec, dataset in parts:
        log.warning("XQuAD data: %s, %s %s (%d questions, sha256 %s)", spec.name, dataset.source, dataset.path,
                    len(dataset), dataset.sha256[:12])
    return combine(parts)


def describe_parts(dataset: SquadDataset, questions: list[SquadQuestion]) -> list[dict]:
    """meta.json's per-language view of a run: each part of the data set and how many of its questions ran."""
    evaluated: dict[str | None, int] = {}
    for question in questions:
        evaluated[question.language] = evaluated.get(question.language, 0) + 1
    return [{**part, "evaluated_questions": evaluated.get(part["language"], 0)} for part in dataset.parts]
