"""A step's request records and Triton's counters -> LoadRows -> load.json, load.csv and the table (pure, but the
writers).

Every figure of a row comes from the step's records in requests.jsonl (loadtest/figures.py: exact percentiles,
throughput, tokens per second), never from Locust's statistics, which round response times into buckets (to
10 ms between 100 ms and 1 s) before taking percentiles. Locust's own CSVs and HTML report are still kept per
step; only its exceptions CSV (errors in the locustfile's own code) is read.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from abqa.core.io import atomic_file
from abqa.core.run import LATENCY_KEYS, LoadDocument, LoadRow, RequestRecord, RunFolder, ServerStepView
from abqa.loadtest import figures

CSV_SERVER_FIELDS = (
    "request_count", "request_failures", "inference_count", "execution_count",
    "queue_us", "compute_input_us", "compute_infer_us", "compute_output_us", "request_us",
    "queue_us_per_request", "compute_input_us_per_request", "compute_infer_us_per_request",
    "compute_output_us_per_request", "request_us_per_request", "mean_batch_size",
)


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None  # Locust writes "N/A" where there is nothing to report
    return value if value == value else None  # NaN -> None


def read_locust_exceptions(text: str) -> dict[str, int]:
    """`<prefix>_exceptions.csv` -> {message: count}: errors in the users' own code, not request failures."""
    exceptions: dict[str, int] = {}
    for row in csv.DictReader(io.StringIO(text)):
        message = row.get("Message")
        if message:
            exceptions[message] = exceptions.get(message, 0) + int(_number(row.get("Count")) or 0)
    return exceptions


def arm_rate(step, plan, arm: str) -> float | None:
    """An arm's scheduled arrivals per second in an open-loop step: its weight's share in split mode, all of them
    in parallel mode."""
    if step.rate is None:
        return None
    if plan.mode == "parallel":
        return step.rate
    weights = plan.weight_map
    return round(step.rate * weights.get(arm, 0.0) / sum(weights.values()), 6)


def load_row(arm: str, step, plan, records: Sequence[RequestRecord], span: figures.Span | None,
             server: Mapping[str, Any] | None = None, answer_key=None) -> LoadRow:
    """One arm at one step, from its records. An arm that got no request is a row of zeros."""
    mine = [record for record in records if record.arm == arm]
    arm_figures = figures.arm_figures(mine, span)
    return LoadRow(
        arm=arm, step=step.name, users=step.users, rate=arm_rate(step, plan, arm),
        requests=arm_figures.requests, failures=arm_figures.failures, requests_per_s=arm_figures.requests_per_s,
        tokens_per_s=arm_figures.tokens_per_s, padded_tokens_per_s=arm_figures.padded_tokens_per_s,
        latency_ms=arm_figures.latency_ms,
        answers=answer_key.check(mine, arm) if answer_key is not None else None,
        server=ServerStepView(**(server or {})),
        failure_messages=arm_figures.failure_messages,
    )


def rows_for_step(step, plan, records: Sequence[RequestRecord], servers: Mapping[str, Mapping[str, Any]],
                  answer_key=None) -> list[LoadRow]:
    span = figures.measured_span(records)
    return [load_row(arm, step, plan, records, span, servers.get(arm), answer_key) for arm in step.arms]


def latency_cell(row: LoadRow, key: str) -> str:
    """A latency figure for a table: the number, or why there is none ("n<100"), or "-"."""
    value = getattr(row.latency_ms, key)
    if value is not None:
        return f"{value:.1f}"
    return row.latency_ms.withheld.get(key, "-")


def csv_record(row: LoadRow) -> dict[str, Any]:
    """A LoadRow's scalar fields, flattened for load.csv (latency_ms.p95 -> p95_ms, server.queue_us -> server_queue_us)."""
    record: dict[str, Any] = {
        "arm": row.arm,
        "step": row.step,
        "users": row.users,
        "rate": row.rate,
        "requests": row.requests,
        "failures": row.failures,
        "requests_per_s": row.requests_per_s,
        "tokens_per_s": row.tokens_per_s,
        "padded_tokens_per_s": row.padded_tokens_per_s,
    }
    for key in LATENCY_KEYS:
        record[f"{key}_ms"] = getattr(row.latency_ms, key)
    record["samples"] = row.latency_ms.samples
    record["withheld"] = " ".join(f"{key}:{why}" for key, why in row.latency_ms.withheld.items()) or None
    answers = row.answers
    record["answers_compared"] = answers.compared if answers is not None else None
    record["answers_identical"] = answers.identical if answers is not None else None
    record["answers_em"] = answers.em if answers is not None else None
    record["answers_f1"] = answers.f1 if answers is not None else None
    for key in CSV_SERVER_FIELDS:
        record[f"server_{key}"] = getattr(row.server, key)
    sizes = row.server.batch_sizes
    record["server_batch_sizes"] = " ".join(f"{size}:{count}" for size, count in sizes.items()) if sizes else None
    record["failure_messages"] = json.dumps(row.failure_messages, ensure_ascii=False) if row.failure_messages else None
    return record


def write_load_csv(path: str | Path, rows: Sequence[LoadRow]) -> Path:
    path = Path(path)
    records = [csv_record(row) for row in rows]
    columns = list(csv_record(LoadRow(arm="", step="", requests=0, failures=0, requests_per_s=0.0)).keys())
    with atomic_file(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for record in records:
            writer.writerow({key: ("" if value is None else value) for key, value in record.items()})
    return path


def write_outputs(out_dir: str | Path, document: LoadDocument) -> tuple[Path, Path]:
    folder = RunFolder(Path(out_dir))
    return document.write(folder.load), write_load_csv(folder.load_csv, document.rows)


# --- the table at the end --------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: Sequence[LoadRow], standin: Mapping[str, bool | None] | None = None) -> str:
    """arm, step, req/s, tokens/s, p50/p95/p99 ms and what they rest on, failures, identical answers, the server's
    mean batch size and per-request queue / infer time."""
    headers = ("arm", "step", "req/s", "tok/s", "p50 ms", "p95 ms", "p99 ms", "n", "failures", "same answers",
               "mean batch", "queue us/req", "infer us/req")
    lines = [headers]
    for row in rows:
        name = f"{row.arm} (stand-in)" if standin and standin.get(row.arm) else row.arm
        answers = row.answers
        same = f"{answers.identical}/{answers.compared}" if answers is not None and answers.compared else "-"
        lines.append((
            name, row.step, _fmt(row.requests_per_s, 2), _fmt(row.tokens_per_s, 0), latency_cell(row, "p50"),
            latency_cell(row, "p95"), latency_cell(row, "p99"), str(row.latency_ms.samples), str(row.failures),
            same, _fmt(row.server.mean_batch_size, 2), _fmt(row.server.queue_us_per_request, 0),
            _fmt(row.server.compute_infer_us_per_request, 0),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    rendered = ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in enumerate(zip(line, widths)))
                for line in lines]
    rendered.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(rendered)


def scaling_summary(rows: Sequence[LoadRow]) -> list[str]:
    """Per arm: throughput and mean batch at the most users against the fewest (closed loop), i.e. what batching
    bought."""
    lines = []
    for arm in dict.fromkeys(row.arm for row in rows):
        steps = sorted((row for row in rows if row.arm == arm and row.users and row.requests > row.failures),
                       key=lambda row: row.users)
        if len(steps) < 2 or not steps[0].requests_per_s:
            continue
        first, last = steps[0], steps[-1]
        gain = last.requests_per_s / first.requests_per_s
        batch_first, batch_last = first.server.mean_batch_size, last.server.mean_batch_size
        batching = (f"; mean batch {batch_first:.2f} -> {batch_last:.2f}"
                    if batch_first is not None and batch_last is not None else "")
        verdict = "raised" if gain > 1.05 else "did not raise"
        lines.append(f"{arm}: {first.users} -> {last.users} users: {first.requests_per_s:.2f} -> "
                     f"{last.requests_per_s:.2f} req/s (x{gain:.2f}){batching}; concurrency {verdict} throughput")
    return lines
