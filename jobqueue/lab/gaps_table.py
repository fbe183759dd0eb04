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

from jobqueue.gaps import COLUMNS, GAPS, POSTGRES
from jobqueue.lab.scenarios import SCENARIOS, Outcome

__all__ = ["render", "render_observed"]

SOLVED, UNSOLVED = "✔", "✘"
MISMATCH = " MISMATCH "


def render() -> Table:
    """The problems-by-stages table, as the test matrix expects it."""
    table = Table(title="What each stage gets right (jobqueue/gaps.py)", show_lines=False)
    table.add_column("problem", style="bold")
    for stage in COLUMNS:
        table.add_column(stage)
    for gap in GAPS:
        cells = [
            f"[green]{gap.verdict(s)}[/]" if gap.solved_by(s) else f"[red]{gap.verdict(s)}[/]"
            for s in COLUMNS
        ]
        table.add_row(gap.problem, *cells)
    return table


def render_observed(outcomes: Iterable[Outcome]) -> Table:
    """Problems by stages: what each stage did, measured, against what the gap table says."""
    by_cell = {(o.scenario, o.stage): o for o in outcomes}
    stages = [s for s in COLUMNS if any(stage == s for _, stage in by_cell)]
    table = Table(
        title="What each stage gets wrong and right, measured",
        caption=(
            f"{SOLVED} solved   {UNSOLVED} not solved   "
            "grey: the verdict jobqueue/gaps.py expects   "
            f"[bold white on red]{MISMATCH}[/]: measured and expected disagree"
        ),
        show_lines=True,
        expand=False,
    )
    table.add_column("problem", style="bold", max_width=16)
    for stage in stages:
        table.add_column(stage, ratio=1)
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
        text.append(outcome.verdict, style="bold red")
    else:
        text.append(f"expected: {outcome.verdict}", style="grey50")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    Console().print(render())
    return 0
