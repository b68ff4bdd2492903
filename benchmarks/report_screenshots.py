"""Headless-Chromium screenshots of a report.html: the top of the page and chosen sections, as small PNGs.

    .venv/bin/python benchmarks/report_screenshots.py runs/real/report.html benchmarks/results/real \
        "Decision: non-inferiority within a declared margin" "Trade-off: accuracy against latency, throughput and cost"

writes <prefix>-top.png and one <prefix>-<section>.png per heading given (the heading and what follows it, up to
the next heading of the same level). Needs a system Chromium (`apt-get install chromium`) or ABQA_CHROMIUM.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

WIDTH, TOP_HEIGHT, MAX_SECTION_HEIGHT = 1280, 900, 1400


def chromium() -> str:
    for candidate in (os.environ.get("ABQA_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    sys.exit("no Chromium found (apt-get install chromium, or set ABQA_CHROMIUM)")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def section_box(page, heading: str) -> dict | None:
    """The bounding box from a heading to the next heading of the same level (or the page's end)."""
    return page.evaluate(
        """(text) => {
            const heads = [...document.querySelectorAll('h2, h3')];
            const head = heads.find(h => h.textContent.trim() === text);
            if (!head) return null;
            const next = heads.slice(heads.indexOf(head) + 1).find(h => h.tagName <= head.tagName);
            const top = head.getBoundingClientRect().top + window.scrollY;
            const bottom = next ? next.getBoundingClientRect().top + window.scrollY : document.body.scrollHeight;
            return {x: 0, y: top - 8, width: document.documentElement.clientWidth, height: bottom - top};
        }""", heading)


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    html, prefix, headings = Path(argv[0]).resolve(), Path(argv[1]), argv[2:]
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": TOP_HEIGHT})
        page.goto(html.as_uri())
        page.screenshot(path=f"{prefix}-top.png")
        print(f"{prefix}-top.png")
        for heading in headings:
            box = section_box(page, heading)
            if box is None:
                print(f"no heading {heading!r} in {html}", file=sys.stderr)
                continue
            box["height"] = min(box["height"], MAX_SECTION_HEIGHT)
            path = f"{prefix}-{slug(heading)}.png"
            page.screenshot(path=path, clip=box, full_page=True)
            print(path)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
