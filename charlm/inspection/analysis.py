"""Looking inside a trained model (`charlm inspect`), after Karpathy, Johnson and Fei-Fei, "Visualizing
and Understanding Recurrent Networks" (2015):

- surprise: the bits the model spends on each character and its top guesses before it (`surprise`,
  also what the serve page's surprise view shows);
- cells: simple features of the text (inside quotes, position in the line, ...) and the cells whose
  tanh(c) follows each best, by correlation (`features`, `best_cells`);
- gates: how often each gate is saturated, nearly shut (< 0.1) or nearly open (> 0.9) (`saturation`);
- what the LSTM buys: its bits per character class against a Kneser-Ney n-gram fitted on the run's
  training split (`ngram.KneserNey`, `bits_by_class`), and a note where the text is in that split
  (`share_seen`): there the n-gram's bits are recall.

`analyse` computes all of it into an `Inspection`; page.py draws the page, `summary` the text tables.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import CharLMError
from ..forms import is_cjk_punctuation, is_han
from ..model import CharLM
from ..ngram import MAX_ORDER, KneserNey
from ..scoring import Surprise, check_scored, scored_chars
from ..tables import table
from ..tracing import Trace, trace_and_surprise
from ..unseen_notes import foreign_note, unseen_advice, unseen_note

SPAN = 20  # characters in one of the summary's hardest spans
HARDEST = 5  # how many hardest spans the summary lists
FULL_WIDTH_SPACE = "\u3000"
SHUT, OPEN = 0.1, 0.9  # a gate value below SHUT is left-saturated, above OPEN right-saturated
SIGMOID_GATES = ("input", "forget", "output", "reset", "update")  # the candidate and GRU's `new` are tanh
CHINESE_SHARE = 0.3  # a text is Chinese when this share of its non-space characters are CJK ideographs
# Below this many characters the best of a model's cells follows even a feature of another text, by
# chance: a 2x64 LSTM trained on tinyshakespeare, its states on one slice against an unrelated slice's
# line position, reached |r| 0.60 over 30 characters, 0.35 over 100, 0.25 over 300, 0.14 over 1,000
# and 0.05 over 3,000 (mean of 4 draws); a model of more cells finds more such.
FEW_CORRELATED = 1000
# What chance gives on this text: every cell against the feature shifted each of these shares of the
# text along it (the same values, out of step with the characters). A cell follows a feature only where it
# beats the best of all of them: a cell that follows nothing beats all 19 one time in 20 (it is as likely
# as each shift to be the largest of the 20), where 3 shifts (a quarter, a half, three quarters) let one
# in 4 through: hongloumeng's line position "followed" at 0.250 against their 0.239, and gets 0.295 from
# the 19 (docs/inspect.md, "Measured"; tests/test_inspect.py draws cells that follow nothing).
CHANCE_SHIFTS = tuple(k / 20 for k in range(1, 20))
# A text is said to be in the n-gram's training text (its bits there recall, not prediction) when this
# share of its SPAN-long spans are found there word for word. Held-out text has few: the last tenth of
# each corpus against the rest, 0.0% (hongloumeng, tangshi300) and 0.4% (tinyshakespeare, alice); its
# first 5,000 characters 1.2% at most (bench/results/inspect-seen-share.txt).
SEEN_SHARE = 0.1
SEEN_SPANS = 500  # spans looked for at most, evenly spread: each one a search of up to 2M characters
# What to do with a model that loses to the n-gram on a new text (`behind_note`); a run adds where it got to.
BEHIND_ADVICE = "train it longer or on more text"
CHANCE_SAID = (
    "the largest correlation any cell has with the feature shifted 1/20, 2/20, ... 19/20 of the way along "
    "the text; a cell follows a feature only if it beats that, as a cell that follows nothing does one time in 20"
)


def hardest_spans(surprises: Surprise, count: int = HARDEST, width: int = SPAN) -> list[tuple[int, int, float]]:
    """The `count` spans of `width` tokens with the most bits, not overlapping: (start, end,
    bits per character), hardest first."""
    bits = np.nan_to_num(surprises.bits)
    if len(bits) <= width:
        return [(0, len(bits), surprises.bpc)] if len(bits) else []
    totals = np.convolve(bits, np.ones(width), mode="valid")  # totals[s]: bits of tokens s..s+width-1
    spans, taken = [], np.zeros(len(bits), dtype=bool)
    for start in np.argsort(-totals, kind="stable"):
        if len(spans) == count:
            break
        if not taken[start : start + width].any():
            taken[start : start + width] = True
            chars = scored_chars(surprises.bits[start : start + width], surprises.tokens[start : start + width])
            spans.append((int(start), int(start) + width, float(totals[start] / max(chars, 1))))
    return spans


# --- features of the text, one value per character: the state after reading it -----------------------


def quote_feature(opening: str, closing: str, toggles: str = "") -> Callable[[str], np.ndarray]:
    """1 from an opening quote up to (not including) its closing one. `toggles` open and close alike,
    like ASCII's '"'. Nested quotes count as one."""

    def inside(text: str) -> np.ndarray:
        depth, open_toggle, values = 0, False, np.zeros(len(text))
        for t, char in enumerate(text):
            if char in opening:
                depth += 1
            elif char in closing:
                depth = max(depth - 1, 0)
            elif char in toggles:
                open_toggle = not open_toggle
            values[t] = depth > 0 or open_toggle
        return values

    return inside


def position_since(boundaries: str) -> Callable[[str], np.ndarray]:
    """Characters read since the last boundary character (0 at the boundary itself)."""

    def position(text: str) -> np.ndarray:
        count, values = 0, np.zeros(len(text))
        for t, char in enumerate(text):
            count = 0 if char in boundaries else count + 1
            values[t] = count
        return values

    return position


def bracket_depth(text: str) -> np.ndarray:
    """How many (, [ and { are open."""
    depth, values = 0, np.zeros(len(text))
    for t, char in enumerate(text):
        depth = depth + 1 if char in "([{" else max(depth - 1, 0) if char in ")]}" else depth
        values[t] = depth
    return values


def inside_word(text: str) -> np.ndarray:
    return np.array([char.isalpha() for char in text], dtype=float)


def after_newline(text: str) -> np.ndarray:
    return np.array([char == "\n" for char in text], dtype=float)


LATIN_FEATURES = {
    "inside quotes": quote_feature("“", "”", toggles='"'),
    "position in the line": position_since("\n"),
    "bracket depth": bracket_depth,
    "inside a word": inside_word,
    "after a newline": after_newline,
}
CHINESE_FEATURES = {
    "inside 「」/“” quotes": quote_feature("「『“", "」』”"),
    "position in the sentence": position_since("。！？\n"),
    "position in the line": position_since("\n"),
    "after a newline": after_newline,
}


def is_chinese(text: str) -> bool:
    visible = [char for char in text if not char.isspace()]
    return bool(visible) and sum(map(is_han, visible)) >= CHINESE_SHARE * len(visible)


def features(text: str) -> dict[str, np.ndarray]:
    """Each feature of `text` (Chinese or not, by its characters) as one value per character."""
    chosen = CHINESE_FEATURES if is_chinese(text) else LATIN_FEATURES
    return {name: compute(text) for name, compute in chosen.items()}


# --- cells that follow the features --------------------------------------------------------------------


@dataclass
class CellMatch:
    """The cell whose state follows a feature best: its layer, index and Pearson correlation (signed:
    a cell may be low inside quotes as well as high). `correlation` is None for a feature that does
    not vary in the text (no quotes at all, say). `chance`: the largest |correlation| any cell has
    with the feature shifted along the text (`CHANCE_SHIFTS`), which the best cell must beat to follow it."""

    feature: str
    layer: int
    cell: int
    correlation: float | None
    chance: float | None = None

    @property
    def follows(self) -> bool:
        """Whether the cell follows the feature more closely than any cell follows it out of step."""
        return self.correlation is not None and abs(self.correlation) > (self.chance or 0.0)


def correlations(states: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson correlation of every cell's states (L, T, H) with a feature (T,): (L, H), 0 where a cell
    does not vary."""
    centred = states - states.mean(axis=1, keepdims=True)
    target = feature - feature.mean()
    spread = np.sqrt((centred**2).sum(axis=1)) * np.sqrt((target**2).sum())
    products = np.einsum("lth,t->lh", centred, target)
    return np.divide(products, spread, out=np.zeros_like(products), where=spread > 0)


def best_cells(states: np.ndarray, features: dict[str, np.ndarray]) -> list[CellMatch]:
    """For each feature, the cell (any layer) with the largest |correlation|, and what chance gives."""
    matches = []
    for name, values in features.items():
        if values.std() == 0:
            matches.append(CellMatch(name, 0, 0, None))
            continue
        r = correlations(states, values)
        layer, cell = np.unravel_index(np.abs(r).argmax(), r.shape)
        matches.append(
            CellMatch(name, int(layer), int(cell), float(r[layer, cell]), chance_correlation(states, values))
        )
    return matches


def chance_correlation(states: np.ndarray, feature: np.ndarray) -> float:
    """The largest |correlation| of any cell with `feature` shifted along the text (`CHANCE_SHIFTS`): how
    closely some cell follows a feature's values out of step with the characters, by chance alone."""
    chars = len(feature)
    shifted = (np.roll(feature, max(1, round(share * chars))) for share in CHANCE_SHIFTS)
    out_of_step = [values for values in shifted if not np.array_equal(values, feature)]  # a text repeated: in step
    return max((float(np.abs(correlations(states, values)).max()) for values in out_of_step), default=0.0)


def too_few_correlated(states: np.ndarray) -> str | None:
    """What to say of the features' correlations when the text has too few characters (states: (L, T, H))
    for them to mean much, or None: on a tiny text some cell follows a feature at +-0.99 by chance."""
    layers, chars, hidden = states.shape
    if chars >= FEW_CORRELATED:
        return None
    return (
        f"these correlations rest on {chars:,} characters, too few to mean much: on so few the best of "
        f"{layers * hidden:,} cells follows even a feature of another text by chance; inspect "
        f"{FEW_CORRELATED:,} characters or more"
    )


def cell_view(trace: Trace) -> tuple[str, np.ndarray]:
    """What the cells section shows and ranks: tanh(c) for an LSTM, else h (no cell state), (L, T, H)."""
    if trace.cells is not None:
        return "tanh(c)", np.tanh(trace.cells)
    return "h", trace.hidden


# --- gate saturation --------------------------------------------------------------------------------------


def saturation(trace: Trace) -> dict[str, np.ndarray]:
    """For each sigmoid gate, per layer and cell, the fraction of characters where it was left-saturated
    (< SHUT) and right-saturated (> OPEN): (L, H, 2). An RNN has none."""
    return {
        name: np.stack([(values < SHUT).mean(axis=1), (values > OPEN).mean(axis=1)], axis=-1)
        for name, values in trace.gates.items()
        if name in SIGMOID_GATES
    }


# --- bits per character class ------------------------------------------------------------------------------

CLASSES = ("letters", "spaces", "punctuation", "newline", "digits", "CJK characters", "CJK punctuation", "other")


def char_class(char: str) -> str:
    """A character's class in the LSTM-vs-n-gram table. Punctuation and symbols are CJK punctuation by
    their Unicode block (CJK Symbols and Punctuation: 。、「」《》; the full-width forms: ，：；！？), as
    `charlm.forms` decides it; any other (“”’…— of General Punctuation included, which English
    typesetting uses as much as Chinese) is punctuation."""
    if char == "\n":
        return "newline"
    if char.isspace():
        return "spaces"
    if char.isdigit():
        return "digits"
    if is_han(char):
        return "CJK characters"
    if char.isalpha():
        return "letters"
    if unicodedata.category(char)[0] in "PS":
        return "CJK punctuation" if is_cjk_punctuation(char) else "punctuation"
    return "other"


@dataclass
class ClassRow:
    """One class's row of the table: its characters scored, and the bits per character the model (an LSTM,
    GRU or RNN alike) and the n-gram spent on them."""

    name: str
    count: int
    model_bpc: float
    ngram_bpc: float


def bits_by_class(tokens: list[str], model_bits: np.ndarray, ngram_bits: np.ndarray) -> list[ClassRow]:
    """Both models' bits per character for each class present in the text, in CLASSES order, over the
    characters the model scored (not those it never saw)."""
    classes = np.array([char_class(token) for token in tokens])
    rows = []
    for name in CLASSES:
        chosen = (classes == name) & ~np.isnan(model_bits)
        if chosen.any():
            rows.append(ClassRow(name, int(chosen.sum()), model_bits[chosen].mean(), ngram_bits[chosen].mean()))
    return rows


# --- all of it ----------------------------------------------------------------------------------------------


@dataclass
class Inspection:
    """Everything `charlm inspect` shows, for one model on one text."""

    model: str  # as CharLM.architecture says it
    trace: Trace  # without the full distributions
    surprise: Surprise
    state_name: str  # "tanh(c)" or "h": what `states` holds
    states: np.ndarray  # (L, T, H) in [-1, 1]: what the cells section shows
    features: dict[str, np.ndarray]
    matches: list[CellMatch]
    saturation: dict[str, np.ndarray]
    ngram_bpc: dict[int, float]  # n-gram order -> bpc on the text
    ngram_order: int  # the order of the best one, which the class table uses
    classes: list[ClassRow]
    ngram_fitted_on: str = "the given text"  # the n-gram's training text, as the page names it
    notes: list[str] = field(default_factory=list)  # what this kind of model does not have
    unseen: list[str] = field(default_factory=list)  # characters of the text the model has never seen
    behind: str = ""  # where the model loses to the best n-gram on a new text: what that means (`behind_note`)


def share_seen(text: str, fitted: str) -> float:
    """The share of `text`'s SPAN-character spans (SEEN_SPANS of them at most, not overlapping, evenly spread)
    found word for word in `fitted`: a text the n-gram was fitted on gives 1, another near 0. A search of
    `fitted` per span, no index of all its spans: 0.06 s for 5,000 held-out characters of hongloumeng,
    next to the n-gram fit's 20 s (docs/inspect.md)."""
    step = max(SPAN, -(-(len(text) - SPAN + 1) // SEEN_SPANS))
    spans = [text[start : start + SPAN] for start in range(0, len(text) - SPAN + 1, step)]
    return sum(span in fitted for span in spans) / len(spans) if spans else 0.0


def seen_note(share: float, fitted_on: str, advice: str) -> str:
    """What the notes say of a text whose spans are `share` in the n-gram's training text (`fitted_on`),
    and what to inspect instead (`advice`); '' below SEEN_SHARE."""
    if share < SEEN_SHARE:
        return ""
    return (
        f"{share:.0%} of this text's {SPAN}-character spans are word for word in {fitted_on}, which the n-gram "
        f"was fitted on: its bits here are recall, not prediction; {advice}"
    )


def behind_note(model_bpc: float, ngram_bpc: float, order: int, advice: str) -> str:
    """What the headline's comparison means where the model needs more bits than the best n-gram, of
    `order`, on a text neither was fitted on: a recurrent model that has learned its text beats every
    n-gram (docs/inspect.md, "Measured"), so one that loses has not learned yet even what the n-gram counts;
    `advice`: what to do. One wording for any cell; '' where the model does as well or better."""
    if not model_bpc > ngram_bpc:
        return ""
    counted = {1: "how often each character occurs", 2: "the character before each one"}
    counts = counted.get(order, f"the {order - 1} characters before each one")
    return (
        f"the model needs {model_bpc - ngram_bpc:.3f} more bits per character than the best n-gram: it has not "
        f"yet learned what the n-gram counts, {counts}; {advice}"
    )


def check_inspectable(model: CharLM, name: str = "the model") -> None:
    """Inspection is per character (a character's surprise, the cells' state after it): a sentencepiece
    model steps over pieces. `name`: the run, which the user can then trade for a character model's."""
    if not model.vocab.one_char_per_id:
        raise CharLMError(
            f"{name} reads sentencepiece pieces, not characters; charlm inspect shows character models only: "
            "give a run trained with --tokenizer char (the default)"
        )


def analyse(
    model: CharLM,
    text: str,
    training_text: str,
    max_order: int = MAX_ORDER,
    quiet: bool = True,
    what: str = "text",
    fitted_on: str = "the given text",
    run: str | None = None,
    seen_advice: str = "inspect a text the n-gram was not fitted on",
    behind_advice: str = BEHIND_ADVICE,
) -> Inspection:
    """Inspect `model` on `text` (`what` names it in errors), against n-grams of orders 1..max_order
    fitted on `training_text` (`fitted_on` names it on the page: a cut one says so); `run`: the run the
    model is, which the notes' advice names; `seen_advice`: what to inspect instead, said where the text is
    mostly in `training_text` (`share_seen`); `behind_advice`: what to do, said where the model loses to the
    n-gram on another text (`behind_note`). Read cold, as
    `charlm eval`, validation and the server's `echo` read a text: its first character is read, every one
    after it scored, so the bits figures are theirs."""
    check_inspectable(model)
    if not text:
        raise CharLMError("nothing to inspect: the text is empty")
    symbol_note = unseen_note(model.vocab, [text], "inspect", run) if model.vocab.unknown_id is not None else ""
    # read as the unknown symbol: the note says so once, as eval's does, so neither warns
    traced, surprises = trace_and_surprise(model, text, context="", probs=False, warn=False)  # one read, not two
    # the characters its tokens spell, as the model read them (NFC, CRLF as LF), as eval counts its ids':
    # one a token for a character model, more for a sentencepiece one (which inspect refuses today)
    check_scored(what, sum(map(len, surprises.tokens)), surprises.scored_chars)
    state_name, states = cell_view(traced)
    text = "".join(traced.tokens)  # normalized as the model read it
    found = features(text)
    ngram = KneserNey(training_text, len(model.vocab), max_order, quiet)
    ngram_bits = {order: ngram.bits(text, order, context="") for order in range(1, max_order + 1)}
    unseen = model.vocab.unseen_in(text) if model.vocab.unknown_id is None else []
    scored = ~np.isnan(surprises.bits)  # the n-grams are scored on the same characters as the model
    ngram_bpc = {order: float(bits[scored].mean()) if scored.any() else np.nan for order, bits in ngram_bits.items()}
    best = min(ngram_bpc, key=ngram_bpc.get)
    recall = seen_note(share_seen(text, training_text), fitted_on, seen_advice)
    # Said only where the loss is the model's: not on the n-gram's own text (recall), nor on a text mostly
    # in characters the model never saw (the unseen note says the figure tells little of it)
    foreign = foreign_note(sum(model.vocab.unseen_counts(text, start=1).values()), len(text) - 1)
    behind = "" if recall or foreign else behind_note(surprises.bpc, ngram_bpc[best], best, behind_advice)
    return Inspection(
        model=model.architecture(),
        trace=traced,
        surprise=surprises,
        state_name=state_name,
        states=states,
        features=found,
        matches=best_cells(states, found),
        saturation=saturation(traced),
        ngram_bpc=ngram_bpc,
        ngram_order=best,
        classes=bits_by_class(traced.tokens, surprises.bits, ngram_bits[best]),
        ngram_fitted_on=fitted_on,
        notes=notes_on(model, traced, unseen, symbol_note, run, recall),
        unseen=unseen,
        behind=behind,
    )


def notes_on(
    model: CharLM, traced: Trace, unseen: list[str], symbol_note: str, run: str | None = None, recall_note: str = ""
) -> list[str]:
    """What the figures leave out or the page cannot show, said above them: that the n-gram was fitted on
    the text (`recall_note`, `seen_note`'s words), the text's characters the
    model never saw (`unseen`), with what to do as eval says it (`unseen_advice`), or read as its unknown
    symbol (`symbol_note`, eval's words), and the cell state or gates a GRU or plain RNN does not have.
    Printed above the tables and shown on the page, the same notes."""
    notes = [recall_note] if recall_note else []
    excluded = [token for token in traced.tokens[1:] if token in unseen]  # the first is read, never scored
    if excluded:
        distinct = model.vocab.unseen_counts("".join(excluded))
        shown = model.vocab.names_unseen(distinct)  # eval's wording: '「' 2 times (the model writes '“') ...
        scored = len(traced.tokens) - 1
        notes.append(
            f"{len(excluded):,} unseen characters excluded from every bits figure ({len(distinct):,} distinct, "
            f"never in the model's training text: {shown}); the model reads each as a character it knows "
            "nothing about (on the page: blue, dashed)" + unseen_advice(model.vocab, distinct, scored, "inspect", run)
        )
    if symbol_note:  # read as the unknown symbol, which has bits: in every figure, and eval's words say what they are
        notes.append(symbol_note)
    if traced.cells is None:
        article = "an" if traced.cell == "rnn" else "a"  # an R-N-N, a G-R-U
        notes.append(f"{article} {traced.cell.upper()} has no cell state: the cells section shows its hidden state h")
    if not traced.gates:
        notes.append("a plain RNN has no gates: every step rewrites the whole state")
    return notes


def quoted(text: str) -> str:
    """A span as a Python literal, as repr writes it but for the full-width space: repr escapes that as
    not printable, and it opens every chapter heading of a Chinese novel (`'第八十一回\\u3000占旺相'`)."""
    written = {FULL_WIDTH_SPACE: FULL_WIDTH_SPACE, "'": "\\'"}  # every other character as repr writes it
    return "'" + "".join(written.get(char, repr(char)[1:-1]) for char in text) + "'"


def characters_read(inspection: Inspection) -> str:
    """The text's characters, which the cells' correlations are over, and those its bits are over: the
    first has nothing before it to predict it, and an unseen one is left out. Said once, so that the
    headline and the features ("over 3,000") count one file one way."""
    read, scored = inspection.states.shape[1], inspection.surprise.scored_chars
    return f"{read:,} characters ({scored:,} of them scored)"


def summary(inspection: Inspection) -> str:
    """The page's numbers as plain-text tables (what `charlm inspect` prints)."""
    surprises = inspection.surprise
    best = inspection.ngram_bpc[inspection.ngram_order]
    lines = [
        f"{inspection.model} on {characters_read(inspection)}: {surprises.bpc:.3f} bits per character; "
        + f"best n-gram (order {inspection.ngram_order}) {best:.3f}",
        *([inspection.behind] if inspection.behind else []),
        *inspection.notes,
        "",
        f"n-gram fitted on {inspection.ngram_fitted_on}",
        "n-gram order  " + "  ".join(f"{order:>5}" for order in inspection.ngram_bpc),
        "bpc           " + "  ".join(f"{bpc:5.3f}" for bpc in inspection.ngram_bpc.values()),
        "",
    ]
    # Lined up by display width (tables.table): a Chinese text's first feature names 「」, two cells each.
    over = f"({inspection.state_name}, over {inspection.states.shape[1]:,} characters)"
    rows = [["feature", "layer", "cell", "correlation", "chance", over]]
    for match in inspection.matches:
        if match.correlation is None:
            rows.append([match.feature, "-", "-", "-", "-", "(does not vary in this text)"])
        else:
            said = "" if match.follows else "(no better than chance)"
            correlation, chance = f"{match.correlation:+.3f}", f"{match.chance:.3f}"
            rows.append([match.feature, str(match.layer), str(match.cell), correlation, chance, said])
    lines += [line.rstrip() for line in table(rows, right=(1, 2, 3, 4)).splitlines()]
    lines.append(f"(chance: {CHANCE_SAID})")
    if (few := too_few_correlated(inspection.states)) is not None:
        lines.append(f"({few})")
    if inspection.saturation:
        lines += ["", f"{'gate':<8} {'layer':>5} {'< ' + str(SHUT):>8} {'> ' + str(OPEN):>8}"]
        for name, fractions in inspection.saturation.items():
            for layer, (left, right) in enumerate(fractions.mean(axis=1)):
                lines.append(f"{name:<8} {layer:>5} {left:>8.1%} {right:>8.1%}")
    cell = inspection.trace.cell.upper()
    lines += ["", f"{'class':<16} {'chars':>7} {cell + ' bpc':>9} {'n-gram bpc':>11} {'saved':>7}"]
    for row in inspection.classes:
        saved = row.ngram_bpc - row.model_bpc
        lines.append(f"{row.name:<16} {row.count:>7,} {row.model_bpc:>9.3f} {row.ngram_bpc:>11.3f} {saved:>+7.3f}")
    lines.append(
        f"(saved: the n-gram's bits per character on the class minus the {cell}'s; "
        f"above 0: the {cell} needs fewer bits, below 0: the n-gram does)"
    )
    # each span as its text, which a reader finds in the file, not as token offsets into it
    lines += ["", "hardest spans (most bits per character first):"]
    lines += [f"{bpc:7.2f} bpc  {quoted(''.join(surprises.tokens[a:b]))}" for a, b, bpc in hardest_spans(surprises)]
    return "\n".join(lines)
