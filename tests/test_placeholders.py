"""No placeholder sections anywhere in the documentation: every page of docs/, the README files and the
experiment write-ups say what is there, not what will come."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted({*ROOT.glob("docs/**/*.md"), ROOT / "README.md", *ROOT.glob("examples/**/*.md"),
                *ROOT.glob("experiments/**/*.md")})

# Phrases of a section that promises content instead of holding it.
PLACEHOLDER = re.compile(r"this (section|page|part) (lands|comes|will (come|land|be (added|written)))|"
                         r"\blands with\b|coming soon|to be (written|added|done)|under construction|"
                         r"not (yet )?written yet|\b(TODO|TBD|FIXME|XXX)\b|placeholder (section|text|page)|"
                         r"lorem ipsum", re.IGNORECASE)


def placeholders(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of every line with a placeholder phrase."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if PLACEHOLDER.search(line)]


def test_the_pages_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/guide/own-model.md", "docs/guide/training.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_placeholder_sections(page):
    found = placeholders(page.read_text(encoding="utf-8"))
    assert not found, f"{page.relative_to(ROOT)} holds placeholder text: {found}"


@pytest.mark.parametrize("text", ["## Models\n\nThis section lands with the importers.\n", "Coming soon.",
                                  "TODO: write the example", "A placeholder section for now."])
def test_placeholders_are_recognised(text):
    assert placeholders(text)


def test_ordinary_text_is_not_a_placeholder():
    assert not placeholders("The relevance lands on the padding unless a mask is given; todos are done.\n"
                            "Every section holds code that the tests run.")
