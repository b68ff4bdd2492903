"""`abqa benchmark`: the main job. The whole pipeline on its defaults, ending with the report's path.

export (hub checkpoints when the hub answers, stand-ins otherwise) -> `abqa serve` -> paired evaluation of a
seeded SQuAD sample -> a short Locust sweep -> the report -> the server stopped. When the real BERT/DistilBERT
prediction files are beside the project (../shared/data/squad-v1.1/predictions), they are replayed over the
whole dev set in a second run with its own report: real accuracy, offline.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from abqa.core.config import DEFAULT_ARMS_V2, DEFAULT_RUNS_DIR, shared_data_dir
from abqa.core.run import DecisionPlan
from abqa.flags import (DECLARED_HELP, add_cost_argument, add_decision_arguments, add_load_arguments,
                        add_mlflow_argument, add_order_argument, add_replay_argument, add_sample_argument,
                        add_squad_argument, add_squad_rules_arguments, add_threads_argument, decision_plan)
from abqa.core.scoring import squad_rule
from abqa.triton.endpoint import Endpoint

log = logging.getLogger(__name__)

# Sized for a 2-core machine: about five minutes with the real-size stand-ins (the thread plan halved the time per
# question, so twice the 200 questions of before fit in the same time; benchmarks/results/ has the measurements).
# The load sweep: two closed-loop and two open-loop steps of at most 15 s each after a 2 s warm-up, as long as the
# three fixed 20 s steps it replaced; the SLO search (--slo-ms) is asked for, since each rate it holds needs 100
# answers (minutes for BERT on a CPU).
DEFAULT_SAMPLE = 400
DEFAULT_USERS = "1,4"
DEFAULT_RATE = "2,4"
DEFAULT_DURATION = "15s"

# The real pair on the shared dev set: BERT-base and DistilBERT fine-tuned by one team with one pipeline.
# Candidate first, as in the served comparison, so the verdict reads "distilbert-finetuned vs bert-finetuned".
SHARED_REPLAY_PAIR = {
    "distilbert-finetuned": "distilbert-base-uncased-finetuned.json",
    "bert-finetuned": "bert-base-uncased-finetuned.json",
}

OFFLINE_NOTICE = """
==========================================================================================
 The Hugging Face hub cannot be reached: exporting OFFLINE STAND-INS (published
 architectures, random weights). Their latency and size are real; their accuracy is not.
==========================================================================================
"""


@dataclass(frozen=True)
class BenchmarkResult:
    run_dir: Path
    report_html: Path | None
    replay_report_html: Path | None
    exit_code: int


def register(subparsers: argparse._SubParsersAction) -> None:
    from abqa.export.cli import add_export_arguments

    parser = subparsers.add_parser(
        "benchmark",
        help="the whole pipeline on its defaults: export, serve, evaluate, load test, report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_export_arguments(parser.add_argument_group("export"))
    evaluate = parser.add_argument_group("evaluate")
    add_squad_argument(evaluate, help_default="the shared dev set if present, else the hub, else the built-in sample; "
                       "--sample applies per language")
    add_squad_rules_arguments(evaluate, version_help="; unless --arm, a v2.0 run exports the SQuAD2 pair "
                              + ", ".join(f"{name}={source}" for name, source in DEFAULT_ARMS_V2.items()))
    add_sample_argument(evaluate, default=DEFAULT_SAMPLE, zero_means_all=True)
    evaluate.add_argument("--full", action="store_true",
                          help="evaluate every question of the data set (the same as --sample 0; the SQuAD v1.1 dev "
                          "set's 10,570 questions, both full-size arms: README's Performance section)")
    add_order_argument(evaluate)
    add_replay_argument(evaluate)
    evaluate.add_argument("--no-shared-replay", action="store_true",
                          help="skip the replay of the shared real BERT/DistilBERT predictions")
    add_decision_arguments(parser.add_argument_group("decision"), when=DECLARED_HELP + "; the shared replay gets "
                           "them too, the baseline as its replayed arm of the same model (bert -> bert-finetuned)")
    load = parser.add_argument_group("load test")
    add_load_arguments(load, users=DEFAULT_USERS, duration=DEFAULT_DURATION, rate=DEFAULT_RATE)
    load.add_argument("--skip-load", action="store_true", help="no load test")
    add_threads_argument(parser.add_argument_group("serve"))
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=None, help="run folder (default: runs/benchmark-<date>-<time>)")
    out.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples for the report")
    add_cost_argument(out)
    add_mlflow_argument(out)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from abqa.integrations.mlflow_tracking import track_stage

    result = run_benchmark(args)
    print("\nabqa benchmark: done")
    if result.report_html:
        print(f"  report:        {result.report_html}")
    if result.replay_report_html:
        print(f"  replay report: {result.replay_report_html}  (real BERT vs DistilBERT predictions, full dev set)")
    # One parent run for the benchmark's folder; the shared replay, a run of its own, nested under it.
    children = [result.replay_report_html.parent] if result.replay_report_html else []
    return track_stage(args.mlflow, result.run_dir, "benchmark", result.exit_code, children=children)


def run_benchmark(args: argparse.Namespace) -> BenchmarkResult:
    from abqa.core.run import RunFolder

    run_dir = args.out or DEFAULT_RUNS_DIR / datetime.now().strftime("benchmark-%Y%m%d-%H%M%S")
    # One writer per run folder, for the whole pipeline (the stages take the same lock, re-entrantly).
    with RunFolder(run_dir).lock("abqa benchmark"):
        return _benchmark_in(args, run_dir)


def _benchmark_in(args: argparse.Namespace, run_dir: Path) -> BenchmarkResult:
    from abqa.core.hub import hub_reachable
    from abqa.export.cli import arm_specs_from_args, export_options_from_args
    from abqa.export.pipeline import export_arms
    from abqa.serve.process import server_for_run

    if not args.offline and not hub_reachable():
        print(OFFLINE_NOTICE, flush=True)
        args.offline = True

    args.squad_version = benchmark_squad_version(args.squad, args.squad_version)
    arms = arms_for_version(args.squad_version, args.arms)
    if arms != args.arms:
        args.arms = arms
        print(f"   SQuAD v2.0: default arms {', '.join(arms)}", flush=True)

    print("== 1/5 export", flush=True)
    specs = arm_specs_from_args(args)
    variants = 1 + len(set(args.optimize)) + len(set(args.quantize))
    exported = export_arms(specs, export_options_from_args(args, n_arms=len(specs) * variants))
    served_arms = [meta.arm for meta in exported]

    print("== 2/5 serve", flush=True)
    exit_code = 0
    with server_for_run(args.model_repository, served_arms, "grpc", threads=args.threads,
                        thread_plan=args.thread_plan, log_path=run_dir / "server.log",
                        echo=lambda line: print(f"   {line}", flush=True)) as (server, grpc):
        print("== 3/5 evaluate", flush=True)
        exit_code |= _evaluate(args, run_dir, served_arms, grpc)
        if not args.skip_load:
            print("== 4/5 load test", flush=True)
            exit_code |= _loadtest(args, run_dir, served_arms, server.http)
    print("== 5/5 report", flush=True)
    report_html = _report(run_dir, args.bootstrap, args.cost_per_hour)
    replay_html = None if args.no_shared_replay else _shared_replay(args, run_dir)
    return BenchmarkResult(run_dir, report_html, replay_html, exit_code)


def benchmark_squad_version(squad: str | None, version: str | None) -> str | None:
    """The SQuAD version a benchmark runs: --version, else "2.0" when --squad is a v2.0 file, else None (v1.1).
    Known before the export, because a v2.0 run needs the SQuAD2 default arms."""
    if version is not None or not squad or not Path(squad).is_file():
        return version
    from abqa.core.errors import AbqaError
    from abqa.core.io import read_json_file
    from abqa.core.squad import detect_version

    try:
        obj, _ = read_json_file(squad, f"--squad {squad}")
    except AbqaError:
        return None  # the evaluate stage reports what is wrong with the file
    detected = detect_version(obj)
    return detected if squad_rule(detected).allows_no_answer else None


def arms_for_version(version: str | None, arms: list[str] | None) -> list[str] | None:
    """The --arm list as given; on SQuAD v2.0 without --arm, the SQuAD2 pair (the v1.1 defaults cannot say "no
    answer")."""
    if squad_rule(version).allows_no_answer and not arms:
        return [f"{name}={source}" for name, source in DEFAULT_ARMS_V2.items()]
    return arms


def _v2_default_squad(version: str | None) -> str | None:
    """The load test's questions on a v2.0 run without --squad: the shared v2.0 dev set, like the evaluation."""
    from abqa.core.data_sources import shared_dev_path

    path = shared_dev_path(version) if squad_rule(version).allows_no_answer else None
    return str(path) if path is not None else None


def _evaluate(args: argparse.Namespace, run_dir: Path, arms: list[str], endpoint: Endpoint) -> int:
    from abqa.client.arms import parse_replay_spec
    from abqa.client.runner import STATUS_COMPLETE, EvalOptions, print_result, run_evaluation

    options = EvalOptions(
        out=run_dir, squad=args.squad, sample=None if args.full else args.sample or None, seed=args.seed, arms=arms,
        replays=[parse_replay_spec(text) for text in args.replay], url=endpoint.url, protocol=endpoint.protocol,
        order=args.order, model_repository=args.model_repository,
        version=args.squad_version, null_threshold=args.null_threshold, decision=decision_plan(args),
    )
    result = run_evaluation(options)
    print_result(result)
    return 0 if result.status == STATUS_COMPLETE else 1


def _loadtest(args: argparse.Namespace, run_dir: Path, arms: list[str], endpoint: Endpoint) -> int:
    from abqa.loadtest.cli import sweep_options
    from abqa.loadtest.runner import run_loadtest
    from abqa.loadtest.traffic import TrafficPlan

    options = sweep_options(
        args, plan=TrafficPlan(tuple(arms), tuple(1.0 for _ in arms), args.mode), out=run_dir, endpoint=endpoint,
        model_repository=args.model_repository, squad=args.squad or _v2_default_squad(args.squad_version),
        seed=args.seed,
    )
    return run_loadtest(options).exit_code


def _report(run_dir: Path, bootstrap: int | None, cost_per_hour: float | None = None) -> Path:
    from abqa.analysis.report import build_report

    report = build_report(run_dir, cost_per_hour=cost_per_hour, **({"n_resamples": bootstrap} if bootstrap else {}))
    for line in report.verdict:
        print(f"   {line}")
    return report.paths.html


def _shared_replay(args: argparse.Namespace, run_dir: Path) -> Path | None:
    """The real answer to the project's question, when the shared prediction files are beside the project."""
    from abqa.client.runner import EvalOptions, run_evaluation

    data = shared_data_dir()
    # The pair answered SQuAD v1.1: no replay on data with unanswerable questions.
    if data is None or args.squad not in (None, "shared") or squad_rule(args.squad_version).allows_no_answer:
        return None
    files = {arm: data / "squad-v1.1" / "predictions" / name for arm, name in SHARED_REPLAY_PAIR.items()}
    if not all(path.is_file() for path in files.values()):
        return None
    print("== replay: the real fine-tuned BERT / DistilBERT predictions on the full SQuAD v1.1 dev set", flush=True)
    replay_dir = run_dir / "replay-shared"
    run_evaluation(EvalOptions(out=replay_dir, squad="shared", replays=list(files.items()), seed=args.seed,
                               decision=replay_decision(decision_plan(args))))
    return _report(replay_dir, args.bootstrap)


def replay_decision(plan: DecisionPlan | None) -> DecisionPlan | None:
    """The benchmark's declared plan for the shared replay, whose arms are named <model>-finetuned: the baseline
    becomes the replayed arm of its model (bert -> bert-finetuned, bert-int8 -> bert-finetuned); None when no
    replayed arm is of the baseline's model (the replay then has no declared decision)."""
    if plan is None or plan.baseline is None:
        return plan
    for arm in SHARED_REPLAY_PAIR:
        model = arm.removesuffix("-finetuned")
        if plan.baseline == model or plan.baseline.startswith(f"{model}-"):
            return plan.model_copy(update={"baseline": arm})
    log.warning("--baseline %s: the shared replay has no arm of that model (%s); its report has no declared decision",
                plan.baseline, ", ".join(SHARED_REPLAY_PAIR))
    return None
