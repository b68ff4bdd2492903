"""A/B traffic against Triton: real SQuAD windows to each arm, as Locust users, closed loop or open loop.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000                      # web UI on :8089
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 4 -r 4 -t 30s \
        --arms distilbert,bert --weights 50:50 --mode split
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 1 -r 1 -t 30s --rate 8

Closed loop (the default): each user draws a request (one tokenised SQuAD v1.1 window) from the pool, asks one
arm chosen by weight (--mode split) or every arm at once (--mode parallel), waits for the answer, and asks again.
Open loop (--rate R): each user is a scheduler that sends its share of R requests per second at arrival times
drawn in advance (Poisson, or --arrivals constant), never waiting for an answer (loadtest/schedule.py); give one
user per Locust process. Requests are named by arm, so Locust's statistics, charts and CSVs show each arm on its
own line.

Every request also becomes a record (loadtest's requests.jsonl: arm, step, times, exact latency from the client's
clock, tokens, and the answer decoded from the response); the Locust process that runs the test (the master when
distributed, whose workers send it their records) appends them to --requests-file. `abqa loadtest` runs this file
headless once per step and ends a step early through --stop-file.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import time
from pathlib import Path

import gevent
from gevent.pool import Group
from locust import User, events, task
from locust.runners import WorkerRunner

from abqa.client.arms import END_LOGITS, START_LOGITS
from abqa.core.config import DEFAULT_MODEL_REPOSITORY
from abqa.core.errors import AbqaError
from abqa.core.run import RequestLog
from abqa.loadtest import traffic
from abqa.loadtest.answers import decode_window
from abqa.loadtest.final_csv import write_final_csvs
from abqa.loadtest.pool import DEFAULT_POOL_SIZE, DEFAULT_SEED, PoolItem, RequestPool, build_pool
from abqa.loadtest.schedule import ARRIVALS, Arrival, run_schedule, schedule
from abqa.triton.client import (DEFAULT_TIMEOUT_S, InferFailed, RetryPolicy, TritonClient, describe,
                               make_grpc_gevent_safe)
from abqa.triton.endpoint import Endpoint

log = logging.getLogger("abqa.loadtest")

# A failed request is a failure of its arm, never asked again: the load test measures what the server does.
NO_RETRY = RetryPolicy(attempts=1)
# After a failed request a closed-loop user waits this long before the next: a dead server is reported, not hammered.
FAILURE_BACKOFF_S = 0.1
# An open-loop scheduler's requests in flight at once over HTTP (more wait for a connection, and that wait counts).
OPEN_LOOP_CONNECTIONS = 64
# Workers send their records to the master this often; the stop file is looked for this often.
SEND_EVERY_S = 0.5
STOP_POLL_S = 0.2
RECORDS_MESSAGE = "abqa_requests"


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    parser.add_argument("--arms", default="distilbert,bert", help="the arms (Triton model names), comma-separated")
    parser.add_argument("--weights", default="", help="split weights in --arms order (50:50) or by name "
                        "(bert=3,distilbert=1); default equal")
    parser.add_argument("--mode", default="split", choices=traffic.MODES,
                        help="split: each request to one arm drawn by weight; parallel: each request to every arm")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="open loop: user requests per second over the whole test, shared by the users (each a "
                        "scheduler: one per process is enough); 0: closed loop")
    parser.add_argument("--arrivals", default="poisson", choices=ARRIVALS, help="open loop: arrival process")
    parser.add_argument("--protocol", default="http", choices=traffic.PROTOCOLS, include_in_web_ui=False,
                        help="KServe v2 over HTTP (default) or gRPC (made gevent-safe)")
    parser.add_argument("--squad", default="", include_in_web_ui=False,
                        help="SQuAD v1.1 JSON for the request pool (default: the shared dev set, else the built-in sample)")
    parser.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE, include_in_web_ui=False,
                        help="windows in the request pool")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, include_in_web_ui=False,
                        help="which questions go in the pool, and the open-loop schedule")
    parser.add_argument("--model-repository", default=str(DEFAULT_MODEL_REPOSITORY), include_in_web_ui=False,
                        help="where each arm's tokenizer is (<repository>/<arm>/tokenizer)")
    parser.add_argument("--pool-file", default="", include_in_web_ui=False,
                        help="a request pool saved by `abqa loadtest` (pool.npz), instead of building one")
    parser.add_argument("--request-timeout", type=float, default=DEFAULT_TIMEOUT_S, include_in_web_ui=False,
                        help="seconds before a request counts as failed")
    parser.add_argument("--requests-file", default="", include_in_web_ui=False,
                        help="append one JSON line per request to this file (requests.jsonl; the master writes it)")
    parser.add_argument("--step", default="", include_in_web_ui=False, help="the step's name in the request records")
    parser.add_argument("--warmup", type=float, default=0.0, include_in_web_ui=False,
                        help="seconds from the start whose requests are marked as warm-up")
    parser.add_argument("--stop-file", default="", include_in_web_ui=False,
                        help="end the test as soon as this file exists (abqa loadtest: the step is stable)")


class Traffic:
    """What every user of this process shares: the request pool, the options it was built from, the record sink."""

    pool: RequestPool | None = None
    endpoint: Endpoint | None = None        # --host and --protocol (default: HTTP on 127.0.0.1)
    timeout_s: float = DEFAULT_TIMEOUT_S
    started: float = 0.0                    # perf_counter at this process's test start (the warm-up's origin)
    # epoch seconds - perf_counter, fixed once: every time a record gives is the precise clock's, on the epoch's scale
    epoch_offset: float = time.time() - time.perf_counter()
    recorder: "Recorder | None" = None
    request_ids = itertools.count()


class Recorder:
    """Where the request records go: appended to --requests-file by the process that runs the test, or, on a
    worker, batched and sent to the master (which appends them)."""

    def __init__(self, environment, requests_file: str):
        self.runner = environment.runner
        self.on_worker = isinstance(self.runner, WorkerRunner)
        self.pending: list[dict] = []
        self.log = RequestLog(requests_file) if requests_file and not self.on_worker else None
        if self.on_worker:
            gevent.spawn(self._send_periodically)
        else:
            self.runner.register_message(RECORDS_MESSAGE, self._receive)

    def add(self, record: dict) -> None:
        if self.on_worker:
            self.pending.append(record)
        elif self.log is not None:
            self.log.append([record])

    def flush(self) -> None:
        if self.on_worker and self.pending:
            batch, self.pending = self.pending, []
            self.runner.send_message(RECORDS_MESSAGE, {"records": batch})

    def close(self) -> None:
        self.flush()
        if self.log is not None:
            self.log.close()
            self.log = None

    def _receive(self, environment, msg, **_kwargs) -> None:
        if self.log is not None:
            self.log.append(msg.data["records"])

    def _send_periodically(self) -> None:
        while True:
            gevent.sleep(SEND_EVERY_S)
            self.flush()


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
                                  size=options.pool_size, seed=options.seed, fetch_metadata=client.model_metadata)
    except AbqaError as exc:
        raise SystemExit(f"abqa locustfile: {exc}") from None
    if not pool.items:
        raise SystemExit("abqa locustfile: the request pool is empty")
    Traffic.pool = pool
    if environment.runner is not None:
        Traffic.recorder = Recorder(environment, options.requests_file)
    log.info("request pool: %d windows from %s for arms %s", len(pool), pool.dataset.get("path"), ", ".join(arms))


@events.test_start.add_listener
def start_the_clock(environment, **_kwargs) -> None:
    Traffic.started = time.perf_counter()
    Traffic.epoch_offset = time.time() - Traffic.started
    options = environment.parsed_options
    if options is not None and options.stop_file and not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_quit_when_told, environment, Path(options.stop_file))


def _quit_when_told(environment, stop_file: Path) -> None:
    """`abqa loadtest` creates the stop file when the step's figures are stable: end the test as -t would."""
    while not stop_file.exists():
        gevent.sleep(STOP_POLL_S)
    log.info("%s exists: the step is done, shutting down", stop_file)
    environment.runner.quit()


@events.test_stopping.add_listener
def send_the_last_records(**_kwargs) -> None:
    if Traffic.recorder is not None:
        Traffic.recorder.flush()


@events.quitting.add_listener
def complete_files(environment, **_kwargs) -> None:
    """Locust's CSVs lag up to a second behind the run; write them once more from the final statistics. Close the
    request log."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        write_final_csvs(environment, prefix)
    if Traffic.recorder is not None:
        Traffic.recorder.close()


class TritonFailure(Exception):
    """What Triton said about a failed request (e.g. "503: Exceeds maximum queue size"): Locust records the repr of
    the exception, and tritonclient's own has none of the message."""


class QAUser(User):
    """One client asking SQuAD questions: as fast as the answers come back (closed loop), or on a schedule drawn in
    advance (open loop, --rate)."""

    ordinals = itertools.count()

    def wait_time(self) -> float:
        return FAILURE_BACKOFF_S if self.last_request_failed else 0.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        # Read here, not at init, so that a change in the web UI's form (or the master's options) applies.
        arms = traffic.parse_arms(options.arms)
        self.plan = traffic.TrafficPlan(arms, traffic.parse_weights(options.weights, arms), options.mode)
        self.pool = Traffic.pool.for_arms(arms)
        self.rng = random.Random()
        self.ordinal = next(self.ordinals)
        self.last_request_failed = False
        self.in_flight = Group()
        connections = OPEN_LOOP_CONNECTIONS if options.rate > 0 else len(arms)
        # Parsed here too: the web UI's form may give this run another host than the command line did.
        endpoint = Endpoint.parse(self.host or None, Traffic.endpoint.protocol, flag="--host")
        self.triton = TritonClient(endpoint, timeout_s=Traffic.timeout_s, retry=NO_RETRY, concurrency=connections)

    def on_stop(self) -> None:
        self.in_flight.kill(block=False)  # a stopped scheduler's requests stop with it
        self.triton.close()

    @task
    def ask_a_question(self) -> None:
        options = self.environment.parsed_options
        if options.rate > 0:
            self.keep_the_schedule(options)
            return
        request = self.rng.choice(self.pool.items)
        request_id = _request_id()
        if self.plan.mode == "parallel":
            self.ask_every_arm(request, request_id)
        else:
            (arm,) = self.plan.arms_for_request(self.rng)
            self.last_request_failed = not self.ask(arm, request, request_id)

    def keep_the_schedule(self, options) -> None:
        """Open loop: this user's share of --rate, sent at its arrival times until the user is stopped."""
        runner = self.environment.runner
        workers = max(1, getattr(options, "expect_workers", 1) or 1) if isinstance(runner, WorkerRunner) else 1
        schedulers = max(1, runner.target_user_count * workers)
        seed = f"{options.seed}:{options.step}:{runner.worker_index}:{self.ordinal}"
        arrivals = schedule(options.rate / schedulers, options.arrivals, self.plan, len(self.pool.items), seed)
        run_schedule(arrivals, self.send_arrival, spawn=self.in_flight.spawn)

    def send_arrival(self, arrival: Arrival, scheduled: float) -> None:
        request, request_id = self.pool.items[arrival.item], _request_id()
        if len(arrival.arms) == 1:
            self.ask(arrival.arms[0], request, request_id, scheduled)
            return
        records: list[dict] = []
        asking = [self.in_flight.spawn(self.ask, arm, request, request_id, scheduled, records)
                  for arm in arrival.arms]
        gevent.joinall(asking)
        self.record_together(records)

    def ask_every_arm(self, request: PoolItem, request_id: str) -> None:
        records: list[dict] = []
        asking = [gevent.spawn(self.ask, arm, request, request_id, None, records) for arm in self.plan.arms]
        try:
            gevent.joinall(asking, raise_error=True)
        finally:
            gevent.killall(asking)  # when the user is stopped mid-request, so are its requests
        self.record_together(records)
        self.last_request_failed = not all(greenlet.value for greenlet in asking)

    @staticmethod
    def record_together(records: list[dict]) -> None:
        """Parallel mode: a request's copies enter requests.jsonl together, once every arm's has ended. A copy cut
        off by the end of the step leaves its partners out too, so that both arms' figures rest on the same
        requests (Locust's own statistics still count the answered ones)."""
        if Traffic.recorder is not None:
            for record in records:
                Traffic.recorder.add(record)

    def ask(self, arm: str, request: PoolItem, request_id: str, scheduled: float | None = None,
            together: list[dict] | None = None) -> bool:
        """One request to one arm, reported to Locust under the arm's name and recorded (or, in parallel mode,
        its record added to `together`); True when answered. The latency counts from `scheduled` (open loop: the
        schedule's time) or from the send (closed loop)."""
        outputs = self.pool.arms[arm].outputs
        started = time.perf_counter()
        origin = started if scheduled is None else scheduled
        received, error, answer = 0, None, None
        try:
            answer = self.triton.request(arm, request.tensors[arm], outputs)
            received = sum(array.nbytes for array in answer.values())
        except InferFailed as exc:  # Locust reports the request under the arm's name: the cause is the message
            error = TritonFailure(describe(exc.__cause__)) if exc.__cause__ is not None else exc
        except Exception as exc:  # every way a request can fail is a failure of that arm, with its message
            error = exc
        latency_ms = (time.perf_counter() - origin) * 1000.0
        self.environment.events.request.fire(
            request_type=Traffic.endpoint.protocol.upper(),
            name=arm,
            response_time=latency_ms,
            response_length=received,
            exception=error,
            context={"question_id": request.question_id, "window": request.window},
        )
        if Traffic.recorder is not None:
            record = self.record(arm, request, request_id, started, scheduled, latency_ms, error, answer)
            if together is None:
                Traffic.recorder.add(record)
            else:
                together.append(record)
        return error is None

    def record(self, arm: str, request: PoolItem, request_id: str, started: float, scheduled: float | None,
               latency_ms: float, error: BaseException | None, answer) -> dict:
        """The request's line of requests.jsonl (RequestRecord's fields)."""
        origin = started if scheduled is None else scheduled
        options = self.environment.parsed_options
        text = score = null = None
        if answer is not None:
            text, score, null = _decode(self.pool, arm, request, answer)
        return {
            "arm": arm, "step": options.step or "locust", "request_id": request_id,
            "question_id": request.question_id, "window": request.window,
            "scheduled_at": None if scheduled is None else scheduled + Traffic.epoch_offset,
            "sent_at": started + Traffic.epoch_offset,
            "latency_ms": round(latency_ms, 3) if error is None else None,
            "status": "ok" if error is None else "failed",
            "tokens": request.tokens(arm), "padded_tokens": request.padded_tokens(arm),
            "warmup": origin < Traffic.started + (options.warmup or 0.0),
            "error": None if error is None else _message(error),
            "answer": text, "answer_score": score, "null_score": null,
        }


def _message(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _request_id() -> str:
    return f"{os.getpid():x}-{next(Traffic.request_ids)}"


def _decode(pool: RequestPool, arm: str, request: PoolItem, answer) -> tuple[str | None, float | None, float | None]:
    """The window's answer, as `abqa evaluate` would decode it; Nones when the pool cannot say (no layout)."""
    question = pool.questions.get(request.question_id)
    layout = request.layouts.get(arm)
    if question is None or layout is None or START_LOGITS not in answer or END_LOGITS not in answer:
        return None, None, None
    return decode_window(layout, request.tensors[arm], answer[START_LOGITS], answer[END_LOGITS], question.context)
