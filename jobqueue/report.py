"""``jobqueue report``: for now, the expected gaps table (the scenarios come next)."""

from __future__ import annotations

import argparse

from rich.console import Console

from jobqueue.gaps_table import render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    del args
    Console().print(render())
    return 0
