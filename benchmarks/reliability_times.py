"""How fast does abqa stop, and does anything outlive it? Seconds from a signal to the exit of `abqa evaluate`, and
from a killed server to the end of its process tree and to the client noticing, over repeated trials.

    abqa export --offline --model-repository /tmp/models
    flock -x /tmp/abqa-cpu.lock python benchmarks/reliability_times.py --model-repository /tmp/models --trials 5 \
        --out benchmarks/results/reliability-times.json

Scenarios (each trial a fresh `abqa evaluate` on a sample of the SQuAD dev set, or the built-in sample):
  sigint, sigterm          the signal mid-run: seconds to exit (130 / 130), meta.json's status
  sigint-hung              the same while the question in flight never comes back (tritonserver suspended)
  sigint-start-server      --start-server: seconds to exit, the server stopped with it
  second-sigint            --start-server, a second Ctrl+C 0.02 s after the first: seconds to exit, then to the end
                           of the server's tree (it stops on its own)
  client-sigkill           --start-server, the client killed with SIGKILL: seconds until the server's tree is gone
  serve-sigkill            `abqa serve` killed with SIGKILL mid-run: seconds until its whole tree is gone, and until
                           the client ends the run as failed
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from abqa.core.config import shared_data_dir
from abqa.core.run import RunFolder
from abqa.serve.process import ServerHandle, start_server

ARMS = "distilbert,bert"
SCENARIOS = ("sigint", "sigterm", "sigint-hung", "sigint-start-server", "second-sigint", "client-sigkill",
             "serve-sigkill")


def data_args() -> list[str]:
    return ["--squad", "shared", "--sample", "300"] if shared_data_dir() else ["--squad", "builtin"]


def client(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "abqa", "evaluate", *data_args(), "--arms", ARMS,
                                 "--no-progress", *args], stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_lines(out: Path, count: int, process: subprocess.Popen, timeout_s: float = 300) -> None:
    path, deadline = RunFolder(out).eval, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        if process.poll() is not None:
            raise RuntimeError(f"client ended early with {process.returncode}")
        time.sleep(0.02)
    raise RuntimeError(f"fewer than {count} answers after {timeout_s} s")


def until_gone(processes: list, started: float, timeout_s: float = 120) -> float:
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    return round(time.monotonic() - started, 2) if not alive else float("nan")


def served_args(server: ServerHandle, repository: Path) -> list[str]:
    return ["--url", server.grpc.address, "--model-repository", str(repository)]


def signal_trial(kind: str, server: ServerHandle, repository: Path, work: Path) -> dict:
    out, log = work / "run", work / "client.log"
    process = client([*served_args(server, repository), "--out", str(out)], log)
    wait_lines(out, 8, process)
    tritonserver = next(p for p in server.processes() if p.name() == "tritonserver")
    if kind == "sigint-hung":
        tritonserver.suspend()
        time.sleep(1.0)
    try:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM if kind == "sigterm" else signal.SIGINT)
        code = process.wait(timeout=300)
        seconds = round(time.monotonic() - started, 2)
    finally:
        if kind == "sigint-hung":
            tritonserver.resume()
    meta = RunFolder(out).read_meta()
    return {"exit_code": code, "seconds": seconds, "status": meta.status.value if meta else None,
            "traceback": "Traceback" in log.read_text()}


def start_server_trial(kind: str, repository: Path, work: Path) -> dict:
    out, log = work / "run", work / "client.log"
    process = client(["--start-server", "--model-repository", str(repository), "--out", str(out)], log)
    wait_lines(out, 8, process)
    tree = psutil.Process(process.pid).children(recursive=True)
    started = time.monotonic()
    process.send_signal(signal.SIGKILL if kind == "client-sigkill" else signal.SIGINT)
    if kind == "second-sigint":
        time.sleep(0.02)   # while the first one is being handled (the run stops within a fraction of a second)
        process.send_signal(signal.SIGINT)
    code = process.wait(timeout=300)
    seconds = round(time.monotonic() - started, 2)
    meta = RunFolder(out).read_meta()
    text = log.read_text()
    return {"exit_code": code, "seconds": seconds, "server_gone_s": until_gone(tree, started),
            "status": meta.status.value if meta else None, "traceback": "Traceback" in text,
            "second_signal_handled": "SIGINT again" in text}


def serve_sigkill_trial(repository: Path, work: Path) -> dict:
    server = start_server(repository, log_path=work / "serve.log")
    tree = server.processes()
    out, log = work / "run", work / "client.log"
    process = client([*served_args(server, repository), "--out", str(out)], log)
    try:
        wait_lines(out, 8, process)
        started = time.monotonic()
        server.process.kill()
        with ThreadPoolExecutor(1) as pool:   # the tree's end and the client's, each timed as it happens
            gone = pool.submit(until_gone, tree, started)
            code = process.wait(timeout=300)
            noticed = round(time.monotonic() - started, 2)
            gone = gone.result()
    finally:
        for leftover in tree:
            try:
                leftover.kill()
            except psutil.Error:
                pass
    meta = RunFolder(out).read_meta()
    return {"exit_code": code, "client_noticed_s": noticed, "server_gone_s": gone,
            "status": meta.status.value if meta else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated subset (each can run under its own short exclusive lock); the results "
                             "are merged into --out")
    args = parser.parse_args(argv)
    chosen = [kind for kind in SCENARIOS if kind in args.scenarios.split(",")]
    repository = args.model_repository.resolve()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="abqa-times-") as tmp:
        def work(name: str, trial: int) -> Path:
            path = Path(tmp) / f"{name}-{trial}"
            path.mkdir()
            return path

        served = [kind for kind in ("sigint", "sigterm", "sigint-hung") if kind in chosen]
        if served:
            with start_server(repository, log_path=Path(tmp) / "shared-serve.log") as server:
                for kind in served:
                    results[kind] = [signal_trial(kind, server, repository, work(kind, t))
                                     for t in range(args.trials)]
                    print(kind, results[kind], flush=True)
        for kind in ("sigint-start-server", "second-sigint", "client-sigkill"):
            if kind in chosen:
                results[kind] = [start_server_trial(kind, repository, work(kind, t)) for t in range(args.trials)]
                print(kind, results[kind], flush=True)
        if "serve-sigkill" in chosen:
            results["serve-sigkill"] = [serve_sigkill_trial(repository, work("serve-sigkill", t))
                                        for t in range(args.trials)]
            print("serve-sigkill", results["serve-sigkill"], flush=True)
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    results = {kind: results.get(kind, earlier.get(kind)) for kind in SCENARIOS if kind in results or kind in earlier}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    for kind, trials in results.items():
        for field in ("seconds", "server_gone_s", "client_noticed_s"):
            values = [trial[field] for trial in trials if field in trial]
            if values:
                print(f"{kind:<20} {field:<17} median {statistics.median(values):6.2f}  max {max(values):6.2f}  "
                      f"(n={len(values)})")
        codes = sorted({trial["exit_code"] for trial in trials})
        statuses = sorted({str(trial["status"]) for trial in trials})
        tracebacks = sum(trial.get("traceback", False) for trial in trials)
        print(f"{kind:<20} exit codes {codes}, meta.json status {statuses}, tracebacks {tracebacks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
