"""``jobqueue report``: a narrowed, quick run writes well-formed JSON and SVG."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from rich.console import Console

from jobqueue.lab.cli import main
from jobqueue.lab.gaps_table import render_observed
from jobqueue.lab.scenarios import Outcome


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
    svg = out_svg.read_text()
    assert "starvation" in svg
    assert "@font-face" not in svg, "the SVG must render without fetching a web font"
    assert "https://" not in svg
    printed = capsys.readouterr().out
    assert "after every HIGH job" in printed
    assert "✔ 4 of 4 cells agree" in printed  # the total with its denominator


def test_the_report_fits_80_columns_and_explains_its_figures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    argv = ["report", "--quick", "--stage", "naive", "--stage", "final"]
    assert main([*argv, "--scenario", "metrics", "--scenario", "performance"]) == 0
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 80
    assert "…" not in printed, "a cell was cut instead of wrapped"
    assert "NotImplementedEr" in printed  # the long word is folded, not dropped
    words = " ".join(printed.replace("│", " ").split())
    assert "✘ metrics()" in words  # a mark, not colour alone
    assert "naive is often the fastest: it has no bound to check" in words
    assert "final-durable-interval: final with its log on disk" in words
    assert "B/job: bytes the queue itself holds per waiting job" in words
    assert "the median of 1 run" in words


def test_output_files_are_checked_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing_dir" / "r.json"
    with pytest.raises(SystemExit) as info:
        main(["report", "--json", str(missing)])  # refused at once, not after the run
    assert info.value.code == 2
    assert f"no such directory: {missing.parent}" in capsys.readouterr().err


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
    assert "✔ LOW job ran 2nd of 301" in text


DOCS = Path(__file__).resolve().parent.parent / "docs"

#: (page, scenario, stage): the figures each page quotes from docs/report.json.
QUOTED = [
    ("naive.md", "backpressure", "naive"),
    ("naive.md", "backpressure", "improved"),
    ("naive.md", "priorities", "naive"),
    ("naive.md", "no_starvation", "naive"),
    ("naive.md", "retry", "naive"),
    ("naive.md", "graceful_shutdown", "naive"),
    ("naive.md", "restart", "naive"),
    ("naive.md", "crash", "naive"),
    ("improved.md", "backpressure", "improved"),
    ("improved.md", "priorities", "improved"),
    ("improved.md", "retry", "improved"),
    ("improved.md", "graceful_shutdown", "improved"),
    ("improved.md", "metrics", "improved"),
    ("improved.md", "no_starvation", "improved"),
    ("improved.md", "metrics_per_priority", "improved"),
    ("improved.md", "restart", "improved"),
    ("improved.md", "retry_state", "improved"),
    ("improved.md", "crash", "improved"),
    ("final.md", "no_starvation", "final"),
    ("final.md", "priorities", "final"),
    ("final.md", "status", "final"),
    ("final.md", "metrics_per_priority", "final"),
    ("final.md", "restart", "final"),
    ("final.md", "retry_state", "final"),
    ("final.md", "crash", "final"),
    ("questions.md", "no_starvation", "final"),
    ("questions.md", "crash", "naive"),
    ("questions.md", "crash", "final"),
    ("questions.md", "restart", "final"),
    ("questions.md", "retry_state", "final"),
    ("questions.md", "retry", "final"),
    ("pitfalls.md", "graceful_shutdown", "naive"),
    ("pitfalls.md", "graceful_shutdown", "final"),
    ("pitfalls.md", "restart", "naive"),
    ("pitfalls.md", "restart", "final"),
]


def test_the_docs_quote_the_committed_report() -> None:
    report = json.loads((DOCS / "report.json").read_text())
    assert report["agree"] is True, "docs/report.json has cells that disagree with gaps.py"
    assert report["command"] == "jobqueue report --json docs/report.json --svg docs/report.svg"
    figures = {(s["scenario"], s["stage"]): s["figure"] for s in report["scenarios"]}
    stale = [
        f"{page}: {figures[scenario, stage]!r} ({scenario} on {stage})"
        for page, scenario, stage in QUOTED
        if figures[scenario, stage] not in (DOCS / page).read_text()
    ]
    questions = (DOCS / "questions.md").read_text()
    for r in report["performance"]["rows"]:
        ratio = "baseline" if r["vs_threadpool"] is None else f"{r['vs_threadpool']:.2f}x"
        row = (
            f"| `{r['target']}` | {r['jobs_per_second']:,.0f} | {ratio} | "
            f"{r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms |"
        )
        if row not in questions:
            stale.append(f"questions.md: {row}")
    assert not stale, "docs quote figures that docs/report.json no longer has:\n" + "\n".join(stale)


def test_the_docs_quote_the_committed_questions() -> None:
    questions = json.loads((DOCS / "questions.json").read_text())
    page = (DOCS / "questions.md").read_text()
    wanted = [
        f"{r['jobs_per_second']:,.0f} ({r['speedup']:.1f}x)" for r in questions["scaling"]["rows"]
    ]
    for r in questions["fairness"]["rows"]:
        wanted.append(f"{r['jobs_per_second']:,.0f} | {r['high_median_position']:,.0f} |")
    for r in questions["herd"]["rows"]:
        wanted.append(
            f"| {r['policy']} | {r['requests']:,} | {r['during_outage']:,} | "
            f"{r['rejected_overload']:,} | {r['peak_per_window']:,} | "
            f"{r['seconds_to_drain']:.2f} s | {r['dead']:,} |"
        )
    stale = [w for w in wanted if w not in page]
    assert not stale, "questions.md does not match docs/questions.json:\n" + "\n".join(stale)
