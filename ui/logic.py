"""What the app does, without Streamlit: its settings, the arms and what answers for them, questions, reports.

`app.py` only lays these out. Served arms answer through the router stage's `TritonBackend` (the client stage's
`ServedArm.predict`: the tokenisation into windows and the best span of `abqa evaluate`), or through a running
`abqa router` (POST /v1/answer pinned to each arm in turn); replayed prediction files answer with the client
stage's `ReplayArm`. Answers are scored with the official metric when the question comes from a data set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from abqa.core.config import DEFAULT_HOST, DEFAULT_MODEL_REPOSITORY, DEFAULT_RUNS_DIR, GRPC_PORT
from abqa.core.errors import AbqaError
from abqa.core.limits import context_too_long
from abqa.core.records import ExportMetadata
from abqa.core.run import REPORT_JSON, ReportData, RunFolder
from abqa.core.scoring import SQUAD_V1, ScoringRule
from abqa.core.repository import ArmPaths, arm_folders
from abqa.core.squad import SOURCE_SHARED, SquadDataset, SquadQuestion
from abqa.router.backend import AnswerFailed, ArmAnswer, BackendUnavailable
from abqa.triton.endpoint import Endpoint

# `abqa ui` hands its settings to the Streamlit script in this variable (JSON of `UiSettings`).
SETTINGS_ENV = "ABQA_UI_SETTINGS"
STANDIN_LABEL = "stand-in: random weights, accuracy meaningless"
KIND_SERVED, KIND_REPLAY = "served", "replay"
# A data set's articles can hold hundreds of questions; a search shows at most this many matches.
MAX_MATCHES = 200


# --- settings ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UiSettings:
    """Where the app finds its servers, data and runs (the sidebar can change the URLs at run time)."""

    triton_url: str = f"{DEFAULT_HOST}:{GRPC_PORT}"
    protocol: str | None = None                 # grpc | http; None: http for an http:// URL, else grpc
    router_url: str | None = None               # ask through `abqa router` instead of Triton directly
    model_repository: str = str(DEFAULT_MODEL_REPOSITORY)
    squad: str | None = None                    # as `abqa evaluate --squad`: PATH, shared, builtin, or the default
    runs: str = str(DEFAULT_RUNS_DIR)
    replays: tuple[tuple[str, str], ...] = ()   # (arm name, prediction file)
    shared_replay: bool = True                  # the shared real BERT/DistilBERT predictions, on the shared dev set
    timeout_s: float = 30.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "UiSettings":
        text = environ.get(SETTINGS_ENV)
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AbqaError(f"${SETTINGS_ENV}: not valid JSON ({exc}); start the app with `abqa ui`") from None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known) if isinstance(raw, dict) else ["(not an object)"]
        if unknown:
            raise AbqaError(f"${SETTINGS_ENV}: unknown setting(s) {', '.join(unknown)}; start the app with `abqa ui`")
        raw["replays"] = tuple((str(name), str(path)) for name, path in raw.get("replays", ()))
        return cls(**raw)


def triton_target(url: str, protocol: str | None = None) -> Endpoint:
    """The app's Triton: an http:// URL is HTTP unless `protocol` says otherwise, else gRPC (Endpoint's rules)."""
    return Endpoint.parse(url, protocol, flag="--triton-url")


# --- arms ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmCard:
    """An arm as the app shows it: what answers for it, where it comes from, whether its accuracy means anything."""

    name: str
    kind: str                   # served | replay
    standin: bool | None        # None: provenance unknown (no abqa-metadata.json)
    source: str                 # hub id, checkpoint folder, stand-in architecture, or prediction file


def served_card(name: str, repository: str | Path) -> ArmCard:
    """The arm's provenance from `abqa export`'s metadata in the model repository the server uses."""
    path = ArmPaths(repository, name).metadata
    if not path.is_file():
        return ArmCard(name, KIND_SERVED, None, f"provenance unknown: no {path}")
    try:
        meta = ExportMetadata.read(path)
    except AbqaError as exc:
        return ArmCard(name, KIND_SERVED, None, f"provenance unknown: {exc}")
    revision = f" @ {meta.revision[:12]}" if meta.revision else ""
    variant = f", {meta.variant}" if meta.variant and meta.variant != "fp32" else ""
    return ArmCard(name, KIND_SERVED, meta.standin, f"{meta.source}{revision}{variant}")


def repository_arms(repository: str | Path) -> list[str]:
    """The arms of a model repository: its folders with a Triton config or abqa's export metadata."""
    return [arm.arm for arm in arm_folders(repository) if arm.exported or arm.metadata.is_file()]


def replay_card(name: str, path: str | Path) -> ArmCard:
    return ArmCard(name, KIND_REPLAY, False, f"replayed file {Path(path).name}")


def dom_key(arm: str) -> str:
    """A Streamlit element key (and so a CSS class, `st-key-...`) for an arm: arm names may hold dots."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", arm)


class TritonArms:
    """The arms Triton serves at one URL, answered through the router stage's `TritonBackend`.

    Every Triton call runs on one worker thread that this object owns: tritonclient's connections belong to the
    thread that made them, and Streamlit runs each rerun of the script on a new thread.
    """

    def __init__(self, url: str, *, protocol: str | None = None,
                 model_repository: str | Path = DEFAULT_MODEL_REPOSITORY, timeout_s: float = 30.0):
        from abqa.router.backend import TritonBackend

        self.endpoint = triton_target(url, protocol)
        self.model_repository = Path(model_repository)
        self._backend = TritonBackend(self.endpoint, model_repository=self.model_repository, timeout_s=timeout_s)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abqa-ui-triton")
        self._client = None     # the worker thread's TritonClient (the model index)

    def unavailable_message(self) -> str:
        return (f"No Triton server answers at {self.endpoint}. Start one with `abqa serve` (it serves "
                f"{self.model_repository}/ on 127.0.0.1: gRPC 8001, HTTP 8000), then reload; or give its address "
                "in the sidebar (`abqa ui --triton-url HOST:PORT`).")

    def arm_names(self) -> list[str]:
        """The models Triton has ready, from its repository index; BackendUnavailable when nothing answers."""
        return self._worker.submit(self._ready_models).result()

    def _ready_models(self) -> list[str]:
        from abqa.triton.client import RetryPolicy, TritonClient

        if self._client is None:
            self._client = TritonClient(self.endpoint, timeout_s=5.0, retry=RetryPolicy(attempts=1))
        if not self._client.server_live():
            raise BackendUnavailable(self.unavailable_message())
        # `abqa serve` (PyTriton) restricts the repository index; then the model repository names the candidates.
        names = self._client.model_names() or repository_arms(self.model_repository)
        return [name for name in names if self._client.model_ready(name)]

    def answer(self, arm: str, question: str, context: str, squad_id: str | None = None) -> ArmAnswer:
        return self._worker.submit(self._backend.answer, arm, question, context).result()

    def card(self, arm: str) -> ArmCard:
        return served_card(arm, self.model_repository)

    def close(self) -> None:
        def close_all() -> None:
            self._backend.close()
            if self._client is not None:
                self._client.close()

        self._worker.submit(close_all).result()
        self._worker.shutdown()


class RouterArms:
    """The arms of a running `abqa router`, each asked in turn with the request pinned to it (POST /v1/answer with
    "arm"), so the router's log keeps the app's questions as pinned answers. `client` (an httpx.Client, e.g.
    FastAPI's TestClient) is for tests."""

    def __init__(self, url: str, *, model_repository: str | Path = DEFAULT_MODEL_REPOSITORY, timeout_s: float = 30.0,
                 client: Any = None):
        import httpx

        url = url.strip().rstrip("/")
        self.url = url if "://" in url else f"http://{url}"
        self.model_repository = Path(model_repository)
        self._client = client or httpx.Client(base_url=self.url, timeout=timeout_s)

    def unavailable_message(self) -> str:
        return (f"No abqa router answers at {self.url}. Start one with `abqa router` (and Triton behind it with "
                "`abqa serve`), then reload; or give its address in the sidebar (`abqa ui --router-url URL`).")

    def _request(self, method: str, path: str, **kwargs):
        import httpx

        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise AnswerFailed(f"{self.url}{path}: no answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{self.unavailable_message()} ({type(exc).__name__}: {exc})") from None

    def arm_names(self) -> list[str]:
        """The experiment's arms, from the router's GET /v1/health."""
        response = self._request("GET", "/v1/health")
        arms = _json_or_none(response)
        arms = arms.get("arms") if isinstance(arms, dict) else None
        if response.status_code != 200 or not isinstance(arms, list):
            raise BackendUnavailable(f"{self.url}/v1/health answered HTTP {response.status_code} without a list of "
                                     "arms: is this an abqa router?")
        return [str(arm) for arm in arms]

    def answer(self, arm: str, question: str, context: str, squad_id: str | None = None) -> ArmAnswer:
        body = {"question": question, "context": context, "arm": arm}
        if squad_id:
            body["squad_id"] = squad_id
        response = self._request("POST", "/v1/answer", json=body)
        data = _json_or_none(response)
        if response.status_code != 200 or not isinstance(data, dict):
            detail = data.get("detail") if isinstance(data, dict) else response.text[:300]
            error = BackendUnavailable if response.status_code == 503 else AnswerFailed
            raise error(f"the router answered HTTP {response.status_code}: {detail}")
        return ArmAnswer(arm, data["answer"], data.get("score"), float(data["latency_ms"]))

    def card(self, arm: str) -> ArmCard:
        return served_card(arm, self.model_repository)

    def close(self) -> None:
        self._client.close()


def _json_or_none(response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# --- replayed prediction files -------------------------------------------------------------------------------------


def replay_specs(settings: UiSettings, dataset: SquadDataset) -> list[tuple[str, Path]]:
    """The replay arms: --replay files, then (on the shared dev set) the shared real fine-tuned BERT/DistilBERT pair."""
    from abqa.benchmark import SHARED_REPLAY_PAIR
    from abqa.core.config import shared_data_dir

    specs = [(name, Path(path)) for name, path in settings.replays]
    root = shared_data_dir()
    if settings.shared_replay and dataset.source == SOURCE_SHARED and root is not None:
        taken = {name for name, _ in specs}
        for name, filename in SHARED_REPLAY_PAIR.items():
            path = root / "squad-v1.1" / "predictions" / filename
            if name not in taken and path.is_file():
                specs.append((name, path))
    return specs


def load_replays(specs: Sequence[tuple[str, Path]], dataset: SquadDataset) -> tuple[dict, list[str]]:
    """({name: ReplayArm}, errors): a file that cannot be read is an error naming it, and the others still load."""
    from abqa.client.arms import ReplayArm

    split_ids = set(dataset.ids())
    arms, errors = {}, []
    for name, path in specs:
        try:
            arms[name] = ReplayArm.load(name, Path(path), split_ids)
        except AbqaError as exc:
            errors.append(str(exc))
    return arms, errors


# --- questions -----------------------------------------------------------------------------------------------------


def free_question(question: str, context: str) -> SquadQuestion:
    """A question typed by the user: no id, no references (so nothing to score, and no replayed answer). A context
    over the bound every input has (abqa.core.limits) is an AbqaError."""
    too_long = context_too_long(context.strip())
    if too_long:
        raise AbqaError(f"Context: {too_long}")
    return SquadQuestion(id="", question=question.strip(), context=context.strip(), answers=(), title="")


def article_titles(questions: Sequence[SquadQuestion]) -> list[str]:
    return list(dict.fromkeys(question.title for question in questions))


def questions_of(questions: Sequence[SquadQuestion], title: str) -> list[SquadQuestion]:
    return [question for question in questions if question.title == title]


def search_questions(questions: Sequence[SquadQuestion], text: str,
                     limit: int = MAX_MATCHES) -> tuple[list[SquadQuestion], int]:
    """(the first `limit` matches, how many match): an exact id, else every word in the title or the question."""
    text = text.strip()
    exact = [question for question in questions if question.id == text]
    if exact or not text:
        return exact, len(exact)
    words = text.lower().split()
    matches = [question for question in questions
               if all(word in f"{question.title.replace('_', ' ')} {question.id} {question.question}".lower()
                      for word in words)]
    return matches[:limit], len(matches)


def question_label(question: SquadQuestion) -> str:
    return f"{question.question}  ·  {question.id}"


def unique_references(question: SquadQuestion) -> list[str]:
    return list(dict.fromkeys(question.answer_texts))


# --- answering -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmResult:
    """One arm's answer to the question on screen."""

    arm: str
    kind: str
    standin: bool | None
    source: str
    answer: str | None              # None: no answer (failed, or not in the replayed file)
    em: float | None                # 0 or 1 against the references; None without references or answer
    f1: float | None                # 0..1
    latency_ms: float | None        # served arms: tokenise, Triton, best span (the client's clock); replays: none
    score: float | None = None      # start + end logit of the span
    error: str | None = None


def score(prediction: str | None, question: SquadQuestion, rule: ScoringRule) -> tuple[float | None, float | None]:
    """Official EM/F1 when the question comes from a data set (it has an id) and there is an answer, with the data
    set's rule, as `abqa evaluate` scores it (MLQA's in the question's language for XQuAD)."""
    if prediction is None or not question.id:
        return None, None
    try:
        result = rule.score(prediction, question.answer_texts, question.language)
    except ValueError:  # a question the rule cannot score (no language for MLQA's, no reference answer)
        return None, None
    return result.em, result.f1


def answer_with_every_arm(question: SquadQuestion, backend: Any, served: Sequence[ArmCard],
                          replays: Mapping[str, Any], *, rule: ScoringRule = SQUAD_V1) -> list[ArmResult]:
    """Every arm's answer side by side: the served arms one after another (so none slows another down), then the
    replayed files. A failing arm gets its error in its own result; the others still answer."""
    results = []
    for card in served:
        try:
            answer = backend.answer(card.name, question.question, question.context, squad_id=question.id or None)
        except (BackendUnavailable, AnswerFailed, AbqaError) as exc:
            results.append(ArmResult(card.name, card.kind, card.standin, card.source, None, None, None, None,
                                     error=str(exc)))
            continue
        em, f1 = score(answer.answer, question, rule)
        results.append(ArmResult(card.name, card.kind, card.standin, card.source, answer.answer, em, f1,
                                 answer.latency_ms, answer.score))
    for name, replay in replays.items():
        card = replay_card(name, replay.path)
        if not question.id:
            error = "a replayed file answers only the data set's questions, not a question typed here"
            prediction = None
        else:
            prediction = replay.predictions.get(question.id)
            error = None if prediction is not None else f"no prediction for {question.id} in {replay.path}"
        em, f1 = score(prediction, question, rule)
        results.append(ArmResult(name, card.kind, card.standin, card.source, prediction, em, f1, None, error=error))
    return results


def results_table(results: Sequence[ArmResult]) -> list[dict[str, Any]]:
    """One row per arm, for a table beside the answer cards."""
    def percent(value: float | None) -> float | None:
        return None if value is None else round(100.0 * value, 1)

    return [{
        "arm": r.arm, "kind": r.kind, "answer": r.answer if r.error is None else f"(error) {r.error}",
        "EM": percent(r.em), "F1": percent(r.f1),
        "latency ms": None if r.latency_ms is None else round(r.latency_ms, 1),
        "span score": None if r.score is None else round(r.score, 2),
        "note": STANDIN_LABEL if r.standin else ("provenance unknown" if r.standin is None else ""),
    } for r in results]


# --- reports -------------------------------------------------------------------------------------------------------


@dataclass
class ReportView:
    """A run's report.json laid out as the HTML report is (the analysis stage's blocks), with its PNGs."""

    run_dir: Path
    data: dict[str, Any]
    document: Any                   # abqa.analysis.render.Document
    figures: dict[str, Path]        # plot name -> PNG on disk
    missing_figures: list[str]      # listed in report.json, not on disk
    html: Path | None
    outside_figures: list[str] = dataclasses.field(default_factory=list)  # paths leading out of the run folder


def runs_folder(text: str, root: str | Path) -> Path:
    """The folder typed in the app's "Runs folder" box: `root` (what `abqa ui --runs` gave) or a folder under it;
    the app shows no report from elsewhere on the machine."""
    root = Path(root).resolve()
    path = Path(text).expanduser()
    path = (path if path.is_absolute() else root / path).resolve()
    if not path.is_relative_to(root):
        raise AbqaError(f"{text}: outside {root}, the runs folder this app shows; start it with "
                        f"`abqa ui --runs {text}` to browse that one")
    return path


def report_figure(run_dir: Path, relative: str) -> Path | None:
    """A plot named in report.json, when it is a file inside the run folder (report.json is data: a path in it
    that leads elsewhere is not followed)."""
    path = (run_dir / relative).resolve()
    return path if path.is_relative_to(run_dir.resolve()) else None


def report_runs(runs_dir: str | Path) -> list[Path]:
    """Run folders under `runs_dir` holding a report.json (nested ones too, e.g. a benchmark's replay-shared/),
    newest report first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = [path.parent for path in runs_dir.glob(f"**/{REPORT_JSON}") if path.is_file()]
    return sorted(found, key=lambda run: RunFolder(run).report_json.stat().st_mtime, reverse=True)


def load_report_view(run_dir: str | Path) -> ReportView:
    from abqa.analysis.render import layout

    folder = RunFolder(Path(run_dir))
    try:
        report = ReportData.read(folder.report_json)
    except AbqaError as exc:
        raise AbqaError(f"{exc}; `abqa report {folder.path}` writes it") from None
    data = report.to_dict()
    inside = {name: report_figure(folder.path, relative) for name, relative in report.plots.items()}
    figures = {name: path for name, path in inside.items() if path is not None and path.is_file()}
    outside = [name for name, path in inside.items() if path is None]
    document = layout(data, list(figures))
    html = folder.report_html
    return ReportView(folder.path, data, document, figures,
                      [name for name in report.plots if name not in figures and name not in outside],
                      html if html.is_file() else None, outside)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|$~{}])")


def md_escape(text: str) -> str:
    """Text shown through Streamlit's Markdown as written (arm names hold underscores, answers dollar signs)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
