"""`abqa report RUN_DIR`: statistics, plots and the HTML/Markdown/JSON report of one run folder."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from abqa.analysis.stats import DEFAULT_RESAMPLES, DEFAULT_SEED
from abqa.flags import add_cost_argument, add_decision_arguments, add_mlflow_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="significance report (McNemar, paired t, bootstrap CIs) and plots for a run folder",
        description="Read eval.jsonl, load.json and meta.json (whichever exist) in RUN_DIR and write "
                    "report.html (self-contained), report.md and report.json there, with plots in RUN_DIR/plots/.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. runs/ab-1")
    parser.add_argument("--bootstrap", type=_positive_int, default=DEFAULT_RESAMPLES, metavar="N",
                        help=f"bootstrap resamples for every confidence interval (default {DEFAULT_RESAMPLES:,})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED})")
    add_decision_arguments(parser, when=" (default: as declared in meta.json; one given here that differs is "
                           "marked as chosen after the data)")
    add_cost_argument(parser)
    add_mlflow_argument(parser)
    parser.set_defaults(run=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from abqa.analysis.report import build_report
    from abqa.core.run import RunFolder
    from abqa.integrations.mlflow_tracking import track_stage

    folder = RunFolder(Path(args.run_dir))
    # One writer per run folder: not while a stage still writes it (a missing folder is build_report's error).
    with folder.lock("abqa report") if folder.path.is_dir() else contextlib.nullcontext():
        report = build_report(args.run_dir, n_resamples=args.bootstrap, seed=args.seed, baseline=args.baseline,
                              margins=args.margin, cost_per_hour=args.cost_per_hour)
    for line in report.verdict:
        print(line)
    for line in report.data.get("notes", []):
        if line.startswith("WARNING"):
            print(f"abqa report: {line}", file=sys.stderr)
    print()
    print(f"HTML:     {report.paths.html}")
    print(f"Markdown: {report.paths.markdown}")
    print(f"JSON:     {report.paths.json}")
    return track_stage(args.mlflow, args.run_dir, "report", 0)
