"""The gap table itself: every problem it names is shown by a test, per stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobqueue.gaps import GAPS, STAGES, Gap, Verdict, gap, no, yes
from jobqueue.lab.cli import main

TESTS = Path(__file__).parent


def test_every_gap_is_shown_by_at_least_one_test() -> None:
    marked = set()
    for path in TESTS.glob("test_*.py"):
        marked.update(re.findall(r'gap\("([a-z_]+)"\)', path.read_text()))
    assert {g.key for g in GAPS} <= marked


def test_every_row_has_a_verdict_for_every_stage_and_every_no_says_why() -> None:
    for g in GAPS:
        assert set(g.verdicts) == set(STAGES)
        for verdict in g.verdicts.values():
            assert isinstance(verdict, Verdict)
            assert verdict.solved or verdict.why, g.key


def test_a_verdict_reads_as_words() -> None:
    assert str(yes()) == "yes"
    assert str(yes("tokens")) == "yes (tokens)"
    assert str(no("FIFO")) == "no (FIFO)"
    assert gap("no_starvation").verdicts["improved"] == Verdict(False, "strict priority")
    assert not gap("no_starvation").solved_by("improved")
    assert gap("no_starvation").solved_by("final")


def test_bad_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a why"):
        Verdict(False, "")
    with pytest.raises(ValueError, match=r"'x': verdicts must name exactly the stages"):
        Gap("x", "a problem", {"naive": yes(), "final": yes()})
    table = gap("retry").verdicts
    with pytest.raises(TypeError):
        table["naive"] = yes()  # type: ignore[index]


def test_an_unknown_gap_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="backpressure"):
        gap("nonsense")


def test_the_gaps_command_prints_each_verdict_in_words(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["gaps"]) == 0
    out = capsys.readouterr().out
    assert "✘ no (strict priority)" in out  # a mark and words, not colour alone
    assert "✔ yes (tokens)" in out


def test_the_gaps_command_cuts_nothing_at_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["gaps"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
