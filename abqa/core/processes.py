"""Supervised child processes: start one in a session of its own, stop it for sure.

    process = spawn(command, stdout=log_file, die_with_parent=True)
    ...
    stop_process(process, grace_s=15)     # SIGTERM, wait, SIGKILL to its process group, reap

Every child abqa supervises (`abqa serve` for a run, Locust steps) runs in a session of its own: a Ctrl+C meant
for the caller's terminal does not reach it twice, and when it does not stop on SIGTERM, its whole process group
(only what it started) can be killed at once.

`die_with_parent` asks Linux to signal the child when its parent dies (prctl PR_SET_PDEATHSIG), so that it does
not outlive a parent killed with SIGKILL, which runs no clean-up. It is opt-in per call because the kernel ties
it to the *thread* that started the child, not the process: a child started from a short-lived worker thread
would be signalled when that thread ends. Start such children from a thread that lives as long as they should
(the main thread). Elsewhere than on Linux it does nothing.

A process whose child's death signal would not end it promptly (tritonserver's SIGTERM starts a graceful shutdown
that waits on a backend that died with the parent) hands it to a guardian as well:

    guardian = start_guardian([tritonserver_pid])   # a tiny process reading a pipe this process holds

When this process ends, however (SIGKILL included), the pipe closes, and the guardian kills those processes and
their descendants with SIGKILL at once; after a clean shutdown there is nothing left for it to kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any, Iterable, Sequence

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def spawn(command: Sequence[str], *, die_with_parent: bool = False,
          death_signal: int = signal.SIGTERM, **popen_kwargs: Any) -> subprocess.Popen:
    """Start `command` in a new session (stdin from /dev/null unless given); the rest goes to subprocess.Popen.

    With `die_with_parent` (Linux), the child gets `death_signal` when the thread that started it ends; SIGTERM by
    default, so that it can clean up after itself (`abqa serve` stops tritonserver, Locust writes its files).
    """
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    preexec = _parent_death_signal(death_signal) if die_with_parent and sys.platform.startswith("linux") else None
    return subprocess.Popen(list(command), start_new_session=True, preexec_fn=preexec, **popen_kwargs)


def _parent_death_signal(signum: int):
    """A preexec function (it runs in the child between fork and exec) that sets PR_SET_PDEATHSIG."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signum)

    return set_death_signal


def stop_process(process: subprocess.Popen, *, grace_s: float, kill_wait_s: float = 10.0) -> int | None:
    """SIGTERM, up to `grace_s` for it to end, then SIGKILL to its process group; reaped. Returns its exit code.

    The group is killed only when the child leads one of its own (started by `spawn`), never the caller's.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait(timeout=kill_wait_s)
    return process.returncode


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(process.pid) == process.pid and process.pid != os.getpgrp():
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


def reap(processes: Iterable, timeout_s: float = 10.0, *, on_kill=None) -> None:
    """Wait up to `timeout_s` for psutil `processes` to end, then kill those left (`on_kill(process)` first)."""
    import psutil

    unique = list({process.pid: process for process in processes}.values())
    _, alive = psutil.wait_procs(unique, timeout=timeout_s)
    for process in alive:
        if on_kill is not None:
            on_kill(process)
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def start_guardian(pids: Iterable[int]) -> subprocess.Popen:
    """A guardian for `pids` (see the module note): keep the returned process referenced for as long as this process
    lives; its stdin is the pipe whose end of file means "this process is gone"."""
    import psutil

    targets = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            targets += [str(pid), repr(psutil.Process(pid).create_time())]
    return spawn([sys.executable, "-m", "abqa.core.processes", "guard", *targets], stdin=subprocess.PIPE,
                 stdout=subprocess.DEVNULL)


def _guard(targets: list[str]) -> int:
    """The guardian's main: wait for end of file on stdin, then SIGKILL every target still alive (matched by pid
    and start time, never a recycled pid) and every descendant of it."""
    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl+C is for the parent; the guardian acts when it is gone
    sys.stdin.buffer.read()
    victims = []
    for pid, created in zip(targets[::2], targets[1::2]):
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(int(pid))
            if process.create_time() == float(created):
                victims += [process, *process.children(recursive=True)]
    for process in victims:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(victims, timeout=5)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["guard"]:
    sys.exit(_guard(sys.argv[2:]))
