"""What every ``jobqueue`` subcommand shares at the terminal: option types, errors, progress.

The conventions, in one place so the subcommands keep them alike:

- Options are checked by argparse, before any long work starts: a count that
  must be positive, a file to write whose directory must exist.  A bad one is
  a usage error (exit status 2), like any other argparse error.
- Errors found while running go to stderr as ``jobqueue COMMAND: error: ...``
  (exit status 1), through :func:`fail`; a missing file always reads
  ``no such file: PATH`` (:func:`no_such`).
- Results go to stdout; the progress bar goes to stderr and vanishes when done,
  so ``jobqueue report > out.txt`` keeps only the results.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = [
    "SVG_FORMAT",
    "fail",
    "no_such",
    "non_negative_int",
    "output_file",
    "positive_int",
    "printable",
    "progress_bar",
    "save_svg",
    "seconds_cell",
]


def no_such(path: str | os.PathLike[str], kind: str = "file") -> str:
    """The one wording for a path that is not there: ``no such file: PATH``."""
    return f"no such {kind}: {os.fspath(path)}"


def fail(command: str, message: str) -> int:
    """Print ``jobqueue COMMAND: error: MESSAGE`` to stderr; return the exit status, 1."""
    # soft_wrap: an error stays on one line, whole, for a person or a grep.
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"jobqueue {command}: [red]error:[/] {escape(message)}")
    return 1


def positive_int(text: str) -> int:
    """An argparse type: an int >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an int >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def output_file(text: str) -> Path:
    """An argparse type: a file to write at the end of a run, checked before it starts.

    Its directory must exist and be writable: a run that takes minutes must not
    end in a traceback because of a typo in a path.
    """
    path = Path(text)
    directory = path.parent
    if not directory.is_dir():
        raise argparse.ArgumentTypeError(no_such(directory, "directory"))
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a directory: {text}")
    if not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write: {text}")
    return path


def progress_bar() -> Progress:
    """The progress bar of long runs: on stderr, and gone when the run ends."""
    return Progress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


#: rich's SVG template (``Console.save_svg``) without its ``@font-face`` rules,
#: which fetch Fira Code from a CDN: a viewer offline, or one that blocks web
#: fonts, fell back to a proportional font and broke every table's columns.
#: Here the text asks only for monospace fonts a system has.
SVG_FORMAT = """\
<svg class="rich-terminal" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"
     xml:space="preserve">
    <style>
    .{unique_id}-matrix {{
        font-family: "DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace;
        font-size: {char_height}px;
        line-height: {line_height}px;
        font-variant-east-asian: full-width;
    }}
    .{unique_id}-title {{
        font-size: 18px;
        font-weight: bold;
        font-family: sans-serif;
    }}
    {styles}
    </style>
    <defs>
    <clipPath id="{unique_id}-clip-terminal">
      <rect x="0" y="0" width="{terminal_width}" height="{terminal_height}" />
    </clipPath>
    {lines}
    </defs>
    {chrome}
    <g transform="translate({terminal_x}, {terminal_y})"
       clip-path="url(#{unique_id}-clip-terminal)">
    {backgrounds}
    <g class="{unique_id}-matrix">
    {matrix}
    </g>
    </g>
</svg>
"""


def save_svg(renderables: list[RenderableType], path: Path, *, width: int, title: str) -> None:
    """Draw ``renderables``, one below the other, at ``width`` columns into an SVG.

    The SVG needs no web font: see :data:`SVG_FORMAT`.
    """
    recorder = Console(record=True, width=width, file=io.StringIO())
    recorder.print(Group(*renderables))
    recorder.save_svg(os.fspath(path), title=title, code_format=SVG_FORMAT)


def seconds_cell(value: float, spec: str) -> str:
    """A duration for a table cell; an absurd one (a clock far off) stays short."""
    if abs(value) >= 1e12:
        return f"{value:.3g}s"
    return f"{value:{spec}}s"


def printable(text: str) -> str:
    """``text`` with newlines, control characters and lone surrogates escaped."""
    return "".join(
        c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else repr(c)[1:-1] for c in text
    )
