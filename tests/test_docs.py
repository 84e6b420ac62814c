"""The README and docs/ hold together: every relative link names a file that exists and,
with a #fragment, a heading of that file (as GitHub makes its anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> list[str]:
    """The lines of a Markdown file outside its code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (a repeated one gets -1, -2...)."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path):
        heading = re.match(r"#{1,6} (.+)", line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for line in prose(page):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check
                continue
            name, _, fragment = target.partition("#")
            linked = (page.parent / name).resolve() if name else page
            if not linked.exists():
                broken.append(f"{target}: no file {linked}")
            elif fragment and fragment not in anchors(linked):
                broken.append(f"{target}: no heading #{fragment} in {linked.name}")
    assert not broken, f"{page.name}: {broken}"


def test_the_readme_stays_a_front_page() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
