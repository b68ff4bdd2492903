"""The documentation cannot drift from the repository or the CLI.

README.md stays short and links every stage's page; every relative link (and anchor) in README.md and docs/
points at something that exists; every flag shown for `abqa <stage>` in a code block or code span is a flag that
`abqa <stage>` really has (read from `abqa.cli.build_parser()`, the parser `abqa` itself runs).
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest

from abqa.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_CHARS = 10_000

FENCED_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
SHELL_OPERATOR = set("();<>|&")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md")), ROOT / "model_repository" / "README.md"]


def relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:  # a page outside the repository (the checker's own tests)
        return path.name


# --------------------------------------------------------------------------- reading markdown


def fenced_blocks(text: str) -> list[str]:
    return FENCED_BLOCK.findall(text)


def prose(text: str) -> str:
    """The text outside fenced blocks and code spans: where links and headings are."""
    return CODE_SPAN.sub("", FENCED_BLOCK.sub("", text))


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings: lower case, punctuation dropped, spaces to hyphens, -1, -2 on repeats."""
    anchors: set[str] = set()
    seen: Counter[str] = Counter()
    for heading in HEADING.findall(FENCED_BLOCK.sub("", text)):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link's text only
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return anchors


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]   # http:, https:, mailto: are not checked here


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{relative(path)}: {target}: no such file")
        elif anchor and anchor not in heading_anchors(linked.read_text(encoding="utf-8")):
            problems.append(f"{relative(path)}: {target}: {relative(linked)} has no heading #{anchor}")
    return problems


# --------------------------------------------------------------------------- reading the CLI


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@pytest.fixture(scope="module")
def stages() -> dict[str, argparse.ArgumentParser]:
    return subcommands(build_parser())


def shell_words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True   # keep --flag=value and NAME=PATH whole; `#` starts a comment
    try:
        return list(lexer)
    except ValueError:  # not shell (a file listing with an apostrophe): its words, so flags are still checked
        return line.split("#")[0].split()


def abqa_commands(snippet: str) -> list[tuple[str, list[str]]]:
    """Each `abqa <word> ...` in a shell snippet as (word, the words up to the next shell operator).

    `make benchmark ARGS="..."` counts as `abqa benchmark ...`, which is what the Makefile runs.
    """
    commands = []
    for line in snippet.replace("\\\n", " ").splitlines():
        words = shell_words(line)
        for i, word in enumerate(words[:-1]):
            if word == "abqa" or word.endswith("/bin/abqa"):   # abqa, .venv/bin/abqa
                rest = words[i + 2:]
            elif word == "make" and words[i + 1] == "benchmark":
                rest = [part for text in words[i + 2:] if text.startswith("ARGS=")
                        for part in shell_words(text.removeprefix("ARGS="))]
            else:
                continue
            end = next((j for j, w in enumerate(rest) if set(w) <= SHELL_OPERATOR), len(rest))
            commands.append((words[i + 1], rest[:end]))
    return commands


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(file, stage word, arguments) for every `abqa <word>` in a code block or code span of the docs."""
    found = []
    for path in markdown_files():
        text = path.read_text(encoding="utf-8")
        snippets = fenced_blocks(text) + CODE_SPAN.findall(FENCED_BLOCK.sub("", text))
        for snippet in snippets:
            found += [(relative(path), word, args) for word, args in abqa_commands(snippet)]
    return found


def unknown_flags(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """The flags in `args` that `parser` (or the sub-command its first argument names) does not have."""
    nested = subcommands(parser)
    if args and args[0] in nested:
        parser, args = nested[args[0]], args[1:]
    known = set(parser._option_string_actions)
    flags = [arg.split("=", 1)[0] for arg in args if re.match(r"^--?[A-Za-z]", arg)]
    return [flag for flag in flags if flag not in known]


# --------------------------------------------------------------------------- the tests


def test_readme_is_short():
    size = len(README.read_text(encoding="utf-8"))
    assert size < README_MAX_CHARS, f"README.md has {size:,} characters; the reference belongs in docs/"


def test_readme_set_up_commands_are_the_makefile_targets_ci_runs():
    first_block = fenced_blocks(README.read_text(encoding="utf-8"))[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make benchmark", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^benchmark:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)
    assert re.search(r"^make test\b", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.MULTILINE)
    assert ".ci/run" in README.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", markdown_files(), ids=relative)
def test_relative_links_and_anchors_exist(path):
    problems = broken_links(path)
    assert not problems, "\n".join(problems)


def test_every_stage_named_in_the_readme_links_its_page(stages):
    readme = README.read_text(encoding="utf-8")
    named = {word for word in re.findall(r"\babqa (\w+)", readme) if word in stages}
    assert {"export", "serve", "evaluate", "loadtest", "report"} <= named
    links = {target.partition("#")[0] for target in relative_links(README)}
    missing = sorted(stage for stage in named if f"docs/{stage}.md" not in links)
    assert missing == [], f"README.md names these stages without linking docs/<stage>.md: {missing}"


def test_every_command_of_the_cli_has_a_page(stages):
    assert sorted(stage for stage in stages if not (DOCS / f"{stage}.md").is_file()) == []


def test_the_docs_index_lists_every_page():
    listed = {target.partition("#")[0] for target in relative_links(DOCS / "index.md")}
    pages = {path.name for path in DOCS.glob("*.md")} - {"index.md"}
    assert sorted(pages - listed) == []


def test_documented_commands_are_real(stages):
    commands = documented_commands()
    assert {word for _, word, _ in commands} >= set(stages), "every stage should be shown at least once"
    unknown = [f"{path}: abqa {word}" for path, word, _ in commands
               if re.fullmatch(r"[a-z][a-z-]*", word) and word not in stages]
    assert not unknown, "\n".join(unknown)


def test_documented_flags_are_real_flags(stages):
    problems = [f"{path}: abqa {word} {' '.join(args)}: {flag}"
                for path, word, args in documented_commands() if word in stages
                for flag in unknown_flags(stages[word], args)]
    assert not problems, "not flags of the command they are shown with:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- the checker checks


def test_the_flag_check_catches_a_flag_the_command_lacks(stages):
    (word, args), = abqa_commands("abqa loadtest --users 1,2 --sample 5   # --sample is evaluate's")
    assert unknown_flags(stages[word], args) == ["--sample"]
    (word, args), = abqa_commands("abqa router export-log --out runs/x --weights 1:1")
    assert unknown_flags(stages[word], args) == ["--weights"]
    (word, args), = abqa_commands('make benchmark ARGS="--sample 500 --durations 30s"')
    assert unknown_flags(stages[word], args) == ["--durations"]
    (word, args), = abqa_commands("abqa report runs/x --mlflow=http://127.0.0.1:5000 | tee log --nope")
    assert unknown_flags(stages[word], args) == []


def test_the_link_check_catches_a_missing_file_and_anchor(tmp_path):
    (tmp_path / "target.md").write_text("# Title\n\n## Load test\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text("[a](target.md#load-test) [b](target.md#not-a-heading) [c](gone.md) `[d](gone.md)` "
                    "[e](https://example.com/x)\n")
    assert [problem.split(": ", 1)[1] for problem in broken_links(page)] == [
        "target.md#not-a-heading: target.md has no heading #not-a-heading", "gone.md: no such file"]
