"""Does `abqa serve` survive overload? Steps of many concurrent users, repeated, each against a server that is
checked afterwards: did tritonserver crash, how many requests were answered, rejected (queue full) or failed.

    abqa export --offline --model-repository /tmp/models           # real-size stand-ins
    flock -x /tmp/abqa-cpu.lock python benchmarks/overload.py --model-repository /tmp/models \
        --users 64,128 --duration 30s --repeat 6 --out benchmarks/results/overload.json
    ... --max-queue-size 0      # the server without a queue bound, for comparison

Each step is one `abqa loadtest` run (Locust, one user per connection, no think time) against one server that serves
every step in turn (a step inherits what the previous one left queued); a server that crashed is reported with the
end of its log and started again for the next step, with a log of its own.
The figures go to --out (one JSON object per step) and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from abqa.core.config import split_csv
from abqa.core.run import LoadDocument, RunFolder
from abqa.serve.process import ServerHandle, start_server

# Messages that say the server refused a request because its queue was full (Triton's dynamic batcher).
REJECTED = "Exceeds maximum queue size"
# What a crash of tritonserver or its python backend leaves in the server's output.
CRASH_MARKERS = ("Signal (", "terminate called", "lock_exception", "Segmentation fault", "exited unexpectedly")


def run_step(server: ServerHandle, repository: Path, users: int, duration: str, work: Path, protocol: str,
             request_timeout_s: float) -> dict:
    out = work / f"users-{users}"
    endpoint = server.endpoint(protocol)
    command = [sys.executable, "-m", "abqa", "loadtest", "--users", str(users), "--duration", duration,
               "--url", endpoint.address, "--protocol", protocol, "--metrics-url", endpoint.metrics_url,
               "--request-timeout", f"{request_timeout_s:g}", "--model-repository", str(repository), "--out", str(out)]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall_s = time.monotonic() - started
    rows = LoadDocument.read(RunFolder(out).load).rows if RunFolder(out).load.is_file() else []
    requests = sum(row.requests for row in rows)
    failures = sum(row.failures for row in rows)
    rejected = sum(count for row in rows for message, count in row.failure_messages.items() if REJECTED in message)
    # Triton's view of the answered requests (its counters leave refused ones out): time queued, time in all.
    served = [row.server for row in rows if row.server is not None and row.server.request_count]
    count = sum(view.request_count for view in served)
    queue_ms = sum(view.queue_us or 0 for view in served) / count / 1000 if count else None
    request_ms = sum(view.request_us or 0 for view in served) / count / 1000 if count else None
    return {"users": users, "requests": requests, "answered": requests - failures, "rejected": rejected,
            "other_failures": failures - rejected, "loadtest_exit_code": completed.returncode,
            "p95_ms_all_requests": {row.arm: row.latency_ms.p95 for row in rows},
            "server_answered": count, "server_queue_ms_mean": _round(queue_ms),
            "server_request_ms_mean": _round(request_ms), "wall_s": round(wall_s, 1),
            "failure_messages": {message: count for row in rows for message, count in row.failure_messages.items()}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def crashed(server: ServerHandle) -> tuple[bool, str]:
    """Whether the server died (or logged a crash) during the step, and the lines that say so."""
    log = server.log_tail(200)
    lines = [line for line in log.splitlines() if any(marker in line for marker in CRASH_MARKERS)]
    alive = server.is_running() and any(process.name() == "tritonserver" for process in server.processes()[1:])
    if alive and not lines:
        return False, ""
    return True, "\n".join(lines[-10:]) or log[-2000:]


def start(repository: Path, log_path: Path, max_queue_size: int | None) -> ServerHandle:
    options = {} if max_queue_size is None else {"max_queue_size": max_queue_size}
    return start_server(repository, log_path=log_path, **options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--users", default="64,128")
    parser.add_argument("--duration", default="30s")
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--max-queue-size", type=int, default=None,
                        help="per model (abqa serve --max-queue-size; 0 = unbounded); default: config.pbtxt's")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one object per step")
    parser.add_argument("--logs", type=Path, default=None, help="keep the server logs here (default: beside --out)")
    args = parser.parse_args(argv)

    users = [int(n) for n in split_csv(args.users)]
    logs = args.logs or args.out.with_suffix("")
    logs.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    steps = []
    server = None
    with tempfile.TemporaryDirectory(prefix="abqa-overload-") as tmp, open(args.out, "w") as out:
        try:
            for repetition in range(1, args.repeat + 1):
                for step_users in users:
                    if server is None or not server.is_running():
                        log_path = logs / f"serve-r{repetition}-u{step_users}.log"
                        server = start(args.model_repository.resolve(), log_path, args.max_queue_size)
                    step = run_step(server, args.model_repository, step_users, args.duration,
                                    Path(tmp) / f"r{repetition}", args.protocol, args.request_timeout)
                    time.sleep(2.0)  # a crash at the end of the step shows in the log a moment later
                    step["crashed"], step["crash_lines"] = crashed(server)
                    step.update(repetition=repetition, max_queue_size=args.max_queue_size, protocol=args.protocol,
                                duration=args.duration, server_log=str(server.log_path))
                    print(json.dumps(step), file=out, flush=True)
                    steps.append(step)
                    print(f"r{repetition} {step_users:>4} users: {step['requests']:>6} requests, "
                          f"{step['answered']:>6} answered, {step['rejected']:>6} rejected, "
                          f"{step['other_failures']:>6} other failures, answered ones queued "
                          f"{step['server_queue_ms_mean']} ms on average, crashed: {step['crashed']}", flush=True)
                    if step["crashed"]:
                        server.stop(timeout_s=20)
                        server = None
        finally:
            if server is not None:
                server.stop()
    print()
    for step_users in users:
        mine = [s for s in steps if s["users"] == step_users]
        queued = [s["server_queue_ms_mean"] for s in mine if s["server_queue_ms_mean"] is not None]
        print(f"{step_users:>4} users: {len(mine)} steps, {sum(s['crashed'] for s in mine)} crashed; "
              f"{sum(s['requests'] for s in mine)} requests, {sum(s['answered'] for s in mine)} answered, "
              f"{sum(s['rejected'] for s in mine)} rejected, {sum(s['other_failures'] for s in mine)} other failures; "
              f"answered requests queued {min(queued, default=0):.0f}-{max(queued, default=0):.0f} ms on average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
