"""Locust's CSVs and Triton's counters -> LoadRows -> load.json, load.csv and the table (pure, but the writers).

Locust names each request by arm, so its `<prefix>_stats.csv` has one row per arm with the request count
(failed requests included, as Locust counts them), the failure count, requests/s and the percentiles, and
`<prefix>_failures.csv` one row per (arm, error message) with its occurrences. Locust stores response times
rounded (to 1 ms below 100 ms, 10 ms below 1 s, 100 ms above) before it takes percentiles; the mean and
the maximum are exact.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from abqa.core.io import atomic_file
from abqa.core.run import LatencyPercentiles, LoadDocument, LoadRow, RunFolder, ServerStepView

AGGREGATED = "Aggregated"
# load.json latency_ms key -> Locust stats CSV column.
LATENCY_COLUMNS = {
    "p50": "50%",
    "p90": "90%",
    "p95": "95%",
    "p99": "99%",
    "mean": "Average Response Time",
    "max": "Max Response Time",
}
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


def read_locust_stats(text: str) -> dict[str, dict[str, str]]:
    """`<prefix>_stats.csv` -> {request name: row}, without Locust's Aggregated row."""
    return {row["Name"]: row for row in csv.DictReader(io.StringIO(text)) if row.get("Name") and row["Name"] != AGGREGATED}


def read_locust_failures(text: str) -> dict[str, dict[str, int]]:
    """`<prefix>_failures.csv` -> {request name: {error message: occurrences}}."""
    failures: dict[str, dict[str, int]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        name, message = row.get("Name"), row.get("Error")
        if not name or message is None:
            continue
        counts = failures.setdefault(name, {})
        counts[message] = counts.get(message, 0) + int(_number(row.get("Occurrences")) or 0)
    return failures


def read_locust_exceptions(text: str) -> dict[str, int]:
    """`<prefix>_exceptions.csv` -> {message: count}: errors in the users' own code, not request failures."""
    exceptions: dict[str, int] = {}
    for row in csv.DictReader(io.StringIO(text)):
        message = row.get("Message")
        if message:
            exceptions[message] = exceptions.get(message, 0) + int(_number(row.get("Count")) or 0)
    return exceptions


def load_row(arm: str, users: int, stats: Mapping[str, str] | None, failures: Mapping[str, int] | None,
             server: Mapping[str, Any] | None = None) -> LoadRow:
    """One arm at one step. An arm Locust never reported (no request sent) is a row of zeros."""
    requests = int(_number(stats.get("Request Count")) or 0) if stats else 0
    failed = int(_number(stats.get("Failure Count")) or 0) if stats else 0
    # Latency of requests that all failed is the time to fail (a refused connection), not an answer's: none.
    has_answers = requests > failed
    latency = {key: (_number(stats.get(column)) if stats and has_answers else None)
               for key, column in LATENCY_COLUMNS.items()}
    latency = {key: (round(value, 3) if value is not None else None) for key, value in latency.items()}
    rate = _number(stats.get("Requests/s")) if stats else None
    return LoadRow(
        arm=arm,
        users=users,
        requests=requests,
        failures=failed,
        requests_per_s=round(rate, 3) if rate is not None else 0.0,
        latency_ms=LatencyPercentiles(**latency),
        server=ServerStepView(**(server or {})),
        failure_messages=dict(failures or {}),
    )


def rows_for_step(arms: Sequence[str], users: int, stats: Mapping[str, Mapping[str, str]],
                  failures: Mapping[str, Mapping[str, int]], servers: Mapping[str, Mapping[str, Any]]) -> list[LoadRow]:
    return [load_row(arm, users, stats.get(arm), failures.get(arm), servers.get(arm)) for arm in arms]


def csv_record(row: LoadRow) -> dict[str, Any]:
    """A LoadRow's scalar fields, flattened for load.csv (latency_ms.p95 -> p95_ms, server.queue_us -> server_queue_us)."""
    record: dict[str, Any] = {
        "arm": row.arm,
        "users": row.users,
        "requests": row.requests,
        "failures": row.failures,
        "requests_per_s": row.requests_per_s,
    }
    for key in LATENCY_COLUMNS:
        record[f"{key}_ms"] = getattr(row.latency_ms, key)
    for key in CSV_SERVER_FIELDS:
        record[f"server_{key}"] = getattr(row.server, key)
    sizes = row.server.batch_sizes
    record["server_batch_sizes"] = " ".join(f"{size}:{count}" for size, count in sizes.items()) if sizes else None
    record["failure_messages"] = json.dumps(row.failure_messages, ensure_ascii=False) if row.failure_messages else None
    return record


def write_load_csv(path: str | Path, rows: Sequence[LoadRow]) -> Path:
    path = Path(path)
    records = [csv_record(row) for row in rows]
    columns = list(csv_record(LoadRow(arm="", users=0, requests=0, failures=0, requests_per_s=0.0)).keys())
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
    """arm, users, req/s, p50/p95/p99 ms, failures, the server's mean batch size and per-request queue / infer time."""
    headers = ("arm", "users", "req/s", "p50 ms", "p95 ms", "p99 ms", "requests", "failures", "mean batch",
               "queue us/req", "infer us/req")
    lines = [headers]
    for row in rows:
        name = f"{row.arm} (stand-in)" if standin and standin.get(row.arm) else row.arm
        lines.append((
            name, str(row.users), _fmt(row.requests_per_s, 2), _fmt(row.latency_ms.p50),
            _fmt(row.latency_ms.p95), _fmt(row.latency_ms.p99), str(row.requests), str(row.failures),
            _fmt(row.server.mean_batch_size, 2), _fmt(row.server.queue_us_per_request, 0),
            _fmt(row.server.compute_infer_us_per_request, 0),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    rendered = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(line, widths)))
                for line in lines]
    rendered.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(rendered)


def scaling_summary(rows: Sequence[LoadRow]) -> list[str]:
    """Per arm: throughput and mean batch at the most users against the fewest, i.e. what batching bought."""
    lines = []
    for arm in dict.fromkeys(row.arm for row in rows):
        steps = sorted((row for row in rows if row.arm == arm and row.requests > row.failures), key=lambda row: row.users)
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
