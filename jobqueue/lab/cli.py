"""The ``jobqueue`` command line: ``jobqueue COMMAND ...`` or ``python -m jobqueue COMMAND ...``.

Each subcommand lives in its own module, which exposes
``add_arguments(parser)`` and ``run(args) -> int``; this module only
dispatches, importing a subcommand's module when it is used.  The
subcommands print their results to stdout and their errors to stderr, with the
conventions of ``jobqueue.lab.terminal``; the library itself never prints, it
logs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

import jobqueue

#: subcommand -> (module, one-line help)
COMMANDS = {
    "report": ("jobqueue.lab.report", "run the scenarios on every stage and compare them"),
    "bench": ("jobqueue.lab.bench", "measure throughput, latency and memory side by side"),
    "inspect": ("jobqueue.lab.inspect_log", "show the live jobs of a log, by status and priority"),
    "check": ("jobqueue.lab.inspect_log", "validate a log and point at any damage"),
    "dead": ("jobqueue.lab.dead_letters", "list the dead jobs of a log, newest first"),
    "requeue": ("jobqueue.lab.dead_letters", "queue dead jobs of a closed log again"),
    "gaps": ("jobqueue.lab.gaps_table", "print which stage fixes which problem"),
    "worker": ("jobqueue.lab.worker", "run the jobs of a PostgreSQL queue, in P processes"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobqueue", description="Run, measure and inspect the three stages of jobqueue."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {jobqueue.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        module = importlib.import_module(module_name)
        add = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
        add(sub)
        sub.set_defaults(module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    module = args.module
    run = getattr(module, f"run_{args.command}", None) or module.run
    try:
        return int(run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
