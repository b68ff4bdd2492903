"""`build_report(run_dir)`: read a run folder, compute, draw and write report.html, report.md and report.json.

This is the stage's one public entry point (the `abqa report` command and `abqa benchmark` both call it):

    from abqa.analysis.report import build_report
    report = build_report("runs/ab-1", n_resamples=10_000, seed=0)
    print(report.verdict[0], report.paths.html)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abqa.analysis import stats
from abqa.analysis.decision_plots import DECISION_PLOT_NAMES, decision_plots
from abqa.analysis.inputs import RunInputs, read_run
from abqa.analysis.plots import render_plots
from abqa.analysis.render import layout, to_html, to_markdown
from abqa.analysis.summary import ReportSettings, build_report_data
from abqa.core.io import write_text_atomic
from abqa.core.run import ReportData, RunFolder, validate

PLOT_NAMES = ("latency_histogram", "latency_cdf", "accuracy", "contingency", "load", "latency_vs_rate", "queue_compute",
              *DECISION_PLOT_NAMES)


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    json: Path
    plots: dict[str, Path]


@dataclass(frozen=True)
class Report:
    """What `build_report` wrote and found: the paths, the verdict lines, and report.json's content."""

    paths: ReportPaths
    verdict: list[str]
    data: dict[str, Any]


def build_report(
    run_dir: str | Path,
    *,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = stats.DEFAULT_SEED,
    confidence: float = stats.CONFIDENCE,
    baseline: str | None = None,
    margins: dict[str, float] | None = None,
    cost_per_hour: float | None = None,
) -> Report:
    """Report on whatever the run folder holds (eval.jsonl, load.json, meta.json); raises AbqaError if nothing.

    `baseline` and `margins` (points per metric) override meta.json's declared decision, marked as chosen after the
    data; `cost_per_hour` prices one serving machine for the trade-off's cost per million questions."""
    folder = RunFolder(Path(run_dir))
    inputs = read_run(folder.path)
    settings = ReportSettings(n_resamples=n_resamples, seed=seed, confidence=confidence, baseline=baseline,
                              margins=margins, cost_per_hour=cost_per_hour)
    data = build_report_data(inputs, settings)
    plots = _draw(data, inputs, folder.plots)
    data["plots"] = {name: path.relative_to(folder.path).as_posix() for name, path in plots.items()}
    report = validate(ReportData, data, f"{folder.report_json} (as computed)")
    document = layout(data, list(plots))
    paths = ReportPaths(
        html=write_text_atomic(folder.report_html, to_html(document, plots)),
        markdown=write_text_atomic(folder.report_md, to_markdown(document, plots, folder.path)),
        json=report.write(folder.report_json),
        plots=plots,
    )
    return Report(paths=paths, verdict=list(data["verdict"]), data=report.to_dict())


def _draw(data: dict[str, Any], inputs: RunInputs, plots_dir: Path) -> dict[str, Path]:
    # A figure that no longer applies (e.g. load.json was removed) must not linger from an earlier report.
    for name in PLOT_NAMES:
        (plots_dir / f"{name}.png").unlink(missing_ok=True)
    latencies = {arm: answers.valid_latency() for arm, answers in inputs.answers.items() if answers.has_latency}
    return {**render_plots(data, latencies, plots_dir), **decision_plots(data, inputs, plots_dir)}
