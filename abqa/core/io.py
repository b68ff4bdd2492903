"""Small file helpers: JSON reading with clear errors, atomic writes and append-and-flush JSON lines."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_json_file(path: str | os.PathLike, where: str) -> tuple[Any, bytes]:
    """Parse a JSON file and return it with its raw bytes (for a content hash). Every failure is an AbqaError that
    starts with `where` (the file or the flag that named it) and says what is wrong."""
    from abqa.core.errors import AbqaError
    from abqa.core.limits import check_file_size, json_depth_bound, too_deep

    try:
        check_file_size(Path(path).stat().st_size, where)
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise AbqaError(f"{where}: not found") from None
    except IsADirectoryError:
        raise AbqaError(f"{where}: a folder, not a file") from None
    except OSError as exc:
        raise AbqaError(f"{where}: cannot be read ({exc.strerror})") from None
    try:
        with json_depth_bound() as depth:
            try:
                text = data.decode("utf-8")
                return check_unicode(json.loads(text), text, where), data
            except RecursionError:
                raise too_deep(where, depth) from None
    except UnicodeDecodeError as exc:
        raise AbqaError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        # An unfinished string or a parse error at the very end: the file was cut short (an interrupted copy).
        ends_early = exc.msg.startswith("Unterminated") or exc.pos >= len(exc.doc.rstrip()) - 1
        hint = " (the file looks truncated)" if ends_early else ""
        raise AbqaError(f"{where}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}") from None


# A \\uXXXX escape of half a surrogate pair: JSON allows it, no UTF-8 file or tokenizer takes it alone.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def check_unicode(obj: Any, text: str, where: str) -> Any:
    """`obj` (decoded from `text`) when every string in it is valid Unicode; an AbqaError naming `where` when one
    holds a lone surrogate (it would fail later, when written as UTF-8). Walks `obj` only when `text` escapes one."""
    from abqa.core.errors import AbqaError

    if not _SURROGATE_ESCAPE.search(text):
        return obj
    pending = [obj]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise AbqaError(f"{where}: text that is not valid Unicode (a lone surrogate escape such as "
                                f"\\ud800) in {value[:60]!r}") from None
        elif isinstance(value, dict):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            pending += value
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write JSON atomically (see atomic_file)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Replace a JSON-lines file atomically (see atomic_file), one record a line as append_jsonl writes them."""
    return write_text_atomic(path, "".join(jsonl_line(record) for record in records))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically (see atomic_file)."""
    with atomic_file(path) as handle:
        handle.write(text)
    return Path(path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", *, newline: str | None = None) -> Iterator[IO]:
    """A file to write `path` through, so readers never see half a file: a temporary file in the same folder,
    fsynced and renamed over `path` in one step when the block ends; removed (and `path` untouched) on an error.

    `mode` is "w" (UTF-8 text; `newline` as for open(), "" for the csv module) or "wb" (bytes, e.g. np.savez).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file: mode {mode!r} is not 'w' or 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    text_options = {} if mode == "wb" else {"encoding": "utf-8", "newline": newline}
    try:
        with os.fdopen(fd, mode, **text_options) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; results are for others to read too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def jsonl_line(record: dict) -> str:
    """One record as a line of a JSON-lines file."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def append_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Append records and flush at once: a run killed a moment later keeps every line written."""
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(jsonl_line(record))
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike, *, numbered: bool = False) -> Iterator[Any]:
    """Yield records (with `numbered`, (line number, record) pairs); a torn last line (the writer was killed
    mid-line) is skipped, any other bad line raises."""
    from abqa.core.errors import AbqaError

    from abqa.core.limits import json_depth_bound, too_deep

    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except UnicodeDecodeError as exc:
        raise AbqaError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            with json_depth_bound() as depth:
                record = check_unicode(json.loads(line), line, f"{path}: line {number}")
        except RecursionError:
            raise too_deep(f"{path}: line {number}", depth) from None
        except json.JSONDecodeError as exc:
            if number == len(lines) and not line.endswith("\n"):
                return
            raise AbqaError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
        yield (number, record) if numbered else record
