"""The docs quote the code as it is, not as it was.

A ```python block in docs/ whose first line is indented is a quote: lines cut
from a method of the package (or of examples/).  A line ``...`` marks a cut;
every run of lines between cuts must appear, in order and character for
character, in one source file.  A block that starts at column 0 is an example
of use, and is not checked here (tests/test_examples.py runs the examples).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
CUT = {"...", "# ..."}


def _sources() -> dict[str, str]:
    files = [*ROOT.glob("jobqueue/**/*.py"), *ROOT.glob("examples/*.py")]
    return {str(f.relative_to(ROOT)): "\n" + f.read_text() for f in files}  # "\n": whole lines


def _quotes() -> list[tuple[str, list[str]]]:
    found = []
    for doc in sorted(ROOT.glob("docs/*.md")):
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            lines = match.group(1).rstrip("\n").split("\n")
            if not lines[0].startswith(" "):
                continue
            where = f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            run: list[str] = []
            for line in [*lines, "..."]:
                if line.strip() in CUT:
                    if run:
                        found.append((where, run))
                    run = []
                else:
                    run.append(line)
    return found


QUOTES = _quotes()
_SOURCES = _sources()


def test_the_docs_have_quotes_to_check() -> None:
    assert len(QUOTES) >= 20  # the check below would pass vacuously if the pattern broke


@pytest.mark.parametrize(("where", "run"), QUOTES, ids=[w for w, _ in QUOTES])
def test_each_quote_is_in_the_source_as_it_is(where: str, run: list[str]) -> None:
    text = "\n".join(run) + "\n"
    holders = [path for path, source in _SOURCES.items() if "\n" + text in source]
    assert holders, f"{where} quotes code that no file under jobqueue/ or examples/ has:\n{text}"
