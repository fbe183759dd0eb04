"""The scenarios of ``jobqueue report``, checked against the gap table on every stage.

Each scenario measures one problem on one stage and says whether the stage
solved it.  That verdict must equal ``jobqueue/gaps.py``'s, both ways: a stage
that stops solving a problem fails here, and so does a stage that starts
solving one its gap table says it lacks (then the table and the docs are wrong).
"""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from jobqueue import gaps
from jobqueue.lab.scenarios import QUICK, SCENARIOS, Scenario, run, scenario
from jobqueue.lab.scenarios.base import Observed, Sizes, ordinal


def stage_name(stage: ModuleType) -> str:
    return stage.__name__.rsplit(".", 1)[-1]


@pytest.mark.parametrize("key", list(SCENARIOS))
def test_scenario_agrees_with_the_gap_table(stage: ModuleType, key: str) -> None:
    outcome = run(stage_name(stage), key, QUICK)
    assert outcome.error is None, outcome.error
    assert outcome.solved == outcome.expected, (
        f"{outcome.stage} on {key!r}: measured {outcome.figure!r}, "
        f"but jobqueue/gaps.py says {outcome.verdict}"
    )
    json.dumps(outcome.as_dict())  # the report writes it as JSON


def test_every_gap_is_measured_by_a_scenario() -> None:
    assert {s.gap_key for s in SCENARIOS.values()} == {g.key for g in gaps.GAPS}


def test_an_unknown_scenario_or_stage_is_named() -> None:
    with pytest.raises(KeyError, match=r"'nope'.*known: backpressure"):
        scenario("nope")
    with pytest.raises(ValueError, match="stage must be one of naive"):
        run("turbo", "retry", QUICK)


def test_a_scenario_that_breaks_becomes_an_error_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(stage: ModuleType, sizes: Sizes) -> Observed:
        raise RuntimeError("the stand-in broke")

    monkeypatch.setitem(SCENARIOS, "retry", Scenario("retry", "retry", "retry", broken))
    outcome = run("final", "retry", QUICK)
    assert outcome.error == "RuntimeError: the stand-in broke"
    assert not outcome.agrees
    assert outcome.figure.startswith("error:")


def test_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 101, 111, 301)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "101st", "111th", "301st"
    ]  # fmt: skip
