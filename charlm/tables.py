"""Plain-text tables for the terminal (`charlm runs`, `info`, `eval`, `corpus list`), and the table of runs.

Columns are padded to the widest cell by display width: a Chinese character takes two terminal cells,
so padding by `len` would push every column after a Chinese run name out of line. The last column is
never padded, so a long description does not leave trailing spaces. A cell is shown on one line
(`errors.one_line`): a run folder or corpus file named with a line break must not split its row.

The table of runs is built here, from what runs.py reads of each run (its run.json and metrics.jsonl):
lining up text is this module's job.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from . import catalog, runs
from .checkpoint_header import glance
from .config import MAXIMA
from .errors import CharLMError, counted, listed_in_brief, one_line
from .fields import holds, said
from .files import is_number
from .runs import read_metrics

# Beyond these a run's record is damaged (edited by hand, a disk error): `?`, not a 300-digit number
# that widens the whole table. A bpc is at most a few dozen bits (a byte-spelt character's), never negative.
MAX_STEPS, MAX_BPC, MAX_PARAMETERS = 10**12, 1000.0, 10**13
MAX_NAME = 255  # a corpus or run name is a file or folder name, at most 255 characters on any file system


def width(text: str) -> int:
    """Terminal cells `text` takes: two for wide and full-width characters, none for combining marks."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(rows: Sequence[Sequence[str]], right: tuple[int, ...] = ()) -> str:
    """`rows` (a header, if any, first) as aligned lines, two spaces between columns; the columns
    numbered in `right` are aligned right (numbers)."""
    rows = [[one_line(cell) for cell in row] for row in rows]
    widths = [max(width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - width(cell))
            last = i == len(row) - 1
            cells.append(pad + cell if i in right else cell if last else cell + pad)
        lines.append("  ".join(cells))
    return "\n".join(lines)


def runs_table(root: str | Path = runs.CHECKPOINT_ROOT) -> str:
    """What `charlm runs` prints: a line per run under `root`, in order of name."""
    if not str(root):  # `--root "$DIR"` with DIR unset: Path("") is ".", whose runs are not those meant
        raise CharLMError("--root is empty: give the folder that holds the runs (by default checkpoints)")
    if Path(root).is_file():  # globbing a file finds nothing: "no runs under FILE/" hid the mistake
        raise CharLMError(f"{said('root', root)} is a file, not a folder: give the folder that holds the runs")
    if runs.holds_checkpoint(root):  # files only: a folder of runs, one of them named best.pt, is no run
        raise CharLMError(
            f"{said('root', root)} is a run, not a folder of runs: give the folder above it, "
            f"{said('root', Path(root).parent)}"
        )
    runs.check_listable(Path(root), said("root", root))
    folders = runs.run_folders(root)
    if not folders:  # none that can be read, where some folders cannot: those may hold them
        what_to_do = unread_note(root) or "train one with `charlm train`"
        raise CharLMError(f"no runs under {runs.where(root)}; {what_to_do}")
    rows = [["run", "corpus", "model", "steps", "best bpc", "last update"]]
    rows += [run_row(folder) for folder in folders]
    damage = [damage_cell(folder) for folder in folders]
    if set(damage) != {"ok"}:  # a column of its own only then: a sound run's row stays as it was
        rows = [[*row, cell] for row, cell in zip(rows, ["checkpoints", *damage], strict=True)]
    return table(rows, right=(3, 4))


def unread_note(root: str | Path = runs.CHECKPOINT_ROOT, shown: int = 3) -> str:
    """What `charlm runs` says after its table of the folders under `root` it cannot look into, which may
    hold runs (`runs.unreadable_folders`): up to `shown` of them, and how many more; "" where none. Their
    reason is said once where they share it, else after each (chmod 000 beside a security module's EPERM)."""
    unread = runs.unreadable_folders(Path(root))
    if not unread:
        return ""
    reasons = {str(error.strerror) for _, error in unread}
    shared = f" ({reasons.pop()})" if len(reasons) == 1 else ""
    names = listed_in_brief([f"{folder}{'' if shared else f' ({error.strerror})'}" for folder, error in unread], shown)
    one = len(unread) == 1
    return one_line(
        f"left out {counted(len(unread), 'folder')} that cannot be read{shared}: "
        f"{names}; make {'it' if one else 'them'} readable (chmod u+rx) to list {'it' if one else 'them'}"
    )


def damage_cell(folder: Path) -> str:
    """What is wrong with a run's checkpoints (`latest.pt truncated`, `both damaged`), or `ok` where
    nothing is, from a glance at each file's header, size and archive directory (a full read would slow
    the table with every run it lists), at the file a command loads (`runs.newest_of`: a newer pending one too)."""
    loaded = [runs.newest_of(folder / name) for name in (runs.BEST, runs.LATEST)]
    found = {path.name: glance(path) for path in loaded if path.exists()}
    damaged = {name: what for name, what in found.items() if what}
    if len(damaged) == 2 and len(set(damaged.values())) == 1:
        return f"both {next(iter(damaged.values()))}"
    return ", ".join(f"{name} {what}" for name, what in damaged.items()) or "ok"


def run_row(folder: Path) -> list[str]:
    """One run's line of `charlm runs`. run.json and metrics.jsonl may be damaged or edited by hand:
    what cannot be read shows as `?`, and the other runs are listed all the same."""
    info = runs.read_run_info(folder) or {}
    config = info.get("config") if isinstance(info.get("config"), dict) else {}

    def shown(value: object, kind: type, default: str = "?") -> str:
        return str(value) if holds(value, kind) and len(str(value)) <= MAX_NAME else default

    layers, hidden = (
        shown(config.get(name), int) if within(config.get(name), 1, MAXIMA[name]) else "?"
        for name in ("layers", "hidden")
    )
    model = f"{layers}x{hidden} {shown(config.get('cell'), str, '')}".strip()
    if within(info.get("parameters"), 0, MAX_PARAMETERS):
        model += f" {short_count(info['parameters'])}"
    metrics = read_metrics(folder)
    bpcs = [r["val_bpc"] for r in metrics if r.get("val_bpc") is not None]
    sane = [bpc for bpc in bpcs if within(bpc, 0, MAX_BPC)]
    best = f"{min(sane):.4f}" if sane else "?" if bpcs else "-"
    step = metrics[-1]["step"] if metrics else 0
    written = runs.last_written(folder)  # None: removed since it was listed
    updated = "?" if written is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(written))
    corpus = shown(info.get("corpus"), str)
    if bases := runs.lineage(folder, info):  # a fine-tuning run
        corpus += f" (from {bases})"
    return [
        folder.name,
        corpus,
        model,
        f"{int(step):,}" if within(step, 0, MAX_STEPS) else "?",
        best,
        updated,
    ]


def within(value: object, low: float, high: float) -> bool:
    """Whether `value` is a number (not NaN) from `low` to `high`: one a sound run could have written."""
    return is_number(value) and low <= value <= high


def short_count(count: float) -> str:
    """1.3M, 22k: a parameter count in a table column (in millions alone, a small model's was 0.0M)."""
    if count >= 1e6:
        return f"{count / 1e6:.1f}M"
    return f"{count / 1e3:.0f}k" if count >= 1e3 else f"{count:.0f}"


def catalog_table() -> str:
    """What `charlm corpus list` prints: a line per catalog corpus, and whether it is here."""
    rows = [["name", "download", "here", "license", "description"]]
    for item in catalog.CATALOG.values():
        here = "yes" if (catalog.DOWNLOADS / item.text_name).is_file() else "no"
        rows.append([item.name, f"{item.size / 1e6:.1f}MB", here, item.license, item.description])
    return table(rows, right=(1,))
