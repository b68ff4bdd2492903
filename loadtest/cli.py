"""`abqa loadtest`: the command-line edge of the load-test stage."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from abqa.core.config import DEFAULT_ARMS, DEFAULT_MODEL_REPOSITORY, DEFAULT_RUNS_DIR
from abqa.flags import add_load_arguments, add_mlflow_argument, add_squad_argument

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


def register(subparsers: argparse._SubParsersAction) -> None:
    from abqa.loadtest.pool import DEFAULT_POOL_SIZE

    parser = subparsers.add_parser(
        "loadtest",
        help="A/B traffic against Triton with Locust, swept over concurrency and request rate",
        description="Run Locust headless (loadtest/locustfile.py) once per step against Triton: real tokenised SQuAD "
        "windows, split between the arms by weight or sent to every arm in parallel, closed loop (--users) or on "
        "an open-loop schedule (--rate). Every request is recorded in <out>/requests.jsonl; each step warms up, "
        "then measures until its figures are stable or --duration is up. Keeps each step's Locust CSVs and HTML "
        "report under <out>/locust/, reads Triton's Prometheus counters and batch statistics before and after "
        "each step, and writes <out>/load.json and <out>/load.csv (per arm and step, from the records: requests, "
        "failures, req/s, tokens/s, exact p50/p90/p95/p99 ms, answers identical to eval.jsonl's, queue and "
        "compute time, batch sizes). --slo-ms searches each arm's highest rate within a p99 bound. Exits 1 "
        "when any request failed; the files are written either way.",
    )
    traffic = parser.add_argument_group("traffic")
    traffic.add_argument("--arms", default=",".join(DEFAULT_ARMS), metavar="A,B", help="default: %(default)s")
    add_load_arguments(traffic, users="1,2,4", duration="30s")
    traffic.add_argument("--weights", default="", metavar="50:50",
                         help="split weights in --arms order (50:50) or by name (bert=3,distilbert=1); default equal")
    server = parser.add_argument_group("server")
    server.add_argument("--url", default=None,
                        help="Triton's HTTP address (default: http://127.0.0.1:8000; for --protocol grpc 127.0.0.1:8001)")
    server.add_argument("--protocol", choices=("http", "grpc"), default="http",
                        help="KServe v2 over HTTP (gevent-native) or gRPC (made gevent-safe) (default: %(default)s)")
    server.add_argument("--metrics-url", default=None,
                        help="Triton's Prometheus endpoint (default: the --url host, port 8002, /metrics); "
                        "`none` to skip the server's view")
    server.add_argument("--start-server", action="store_true",
                        help="start `abqa serve` on --model-repository (free loopback ports) for this run and stop it after")
    server.add_argument("--workers", type=int, default=0, metavar="K",
                        help="Locust workers on other machines: run each step's Locust as a master that waits for K "
                        "`locust -f loadtest/locustfile.py --worker --master-host <this machine>` (default: none)")
    server.add_argument("--master-bind-host", default="127.0.0.1", metavar="ADDRESS",
                        help="where Locust's master listens for its workers (--processes, --workers); 0.0.0.0 for "
                        "workers on other machines (default: %(default)s)")
    server.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="a request not answered in this time fails (default: %(default)s)")
    server.add_argument("--step-timeout", type=float, default=None, metavar="SECONDS",
                        help="hard limit of one Locust step (default: warm-up + its longest measurement + 60 s)")
    data = parser.add_argument_group("requests")
    data.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY,
                      help="where each arm's tokenizer/ and abqa-metadata.json are (default: %(default)s)")
    add_squad_argument(data, help_default="the shared dev set, else the built-in sample (the requests come from it)")
    data.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE,
                      help="windows in the request pool (default: %(default)s)")
    data.add_argument("--seed", type=int, default=0,
                      help="which questions go in the pool, and the open-loop schedules (default: %(default)s)")
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, default=None, help="run folder (default: <runs-dir>/<name>)")
    run.add_argument("--name", default=None, help="run name (default: load-<date>-<time>)")
    run.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="default: %(default)s")
    add_mlflow_argument(run)
    parser.set_defaults(run=run_command)


def build_options(args: argparse.Namespace):
    from abqa.loadtest import traffic
    from abqa.triton.endpoint import Endpoint

    arms = traffic.parse_arms(args.arms)
    plan = traffic.TrafficPlan(arms, traffic.parse_weights(args.weights, arms), args.mode)
    out = args.out or args.runs_dir / (args.name or datetime.now().strftime("load-%Y%m%d-%H%M%S"))
    return sweep_options(args, plan=plan, out=Path(out), endpoint=Endpoint.parse(args.url, args.protocol, args.metrics_url),
                         model_repository=args.model_repository, squad=args.squad, pool_size=args.pool_size,
                         seed=args.seed, request_timeout_s=args.request_timeout, step_timeout_s=args.step_timeout,
                         workers=_workers(args), master_bind_host=args.master_bind_host)


def _workers(args: argparse.Namespace) -> int:
    from abqa.core.errors import AbqaError

    if args.workers < 0 or (args.workers and args.processes > 1):
        raise AbqaError(f"--workers {args.workers}: give a number of remote workers, or --processes for local ones, "
                        "not both")
    return args.workers


def sweep_options(args: argparse.Namespace, **given):
    """LoadTestOptions from the sweep's shared flags (abqa.flags.add_load_arguments) and what the command adds;
    `abqa loadtest` and `abqa benchmark` both build theirs here. Bad values are AbqaErrors naming the flag."""
    from abqa.core.errors import AbqaError
    from abqa.loadtest import schedule, traffic
    from abqa.loadtest.runner import LoadTestOptions

    users, rates = traffic.parse_users(args.users), schedule.parse_rates(args.rate)
    if not users and not rates and args.slo_ms is None:
        raise AbqaError("no step to run: give --users, --rate or --slo-ms")
    if not args.tolerance > 0:
        raise AbqaError(f"--tolerance {args.tolerance}: must be above 0 (0.15 means within 15%)")
    if args.window < 2:
        raise AbqaError(f"--window {args.window}: a window needs at least 2 answers")
    if args.processes < 1:
        raise AbqaError(f"--processes {args.processes}: must be at least 1")
    if args.slo_ms is not None and not args.slo_ms > 0:
        raise AbqaError(f"--slo-ms {args.slo_ms}: must be above 0 milliseconds")
    if args.slo_steps < 1:
        raise AbqaError(f"--slo-steps {args.slo_steps}: must be at least 1")
    return LoadTestOptions(
        users=users,
        rates=rates,
        arrivals=schedule.check_arrivals(args.arrivals),
        duration_s=traffic.parse_duration(args.duration),
        warmup_s=traffic.parse_duration(args.warmup, flag="--warmup", allow_zero=True),
        window=args.window,
        tolerance=args.tolerance,
        slo_ms=args.slo_ms,
        slo_steps=args.slo_steps,
        processes=args.processes,
        **given,
    )


def run_command(args: argparse.Namespace) -> int:
    import contextlib
    import dataclasses

    from abqa.core.run import RunFolder
    from abqa.integrations.mlflow_tracking import track_stage
    from abqa.loadtest import results
    from abqa.loadtest.runner import run_loadtest

    options = build_options(args)  # user errors surface before any server starts
    with contextlib.ExitStack() as stack:
        stack.enter_context(RunFolder(options.out).lock("abqa loadtest"))   # one writer per run folder
        if args.start_server:
            from abqa.serve.process import server_for_run

            _, endpoint = stack.enter_context(server_for_run(args.model_repository, options.plan.arms, args.protocol,
                                                             echo=lambda line: print(line, flush=True)))
            options = dataclasses.replace(options, endpoint=endpoint)
        try:
            result = run_loadtest(options, echo=lambda line: print(line, flush=True))
        except KeyboardInterrupt:
            print(f"abqa loadtest: interrupted; the steps finished so far are in {options.out}")
            return EXIT_INTERRUPTED
    print()
    print(results.format_table(result.rows, result.document.standin))
    for line in results.scaling_summary(result.rows):
        print(line)
    for outcome in result.document.slo.values():
        print(f"SLO: {outcome.statement}")
    totals = result.document.totals
    print(f"\n{totals.requests} requests, {totals.failures} failed; "
          f"wrote {options.out / 'load.json'}, {options.out / 'load.csv'}, {options.out / 'requests.jsonl'} and "
          f"{options.out / 'locust'}/")
    if result.exit_code:
        problems = [f"{step.name}: {step.error}" for step in result.steps if step.error]
        for problem in problems:
            print(f"abqa loadtest: step {problem}")
        if totals.failures or not totals.requests:
            print("abqa loadtest: some requests failed (messages in load.json rows[].failure_messages)")
        return track_stage(args.mlflow, options.out, "loadtest", EXIT_FAILED)
    return track_stage(args.mlflow, options.out, "loadtest", 0)
