"""What does serving through Triton add to one request? p50/p95 latency of a SQuAD-length request (384 tokens)
through `abqa serve` (gRPC, concurrency 1) against the same ONNX Runtime session in-process, for each arm.

    abqa export --offline                        # real-size stand-ins (BERT-base 415 MB, DistilBERT 253 MB)
    python benchmarks/serving_overhead.py        # starts abqa serve on free loopback ports, prints a table
    python benchmarks/serving_overhead.py --requests 60 --threads 2 --arms bert
    python benchmarks/serving_overhead.py --url 127.0.0.1:8001   # a server already running (e.g. docker compose)

The two paths are measured alternately, request by request, so that whatever else runs on the machine weighs on
both alike; both run the same session options (threads per session as `abqa serve` plans them, unless
--threads). The goal is a Triton/in-process ratio of at most 1.10 at p50.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from abqa.core.config import DEFAULT_MODEL_REPOSITORY, MAX_SEQ_LENGTH, shared_data_dir, split_csv
from abqa.core.io import read_json_file
from abqa.core.machine import cpu_count, cpu_model
from abqa.core.repository import ArmPaths
from abqa.serve.repository import discover_arms, plan_sessions, read_arm_model_config, select_arms
from abqa.serve.session import create_session

GOAL_RATIO = 1.10
FALLBACK_QUESTION = "Which NFL team represented the AFC at Super Bowl 50?"
FALLBACK_CONTEXT = (
    "Super Bowl 50 was an American football game to determine the champion of the National Football League "
    "(NFL) for the 2015 season. The American Football Conference (AFC) champion Denver Broncos defeated the "
    "National Football Conference (NFC) champion Carolina Panthers 24-10 to earn their third Super Bowl title. "
) * 8


def squad_example() -> tuple[str, str]:
    """The longest-context question of the first SQuAD dev article when the data is there, else a fixed text."""
    data_dir = shared_data_dir()
    if data_dir is None:
        return FALLBACK_QUESTION, FALLBACK_CONTEXT
    path = data_dir / "squad-v1.1" / "dev-v1.1.json"
    article = read_json_file(path, f"SQuAD file {path}")[0]["data"][0]
    paragraph = max(article["paragraphs"], key=lambda p: len(p["context"]))
    return paragraph["qas"][0]["question"], paragraph["context"] * 3  # long enough to fill 384 tokens


def request_for(repository: Path, arm: str, length: int) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ArmPaths(repository, arm).tokenizer)
    question, context = squad_example()
    encoded = tokenizer(question, context, truncation="only_second", max_length=length, padding="max_length",
                        return_tensors="np")
    names = [spec.name for spec in read_arm_model_config(repository, arm).inputs]
    return {name: encoded[name].astype(np.int64) for name in names}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(arm: str, feeds: dict[str, np.ndarray], session, client, requests: int, warmup: int) -> dict:
    outputs = [o.name for o in session.get_outputs()]

    def triton_once() -> None:
        client.request(arm, feeds, outputs)

    def local_once() -> None:
        session.run(outputs, feeds)

    for _ in range(warmup):
        local_once()
        triton_once()
    before = client.statistics(arm)["model_stats"][0]["inference_stats"]
    local, served = [], []
    for i in range(requests):
        # Alternate which path goes first, so neither always runs right after the other.
        order = (("local", local_once), ("triton", triton_once)) if i % 2 == 0 else \
            (("triton", triton_once), ("local", local_once))
        for name, fn in order:
            start = time.perf_counter()
            fn()
            (local if name == "local" else served).append((time.perf_counter() - start) * 1000)
    after = client.statistics(arm)["model_stats"][0]["inference_stats"]
    server_ms = {
        part: (int(after[part]["ns"]) - int(before.get(part, {}).get("ns", 0))) / 1e6 / requests
        for part in ("queue", "compute_input", "compute_infer", "compute_output")
    }
    return {"local": local, "triton": served, "server_ms": server_ms}


def table(rows: list[dict]) -> str:
    header = (f"{'arm':<12} {'threads':>7} {'in-process p50':>15} {'p95':>8} {'Triton p50':>11} {'p95':>8} "
              f"{'ratio p50':>10} {'ratio p95':>10} {'overhead p50':>13}")
    lines = [header, "-" * len(header)]
    for row in rows:
        lp50, lp95 = percentile(row["local"], 50), percentile(row["local"], 95)
        tp50, tp95 = percentile(row["triton"], 50), percentile(row["triton"], 95)
        lines.append(
            f"{row['arm']:<12} {row['threads']:>7} {lp50:>12.1f} ms {lp95:>5.1f} ms {tp50:>8.1f} ms {tp95:>5.1f} ms "
            f"{tp50 / lp50:>9.3f}x {tp95 / lp95:>9.3f}x {tp50 - lp50:>10.1f} ms"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    parser.add_argument("--arms", default=None, help="comma-separated (default: every arm)")
    parser.add_argument("--requests", type=int, default=40, help="measured requests per arm and path (default: 40)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--length", type=int, default=MAX_SEQ_LENGTH, help="tokens per request (default: 384)")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads per session on both paths (default: as abqa serve plans them)")
    parser.add_argument("--url", default=None,
                        help="gRPC host:port of a Triton already serving the repository (default: start abqa serve)")
    args = parser.parse_args(argv)

    from abqa.serve.process import start_server
    from abqa.triton.client import RetryPolicy, TritonClient
    from abqa.triton.endpoint import Endpoint

    repository = args.model_repository.resolve()
    names = select_arms(discover_arms(repository), split_csv(args.arms))
    arms = [read_arm_model_config(repository, name) for name in names]
    plans = plan_sessions(arms, cpu_count(), threads=args.threads)
    print(f"machine: {cpu_count()} cores, {cpu_model()}; {args.requests} requests of {args.length} tokens per arm "
          f"and path, concurrency 1, gRPC", flush=True)

    server = None if args.url else start_server(repository, arms=names, threads=args.threads)
    endpoint = Endpoint.parse(args.url, "grpc") if args.url else server.grpc
    rows = []
    try:
        with TritonClient(endpoint, retry=RetryPolicy(attempts=1)) as client:
            for arm in arms:
                plan = plans[arm.name]
                feeds = request_for(repository, arm.name, args.length)
                session = create_session(arm.model_path, plan.intra_op_threads)
                print(f"measuring {arm.name} ({plan.intra_op_threads} thread(s)) ...", flush=True)
                result = measure(arm.name, feeds, session, client, args.requests, args.warmup)
                rows.append({"arm": arm.name, "threads": plan.intra_op_threads, **result})
                del session
    finally:
        if server is not None:
            server.stop()

    print()
    print(table(rows))
    print()
    for row in rows:
        parts = ", ".join(f"{k} {v:.2f} ms" for k, v in row["server_ms"].items())
        print(f"{row['arm']}: Triton's own view per request: {parts}")
    worst = max(percentile(r["triton"], 50) / percentile(r["local"], 50) for r in rows)
    verdict = "within" if worst <= GOAL_RATIO else "ABOVE"
    print(f"\nworst p50 ratio {worst:.3f}x: {verdict} the {GOAL_RATIO:.2f}x goal. Other load on the machine "
          f"weighs on both paths alike (they alternate) but widens p95; re-run on an idle machine for clean figures.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
