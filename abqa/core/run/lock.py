"""One writer per run folder: an OS lock on `<folder>/.abqa.lock`, held for as long as a command writes there.

    with RunFolder(out).lock("abqa evaluate"):
        ...   # append eval.jsonl, rewrite meta.json

A second command on the same folder is refused at once with a message that names the holder (pid, command, since
when). The lock is `flock(2)` on the file: the kernel drops it when its holder dies, however it dies, so a lock left
by a killed run is simply taken over (and said so); the file keeps the last holder's description for that message.
Within one process the lock is re-entrant for the thread that holds it (`abqa benchmark` holds its folder while the
stages it runs take the same lock); another thread of the process is refused like another process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from abqa.core.errors import AbqaError

log = logging.getLogger(__name__)

LOCK_FILENAME = ".abqa.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a run folder: what the lock file says."""

    pid: int
    command: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command}, since {self.since})"

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "command": self.command, "since": self.since}) + "\n"

    @classmethod
    def parse(cls, text: str) -> "LockHolder | None":
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["command"]), str(data["since"]))
        except (ValueError, KeyError, TypeError):
            return None


class RunFolderBusy(AbqaError):
    """Another process (or thread) writes this run folder now."""


class RunFolderUnwritable(AbqaError):
    """The run folder cannot be written at all (read-only, full, not ours)."""


@dataclass
class _Held:
    fd: int
    thread: int
    depth: int


_held: dict[Path, _Held] = {}
_held_guard = threading.Lock()


def cannot_write(path: Path, exc: OSError) -> RunFolderUnwritable:
    """The one message for a run folder that cannot be written (read-only, full, not ours)."""
    reason = exc.strerror or str(exc)
    return RunFolderUnwritable(f"cannot write to the run folder {path} ({reason}); free space or make it writable, "
                     "or choose another --out")


@contextlib.contextmanager
def lock_run_folder(folder: str | os.PathLike, command: str) -> Iterator[LockHolder]:
    """Hold `folder`'s lock (created with the folder when missing) for the block; `command` names the holder in
    the message a refused writer gets. Raises RunFolderBusy when it is held, AbqaError when the folder cannot be
    written at all."""
    import fcntl

    path = Path(folder).resolve()
    me = LockHolder(os.getpid(), command, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    with _held_guard:
        held = _held.get(path)
        if held is not None:
            if held.thread != threading.get_ident():
                raise RunFolderBusy(f"run folder {path} is being written by another thread of this process "
                                    f"(pid {me.pid}); use another --out")
            held.depth += 1
    if held is not None:
        try:
            yield me
        finally:
            with _held_guard:
                held.depth -= 1
        return

    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILENAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise cannot_write(path, exc) from None
            holder = LockHolder.parse(_read(fd))
            who = holder.describe() if holder is not None else "another process"
            raise RunFolderBusy(f"run folder {path} is in use by {who}; wait for it to finish, or use another "
                                "--out (one writer per run folder)") from None
        previous = LockHolder.parse(_read(fd))
        if previous is not None:
            log.warning("run folder %s: taking over the lock left by %s, which ended without releasing it",
                        path, previous.describe())
        try:
            _rewrite(fd, me.to_json())
        except OSError as exc:
            raise cannot_write(path, exc) from None
        with _held_guard:
            _held[path] = _Held(fd, threading.get_ident(), 1)
        try:
            yield me
        finally:
            with _held_guard:
                del _held[path]
            with contextlib.suppress(OSError):
                _rewrite(fd, "")   # released cleanly: no holder to report
    finally:
        os.close(fd)   # closing the descriptor releases the lock


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", errors="replace")


def _rewrite(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    if text:
        os.write(fd, text.encode("utf-8"))

