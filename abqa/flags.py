"""Command-line flags that more than one command takes, defined once so that their names, grammar and help agree.

Each function adds its flags to an argparse parser or argument group; the commands' own modules (`<stage>/cli.py`,
`abqa/benchmark.py`) pick the groups they need.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ORDERS = ("random", "interleaved", "parallel")
TRAFFIC_MODES = ("split", "parallel")
SQUAD_VERSIONS = ("1.1", "2.0")


class SquadArgAction(argparse.Action):
    """`--squad` given more than once means the comma list of all of them (`--squad xquad.de --squad xquad.zh`
    is `--squad xquad.de,xquad.zh`); once, it is the value as given."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        previous = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, f"{previous},{values}" if previous else values)


def add_squad_argument(group, *, help_default: str) -> None:
    group.add_argument(
        "--squad", default=None, metavar="PATH|squad|shared|builtin|xquad.LANG,...", action=SquadArgAction,
        help="a SQuAD JSON file; `squad`: the Hugging Face hub's validation split (needs `datasets` and network); "
        "`shared`: ../shared/data/squad-v1.1/dev-v1.1.json; `builtin`: the small built-in sample. Multilingual: "
        "xquad.de,xquad.zh,... (comma list or --squad repeated; each language from ../shared/data/xquad/, else the "
        "hub's google/xquad; xquad.LANG=PATH for your own file): ids become LANG:ID, scoring follows MLQA. "
        f"Default: {help_default}")


def add_squad_rules_arguments(group, *, version_help: str = "") -> None:
    """--version and --null-threshold: how answers are scored (SQuAD v1.1 or v2.0)."""
    group.add_argument(
        "--version", choices=SQUAD_VERSIONS, default=None, dest="squad_version",
        help="SQuAD scoring rules (default: from the file: its \"version\", or questions marked is_impossible, mean "
        "2.0). 2.0: unanswerable questions, whose only right answer is \"\" (no answer); without --squad (or with "
        "`shared`) it takes ../shared/data/squad-v2.0/dev-v2.0.json" + version_help)
    group.add_argument(
        "--null-threshold", type=float, default=0.0, metavar="T",
        help="SQuAD v2.0: a served arm answers \"\" when its null score ([CLS] start + end logit) minus its best "
        "span score is above T (default: %(default)s)")


def add_sample_argument(group, *, default: int | None = None, zero_means_all: bool = False) -> None:
    help_text = "a seeded random subset of N questions (--sample applies per language in a multilingual run)"
    if zero_means_all:
        help_text += "; 0 = all"
    group.add_argument("--sample", type=int, default=default, metavar="N", help=help_text + " (default: %(default)s)")


def add_order_argument(group) -> None:
    group.add_argument(
        "--order", choices=ORDERS, default="random",
        help="arm order per question: random (drawn from the seed), interleaved (rotating), parallel (all served "
        "arms in flight at once) (default: %(default)s)")


def add_replay_argument(group) -> None:
    group.add_argument(
        "--replay", action="append", default=[], metavar="NAME=PREDICTIONS.json",
        help="a SQuAD prediction file (question id -> answer) as an arm without latency; repeatable")


def add_load_arguments(group, *, users: str, duration: str) -> None:
    """The sweep: concurrency steps, their length, and where each request goes."""
    group.add_argument("--users", default=users, metavar="N,N,...",
                       help="concurrency steps: simultaneous users, one Locust run each (default: %(default)s)")
    group.add_argument("--duration", default=duration, help="per step: 30s, 1m30s, 90 (default: %(default)s)")
    group.add_argument("--mode", choices=TRAFFIC_MODES, default="split",
                       help="split: each request to one arm drawn by --weights; parallel: each request to every arm "
                       "at once (default: %(default)s)")


def add_threads_argument(group) -> None:
    """--thread-plan and --threads: how `abqa serve` spends the cores (abqa.serve.repository.ThreadPlan)."""
    from abqa.core.config import DEFAULT_THREAD_PLAN, THREAD_PLANS

    group.add_argument("--thread-plan", choices=THREAD_PLANS, default=DEFAULT_THREAD_PLAN,
                       help="shared: one ONNX Runtime pool of every core for all the sessions, one inference at a time; "
                       "adaptive: a request that finds the server idle runs on every core, one that arrives while "
                       "others run on its share of them (two sessions per instance); per-session: each session its own "
                       "pool, sessions side by side (default: %(default)s)")
    group.add_argument("--threads", type=int, default=None,
                       help="ONNX Runtime threads: of the wide sessions (adaptive) or the pool (shared), default every "
                       "core; per session under per-session, default config.pbtxt's, else the cores shared out")


def add_mlflow_argument(parser) -> None:
    """`--mlflow [URI]`, the same on every stage that logs."""
    from abqa.integrations.mlflow_tracking import ARTIFACTS_DIRNAME, DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI

    parser.add_argument(
        "--mlflow", nargs="?", const="", default=None, metavar="URI", type=_tracking_uri_argument,
        help="when done, log params, metrics and the files of this run to MLflow (experiment "
        f"$MLFLOW_EXPERIMENT_NAME or {DEFAULT_EXPERIMENT!r}, run named after the run folder). Without URI: "
        f"$MLFLOW_TRACKING_URI, else the local store {DEFAULT_TRACKING_URI} (artifacts in runs/{ARTIFACTS_DIRNAME}/); "
        "http://host:5000 logs to a tracking server. Give the URI as --mlflow=URI, or put the flag last",
    )


def _tracking_uri_argument(value: str) -> str:
    """An optional-valued flag takes the next word: `abqa report --mlflow runs/x` would log to a store called
    runs/x and lose the run folder. A URI that is a run folder is that mistake, so say how to write it."""
    from abqa.core.run import RunFolder

    if RunFolder(Path(value)).is_run():
        raise argparse.ArgumentTypeError(
            f"{value!r} is a run folder, not a tracking URI: put --mlflow after it (`... {value} --mlflow`) "
            "or give the URI as --mlflow=URI")
    return value
