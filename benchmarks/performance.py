"""Speed at the machine's limit: every speed ratio abqa claims, measured in one run on the current machine.

    abqa export --offline --quantize int8 --optimize O2 --model-repository /work/models   # full-size stand-ins
    flock -x /tmp/abqa-cpu.lock python benchmarks/performance.py --model-repository /work/models \\
        | tee benchmarks/results/performance.txt

1. The machine: cores, CPU, single-core sgemm GFLOPS (so that runs on different hosts can be compared).
2. Thread plans, in-process: both fp32 arms loaded in one process under each plan (a process of its own per plan,
   so that no plan's threads linger into another's): p50 of one request at a time with the arms alternating
   (what an isolated evaluation does), and both arms loaded at once (req/s each, and the work rate: requests per
   second weighted by each arm's lone all-core p50, i.e. machine-seconds of lone requests done per second).
3. `abqa serve` with default settings, idle, against the same model in-process with every core (ONNX Runtime's
   defaults): p50 per arm. Goal: at most 1.10x.
4. `abqa serve` under concurrency: both arms loaded at once through the server; its work rate against every other
   plan of 2, served the same way, in rotation. Goal: at least 0.95 of the best.
5. Padding and the full dev set: served p50 per length bucket; the SQuAD v1.1 dev set's tokens under each pad
   multiple; the full paired evaluation (both fp32 arms, one request at a time) projected from them.
6. Batch 8 against batch 1, in-process. 7. int8 and O2 against fp32, through the server and in-process.
8. Tokens per second, in-process and through the server.

Requests are real SQuAD windows (the shared dev set when it is beside the project). In-process and served calls
alternate with a pause between them: ONNX Runtime's workers keep spinning for tens of milliseconds after a run,
and a call right after one on the other path would pay for it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from abqa.core.config import (DEFAULT_MODEL_REPOSITORY, DEFAULT_THREAD_PLAN, MAX_SEQ_LENGTH, PAD_MULTIPLE,
                              PAD_MULTIPLE_GPU)
from abqa.core.machine import cpu_count, cpu_model
from abqa.core.repository import ArmPaths
from abqa.serve.repository import discover_arms, read_arm_model_config

SERVE_GOAL, CONCURRENCY_GOAL, INT8_GOAL, FULL_DEV_GOAL_MIN = 1.10, 0.95, 2.5, 40.0
PAUSE_S = 0.15                  # lets the other path's spinning workers go to sleep
PAD_MULTIPLES = (1, 8, 16, 32, 64)
DEFAULT_LABEL = f"{DEFAULT_THREAD_PLAN} (default)"
BUCKETS = (64, 128, 192, 256, 320, 384)


@dataclass(frozen=True)
class PlanSpec:
    """A thread plan to measure: abqa serve's (`kind`, `threads` as `abqa serve --thread-plan/--threads`), or
    ONNX Runtime's defaults (every core per session, spinning: the onnxruntime backend without thread parameters)."""

    label: str
    kind: str                   # adaptive | shared | per-session | onnxruntime-defaults
    threads: int | None = None


def plan_specs(cores: int) -> list[PlanSpec]:
    specs = [
        PlanSpec("per-session, config.pbtxt's threads (cores shared out)", "per-session"),
        PlanSpec(f"per-session, {cores} threads each, no spinning", "per-session", cores),
        PlanSpec("onnxruntime defaults: every core per session, spinning", "onnxruntime-defaults"),
        PlanSpec("shared: every core per session, spinning during a run, one inference at a time", "shared"),
        PlanSpec("adaptive: every core when idle, a share when busy, no spinning", "adaptive"),
    ]
    return [PlanSpec(f"{spec.label} (default)", spec.kind) if spec.kind == DEFAULT_THREAD_PLAN else spec
            for spec in specs]


# --- requests ------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def dev_questions():
    from abqa.core.data_sources import resolve

    return resolve(None).questions


@functools.lru_cache(maxsize=None)
def tokenizer_of(repository: Path, arm: str):
    from abqa.core.qa import load_tokenizer

    return load_tokenizer(ArmPaths(repository, arm).tokenizer)


def window_of_length(repository: Path, arm: str, length: int, batch: int = 1) -> dict[str, np.ndarray]:
    """A real SQuAD window of exactly `length` tokens (question + context, cut to fit), repeated `batch` times."""
    from abqa.core.qa import encode_question

    tokenizer = tokenizer_of(repository, arm)
    names = [spec.name for spec in read_arm_model_config(repository, arm).inputs]
    question = max(dev_questions()[:200], key=lambda q: len(q.context))
    context = question.context * 4
    window = encode_question(tokenizer, question.question, context, input_names=names, max_seq_length=length,
                             doc_stride=length // 4, pad_multiple=1)[0]
    return {name: np.repeat(values[None, :length], batch, axis=0) for name, values in window.arrays.items()}


def p50(values: list[float]) -> float:
    return float(statistics.median(values))


def timed_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def closed_loops(calls: dict[str, object], seconds: float) -> dict[str, float]:
    """Each arm's call in its own thread, back to back, for `seconds`: requests per second per arm."""
    counts = {arm: 0 for arm in calls}
    stop = time.perf_counter() + seconds

    def loop(arm: str) -> None:
        while time.perf_counter() < stop:
            calls[arm]()
            counts[arm] += 1

    threads = [threading.Thread(target=loop, args=(arm,)) for arm in calls]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {arm: count / elapsed for arm, count in counts.items()}


def work_rate(rps: dict[str, float], lone_ms: dict[str, float]) -> float:
    """Machine-seconds of lone all-core requests done per second: 1.0 = as fast as each request alone on the whole
    machine, back to back."""
    return sum(rps[arm] * lone_ms[arm] / 1000.0 for arm in rps)


# --- 1. the machine ------------------------------------------------------------------------------------------------


def sgemm_gflops(size: int = 1024, repeats: int = 20) -> float:
    """Single-thread float32 matrix product speed (numpy in a child with one BLAS thread)."""
    code = ("import numpy as np, time\n"
            f"a = np.random.rand({size}, {size}).astype(np.float32); b = a.T.copy()\n"
            "for _ in range(3): a @ b\n"
            f"t = time.perf_counter()\nfor _ in range({repeats}): a @ b\n"
            f"print(2 * {size} ** 3 * {repeats} / (time.perf_counter() - t) / 1e9)")
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": ""}
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                check=True).stdout)


# --- 2. thread plans, each in a child process ----------------------------------------------------------------------


def plan_child(job: dict) -> dict:
    """Runs in a child process: one plan (or the all-core reference) on the given arms."""
    from abqa.serve.repository import plan_threads
    from abqa.serve.session import PlanRuntime, create_session

    repository, arms, length = Path(job["repository"]), job["arms"], job["length"]
    feeds = {arm: window_of_length(repository, arm, length) for arm in arms}
    configs = {arm: read_arm_model_config(repository, arm) for arm in arms}
    outputs = {arm: [spec.name for spec in configs[arm].outputs] for arm in arms}
    if job.get("reference"):
        lone = {}
        for arm in arms:  # one session alone in the process, ONNX Runtime's defaults (every core, spinning)
            session = create_session(configs[arm].model_path)
            for _ in range(3):
                session.run(outputs[arm], feeds[arm])
            lone[arm] = p50([timed_ms(lambda: session.run(outputs[arm], feeds[arm])) for _ in range(job["requests"])])
            del session
        return {"lone_ms": lone}
    spec = PlanSpec(**job["plan"])
    if spec.kind == "onnxruntime-defaults":
        runs = {arm: create_session(configs[arm].model_path).run for arm in arms}
    else:
        runtime = PlanRuntime(plan_threads(list(configs.values()), cpu_count(), kind=spec.kind, threads=spec.threads))
        runs = {arm: runtime.open_instance(arm, configs[arm].model_path).run for arm in arms}
    calls = {arm: (lambda arm=arm: runs[arm](outputs[arm], feeds[arm])) for arm in arms}
    for _ in range(3):
        for arm in arms:
            calls[arm]()
    alternating = {arm: [] for arm in arms}
    for _ in range(job["requests"]):
        for arm in arms:
            alternating[arm].append(timed_ms(calls[arm]))
    rps = closed_loops(calls, job["seconds"])
    return {"alternating_p50_ms": {arm: p50(values) for arm, values in alternating.items()}, "rps": rps}


def run_child(job: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"plan child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_plans(repository: Path, arms: list[str], args, out) -> dict:
    """Every plan in a child process of its own, the plans in rotation for `args.rounds` rounds (the machine's
    speed drifts: rotation spreads it over the plans alike); medians over the rounds."""
    base = {"repository": str(repository), "arms": arms, "length": args.length, "requests": args.requests,
            "seconds": args.seconds}
    reference = run_child({**base, "reference": True})["lone_ms"]
    print(f"\n== 2. thread plans in-process ({args.length} tokens; {args.rounds} rounds; lone all-core p50: "
          + ", ".join(f"{arm} {ms:.1f} ms" for arm, ms in reference.items()) + ")", file=out, flush=True)
    specs = plan_specs(cpu_count())
    results: dict[str, list[dict]] = {spec.label: [] for spec in specs}
    for _ in range(args.rounds):
        for spec in specs:
            results[spec.label].append(run_child({**base, "plan": asdict(spec)}))
    rows = []
    for spec in specs:
        runs = results[spec.label]
        lone = {arm: p50([run["alternating_p50_ms"][arm] for run in runs]) for arm in arms}
        rps = {arm: p50([run["rps"][arm] for run in runs]) for arm in arms}
        rates = [work_rate(run["rps"], reference) for run in runs]
        rows.append({"plan": spec.label, "kind": spec.kind, "threads": spec.threads, "alternating_p50_ms": lone,
                     "rps": rps, "work_rate": p50(rates), "work_rates": rates})
    best = max(row["work_rate"] for row in rows)
    width = max(len(row["plan"]) for row in rows) + 2
    print(f"  {'plan':<{width}}" + "".join(f"{arm + ' p50':>18}" for arm in arms)
          + "".join(f"{arm + ' req/s':>18}" for arm in arms) + f"{'work rate':>11}{'of best':>9}", file=out)
    for row in rows:
        print(f"  {row['plan']:<{width}}" + "".join(f"{row['alternating_p50_ms'][arm]:>15.1f} ms" for arm in arms)
              + "".join(f"{row['rps'][arm]:>18.2f}" for arm in arms)
              + f"{row['work_rate']:>11.3f}{row['work_rate'] / best:>9.1%}", file=out)
    print("  p50: one request at a time, the arms alternating (an isolated evaluation); req/s: both arms loaded at "
          "once; work rate: sum of req/s x lone all-core p50 (1.0 = each request alone on the whole machine, back "
          "to back).", file=out, flush=True)
    return {"reference_lone_ms": reference, "plans": rows, "best_work_rate": best}


# --- 3./4./7. through the server ----------------------------------------------------------------------------------


def served_vs_in_process(client, repository: Path, arms: list[str], length: int, requests: int) -> dict:
    from abqa.serve.session import create_session

    rows = {}
    for arm in arms:
        config = read_arm_model_config(repository, arm)
        feeds = window_of_length(repository, arm, length)
        outputs = [spec.name for spec in config.outputs]
        session = create_session(config.model_path)   # every core, ONNX Runtime's defaults
        for _ in range(3):
            session.run(outputs, feeds)
            client.request(arm, feeds, outputs)
        local, served = [], []
        for i in range(requests):
            order = ((local, lambda: session.run(outputs, feeds)), (served, lambda: client.request(arm, feeds, outputs)))
            for values, fn in (order if i % 2 == 0 else order[::-1]):
                time.sleep(PAUSE_S)
                values.append(timed_ms(fn))
        del session
        rows[arm] = {"in_process_p50_ms": p50(local), "served_p50_ms": p50(served), "ratio": p50(served) / p50(local)}
    return rows


def served_latency_by_length(client, repository: Path, arms: list[str], requests: int) -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    for arm in arms:
        outputs = [spec.name for spec in read_arm_model_config(repository, arm).outputs]
        table[arm] = {}
        for length in BUCKETS:
            feeds = window_of_length(repository, arm, length)
            client.request(arm, feeds, outputs)
            table[arm][length] = p50([timed_ms(lambda: client.request(arm, feeds, outputs)) for _ in range(requests)])
    return table


def served_concurrency(endpoints: dict, repository: Path, arms: list[str], length: int, seconds: float,
                       rounds: int) -> dict[str, dict]:
    """Both arms loaded at once through each server (label -> Endpoint), the servers in rotation for `rounds`
    windows of `seconds` each: req/s per arm and server, medians over the rounds."""
    from abqa.triton.client import RetryPolicy, TritonClient

    feeds = {arm: window_of_length(repository, arm, length) for arm in arms}
    outputs = {arm: [spec.name for spec in read_arm_model_config(repository, arm).outputs] for arm in arms}
    samples: dict[str, list[dict[str, float]]] = {label: [] for label in endpoints}
    for _ in range(rounds):
        for label, endpoint in endpoints.items():
            clients = {arm: TritonClient(endpoint, retry=RetryPolicy(attempts=1)) for arm in arms}
            try:
                calls = {arm: (lambda arm=arm: clients[arm].request(arm, feeds[arm], outputs[arm])) for arm in arms}
                for call in calls.values():
                    call()
                time.sleep(PAUSE_S)
                samples[label].append(closed_loops(calls, seconds))
            finally:
                for client in clients.values():
                    client.close()
    return {label: {arm: p50([sample[arm] for sample in runs]) for arm in arms} | {"rounds": runs}
            for label, runs in samples.items()}


# --- 5. padding and the full dev set -------------------------------------------------------------------------------


def dev_window_lengths(repository: Path, arm: str) -> tuple[list[list[int]], float]:
    """Every dev-set question's window lengths (unpadded) with this arm's tokenizer, and the client's own time per
    question (tokenise + pick the best span from logits of the right shape)."""
    from abqa.core.qa import best_answer, encode_question

    tokenizer = tokenizer_of(repository, arm)
    names = [spec.name for spec in read_arm_model_config(repository, arm).inputs]
    lengths, began = [], time.perf_counter()
    rng = np.random.default_rng(0)
    for index, question in enumerate(dev_questions()):
        windows = encode_question(tokenizer, question.question, question.context, input_names=names, pad_multiple=1)
        if index % 10 == 0:  # the span search on random logits, on a tenth of the questions (it is the same work)
            logits = [rng.standard_normal(w.length).astype(np.float32) for w in windows]
            best_answer(windows, logits, logits, question.context)
        lengths.append([w.length for w in windows])
    return lengths, (time.perf_counter() - began) * 1000.0 / len(lengths)


def padded(length: int, multiple: int) -> int:
    from abqa.core.qa import padded_length

    return padded_length(length, multiple, MAX_SEQ_LENGTH)


def projected_question_ms(windows: list[int], multiple: int, latency: dict[int, float]) -> float:
    """One question's served time: its windows grouped by padded length (one request per group), each request's
    p50 interpolated from the bucket table and scaled by its batch."""
    groups: dict[int, int] = {}
    for length in windows:
        bucket = padded(length, multiple)
        groups[bucket] = groups.get(bucket, 0) + 1
    lengths, times = list(latency), list(latency.values())
    return sum(count * float(np.interp(bucket, lengths, times)) for bucket, count in groups.items())


# --- 6. batching ---------------------------------------------------------------------------------------------------


def batch_gain(repository: Path, arm: str, length: int, seconds: float) -> dict:
    from abqa.serve.session import create_session

    session = create_session(read_arm_model_config(repository, arm).model_path)
    rates = {}
    for batch in (1, 8):
        feeds = window_of_length(repository, arm, length, batch)
        session.run(None, feeds)
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            session.run(None, feeds)
            count += batch
        rates[batch] = count / (time.perf_counter() - began)
    return {"arm": arm, "length": length, "sequences_per_s": rates, "gain": rates[8] / rates[1]}


# --- the report ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    parser.add_argument("--arms", default="bert,distilbert", help="the fp32 pair (default: %(default)s)")
    parser.add_argument("--variants", default="int8,O2",
                        help="variant suffixes served beside their fp32 arm when exported (default: %(default)s)")
    parser.add_argument("--length", type=int, default=192, help="tokens per request (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=15, help="requests per p50 (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per concurrent load (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of the plans in rotation, in-process and through the servers (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(plan_child(json.loads(args.child))))
        return 0

    from abqa.serve.process import start_server
    from abqa.triton.client import RetryPolicy, TritonClient

    out = sys.stdout
    repository = args.model_repository.resolve()
    arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    available = discover_arms(repository)
    variants = [f"{arm}-{suffix}" for suffix in args.variants.split(",") if suffix for arm in arms
                if f"{arm}-{suffix}" in available]
    figures: dict = {"machine": {"cores": cpu_count(), "cpu": cpu_model()}}
    began = time.perf_counter()

    figures["machine"]["sgemm_gflops_1_thread"] = sgemm_gflops()
    print(f"== 1. machine: {cpu_count()} cores, {cpu_model()}; float32 sgemm {figures['machine']['sgemm_gflops_1_thread']:.0f} "
          f"GFLOPS on one core; model repository {repository}", file=out, flush=True)

    figures["plans"] = measure_plans(repository, arms, args, out)
    reference = figures["plans"]["reference_lone_ms"]

    with start_server(repository, arms=arms + variants) as server, \
            TritonClient(server.grpc, retry=RetryPolicy(attempts=1)) as client:
        print(f"\n== 3. abqa serve (default thread plan, gRPC, idle) vs in-process with every core, {args.length} "
              "tokens", file=out, flush=True)
        served = served_vs_in_process(client, repository, arms + variants, args.length, args.requests)
        figures["serve_vs_in_process"] = served
        for arm in arms:
            row = served[arm]
            verdict = "meets" if row["ratio"] <= SERVE_GOAL else "MISSES"
            print(f"  {arm:<16} in-process {row['in_process_p50_ms']:7.1f} ms   served {row['served_p50_ms']:7.1f} ms   "
                  f"ratio {row['ratio']:.3f}x  ({verdict} <= {SERVE_GOAL:.2f}x)", file=out, flush=True)

        # Every other plan of 2 that abqa serve can run, served too, beside the default server: all idle but for
        # the one measured. (The best plan in-process need not be the best served: the path to the sessions differs.)
        rivals = [row for row in figures["plans"]["plans"] if row["kind"] not in (DEFAULT_THREAD_PLAN, "onnxruntime-defaults")]
        with contextlib.ExitStack() as others:
            servers = {DEFAULT_LABEL: server.grpc}
            for row in rivals:
                servers[row["plan"]] = others.enter_context(
                    start_server(repository, arms=arms, thread_plan=row["kind"], threads=row["threads"])).grpc
            loaded = served_concurrency(servers, repository, arms, args.length, args.seconds, args.rounds)
        rates = {label: work_rate({arm: rps[arm] for arm in arms}, reference) for label, rps in loaded.items()}
        share = rates[DEFAULT_LABEL] / max(rates.values())
        rps = {arm: loaded[DEFAULT_LABEL][arm] for arm in arms}
        figures["served_concurrency"] = {"rps": loaded, "work_rate": rates, "default_of_best": share}
        print(f"\n== 4. abqa serve under concurrency: both arms loaded at once through each server, {args.rounds} "
              f"rounds of {args.seconds:.0f} s in rotation", file=out)
        width = max(map(len, rates)) + 2
        for label, rate in rates.items():
            print(f"  {label:<{width}}" + "".join(f"{arm} {loaded[label][arm]:6.2f} req/s   " for arm in arms)
                  + f"work rate {rate:.3f}", file=out)
        print(f"  the default plan does {share:.1%} of the best served plan's work "
              f"({'meets' if share >= CONCURRENCY_GOAL else 'MISSES'} >= {CONCURRENCY_GOAL:.0%})", file=out)
        # Served against in-process under the same load: the default plan's own in-process row of 2, per arm, and
        # the best in-process plan's work rate.
        in_process = next(row for row in figures["plans"]["plans"] if row["kind"] == DEFAULT_THREAD_PLAN)
        of_in_process = rates[DEFAULT_LABEL] / figures["plans"]["best_work_rate"]
        figures["served_concurrency"].update(
            in_process_rps=in_process["rps"], of_best_in_process=of_in_process,
            served_over_in_process_rps={arm: rps[arm] / in_process["rps"][arm] for arm in arms})
        print("  served / in-process (same plan, both arms loaded): "
              + ", ".join(f"{arm} {rps[arm]:.2f} / {in_process['rps'][arm]:.2f} req/s = "
                          f"{rps[arm] / in_process['rps'][arm]:.2f}" for arm in arms)
              + f"; work rate {of_in_process:.1%} of the best in-process plan's", file=out, flush=True)

        print("\n== 5. padding and the full SQuAD v1.1 dev set (served p50 per length, one request at a time)",
              file=out, flush=True)
        by_length = served_latency_by_length(client, repository, arms, max(5, args.requests // 2))
        figures["served_p50_by_length_ms"] = by_length
        print(f"  {'arm':<12}" + "".join(f"{length:>9}" for length in BUCKETS), file=out)
        for arm in arms:
            print(f"  {arm:<12}" + "".join(f"{by_length[arm][length]:>6.1f} ms" for length in BUCKETS), file=out)
    lengths, client_ms = {}, {}
    for arm in arms:
        lengths[arm], client_ms[arm] = dev_window_lengths(repository, arm)
    questions = len(lengths[arms[0]])
    real_tokens = sum(sum(windows) for windows in lengths[arms[0]])
    projection = {}
    print(f"  {questions:,} questions, {real_tokens / questions:.1f} real tokens per question; client time per "
          "question (tokenise + best span): " + ", ".join(f"{arm} {ms:.1f} ms" for arm, ms in client_ms.items()),
          file=out)
    print(f"  {'pad multiple':>12} {'tokens/question':>16} {'padding':>8} {'projected full dev':>19}", file=out)
    for multiple in PAD_MULTIPLES:
        tokens = sum(padded(length, multiple) for windows in lengths[arms[0]] for length in windows)
        seconds = sum(projected_question_ms(windows, multiple, by_length[arm]) + client_ms[arm]
                      for arm in arms for windows in lengths[arm]) / 1000.0
        projection[multiple] = {"tokens_per_question": tokens / questions, "padding": tokens / real_tokens - 1,
                                "minutes": seconds / 60.0}
        policy = "  <- CPU policy" if multiple == PAD_MULTIPLE else ("  <- GPU policy" if multiple == PAD_MULTIPLE_GPU
                                                                    else "")
        print(f"  {multiple:>12} {tokens / questions:>16.1f} {tokens / real_tokens - 1:>7.1%} "
              f"{seconds / 60.0:>15.1f} min{policy}", file=out)
    figures["full_dev_projection"] = {"questions": questions, "client_ms_per_question": client_ms,
                                      "by_pad_multiple": projection}
    minutes = projection[PAD_MULTIPLE]["minutes"]
    print(f"  projected full paired evaluation at the CPU policy: {minutes:.1f} min "
          f"({'meets' if minutes <= FULL_DEV_GOAL_MIN else 'MISSES'} <= {FULL_DEV_GOAL_MIN:.0f} min; the run itself "
          "is `abqa evaluate --squad shared --start-server`)", file=out, flush=True)

    gain = batch_gain(repository, arms[-1], 128, min(args.seconds, 10.0))
    figures["batch_8_vs_1"] = gain
    print(f"\n== 6. batch 8 vs batch 1, in-process ({gain['arm']}, 128 tokens): "
          f"{gain['sequences_per_s'][1]:.1f} vs {gain['sequences_per_s'][8]:.1f} sequences/s, "
          f"{gain['gain']:.2f}x", file=out, flush=True)

    print(f"\n== 7. variants vs their fp32 arm ({args.length} tokens, p50)", file=out)
    figures["variants"] = {}
    for variant in variants:
        base = variant.rsplit("-", 1)[0]
        through = served[base]["served_p50_ms"] / served[variant]["served_p50_ms"]
        local = served[base]["in_process_p50_ms"] / served[variant]["in_process_p50_ms"]
        figures["variants"][variant] = {"base_arm": base, "served_speedup": through, "in_process_speedup": local}
        goal = (f"  ({'meets' if through >= INT8_GOAL else 'MISSES'} >= {INT8_GOAL}x)"
                if variant.endswith("-int8") else "")
        print(f"  {variant:<18} served {served[variant]['served_p50_ms']:7.1f} ms: {through:.2f}x faster than {base} "
              f"through the server, {local:.2f}x in-process{goal}", file=out)
    if not variants:
        print("  none exported (abqa export --quantize int8 --optimize O2)", file=out)

    print(f"\n== 8. tokens per second ({args.length}-token requests)", file=out)
    tokens = {}
    for arm in arms:
        tokens[arm] = {"in_process_lone": args.length * 1000.0 / served[arm]["in_process_p50_ms"],
                       "served_lone": args.length * 1000.0 / served[arm]["served_p50_ms"],
                       "served_concurrent": args.length * rps[arm]}
        print(f"  {arm:<12} in-process alone {tokens[arm]['in_process_lone']:7.0f}, served alone "
              f"{tokens[arm]['served_lone']:7.0f}, served with both arms loaded {tokens[arm]['served_concurrent']:7.0f} "
              "tokens/s", file=out)
    figures["tokens_per_s"] = tokens
    print(f"\n(measured in {(time.perf_counter() - began) / 60.0:.1f} min)", file=out)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
