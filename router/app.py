"""The routing service: `create_app(policy, backend, request_log)` returns a FastAPI app.

    POST /v1/answer                          {question, context, user_id?, squad_id?, arm?} -> answer, score, arm, latency
    GET  /v1/experiments/{name}/summary      per-arm counts, observed split and latency percentiles, from the log
    GET  /v1/health                          the policy, and whether the log writer keeps up
    GET  /metrics                            Prometheus text (requests, latency histogram, shadow backlog, log drops)
    GET  /docs, /openapi.json                OpenAPI

The backend (what answers: Triton through the client stage, or a fake in tests) and the request log are
injected. Request handlers are plain `def`s: FastAPI runs them on its thread pool, where the blocking
backend belongs. Shadow answers run on a separate small pool after the primary answer is ready, so they never
delay the response they shadow; when that pool falls behind, shadows are skipped and counted, not queued
without bound. Logging is a queue put (see `requestlog`).

This module does not use `from __future__ import annotations`: FastAPI reads the request model of the
handler, which is built per app from the limits, from its live annotation.
"""

import json
import logging
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Optional

from fastapi import FastAPI, HTTPException, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, create_model

from abqa import __version__
from abqa.core.errors import AbqaError
from abqa.router.backend import AnswerBackend, AnswerFailed, BackendUnavailable
from abqa.router.policy import ROLE_PRIMARY, ROLE_SHADOW, RouteDecision, RoutingPolicy, route
from abqa.router.requestlog import (STATUS_FAILED, STATUS_OK, LogEntry, RequestLog, hash_user, latest_session,
                                    read_latencies, utc_now)
from abqa.router.summary import summarize_experiment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_question_chars: int = 1_000
    max_context_chars: int = 20_000
    # A 20,000-character context is up to 80 KB of UTF-8, or 120 KB with JSON's \uXXXX escapes.
    max_body_bytes: int = 256 * 1024
    max_id_chars: int = 200


class AnswerResponse(BaseModel):
    request_id: str
    experiment: str
    arm: str = Field(description="the arm that answered")
    assignment: str = Field(description="how the arm was chosen: random | sticky | primary | pinned")
    answer: str = Field(description="the best span of the context (empty when none is possible)")
    score: Optional[float] = Field(description="start logit + end logit of the span")
    latency_ms: float = Field(description="the arm's end to end time: tokenise, Triton, post-process")
    shadow_arms: list[str] = Field(default_factory=list, description="arms that answer too, logged only")


def answer_request_model(limits: Limits) -> type[BaseModel]:
    """The request body with this app's limits (so they are enforced as 422s and shown in the OpenAPI docs)."""
    return create_model(
        "AnswerRequest",
        question=(str, Field(min_length=1, max_length=limits.max_question_chars)),
        context=(str, Field(min_length=1, max_length=limits.max_context_chars)),
        user_id=(Optional[str], Field(default=None, max_length=limits.max_id_chars,
                                      description="sticky mode: the same user always gets the same arm")),
        squad_id=(Optional[str], Field(default=None, max_length=limits.max_id_chars,
                                       description="the SQuAD question id, so the log can be scored later")),
        arm=(Optional[str], Field(default=None, max_length=limits.max_id_chars,
                                  description="pin an arm, bypassing the routing policy (logged as pinned)")),
    )


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` gets 413 before any handler sees it, declared or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await self._reject(scope, receive, send)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._reject(scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, scope, receive, send):
        response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)


class _Metrics:
    """Prometheus metrics in the app's own registry (several apps in one process, e.g. tests, do not clash)."""

    def __init__(self, request_log: RequestLog, shadow_backlog) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("abqa_router_requests", "Answers by arm, role and status",
                                ["experiment", "arm", "role", "status"], registry=self.registry)
        self.latency = Histogram("abqa_router_answer_latency_seconds", "The arm's end to end answer time",
                                 ["experiment", "arm", "role"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.shadow_skipped = Counter("abqa_router_shadow_skipped", "Shadow answers skipped: the shadow pool was behind",
                                      ["experiment", "arm"], registry=self.registry)
        Gauge("abqa_router_shadow_backlog", "Shadow answers waiting or running",
              registry=self.registry).set_function(shadow_backlog)
        Gauge("abqa_router_log_dropped", "Log entries dropped (queue full or database refusing writes)",
              registry=self.registry).set_function(lambda: request_log.dropped)
        Gauge("abqa_router_log_written", "Log entries written", registry=self.registry).set_function(
            lambda: request_log.written)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def create_app(policy: RoutingPolicy, backend: AnswerBackend, request_log: RequestLog, *,
               limits: Limits = Limits(), seed: int | None = None, shadow_workers: int = 1,
               max_shadow_backlog: int = 32, session_info: dict | None = None) -> FastAPI:
    """The router for one experiment; the app starts the log writer and stops everything at shutdown."""
    rng = random.Random(seed)
    rng_lock = threading.Lock()
    shadow_pool = ThreadPoolExecutor(max_workers=shadow_workers, thread_name_prefix="abqa-shadow")
    backlog_lock = threading.Condition()
    backlog = [0]
    metrics = _Metrics(request_log, lambda: backlog[0])
    AnswerRequest = answer_request_model(limits)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        request_log.start()
        request_log.record_session(policy.experiment, {
            "policy": policy.to_dict(), "limits": asdict(limits), **(session_info or {})})
        log.info("router: experiment %s, %s over %s", policy.experiment, policy.mode, ", ".join(policy.arms))
        try:
            yield
        finally:
            shadow_pool.shutdown(wait=True)
            request_log.close()
            backend.close()

    app = FastAPI(title="abqa router", version=__version__, lifespan=lifespan,
                  description="Routes extractive QA requests to the arms of an A/B experiment served by Triton, "
                              "and logs every answer.")
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, exc: RequestValidationError):
        # FastAPI's own handler echoes the input as UTF-8, which fails on a lone surrogate ("\\ud800", which
        # pydantic refuses as a string) with a 500: the same 422, with everything escaped.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True, default=str)
        return Response(body, status_code=422, media_type="application/json")

    def draw() -> float:
        with rng_lock:
            return rng.random()

    def ask(arm: str, role: str, decision: RouteDecision, request_id: str, body, received_at) -> LogEntry:
        """One arm answers; the outcome becomes a log entry (failures too), and the metrics count it."""
        common = dict(received_at=received_at, experiment=policy.experiment, request_id=request_id, arm=arm,
                      role=role, assignment=decision.assignment, squad_id=body.squad_id,
                      user_hash=hash_user(body.user_id), question_chars=len(body.question),
                      context_chars=len(body.context))
        try:
            result = backend.answer(arm, body.question, body.context)
        except (BackendUnavailable, AnswerFailed) as exc:
            entry = LogEntry(**common, status=STATUS_FAILED, error=f"{type(exc).__name__}: {exc}")
            error = exc
        except Exception as exc:  # noqa: BLE001 - logged and answered as a 502, never a crash
            log.exception("arm %s, request %s", arm, request_id)
            entry = LogEntry(**common, status=STATUS_FAILED, error=f"{type(exc).__name__}: {exc}")
            error = exc
        else:
            entry = LogEntry(**common, status=STATUS_OK, latency_ms=result.latency_ms, answer=result.answer,
                             score=result.score, windows=result.windows, tokens=result.tokens)
            error = None
            metrics.latency.labels(policy.experiment, arm, role).observe(result.latency_ms / 1000.0)
        metrics.requests.labels(policy.experiment, arm, role, entry.status).inc()
        request_log.submit(entry)
        if error is not None:
            raise error
        return entry

    def shadow(arm: str, decision: RouteDecision, request_id: str, body, received_at) -> None:
        try:
            ask(arm, ROLE_SHADOW, decision, request_id, body, received_at)
        except Exception:  # noqa: BLE001 - already logged as a failed shadow entry
            pass
        finally:
            with backlog_lock:
                backlog[0] -= 1
                backlog_lock.notify_all()

    @app.post("/v1/answer", response_model=AnswerResponse, tags=["answer"],
              responses={413: {"description": "body too large"}, 422: {"description": "invalid request"},
                         502: {"description": "the arm failed"}, 503: {"description": "no Triton server answers"}})
    def answer(body: AnswerRequest, response: Response):
        """Route the question to an arm and return its answer; shadow arms answer too, off the response path."""
        if not body.question.strip() or not body.context.strip():
            raise HTTPException(422, "question and context must not be blank")
        try:
            decision = route(policy, draw=draw(), user_id=body.user_id, pinned=body.arm)
        except AbqaError as exc:
            raise HTTPException(422, str(exc)) from None
        request_id = uuid.uuid4().hex
        received_at = utc_now()
        response.headers["X-Request-ID"] = request_id
        try:
            entry = ask(decision.arm, ROLE_PRIMARY, decision, request_id, body, received_at)
        except BackendUnavailable as exc:
            raise HTTPException(503, f"arm {decision.arm}: {exc}", headers={"X-Request-ID": request_id}) from None
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(502, f"arm {decision.arm}: {type(exc).__name__}: {exc}",
                                headers={"X-Request-ID": request_id}) from None
        for arm in decision.shadows:
            with backlog_lock:
                if backlog[0] >= max_shadow_backlog:
                    metrics.shadow_skipped.labels(policy.experiment, arm).inc()
                    continue
                backlog[0] += 1
            shadow_pool.submit(shadow, arm, decision, request_id, body, received_at)
        return AnswerResponse(request_id=request_id, experiment=policy.experiment, arm=decision.arm,
                              assignment=decision.assignment, answer=entry.answer, score=entry.score,
                              latency_ms=entry.latency_ms, shadow_arms=list(decision.shadows))

    @app.get("/v1/experiments/{name}/summary", tags=["experiments"])
    def experiment_summary(name: str):
        """Per-arm requests, observed split (share of routed requests) and latency percentiles, from the log."""
        request_log.flush(5.0)  # read our own writes
        rows = read_latencies(request_log.engine, name)
        if name == policy.experiment:
            policy_info = policy.to_dict()
        else:
            session = latest_session(request_log.engine, name)
            if session is None and not rows:
                raise HTTPException(404, f"no experiment {name!r} in the request log (this router runs "
                                         f"{policy.experiment!r})")
            policy_info = (session or {}).get("policy")
        return summarize_experiment(name, rows, policy_info)

    @app.get("/v1/health", tags=["service"])
    def health():
        return {"status": "ok", "version": __version__, **policy.to_dict(),
                "log": {"written": request_log.written, "dropped": request_log.dropped},
                "limits": asdict(limits)}

    @app.get("/metrics", tags=["service"], response_class=Response)
    def prometheus_metrics():
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def wait_for_shadows(timeout_s: float = 10.0) -> bool:
        """True once no shadow answer is pending (tests, and anyone who wants a settled log)."""
        with backlog_lock:
            return backlog_lock.wait_for(lambda: backlog[0] == 0, timeout_s)

    app.state.policy = policy
    app.state.request_log = request_log
    app.state.wait_for_shadows = wait_for_shadows
    return app
