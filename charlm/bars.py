"""Progress bars, one rule for all: drawn in place on a terminal or in a notebook, now and then into a
pipe or a file.

Into a file or a pipe (a log, CI, nohup) every redraw is kept, and some viewers show each as a line:
tqdm's 10 a second make 6,000 in a 10-minute training run, and as many for a big corpus's preparation
or scoring. There a bar redraws every PIPE_REDRAW_SECONDS, as often as a run's metrics.jsonl gets a row.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a bar is made: `charlm --help` and Tab draw none
    from tqdm.auto import tqdm

REDRAW_SECONDS = 0.1  # tqdm's default: a bar drawn in place, on a terminal or in a notebook
PIPE_REDRAW_SECONDS = 10.0  # a bar kept line by line, in a log
# A bar for work before the main one (eval's reading and encoding) shows only once the work has taken this
# long: a small file's would flash by, and one that cannot be read would leave a bar above its one-line error.
LEAD_IN_SECONDS = 1.0
# A terminal that says it is 0 wide or 0 high (a fresh pseudo-terminal, some CI's) is taken for the usual one
DEFAULT_COLUMNS, DEFAULT_ROWS = 80, 24
# tqdm's own bar with the unit after the count too: `2.61M/2.61M bytes [00:00<00:00, 53.2M bytes/s]`
COUNTED_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def redraw_seconds() -> float:
    """How often a bar on stderr may redraw: often where it is drawn in place (a terminal, or a
    notebook: ipykernel), every PIPE_REDRAW_SECONDS where each redraw is kept."""
    try:
        in_place = sys.stderr.isatty() or "ipykernel" in sys.modules
    except (AttributeError, ValueError):  # stderr replaced by an object without isatty, or closed
        in_place = False
    return REDRAW_SECONDS if in_place else PIPE_REDRAW_SECONDS


def progress_bar(iterable: Iterable | None = None, **options) -> tqdm:
    """A tqdm bar (tqdm's `options`) that redraws as `redraw_seconds` says."""
    from tqdm.auto import tqdm

    return tqdm(iterable, mininterval=redraw_seconds(), **sized(options))


def sized(options: dict) -> dict:
    """tqdm's `options`, sized where the bar's terminal says it has 0 columns or 0 rows: tqdm read that as -1 of
    each and drew no bar at all (its row taken for one below the screen), or one a column wide. There the bar is
    drawn as on an 80 x 24 terminal, at that size (tqdm's reading of the size would say -1 again)."""
    stream = options.get("file") or sys.stderr
    try:
        columns, rows = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):  # no file, closed, or no terminal: tqdm's own sizes
        return options
    if columns and rows:
        return options
    # less one of each, as tqdm reads a terminal's: a line that fills the last column wraps on some
    return {
        **options,
        "dynamic_ncols": False,
        "ncols": (columns or DEFAULT_COLUMNS) - 1,
        "nrows": (rows or DEFAULT_ROWS) - 1,
    }


def bytes_bar(total: int, **options) -> tqdm:
    """A bar over the bytes of files read, saying "bytes" in words by its count and its rate: under it a
    summary counts characters, and a bare `2.61M` would read as 2.61M characters of a Chinese text (879,196,
    3 bytes each). Bytes, not characters, because their total is known before the read, so the bar
    can show how far it is and how long it has left."""
    return progress_bar(total=total, unit=" bytes", unit_scale=True, bar_format=COUNTED_FORMAT, **options)
