"""A request in flight: its rows, its prompts primed beside the engine, its updates as they come.

`Completion` is one request: it compiles its logit bias and its template for the model's vocabulary if
it has them (the model keeps templates compiled: `Served.compile`), asks the server for its rows
(`Server.take_rows`: a 429 when they are not free, so only for a request that can run), and in the
primer's thread reads its prompts (normalized once, encoded) and primes them (each alone, so a seeded
sample never depends on the batch); then it becomes one `Job` per prompt, and reads its updates from its
queue, which `receive` fills with what `Server.publish` (server.py) hands to the event loop, one hand-off
per batch of updates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import torch

from ..config import SampleConfig
from ..constraints import Constrained
from ..decoding import bias_vector
from ..errors import CharLMError
from ..generation import primed_text, row_seeds, stop_texts
from ..inference_context import inference
from ..threads import pin_this_thread
from ..vocab import UNSEEN, Vocabulary
from . import shapes
from .api_error import APIError
from .engine import Job, Token, Update, prompt_tokens
from .protocol import Params, check_prompt_lengths, form_error
from .server import Served, Server, shutting_down

# A stream whose client does not read it (its socket's buffers full) is stopped, its rows freed and what
# they made dropped, once it has more than MAX_UNSENT a row waiting unsent (characters, and with logprobs
# each one's alternatives), or has had something waiting and nothing taken for UNREAD_SECONDS: a client
# that never read a stream of n=64 held every row (429 for everyone else) for as long as it kept its
# connection, and with logprobs 20 the server's memory grew 100 MB a second until max_tokens.
MAX_UNSENT = 65_536
UNREAD_SECONDS = 10.0


def read_ids(vocab: Vocabulary, read: str) -> torch.Tensor:
    """The ids of `read`, a text normalized as the model reads it: the caller normalizes once, for it
    checks the length of that too (a second normalization would take as long again on a long prompt). A
    character the model never saw is UNSEEN, or the model's unknown symbol (docs/serve.md); a text no
    vocabulary can encode (a lone surrogate) was refused with the request (`protocol.check_encodable`)."""
    return torch.from_numpy(vocab.encode_array(read))


def size(update: Update) -> int:
    """What an update holds: its characters, and each token's alternatives."""
    return len(update.text) + sum(len(token.top or ()) for token in update.tokens or ())


class Completion:
    """One request in flight: a job per prompt, all reporting to one queue."""

    def __init__(self, server: Server, served: Served, params: Params):
        self.server, self.served, self.params = server, served, params
        self.queue: asyncio.Queue[Update | APIError] = asyncio.Queue()
        self.unsent = 0  # what the queue holds (`size`), at most MAX_UNSENT a row
        # since when something waited and the client took nothing (monotonic), for `check_taken`
        self.quiet_since = 0.0
        self.watch: asyncio.TimerHandle | None = None  # the next `check_taken`
        self.stopped = False  # by `stop_unread`
        self.jobs: list[Job] = []
        self.rows = params.choices  # of the server's --max-streams (`Server.take_rows`) until `release`
        # The prompts as the model reads them (Unicode-normalized), read by `prepare`: what `echo`
        # returns, so that the echoed text, its tokens and their offsets agree.
        self.read: list[str] = []
        self.prompt_chars = 0
        self.prompt_ms = 0.0
        self.echoed: list[list[Token] | None] = []
        # Each prompt's samples' seeds (`row_seeds`). Unseeded, each prompt draws its own: with one for all,
        # a list of equal prompts (a batch of one question) would get n equal texts.
        self.seeds = [row_seeds(params.seed, params.n) for _ in params.prompts]
        self.created = int(time.time())  # the response's `created`, the same in every chunk of a stream
        self.open = self.rows
        self.bias: torch.Tensor | None = None  # `logit_bias` for the model's vocabulary, by `check`
        self.form: Constrained | None = None  # the template for the model's vocabulary, by `check`
        self.begun: list[int] = []  # per prompt, where in the template its poem leaves off, by `prepare`

    async def check(self) -> None:
        """What is checked against the model before the request takes rows, so that one that can never
        run is a 400 even while every stream is busy (a 429 has a client retry it): the logit bias's ids
        and the template, which needs the bias's bans. In a thread of asyncio's: 65,536 ids take 0.2 s
        and a template for a sentencepiece vocabulary a while, which on the event loop would hold every
        stream, and in the primer's thread would wait behind other requests' prompts."""
        if self.params.logit_bias or self.params.template is not None:
            await asyncio.to_thread(self.check_for_model)

    def check_for_model(self) -> None:
        pin_this_thread(1)  # small tensors: never an OpenMP team of this thread's beside the engine's
        if self.params.logit_bias:
            try:
                self.bias = bias_vector(self.params.logit_bias, self.served.model.vocab)
            except CharLMError as e:
                raise APIError(400, str(e), "logit_bias", "invalid_value") from None
        self.form = self.compile(self.bias)

    async def start(self) -> None:
        """`check` the request, take rows (429 when there are none to take), read and prime the prompts in the primer's thread,
        hand the jobs to the engine. Nothing of a prompt is read on the event loop: 40 prompts of
        --max-prompt characters normalized and encoded there held every other stream's next token for
        a fifth of a second."""
        await self.check()
        options = self.sample_options()
        server = self.server
        server.take_rows(self.rows)
        try:
            start = time.perf_counter()
            stops, primed = await server.in_primer(self.prepare)
            self.prompt_ms = (time.perf_counter() - start) * 1000
        except BaseException:
            self.release()
            raise
        if server.stopping is not None:  # its engine stopped while its prompts were primed
            self.release()
            raise shutting_down()
        for (seen, logits, state, healed), seeds, begun in zip(primed, self.seeds, self.begun):
            job = Job(seen, logits, state, options, seeds, self.params.max_tokens, stops, self.form, self.bias, begun)
            job.logprobs, job.sink, job.healed = self.params.logprobs, self.receive, healed
            self.jobs.append(job)
            self.served.engine.submit(job)
        self.server.metrics.prompt(self.served.name, self.prompt_chars)

    def sample_options(self) -> SampleConfig:
        """The request's sampling options, built before it takes rows: a field protocol.py let through that
        SampleConfig refuses is a 400 that holds no row (taken, it would have been counted for good)."""
        params = self.params
        greedy = params.temperature == 0  # OpenAI's greedy: a greedy SampleConfig holds no temperature
        try:
            return SampleConfig(
                temperature=None if greedy else params.temperature,
                greedy=greedy,
                top_k=params.top_k,
                top_p=params.top_p,
                repetition_penalty=params.repetition_penalty,
                presence_penalty=params.presence_penalty,
                frequency_penalty=params.frequency_penalty,
            )
        except CharLMError as e:
            raise APIError(400, str(e), code="invalid_value") from None

    def prepare(self) -> tuple[tuple[str, ...], list]:
        """In the primer's thread (reading long prompts takes a while): the prompts read, the stop
        texts as the model writes them, then the prompts primed."""
        encoded = self.read_prompts()
        self.begun = [self.poem_begun(read) for read in self.read]
        return stop_texts(self.served.model.vocab, self.params.stops), self.prime(encoded)

    def read_prompts(self) -> list[tuple[torch.Tensor, str]]:
        """Each prompt as the model reads it (`read`, within --max-prompt) and its ids; an empty one
        primes with the start of a line."""
        vocab, params = self.served.model.vocab, self.params
        self.read = [vocab.normalized(prompt) for prompt in params.prompts]
        if self.form is not None:  # each prompt's poem in the form's marks ('，' for ','), as generate reads a seed
            self.read = list(map(self.form.marked, self.read))
        check_prompt_lengths(self.read, self.server.config, params.prompt_param, vocab.normalize)
        self.prompt_chars = sum(map(len, self.read))
        # a character the model never saw is read as one it knows nothing about (docs/serve.md)
        return [(read_ids(vocab, primed_text(vocab, read)), read) for read in self.read]

    def poem_begun(self, prompt: str) -> int:
        """Where the poem `prompt` (as the model reads it) began leaves off in the template (0: none, or a new
        poem); an acrostic its verses break is a 400 naming `acrostic`, a last line that begins no poem of the
        form (`Constrained.refuse_unbegun`) one naming `prompt`."""
        if self.form is None:
            return 0
        try:
            return self.form.begun(prompt, "the prompt", option="prompt")
        except CharLMError as e:
            raise form_error(e, self.params.prompt_param) from None

    def compile(self, bias: torch.Tensor | None) -> Constrained | None:
        """The request's template compiled for the model's vocabulary without the tokens `bias` bans
        (`Served.compile`, which keeps it); a character the model does not know is a 400 naming the field
        that gave it."""
        template = self.params.template
        if template is None:
            return None
        try:
            return self.served.compile(template, None if bias is None else bias.isneginf())
        except CharLMError as e:
            raise form_error(e, template.field) from None

    def prime(self, encoded: list) -> list:
        """In the primer's thread (`prepare`): each prompt read alone; with echo and logprobs, its own log-probabilities.
        A prompt ending mid-piece is read without its last piece, which its samples write again, as
        `charlm.generate` reads a seed (`generation.Batch.prime_seed`). All of a request's torch work is done
        here and in the engine, never on the event loop's thread (`threads.pin_this_thread`). Read in
        `inference`, as generate reads a seed: in real fp32 (cuDNN's TF32 off, on by torch's default),
        else a GPU server's prompt state and first logits would differ from a GPU generate's and the CPU's.
        With max_tokens 0 no sample is drawn, so no prompt is primed: 64 prompts of 16,384 characters took 4 s
        to make states nothing read."""
        primed = []
        for ids, read in encoded:
            seen = ids[ids != UNSEEN]  # the repetition penalty counts characters the model knows
            if self.params.max_tokens == 0:
                primed.append((seen, None, None, ""))
            else:
                with inference(self.served.model):
                    (logits, state), healed = self.served.engine.batch.prime_seed(ids, self.form, self.bias)
                primed.append((seen, logits, state, healed))
            wants_prompt = self.params.echo and self.params.logprobs is not None and read
            self.echoed.append(prompt_tokens(self.served.model, read, self.params.logprobs) if wants_prompt else None)
        return primed

    def seed(self, choice: int) -> int | None:
        """The `seed` that writes choice `choice` again (prompt p's sample j is p * n + j): sent with its prompt,
        it writes that prompt's first choice, and the next ones from seed + 1 on (`row_seeds`), so that an
        unseeded text can be made again, as `charlm sample --json` tells its `random_seed`. None where greedy
        (temperature 0), which draws nothing: any seed writes it."""
        if self.params.temperature == 0:
            return None
        return self.seeds[choice // self.params.n][choice % self.params.n]

    def index(self, update: Update) -> int:
        """The choice index: prompt p's sample j is p * n + j."""
        return self.jobs.index(update.job) * self.params.n + update.index

    def receive(self, update: Update) -> None:
        """On the event loop: an update from the engine, queued for the client; a client that leaves
        too much unread, or takes nothing for too long, is not reading (`MAX_UNSENT`)."""
        if self.stopped:  # an update published before the engine saw the cancel
            return
        if self.queue.empty():
            self.quiet_since = time.monotonic()
        self.unsent += size(update)
        self.queue.put_nowait(update)
        if self.unsent > MAX_UNSENT * self.params.choices:
            self.stop_unread(f"over {MAX_UNSENT * self.params.choices:,} characters and logprobs waited unsent")
        elif self.watch is None:
            self.watch = asyncio.get_running_loop().call_later(UNREAD_SECONDS, self.check_taken)

    def check_taken(self) -> None:
        """`UNREAD_SECONDS` after an update waited: stopped if the client has taken nothing since, else looked
        at again `UNREAD_SECONDS` after its last take (a look every `UNREAD_SECONDS` for a take since the last
        one would stop a client up to twice that long after its last take)."""
        self.watch = None
        if self.stopped or self.queue.empty():
            return
        quiet = time.monotonic() - self.quiet_since
        if quiet >= UNREAD_SECONDS:
            self.stop_unread(f"nothing was taken for {UNREAD_SECONDS:g} s")
        else:
            self.watch = asyncio.get_running_loop().call_later(UNREAD_SECONDS - quiet, self.check_taken)

    def stop_unread(self, why: str) -> None:
        """A client that does not read: its samples stop, their rows are freed and what they made is
        dropped; if it ever reads on, it gets an error after what it was sent."""
        self.cancel()
        self.stopped = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.unsent = 0
        message = f"the stream was stopped: its client did not read it ({why}); read a stream as it comes"
        self.queue.put_nowait(APIError(408, message, code="client_not_reading"))

    async def updates(self) -> AsyncIterator[Update]:
        """Every update until every sample is finished; an engine error, or a client that does not read
        (`receive`), becomes an APIError: the 503 `shutting_down` of a request that comes too late where the
        engine was stopping (`Engine.close`), so that a client retries it as it would that one, not a 500
        that says the engine broke. The rows are free before the last update or the error is
        handed on: a stream's closing task frees them only once its last event is sent, and a client
        that sent its next request on [DONE] could find them still taken (a 429)."""
        while self.open:
            update = await self.queue.get()
            if isinstance(update, APIError):
                raise update  # `stop_unread` freed the rows
            self.unsent -= size(update)
            self.quiet_since = time.monotonic()
            if update.error:
                self.cancel()
                if self.served.engine.stopping:
                    raise shutting_down()
                raise APIError(500, update.error, code="generation_failed")
            if update.finish_reason is not None:
                self.open -= 1
            if not self.open:
                self.release()  # every row finished: the engine holds none of them
            yield update

    def timings(self) -> dict:
        jobs = [j for j in self.jobs if j.admitted is not None]
        made = self.made()
        start = min((j.admitted for j in jobs), default=0.0)
        end = max((j.finished or time.monotonic() for j in jobs), default=0.0)
        return shapes.timings(self.prompt_chars, self.prompt_ms, made, (end - start) * 1000)

    def made(self) -> int:
        return sum(j.made for j in self.jobs)

    def cancel(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None
        for job in self.jobs:
            self.served.engine.cancel(job)
        self.release()

    def release(self) -> None:
        """The rows back to the server, once however often called (`cancel`, the last update, an error)."""
        if self.rows:
            self.server.free_rows(self.rows)
            self.rows = 0
