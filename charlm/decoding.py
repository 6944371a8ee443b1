"""The decoding policy, row by row: a logit bias, repetition, presence and frequency penalties, a
template's allowed characters, temperature, top-k, top-p, greedy.

Each row of a batch has its own options, its own generator and its own recent characters, kept as
tensors over the rows, so that one `RowSampler.choose` picks every row's next id. Randomness is per
row: a row seeded `seed` draws the same ids whether it runs alone or beside others, and whatever
the others are doing (every door seeds sample i with `random_seed + i`: `generation.row_seeds`).
A temperature schedule (a list of temperatures) is one temperature per row per step. A row
writing into a template (`constraints.Cursor`) draws only among the ids the template allows at its
position: the others are removed before temperature and the rest, so those act inside the set.
A row's logits are changed in this order, vLLM's: its logit bias (OpenAI's `logit_bias`, `bias_vector`)
is added; the repetition penalty (`penalize`), then the presence and frequency penalties
(`penalize_counts`) act on the biased logits; a template's mask and the bans remove ids; temperature,
top-k and top-p shape what is left, or greedy takes its largest. A bias of -100 bans the token
outright, as a template's mask does, whatever the temperature; a greedy row's penalties still act
(OpenAI's and vLLM's penalties apply at temperature 0 too).
A sentencepiece row spells a character in bytes only as UTF-8 allows (`Utf8Rule`).
"""

from __future__ import annotations

import dataclasses
import unicodedata
import weakref
from typing import Protocol, runtime_checkable

import torch

from .config import MAX_LOGIT_BIAS, SampleConfig
from .errors import BiasError, CharLMError
from .vocab import Vocabulary

UNIFORM_BLOCK = 256  # uniforms drawn per generator at a time
LARGEST = torch.finfo(torch.float32).max
# The largest float32 below 1. A uniform just below 1 can round to 1 in float32: its target would then
# be the whole total and land past the last likely id, on one of probability 0 (one a template or top-k
# forbade). Kept at most this, u * total is below the total, and is the float32 just below it where u
# rounded to 1 (total * (1 - 2^-24) rounds to it, for any normal total).
BELOW_ONE = 1 - 2**-24


def penalize(
    logits: torch.Tensor, history: torch.Tensor, penalty: float | torch.Tensor, vocab_size: int
) -> torch.Tensor:
    """CTRL's rule: a recent character's positive logit is divided by the penalty, a negative one
    multiplied, so it always becomes less likely. `history` (rows, window) holds each row's recent
    ids (`vocab_size` in an empty slot); `penalty` is one number or one per row, shaped (rows, 1)."""
    seen = torch.zeros(logits.size(0), vocab_size + 1, dtype=torch.bool, device=logits.device)
    seen.scatter_(1, history, True)
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen[:, :vocab_size], penalized, logits)


def penalize_counts(
    logits: torch.Tensor, counts: torch.Tensor, presence: torch.Tensor, frequency: torch.Tensor
) -> torch.Tensor:
    """OpenAI's presence and frequency penalties: logit[j] -= count[j] * frequency + (count[j] > 0) * presence,
    where `counts` (rows, vocab) holds how often each row's sample has written each id, and `presence`,
    `frequency` are one per row, shaped (rows, 1). Only what the sample wrote counts, not its prompt (or
    seed): OpenAI counts the tokens sampled so far, and vLLM its output alone, so a prompt's words are
    free to be written again; the repetition penalty's window is what counts the prompt's end."""
    return logits - counts * frequency - (counts > 0) * presence


def as_uniforms(fresh: torch.Tensor) -> torch.Tensor:
    """A generator's float64 uniforms as the float32 ones `inverse_cdf` takes: at most BELOW_ONE."""
    return fresh.float().clamp_(max=BELOW_ONE)


def inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One id per row of (unnormalized) probabilities, by inverting its CDF at that row's uniform (rows, 1),
    in probs' dtype and at most BELOW_ONE (`as_uniforms`), so that it lands on a likely id."""
    cdf = probs.cumsum(dim=-1)
    target = uniform * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=probs.size(-1) - 1)


def nucleus(probs: torch.Tensor, top_p: float | torch.Tensor) -> torch.Tensor:
    """Keep the smallest set of likeliest characters whose total probability reaches top_p (one
    number, or one per row shaped (rows, 1))."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the likelier characters
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter_(1, order, sorted_probs)


def as_float32(value: float) -> torch.Tensor:
    """A number as the float32 a tensor op makes of it (inf beyond float32's range, not an error)."""
    return torch.tensor(value, dtype=torch.float64).float()


def bias_vector(logit_bias: dict[str | int, float] | None, vocab: Vocabulary) -> torch.Tensor | None:
    """A sample's `logit_bias` (`SampleConfig.logit_bias`) as the number added to each id's logit,
    (vocab,): -inf for a ban (-100), so that a banned token is never drawn, at any temperature.
    Keys are token ids, or a character model's characters. None when nothing is biased."""
    if not logit_bias:
        return None
    vector, keys = torch.zeros(len(vocab)), {}
    for key, bias in logit_bias.items():
        if bias <= -MAX_LOGIT_BIAS and never_written(key, vocab):
            continue  # a ban of what the model never writes already holds: --ban '0123456789' on any model
        token = token_id(key, vocab)
        if token in keys:
            raise BiasError(
                f" gives token {token} twice ({keys[token]!r} and {key!r} are the same to this model); give it once"
            )
        keys[token] = key
        vector[token] = float("-inf") if bias <= -MAX_LOGIT_BIAS else bias
    if bool(vector.isneginf().all()):
        raise BiasError(" bans every token the model has; leave it at least one to write")
    if writes_no_text(vector, vocab):
        raise BiasError(
            " bans every token that writes text (what it leaves, the unknown symbol and control pieces, writes only "
            "\ufffd or nothing); leave it at least one to write"
        )
    return vector


def writes_no_text(bias: torch.Tensor, vocab: Vocabulary) -> bool:
    """Whether `bias` leaves only tokens that write no text (`Vocabulary.writes_text`: the unknown symbol,
    control pieces). A sample would be only those: a ban that leaves them is refused as one of every token."""
    left = (~bias.isneginf()).nonzero().flatten().tolist()
    return not any(vocab.writes_text(token) for token in left)


def characters(text: str) -> list[str]:
    """The characters of `text` as a reader sees them: a combining mark stays with the character
    before it, so `--ban` of a decomposed 'é' (a macOS terminal's) is one key, not 'e' and a mark."""
    chars: list[str] = []
    for c in text:
        if chars and unicodedata.combining(c):
            chars[-1] += c
        else:
            chars.append(c)
    return chars


def told_apart(key: str, char: str) -> tuple[str, str]:
    """`key` and the model's `char` for it, quoted; with their code points where they look alike (one is
    the other composed: 'e' and two acutes, whose NFC is 'é' and one), lest a message say "'é́' is 'é́'"."""
    if unicodedata.normalize("NFC", key) != unicodedata.normalize("NFC", char):
        return repr(key), repr(char)
    return (f"{text!r} ({' '.join(f'U+{ord(c):04X}' for c in text)})" for text in (key, char))


def never_written(key: str | int, vocab: Vocabulary) -> bool:
    """Whether `key` is a character a character model does not have. (One its normalization turns into
    several, '…' into '...' under nfkc, is not: the model writes those, and `token_id` says so.)"""
    if isinstance(key, int) or not vocab.one_char_per_id or len(characters(key)) != 1:
        return False
    char = vocab.normalized(key)
    return len(char) == 1 and not vocab.knows(char)


def digits_hint(key: str) -> str:
    """What to say of a key of digits, which is a character ('3'), not the token id an OpenAI client means by it."""
    return f" (a token id is an int: {int(key)}, not {key!r})" if key.isascii() and key.isdigit() else ""


def token_id(key: str | int, vocab: Vocabulary) -> int:
    """The id a `logit_bias` key names: a token id as it is, a character as the vocabulary has it."""
    if isinstance(key, int):
        if not 0 <= key < len(vocab):
            raise BiasError(f": token id {key} is not one of the model's (0 to {len(vocab) - 1})")
        return key
    if not vocab.one_char_per_id:
        pieces = f": {key!r}: a sentencepiece model's tokens are pieces, not characters"
        raise BiasError(
            f"{pieces}; give token ids",
            f"{pieces}; --ban works on character models only: drop it (Python's logit_bias takes token ids)",
        )
    hint = digits_hint(key)
    if len(characters(key)) != 1:
        raise BiasError(f" keys are single characters or token ids, not {key!r}{hint}")
    char = vocab.normalized(key)
    if len(char) == 1 and vocab.knows(char):
        return vocab.index[char]
    if len(char) == 1:
        raise BiasError(f": the model never writes {vocab.name_unseen(char)}{hint}; leave it out")
    if char != key:  # the model writes it as several characters: ban those, if that is what is meant
        key_shown, char_shown = told_apart(key, char)
        raise BiasError(
            f": {key_shown} is {char_shown} to this model (its text is {vocab.normalize.upper()}-normalized); "
            "give those characters instead"
        )
    shown = " ".join(map(repr, char))
    several = f": {key!r} is {len(char)} characters to this model ({shown})"
    raise BiasError(
        f"{several}; give them one by one",
        f"{several}; give the one to ban alone (a combining mark stands alone first in --ban)",
    )


# A row's place in a UTF-8 character spelled as byte pieces: (bytes still to come, the range of the next).
# State 0 is between characters; 4-7 are the lead bytes whose next byte has a narrower range (no overlong
# or surrogate forms, nothing past U+10FFFF).
UTF8_STATES = ((0, 0x80, 0xBF), (1, 0x80, 0xBF), (2, 0x80, 0xBF), (3, 0x80, 0xBF))
UTF8_STATES += ((2, 0xA0, 0xBF), (2, 0x80, 0x9F), (3, 0x90, 0xBF), (3, 0x80, 0x8F))
UTF8_LEADS = {0xE0: 4, 0xED: 5, 0xF0: 6, 0xF4: 7}


def utf8_state_after(lead: int) -> int | None:
    """The state after a byte that starts a character (0 for ASCII), or None for one that cannot."""
    if lead < 0x80:
        return 0
    if lead in UTF8_LEADS:
        return UTF8_LEADS[lead]
    for first, last, following in ((0xC2, 0xDF, 1), (0xE1, 0xEF, 2), (0xF1, 0xF3, 3)):
        if first <= lead <= last:
            return following
    return None  # a continuation byte, or one UTF-8 never uses


class Utf8Rule:
    """Which pieces keep a byte-fallback model's text valid UTF-8: after a lead byte only the bytes that
    can follow it, between characters no stray continuation byte, and never <unk> (byte fallback spells
    every character, so it never occurred in training). Left free, a model draws those, and `charlm sample`
    prints a U+FFFD wherever one breaks a character: 22 in 300 characters of a young Chinese model.
    `allowed[state]` is the ids allowed in a state (vocab,), `following[state, id]` the state after one."""

    def __init__(self, pieces: list[bytes], unknown_id: int):
        states, vocab_size = len(UTF8_STATES), len(pieces)
        self.allowed = torch.zeros(states, vocab_size, dtype=torch.bool)
        self.following = torch.zeros(states, vocab_size, dtype=torch.long)
        self.allowed[0] = True  # between characters, any whole piece
        self.allowed[0, unknown_id] = False
        for token, piece in enumerate(pieces):
            if len(piece) != 1:
                continue
            byte = piece[0]
            after = utf8_state_after(byte)
            self.allowed[0, token] = after is not None
            self.following[0, token] = after or 0
            for state, (left, low, high) in enumerate(UTF8_STATES[1:], 1):
                self.allowed[state, token] = low <= byte <= high
                self.following[state, token] = left - 1

    @classmethod
    def of(cls, vocab: Vocabulary) -> Utf8Rule | None:
        """The rule for a sentencepiece vocabulary that spells characters as bytes; None for any other."""
        spelled = vocab.byte_pieces()
        return None if spelled is None else cls(*spelled)

    def to(self, device: torch.device) -> Utf8Rule:
        self.allowed, self.following = self.allowed.to(device), self.following.to(device)
        return self


# Each host mask's copies, by the mask's id, on the devices that asked for it (`on_device`).
DEVICE_COPIES: dict[int, dict[torch.device, torch.Tensor]] = {}


def on_device(mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A cursor's mask (a host tensor, read only) on `device`, copied once for as long as the mask lives,
    whichever sampler asks: a template keeps its masks per position (`constraints.Constrained.allowed`),
    a vocabulary its latest healing masks (`pieces.TextIndex.healing`), so a step copies none it has
    seen (a mask copied from the host each step is, on a GPU, a wait). Kept with the mask, not with a
    sampler: a sampler's own copies would live on after it as long as the mask, one set per sample, and
    on a CPU, where the copy is the mask, would keep the mask for good."""
    copies = DEVICE_COPIES.get(id(mask))
    if copies is None:
        copies = DEVICE_COPIES[id(mask)] = {}
        weakref.finalize(mask, DEVICE_COPIES.pop, id(mask), None)  # its id may be another's once it is gone
    there = copies.get(device)
    if there is None:
        there = mask.to(device)
        if there is not mask:  # on its own device the copy is the mask: kept here, the mask would never go
            copies[device] = there
    return there


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """Which of `choose`'s stages the live rows need, decided on the host from their options once, not
    every step: again only when a row joins, moves or leaves (a temperature schedule's step is read on
    the device, `RowSampler.scheduled`, and changes no plan). What a step leaves out changes no row's id:
    a bias of none, a penalty of 1, presence and frequency penalties of 0, the uniforms of rows that are
    greedy for good (the option `greedy=True`, or a fixed temperature that is 0 in float32)."""

    rows: int
    biased: bool  # some row has a logit bias
    penalized: bool  # some row's repetition penalty is not 1: the rows' recent ids are kept
    counted: bool  # some row's presence or frequency penalty is not 0: the rows' counts of ids are kept
    largest_k: int  # the largest top-k below the vocabulary's size, 0 when no row has one
    nucleus: bool  # some row has a top-p
    scheduled: bool  # some row has a temperature schedule
    greedy: str  # "none", "some" or "all" of the rows take their likeliest id this step
    greedy_rows: torch.Tensor  # (rows,) on the device: which
    divisor: torch.Tensor  # (rows, 1) on the device: each row's temperature (1 for a greedy row)


@runtime_checkable
class Steer(Protocol):
    """What keeps a row to some ids for a while, all `RowSampler` reads of it: a template's place
    (`constraints.Cursor`) or a seed's last piece written again (`generation.Healing`)."""

    @property
    def done(self) -> bool: ...  # the row is free again
    def allowed(self) -> torch.Tensor: ...  # (vocab,) bool on the host: the ids it may take now
    def advance(self, token: int) -> None: ...  # the row took `token`


class RowSampler:
    """The decoding policy of rows that come and go: `set` a row's options, seed and prompt, `choose`
    every live row's next id, `move` a row when another leaves. Rows 0..rows-1 are the live ones.

    What a step computes with lives on `device`, the model's: written when a row joins, moves or starts
    a conversation's next turn, and read there in place (a temperature schedule too, each row's written
    once: `scheduled`), so a GPU's step copies nothing from the host per character and never waits for
    the GPU. The options (temperature, top-k, top-p, penalties) and each row's place in its block of
    uniforms are kept on the host too, where `choose` decides which steps a batch needs and when a row's
    uniforms run out. On the CPU the two are the same tensors."""

    def __init__(
        self,
        capacity: int,
        vocab_size: int,
        window: int = SampleConfig.repetition_window,
        device: torch.device | str = "cpu",
        utf8: Utf8Rule | None = None,
    ):
        self.vocab_size, self.window, self.device = vocab_size, window, torch.device(device)
        self.utf8 = utf8.to(self.device) if utf8 is not None else None  # `Utf8Rule`: byte pieces kept to UTF-8
        self.temperature = torch.ones(capacity, 1)  # a row's own, or its schedule's first; 0 means greedy
        self.top_k = torch.full((capacity, 1), vocab_size, dtype=torch.long)
        self.top_p = torch.full((capacity, 1), float("inf"))  # inf: no nucleus
        self.penalty = torch.ones(capacity, 1)
        self.presence = torch.zeros(capacity, 1)  # OpenAI's presence_penalty
        self.frequency = torch.zeros(capacity, 1)  # OpenAI's frequency_penalty
        self.used = [UNIFORM_BLOCK] * capacity  # uniforms each row took from its block, counted on the host
        self.biased = torch.zeros(capacity, dtype=torch.bool)  # whether a row has a logit bias
        self.generators: list[torch.Generator | None] = [None] * capacity
        self.schedules: list[tuple[float, ...] | None] = [None] * capacity  # a temperature per step, cycled
        # The schedules on the device, read there at each row's step (`scheduled`): made when a row first has one.
        self.schedule_table: torch.Tensor | None = None  # (capacity, longest schedule) of float32 temperatures
        self.schedule_length = torch.zeros(capacity, dtype=torch.long, device=self.device)  # 0: none
        self.schedule_step = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.cursors: list[Steer | None] = [None] * capacity  # a row's place in its template, or its seed's healing
        self.constrained = False  # whether the last `choose` kept rows to their templates: see `advance`
        self.anything = torch.ones(vocab_size, dtype=torch.bool, device=self.device)  # a free row's mask
        # The host's rows above that the step reads, by name, as they are on the device.
        options = ("temperature", "top_k", "top_p", "penalty", "presence", "frequency")
        self.on_device = {name: self.twin(getattr(self, name)) for name in options}
        # Each row's recent ids (vocab_size: an empty slot), where the next goes, and its uniforms.
        self.history = torch.full((capacity, window), vocab_size, dtype=torch.long, device=self.device)
        self.position = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.block = torch.zeros(capacity, UNIFORM_BLOCK, device=self.device)  # float32, as `inverse_cdf` takes them
        # `used` where several rows draw at once, read there in place; a lone row's uniform is taken by
        # the host's count alone, and this is written again when rows next draw together (`planned`).
        self.used_there = torch.full((capacity,), UNIFORM_BLOCK, dtype=torch.long, device=self.device)
        self.lone_counted = False  # whether a lone row took uniforms `used_there` has not counted
        self.indices = torch.arange(capacity, device=self.device)
        self.utf8_state = torch.zeros(capacity, dtype=torch.long, device=self.device)  # a `Utf8Rule` state
        # Each row's bias and bans, (capacity, vocab): made when a row first has a bias (a batch of
        # thousands of samples over a big vocabulary would otherwise hold two logits' worth for nothing).
        self.bias: torch.Tensor | None = None
        self.banned: torch.Tensor | None = None
        # How often each row's sample wrote each id, (capacity, vocab) in float32 (exact to 2^24, past
        # MAX_LENGTH): made when a row first has a presence or frequency penalty, as the bias is; a step
        # adds its ids only while some live row has one.
        self.counts: torch.Tensor | None = None
        # Every tensor above with a row per sample (dim 0: capacity), host's and device's: `move` moves them all.
        self.row_tensors = [self.temperature, self.top_k, self.top_p, self.penalty, self.presence, self.frequency]
        self.row_tensors += [self.biased]
        self.row_tensors += [self.history, self.position, self.block, self.used_there, self.utf8_state]
        self.row_tensors += [self.schedule_length, self.schedule_step]
        self.row_tensors += [twin for name, twin in self.on_device.items() if twin is not getattr(self, name)]
        self.plan: StepPlan | None = None  # None: to be decided at the next step
        self.spare = 0  # steps every live row can still draw from its block of uniforms (0: look)

    def twin(self, host: torch.Tensor) -> torch.Tensor:
        """`host`'s copy on the device, which `publish` keeps equal to it (on the CPU, `host` itself)."""
        return host if self.device.type == "cpu" else host.to(self.device)

    def publish(self, rows: slice | int, *names: str) -> None:
        """The host's new values of `rows` of the named options (all, if none named) copied to the device."""
        for name in names or self.on_device:
            twin, host = self.on_device[name], getattr(self, name)
            if twin is not host:
                twin[rows].copy_(host[rows], non_blocking=True)  # pageable: the host may change it on return

    def set(
        self,
        row: int,
        options: SampleConfig,
        seed: int,
        prompt: torch.Tensor,
        cursor: Steer | None = None,
        bias: torch.Tensor | None = None,
    ) -> None:
        """Row `row` starts a sample with these options, drawing from a generator seeded `seed`, after
        the text `prompt` (ids; its last characters count for the repetition penalty, none of them for
        the presence and frequency penalties), within the template of `cursor` if any (or within a healed
        seed's pieces: `generation.Healing` steers it as a cursor does), its logits biased by `bias`
        (`bias_vector`) if any."""
        if options.repetition_window != self.window:
            raise CharLMError(f"repetition_window must be {self.window} here, not {options.repetition_window}")
        schedule = options.temperature if isinstance(options.temperature, tuple) else None
        self.set_schedule(row, None if options.greedy else schedule)
        self.follow(row, cursor)
        self.temperature[row] = 0.0 if options.greedy else as_float32(options.temperature_at(0))
        self.top_k[row] = min(options.top_k or self.vocab_size, self.vocab_size)
        self.top_p[row] = options.top_p if options.top_p is not None and options.top_p < 1 else float("inf")
        self.penalty[row] = options.repetition_penalty
        self.presence[row] = options.presence_penalty
        self.frequency[row] = options.frequency_penalty
        self.used[row] = UNIFORM_BLOCK
        self.used_there[row] = UNIFORM_BLOCK
        self.publish(row)
        recent = prompt[-self.window :]
        self.history[row] = self.vocab_size
        self.history[row, : recent.numel()] = recent
        self.position[row] = recent.numel() % self.window
        self.generators[row] = torch.Generator().manual_seed(seed)
        self.set_bias(row, bias)
        if self.counts is None and (options.presence_penalty != 0 or options.frequency_penalty != 0):
            self.counts = torch.zeros(len(self.biased), self.vocab_size, device=self.device)
            self.row_tensors.append(self.counts)
        self.plan = None

    def set_bias(self, row: int, bias: torch.Tensor | None) -> None:
        """Row `row`'s logits get `bias` added (None: nothing); its -inf entries are its bans."""
        self.biased[row] = bias is not None
        if bias is None and self.bias is None:
            return
        if self.bias is None:
            self.bias = torch.zeros(len(self.biased), self.vocab_size, device=self.device)
            self.banned = torch.zeros(len(self.biased), self.vocab_size, dtype=torch.bool, device=self.device)
            self.row_tensors += [self.bias, self.banned]
        bias = torch.zeros(self.vocab_size) if bias is None else bias
        banned = bias.isneginf()
        self.banned[row] = banned
        self.bias[row] = bias.masked_fill(banned, 0.0)  # bans are a mask, after the penalty's clamp

    def set_schedule(self, row: int, schedule: tuple[float, ...] | None) -> None:
        """Row `row`'s temperature schedule (None: its one temperature), written to the device once."""
        self.schedules[row] = schedule
        self.schedule_length[row] = 0 if schedule is None else len(schedule)
        self.schedule_step[row] = 0
        if schedule is None:
            return
        longest = 0 if self.schedule_table is None else self.schedule_table.size(1)
        if len(schedule) > longest:  # a longer schedule than any before: the table widens
            table = torch.zeros(len(self.schedules), len(schedule), device=self.device)
            if self.schedule_table is not None:
                table[:, :longest] = self.schedule_table
            self.row_tensors = [tensor for tensor in self.row_tensors if tensor is not self.schedule_table] + [table]
            self.schedule_table = table
        temperatures = torch.stack([as_float32(temperature) for temperature in schedule])
        self.schedule_table[row, : len(schedule)] = temperatures.to(self.device)

    def follow(self, row: int, cursor: Steer | None) -> None:
        """Row `row` writes a text of its own from now on: into the template of `cursor` (None: free text),
        from the start of a character (a new row's decoder drops the bytes of one left unfinished), its
        counts for the presence and frequency penalties at 0 (a conversation's earlier replies are its
        next reply's prompt, which those penalties leave out)."""
        self.cursors[row] = cursor
        self.utf8_state[row] = 0
        if self.counts is not None:
            self.counts[row] = 0

    def read(self, rows: int, ids: torch.Tensor) -> None:
        """Rows 0..rows-1 read the text `ids` on (a conversation's typed turn, on the sampler's device): its
        last characters join each row's recent ones for the repetition penalty, as a prompt's do in `set`,
        so a reply's window is the one a sample of the whole text would have; the presence and frequency
        penalties leave it out, as they leave out a prompt."""
        recent = ids[-self.window :]
        slots = (self.position[:rows].unsqueeze(1) + torch.arange(recent.numel(), device=self.device)) % self.window
        self.history[self.indices[:rows].unsqueeze(1), slots] = recent
        self.position[:rows] = (self.position[:rows] + recent.numel()) % self.window

    def move(self, src: int, dst: int) -> None:
        """Row `src` takes position `dst` (`generation.Batch.remove`): its options, state and generator."""
        for tensor in self.row_tensors:
            tensor[dst] = tensor[src]
        for values in (self.generators, self.schedules, self.cursors, self.used):
            values[dst] = values[src]
        self.plan = None

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Next ids (rows,) of rows 0..rows-1 from their logits (rows, vocab), on the logits' device; the
        ids join each row's recent characters. On a GPU nothing here waits for it: a template's cursors
        read the ids from the caller's one read of them, `advance`, before the next choice."""
        rows = logits.size(0)
        plan = self.plan if self.plan is not None and self.plan.rows == rows else self.planned(rows)
        logits = logits.float()
        if plan.biased:
            logits = logits + self.bias[:rows]
        if plan.penalized:
            penalized = penalize(logits, self.history[:rows], self.on_device["penalty"][:rows], self.vocab_size)
            logits = penalized.clamp(-LARGEST, LARGEST)
        if plan.counted:  # finite stays finite: 2 + 2 * MAX_LENGTH is far below float32's spacing near LARGEST
            on_device = self.on_device
            logits = penalize_counts(
                logits, self.counts[:rows], on_device["presence"][:rows], on_device["frequency"][:rows]
            )
        allowed = self.allowed(rows)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        banned = self.banned[:rows] if plan.biased else None
        if self.utf8 is not None:
            invalid = ~self.utf8.allowed[self.utf8_state[:rows]]
            if banned is not None:  # a row whose bans leave no valid piece keeps its bans alone
                invalid = torch.where((invalid | banned).all(dim=-1, keepdim=True), banned, invalid | banned)
            banned = invalid
        if banned is not None:
            logits = logits.masked_fill(banned, float("-inf"))
        if plan.greedy == "all" and not plan.scheduled:
            ids = logits.argmax(dim=-1)  # greedy for good: these rows' uniforms are never used
        else:
            greedy_rows, divisor = self.scheduled(rows) if plan.scheduled else (plan.greedy_rows, plan.divisor)
            drawn = self.drawn(logits, plan, divisor)
            some_greedy = plan.greedy != "none" or plan.scheduled  # a schedule's may be 0 in float32
            ids = torch.where(greedy_rows, logits.argmax(dim=-1), drawn) if some_greedy else drawn
        if plan.penalized:  # a row's recent ids serve its penalty alone, and one of 1 changes nothing
            self.history[self.indices[:rows], self.position[:rows]] = ids
            self.position[:rows] = (self.position[:rows] + 1) % self.window
        if plan.counted:
            self.counts[self.indices[:rows], ids] += 1
        if self.utf8 is not None:
            self.utf8_state[:rows] = self.utf8.following[self.utf8_state[:rows], ids]
        self.constrained = allowed is not None
        return ids

    def drawn(self, logits: torch.Tensor, plan: StepPlan, divisor: torch.Tensor) -> torch.Tensor:
        """Each row's id drawn from its logits under its temperature (`divisor`, (rows, 1)), top-k and top-p
        (every row draws, a greedy one too, so that its uniforms keep their place)."""
        rows = plan.rows
        # Scaled from the row's largest logit down, so that a tiny temperature makes -inf of the others
        # (the largest is drawn: greedy), never inf - inf = NaN; a huge one flattens, never NaN either.
        shifted = logits - logits.amax(dim=-1, keepdim=True)
        scaled = shifted / divisor
        if plan.largest_k:
            top_k = self.on_device["top_k"][:rows]
            kth = torch.topk(scaled, plan.largest_k, dim=-1).values.gather(1, top_k.clamp(max=plan.largest_k) - 1)
            scaled = scaled.masked_fill((scaled < kth) & (top_k < self.vocab_size), float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        if plan.nucleus:
            probs = nucleus(probs, self.on_device["top_p"][:rows])
        return inverse_cdf(probs, self.uniforms(rows))

    def planned(self, rows: int) -> StepPlan:
        """The plan of a step of `rows` rows (`StepPlan`), from the options on the host; kept for the next."""
        limited = self.top_k[:rows] < self.vocab_size
        greedy = self.temperature[:rows] == 0
        temperature = self.on_device["temperature"][:rows]
        greedy_there = temperature == 0
        self.plan = StepPlan(
            rows=rows,
            biased=self.bias is not None and bool(self.biased[:rows].any()),
            penalized=bool((self.penalty[:rows] != 1).any()),
            counted=bool((self.presence[:rows] != 0).any() or (self.frequency[:rows] != 0).any()),
            largest_k=int(self.top_k[:rows][limited].max()) if bool(limited.any()) else 0,
            nucleus=bool(torch.isfinite(self.top_p[:rows]).any()),
            scheduled=any(schedule is not None for schedule in self.schedules[:rows]),
            greedy="all" if bool(greedy.all()) else "some" if bool(greedy.any()) else "none",
            greedy_rows=greedy_there.squeeze(1),
            divisor=torch.where(greedy_there, 1.0, temperature).clamp(max=LARGEST),
        )
        self.spare = 0  # rows may have joined: look at their blocks
        if rows > 1 and self.lone_counted:  # a lone row counted its uniforms on the host alone
            self.used_there[:rows].copy_(torch.tensor(self.used[:rows]), non_blocking=True)
            self.lone_counted = False
        return self.plan

    def advance(self, ids: list[int]) -> None:
        """The templates' cursors move past the ids `choose` chose, read on the host by the caller, which
        reads them anyway (to decode them): one read of the device a step, not two."""
        if self.constrained:
            for cursor, token in zip(self.cursors, ids):
                if cursor is not None:
                    cursor.advance(token)
            self.constrained = False

    def allowed(self, rows: int) -> torch.Tensor | None:
        """Which ids each row may take (rows, vocab) on the device, or None when no row writes into a
        template. A row whose template is done is free (it is about to end)."""
        cursors = self.cursors[:rows]
        if all(cursor is None or cursor.done for cursor in cursors):
            return None
        masks = [self.anything if c is None or c.done else on_device(c.allowed(), self.device) for c in cursors]
        return masks[0].unsqueeze(0) if rows == 1 else torch.stack(masks)

    def scheduled(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's greedy rows (rows,) and divisors (rows, 1), as `planned` makes them, where some row
        has a temperature schedule: its temperature read from its schedule at its step, both on the
        device, so that a step copies nothing from the host (a copy a character)."""
        length, step = self.schedule_length[:rows], self.schedule_step[:rows]
        at = (step % length.clamp(min=1)).unsqueeze(1)
        fixed = self.on_device["temperature"][:rows]
        temperature = torch.where((length > 0).unsqueeze(1), self.schedule_table[:rows].gather(1, at), fixed)
        step += 1
        greedy = temperature == 0
        return greedy.squeeze(1), torch.where(greedy, 1.0, temperature).clamp(max=LARGEST)

    def uniforms(self, rows: int) -> torch.Tensor:
        """This step's uniform of each row (rows, 1), on the device, refilling a row's block from its generator
        (on the host, which knows when, without asking the device). A lone row's is a view of its block,
        at the host's count: no gather, and no count kept on the device."""
        used = self.used
        if not self.spare:  # some row's block may be used up: refill those, and count the steps until the next
            for row in range(rows):
                if used[row] == UNIFORM_BLOCK:
                    fresh = torch.rand(UNIFORM_BLOCK, generator=self.generators[row], dtype=torch.float64)
                    self.block[row].copy_(as_uniforms(fresh), non_blocking=True)
                    used[row] = 0
                    self.used_there[row] = 0
            self.spare = UNIFORM_BLOCK - max(used[:rows])
        self.spare -= 1
        if rows == 1:
            taken = used[0]
            used[0] = taken + 1
            self.lone_counted = True
            return self.block[:1, taken : taken + 1]
        used_there = self.used_there[:rows]
        drawn = self.block[:rows].gather(1, used_there.unsqueeze(1))
        used_there += 1
        for row in range(rows):
            used[row] += 1
        return drawn
