"""SQuAD data: typed questions, a validating loader and seeded subsets.

The official layout is `{"version", "data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}]}]}]}]}`. Every error names where it is: the article (title and index), the
paragraph index and the question id, so a broken file can be fixed without a debugger.

Loaders for a file, the Hugging Face hub (through `datasets`, when installed) and the small built-in sample in
`abqa/core/sample/` written for this project (original text, not SQuAD's). Which of them a run uses (`--squad`)
is `abqa.core.data_sources`'s choice; multilingual data sets are built from these pieces by `abqa.core.xquad`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from abqa.core.errors import AbqaError
from abqa.core.io import read_json_file
from abqa.core.limits import context_too_long
from abqa.core.scoring import ScoringRule, rule_for, squad_rule

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

    @property
    def rule(self) -> ScoringRule:
        """How its answers are scored (`abqa.core.scoring`): MLQA's convention when it is made of language parts
        (XQuAD), else the official SQuAD script of its version."""
        return rule_for(self.version, multilingual=bool(self.parts))


# --- parsing and validation (pure) -------------------------------------------------------------------------------


def detect_version(obj: Any) -> str:
    """"2.0" when the file says so (its "version" is "v2.0" in the official file) or when any question carries
    `is_impossible`; otherwise "1.1": the two official SQuAD scripts there are (`abqa.core.scoring`)."""
    declared = str(obj.get("version", "") if isinstance(obj, dict) else "").strip().lower().lstrip("v")
    if declared.startswith("2"):
        return "2.0"
    for article in _list_under(obj, "data"):
        for paragraph in _list_under(article, "paragraphs"):
            if any(isinstance(qa, dict) and "is_impossible" in qa for qa in _list_under(paragraph, "qas")):
                return "2.0"
    return "1.1"


def _list_under(obj: Any, key: str) -> list:
    """obj[key] when obj is an object and that is a list; otherwise nothing (parse_squad names the problem)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, list) else []


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
    version = version or detect_version(obj)
    rule = squad_rule(version, where=where)
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
            too_long = context_too_long(context)
            if too_long:
                problems.append(f"{paragraph_where}{_first_id(paragraph)}: {too_long}")
                continue
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                problems.append(f"{paragraph_where}: \"qas\" missing or not a list")
                continue
            for qa_index, qa in enumerate(qas):
                question = _parse_question(qa, qa_index, paragraph_where, title, context, rule, problems, warnings)
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


def _first_id(paragraph: dict) -> str:
    qas = paragraph.get("qas")
    first = qas[0] if isinstance(qas, list) and qas and isinstance(qas[0], dict) else {}
    return f" (question {first['id']})" if isinstance(first.get("id"), str) else ""


def _parse_question(qa: Any, qa_index: int, paragraph_where: str, title: str, context: str, rule: ScoringRule,
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
    if not raw_answers and not rule.allows_no_answer:
        hint = " (the file has unanswerable questions: use --version 2.0)" if qa.get("is_impossible") else ""
        problems.append(f"{where}: no reference answers (SQuAD v{rule.squad_version} needs at least one){hint}")
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
    """The questions a run evaluates: a seeded random `sample` (kept in split order), then the first `limit`.
    A data set of several language parts (abqa.core.xquad) is sampled and limited in each language on its own."""
    if dataset.parts:
        return _select_per_language(dataset, limit=limit, sample=sample, seed=seed)
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


def _select_per_language(dataset: SquadDataset, *, limit: int | None, sample: int | None,
                         seed: int) -> list[SquadQuestion]:
    """`select_questions` applied to each language on its own (same seed), languages in the run's order: with one
    seed the sample takes the same positions in every language (the same questions in XQuAD's parallel files)."""
    selected: list[SquadQuestion] = []
    for part in dataset.parts:
        own = [question for question in dataset.questions if question.language == part["language"]]
        single = SquadDataset(dataset.version, part["sha256"], part["path"], own, part["source"])
        selected += select_questions(single, limit=limit, sample=sample, seed=seed)
    return selected


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
