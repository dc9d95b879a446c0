"""The documentation stays inside the repository: every link in README.md and docs/ resolves to a
file of this repository, none points to another site, an absolute path or a directory beside
the checkout, and README points to the architecture document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
AUTOLINK = re.compile(r"<(https?://[^>]+)>")


def _links(path: Path) -> list[str]:
    text = path.read_text()
    return LINK.findall(text) + AUTOLINK.findall(text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_stays_in_the_repository(doc: Path) -> None:
    for target in _links(doc):
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", target), f"{doc.name}: link leaves the repository: {target}"
        assert not target.startswith("/"), f"{doc.name}: absolute path: {target}"
        file_part = target.split("#", 1)[0]
        if not file_part:
            continue  # an anchor in the same document
        resolved = (doc.parent / file_part).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc.name}: {target} is outside the repository"
        assert resolved.exists(), f"{doc.name}: {target} does not exist"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_to_directories_beside_the_checkout(doc: Path) -> None:
    assert "../shared/" not in doc.read_text(), f"{doc.name} refers to ../shared/, which is not in the repository"


def test_readme_points_to_the_architecture_document() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    assert "```mermaid" in architecture
    for operation in ("Create", "Start", "Stop", "Restart", "Pause", "Console"):
        assert re.search(rf"^### {operation}\b", architecture, re.M), f"no section for {operation}"
