"""The fairness rule of jobqueue.final, stated as properties of its picker.

The matrix tests (test_priority.py) show the behaviour through the queue;
these check the bound itself against arbitrary arrival patterns.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobqueue.final.fairness import FairPicker
from jobqueue.vocabulary import Priority

# A step either adds a job at a priority, or takes one (None).
steps = st.lists(st.one_of(st.sampled_from(list(Priority)), st.none()), max_size=400)


def simulate(tokens: int, script: list[Priority | None]) -> tuple[list[Priority], list[int]]:
    """Run ``script``; return the priorities taken, and, per priority, the longest
    run of takes of other priorities while it had a job waiting."""
    picker = FairPicker(tokens)
    waiting = [0, 0, 0]
    taken: list[Priority] = []
    passed = [0, 0, 0]
    worst = [0, 0, 0]
    for step in script:
        if step is not None:
            waiting[step] += 1
            continue
        chosen = picker.choose(waiting)
        if chosen is None:
            assert waiting == [0, 0, 0]
            continue
        assert waiting[chosen] > 0
        for p in Priority:
            if p == chosen:
                passed[p] = 0
            elif waiting[p]:
                passed[p] += 1
                worst[p] = max(worst[p], passed[p])
        waiting[chosen] -= 1
        taken.append(chosen)
    return taken, worst


@given(tokens=st.integers(min_value=1, max_value=12), script=steps)
def test_no_waiting_priority_is_passed_over_more_than_tokens_plus_one(
    tokens: int, script: list[Priority | None]
) -> None:
    _, worst = simulate(tokens, script)
    assert worst[Priority.MEDIUM] <= tokens + 1
    assert worst[Priority.LOW] <= tokens + 1


@given(tokens=st.integers(min_value=1, max_value=12), script=steps)
def test_with_two_priorities_the_bound_is_exactly_tokens(
    tokens: int, script: list[Priority | None]
) -> None:
    only_high_and_low: list[Priority | None] = [s for s in script if s is not Priority.MEDIUM]
    _, worst = simulate(tokens, only_high_and_low)
    assert worst[Priority.LOW] <= tokens


@given(tokens=st.integers(min_value=1, max_value=12), script=steps)
def test_the_picker_takes_a_job_whenever_one_waits(
    tokens: int, script: list[Priority | None]
) -> None:
    taken, _ = simulate(tokens, script)
    backlog, expected = 0, 0
    for step in script:
        if step is not None:
            backlog += 1
        elif backlog:
            backlog -= 1
            expected += 1
    assert len(taken) == expected


def test_default_is_one_lower_job_per_ten_high() -> None:
    picker = FairPicker(10)
    waiting = [1000, 0, 1000]
    order = []
    for _ in range(33):
        chosen = picker.choose(waiting)
        assert chosen is not None
        waiting[chosen] -= 1
        order.append(chosen)
    assert order == ([Priority.HIGH] * 10 + [Priority.LOW]) * 3


def test_without_competition_priority_order_is_strict() -> None:
    picker = FairPicker(3)
    assert picker.choose([1, 1, 1]) is Priority.HIGH
    assert picker.choose([0, 1, 1]) is Priority.MEDIUM
    assert picker.choose([0, 0, 1]) is Priority.LOW
    assert picker.choose([0, 0, 0]) is None


def test_tokens_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fairness_tokens"):
        FairPicker(0)
