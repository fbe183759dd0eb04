"""``jobqueue report``: a narrowed, quick run writes well-formed JSON and SVG."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from rich.console import Console

from jobqueue.cli import main
from jobqueue.gaps_table import render_observed
from jobqueue.scenarios import Outcome


def test_a_narrowed_run_writes_json_and_svg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_svg = tmp_path / "report.json", tmp_path / "report.svg"
    argv = ["report", "--quick", "--stage", "naive", "--stage", "improved"]
    argv += ["--scenario", "priorities", "--scenario", "no_starvation"]
    argv += ["--scenario", "performance", "--json", str(out_json), "--svg", str(out_svg)]
    assert main(argv) == 0

    document = json.loads(out_json.read_text())
    assert document["agree"] is True
    assert document["command"].startswith("jobqueue report --quick --stage naive")
    assert document["machine"]["cpus"] >= 1
    cells = {(s["scenario"], s["stage"]): s for s in document["scenarios"]}
    assert set(cells) == {
        (key, stage) for key in ("priorities", "no_starvation") for stage in ("naive", "improved")
    }
    assert cells["no_starvation", "improved"]["figure"].endswith("after every HIGH job")
    assert cells["no_starvation", "improved"]["expected"] is False
    targets = [row["target"] for row in document["performance"]["rows"]]
    assert targets == ["naive", "improved", "threadpool"]  # the chosen stages and the baseline
    assert all(row["jobs_per_second"] > 0 for row in document["performance"]["rows"])

    root = ElementTree.parse(out_svg).getroot()  # well-formed XML, or this raises
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "starvation" in out_svg.read_text()
    printed = capsys.readouterr().out
    assert "after every HIGH job" in printed
    assert "All 4 cells agree" in printed


def test_the_performance_panel_can_be_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "r.json"
    assert main(["report", "--quick", "--stage", "final", "--scenario", "status",
                 "--json", str(out_json)]) == 0  # fmt: skip
    document = json.loads(out_json.read_text())
    assert document["performance"] is None
    assert [(s["scenario"], s["solved"]) for s in document["scenarios"]] == [("status", True)]
    assert "Performance" not in capsys.readouterr().out


def test_an_unknown_scenario_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["report", "--scenario", "nope"])
    assert info.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_a_disagreeing_cell_is_marked_loudly() -> None:
    wrong = Outcome(
        scenario="no_starvation",
        gap_key="no_starvation",
        stage="improved",
        solved=True,  # the gap table says improved starves LOW
        figure="LOW job ran 2nd of 301",
        data={},
        seconds=0.0,
    )
    console = Console(record=True, width=120, file=None, force_terminal=False)
    with console.capture() as captured:
        console.print(render_observed([wrong]))
    text = captured.get()
    assert "MISMATCH" in text
    assert "expected: no (strict priority)" in text
