"""What one cell of a model does on a text: the figures docs/how-it-works.md gives for its example cells.

    python -m bench.inspect_cell RUN (FILE | --held-out) --cell LAYER CELL [--at CHARS] [--positions 1 10 30]
        [--split FEATURE]

It inspects as `charlm inspect` does (the same first 5,000 characters) and prints, for the cell: the
correlation of its tanh(c) with each of the page's features, and its mean where a 0/1 feature is 1 and
where it is 0; its gates and tanh(c) on the characters of --at (default a newline; `\\n` is one), on
the first character past them and elsewhere; and its mean tanh(c) that many characters after the last
of them (--positions). --split names a 0/1 feature ("inside quotes") and gives each mean where it is 1
and where it is 0 too: a `"` opens a quote where "inside quotes" is 1 on it and closes one where it is 0,
which --at alone cannot tell apart.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import errors_in_one_line
from charlm.inspection.analysis import correlations, position_since
from charlm.inspection.run import inspect_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run folder or checkpoint")
    parser.add_argument("file", nargs="?", help="the text to inspect (or --held-out)")
    parser.add_argument("--held-out", action="store_true", help="the run's held-out text")
    parser.add_argument("--cell", nargs=2, type=int, required=True, metavar=("LAYER", "CELL"))
    parser.add_argument("--at", default="\\n", help="the boundary characters, e.g. '。！？\\n'")
    parser.add_argument("--positions", nargs="+", type=int, default=[1, 10, 20, 30, 40])
    parser.add_argument("--split", metavar="FEATURE", help="a 0/1 feature of the page, e.g. 'inside quotes'")
    args = parser.parse_args()
    inspection, title = inspect_run(args.run, args.file, args.held_out)
    layer, cell = args.cell
    state = inspection.states[layer, :, cell]
    text = "".join(inspection.trace.tokens)
    print(f"{title}: layer {layer}, cell {cell}, {inspection.state_name} over {len(text):,} characters")
    for name, feature in inspection.features.items():
        if feature.std() == 0:
            continue
        line = f"{name:26} correlation {correlations(state[None, :, None], feature)[0, 0]:+.3f}"
        if set(np.unique(feature)) == {0.0, 1.0}:
            line += f"; mean {state[feature == 1].mean():+.2f} where 1, {state[feature == 0].mean():+.2f} where 0"
        print(line)
    boundaries = args.at.replace("\\n", "\n")
    position = position_since(boundaries)(text)
    at = position == 0
    after = np.concatenate([[False], at[:-1]]) & ~at  # the first character past a run of them
    print(f"{at.sum()} characters in {boundaries!r}; means at them / on the first past them / elsewhere:")
    rows = {name: gate[layer, :, cell] for name, gate in inspection.trace.gates.items()}
    rows[inspection.state_name] = state
    for name, values in rows.items():
        print(f"  {name:9} {values[at].mean():5.2f} / {values[after].mean():5.2f} / {values[~at].mean():5.2f}")
    for p in args.positions:
        chosen = position == p
        print(f"{inspection.state_name} {p} characters after: {state[chosen].mean():+.2f} ({chosen.sum()} characters)")
    if args.split:
        print_split(inspection.features, args.split, rows, at, after, position, args.positions)


def print_split(
    features: dict[str, np.ndarray],
    name: str,
    rows: dict[str, np.ndarray],
    at: np.ndarray,
    after: np.ndarray,
    position: np.ndarray,
    positions: list[int],
) -> None:
    """The same means where a 0/1 feature is 1 and where it is 0: an opening mark from a closing one."""
    if name not in features or set(np.unique(features[name])) - {0.0, 1.0}:
        raise SystemExit(f"--split: {name!r} is not a 0/1 feature of this text (choose from {', '.join(features)})")
    feature = features[name] == 1
    state_name, state = list(rows.items())[-1]
    for side, where in ((1, feature), (0, ~feature)):
        print(f"where {name} is {side}: means at them / on the first past them / elsewhere:")
        for row, values in rows.items():
            print(f"  {row:9} " + " / ".join(f"{mean(values[chosen & where]):5.2f}" for chosen in (at, after, ~at)))
        for p in positions:
            chosen = (position == p) & where
            print(f"  {state_name} {p} characters after: {mean(state[chosen]):+.2f} ({chosen.sum()} characters)")


def mean(values: np.ndarray) -> float:
    """NaN, without numpy's warning, where no character is in the group."""
    return float(values.mean()) if values.size else float("nan")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
