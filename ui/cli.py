"""`abqa ui`: start the Streamlit app (`ui/app.py`) with these settings, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from abqa.core.config import DEFAULT_HOST, DEFAULT_MODEL_REPOSITORY, DEFAULT_RUNS_DIR

log = logging.getLogger(__name__)

DEFAULT_PORT = 8501
APP_SCRIPT = Path(__file__).with_name("app.py")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="a Streamlit app: every arm's answer to a SQuAD or typed question side by side; browse run reports",
        description="Pick a SQuAD question (by id, title or words) or type a question and a context, and see every "
        "arm's answer, EM/F1 against the reference answers and latency side by side: the models Triton serves (or "
        "a running `abqa router`), and replayed prediction files (on the shared dev set, the real fine-tuned BERT "
        "and DistilBERT answers by default). Stand-ins are labelled. A second tab browses the runs' reports: "
        "verdict, tables and plots.",
    )
    parser.add_argument("--triton-url", default=None, metavar="URL",
                        help="Triton's address: host:port for gRPC, http://host:port for HTTP "
                        "(default: 127.0.0.1:8001)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default=None,
                        help="overrides the protocol the URL implies")
    parser.add_argument("--router-url", default=None, metavar="URL",
                        help="ask through a running `abqa router` instead (each arm pinned in turn), "
                        "e.g. http://127.0.0.1:8080")
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY,
                        help="where each arm's tokenizer/ and abqa-metadata.json are (default: %(default)s)")
    parser.add_argument("--squad", default=None, metavar="PATH|shared|builtin",
                        help="questions to pick from (default: the shared dev set if present, else the hub, else "
                        "the built-in sample)")
    parser.add_argument("--replay", action="append", default=[], metavar="NAME=PREDICTIONS.json",
                        help="also show a prediction file's recorded answers as an arm (repeatable)")
    parser.add_argument("--no-shared-replay", action="store_true",
                        help="do not show the shared real BERT/DistilBERT predictions beside the served arms")
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS_DIR,
                        help="folder of run folders whose reports to browse (default: %(default)s)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.set_defaults(run=run_ui)


def build_settings(args: argparse.Namespace):
    """The app's settings from the command line, with paths made absolute and replay files checked now."""
    from abqa.client.arms import parse_replay_spec
    from abqa.core.errors import AbqaError
    from abqa.ui.logic import UiSettings, triton_target

    replays = []
    for text in args.replay:
        name, path = parse_replay_spec(text)
        if not path.is_file():
            raise AbqaError(f"--replay {text}: {path} is not a file")
        replays.append((name, str(path.resolve())))
    triton_url = args.triton_url or UiSettings.triton_url
    triton_target(triton_url, args.protocol)   # a malformed address fails here, not in the browser
    squad = args.squad
    if squad and squad not in ("squad", "shared", "builtin", "sample"):
        squad = str(Path(squad).resolve())
    return UiSettings(triton_url=triton_url, protocol=args.protocol, router_url=args.router_url,
                      model_repository=str(args.model_repository.resolve()), squad=squad,
                      runs=str(args.runs.resolve()), replays=tuple(replays),
                      shared_replay=not args.no_shared_replay)


def streamlit_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            # No usage statistics, no file watcher (it polls, and costs CPU on a shared machine).
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--global.developmentMode", "false", "--client.toolbarMode", "minimal"]


def check_port_free(host: str, port: int) -> None:
    from abqa.core.errors import AbqaError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise AbqaError(f"--host {host} --port {port}: cannot bind ({exc.strerror}); is another app "
                            "running there? Pick another --port") from None


def run_ui(args: argparse.Namespace) -> int:
    from abqa.ui.logic import SETTINGS_ENV

    settings = build_settings(args)
    check_port_free(args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: the app is reachable from other machines, without authentication", args.host)
    where = f"router {settings.router_url}" if settings.router_url else f"Triton {settings.triton_url}"
    print(f"abqa ui: http://{args.host}:{args.port} ({where}; reports from {settings.runs}); Ctrl+C stops it",
          flush=True)
    process = subprocess.Popen(streamlit_command(args.host, args.port),
                               env={**os.environ, SETTINGS_ENV: settings.to_json()})
    # SIGTERM (a supervisor, a test) ends this process through `finally`, so Streamlit never outlives it.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The terminal's Ctrl+C reached Streamlit too; give it a moment to stop by itself.
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            return process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def _exit_on_sigterm(signum, _frame) -> None:
    raise SystemExit(128 + signum)
