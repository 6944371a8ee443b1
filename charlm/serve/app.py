"""The HTTP layer: routes, the API key, streaming, and the hand-off between asyncio and the engines.

A request is checked (`protocol.py`), its prompts are primed in a worker thread (each alone, so a
seeded sample never depends on the batch), and it becomes one `Job` per prompt in its model's
`Engine`. The engine thread publishes updates in batches; `Server.publish` hands each batch to the
event loop with one call, which routes every update to its request's queue. A request whose client
goes away cancels its jobs: their rows leave the batch at the next step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hmac
import json
import os
import secrets
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from ..config import SampleConfig
from ..errors import CharLMError
from ..model import CharLM
from ..vocab import UnknownCharacterWarning
from . import protocol
from .config import ServeConfig
from .engine import Engine, Job, Token, Update, prompt_tokens
from .metrics import Metrics
from .protocol import APIError, Params

MAX_BODY_OVERHEAD = 1 << 20  # bytes a request body may have beyond its prompts


@dataclasses.dataclass
class Served:
    """A loaded model under its id."""

    name: str
    model: CharLM
    engine: Engine
    created: int


class Server:
    """What the routes share: the models and their engines, the limits, the counters."""

    def __init__(self, loaders: dict[str, Callable[[], CharLM]], config: ServeConfig):
        self.loaders, self.config = loaders, config
        self.api_key = config.api_key or os.environ.get("CHARLM_API_KEY") or None
        self.models: dict[str, Served] = {}
        self.ready = threading.Event()
        self.failure: str | None = None
        self.metrics = Metrics()
        self.busy = 0  # rows taken by requests in flight, all models together
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_failure: Callable[[], None] | None = None  # `serve` stops the process when loading fails
        # Prompts are primed one at a time beside the engine: many threads at once would only fight
        # over the cores and the GIL (64 requests arriving together each waited longer that way).
        self.primer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="charlm-prime")

    def load(self) -> None:
        """Load every model and start its engine (in a thread: /health says 503 meanwhile)."""
        try:
            for name, loader in self.loaders.items():
                model = loader()
                engine = Engine(model, self.config.max_streams, self.publish, self.config.chunk_ms / 1000, name)
                engine.start()
                self.models[name] = Served(name, model, engine, int(time.time()))
        except Exception as e:  # noqa: BLE001 -- any failure must reach /health and the command, not hang both
            self.failure = str(e) if isinstance(e, CharLMError) else f"{type(e).__name__}: {e}"
            if self.on_failure:
                self.on_failure()
        self.ready.set()

    def close(self) -> None:
        for served in self.models.values():
            served.engine.close()
        self.primer.shutdown(wait=False, cancel_futures=True)

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
        if name not in self.models:
            known = ", ".join(self.models)
            raise APIError(404, f"the model `{name}` does not exist here; loaded: {known}", "model", "model_not_found")
        return self.models[name]

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, key = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), self.api_key.encode()):
            raise APIError(401, "invalid or missing API key: send `Authorization: Bearer KEY`", code="invalid_api_key")


def deliver(updates: list[Update]) -> None:
    """On the event loop: each update to the queue of the request it belongs to."""
    for update in updates:
        update.job.sink.put_nowait(update)


class Completion:
    """One request in flight: a job per prompt, all reporting to one queue."""

    def __init__(self, server: Server, served: Served, params: Params):
        self.server, self.served, self.params = server, served, params
        self.queue: asyncio.Queue[Update] = asyncio.Queue()
        self.jobs: list[Job] = []
        self.rows = params.n * len(params.prompts)
        self.prompt_chars = sum(len(p) for p in params.prompts)
        self.prompt_ms = 0.0
        self.echoed: list[list[Token] | None] = []
        self.seed = secrets.randbits(62) if params.seed is None else params.seed
        self.open = self.rows
        self.finished = False

    async def start(self) -> None:
        """Take rows (429 when there are none to take), prime the prompts, hand the jobs to the engine."""
        server, config = self.server, self.server.config
        if server.busy + self.rows > config.max_streams:
            raise APIError(
                429, f"{server.busy} of {config.max_streams} streams are busy; retry shortly", code="too_many_streams"
            )
        server.busy += self.rows
        try:
            encoded = [self.encode(prompt) for prompt in self.params.prompts]
            start = time.perf_counter()
            primed = await asyncio.get_running_loop().run_in_executor(server.primer, self.prime, encoded)
            self.prompt_ms = (time.perf_counter() - start) * 1000
        except BaseException:
            self.release()
            raise
        options = SampleConfig(
            temperature=self.params.temperature or 1.0,
            greedy=self.params.temperature == 0,
            top_k=self.params.top_k,
            top_p=self.params.top_p,
            repetition_penalty=self.params.repetition_penalty,
        )
        seeds = [self.seed + i for i in range(self.params.n)]
        for (ids, logits, state), echoed in zip(primed, self.echoed):
            job = Job(ids, logits, state, options, seeds, self.params.max_tokens, self.params.stops)
            job.logprobs, job.sink = self.params.logprobs, self.queue
            self.jobs.append(job)
            self.served.engine.submit(job)
        self.server.metrics.prompt(self.served.name, self.prompt_chars)

    def encode(self, prompt: str):
        vocab = self.served.model.vocab
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnknownCharacterWarning)
            try:
                return vocab.encode(prompt or vocab.start_text(), what="prompt"), prompt
            except CharLMError as e:
                raise APIError(400, str(e), "prompt", "unknown_characters") from None

    def prime(self, encoded: list) -> list:
        """In a worker thread: each prompt read alone; with echo and logprobs, its own log-probabilities."""
        primed = []
        for ids, prompt in encoded:
            logits, state = self.served.engine.stepper.prime(ids)
            primed.append((ids, logits, state))
            wants_prompt = self.params.echo and self.params.logprobs is not None and prompt
            self.echoed.append(prompt_tokens(self.served.model, prompt, self.params.logprobs) if wants_prompt else None)
        return primed

    def index(self, update: Update) -> int:
        """The choice index: prompt p's sample j is p * n + j."""
        return self.jobs.index(update.job) * self.params.n + update.index

    async def updates(self) -> AsyncIterator[Update]:
        """Every update until every sample is finished; an engine error becomes an APIError."""
        while self.open:
            update = await self.queue.get()
            if update.error:
                raise APIError(500, update.error, code="generation_failed")
            if update.finish_reason is not None:
                self.open -= 1
            yield update
        self.finished = True

    def timings(self) -> dict:
        jobs = [j for j in self.jobs if j.admitted is not None]
        made = sum(j.made for j in self.jobs)
        start = min((j.admitted for j in jobs), default=0.0)
        end = max((j.finished or time.monotonic() for j in jobs), default=0.0)
        return protocol.timings(self.prompt_chars, self.prompt_ms, made, (end - start) * 1000)

    def made(self) -> int:
        return sum(j.made for j in self.jobs)

    def cancel(self) -> None:
        for job in self.jobs:
            self.served.engine.cancel(job)
        self.release()

    def release(self) -> None:
        if self.rows:
            self.server.busy -= self.rows
            self.rows = 0


async def read_json(request: Request, limit: int):
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise APIError(413, f"the request body is over {limit:,} bytes", code="request_too_large")
    try:
        return json.loads(body)
    except ValueError as e:
        raise APIError(400, f"the request body is not valid JSON ({e})", code="invalid_json") from None


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work) -> object | None:
    """Runs `work` (a coroutine); None if the client went away first (the work is then cancelled)."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


class RequestCounter:
    """ASGI middleware: counts every answer by endpoint and status, for /metrics."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counting(message):
            if message["type"] == "http.response.start":
                self.metrics.request(scope["path"] if scope["path"] in ENDPOINTS else "other", message["status"])
            await send(message)

        return await self.app(scope, receive, counting)


ENDPOINTS = {"/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"}


def create_app(loaders: dict[str, Callable[[], CharLM]], config: ServeConfig) -> FastAPI:
    """The app serving the models that `loaders` return, under their ids."""
    if not loaders:
        raise CharLMError("no model to serve")
    server = Server(loaders, config)
    files = resources.files(__package__)
    css = files.joinpath("page.css").read_text(encoding="utf-8")  # shared with the exported page
    page = files.joinpath("page.html").read_text(encoding="utf-8").replace("/* page.css */", css, 1)
    body_limit = MAX_BODY_OVERHEAD + 4 * config.max_prompt * config.max_streams

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.loop = asyncio.get_running_loop()
        threading.Thread(target=server.load, name="charlm-load", daemon=True).start()
        yield
        await asyncio.to_thread(server.close)

    app = FastAPI(title="charlm", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    app.add_middleware(RequestCounter, metrics=server.metrics)

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        headers = {"Retry-After": "1"} if error.status in (429, 503) else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return JSONResponse(APIError(error.status_code, str(error.detail)).body(), status_code=error.status_code)

    @app.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> JSONResponse:
        if server.failure:
            return JSONResponse({"status": "error", "message": server.failure}, status_code=500)
        if not server.ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        data = [
            {
                "id": s.name,
                "object": "model",
                "created": s.created,
                "owned_by": "charlm",
                "meta": {**s.model.config.to_dict(), "parameters": s.model.num_parameters()},
            }
            for s in server.models.values()
        ]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        server.check_key(request)
        engines = {name: s.engine for name, s in server.models.items()}
        return PlainTextResponse(server.metrics.render(engines), media_type="text/plain; version=0.0.4")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        server.check_key(request)
        params = protocol.completion_params(await read_json(request, body_limit), config)
        run = Completion(server, server.model(params.model), params)
        await run.start()
        if params.stream:
            return event_stream(stream_completion(run), run)
        result = await unless_disconnected(request, collect(run))
        run.cancel()
        if result is None:
            return Response(status_code=499)
        return JSONResponse(completion_body(run, *result))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        server.check_key(request)
        params, wants_logprobs = protocol.chat_params(await read_json(request, body_limit), config)
        run = Completion(server, server.model(params.model), params)
        await run.start()
        if params.stream:
            return event_stream(stream_chat(run, wants_logprobs), run)
        result = await unless_disconnected(request, collect(run))
        run.cancel()
        if result is None:
            return Response(status_code=499)
        return JSONResponse(chat_body(run, wants_logprobs, *result))

    return app


def event_stream(events: AsyncIterator[str], run: Completion) -> StreamingResponse:
    """Server-sent events with Starlette's own streaming response, which cancels the generator the
    moment the client disconnects (measured: half the CPU per event of sse-starlette's)."""
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        events, media_type="text/event-stream", headers=headers, background=BackgroundTask(run.cancel)
    )


async def collect(run: Completion) -> tuple[list[str], list[list[Token]], list[str | None]]:
    """A whole response: each choice's text, tokens and finish reason."""
    count = run.params.n * len(run.params.prompts)
    texts, tokens, reasons = [[] for _ in range(count)], [[] for _ in range(count)], [None] * count
    async for update in run.updates():
        i = run.index(update)
        texts[i].append(update.text)
        tokens[i] += update.tokens or []
        reasons[i] = update.finish_reason or reasons[i]
    return ["".join(t) for t in texts], tokens, reasons


def completion_body(run: Completion, texts: list[str], tokens: list[list[Token]], reasons: list) -> dict:
    params, choices = run.params, []
    for i, (text, reason) in enumerate(zip(texts, reasons)):
        prompt = params.prompts[i // params.n] if params.echo else ""
        echoed = (run.echoed[i // params.n] or []) if params.echo else []
        logprobs = None
        if params.logprobs is not None:
            logprobs = protocol.completion_logprobs(echoed + tokens[i], 0)
        choices.append(protocol.completion_choice(i, prompt + text, logprobs, reason))
    use = protocol.usage(run.prompt_chars, run.made())
    return protocol.completion(protocol.new_id("cmpl"), run.served.name, choices, use, run.timings())


def chat_body(
    run: Completion, wants_logprobs: bool, texts: list[str], tokens: list[list[Token]], reasons: list
) -> dict:
    choices = [
        protocol.chat_choice(i, text, protocol.chat_logprobs(tokens[i]) if wants_logprobs else None, reason)
        for i, (text, reason) in enumerate(zip(texts, reasons))
    ]
    use = protocol.usage(run.prompt_chars, run.made())
    return protocol.chat(protocol.new_id("chatcmpl"), run.served.name, choices, use, run.timings())


async def events(run: Completion, first: Callable[[], list[dict]], chunk: Callable[[Update, int], dict], usage_chunk):
    """The server-sent events of a streamed response: `first`'s chunks, one chunk per update (the
    chunk that ends the request carries `timings`), the usage chunk if asked for, then [DONE]. A
    client that goes away cancels this generator, and with it the request's rows."""
    try:
        for body in first():
            yield event(body)
        async for update in run.updates():
            body = chunk(update, run.index(update))
            if run.open == 0:
                body["timings"] = run.timings()
            yield event(body)
        if run.params.include_usage:
            yield event(usage_chunk(protocol.usage(run.prompt_chars, run.made())))
        yield "data: [DONE]\n\n"
    except APIError as e:
        yield event(e.body())
    finally:
        run.cancel()


def event(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def stream_completion(run: Completion) -> AsyncIterator[str]:
    params, id_, offsets = run.params, protocol.new_id("cmpl"), {}

    def body(choices: list[dict]) -> dict:
        return {
            "id": id_,
            "object": "text_completion",
            "created": int(time.time()),
            "model": run.served.name,
            "choices": choices,
        }

    def first() -> list[dict]:
        if not params.echo:
            return []
        chunks = []
        for i in range(params.n * len(params.prompts)):
            prompt, echoed = params.prompts[i // params.n], run.echoed[i // params.n] or []
            logprobs = protocol.completion_logprobs(echoed, 0) if params.logprobs is not None else None
            offsets[i] = len(prompt)
            chunks.append(body([protocol.completion_choice(i, prompt, logprobs, None)]))
        return chunks

    def chunk(update: Update, i: int) -> dict:
        logprobs = None
        if params.logprobs is not None:
            logprobs = protocol.completion_logprobs(update.tokens or [], offsets.get(i, 0))
        offsets[i] = offsets.get(i, 0) + len(update.text)
        return body([protocol.completion_choice(i, update.text, logprobs, update.finish_reason)])

    return events(run, first, chunk, lambda use: {**body([]), "usage": use})


def stream_chat(run: Completion, wants_logprobs: bool) -> AsyncIterator[str]:
    id_ = protocol.new_id("chatcmpl")

    def chunk(update: Update, i: int) -> dict:
        logprobs = protocol.chat_logprobs(update.tokens or []) if wants_logprobs else None
        choice = protocol.chat_choice(i, update.text, logprobs, update.finish_reason, delta=True)
        return protocol.chat(id_, run.served.name, [choice], None, chunk=True)

    return events(run, list, chunk, lambda use: protocol.chat(id_, run.served.name, [], use, chunk=True))
