"""A request's answer, made from its `Completion`'s updates: one JSON body once every choice is whole, or
server-sent events as the updates come (completions' and chat's chunks, the Responses API's typed events),
built of the shapes shapes.py writes. Large answers are written off the event loop, and a client that
goes away cancels its rows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from . import shapes
from .api_error import APIError
from .completion import Completion
from .engine import Token, Update

T = TypeVar("T")

SMALL_ANSWER = 1 << 14  # characters and logprobs of a whole answer built and written on the event loop


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
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


async def answer(
    request: Request, run: Completion, streamed: Callable[[], AsyncIterator[str]], body: Callable[..., dict]
) -> Response:
    """A completion's response, either kind: its events as they are made, or one JSON body once whole."""
    await run.start()
    if run.params.stream:
        return event_stream(streamed(), run)
    try:
        made = await unless_disconnected(request, collect(run))
    finally:  # an engine error too: its rows must not stay taken (every later request a 429)
        run.cancel()
    if made is None:
        return Response(status_code=499)
    params = run.params
    if params.choices * params.max_tokens * (1 + (params.logprobs or 0)) <= SMALL_ANSWER:
        return JSONResponse(body(*made))
    return Response(await asyncio.to_thread(lambda: rendered(body(*made))), media_type="application/json")


def rendered(body: dict) -> bytes:
    """`body` as JSONResponse writes it, for a worker thread, each choice written apart: json.dumps, in C,
    holds the GIL throughout, and the whole answer of n=64, max_tokens 4096 and logprobs 20 (over 100 MB)
    built and written on the event loop held every stream and /health for seconds. A Responses API body
    (one message, as large as one such choice: `ResponseReply`) has no choices, and is written whole."""

    def dumped(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    if "choices" not in body:
        return dumped(body).encode()
    choices = ",".join(map(dumped, body["choices"]))  # a string holds no bare quote: "choices" is the field
    return dumped({**body, "choices": []}).replace('"choices":[]', f'"choices":[{choices}]', 1).encode()


def event_stream(events: AsyncIterator[str], run: Completion) -> StreamingResponse:
    """Server-sent events with Starlette's own streaming response, which cancels the generator the
    moment the client disconnects (measured: half the CPU per event of sse-starlette's)."""
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

    async def cancel() -> None:
        """On the event loop, where requests take rows: Starlette runs a plain function in a worker
        thread, and a count changed in two threads at once can lose a change for good."""
        run.cancel()

    return StreamingResponse(events, media_type="text/event-stream", headers=headers, background=BackgroundTask(cancel))


async def collect(run: Completion) -> tuple[list[str], list[list[Token]], list[str | None]]:
    """A whole response: each choice's text, tokens and finish reason."""
    count = run.params.choices
    texts, tokens, reasons = [[] for _ in range(count)], [[] for _ in range(count)], [None] * count
    async for update in run.updates():
        i = run.index(update)
        texts[i].append(update.text)
        tokens[i] += update.tokens or []
        reasons[i] = update.finish_reason or reasons[i]
    return ["".join(t) for t in texts], tokens, reasons


def reply(
    run: Completion, kind: str, id_: str, choices: list[dict], use: dict | None, times: dict | None = None
) -> dict:
    """A response body or stream chunk of `run` (`shapes.response`)."""
    return shapes.response(kind, id_, run.created, run.served.name, run.served.fingerprint, choices, use, times)


def seeded(choice: dict, run: Completion, i: int) -> dict:
    """Choice `i` with the `seed` that writes it again (`Completion.seed`), a field OpenAI's have not and its
    clients keep (the openai package: `choice.model_extra["seed"]`); a stream gives it once a choice, in its
    first chunk, as it gives the role."""
    return choice | {"seed": run.seed(i)}


def completion_body(run: Completion, texts: list[str], tokens: list[list[Token]], reasons: list) -> dict:
    params, choices = run.params, []
    for i, (text, reason) in enumerate(zip(texts, reasons)):
        prompt = run.read[i // params.n] if params.echo else ""
        echoed = (run.echoed[i // params.n] or []) if params.echo else []
        logprobs = None
        if params.logprobs is not None:
            logprobs = shapes.completion_logprobs(echoed + tokens[i], 0)
        choices.append(seeded(shapes.completion_choice(i, prompt + text, logprobs, reason), run, i))
    use = shapes.usage(run.prompt_chars, run.made())
    return reply(run, "text_completion", shapes.new_id("cmpl"), choices, use, run.timings())


def chat_body(
    run: Completion, wants_logprobs: bool, texts: list[str], tokens: list[list[Token]], reasons: list
) -> dict:
    choices = [
        seeded(shapes.chat_choice(i, text, shapes.chat_logprobs(tokens[i]) if wants_logprobs else None, reason), run, i)
        for i, (text, reason) in enumerate(zip(texts, reasons))
    ]
    use = shapes.usage(run.prompt_chars, run.made())
    return reply(run, "chat.completion", shapes.new_id("chatcmpl"), choices, use, run.timings())


async def events(
    run: Completion,
    first: Callable[[], list[dict]],
    chunk: Callable[[Update, int], dict],
    usage_chunk: Callable[[dict], dict],
) -> AsyncIterator[str]:
    """The server-sent events of a streamed response: `first`'s chunks, one chunk per update (the
    chunk that ends the request carries `timings`), the usage chunk if asked for, then [DONE]. With
    the usage chunk every other chunk has `usage: null`, as OpenAI's do. A client that goes away
    cancels this generator, and with it the request's rows."""
    usage = {"usage": None} if run.params.include_usage else {}
    try:
        for body in first():
            yield event(body | usage)
        async for update in run.updates():
            body = chunk(update, run.index(update)) | usage
            if run.open == 0:
                body["timings"] = run.timings()
            yield event(body)
        if run.params.include_usage:
            yield event(usage_chunk(shapes.usage(run.prompt_chars, run.made())))
        yield "data: [DONE]\n\n"
    except APIError as e:
        yield event(e.body())
    finally:
        run.cancel()


# Characters JSON leaves unescaped that Python's str.splitlines ends a line at (httpx's iter_lines, the
# usual way to read events with httpx): escaped, so that no echoed prompt or text splits an event's JSON in two
LINE_ENDS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def one_line_json(value: Any) -> str:
    """`value` as JSON on one line for any reader's notion of a line."""
    data = json.dumps(value, ensure_ascii=False)
    for character, escaped in LINE_ENDS.items():
        data = data.replace(character, escaped)
    return data


def event(body: dict) -> str:
    """A server-sent event of `body`."""
    return f"data: {one_line_json(body)}\n\n"


def stream_completion(run: Completion) -> AsyncIterator[str]:
    params, id_, offsets = run.params, shapes.new_id("cmpl"), {}

    def body(choices: list[dict], use: dict | None = None) -> dict:
        return reply(run, "text_completion", id_, choices, use)

    def first() -> list[dict]:
        if not params.echo:
            return []
        chunks = []
        for i in range(params.choices):
            prompt, echoed = run.read[i // params.n], run.echoed[i // params.n] or []
            logprobs = shapes.completion_logprobs(echoed, 0) if params.logprobs is not None else None
            offsets[i] = len(prompt)
            chunks.append(body([seeded(shapes.completion_choice(i, prompt, logprobs, None), run, i)]))
        return chunks

    def chunk(update: Update, i: int) -> dict:
        logprobs = None
        if params.logprobs is not None:
            logprobs = shapes.completion_logprobs(update.tokens or [], offsets.get(i, 0))
        choice = shapes.completion_choice(i, update.text, logprobs, update.finish_reason)
        first = i not in offsets  # with echo, the choice's first chunk was its prompt's
        offsets[i] = offsets.get(i, 0) + len(update.text)
        return body([seeded(choice, run, i) if first else choice])

    return events(run, first, chunk, lambda use: body([], use))


def stream_chat(run: Completion, wants_logprobs: bool) -> AsyncIterator[str]:
    id_, started = shapes.new_id("chatcmpl"), set()

    def body(choices: list[dict], use: dict | None = None) -> dict:
        return reply(run, "chat.completion.chunk", id_, choices, use)

    def chunk(update: Update, i: int) -> dict:
        logprobs = shapes.chat_logprobs(update.tokens or []) if wants_logprobs else None
        first = i not in started
        choice = shapes.chat_choice(i, update.text, logprobs, update.finish_reason, True, first)
        started.add(i)
        return body([seeded(choice, run, i) if first else choice])

    return events(run, list, chunk, lambda use: body([], use))


class ResponseReply:
    """The Responses API's answer to `run`, whole (`body`) or as its stream of typed events (`events`),
    with the ids and settings that every one of its events repeats; its text's log-probabilities (chat's
    entries, `shapes.token_logprobs`) where `include` asked for them (`params.logprobs` not None)."""

    def __init__(self, run: Completion, echoed: dict) -> None:
        self.run, self.wants_logprobs = run, run.params.logprobs is not None
        self.id, self.message_id = shapes.new_id("resp", "_"), shapes.new_id("msg", "_")
        params = run.params
        # with the `seed` that writes its text again (`Completion.seed`), a field OpenAI's response has not
        self.settings = {**echoed, "temperature": params.temperature, "top_p": params.top_p or 1.0, "seed": run.seed(0)}

    def logprobs(self, tokens: list[Token]) -> list[dict]:
        return shapes.token_logprobs(tokens) if self.wants_logprobs else []

    def response(self, status: str, text: str | None = None, logprobs: list[dict] | list[str] | None = None) -> dict:
        """The response object: in progress (no output or usage yet), or finished with `text`; `logprobs`
        as `shapes.output_text` takes them."""
        run = self.run
        output = [] if text is None else [shapes.output_message(self.message_id, text, status, logprobs)]
        use = None if text is None else shapes.response_usage(run.prompt_chars, run.made())
        return shapes.response_object(self.id, run.created, run.served.name, status, output, use, self.settings)

    def body(self, texts: list[str], tokens: list[list[Token]], reasons: list) -> dict:
        return self.response(shapes.response_status(reasons[0]), texts[0], self.logprobs(tokens[0]))

    async def events(self) -> AsyncIterator[str]:
        """The events OpenAI's stream has, each with its `type` (also as the SSE event name) and
        `sequence_number`: the response created and in progress, the message and its text part added, a
        delta per update, then each done, and the response `completed` (or `incomplete`, cut by
        `max_output_tokens`). An error ends it as an `error` event; a client gone cancels the rows."""
        numbers, run = itertools.count(), self.run
        where = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        # The closing events each repeat the whole text's logprobs. Each entry is written to JSON once, in its
        # delta, and an event holds `slot` where entries go: `sent` puts their JSON there (the slot's mark is no
        # string a request can hold). Dumped anew in each, on the event loop, 64 streams of top_logprobs 20
        # ending together held every stream and /health for seconds.
        mark = f"logprobs-{uuid.uuid4().hex}"
        slot = [mark] if self.wants_logprobs else []

        def sent(kind: str, entries_json: str = "", **fields: Any) -> str:
            """The event of `kind`, `entries_json` (logprobs entries, without the list's brackets) in `slot`."""
            data = event({"type": kind, "sequence_number": next(numbers), **fields})
            return f"event: {kind}\n" + data.replace(f'"{mark}"', entries_json)

        try:
            yield sent("response.created", response=self.response("in_progress"))
            yield sent("response.in_progress", response=self.response("in_progress"))
            item = shapes.output_message(self.message_id, None, "in_progress")
            yield sent("response.output_item.added", output_index=0, item=item)
            yield sent("response.content_part.added", **where, part=shapes.output_text(""))
            texts, deltas_json, reason = [], [], None
            async for update in run.updates():
                reason = update.finish_reason or reason
                delta = self.logprobs(update.tokens or [])  # a healed seed's piece may have no text of its own
                if update.text or delta:
                    texts.append(update.text)
                    delta_json = one_line_json(delta)[1:-1]
                    deltas_json += [delta_json] if delta_json else []
                    yield sent("response.output_text.delta", delta_json, **where, delta=update.text, logprobs=slot)
            text, status, all_json = "".join(texts), shapes.response_status(reason), ",".join(deltas_json)
            yield sent("response.output_text.done", all_json, **where, text=text, logprobs=slot)
            yield sent("response.content_part.done", all_json, **where, part=shapes.output_text(text, slot))
            item = shapes.output_message(self.message_id, text, status, slot)
            yield sent("response.output_item.done", all_json, output_index=0, item=item)
            yield sent(f"response.{status}", all_json, response=self.response(status, text, slot))
        except APIError as e:
            yield sent("error", code=e.code, message=e.message, param=e.param)
        finally:
            run.cancel()
