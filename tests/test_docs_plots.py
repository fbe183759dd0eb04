"""The figures of docs/ are drawn from the committed JSON, the same every time.

``make docs`` runs ``jobqueue.lab.docs.plots``; matplotlib is the optional
``docs`` extra, so these tests skip, saying why, where it is not installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the docs extra is not installed: make docs")

from jobqueue.lab.docs import plots  # only once matplotlib is known present

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.timeout(120)
def test_every_figure_draws_from_the_committed_json_and_draws_the_same_twice(
    tmp_path: Path,
) -> None:
    first = plots.draw_all(DOCS, tmp_path / "first")
    second = plots.draw_all(DOCS, tmp_path / "second")
    assert [p.name for p in first] == list(plots.FIGURES)
    for a, b in zip(first, second, strict=True):
        svg = a.read_text()
        assert svg == b.read_text(), f"{a.name} differs between two runs on the same JSON"
        assert "<text" not in svg, f"{a.name} needs a font to render: glyphs must be paths"
        assert not re.search(r"<dc:date>", svg), f"{a.name} records a date"


def test_every_figure_is_committed_and_shown_on_a_page() -> None:
    pages = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    for name in plots.FIGURES:
        assert (DOCS / name).is_file(), f"docs/{name} is missing: run make docs"
        assert f"]({name})" in pages, f"no page in docs/ shows {name}"
