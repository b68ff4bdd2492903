"""The abqa app (Streamlit): ask every arm a question side by side, and browse run reports.

Start it with `abqa ui`, which passes its settings in $ABQA_UI_SETTINGS. This script only lays out what
`abqa.ui.logic` computes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from abqa.core import data_sources
from abqa.core.errors import AbqaError
from abqa.core.scoring import SQUAD_V1, ScoringRule
from abqa.core.squad import SOURCE_BUILTIN, SquadDataset
from abqa.router.backend import BackendUnavailable
from abqa.ui import logic

st.set_page_config(page_title="abqa: BERT vs DistilBERT", layout="wide")


# --- cached resources (one per process, shared by every browser session) --------------------------------------------


@st.cache_resource(show_spinner="Loading the SQuAD questions…")
def load_dataset(squad: str | None) -> SquadDataset:
    return data_sources.resolve(squad)


@st.cache_resource(show_spinner="Loading the replayed prediction files…")
def load_replays(specs: tuple[tuple[str, str], ...], dataset_sha256: str, _dataset: SquadDataset):
    return logic.load_replays([(name, Path(path)) for name, path in specs], _dataset)


@st.cache_resource(show_spinner=False)
def connect(router_url: str | None, triton_url: str, protocol: str | None, repository: str, timeout_s: float):
    if router_url:
        return logic.RouterArms(router_url, model_repository=repository, timeout_s=timeout_s)
    return logic.TritonArms(triton_url, protocol=protocol, model_repository=repository, timeout_s=timeout_s)


# --- layout pieces -----------------------------------------------------------------------------------------------


def arm_card(result: logic.ArmResult) -> None:
    with st.container(border=True, key=f"answer-{logic.dom_key(result.arm)}"):
        st.markdown(f"#### {logic.md_escape(result.arm)}")
        st.caption(f"{result.kind} · {logic.md_escape(result.source)}")
        if result.standin:
            st.warning(logic.STANDIN_LABEL)
        if result.error:
            st.error(result.error)
            return
        text = logic.md_escape(result.answer) if result.answer else "*(no span: empty answer)*"
        st.markdown(f"**Answer:** {text}")
        em = "–" if result.em is None else f"{100 * result.em:.0f}"
        f1 = "–" if result.f1 is None else f"{100 * result.f1:.1f}"
        latency = "–" if result.latency_ms is None else f"{result.latency_ms:.1f} ms"
        st.markdown(f"EM **{em}** · F1 **{f1}** · latency **{latency}**")


def show_results(results: list[logic.ArmResult]) -> None:
    if not results:
        return
    for column, result in zip(st.columns(len(results)), results):
        with column:
            arm_card(result)
    st.dataframe(pd.DataFrame(logic.results_table(results)), hide_index=True, width="stretch")
    st.caption("Latency: the client's clock, end to end per question (tokenise, every request to Triton, best span). "
               "Replayed files are recorded answers: no latency. EM/F1: the official SQuAD metric against the "
               "reference answers, in percent.")


def ask(question, backend, served, replays, rule: ScoringRule, key: str) -> None:
    """Answer with every arm and keep the answers for this question until another is asked."""
    with st.spinner("Asking every arm…"):
        results = logic.answer_with_every_arm(question, backend, served, replays, rule=rule)
    st.session_state["answers"] = (key, results)


def answers_for(key: str) -> list[logic.ArmResult]:
    kept = st.session_state.get("answers")
    return kept[1] if kept and kept[0] == key else []


def squad_question_panel(dataset: SquadDataset):
    """Pick a question: search by id, title or words, or browse an article; returns the question."""
    search = st.text_input("Find a question", placeholder="a question id, or words of its title or text",
                           key="search")
    if search.strip():
        matches, total = logic.search_questions(dataset.questions, search)
        if not matches:
            st.info(f"No question matches {search!r}.")
            return None
        shown = f" (showing the first {len(matches)})" if total > len(matches) else ""
        st.caption(f"{total} matching question{'s' if total != 1 else ''}{shown}")
    else:
        title = st.selectbox("Article", logic.article_titles(dataset.questions), key="article",
                             format_func=lambda text: text.replace("_", " "))
        matches = logic.questions_of(dataset.questions, title)
    question = st.selectbox("Question", matches, format_func=logic.question_label, key="question")
    st.markdown(f"**{logic.md_escape(question.title.replace('_', ' '))}** · `{question.id}`")
    st.markdown(f"### {logic.md_escape(question.question)}")
    with st.expander("Context", expanded=True):
        st.markdown(logic.md_escape(question.context))
    references = logic.unique_references(question)
    if references:
        st.markdown("**Reference answers:** " + " · ".join(f"“{logic.md_escape(text)}”" for text in references))
    return question


def ask_tab(settings: logic.UiSettings, via_router: bool, address: str, repository: str) -> None:
    served: list[logic.ArmCard] = []
    backend, reachable = None, False
    try:
        backend = connect(address if via_router else None, address, settings.protocol, repository,
                          settings.timeout_s)
        served = [backend.card(name) for name in backend.arm_names()]
        reachable = True
    except BackendUnavailable as exc:
        st.error(str(exc))
    except AbqaError as exc:      # e.g. an address that is not one
        st.error(f"{'Router' if via_router else 'Triton'} URL {address!r}: {exc}")

    dataset = None
    try:
        dataset = load_dataset(settings.squad)
    except AbqaError as exc:
        st.error(f"SQuAD data: {exc}")
    replays, replay_errors = ({}, [])
    if dataset is not None:
        specs = tuple((name, str(path)) for name, path in logic.replay_specs(settings, dataset))
        replays, replay_errors = load_replays(specs, dataset.sha256, dataset)
    for error in replay_errors:
        st.error(error)

    if served or replays:
        st.caption("Arms: " + "; ".join(
            [f"{card.name} ({card.kind}{', ' + logic.STANDIN_LABEL if card.standin else ''})" for card in served]
            + [f"{name} (replayed file {replay.path})" for name, replay in replays.items()]))
    elif reachable:
        st.info(f"No arm to ask: no model of {repository} is ready on the server (and no prediction file is "
                "replayed). Is --model-repository the repository the server serves?")

    mode = st.radio("Question", ["SQuAD question", "Your own question"], horizontal=True, key="mode")
    if mode == "SQuAD question":
        if dataset is None:
            return
        if dataset.source == SOURCE_BUILTIN:
            st.warning(f"The built-in sample ({len(dataset)} questions), not SQuAD: pass `abqa ui --squad PATH` "
                       "for the real dev set.")
        else:
            st.caption(f"{len(dataset):,} questions from {dataset.path} (SQuAD v{dataset.version})")
        question = squad_question_panel(dataset)
        if question is None:
            return
        key = f"squad:{question.id}"
        if st.button("Answer with every arm", type="primary", key="ask-squad", disabled=not (served or replays)):
            ask(question, backend, served, replays, dataset.rule, key)
    else:
        with st.form("free-text"):
            text = st.text_input("Your question", key="free-question")
            context = st.text_area("Context (the passage that holds the answer)", height=180, key="free-context")
            submitted = st.form_submit_button("Answer with every arm", type="primary")
        key = f"free:{text}\n{context}"
        if submitted:
            if not text.strip() or not context.strip():
                st.error("Type a question and a context.")
                return
            try:
                question = logic.free_question(text, context)
            except AbqaError as exc:
                st.error(str(exc))
                return
            ask(question, backend, served, {}, SQUAD_V1, key)
    show_results(answers_for(key))


# --- reports -------------------------------------------------------------------------------------------------------


def bullets(items: list[str]) -> str:
    return "\n".join(f"- {logic.md_escape(item)}" for item in items)


def show_document(view: logic.ReportView) -> None:
    from abqa.analysis.render import Bullets, Figure, Heading, Paragraph, Table

    for block in view.document.blocks:
        if isinstance(block, Heading):
            st.markdown(f"{'#' * (block.level + 1)} {logic.md_escape(block.text)}")
        elif isinstance(block, Paragraph):
            (st.warning if block.css == "warn" else st.markdown)(logic.md_escape(block.text))
        elif isinstance(block, Bullets):
            show = {"verdict": st.info, "notes": st.warning}.get(block.css, st.markdown)
            show(bullets(block.items))
        elif isinstance(block, Table):
            # A static table: report cells hold long text (tests and their results), which it wraps.
            st.table(pd.DataFrame(block.rows, columns=block.headers).set_index(block.headers[0]))
        elif isinstance(block, Figure):
            st.image(str(view.figures[block.name]), caption=block.caption)


def reports_tab(settings: logic.UiSettings) -> None:
    try:
        runs_dir = logic.runs_folder(st.text_input("Runs folder", settings.runs, key="runs-dir"), settings.runs)
    except AbqaError as exc:
        st.error(str(exc))
        return
    runs = logic.report_runs(runs_dir)
    if not runs:
        st.info(f"No report under {runs_dir}/ yet: `abqa report RUN_FOLDER` writes one (`abqa benchmark` too).")
        return
    run = st.selectbox("Run", runs, key="run", format_func=lambda path: path.relative_to(runs_dir).as_posix())
    try:
        view = logic.load_report_view(run)
    except AbqaError as exc:
        st.error(str(exc))
        return
    st.markdown(f"## {logic.md_escape(view.document.title)}")
    if view.html is not None:
        st.download_button("Download report.html", view.html.read_bytes(), file_name=f"{run.name}-report.html",
                           mime="text/html")
    for name in view.missing_figures:
        st.warning(f"Plot {name} is listed in report.json but missing on disk; `abqa report {run}` draws it again.")
    for name in view.outside_figures:
        st.warning(f"Plot {name}: report.json gives a path outside the run folder; not shown. `abqa report {run}` "
                   "writes it again.")
    show_document(view)


# --- page ----------------------------------------------------------------------------------------------------------


def main() -> None:
    try:
        settings = logic.UiSettings.from_environ()
    except AbqaError as exc:
        st.error(str(exc))
        return
    with st.sidebar:
        st.header("Servers")
        via = st.radio("Ask through", ["Triton", "router"], index=1 if settings.router_url else 0, horizontal=True,
                       key="via")
        if via == "router":
            address = st.text_input("Router URL", settings.router_url or "http://127.0.0.1:8080", key="router-url")
        else:
            address = st.text_input("Triton URL", settings.triton_url, key="triton-url",
                                    help="host:port for gRPC (8001), http://host:port for HTTP (8000)")
        repository = st.text_input("Model repository", settings.model_repository, key="repository",
                                   help="where each arm's tokenizer/ and abqa-metadata.json are")
    st.title("abqa: every arm, side by side")
    ask_panel, report_panel = st.tabs(["Ask the arms", "Reports"])
    with ask_panel:
        ask_tab(settings, via == "router", address.strip(), repository.strip())
    with report_panel:
        reports_tab(settings)


main()
