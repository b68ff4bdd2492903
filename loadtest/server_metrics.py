"""The server's own view of a load step: Triton's Prometheus counters and statistics API, before and after.

Triton's counters are cumulative since the server started, so what one step did is after - before. The
Prometheus counters (port 8002, /metrics) give per model the successful requests, the inferences and
executions, and the cumulative request, queue, compute-input, compute-infer and compute-output microseconds;
the statistics API (/v2/models/<arm>/stats) gives how many executions ran at each batch size, i.e. the batches
dynamic batching formed. Parsing and differencing are pure; `take_snapshot` is the edge that reads the server.

Triton attributes a batch's compute time to every request in it, so `compute_infer_us_per_request` is the
time one request spent in the model, not the model time divided by the batch.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from abqa.core.errors import AbqaError

log = logging.getLogger(__name__)

# Triton counter -> the name a LoadRow's "server" uses.
COUNTERS = {
    "nv_inference_request_success": "request_count",
    "nv_inference_request_failure": "request_failures",
    "nv_inference_count": "inference_count",
    "nv_inference_exec_count": "execution_count",
    "nv_inference_request_duration_us": "request_us",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_input_duration_us": "compute_input_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_us",
    "nv_inference_compute_output_duration_us": "compute_output_us",
}
DURATIONS = ("request_us", "queue_us", "compute_input_us", "compute_infer_us", "compute_output_us")
SERVER_FIELDS = (
    *COUNTERS.values(),
    *(f"{name}_per_request" for name in DURATIONS),
    "mean_batch_size",
    "batch_sizes",
)


def parse_triton_metrics(text: str) -> dict[str, dict[str, float]]:
    """Prometheus text -> {model: {counter name: value}} for the nv_inference_* counters (versions summed).

    A counter the server does not expose is simply absent (see `missing_counters`).
    """
    from prometheus_client.parser import text_string_to_metric_families

    per_model: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # prometheus_client names a counter family without "_total"; Triton's samples carry none either.
            name = sample.name.removesuffix("_total")
            if name not in COUNTERS or "model" not in sample.labels:
                continue
            counters = per_model.setdefault(sample.labels["model"], {})
            counters[name] = counters.get(name, 0.0) + float(sample.value)  # failure reasons, versions: summed
    return per_model


def missing_counters(metrics: Mapping[str, Mapping[str, float]], arm: str) -> list[str]:
    return [name for name in COUNTERS if name not in metrics.get(arm, {})]


def executions_by_batch_size(statistics: Mapping[str, Any]) -> dict[int, int]:
    """{batch size: executions} from one model's statistics JSON (the HTTP API's, as TritonClient gives it)."""
    counts: dict[int, int] = {}
    for model in statistics.get("model_stats", []):
        for entry in model.get("batch_stats", []):
            size = int(entry.get("batch_size", 0))
            executions = int(entry.get("compute_infer", {}).get("count", 0))
            counts[size] = counts.get(size, 0) + executions
    return counts


@dataclass
class ServerSnapshot:
    """What the server said at one moment: counters per model, executions per batch size per model, and errors."""

    metrics: dict[str, dict[str, float]] | None = None
    batches: dict[str, dict[int, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)                      # the metrics endpoint's
    arm_errors: dict[str, list[str]] = field(default_factory=dict)       # each model's statistics'

    def all_errors(self) -> list[str]:
        return [*self.errors, *(error for errors in self.arm_errors.values() for error in errors)]


def server_view(arm: str, before: ServerSnapshot, after: ServerSnapshot) -> dict[str, Any]:
    """One arm's LoadRow.server: counter differences, per-request averages, batch sizes; None where unknown."""
    view: dict[str, Any] = {name: None for name in SERVER_FIELDS}
    errors = [*before.errors, *after.errors, *before.arm_errors.get(arm, []), *after.arm_errors.get(arm, [])]
    if before.metrics is not None and after.metrics is not None:
        first, last = before.metrics.get(arm, {}), after.metrics.get(arm, {})
        for counter, name in COUNTERS.items():
            if counter in first and counter in last:
                delta = last[counter] - first[counter]
                view[name] = int(delta) if float(delta).is_integer() else delta
        requests = view["request_count"]
        for name in DURATIONS:
            if view[name] is not None and requests:
                view[f"{name}_per_request"] = round(view[name] / requests, 1)
        if view["inference_count"] is not None and view["execution_count"]:
            view["mean_batch_size"] = round(view["inference_count"] / view["execution_count"], 3)
        missing = missing_counters(after.metrics, arm)
        if missing and arm in after.metrics:
            view["missing_counters"] = missing
        elif arm not in after.metrics:
            errors.append(f"the metrics endpoint has no counters for model {arm!r}")
    if arm in before.batches and arm in after.batches:
        sizes = sorted(set(before.batches[arm]) | set(after.batches[arm]))
        deltas = {size: after.batches[arm].get(size, 0) - before.batches[arm].get(size, 0) for size in sizes}
        view["batch_sizes"] = {str(size): count for size, count in deltas.items() if count}
        if view["mean_batch_size"] is None and any(deltas.values()):
            executions = sum(deltas.values())
            view["mean_batch_size"] = round(sum(size * count for size, count in deltas.items()) / executions, 3)
    view["error"] = "; ".join(dict.fromkeys(errors)) or None
    return view


# --- the edge: reading the server --------------------------------------------------------------------------------


def fetch_metrics_text(metrics_url: str, timeout_s: float = 10.0) -> str:
    """The Prometheus text at `metrics_url` (an Endpoint's: scheme, host, port and path all there)."""
    with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:  # noqa: S310 (a URL the user gave)
        return response.read().decode("utf-8", errors="replace")


def take_snapshot(metrics_url: str | None, client, arms: Sequence[str], timeout_s: float = 10.0) -> ServerSnapshot:
    """Read the counters and the batch statistics now; whatever cannot be read is recorded, never raised."""
    snapshot = ServerSnapshot()
    if metrics_url:
        try:
            snapshot.metrics = parse_triton_metrics(fetch_metrics_text(metrics_url, timeout_s))
        except (OSError, urllib.error.URLError, ValueError) as exc:
            snapshot.errors.append(f"metrics {metrics_url}: {_reason(exc)}")
    for arm in arms:
        if client is None:
            break
        try:
            snapshot.batches[arm] = executions_by_batch_size(client.statistics(arm))
        except AbqaError as exc:  # the client's message names the server, the model and the reason
            snapshot.arm_errors.setdefault(arm, []).append(str(exc))
        except Exception as exc:  # a malformed answer
            snapshot.arm_errors.setdefault(arm, []).append(f"statistics of {arm}: {_reason(exc)}")
    return snapshot


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "message", None)
    if callable(reason):
        reason = reason()
    text = str(reason or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
