"""`abqa router`: the routing service; `abqa router export-log`: its request log as a run folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from abqa.core.config import DEFAULT_ARMS, DEFAULT_HOST, DEFAULT_MODEL_REPOSITORY, split_csv

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "router",
        help="a FastAPI service that routes questions to the arms (split, sticky or shadow) and logs every answer",
        description="Serve POST /v1/answer: each request goes to one arm served by Triton (a weighted random "
        "split, a sticky split by user_id, or shadow mode where the primary answers and the other arms answer too, "
        "only logged). Every answer is logged to SQLite or PostgreSQL off the response path. Also "
        "GET /v1/experiments/NAME/summary, /metrics (Prometheus) and /docs (OpenAPI). "
        "`abqa router export-log` turns the log into a run folder for `abqa report`.",
    )
    backend = parser.add_argument_group("arms")
    backend.add_argument("--url", default=None,
                         help="Triton's address, host:port (default: 127.0.0.1:8001 for grpc, 127.0.0.1:8000 for http)")
    backend.add_argument("--protocol", choices=("grpc", "http"), default="grpc", help="default: %(default)s")
    backend.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY,
                         help="where each arm's tokenizer/ and abqa-metadata.json are (default: %(default)s)")
    backend.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                         help="per Triton request (default: %(default)s)")
    routing = parser.add_argument_group("routing")
    routing.add_argument("--arms", default=",".join(DEFAULT_ARMS), metavar="A,B",
                         help="the experiment's arms, Triton model names (default: %(default)s)")
    routing.add_argument("--weights", default=None, metavar="W,W",
                         help="split weights in --arms order (50,50 or 9:1) or by name (bert=3,distilbert=1); "
                         "default: equal")
    routing.add_argument("--mode", choices=("split", "sticky", "shadow"), default="split",
                         help="split: weighted random per request; sticky: by a stable hash of user_id (random "
                         "for requests without one); shadow: --primary answers, the others answer too and are only "
                         "logged (default: %(default)s)")
    routing.add_argument("--primary", default=None, help="shadow mode: the arm that answers (default: the first arm)")
    routing.add_argument("--experiment", default=None,
                         help="experiment name: the log's key and part of the sticky hash (default: ARM-vs-ARM)")
    routing.add_argument("--seed", type=int, default=None, help="seed of the split's random draws (default: random)")
    service = parser.add_argument_group("service")
    service.add_argument("--db", default="sqlite:///runs/router.db",
                         help="request log, an SQLAlchemy URL: sqlite:///PATH or "
                         "postgresql+psycopg://USER:PASSWORD@HOST/DB (default: %(default)s)")
    service.add_argument("--host", default=DEFAULT_HOST, help="bind address (default: %(default)s)")
    service.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    service.add_argument("--max-question-chars", type=int, default=1_000, help="longer questions get 422 (default: %(default)s)")
    service.add_argument("--max-context-chars", type=int, default=20_000, help="longer contexts get 422 (default: %(default)s)")
    service.add_argument("--max-body-bytes", type=int, default=256 * 1024, help="larger bodies get 413 (default: %(default)s)")
    service.add_argument("--shadow-workers", type=int, default=1,
                         help="threads answering shadow requests; when they fall behind, shadows are skipped "
                         "and counted (default: %(default)s)")
    parser.set_defaults(run=run_router)

    commands = parser.add_subparsers(dest="router_command", metavar="[export-log]")
    export = commands.add_parser(
        "export-log",
        help="write the request log as a run folder (eval.jsonl + meta.json) for `abqa report`",
        description="Every logged answer becomes an eval.jsonl record keyed by its request id, with the arm's latency; "
        "requests that carried a squad_id are scored (EM/F1) against --squad, the others are 'unscored'.",
    )
    export.add_argument("--db", default="sqlite:///runs/router.db", help="the router's --db (default: %(default)s)")
    export.add_argument("--experiment", default=None, help="default: the most recent one in the log")
    export.add_argument("--squad", default=None, metavar="PATH|shared|builtin",
                        help="data set to score requests with a squad_id (default: as `abqa evaluate`)")
    export.add_argument("--out", type=Path, required=True, help="run folder to write, e.g. runs/router-1")
    export.set_defaults(run=run_export)


def build_policy(args: argparse.Namespace):
    from abqa.core.weights import parse_weights
    from abqa.router.policy import RoutingPolicy

    arms = split_csv(args.arms)
    experiment = args.experiment or "-vs-".join(arms)
    return RoutingPolicy.build(experiment, args.mode, arms, parse_weights(args.weights, arms), args.primary)


def run_router(args: argparse.Namespace) -> int:
    import uvicorn

    from abqa.core.errors import AbqaError
    from abqa.router.app import Limits, create_app
    from abqa.router.backend import BackendUnavailable, TritonBackend, check_arms
    from abqa.router.requestlog import RequestLog, redact_url
    from abqa.triton.endpoint import Endpoint

    policy = build_policy(args)
    limits = Limits(args.max_question_chars, args.max_context_chars, args.max_body_bytes)
    if min(limits.max_question_chars, limits.max_context_chars, limits.max_body_bytes) <= 0:
        raise AbqaError("--max-question-chars, --max-context-chars and --max-body-bytes must be positive")
    endpoint = Endpoint.parse(args.url, args.protocol)
    backend = TritonBackend(endpoint, model_repository=args.model_repository, timeout_s=args.timeout)
    try:
        arms_info = check_arms(backend, policy.arms)   # fail now, not at the first request
    except BackendUnavailable as exc:
        backend.close()
        raise AbqaError(str(exc)) from None
    request_log = RequestLog(args.db).start()
    app = create_app(policy, backend, request_log, limits=limits, seed=args.seed, shadow_workers=args.shadow_workers,
                     session_info={"backend": {"url": endpoint.address, "protocol": args.protocol,
                                               "model_repository": str(args.model_repository.resolve())},
                                   "arms": arms_info})
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: the router is reachable from other machines, without authentication", args.host)
    print(f"abqa router: experiment {policy.experiment} ({policy.mode}: "
          + ", ".join(f"{arm} {weight:.0%}" for arm, weight in zip(policy.arms, policy.weights))
          + (f"; primary {policy.primary}" if policy.mode == "shadow" else "")
          + f") on http://{args.host}:{args.port} (docs /docs), Triton {endpoint}, "
          f"log {redact_url(args.db)}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from abqa.core.run import RunFolder
    from abqa.router.export import export_log

    with RunFolder(args.out).lock("abqa router export-log"):
        result = export_log(args.db, args.out, experiment=args.experiment, squad=args.squad)
    print(f"experiment {result.experiment}: {result.records} records ({result.scored} scored, {result.unscored} "
          f"unscored, {result.failed} failed) -> {result.out}/eval.jsonl, {result.out}/meta.json")
    print(f"report: abqa report {result.out}")
    return 0
