"""``jobqueue gaps``: the deliberate-gaps table, rendered with rich."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from jobqueue.gaps import GAPS, STAGES


def render() -> Table:
    """The problems-by-stages table, as the test matrix expects it."""
    table = Table(title="What each stage gets right (jobqueue/gaps.py)", show_lines=False)
    table.add_column("problem", style="bold")
    for stage in STAGES:
        table.add_column(stage)
    for gap in GAPS:
        cells = [
            f"[green]{gap.verdicts[s]}[/]" if gap.solved_by(s) else f"[red]{gap.verdicts[s]}[/]"
            for s in STAGES
        ]
        table.add_row(gap.problem, *cells)
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    Console().print(render())
    return 0
