"""A/B traffic against Triton: real SQuAD windows to each arm, as Locust users.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000                      # web UI on :8089
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 4 -r 4 -t 30s \
        --arms distilbert,bert --weights 50:50 --mode split

Each user is a client in a closed loop: it draws a request (one tokenised SQuAD v1.1 window) from the pool
and asks one arm chosen by weight (--mode split) or every arm at once (--mode parallel), waits for the
answer, and asks again. Requests are named by arm, so Locust's statistics, charts and CSVs show each arm on
its own line. `abqa loadtest` runs this file headless once per concurrency step.
"""

from __future__ import annotations

import logging
import random
import time

import gevent
from locust import User, events, task

from abqa.core.config import DEFAULT_MODEL_REPOSITORY
from abqa.core.errors import AbqaError
from abqa.loadtest import traffic
from abqa.loadtest.final_csv import write_final_csvs
from abqa.loadtest.pool import DEFAULT_POOL_SIZE, PoolItem, RequestPool, build_pool
from abqa.triton.client import (DEFAULT_TIMEOUT_S, InferFailed, RetryPolicy, TritonClient, describe,
                               make_grpc_gevent_safe)
from abqa.triton.endpoint import Endpoint

log = logging.getLogger("abqa.loadtest")

# A failed request is a failure of its arm, never asked again: the load test measures what the server does.
NO_RETRY = RetryPolicy(attempts=1)
# After a failed request a user waits this long before the next: a dead server is reported, not hammered.
FAILURE_BACKOFF_S = 0.1


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    parser.add_argument("--arms", default="distilbert,bert", help="the arms (Triton model names), comma-separated")
    parser.add_argument("--weights", default="", help="split weights in --arms order (50:50) or by name "
                        "(bert=3,distilbert=1); default equal")
    parser.add_argument("--mode", default="split", choices=traffic.MODES,
                        help="split: each request to one arm drawn by weight; parallel: each request to every arm")
    parser.add_argument("--protocol", default="http", choices=traffic.PROTOCOLS, include_in_web_ui=False,
                        help="KServe v2 over HTTP (default) or gRPC (made gevent-safe)")
    parser.add_argument("--squad", default="", include_in_web_ui=False,
                        help="SQuAD v1.1 JSON for the request pool (default: the shared dev set, else the built-in sample)")
    parser.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE, include_in_web_ui=False,
                        help="windows in the request pool")
    parser.add_argument("--model-repository", default=str(DEFAULT_MODEL_REPOSITORY), include_in_web_ui=False,
                        help="where each arm's tokenizer is (<repository>/<arm>/tokenizer)")
    parser.add_argument("--pool-file", default="", include_in_web_ui=False,
                        help="a request pool saved by `abqa loadtest` (pool.npz), instead of building one")
    parser.add_argument("--request-timeout", type=float, default=DEFAULT_TIMEOUT_S, include_in_web_ui=False,
                        help="seconds before a request counts as failed")


class Traffic:
    """What every user of this process shares: the request pool and the options it was built from."""

    pool: RequestPool | None = None
    endpoint: Endpoint | None = None        # --host and --protocol (default: HTTP on 127.0.0.1)
    timeout_s: float = DEFAULT_TIMEOUT_S


@events.init.add_listener
def prepare_traffic(environment, **_kwargs) -> None:
    """Load (or build) the request pool once per Locust process, before any user starts."""
    options = environment.parsed_options
    if options is None:  # Locust used as a library without this file's arguments
        return
    try:
        Traffic.endpoint = Endpoint.parse(options.host or None, options.protocol, flag="--host")
        Traffic.timeout_s = options.request_timeout
        if Traffic.endpoint.protocol == "grpc":
            make_grpc_gevent_safe()
        arms = traffic.parse_arms(options.arms)
        if options.pool_file:
            pool = RequestPool.load(options.pool_file).for_arms(arms)
        else:
            with TritonClient(Traffic.endpoint, timeout_s=10, retry=NO_RETRY) as client:
                pool = build_pool(arms, options.model_repository, squad=options.squad or None,
                                  size=options.pool_size, fetch_metadata=client.model_metadata)
    except AbqaError as exc:
        raise SystemExit(f"abqa locustfile: {exc}") from None
    if not pool.items:
        raise SystemExit("abqa locustfile: the request pool is empty")
    Traffic.pool = pool
    log.info("request pool: %d windows from %s for arms %s", len(pool), pool.dataset.get("path"), ", ".join(arms))


@events.quitting.add_listener
def complete_csvs(environment, **_kwargs) -> None:
    """Locust's CSVs lag up to a second behind the run; write them once more from the final statistics."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        write_final_csvs(environment, prefix)


class TritonFailure(Exception):
    """What Triton said about a failed request (e.g. "503: Exceeds maximum queue size"): Locust records the repr of
    the exception, and tritonclient's own has none of the message."""


class QAUser(User):
    """One client asking SQuAD questions as fast as the answers come back."""

    def wait_time(self) -> float:
        return FAILURE_BACKOFF_S if self.last_request_failed else 0.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        # Read here, not at init, so that a change in the web UI's form applies to the next run.
        arms = traffic.parse_arms(options.arms)
        self.plan = traffic.TrafficPlan(arms, traffic.parse_weights(options.weights, arms), options.mode)
        self.pool = Traffic.pool.for_arms(arms)
        self.rng = random.Random()
        self.last_request_failed = False
        # Parsed here too: the web UI's form may give this run another host than the command line did.
        endpoint = Endpoint.parse(self.host or None, Traffic.endpoint.protocol, flag="--host")
        self.triton = TritonClient(endpoint, timeout_s=Traffic.timeout_s, retry=NO_RETRY, concurrency=len(arms))

    def on_stop(self) -> None:
        self.triton.close()

    @task
    def ask_a_question(self) -> None:
        request = self.rng.choice(self.pool.items)
        if self.plan.mode == "parallel":
            self.ask_every_arm(request)
        else:
            self.ask_one_arm_chosen_by_weight(request)

    def ask_one_arm_chosen_by_weight(self, request: PoolItem) -> None:
        (arm,) = self.plan.arms_for_request(self.rng)
        self.last_request_failed = not self.ask(arm, request)

    def ask_every_arm(self, request: PoolItem) -> None:
        asking = [gevent.spawn(self.ask, arm, request) for arm in self.plan.arms]
        try:
            gevent.joinall(asking, raise_error=True)
        finally:
            gevent.killall(asking)  # when the user is stopped mid-request, so are its requests
        self.last_request_failed = not all(greenlet.value for greenlet in asking)

    def ask(self, arm: str, request: PoolItem) -> bool:
        """One request to one arm, reported to Locust under the arm's name; True when it was answered."""
        outputs = self.pool.arms[arm].outputs
        started = time.perf_counter()
        received, error = 0, None
        try:
            answer = self.triton.request(arm, request.tensors[arm], outputs)
            received = sum(array.nbytes for array in answer.values())
        except InferFailed as exc:  # Locust reports the request under the arm's name: the cause is the message
            error = TritonFailure(describe(exc.__cause__)) if exc.__cause__ is not None else exc
        except Exception as exc:  # every way a request can fail is a failure of that arm, with its message
            error = exc
        self.environment.events.request.fire(
            request_type=Traffic.endpoint.protocol.upper(),
            name=arm,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=received,
            exception=error,
            context={"question_id": request.question_id, "window": request.window},
        )
        return error is None
