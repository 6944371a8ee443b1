"""Continuous batching: every sample of every request to one model is a row of one batch.

The engine runs in a thread of its own. Each step it chooses the next character of every row
(`RowSampler`), advances them all with one batched model step (`RowStepper`), and hands out what
the rows made. A request joins or leaves at a step boundary: its prompt was primed beforehand,
alone, so joining costs a copy of the state; a finished or cancelled row is removed by moving the
last row into its place. A row draws from its own generator and a step computes a padded number of
rows (`lstm_step.padded_rows`), so a seeded sample is the same text whatever else is running.

Output is handed out in batches (`publish`), every `chunk_interval` seconds, and at once when a row
finishes or makes its first text: one call per batch, not one per character, keeps the cost of
many streams low. The HTTP layer (`app.py`) turns those updates into responses.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from ..config import SampleConfig
from ..inspect import surprise
from ..lstm_step import RowStepper
from ..model import CharLM, State
from ..sampler import MAX_STEPS_PER_CHAR, RowSampler


@dataclasses.dataclass
class Token:
    """One step's text with the model's log-probability of it and its likeliest alternatives."""

    text: str
    logprob: float | None  # None for a prompt's first character: nothing predicted it
    top: list[tuple[str, float]] | None  # None where nothing predicted the text


@dataclasses.dataclass(eq=False)
class Job:
    """A prompt to continue `len(seeds)` times: what a request asks of the engine, primed already.

    `options` gives the decoding (temperature, top-k, top-p, repetition penalty, greedy); sample i
    draws from a generator seeded `seeds[i]`. `sink` is the caller's: it routes the updates."""

    prompt: torch.Tensor  # ids, for the repetition penalty's window
    logits: torch.Tensor  # after the prompt's last character
    state: State  # after the prompt, batch 1
    options: SampleConfig
    seeds: list[int]
    max_chars: int
    stops: tuple[str, ...] = ()
    logprobs: int | None = None  # alternatives per character to report; None: no log-probabilities
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


class Row:
    """One sample being made: its output so far and the text held back in case a stop text begins."""

    def __init__(self, job: Job, index: int, decode: Callable[[int], str]):
        self.job, self.index, self.decode = job, index, decode
        self.made = self.steps = 0
        self.held, self.held_tokens = "", []
        self.text: list[str] = []
        self.tokens: list[Token] = []
        self.finish_reason: str | None = None
        self.published = False

    def take(self, piece: str, token: Token | None) -> None:
        """Adds one step's text; ends the row at a stop text or at its length."""
        job = self.job
        self.steps += 1
        if token is None and not job.stops and len(piece) == 1:  # the common case, kept cheap: one character
            self.made += 1
            job.made += 1
            self.text.append(piece)
            if self.made >= job.max_chars:
                self.finish_reason = "length"
            return
        piece = piece[: job.max_chars - self.made]
        self.made += len(piece)
        self.held += piece
        if token is not None:
            token.text = piece
            self.held_tokens.append(token)
        released, self.held, stopped = release(self.held, job.stops)
        if not stopped and (self.made >= job.max_chars or self.steps >= MAX_STEPS_PER_CHAR * job.max_chars):
            released, self.held = released + self.held, ""
            self.finish_reason = "length"
        elif stopped:
            self.finish_reason = "stop"
        self.emit(released)

    def emit(self, text: str) -> None:
        if text:
            self.text.append(text)
            job = self.job
            job.made += len(text)
        count = 0
        while self.held_tokens and count + len(self.held_tokens[0].text) <= len(text):
            count += len(self.held_tokens[0].text)
            self.tokens.append(self.held_tokens.pop(0))
        if self.finish_reason is not None:
            self.held_tokens.clear()

    def update(self) -> Update | None:
        """What is new since the last update, or None if nothing is."""
        if not self.text and self.finish_reason is None:
            return None
        tokens = self.tokens if self.job.logprobs is not None else None
        update = Update(self.job, self.index, "".join(self.text), tokens, self.finish_reason)
        self.text, self.tokens, self.published = [], [], True
        return update


def release(held: str, stops: tuple[str, ...]) -> tuple[str, str, bool]:
    """Splits text not yet sent into what can be sent and what must wait: (sendable, held, stopped).
    At a stop text, the sendable part is the text before it (OpenAI's rule: the stop text is not
    returned). Otherwise the end of the text that could begin a stop text is held back."""
    if not stops:
        return held, "", False
    found = [i for i in (held.find(stop) for stop in stops) if i >= 0]
    if found:
        return held[: min(found)], "", True
    keep = max((k for stop in stops for k in range(1, len(stop)) if held.endswith(stop[:k])), default=0)
    return held[: len(held) - keep], held[len(held) - keep :], False


class Engine:
    """The batch of one model, stepped in a thread of its own while any row is live."""

    def __init__(
        self,
        model: CharLM,
        capacity: int,
        publish: Callable[[list[Update]], None],
        chunk_interval: float = 0.05,
        name: str = "model",
    ):
        self.model, self.capacity, self.publish, self.chunk_interval = model, capacity, publish, chunk_interval
        self.stepper = RowStepper(model, capacity)
        self.sampler = RowSampler(capacity, model.config.vocab_size)
        self.rows: list[Row] = []
        self.waiting: collections.deque[Job] = collections.deque()
        self.done: list[Row] = []  # finished rows whose last update is not yet published
        self.wakeup = threading.Condition()
        self.stopping = False
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

    def close(self) -> None:
        """Stop the thread; live jobs get an error update so that nobody waits for them."""
        with self.wakeup:
            self.stopping = True
            self.wakeup.notify()
        self.thread.join()
        self.fail("the server is shutting down")

    @property
    def active(self) -> int:
        return len(self.rows)

    def run(self) -> None:
        with torch.inference_mode():
            while True:
                with self.wakeup:
                    while not self.rows and not self.waiting and not self.stopping:
                        self.wakeup.wait()
                    if self.stopping:
                        return
                    joining = self.joining()
                try:
                    self.admit(joining)
                    self.drop_cancelled()
                    if self.rows:
                        self.advance()
                    self.flush()
                except Exception as e:  # noqa: BLE001 -- a bug must not leave clients waiting forever
                    self.fail(f"generation failed: {type(e).__name__}: {e}")

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
                row = Row(job, index, self.decoder())
                if job.max_chars == 0:
                    row.finish_reason = "length"
                    self.finish(row)
                    continue
                position = len(self.rows)
                self.stepper.load(position, job.logits, job.state)
                self.sampler.set(position, job.options, seed, job.prompt)
                self.rows.append(row)

    def decoder(self) -> Callable[[int], str]:
        """Id -> text for one row (a sentencepiece row keeps its own partial UTF-8 character)."""
        vocab = self.model.vocab
        if vocab.one_char_per_id:
            return vocab.chars.__getitem__
        decode = vocab.decoder(1)
        return lambda i: decode(torch.tensor([i]))[0]

    def drop_cancelled(self) -> None:
        for position in reversed(range(len(self.rows))):
            if self.rows[position].job.cancelled:
                self.remove(position)

    def advance(self) -> None:
        """One step: every row's next character chosen, the model advanced on all of them."""
        rows = len(self.rows)
        logits = self.stepper.logits[:rows]
        tokens = self.alternatives(logits)
        ids = self.sampler.choose(logits)
        tokens = tokens(ids) if tokens else [None] * rows
        self.stepper.step(ids)
        for row, i, token in zip(self.rows, ids.tolist(), tokens):
            row.take(row.decode(i), token)
            if row.finish_reason is None and not row.published and row.text:
                self.urgent = True  # a stream's first text goes out at once
        for position in reversed(range(rows)):
            if self.rows[position].finish_reason is not None:
                self.finish(self.rows[position])
                self.remove(position)

    def alternatives(self, logits: torch.Tensor) -> Callable[[torch.Tensor], list[Token | None]] | None:
        """For rows that report log-probabilities, the model's own distribution (before temperature
        and penalties: what it predicts, not how it was sampled): a function of the chosen ids."""
        wanted = [p for p, row in enumerate(self.rows) if row.job.logprobs is not None]
        if not wanted:
            return None
        logprobs = torch.log_softmax(logits[wanted].float(), dim=-1)
        k = min(max(self.rows[p].job.logprobs for p in wanted), logprobs.size(-1))
        top_values, top_ids = logprobs.topk(k, dim=-1)
        label = self.model.vocab.decode

        def tokens(ids: torch.Tensor) -> list[Token | None]:
            chosen = logprobs.gather(1, ids[wanted].unsqueeze(1)).squeeze(1).tolist()
            result: list[Token | None] = [None] * len(self.rows)
            for j, (p, values, alternatives) in enumerate(zip(wanted, top_values.tolist(), top_ids.tolist())):
                count = self.rows[p].job.logprobs
                top = [(label([a]), v) for a, v in zip(alternatives[:count], values[:count])]
                result[p] = Token("", chosen[j], top)
            return result

        return tokens

    def finish(self, row: Row) -> None:
        job = row.job
        job.open_rows -= 1
        if job.open_rows == 0:
            job.finished = time.monotonic()
        self.done.append(row)
        self.urgent = True

    def remove(self, position: int) -> None:
        """Row `position` leaves the batch; the last row moves into its place."""
        last = len(self.rows) - 1
        if position != last:
            self.stepper.move(last, position)
            self.sampler.move(last, position)
            self.rows[position] = self.rows[last]
        self.rows.pop()

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
        self.rows, self.done = [], []
        updates = [Update(job, 0, "", error=message) for job in jobs.values() if not job.cancelled]
        if updates:
            self.publish(updates)


@torch.inference_mode()
def prompt_tokens(model: CharLM, prompt: str, top: int) -> list[Token]:
    """The prompt's characters with the model's log-probability of each given the ones before (none
    for the first) and its `top` likeliest alternatives, as `echo` with `logprobs` reports them: the
    surprise computation of `charlm inspect` (the page's hover and colours use the same)."""
    scored = surprise(model, prompt, top=top, context="")
    tokens = []
    for text, bits, guesses in zip(scored.tokens, scored.bits.tolist(), scored.top):
        if math.isnan(bits):  # the first character: nothing was read before it
            tokens.append(Token(text, None, None))
        else:
            tokens.append(Token(text, -bits * math.log(2), [(alt, math.log(p)) for alt, p in guesses if p > 0]))
    return tokens
