"""`abqa evaluate`: the command-line edge of the evaluation stage."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from abqa.core.config import DEFAULT_ARMS, DEFAULT_MODEL_REPOSITORY, DEFAULT_RUNS_DIR, split_csv
from abqa.flags import (DECLARED_HELP, add_decision_arguments, add_mlflow_argument, add_order_argument,
                        add_replay_argument, add_sample_argument, add_squad_argument, add_squad_rules_arguments,
                        decision_plan)

EXIT_INTERRUPTED, EXIT_FAILED = 130, 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="answer every SQuAD question with every arm through Triton, scored the official way (EM/F1) and timed",
        description="Paired SQuAD v1.1 evaluation: every question answered by every arm (Triton models over KServe "
        "v2, and/or prediction files replayed as arms), scored with the official EM/F1, timed end to end, and "
        "appended to <out>/eval.jsonl as it goes, with <out>/meta.json describing the run. Re-running with the "
        "same --out resumes; Ctrl+C stops with everything saved.",
    )
    data = parser.add_argument_group("data")
    add_squad_argument(data, help_default="shared if present, else the hub if reachable, else the built-in sample")
    data.add_argument("--limit", type=int, default=None, metavar="N",
                      help="only the first N questions in file order (after --sample): not a random sample, and the "
                      "report says so; use --sample N for a seeded random one")
    add_sample_argument(data)
    data.add_argument("--seed", type=int, default=0, help="seed of --sample and of --order random (default: %(default)s)")
    add_squad_rules_arguments(data)
    data.add_argument("--na-prob", action="append", default=[], metavar="NAME=NA_PROB.json",
                      help="SQuAD v2.0: the official na_prob file (id -> no-answer score) of replay arm NAME, for the "
                      "report's best-threshold search; repeatable")

    arms = parser.add_argument_group("arms")
    arms.add_argument("--arms", default=None, metavar="A,B",
                      help="arms served by Triton, by model name (default: "
                      f"{','.join(DEFAULT_ARMS)} unless only --replay arms are given)")
    add_replay_argument(arms)
    arms.add_argument("--url", default=None,
                      help="Triton's address, host:port (default: 127.0.0.1:8001 for grpc, 127.0.0.1:8000 for http)")
    arms.add_argument("--protocol", choices=("grpc", "http"), default="grpc", help="default: %(default)s")
    arms.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY,
                      help="where each served arm's tokenizer/ and abqa-metadata.json are (default: %(default)s)")
    arms.add_argument("--start-server", action="store_true",
                      help="start `abqa serve` on --model-repository (free loopback ports) for this run and stop it after")

    add_decision_arguments(parser.add_argument_group("decision"), when=DECLARED_HELP)
    run = parser.add_argument_group("run")
    add_order_argument(run)
    run.add_argument("--out", type=Path, default=None,
                     help="run folder (default: <runs-dir>/<name>); an existing one is resumed")
    run.add_argument("--name", default=None, help="run name (default: eval-<date>-<time>)")
    run.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="default: %(default)s")
    run.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per request (default: %(default)s)")
    run.add_argument("--retries", type=int, default=3,
                     help="retries of a request after a transient server error, with backoff (default: %(default)s)")
    run.add_argument("--retry-failed", action="store_true",
                     help="when resuming, ask again for the (question, arm) pairs recorded as failed")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_mlflow_argument(run)
    parser.set_defaults(run=run_command)


def build_options(args: argparse.Namespace):
    from abqa.client.arms import parse_na_prob_spec, parse_replay_spec
    from abqa.client.runner import EvalOptions
    from abqa.triton.client import RetryPolicy

    replays = [parse_replay_spec(text) for text in args.replay]
    if args.arms is not None:
        served = split_csv(args.arms)
    else:
        served = [] if replays else list(DEFAULT_ARMS)
    out = args.out or args.runs_dir / (args.name or datetime.now().strftime("eval-%Y%m%d-%H%M%S"))
    return EvalOptions(
        out=out, squad=args.squad, limit=args.limit, sample=args.sample, seed=args.seed,
        arms=served, replays=replays, url=args.url, protocol=args.protocol, order=args.order,
        model_repository=args.model_repository, timeout_s=args.timeout,
        retry=RetryPolicy(attempts=max(1, args.retries + 1)), retry_failed=args.retry_failed,
        start_server=args.start_server, progress=False if args.no_progress else None,
        version=args.squad_version, null_threshold=args.null_threshold,
        na_probs=[parse_na_prob_spec(text) for text in args.na_prob],
        decision=decision_plan(args),
    )


def run_command(args: argparse.Namespace) -> int:
    from abqa.client.runner import STATUS_COMPLETE, STATUS_INTERRUPTED, print_result, run_evaluation

    result = run_evaluation(build_options(args))
    print_result(result)
    from abqa.integrations.mlflow_tracking import track_stage

    if result.status == STATUS_COMPLETE:
        return track_stage(args.mlflow, result.out, "evaluate", 0)
    args.exit_at_once = result.status == STATUS_INTERRUPTED   # Ctrl+C: no teardown to wait for (abqa.cli)
    return track_stage(args.mlflow, result.out, "evaluate",
                       EXIT_INTERRUPTED if result.status == STATUS_INTERRUPTED else EXIT_FAILED)
