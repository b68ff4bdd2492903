"""Start `abqa serve` as a child process and get a handle on it: for tests, evaluate, loadtest and benchmark.

    from abqa.serve.process import server_for_run, start_server

    with start_server("model_repository") as server:       # free loopback ports, waits until every model answers
        client = TritonClient(server.grpc)                  # server.grpc / server.http: Endpoints
        ...
    # stopped: tritonserver, its python backend stubs and the serve process are gone

    with server_for_run(repository, arms, "grpc") as (server, endpoint):   # the same, announced, for a run
        ...

tritonserver is the serve process's (`server.pid`) child, and the python backend stubs that run the ONNX Runtime
sessions are tritonserver's, so `server.rss_bytes()` (the whole tree) is the server's memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from abqa.core.config import DEFAULT_HOST
from abqa.core.errors import AbqaError
from abqa.core.processes import reap, spawn, stop_process
from abqa.triton.endpoint import Endpoint

DEFAULT_START_TIMEOUT_S = 180.0
# The line `abqa serve` prints once every model answers (abqa.serve.server.READY_PREFIX; not imported from
# there so that this module stays free of the server's imports).
READY_PREFIX = "abqa serve: ready"


@dataclass
class ServerHandle:
    """A running `abqa serve`; `http` and `grpc` are the `Endpoint`s a client on this machine uses (both with the
    server's metrics URL)."""

    process: subprocess.Popen
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    models: tuple[str, ...]
    log_path: Path
    _owned_log_dir: Path | None = field(default=None, repr=False)
    _left_to_stop: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def endpoint(self, protocol: str) -> Endpoint:
        return Endpoint.local(protocol, self.host, http_port=self.http_port, grpc_port=self.grpc_port,
                              metrics_port=self.metrics_port)

    @property
    def http(self) -> Endpoint:
        return self.endpoint("http")

    @property
    def grpc(self) -> Endpoint:
        return self.endpoint("grpc")

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def processes(self) -> list:
        """psutil processes of the server: the serve process, tritonserver and its python backend stubs."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        """Resident memory of the whole server tree now (sample it repeatedly for a peak)."""
        import psutil

        total = 0
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def let_stop(self) -> None:
        """SIGTERM without waiting: the server stops on its own, tritonserver with it, within seconds (its guardian
        sees to that if it cannot); stop() then returns at once. For a run that was interrupted: it stops now."""
        if self.is_running():
            self.process.send_signal(signal.SIGTERM)
        self._left_to_stop = True

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, wait for the clean shutdown, then make sure nothing of the tree is left. Returns the exit code."""
        if self._left_to_stop:
            return self.process.poll()
        tree = self.processes()[1:]
        stop_process(self.process, grace_s=timeout_s)
        reap(tree)
        if self._owned_log_dir is not None and self.process.returncode == 0:
            import shutil

            shutil.rmtree(self._owned_log_dir, ignore_errors=True)
        return self.process.returncode

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def free_ports(count: int, host: str = DEFAULT_HOST) -> list[int]:
    """Ports the OS says are free now (held open together, so they differ)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def serve_command(repository: Path, *, arms=None, host: str, http_port: int, grpc_port: int, metrics_port: int,
                  threads: int | None, instances: int | None, ready_timeout_s: float,
                  thread_plan: str | None = None, max_queue_size: int | None = None) -> list[str]:
    command = [
        sys.executable, "-m", "abqa", "serve",
        "--model-repository", str(repository),
        "--host", host,
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        "--ready-timeout", str(ready_timeout_s),
    ]
    if arms:
        command += ["--arms", ",".join(arms)]
    if thread_plan is not None:
        command += ["--thread-plan", thread_plan]
    if threads is not None:
        command += ["--threads", str(threads)]
    if instances is not None:
        command += ["--instances", str(instances)]
    if max_queue_size is not None:
        command += ["--max-queue-size", str(max_queue_size)]
    return command


def start_server(
    repository: str | os.PathLike,
    *,
    arms: list[str] | tuple[str, ...] | None = None,
    host: str = DEFAULT_HOST,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    threads: int | None = None,
    instances: int | None = None,
    thread_plan: str | None = None,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    log_path: str | os.PathLike | None = None,
    max_queue_size: int | None = None,
) -> ServerHandle:
    """Launch `python -m abqa serve` and return once every model answers; ports left None are chosen free.

    Raises AbqaError with the end of the server's output when it exits or does not get ready in `timeout_s`.
    """
    from abqa.serve.repository import discover_arms, select_arms

    repository = Path(repository).resolve()
    models = tuple(select_arms(discover_arms(repository), list(arms or ())))
    # A free port can be taken between our probe and the server's bind; when it is one we chose, try again.
    requested = {port for port in (http_port, grpc_port, metrics_port) if port is not None}
    for attempt in range(1, 4):
        chosen = iter(free_ports(3, host))
        ports = [port if port is not None else next(chosen) for port in (http_port, grpc_port, metrics_port)]
        try:
            return _start_once(repository, models, host, ports, threads, instances, timeout_s, log_path,
                               max_queue_size, thread_plan)
        except _PortTaken as taken:
            if taken.port in requested or attempt == 3:
                raise AbqaError(taken.message) from None
    raise AssertionError("unreachable")


@contextlib.contextmanager
def server_for_run(repository: str | os.PathLike, arms: Sequence[str], protocol: str, *,
                   echo: Callable[[str], None] = print, threads: int | None = None, thread_plan: str | None = None,
                   log_path: str | os.PathLike | None = None) -> Iterator[tuple[ServerHandle, Endpoint]]:
    """`--start-server`: `abqa serve` on free loopback ports for one run, announced through `echo`; yields the
    handle and the endpoint the run speaks `protocol` to, and stops the server when the run is over."""
    echo(f"starting abqa serve on {repository} for arms {', '.join(arms)} ...")
    with start_server(repository, arms=list(arms), threads=threads, thread_plan=thread_plan,
                      log_path=log_path) as server:
        echo(f"abqa serve ready (pid {server.pid}): HTTP {server.http.url}, gRPC {server.grpc.url}, "
             f"metrics {server.http.metrics_url}")
        yield server, server.endpoint(protocol)


class _PortTaken(Exception):
    def __init__(self, port: int, message: str):
        super().__init__(message)
        self.port, self.message = port, message


def _start_once(repository: Path, models: tuple[str, ...], host: str, ports: list[int], threads, instances,
                timeout_s: float, log_path, max_queue_size: int | None = None,
                thread_plan: str | None = None) -> ServerHandle:
    owned_dir = None
    if log_path is None:
        owned_dir = Path(tempfile.mkdtemp(prefix="abqa-serve-"))
        log_path = owned_dir / "serve.log"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port, metrics_port = ports
    command = serve_command(repository, arms=models, host=host, http_port=http_port, grpc_port=grpc_port,
                            metrics_port=metrics_port, threads=threads, instances=instances, ready_timeout_s=timeout_s,
                            max_queue_size=max_queue_size, thread_plan=thread_plan)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log_file:
        # A session of its own (see abqa.core.processes); SIGTERM when the caller dies, even of a SIGKILL, so that
        # no server is left behind holding its ports and memory. The callers start it from their main thread.
        process = spawn(command, stdout=log_file, stderr=subprocess.STDOUT, env=env, die_with_parent=True)
    handle = ServerHandle(process, host, http_port, grpc_port, metrics_port, models, log_path, owned_dir)
    deadline = time.monotonic() + timeout_s + 30  # the server enforces timeout_s itself; this is the backstop
    while True:
        text = _read(log_path)
        if READY_PREFIX in text:
            return handle
        if process.poll() is not None:
            text, tail = _read(log_path), _tail(log_path)
            _cleanup_failed(handle)
            taken = re.search(r"port (\d+) on \S+ is not available", text)
            if taken:
                line = text[text.rfind("\n", 0, taken.start()) + 1:].splitlines()[0]
                raise _PortTaken(int(taken.group(1)), line)
            raise AbqaError(f"abqa serve exited with code {process.returncode} before it was ready:\n{tail}")
        if time.monotonic() > deadline:
            tail = _tail(log_path)
            handle.stop(timeout_s=20)
            raise AbqaError(f"abqa serve was not ready within {timeout_s:.0f} s:\n{tail}")
        time.sleep(0.2)


def _cleanup_failed(handle: ServerHandle) -> None:
    handle.stop(timeout_s=20)
    if handle._owned_log_dir is not None:
        import shutil

        shutil.rmtree(handle._owned_log_dir, ignore_errors=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def last_lines(path: Path, lines: int = 40) -> str:
    """The file's last `lines` lines; "" when it is missing or empty."""
    return "\n".join(_read(path).splitlines()[-lines:])


def _tail(path: Path, lines: int = 40) -> str:
    return last_lines(path, lines) or "(no output)"
