"""Which process serves the endpoint, and the peak resident memory of the client and of that server during a run."""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import threading
from dataclasses import dataclass

from abqa.triton.endpoint import Endpoint

log = logging.getLogger(__name__)


@dataclass
class ServerProcess:
    kind: str          # "abqa-serve" (the root runs `abqa serve`) | "triton" (any other process on the port)
    pid: int           # the root of the server's process tree


def client_peak_rss_mb() -> float:
    """This process's peak resident memory so far (the kernel's high-water mark, not a sample)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024.0 if sys.platform != "darwin" else peak / 2**20, 1)


def find_server_process(endpoint: Endpoint) -> ServerProcess | None:
    """The process listening on the endpoint's port when it is on this machine, and the `abqa serve` above it.

    Returns None when the host is remote or the listener cannot be seen (another user's process, no psutil).
    """
    if not endpoint.is_local:
        return None
    try:
        import psutil
    except ImportError:
        return None
    listener = None
    with contextlib.suppress(psutil.Error, OSError):
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == endpoint.port \
                    and connection.pid:
                listener = connection.pid
                break
    if listener is None:
        return None
    try:
        process = psutil.Process(listener)
        for candidate in [process, *process.parents()]:
            if _is_abqa_serve(candidate.cmdline()):
                return ServerProcess("abqa-serve", candidate.pid)
    except psutil.Error:
        pass
    return ServerProcess("triton", listener)


def _is_abqa_serve(cmdline: list[str]) -> bool:
    """`abqa serve ...` or `python -m abqa serve ...`."""
    for index, part in enumerate(cmdline[:-1]):
        if (part == "abqa" or part.endswith("/abqa")) and cmdline[index + 1] == "serve":
            return True
    return False


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants now."""
    import psutil

    total = 0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


class PeakSampler:
    """Samples the resident memory of a process tree in a daemon thread and keeps the peak."""

    def __init__(self, pid: int | None, interval_s: float = 0.5):
        self.pid = pid
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="abqa-rss-sampler", daemon=True)

    def __enter__(self) -> "PeakSampler":
        if self.pid is not None:
            self.sample()
            self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if self.pid is not None:
            self.sample()

    def sample(self) -> None:
        try:
            self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self.pid))
        except Exception as exc:  # noqa: BLE001 - memory sampling must never end a run
            log.debug("rss sample of %s failed: %s", self.pid, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    @property
    def peak_mb(self) -> float | None:
        return round(self.peak_bytes / 2**20, 1) if self.pid is not None and self.peak_bytes else None
