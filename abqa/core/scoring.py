"""How a run's answers are scored: one object per scoring rule, in one registry.

- `squad-v1.1`: the official SQuAD v1.1 script; every question has reference answers.
- `squad-v2.0`: the official SQuAD v2.0 script; a question without an answer has the single reference "", so
  "" (no answer) is right there and only there.
- `mlqa`: MLQA's convention, per language (XQuAD runs: every question carries its language).

A data set's rule is looked up once (`rule_for`, from its SQuAD version and whether it is multilingual; see
`SquadDataset.rule`) and handed to whatever scores or post-processes its answers. They ask the rule what it
allows (`allows_no_answer`) instead of comparing version strings; the version string itself stays what the run
folder records (meta.json's dataset.version).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from abqa.core.errors import AbqaError
from abqa.core.metrics import QuestionScore, score_answer, score_answer_in_language


class ScoringRule(Protocol):
    name: str                    # the registry's key
    squad_version: str | None    # the official SQuAD script it is ("1.1", "2.0"); None for other conventions
    allows_no_answer: bool       # "" is the right answer to a question without reference answers
    needs_language: bool         # score() needs the question's language

    def score(self, prediction: str | None, references: Sequence[str],
              language: str | None = None) -> QuestionScore: ...


@dataclass(frozen=True)
class SquadScriptRule:
    """The official SQuAD evaluation script of one version (`abqa.core.metrics`); the language is not used."""

    squad_version: str
    allows_no_answer: bool
    needs_language: bool = False

    @property
    def name(self) -> str:
        return f"squad-v{self.squad_version}"

    def score(self, prediction: str | None, references: Sequence[str], language: str | None = None) -> QuestionScore:
        return score_answer(prediction, references, self.squad_version)


@dataclass(frozen=True)
class MlqaRule:
    """MLQA's convention for the question's language (`abqa.core.metrics.score_answer_in_language`)."""

    name: str = "mlqa"
    squad_version: str | None = None
    allows_no_answer: bool = False
    needs_language: bool = True

    def score(self, prediction: str | None, references: Sequence[str], language: str | None = None) -> QuestionScore:
        if not language:
            raise ValueError("MLQA's convention scores a question in its language; this question has none")
        return score_answer_in_language(prediction, references, language)


SQUAD_V1 = SquadScriptRule("1.1", allows_no_answer=False)
SQUAD_V2 = SquadScriptRule("2.0", allows_no_answer=True)
MLQA = MlqaRule()

SCORING_RULES: dict[str, ScoringRule] = {rule.name: rule for rule in (SQUAD_V1, SQUAD_V2, MLQA)}
_BY_SQUAD_VERSION: dict[str, ScoringRule] = {rule.squad_version: rule for rule in SCORING_RULES.values()
                                             if rule.squad_version}
SQUAD_VERSIONS = tuple(_BY_SQUAD_VERSION)


def squad_rule(version: str | None = None, *, where: str = "") -> ScoringRule:
    """The official SQuAD script of `version` (None: v1.1, the default). An unsupported version is an AbqaError
    that starts with `where` (the file or flag that named it)."""
    if version is None:
        return SQUAD_V1
    try:
        return _BY_SQUAD_VERSION[version]
    except KeyError:
        prefix = f"{where}: " if where else ""
        raise AbqaError(f"{prefix}SQuAD version {version!r} is not supported "
                        f"(supported: {', '.join(SQUAD_VERSIONS)})") from None


def rule_for(version: str | None, *, multilingual: bool = False) -> ScoringRule:
    """The rule of a data set: MLQA's for a multilingual one (each question scored in its language), else the
    official SQuAD script of its version."""
    return MLQA if multilingual else squad_rule(version)
