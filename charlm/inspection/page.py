"""The page `charlm inspect` writes: one self-contained HTML file (no network, opens offline) that shows
an `analysis.Inspection`.

Every character of the text is escaped into the page (`html.escape`); the numbers travel in one JSON
block whose `<`, `>` and `&` are written as \\u escapes, so no text can close the script element. The
script builds everything it shows with `textContent`, never from HTML strings. The surprise colours
are written into the page itself, so that view works without the script; cell colours, hovers and
the cell picker need it. Cell states go in as int8 (value x 127, base64): a few MB for a 5,000
character text and a 2x256 model, where JSON numbers would be several times that.
"""

from __future__ import annotations

import base64
import html
import json
from string import Template

import numpy as np

from ..scoring import TOP, Surprise
from .analysis import (
    CHANCE_SAID,
    OPEN,
    SHUT,
    SIGMOID_GATES,
    Inspection,
    characters_read,
    hardest_spans,
    too_few_correlated,
)

TOP_PERCENTILE = 99  # the surprise colour is full red from this percentile of the text's bits up
PLOT = 180  # a gate scatter plot's side in pixels: three gates' plots side by side fit an 800-pixel window
NEWLINE = "\u21b5"  # a newline where text is shown on one line, as the text views mark it
GATE_COLOURS = {"input": "#1f77b4", "forget": "#d62728", "output": "#2ca02c", "reset": "#9467bd", "update": "#ff7f0e"}

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.text { font: 14px/1.6 ui-monospace, monospace; white-space: pre-wrap; word-break: break-all;
        border: 1px solid #ddd; padding: .6em; max-height: 32em; overflow-y: auto; }
.text span.nl::before { content: "\\21B5"; }  /* the text's colour: a grey one vanishes on red */
.text span.mark { box-shadow: inset 0 -3px #000; }  /* a hardest span, underlined whole */
.text span.at { outline: 2px solid #000; }  /* the character the arrow keys are on */
.text span.unseen { outline: 1px dashed #06c; color: #06c; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .15em .7em; text-align: right; }
th { border-bottom: 1px solid #999; } td:first-child, th:first-child { text-align: left; }
#said { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }  /* heard, not seen */
#tip { position: fixed; display: none; background: #fff; border: 1px solid #888; padding: .4em .6em;
       font: 13px ui-monospace, monospace; pointer-events: none; box-shadow: 2px 2px 6px #0003; z-index: 9; }
.legend { display: inline-block; width: 12em; height: .9em; vertical-align: middle; border: 1px solid #ccc; }
.note { color: #666; } .bar { display: inline-block; height: .8em; background: #999; }
.wide { overflow-x: auto; }  /* a table wider than a phone scrolls by itself, not the page */
.gates th, .gates td:first-child { white-space: nowrap; }  /* "layer 0" and "shut < 0.1" on one line */
.gates th[colspan] { text-align: center; }
.features th, .features td { white-space: nowrap; }  /* "position in the line", "no better than chance" */
svg { background: #fff; }
:root { color-scheme: light dark; }
@media (prefers-color-scheme: dark) {  /* the page dark; the text views, plots and hovers stay white: */
  body { background: #121212; color: #ddd; }  /* their colours are on white, as the legends say */
  h2 { border-color: #444; } th { border-color: #777; } .note { color: #aaa; }
  .text, #tip { background: #fff; color: #222; }
}
"""

SCRIPT = r"""
const data = JSON.parse(document.getElementById("data").textContent);
const tip = document.getElementById("tip");
const shown = t => t === "\n" ? "\u21B5" : t === " " ? "\u2423" : t === "\t" ? "\u21E5" : t;
const spoken = {"\u21B5": "newline", "\u2423": "space", "\u21E5": "tab"};  // a screen reader's words for them
const said = document.getElementById("said");
function row(cells, bold) {
  const tr = document.createElement("tr");
  for (const c of cells) { const td = document.createElement(bold ? "th" : "td"); td.textContent = c; tr.append(td); }
  return tr;
}
function place(event, rows) {
  tip.replaceChildren();
  const table = document.createElement("table");
  rows.forEach((r, k) => table.append(row(r, k === 0)));
  tip.append(table);
  tip.style.display = "block";
  tip.style.left = Math.min(event.clientX + 14, innerWidth - tip.offsetWidth - 8) + "px";
  tip.style.top = Math.min(event.clientY + 14, innerHeight - tip.offsetHeight - 8) + "px";
}
// What hovering a character shows, and for the keyboard: Tab into a text view, then the arrow keys (Home,
// End) step from character to character, each one's hover shown beside it.
function hover(view, describe) {
  view.addEventListener("mouseover", e => {
    const i = Array.prototype.indexOf.call(view.children, e.target);
    if (i >= 0) place(e, describe(i));
  });
  view.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  view.tabIndex = 0;
  view.describe = describe;
  view.addEventListener("keydown", e => {
    const step = {ArrowRight: 1, ArrowLeft: -1, Home: -Infinity, End: Infinity}[e.key];
    if (step === undefined) return;
    e.preventDefault();
    const at = view.dataset.at === undefined ? -1 : +view.dataset.at;
    pointAt(view, Math.max(0, Math.min(view.children.length - 1, at + step)));
  });
  view.addEventListener("blur", () => { tip.style.display = "none"; });
}
function pointAt(view, i) {
  view.querySelectorAll(".at").forEach(s => s.classList.remove("at"));
  const span = view.children[i];
  span.classList.add("at");
  view.dataset.at = i;
  span.scrollIntoView({block: "nearest"});
  const box = span.getBoundingClientRect();
  const rows = view.describe(i);
  place({clientX: box.left, clientY: box.bottom}, rows);
  say(rows);
}
function say([[t, ...about], ...rest]) {  // what the hover shows, for a screen reader: `e: 2.31 bits; a 45.0%, ...`
  const more = rest.map(([r, ...values]) => [spoken[r] || r, ...values].join(" "));
  said.textContent = `${spoken[t] || t}: ${about.join(" ")}` + (more.length ? "; " + more.join(", ") : "");
}
const surpriseView = document.getElementById("surprise");
hover(surpriseView, i => {
  const bits = data.bits[i];
  const never = bits === null && data.unseen.includes(data.tokens[i]);
  const head = [shown(data.tokens[i]), never ? "never seen: not scored" : bits === null ? "not predicted" : bits.toFixed(2) + " bits"];
  const percent = p => p < 0.001 ? "<0.1%" : (100 * p).toFixed(1) + "%";
  return [head, ...data.top[i].map(([t, p]) => [shown(t), percent(p)])];
});
function showSpan(view, start, end) {  // a hardest span: all of it marked, the keys' place at its start
  view.querySelectorAll(".mark").forEach(s => s.classList.remove("mark"));
  for (let i = start; i < end; i++) view.children[i].classList.add("mark");
  view.children[start].scrollIntoView({block: "center"});
  view.focus({preventScroll: true});
  pointAt(view, start);
}
document.querySelectorAll("[data-goto]").forEach(b =>
  b.addEventListener("click", () => showSpan(surpriseView, +b.dataset.goto, +b.dataset.end)));

const cellsView = document.getElementById("cells");
if (cellsView) {
  const states = {};
  for (const [name, packed] of Object.entries(data.states)) {
    const bytes = Uint8Array.from(atob(packed), c => c.charCodeAt(0));
    states[name] = new Int8Array(bytes.buffer);
  }
  const T = data.tokens.length, H = data.hidden;
  const layer = document.getElementById("layer"), cell = document.getElementById("cell");
  const kind = document.getElementById("kind"), label = document.getElementById("cell-label");
  function value(i) {
    return states[kind.value][(+layer.value * H + +cell.value) * T + i] / 127;
  }
  function paint() {
    cell.value = Math.max(0, Math.min(H - 1, +cell.value || 0));
    for (let i = 0; i < T; i++) {
      const v = value(i);
      cellsView.children[i].style.background =
        v >= 0 ? `rgba(230,120,20,${v.toFixed(3)})` : `rgba(30,100,220,${(-v).toFixed(3)})`;
    }
    label.textContent = `layer ${layer.value}, cell ${cell.value}, ${kind.value}`;
  }
  // both: a menu picked by a tool (Selenium's Select) or some browsers sends `change` and no `input`
  [layer, cell, kind].forEach(c => ["input", "change"].forEach(e => c.addEventListener(e, paint)));
  document.getElementById("prev").addEventListener("click", () => { cell.value = +cell.value - 1; paint(); });
  document.getElementById("next").addEventListener("click", () => { cell.value = +cell.value + 1; paint(); });
  document.querySelectorAll("[data-show]").forEach(b => b.addEventListener("click", () => {
    layer.value = b.dataset.layer; cell.value = b.dataset.cell; kind.value = data.ranked; paint();
    cellsView.scrollIntoView({block: "nearest"});
  }));
  const gates = {};  // "layer,cell" -> label -> values: the gates of the cells the table names
  for (const [key, named] of Object.entries(data.gates)) {
    gates[key] = {};
    for (const [label, packed] of Object.entries(named)) {
      gates[key][label] = new Int8Array(Uint8Array.from(atob(packed), c => c.charCodeAt(0)).buffer);
    }
  }
  hover(cellsView, i => {
    const rows = [[shown(data.tokens[i]), `${kind.value} ${value(i).toFixed(3)}`]];
    for (const [label, values] of Object.entries(gates[`${layer.value},${cell.value}`] || {})) {
      rows.push([label, (values[i] / 127).toFixed(2)]);
    }
    return rows;
  });
  const first = document.querySelector("[data-show]");  // start on the best cell of the first feature
  if (first) { layer.value = first.dataset.layer; cell.value = first.dataset.cell; }
  paint();
}
document.body.dataset.ready = "yes";
"""


PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>charlm inspect: $title</title><style>$style</style></head><body>
<h1>What the model learned: $title</h1>
<p>$model on $count: <b>$bpc bits per character</b>; the best n-gram model (order $order: $context)
$ngram_bpc bits per character.</p>
$behind$notes
<p>Hardest spans (most bits per character):</p><ol>$hardest</ol>
<h2>1. Surprise</h2>
<p>Each character coloured by the bits the model spent on it, on this text's own range: white $low_bits,
<span class="legend" style="background:linear-gradient(90deg,#fff,$red)"></span> $max_bits bits and more
(its least surprising character to its ${top_percentile}th percentile).
Hover a character (or Tab into the text and step with the arrow keys) for the model's top $top guesses
before it; "show" underlines a hardest span.</p>
$surprise
<h2>2. Cells</h2>
$cells
<h2>3. Gates</h2>
$gates
<h2>4. What the $cell buys</h2>
$classes
<div id="tip"></div><div id="said" aria-live="polite"></div>
<script type="application/json" id="data">$data</script>
<script>$script</script></body></html>
""")

CELLS = Template("""<p>A cell's $state after each character, from -1
<span class="legend" style="background:linear-gradient(90deg,rgb(30,100,220),#fff,rgb(230,120,20))"></span> to +1.
The features below are computed from the text; for each, the cell whose $state correlates best with it
(Pearson, over these $count characters), and chance: $chance. $hover</p>
<div class="wide"><table class="features"><tr><th>feature</th><th>layer</th><th>cell</th><th>correlation</th><th>chance</th><th></th></tr>$rows</table></div>
$few
<p><label>layer <select id="layer">$layers</select></label> cell <button id="prev" aria-label="previous cell">&lt;</button><input
id="cell" type="number" min="0" max="$last" value="0" style="width:5em" aria-label="cell"><button id="next"
aria-label="next cell">&gt;</button> <label>state <select id="kind">$kinds</select></label>
<b id="cell-label" aria-live="polite"></b></p>
$text""")

GATES = Template("""<p>How often each gate is left-saturated (below $shut: shut) or right-saturated (above $open: open),
over every cell and character. $meaning</p>
<div class="wide"><table class="gates"><tr><th></th>$names</tr><tr><th></th>$header</tr>$rows</table></div>
<p>Each dot a cell: the fraction of characters its gate was left-saturated (across) and right-saturated (up),
as Karpathy, Johnson and Fei-Fei (2015) plot it, one plot per gate so that no gate's dots hide another's.
Every dot lies on or below the dashed diagonal: a gate is never shut and open at once, so its two
fractions add up to at most 1.</p>
<div id="gate-plots">$plots</div>""")

CLASSES = Template("""<p>Bits per character by character class: the $cell against an interpolated modified
Kneser-Ney n-gram model fitted on $fitted_on (an n-gram model of order n predicts each character from the
n - 1 characters before it, by how often each followed them there). The class table uses the order with the fewest
bits on this text: the $cell's context has no fixed length, and the n-gram stops gaining near this order.
Bits saved: the n-gram's bits per character on that class minus the $cell's (above 0: the $cell needs fewer
bits, below 0: the n-gram does).</p>
<div class="wide"><table><tr><th>n-gram order</th>$orders</tr><tr><td>bpc</td>$values</tr></table></div>
<div class="wide"><table><tr><th>class</th><th>characters</th><th>$cell bpc</th><th>$order-gram bpc</th><th>bits saved</th>
<th style="text-align:left">$cell <span style="color:#1f77b4">&#9632;</span> n-gram
<span style="color:#aaa">&#9632;</span></th></tr>$rows</table></div>""")

GATE_MEANINGS = {  # what a saturated gate does, by cell: a GRU's gates are not an LSTM's
    "lstm": "A forget gate that stays open keeps its cell's memory; one that stays shut clears it at every character.",
    "gru": "A GRU has no forget gate and no cell state: its update gate decides how much of the old state h "
    "it keeps (h = (1 - update) × new + update × old h), so an update gate that stays open keeps "
    "the state and one that stays shut replaces it with the candidate (new) at every character; its reset "
    "gate decides how much of the old state that candidate sees. The candidate is a tanh, not a gate: it "
    "is not counted here.",
}

HOVER = "Hover a character (or Tab into the text and step with the arrow keys) for the cell's value after it"
HOVER_NOTES = {  # what hovering the cells view shows: for a cell the table names, its gates at that character
    "lstm": f"{HOVER}; for a cell the table names, also its gates there: how much of the old cell it kept "
    "(forget), what it wrote (input times candidate) and how much of the cell it showed (output).",
    "gru": f"{HOVER}; for a cell the table names, also its gates there: how much of the old state it kept "
    "(update), how much of it the candidate saw (reset) and that candidate (new).",
    "rnn": f"{HOVER}.",
}

SCATTER = Template("""<svg width="$size" height="$size" viewBox="0 0 $size $size" style="margin-right:1em" role="img"
aria-label="layer $layer, $gate gate: each dot a cell, the fraction of characters its gate was left-saturated (across) and right-saturated (up)">
<rect x="$pad" y="$pad" width="$side" height="$side" fill="none" stroke="#999"/>
<line x1="$pad" y1="$pad" x2="$right" y2="$bottom" stroke="#bbb" stroke-dasharray="3 3"/>
<text x="$pad" y="$title_y" font-size="12">layer $layer, <tspan fill="$colour">$gate</tspan></text>
<text x="$middle" y="$label_y" font-size="10" text-anchor="middle">left-saturated</text>
<text x="$pad" y="$tick_y" font-size="9" text-anchor="middle">0</text>
<text x="$right" y="$tick_y" font-size="9" text-anchor="middle">1</text>
<text x="$tick_x" y="$top_tick" font-size="9" text-anchor="end">1</text>
<text x="10" y="$middle" font-size="10" text-anchor="middle" transform="rotate(-90 10 $middle)">right-saturated</text>
$dots</svg>""")


def render(inspection: Inspection, title: str) -> str:
    """The whole page, as a string."""
    surprises, trace = inspection.surprise, inspection.trace
    states = {inspection.state_name: inspection.states}
    if trace.cells is not None:
        states["h"] = trace.hidden
    data = {
        **surprises.to_dict(),
        "hidden": inspection.states.shape[2],
        "ranked": inspection.state_name,
        "states": {name: pack(values) for name, values in states.items()},
        "gates": named_cells_gates(inspection),
        "unseen": inspection.unseen,
    }
    low, high = surprise_range(np.asarray(surprises.bits, dtype=float))
    return PAGE.substitute(
        title=esc(title),
        style=STYLE,
        model=esc(inspection.model),
        count=esc(characters_read(inspection)),
        bpc=f"{surprises.bpc:.3f}",
        order=inspection.ngram_order,
        context=ngram_context(inspection.ngram_order),
        ngram_bpc=f"{inspection.ngram_bpc[inspection.ngram_order]:.3f}",
        behind=f"<p>{esc(inspection.behind[:1].upper() + inspection.behind[1:])}.</p>\n" if inspection.behind else "",
        notes="".join(f'<p class="note">Note: {esc(note)}.</p>' for note in inspection.notes),
        hardest=hardest_list(surprises),
        red=red(1.0),
        low_bits=f"{low:.1f}",
        max_bits=f"{high:.1f}",
        top_percentile=TOP_PERCENTILE,
        top=TOP,
        surprise=text_view(
            "surprise",
            "Surprise: the text coloured by bits",
            surprises.tokens,
            [red((b - low) / (high - low)) for b in np.nan_to_num(surprises.bits)],
            set(inspection.unseen),
        ),
        cells=cells_section(inspection),
        gates=gates_section(inspection),
        cell=esc(trace.cell.upper()),
        classes=classes_section(inspection),
        data=json_for_script(data),
        script=SCRIPT,
    )


def hardest_list(surprises: Surprise) -> str:
    """The headline's hardest spans, each with a button that marks it in the surprise view."""
    items = []
    for k, (start, end, bpc) in enumerate(hardest_spans(surprises), 1):
        span = "".join(surprises.tokens[start:end]).replace("\n", NEWLINE)
        button = (
            f'<button data-goto="{start}" data-end="{end}" aria-label="show hardest span {k} in the text">show</button>'
        )
        items.append(f'<li>{button} {bpc:.2f} bpc: <code lang="">{esc(span)}</code></li>')
    return "".join(items)


def ngram_context(order: int) -> str:
    """What an n-gram model of `order` predicts a character from, in words."""
    before = order - 1
    if before == 0:
        return "each character predicted from how often it occurs alone"
    return f"each character predicted from the {'one' if before == 1 else before} before it"


def cells_section(inspection: Inspection) -> str:
    layers, _, hidden = inspection.states.shape
    kinds = [inspection.state_name] + (["h"] if inspection.trace.cells is not None else [])
    rows = []
    for match in inspection.matches:
        if match.correlation is None:
            rows.append(f"<tr><td>{esc(match.feature)}</td><td colspan=4>does not vary in this text</td></tr>")
            continue
        shown = (
            f"<button data-show data-layer='{match.layer}' data-cell='{match.cell}' "
            f"aria-label='show the cell for {esc(match.feature)}'>show</button>"
            if match.follows
            else "no better than chance"
        )
        rows.append(
            f"<tr><td>{esc(match.feature)}</td><td>{match.layer}</td><td>{match.cell}</td>"
            f"<td>{match.correlation:+.3f}</td><td>{match.chance:.3f}</td><td>{shown}</td></tr>"
        )
    return CELLS.substitute(
        state=esc(inspection.state_name),
        hover=HOVER_NOTES[inspection.trace.cell],
        chance=esc(CHANCE_SAID),
        rows="".join(rows),
        count=f"{inspection.states.shape[1]:,}",
        few="" if (few := too_few_correlated(inspection.states)) is None else f'<p class="note">Note: {esc(few)}.</p>',
        layers="".join(f'<option value="{k}">{k}</option>' for k in range(layers)),
        last=hidden - 1,
        kinds="".join(f'<option value="{esc(k)}">{esc(k)}</option>' for k in kinds),
        text=text_view("cells", "Cells: the text coloured by the chosen cell", inspection.surprise.tokens, None),
    )


def named_cells_gates(inspection: Inspection) -> dict[str, dict[str, str]]:
    """Every gate of each cell the features table names, at each character ("layer,cell" -> label -> int8
    base64, as `pack`): the hover shows how such a cell was written where it changes (a forget gate
    near 0 at a newline). Only these cells: every cell's four gates would triple the page."""
    gates = inspection.trace.gates
    named = {(match.layer, match.cell) for match in inspection.matches if match.correlation is not None}
    return {
        f"{layer},{cell}": {
            f"{name} gate" if name in SIGMOID_GATES else name: pack(values[layer, :, cell][None, :, None])
            for name, values in gates.items()
        }
        for layer, cell in sorted(named)
    }


def gates_section(inspection: Inspection) -> str:
    if not inspection.saturation:
        return '<p class="note">A plain RNN has no gates: every step rewrites its whole state.</p>'
    names = list(inspection.saturation)
    gate_names = "".join(f"<th colspan=2>{esc(n)}</th>" for n in names)
    layers = next(iter(inspection.saturation.values())).shape[0]
    rows = []
    for layer in range(layers):
        fractions = (inspection.saturation[name][layer].mean(axis=0) for name in names)  # over the layer's cells
        columns = "".join(f"<td>{left:.1%}</td><td>{right:.1%}</td>" for left, right in fractions)
        rows.append(f"<tr><td>layer {layer}</td>{columns}</tr>")
    return GATES.substitute(
        meaning=GATE_MEANINGS[inspection.trace.cell],
        shut=SHUT,
        open=OPEN,
        names=gate_names,
        header=f"<th>shut &lt; {SHUT}</th><th>open &gt; {OPEN}</th>" * len(names),
        rows="".join(rows),
        plots="".join(
            "<div>"
            + "".join(scatter(fractions[layer], layer, name) for name, fractions in inspection.saturation.items())
            + "</div>"
            for layer in range(layers)
        ),
    )


def scatter(fractions: np.ndarray, layer: int, gate: str) -> str:
    """One gate of one layer, a dot per cell: fraction of time left-saturated (x) against right-saturated
    (y). A plot per gate: drawn in one, the gates' dots pile up at the left edge and the last drawn hides
    the others."""
    pad, side = 28, PLOT
    colour = GATE_COLOURS.get(gate, "#444")
    dots = [
        f'<circle cx="{pad + left * side:.1f}" cy="{pad + (1 - right) * side:.1f}" r="2" fill="{colour}" fill-opacity="0.6"/>'
        for left, right in fractions
    ]
    size = side + 2 * pad
    return SCATTER.substitute(
        size=size,
        pad=pad,
        side=side,
        title_y=pad - 8,
        layer=layer,
        gate=esc(gate),
        colour=colour,
        middle=pad + side / 2,
        label_y=size - 4,
        tick_y=pad + side + 11,
        right=pad + side,
        bottom=pad + side,
        tick_x=pad - 3,
        top_tick=pad + 4,
        dots="".join(dots),
    )


def classes_section(inspection: Inspection) -> str:
    order = inspection.ngram_order
    widest = max((max(row.model_bpc, row.ngram_bpc) for row in inspection.classes), default=1.0) or 1.0
    rows = []
    for row in inspection.classes:
        bars = "".join(
            f'<div class="bar" style="width:{10 * bpc / widest:.2f}em;background:{colour}"></div><br>'
            for bpc, colour in ((row.model_bpc, "#1f77b4"), (row.ngram_bpc, "#aaa"))
        )
        rows.append(
            f"<tr><td>{esc(row.name)}</td><td>{row.count:,}</td><td>{row.model_bpc:.3f}</td>"
            f"<td>{row.ngram_bpc:.3f}</td><td>{row.ngram_bpc - row.model_bpc:+.3f}</td>"
            f'<td style="text-align:left">{bars}</td></tr>'
        )
    values = (f"<b>{bpc:.3f}</b>" if n == order else f"{bpc:.3f}" for n, bpc in inspection.ngram_bpc.items())
    return CLASSES.substitute(
        cell=esc(inspection.trace.cell.upper()),
        order=order,
        fitted_on=esc(inspection.ngram_fitted_on),
        orders="".join(f"<th>{n}</th>" for n in inspection.ngram_bpc),
        values="".join(f"<td>{value}</td>" for value in values),  # the order the class table uses in bold
        rows="".join(rows),
    )


def text_view(
    name: str, label: str, tokens: list[str], colours: list[str] | None, unseen: set[str] = frozenset()
) -> str:
    """The text, one span per character, every character escaped; newlines and characters the model
    has never seen (`unseen`) marked by CSS. A region named `label` for a screen reader, in no language
    the page claims (lang=""): the text is the user's, Chinese or English."""
    spans = []
    for k, token in enumerate(tokens):
        style = f' style="background:{colours[k]}"' if colours else ""
        kind = ' class="nl"' if token == "\n" else ' class="unseen"' if token in unseen else ""
        spans.append(f"<span{kind}{style}>{esc(token)}</span>")
    return f'<div class="text" id="{name}" role="region" aria-label="{label}" lang="">{"".join(spans)}</div>'


def surprise_range(bits: np.ndarray) -> tuple[float, float]:
    """The surprise colours' ends for this text: white at its least surprising character, full red at
    its TOP_PERCENTILE (at least a bit higher). A fixed 0 to 8 bits would show a Chinese text at 9 bits
    per character as solid red; its own range shows which of its characters are hard."""
    finite = bits[np.isfinite(bits)]
    if finite.size == 0:
        return 0.0, 1.0
    low = float(finite.min())
    return low, max(float(np.percentile(finite, TOP_PERCENTILE)), low + 1.0)


def red(share: float) -> str:
    return f"rgba(220,40,40,{min(max(share, 0.0), 1.0):.3f})"


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def pack(values: np.ndarray) -> str:
    """(L, T, H) values in [-1, 1] as base64 int8 in (L, H, T) order: one cell's run is contiguous."""
    quantized = np.clip(np.round(values * 127), -127, 127).astype(np.int8)
    return base64.b64encode(np.ascontiguousarray(quantized.transpose(0, 2, 1)).tobytes()).decode()


def json_for_script(data: dict) -> str:
    """JSON that cannot end the script element it sits in (a text holding `</script>`)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
