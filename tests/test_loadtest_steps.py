"""The load test's measurement rules without a server: open-loop schedules, stable steps, the generator's flags, the
SLO search, answers under load, and the request log."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from abqa.core.errors import AbqaError
from abqa.core.run import GeneratorView, LoadRow, RequestLog, RequestLogTail, RequestRecord, StepRecord
from abqa.core.scoring import SQUAD_V1
from abqa.loadtest import figures, slo
from abqa.loadtest.answers import AnswerKey, compose
from abqa.loadtest.schedule import Arrival, arrival_offsets, parse_rates, run_schedule, schedule
from abqa.loadtest.steps import StepPlan, max_measure_s, step_state
from abqa.loadtest.traffic import TrafficPlan

PAIR = TrafficPlan(("distilbert", "bert"), (1.0, 1.0), "split")


# --- the open-loop schedule -----------------------------------------------------------------------------------------


def test_poisson_arrivals_have_the_rate_and_exponential_gaps():
    offsets = np.fromiter(arrival_offsets(8.0, "poisson", random.Random(1)), float, count=20000)
    gaps = np.diff(np.concatenate([[0.0], offsets]))
    assert gaps.mean() == pytest.approx(1 / 8, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)    # exponential: SD = mean
    assert np.sum(offsets < 100.0) == pytest.approx(800, rel=0.08)      # 8 per second over 100 s
    constant = np.fromiter(arrival_offsets(4.0, "constant", random.Random(1)), float, count=5)
    assert constant.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_schedule_is_fixed_by_its_seed_and_independent_of_what_is_asked():
    first = list(zip(range(500), schedule(5.0, "poisson", PAIR, 64, "0:rate-5:0:0")))
    again = list(zip(range(500), schedule(5.0, "poisson", PAIR, 64, "0:rate-5:0:0")))
    assert first == again
    other_arms = TrafficPlan(("a", "b", "c"), (1.0, 5.0, 1.0), "split")
    times = [arrival.offset_s for _, arrival in first]
    assert [arrival.offset_s for _, arrival in zip(range(500), schedule(5.0, "poisson", other_arms, 7, "0:rate-5:0:0"))] \
        == times                                                        # the times do not depend on the requests
    arms = [arrival.arms for _, arrival in first]
    assert all(len(chosen) == 1 for chosen in arms) and 200 < sum(chosen == ("bert",) for chosen in arms) < 300
    parallel = TrafficPlan(("distilbert", "bert"), (1.0, 1.0), "parallel")
    assert all(arrival.arms == ("distilbert", "bert")
               for _, arrival in zip(range(50), schedule(5.0, "poisson", parallel, 64, 3)))
    assert parse_rates("2, 4,8,4") == (2.0, 4.0, 8.0) and parse_rates("") == ()
    for bad in ("0", "-1", "fast"):
        with pytest.raises(AbqaError, match="--rate"):
            parse_rates(bad)


def test_the_schedule_never_waits_for_an_answer():
    """Answers that take 0.3 s each, arrivals every 10 ms: a closed loop would fall seconds behind; the open loop
    sends each request on time and has many in flight."""
    import gevent
    from gevent.pool import Group

    arrivals = [Arrival(0.01 * index, 0, ("bert",)) for index in range(40)]
    sent, in_flight, most = [], [0], [0]

    def send(arrival, scheduled):
        sent.append((arrival.offset_s, time.perf_counter() - scheduled))
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        gevent.sleep(0.3)
        in_flight[0] -= 1

    group = Group()
    began = time.perf_counter()
    run_schedule(arrivals, send, spawn=group.spawn)
    group.join()
    assert [offset for offset, _ in sent] == [arrival.offset_s for arrival in arrivals]
    assert max(lateness for _, lateness in sent) < 0.25          # vs 40 x 0.3 s of waiting in a closed loop
    assert most[0] >= 20 and time.perf_counter() - began < 2.0


# --- steps: windows and the stability rule --------------------------------------------------------------------------


def answered(arm, finished, latency, *, warmup=False, scheduled=False, step="users-1"):
    origin = finished - latency / 1000.0
    return RequestRecord(arm=arm, step=step, scheduled_at=origin if scheduled else None, sent_at=origin,
                         latency_ms=latency, status="ok", warmup=warmup, tokens=10, padded_tokens=64)


def steady(arm, seconds, per_second, latency, start=100.0, **kwargs):
    return [answered(arm, start + (i + 1) / per_second, latency, **kwargs) for i in range(int(seconds * per_second))]


def test_windows_are_counted_by_completion_and_the_warmup_is_left_out():
    records = [answered("bert", 99.0, 10.0, warmup=True)] + steady("bert", 9, 10, 50.0)
    records += steady("distilbert", 9, 5, 20.0)
    start = figures.measured_span(records).start            # the first measured request's send: 100.05
    windows = figures.windows(records, ["bert", "distilbert"], 30, start=start)
    assert [w.answered for w in windows["bert"]] == [30, 30, 30] and len(windows["distilbert"]) == 1
    first, second = windows["bert"][:2]
    assert first.start_s == 0.0 and first.end_s == pytest.approx(2.95) and second.requests_per_s == 10.0
    assert first.mean_ms == first.p50_ms == 50.0


def test_stability_rule_needs_three_agreeing_windows():
    step = StepPlan.closed(1, ("bert",))
    flat = steady("bert", 9, 10, 50.0)
    state = step_state(flat, step, 110.0, window=30, tolerance=0.1, max_s=60.0)
    assert state.stable and state.stop is None               # stable, but 90 answers: p99 needs 100
    assert len(state.windows["bert"]) == 3
    flat = steady("bert", 12, 10, 50.0)
    state = step_state(flat, step, 113.0, window=30, tolerance=0.1, max_s=60.0)
    assert state.stop.startswith("stable")
    # a latency that keeps growing (a queue building up) is never stable; the maximum duration ends the step
    growing = [answered("bert", 100.0 + i / 10, 50.0 + 2.0 * i) for i in range(1, 300)]
    state = step_state(growing, step, 131.0, window=30, tolerance=0.1, max_s=60.0)
    assert not state.stable and state.stop is None
    state = step_state(growing, step, 161.0, window=30, tolerance=0.1, max_s=60.0)
    assert state.stop.startswith("maximum duration") and "did not stabilise" in state.stop
    # closed loop: a throughput that halves is not stable; open loop judges the latency only
    halving = steady("bert", 6, 10, 50.0) + steady("bert", 6, 5, 50.0, start=106.0)
    state = step_state(halving, step, 113.0, window=15, tolerance=0.1, max_s=60)
    assert [window.requests_per_s for window in state.windows["bert"][-3:]] == pytest.approx([10.0, 5.0, 5.0])
    assert not state.stable
    assert step_state(halving, StepPlan.open(8.0, ("bert",)), 113.0, window=15, tolerance=0.1, max_s=60).stable
    # every arm must be stable, and an arm without three windows is not
    two_arms = StepPlan.closed(2, ("bert", "distilbert"))
    assert not step_state(flat + steady("distilbert", 3, 10, 50.0), two_arms, 113.0, window=30, tolerance=0.1,
                          max_s=60).stable


def test_an_slo_step_stops_as_soon_as_the_bound_is_broken():
    step = StepPlan.slo("bert", 4.0)
    records = steady("bert", 5, 4, 80.0, scheduled=True, step=step.name)
    assert step_state(records, step, 106.0, window=30, tolerance=0.1, max_s=60.0, slo_ms=100.0).stop is None
    records += [answered("bert", 105.5, 250.0, scheduled=True, step=step.name)] * 2
    state = step_state(records, step, 106.0, window=30, tolerance=0.1, max_s=60.0, slo_ms=100.0)
    assert "2 measured requests took longer than 100 ms" in state.stop
    assert max_measure_s(step, 20.0) == 30.0                    # 1.2 x 100 requests at 4 per second
    assert max_measure_s(StepPlan.slo("bert", 0.1), 20.0) == 120.0  # capped
    assert max_measure_s(StepPlan.slo("bert", 40.0), 20.0) == 20.0  # never below --duration
    assert max_measure_s(StepPlan.open(0.1, ("bert",)), 20.0) == 20.0


# --- the generator ----------------------------------------------------------------------------------------------------


def test_a_saturated_or_late_generator_is_flagged():
    samples = [(t, {1: 0.05 * t, 2: 0.95 * t}) for t in np.arange(0.0, 10.5, 0.5)]  # pid 2 busy 95% of a core
    mean, peak = figures.cpu_percent(samples, 2.0, 10.0)
    assert mean == pytest.approx(95.0) and peak == pytest.approx(95.0)
    on_time = [RequestRecord(arm="bert", step="rate-100", request_id=str(i), scheduled_at=100 + i / 100,
                             sent_at=100 + i / 100 + 0.001, latency_ms=20.0, status="ok") for i in range(500)]
    view = figures.generator_view(on_time, processes=1, rate_per_generator=100.0, cpu=(mean, peak))
    assert view.saturated and not view.behind and view.late_requests == 0
    assert view.lateness_p50_ms == pytest.approx(1.0, abs=0.01)
    late = [record.model_copy(update={"sent_at": record.scheduled_at + 0.0021 * i}) for i, record in enumerate(on_time)]
    view = figures.generator_view(late, processes=1, rate_per_generator=100.0, cpu=(40.0, 60.0))
    assert view.behind and not view.saturated and view.late_requests == 495   # later than 10 ms: from i = 5 on
    assert view.lateness_max_ms == pytest.approx(1047.9)
    # the copies of one parallel request count once; closed-loop records have no lateness
    closed = [record.model_copy(update={"scheduled_at": None}) for record in on_time]
    assert figures.generator_view(closed, processes=1, rate_per_generator=None, cpu=(None, None)).late_share is None
    assert figures.late_mark_ms(2.0) == 500.0 and figures.late_mark_ms(1000.0) == figures.LATE_MS


# --- the SLO search ---------------------------------------------------------------------------------------------------


def trial(rate, held):
    return slo.SloTrial(rate, held, "", f"slo-bert-rate-{rate:g}", 90.0 if held else 300.0, 120)


def test_the_slo_search_brackets_the_highest_rate_within_the_bound():
    assert slo.next_rate([], 4.1) == 4.1
    assert slo.next_rate([trial(4.0, True)], 4.0) == 6.0                  # up by 1.5 while it holds
    assert slo.next_rate([trial(4.0, False)], 4.0) == 2.7                 # down while it does not
    assert slo.next_rate([trial(4.0, True), trial(6.0, False)], 4.0) == 4.9  # then the geometric mean
    assert slo.next_rate([trial(4.0, True), trial(4.5, False)], 4.0) is None  # within 15%: done
    assert slo.next_rate([trial(1.0, True)] * 4, 1.0) is None              # out of steps
    result = slo.slo_result("bert", 100.0, [trial(4.0, True), trial(6.0, False), trial(4.9, True)])
    assert result.sustained_rate == 4.9 and result.failed_rate == 6.0 and result.p99_ms == 90.0
    assert result.statement.startswith("bert sustains 4.9 req/s at p99 <= 100 ms (p99 90 ms from 120 requests")
    nothing = slo.slo_result("bert", 100.0, [trial(4.0, False), trial(2.7, False)])
    assert nothing.sustained_rate is None and "did not meet p99 <= 100 ms at any rate" in nothing.statement
    row = LoadRow(arm="bert", users=1, requests=50, failures=0, requests_per_s=10.0, latency_ms={"p50": 100.0})
    assert slo.starting_rate([row], "bert") == 7.5 and slo.starting_rate([], "bert") == 1.0


def test_judging_one_slo_step():
    step = StepRecord(name="slo-bert-rate-5", kind="slo", rate=5.0, locust_dir="d")
    def row(**latency):
        return LoadRow(arm="bert", step=step.name, rate=5.0, requests=120, failures=0, requests_per_s=5.0,
                       latency_ms=latency)
    assert slo.judge(row(p99=95.0, samples=120), step, 100.0, over=1).held
    assert slo.judge(row(p99=140.0, samples=120), step, 100.0, over=3).held is False
    early = slo.judge(row(p99=None, samples=37), step, 100.0, over=2)
    assert early.held is False and "2 of its first 37 measured requests took longer" in early.reason
    unknown = slo.judge(row(p99=None, samples=60), step, 100.0, over=0)
    assert unknown.held is None and "p99 needs 100" in unknown.reason
    behind = step.model_copy(update={"generator": GeneratorView(behind=True)})
    assert slo.judge(row(p99=50.0, samples=120), behind, 100.0, over=0).held is None
    failed = LoadRow(arm="bert", step=step.name, requests=120, failures=1, requests_per_s=5.0)
    assert slo.judge(failed, step, 100.0, over=0).held is False


# --- answers under load -----------------------------------------------------------------------------------------------


def decoded(question, window, answer, score, null=None, *, arm="bert", status="ok"):
    return RequestRecord(arm=arm, step="users-1", question_id=question, window=window, scheduled_at=None,
                         sent_at=1.0, latency_ms=5.0 if status == "ok" else None, status=status, answer=answer,
                         answer_score=score, null_score=null)


def test_a_question_is_composed_over_its_windows_like_best_answer():
    assert compose({0: ("first", 3.0, 1.0), 1: ("second", 5.0, 0.5)}, None) == "second"
    assert compose({0: ("first", 5.0, 1.0), 1: ("second", 5.0, 0.5)}, None) == "first"   # a tie: the earlier
    assert compose({0: ("span", 2.0, 4.0)}, 0.0) == ""                  # SQuAD v2.0: the null score wins
    assert compose({0: ("span", 2.0, 4.0)}, 3.0) == "span"
    assert compose({0: ("", None, 1.0)}, 0.0) == ""


def test_answers_under_load_against_eval_jsonl():
    key = AnswerKey(windows_per_question={"q1": 1, "q2": 2, "q3": 1, "q4": 1},
                    references={"q1": ("Paris",), "q2": ("1889",), "q3": ("red",), "q4": ("blue",)},
                    languages={}, rule=SQUAD_V1,
                    isolated={"bert": {"q1": "Paris", "q2": "1889", "q3": "red"}})
    records = [decoded("q1", 0, "Paris", 4.0), decoded("q1", 0, "Paris", 4.0001),    # the same answer twice
               decoded("q2", 0, "in 1887", 1.0), decoded("q2", 1, "1889", 6.0),      # composed over 2 windows
               decoded("q3", 0, "red", 2.0), decoded("q3", 0, "blue", 2.1),           # changed under load
               decoded("q4", 0, "blue", 1.0),                                         # not evaluated in isolation
               decoded("q1", 0, None, None, status="failed")]
    check = key.check(records, "bert")
    assert (check.questions, check.compared, check.identical) == (4, 3, 2)
    assert check.identical_share == pytest.approx(2 / 3, abs=1e-4) and check.differing == ["q3"]
    assert check.em == 100.0 and check.f1 == 100.0                    # q3: "red" or "blue" is one of them: its first
    partial = key.check([decoded("q2", 1, "1889", 6.0)], "bert")    # one of two windows: not yet a question
    assert partial.questions == 0 and partial.compared == 0 and partial.identical_share is None
    alone = key.check(records, "distilbert")
    assert alone.compared == 0 and "no eval.jsonl answers" in alone.note
    assert key.check([decoded("q1", 0, None, None)], "bert") is None


# --- the request log --------------------------------------------------------------------------------------------------


def test_the_request_log_is_appended_and_followed(tmp_path):
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path)
    first = answered("bert", 1.0, 5.0)
    log.append([first, first.to_dict()])
    tail = RequestLogTail(path)
    assert tail.read_new() == [first, first]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"arm": "bert", "step": "users-1", "sent_at"')          # a line still being written
    assert tail.read_new() == []
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(': 2.0, "scheduled_at": null, "latency_ms": 3.0, "status": "ok"}\n')
    (completed,) = tail.read_new()
    assert completed.sent_at == 2.0 and completed.finished_at == pytest.approx(2.003)
    assert RequestLogTail(path, from_end=True).read_new() == []
    with pytest.raises(AbqaError, match="requests.jsonl: step: Field required"):
        log.append([{"arm": "bert"}])
    log.close()
