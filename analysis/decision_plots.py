"""The decision's figures (matplotlib, as analysis/plots.py): latency against tokens with each arm's fitted line,
and the trade-off's Pareto plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from abqa.analysis.inputs import RunInputs
from abqa.analysis.plots import _pyplot, _save, arm_colours

DECISION_PLOT_NAMES = ("latency_vs_tokens", "pareto")
_MAX_POINTS = 4000   # per arm: enough to see the cloud, small enough for a light PNG


def plot_latency_vs_tokens(data: dict[str, Any], inputs: RunInputs, path: Path) -> Path | None:
    """Each question's latency against its tokens, per arm, with the least-squares line of report.json's where.fits."""
    fits = (data.get("where") or {}).get("fits") or {}
    if not fits:
        return None
    plt = _pyplot()
    colours = arm_colours(list(data["arms"]))
    fig, ax = plt.subplots(figsize=(8, 4.4))
    rng = np.random.default_rng(0)
    for arm, fit in fits.items():
        answers = inputs.answers[arm]
        both = np.isfinite(answers.tokens) & np.isfinite(answers.latency_ms)
        tokens, latency = answers.tokens[both], answers.latency_ms[both]
        if tokens.size > _MAX_POINTS:
            keep = rng.choice(tokens.size, _MAX_POINTS, replace=False)
            tokens, latency = tokens[keep], latency[keep]
        label = data["arms"][arm]["provenance"]["label"]
        ax.scatter(tokens, latency, s=6, alpha=0.25, color=colours[arm])
        low, high = fit["tokens_range"]
        xs = np.array([low, high])
        ax.plot(xs, fit["intercept_ms"] + fit["ms_per_100_tokens"] / 100 * xs, color=colours[arm], linewidth=2,
                label=f"{label}: {fit['intercept_ms']:.1f} ms + {fit['ms_per_100_tokens']:.2f} ms per 100 tokens "
                      f"(R² {fit['r2']:.2f})")
    ax.set_xlabel("tokens over the question's windows")
    ax.set_ylabel("latency per question, ms")
    ax.set_ylim(bottom=0)
    ax.set_title("Latency against question length (least-squares line per arm)")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path, data, list(fits), "Answered questions; points thinned to 4,000 per arm")


def _error(value: float | None, ci: list[float | None] | None) -> list[list[float]] | None:
    if value is None or not ci or ci[0] is None or ci[1] is None:
        return None
    return [[value - ci[0]], [ci[1] - value]]


def plot_pareto(data: dict[str, Any], path: Path) -> Path | None:
    """F1 (95% CI) against p95 latency and against sustained throughput; dominated arms drawn hollow. Without
    meaningful F1 (stand-ins), throughput against p95."""
    tradeoff = data.get("tradeoff")
    if not tradeoff:
        return None
    plt = _pyplot()
    colours = arm_colours(list(data["arms"]))
    rows = tradeoff["rows"]
    panels = ([("p95_ms", "f1"), ("throughput", "f1")] if tradeoff["f1_used"] else [("p95_ms", "throughput")])
    fig, axes = plt.subplots(1, len(panels), figsize=(max(8.0, 5.2 * len(panels) + 1), 4.8), squeeze=False)
    names = {"p95_ms": "p95 latency per question, ms (lower is better)",
             "throughput": "sustained questions/s (higher is better)", "f1": "F1 % (95% CI)"}
    for ax, (x_key, y_key) in zip(axes[0], panels):
        for row in rows:
            x, x_err = _axis_value(row, x_key)
            y, y_err = _axis_value(row, y_key)
            if x is None or y is None:
                continue
            dominated = bool(row["dominated_by"])
            ax.errorbar(x, y, xerr=x_err, yerr=y_err, fmt="o", markersize=9, capsize=3, color=colours[row["arm"]],
                        markerfacecolor="white" if dominated else colours[row["arm"]],
                        label=row["label"] + (" (dominated)" if dominated else ""))
            ax.annotate(row["arm"], (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.set_xlabel(names[x_key])
        ax.set_ylabel(names[y_key])
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][0].legend(handles, labels, fontsize=7, loc="best")
    title = ("Trade-off: F1 against p95 latency and against throughput" if tradeoff["f1_used"]
             else f"Trade-off: throughput against p95 latency\n(F1 left out: {tradeoff['f1_left_out']})")
    fig.suptitle(title + "; hollow = dominated", fontsize=10)
    arms = [row["arm"] for row in rows]
    sources = {row["throughput"]["source"] for row in rows if row["throughput"]}
    return _save(fig, path, data, arms, "Throughput: " + "; ".join(sorted(sources)))


def _axis_value(row: dict[str, Any], key: str) -> tuple[float | None, list[list[float]] | None]:
    if key == "f1":
        return row["f1"], _error(row["f1"], row["f1_ci"])
    if key == "p95_ms":
        return row["p95_ms"], _error(row["p95_ms"], row["p95_ci"])
    throughput = row["throughput"]
    return (throughput["questions_per_s"] if throughput else None), None


def decision_plots(data: dict[str, Any], inputs: RunInputs, out_dir: Path) -> dict[str, Path]:
    drawn = {
        "latency_vs_tokens": plot_latency_vs_tokens(data, inputs, out_dir / "latency_vs_tokens.png"),
        "pareto": plot_pareto(data, out_dir / "pareto.png"),
    }
    return {name: path for name, path in drawn.items() if path is not None}
