"""Continuous batching: every sample of every request to one model is a row of one batch.

The engine runs in a thread of its own and drives the one sampling engine (`generation.Batch`, what
`charlm sample` drives too): each step chooses the next token of every row, advances them all with
one batched model step, and applies each row's length and stop rules. This module only schedules:
a request joins or leaves at a step boundary (its prompt was primed beforehand, alone, so joining
costs a copy of the state; a finished or cancelled row is removed by moving the last row into its
place), and what the rows made is published. A row draws from its own generator and a step computes
a padded number of rows (`lstm_step.padded_rows`), so a seeded sample is the same text whatever else
is running.

Output is handed out in batches (`publish`), every `chunk_interval` seconds, and at once when a row
finishes or makes its first text: one call per batch, not one per character, keeps the cost of
many streams low. answers.py turns those updates into responses.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from ..config import SampleConfig
from ..constraints import Constrained
from ..device import has_float64
from ..generation import Batch, Healing, Row
from ..inference_context import inference
from ..model import CharLM, State
from ..scoring import prompt_logprobs, top_logprobs
from ..threads import pin_this_thread
from .token_labels import token_bytes, token_label

# A step of fewer live rows than this runs on one torch thread whatever --threads says: its products are
# too small to share, and a second OpenMP thread only waits (spinning, on a busy machine, for a core).
# Measured: docs/benchmarks.md, "The server's threads".
PARALLEL_ROWS = 16


@dataclasses.dataclass
class Token:
    """One step's text with the model's log-probability of it and its likeliest alternatives."""

    text: str
    logprob: float | None  # None for a prompt's first character: nothing predicted it
    top: list[tuple[str, float]] | None  # None where nothing predicted the text
    drawn: str | None = None  # the text its piece writes, where a stop cut `text` short of it
    byte: bool = False  # a byte piece: alone, perhaps part of a character


class Characters:
    """A character a sentencepiece model spells as byte pieces is one token: its text the character,
    its logprob the sum of its bytes' (the model's probability of the character), its alternatives
    those before its first byte. Each byte alone as an entry of its own would have no text (or U+FFFD in
    an echoed prompt), which `tokens` and `text_offset` cannot say and `top_logprobs` would key as ""."""

    def __init__(self):
        self.partial: Token | None = None  # the bytes so far of a character not yet whole

    def join(self, token: Token, wrote: str) -> Token | None:
        """`token` of a step that wrote `wrote`; None while it is a byte of a character not yet whole."""
        first = self.partial
        if first is not None:
            both = None if first.logprob is None or token.logprob is None else first.logprob + token.logprob
            token = Token(token.text, both, first.top, byte=token.byte)
        if token.byte and not wrote:
            self.partial = token
            return None
        self.partial = None
        token.text = wrote
        return token


@dataclasses.dataclass(eq=False)
class Job:
    """A prompt to continue `len(seeds)` times: what a request asks of the engine, primed already.

    `options` gives the decoding (temperature, top-k, top-p, the penalties, greedy); sample i
    draws from a generator seeded `seeds[i]`; `form`, the template compiled for the model, if any:
    each sample walks it with its own cursor; `bias`, the logit bias for the model's vocabulary
    (`decoding.bias_vector`), if any; `form_start`, where in it the prompt's poem leaves off
    (`constraints.Constrained.begun`). `sink` is the caller's: it routes the updates."""

    prompt: torch.Tensor  # ids, for the repetition penalty's window
    logits: torch.Tensor | None  # after the prompt's last token; None where max_chars is 0 (no row joins)
    state: State | None  # after the prompt, batch 1; None where max_chars is 0
    options: SampleConfig
    seeds: list[int]
    max_chars: int
    stops: tuple[str, ...] = ()
    form: Constrained | None = None
    bias: torch.Tensor | None = None
    form_start: int = 0
    healed: str = ""  # the prompt's last piece, read without it, that each sample writes again (`healed_seed`)
    logprobs: int | None = None  # alternatives per token to report; None: no log-probabilities
    sink: Any = None
    cancelled: bool = False
    admitted: float | None = None  # monotonic times, for `timings`
    finished: float | None = None
    made: int = 0  # characters made over all samples
    open_rows: int = 0


@dataclasses.dataclass
class Update:
    """New text of sample `index` of `job` since the last update; `finish_reason` once it is done
    ("stop" or "length"); `error` if the engine could not go on."""

    job: Job
    index: int
    text: str
    tokens: list[Token] | None = None
    finish_reason: str | None = None
    error: str | None = None


class Stream(Row):
    """One sample of a job as a row of the batch: its text and log-probabilities not yet published."""

    def __init__(self, job: Job, index: int, healing: Healing | None = None):
        form = job.form.cursor(job.form_start) if job.form else None
        super().__init__(job.max_chars, job.stops, keep_stop=False, form=form, healing=healing)
        self.job, self.index = job, index
        self.held_tokens: list[Token] = []
        self.characters = Characters()
        self.unassigned = 0
        self.text: list[str] = []
        self.tokens: list[Token] = []
        self.published = False

    def emit(self, text: str, token: Token | None) -> None:
        """A step's released text; its token waits until the text it spelled is released. A piece that
        wrote the prompt's healed text again (`Row.take`) is the prompt's where it wrote only that (no
        token: the echoed prompt has its own), else its text past the prompt's, listed as drawn."""
        rewrote, self.rewrote = self.rewrote, ""
        if token is not None and rewrote:
            token = Token("", token.logprob, token.top, drawn=rewrote) if self.piece else None
        if token is not None and (token := self.characters.join(token, self.piece)) is not None:
            self.held_tokens.append(token)
        if text:
            self.text.append(text)
            self.job.made += len(text)
        self.unassigned += len(text)  # released characters not yet given to a token
        while self.held_tokens and len(self.held_tokens[0].text) <= self.unassigned:
            self.unassigned -= len(self.held_tokens[0].text)
            self.tokens.append(self.held_tokens.pop(0))
        if self.finish_reason is not None:  # a piece cut by a stop: its token is the part released
            if self.held_tokens and self.unassigned:
                token = self.held_tokens[0]
                token.text, token.drawn = token.text[: self.unassigned], token.drawn or token.text
                self.tokens.append(token)
            self.held_tokens.clear()

    def update(self) -> Update | None:
        """What is new since the last update, or None if nothing is."""
        if not self.text and self.finish_reason is None:
            return None
        tokens = self.tokens if self.job.logprobs is not None else None
        update = Update(self.job, self.index, "".join(self.text), tokens, self.finish_reason)
        self.text, self.tokens, self.published = [], [], True
        return update


class Engine:
    """The batch of one model, stepped in a thread of its own while any row is live, with `threads`
    torch threads: the only thread of the server whose torch work runs on more than one (see
    `threads.pin_this_thread`)."""

    def __init__(
        self,
        model: CharLM,
        capacity: int,
        publish: Callable[[list[Update]], None],
        chunk_interval: float = 0.05,
        name: str = "model",
        threads: int = 1,
    ):
        self.model, self.capacity, self.publish, self.chunk_interval = model, capacity, publish, chunk_interval
        self.threads = threads
        self.batch, self.versions = Batch(model, capacity), weight_versions(model)
        # what `top_logprobs` names each token, and which are byte pieces: once, not at every step
        self.label, self.is_byte = token_label(model.vocab), token_bytes(model.vocab)
        self.indexed: tuple[list[int], torch.Tensor | None] = ([], None)  # `rows_at`'s last rows and their index
        self.waiting: collections.deque[Job] = collections.deque()
        self.done: list[Stream] = []  # finished rows whose last update is not yet published
        self.wakeup = threading.Condition()
        self.stopping = False
        self.cancelling = False  # a job was cancelled since the rows were last looked at (`drop_cancelled`)
        self.last_flush = 0.0
        self.urgent = False
        self.characters = 0  # sent since the start, for the metrics
        self.thread = threading.Thread(target=self.run, name=f"charlm-engine-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, job: Job) -> None:
        """Queue a primed job; its rows join at the next step boundary."""
        with self.wakeup:
            if self.stopping:
                raise RuntimeError("the engine is stopped")
            self.waiting.append(job)
            self.wakeup.notify()

    def cancel(self, job: Job) -> None:
        """Drop the job's rows at the next step boundary; nothing more is published for it."""
        job.cancelled = True
        self.cancelling = True  # after the job's flag: a boundary that sees this sees the job cancelled

    def close(self) -> None:
        """Stop the thread; live jobs get an error update so that nobody waits for them."""
        with self.wakeup:
            self.stopping = True
            self.wakeup.notify()
        self.thread.join()
        self.fail("the server is shutting down")

    @property
    def rows(self) -> list[Stream]:
        return self.batch.rows

    @property
    def active(self) -> int:
        return len(self.rows)

    def run(self) -> None:
        """Serve until stopped. While rows are live the model is held in `inference`, as charlm.generate
        holds it: eval mode (a GRU's or RNN's step runs the model's core: no dropout) and real fp32 (on a
        GPU, cuDNN's TF32 off). Held for each busy spell, not for the thread's life: an idle server gives
        the caller's model its own mode back, and the process cuDNN's TF32 flag, so a model trained on
        in this process between requests keeps its dropout; nor entered each step, which costs a lock
        and a walk of the model every character. Contexts open at once (another server on the model,
        generate in another thread) share the change: the last to close restores (`inference_context.inference`)."""
        pin_this_thread(1)
        while self.work_waits():
            with inference(self.model):
                self.follow_weights()
                while (joining := self.boundary()) is not None:
                    try:
                        self.admit(joining)
                        self.drop_cancelled()
                        if self.rows:
                            self.take_threads()
                            self.advance()
                        self.flush()
                    except Exception as e:  # noqa: BLE001 -- a bug must not leave clients waiting forever
                        self.fail(f"generation failed: {type(e).__name__}: {e}")

    def follow_weights(self) -> None:
        """A new batch where the model's weights changed since this one was built: its fused step holds
        copies of them (`lstm_step.FusedLSTMStep`): kept, a model trained further in the caller's process
        would be served with the weights it started with. Looked at once per busy spell (no row is live),
        not per step: an update made while rows are live counts from the next spell."""
        versions = weight_versions(self.model)
        if versions != self.versions and not self.rows:
            self.batch, self.versions = Batch(self.model, self.capacity), versions

    def work_waits(self) -> bool:
        """Waits, idle, for a job to join; False once stopping."""
        with self.wakeup:
            while not self.rows and not self.waiting and not self.stopping:
                self.wakeup.wait()
            return not self.stopping

    def boundary(self) -> list[Job] | None:
        """At a step boundary: the jobs that join now; None once stopping or idle (no row live, no job
        waiting: `run` then leaves `inference` and waits). The lock is taken only when a job waits, the
        engine stops or has no row to step: a lone stream's steps, back to back, take none. A job
        submitted just after the look without the lock is not lost: it joins at the next boundary."""
        if self.rows and not self.waiting and not self.stopping:
            return []
        with self.wakeup:
            idle = not self.rows and not self.waiting
            return None if self.stopping or idle else self.joining()

    def joining(self) -> list[Job]:
        """Waiting jobs that fit now, in order of arrival (called holding the lock)."""
        jobs, free = [], self.capacity - len(self.rows)
        while self.waiting and (self.waiting[0].cancelled or len(self.waiting[0].seeds) <= free):
            job = self.waiting.popleft()
            if not job.cancelled:
                jobs.append(job)
                free -= len(job.seeds)
        return jobs

    def admit(self, jobs: list[Job]) -> None:
        for job in jobs:
            job.admitted, job.open_rows = time.monotonic(), len(job.seeds)
            for index, seed in enumerate(job.seeds):
                row = Stream(job, index, Healing.of(self.model.vocab, job.healed))
                if row.finish_reason is not None:  # max_tokens 0: never primed, never joins
                    self.finish(row)
                    continue
                self.batch.join(row, (job.logits, job.state), job.options, seed, job.prompt, job.bias)

    def drop_cancelled(self) -> None:
        """The rows of jobs cancelled since the last look leave: looked for only when `cancel` was called."""
        if not self.cancelling:
            return
        self.cancelling = False  # before the look: a cancel during it is looked for at the next boundary
        for position in reversed(range(len(self.rows))):
            if self.rows[position].job.cancelled:
                self.batch.remove(position)

    def take_threads(self) -> None:
        """--threads torch threads for a step of many rows, one for a step of few (`PARALLEL_ROWS`). A small
        model's row has the same bits either way (tests/test_serve.py checks 2x64); a product over 1,024 or
        more inputs (2x512 up) sums in another order on two threads, so there a row's last bits depend on
        how many rows ran beside it (docs/serve.md says so; `--threads 1`, the default, is exact)."""
        wanted = self.threads if len(self.rows) >= PARALLEL_ROWS else 1
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def advance(self) -> None:
        """One step: every row's next token chosen, the model advanced on all of them."""
        rows = len(self.rows)
        alternatives = self.alternatives(self.batch.logits)
        values, tokens = alternatives if alternatives else (None, None)
        _, texts, read = self.batch.step(values)
        tokens = tokens(read) if tokens else [None] * rows
        for row, text, token in zip(self.rows, texts, tokens):
            row.emit(text, token)
            if row.finish_reason is None and not row.published and row.text:
                self.urgent = True  # a stream's first text goes out at once
        for position in reversed(range(rows)):
            if self.rows[position].finish_reason is not None:
                self.finish(self.rows[position])
                self.batch.remove(position)

    def alternatives(
        self, logits: torch.Tensor
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[list[list[float]]], list[Token | None]]] | None:
        """For rows that report log-probabilities, the model's own distribution (before temperature
        and penalties: what it predicts, not how it was sampled): a function of the chosen ids that
        makes each such row's chosen log-probability, top values and top ids on the device, and one of
        those rows read on the host that makes their tokens. The step reads them with its ids
        (`Batch.step(also=...)`): on a GPU each read is a wait for the device, and reading these
        apart would be three waits a step, not one."""
        wanted = [p for p, row in enumerate(self.rows) if row.job.logprobs is not None]
        if not wanted:
            return None
        rows = self.rows_at(wanted)
        logprobs, top_values, top_ids = top_logprobs(logits[rows], max(self.rows[p].job.logprobs for p in wanted))
        label, byte, most = self.label, self.is_byte, top_ids.size(1)
        wide = torch.float64 if has_float64(logits.device) else torch.float32

        def values(ids: torch.Tensor) -> torch.Tensor:
            ids = ids[rows].unsqueeze(1)
            chosen = logprobs.gather(1, ids)
            # float64 holds every float32 value and every id exactly, so each reads as it would alone (an
            # Apple GPU has no float64: float32 holds a vocabulary's ids, up to 2^24)
            return torch.cat([part.to(wide) for part in (chosen, top_values, top_ids, ids)], dim=1)

        def tokens(read: list[list[float]]) -> list[Token | None]:
            result: list[Token | None] = [None] * len(self.rows)
            for p, values in zip(wanted, read):
                count = self.rows[p].job.logprobs
                top = [(label(int(a)), v) for a, v in zip(values[1 + most : 1 + most + count], values[1 : 1 + count])]
                result[p] = Token("", values[0], top, byte=byte(int(values[-1])))
            return result

        return values, tokens

    def rows_at(self, wanted: list[int]) -> slice | torch.Tensor:
        """The rows `wanted` (ascending) as an index of the step's tensors: a slice where they are the first
        rows (every row, as a lone stream's), else an index on the model's device made once per set of rows.
        A Python list would be copied to the device at every step, two or three times: on a GPU, each a
        copy from the host's memory, queued behind the step's work."""
        if wanted[-1] == len(wanted) - 1:
            return slice(0, len(wanted))
        if self.indexed[0] != wanted:
            self.indexed = (wanted, torch.tensor(wanted, device=self.model.device))
        return self.indexed[1]

    def finish(self, row: Stream) -> None:
        job = row.job
        job.open_rows -= 1
        if job.open_rows == 0:
            job.finished = time.monotonic()
        self.done.append(row)
        self.urgent = True

    def flush(self) -> None:
        """Publish what the rows made, if the chunk interval has passed or something is urgent."""
        now = time.monotonic()
        if not self.urgent and now - self.last_flush < self.chunk_interval:
            return
        updates = [u for row in [*self.rows, *self.done] if not row.job.cancelled and (u := row.update())]
        self.characters += sum(len(u.text) for u in updates)
        self.done, self.urgent, self.last_flush = [], False, now
        if updates:
            self.publish(updates)

    def fail(self, message: str) -> None:
        """Every live and waiting job gets an error update; the batch is emptied."""
        with self.wakeup:
            jobs = {id(row.job): row.job for row in self.rows} | {id(job): job for job in self.waiting}
            self.waiting.clear()
        # Rows that finished before the failure still have their last update to give: a job whose
        # rows all finished is in no other list, and would be waited for forever.
        finished = [u for row in self.done if id(row.job) not in jobs and not row.job.cancelled and (u := row.update())]
        self.batch.rows.clear()
        self.done = []
        updates = finished + [Update(job, 0, "", error=message) for job in jobs.values() if not job.cancelled]
        if updates:
            self.publish(updates)


def weight_versions(model: CharLM) -> tuple[int, ...]:
    """The parameters' version counters, which torch bumps at every in-place change (an optimizer's
    step, `load_state_dict`): equal tuples, the same weights."""
    return tuple(parameter._version for parameter in model.parameters())


@torch.inference_mode()
def prompt_tokens(model: CharLM, read: str, top: int) -> list[Token]:
    """The tokens of a prompt as the model reads it (`read`: normalized, once, by the request) as `echo`
    with `logprobs` reports them (`scoring.prompt_logprobs`: the surprise computation of `charlm
    inspect`, which the page's hover and colours use too), a character spelled in bytes as one."""
    scored = prompt_logprobs(model, read, top, already_normalized=True)
    tokens = [Token(text, logprob, alternatives) for text, logprob, alternatives in scored]
    vocab = model.vocab
    if vocab.one_char_per_id:
        return tokens
    ids, characters = vocab.encode_array(read).tolist(), Characters()
    written, byte = vocab.decoder(1), token_bytes(vocab)
    joined = []
    for token, i in zip(tokens, ids):
        token.byte = byte(i)
        if (whole := characters.join(token, written(torch.tensor([i]))[0])) is not None:
            joined.append(whole)
    return joined
