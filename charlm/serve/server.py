"""The models a server runs and what its routes share: the hand-off from the engines' threads to asyncio.

`Server` holds the loaded models, each with its `Engine` and its templates compiled (`Served.compile`),
found by id or by its run's corpus; the API key; the rows of --max-streams that requests take and give back
(`take_rows`, `free_rows`: a 429 past them); the primer's thread (`in_primer`: a 503 once stopping); the
loading and the stopping of the engines; and `Server.publish`, which hands the engines' updates to the
event loop, one hand-off per batch of updates (each to its request: `Completion.receive`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from fastapi import Request

from .. import __version__
from ..constraints import Constrained
from ..errors import CharLMError
from ..forms import Template
from ..model import CharLM
from ..runs import corpus_of
from ..threads import pin_this_thread
from .api_error import APIError, shown
from .config import ServeConfig, check_api_key
from .engine import Engine, Update
from .metrics import Metrics

T = TypeVar("T")
MAX_COMPILED = 64  # templates kept compiled per model (a form is asked for again and again)


@dataclasses.dataclass
class Served:
    """A loaded model under its id, and the templates compiled for its vocabulary."""

    name: str
    model: CharLM
    engine: Engine
    created: int
    fingerprint: str  # OpenAI's `system_fingerprint`: see `fingerprint`
    # templates compiled, by template and the ids a logit bias bans: `compile`'s, and no one else's
    compiled: dict[tuple[Template, tuple[int, ...]], Constrained] = dataclasses.field(default_factory=dict)

    def compile(self, template: Template, banned: torch.Tensor | None) -> Constrained:
        """`template` compiled for the model's vocabulary without the tokens `banned` marks, kept for the next
        request that asks (at most MAX_COMPILED). Requests' threads call it at once (`Completion.check`): each
        reads the cache once, and one may clear it while another compiles.

        Raises CharLMError for a character of the template the vocabulary cannot write."""
        key = (template, () if banned is None else tuple(banned.nonzero().flatten().tolist()))
        form = self.compiled.get(key)  # read once: another request's thread may clear the dict meanwhile
        if form is None:
            form = Constrained(template, self.model.vocab, "acrostic", banned)
            if len(self.compiled) >= MAX_COMPILED:
                self.compiled.clear()
            self.compiled[key] = form
        return form


class Server:
    """What the routes share: the models and their engines, the limits, the counters."""

    def __init__(
        self, loaders: dict[str, Callable[[], CharLM]], config: ServeConfig, corpora: dict[str, str] | None = None
    ):
        self.loaders, self.config = loaders, config
        # a run's corpus -> the ids of the models it names (`shakespeare` for shakespeare-20261204-170201)
        self.by_corpus: dict[str, list[str]] = {}
        for name in loaders:
            corpus = (corpora or {}).get(name) or corpus_of(name)
            if corpus:
                self.by_corpus.setdefault(corpus, []).append(name)
        self.api_key = config.api_key or os.environ.get("CHARLM_API_KEY") or None
        if self.api_key is not None and config.api_key is None:
            check_api_key(self.api_key, "$CHARLM_API_KEY")
        self.models: dict[str, Served] = {}
        self.ready = threading.Event()
        self.failure: str | None = None
        self.metrics = Metrics()
        self.busy = 0  # rows taken by requests in flight, all models together: `take_rows`, `free_rows`
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_failure: Callable[[], None] | None = None  # `serve` stops the process when loading fails
        self.on_ready: Callable[[], None] | None = None  # `serve` prints its address once the engines run
        self.stopping: asyncio.Future | None = None  # the engines' stop, once shutdown began (`stop`)
        # Prompts are primed one at a time beside the engine: many threads at once would only fight
        # over the cores and the GIL (64 requests arriving together each waited longer that way). With
        # one torch thread: a prompt is a chain of one-row products that more threads only wait on,
        # and a second thread's OpenMP team would fight the engine's (`threads.pin_this_thread`).
        self.primer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="charlm-prime", initializer=pin_this_thread, initargs=(1,)
        )

    def load(self) -> None:
        """Load every model and start its engine (in a thread: /health says 503 meanwhile)."""
        config = self.config
        try:
            for name, loader in self.loaders.items():
                model = loader()
                engine = Engine(model, config.max_streams, self.publish, config.chunk_ms / 1000, name, config.threads)
                engine.start()
                self.models[name] = Served(name, model, engine, int(time.time()), fingerprint(model))
        except Exception as e:  # noqa: BLE001 -- any failure must reach /health and the command, not hang both
            self.failure = str(e) if isinstance(e, CharLMError) else f"{type(e).__name__}: {e}"
            if self.on_failure:
                self.on_failure()
        self.ready.set()
        if self.failure is None and self.on_ready:
            self.on_ready()

    async def stop(self) -> None:
        """Stop the engines (once, however often asked), in a thread: each finishes its step first. A request
        in flight, or not yet handed to one, is a 503 (`Completion.updates`, `take_rows`, `in_primer`,
        `Completion.start`); a stream ends with that error as its last event."""
        if self.stopping is None:
            self.stopping = asyncio.ensure_future(asyncio.to_thread(self.close))
        await asyncio.shield(self.stopping)

    def close(self) -> None:
        for served in self.models.values():
            served.engine.close()
        self.primer.shutdown(wait=False, cancel_futures=True)

    async def in_primer(self, work: Callable[[], T]) -> T:
        """`work`'s result from the primer's thread, or a 503 once the server is stopping: `close` shuts the
        primer down and cancels what waits in it, and a request that met either was a 500 with a traceback.
        On the event loop, as `stop` is: none reaches the primer between the stop and the check."""
        if self.stopping is not None:
            raise shutting_down()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.primer, work)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # the request's own cancel (Task.cancelling: Python 3.11 on; 3.10's task cannot tell, and its
            # client, gone with the server, reads no answer)
            cancelling = getattr(task, "cancelling", None)
            if self.stopping is None or (cancelling is not None and cancelling()):
                raise
            raise shutting_down() from None

    def take_rows(self, rows: int) -> None:
        """A request's rows of --max-streams, or a 429 when they are not free; a 503 once the server is stopping,
        whose rows are busy with what the stop ends (a 429 has a client retry a server going away). On the event
        loop only, as `free_rows`: the count has no lock, and a change made in two threads at once could be lost
        for good (every later request a 429, or more rows than --max-streams)."""
        if self.stopping is not None:
            raise shutting_down()
        if self.busy + rows > self.config.max_streams:
            raise APIError(
                429,
                f"{self.busy} of {self.config.max_streams} streams are busy; retry shortly",
                code="too_many_streams",
            )
        self.busy += rows

    def free_rows(self, rows: int) -> None:
        """Rows `take_rows` took, given back (on the event loop, where they were taken)."""
        self.busy -= rows

    def publish(self, updates: list[Update]) -> None:
        """Called by an engine thread: one hand-off to the event loop per batch of updates."""
        self.metrics.made(sum(len(u.text) for u in updates))
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(deliver, updates)

    def model(self, name: str | None) -> Served:
        """A loaded model by id (None: the first); never a path: ids are only names in this dict."""
        if self.failure:
            raise APIError(500, f"the model could not be loaded: {self.failure}", code="model_load_failed")
        if not self.ready.is_set():
            raise APIError(503, "the model is still loading; retry in a moment", code="loading", kind="server_error")
        if name is None:
            return next(iter(self.models.values()))
        if name in self.models:
            return self.models[name]
        known = ", ".join(self.models)
        runs = [self.models[full] for full in self.by_corpus.get(name, [])]
        if len(runs) == 1:  # a run's corpus names it too
            return runs[0]
        if runs:
            raise APIError(
                404, f"the model `{name}` is ambiguous: give one of {', '.join(s.name for s in runs)}", "model",
                "model_not_found",
            )  # fmt: skip
        raise APIError(
            404, f"the model `{shown(name)}` does not exist here; loaded: {known}", "model", "model_not_found"
        )

    def model_names(self) -> list[str]:
        """Every name `model` serves a model by: the ids, and each corpus that names one model only."""
        return [
            *self.loaders,
            *(corpus for corpus, ids in self.by_corpus.items() if len(ids) == 1 and corpus not in self.loaders),
        ]

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, key = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), self.api_key.encode()):
            raise APIError(401, "invalid or missing API key: send `Authorization: Bearer KEY`", code="invalid_api_key")


def fingerprint(model: CharLM) -> str:
    """OpenAI's `system_fingerprint`, "the backend configuration": a digest of what a seeded sample
    depends on (the weights, the vocabulary, the versions of charlm and torch, the device), so that a
    client can tell when the same seed may give another text."""
    parameter = next(model.parameters())
    setup = [__version__, torch.__version__, str(parameter.device), model.config.to_dict(), model.vocab.to_dict()]
    digest = hashlib.sha256(json.dumps(setup, sort_keys=True, ensure_ascii=False).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return "fp_" + digest.hexdigest()[:12]


def shutting_down() -> APIError:
    """What a request that comes too late to run is told once the server began to stop (`stop`)."""
    return APIError(503, "the server is shutting down", code="shutting_down")


def deliver(updates: list[Update]) -> None:
    """On the event loop: each update to the request it belongs to (`Completion.receive`)."""
    for update in updates:
        update.job.sink(update)
