"""``jobqueue gaps``: the deliberate-gaps table, rendered with rich.

:func:`render` draws what ``jobqueue/gaps.py`` expects of each stage.
:func:`render_observed` draws the same problems-by-stages grid filled with
what the scenarios measured, the expected verdict beside each figure, and a
loud mark wherever the two disagree: that is the heart of ``jobqueue report``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobqueue.gaps import COLUMNS, GAPS, POSTGRES, Verdict
from jobqueue.lab.scenarios import SCENARIOS, Outcome

__all__ = ["render", "render_observed"]

SOLVED, UNSOLVED = "✔", "✘"
MISMATCH = " MISMATCH "


def render() -> Table:
    """The problems-by-stages table, as the test matrix expects it."""
    table = Table(title="What each stage gets right (jobqueue/gaps.py)", show_lines=True)
    table.add_column("problem", style="bold")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for gap in GAPS:
        table.add_row(gap.problem, *(_verdict(gap.verdict(c)) for c in COLUMNS))
    return table


def _verdict(verdict: Verdict) -> Text:
    """A verdict in words with its mark: the colour only repeats what they say."""
    mark, style = (SOLVED, "green") if verdict.solved else (UNSOLVED, "red")
    return Text(f"{mark} {verdict}", style=style)


def render_observed(outcomes: Iterable[Outcome]) -> Table:
    """Problems by stages: what each stage did, measured, against what the gap table says."""
    by_cell = {(o.scenario, o.stage): o for o in outcomes}
    stages = [s for s in COLUMNS if any(stage == s for _, stage in by_cell)]
    table = Table(
        title="What each stage gets wrong and right, measured",
        caption=(
            f"{SOLVED} solved   {UNSOLVED} not solved   "
            "expected: what jobqueue/gaps.py says\n"
            f"[bold white on red]{MISMATCH}[/] the measure and the gap table disagree"
        ),
        show_lines=True,
        expand=False,
    )
    table.add_column("problem", style="bold", max_width=16)
    for stage in stages:
        # fold: a long word (NotImplementedError) breaks across lines instead of being cut.
        table.add_column(stage, ratio=1, overflow="fold")
    for key, scenario in SCENARIOS.items():
        row = [by_cell.get((key, stage)) for stage in stages]
        if all(o is None for o in row):
            continue
        cells = [
            # final on PostgreSQL is measured in the rows it changes; the test
            # matrix checks that it keeps final's verdict in the others.
            Text("") if o is None and stage == POSTGRES else _cell(o)
            for o, stage in zip(row, stages, strict=True)
        ]
        table.add_row(scenario.title, *cells)
    return table


def _cell(outcome: Outcome | None) -> Text:
    if outcome is None:
        return Text("not run", style="dim")
    mark, style = (SOLVED, "green") if outcome.solved else (UNSOLVED, "red")
    if outcome.error is not None:
        mark, style = "!", "bold red"
    text = Text()
    text.append(f"{mark} ", style=style)
    text.append(outcome.figure, style=None if outcome.error is None else "red")
    text.append("\n")
    if not outcome.agrees:
        text.append(MISMATCH, style="bold white on red")
        text.append(" expected: ", style="bold red")
        text.append(str(outcome.verdict), style="bold red")
    else:
        text.append(f"expected: {outcome.verdict}", style="grey50")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    Console().print(render())
    return 0
