"""SQuAD data: typed questions, a validating loader, seeded subsets, and which data set a run uses.

The official layout is `{"version", "data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}]}]}]}]}`. Every error names where it is: the article (title and index), the
paragraph index and the question id, so a broken file can be fixed without a debugger.

`resolve_squad(arg)` picks the data set of a run: an explicit path, `squad` (the Hugging Face hub's validation
split, through `datasets` when it is installed and online), the shared dev set beside the project, or the small
built-in sample in `abqa/core/sample/` written for this project (original text, not SQuAD's); it logs which.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import socket
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from abqa.core.config import shared_data_dir
from abqa.core.errors import AbqaError
from abqa.core.io import read_json_file

log = logging.getLogger(__name__)

HUB_DATASET = "squad"
SAMPLE_FILENAME = "squad-sample-v1.1.json"
# How many problems one error message lists before it says "and N more".
_MAX_LISTED_PROBLEMS = 10

# Where a run's data came from (meta.json "dataset.source").
SOURCE_PATH, SOURCE_HUB, SOURCE_SHARED, SOURCE_BUILTIN = "path", "hub", "shared", "builtin-sample"


@dataclass(frozen=True)
class SquadAnswer:
    text: str
    answer_start: int


@dataclass(frozen=True)
class SquadQuestion:
    id: str
    question: str
    context: str
    answers: tuple[SquadAnswer, ...]
    title: str
    language: str | None = None      # XQuAD-style multilingual runs: the question's language (scoring rule)
    dataset: str | None = None       # and the data set it came from, e.g. "xquad.de"

    @property
    def answer_texts(self) -> list[str]:
        return [answer.text for answer in self.answers]

    @property
    def has_answer(self) -> bool:
        """False for a SQuAD v2.0 question without an answer (the official script's qid_to_has_ans)."""
        return bool(self.answers)


@dataclass
class SquadDataset:
    version: str
    sha256: str
    path: str | None                 # the file, or e.g. "hub:squad/validation"
    questions: list[SquadQuestion]
    source: str = SOURCE_PATH        # path | hub | shared | builtin-sample
    warnings: list[str] = field(default_factory=list)
    # A multilingual run (abqa.core.xquad): one entry per language data set (name, language, source, path,
    # sha256, questions); empty for a single SQuAD file.
    parts: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.questions)

    def references(self) -> dict[str, list[str]]:
        """{question id: reference answer texts}, in split order: what `metrics.score_predictions` takes."""
        return {question.id: question.answer_texts for question in self.questions}

    def ids(self) -> list[str]:
        return [question.id for question in self.questions]


# --- parsing and validation (pure) -------------------------------------------------------------------------------


def detect_version(obj: Any) -> str:
    """"2.0" when the file says so (its "version" is "v2.0" in the official file) or when any question carries
    `is_impossible`; otherwise "1.1". These are the two scoring rules there are (`abqa.core.metrics`)."""
    declared = str(obj.get("version", "") if isinstance(obj, dict) else "").strip().lower().lstrip("v")
    if declared.startswith("2"):
        return "2.0"
    for article in (obj.get("data") if isinstance(obj, dict) else None) or []:
        for paragraph in (article.get("paragraphs") if isinstance(article, dict) else None) or []:
            for qa in (paragraph.get("qas") if isinstance(paragraph, dict) else None) or []:
                if isinstance(qa, dict) and "is_impossible" in qa:
                    return "2.0"
    return "1.1"


def parse_squad(obj: Any, *, where: str = "SQuAD file", sha256: str = "", path: str | None = None,
                source: str = SOURCE_PATH, version: str | None = None) -> SquadDataset:
    """Validate a decoded SQuAD JSON object and return its questions in file order.

    `version` ("1.1" or "2.0") forces the scoring rules; None detects them from the file (`detect_version`).

    Raises AbqaError listing every structural problem (missing or mistyped fields, an empty context or question,
    a question without answers, a duplicate id). Answer offsets that do not point at the answer text are only
    warnings: the metric compares texts, and some published files carry such offsets.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise AbqaError(f"{where}: not a SQuAD file: expected a JSON object with a list under \"data\"")
    version = _checked_version(version, where) or detect_version(obj)
    problems: list[str] = []
    warnings: list[str] = []
    questions: list[SquadQuestion] = []
    seen: dict[str, str] = {}
    for article_index, article in enumerate(obj["data"]):
        if not isinstance(article, dict):
            problems.append(f"article #{article_index}: not an object")
            continue
        title = article.get("title")
        article_where = f"article #{article_index} ({title!r})" if title is not None else f"article #{article_index}"
        if not isinstance(title, str):
            problems.append(f"{article_where}: \"title\" missing or not a string")
            title = str(title)
        paragraphs = article.get("paragraphs")
        if not isinstance(paragraphs, list):
            problems.append(f"{article_where}: \"paragraphs\" missing or not a list")
            continue
        for paragraph_index, paragraph in enumerate(paragraphs):
            paragraph_where = f"{article_where}, paragraph {paragraph_index}"
            if not isinstance(paragraph, dict):
                problems.append(f"{paragraph_where}: not an object")
                continue
            context = paragraph.get("context")
            if not isinstance(context, str) or not context.strip():
                problems.append(f"{paragraph_where}: \"context\" missing or empty")
                continue
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                problems.append(f"{paragraph_where}: \"qas\" missing or not a list")
                continue
            for qa_index, qa in enumerate(qas):
                question = _parse_question(qa, qa_index, paragraph_where, title, context, version, problems, warnings)
                if question is None:
                    continue
                if question.id in seen:
                    problems.append(f"{paragraph_where}, question {question.id}: duplicate id (first in {seen[question.id]})")
                    continue
                seen[question.id] = paragraph_where
                questions.append(question)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = f"\n  ... and {len(problems) - _MAX_LISTED_PROBLEMS} more" if len(problems) > _MAX_LISTED_PROBLEMS else ""
        raise AbqaError(f"{where}: {len(problems)} problem(s) in the SQuAD data:\n  {listed}{more}")
    if not questions:
        raise AbqaError(f"{where}: no questions in the file")
    return SquadDataset(version, sha256, path, questions, source, warnings)


def _parse_question(qa: Any, qa_index: int, paragraph_where: str, title: str, context: str, version: str,
                    problems: list[str], warnings: list[str]) -> SquadQuestion | None:
    if not isinstance(qa, dict):
        problems.append(f"{paragraph_where}, question #{qa_index}: not an object")
        return None
    question_id = qa.get("id")
    if not isinstance(question_id, str) or not question_id:
        problems.append(f"{paragraph_where}, question #{qa_index}: \"id\" missing or not a string")
        return None
    where = f"{paragraph_where}, question {question_id}"
    text = qa.get("question")
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where}: \"question\" missing or empty")
        return None
    raw_answers = qa.get("answers")
    if not isinstance(raw_answers, list):
        problems.append(f"{where}: \"answers\" missing or not a list")
        return None
    if not raw_answers and version != "2.0":
        hint = " (the file has unanswerable questions: use --version 2.0)" if qa.get("is_impossible") else ""
        problems.append(f"{where}: no reference answers (SQuAD v{version} needs at least one){hint}")
        return None
    answers = []
    for answer_index, answer in enumerate(raw_answers):
        answer_text = answer.get("text") if isinstance(answer, dict) else None
        start = answer.get("answer_start") if isinstance(answer, dict) else None
        if not isinstance(answer_text, str) or not answer_text.strip():
            problems.append(f"{where}: answer #{answer_index} has no \"text\"")
            continue
        if not isinstance(start, int) or isinstance(start, bool):
            problems.append(f"{where}: answer #{answer_index} has no integer \"answer_start\"")
            continue
        if context[start:start + len(answer_text)] != answer_text:
            warnings.append(f"{where}: answer #{answer_index} {answer_text!r} is not at answer_start {start}")
        answers.append(SquadAnswer(answer_text, start))
    if len(answers) != len(raw_answers):
        return None
    return SquadQuestion(question_id, text, context, tuple(answers), title)


SQUAD_VERSIONS = ("1.1", "2.0")


def _checked_version(version: str | None, where: str) -> str | None:
    if version is not None and version not in SQUAD_VERSIONS:
        raise AbqaError(f"{where}: SQuAD version {version!r} is not supported (supported: {', '.join(SQUAD_VERSIONS)})")
    return version


def to_squad_json(questions: list[SquadQuestion], version: str = "1.1") -> dict:
    """The official layout of `questions` (articles and paragraphs regrouped in order of first appearance)."""
    articles: dict[str, dict[str, list]] = {}
    for question in questions:
        paragraphs = articles.setdefault(question.title, {})
        paragraphs.setdefault(question.context, []).append({
            "id": question.id,
            "question": question.question,
            "answers": [{"text": a.text, "answer_start": a.answer_start} for a in question.answers],
        })
    return {
        "version": version,
        "data": [
            {"title": title, "paragraphs": [{"context": context, "qas": qas} for context, qas in paragraphs.items()]}
            for title, paragraphs in articles.items()
        ],
    }


# --- subsets (pure) ------------------------------------------------------------------------------------------------


def select_questions(dataset: SquadDataset, *, limit: int | None = None, sample: int | None = None,
                     seed: int = 0) -> list[SquadQuestion]:
    """The questions a run evaluates: a seeded random `sample` (kept in split order), then the first `limit`."""
    if dataset.parts:  # several languages: --sample and --limit apply to each language (abqa.core.xquad)
        from abqa.core.xquad import select_per_language

        return select_per_language(dataset, limit=limit, sample=sample, seed=seed)
    questions = list(dataset.questions)
    if sample is not None:
        if sample <= 0:
            raise AbqaError(f"--sample {sample}: must be a positive number of questions")
        if sample < len(questions):
            chosen = set(random.Random(seed).sample(range(len(questions)), sample))
            questions = [question for index, question in enumerate(questions) if index in chosen]
    if limit is not None:
        if limit <= 0:
            raise AbqaError(f"--limit {limit}: must be a positive number of questions")
        questions = questions[:limit]
    return questions


# --- loading (side effects at the edge) ---------------------------------------------------------------------------


def load_squad_file(path: str | Path, *, source: str = SOURCE_PATH, version: str | None = None) -> SquadDataset:
    """Read and validate a SQuAD JSON file; its sha256 is that of the bytes on disk."""
    path = Path(path)
    obj, data = read_json_file(path, f"SQuAD file {path}")
    dataset = parse_squad(obj, where=f"SQuAD file {path}", sha256=hashlib.sha256(data).hexdigest(),
                          path=str(path), source=source, version=version)
    if dataset.warnings:
        log.warning("%s: %d answer offset(s) do not point at the answer text (scores are unaffected); first: %s",
                    path, len(dataset.warnings), dataset.warnings[0])
    return dataset


def builtin_sample_path() -> Path:
    return Path(str(resources.files("abqa.core").joinpath("sample", SAMPLE_FILENAME)))


def load_builtin_sample() -> SquadDataset:
    return load_squad_file(builtin_sample_path(), source=SOURCE_BUILTIN)


def hub_reachable(host: str = "huggingface.co", port: int = 443, timeout_s: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def load_squad_hub(name: str = HUB_DATASET, split: str = "validation") -> SquadDataset:
    """The hub's SQuAD split through `datasets` (only when installed and online); sha256 of its official-layout JSON."""
    return load_hub_split(name, split, flag=f"--squad {name}",
                          instead="pass a local file: --squad ../shared/data/squad-v1.1/dev-v1.1.json")


def load_hub_split(name: str, split: str, *, config: str | None = None, flag: str, instead: str) -> SquadDataset:
    """A hub data set in SQuAD's columns (id, title, context, question, answers) through `datasets`, validated like
    a file; its sha256 is that of its official-layout JSON. Errors start with `flag` and end with `instead`."""
    try:
        import datasets  # noqa: F401  (optional: not a dependency of abqa)
    except ImportError:
        raise AbqaError(f"{flag}: the Hugging Face `datasets` package is not installed; `pip install datasets`, "
                        f"or {instead}") from None
    where = "/".join(filter(None, (name, config, split)))
    try:
        rows = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # offline, hub down, unknown name: all the same to the user
        raise AbqaError(f"{flag}: cannot load {where} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
                        f"{instead}") from None
    questions = [
        SquadQuestion(row["id"], row["question"], row["context"],
                      tuple(SquadAnswer(t, int(s)) for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])),
                      row.get("title") or config or name)
        for row in rows
    ]
    obj = to_squad_json(questions)
    canonical = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return parse_squad(obj, where=f"hub dataset {where}", sha256=hashlib.sha256(canonical).hexdigest(),
                       path=f"hub:{where}", source=SOURCE_HUB)


def shared_dev_path(version: str = "1.1") -> Path | None:
    root = shared_data_dir()
    if root is None:
        return None
    if version == "2.0":  # the SQuAD v2.0 dev set, when the shared folder has it
        path = root / "squad-v2.0" / "dev-v2.0.json"
        return path if path.is_file() else None
    return root / "squad-v1.1" / "dev-v1.1.json"


def is_multilingual_arg(arg: str) -> bool:
    """`--squad xquad.de,xquad.zh` (names, `xquad.<lang>=PATH`, or files named xquad.<lang>.json)."""
    from abqa.core.xquad import parse_xquad_arg

    return parse_xquad_arg(arg) is not None


def resolve_squad(arg: str | None) -> SquadDataset:
    """The run's data set, announced in the log.

    `arg` is a path (used as given), `squad` (the hub), `shared` (the dev set beside the project), `builtin`
    (the built-in sample), or None: then the shared dev set when it is there, else the hub when `datasets` is
    installed and the hub answers, else the built-in sample. The shared file comes before the hub because it
    is the same split, already on disk, and checked against the published scores.
    """
    if arg and is_multilingual_arg(arg):  # xquad.de,xquad.zh: one data set per language (abqa.core.xquad)
        from abqa.core.xquad import resolve_xquad

        return resolve_xquad(arg)
    if arg == HUB_DATASET and not Path(arg).exists():
        dataset = load_squad_hub(arg)
        log.warning("SQuAD data: Hugging Face hub %s (%d questions)", dataset.path, len(dataset))
        return dataset
    if arg == "shared":
        path = shared_dev_path()
        if path is None:
            raise AbqaError("--squad shared: ../shared/data/squad-v1.1/dev-v1.1.json is not beside the project")
        return _announce(load_squad_file(path, source=SOURCE_SHARED))
    if arg in ("builtin", "sample"):
        return _announce(load_builtin_sample(), reason=f"--squad {arg}")
    if arg:
        return _announce(load_squad_file(arg, source=SOURCE_PATH))
    path = shared_dev_path()
    if path is not None:
        return _announce(load_squad_file(path, source=SOURCE_SHARED))
    if _datasets_installed() and hub_reachable():
        try:
            dataset = load_squad_hub()
            log.warning("SQuAD data: Hugging Face hub %s (%d questions)", dataset.path, len(dataset))
            return dataset
        except AbqaError as exc:
            log.warning("%s", exc)
    return _announce(load_builtin_sample(), reason="no --squad given, no ../shared/data, no hub")


def resolve_squad_version(arg: str | None, version: str | None = None) -> SquadDataset:
    """`resolve_squad` with `--version`: None keeps the version detected from the data; "2.0" without a file
    (or with `shared`) takes the shared SQuAD v2.0 dev set; a forced version must fit the data (v1.1 rules cannot
    score a question without an answer; v2.0 rules can score any v1.1 file)."""
    _checked_version(version, f"--version {version}")
    if version == "2.0" and arg in (None, "shared"):
        path = shared_dev_path("2.0")
        if path is None:
            raise AbqaError("--version 2.0: no SQuAD v2.0 data beside the project "
                            "(../shared/data/squad-v2.0/dev-v2.0.json); pass --squad PATH/TO/dev-v2.0.json")
        return _announce(load_squad_file(path, source=SOURCE_SHARED, version="2.0"))
    dataset = resolve_squad(arg)
    if version is None or version == dataset.version:
        return dataset
    unanswerable = [question.id for question in dataset.questions if not question.has_answer]
    if version == "1.1" and unanswerable:
        raise AbqaError(f"--version 1.1: {dataset.path} has {len(unanswerable)} question(s) without an answer "
                        f"(e.g. {unanswerable[0]}), which only SQuAD v2.0 scores; use --version 2.0")
    log.warning("SQuAD data: %s is scored with the SQuAD v%s rules (--version %s; the file is v%s)",
                dataset.path, version, version, dataset.version)
    dataset.version = version
    return dataset


def _announce(dataset: SquadDataset, reason: str = "") -> SquadDataset:
    if dataset.source == SOURCE_BUILTIN:
        log.warning(
            "SQuAD data: BUILT-IN SAMPLE (%d questions, %s): %s. "
            "It checks that the pipeline works; its scores say little about the models. "
            "Pass --squad PATH for the real dev set.", len(dataset), dataset.path, reason)
    else:
        label = {SOURCE_SHARED: "shared dev set", SOURCE_PATH: "file"}.get(dataset.source, dataset.source)
        log.warning("SQuAD data: %s %s (%d questions, sha256 %s)", label, dataset.path, len(dataset), dataset.sha256[:12])
    return dataset


def _datasets_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("datasets") is not None
