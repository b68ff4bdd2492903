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
        help="concurrent A/B traffic against Triton with Locust, swept over concurrency",
        description="Run Locust headless (loadtest/locustfile.py) once per concurrency step against Triton: real "
        "tokenised SQuAD windows, split between the arms by weight or sent to every arm in parallel. Keeps each "
        "step's Locust CSVs and HTML report under <out>/locust/, reads Triton's Prometheus counters and batch "
        "statistics before and after each step, and writes <out>/load.json and <out>/load.csv (per arm and "
        "step: requests, failures, req/s, p50/p90/p95/p99 ms, queue and compute time, batch sizes). Exits 1 "
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
    server.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="a request not answered in this time fails (default: %(default)s)")
    server.add_argument("--step-timeout", type=float, default=None, metavar="SECONDS",
                        help="hard limit of one Locust step (default: --duration + 60 s)")
    data = parser.add_argument_group("requests")
    data.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY,
                      help="where each arm's tokenizer/ and abqa-metadata.json are (default: %(default)s)")
    add_squad_argument(data, help_default="the shared dev set, else the built-in sample (the requests come from it)")
    data.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE,
                      help="windows in the request pool (default: %(default)s)")
    data.add_argument("--seed", type=int, default=0, help="which questions go in the pool (default: %(default)s)")
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, default=None, help="run folder (default: <runs-dir>/<name>)")
    run.add_argument("--name", default=None, help="run name (default: load-<date>-<time>)")
    run.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="default: %(default)s")
    add_mlflow_argument(run)
    parser.set_defaults(run=run_command)


def build_options(args: argparse.Namespace):
    from abqa.loadtest import traffic
    from abqa.loadtest.runner import LoadTestOptions
    from abqa.triton.endpoint import Endpoint

    arms = traffic.parse_arms(args.arms)
    plan = traffic.TrafficPlan(arms, traffic.parse_weights(args.weights, arms), args.mode)
    out = args.out or args.runs_dir / (args.name or datetime.now().strftime("load-%Y%m%d-%H%M%S"))
    return LoadTestOptions(
        plan=plan,
        users=traffic.parse_users(args.users),
        duration_s=traffic.parse_duration(args.duration),
        out=Path(out),
        endpoint=Endpoint.parse(args.url, args.protocol, args.metrics_url),
        model_repository=args.model_repository,
        squad=args.squad,
        pool_size=args.pool_size,
        seed=args.seed,
        request_timeout_s=args.request_timeout,
        step_timeout_s=args.step_timeout,
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
    totals = result.document.totals
    print(f"\n{totals.requests} requests, {totals.failures} failed; "
          f"wrote {options.out / 'load.json'}, {options.out / 'load.csv'} and {options.out / 'locust'}/")
    if result.exit_code:
        problems = [f"{step.users} user(s): {step.error}" for step in result.steps if step.error]
        for problem in problems:
            print(f"abqa loadtest: step {problem}")
        if totals.failures or not totals.requests:
            print("abqa loadtest: some requests failed (messages in load.json rows[].failure_messages)")
        return track_stage(args.mlflow, options.out, "loadtest", EXIT_FAILED)
    return track_stage(args.mlflow, options.out, "loadtest", 0)
