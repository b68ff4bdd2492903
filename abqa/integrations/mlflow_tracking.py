"""MLflow experiment tracking: a finished stage's run folder -> params, metrics, tags and artifacts of one MLflow run.

`--mlflow [URI]` on `abqa evaluate`, `loadtest`, `report` and `benchmark` calls `track_stage` once the stage has
written its files, so a tracking store that fails (bad URI, server down) never costs a computed result: the files
are on disk, and the error names the URI and how to log the folder again.

The middle is pure: meta.json / load.json / report.json (their typed models, `abqa.core.run`) -> flat `params` and
`metrics` dicts under
MLflow's key rules (ASCII letters, digits, `_ - . / space`; params at most 500 characters). Names are the same
whichever file they come from, so runs of different stages compare column by column:

    params   arms, arm.<arm>.{kind,standin,source,revision,replay_sha256,onnx_sha256,...}, dataset.{sha256,...},
             seed, order, server.*, qa.*, versions.*, machine.*, load.*, report.*
    metrics  <arm>.{em,f1,em_ci_low,...,latency_p50_ms,...,peak_rss_mb},
             <arm>.<step>.{requests_per_s,latency_p95_ms,...} (step users_<N>, rate_<R>, ...),
             <arm>.max_requests_per_s, <arm>.slo_sustained_rate,
             <a>__vs__<b>.{mcnemar_p,em_diff_points,f1_diff_points,latency_ratio_of_medians,...}

A stand-in arm (untrained weights) gets the param `arm.<arm>.standin=true`, the tag `standin.<arm>=true`, the tag
`abqa.standin=true` on its run and the warning at the top of the run's description, so that nobody reads its
accuracy as real. mlflow is imported only inside the edge functions at the bottom.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from abqa.core.records import STANDIN_WARNING
from abqa.core.run import (LOAD_CSV_FILENAME, LOAD_JSON_FILENAME, META_FILENAME, PLOTS_DIRNAME, REPORT_HTML,
                           REPORT_JSON, REPORT_MD, LoadDocument, LoadStepReport, PairTest, ReportData, RunFolder,
                           RunMeta)

# A database store: MLflow 3 refuses its old `file:`/./mlruns store unless MLFLOW_ALLOW_FILE_STORE=true, and
# SQLite needs no server (sqlalchemy + alembic create and migrate it on first use). Relative to the working
# directory, beside the run folders; the artifacts go to runs/mlartifacts/ (see default_artifact_location).
DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"
DEFAULT_EXPERIMENT = "abqa"
ARTIFACTS_DIRNAME = "mlartifacts"
STAGES = ("evaluate", "loadtest", "report", "benchmark")

MAX_PARAM_VALUE = 500   # MLflow 3 takes 6,000; 500 is what every MLflow server since 1.x accepts
MAX_KEY = 250
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")
_BATCH_PARAMS, _BATCH_METRICS = 100, 1000   # MLflow's log_batch limits
# A tracking server that is down should fail in seconds, not after MLflow's default 7 retries with backoff.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}

ARM_PARAM_KEYS = ("kind", "standin", "source", "source_kind", "revision", "variant", "architecture", "parameters",
                  "onnx_file_size", "onnx_sha256", "replay_file", "replay_sha256")
DATASET_PARAM_KEYS = ("source", "path", "sha256", "version", "questions", "evaluated_questions", "limit", "sample",
                      "seed")
SERVER_PARAM_KEYS = ("kind", "url", "protocol", "triton_version")
# meta.json summary field -> metric name where they differ (the report calls EM `em`); every other number in an
# arm's summary (latency_p50_ms, failed, ...) keeps its own name.
EVAL_METRIC_NAMES = {"exact_match": "em"}
LATENCY_NAMES = ("p50", "p90", "p95", "p99", "mean", "min", "max")
LOAD_STEP_KEYS = ("requests_per_s", "tokens_per_s", "requests", "failures", "mean_batch_size", "queue_ms_per_request",
                  "compute_infer_ms_per_request")

# Which files feed which stage's run. A report already holds the run's provenance and load steps; the
# benchmark's folder holds all three (report last: where two say the same thing, the report's word stands).
STAGE_SOURCES = {"evaluate": ("meta",), "loadtest": ("load",), "report": ("report",),
                 "benchmark": ("meta", "load", "report")}


@dataclass(frozen=True)
class TrackedRun:
    """What one MLflow run records about one run folder and stage."""

    name: str
    stage: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[str] = field(default_factory=list)   # files and folders, relative to the run folder
    standin_arms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrackingResult:
    uri: str
    experiment: str
    experiment_id: str
    run_id: str
    child_run_ids: dict[str, str] = field(default_factory=dict)


# --- keys and values -----------------------------------------------------------------------------------------------


def metric_key(*parts: Any) -> str:
    """Parts joined by dots, each made safe for MLflow (an arm name such as `a+b` becomes `a_b`)."""
    text = ".".join(_UNSAFE_KEY_CHARS.sub("_", str(part)).strip(" /") or "_" for part in parts)
    return text[:MAX_KEY]


def param_value(value: Any) -> str | None:
    """A param's text: booleans as true/false, lists comma-joined, dicts as compact JSON; None stays unlogged."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = ",".join(str(item) for item in value)
    elif isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    else:
        text = str(value)
    return text if len(text) <= MAX_PARAM_VALUE else text[:MAX_PARAM_VALUE - 3] + "..."


def metric_value(value: Any) -> float | None:
    """A finite number as float; anything else (None, text, booleans, NaN) is not a metric."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _put_params(params: dict[str, str], prefix: Sequence[Any], values: Mapping[str, Any] | None,
                keys: Iterable[str] | None = None) -> None:
    values = values or {}
    for key in (keys if keys is not None else values):
        text = param_value(values.get(key))
        if text is not None:
            params[metric_key(*prefix, key)] = text


def _put_metric(metrics: dict[str, float], key: str, value: Any) -> None:
    number = metric_value(value)
    if number is not None:
        metrics[key] = number


# --- params and metrics of each file -----------------------------------------------------------------------------


def run_params(info: Mapping[str, Any]) -> dict[str, str]:
    """What meta.json (or report.json's "run") says about the run: data set and its hash, seed, order, server,
    QA settings, package versions, machine."""
    params: dict[str, str] = {}
    _put_params(params, ["dataset"], info.get("dataset"), DATASET_PARAM_KEYS)
    _put_params(params, [], info, ("seed", "order"))
    _put_params(params, ["server"], info.get("server"), SERVER_PARAM_KEYS)
    _put_params(params, ["qa"], info.get("qa"))
    _put_params(params, ["versions"], info.get("versions"))
    _put_params(params, ["machine"], info.get("machine"))
    return params


def arm_params(arm: str, info: Mapping[str, Any]) -> dict[str, str]:
    """An arm's provenance: served model (source, revision, ONNX hash), stand-in flag, or replayed file and hash."""
    params: dict[str, str] = {}
    _put_params(params, ["arm", arm], info, ARM_PARAM_KEYS)
    return params


def eval_params(meta: RunMeta) -> dict[str, str]:
    params = {"arms": param_value(list(meta.arms)) or "", **run_params(meta.to_dict())}
    for arm, info in meta.arms.items():
        params.update(arm_params(arm, info.to_dict()))
    return params


def eval_metrics(meta: RunMeta) -> dict[str, float]:
    """meta.json's per-arm summary (EM, F1 in percent; latency p50/p95/mean; counts) and the peak memory of both
    sides."""
    metrics: dict[str, float] = {}
    for arm, summary in meta.summary.items():
        for field_name, value in summary.to_dict().items():
            _put_metric(metrics, metric_key(arm, EVAL_METRIC_NAMES.get(field_name, field_name)), value)
    _put_metric(metrics, "client.peak_rss_mb", meta.client.peak_rss_mb if meta.client is not None else None)
    _put_metric(metrics, "server.peak_rss_mb", meta.server.peak_rss_mb)
    return metrics


def load_params(load: LoadDocument) -> dict[str, str]:
    params: dict[str, str] = {"arms": param_value(load.arms) or ""}
    _put_params(params, ["load"], load.to_dict(), ("users", "rates", "duration_s", "warmup_s", "slo_ms", "mode",
                                                   "weights", "url", "protocol"))
    _put_params(params, ["load", "dataset"], load.dataset.to_dict(),
                ("source", "path", "sha256", "version", "questions", "seed", "pool_size", "pool_questions"))
    _put_params(params, [], {"seed": load.dataset.seed})
    _put_params(params, ["machine"], load.machine.to_dict())
    for arm, standin in load.standin.items():
        params.update(arm_params(arm, {"standin": standin}))
    return params


def load_step_metrics(arm: str, step: LoadStepReport) -> dict[str, float]:
    """One arm at one load step (users_4, rate_8, slo_<arm>_rate_6.5)."""
    prefix = (arm, step.step.replace("-", "_"))
    metrics: dict[str, float] = {}
    for key in LOAD_STEP_KEYS:
        _put_metric(metrics, metric_key(*prefix, key), getattr(step, key))
    for name, value in step.latency_ms.items():
        _put_metric(metrics, metric_key(*prefix, f"latency_{name}_ms"), value)
    return metrics


def throughput_metrics(arm: str, steps: Iterable[LoadStepReport]) -> dict[str, float]:
    """Every step of an arm, and its best throughput over the sweep (the headline figure)."""
    metrics: dict[str, float] = {}
    rates = []
    for step in steps:
        metrics.update(load_step_metrics(arm, step))
        if step.requests > step.failures and metric_value(step.requests_per_s) is not None:
            rates.append(float(step.requests_per_s))
    if rates:
        metrics[metric_key(arm, "max_requests_per_s")] = max(rates)
    return metrics


def load_metrics(load: LoadDocument) -> dict[str, float]:
    steps: dict[str, list[LoadStepReport]] = {}
    for row in load.rows:
        steps.setdefault(row.arm, []).append(LoadStepReport.from_row(row))
    metrics: dict[str, float] = {}
    for arm, arm_steps in steps.items():
        metrics.update(throughput_metrics(arm, arm_steps))
    for arm, result in load.slo.items():
        _put_metric(metrics, metric_key(arm, "slo_sustained_rate"), result.sustained_rate)
    _put_metric(metrics, "load.requests", load.totals.requests)
    _put_metric(metrics, "load.failures", load.totals.failures)
    return metrics


def report_params(report: ReportData) -> dict[str, str]:
    params = {"arms": param_value(list(report.arms)) or "", **run_params(report.run.to_dict())}
    for arm, summary in report.arms.items():
        params.update(arm_params(arm, {**summary.model.to_dict(), **summary.provenance.to_dict()}))
    _put_params(params, ["report"], report.settings.to_dict(),
                ("bootstrap_resamples", "seed", "confidence", "alpha", "power", "multiple_comparisons"))
    if report.load is not None:
        _put_params(params, ["load"], report.load.to_dict(), ("users", "duration_s", "mode", "weights", "url"))
    return params


def report_metrics(report: ReportData) -> dict[str, float]:
    """Per arm: EM/F1 with their bootstrap CIs, latency percentiles, load steps; per pair: the tests."""
    metrics: dict[str, float] = {}
    for arm, summary in report.arms.items():
        for name in ("em", "f1"):
            low, high = getattr(summary, f"{name}_ci")
            _put_metric(metrics, metric_key(arm, name), getattr(summary, name))
            _put_metric(metrics, metric_key(arm, f"{name}_ci_low"), low)
            _put_metric(metrics, metric_key(arm, f"{name}_ci_high"), high)
        for name in ("questions", "ok", "failed", "missing"):
            _put_metric(metrics, metric_key(arm, name), getattr(summary, name))
        latency = summary.latency_ms or {}
        for name in LATENCY_NAMES:
            _put_metric(metrics, metric_key(arm, f"latency_{name}_ms"), latency.get(name))
        metrics.update(throughput_metrics(arm, summary.load or []))
    for pair, test in report.tests.items():
        metrics.update(pair_metrics(pair, test))
    return metrics


def pair_metrics(pair: str, test: PairTest) -> dict[str, float]:
    """One pair's tests, differences as a - b in percentage points (report.json's "tests")."""
    metrics: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        _put_metric(metrics, metric_key(pair, name), value)

    def put_estimate(name: str, block: Mapping[str, Any] | None) -> None:
        block = block or {}
        low, high = (list(block.get("ci") or []) + [None, None])[:2]
        put(name, block.get("value"))
        put(f"{name}_ci_low", low)
        put(f"{name}_ci_high", high)

    put("paired_questions", test.paired_questions)
    mcnemar = test.mcnemar or {}
    for name in ("b", "c"):
        put(f"mcnemar_{name}", mcnemar.get(name))
    put("mcnemar_p", mcnemar.get("p_value"))
    put("mcnemar_p_holm", mcnemar.get("p_value_holm"))
    for test_name in ("paired_t_f1", "wilcoxon_f1"):
        block = getattr(test, test_name) or {}
        put(f"{test_name}_p", block.get("p_value"))
        put(f"{test_name}_p_holm", block.get("p_value_holm"))
    put_estimate("em_diff_points", test.em_diff)
    put_estimate("f1_diff_points", test.f1_diff)
    power = test.power or {}
    put("mde_em_points", power.get("mde_em_points"))
    put("mde_f1_points", power.get("mde_f1_points"))
    latency = test.latency or {}
    put_estimate("latency_ratio_of_medians", latency.get("ratio_of_medians"))
    log_t = latency.get("log_t") or {}
    put("latency_log_t_p", log_t.get("p_value"))
    put("latency_log_t_p_holm", log_t.get("p_value_holm"))
    return metrics


def standin_arms(meta: RunMeta | None, load: LoadDocument | None, report: ReportData | None) -> list[str]:
    """Every arm any of the files calls a stand-in, in first-seen order."""
    found: dict[str, None] = {}
    for arm, info in (meta.arms if meta is not None else {}).items():
        if info.standin:
            found[arm] = None
    for arm, standin in (load.standin if load is not None else {}).items():
        if standin:
            found[arm] = None
    for arm, summary in (report.arms if report is not None else {}).items():
        if summary.provenance.standin:
            found[arm] = None
    return list(found)


def run_description(standins: Sequence[str], verdict: Sequence[str]) -> str:
    """The run's description in the MLflow UI: the stand-in warning first, then the report's verdict."""
    lines = [f"**{', '.join(standins)}: {STANDIN_WARNING}.**", ""] if standins else []
    return "\n".join([*lines, *verdict]).strip()


def build_tracked_run(name: str, stage: str, *, meta: RunMeta | None = None, load: LoadDocument | None = None,
                      report: ReportData | None = None,
                      run_dir: str = "", artifacts: Sequence[str] = ()) -> TrackedRun:
    """The params, metrics and tags of one stage's run from the files it wrote (pure)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
    params: dict[str, str] = {"stage": stage}
    metrics: dict[str, float] = {}
    sources = {"meta": (meta, eval_params, eval_metrics), "load": (load, load_params, load_metrics),
               "report": (report, report_params, report_metrics)}
    arms: dict[str, None] = {}
    for source in STAGE_SOURCES[stage]:
        document, to_params, to_metrics = sources[source]
        if document is None:
            continue
        source_params = to_params(document)
        arms.update(dict.fromkeys(filter(None, source_params.pop("arms", "").split(","))))
        params.update(source_params)
        metrics.update(to_metrics(document))
    params["arms"] = param_value(list(arms)) or ""
    standins = standin_arms(meta, load, report)
    for arm in standins:  # whatever a later file left unsaid, a stand-in is a stand-in
        params[metric_key("arm", arm, "standin")] = "true"
    tags = {"abqa.stage": stage, "abqa.run_dir": run_dir, "abqa.standin": param_value(bool(standins)) or "false"}
    tags.update({metric_key("standin", arm): "true" for arm in standins})
    if standins:
        tags["abqa.standin_arms"] = ",".join(standins)
    status = meta.status.value if meta is not None else (report.run.status if report is not None else None)
    if status:
        tags["abqa.status"] = str(status)
    description = run_description(standins, report.verdict if report is not None else [])
    if description:
        tags["mlflow.note.content"] = description
    return TrackedRun(name=name, stage=stage, params=params, metrics=metrics, tags=tags,
                      artifacts=list(artifacts), standin_arms=standins)


def resolve_tracking_uri(value: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """`--mlflow` as given: None (not given) stays None; an empty value (bare `--mlflow`) is $MLFLOW_TRACKING_URI or
    the local SQLite store; a path to a .db/.sqlite file becomes its sqlite: URI; anything else is MLflow's."""
    if value is None:
        return None
    environ = os.environ if environ is None else environ
    value = value.strip()
    if not value:
        return environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if "://" not in value and value.endswith((".db", ".sqlite", ".sqlite3")):
        return f"sqlite:///{value}"
    return value


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///path` URI (relative to the working directory, or absolute with ////)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside the database (runs/mlartifacts/), not to ./mlruns wherever the
    command ran; a server decides for itself (None)."""
    path = sqlite_path(uri)
    return (path.resolve().parent / ARTIFACTS_DIRNAME).as_uri() if path is not None else None


# --- reading a run folder ------------------------------------------------------------------------------------------


def stage_artifacts(stage: str) -> tuple[str, ...]:
    """The files (and the plots folder) a stage's run keeps as artifacts, relative to the run folder. The eval
    summaries are in meta.json; eval.jsonl (one line per question and arm) stays in the folder."""
    report = (REPORT_HTML, REPORT_MD, REPORT_JSON, PLOTS_DIRNAME, META_FILENAME, LOAD_JSON_FILENAME, LOAD_CSV_FILENAME)
    return {"evaluate": (META_FILENAME,), "loadtest": (LOAD_JSON_FILENAME, LOAD_CSV_FILENAME),
            "report": report, "benchmark": report}[stage]


def collect_run(run_dir: str | Path, stage: str) -> TrackedRun:
    """Read what `stage` wrote in `run_dir` and map it (raises AbqaError when it wrote nothing to log)."""
    from abqa.core.errors import AbqaError

    folder = RunFolder(Path(run_dir))
    readers = {"meta": (folder.read_meta, META_FILENAME), "load": (folder.read_load, LOAD_JSON_FILENAME),
               "report": (folder.read_report, REPORT_JSON)}
    documents = {source: readers[source][0]() for source in STAGE_SOURCES[stage]}
    if not any(document is not None for document in documents.values()):
        wanted = " or ".join(readers[source][1] for source in STAGE_SOURCES[stage])
        raise AbqaError(f"{folder.path}: no {wanted} to log to MLflow")
    artifacts = [name for name in stage_artifacts(stage) if (folder.path / name).exists()]
    return build_tracked_run(folder.path.resolve().name, stage, run_dir=str(folder.path.resolve()),
                             artifacts=artifacts, **documents)


# --- the edge: MLflow --------------------------------------------------------------------------------------------


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _experiment_id(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=default_artifact_location(uri))
        except MlflowException:  # created meanwhile by another abqa process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        from abqa.core.errors import AbqaError

        raise AbqaError(f"MLflow experiment {name!r} at {uri} is deleted: restore it or set MLFLOW_EXPERIMENT_NAME")
    return experiment.experiment_id


def _log_run(client, experiment_id: str, tracked: TrackedRun, run_dir: Path, parent_run_id: str | None = None) -> str:
    from mlflow.entities import Metric, Param

    tags = dict(tracked.tags)
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run_id = client.create_run(experiment_id, run_name=tracked.name, tags=tags).info.run_id
    try:
        now = int(time.time() * 1000)
        for chunk in _chunks(sorted(tracked.params.items()), _BATCH_PARAMS):
            client.log_batch(run_id, params=[Param(key, value) for key, value in chunk])
        for chunk in _chunks(sorted(tracked.metrics.items()), _BATCH_METRICS):
            client.log_batch(run_id, metrics=[Metric(key, value, now, 0) for key, value in chunk])
        for name in tracked.artifacts:
            path = run_dir / name
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=name)
            else:
                parent = Path(name).parent.as_posix()
                client.log_artifact(run_id, str(path), artifact_path=None if parent == "." else parent)
    except BaseException:
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_stage(run_dir: str | Path, stage: str, uri: str, *, experiment: str | None = None,
              children: Sequence[str | Path] = ()) -> TrackingResult:
    """Log a finished stage's run folder as one MLflow run (name: the folder's), and each of `children` (folders
    of runs made by the same command, such as the benchmark's replay-shared/) as a run nested under it."""
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow.tracking import MlflowClient

    experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    tracked = collect_run(run_dir, stage)
    nested = [(Path(child), collect_run(child, stage)) for child in children]
    database = sqlite_path(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, experiment, uri)
    run_id = _log_run(client, experiment_id, tracked, Path(run_dir))
    child_ids = {str(child): _log_run(client, experiment_id, child_run, child, parent_run_id=run_id)
                 for child, child_run in nested}
    return TrackingResult(uri=uri, experiment=experiment, experiment_id=experiment_id, run_id=run_id,
                          child_run_ids=child_ids)


# --- the CLI's side ------------------------------------------------------------------------------------------------

EXIT_TRACKING_FAILED = 1


def track_stage(mlflow_arg: str | None, run_dir: str | Path, stage: str, exit_code: int = 0, *,
                children: Sequence[str | Path] = (), out=None, err=None) -> int:
    """The one call at the end of a stage's command: log when `--mlflow` was given. The stage's files are already on
    disk; a tracking failure is reported with the URI and leaves `exit_code` at 1 if it was 0."""
    uri = resolve_tracking_uri(mlflow_arg)
    if uri is None:
        return exit_code
    out, err = out or sys.stdout, err or sys.stderr
    try:
        result = log_stage(run_dir, stage, uri, children=children)
    except Exception as exc:  # noqa: BLE001 - any tracking failure: the results are safe, say so and go on
        message = " ".join(str(exc).split())
        if len(message) > 400:
            message = message[:397] + "..."
        print(f"abqa {stage}: error: MLflow tracking to {uri} failed: {type(exc).__name__}: {message}\n"
              f"  The results are saved in {run_dir}; log them when the store answers with:\n"
              f"  abqa report {run_dir} --mlflow={uri}", file=err)
        return exit_code or EXIT_TRACKING_FAILED
    nested = f" (+{len(result.child_run_ids)} nested)" if result.child_run_ids else ""
    print(f"MLflow: run {result.run_id}{nested} in experiment {result.experiment!r} at {uri}", file=out)
    return exit_code
