"""`abqa <stage>`: one CLI for the whole pipeline.

Each stage keeps its own command in `abqa.<stage>.cli`, a module with `register(subparsers)` that adds
a sub-parser and sets `run=<callable(args) -> int>` as its default. Heavy imports (torch, onnxruntime,
tritonclient) happen inside `run`, so `abqa --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from abqa import __version__
from abqa.core.errors import AbqaError

# Pipeline order; a stage module that is not there yet is skipped rather than breaking the CLI.
STAGE_MODULES = (
    "abqa.export.cli",
    "abqa.serve.cli",
    "abqa.client.cli",
    "abqa.loadtest.cli",
    "abqa.analysis.cli",
    "abqa.benchmark",
    "abqa.router.cli",
    "abqa.ui.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abqa",
        description="A/B benchmark of extractive QA models served by Triton (BERT vs DistilBERT on SQuAD).",
    )
    parser.add_argument("--version", action="version", version=f"abqa {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="<stage>")
    for module_name in STAGE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        code = int(args.run(args) or 0)
    except AbqaError as exc:
        print(f"abqa {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"abqa {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # A full disk, a read-only folder, a file that went away: one line, not a traceback (-v shows it).
        if args.verbose:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"abqa {args.command}: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if argv is None and getattr(args, "exit_at_once", False):
        # An interrupted run has saved and said everything: the interpreter's teardown (torch's, a second or more)
        # is not worth waiting for. Only as the `abqa` command: a caller of main() gets its exit code back.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
