"""Screenshots of a `charlm inspect` page for the docs (docs/inspect-*.png), taken in headless Chromium.

    python -m bench.inspect_shots PAGE.html --cell LAYER CELL --out OUT.png [--start CHAR]
    python -m bench.inspect_shots PAGE.html --gates --out OUT.png

--cell paints that cell in the page's cells view, as the page's "show" button does, and shoots the
view 955x229 pixels, scrolled so that the line holding character --start (default 0) is its first;
--gates shoots the gate scatter plots. The commands that made each picture are in
bench/results/inspect-figures.txt (inspect-quote-cell.png: bench/results/inspect-quotes.txt). Needs chromium, chromedriver and selenium (bench.browser).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.browser import chromium
from bench.common import errors_in_one_line
from charlm.errors import CharLMError

WIDTH, HEIGHT = 955, 229  # the docs' pictures: wide enough for a line of the page, a few lines tall

PAINT = """
const [layer, cell, start, width, height] = arguments;
document.getElementById("layer").value = layer;
document.getElementById("cell").value = cell;
document.getElementById("cell").dispatchEvent(new Event("input"));
const view = document.getElementById("cells");
Object.assign(view.style, {boxSizing: "border-box", width: width + "px", height: height + "px", maxHeight: "none"});
view.scrollTop = view.children[start].getBoundingClientRect().top - view.getBoundingClientRect().top - 8;
return document.getElementById("cell-label").textContent;
"""

GATES = """
const plots = document.getElementById("gate-plots");
plots.style.width = arguments[0] + "px";
plots.scrollIntoView();
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", help="an HTML page written by charlm inspect")
    parser.add_argument("--cell", nargs=2, type=int, metavar=("LAYER", "CELL"), help="shoot this cell's view")
    parser.add_argument("--start", type=int, default=0, help="with --cell: the character whose line comes first")
    parser.add_argument("--gates", action="store_true", help="shoot the gate scatter plots")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args()
    if bool(args.cell) == args.gates:
        parser.error("give one of --cell LAYER CELL and --gates")
    if not Path(args.page).is_file():  # before Chromium starts, seconds of work for nothing
        raise CharLMError(f"{args.page}: no such page; give the HTML file `charlm inspect --output PAGE` wrote")
    with chromium() as driver:
        driver.set_window_size(WIDTH + 200, 1000)
        driver.get(Path(args.page).resolve().as_uri())
        if args.gates:
            driver.execute_script(GATES, WIDTH)
            element = driver.find_element("id", "gate-plots")
        else:
            print(driver.execute_script(PAINT, *args.cell, args.start, WIDTH, HEIGHT))
            element = driver.find_element("id", "cells")
        element.screenshot(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
