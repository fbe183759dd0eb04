"""The SVGs of docs/ render offline, and docs/report.svg is drawn from docs/report.json.

A viewer offline, or one that blocks web fonts, must show the pictures as they
were drawn: no SVG may fetch a font, a stylesheet or an image.  The report's
picture is drawn again from its committed JSON (``make docs`` runs
``jobqueue report --from-json``), so its figures are the ones the pages quote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree

import pytest

from jobqueue.lab.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs"
SVGS = sorted(DOCS.rglob("*.svg"))

#: URLs an SVG may name without a viewer fetching them: XML namespaces, the
#: SVG 1.1 DTD of the doctype (browsers never load it), the Dublin Core type in
#: matplotlib's metadata, and rich's credit, a comment.
IDENTIFIERS = {
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd",
    "http://purl.org/dc/elements/1.1/",
    "http://purl.org/dc/dcmitype/StillImage",
    "http://creativecommons.org/ns#",
    "https://www.textualize.io",
}
URL = re.compile(r"https?://[^\s\"'<>()]+")
#: A CSS url() that points outside the file; url(#id) names an element of it.
EXTERNAL_CSS_URL = re.compile(r"url\(\s*['\"]?(?!#)")


def test_there_are_svgs_to_check() -> None:
    assert DOCS / "report.svg" in SVGS
    assert len(SVGS) > 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", SVGS, ids=[p.name for p in SVGS])
def test_no_svg_in_docs_fetches_a_font_or_anything_else(path: Path) -> None:
    svg = path.read_text()
    assert "@font-face" not in svg, f"{path.name} asks for a web font"
    assert "@import" not in svg, f"{path.name} imports a stylesheet"
    assert not EXTERNAL_CSS_URL.search(svg), f"{path.name} has a url() outside itself"
    for element in ElementTree.parse(path).getroot().iter():  # well-formed, or this raises
        for name, value in element.attrib.items():
            if name.rsplit("}", 1)[-1] in {"href", "src"}:
                assert value.startswith("#"), f"{path.name}: <{element.tag} {name}={value!r}>"
    unknown = set(URL.findall(svg)) - IDENTIFIERS
    assert not unknown, f"{path.name} names URLs a viewer might fetch: {sorted(unknown)}"


def _lines(path: Path) -> list[tuple[str, str, str]]:
    """The text of a rich SVG, placed: (x, y, text) of every <text>, in order."""
    root = ElementTree.parse(path).getroot()
    return [
        (t.get("x", ""), t.get("y", ""), t.text or "")
        for t in root.iter("{http://www.w3.org/2000/svg}text")
    ]


@pytest.mark.timeout(60)
def test_report_svg_is_what_report_json_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drawn = tmp_path / "report.svg"
    assert main(["report", "--from-json", str(DOCS / "report.json"), "--svg", str(drawn)]) == 0
    assert "33 of 33 cells agree" in capsys.readouterr().out
    # The text and where it stands, not the bytes: a newer rich may word its
    # CSS differently without changing what the picture says.
    assert _lines(drawn) == _lines(DOCS / "report.svg"), (
        "docs/report.svg is not what docs/report.json draws: run make docs"
    )


@pytest.mark.timeout(60)
def test_a_report_drawn_again_from_its_json_is_the_same_picture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    measured_json, measured_svg = tmp_path / "r.json", tmp_path / "measured.svg"
    argv = ["report", "--quick", "--stage", "naive", "--stage", "final"]
    argv += ["--scenario", "priorities", "--scenario", "retry"]
    assert main([*argv, "--json", str(measured_json), "--svg", str(measured_svg)]) == 0
    measured_out = capsys.readouterr().out

    redrawn_svg = tmp_path / "redrawn.svg"
    assert main(["report", "--from-json", str(measured_json), "--svg", str(redrawn_svg)]) == 0
    assert capsys.readouterr().out == measured_out
    assert redrawn_svg.read_text() == measured_svg.read_text()


@pytest.mark.timeout(60)
def test_from_json_takes_no_measuring_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", "--from-json", str(DOCS / "report.json"), "--quick", "--stage", "naive"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--from-json measures nothing: it takes no --quick, --stage" in err


@pytest.mark.timeout(60)
def test_from_json_names_a_missing_or_foreign_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    assert main(["report", "--from-json", str(missing)]) == 1
    assert f"no such file: {missing}" in capsys.readouterr().err

    foreign = tmp_path / "bench.json"
    foreign.write_text(json.dumps({"rows": []}))
    assert main(["report", "--from-json", str(foreign)]) == 1
    assert f"{foreign} is not a report saved with --json" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_from_json_refuses_figures_the_gap_table_no_longer_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads((DOCS / "report.json").read_text())
    cell = next(
        c for c in document["scenarios"] if (c["scenario"], c["stage"]) == ("retry", "naive")
    )
    cell["expected"] = True  # as if gaps.py had said naive retries, when it was measured
    cell["agrees"] = False
    stale, svg = tmp_path / "stale.json", tmp_path / "stale.svg"
    stale.write_text(json.dumps(document))
    assert main(["report", "--from-json", str(stale), "--svg", str(svg)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "no longer draws what it records (cell retry on naive differs)" in err
    assert not svg.exists(), "a table nobody measured was drawn"
