"""Sampling's drivers: `generate`, `stream` and interactive co-writing, over the one sampling engine.

Each sample is a row of a `generation.Batch` (the engine the server drives too): the seed is read
once, every row starts from its state, and each step adds one token per row under the decoding
options (`decoding.RowSampler`) until every row has its length or its stop text (`generation.Row`).

Randomness is per sample: sample i draws from its own generator seeded `random_seed + i`, so it is
the same text whether drawn alone or in a batch of many.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import warnings
from collections.abc import Iterator

import torch

from .config import MAX_LOGIT_BIAS, SampleConfig
from .constraints import Constrained, constrain
from .decoding import bias_vector, digits_hint, never_written
from .errors import callers_stacklevel
from .fields import flags_said, from_options, said
from .generation import Batch, Healing, Row, primed_text, row_seeds, stop_texts
from .inference_context import inference
from .model import CharLM
from .unseen import first_named
from .vocab import Vocabulary

# Keywords a Python caller brings from `charlm sample`'s options or other libraries, and what does their job.
SAMPLING_INSTEAD = {
    "ban": "to never write them: logit_bias={c: -100 for c in CHARACTERS}",
    "device": "a model writes where it is: charlm.load(RUN, device='cuda'), or model.to('cuda')",
    "prompt": "the text to go on from is the seed: charlm.generate(model, 'It was', ...)",
    "config": "a SampleConfig's fields are the options: **dataclasses.asdict(config)",
}


def sample_config(options: dict) -> SampleConfig:
    """The keywords of `generate` and `stream` as a SampleConfig, checked at the call: a keyword brought
    from elsewhere (`SAMPLING_INSTEAD`) is refused saying what does its job."""
    return from_options(SampleConfig, options, "sampling option", instead=SAMPLING_INSTEAD)


def form_and_bias(options: SampleConfig, model: CharLM) -> tuple[Constrained | None, torch.Tensor | None]:
    """The options' template (a `Constrained`, None for free text) and logit bias (`bias_vector`) for the
    model's vocabulary, made once for every row of a batch or every turn of a conversation."""
    bias = bias_vector(options.logit_bias, model.vocab)
    return constrain(options, model.vocab, banned=None if bias is None else bias.isneginf()), bias


def batch_from_ids(
    model: CharLM,
    options: SampleConfig,
    ids: torch.Tensor,
    stops: tuple[str, ...],
    form: Constrained | None,
    bias: torch.Tensor | None,
    start: int = 0,
) -> Batch:
    """A batch of `num_samples` rows, each having read `ids` (read once), seeded `random_seed + i`, each
    stopping at `stops` (`stop_texts`): `form` and `bias` as `form_and_bias` gave them, `start` where the
    poem the text began leaves off in the form (`Constrained.begun`)."""
    never = model.vocab.unseen_in(stops[0]) if stops and model.vocab.one_char_per_id else []
    if never:  # allowed, as any stop text is, but likely a mistake: say so
        written = first_named(never, model.vocab.name_unseen)  # as every note names characters: 'ζ' 'é'
        warnings.warn(
            f"{said('stop', options.stop)}: the model never writes {written}, so no sample stops there",
            stacklevel=callers_stacklevel(),
        )
    warn_of_unwritten_bans(options, model.vocab)
    batch = Batch.for_options(model, options)
    ids = ids.to(model.device)
    primed, healed = batch.prime_seed(ids, form, bias)
    for seed in row_seeds(options.random_seed, options.num_samples):
        row = sample_row(options, form, stops, start, Healing.of(model.vocab, healed))
        batch.join(row, primed, options, seed, ids, bias)
    return batch


def warn_of_unwritten_bans(options: SampleConfig, vocab: Vocabulary) -> None:
    """A ban of a character the model never writes holds already (`--ban '0123456789'` on any model) and
    is taken, but said, as a `stop` the model never writes is: what it bans changes nothing. Each is named
    with the forms of it the model writes that are not banned too (`--ban ','` on a novel that writes
    '，' is likely a ban of '，', which is still written; `Vocab.name_unseen`), and a Python key of digits
    with the token id an OpenAI client would have meant by it ('3' is the character 3). Both pages say
    the same of their ban box (charlm/serve/page.js: unwrittenBanWarning)."""
    banned = [key for key, bias in (options.logit_bias or {}).items() if bias <= -MAX_LOGIT_BIAS]
    firsts: dict[str, str] = {}  # each character once: 'Ω' and the ohm sign '\u2126' are one to an nfkc model
    for key in banned:
        if never_written(key, vocab):
            firsts.setdefault(vocab.normalized(key), key)
    unwritten = list(firsts.values())
    if not unwritten:
        return
    held = {vocab.normalized(key) if isinstance(key, str) else vocab.decode([key]) for key in banned}

    def named(key: str) -> str:
        return vocab.name_unseen(vocab.normalized(key), banned=held) + ("" if flags_said() else digits_hint(key))

    warnings.warn(
        f"{'--ban' if flags_said() else 'logit_bias'}: the model never writes {first_named(unwritten, named)}, "
        f"so banning {'it' if len(unwritten) == 1 else 'them'} changes nothing",
        stacklevel=callers_stacklevel(),
    )


def sample_stops(options: SampleConfig, model: CharLM) -> tuple[str, ...]:
    """`options.stop` (one text, or none) as the model writes it (`stop_texts`): read one way by a batch
    and by a conversation, whose every turn keeps it."""
    return stop_texts(model.vocab, [options.stop] if options.stop else [])


def sample_row(
    options: SampleConfig,
    form: Constrained | None,
    stops: tuple[str, ...],
    start: int = 0,
    healing: Healing | None = None,
) -> Row:
    """A sample's row: its length, its stop texts (`stop_texts`) and its own place in the template, `start`
    positions in (the poem its text began: `constraints.Constrained.begun`); `healing`, the seed's last
    piece it writes again (`Healing.of`), for a first turn."""
    return Row(options.length, stops, form=form.cursor(start) if form else None, healing=healing)


def step_pieces(batch: Batch) -> Iterator[list[str]]:
    """Yields each step's new text per row ('' once a row is done) until every row is done. A step
    adds one character with a character vocabulary, a piece (or nothing yet, mid-way through a
    character spelled as bytes) with sentencepiece. The state ends up holding everything produced.
    Each step runs in `inference` and leaves it before yielding: the caller's code between pieces keeps
    its autograd and the model its mode (a context held across a yield holds for the caller too)."""
    while batch.unfinished():
        with inference(batch.model):
            pieces = batch.step()[1]
        yield pieces


def steps_inside(batch: Batch) -> Iterator[list[str]]:
    """`step_pieces` for a caller that holds `inference` itself, around its whole loop (`samples_held`):
    no step enters and leaves it (a lock, the mode's walk of the model, the TF32 flag, once a character)."""
    while batch.unfinished():
        yield batch.step()[1]


def primed_for(model: CharLM, seed: str, options: SampleConfig) -> tuple[str, Batch]:
    """The seed as the model reads it (in its vocabulary's normalization), and the batch that read it
    (`batch_from_ids`); a form goes on with the poem the seed began, if it began one. A character the
    model lacks, or a form it cannot write, is refused here. An empty seed starts at the beginning of a line.
    With a form, the seed's poem is read in the form's marks (`Constrained.marked`: '，' for a typed ','), and
    a last line that begins no poem of it is refused (`Constrained.refuse_unbegun`)."""
    with inference(model):
        form, bias = form_and_bias(options, model)
        read = seed_read(model.vocab, seed, form)  # once: what is shown is what is read, encoded and begun
        text = primed_text(model.vocab, read)
        ids = model.vocab.encode(text, what=said("seed"), already_normalized=True)
        start = form.begun(text, option=said("seed")) if form is not None else 0
        batch = batch_from_ids(model, options, ids, sample_stops(options, model), form, bias, start)
    return read, batch


def seed_read(vocab: Vocabulary, seed: str, form: Constrained | None) -> str:
    """The seed as the model reads it: in its vocabulary's normalization, and with a form its poem in the
    form's marks (`Constrained.marked`: '，' for a typed ',', a mark the model may never have seen)."""
    read = vocab.normalized(seed)
    return form.marked(read) if form is not None else read


def stream_samples(model: CharLM, seed: str = "", options: SampleConfig | None = None) -> Iterator[list[str]]:
    """The seed as the model reads it (in its vocabulary's normalization) for every sample, then each
    step's new text per sample (a character, or a sentencepiece piece). The seed is read here, at the
    call: a character the model lacks, or a form it cannot write, is refused before the first piece is
    asked for. Each step in its own `inference` (`step_pieces`): for a caller whose code between pieces
    may train the model."""
    options = options or SampleConfig()
    read, batch = primed_for(model, seed, options)
    return itertools.chain([[read] * options.num_samples], step_pieces(batch))


@contextlib.contextmanager
def samples_held(
    model: CharLM, seed: str = "", options: SampleConfig | None = None
) -> Iterator[tuple[Iterator[list[str]], list[int | None]]]:
    """`stream_samples` inside one `inference` context, held for the with block, for a caller whose code
    between pieces needs neither autograd nor the model's own mode (`generate`, which only collects;
    `charlm sample`, which prints): its steps enter none of their own. The block's end, or an exception
    in it (Ctrl-C), gives the mode back, as each step's context would. With the steps, each sample's
    generator seed as its row drew it (`Row.seed`), so that an unseeded sample can be made again."""
    options = options or SampleConfig()
    with inference(model):
        read, batch = primed_for(model, seed, options)
        steps = itertools.chain([[read] * options.num_samples], steps_inside(batch))
        yield steps, [row.seed for row in batch.rows]


def generate(model: CharLM, seed: str = "", **options) -> list[str]:
    """`num_samples` texts, each the seed and what followed it; options as `SampleConfig`."""
    config = sample_config(options)
    texts: list[list[str]] = [[] for _ in range(config.num_samples)]
    with samples_held(model, seed, config) as (steps, _):
        gather(steps, texts)
    return ["".join(parts) for parts in texts]


def gather(steps: Iterator[list[str]], texts: list[list[str]]) -> None:
    """Each step's pieces (`stream_samples`) appended to their sample's parts in `texts`, which the
    caller holds: what was made is still there if the steps are cut short (Ctrl-C)."""
    for pieces in steps:
        for parts, piece in zip(texts, pieces):
            parts.append(piece)


def stream(model: CharLM, seed: str = "", **options) -> Iterator[str]:
    """The first sample's text in pieces as it is made: the seed, then each step's new text (a character,
    or a sentencepiece piece; a step that ends mid-character yields nothing). The options are checked at
    the call, not when the first piece is asked for."""
    config = sample_config(options)
    return (pieces[0] for pieces in stream_samples(model, seed, config) if pieces[0])


class Conversation:
    """Interactive co-writing: each turn extends the carried state with the user's text, then the
    model continues it. The state runs on from turn to turn, and of the text only what a form needs."""

    def __init__(self, model: CharLM, options: SampleConfig):
        self.model, self.options = model, dataclasses.replace(options, num_samples=1)
        self.batch: Batch | None = None
        # once for every turn: each writes a poem anew, or goes on with the one the text began
        self.form, self.bias = form_and_bias(self.options, model)
        self.stops = sample_stops(options, model)
        # the end of the text the model read and wrote that the form needs (`constraints.Constrained.kept`),
        # as the model read it ("," for a typed "，" under nfkc); nothing without a form
        self.tail = ""
        self.unkept: list[str] = []  # the pieces read and written since, kept into `tail` at the next turn
        self.read = ""  # the latest turn's text as the model reads it, for the caller to show

    def turn(self, text: str, what: str = "the line") -> Iterator[str]:
        """The model's continuation of `text`, a piece at a time. The text is normalized and encoded
        here, at the call, once: one the model cannot read (a character it never saw) is refused, `what`
        naming it, before it is shown or read; `read` is then the text as the model reads it. An empty
        first turn starts at the beginning of a line.
        With a form, a line break ending `text` is the one typed to send it: where the line stops mid-verse
        (`constraints.Constrained.leaves_verse_open`) it is left out, so the model finishes that verse."""
        text = self.model.vocab.normalized(text)
        text = primed_text(self.model.vocab, text) if self.batch is None else text
        before = self.text_kept()
        if self.form is not None:  # the poem's marks as the form writes them ('，' for a typed ',')
            text = self.form.marked(before + text)[len(before) :]
        if self.form is not None and text.endswith("\n") and self.form.leaves_verse_open(before, text[:-1]):
            text = text[:-1]
        ids = self.model.vocab.encode(text, what=what, already_normalized=True) if text else None
        # the poem the text so far began, checked here (an acrostic it breaks is refused at the call)
        start = self.form.begun(before + text, typed=what) if self.form is not None else 0
        self.read = text
        return self.continued(text, ids, start)

    def text_kept(self) -> str:
        """The text read and written that the form needs (`tail`), the last turn's pieces kept into it once
        a turn, not a piece at a time."""
        if self.form is not None and self.unkept:
            self.tail, self.unkept = self.form.kept(self.tail + "".join(self.unkept)), []
        return self.tail

    def goes_on_with_verse(self, text: str) -> bool:
        """Whether `text`, typed after a turn that stopped mid-verse (Ctrl-C, or --length), goes on with
        that verse: it fits the template there. The line break between the turns is then left out (the
        caller's): kept, it ended the poem and the verse's rest began a new one."""
        if self.form is None:
            return False
        poem = self.form.poem_of(self.text_kept())
        typed = self.model.vocab.normalized(text).removesuffix("\n")
        return bool(poem and typed) and self.form.shape[len(poem)] != "\n" and self.form.fits_shape(typed, len(poem))

    def continued(self, text: str, ids: torch.Tensor | None, start: int = 0) -> Iterator[str]:
        """`turn`'s reading of `text` (its `ids`, None for no text) and writing, `start` positions into
        the template (`constraints.Constrained.begun`), when first asked for."""
        with inference(self.model):
            if self.batch is None:
                self.batch = batch_from_ids(self.model, self.options, ids, self.stops, self.form, self.bias, start)
            else:
                if ids is not None:
                    self.batch.read(ids.to(self.model.device))
                self.batch.restart([sample_row(self.options, self.form, self.stops, start)])
            if text and self.form is not None:
                self.unkept.append(text)
        for pieces in step_pieces(self.batch):
            if self.form is not None:
                self.unkept.append(pieces[0])
            yield pieces[0]
