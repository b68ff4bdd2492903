"""`abqa serve`: a real Triton Inference Server (PyTriton's tritonserver) serving every arm of the repository.

PyTriton's tritonserver has only the python backend, so each arm is bound as a PyTriton inference callable
that runs an ONNX Runtime CPU session in this process; Triton in front of it does the protocol (KServe v2 over
HTTP and gRPC), the dynamic batching, the statistics and the metrics, with the tensors, max_batch_size,
batching and instance count that the arm's config.pbtxt declares. This is the side-effect edge of the stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from abqa.core.config import (DEFAULT_HOST, DEFAULT_MAX_QUEUE_SIZE, DEFAULT_THREAD_PLAN, GRPC_PORT, HTTP_PORT,
                              METRICS_PORT)
from abqa.core.errors import AbqaError
from abqa.core.processes import reap, start_guardian
from abqa.serve.process import READY_PREFIX
from abqa.serve.repository import (ArmModelConfig, ThreadPlan, discover_arms, plan_threads, read_arm_model_config,
                                   select_arms)
from abqa.triton.endpoint import Endpoint, is_loopback

log = logging.getLogger(__name__)

# Triton's repository API (load/unload) stays behind PyTriton's access token; statistics, metadata, health
# and inference are open, as on the official server, because evaluate and loadtest read them.
RESTRICTED_ENDPOINTS = ["model-repository", "shared-memory", "trace", "logging"]


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


def make_infer_callable(run: Callable[[list[str], dict], list], output_names: list[str]) -> Callable:
    """A PyTriton inference callable: `@batch` hands it the dynamic batch as one array per input; `run` is a
    session's run as the thread plan wraps it (abqa.serve.session.PlanRuntime)."""
    from pytriton.decorators import batch

    @batch
    def infer(**inputs):
        # Triton batches only requests of equal shape (the inputs are not ragged), so one run serves them all.
        results = run(output_names, inputs)
        return dict(zip(output_names, results))

    return infer


def queue_bound(arm: ArmModelConfig, override: int | None) -> int:
    """Requests the arm's dynamic batcher may hold (0 = unbounded): --max-queue-size, else config.pbtxt's, else
    DEFAULT_MAX_QUEUE_SIZE (a repository exported before abqa wrote one gets the bound too)."""
    if override is not None:
        if override < 0:
            raise AbqaError(f"--max-queue-size must be 0 (unbounded) or more, got {override}")
        return override
    return arm.max_queue_size or DEFAULT_MAX_QUEUE_SIZE


def pytriton_binding(arm: ArmModelConfig, max_queue_size: int = 0):
    """inputs, outputs and ModelConfig for `Triton.bind`, as config.pbtxt declares them, with the dynamic batcher's
    queue bounded to `max_queue_size` requests (0 = unbounded)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor

    from abqa.serve.session import numpy_dtype

    inputs = [Tensor(name=s.name, dtype=numpy_dtype(s.data_type), shape=s.dims) for s in arm.inputs]
    outputs = [Tensor(name=s.name, dtype=numpy_dtype(s.data_type), shape=s.dims) for s in arm.outputs]
    batching = arm.max_batch_size > 0
    # No dynamic_batching in config.pbtxt means none on the official server either: PyTriton then writes none.
    batcher = DynamicBatcher(
        max_queue_delay_microseconds=arm.max_queue_delay_us,
        preferred_batch_size=list(arm.preferred_batch_sizes) or None,
        default_queue_policy=QueuePolicy(max_queue_size=max_queue_size) if max_queue_size else None,
    ) if arm.dynamic_batching else None
    config = ModelConfig(batching=batching, max_batch_size=arm.max_batch_size if batching else 0, batcher=batcher)
    return inputs, outputs, config


def build_callables(arm: ArmModelConfig, runtime) -> list[Callable]:
    """One instance per config.pbtxt instance (its sessions as the thread plan says), as the onnxruntime backend
    does; `runtime` is the process's abqa.serve.session.PlanRuntime."""
    from abqa.serve.session import check_session_matches

    callables = []
    for _ in range(runtime.plan.sessions[arm.name].instances):
        instance = runtime.open_instance(arm.name, arm.model_path)
        check_session_matches(instance.session, arm.inputs, arm.outputs, arm.name)
        callables.append(make_infer_callable(instance.run, [spec.name for spec in arm.outputs]))
    return callables


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


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


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
    import psutil

    from abqa.core.machine import cpu_count
    from abqa.serve.libpython import use_interpreter_libpython

    out = out or sys.stdout
    if not log.isEnabledFor(logging.DEBUG):
        # PyTriton logs a dozen INFO lines per start; the ready report below says what matters.
        logging.getLogger("pytriton").setLevel(logging.WARNING)
    arms = load_arms(options.repository, options.arms)
    plan = plan_threads(arms, cpu_count(), kind=options.thread_plan, threads=options.threads,
                        instances=options.instances)
    check_ports_free(options.host, options.ports)
    use_interpreter_libpython()  # before tritonserver is spawned: it inherits our environment

    from abqa.serve.session import PlanRuntime

    runtime = PlanRuntime(plan)
    # Sessions first: a model ONNX Runtime cannot load is an error naming its arm, before any server starts.
    bindings = {arm.name: (build_callables(arm, runtime), *pytriton_binding(arm, queue_bound(arm, options.max_queue_size)))
                for arm in arms}

    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    with contextlib.ExitStack() as stack:
        stack.callback(runtime.close)
        if options.triton_log is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="abqa-serve-")))
            triton_log = log_dir / "tritonserver.log"
        else:
            triton_log = Path(options.triton_log).resolve()
            triton_log.parent.mkdir(parents=True, exist_ok=True)
        config = TritonConfig(
            http_address=options.host, http_port=options.http_port,
            grpc_address=options.host, grpc_port=options.grpc_port,
            metrics_address=options.host, metrics_port=options.metrics_port,
            log_file=triton_log, exit_timeout_secs=5, strict_readiness=True,
            allow_gpu_metrics=False,  # CPU only; also keeps DCGM from printing 'Failed to initialize NVML'
        )
        triton = Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=RESTRICTED_ENDPOINTS))
        for arm in arms:
            callables, inputs, outputs, model_config = bindings[arm.name]
            triton.bind(model_name=arm.name, infer_func=callables, inputs=inputs, outputs=outputs,
                        config=model_config, strict=False)

        me = psutil.Process()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum, _frame):
            # Ignore further signals while unwinding: the clean-up must run to the end.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            raise _Stop(signum)

        for sig in previous:
            signal.signal(sig, on_signal)
        try:
            # PyTriton starts tritonserver, then loads the models through its repository API; the main thread
            # watches, so that a tritonserver that dies (bad flag, port taken meanwhile) is reported at once.
            runner = _Runner(triton.run)
            stack.callback(runner.release)
            _watch_startup(runner, lambda: bool(_tritonservers(me)), triton_log)
            run_error = runner.errors
            if run_error:
                raise AbqaError(f"Triton did not start: {run_error[0]}; tritonserver's log ends:\n{tail(triton_log)}")
            # tritonserver's death signal is SIGTERM, whose graceful shutdown waits a minute on a backend that died
            # with this process: when this process is killed outright, the guardian kills it at once instead.
            guardian = start_guardian(server.pid for server in _tritonservers(me))
            stack.callback(_release, guardian)
            wait_until_answering(arms, options.endpoint("http"), options.ready_timeout_s,
                                 lambda: bool(_tritonservers(me)), lambda: server_output(triton, triton_log))
            print(ready_report(arms, plan, options, os.getpid()), file=out, flush=True)
            while _tritonservers(me):
                time.sleep(1.0)
            raise AbqaError(f"tritonserver exited unexpectedly; its output ends:\n{server_output(triton, triton_log)}")
        except _Stop as stop:
            print(f"abqa serve: {signal.Signals(stop.args[0]).name} received, stopping", file=out, flush=True)
            return 0
        finally:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            # tritonserver and its python backend stubs, listed before it goes and the stubs lose their parent
            # (multiprocessing's resource tracker, also our child, ends by itself when this process does).
            server_tree = [p for server in _tritonservers(me) for p in (server, *_descendants(server))]
            triton.stop()
            reap(server_tree, on_kill=lambda process: log.warning("killing leftover process %d (%s)", process.pid,
                                                                    _name(process)))
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Runner:
    """Runs PyTriton's `run()` in a thread that stays alive until released.

    tritonserver is started with PR_SET_PDEATHSIG, which fires when the *thread* that forked it ends, not the
    process: a thread that returned after `run()` would take the server down with it.
    """

    def __init__(self, fn: Callable[[], None]):
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(fn,), name="pytriton-run", daemon=True)
        self._thread.start()

    def _main(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # reported by the main thread with tritonserver's log
            self.errors.append(exc)
        finally:
            self.done.set()
        self._release.wait()

    def release(self) -> None:
        self._release.set()
        self._thread.join(timeout=30)


def _watch_startup(runner: _Runner, server_alive: Callable[[], bool], triton_log: Path,
                   appear_timeout_s: float = 60.0) -> None:
    seen = False
    t0 = time.monotonic()
    while not runner.done.wait(0.2):
        if server_alive():
            seen = True
        elif seen or time.monotonic() - t0 > appear_timeout_s:
            what = "exited" if seen else f"did not start within {appear_timeout_s:.0f} s"
            raise AbqaError(f"tritonserver {what}; its log ends:\n{tail(triton_log)}")


def server_output(triton, triton_log: Path, lines: int = 25) -> str:
    """The end of tritonserver's own output, where a crash writes its signal and stack trace (stderr, which PyTriton
    captures), else of its log file (--log-file holds the log lines only)."""
    captured = getattr(triton, "_triton_server", None)   # PyTriton 0.7.0 keeps the server private; no accessor
    text = captured.logs() if captured is not None else ""
    return "\n".join(text.splitlines()[-lines:]) if text.strip() else tail(triton_log, lines)


def _release(guardian) -> None:
    """After a clean stop: the guardian sees the pipe close, finds nothing left to kill, and exits."""
    guardian.stdin.close()
    with contextlib.suppress(Exception):
        guardian.wait(timeout=10)


def _tritonservers(me) -> list:
    import psutil

    found = []
    for child in me.children(recursive=False):
        with contextlib.suppress(psutil.Error):
            if child.name() == "tritonserver" and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
    return found


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
