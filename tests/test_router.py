"""abqa router: routing policy (pure), the FastAPI app with a fake backend, the SQLite request log, the exporter."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.stats import chisquare

from abqa.core.errors import AbqaError
from abqa.core.weights import parse_weights
from abqa.router.app import Limits, create_app
from abqa.router.backend import AnswerFailed, ArmAnswer, BackendUnavailable
from abqa.router.policy import (ASSIGN_PINNED, ASSIGN_RANDOM, ASSIGN_STICKY, RoutingPolicy, arm_for_draw, route,
                                stable_draw)
from abqa.router.requestlog import RequestLog, hash_user, make_engine, read_entries

QUESTION = "Which river flows through the city?"
CONTEXT = "The city lies on the Danube, which flows east to the Black Sea."


class FakeBackend:
    """Answers at once with the context's first word prefixed by the arm; records every call."""

    def __init__(self, fail: dict[str, Exception] | None = None, gate: dict[str, threading.Event] | None = None):
        self.calls: list[tuple[str, str, str]] = []
        self.fail = fail or {}
        self.gate = gate or {}
        self.closed = False
        self._lock = threading.Lock()

    def answer(self, arm: str, question: str, context: str) -> ArmAnswer:
        with self._lock:
            self.calls.append((arm, question, context))
        if arm in self.gate:
            assert self.gate[arm].wait(10), f"gate for {arm} never opened"
        if arm in self.fail:
            raise self.fail[arm]
        return ArmAnswer(arm, f"{arm}:{context.split()[0]}", 1.5, 3.0 if arm == "bert" else 1.0, 1, 20)

    def close(self) -> None:
        self.closed = True


def make_app(tmp_path: Path, mode: str = "split", weights=(1, 1), backend=None, limits: Limits = Limits(),
             primary=None, seed=0, **kwargs):
    policy = RoutingPolicy.build("exp-1", mode, ["distilbert", "bert"], list(weights), primary)
    backend = backend or FakeBackend()
    request_log = RequestLog(f"sqlite:///{tmp_path / 'router.db'}")
    app = create_app(policy, backend, request_log, limits=limits, seed=seed, **kwargs)
    return app, backend, request_log


def ask(client, **fields):
    return client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT, **fields})


# --- policy (pure) -------------------------------------------------------------------------------------------------


def test_arm_for_draw_follows_the_cumulative_weights():
    arms, weights = ["a", "b", "c"], [0.2, 0.0, 0.8]
    assert arm_for_draw(arms, weights, 0.0) == "a"
    assert arm_for_draw(arms, weights, 0.1999) == "a"
    assert arm_for_draw(arms, weights, 0.2) == "c"      # b has no interval at all
    assert arm_for_draw(arms, weights, 0.999999) == "c"
    # Rounding: weights that sum to a hair under 1 still map the top of [0, 1) to the last positive arm.
    assert arm_for_draw(["a", "b", "c"], [1 / 3, 1 / 3, 1 / 3 - 1e-12], 1 - 1e-13) == "c"
    with pytest.raises(ValueError):
        arm_for_draw(arms, weights, 1.0)


def test_weighted_draws_match_the_weights_chi_square():
    rng = np.random.default_rng(0)
    policy = RoutingPolicy.build("e", "split", ["a", "b", "c"], [5, 3, 2])
    counts = Counter(route(policy, draw=float(u)).arm for u in rng.random(20_000))
    observed = [counts[arm] for arm in policy.arms]
    assert chisquare(observed, f_exp=[w * 20_000 for w in policy.weights]).pvalue > 0.001


def test_stable_draw_is_sha256_based_and_uniform():
    assert stable_draw("exp\x00user-1") == stable_draw("exp\x00user-1")
    draws = np.array([stable_draw(f"exp\x00user-{i}") for i in range(20_000)])
    assert draws.min() >= 0 and draws.max() < 1
    histogram, _ = np.histogram(draws, bins=10, range=(0, 1))
    assert chisquare(histogram).pvalue > 0.001
    # Known value: sha256("x") starts with 2d711642b726b044 (a salted hash() would differ between runs).
    assert stable_draw("x") == int("2d711642b726b044", 16) / 2**64


def test_sticky_routing_is_stable_splits_users_by_weight_and_depends_on_the_experiment():
    policy = RoutingPolicy.build("exp-a", "sticky", ["a", "b"], [3, 1])
    users = [f"user-{i}" for i in range(8_000)]
    first = [route(policy, draw=0.0, user_id=user).arm for user in users]
    again = [route(policy, draw=0.999, user_id=user).arm for user in users]
    assert first == again                     # the random draw plays no part for a known user
    assert route(policy, draw=0.5, user_id="u").assignment == ASSIGN_STICKY
    counts = Counter(first)
    assert chisquare([counts["a"], counts["b"]], f_exp=[6_000, 2_000]).pvalue > 0.001
    other = RoutingPolicy.build("exp-b", "sticky", ["a", "b"], [3, 1])
    moved = sum(route(other, draw=0.0, user_id=user).arm != arm for user, arm in zip(users, first))
    assert 0.2 * len(users) < moved < 0.5 * len(users)   # reshuffled: ~2*0.75*0.25 = 37.5% change arm
    anonymous = route(policy, draw=0.9, user_id=None)
    assert anonymous.assignment == ASSIGN_RANDOM and anonymous.arm == "b"


def test_shadow_and_pinned_routes():
    policy = RoutingPolicy.build("e", "shadow", ["a", "b", "c"], primary="b")
    decision = route(policy, draw=0.1)
    assert (decision.arm, decision.shadows) == ("b", ("a", "c"))
    pinned = route(policy, draw=0.1, pinned="c")
    assert (pinned.arm, pinned.shadows, pinned.assignment) == ("c", (), ASSIGN_PINNED)
    with pytest.raises(AbqaError, match="not in experiment"):
        route(policy, draw=0.1, pinned="zzz")


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="bogus", arms=["a", "b"]), "--mode"),
    (dict(mode="split", arms=[]), "--arms"),
    (dict(mode="split", arms=["a", "a"]), "given twice"),
    (dict(mode="split", arms=["a", "b"], weights=[1]), "--weights"),
    (dict(mode="split", arms=["a", "b"], weights=[0, 0]), "positive sum"),
    (dict(mode="split", arms=["a", "b"], weights=[-1, 2]), ">= 0"),
    (dict(mode="shadow", arms=["a"]), "at least two arms"),
    (dict(mode="shadow", arms=["a", "b"], primary="c"), "--primary"),
    (dict(mode="split", arms=["a b"]), "not valid"),
])
def test_policy_validation_names_the_flag(kwargs, message):
    with pytest.raises(AbqaError, match=message):
        RoutingPolicy.build("e", **kwargs)


def test_parse_weights():
    arms = ["a", "b"]
    assert parse_weights("50,50", arms) == (50.0, 50.0)
    assert parse_weights("9:1", arms) == (9.0, 1.0)
    assert parse_weights(None, arms) == (1.0, 1.0)
    with pytest.raises(AbqaError, match="--weights"):
        parse_weights("a,b", arms)


# --- the service with a fake backend -------------------------------------------------------------------------------


def test_split_over_thousands_of_requests_matches_the_weights(tmp_path):
    """3,000 requests through the whole ASGI app (in-process): the observed split passes a chi-square test
    against the weights, and fails it against other weights (the test can tell)."""
    app, backend, request_log = make_app(tmp_path, weights=(70, 30), seed=None)
    n = 3_000

    async def drive():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
                responses = [await client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT})
                             for _ in range(n)]
                summary = (await client.get("/v1/experiments/exp-1/summary")).json()
        return responses, summary

    responses, summary = asyncio.run(drive())
    assert {r.status_code for r in responses} == {200}
    counts = Counter(r.json()["arm"] for r in responses)
    observed = [counts["distilbert"], counts["bert"]]
    assert chisquare(observed, f_exp=[0.7 * n, 0.3 * n]).pvalue > 0.001
    assert chisquare(observed, f_exp=[0.5 * n, 0.5 * n]).pvalue < 1e-6
    # The log saw exactly the same split (it was flushed at shutdown and read back by the summary).
    assert summary["routed"] == n
    assert [summary["arms"][arm]["routed"] for arm in ("distilbert", "bert")] == observed
    assert summary["arms"]["distilbert"]["weight"] == pytest.approx(0.7)
    assert [call[0] for call in backend.calls].count("bert") == counts["bert"]


def test_answer_response_and_sqlite_log(tmp_path):
    app, backend, request_log = make_app(tmp_path, weights=(1, 0))
    with TestClient(app) as client:
        response = ask(client, user_id="alice@example.com", squad_id="q-1")
        assert response.status_code == 200
        body = response.json()
        assert body["arm"] == "distilbert" and body["answer"] == "distilbert:The"
        assert body["score"] == 1.5 and body["latency_ms"] == 1.0 and body["assignment"] == "random"
        assert response.headers["X-Request-ID"] == body["request_id"]
    assert backend.closed  # the app closed the backend at shutdown
    engine = make_engine(f"sqlite:///{tmp_path / 'router.db'}")
    (entry,) = list(read_entries(engine))
    assert entry.request_id == body["request_id"] and entry.arm == "distilbert" and entry.role == "primary"
    assert entry.answer == "distilbert:The" and entry.latency_ms == 1.0 and entry.status == "ok"
    assert entry.squad_id == "q-1" and entry.question_chars == len(QUESTION) and entry.context_chars == len(CONTEXT)
    assert entry.user_hash == hash_user("alice@example.com") != "alice@example.com"
    assert entry.received_at.tzinfo is not None
    raw = engine.raw_connection()
    try:
        dump = "\n".join(str(row) for row in raw.execute("select * from abqa_router_requests"))
    finally:
        raw.close()
    assert "alice" not in dump   # the user id itself is never stored


def test_sticky_users_keep_their_arm(tmp_path):
    app, backend, request_log = make_app(tmp_path, mode="sticky", weights=(1, 1))
    users = [f"user-{i}" for i in range(60)]
    with TestClient(app) as client:
        arms = {user: {ask(client, user_id=user).json()["arm"] for _ in range(3)} for user in users}
        anonymous = [ask(client).json()["assignment"] for _ in range(5)]
    assert all(len(seen) == 1 for seen in arms.values())
    assert {next(iter(seen)) for seen in arms.values()} == {"distilbert", "bert"}  # both arms get users
    assert set(anonymous) == {"random"}
    # The same assignment as the pure function (the service adds nothing of its own).
    policy = RoutingPolicy.build("exp-1", "sticky", ["distilbert", "bert"], [1, 1])
    assert all(seen == {route(policy, draw=0, user_id=user).arm} for user, seen in arms.items())


def test_shadow_mode_answers_from_the_primary_and_logs_the_shadow_off_the_response_path(tmp_path):
    gate = threading.Event()
    backend = FakeBackend(gate={"bert": gate})   # the shadow arm blocks until released
    app, backend, request_log = make_app(tmp_path, mode="shadow", primary="distilbert", backend=backend)
    with TestClient(app) as client:
        started = time.perf_counter()
        response = ask(client)
        elapsed = time.perf_counter() - started
        body = response.json()
        # The response came back while the shadow arm was still blocked: it is off the response path.
        assert response.status_code == 200 and body["arm"] == "distilbert" and body["shadow_arms"] == ["bert"]
        assert elapsed < 5
        gate.set()
        assert app.state.wait_for_shadows(10)
        summary = client.get("/v1/experiments/exp-1/summary").json()
    entries = list(read_entries(make_engine(f"sqlite:///{tmp_path / 'router.db'}")))
    assert sorted((e.arm, e.role) for e in entries) == [("bert", "shadow"), ("distilbert", "primary")]
    assert {e.request_id for e in entries} == {body["request_id"]}
    shadow = next(e for e in entries if e.role == "shadow")
    assert shadow.answer == "bert:The" and shadow.latency_ms == 3.0
    assert summary["arms"]["bert"]["shadow"] == 1 and summary["arms"]["bert"]["routed"] == 0
    assert summary["arms"]["bert"]["latency_ms"]["p50"] == 3.0
    assert summary["arms"]["distilbert"]["share"] == 1.0


def test_shadow_backlog_is_bounded(tmp_path):
    gate = threading.Event()
    backend = FakeBackend(gate={"bert": gate})
    app, backend, request_log = make_app(tmp_path, mode="shadow", backend=backend, max_shadow_backlog=2)
    with TestClient(app) as client:
        codes = [ask(client).status_code for _ in range(5)]
        metrics = client.get("/metrics").text
        gate.set()
        assert app.state.wait_for_shadows(10)
    assert codes == [200] * 5
    assert 'abqa_router_shadow_skipped_total{arm="bert",experiment="exp-1"} 3.0' in metrics
    assert [call[0] for call in backend.calls].count("bert") == 2


def test_pinned_arm_bypasses_the_policy_and_is_logged_as_pinned(tmp_path):
    app, backend, request_log = make_app(tmp_path, weights=(1, 0))
    with TestClient(app) as client:
        body = ask(client, arm="bert").json()
        unknown = ask(client, arm="gpt")
        summary = client.get("/v1/experiments/exp-1/summary").json()
    assert body["arm"] == "bert" and body["assignment"] == "pinned"
    assert unknown.status_code == 422 and "not in experiment" in unknown.json()["detail"]
    assert summary["arms"]["bert"]["pinned"] == 1 and summary["routed"] == 0


@pytest.mark.parametrize("fields, status", [
    ({"question": "q" * 1001}, 422),
    ({"context": "c" * 20_001}, 422),
    ({"question": "   "}, 422),
    ({"question": ""}, 422),
    ({"user_id": "u" * 201}, 422),
    ({"question": None}, 422),
])
def test_input_limits_give_4xx(tmp_path, fields, status):
    app, backend, request_log = make_app(tmp_path)
    with TestClient(app) as client:
        response = client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT, **fields})
        missing = client.post("/v1/answer", json={"question": QUESTION})
        not_json = client.post("/v1/answer", content=b"{", headers={"content-type": "application/json"})
        at_limit = ask(client, question="q" * 1000, context="c" * 20_000)
    assert response.status_code == status
    assert missing.status_code == 422 and not_json.status_code == 422
    assert at_limit.status_code == 200
    assert len(backend.calls) == 1   # nothing invalid reached the backend


def test_body_size_limit_gives_413_declared_or_streamed(tmp_path):
    app, backend, request_log = make_app(tmp_path, limits=Limits(max_question_chars=10, max_context_chars=50,
                                                                 max_body_bytes=300))
    big = json.dumps({"question": "q", "context": "c" * 400}).encode()
    with TestClient(app) as client:
        declared = client.post("/v1/answer", content=big, headers={"content-type": "application/json"})
        streamed = client.post("/v1/answer", content=iter([big[:200], big[200:]]),
                               headers={"content-type": "application/json"})
        small_but_long = ask(client, question="q" * 11, context="c")
        ok = ask(client, question="q?", context="c d")
        schema = client.get("/openapi.json").json()
    assert declared.status_code == 413 and streamed.status_code == 413
    assert "300 bytes" in declared.json()["detail"]
    assert small_but_long.status_code == 422 and ok.status_code == 200
    request_schema = schema["components"]["schemas"]["AnswerRequest"]["properties"]
    assert request_schema["question"]["maxLength"] == 10 and request_schema["context"]["maxLength"] == 50


def test_backend_down_is_503_failure_is_502_and_both_are_logged(tmp_path):
    backend = FakeBackend(fail={"distilbert": BackendUnavailable("no Triton server answers at 127.0.0.1:1"),
                                "bert": AnswerFailed("model bert: bad input")})
    app, backend, request_log = make_app(tmp_path, backend=backend)
    with TestClient(app) as client:
        down = ask(client, arm="distilbert")
        failed = ask(client, arm="bert")
        summary = client.get("/v1/experiments/exp-1/summary").json()
    assert down.status_code == 503 and "no Triton server answers" in down.json()["detail"]
    assert failed.status_code == 502 and "bad input" in failed.json()["detail"]
    assert down.headers["X-Request-ID"] != failed.headers["X-Request-ID"]
    entries = list(read_entries(make_engine(f"sqlite:///{tmp_path / 'router.db'}")))
    assert [(e.arm, e.status) for e in entries] == [("distilbert", "failed"), ("bert", "failed")]
    assert "BackendUnavailable" in entries[0].error and entries[0].latency_ms is None
    assert summary["arms"]["bert"]["failed"] == 1 and summary["arms"]["bert"]["latency_ms"]["p50"] is None


def test_logging_does_not_block_responses_and_is_flushed_at_shutdown(tmp_path, monkeypatch):
    release = threading.Event()
    app, backend, request_log = make_app(tmp_path)
    original = request_log._write

    def slow_write(batch):
        release.wait(30)    # the database hangs
        original(batch)

    monkeypatch.setattr(request_log, "_write", slow_write)
    with TestClient(app) as client:
        started = time.perf_counter()
        codes = [ask(client).status_code for _ in range(50)]
        elapsed = time.perf_counter() - started
        assert request_log.written == 0          # nothing reached the database yet...
        threading.Timer(0.5, release.set).start()
    assert codes == [200] * 50 and elapsed < 10  # ...and nobody waited for it
    assert request_log.written == 50             # shutdown flushed everything
    assert len(list(read_entries(make_engine(f"sqlite:///{tmp_path / 'router.db'}")))) == 50


def test_log_drops_and_counts_when_the_queue_is_full(tmp_path):
    request_log = RequestLog(f"sqlite:///{tmp_path / 'r.db'}", max_queue=2)   # not started: nothing drains it
    from abqa.router.requestlog import LogEntry, utc_now

    entry = LogEntry(utc_now(), "e", "r", "a", "primary", "random", "ok")
    assert [request_log.submit(entry) for _ in range(4)] == [True, True, False, False]
    assert request_log.dropped == 2


def test_summary_metrics_health_and_docs(tmp_path):
    app, backend, request_log = make_app(tmp_path, weights=(1, 1))
    with TestClient(app) as client:
        for _ in range(20):
            ask(client)
        summary = client.get("/v1/experiments/exp-1/summary").json()
        unknown = client.get("/v1/experiments/nope/summary")
        metrics = client.get("/metrics")
        health = client.get("/v1/health").json()
        docs = client.get("/docs")
    assert summary["requests"] == 20 and summary["policy"]["mode"] == "split"
    bert = summary["arms"]["bert"]
    assert bert["ok"] == bert["routed"] and bert["latency_ms"]["p99"] == 3.0
    assert summary["arms"]["distilbert"]["latency_ms"]["mean"] == 1.0
    assert sum(arm["share"] for arm in summary["arms"].values()) == pytest.approx(1.0)
    assert unknown.status_code == 404
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.text.splitlines()
                if line.startswith("abqa_router_requests_total{"))
    assert total == 20
    assert "abqa_router_answer_latency_seconds_bucket" in metrics.text
    assert health["experiment"] == "exp-1" and health["limits"]["max_question_chars"] == 1000
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_an_old_experiment_in_the_same_log_has_its_own_summary(tmp_path):
    app, _, _ = make_app(tmp_path, weights=(1, 0))
    with TestClient(app) as client:
        ask(client)
    policy = RoutingPolicy.build("exp-2", "split", ["distilbert", "bert"], [0, 1])
    app2 = create_app(policy, FakeBackend(), RequestLog(f"sqlite:///{tmp_path / 'router.db'}"))
    with TestClient(app2) as client:
        ask(client)
        old = client.get("/v1/experiments/exp-1/summary").json()
        new = client.get("/v1/experiments/exp-2/summary").json()
    assert old["arms"]["distilbert"]["routed"] == 1 and old["policy"]["weights"]["bert"] == 0
    assert new["arms"]["bert"]["routed"] == 1 and new["arms"]["distilbert"]["routed"] == 0


# --- CLI -----------------------------------------------------------------------------------------------------------


def test_cli_builds_the_policy_and_defaults_to_loopback():
    from abqa.cli import build_parser
    from abqa.router.cli import build_policy

    args = build_parser().parse_args(["router", "--arms", "distilbert,bert", "--weights", "9:1", "--mode", "sticky"])
    policy = build_policy(args)
    assert policy.experiment == "distilbert-vs-bert" and policy.weights == pytest.approx((0.9, 0.1))
    assert args.host == "127.0.0.1" and args.db == "sqlite:///runs/router.db"
    export = build_parser().parse_args(["router", "export-log", "--out", "runs/x"])
    assert export.run.__name__ == "run_export"


def test_cli_router_fails_clearly_when_no_triton_answers(tmp_path, capsys):
    from abqa.cli import main
    from abqa.serve.process import free_ports

    (port,) = free_ports(1)
    code = main(["router", "--url", f"127.0.0.1:{port}", "--protocol", "http", "--db",
                 f"sqlite:///{tmp_path / 'r.db'}", "--model-repository", str(tmp_path)])
    assert code == 2
    assert "no Triton server answers" in capsys.readouterr().err
