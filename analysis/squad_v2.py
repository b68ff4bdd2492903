"""SQuAD v2.0 in the report: HasAns/NoAns accuracy per arm and the best no-answer threshold (pure).

A v2.0 run's records say whether each question has an answer and, when the arm has them, its no-answer score
difference (null score - best span score; or a replayed file's na_prob). From these:

- HasAns and NoAns: EM and F1 over the questions with and without an answer, with bootstrap CIs, as the official
  v2.0 script breaks them down (on NoAns questions EM and F1 are the same number: "" is right, anything else wrong);
- the best threshold: the official script's find_best_thresh over the evaluated questions. It is TUNED ON THE
  QUESTIONS IT SCORES, so it is an optimistic upper bound, never a held-out score; the report labels it so.

Per-question EM/F1 are already scored with the v2.0 rules, so McNemar and the paired tests need nothing new.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from abqa.analysis import stats
from abqa.analysis.inputs import ArmAnswers
from abqa.core.metrics import find_all_best_thresholds

TUNED_LABEL = "tuned on the evaluated questions"
BEST_THRESHOLD_NOTE = (
    "Best threshold: the no-answer threshold that maximises EM (and, separately, F1) on the evaluated questions, "
    "as the official SQuAD v2.0 script's find_best_thresh does; it is tuned on the data it scores, so it is an "
    "optimistic upper bound, not a held-out result. It can only turn answers into \"\" (no answer): a question the "
    "arm already answered \"\" at the run's threshold stays \"\"."
)


def _subset_block(answers: ArmAnswers, mask: np.ndarray, settings: Any) -> dict[str, Any]:
    n = int(mask.sum())
    block: dict[str, Any] = {"questions": n, "em": None, "em_ci": [None, None], "f1": None, "f1_ci": [None, None],
                             "answered": None}
    if n == 0:
        return block
    block.update(stats.accuracy_percent(answers.em[mask], answers.f1[mask], **settings.bootstrap))
    # Share of these questions the arm gave a (non-empty) answer to.
    block["answered"] = 100.0 * float(answers.answered[mask].mean())
    return block


def best_threshold(answers: ArmAnswers) -> dict[str, Any]:
    """The official best-threshold search on one arm's answers, in percent over all its questions.

    The search runs over the questions that came back with a no-answer score; a failed or missing answer has
    none and stays wrong at every threshold (it counts in the denominator, as it does in EM and F1).
    """
    diff = answers.null_score_diff
    searchable = np.isfinite(diff) & np.array([s == "ok" for s in answers.status], dtype=bool)
    count = int(searchable.sum())
    if count == 0:
        return {"available": False, "questions": 0,
                "reason": "no no-answer scores: a served arm records them; a replayed file needs --na-prob NAME=FILE"}
    index = np.flatnonzero(searchable)
    ids = [answers.ids[i] for i in index]
    predictions = {qid: bool(answers.answered[i]) for qid, i in zip(ids, index)}  # only "answered or not" counts
    exact = {qid: float(answers.em[i]) for qid, i in zip(ids, index)}
    f1 = {qid: float(answers.f1[i]) for qid, i in zip(ids, index)}
    na_probs = {qid: float(diff[i]) for qid, i in zip(ids, index)}
    has_answer = {qid: bool(answers.has_answer[i]) for qid, i in zip(ids, index)}
    best = find_all_best_thresholds(predictions, exact, f1, na_probs, has_answer)
    share = count / answers.n  # rescale: the questions outside the search score 0 at every threshold
    return {
        "available": True, "questions": count, "label": TUNED_LABEL,
        "best_em": best["best_exact"] * share, "best_em_threshold": best["best_exact_thresh"],
        "best_f1": best["best_f1"] * share, "best_f1_threshold": best["best_f1_thresh"],
    }


def squad_v2_block(answers: ArmAnswers | None, settings: Any, meta_qa: dict[str, Any] | None = None
                   ) -> dict[str, Any] | None:
    """report.json arms.<arm>.squad_v2, or None for a v1.1 run (its report is unchanged). `meta_qa` is meta.json's
    "qa" block, which holds the run's no-answer threshold."""
    if answers is None or answers.has_answer is None or not answers.n:
        return None
    return {
        "null_threshold": ((meta_qa or {}).get("squad_v2") or {}).get("null_threshold"),
        "has_ans": _subset_block(answers, answers.has_answer, settings),
        "no_ans": _subset_block(answers, ~answers.has_answer, settings),
        "best_threshold": best_threshold(answers),
    }


def squad_v2_notes(data: dict[str, Any]) -> list[str]:
    """The report's notes on a SQuAD v2.0 run (none on a v1.1 run)."""
    blocks = {arm: summary["squad_v2"] for arm, summary in data["arms"].items() if summary.get("squad_v2")}
    if not blocks:
        return []
    first = next(iter(blocks.values()))
    notes = [f"SQuAD v2.0: {first['no_ans']['questions']:,} of "
             f"{first['has_ans']['questions'] + first['no_ans']['questions']:,} questions have no answer; for them "
             "the only right answer is \"\" (no answer). EM/F1 follow the official v2.0 script; HasAns/NoAns "
             "are broken down below."]
    if any(block["best_threshold"]["available"] for block in blocks.values()):
        notes.append(BEST_THRESHOLD_NOTE)
    return notes
