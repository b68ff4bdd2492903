"""Per-language results of a multilingual run (`--squad xquad.de,xquad.zh,...`): pure, report data out.

Each language is its own subset of questions: EM and F1 per arm with bootstrap CIs, and every pair of arms
compared with the same tests as the whole run (`summary.compare_pair`: the sign-flip test, McNemar, paired t,
Wilcoxon, paired bootstrap, latency ratio), on the questions of that language only. The tables' p-values are
Holm-adjusted over every (language, pair) within each test family, since a reader scans all languages for a
difference; the verdict's sign-flip CI and p are Bonferroni-adjusted together over the same family.
A run whose records carry no language (a SQuAD v1.1 run) has no per-language section: `language_report` is None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from abqa.analysis import stats
from abqa.analysis.inputs import ArmAnswers, RunInputs
from abqa.analysis.summary import ReportSettings, _holm_over_pairs, compare_pair, pair_key
from abqa.core.metrics import MULTILINGUAL_TOKENIZATION_NOTE
from abqa.core.run import LanguagePart
from abqa.core.xquad import ID_SEPARATOR

ID_NOTE = (f"XQuAD repeats question ids across languages, so a multilingual run prefixes them with the language "
           f"(de{ID_SEPARATOR}<id>): questions pair by this id, within one language.")


def answers_in_language(answers: ArmAnswers, language: str) -> ArmAnswers:
    """The arm's answers to the questions of one language (positions kept in the arm's order)."""
    keep = [i for i, lang in enumerate(answers.languages) if lang == language]
    index = np.array(keep, dtype=int)
    return ArmAnswers(
        arm=answers.arm, ids=[answers.ids[i] for i in keep], em=answers.em[index], f1=answers.f1[index],
        latency_ms=answers.latency_ms[index], status=[answers.status[i] for i in keep],
        languages=[language] * len(keep),
    )


def run_languages(inputs: RunInputs) -> list[str]:
    """The run's languages: meta.json's order (the order of --squad), then any other the records carry."""
    meta_order = [part.language for part in _language_parts(inputs)]
    seen = [lang for answers in inputs.answers.values() for lang in answers.languages if lang]
    return list(dict.fromkeys([lang for lang in meta_order if lang in set(seen)] + seen))


def _language_parts(inputs: RunInputs) -> list[LanguagePart]:
    dataset = inputs.meta.dataset if inputs.meta is not None else None
    return list(dataset.languages or []) if dataset is not None else []


def _accuracy(answers: ArmAnswers, settings: ReportSettings) -> dict[str, Any]:
    block: dict[str, Any] = {"questions": answers.n, "ok": answers.count("ok"), "failed": answers.count("failed"),
                             "missing": answers.count("missing"), "em": None, "em_ci": [None, None], "f1": None,
                             "f1_ci": [None, None], "latency_p50_ms": None}
    answered = answers.answered_ok()
    if answered.n:
        block.update(stats.accuracy_percent(answered.em, answered.f1, **settings.bootstrap))
    if answers.n:
        latency = answers.valid_latency()
        block["latency_p50_ms"] = float(np.median(latency)) if latency.size else None
    return block


def language_report(inputs: RunInputs, arms: dict[str, Any], settings: ReportSettings) -> dict[str, Any] | None:
    """report.json's "languages": per language, each arm's accuracy and each pair's paired tests.

    `arms` is the report's per-arm data (for the stand-in flags); pairs are the run's pairs, in its order.
    """
    languages = run_languages(inputs)
    if not languages:
        return None
    answered = [arm for arm in inputs.arm_order if arm in inputs.answers and inputs.answers[arm].n]
    parts = {part.language: part for part in _language_parts(inputs)}
    per_language: dict[str, Any] = {}
    flat_tests: dict[str, dict[str, Any]] = {}
    family = len(languages) * len(answered) * (len(answered) - 1) // 2
    for language in languages:
        subsets = {arm: answers_in_language(inputs.answers[arm], language) for arm in answered}
        tests = {}
        for i, a in enumerate(answered):
            for b in answered[i + 1:]:
                test = compare_pair(subsets[a], subsets[b], settings, family=max(1, family))
                test["accuracy_meaningful"] = (arms[a]["accuracy_meaningful"] and arms[b]["accuracy_meaningful"])
                tests[pair_key(a, b)] = test
                flat_tests[f"{language}{ID_SEPARATOR}{pair_key(a, b)}"] = test
        part = parts.get(language)
        per_language[language] = {
            "dataset": part.name if part else None, "path": part.path if part else None,
            "source": part.source if part else None,
            "arms": {arm: _accuracy(subset, settings) for arm, subset in subsets.items()},
            "tests": tests,
        }
    _holm_over_pairs(flat_tests)
    return {
        "languages": languages,
        "scoring": MULTILINGUAL_TOKENIZATION_NOTE,
        "ids": ID_NOTE,
        "multiple_comparisons": ("holm over every (language, pair) within each test" if len(flat_tests) > 1
                                 else "none (one language, one pair)"),
        "per_language": per_language,
    }


def language_notes(report: dict[str, Any]) -> list[str]:
    return [f"Multilingual run ({', '.join(report['languages'])}): EM and F1 follow MLQA's convention for each "
            "language (zh: every CJK character is a token; th: whitespace tokens, so F1 is close to EM); the "
            "Languages section says exactly how, with per-language tables.", report["ids"]]


def language_verdict(report: dict[str, Any], arms: dict[str, Any]) -> list[str]:
    """One line per pair: the F1 difference in each language (sign-flip CI and p, adjusted together), or why accuracy
    is not compared."""
    lines = []
    pairs = list(next(iter(report["per_language"].values()))["tests"])
    for key in pairs:
        parts = []
        a = b = None
        family = 1
        for language in report["languages"]:
            test = report["per_language"][language]["tests"].get(key)
            if test is None:
                continue
            a, b = test["arm_a"], test["arm_b"]
            if test.get("error"):
                parts.append(f"{language}: {test['error']}")
                continue
            # The CI and p of one procedure, adjusted together (as the run's pair lines).
            flip = test["signflip"]["f1"]
            family = flip["family"]
            low, high = flip["ci_adjusted"]
            ci = f" [{low:+.1f}, {high:+.1f}]" if low is not None and high is not None else ""
            p = flip["p_value_adjusted"]
            p_text = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
            parts.append(f"{language} {flip['difference']:+.1f}{ci} ({p_text}, {test['paired_questions']} questions)")
        if a is None:
            continue
        if not (arms[a]["accuracy_meaningful"] and arms[b]["accuracy_meaningful"]):
            lines.append(f"Per language, {a} vs {b}: accuracy not compared (stand-in weights, EM/F1 meaningless); "
                         "the per-language tables show latency and counts.")
            continue
        level = f"{1 - 0.05 / family:.1%}".replace(".0%", "%") if family > 1 else "95%"
        adjusted = f", Bonferroni over {family} (language, pair) comparisons" if family > 1 else ""
        lines.append(f"Per language, F1 difference {a} − {b} in points, {level} CI (sign-flip permutation test"
                     f"{adjusted}): " + "; ".join(parts) + ".")
    return lines
