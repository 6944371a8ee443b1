"""The one sampling engine: a batch of rows, each a sample being made, stepped one token at a time.

`charlm sample`, `charlm.generate` / `charlm.stream`, interactive co-writing and the server all
drive a `Batch`: each step chooses every row's next id (`decoding.RowSampler`: the row's own
options, generator and recent characters), advances the model on all of them at once
(`lstm_step.RowStepper`), and hands each row its text (`Row.take`: one length rule, one stop rule).
Rows join with a primed state and may leave at any step boundary; what a driver does with the text
(print it, collect it, publish it to HTTP streams) is the driver's business. The same loop for one
sample, written out plainly in a few lines, is `reference_sampler.reference_sample`: read it first.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable

import torch

from . import threads
from .config import SampleConfig
from .constraints import Constrained, Cursor
from .decoding import RowSampler, Utf8Rule
from .device import to_host
from .lstm_step import RowStepper
from .model import CharLM, State
from .vocab import Vocabulary

MAX_STEPS_PER_CHAR = 4  # a character spelled as UTF-8 bytes takes up to 4 steps; never loop longer


def row_seeds(random_seed: int | None, count: int) -> list[int]:
    """The generator seeds of `count` samples of one seed text: sample i's is `random_seed + i`, so that
    it draws the same text alone or beside others; unseeded, from a base of its own (a text's samples
    never share a stream), below 2**32: only a seed's low 32 bits count (torch's CPU generator), and the
    server tells it to JavaScript clients, which read a number past 2**53 rounded (another seed, sent back).
    The one rule for `charlm sample`, `charlm.generate` and the server's `seed`.
    Past 2**63 - 1 it wraps to -2**63 on, as torch reads a seed (as 64 bits: the same generator), so that
    each is a seed --random-seed takes back."""
    base = secrets.randbits(32) if random_seed is None else random_seed
    return [(base + i + 2**63) % 2**64 - 2**63 for i in range(count)]


def primed_text(vocab: Vocabulary, read: str) -> str:
    """What a seed or prompt (`read`: as the model reads it) is primed with: an empty one with the start of a
    line (`start_text`), so that the first sample draws what begins a text, not from no state at all. The one
    rule for `charlm sample`, `charlm.generate`, co-writing's first turn and the server's `prompt`."""
    return read or vocab.start_text()


def stop_texts(vocab: Vocabulary, stops: Iterable[str]) -> tuple[str, ...]:
    """The stop texts as the model writes them, in its vocabulary's normalization, as a seed or prompt is
    read: an nfkc model writes "!" for "！", so a stop '！' as typed would never be met. Normalized once, for
    every row of every turn or request. The one rule for `charlm sample --stop`, `charlm.generate` and the
    server's `stop`."""
    return tuple(map(vocab.normalized, stops))


def healed_seed(
    vocab: Vocabulary, ids: torch.Tensor, form: Constrained | None = None, bias: torch.Tensor | None = None
) -> str:
    """The text of a seed's last piece that sampling writes again (token healing), or "" for none.
    A sentencepiece seed that ends mid-word ends in a short piece ("▁th", "杜") that training rarely
    saw followed by the rest of a longer one ("▁the", "杜甫"): read as it is, a model all but never
    went on with "e" or "甫". So the seed is read without its last piece, and the first pieces drawn
    must spell that piece's text again (`Healing`). Not for a character vocabulary, a seed of one
    piece, a newline, a byte piece, or a piece that begins no other (nothing to heal: the same draws);
    nor with a `form` (a template places each piece itself), nor for a last piece `bias` bans (it could
    not be written again). The one rule for `charlm sample`, `charlm.generate` and the server alike."""
    if form is not None or vocab.one_char_per_id or len(ids) < 2:
        return ""
    last = int(ids[-1])
    if bias is not None and bool(bias[last].isneginf()):
        return ""
    text = vocab.token_text(last)
    if not (isinstance(text, str) and vocab.writes_text(last) and text != "\n"):
        return ""
    low, high = vocab.text_index().extending(text)  # the pieces that begin with it: the last one and others?
    return text if high - low > 1 else ""  # else nothing to heal


class Healing:
    """The pieces a row may draw until it has written a seed's `healed_seed` text again: those that
    begin with what is left of it or spell a beginning of it. Steers the sampler as a template's
    cursor does (`decoding.RowSampler`); the row drops the text again (`Row.take`)."""

    def __init__(self, vocab: Vocabulary, text: str):
        self.index = vocab.text_index()  # the vocabulary's, built once: not a loop over it per row
        self.rest = text

    @classmethod
    def of(cls, vocab: Vocabulary, text: str) -> Healing | None:
        """A new row's healing of `text` (`Batch.prime_seed`'s), None where there is none to write again."""
        return cls(vocab, text) if text else None

    @property
    def done(self) -> bool:
        return not self.rest

    def allowed(self) -> torch.Tensor:
        return self.index.healing(self.rest)

    def advance(self, token: int) -> None:
        self.rest = self.rest[len(self.index.texts[token]) :]


class StopRule:
    """Where a row's text ends at a stop text: the one stop matcher, for a stop text split over any
    number of steps (or pieces). `keep`: the text up to and including the stop text is released
    (`charlm sample --stop`); otherwise the text before it (OpenAI's rule), so the end of the text
    that could begin a stop text is held back until it cannot. With several stop texts, the text
    ends at the first to complete (`keep`) or to begin.

    Each stop text is matched by its Knuth-Morris-Pratt automaton: a character costs amortized O(1)
    per stop text, whatever the stop's length (slicing every prefix of a long stop on every step
    would let one request stall a server's whole batch)."""

    def __init__(self, stops: tuple[str, ...], keep: bool):
        self.stops, self.keep = stops, keep
        self.fallback = [failure(stop) for stop in stops]
        self.matched = [0] * len(stops)  # per stop: how much of it the text's end spells
        self.held = ""  # not keep: text not released, for it may begin a stop text

    def feed(self, piece: str) -> tuple[str, bool]:
        """Adds a step's text: (what can be released now, whether a stop text was found)."""
        text, start = self.held + piece, len(self.held)
        ends = []  # where each stop text first ends in `text` (keep) or begins (not keep)
        for s, stop in enumerate(self.stops):
            matched, fallback, length = self.matched[s], self.fallback[s], len(stop)
            for at in range(start, len(text)):
                char = text[at]
                while matched and stop[matched] != char:
                    matched = fallback[matched - 1]
                if stop[matched] == char:
                    matched += 1
                if matched == length:
                    ends.append(at + 1 if self.keep else at + 1 - length)
                    break
            self.matched[s] = matched
        if ends:
            self.held, self.matched = "", [0] * len(self.stops)
            return text[: min(ends)], True
        held = 0 if self.keep else max(self.matched)
        self.held = text[len(text) - held :]
        return text[: len(text) - held], False

    def flush(self) -> str:
        """The held text, released (the row ended for another reason)."""
        held, self.held = self.held, ""
        return held


def failure(stop: str) -> list[int]:
    """The KMP failure function: for each prefix of `stop`, the length of its longest proper border."""
    table, k = [0] * len(stop), 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = table[k - 1]
        if stop[i] == stop[k]:
            k += 1
        table[i] = k
    return table


class Row:
    """One sample being made: its length rule, stop rule and template. A row ends ("length") once
    it has `length` characters or has taken MAX_STEPS_PER_CHAR steps per character asked, or
    ("stop") at a stop text or at the end of its template (`form`, whose place the sampler moves)."""

    def __init__(
        self,
        length: int,
        stops: tuple[str, ...] = (),
        keep_stop: bool = True,
        form: Cursor | None = None,
        healing: Healing | None = None,
    ):
        self.length = length
        self.stop = StopRule(stops, keep_stop) if stops else None
        self.form = form
        self.healing = healing  # a seed's last piece, written again and dropped: `healed_seed`
        self.unwritten = healing.rest if healing is not None else ""
        self.rewrote = ""  # a step's whole text, where it began with the seed's healed text (the server's logprobs)
        self.made = self.steps = 0
        self.piece = ""  # the last step's text, cut to the length
        self.finish_reason: str | None = "length" if length == 0 else None
        self.decode: Callable[[int], str] | None = None  # set by `Batch.join`
        # its generator's seed, set by `Batch.join`: the random_seed that writes it alone (drawn, when unseeded);
        # None for a row that carries on another's generator (`Batch.restart`)
        self.seed: int | None = None

    def take(self, piece: str) -> str:
        """Adds one step's text; returns what the row releases now and ends it at its length or stop."""
        if self.unwritten:  # the seed's healed text, the seed's already: not the sample's
            dropped = min(len(self.unwritten), len(piece))
            self.rewrote = piece
            self.unwritten, piece = self.unwritten[dropped:], piece[dropped:]
            if not piece:
                self.piece = ""
                return ""
        self.steps += 1
        if self.stop is None and self.form is None and len(piece) == 1:  # the common case, kept cheap
            self.piece = piece
            self.made += 1
            if self.made >= self.length:
                self.finish_reason = "length"
            return piece
        piece = self.piece = piece[: self.length - self.made]
        self.made += len(piece)
        released, stopped = self.stop.feed(piece) if self.stop is not None and piece else (piece, False)
        if stopped:
            self.finish_reason = "stop"
            return released
        if self.form is not None and self.form.done:
            self.finish_reason = "stop"  # the template is written: the sample's natural end
        elif self.made >= self.length or self.steps >= MAX_STEPS_PER_CHAR * self.length:
            self.finish_reason = "length"
        if self.finish_reason is not None and self.stop is not None:
            released += self.stop.flush()
        return released


class Batch:
    """The rows being made with one model, packed at the front of its buffers: `rows[p]` is at
    position p. `dtype`: the LSTM step's precision (`SampleConfig.precision`). With `pad` a step
    computes a padded number of rows (`lstm_step.RowStepper`), so that a row's bits never depend on how
    many others there are: a server's rows that come and go, or `--num-samples`' samples."""

    def __init__(
        self,
        model: CharLM,
        capacity: int,
        dtype: torch.dtype = torch.float32,
        window: int = SampleConfig.repetition_window,
        pad: bool = True,
    ):
        self.model = model
        self.stepper = RowStepper(model, capacity, dtype, pad)
        utf8 = Utf8Rule.of(model.vocab)
        self.sampler = RowSampler(capacity, model.config.vocab_size, window, model.device, utf8)
        self.rows: list[Row] = []

    @classmethod
    def for_options(cls, model: CharLM, options: SampleConfig) -> Batch:
        """A batch of `num_samples` rows in the options' precision. Two or more are padded as the server's
        rows are (unpadded, sample i of 3 would draw from other last bits than in a server's request, and a
        draw near a boundary could tip); one sample alone steps its one row, at a lone row's speed."""
        dtype = torch.bfloat16 if options.precision == "bf16" else torch.float32
        return cls(model, options.num_samples, dtype, options.repetition_window, pad=options.num_samples > 1)

    @property
    def logits(self) -> torch.Tensor:
        """Every row's next-token logits, (rows, vocab)."""
        return self.stepper.views(len(self.rows))[1]

    def prime(self, ids: torch.Tensor) -> tuple[torch.Tensor, State]:
        """A text (1-D ids) read alone: the logits after it and the state, for `join`."""
        return self.stepper.prime(ids)

    def prime_seed(
        self, ids: torch.Tensor, form: Constrained | None = None, bias: torch.Tensor | None = None
    ) -> tuple[tuple[torch.Tensor, State], str]:
        """A seed (1-D ids) read alone, as every door reads one: without its last piece where the samples
        write that again (`healed_seed`). The primed state, for `join`, and the healed text, for each
        row's `Healing.of`."""
        healed = healed_seed(self.model.vocab, ids, form, bias)
        return self.prime(ids[:-1] if healed else ids), healed

    def join(
        self,
        row: Row,
        primed: tuple[torch.Tensor, State],
        options: SampleConfig,
        seed: int,
        prompt: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> None:
        """`row` joins at the end, from a primed state, drawing from a generator seeded `seed`;
        `prompt` (ids) is the text the state read, whose end counts for the repetition penalty;
        `bias`, the options' logit bias for the model's vocabulary (`decoding.bias_vector`)."""
        position = len(self.rows)
        self.stepper.load(position, *primed)
        self.sampler.set(position, options, seed, prompt, row.form or row.healing, bias)
        row.decode, row.seed = self.decoder(), seed
        self.rows.append(row)

    def restart(self, rows: list[Row]) -> None:
        """New rows, in the same positions, carry on from the state and generators of the old ones
        (a conversation's next turn)."""
        for position, row in enumerate(rows):
            row.decode = self.decoder()
            self.rows[position] = row
            self.sampler.follow(position, row.form)

    def read(self, ids: torch.Tensor) -> None:
        """Every row reads the text `ids` on from its own state, and its end joins the row's recent
        characters (`RowSampler.read`): a conversation's typed text counts for the repetition penalty."""
        self.stepper.read(len(self.rows), ids)
        self.sampler.read(len(self.rows), ids)

    def decoder(self) -> Callable[[int], str]:
        """Id -> text for one row (a sentencepiece row keeps its own partial UTF-8 character)."""
        vocab = self.model.vocab
        if vocab.one_char_per_id:
            return vocab.chars.__getitem__
        decode = vocab.decoder(1)
        return lambda i: decode(torch.tensor([i]))[0]

    def unfinished(self) -> bool:
        """Whether some row is still being made."""
        return any(row.finish_reason is None for row in self.rows)

    def step(
        self, also: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[str], list[list[float]]]:
        """Every row's next id chosen and the model advanced on them; returns the ids, each row's
        released text ('' for a row already finished), and the rows of `also(ids)` (a 2-d float tensor
        on the ids' device, such as the server's logprobs of them: `[]` without it) read in the ids'
        own read, one wait for a GPU a step, not two."""
        started = time.perf_counter()
        ids = self.sampler.choose(self.logits)
        also_values = also(ids) if also is not None else None
        # read once the model's step is queued: on a GPU it runs while the host writes
        read = ids if also_values is None else torch.cat([ids.to(also_values.dtype), also_values.flatten()])
        on_host = to_host(read)
        self.stepper.step(ids)
        host_ids, also_rows = on_host(), []
        if also_values is not None:  # float64 (float32 on an Apple GPU) holds each id exactly
            width, values = also_values.size(1), host_ids[len(ids) :]
            also_rows = [values[i : i + width] for i in range(0, len(values), width)]
            host_ids = [int(i) for i in host_ids[: len(ids)]]
        self.sampler.advance(host_ids)  # a template's cursors, from this one read
        texts = [
            "" if row.finish_reason is not None else row.take(row.decode(i)) for row, i in zip(self.rows, host_ids)
        ]
        threads.record(time.perf_counter() - started, len(texts), f"sample {len(texts)} rows")
        return ids, texts, also_rows

    def remove(self, position: int) -> None:
        """Row `position` leaves the batch; the last row moves into its place."""
        last = len(self.rows) - 1
        if position != last:
            self.stepper.move(last, position)
            self.sampler.move(last, position)
            self.rows[position] = self.rows[last]
        self.rows.pop()
