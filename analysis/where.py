"""Where the difference lives: accuracy gap and latency per context-length bucket and per number of windows, and
each arm's latency as a straight line in its tokens (pure).

A question's length is its token count over the windows it was cut into (eval.jsonl's `tokens`, `windows`), taken
from the baseline arm when it has them, else from the first arm that does, so that every arm is bucketed by the same
question length. Replayed arms record no tokens: a run of replayed arms only has no such breakdown. The accuracy
gap per bucket is candidate - baseline (every pair without a baseline) on the questions both answered, with the
report's sign-flip CI; latency per bucket is each arm's median. The line (least squares, scipy's linregress) is
what a capacity planner reads: milliseconds per 100 tokens, and the fixed cost of a question.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from abqa.analysis import decision
from abqa.analysis.inputs import ArmAnswers, RunInputs, pair_positions

# Tokens over the windows; a window holds at most 384 (max_seq_length), so the upper buckets are several windows.
TOKEN_EDGES = (128, 256, 384, 768)
WINDOW_EDGES = (1, 2, 3)
# Per-bucket gaps are a table, not a verdict: fewer flips keep the report quick on 2 cores.
_BUCKET_RESAMPLES = 2000
_MIN_FIT = 10


def _bucket_labels(edges: tuple[int, ...], unit: str) -> list[str]:
    labels, low = [], 0
    for edge in edges:
        labels.append(f"{edge}" if edge == low + 1 and unit == "windows" else f"{low + 1}–{edge}")
        low = edge
    return labels + [f"over {edges[-1]}"]


def _bucket_of(values: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    """The bucket index of each value (-1 where unknown): value <= edge[0] -> 0, ..., above the last edge -> len."""
    index = np.searchsorted(np.array(edges, dtype=float), values, side="left")
    return np.where(np.isfinite(values), index, -1)


def _length_source(inputs: RunInputs, baseline: str | None) -> str | None:
    order = ([baseline] if baseline in inputs.answers else []) + list(inputs.answers)
    for arm in order:
        tokens = inputs.answers[arm].tokens
        if tokens is not None and np.isfinite(tokens).any():
            return arm
    return None


def _pairs(data: dict[str, Any], baseline: str | None) -> list[tuple[str, str]]:
    # A stand-in's F1 means nothing, nor does a gap to it: only pairs with meaningful accuracy get gaps.
    pairs = [(test["arm_a"], test["arm_b"]) for test in data["tests"].values()
             if not test.get("error") and test.get("accuracy_meaningful", True)]
    if baseline is not None:
        pairs = [(a, b) for a, b in pairs if b == baseline]
    return pairs


def _by_question(source: ArmAnswers, column: np.ndarray) -> dict[str, float]:
    return {question: float(value) for question, value in zip(source.ids, column) if np.isfinite(value)}


def _breakdown(inputs: RunInputs, data: dict[str, Any], pairs: list[tuple[str, str]], length: dict[str, float],
               edges: tuple[int, ...], unit: str, seed: int) -> list[dict[str, Any]]:
    labels = _bucket_labels(edges, unit)
    bucket_of = {question: int(b) for question, b in zip(length, _bucket_of(np.array(list(length.values())), edges))}
    rows = []
    for index, label in enumerate(labels):
        row: dict[str, Any] = {"bucket": label, "questions": sum(1 for b in bucket_of.values() if b == index),
                               "arms": {}, "gaps": {}}
        if not row["questions"]:
            continue
        for arm, answers in inputs.answers.items():
            mask = np.array([bucket_of.get(question) == index for question in answers.ids], dtype=bool)
            part = answers.subset(mask) if mask.any() else None
            ok = part.answered_ok() if part is not None else None
            latency = part.valid_latency() if part is not None else np.array([])
            row["arms"][arm] = {
                "questions": int(mask.sum()),
                "f1": 100 * float(ok.f1.mean()) if ok is not None and ok.n else None,
                "p50_ms": float(np.median(latency)) if latency.size else None,
            }
        for a, b in pairs:
            row["gaps"][f"{a} - {b}"] = _gap(inputs.answers[a], inputs.answers[b], bucket_of, index, seed)
        rows.append(row)
    return rows


def _gap(a: ArmAnswers, b: ArmAnswers, bucket_of: dict[str, int], index: int, seed: int) -> dict[str, Any] | None:
    a, b = a.answered_ok(), b.answered_ok()
    ia, ib, _, _ = pair_positions(a, b)
    keep = np.array([bucket_of.get(a.ids[i]) == index for i in ia], dtype=bool)
    if not keep.any():
        return None
    diffs = a.f1[ia[keep]] - b.f1[ib[keep]]
    flip = decision.sign_flips({"f1": diffs}, resamples=_BUCKET_RESAMPLES, seed=seed)["f1"]
    return {"questions": int(keep.sum()), "f1_points": 100 * flip.mean,
            "ci": [None if v is None else 100 * v for v in flip.interval(0.95)]}


def latency_fit(answers: ArmAnswers) -> dict[str, Any] | None:
    """Least-squares latency = intercept + slope x tokens over the arm's answered questions."""
    from scipy import stats

    if answers.tokens is None:
        return None
    both = np.isfinite(answers.tokens) & np.isfinite(answers.latency_ms)
    tokens, latency = answers.tokens[both], answers.latency_ms[both]
    if tokens.size < _MIN_FIT or np.ptp(tokens) == 0:
        return None
    fit = stats.linregress(tokens, latency)
    t = stats.t.ppf(0.975, tokens.size - 2)
    return {"questions": int(tokens.size), "intercept_ms": float(fit.intercept),
            "ms_per_100_tokens": 100 * float(fit.slope),
            "ms_per_100_tokens_ci": [100 * float(fit.slope - t * fit.stderr), 100 * float(fit.slope + t * fit.stderr)],
            "r2": float(fit.rvalue ** 2), "tokens_range": [float(tokens.min()), float(tokens.max())]}


def where_difference_lives(inputs: RunInputs, data: dict[str, Any], baseline: str | None) -> dict[str, Any] | None:
    """report.json's `where`: per token bucket and per window count, each arm's F1 and p50 and each pair's F1 gap;
    each arm's latency line in tokens. None when no arm recorded tokens (replayed arms only)."""
    source = _length_source(inputs, baseline)
    if source is None:
        return None
    answers = inputs.answers[source]
    pairs = _pairs(data, baseline)
    seed = data["settings"]["seed"]
    windows = answers.windows if answers.windows is not None else np.full(answers.n, np.nan)
    return {
        "length_from": source,
        "by_tokens": _breakdown(inputs, data, pairs, _by_question(answers, answers.tokens), TOKEN_EDGES, "tokens",
                                seed),
        "by_windows": _breakdown(inputs, data, pairs, _by_question(answers, windows), WINDOW_EDGES, "windows", seed),
        "fits": {arm: fit for arm, own in inputs.answers.items() if (fit := latency_fit(own)) is not None},
    }
