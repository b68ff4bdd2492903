"""`abqa serve`: a real Triton Inference Server (the tritonserver nvidia-pytriton ships) serving every arm of the
repository.

That tritonserver has only the python backend, so each arm is served by the python backend running abqa's
ONNX Runtime model (abqa.serve.backend) in the backend's stub process, one per model instance; Triton does the
protocol (KServe v2 over HTTP and gRPC), the dynamic batching, the rate limiting, the statistics and the metrics,
with the tensors, max_batch_size, batching and instance count that the arm's config.pbtxt declares
(abqa.serve.launch writes what tritonserver reads). This is the side-effect edge of the stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from abqa.core.config import (DEFAULT_HOST, DEFAULT_MAX_QUEUE_SIZE, DEFAULT_THREAD_PLAN, GRPC_PORT, HTTP_PORT,
                              METRICS_PORT)
from abqa.core.errors import AbqaError
from abqa.core.processes import reap, spawn, start_guardian
from abqa.serve.process import READY_PREFIX, last_lines
from abqa.serve.repository import (ArmModelConfig, ThreadPlan, discover_arms, plan_threads, read_arm_model_config,
                                   select_arms)
from abqa.triton.endpoint import Endpoint, is_loopback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    repository: Path
    arms: tuple[str, ...] = ()
    host: str = DEFAULT_HOST
    http_port: int = HTTP_PORT
    grpc_port: int = GRPC_PORT
    metrics_port: int = METRICS_PORT
    thread_plan: str = DEFAULT_THREAD_PLAN  # shared | adaptive | per-session (abqa.serve.repository.ThreadPlan)
    threads: int | None = None            # the wide sessions' or the pool's threads, or each session's (None: planned)
    instances: int | None = None          # instances per model (None: config.pbtxt's instance_group count)
    ready_timeout_s: float = 180.0
    triton_log: Path | None = None        # keep tritonserver's log here (default: a temporary file)
    max_queue_size: int | None = None     # per model, 0 = unbounded (None: config.pbtxt's, else the default)

    @property
    def ports(self) -> dict[str, int]:
        return {"HTTP": self.http_port, "gRPC": self.grpc_port, "metrics": self.metrics_port}

    def endpoint(self, protocol: str) -> Endpoint:
        """Where a client on this machine reaches the server (a wildcard bind is reached on loopback)."""
        return Endpoint.local(protocol, self.host, http_port=self.http_port, grpc_port=self.grpc_port,
                              metrics_port=self.metrics_port)


class _Stop(BaseException):
    """SIGINT or SIGTERM: unwind from wherever the main thread is, through the clean-up below."""


def load_arms(repository: Path, requested: tuple[str, ...] | list[str] | None) -> list[ArmModelConfig]:
    names = select_arms(discover_arms(repository), list(requested or ()))
    return [read_arm_model_config(repository, name) for name in names]


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """A port in use would make tritonserver exit with a log line nobody sees; say which one, before starting."""
    seen: dict[int, str] = {}
    for label, port in ports.items():
        if port in seen:
            raise AbqaError(f"the {label} and {seen[port]} ports are both {port}; give each its own")
        seen[port] = label
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # Servers set SO_REUSEADDR too, so a port left in TIME_WAIT by a previous run is not "in use".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise AbqaError(
                    f"{label} port {port} on {host} is not available ({exc.strerror}); "
                    f"stop what uses it or pass --{label.lower()}-port"
                ) from exc


def queue_bound(arm: ArmModelConfig, override: int | None) -> int:
    """Requests the arm's dynamic batcher may hold (0 = unbounded): --max-queue-size, else config.pbtxt's, else
    DEFAULT_MAX_QUEUE_SIZE (a repository exported before abqa wrote one gets the bound too)."""
    if override is not None:
        if override < 0:
            raise AbqaError(f"--max-queue-size must be 0 (unbounded) or more, got {override}")
        return override
    return arm.max_queue_size or DEFAULT_MAX_QUEUE_SIZE


def check_sessions(arms: list[ArmModelConfig]) -> None:
    """Open every arm's model once before any server starts: a model ONNX Runtime cannot load, or whose tensors
    config.pbtxt misnames, is an error naming its arm here (a stub would only log it). In a child process: the
    weights it loads leave with it, where freed memory would stay with this one and count as the server's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as child:
        child.submit(_open_sessions, arms).result()


def _open_sessions(arms: list[ArmModelConfig]) -> None:
    from abqa.serve.session import check_session_matches, create_session

    for arm in arms:
        session = create_session(arm.model_path, 1, arm=arm.name, spinning=False)
        check_session_matches(session, arm.inputs, arm.outputs, arm.name)


def wait_until_answering(arms: list[ArmModelConfig], endpoint: Endpoint, timeout_s: float,
                         server_alive: Callable[[], bool], log_tail: Callable[[], str]) -> None:
    """Ready means answering: every model READY and one small request through Triton returns its outputs."""
    from abqa.serve.session import probe_inputs
    from abqa.triton.client import InferFailed, RetryPolicy, TritonClient

    deadline = time.monotonic() + timeout_s
    with TritonClient(endpoint, retry=RetryPolicy(attempts=1)) as client:
        for arm in arms:
            last_error = "not READY"
            while True:
                if not server_alive():
                    raise AbqaError(f"tritonserver exited while loading arm {arm.name!r}; its log ends:\n{log_tail()}")
                if client.model_ready(arm.name):
                    try:
                        client.request(arm.name, probe_inputs(arm.inputs), [spec.name for spec in arm.outputs])
                        break
                    except InferFailed as exc:  # connection refused while tritonserver starts, a missing output
                        last_error = str(exc)
                if time.monotonic() > deadline:
                    raise AbqaError(
                        f"arm {arm.name!r} did not answer within {timeout_s:.0f} s ({last_error}); "
                        f"tritonserver's log ends:\n{log_tail()}"
                    )
                time.sleep(0.2)


def ready_report(arms: list[ArmModelConfig], plan: ThreadPlan, options: ServeOptions, pid: int) -> str:
    """What `abqa serve` prints once every model answers: URLs, the thread plan, then one line per model."""
    http, grpc = options.endpoint("http"), options.endpoint("grpc")
    lines = [f"{READY_PREFIX} (pid {pid}) http={http.url} grpc={grpc.address} metrics={http.metrics_url}",
             f"  {plan.describe()}"]
    for arm in arms:
        session = plan.sessions[arm.name]
        queue = queue_bound(arm, options.max_queue_size)
        batching = (f"dynamic batching {list(arm.preferred_batch_sizes)} within {arm.max_queue_delay_us} us, "
                    + (f"queue of {queue}" if queue else "unbounded queue")
                    if arm.max_batch_size > 0 else "no batching")
        threads = ("" if plan.one_at_a_time else
                   f" x {session.intra_op_threads}/{session.narrow_threads} ONNX Runtime threads (idle/busy)"
                   if plan.adaptive else f" x {session.intra_op_threads} ONNX Runtime thread(s)")
        lines.append(
            f"  {arm.name:<16} READY  max_batch_size {arm.max_batch_size}, {batching}, "
            f"{session.instances} instance(s){threads}  [{arm.model_path}]"
        )
    if not is_loopback(options.host):
        lines.append(f"  listening on {options.host}: reachable from other machines")
    lines.append("Stop with Ctrl+C or SIGTERM.")
    return "\n".join(lines)


def serve(options: ServeOptions, *, out=None) -> int:
    """Run until SIGINT/SIGTERM; every exit path stops tritonserver and the python backend stubs."""
    from abqa.core.machine import cpu_count
    from abqa.serve.launch import (Ports, prepare_backends, tritonserver_command, tritonserver_environment,
                                   write_serving_repository)
    from abqa.serve.libpython import use_interpreter_libpython

    out = out or sys.stdout
    arms = load_arms(options.repository, options.arms)
    plan = plan_threads(arms, cpu_count(), kind=options.thread_plan, threads=options.threads,
                        instances=options.instances)
    check_ports_free(options.host, options.ports)
    check_sessions(arms)
    use_interpreter_libpython()  # before tritonserver is spawned: it and its stubs inherit our environment

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="abqa-serve-")))
        triton_log = work / "tritonserver.log" if options.triton_log is None else Path(options.triton_log).resolve()
        triton_log.parent.mkdir(parents=True, exist_ok=True)
        output_path = work / "tritonserver.out"   # its stderr: where a crash writes its signal and stack trace
        repository = write_serving_repository(work, arms, options.repository, plan=plan, queue_bounds={
            arm.name: queue_bound(arm, options.max_queue_size) for arm in arms})
        command = tritonserver_command(
            repository, prepare_backends(work),
            Ports(options.host, options.http_port, options.grpc_port, options.metrics_port), triton_log,
            rate_limited=plan.one_at_a_time)

        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum, _frame):
            # Ignore further signals while unwinding: the clean-up must run to the end.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            raise _Stop(signum)

        for sig in previous:
            signal.signal(sig, on_signal)
        server = None
        try:
            with open(output_path, "wb") as output:
                # Its own session (Ctrl+C reaches it through us), and SIGTERM should this process die first.
                server = spawn(command, die_with_parent=True, stdout=output, stderr=subprocess.STDOUT,
                               env=tritonserver_environment(dict(os.environ)))
            # tritonserver's graceful shutdown waits a minute on a stub that died with this process: when this
            # process is killed outright, the guardian kills it at once instead.
            guardian = start_guardian([server.pid])
            stack.callback(_release, guardian)
            wait_until_answering(arms, options.endpoint("http"), options.ready_timeout_s,
                                 lambda: server.poll() is None, lambda: server_output(output_path, triton_log))
            print(ready_report(arms, plan, options, os.getpid()), file=out, flush=True)
            while server.poll() is None:
                time.sleep(1.0)
            raise AbqaError(f"tritonserver exited unexpectedly ({exit_reason(server.returncode)}); its output ends:\n"
                            f"{server_output(output_path, triton_log)}")
        except _Stop as stop:
            print(f"abqa serve: {signal.Signals(stop.args[0]).name} received, stopping", file=out, flush=True)
            return 0
        finally:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            if server is not None:
                stop_tritonserver(server)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def exit_reason(returncode: int) -> str:
    """subprocess's return code in words: a negative code is the signal that ended the process."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def stop_tritonserver(server: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGINT (Triton's graceful stop: in-flight requests finish, then the stubs are stopped), then whatever of its
    tree is left after `timeout_s` is killed."""
    import psutil

    try:
        process = psutil.Process(server.pid)
        tree = [process, *_descendants(process)]
    except psutil.Error:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        server.send_signal(signal.SIGINT)
    reap(tree, timeout_s, on_kill=lambda process: log.warning("killing leftover process %d (%s)", process.pid,
                                                               _name(process)))
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=1)


def server_output(output_path: Path, triton_log: Path, lines: int = 25) -> str:
    """The end of tritonserver's own output, where a crash writes its signal and stack trace, else of its log
    file (--log-file holds the log lines only)."""
    return last_lines(output_path, lines) or last_lines(triton_log, lines) or "(no output)"


def _release(guardian) -> None:
    """After a clean stop: the guardian sees the pipe close, finds nothing left to kill, and exits."""
    guardian.stdin.close()
    with contextlib.suppress(Exception):
        guardian.wait(timeout=10)


def _descendants(process) -> list:
    import psutil

    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _name(process) -> str:
    try:
        return process.name()
    except Exception:
        return "?"
