"""Command-line flags that more than one command takes, defined once so that their names, grammar and help agree.

Each function adds its flags to an argparse parser or argument group; the commands' own modules (`<stage>/cli.py`,
`abqa/benchmark.py`) pick the groups they need.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from abqa.core.config import LOAD_TOLERANCE, LOAD_WARMUP_S, LOAD_WINDOW

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


def add_load_arguments(group, *, users: str, duration: str, rate: str = "", slo_ms: float | None = None,
                       slo_steps: int = 4) -> None:
    """The sweep: closed-loop and open-loop steps, how each one is measured, and where each request goes."""
    group.add_argument("--users", default=users, metavar="N,N,...",
                       help="closed-loop steps: simultaneous users, each asking again when answered; `none` for no "
                       "closed-loop step (default: %(default)s)")
    group.add_argument("--rate", default=rate, metavar="R,R,...",
                       help="open-loop steps: user requests per second, sent on a schedule drawn in advance that "
                       "never waits for an answer; latency counts from the scheduled time (default: none)")
    group.add_argument("--arrivals", choices=("poisson", "constant"), default="poisson",
                       help="open loop: Poisson arrivals or evenly spaced ones (default: %(default)s)")
    group.add_argument("--duration", default=duration,
                       help="per step: the longest it measures after its warm-up (it ends earlier once its figures "
                       "are stable): 30s, 1m30s, 90 (default: %(default)s)")
    group.add_argument("--warmup", default=f"{LOAD_WARMUP_S:g}s", help="per step: the first seconds, recorded but not measured "
                       "(default: %(default)s)")
    group.add_argument("--window", type=int, default=LOAD_WINDOW, metavar="ANSWERS",
                       help="per step: answers per measurement window and arm; a step is stable when each arm's last "
                       "three windows agree within --tolerance (default: %(default)s)")
    group.add_argument("--tolerance", type=float, default=LOAD_TOLERANCE, metavar="FRACTION",
                       help="how far (max / min - 1) three windows' mean latency and, closed loop, throughput may "
                       "differ for the step to be stable (default: %(default)s)")
    group.add_argument("--slo-ms", type=float, default=slo_ms, metavar="P99_MS",
                       help="search each arm alone for the highest open-loop rate whose p99 is within this many "
                       "milliseconds (MLPerf Server style)" + (" (default: %(default)s)" if slo_ms else ""))
    group.add_argument("--slo-steps", type=int, default=slo_steps, metavar="N",
                       help="--slo-ms: steps per arm of the search (default: %(default)s)")
    group.add_argument("--processes", type=int, default=1, metavar="N",
                       help="Locust processes generating the load (Locust's --processes: a master and N workers) "
                       "when one cannot keep up (default: %(default)s)")
    group.add_argument("--mode", choices=TRAFFIC_MODES, default="split",
                       help="split: each request to one arm drawn by --weights; parallel: each request to every arm "
                       "at once, on the same schedule (default: %(default)s)")


def add_threads_argument(group) -> None:
    """--thread-plan and --threads: how `abqa serve` spends the cores (abqa.serve.repository.ThreadPlan)."""
    from abqa.core.config import DEFAULT_THREAD_PLAN, THREAD_PLANS

    group.add_argument("--thread-plan", choices=THREAD_PLANS, default=DEFAULT_THREAD_PLAN,
                       help="shared: every session every core (no spin-waiting), one inference at a time across arms; "
                       "adaptive: a request that finds the server idle runs on every core, one that arrives while "
                       "others run on its share of them (two sessions per instance); per-session: each session its own "
                       "pool, sessions side by side (default: %(default)s)")
    group.add_argument("--threads", type=int, default=None,
                       help="ONNX Runtime threads: of the wide sessions (adaptive) or the pool (shared), default every "
                       "core; per session under per-session, default config.pbtxt's, else the cores shared out")


MARGIN_METRICS = ("f1", "em")


def margins_argument(text: str) -> dict[str, float]:
    """`f1=1.0,em=1.5` -> {"f1": 1.0, "em": 1.5}: per metric, points a candidate may lose and still ship."""
    margins: dict[str, float] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        metric, equals, value = part.partition("=")
        metric = metric.strip().lower()
        if not equals or metric not in MARGIN_METRICS:
            raise argparse.ArgumentTypeError(
                f"{part!r}: write METRIC=POINTS with METRIC one of {', '.join(MARGIN_METRICS)}, e.g. f1=1.0,em=1.5")
        try:
            points = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: {value!r} is not a number of points") from None
        if not 0 < points < 100:
            raise argparse.ArgumentTypeError(f"{part!r}: a margin is a positive number of points below 100")
        margins[metric] = points
    if not margins:
        raise argparse.ArgumentTypeError("no margin given: write METRIC=POINTS, e.g. f1=1.0")
    return margins


def add_decision_arguments(group, *, when: str) -> None:
    """--baseline and --margin: the shipping question (is each candidate at most M points below the baseline?)."""
    group.add_argument(
        "--baseline", default=None, metavar="ARM",
        help="the arm every other arm is a candidate against (differences are candidate - baseline)" + when)
    group.add_argument(
        "--margin", type=margins_argument, default=None, metavar="METRIC=POINTS,...",
        help="non-inferiority margins in points, e.g. f1=1.0,em=1.5: a candidate whose 95%% CI of the difference "
        "stays above -margin is non-inferior; also tested for equivalence (TOST) within +-margin" + when)


DECLARED_HELP = " (recorded in meta.json as declared before the data; the report uses it)"


def decision_plan(args: argparse.Namespace):
    """--baseline and --margin as meta.json's DecisionPlan (None when neither is given)."""
    from abqa.core.run import DecisionPlan

    if args.baseline is None and not args.margin:
        return None
    return DecisionPlan(baseline=args.baseline, margins=args.margin or {})


def add_cost_argument(group) -> None:
    group.add_argument(
        "--cost-per-hour", type=float, default=None, metavar="PRICE",
        help="what one serving machine costs per hour (any currency): the report's trade-off adds the cost per "
        "million questions of each arm at its sustained throughput")


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
