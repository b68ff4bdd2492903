"""`abqa serve`: the command-line edge of the serve stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from abqa.core.config import (DEFAULT_HOST, DEFAULT_MAX_QUEUE_SIZE, DEFAULT_MODEL_REPOSITORY, GRPC_PORT, HTTP_PORT,
                              METRICS_PORT, split_csv)
from abqa.flags import add_threads_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the model repository with a real Triton Inference Server (no Docker, no GPU)",
        description="Start Triton Inference Server (from nvidia-pytriton) and serve every arm of the model "
        "repository over KServe v2 HTTP and gRPC, each arm an ONNX Runtime CPU session with the tensors, "
        "max_batch_size and dynamic batching of its config.pbtxt. Prints the URLs once every model answers; "
        "stops on Ctrl+C or SIGTERM. `docker compose up` serves the same repository with the official image.",
    )
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY, help="default: %(default)s")
    parser.add_argument("--arms", default=None, metavar="A,B",
                        help="serve only these arms (comma-separated; default: every arm in the repository)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to bind (default: %(default)s; 0.0.0.0 makes the server reachable from other machines)")
    parser.add_argument("--http-port", type=int, default=HTTP_PORT, help="default: %(default)s")
    parser.add_argument("--grpc-port", type=int, default=GRPC_PORT, help="default: %(default)s")
    parser.add_argument("--metrics-port", type=int, default=METRICS_PORT, help="default: %(default)s")
    add_threads_argument(parser)
    parser.add_argument("--instances", type=int, default=None,
                        help="instances (ONNX Runtime sessions) per model (default: config.pbtxt's instance_group count)")
    parser.add_argument("--ready-timeout", type=float, default=180.0, metavar="SECONDS",
                        help="give up if the models do not answer within this time (default: %(default)s)")
    parser.add_argument("--max-queue-size", type=int, default=None, metavar="N",
                        help="requests each model's dynamic batcher holds before it rejects more at once (UNAVAILABLE), "
                        "so that overload gets fast refusals rather than a crash; 0 = unbounded (default: config.pbtxt's "
                        f"default_queue_policy, else {DEFAULT_MAX_QUEUE_SIZE})")
    parser.add_argument("--triton-log", type=Path, default=None, metavar="FILE",
                        help="keep tritonserver's own log in FILE (default: a temporary file, shown on errors)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from abqa.serve.server import ServeOptions, serve

    options = ServeOptions(
        repository=args.model_repository,
        arms=tuple(split_csv(args.arms)),
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        thread_plan=args.thread_plan,
        threads=args.threads,
        instances=args.instances,
        ready_timeout_s=args.ready_timeout,
        triton_log=args.triton_log,
        max_queue_size=args.max_queue_size,
    )
    return serve(options)
