"""The report's figures as PNG files (matplotlib, Agg backend: no display needed).

Each function draws one figure from the report data (and, for latency, the raw per-question values) and
returns the PNG's path, or None when the run has nothing to draw. Every legend names each arm's provenance
("served", "STAND-IN", "replay") and every figure carries a source footnote.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

DPI = 110
# Matplotlib's default cycle: the same arm keeps the same colour in every figure.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def arm_colours(arms: list[str]) -> dict[str, str]:
    return {arm: _COLOURS[i % len(_COLOURS)] for i, arm in enumerate(arms)}


def _source_note(data: dict[str, Any], arms: list[str], extra: str = "", width: int = 150) -> str:
    run = data["run"]["name"]
    by_description: dict[str, list[str]] = {}
    for arm in arms:  # arms with the same provenance share one phrase (the stand-in warning is long)
        by_description.setdefault(data["arms"][arm]["provenance"]["description"], []).append(arm)
    parts = [f"{', '.join(names)}: {description}" for description, names in by_description.items()]
    text = f"Source: run {run}. " + "; ".join(parts) + (f". {extra}" if extra else ".")
    return "\n".join(textwrap.wrap(text, width))


def _plain_log_axis(axis) -> None:
    """Log scale labelled 5, 10, 20, 50 ms rather than 5x10^0, 10^1, 2x10^1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=30))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _wants_log_scale(values: np.ndarray) -> bool:
    """A log axis for a long tail (max over 5x min); a narrow range reads better, and gets ticks, on a linear one."""
    low = float(values.min())
    return low > 0 and float(values.max()) / low > 5


def _save(fig, path: Path, data: dict[str, Any], arms: list[str], extra: str = "") -> Path:
    # About 16 characters of 7-point text per inch of figure width.
    note = _source_note(data, arms, extra, width=int(fig.get_figwidth() * 16))
    lines = note.count("\n") + 1
    bottom_in = 0.18 * lines + 0.15
    fig.text(0.01, 0.01, note, fontsize=7, color="#444444", va="bottom", ha="left")
    fig.tight_layout(rect=(0, bottom_in / fig.get_figheight(), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def plot_latency_histogram(
    data: dict[str, Any], latencies: dict[str, np.ndarray], path: Path,
) -> Path | None:
    """Overlaid per-arm histograms of per-question latency on log-spaced bins, p50 and p95 marked."""
    latencies = {arm: values for arm, values in latencies.items() if len(values)}
    if not latencies:
        return None
    plt = _pyplot()
    colours = arm_colours(list(data["arms"]))
    everything = np.concatenate(list(latencies.values()))
    low, high = max(float(everything.min()), 1e-3), float(everything.max())
    log_scale = _wants_log_scale(everything)
    bins = np.geomspace(low, high * 1.0001, 50) if log_scale else 50
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for arm, values in latencies.items():
        label = data["arms"][arm]["provenance"]["label"]
        ax.hist(values, bins=bins, alpha=0.45, color=colours[arm], label=f"{label}, n={len(values):,}")
        for q, style in ((50, "--"), (95, ":")):
            ax.axvline(np.percentile(values, q), color=colours[arm], linestyle=style, linewidth=1.2)
    if log_scale:
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
    ax.set_xlabel(f"latency per question, ms ({'log scale; ' if log_scale else ''}dashed p50, dotted p95)")
    ax.set_ylabel("questions")
    ax.set_title("Per-question latency (client end to end)")
    ax.legend(fontsize=8)
    return _save(fig, path, data, list(latencies), "Failed and missing answers excluded")


def plot_latency_cdf(data: dict[str, Any], latencies: dict[str, np.ndarray], path: Path) -> Path | None:
    latencies = {arm: values for arm, values in latencies.items() if len(values)}
    if not latencies:
        return None
    plt = _pyplot()
    colours = arm_colours(list(data["arms"]))
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for arm, values in latencies.items():
        ordered = np.sort(values)
        fraction = np.arange(1, len(ordered) + 1) / len(ordered)
        ax.step(ordered, fraction, where="post", color=colours[arm], label=data["arms"][arm]["provenance"]["label"])
    log_scale = _wants_log_scale(np.concatenate(list(latencies.values())))
    if log_scale:
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
    for level in (0.5, 0.95):
        ax.axhline(level, color="#999999", linewidth=0.7, linestyle=":")
        # x in axes coordinates, y in data: the label sits at the left edge whatever the scale.
        ax.text(0.005, level, f"p{round(level * 100)}", fontsize=7, va="bottom", color="#666666",
                transform=ax.get_yaxis_transform())
    ax.set_xlabel(f"latency per question, ms{' (log scale)' if log_scale else ''}")
    ax.set_ylabel("fraction of questions at or below")
    ax.set_ylim(0, 1.01)
    ax.set_title("Latency CDF")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path, data, list(latencies), "Failed and missing answers excluded")


def plot_accuracy(data: dict[str, Any], path: Path) -> Path | None:
    """EM and F1 per arm with 95% bootstrap CIs; stand-ins hatched and marked meaningless."""
    arms = [arm for arm, summary in data["arms"].items() if summary["questions"]]
    if not arms:
        return None
    plt = _pyplot()
    colours = arm_colours(list(data["arms"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(arms) + 3), 4.4))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        summary = data["arms"][arm]
        standin = summary["provenance"]["standin"]
        for j, metric in enumerate(("em", "f1")):
            value = summary[metric]
            low, high = summary[f"{metric}_ci"]
            x = j + (i - (len(arms) - 1) / 2) * width
            error = None if low is None else [[value - low], [high - value]]
            ax.bar(x, value, width * 0.95, color=colours[arm], hatch="//" if standin else None,
                   edgecolor="white" if not standin else "black", alpha=0.5 if standin else 0.9,
                   yerr=error, capsize=4, label=summary["provenance"]["label"] if j == 0 else None)
            text = f"{value:.1f}" + ("\nSTAND-IN:\nmeaningless" if standin else "")
            ax.text(x, (high if high is not None else value) + 1.5, text, ha="center", va="bottom", fontsize=7,
                    color="#b00000" if standin else "black")
    ax.set_xticks([0, 1], ["exact match (EM)", "F1"])
    ax.set_ylabel("% of questions (95% bootstrap CI)")
    ax.set_ylim(0, 119)
    ax.set_title("Accuracy per arm")
    ax.legend(fontsize=8, loc="upper left", ncol=min(len(arms), 3))
    return _save(fig, path, data, arms, "Failed and missing answers count as wrong")


def plot_contingency(data: dict[str, Any], path: Path, max_pairs: int = 6) -> Path | None:
    """The 2x2 exact-match table of each pair; the off-diagonal cells are McNemar's b and c."""
    tests = [test for test in data["tests"].values() if test.get("mcnemar")][:max_pairs]
    if not tests:
        return None
    plt = _pyplot()
    columns = min(len(tests), 3)
    rows = (len(tests) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.9 * rows + 0.4), squeeze=False)
    for ax in axes.flat[len(tests):]:
        ax.axis("off")
    for ax, test in zip(axes.flat, tests):
        m = test["mcnemar"]
        table = np.array([[m["both_right"], m["b"]], [m["c"], m["both_wrong"]]])
        ax.imshow(table, cmap="Blues", vmin=0, vmax=max(int(table.max()), 1))
        for (r, c), count in np.ndenumerate(table):
            share = count / max(m["n"], 1)
            name = {(0, 1): "b", (1, 0): "c"}.get((r, c), "")
            ax.text(c, r, f"{name + ' = ' if name else ''}{count:,}\n({share:.1%})", ha="center", va="center",
                    fontsize=9, color="white" if count > table.max() * 0.6 else "black")
        a, b = test["arm_a"], test["arm_b"]
        ax.set_xticks([0, 1], [f"{b} right", f"{b} wrong"])
        ax.set_yticks([0, 1], [f"{a} right", f"{a} wrong"])
        ax.set_title(f"{a} vs {b}: exact match\nMcNemar exact p = {m['p_value']:.3g}", fontsize=9)
        if not test.get("accuracy_meaningful", True):
            ax.set_xlabel("STAND-IN involved: accuracy meaningless", color="#b00000", fontsize=8)
    arms = list(dict.fromkeys(arm for test in tests for arm in (test["arm_a"], test["arm_b"])))
    return _save(fig, path, data, arms)


def _load_steps(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {arm: summary["load"] for arm, summary in data["arms"].items() if summary.get("load")}


def plot_load(data: dict[str, Any], path: Path) -> Path | None:
    """Throughput and p95 latency against the number of concurrent users (closed-loop steps), per arm."""
    steps = {arm: [row for row in rows if row.get("users")] for arm, rows in _load_steps(data).items()}
    steps = {arm: rows for arm, rows in steps.items() if rows}
    if not steps:
        return None
    plt = _pyplot()
    colours = arm_colours(list(data["arms"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    users_seen: set[int] = set()
    for arm, rows in steps.items():
        users = [row["users"] for row in rows]
        users_seen.update(users)
        label = data["arms"][arm]["provenance"]["label"]
        left.plot(users, [row["requests_per_s"] for row in rows], "o-", color=colours[arm], label=label)
        p95 = [(row["latency_ms"] or {}).get("p95") for row in rows]
        right.plot(users, [np.nan if v is None else v for v in p95], "o-", color=colours[arm], label=label)
    for ax in (left, right):
        ax.set_xlabel("concurrent users")
        ax.set_xticks(sorted(users_seen))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("requests per second")
    left.set_title("Throughput")
    left.set_ylim(bottom=0)
    right.set_ylabel("p95 latency, ms")
    right.set_title("p95 latency under load")
    right.set_ylim(bottom=0)
    mode = (data.get("load") or {}).get("mode")
    return _save(fig, path, data, list(steps), f"Locust load test{', ' + mode + ' mode' if mode else ''}")


def plot_latency_vs_rate(data: dict[str, Any], path: Path) -> Path | None:
    """Open loop: each arm's p50 and p99 against its scheduled request rate (sweep and SLO steps), with the bound."""
    points = {arm: sorted((step for step in summary.get("load") or [] if step.get("rate")), key=lambda s: s["rate"])
              for arm, summary in data["arms"].items()}
    points = {arm: steps for arm, steps in points.items() if steps}
    if not points:
        return None
    plt = _pyplot()
    colours = arm_colours(list(data["arms"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for arm, steps in points.items():
        rates = [step["rate"] for step in steps]
        label = data["arms"][arm]["provenance"]["label"]
        for key, style in (("p50", "o--"), ("p99", "s-")):
            values = [(step["latency_ms"] or {}).get(key) for step in steps]
            ax.plot(rates, [np.nan if v is None else v for v in values], style, color=colours[arm],
                    label=f"{label} {key}")
    bound = (data.get("load") or {}).get("slo_ms")
    if bound:
        ax.axhline(bound, color="#555555", linestyle=":", label=f"p99 bound {bound:g} ms")
    ax.set_xlabel("scheduled requests per second to the arm (open loop)")
    ax.set_ylabel("latency from the scheduled time, ms")
    ax.set_title("Latency against offered load (p99 only from 100+ requests)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path, data, list(points), "abqa loadtest --rate / --slo-ms, Poisson arrivals")


_SERVER_PARTS = (
    ("queue_ms_per_request", "queue", "#d62728"),
    ("compute_input_ms_per_request", "compute input", "#9ecae1"),
    ("compute_infer_ms_per_request", "compute infer", "#3182bd"),
    ("compute_output_ms_per_request", "compute output", "#08519c"),
)


def plot_queue_compute(data: dict[str, Any], path: Path) -> Path | None:
    """Triton's time per request split into queue and compute, for each arm and concurrency step."""
    bars = []
    for arm, rows in _load_steps(data).items():
        for row in rows:
            if any(row.get(key) is not None for key, _, _ in _SERVER_PARTS):
                bars.append((arm, row))
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(bars) + 3), 4.4))
    x = np.arange(len(bars))
    bottom = np.zeros(len(bars))
    for key, name, colour in _SERVER_PARTS:
        values = np.array([row.get(key) or 0.0 for _, row in bars])
        ax.bar(x, values, 0.7, bottom=bottom, color=colour, label=name)
        bottom += values
    ax.set_xticks(x, [f"{arm}\n{row['step']}" for arm, row in bars], fontsize=8)
    ax.set_ylabel("server time per request, ms")
    ax.set_title("Queue versus compute time in Triton (per request)")
    ax.set_ylim(0, max(float(bottom.max()), 1e-3) * 1.25)  # headroom: the legend sits above the bars
    ax.legend(fontsize=8, ncol=4, loc="upper center")
    arms = list(dict.fromkeys(arm for arm, _ in bars))
    return _save(fig, path, data, arms, "Triton Prometheus metrics over each load step")


def plot_languages(data: dict[str, Any], path: Path) -> Path | None:
    """A multilingual run: F1 per language and arm with 95% bootstrap CIs (stand-ins hatched), and beside it the
    median latency per language, which tells how each model's tokenizer and length cope with each script."""
    report = data.get("languages")
    if not report or not report["languages"]:
        return None
    languages = report["languages"]
    arms = list(dict.fromkeys(arm for language in languages for arm in report["per_language"][language]["arms"]))
    if not arms:
        return None
    plt = _pyplot()
    colours = arm_colours(list(data["arms"]))
    has_latency = any(report["per_language"][language]["arms"][arm]["latency_p50_ms"] is not None
                      for language in languages for arm in report["per_language"][language]["arms"])
    panel_width = min(8.0, max(5.0, 0.8 * len(languages) * len(arms) + 2))
    fig, axes = plt.subplots(1, 2 if has_latency else 1, squeeze=False,
                             figsize=(panel_width * (2 if has_latency else 1), 4.4))
    width = 0.8 / len(arms)
    x = np.arange(len(languages))
    f1_axis = axes[0][0]
    for i, arm in enumerate(arms):
        standin = data["arms"][arm]["provenance"]["standin"]
        blocks = [report["per_language"][language]["arms"].get(arm) or {} for language in languages]
        values = np.array([np.nan if b.get("f1") is None else b["f1"] for b in blocks])
        errors = np.array([[0.0, 0.0] if b.get("f1") is None or b["f1_ci"][0] is None
                           else [b["f1"] - b["f1_ci"][0], b["f1_ci"][1] - b["f1"]] for b in blocks]).T
        offset = (i - (len(arms) - 1) / 2) * width
        label = data["arms"][arm]["provenance"]["label"]
        f1_axis.bar(x + offset, values, width * 0.95, yerr=errors, capsize=3, color=colours[arm],
                    hatch="//" if standin else None, alpha=0.5 if standin else 0.9,
                    edgecolor="black" if standin else "white",
                    label=label + (": accuracy meaningless" if standin else ""))
        if has_latency:
            latency = [b.get("latency_p50_ms") for b in blocks]
            axes[0][1].bar(x + offset, [np.nan if v is None else v for v in latency], width * 0.95,
                           color=colours[arm], label=label)
    f1_axis.set_xticks(x, languages)
    f1_axis.set_ylim(0, 109)
    f1_axis.set_ylabel("F1 % (MLQA scoring; 95% bootstrap CI)")
    f1_axis.set_title("F1 per language")
    f1_axis.legend(fontsize=8, loc="upper left")
    if has_latency:
        axes[0][1].set_xticks(x, languages)
        axes[0][1].set_ylabel("p50 latency per question, ms")
        axes[0][1].set_title("Median latency per language")
    return _save(fig, path, data, arms, "zh F1 over characters (MLQA); failed and missing answers count as wrong")


def render_plots(data: dict[str, Any], latencies: dict[str, np.ndarray], out_dir: Path) -> dict[str, Path]:
    """Every figure that applies to this run, as {name: png path}, in the report's order."""
    drawn = {
        "latency_histogram": plot_latency_histogram(data, latencies, out_dir / "latency_histogram.png"),
        "latency_cdf": plot_latency_cdf(data, latencies, out_dir / "latency_cdf.png"),
        "accuracy": plot_accuracy(data, out_dir / "accuracy.png"),
        "contingency": plot_contingency(data, out_dir / "contingency.png"),
        "load": plot_load(data, out_dir / "load.png"),
        "latency_vs_rate": plot_latency_vs_rate(data, out_dir / "latency_vs_rate.png"),
        "queue_compute": plot_queue_compute(data, out_dir / "queue_compute.png"),
        "languages": plot_languages(data, out_dir / "languages.png"),
    }
    return {name: path for name, path in drawn.items() if path is not None}
