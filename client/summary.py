"""Per-arm totals of an evaluation (EM, F1, latency percentiles) and the table printed at the end of a run."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from abqa.core.records import STANDIN_WARNING
from abqa.core.run import ArmSummary, EvalRecord

KIND_STANDIN = "stand-in"   # a served arm with untrained weights: its EM/F1 is printed but means nothing


def summarize(records: Iterable[EvalRecord], arms: Sequence[str], kinds: dict[str, str] | None = None,
              question_ids: set[str] | None = None) -> list[ArmSummary]:
    """One summary per arm in `arms` order; only records of `question_ids` count when given."""
    by_arm: dict[str, list[EvalRecord]] = {arm: [] for arm in arms}
    for record in records:
        if record.arm in by_arm and (question_ids is None or record.id in question_ids):
            by_arm[record.arm].append(record)
    summaries = []
    for arm, arm_records in by_arm.items():
        latencies = np.array([r.latency_ms for r in arm_records if r.status == "ok" and r.latency_ms is not None])
        count = len(arm_records)
        summaries.append(ArmSummary(
            arm=arm,
            kind=(kinds or {}).get(arm, ""),
            questions=count,
            ok=sum(r.status == "ok" for r in arm_records),
            failed=sum(r.status == "failed" for r in arm_records),
            missing=sum(r.status == "missing" for r in arm_records),
            exact_match=100.0 * sum(r.em or 0.0 for r in arm_records) / count if count else 0.0,
            f1=100.0 * sum(r.f1 or 0.0 for r in arm_records) / count if count else 0.0,
            latency_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else None,
            latency_p95_ms=float(np.percentile(latencies, 95)) if latencies.size else None,
            latency_mean_ms=float(latencies.mean()) if latencies.size else None,
        ))
    return summaries


def format_table(summaries: Sequence[ArmSummary]) -> str:
    header = ["arm", "kind", "questions", "failed", "missing", "EM", "F1", "p50 ms", "p95 ms"]
    rows = [[s.arm, s.kind, str(s.questions), str(s.failed), str(s.missing), f"{s.exact_match:.3f}", f"{s.f1:.3f}",
             _ms(s.latency_p50_ms), _ms(s.latency_p95_ms)] for s in summaries]
    return _text_table(header, rows) + _standin_footnote(summaries)


def _text_table(header: list[str], rows: list[list[str]], text_columns: int = 2) -> str:
    """A plain aligned table: the first `text_columns` left-aligned, numbers right-aligned, a rule under the header."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < text_columns else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def summarize_by_group(records: Iterable[EvalRecord], arms: Sequence[str], kinds: dict[str, str] | None,
                       groups: dict[str, str | None]) -> dict[str, list[ArmSummary]]:
    """The run's summaries per group of questions ({question id: group}, e.g. its language or HasAns/NoAns), in
    the order the groups first appear; questions without a group are left out; empty when none has one."""
    records = list(records)
    order = list(dict.fromkeys(group for group in groups.values() if group))
    return {group: summarize(records, arms, kinds, {qid for qid, g in groups.items() if g == group})
            for group in order}


def answerability_groups(has_answer: dict[str, bool | None]) -> dict[str, str | None]:
    """SQuAD v2.0's official breakdown: HasAns (answerable) and NoAns (the right answer is ""); None for v1.1."""
    return {qid: None if value is None else ("HasAns" if value else "NoAns") for qid, value in has_answer.items()}


def format_group_table(column: str, by_group: dict[str, Sequence[ArmSummary]]) -> str:
    """A breakdown printed after the run's table, e.g. per language (MLQA scoring) or HasAns/NoAns (SQuAD v2.0)."""
    header = [column, "arm", "questions", "failed", "EM", "F1", "p50 ms"]
    rows = [[group, _arm_label(s), str(s.questions), str(s.failed), f"{s.exact_match:.3f}", f"{s.f1:.3f}",
             _ms(s.latency_p50_ms)] for group, summaries in by_group.items() for s in summaries]
    return _text_table(header, rows) + _standin_footnote([s for summaries in by_group.values() for s in summaries])


def _arm_label(summary: ArmSummary) -> str:
    return f"{summary.arm} (stand-in)" if summary.kind == KIND_STANDIN else summary.arm


def _standin_footnote(summaries: Sequence[ArmSummary]) -> str:
    """Under a table that shows a stand-in's EM/F1, the reason not to read them."""
    names = list(dict.fromkeys(s.arm for s in summaries if s.kind == KIND_STANDIN))
    return f"\n{', '.join(names)}: {STANDIN_WARNING}" if names else ""
