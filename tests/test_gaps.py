"""The gap table itself: every problem it names is shown by a test, per stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobqueue.gaps import GAPS, STAGES, gap

TESTS = Path(__file__).parent


def test_every_gap_is_shown_by_at_least_one_test() -> None:
    marked = set()
    for path in TESTS.glob("test_*.py"):
        marked.update(re.findall(r'gap\("([a-z_]+)"\)', path.read_text()))
    assert {g.key for g in GAPS} <= marked


def test_every_verdict_starts_with_yes_or_no() -> None:
    for g in GAPS:
        assert set(g.verdicts) == set(STAGES)
        for verdict in g.verdicts.values():
            assert verdict.split(" ")[0] in {"yes", "no"}, f"{g.key}: {verdict!r}"


def test_an_unknown_gap_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="backpressure"):
        gap("nonsense")
