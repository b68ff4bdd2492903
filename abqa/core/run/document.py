"""The base of every JSON document in a run folder: a schema version checked on read, one reader, one writer.

A run folder is the contract between the stages: `abqa evaluate`, `abqa loadtest` and the router's export write
it, `abqa report`, the MLflow integration and the app read it. Each file has one typed model here; producers
build the model and call `write()`, consumers call `read()`, and nothing else parses these files. A document
carries `schema_version`; a folder written by another abqa is refused on read with a message that says which
side is newer, instead of failing somewhere deep in the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from abqa.core.errors import AbqaError
from abqa.core.io import jsonl_line, read_json_file, read_jsonl, write_json_atomic, write_jsonl_atomic

# One number for the whole folder: a change to any file's fields that an older reader would misread bumps it.
SCHEMA_VERSION = 2

T = TypeVar("T", bound="Record")
D = TypeVar("D", bound="Document")


class Record(BaseModel):
    """A typed part of a run-folder file: unknown fields are refused, so producers and readers cannot drift."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Document(Record):
    """A JSON file of a run folder (meta.json, load.json, report.json)."""

    FILENAME: ClassVar[str]
    WRITTEN_BY: ClassVar[str]       # the command that writes the file, for error messages

    schema_version: int = SCHEMA_VERSION

    @classmethod
    def read(cls: type[D], path: str | Path) -> D:
        """The document at `path`; AbqaError (naming the file and the field) when it is not one this abqa reads."""
        path = Path(path)
        data, _ = read_json_file(path, str(path))
        if not isinstance(data, dict):
            raise AbqaError(f"{path}: expected a JSON object at the top level, found {type(data).__name__}")
        check_schema_version(data.get("schema_version"), path, cls.WRITTEN_BY)
        return validate(cls, data, str(path))

    @classmethod
    def read_if_exists(cls: type[D], path: str | Path) -> D | None:
        return cls.read(path) if Path(path).exists() else None

    def write(self, path: str | Path) -> Path:
        """Atomically: a reader never sees half a file, a crash leaves the previous version."""
        return write_json_atomic(path, self.to_dict())


def check_schema_version(found: Any, path: Path, written_by: str) -> None:
    if found == SCHEMA_VERSION:
        return
    if found is None:
        raise AbqaError(f"{path}: written by an abqa older than the run-folder schema (no schema_version; this abqa "
                        f"reads schema {SCHEMA_VERSION}); run `{written_by}` again into a new folder")
    if not isinstance(found, int) or isinstance(found, bool):
        raise AbqaError(f"{path}: schema_version {found!r} is not a whole number")
    side = "a newer" if found > SCHEMA_VERSION else "an older"
    hint = "upgrade abqa to read it" if found > SCHEMA_VERSION else f"run `{written_by}` again into a new folder"
    raise AbqaError(f"{path}: written by {side} abqa (schema_version {found}; this abqa reads {SCHEMA_VERSION}); "
                    f"{hint}")


def validate(model: type[T], data: Any, where: str) -> T:
    """`model` from decoded JSON, or an AbqaError that names `where` and every bad field by its path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AbqaError(f"{where}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    problems = []
    for error in exc.errors()[:limit]:
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"{field}: unknown field")
        elif error["type"] == "missing":
            problems.append(f"{field}: {error['msg']}")
        elif error["type"] == "value_error":   # a rule across fields (EvalRecord's scores and status)
            problems.append((f"{field}: " if field else "") + error["msg"].removeprefix("Value error, "))
        else:
            problems.append(f"{field}: {error['msg']} (got {_short(error.get('input'))})")
    more = exc.error_count() - limit
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


# --- JSON lines (eval.jsonl, requests.jsonl) ------------------------------------------------------------------------


def read_record_lines(model: type[T], path: str | Path) -> Iterator[T]:
    """Each line of a JSONL file as `model`; a torn last line (the writer was killed) is skipped by read_jsonl,
    any other bad line is an AbqaError naming the file, the line and the field."""
    path = Path(path)
    for number, data in read_jsonl(path, numbered=True):
        yield validate(model, data, f"{path}: line {number}{_which(data)}")


def _which(data: Any) -> str:
    if isinstance(data, dict) and "id" in data and "arm" in data:
        return f" (id {data['id']!r}, arm {data['arm']!r})"
    return ""


def record_line(record: Record) -> str:
    return jsonl_line(record.to_dict())


def write_record_lines(path: str | Path, records: Iterable[Record]) -> Path:
    """Replace a JSONL file atomically (a rewrite, not an append)."""
    return write_jsonl_atomic(path, (record.to_dict() for record in records))
