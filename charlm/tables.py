"""Plain-text tables for the terminal (`charlm runs`, `charlm corpus list`).

Columns are padded to the widest cell by display width: a Chinese character takes two terminal cells,
so padding by `len` would push every column after a Chinese run name out of line. The last column is
never padded, so a long description does not leave trailing spaces.
"""

from __future__ import annotations

import unicodedata


def width(text: str) -> int:
    """Terminal cells `text` takes: two for wide and full-width characters, none for combining marks."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(rows: list[list[str]], right: tuple[int, ...] = ()) -> str:
    """`rows` (the header first) as aligned lines, two spaces between columns; the columns numbered
    in `right` are aligned right (numbers)."""
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
