"""abqa router through a real `abqa serve` (tiny arms), and its log exported as a run that `abqa report` reads."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from abqa.core.squad import load_builtin_sample

pytestmark = pytest.mark.integration


def test_router_in_shadow_mode_through_triton_then_export_and_report(triton_server, tiny_repository, tmp_path):
    from abqa.analysis.report import build_report
    from abqa.client.arms import ServedArm
    from abqa.router.app import create_app
    from abqa.router.backend import TritonBackend, check_arms
    from abqa.router.export import export_log
    from abqa.router.policy import RoutingPolicy
    from abqa.router.requestlog import RequestLog, make_engine, read_entries

    questions = load_builtin_sample().questions[:4]
    db = f"sqlite:///{tmp_path / 'router.db'}"
    backend = TritonBackend(triton_server.grpc, model_repository=tiny_repository)
    arms_info = check_arms(backend, ["distilbert", "bert"])
    # The arms' provenance, as `abqa evaluate` records it (the tiny arms are exported from local checkpoints).
    assert arms_info["bert"]["source_kind"] == "local" and arms_info["bert"]["triton"]["max_batch_size"] > 0
    policy = RoutingPolicy.build("tiny-shadow", "shadow", ["distilbert", "bert"], primary="distilbert")
    app = create_app(policy, backend, RequestLog(db), session_info={
        "backend": {"url": triton_server.grpc.address, "protocol": "grpc"}, "arms": arms_info})
    with TestClient(app) as client:
        bodies = []
        for question in questions:
            response = client.post("/v1/answer", json={"question": question.question, "context": question.context,
                                                       "squad_id": question.id, "user_id": "tester"})
            assert response.status_code == 200, response.text
            bodies.append(response.json())
        free = client.post("/v1/answer", json={"question": "Who wrote it?", "context": "It was written by Ada."})
        assert free.status_code == 200
        assert app.state.wait_for_shadows(60)
        summary = client.get("/v1/experiments/tiny-shadow/summary").json()

    # The router's answers are the evaluate stage's answers (same tokenisation and post-processing).
    direct = ServedArm("distilbert", tiny_repository, triton_server.grpc.address, "grpc")
    direct.connect()
    try:
        for question, body in zip(questions, bodies):
            assert body["arm"] == "distilbert" and body["shadow_arms"] == ["bert"]
            assert body["answer"] == direct.answer(question).prediction
            assert body["answer"] in question.context and body["latency_ms"] > 0
            assert body["score"] is not None
    finally:
        direct.close()
    entries = list(read_entries(make_engine(db)))
    assert sorted((e.role, e.arm) for e in entries).count(("shadow", "bert")) == 5
    assert all(e.status == "ok" and e.windows >= 1 and e.tokens > 0 for e in entries)
    assert summary["arms"]["bert"]["shadow"] == 5 and summary["arms"]["distilbert"]["routed"] == 5

    run_dir = tmp_path / "runs" / "router"
    result = export_log(db, run_dir, squad="builtin")
    assert (result.records, result.scored, result.unscored) == (10, 8, 2)
    records = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert {r["status"] for r in records} == {"ok", "unscored"}
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["arms"]["bert"]["source_kind"] == "local" and meta["arms"]["bert"]["kind"] == "served"
    assert meta["router"]["policy"]["mode"] == "shadow" and meta["dataset"]["source"] == "builtin-sample"

    # `abqa report` reads the exported log as it is: accuracy over the scored answers, latency over every answer.
    report = build_report(run_dir, n_resamples=200)
    arms = report.data["arms"]
    assert (arms["bert"]["questions"], arms["bert"]["ok"], arms["bert"]["unscored"]) == (5, 4, 1)
    assert arms["bert"]["latency_ms"]["n"] == 5 and arms["distilbert"]["latency_ms"]["n"] == 5
    assert arms["bert"]["provenance"]["kind"] == "served" and not arms["bert"]["provenance"]["inferred"]
    test = next(iter(report.data["tests"].values()))
    assert test["paired_questions"] == 4 and test["latency"]["paired_questions"] == 5
    assert any("nothing to score them against" in note for note in report.data["notes"])
