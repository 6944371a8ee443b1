"""`charlm serve`: the OpenAI API through the official `openai` client, continuous batching, the page.

Servers bind 127.0.0.1 on a free port. Most tests share one in-process server over a small
untrained model (what they check does not depend on training); the CLI and page tests train tiny
models first.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import copy
import functools
import gzip
import inspect
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import httpx
import openai
import pytest
import torch
import uvicorn
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from openai import AsyncOpenAI, OpenAI

from bench import serve_load
from charlm import CharLM, ModelConfig, checkpoint, train
from charlm.config import SampleConfig
from charlm.decoding import RowSampler
from charlm.device import to_host
from charlm.errors import CharLMError, counted
from charlm.fields import on_command_line
from charlm.generation import Batch, StopRule, healed_seed
from charlm.lstm_step import RowStepper, padded_rows
from charlm.sampler import generate
from charlm.serve import completion, listening_socket
from charlm.serve.api_error import APIError
from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig
from charlm.serve.engine import PARALLEL_ROWS
from charlm.serve.server import Server
from charlm.vocab import Vocab

from .conftest import (
    REPO,
    TINY,
    assert_one_line_error,
    block_import,
    cli,
    fork_charlm_processes,
    import_or_missing,
    left_running_after_a_kill,
    make_model,
    missing,
    run_bench,
    served_url,
    shared_corpus,
    start_charlm,
    state_telling,
    wait_healthy,
)

VOCAB = "\n !,.?abcdefghijklmnopqrstuvwxyz"
KEY = "test-key"


class PromptlyStopped(uvicorn.Server):
    """uvicorn's server, that sees `should_exit` within 10 ms: its own loop looks every 100 ms, which
    the ~90 servers the tests start and stop each waited out half of on average. (Its Date header is
    renewed each tenth tick: every 0.1 s here rather than every second.)"""

    async def main_loop(self) -> None:
        ticks = 0
        while not await self.on_tick(ticks):
            ticks = (ticks + 1) % 864_000
            await asyncio.sleep(0.01)


@contextlib.contextmanager
def running(app, timeout: float = 30, http: type | str = "auto"):
    """Serve `app` from a thread on a free port of 127.0.0.1 (with uvicorn's protocol `http`); yields the base URL."""
    sock = listening_socket("127.0.0.1", 0)
    server = PromptlyStopped(uvicorn.Config(app, http=http, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.time() + timeout
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def tiny_model():
    """Untrained, its state telling the prompt (`state_telling`): a door that primed a prompt wrongly writes
    another seeded text than generate's, which the untrained model's near-equal distributions hid."""
    torch.manual_seed(0)
    return state_telling(make_model(VOCAB, layers=2, hidden=32)).eval()


@pytest.fixture(scope="module")
def server(tiny_model):
    """One server for the API tests: the tiny model as `tiny`, an API key, 40 streams at most."""
    config = ServeConfig(api_key=KEY, max_streams=40, max_tokens=2000, max_prompt=1000, chunk_ms=20)
    app = create_app({"tiny": lambda: tiny_model}, config)
    with running(app) as url:
        wait_healthy(url)
        yield url, app.state.server


@pytest.fixture
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0)


def complete(client: OpenAI, **options) -> list[str]:
    response = client.completions.create(model="tiny", **{"prompt": "the ", "max_tokens": 40, **options})
    return [choice.text for choice in sorted(response.choices, key=lambda c: c.index)]


def streamed(client: OpenAI, **options) -> tuple[list[str], list]:
    """Each choice's text from a streamed completion, and the chunks."""
    chunks = list(
        client.completions.create(model="tiny", stream=True, **{"prompt": "the ", "max_tokens": 40, **options})
    )
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    return [texts[i] for i in sorted(texts)], chunks


# --- the batched step and sampler, row by row -------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "threads", "head"), [("lstm", 1, ()), ("lstm", 2, ()), ("gru", 1, ()), ("lstm", 1, (8, 20))]
)
def test_a_row_gets_the_same_bits_whatever_else_is_in_the_batch(cell, threads, head):
    torch.manual_seed(0)
    model = CharLM(ModelConfig(cell, 2, 48, 0.0, len(VOCAB), head), Vocab(VOCAB)).eval()
    if head:  # an adaptive head over characters ranked by a made-up frequency
        model.head.set_frequencies(torch.arange(len(VOCAB), 0, -1))
    previous = torch.get_num_threads()
    inputs = torch.randint(0, len(VOCAB), (40, 12))

    def first_row(rows: int) -> torch.Tensor:
        stepper = RowStepper(model, 40)
        logits, state = stepper.prime(torch.tensor([1, 2, 3]))
        for row in range(rows):
            stepper.load(row, logits, state)
        return torch.stack([stepper.step(inputs[:rows, t])[0].clone() for t in range(12)])

    torch.set_num_threads(threads)
    try:
        alone = first_row(1)
        for rows in (2, 3, 5, 6, 7, 9, 11, 12, 13, 17, 31, 40):
            assert torch.equal(first_row(rows), alone), rows
    finally:
        torch.set_num_threads(previous)
    with torch.no_grad():
        whole, _ = model(torch.cat([torch.tensor([1, 2, 3]), inputs[0]]).unsqueeze(0))
    assert torch.allclose(whole[0, 3:], alone, atol=1e-5)  # and it is the model's own prediction
    assert [padded_rows(n) for n in (1, 4, 5, 33)] == [4, 4, 8, 36]


def test_a_row_gets_the_same_bits_on_one_thread_alone_as_on_two_among_many():
    """The engine steps few rows on one torch thread and many on --threads (`PARALLEL_ROWS`): a seeded
    sample stays the same text whatever else is running only if the thread count changes no bits."""
    torch.manual_seed(0)
    model = CharLM(ModelConfig("lstm", 2, 64, 0.0, len(VOCAB)), Vocab(VOCAB)).eval()
    inputs = torch.randint(0, len(VOCAB), (2 * PARALLEL_ROWS, 12))

    def first_row(rows: int, threads: int) -> torch.Tensor:
        torch.set_num_threads(threads)
        stepper = RowStepper(model, rows)
        logits, state = stepper.prime(torch.tensor([1, 2, 3]))
        for row in range(rows):
            stepper.load(row, logits, state)
        return torch.stack([stepper.step(inputs[:rows, t])[0].clone() for t in range(12)])

    previous = torch.get_num_threads()
    try:
        alone = first_row(1, 1)
        assert torch.equal(first_row(PARALLEL_ROWS, 2), alone)
        assert torch.equal(first_row(2 * PARALLEL_ROWS, 2), alone)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_adaptive_head_computes_one_shape_whatever_the_number_of_rows(cell, monkeypatch):
    """Issue 26 item 16: on some CPUs the adaptive head's logits changed in their last bits from 9 rows
    up (its kernels depend on the number of rows). It now computes blocks of 8 rows: one shape, so a
    row is the same from 1 to 64 rows by construction, whatever this CPU's kernels do.

    Every count of rows is stepped on one torch thread, as the engine steps fewer than PARALLEL_ROWS
    (and every step at the default --threads 1); PARALLEL_ROWS rows on two threads too, as the engine
    steps them at --threads 2. On two threads torch splits even an 8 x 20 log_softmax between them, and
    on a loaded machine each split waits milliseconds for the other thread's core: every count on two
    threads took 8-10 s there, where one thread checks the blocks' one shape as well."""
    torch.manual_seed(0)
    model = CharLM(ModelConfig(cell, 2, 48, 0.0, len(VOCAB), (8, 20)), Vocab(VOCAB)).eval()
    model.head.set_frequencies(torch.arange(len(VOCAB), 0, -1))
    shapes, logits = set(), model.head.logits
    monkeypatch.setattr(model.head, "logits", lambda out: shapes.add(out.shape[:-1]) or logits(out))
    inputs = torch.randint(0, len(VOCAB), (64, 6))
    stepper = RowStepper(model, 64)
    primed = stepper.prime(torch.tensor([1, 2, 3]))
    shapes.clear()

    def first_row(rows: int, threads: int) -> torch.Tensor:
        torch.set_num_threads(threads)
        for row in range(rows):
            stepper.load(row, *primed)
        return torch.stack([stepper.step(inputs[:rows, t])[0].clone() for t in range(6)])

    previous = torch.get_num_threads()
    try:
        alone = first_row(1, 1)
        results = [first_row(rows, 1) for rows in range(2, 65)] + [first_row(PARALLEL_ROWS, 2)]
    finally:
        torch.set_num_threads(previous)
    assert len(shapes) == 1, shapes
    assert len(results) == 64 and all(torch.equal(result, alone) for result in results)


def test_a_row_chooses_what_it_chooses_alone_whatever_the_other_rows_ask():
    vocab = len(VOCAB)
    configs = [
        SampleConfig(temperature=0.7, top_k=3),
        SampleConfig(top_p=0.8, repetition_penalty=1.3),
        SampleConfig(temperature=1.5, top_k=5, top_p=0.9),
        SampleConfig(temperature=[0.5, 2.0]),
        SampleConfig(greedy=True, repetition_penalty=1.2),
        SampleConfig(),
    ]
    prime = torch.tensor([1, 2, 3, 1])
    rows = RowSampler(8, vocab)
    alone = [RowSampler(1, vocab) for _ in configs]
    for row, config in enumerate(configs):
        rows.set(row, config, 100 + row, prime)
        alone[row].set(0, config, 100 + row, prime)
    for step in range(400):
        logits = torch.randn(len(configs), vocab) * 3
        chosen = rows.choose(logits)
        for row in range(len(configs)):
            expected = alone[row].choose(logits[row : row + 1])
            assert chosen[row].item() == expected.item(), (step, row)


def test_rows_can_leave_and_the_others_go_on_unchanged():
    rows = RowSampler(4, 5)
    for row in range(3):
        rows.set(row, SampleConfig(temperature=0.5 + row), 7 + row, torch.tensor([0]))
    rows.move(2, 0)  # row 0 leaves, the last row takes its place
    assert rows.temperature[0].item() == 2.5 and rows.generators[0] is rows.generators[2]


@pytest.mark.parametrize(
    ("held", "stops", "expected"),
    [
        ("hello", ("xy",), ("hello", "", False)),
        ("hellox", ("xy",), ("hello", "x", False)),
        ("helloxy there", ("xy",), ("hello", "", True)),
        ("ab\n", ("\n\n", "b\nc"), ("a", "b\n", False)),
        ("abc", ("c", "bc"), ("a", "", True)),
    ],
)
def test_stop_text_is_held_back_until_it_cannot_begin_there(held, stops, expected):
    rule = StopRule(stops, keep=False)
    released, stopped = rule.feed(held)
    assert (released, rule.held, stopped) == expected


def test_a_long_stop_text_costs_per_character_not_per_character_of_the_stop():
    """Issue 26 item 1: matching used to slice every prefix of every stop on every step (quadratic in
    the stop's length). Side by side, a stop 100 times longer must not cost anywhere near 100 times as
    much to feed the same text (a ratio, not a time: these machines are noisy)."""

    def cost(length: int) -> float:
        stops = ("x" * length + "y", "z" * length)
        best = float("inf")
        for _ in range(3):
            rule, started = StopRule(stops, keep=False), time.perf_counter()
            for _ in range(400):
                rule.feed("x")  # every step could begin the stop: the worst case for holding back
            best = min(best, time.perf_counter() - started)
        return best

    assert cost(4000) < 10 * cost(40)
    rule = StopRule(("ab" * 3000 + "c",), keep=False)
    assert rule.feed("ab" * 2999) == ("", False) and rule.feed("abab") == ("ab", False)  # held: a stop may begin
    assert rule.feed("c!") == ("", True)


@pytest.mark.parametrize(
    ("pieces", "stops", "text"),
    [
        (["Al", "ice ", "the", " quick"], ("e q",), "Alice th"),
        (["Al", "ice ", "the", " quick"], ("ce t", "k"), "Ali"),
        (["ab", "cd", "ef"], ("x",), "abcdef"),
        (["ab", "cd", "ef", "gh"], ("def",), "abc"),
    ],
)
def test_a_piece_cut_by_a_stop_keeps_its_token(pieces, stops, text):
    """Issue 26 item 7: a sentencepiece piece released in part was never given its token, and the
    tokens lagged the text ('Alice th' with tokens ['Al', 'ice '])."""
    from charlm.serve.engine import Job, Stream, Token

    job = Job(torch.zeros(1), torch.zeros(1), None, SampleConfig(), [0], 100, stops, logprobs=1)
    row, made = Stream(job, 0), []
    for piece in pieces:
        row.emit(row.take(piece), Token("", -1.0, []))
        made += [row.update()] if row.text or row.finish_reason else []
        if row.finish_reason:
            break
    assert "".join(u.text for u in made) == text
    assert "".join(t.text for u in made for t in u.tokens) == text


def test_a_piece_cut_by_a_stop_is_listed_in_its_top_logprobs_as_drawn():
    """A piece " I" cut to " " by the stop "I" was listed in `top_logprobs` as `{" ": -5.3}`, the whole
    piece's logprob under its cut text, beside (with logprobs 5) `" ": -3.7`, the piece " "'s own. The
    entry is the token drawn, as OpenAI counts tokens: its logprob stays the piece's (the model gave no
    number to part of a piece), listed under the piece it drew; `tokens` keeps the cut text."""
    from charlm.serve.engine import Job, Stream, Token
    from charlm.serve.shapes import completion_logprobs

    job = Job(torch.zeros(1), torch.zeros(1), None, SampleConfig(), [0], 100, ("I",), logprobs=1)
    row = Stream(job, 0)
    row.emit(row.take(" I"), Token("", -5.3, [("\n", -1.9), (" ", -3.7)]))
    logprobs = completion_logprobs(row.update().tokens, 0)
    assert logprobs["tokens"] == [" "] and logprobs["token_logprobs"] == [-5.3]
    assert logprobs["top_logprobs"] == [{"\n": -1.9, " ": -3.7, " I": -5.3}]


# --- the API through the openai client ---------------------------------------------------------


def test_the_server_and_generate_drive_one_engine_to_the_same_text(client, tiny_model):
    options = {"temperature": 0.9, "top_p": 0.95, "n": 2, "seed": 5}
    served = complete(client, max_tokens=60, extra_body={"top_k": 8, "repetition_penalty": 1.2}, **options)
    made = generate(tiny_model, "the ", length=60, temperature=0.9, top_p=0.95, top_k=8, repetition_penalty=1.2,
                    num_samples=2, random_seed=5)  # fmt: skip
    assert served == [text[len("the ") :] for text in made]


def test_an_empty_prompt_starts_where_generates_empty_seed_does(client, tiny_model):
    """An empty prompt and an empty seed are both primed with the start of a line (`generation.primed_text`):
    the same greedy text at either door (`tiny_model`'s state tells where it began: another start writes
    another text)."""
    served = complete(client, prompt="", max_tokens=30, temperature=0)
    assert served == generate(tiny_model, "", length=30, greedy=True)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_server_reads_prompts_and_steps_rows_in_real_fp32_as_generate_does(cell, monkeypatch):
    """On a GPU, cuDNN runs an fp32 recurrent core in TF32 (10-bit mantissas) while torch's flag, on by
    default, allows it; `inference` turns it off, as charlm.generate reads a seed. The server read its
    prompts (and a GRU's rows stepped) with it on: a GPU server's state and logprobs were neither a GPU
    generate's nor the CPU's. The flag is seen here on a CPU too, wherever the core runs."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    torch.manual_seed(0)
    model = make_model(VOCAB, cell=cell, layers=1, hidden=16).eval()
    seen = []
    model.core.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.allow_tf32))
    with running(create_app({"tiny": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        body = {"model": "tiny", "prompt": "the ", "max_tokens": 5, "seed": 1}
        assert httpx.post(f"{url}/v1/completions", json=body, timeout=30).status_code == 200
    assert seen and not any(seen), seen


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_model_in_training_mode_is_served_as_generate_samples_it_and_idle_gets_its_mode_back(cell, monkeypatch):
    """A model handed to `create_app` straight from training (dropout on) is primed and stepped in
    `inference`, as generate samples it: a seeded text is generate's. The engine held that context for its
    thread's life, so an idle server kept the caller's model in eval mode (a model trained on in the same
    process lost its dropout) and the process's cuDNN TF32 flag off: both come back once no row is live."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    torch.manual_seed(0)
    model = state_telling(make_model(VOCAB, cell, layers=2, hidden=32, dropout=0.5)).train()
    app = create_app({"tiny": lambda: model}, ServeConfig(api_key=KEY, chunk_ms=0))
    with running(app) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        served = complete(client, max_tokens=40, n=2, seed=3, temperature=0.9)
        idle = app.state.server.models["tiny"].engine
        wait_until(lambda: idle.active == 0 and model.training and torch.backends.cudnn.allow_tf32)
    made = generate(model, "the ", length=40, temperature=0.9, num_samples=2, random_seed=3)
    assert served == [text[len("the ") :] for text in made]
    assert model.training


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_model_trained_between_two_requests_is_served_with_its_new_weights(cell):
    """The engine's fused LSTM step holds copies of the weights, made when the server starts: a model
    served from Python and trained further in the same process was sampled with the weights it started
    with. The engine builds its batch anew, at a busy spell's start, once the weights changed."""
    torch.manual_seed(0)
    model = state_telling(make_model(VOCAB, cell, layers=2, hidden=32)).train()  # train mode: idle gives it back
    app = create_app({"tiny": lambda: model}, ServeConfig(api_key=KEY, chunk_ms=0))
    with running(app) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        before = complete(client, max_tokens=40, seed=3, temperature=0.9)
        engine = app.state.server.models["tiny"].engine
        wait_until(lambda: engine.active == 0 and model.training)  # the busy spell is over
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        for parameter in model.parameters():
            parameter.grad = torch.randn_like(parameter)
        optimizer.step()  # a training step, in place
        after = complete(client, max_tokens=40, seed=3, temperature=0.9)
    made = generate(model, "the ", length=40, temperature=0.9, random_seed=3)
    assert after == [made[0][len("the ") :]] != before


def test_a_negative_seed_is_taken_as_openai_and_generate_take_it(client, tiny_model):
    """OpenAI's seed is any 64-bit integer, and `charlm.generate` takes a negative one; the server refused
    all but -1 (which stays llama.cpp's "pick one")."""
    made = generate(tiny_model, "the ", length=20, temperature=1.0, num_samples=2, random_seed=-5)
    assert complete(client, max_tokens=20, n=2, seed=-5) == [text[len("the ") :] for text in made]


def test_the_largest_64_bit_seeds_are_taken_as_generate_takes_them(client, tiny_model):
    """OpenAI's seed is any signed 64-bit integer, and so is `charlm.generate`'s random_seed (sample i
    draws from seed + i, which torch takes up to 2^64 - 1); the server refused seeds above 2^63 - 1024."""
    seed = 2**63 - 1
    made = generate(tiny_model, "the ", length=20, temperature=1.0, num_samples=2, random_seed=seed)
    assert complete(client, max_tokens=20, n=2, seed=seed) == [text[len("the ") :] for text in made]
    with pytest.raises(openai.BadRequestError) as caught:
        complete(client, seed=2**63)
    assert caught.value.body["param"] == "seed"


def test_completion_counts_characters_and_streaming_gives_the_same_text(client, tiny_model):
    response = client.completions.create(model="tiny", prompt="the ", max_tokens=50, seed=11, temperature=0.9)
    choice = response.choices[0]
    assert len(choice.text) == 50 and choice.finish_reason == "length" and response.object == "text_completion"
    assert response.usage.prompt_tokens == 4 and response.usage.completion_tokens == 50
    assert response.usage.total_tokens == 54 and response.model == "tiny"
    timings = response.model_extra["timings"]
    assert timings["prompt_n"] == 4 and timings["predicted_n"] == 50 and timings["predicted_ms"] > 0
    texts, chunks = streamed(client, max_tokens=50, seed=11, temperature=0.9)
    assert texts == [choice.text]
    assert len(chunks) < 50  # characters are sent in chunks, not one event each
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["length"]
    assert all(c.object == "text_completion" for c in chunks)
    assert set(choice.text) <= set(tiny_model.vocab.chars)


def test_stream_is_server_sent_events_ending_in_done(server):
    url, _ = server
    body = {"model": "tiny", "prompt": "a", "max_tokens": 30, "stream": True, "seed": 1}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.strip()]
    assert all(line.startswith("data: ") for line in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and "timings" in chunks[-1]
    assert sum(len(c["choices"][0]["text"]) for c in chunks) == 30


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"prompt": "a", "n": 2}),
        ("/v1/completions", {"prompt": "a", "echo": True}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}]}),
    ],
)
def test_include_usage_adds_a_usage_chunk_and_every_other_chunk_has_usage_null(server, path, body):
    """OpenAI's stream_options.include_usage: "All other chunks will also include a usage field, but
    with a null value"; charlm's left the field out, which a client reading chunk["usage"] trips on."""
    url, _ = server
    body = {"model": "tiny", "max_tokens": 30, "stream": True, "stream_options": {"include_usage": True}, **body}
    with httpx.stream("POST", f"{url}{path}", json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        events = [line[6:] for line in r.iter_lines() if line.strip()]
    assert events[-1] == "[DONE]"
    *chunks, last = [json.loads(e) for e in events[:-1]]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 30 * body.get("n", 1)
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]
    assert chunks and all("usage" in c and c["usage"] is None for c in chunks)
    body["stream_options"] = None
    with httpx.stream("POST", f"{url}{path}", json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        plain = [json.loads(line[6:]) for line in r.iter_lines() if line.strip() and line != "data: [DONE]"]
    assert plain and all("usage" not in c and c["choices"] for c in plain)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/completions", {"prompt": "a"}), ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}]})],
)
def test_stream_options_without_a_stream_is_refused_as_openai_refuses_it(server, path, body):
    """stream_options with no `stream: true` was accepted and did nothing: a client that asked for a
    usage chunk got a plain body and no word why. OpenAI answers 400 naming stream_options."""
    url, _ = server
    headers = {"Authorization": f"Bearer {KEY}"}
    for stream in ({}, {"stream": False}):
        asked = {**body, **stream, "max_tokens": 1, "stream_options": {"include_usage": True}}
        response = httpx.post(f"{url}{path}", json=asked, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["param"] == "stream_options"
        assert "stream: true" in response.json()["error"]["message"]
    plain = httpx.post(f"{url}{path}", json={**body, "max_tokens": 1, "stream_options": None}, headers=headers)
    assert plain.status_code == 200


def test_an_unknown_stream_option_is_refused_as_an_unknown_field_is(client):
    """`stream_options: {"include_usge": true}` (a typo) was taken and did nothing: the client waited for
    a usage chunk that never came. A field charlm does not know is refused, nested ones too; OpenAI's
    `include_obfuscation` (padding charlm never adds) is taken as a boolean."""
    for options in ({"include_usge": True}, {"include_obfuscation": 1}):
        with pytest.raises(openai.BadRequestError) as caught:
            streamed(client, max_tokens=2, stream_options=options)
        name = f"stream_options.{next(iter(options))}"
        assert caught.value.body["param"] == name and name in caught.value.body["message"]
    texts, chunks = streamed(client, max_tokens=2, stream_options={"include_obfuscation": False, "include_usage": True})
    assert len(texts[0]) == 2 and chunks[-1].usage.completion_tokens == 2


def test_every_chunk_of_a_stream_has_the_same_created(client, server, monkeypatch):
    """OpenAI: "Each chunk has the same timestamp". Each chunk read the clock, so a stream that crossed
    a second changed its `created` midway; here a clock that ticks a second at every reading makes
    every stream cross one. Each step's text is its own chunk: at the fixture's 20 ms a 300-character
    stream that took under 20 ms was two chunks, and crossed nothing."""
    clock = itertools.count(int(time.time()))
    monkeypatch.setattr(time, "time", lambda: float(next(clock)))
    monkeypatch.setattr(server[1].models["tiny"].engine, "chunk_interval", 0.0)
    _, chunks = streamed(client, max_tokens=300, n=2, stream_options={"include_usage": True})
    messages = [{"role": "user", "content": "a"}]
    chat = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=300, stream=True))
    for stream in (chunks, chat):
        assert len(stream) > 2 and len({chunk.created for chunk in stream}) == 1


def test_n_samples_draw_with_seed_plus_i(client):
    together = complete(client, n=3, seed=40, max_tokens=30)
    assert together == [complete(client, seed=40 + i, max_tokens=30)[0] for i in range(3)]
    assert len(set(together)) == 3
    texts, _ = streamed(client, n=3, seed=40, max_tokens=30)
    assert texts == together


def test_a_list_of_prompts_gives_n_choices_per_prompt(client):
    texts = complete(client, prompt=["a", "b c"], n=2, seed=5, max_tokens=20)
    assert len(texts) == 4
    assert texts[2:] == complete(client, prompt="b c", n=2, seed=5, max_tokens=20)


def test_seed_reproduces_and_no_seed_varies(client):
    assert complete(client, seed=3) == complete(client, seed=3)
    assert complete(client) != complete(client)


def test_unseeded_equal_prompts_of_one_request_are_sampled_apart(client):
    """An unseeded request drew one random seed for all its prompts: a list of equal prompts (one
    question asked n times, as a batch) came back as equal texts, where OpenAI samples each."""
    assert len(set(complete(client, prompt=["the "] * 3, n=2))) == 6


def test_an_unseeded_choice_tells_the_seed_that_writes_it_again(client, server, monkeypatch):
    """An unseeded request could not be made again: the server drew each choice's seed and told no one, where
    `charlm sample --json` gives its `random_seed`. Each choice now carries its `seed` (an extra field, which
    the official client parses and keeps: `model_extra`), in a stream in the choice's first chunk only (the
    client's stream helper adds up a number every delta repeats); sent back as `seed`, it writes the text again."""
    every_step_a_chunk(monkeypatch, server)
    asked = {"model": "tiny", "prompt": ["the ", "a"], "n": 2, "max_tokens": 12}
    reply = client.completions.create(**asked)
    seeds = [choice.model_extra["seed"] for choice in reply.choices]
    assert seeds[1] == seeds[0] + 1 and seeds[3] == seeds[2] + 1 and seeds[2] != seeds[0]  # each prompt draws its own
    # read exactly by a JavaScript client (a double: 2**53 at most), which rounded a drawn 62-bit seed to another
    assert all(0 <= seed < 2**53 for seed in seeds)
    for choice, seed in zip(reply.choices, seeds):
        alone = client.completions.create(**{**asked, "prompt": asked["prompt"][choice.index // 2], "n": 1}, seed=seed)
        assert alone.choices[0].text == choice.text and alone.choices[0].model_extra["seed"] == seed
    messages = [{"role": "user", "content": "hello"}]
    with client.chat.completions.stream(model="tiny", messages=messages, max_tokens=30, n=2) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        snapshot = stream.current_completion_snapshot
    told = [(c.index, c.model_extra["seed"]) for chunk in chunks for c in chunk.choices if "seed" in c.model_extra]
    seed = snapshot.choices[0].model_extra["seed"]
    assert sorted(told) == [(0, seed), (1, seed + 1)] and snapshot.choices[1].model_extra["seed"] == seed + 1
    again = client.chat.completions.create(model="tiny", messages=messages, max_tokens=30, n=2, seed=seed)
    assert [c.message.content for c in again.choices] == [c.message.content for c in snapshot.choices]
    response = client.responses.create(model="tiny", input="hello", max_output_tokens=30)
    seed = response.model_extra["seed"]
    assert (
        client.responses.create(
            model="tiny", input="hello", max_output_tokens=30, extra_body={"seed": seed}
        ).output_text
        == response.output_text
    )
    greedy = client.completions.create(model="tiny", prompt="a", max_tokens=5, temperature=0)
    assert greedy.choices[0].model_extra["seed"] is None  # draws nothing: any seed writes it


def test_stop_ends_before_the_stop_text_streamed_or_not(client):
    free = complete(client, seed=8, max_tokens=200)[0]
    response = client.completions.create(model="tiny", prompt="the ", max_tokens=200, seed=8, stop=["e", "a"])
    text = response.choices[0].text
    cut = min(i for i in (free.find("e"), free.find("a")) if i >= 0)
    assert text == free[:cut] and response.choices[0].finish_reason == "stop"
    texts, chunks = streamed(client, seed=8, max_tokens=200, stop=["e", "a"])
    assert texts == [text] and chunks[-1].choices[0].finish_reason == "stop"
    two = next(i for i in range(len(free) - 1) if free[i + 1] != " " and free[i] != " ")
    stop = free[two : two + 2]  # a two-character stop the free text reaches
    assert complete(client, seed=8, max_tokens=200, stop=stop)[0] == free[: free.find(stop)]
    assert streamed(client, seed=8, max_tokens=200, stop=stop)[0][0] == free[: free.find(stop)]


def test_extras_top_k_and_repetition_penalty_through_extra_body(client):
    greedy = complete(client, temperature=0, max_tokens=40)
    assert complete(client, extra_body={"top_k": 1}, seed=1, max_tokens=40) == greedy
    assert complete(client, extra_body={"top_k": 0}, seed=1) == complete(client, seed=1)  # 0: off
    penalized = complete(client, extra_body={"repetition_penalty": 1.8}, seed=2, max_tokens=80)
    assert complete(client, extra_body={"repeat_penalty": 1.8}, seed=2, max_tokens=80) == penalized
    assert penalized != complete(client, seed=2, max_tokens=80)
    top_p = complete(client, top_p=0.3, seed=2, max_tokens=80)
    assert top_p != complete(client, seed=2, max_tokens=80)


def test_presence_and_frequency_penalties_are_what_generate_does_with_them(client, tiny_model):
    """OpenAI's `presence_penalty` and `frequency_penalty`, which many clients send, were refused at any
    value but 0 ("not supported by charlm"): completions and chat take them now, each sample's text the
    one charlm.generate writes with them, streamed or not; past OpenAI's -2 to 2 they are a one-line 400."""
    penalties = {"presence_penalty": 0.5, "frequency_penalty": 0.3}
    served = complete(client, max_tokens=80, n=2, seed=4, temperature=0.9, **penalties)
    made = generate(tiny_model, "the ", length=80, temperature=0.9, num_samples=2, random_seed=4, **penalties)
    assert served == [text[len("the ") :] for text in made]
    assert served != complete(client, max_tokens=80, n=2, seed=4, temperature=0.9)  # they act
    assert streamed(client, max_tokens=80, n=2, seed=4, temperature=0.9, **penalties)[0] == served
    greedy = complete(client, max_tokens=80, temperature=0, presence_penalty=2)[0]  # greedy takes them too
    assert greedy == generate(tiny_model, "the ", length=80, greedy=True, presence_penalty=2)[0][len("the ") :]
    assert greedy != complete(client, max_tokens=80, temperature=0)[0]
    messages = [{"role": "user", "content": "the"}]
    chat = client.chat.completions.create(model="tiny", messages=messages, max_tokens=60, seed=3, **penalties)
    assert chat.choices[0].message.content == complete(client, prompt="the\n\n", max_tokens=60, seed=3, **penalties)[0]
    for name, value in (("presence_penalty", 2.5), ("frequency_penalty", -3)):
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(model="tiny", prompt="the ", **{name: value})
        error = caught.value.body
        assert (error["param"], error["code"]) == (name, "invalid_value")
        assert error["message"] == f"{name} must be at least -2.0 and at most 2.0, not {value}"


def token_ids(client: OpenAI, chars: str) -> dict[str, str]:
    """Each character's token id as logit_bias takes it: its position in the model's meta.characters."""
    known = client.models.retrieve("tiny").model_extra["meta"]["characters"]
    return {char: str(known.index(char)) for char in chars}


def test_models_meta_holds_what_the_page_names_unseen_characters_with(client, tiny_model):
    """The serve page named a seed character its model does not know plainly, ':' where `charlm sample`
    says "':' (did you mean '：'?)": /v1/models gave it no hints. Its meta now has `unseen`, the hints
    the exported page carries (`Vocab.unseen_hints`)."""
    meta = client.models.retrieve("tiny").model_extra["meta"]
    assert meta["unseen"] == tiny_model.vocab.unseen_hints() and meta["unseen"]["forms"]["，"] == [","]


def test_logit_bias_by_token_id_is_what_generate_does_with_the_characters(client, tiny_model):
    ids = token_ids(client, "aeiouz")
    bias = {**{ids[c]: -100 for c in "aeiou"}, ids["z"]: 3}
    served = complete(client, max_tokens=200, n=2, seed=7, temperature=0.9, top_p=0.95, logit_bias=bias)
    made = generate(tiny_model, "the ", length=200, temperature=0.9, top_p=0.95, num_samples=2, random_seed=7,
                    logit_bias={**dict.fromkeys("aeiou", -100), "z": 3})  # fmt: skip
    assert served == [text[len("the ") :] for text in made] and not set("".join(served)) & set("aeiou")
    assert served[0].count("z") > complete(client, max_tokens=200, seed=7, temperature=0.9, top_p=0.95)[0].count("z")
    greedy = complete(client, temperature=0, max_tokens=100, logit_bias=bias)[0]
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "the"}], max_tokens=100, seed=3, logit_bias=bias
    )
    for text in (greedy, chat.choices[0].message.content):
        assert len(text) == 100 and not set(text) & set("aeiou")
    assert complete(client, seed=7, logit_bias={}) == complete(client, seed=7)  # OpenAI's neutral value


def test_a_biased_request_is_the_same_text_beside_others_that_come_and_go(server, monkeypatch):
    """A row's bias is the row's: requests without one run in the same batch at the same time, leave
    before it (so the engine moves it into their place) and are unchanged by it."""
    url, state = server
    client = OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    ids = token_ids(client, "etaoin")
    # long enough to overlap for many steps (60-330 tokens were over before a third stream was seen,
    # once in a suite run)
    biased = {"prompt": "the ", "max_tokens": 1000, "seed": 11, "temperature": 1.0,
              "logit_bias": {**{ids[c]: -100 for c in "eta"}, ids["o"]: 4}}  # fmt: skip
    others = [{"prompt": "a", "max_tokens": 200 + 200 * i, "seed": i, "temperature": 0.8} for i in range(4)]
    alone = [client.completions.create(model="tiny", **options).choices[0].text for options in [biased, *others]]

    async def together() -> list[str]:
        crowd = AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

        async def text(options: dict, delay: float) -> str:
            await asyncio.sleep(delay)
            chunks = [c async for c in await crowd.completions.create(model="tiny", stream=True, **options)]
            return "".join(c.choices[0].text for c in chunks)

        texts = await asyncio.gather(
            *(text(options, 0.0) for options in others), text(biased, 0.02)
        )  # the others join first: as they finish, the biased row, last, moves into their places
        await crowd.close()
        return [texts[-1], *texts[:-1]]

    rows = rows_per_step(monkeypatch, state.models["tiny"].engine)
    texts = asyncio.run(together())
    assert texts == alone and not set(alone[0]) & set("eta")
    assert max(rows) >= 3  # they really ran side by side


@pytest.mark.parametrize(
    ("logit_bias", "message"),
    [
        ([1, 2], "logit_bias must be an object, not a list"),
        ({"a": 1}, 'logit_bias keys are token ids, such as "10", not "a"'),
        ({"-1": 1}, 'logit_bias keys are token ids, such as "10", not "-1"'),
        # a character key (Chinese, not an escape) is shown as its client wrote it, with where ids come from
        ({"的": -100}, 'logit_bias keys are token ids, such as "10", not "的"; POST /tokenize gives a text\'s ids'),
        ({"1" * 5000: 1}, "logit_bias keys are token ids"),  # int() of it raises: never a 500
        ({"1": 101}, 'logit_bias["1"] must be at least -100.0 and at most 100.0, not 101'),
        ({"1": "x"}, 'logit_bias["1"] must be a number, not a string'),
        ({"1": True}, 'logit_bias["1"] must be a number, not a boolean'),
        ({"1": 10**400}, 'logit_bias["1"] must be at least -100.0 and at most 100.0, not 1000'),
        ({str(i): 1 for i in range(65_537)}, "logit_bias may hold at most 65,536 token ids, not 65,537; give each"),
        ({"32": 1}, "logit_bias: token id 32 is not one of the model's (0 to 31)"),
        ({str(i): -100 for i in range(32)}, "logit_bias bans every token the model has"),
        ({"1": -100, "01": 5}, 'logit_bias gives token 1 twice ("1" and "01"); give it once'),  # took the last
    ],
)
def test_a_logit_bias_the_server_cannot_use_is_a_400_naming_it(client, server, logit_bias, message):
    for create in (
        lambda: client.completions.create(model="tiny", prompt="a", logit_bias=logit_bias),
        lambda: client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "a"}], logit_bias=logit_bias
        ),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            create()
        assert caught.value.body["param"] == "logit_bias" and message in caught.value.body["message"]
    wait_until(lambda: server[1].busy == 0)  # the rows a request refused once primed took are free again


def test_a_ban_of_thousands_of_characters_is_served():
    """The page of a 红楼梦 model sends its ban box as logit_bias: 2,000 characters in the box were
    refused, "ban may hold at most 1,024 tokens, not 2,000", where `charlm sample --ban` took them."""
    torch.manual_seed(0)
    chars = "\n" + "".join(chr(0x4E00 + i) for i in range(2_500))
    app = create_app({"wide": lambda: make_model(chars, layers=1, hidden=8).eval()}, ServeConfig())
    banned = {str(i): -100 for i in range(1, 2_001)}
    with running(app) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        text = client.completions.create(model="wide", prompt="\n", max_tokens=50, logit_bias=banned).choices[0].text
    assert len(text) == 50 and not set(text) & set(chars[1:2_001]), text


def test_a_template_a_logit_bias_makes_impossible_is_a_400_naming_it(client):
    letters = token_ids(client, "abcdefghijklmnopqrstuvwxyz")
    with pytest.raises(openai.BadRequestError) as caught:
        complete(client, logit_bias=dict.fromkeys(letters.values(), -100), extra_body={"template": "__ _"})
    assert caught.value.body["param"] == "logit_bias" and "bans every way to write template" in str(caught.value)
    bias = {letters[c]: -100 for c in "abcdefghijklmnopqrst"}
    written = complete(client, seed=1, logit_bias=bias, extra_body={"template": "____ ___"})[0]
    assert re.fullmatch("[u-z]{4} [u-z]{3}", written), written


def test_a_large_answer_is_built_and_written_off_the_event_loop(server, monkeypatch):
    """A whole answer of n=64, max_tokens 4096 and logprobs 20 (over 100 MB of JSON) was built and written
    on the event loop, which held every stream and /health for seconds. A large one is now built in a
    worker thread and written a choice at a time, as JSONResponse writes it; a small one stays on the loop."""
    from charlm.serve import answers

    url, _ = server
    built_in, build = [], answers.completion_body

    def recording(*args):
        built_in.append(threading.current_thread())
        return build(*args)

    monkeypatch.setattr(answers, "completion_body", recording)
    headers = {"Authorization": f"Bearer {KEY}"}
    for options in ({"max_tokens": 5}, {"max_tokens": 2000, "n": 2, "logprobs": 5}):
        response = httpx.post(f"{url}/v1/completions", json={"prompt": "a", **options}, headers=headers, timeout=60)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert [len(c["logprobs"]["tokens"]) if c["logprobs"] else 0 for c in response.json()["choices"]] == (
            [2000, 2000] if "n" in options else [0]
        )
    loop_thread, worker = built_in
    assert worker is not loop_thread
    body = {"id": '"choices":[]', "choices": [{"text": 'ä\u2028"', "n": 1.5}, {"text": ""}], "usage": {"t": 1}}
    assert answers.rendered(body) == JSONResponse(body).body


def test_logprobs_give_each_character_and_its_likeliest_alternatives(client):
    response = client.completions.create(model="tiny", prompt="the ", max_tokens=20, seed=4, logprobs=3)
    choice, logprobs = response.choices[0], response.choices[0].logprobs
    assert "".join(logprobs.tokens) == choice.text and len(logprobs.tokens) == 20
    assert logprobs.text_offset == list(range(20))
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert len(top) in (3, 4) and logprob <= 0 and sum(2.718281828**v for v in top.values()) <= 1.0001
        assert max(top.values()) >= logprob - 1e-6 and abs(top[token] - logprob) < 1e-5
    texts, chunks = streamed(client, max_tokens=20, seed=4, logprobs=3)
    assert texts == [choice.text]
    assert [t for c in chunks for t in c.choices[0].logprobs.tokens] == logprobs.tokens


def test_echo_returns_the_prompt_and_its_logprobs(client):
    response = client.completions.create(model="tiny", prompt="the ", max_tokens=10, seed=4, echo=True, logprobs=2)
    choice = response.choices[0]
    assert choice.text.startswith("the ") and choice.text[4:] == complete(client, seed=4, max_tokens=10)[0]
    assert choice.logprobs.tokens[:4] == list("the ") and choice.logprobs.token_logprobs[0] is None
    assert all(lp < 0 for lp in choice.logprobs.token_logprobs[1:]) and choice.logprobs.text_offset[:5] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert complete(client, echo=True, max_tokens=0) == ["the "]
    # logprobs 0: no alternatives, each predicted character alone (the echoed prompt's characters gave
    # null, as if nothing had predicted them), null for the first
    zero = client.completions.create(model="tiny", prompt="the ", max_tokens=3, echo=True, logprobs=0)
    logprobs = zero.choices[0].logprobs
    assert logprobs.top_logprobs == [None] + [
        {t: lp} for t, lp in zip(logprobs.tokens[1:], logprobs.token_logprobs[1:])
    ]


def test_every_response_has_a_request_id_as_openais_do(server, client):
    """OpenAI sends `x-request-id` on every response, errors included; the openai client reads it as
    `response._request_id` and an error's `request_id`. charlm's responses had none: None for a user to quote."""
    raw = client.completions.with_raw_response.create(model="tiny", prompt="the ", max_tokens=2)
    again = client.chat.completions.with_raw_response.create(model="tiny", messages=[{"role": "user", "content": "a"}])
    ids = [raw.request_id, raw.parse()._request_id, again.request_id]
    assert re.fullmatch("req_[0-9a-f]{32}", ids[0]) and ids[1] == ids[0] and re.fullmatch("req_[0-9a-f]{32}", ids[2])
    assert ids[2] != ids[0]
    with client.completions.with_streaming_response.create(model="tiny", prompt="a", max_tokens=2, stream=True) as r:
        assert r.request_id.startswith("req_")
    for wrong in ({"model": "nope"}, {"model": "tiny", "extra_body": {"temprature": 1}}):
        with pytest.raises(openai.APIStatusError) as caught:
            client.completions.create(prompt="a", **wrong)  # a 404 and a 400
        assert caught.value.request_id.startswith("req_")
    refused = httpx.get(f"{server[0]}/metrics")  # no key: a 401 from the route; an unknown path, a 404
    assert refused.status_code == 401 and refused.headers["x-request-id"].startswith("req_")
    assert httpx.get(f"{server[0]}/nowhere").headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize("stream", [False, True])
def test_top_logprobs_always_hold_the_drawn_character_as_openais_do(client, stream):
    """OpenAI's reference: "The API will always return the logprob of the sampled token, so there may be
    up to logprobs+1 elements". `logprobs: 0` gave `top_logprobs: [{}, {}, ...]`, and a drawn character
    outside the likeliest N was missing from its own entry."""
    options = {"model": "tiny", "prompt": "the ", "max_tokens": 30, "seed": 3, "temperature": 2.0}
    for count in (0, 1):
        response = client.completions.create(logprobs=count, stream=stream, **options)
        parts = [c.choices[0].logprobs for c in response] if stream else [response.choices[0].logprobs]
        tokens = [t for lp in parts for t in lp.tokens]
        own = [lp for part in parts for lp in part.token_logprobs]
        tops = [top for part in parts for top in part.top_logprobs]
        assert len(tokens) == 30 and all(top.get(t) == lp for t, lp, top in zip(tokens, own, tops)), tops
        assert max(map(len, tops)) == count + 1 and min(map(len, tops)) >= max(count, 1), tops


def test_an_echoed_characters_logprob_is_its_own_entry_among_the_alternatives(client):
    """The echoed prompt's log-probabilities came from the scorer's log-softmax, their alternatives
    from float32 probabilities logged again: 'M' had -1.9201967716 and its own alternative -1.9201967626."""
    prompt = "the quick brown fox jumps over the lazy dog. " * 3
    response = client.completions.create(model="tiny", prompt=prompt, max_tokens=0, echo=True, logprobs=20)
    logprobs = response.choices[0].logprobs
    pairs = [
        (logprob, alternatives[token])
        for token, logprob, alternatives in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs)
        if alternatives and token in alternatives
    ]
    assert len(pairs) > 50 and all(abs(own - listed) < 1e-12 for own, listed in pairs)


@contextlib.contextmanager
def serving(vocab: Vocab, name: str):
    """A client of a server of one small untrained model of `vocab`, named `name`."""
    torch.manual_seed(0)
    model = make_model(vocab, layers=1, hidden=16).eval()
    with running(create_app({name: lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        yield OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def piece_model_serving():
    """A client of a server of a small untrained sentencepiece model (`spm`) that spells most Han
    characters in bytes."""
    from charlm.pieces import PieceVocab, train_model

    return serving(
        PieceVocab(train_model(["春眠不觉晓，处处闻啼鸟。\nthe cat sat on the mat.\n" * 20], "bpe", 300)), "spm"
    )


def test_every_tokens_label_reads_back_as_its_bytes():
    """`top_logprobs` names a byte piece `bytes:\\xe4` (`token_label`) and each entry's `bytes` reads that
    name back (`label_bytes`): a byte piece's label gives its byte, any other piece's its UTF-8."""
    from charlm.pieces import PieceVocab, train_model
    from charlm.serve.token_labels import label_bytes, token_label

    vocab = PieceVocab(train_model(["春眠不觉晓，处处闻啼鸟。\nthe cat sat on the mat.\n" * 20], "bpe", 300))
    label, bytes_of = token_label(vocab), {}
    for token in range(len(vocab)):
        text = vocab.token_text(token)
        bytes_of[token] = text if isinstance(text, bytes) else (text or vocab.token_name(token)).encode()
    assert {token: label_bytes(label(token)) for token in range(len(vocab))} == bytes_of
    assert sum(isinstance(vocab.token_text(t), bytes) for t in range(len(vocab))) >= 128  # byte pieces were read


def test_a_character_spelled_in_bytes_is_one_token_with_its_whole_text():
    """Each byte piece was a token of its own: a drawn character's first bytes were tokens "" (keyed ""
    in `top_logprobs`), an echoed one's each U+FFFD, so `tokens` did not join to the text and
    `text_offset` counted three characters for 夜. A character is one token: its bytes' logprobs summed."""
    byte_ids = {str(i): 6 for i in range(4 + 0xC2, 4 + 0xF5)}  # lead bytes, so that bytes are drawn
    with piece_model_serving() as client:
        options = {"model": "spm", "prompt": "夜来", "max_tokens": 30, "seed": 2, "temperature": 1.5, "n": 2}
        reply = client.completions.create(logprobs=1, echo=True, logit_bias=byte_ids, **options)
        chunks = list(client.completions.create(logprobs=1, echo=True, logit_bias=byte_ids, stream=True, **options))
        for choice in reply.choices:
            logprobs, text = choice.logprobs, choice.text
            assert "".join(logprobs.tokens) == text and all(logprobs.tokens) and "\ufffd" not in text
            assert [text[at : at + len(t)] for t, at in zip(logprobs.tokens, logprobs.text_offset)] == logprobs.tokens
            assert logprobs.tokens[:2] == ["夜", "来"] and logprobs.token_logprobs[0] is None
            assert any(
                len(t.encode()) > 1 and lp is not None and -30 < lp < -8
                for t, lp in zip(logprobs.tokens, logprobs.token_logprobs)
            )
            tops = [key for top in logprobs.top_logprobs[1:] for key in top]
            assert all(key and "\ufffd" not in key for key in tops), tops
            streamed = [
                t for c in chunks for t in (c.choices[0].logprobs.tokens if c.choices[0].index == choice.index else [])
            ]
            assert streamed == logprobs.tokens


def test_echo_of_a_prompt_not_in_nfc_is_the_text_the_model_read():
    """Issue 26 item 6: the echoed text was the raw prompt ("u" + a combining grave accent) while its
    tokens and offsets came from the normalized one ("ù"): 11 characters of text, 10 tokens."""
    with serving(Vocab("Tortù a\n", normalize="nfc"), "nfc") as client:
        options = {"model": "nfc", "prompt": "Tortu\u0300 a", "max_tokens": 5, "echo": True, "logprobs": 1, "seed": 1}
        choice = client.completions.create(**options).choices[0]
        assert choice.text.startswith("Tortù a") and "".join(choice.logprobs.tokens) == choice.text
        assert choice.logprobs.text_offset == list(range(len(choice.text)))
        chunks = list(client.completions.create(stream=True, **options))
        assert "".join(c.choices[0].text for c in chunks) == choice.text
        tokens = [t for c in chunks for t in c.choices[0].logprobs.tokens]
        assert "".join(tokens) == choice.text


def test_a_stop_text_is_matched_as_a_normalizing_model_writes_it():
    """An nfkc model writes "," for "，": `stop=["，"]` was never met and every sample ran to max_tokens."""
    with serving(Vocab("好,\n", normalize="nfkc"), "nfkc") as client:
        options = {"model": "nfkc", "prompt": "好", "max_tokens": 300, "seed": 1, "n": 4}
        free = [c.text for c in client.completions.create(**options).choices]
        assert all("," in text for text in free), free  # each sample writes the stop text
        for stream in (False, True):
            made: dict[int, str] = {}
            reasons: dict[int, str] = {}
            response = client.completions.create(stop=["，"], stream=stream, **options)
            for part in response if stream else [response]:
                for c in part.choices:
                    made[c.index] = made.get(c.index, "") + c.text
                    reasons[c.index] = c.finish_reason or reasons.get(c.index)
            assert [made[i] for i in range(4)] == [text[: text.index(",")] for text in free]
            assert set(reasons.values()) == {"stop"}


class Counting(Vocab):
    """A vocabulary that counts how often it normalizes each text."""

    def __init__(self, chars: str, normalize: str):
        super().__init__(chars, normalize=normalize)
        self.counts: collections.Counter[str] = collections.Counter()

    def normalized(self, text: str) -> str:
        self.counts[text] += 1
        return super().normalized(text)


def test_a_normalizing_model_reads_each_text_once_as_the_cli_reads_it():
    """/tokenize and a completion normalized their text twice (once for its length, once more to encode
    it), and `generate` its stop text once per sample and once more: once is enough. What is read stays
    what the CLI reads: /tokenize says a seed's ids, and a stop ends the served text where it ends
    `generate`'s (which keeps the stop text, as --stop does)."""
    torch.manual_seed(0)
    vocab = Counting("\n ,!你好", normalize="nfkc")
    model = state_telling(make_model(vocab, layers=1, hidden=16)).eval()
    text, options = "你好，好！", {"max_tokens": 300, "n": 3, "seed": 1}
    with running(create_app({"nfkc": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        tokens = httpx.post(f"{url}/tokenize", json={"content": text}).json()["tokens"]
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        choices = client.completions.create(model="nfkc", prompt=text, stop=["，"], **options).choices
    assert (vocab.counts[text], vocab.counts["，"]) == (2, 1)  # /tokenize's and the prompt's; the stop's
    assert tokens == model.vocab.encode(text).tolist()
    vocab.counts.clear()
    made = generate(model, text, length=300, stop="，", num_samples=3, random_seed=1)
    assert vocab.counts["，"] == 1
    assert all(m.endswith(",") for m in made)  # each stopped there
    assert [c.text for c in sorted(choices, key=lambda c: c.index)] == [m[len(text) : -1] for m in made]


def test_a_seed_and_an_echoed_prompt_are_normalized_once():
    """`generate` normalized its seed to show it, then encoding it normalized it again; the server's
    `echo` with `logprobs` normalized a prompt already read (normalized) twice more: once to encode it,
    once for its tokens. What is shown and scored is unchanged: the text as the model reads it."""
    torch.manual_seed(0)
    vocab = Counting("\n ,!你好", normalize="nfkc")
    model = make_model(vocab, layers=1, hidden=16).eval()
    text = "你好，好！"
    assert generate(model, text, length=5, random_seed=1)[0].startswith("你好,好!")
    assert vocab.counts == collections.Counter({text: 1})
    vocab.counts.clear()
    with running(create_app({"nfkc": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        body = {"model": "nfkc", "prompt": text, "max_tokens": 0, "echo": True, "logprobs": 1}
        logprobs = httpx.post(f"{url}/v1/completions", json=body).json()["choices"][0]["logprobs"]
    assert logprobs["tokens"] == list("你好,好!") and logprobs["token_logprobs"][0] is None
    assert vocab.counts == collections.Counter({text: 1})


def test_chat_adapter_continues_the_messages_joined_by_blank_lines(client):
    messages = [{"role": "system", "content": "be brief."}, {"role": "user", "content": "hello there"}]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=30, seed=9)
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    expected = complete(client, prompt="be brief.\n\nhello there\n\n", max_tokens=30, seed=9)[0]
    assert reply.choices[0].message.content == expected and reply.usage.completion_tokens == 30
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=30, seed=9, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected


def every_step_a_chunk(monkeypatch, server) -> None:
    """The shared server's engine sends each step's text as it is made: a stream then has a chunk per
    character whatever the machine's speed. Every 20 ms (the server's chunk_ms) a fast step could make
    all of a 300-character stream between its first chunk and the next: with chunk_ms at 1,000 (a
    step 50 times faster) two choices came in 4 chunks, the first and the last of each."""
    monkeypatch.setattr(server[1].models["tiny"].engine, "chunk_interval", 0.0)


def test_a_chat_stream_gives_the_role_once_per_choice(client, server, monkeypatch):
    """OpenAI sends the role in a choice's first delta only, and the official client's stream helper
    joins the deltas' strings: with the role in every chunk its message came out with role
    "assistantassistant..."."""
    every_step_a_chunk(monkeypatch, server)
    messages = [{"role": "user", "content": "hello"}]
    with client.chat.completions.stream(model="tiny", messages=messages, max_tokens=300, n=2, seed=3) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        snapshot = stream.current_completion_snapshot
    assert [choice.message.role for choice in snapshot.choices] == ["assistant", "assistant"]
    roles = sorted((c.index, c.delta.role) for chunk in chunks for c in chunk.choices if c.delta.role)
    assert roles == [(0, "assistant"), (1, "assistant")] and len(chunks) > 4


def test_replies_carry_refusal_and_system_fingerprint_where_the_reference_puts_them(
    client, server, tiny_model, monkeypatch
):
    """OpenAI's reference requires `refusal` (null: no refusal) in a chat message and in chat logprobs,
    gives it in a stream's first delta, and gives `system_fingerprint` on every completion and chunk.
    charlm's had none of them: a client checking replies against the reference refused them, and the
    official client read None where a fingerprint should tell it when a seed may give another text."""
    import copy

    from charlm.serve.server import fingerprint

    messages = [{"role": "user", "content": "a"}]
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=messages, max_tokens=5, logprobs=True)
    body, reply = json.loads(raw.text), raw.parse()
    choice = body["choices"][0]
    assert choice["message"]["refusal"] is None and {"role", "content", "refusal"} <= set(choice["message"])
    assert choice["logprobs"]["refusal"] is None and len(choice["logprobs"]["content"]) == 5
    assert reply.system_fingerprint == body["system_fingerprint"] == fingerprint(tiny_model)
    assert (
        client.completions.create(model="tiny", prompt="a", max_tokens=1).system_fingerprint == reply.system_fingerprint
    )
    changed = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1
    assert fingerprint(changed) != fingerprint(tiny_model)

    url, _ = server
    every_step_a_chunk(monkeypatch, server)
    asked = {"model": "tiny", "messages": messages, "max_tokens": 300, "n": 2, "stream": True, "logprobs": True}
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=asked, headers={"Authorization": f"Bearer {KEY}"}
    ) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert len(chunks) > 4 and {c["system_fingerprint"] for c in chunks} == {reply.system_fingerprint}
    deltas = [(c["choices"][0]["index"], c["choices"][0]["delta"]) for c in chunks]
    firsts = [next(delta for index, delta in deltas if index == i) for i in (0, 1)]
    assert all(delta["refusal"] is None and delta["role"] == "assistant" for delta in firsts)
    assert sum("refusal" in delta for _, delta in deltas) == 2
    assert all(c["choices"][0]["logprobs"]["refusal"] is None for c in chunks)
    with client.chat.completions.stream(model="tiny", messages=messages, max_tokens=50, n=2) as stream:
        for _ in stream:  # the whole stream (get_final_completion refuses a text cut by its length)
            pass
        snapshot = stream.current_completion_snapshot
    assert [c.message.refusal for c in snapshot.choices] == [None, None]
    assert snapshot.system_fingerprint == reply.system_fingerprint


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": 10**400}, "temperature"),  # an integer beyond a float's range was a 500
        ({"max_tokens": 2001}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"n": 41}, "n"),
        ({"n": 0}, "n"),
        ({"top_p": 0}, "top_p"),
        ({"stop": [1]}, "stop"),
        ({"stop": ["ok", "x" * 1001]}, "stop"),  # issue 26 item 1: a stop's length is bounded
        ({"prompt": "x" * 1001}, "prompt"),
        ({"prompt": [[1, 2]]}, "prompt"),
        ({"logprobs": 21}, "logprobs"),
        ({"seed": "x"}, "seed"),
        ({"stream": "yes"}, "stream"),
        ({"extra_body": {"top_k": "many"}}, "top_k"),
        ({"extra_body": {"repetition_penalty": 1.2, "repeat_penalty": 1.3}}, "repeat_penalty"),
        ({"extra_body": {"temprature": 1}}, "temprature"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"presence_penalty": "high"}, "presence_penalty"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ],
)
def test_bad_fields_are_400_errors_naming_the_field(client, options, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny", **{"prompt": "a", **options})
    error = caught.value.body
    assert caught.value.status_code == 400 and error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"]


def test_a_prompt_of_token_ids_is_refused_saying_why(client):
    """OpenAI takes token ids as a prompt; charlm reads text, and its 400 said "prompt must be a string or
    a list of strings, not a list" of a list, which told the client nothing."""
    for prompt, item in (([464, 3290], "an integer"), ([[464, 3290]], "a list")):
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(model="tiny", prompt=prompt)
        message = caught.value.body["message"]
        assert message.startswith(f"prompt must be a string or a list of strings; prompt[0] is {item}")
        assert "token ids are not taken" in message and caught.value.body["param"] == "prompt"
    with pytest.raises(openai.BadRequestError, match=r"stop\[1\] is an integer$"):
        client.completions.create(model="tiny", prompt="a", stop=["x", 1])


def test_a_chat_over_max_prompt_says_the_messages_are_joined(client):
    """999 characters of content were refused as "the prompt has 1,001 characters": the count included
    the blank lines the adapter adds, which the message did not say."""
    messages = [{"role": "user", "content": "x" * 999}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=messages)
    error = caught.value.body
    assert error["param"] == "messages" and error["code"] == "context_length_exceeded"
    assert error["message"].startswith("the messages, joined by blank lines and ending in one, make 1,001 characters")
    assert client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x" * 998}], max_tokens=1)


def test_a_lone_surrogate_in_a_chat_is_named_as_the_messages(server):
    """A chat's prompt is its messages joined: a lone surrogate in one was refused as `prompt`, a field
    a chat request does not have, which a client's form could not point at."""
    url, state = server
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "ab\\ud800c"}], "max_tokens": 1}'
    response = httpx.post(f"{url}/v1/chat/completions", content=body, headers=headers)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "messages", error
    assert error["message"].startswith("messages: lone surrogate U+D800 at character 2 is not a character")
    wait_until(lambda: state.busy == 0)


def test_a_streams_rows_are_freed_on_the_event_loop():
    """The row count (`Server.busy`) is changed on the event loop, where requests take rows: the stream's
    closing task freed them in a worker thread (Starlette runs a plain function there), which could
    lose a request's taking or freeing (a client gone before its first chunk: the count then stayed
    wrong for good, every later request a 429, or more rows than --max-streams)."""
    from charlm.serve.answers import event_stream

    freed_in = []

    class Run:
        def cancel(self) -> None:
            freed_in.append(threading.get_ident())

    async def closed_before_its_first_chunk() -> int:
        async def events():
            yield "never started"

        await event_stream(events(), Run()).background()
        return threading.get_ident()

    assert freed_in == [asyncio.run(closed_before_its_first_chunk())]


def test_the_default_max_tokens_is_within_the_servers_limit():
    """Issue 26 item 9: completions defaulted to 16 characters even under --max-tokens 5 (chat did not)."""
    from charlm.serve import protocol

    config = ServeConfig(max_tokens=5)
    assert protocol.completion_params({"prompt": "a"}, config).max_tokens == 5
    assert protocol.chat_params({"messages": [{"role": "user", "content": "a"}]}, config)[0].max_tokens == 5
    assert protocol.completion_params({"prompt": "a"}, ServeConfig()).max_tokens == 16


def test_a_number_beyond_a_float_is_named_as_such():
    """JSON's 1e400 reads as infinity: the message said "must be a number, not a number"."""
    from charlm.serve import protocol
    from charlm.serve.api_error import APIError

    with pytest.raises(APIError, match="temperature must be a number, not a number too large for a float"):
        protocol.completion_params(json.loads('{"prompt": "a", "temperature": 1e400}'), ServeConfig())


def test_chat_limits_given_twice_must_agree():
    """max_tokens is OpenAI's older name for max_completion_tokens: both given, they must agree (as the
    two repetition penalties must), not one silently win."""
    from charlm.serve import protocol
    from charlm.serve.api_error import APIError

    def chat(**limits) -> int:
        return protocol.chat_params({"messages": [{"role": "user", "content": "a"}], **limits}, ServeConfig())[0]

    assert chat(max_tokens=5, max_completion_tokens=5).max_tokens == chat(max_completion_tokens=5).max_tokens == 5
    with pytest.raises(APIError, match="max_tokens and max_completion_tokens disagree") as caught:
        chat(max_tokens=5, max_completion_tokens=6)
    assert caught.value.param == "max_tokens"


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_a_chat_of_no_tokens_is_refused_as_openai_refuses_it(client, limit):
    """OpenAI's chat takes at least one token (its 400: "Invalid 'max_tokens': integer below minimum
    value"); charlm answered an empty message. Completions keep 0, which scores a prompt with echo."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}], **{limit: 0})
    assert caught.value.body["param"] == limit and "between 1 and" in caught.value.body["message"]
    assert complete(client, max_tokens=0) == [""]


def test_a_completion_of_no_tokens_reads_its_prompts_without_priming_them(client, monkeypatch):
    """max_tokens 0 primed every prompt through the model, a state no sample used (64 prompts of 16,384
    characters: 4 s); it is answered as before, the prompts counted in usage, without a step of the model.
    With echo and logprobs the prompt is still scored (`prompt_tokens`), which is not priming."""
    primed = []
    monkeypatch.setattr(
        RowStepper, "prime", lambda self, ids, real=RowStepper.prime: primed.append(ids) or real(self, ids)
    )
    whole = client.completions.create(model="tiny", prompt=["the ", "a"], max_tokens=0, n=2)
    assert [c.text for c in whole.choices] == [""] * 4 and {c.finish_reason for c in whole.choices} == {"length"}
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (5, 0, 5)
    chunks = list(
        client.completions.create(
            model="tiny", prompt="the ", max_tokens=0, stream=True, stream_options={"include_usage": True}
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == ["length"]
    assert chunks[-1].usage.prompt_tokens == 4 and chunks[-1].usage.completion_tokens == 0
    scored = client.completions.create(model="tiny", prompt="the ", max_tokens=0, echo=True, logprobs=1)
    assert scored.choices[0].logprobs.tokens == list("the ") and scored.choices[0].text == "the "
    assert primed == []
    complete(client, max_tokens=1)  # the counter counts
    assert len(primed) == 1


def test_neutral_openai_fields_are_accepted(client):
    assert complete(client, frequency_penalty=0, presence_penalty=0, user="me", seed=1) == complete(client, seed=1)


def test_chat_fields_clients_send_by_default_are_accepted_at_their_neutral_values(client):
    """`response_format: {"type": "text"}` and `store: false` were 400 unknown_parameter; other values
    of them are still refused as fields charlm cannot honour."""
    messages, extra = [{"role": "user", "content": "the "}], {"max_tokens": 20, "seed": 1}
    neutral = {"response_format": {"type": "text"}, "store": False, "tool_choice": "none", "service_tier": "auto"}
    plain = client.chat.completions.create(model="tiny", messages=messages, **extra)
    with_them = client.chat.completions.create(model="tiny", messages=messages, **extra, **neutral)
    assert with_them.choices[0].message.content == plain.choices[0].message.content
    for name, value in [("response_format", {"type": "json_object"}), ("store", True), ("store", 0)]:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="tiny", messages=messages, extra_body={name: value})
        assert caught.value.body["param"] == name and caught.value.body["code"] == "unsupported_parameter"


def test_chat_takes_the_fields_that_replace_user_as_it_takes_user(client):
    """The client's chat.completions.create has `safety_identifier` and `prompt_cache_key`, which OpenAI
    says replace the deprecated `user`: `user` was taken, they were 400 unrecognized."""
    messages, extra = [{"role": "user", "content": "the "}], {"max_tokens": 20, "seed": 1}
    plain = client.chat.completions.create(model="tiny", messages=messages, **extra).choices[0].message.content
    for name in ("user", "safety_identifier", "prompt_cache_key"):
        reply = client.chat.completions.create(model="tiny", messages=messages, **extra, **{name: "user-1"})
        assert reply.choices[0].message.content == plain
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="tiny", messages=messages, extra_body={name: 1})
        assert caught.value.body["param"] == name and caught.value.body["code"] == "invalid_type"


def test_openai_fields_given_as_null_are_taken_as_left_out(client):
    """The official client sends a field given as None as null (`tools=self.tools`, None when there are
    none), which OpenAI takes as not given: charlm answered 400 "unrecognized request argument supplied:
    tools", as if OpenAI had no such field. A value that asks for what charlm cannot do is still refused."""
    messages, extra = [{"role": "user", "content": "the "}], {"max_tokens": 20, "seed": 1}
    nulls = ["tools", "functions", "function_call", "parallel_tool_calls", "metadata", "reasoning_effort", "audio"]
    nulls += ["prediction", "web_search_options", "verbosity"]
    plain = client.chat.completions.create(model="tiny", messages=messages, **extra)
    for neutral in (dict.fromkeys(nulls), {"tools": [], "functions": [], "metadata": {}, "function_call": "none"}):
        reply = client.chat.completions.create(model="tiny", messages=messages, **extra, extra_body=neutral)
        assert reply.choices[0].message.content == plain.choices[0].message.content
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    for name, value in [("tools", [tool]), ("parallel_tool_calls", True), ("reasoning_effort", "low")]:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="tiny", messages=messages, extra_body={name: value})
        assert caught.value.body["param"] == name and caught.value.body["code"] == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError, match="unrecognized request argument supplied: tool"):
        client.chat.completions.create(model="tiny", messages=messages, extra_body={"tool": None})  # a typo


def client_fields(create) -> list[str]:
    """The request fields an official client's `create` can send: its keywords, less the prompt, the
    model and the client's own transport options."""
    own = {"model", "messages", "prompt", "extra_headers", "extra_query", "extra_body", "timeout"}
    return [name for name in inspect.signature(create).parameters if name not in own]


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_every_field_the_openai_client_can_send_is_taken_as_null(client, endpoint):
    """The installed client's chat.completions.create offers `moderation`, `prompt_cache_options` and
    `prompt_cache_retention`, which charlm refused as "unrecognized request argument supplied" even as
    null, which OpenAI takes as not given. This walks every field the client has, so a field a newer
    client adds fails here, not in a user's 400."""
    if endpoint == "chat":
        create, prompt = client.chat.completions.create, {"messages": [{"role": "user", "content": "the "}]}
    else:
        create, prompt = client.completions.create, {"prompt": "the "}

    def text(reply) -> str:
        return reply.choices[0].message.content if endpoint == "chat" else reply.choices[0].text

    fields = client_fields(create)
    assert "stream" in fields and "seed" in fields  # the walk reads the client's keywords
    plain = text(create(model="tiny", **prompt, max_tokens=20, seed=1))
    for name in fields:
        body = {"max_tokens": 20, "seed": 1, name: None} if name not in ("max_tokens", "seed") else {name: None}
        reply = create(model="tiny", **prompt, extra_body=body)
        assert name in ("max_tokens", "seed") or text(reply) == plain, name


def test_the_clients_cache_and_moderation_fields_are_taken_at_values_that_change_nothing(client):
    """`prompt_cache_retention` and `prompt_cache_options` choose how long OpenAI keeps a prompt's cache:
    charlm keeps none, so their values (a retention's most, the options' defaults) change nothing.
    `moderation` asks for a moderation model's check, which charlm cannot run: refused naming it."""
    messages, extra = [{"role": "user", "content": "the "}], {"max_tokens": 20, "seed": 1}
    plain = client.chat.completions.create(model="tiny", messages=messages, **extra).choices[0].message.content
    for neutral in (
        {"prompt_cache_retention": "in_memory", "prompt_cache_options": {}},
        {"prompt_cache_retention": "24h", "prompt_cache_options": {"mode": "implicit", "ttl": "30m"}},
    ):
        reply = client.chat.completions.create(model="tiny", messages=messages, **extra, **neutral)
        assert reply.choices[0].message.content == plain
    refused = [
        ("moderation", {"model": "omni-moderation-latest"}),
        ("prompt_cache_options", {"mode": "explicit"}),
        ("prompt_cache_retention", "1h"),
    ]
    for name, value in refused:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="tiny", messages=messages, extra_body={name: value})
        assert caught.value.body["param"] == name and caught.value.body["code"] == "unsupported_parameter"


PAGE_ORIGIN = "http://127.0.0.1:5173"  # another origin: a web app's dev server, say


def preflight(url: str, origin: str) -> httpx.Response:
    """What a browser asks before a page of `origin` may POST JSON with an API key to `url`."""
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    return httpx.options(f"{url}/v1/completions", headers=headers)


def test_allow_origin_lets_that_origins_pages_call_the_api_and_no_other(tiny_model, server):
    config = ServeConfig(api_key=KEY, allow_origin=f"{PAGE_ORIGIN}, https://example.org")
    with running(create_app({"tiny": lambda: tiny_model}, config)) as url:
        wait_healthy(url)
        allowed = preflight(url, PAGE_ORIGIN)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == PAGE_ORIGIN
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        body = {"model": "tiny", "prompt": "the ", "max_tokens": 5}
        headers = {"Origin": PAGE_ORIGIN, "Authorization": f"Bearer {KEY}"}
        for stream in (False, True):
            answer = httpx.post(f"{url}/v1/completions", json={**body, "stream": stream}, headers=headers)
            assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == PAGE_ORIGIN
            assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()  # the page reads it
        refused = httpx.post(f"{url}/v1/completions", json=body, headers={"Origin": PAGE_ORIGIN})
        assert refused.status_code == 401  # the key is still asked for
        other = preflight(url, "http://127.0.0.1:9999")
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    default = preflight(server[0], PAGE_ORIGIN)  # without --allow-origin: the served page only
    assert default.status_code == 405 and "access-control-allow-origin" not in default.headers


def test_a_web_page_of_another_origin_cannot_make_the_server_generate(tiny_model, server):
    """A browser sends a text/plain POST to any address without a CORS preflight, and the server read it
    as JSON: any web page its user opened could make a server without a key generate (the answer unread).
    A POST whose Origin is neither the server's own nor one of --allow-origin's is now a 403 saying what
    to start the server with; the served page (its own origin) and clients without Origin are served."""
    url, _ = server
    body = b'{"prompt": "the ", "max_tokens": 3}'
    for origin in ("http://evil.example", "null", PAGE_ORIGIN):
        headers = {"Origin": origin, "Content-Type": "text/plain", "Authorization": f"Bearer {KEY}"}
        refused = httpx.post(f"{url}/v1/completions", content=body, headers=headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
        assert refused.json()["error"]["message"].endswith(f"start charlm serve with --allow-origin {origin}")
        assert refused.headers["x-request-id"]
    key = {"Authorization": f"Bearer {KEY}"}
    for headers in ({"Origin": url}, {}):
        assert httpx.post(f"{url}/v1/completions", content=body, headers={**key, **headers}).status_code == 200
    config = ServeConfig(allow_origin="*")
    with running(create_app({"tiny": lambda: tiny_model}, config)) as anyone:
        wait_healthy(anyone)
        served = httpx.post(f"{anyone}/v1/completions", content=body, headers={"Origin": "http://evil.example"})
        assert served.status_code == 200


def test_a_page_reaching_a_loopback_server_by_dns_rebinding_is_refused(tiny_model, server):
    """A page of an attacker's domain that then resolves to 127.0.0.1 calls the server as its own origin:
    Origin http://evil.example:PORT and Host evil.example:PORT, which the Origin check passed (200). A server
    bound to a loopback address now answers only to loopback names and the hosts of --allow-origin."""
    url, _ = server
    port = url.rsplit(":", 1)[1]
    rebound = {"Host": f"evil.example:{port}", "Authorization": f"Bearer {KEY}"}
    body = b'{"prompt": "the ", "max_tokens": 3}'
    cases = [
        httpx.post(f"{url}/v1/completions", content=body, headers={**rebound, "Origin": f"http://evil.example:{port}"}),
        httpx.get(f"{url}/v1/models", headers=rebound),
        httpx.get(f"{url}/", headers=rebound),
    ]
    for refused in cases:
        error = refused.json()["error"]
        assert refused.status_code == 403 and error["code"] == "host_not_allowed" and error["param"] is None
        assert error["message"].endswith(f"start charlm serve with --allow-origin http://evil.example:{port}")
    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "app.localhost"):
        assert httpx.get(f"{url}/health", headers={"Host": host}).status_code == 200, host
    page = "http://myapp.test:5173"  # a name of this machine the user gave: a host of --allow-origin
    for config, host, status in [
        (ServeConfig(allow_origin=page), "myapp.test:8080", 200),
        (ServeConfig(allow_origin=page), "evil.example", 403),
        (ServeConfig(allow_origin="*"), "evil.example", 403),  # any page by CORS, not any name
        (ServeConfig(host="0.0.0.0"), "evil.example", 200),  # reached by any of the machine's names
    ]:
        with running(create_app({"tiny": lambda: tiny_model}, config)) as other:
            assert httpx.get(f"{other}/v1/models", headers={"Host": host}).status_code == status, (config, host)
    with TestClient(create_app({"tiny": lambda: tiny_model}, ServeConfig())) as test_client:  # no network
        assert test_client.get("/v1/models").status_code == 200  # its Host: testserver


def test_curl_the_openai_client_and_the_page_reach_a_loopback_server_by_its_names(server):
    url, _ = server
    port = url.rsplit(":", 1)[1]
    for base in (url, f"http://localhost:{port}"):
        models = OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0).models.list()
        assert [m.id for m in models.data] == ["tiny"]
        page = httpx.get(f"{base}/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        origin = {"Origin": base, "Authorization": f"Bearer {KEY}"}  # what the served page's fetch sends
        assert httpx.post(f"{base}/v1/completions", json={"prompt": "a", "max_tokens": 2}, headers=origin).is_success
    if shutil.which("curl") is None:
        missing("curl (apt-get install curl)")
    for base in (url, f"http://localhost:{port}"):
        answer = subprocess.run(
            ["curl", "-sS", f"{base}/health"], check=False, capture_output=True, text=True, timeout=30
        )
        assert json.loads(answer.stdout) == {"status": "ok"}, answer.stderr


def test_head_is_answered_where_get_is_without_a_body(server):
    """Uptime checkers ask HEAD /health: FastAPI's GET routes answered it 405."""
    url, _ = server
    for path in ("/health", "/v1/models", "/v1/models/tiny", "/", "/openapi.json"):
        got, head = httpx.get(f"{url}{path}"), httpx.head(f"{url}{path}")
        assert head.status_code == got.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"] and head.headers["x-request-id"]
    assert httpx.head(f"{url}/metrics").status_code == 401  # as GET without the key
    assert httpx.head(f"{url}/v1/completions").status_code == 405  # no GET there either
    assert httpx.head(f"{url}/nowhere").status_code == 404


def test_a_compressed_body_is_refused_saying_so_not_as_invalid_json(server):
    """A gzip'd body was read as JSON: 400 "not valid JSON ('utf-8' codec can't decode byte 0x8b ...)"."""
    url, _ = server
    body = gzip.compress(json.dumps({"prompt": "the ", "max_tokens": 3}).encode())
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for encoding in ("gzip", "br", "deflate"):
        answer = httpx.post(f"{url}/v1/completions", content=body, headers={**headers, "Content-Encoding": encoding})
        error = answer.json()["error"]
        assert answer.status_code == 415 and error["code"] == "unsupported_content_encoding" and error["param"] is None
        assert f"(Content-Encoding: {encoding})" in error["message"] and "\n" not in error["message"]
        assert answer.headers["accept-encoding"] == "identity"
    plain = json.dumps({"prompt": "the ", "max_tokens": 3}).encode()
    identity = {**headers, "Content-Encoding": "identity"}
    assert httpx.post(f"{url}/v1/completions", content=plain, headers=identity).status_code == 200


def test_a_long_value_is_cut_in_an_error_message(client):
    """An integer of 4,300 digits (the most JSON gives Python), a model's id or a field's name of
    megabytes, were echoed whole in the error's message."""
    huge, long = 10**4000, "x" * 100_000
    cases = [
        ({"max_tokens": huge}, "between 0 and 2000 (charlm serve --max-tokens), not 10000000000000000000... (4,001 digits)"),
        ({"seed": -huge}, "not -10000000000000000000... (4,001 digits)"),
        ({"temperature": huge}, "temperature must be at least 0.0 and at most 100.0, not 10000000000000000000..."),
        ({"model": long}, f"the model `{'x' * 60}... (100,000 characters)` does not exist here"),
        ({long: 1}, f"unrecognized request argument supplied: {'x' * 60}... (100,000 characters)"),
        ({"logit_bias": {long: 1}}, f'not "{"x" * 60}... (100,000 characters)"'),
        ({"form": long}, f"form '{'x' * 60}... (100,000 characters)' is not a form"),
        ({"stream": True, "stream_options": {long: True}}, f"stream_options.{'x' * 60}... (100,000 characters)"),
    ]  # fmt: skip
    for extra, expected in cases:
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as caught:
            client.completions.create(model="tiny", prompt="a", max_tokens=2, extra_body=extra)
        message = caught.value.body["message"]
        assert expected in message and len(message) < 300, message[:300]


@pytest.mark.parametrize("given", ["localhost:3000", "http://localhost:3000/app", " , "])
def test_allow_origin_that_is_not_an_origin_is_one_line(given):
    with pytest.raises(CharLMError, match="^allow_origin[: ]"):  # a Python caller: the keyword
        ServeConfig(allow_origin=given)


def test_malformed_json_and_wrong_shapes_are_400_errors(server):
    url, _ = server
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for body in (b"{not json", b"[1, 2]", b'"text"'):
        response = httpx.post(f"{url}/v1/completions", content=body, headers=headers)
        assert response.status_code == 400, body
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    response = httpx.post(f"{url}/v1/completions", json={"model": "tiny"}, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/v1/responses", "/tokenize"])
def test_a_body_of_json_that_is_not_an_object_has_the_code_of_a_type_error(server, path):
    """`[1, 2]` as a body was refused with `code: null`, where every other value of the wrong type says
    `invalid_type`: a client that branches on the code could not tell it from an error of no kind."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for body in (b"[1, 2]", b'"text"', b"null"):
        error = httpx.post(f"{server[0]}{path}", content=body, headers=headers).json()["error"]
        assert error["code"] == "invalid_type" and "must be a JSON object" in error["message"], (body, error)


def test_hostile_json_gets_an_error_in_the_openai_shape_never_a_500(server):
    """Issue 26 items 2 and 3: a lone surrogate echoed in an error message, and JSON nested deeper
    than Python recurses, were plain-text 500s."""
    url, _ = server
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    cases = [
        (b'{"prompt": "Alice", "model": "\\ud800"}', 404, "model"),
        (b'{"prompt": "Alice", "\\udfff": 1}', 400, "\\udfff"),
        (b'{"messages": [{"role": "user", "content": "a"}], "model": "x\\ud800y"}', 404, "model"),
        (b"[" * 200_000, 400, None),
        (b'{"prompt": ' + b"[" * 200_000, 400, None),
    ]
    for body, status, param in cases:
        path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
        response = httpx.post(f"{url}{path}", content=body, headers=headers)
        assert response.status_code == status, (body[:40], response.text[:200])
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["param"] == param and error["message"]


def test_a_lone_surrogate_in_a_template_an_acrostic_or_a_stop_is_a_400_naming_it(server):
    """A lone surrogate in `template` or `acrostic` was a plain-text 500 (and a traceback in the server's
    log) when the template was compiled for the model; in `stop` it was taken, a stop no model can write."""
    url, _ = server
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    cases = [
        (b'{"prompt": "a", "template": "_\\ud800_"}', "template"),
        (b'{"prompt": "a", "template": "__", "acrostic": "\\ud800"}', "acrostic"),
        (b'{"prompt": "a", "stop": ["x", "\\udc00"]}', "stop"),
        (b'{"messages": [{"role": "user", "content": "a"}], "template": "\\udfff_"}', "template"),
    ]
    for body, param in cases:
        path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
        response = httpx.post(f"{url}{path}", content=body, headers=headers)
        assert response.status_code == 400, (body, response.text[:200])
        error = response.json()["error"]
        assert error["param"] == param and error["message"].startswith(f"{param}: lone surrogate"), error


def test_a_client_gone_before_its_whole_body_leaves_no_traceback(server):
    """A client that announced a body longer than it sent, then closed the connection (a timeout), was
    "Exception in ASGI application" and a ClientDisconnect traceback in the server's log, each time."""
    url, _ = server
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(handler)
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
                head = f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                sock.sendall(f"{head}Content-Length: 100\r\n\r\n".encode() + b'{"prompt": "a"')
                time.sleep(0.05)  # the server is reading the body
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200)
        time.sleep(0.1)
    finally:
        uvicorn_log.removeHandler(handler)
    assert not logged, logged


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bytes:
    """What the server sent until it closed `sock`, sending `trickle` a byte every 50 ms meanwhile;
    fails if it is still open after `seconds`."""
    sock.settimeout(0.05)
    received, deadline = b"", time.time() + seconds
    while time.time() < deadline:
        if trickle:
            with contextlib.suppress(OSError):
                sock.sendall(trickle[:1])
            trickle = trickle[1:]
        try:
            part = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not part:
            return received
        received += part
    raise AssertionError(f"still open after {seconds} s")


def test_a_request_must_arrive_whole_in_time_and_its_headers_within_a_bound(tiny_model, monkeypatch):
    """On uvicorn's httptools a connection that sent nothing, its headers a byte at a time (slowloris) or a
    body shorter than its Content-Length was held for good (200 such held 200 descriptors after 76 s),
    and a 10 MB header was read whole. `charlm serve` speaks HTTP with `BoundedHttp`: each request must
    arrive whole within REQUEST_SECONDS (here 0.5 s), its line and headers within MAX_HEAD bytes; a
    client making requests one after another on one connection is served however long it keeps it."""
    from charlm.serve import connections

    monkeypatch.setattr(connections, "REQUEST_SECONDS", 0.5)
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig())
    with running(app, http=connections.BoundedHttp) as url:
        wait_healthy(url)
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        held = [socket.create_connection(address) for _ in range(3)]
        held[1].sendall(b"GET /health HTTP/1.1\r\n")
        held[2].sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
        for sock in held:
            with sock:
                assert closed_within(sock, 3) == b""
        with socket.create_connection(address) as slowloris:
            assert closed_within(slowloris, 3, trickle=b"GET /health HTTP/1.1\r\n" + b"X" * 100) == b""
        with socket.create_connection(address) as huge:
            huge.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n")
            assert closed_within(huge, 3).startswith(b"HTTP/1.1 400 ")
        with httpx.Client(base_url=url) as kept_alive:
            for _ in range(4):
                assert kept_alive.get("/health").status_code == 200
                time.sleep(0.2)


@pytest.mark.parametrize(
    ("request_line", "message"),
    [
        (b"GET /he\x01alth HTTP/1.1", "the request is not valid HTTP/1.1 (its line or headers cannot be read)"),
        (b"GET /" + b"a" * 100_000 + b" HTTP/1.1", "the request line and headers are over 65,536 bytes; send a"),
    ],
    ids=["control byte", "100 KB path"],
)
def test_a_request_the_parser_refuses_is_an_error_in_the_apis_shape(tiny_model, request_line, message):
    """A request uvicorn's parser refused (a raw control byte in its line, a path of 1 MB) got uvicorn's plain
    text "Invalid HTTP request received.", where every other error is OpenAI's JSON: now it is JSON too,
    saying why, and the connection is closed."""
    from charlm.serve import connections

    app = create_app({"tiny": lambda: tiny_model}, ServeConfig())
    with (
        running(app, http=connections.BoundedHttp) as url,
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock,
    ):
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
        answer = closed_within(sock, 3)
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    assert error["message"].startswith(message) and error["code"] == "invalid_http_request"
    assert error["type"] == "invalid_request_error" and error["param"] is None


def answers_to(requests: int, received: bytes) -> list[tuple[int, bytes]]:
    """The status and body of each answer in `received`, a connection's bytes to `requests` pipelined requests."""
    import h11

    connection, answers = h11.Connection(h11.CLIENT), []
    connection.receive_data(received)
    connection.receive_data(b"")  # the server closed the connection
    while len(answers) < requests and connection.our_state is h11.IDLE:  # else the server closed after the last
        connection.send(h11.Request(method="GET", target="/", headers=[("Host", "127.0.0.1")]))
        connection.send(h11.EndOfMessage())
        status, body = 0, b""
        while not isinstance(event := connection.next_event(), h11.EndOfMessage):
            assert event not in (h11.NEED_DATA, h11.PAUSED), (answers, received[-300:])
            status = event.status_code if isinstance(event, h11.Response) else status
            body += bytes(event.data) if isinstance(event, h11.Data) else b""
        answers.append((status, body))
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
    return answers


def test_a_refused_request_is_answered_after_the_requests_pipelined_before_it(tiny_model, monkeypatch):
    """Requests pipelined on one connection, a good one then one the parser refuses: the 400 was written
    at once and the connection closed, and the good one's answer (a completion, a stream) was lost. Now
    each request before the refused one is answered whole, then its 400, then the connection closes;
    the refused request's deadline (here 0.2 s, shorter than the stream) no longer cuts them."""
    from charlm.serve import connections

    monkeypatch.setattr(connections, "REQUEST_SECONDS", 0.2)
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig())
    completion = {"prompt": "the ", "max_tokens": 30, "seed": 5}

    def post(body: dict) -> bytes:
        content = json.dumps(body).encode()
        head = f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(content)}\r\n\r\n"
        return head.encode() + content

    bad_line = b"GET /he\x01alth HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    bad_chunk = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    with running(app, http=connections.BoundedHttp) as url:
        wait_healthy(url)
        expected = httpx.post(f"{url}/v1/completions", json=completion).json()["choices"][0]["text"]
        for pipelined, good in (
            (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + bad_line, 1),
            (post(completion) + post(completion) + bad_line, 2),
            (post(completion) + bad_chunk, 1),  # refused in its body, not its head
            (post({**completion, "max_tokens": 3000, "stream": True}) + bad_line, 1),
        ):
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
                sock.sendall(pipelined)
                answers = answers_to(good + 1, closed_within(sock, 20))
            assert [status for status, _ in answers] == [200] * good + [400], answers
            for _, body in answers[:good]:
                if body.startswith(b"data: "):
                    assert body.endswith(b"data: [DONE]\n\n")
                elif b"choices" in body:
                    assert json.loads(body)["choices"][0]["text"] == expected
            assert json.loads(answers[-1][1])["error"]["code"] == "invalid_http_request"


def test_a_body_within_the_documented_limits_is_read_however_its_json_escapes_them():
    """Issue 26 item 8: the body budget assumed 4 bytes a character, and 64 prompts of 16,384 '’'
    escaped as json.dumps does (6 bytes each) got 413. The body is read (its characters, unseen by this
    model, are read as characters it knows nothing about). max_tokens 0 primes none of them (a 1x4 model
    took 2.1 s over their 2 x 64 x 16,384 steps when it did)."""
    torch.manual_seed(0)
    model = make_model(VOCAB, layers=1, hidden=4).eval()
    app = create_app({"tiny": lambda: model}, ServeConfig(max_prompt=16384, max_streams=64))
    with running(app) as url:
        wait_healthy(url)
        for char in ("\u2019", "\U0001f600"):
            body = json.dumps({"prompt": [char * 16384] * 64, "max_tokens": 0})
            response = httpx.post(f"{url}/v1/completions", content=body, timeout=60)
            assert response.status_code == 200 and len(response.json()["choices"]) == 64
        too_big = json.dumps({"prompt": "a", "user": "\u2019" * 2_300_000})
        assert httpx.post(f"{url}/v1/completions", content=too_big, timeout=60).status_code == 413


@pytest.mark.parametrize("expect", [b"Expect: 100-continue\r\n", b""])
def test_a_body_announced_over_the_limit_is_refused_before_it_is_sent(server, expect):
    """A client that announced 1 GB and waited to be told to send it (`Expect: 100-continue`, as curl does
    over 1 MiB) was told "100 Continue" by the first read, then refused only once the limit's megabytes had
    arrived, or, sending nothing more, held for the request's 60 s. Its Content-Length is enough to refuse it."""
    url, _ = server
    head = (
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + KEY.encode() + b"\r\n" + expect + b"Content-Length: 1000000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(head)
        answer = b""
        while b"}}" not in answer and (part := sock.recv(65536)):
            answer += part
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b'"code":"request_too_large"' in answer and b"the request body is over" in answer, answer


def test_a_content_length_of_a_digit_int_cannot_read_is_no_internal_error(tiny_model):
    """`create_app` runs on any ASGI server, and one that passes a header as sent gave `Content-Length: ²`
    (Latin-1's superscript two, which isdigit() takes and int() cannot read) a 500 and a traceback."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_tokens=20, max_prompt=100))

    async def post(length: bytes) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.post("/v1/completions", content=b'{"prompt": "a"}', headers={"content-length": length})

    for length in (b"\xb2", b"\xb9\xb2\xb3"):
        response = asyncio.run(post(length))
        assert response.status_code != 500 and "error" in response.json(), response.text


def test_prompts_are_primed_on_one_torch_thread_and_only_steps_of_many_rows_take_threads(tiny_model, monkeypatch):
    """`charlm serve --threads 2` primed prompts 20x slower than --threads 1: the primer thread ran its
    chains of one-row products on two torch threads, its own OpenMP team beside the engine's (and the
    main thread's), and OpenMP's threads slept and woke at every operation. And a step of a few rows on
    two threads was slower than on one (a lone stream 0.13x on a busy machine). Priming takes one torch
    thread, whatever the process's count (3 here: neither 1 nor 2); a step takes --threads from
    PARALLEL_ROWS rows up, one below."""
    seen = []

    def recording(method, what):
        def run(self, ids):
            seen.append((what, threading.current_thread().name, torch.get_num_threads(), len(ids)))
            return method(self, ids)

        return run

    monkeypatch.setattr(RowStepper, "prime", recording(RowStepper.prime, "prime"))
    monkeypatch.setattr(RowStepper, "step", recording(RowStepper.step, "step"))
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(threads=2))
    with contextlib.ExitStack() as stack:
        stack.callback(torch.set_num_threads, previous)
        url = stack.enter_context(running(app))
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        client.completions.create(model="tiny", prompt=["the ", "a "], max_tokens=5)
        client.completions.create(model="tiny", prompt=["the ", "a "], max_tokens=5, n=PARALLEL_ROWS // 2, seed=1)
    primes = {(thread.split("_")[0], count) for what, thread, count, _ in seen if what == "prime"}
    steps = {(thread, count, rows >= PARALLEL_ROWS) for what, thread, count, rows in seen if what == "step"}
    assert primes == {("charlm-prime", 1)}
    assert steps == {("charlm-engine-tiny", 1, False), ("charlm-engine-tiny", 2, True)}


@pytest.mark.parametrize(
    ("options", "in_python", "on_the_command_line"),
    [
        ({"port": -1}, "port must be at least 0, not -1", "--port must be at least 0, not -1"),
        ({"port": 70000}, "port must be at most 65535", "--port must be at most 65535"),
        ({"max_streams": 0}, "max_streams must be at least 1", "--max-streams must be at least 1"),
        # each engine's rows were made at start-up: "Error: RuntimeError: ... can't allocate memory"
        ({"max_streams": 10**11}, "max_streams must be at most 4096", "--max-streams must be at most 4096"),
        ({"chunk_ms": 2000.0}, "chunk_ms must be between 0 and 1000", "--chunk-ms must be between 0 and 1000"),
        ({"api_key": ""}, "api_key must not be empty", "--api-key must not be empty"),
        ({"allow_origin": "localhost:3000"}, "allow_origin: 'localhost:3000' is not", "--allow-origin: 'localhost"),
        ({"allow_origin": " , "}, "allow_origin is empty", "--allow-origin is empty"),
    ],
)
def test_serve_config_names_a_bad_option_as_its_caller_wrote_it(options, in_python, on_the_command_line):
    """charlm.serve.ServeConfig(port=-1) told a Python caller "--port must be at least 0", a flag of a
    command he never ran: a Python caller is told the keyword, a `charlm serve` user the flag."""
    with pytest.raises(CharLMError, match="^" + re.escape(in_python)):
        ServeConfig(**options)
    with on_command_line(), pytest.raises(CharLMError, match="^" + re.escape(on_the_command_line)):
        ServeConfig(**options)
    flags = [part for name, value in options.items() for part in (f"--{name.replace('_', '-')}", str(value))]
    assert_one_line_error(cli("serve", "no-such-run", *flags), on_the_command_line)


def test_serve_prints_its_address_once_a_request_on_it_is_answered(tiny_model, monkeypatch):
    """`charlm serve` printed its address when its models were read, before the app had started their
    engines: a client sent on that line (a script, bench/serve_load) got 503 "the model is still loading"."""
    import charlm.serve as serving
    from charlm.serve import app as serve_app
    from charlm.serve import server as serve_server

    real_fingerprint, servers, answered = serve_server.fingerprint, [], []
    monkeypatch.setattr(serve_server, "fingerprint", lambda model: (time.sleep(0.3), real_fingerprint(model))[1])
    monkeypatch.setattr(serving, "model_loaders", lambda targets, device: ({"tiny": lambda: tiny_model}, {}))
    starting = serve_app.UvicornServer.__init__
    monkeypatch.setattr(
        serve_app.UvicornServer, "__init__", lambda self, *a: (servers.append(self), starting(self, *a))[1]
    )

    def ask(url: str) -> None:
        answered.append(httpx.get(f"{url}health", timeout=30).status_code)
        servers[0].should_exit = True

    class Terminal:
        def write(self, text: str) -> None:
            if url := re.search(r"http://\S+/", text):  # a client sent at once, as the line is read
                threading.Thread(target=ask, args=(url[0],)).start()

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stdout", Terminal())
    serving_thread = threading.Thread(target=serving.serve, args=(["tiny"], ServeConfig(port=0)))
    serving_thread.start()
    serving_thread.join(timeout=60)
    assert not serving_thread.is_alive(), "the server did not stop"
    assert answered == [200]


def test_an_empty_api_key_says_what_to_do():
    """`charlm serve ... --api-key "$KEY"`, serve.md's own line, with KEY unset was told only "--api-key
    must not be empty": it says what gave an empty key and the two ways on."""
    assert_one_line_error(
        cli("serve", "no-such-run", "--api-key", ""),
        "--api-key must not be empty",
        "a shell variable left unset",
        "give the key clients will send, or leave --api-key out",
    )
    with pytest.raises(CharLMError, match="or leave api_key out"):
        ServeConfig(api_key="")


def test_serve_warns_of_its_options_as_its_caller_wrote_them(monkeypatch, recwarn):
    """charlm.serve.serve(...) warned a Python caller of "--threads 2" and "--host 0.0.0.0 without
    --api-key", flags of a command he never ran; `charlm serve` still names its flags."""
    from charlm import threads
    from charlm.serve import warn_if_no_core_left, warn_if_open_to_anyone

    monkeypatch.setattr(threads, "share_of_cores", lambda: 2)

    def warned() -> list[str]:
        warn_if_no_core_left(2)
        warn_if_open_to_anyone("0.0.0.0", "0.0.0.0", None)
        warn_if_open_to_anyone("localhost", "127.0.0.1", None)  # only this machine reaches it: no warning
        warn_if_open_to_anyone("0.0.0.0", "0.0.0.0", KEY)  # a key guards it: no warning
        said = [str(w.message) for w in recwarn]
        recwarn.clear()
        return said

    in_python = warned()
    assert len(in_python) == 2 and "--" not in "".join(in_python), in_python
    assert in_python[0].startswith("threads=2 takes all 2 cores") and "slower than threads=1" in in_python[0]
    assert in_python[1].startswith("host='0.0.0.0' without api_key: anyone who reaches this port")
    with on_command_line():
        on_the_command_line = warned()
    assert on_the_command_line[0].startswith("--threads 2 takes all 2 cores"), on_the_command_line
    assert on_the_command_line[1].startswith("--host 0.0.0.0 without --api-key: anyone who reaches this port")


def test_an_address_it_cannot_listen_on_is_named_as_its_caller_wrote_it():
    """listening_socket's error (met by charlm.serve.serve) named --host and --port for a Python caller."""
    with pytest.raises(CharLMError, match=r"^host='192\.0\.2\.1', port=0: .*; give host an address of this"):
        listening_socket("192.0.2.1", 0)  # TEST-NET-1: never an address of this machine
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CharLMError, match=rf"^host='127\.0\.0\.1', port={port}: .*; pick another port$"):
            listening_socket("127.0.0.1", port)
        with on_command_line(), pytest.raises(CharLMError, match=rf"^--host 127\.0\.0\.1 --port {port}: .*--port$"):
            listening_socket("127.0.0.1", port)


def test_threads_on_every_core_are_warned_of(monkeypatch, recwarn):
    """`charlm serve --threads 2` on 2 cores made 16 streams 0.14 times as fast as --threads 1 (the step's
    second OpenMP thread waits on the HTTP thread), and said nothing: the docs' rule, given as a warning."""
    from charlm import threads
    from charlm.serve import warn_if_no_core_left

    for cores, count, warned in [(2, 2, True), (2, 1, False), (4, 2, False), (4, 4, True), (1, 1, False)]:
        monkeypatch.setattr(threads, "share_of_cores", lambda cores=cores: cores)
        recwarn.clear()
        warn_if_no_core_left(count)
        said = [str(w.message) for w in recwarn]
        assert bool(said) == warned and all(f"give at most {cores - 1}" in m for m in said), (cores, count, said)


def test_serve_loads_its_models_off_the_http_thread(fox_run, monkeypatch):
    """The main thread serves HTTP for the server's life: parallel torch work there (loading a model)
    kept an OpenMP team alive beside the engine's for good (see the test above)."""
    from charlm import serve as serve_package

    loaded_on = []

    def load(path, device):
        loaded_on.append(threading.current_thread())
        raise CharLMError(f"{path}: stop here")

    monkeypatch.setattr(checkpoint, "load", load)
    with pytest.raises(CharLMError, match="stop here"):
        serve_package.serve([str(fox_run)], ServeConfig(port=0))
    assert loaded_on and threading.main_thread() not in loaded_on


def test_the_openai_client_retrieves_a_model_by_its_id(client):
    """client.models.retrieve (GET /v1/models/{id}) was a bare 404 "Not Found", so a tool that checks
    its model before using it failed against a model that was there."""
    listed = client.models.list().data[0]
    assert client.models.retrieve("tiny").model_dump() == listed.model_dump()
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("nonesuch")
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["param"] == "model"


def test_unknown_model_is_404_and_never_a_path(client, tmp_path, server):
    for name in ("nonesuch", "../tiny", str(tmp_path), "checkpoints/tiny/best.pt"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.completions.create(model=name, prompt="a")
        assert caught.value.body["code"] == "model_not_found" and "tiny" in caught.value.body["message"]
    assert list(server[1].models) == ["tiny"]


def test_a_run_is_also_named_by_its_corpus_when_that_is_unambiguous(tiny_model):
    """Issue 26 item 20: docs/serve.md asks for model="shakespeare"; the server only knew the run name."""
    names = ["shakespeare-20261204-170201", "fox-20261204-170201", "fox-20261204-170201-02", "hongloumeng"]
    app = create_app(dict.fromkeys(names, lambda: tiny_model), ServeConfig())
    with running(app) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        for asked, served in [("shakespeare", names[0]), (names[1], names[1]), ("hongloumeng", "hongloumeng")]:
            assert client.completions.create(model=asked, prompt="a", max_tokens=2).model == served
        for asked, fragment in [("fox", "ambiguous: give one of fox-20261204-170201, fox-"), ("shakes", "loaded")]:
            with pytest.raises(openai.NotFoundError) as caught:
                client.completions.create(model=asked, prompt="a", max_tokens=2)
            assert fragment in caught.value.body["message"] and caught.value.body["param"] == "model"


def test_every_name_a_request_may_give_a_model_by_is_one_openapi_json_allows(tiny_model):
    """/openapi.json's `model` was an enum of the served ids, though a run's corpus names its model too: a
    client validating a request against the schema refused `model: "shakespeare"`, which the server serves.
    Every name it serves validates against every body's schema, and a name it refuses (an ambiguous
    corpus, a part of one) does not."""
    jsonschema_rs = import_or_missing("jsonschema_rs")
    names = ["shakespeare-20261204-170201", "fox-20261204-170201", "fox-20261204-170201-02", "run"]
    app = create_app(dict.fromkeys(names, lambda: tiny_model), ServeConfig(), {"run": "hongloumeng"})
    with running(app) as url, httpx.Client(base_url=url, timeout=20) as client:
        wait_healthy(url)
        paths = client.get("/openapi.json").json()["paths"]
        schemas = [operation["post"]["requestBody"]["content"]["application/json"]["schema"] for operation in
                   paths.values() if "requestBody" in operation.get("post", {})]  # fmt: skip
        models = [jsonschema_rs.Draft202012Validator(schema["properties"]["model"]) for schema in schemas]
        assert len(models) == 5
        for name in [*names, "shakespeare", "hongloumeng", "fox", "shakes", "run-x"]:
            answer = client.post("/v1/completions", json={"model": name, "prompt": "a", "max_tokens": 1})
            assert answer.status_code in (200, 404), (name, answer.text[:300])
            assert [model.is_valid(name) for model in models] == [answer.status_code == 200] * 5, name


OPENAPI_OF_A_NEW_SERVER = """
import json
from charlm import CharLM, ModelConfig
from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig
from charlm.vocab import Vocab
model = CharLM(ModelConfig("lstm", 1, 8, 0.0, 3), Vocab("abc"))
print(json.dumps(create_app({"tiny": lambda: model}, ServeConfig()).openapi()))
"""


def test_openapi_json_is_the_same_document_at_every_start():
    """/openapi.json listed /v1/responses/input_tokens's fields in the order of a Python set, which each
    process orders by its own string hashes: the document of a server changed at every start, so a client
    generated from it, or a copy checked into a project, differed each time for nothing. The three
    processes start at once: each spends its ~3 s importing torch, which 2 cores do side by side."""
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", OPENAPI_OF_A_NEW_SERVER],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2, 3)
    ]
    try:
        outputs = [process.communicate(timeout=120) for process in starts]
    finally:
        for process in starts:
            process.kill()  # one still running once another failed; nothing for one that ended
            process.wait()
    assert [process.returncode for process in starts] == [0, 0, 0], [stderr for _, stderr in outputs]
    documents = {stdout for stdout, _ in outputs}
    assert len(documents) == 1 and '"/v1/responses/input_tokens"' in documents.pop()


def test_serve_names_runs_by_their_corpus_and_exports_by_their_run(fox_file, tiny):
    """An --out run is named by its run.json's corpus too; two exported model folders are two models."""
    from charlm.serve import model_loaders

    for out in ("small", "other"):
        train(fox_file, out=out, **{**tiny, "max_steps": 2})  # a run to name: its weights are not looked at
        assert cli("export", out, "--format", "safetensors").exit_code == 0
    exports = ["checkpoints/small/exports/model", "checkpoints/other/exports/model"]
    assert list(model_loaders(exports)[0]) == ["small", "other"]  # not both "model"
    loaders, corpora = model_loaders(["small", exports[1]])
    assert list(loaders) == ["small", "other"] and corpora == {"small": "fox"}
    with running(create_app(loaders, ServeConfig(), corpora)) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        assert client.completions.create(model="fox", prompt="the", max_tokens=2).model == "small"


def test_a_bad_key_is_401_but_health_and_models_stay_open(server):
    url, _ = server
    bad = OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model="tiny", prompt="a")
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}])
    refused = httpx.post(f"{url}/v1/completions", json={"prompt": "a"})
    assert refused.status_code == 401
    # OpenAI's own 401 body: a client that reads `type` (not only the status) sees what OpenAI would send
    assert {k: refused.json()["error"][k] for k in ("type", "code")} == {
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
    assert httpx.get(f"{url}/metrics").status_code == 401
    # a method the route does not take is answered before the key (the routes are public: /openapi.json)
    assert httpx.get(f"{url}/v1/completions").status_code == 405
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    models = OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    assert [m.id for m in models.data] == ["tiny"] and models.data[0].object == "model"
    assert bad.models.retrieve("tiny").id == "tiny"
    assert "<html" in httpx.get(f"{url}/").text.lower()


@pytest.mark.parametrize("key", ["clé", "key\u2019s", " padded", "tab\there"])
def test_a_key_no_header_can_carry_is_refused_at_start_up(key, monkeypatch, tiny_model):
    """Issue 26 item 5: a non-ASCII key was accepted and could never be matched (a header is Latin-1)."""
    with pytest.raises(CharLMError, match=r"^api_key must be printable ASCII"):
        ServeConfig(api_key=key)
    with on_command_line(), pytest.raises(CharLMError, match=r"^--api-key must be printable ASCII"):
        ServeConfig(api_key=key)
    monkeypatch.setenv("CHARLM_API_KEY", key)
    with pytest.raises(CharLMError, match=r"^\$CHARLM_API_KEY must be printable ASCII"):
        create_app({"tiny": lambda: tiny_model}, ServeConfig())


def active_streams(url: str) -> int:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    return int(next(line for line in text.splitlines() if line.startswith("charlm_active_streams")).split()[-1])


def rows_per_step(monkeypatch, engine) -> list[int]:
    """The rows of each step `engine` takes from now on: how many requests really ran side by side.
    Looks at /metrics 10 ms apart (from a thread of this process, waiting on the GIL while the engine
    steps) took ~0.1 s each on a loaded machine: 0-2 of 60 looks fell within the ~600 steps of 3 or
    more rows, and once none did. Counted from an idle engine: no earlier test's rows among them."""
    wait_until(lambda: engine.active == 0)
    counts, step = [], engine.advance

    def counted() -> None:
        counts.append(engine.active)
        step()

    monkeypatch.setattr(engine, "advance", counted)
    return counts


def wait_until(condition, timeout: float = 30) -> None:
    """Wait for what a server thread does; the limit only ends a test that would hang (a busy 2-core
    machine took over 5 s to start a stream). `condition` must be a state that stays once reached (rows
    free on a shared server: a stream an earlier test closed frees its rows when the server sees it go),
    never one that lasts a moment: a test thread kept off the cores that long misses it."""
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_same_seed_alone_and_among_31_concurrent_requests_is_the_same_text(server, monkeypatch):
    """A request's text is its own whatever shares its steps: rows join, leave and move (the last into a
    freed slot) with their options, generators and counts; the probe and the later penalized requests, moved
    as earlier ones leave, write what they write alone."""
    url, state = server
    probe = {"prompt": "the ", "max_tokens": 300, "seed": 1234, "temperature": 0.9, "top_p": 0.95}
    probe |= {"presence_penalty": 0.6, "frequency_penalty": 0.3}
    base = OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    alone = base.completions.create(model="tiny", **probe).choices[0].text

    def options_of(i: int) -> dict:
        options = {"prompt": "a b c"[: 1 + i % 5], "max_tokens": 50 + 17 * i, "seed": i, "temperature": 0.5 + i / 20}
        if i % 3 == 0:
            options["extra_body"] = {"top_k": 1 + i % 7, "repetition_penalty": 1.3}
        if i % 4 == 1:
            options |= {"presence_penalty": -1 + i / 15, "frequency_penalty": 0.1 * (i % 5)}
        return options

    async def crowd() -> list[str]:
        client = AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

        async def other(i: int) -> str:
            await asyncio.sleep(0.002 * i)  # arrive, and so join and leave, at different steps
            if i % 2:
                stream = await client.completions.create(model="tiny", stream=True, **options_of(i))
                return "".join([c.choices[0].text async for c in stream])
            return (await client.completions.create(model="tiny", **options_of(i))).choices[0].text

        async def probe_streamed() -> str:
            await asyncio.sleep(0.01)
            chunks = [c async for c in await client.completions.create(model="tiny", stream=True, **probe)]
            return "".join(c.choices[0].text for c in chunks)

        results = await asyncio.gather(
            probe_streamed(), *(other(i) for i in range(15)), client.completions.create(model="tiny", **probe),
            *(other(i) for i in range(15, 30)),
        )  # fmt: skip
        await client.close()
        return [results[0], results[16].choices[0].text, *results[1:16], *results[17:]]

    rows = rows_per_step(monkeypatch, state.models["tiny"].engine)
    streamed_text, plain_text, *others = asyncio.run(crowd())
    assert streamed_text == alone and plain_text == alone
    assert max(rows) > 8  # they really ran side by side
    for i in (17, 21, 25, 29):  # penalized, longer than the probe: moved down as the earlier ones left
        assert others[i] == base.completions.create(model="tiny", **options_of(i)).choices[0].text, i


def test_a_disconnected_stream_frees_its_row_at_once(tiny_model):
    """Requests far longer than the test (100,000 tokens: seconds of steps): their rows are still there when
    looked at, and leave only because the client went. Requests of 2,000 tokens (the shared server's most)
    took 0.2-0.8 s on a loaded machine, as long as the test's own looks: the rows were gone within 0.09 s of
    the first look, and left within the 2 s whether the client's leaving dropped them or not."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(api_key=KEY, max_tokens=100_000))
    with running(app) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        stream = client.completions.create(model="tiny", prompt="a", max_tokens=100_000, n=3, stream=True)
        next(iter(stream))
        assert active_streams(url) == 3
        stream.close()
        wait_until(lambda: active_streams(url) == 0, timeout=2)
        # A plain request whose client gives up is dropped too.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{url}/v1/completions",
                json={"prompt": "a", "max_tokens": 100_000, "n": 2},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=httpx.Timeout(5, read=0.02),
            )
        wait_until(lambda: active_streams(url) == 0, timeout=2)


def unread_stream(url: str, body: dict) -> socket.socket:
    """A streamed request from a client that never reads its answer: a small receive buffer, soon full."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    data = json.dumps({**body, "stream": True}).encode()
    head = f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    sock.sendall(head.encode() + data)
    return sock


@pytest.mark.parametrize(("unsent", "seconds"), [pytest.param(None, 60, marks=pytest.mark.slow), (10**9, 0.5)])
def test_a_stream_its_client_never_reads_is_stopped_and_frees_its_rows(tiny_model, monkeypatch, unsent, seconds):
    """A client that sent a stream of n=2 with logprobs and never read it held both rows for as long as it
    kept its connection (every other request a 429), and the server's memory grew (100 MB a second at n=64)
    until max_tokens. Now the stream stops once more than MAX_UNSENT a row waits unsent, or once nothing
    was taken for UNREAD_SECONDS (here 0.5 s, the other bound out of reach), and a client that reads on
    at last is told why. (Without logprobs, 200,000 characters fit in the sockets' buffers.)"""
    from charlm.serve.completion import Completion

    if unsent is not None:
        monkeypatch.setattr("charlm.serve.completion.MAX_UNSENT", unsent, raising=False)
    monkeypatch.setattr("charlm.serve.completion.UNREAD_SECONDS", seconds, raising=False)
    # Each stop as the server made it: the rows its stream held, and why. Its two rows taken were waited for
    # as `busy == 2`, a state that lasts UNREAD_SECONDS: a test thread kept off a loaded machine's cores that
    # long missed it and waited 30 s to fail; a list of stops only grows.
    stops, stop_unread = [], Completion.stop_unread

    def recorded(run: Completion, why: str) -> None:
        stops.append((run.rows, why))
        stop_unread(run, why)

    monkeypatch.setattr(Completion, "stop_unread", recorded)
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=2, max_tokens=100_000))
    with running(app) as url:
        wait_healthy(url)
        body = {"prompt": "a", "max_tokens": 100_000, "n": 2, "logprobs": 20}
        with contextlib.closing(unread_stream(url, body)) as unread:
            wait_until(lambda: stops)
            why = "characters and logprobs waited unsent" if unsent is None else "nothing was taken for 0.5 s"
            assert len(stops) == 1 and stops[0][0] == 2 and why in stops[0][1], stops
            wait_until(lambda: app.state.server.busy == 0, timeout=10)
            wait_until(lambda: active_streams_of(app) == 0)  # cancelled rows leave at the next step
            assert httpx.post(f"{url}/v1/completions", json={"prompt": "a", "max_tokens": 3}).status_code == 200
            unread.settimeout(10)
            read = b""
            while b"client_not_reading" not in read and (part := unread.recv(1 << 20)):
                read += part
        assert b"its client did not read it" in read


def test_a_client_that_stops_reading_is_stopped_unread_seconds_after_its_last_take(monkeypatch):
    """The watch on a client that does not read looked every UNREAD_SECONDS for a take since its last look:
    a client that took something just after one look and nothing more was stopped only at the look after
    the next, nearly twice UNREAD_SECONDS after its last take (every row held 20 s, where 10 s is the rule)."""
    from types import SimpleNamespace

    from charlm.serve.completion import Completion
    from charlm.serve.engine import Update

    seconds = 0.4
    monkeypatch.setattr("charlm.serve.completion.UNREAD_SECONDS", seconds, raising=False)

    async def quiet_until_stopped() -> float:
        one_row = SimpleNamespace(choices=1, n=1, seed=0, prompts=["a"])
        run = Completion(SimpleNamespace(free_rows=lambda rows: None), SimpleNamespace(engine=None), one_row)
        taking = run.updates()
        for text in "ab":  # the first update waits: the watch starts
            run.receive(Update(job=None, index=0, text=text))
        await asyncio.sleep(seconds / 10)
        await anext(taking)  # the client's last take; "b" waits unread from here on
        last_take = time.monotonic()
        while not run.stopped:
            await asyncio.sleep(seconds / 40)
        return time.monotonic() - last_take

    quiet = asyncio.run(quiet_until_stopped())
    assert seconds * 0.9 <= quiet < seconds * 1.5, quiet


def active_streams_of(app) -> int:
    return sum(served.engine.active for served in app.state.server.models.values())


def test_too_many_streams_is_429_until_one_ends(tiny_model):
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=2, max_tokens=100_000))
    with running(app) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        stream = client.completions.create(model="tiny", prompt="a", max_tokens=100_000, n=2, stream=True)
        next(iter(stream))
        with pytest.raises(openai.RateLimitError) as caught:
            client.completions.create(model="tiny", prompt="a", max_tokens=5)
        assert caught.value.body["code"] == "too_many_streams" and caught.value.response.headers["retry-after"] == "1"
        stream.close()
        wait_until(lambda: app.state.server.busy == 0)
        assert len(complete(client, max_tokens=5)[0]) == 5
        with pytest.raises(openai.BadRequestError):  # more than the server ever runs at once: never 429
            client.completions.create(model="tiny", prompt=["a", "b"], n=2)


def test_metrics_count_the_streams_an_unread_stream_holds_after_its_text_is_written(tiny_model, monkeypatch):
    """A stream holds its rows until its client takes its last update: one whose client took nothing held
    both streams of --max-streams 2 (every other request a 429 "2 of 2 streams are busy") while /metrics
    said `charlm_active_streams 0`, the model done writing, and an operator could not see why. /metrics
    gives the streams taken, as admission counts them, and their bound."""
    monkeypatch.setattr("charlm.serve.completion.UNREAD_SECONDS", 60, raising=False)  # not stopped meanwhile
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=2, max_tokens=100))
    held: dict = {}

    async def client_takes_nothing(scope, receive, send):
        async def waiting(message):  # the stream's answer has its headers sent, its events not taken
            if held.setdefault("stream", scope) is scope and message["type"] == "http.response.body":
                await held.setdefault("taken", asyncio.Event()).wait()
            await send(message)

        held["loop"] = asyncio.get_running_loop()
        await app(scope, receive, waiting if scope.get("path") == "/v1/completions" else send)

    with running(client_takes_nothing) as url:
        wait_healthy(url)
        body = {"prompt": "a", "max_tokens": 100, "n": 2, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as unread:
            assert unread.status_code == 200
            try:
                wait_until(lambda: app.state.server.models["tiny"].engine.characters == 200)  # both rows written
                said = metrics(url)
                assert said['charlm_active_streams{model="tiny"}'] == 0, said
                assert (said.get("charlm_busy_streams"), said.get("charlm_max_streams")) == (2, 2), said
                refused = httpx.post(f"{url}/v1/completions", json={"prompt": "a", "max_tokens": 1})
                assert refused.status_code == 429 and "2 of 2 streams are busy" in refused.text
            finally:
                held["loop"].call_soon_threadsafe(held.setdefault("taken", asyncio.Event()).set)
            assert unread.read().endswith(b"data: [DONE]\n\n")
        assert metrics(url)["charlm_busy_streams"] == 0  # its client took its last event: the rows are free


CHAT_A = {"messages": [{"role": "user", "content": "a"}]}
COMMA_BANNED = {"logit_bias": {str(VOCAB.index(",")): -100}}


NEVER_RUN = [
    ("/v1/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/completions", {"model": "nonesuch", "prompt": "a"}, 404, "does not exist"),
    ("/v1/completions", {"prompt": "a", "max_tokens": -1}, 400, "max_tokens must be between"),
    ("/v1/completions", {"prompt": 5}, 400, "prompt must be a string"),
    ("/v1/completions", {"prompt": "a", "logit_bias": {"1": 101}}, 400, "at most 100.0"),
    ("/v1/completions", {"prompt": "a", "logit_bias": {"99": 1}}, 400, "token id 99 is not one of the model's"),
    ("/v1/completions", {"prompt": "a", "logit_bias": {str(i): -100 for i in range(32)}}, 400, "bans every"),
    ("/v1/completions", b'{"prompt": ["b\\ud800"]}', 400, "prompt: lone surrogate U+D800 at character 1"),
    ("/v1/chat/completions", {**CHAT_A, "logit_bias": {"99": 1}}, 400, "token id 99 is not one"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\\udfff"}]}', 400, "messages: lone"),
    (
        "/v1/completions",
        {"prompt": "a", "template": "__：_"},
        400,
        "template: 1 character the model has never seen: '：",
    ),
    (
        "/v1/completions",
        {"prompt": "a", "form": "五言绝句"},
        400,
        "form 五言绝句: 2 characters the model has never seen: '，'",
    ),
    ("/v1/completions", {"prompt": "a", "template": "_,_", **COMMA_BANNED}, 400, "bans ',', but template must"),
    (
        "/v1/chat/completions",
        {**CHAT_A, "template": "_？_"},
        400,
        "template: 1 character the model has never seen: '？'",
    ),
    ("/v1/completions", {"prompt": "a", "max_tokens": 1}, 429, "streams are busy"),  # good, but no row is free
    ("/v1/completions", {"prompt": "a", "template": "_,_"}, 429, "streams are busy"),  # a writable template too
]


def test_a_request_that_can_never_run_is_refused_as_such_while_the_server_is_full(tiny_model, monkeypatch):
    """A request that can never succeed was a 429 while every stream was busy when what was wrong was
    checked against the model (its logit bias's ids, its form or template) or read (a lone surrogate)
    only once it had rows: the client retried it, was refused again, and in the end got the 400 it could
    have had at once. The held stream's steps wait until the test is done: its 100,000 characters took
    17 s here, and a faster engine, or a test thread kept off a loaded machine's cores, could end it
    before the last request (its row free, the 429s not refused)."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=1, max_tokens=100_000))
    held = {"prompt": "a", "max_tokens": 100_000, "stream": True}
    with running(app) as url:
        wait_healthy(url)  # sent while the model loaded, the held request was a 503 that held nothing (1 run in 15)
        batch, done = app.state.server.models["tiny"].engine.batch, threading.Event()
        step = batch.step

        def waiting_step(*args):
            done.wait(60)
            return step(*args)

        monkeypatch.setattr(batch, "step", waiting_step)
        try:
            with httpx.stream("POST", f"{url}/v1/completions", json=held, timeout=30) as holding:
                assert holding.status_code == 200, holding.read()
                wait_until(lambda: app.state.server.busy == 1)  # the one stream is taken
                for path, body, status, says in NEVER_RUN:
                    request = {"content": body} if isinstance(body, bytes) else {"json": body}
                    answer = httpx.post(f"{url}{path}", headers={"Content-Type": "application/json"}, **request)
                    error = answer.json()["error"]
                    assert answer.status_code == status and says in error["message"], (body, error)
                assert httpx.get(f"{url}/health").json() == {"status": "ok"} and app.state.server.busy == 1
        finally:
            done.set()  # before the server stops: its engine must not wait out the 60 s


def test_a_request_whose_sample_options_are_refused_leaves_no_row_taken(tiny_model, monkeypatch):
    """The request's SampleConfig was built after it took its rows and outside what gives them back: a
    field the API let through and SampleConfig refused would have left its row counted for good, every
    later request a 429 (no such field is known: the API's ranges are SampleConfig's, so this one is made)."""

    def refusing(**options):
        raise CharLMError("top_p must be in (0, 1], not 0.5")

    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=1))
    with running(app) as url:
        wait_healthy(url)
        with monkeypatch.context() as patched:
            patched.setattr(completion, "SampleConfig", refusing)
            refused = httpx.post(f"{url}/v1/completions", json={"prompt": "a", "top_p": 0.5})
        assert app.state.server.busy == 0  # rows were never taken, or were given back
        assert refused.status_code == 400 and refused.json()["error"]["message"] == "top_p must be in (0, 1], not 0.5"
        served = httpx.post(f"{url}/v1/completions", json={"prompt": "a", "max_tokens": 2}, timeout=30)
        assert served.status_code == 200, served.text


SHUTDOWN_REQUESTS = [  # every route that reads in the primer's thread
    ("/v1/completions", {"prompt": "a", "max_tokens": 2}),
    ("/tokenize", {"content": "a"}),
    ("/v1/responses/input_tokens", {"input": "a"}),
]


def test_a_request_that_reaches_the_primer_as_the_server_stops_is_a_503(tiny_model):
    """Stopping shuts the primer down and cancels what waits in it: a request waiting there, or sent in the
    shutdown's grace second once it was shut, was a 500 with a traceback (a cancelled future; "cannot schedule
    new futures after shutdown") where one primed meanwhile is a 503 "the server is shutting down". The
    primer is held busy so that the first requests are waiting in it when the stop comes."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=4))
    with running(app) as url:
        wait_healthy(url)
        state, gate = app.state.server, threading.Event()
        submitted, submit = [], state.primer.submit

        def counted_submit(*args, **kwargs):
            submitted.append(args[0])
            return submit(*args, **kwargs)

        state.primer.submit = counted_submit
        holding = state.primer.submit(gate.wait, 60)
        answers = []

        def send(path: str, body: dict) -> None:
            answers.append(httpx.post(f"{url}{path}", json=body, timeout=30))

        try:
            with concurrent.futures.ThreadPoolExecutor(len(SHUTDOWN_REQUESTS)) as senders:
                for path, body in SHUTDOWN_REQUESTS:
                    senders.submit(send, path, body)
                wait_until(lambda: len(submitted) == 1 + len(SHUTDOWN_REQUESTS))  # each waits in the primer
                asyncio.run_coroutine_threadsafe(state.stop(), state.loop).result(timeout=30)
            for path, body in SHUTDOWN_REQUESTS:  # in the grace second, once the primer was shut
                send(path, body)
        finally:
            gate.set()
        holding.result(timeout=30)
        said = [(answer.status_code, answer.text) for answer in answers]
        assert len(said) == 2 * len(SHUTDOWN_REQUESTS)
        assert all(status == 503 and '"message":"the server is shutting down"' in text for status, text in said), said
        assert state.busy == 0


def test_a_request_at_shutdown_is_a_503_even_with_every_stream_busy():
    """A request that asks for rows once the server is stopping (its logit bias or template checked meanwhile)
    found every stream still busy with the requests the stop is ending and was a 429 "retry shortly", where the
    docs promise the 503 "the server is shutting down": its client would retry a server that is going away."""
    server = Server({}, ServeConfig(max_streams=1))

    async def asked_once_stopping() -> None:
        server.take_rows(1)  # a stream in flight, not yet ended by the stop
        await server.stop()
        server.take_rows(1)

    with pytest.raises(APIError) as refused:
        asyncio.run(asked_once_stopping())
    assert (refused.value.status, refused.value.message) == (503, "the server is shutting down")
    assert server.busy == 1  # the late request took none


def test_a_cancel_at_shutdown_is_a_503_where_a_task_cannot_say_its_own_cancel(monkeypatch):
    """Python 3.10's tasks have no `cancelling()` (3.11 on), which `Server.in_primer` asks to tell a request's
    own cancel from the primer's at shutdown: there a request waiting in the primer as it was shut was an
    AttributeError, a 500, where it is the 503 "the server is shutting down"."""
    server, gate = Server.__new__(Server), threading.Event()
    server.primer, server.stopping = concurrent.futures.ThreadPoolExecutor(1), None
    server.primer.submit(gate.wait, 30)  # the primer busy: the request waits in it

    async def shut_while_waiting() -> APIError:
        waiting = asyncio.ensure_future(server.in_primer(lambda: "primed"))
        await asyncio.sleep(0.05)
        server.stopping = asyncio.get_running_loop().create_future()
        server.primer.shutdown(wait=False, cancel_futures=True)
        monkeypatch.setattr(asyncio, "current_task", lambda loop=None: types.SimpleNamespace())  # 3.10's task
        with pytest.raises(APIError) as refused:
            await waiting
        return refused.value

    try:
        error = asyncio.run(shut_while_waiting())
    finally:
        gate.set()
    assert (error.status, error.message) == (503, "the server is shutting down")


def test_a_request_running_as_the_engine_stops_is_a_503_as_a_stream_is_told(tiny_model, monkeypatch):
    """A request whose rows were live when the server stopped ended with a 500 `generation_failed`, as if
    the engine had a bug, where a request that came a moment later is a 503 `shutting_down` with Retry-After
    (a client retries it, elsewhere). Both kinds run as the engine stops, each step slowed so that neither
    finishes first: the whole answer is that 503, and the stream's last event its error body."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=4, max_tokens=4096))
    with running(app) as url:
        wait_healthy(url)
        state = app.state.server
        engine, step = state.models["tiny"].engine, state.models["tiny"].engine.advance

        def slow_step() -> None:
            time.sleep(0.01)  # 4,096 steps: 40 s, far past the stop
            step()

        monkeypatch.setattr(engine, "advance", slow_step)
        asked = {"prompt": "a", "max_tokens": 4096}
        events = []

        def streamed() -> None:
            with httpx.stream("POST", f"{url}/v1/completions", json={**asked, "stream": True}, timeout=30) as reply:
                events.extend(line for line in reply.iter_lines() if line.startswith("data:"))

        with concurrent.futures.ThreadPoolExecutor(2) as senders:
            whole = senders.submit(lambda: httpx.post(f"{url}/v1/completions", json=asked, timeout=30))
            stream = senders.submit(streamed)
            wait_until(lambda: engine.active == 2)  # both in flight
            asyncio.run_coroutine_threadsafe(state.stop(), state.loop).result(timeout=30)
            answer, _ = whole.result(timeout=30), stream.result(timeout=30)
    told = {
        "error": {
            "message": "the server is shutting down",
            "type": "server_error",
            "param": None,
            "code": "shutting_down",
        }
    }
    assert (answer.status_code, answer.headers.get("retry-after"), answer.json()) == (503, "1", told)
    assert json.loads(events[-1][len("data:") :]) == told


STREAMED_TO_THE_END = [  # (path, body, what ends the stream)
    ("/v1/completions", {"prompt": "a", "n": 2, "max_tokens": 5, "stream_options": {"include_usage": True}}, b"[DONE]"),
    ("/v1/chat/completions", {**CHAT_A, "n": 2, "max_tokens": 5}, b"[DONE]"),
    ("/v1/responses", {"input": "a", "max_output_tokens": 5}, b"event: response.incomplete"),
]


def rows_taken_at_each_event(app, path: str, body: dict, before=lambda server: None) -> list[tuple[int, bytes]]:
    """Each event of a stream of `body` sent to `path`, with the rows taken (`Server.busy`) as the server
    sent it, watched at the server's own sends; `before(server)` runs once the model is loaded."""
    taken_at: list[tuple[int, bytes]] = []

    async def watched(scope, receive, send):
        async def sending(message):
            if scope["path"] == path and message["type"] == "http.response.body" and message.get("body"):
                taken_at.append((app.state.server.busy, message["body"]))
            await send(message)

        await app(scope, receive, sending)

    with running(watched) as url:
        wait_healthy(url)
        before(app.state.server)
        with httpx.stream("POST", f"{url}{path}", json={**body, "stream": True}) as answer:
            assert answer.status_code == 200, answer.read()
            answer.read()
    return taken_at


@pytest.mark.parametrize(("path", "body", "last"), STREAMED_TO_THE_END)
def test_a_stream_frees_its_rows_before_its_client_is_told_it_ended(tiny_model, path, body, last):
    """A stream gave its rows back only after its last event was sent (in the response's closing task): a
    client that sent its next request on [DONE] could be a 429, and a test that read a stream to its end
    could see its rows still taken. Now they are free once every sample has finished, before the event that
    says so, as a whole answer's are before it is sent."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=2, max_tokens=100_000))
    taken_at = rows_taken_at_each_event(app, path, body)
    assert taken_at[0][0] == body.get("n", 1) and last in taken_at[-1][1]  # the rows were taken while it ran
    ending = next(i for i, (_, sent) in enumerate(taken_at) if b'"timings"' in sent or b"output_text.done" in sent)
    assert [taken for taken, _ in taken_at[ending:]] == [0] * len(taken_at[ending:])


def test_a_stream_the_engine_fails_frees_its_rows_before_its_error_event(tiny_model):
    """As a stream that ended (above): a client told that its stream failed could retry and be a 429."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=2, max_tokens=100_000))
    taken_at_failure = []

    def failing_engine(server) -> None:
        batch = server.models["tiny"].engine.batch

        def failing(*args):
            taken_at_failure.append(server.busy)
            raise RuntimeError("the step broke")

        batch.step = failing

    taken_at = rows_taken_at_each_event(app, "/v1/completions", {"prompt": "a", "n": 2}, failing_engine)
    assert taken_at_failure[:1] == [2] and [taken for taken, _ in taken_at] == [0]
    assert b"the step broke" in taken_at[0][1]


def test_a_generation_failure_is_an_error_that_frees_its_rows(tiny_model, monkeypatch):
    """Issue 26 item 10: when the engine failed, the waiting request's rows were never given back
    (run.cancel() was skipped when collect raised), and every later request was a 429."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_streams=2))
    with running(app) as url:
        wait_healthy(url)
        engine = app.state.server.models["tiny"].engine
        step, failures = engine.batch.step, []

        def failing_once(*args):
            if not failures:
                failures.append(1)
                raise RuntimeError("the step broke")
            return step(*args)

        monkeypatch.setattr(engine.batch, "step", failing_once)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            client.completions.create(model="tiny", prompt="a", max_tokens=5, n=2)
        assert "the step broke" in caught.value.body["message"] and caught.value.body["code"] == "generation_failed"
        assert len(client.completions.create(model="tiny", prompt="a", max_tokens=5, n=2).choices) == 2


def test_rows_finished_before_an_engine_failure_are_still_published(tiny_model):
    """Issue 26 item 10: `Engine.fail` dropped rows finished but not yet published; their request
    waited for ever."""
    from charlm.serve.engine import Engine, Job, Stream

    published = []
    engine = Engine(tiny_model, 4, published.extend)
    done = Job(torch.zeros(1), torch.zeros(1), None, SampleConfig(), [0], 0)
    engine.done.append(Stream(done, 0))  # max_tokens 0: finished as it joined
    engine.waiting.append(live := Job(torch.zeros(1), torch.zeros(1), None, SampleConfig(), [0], 5))
    engine.fail("generation failed")
    assert {(u.job is done, u.finish_reason, u.error) for u in published} == {
        (True, "length", None),
        (False, None, "generation failed"),
    }
    assert all(u.job in (done, live) for u in published)


def test_jobs_submitted_as_the_engine_goes_idle_or_cancelled_at_its_boundaries_never_hang_it(tiny_model):
    """The engine leaves `inference` when no row is live and waits for work (`Engine.run`): a job
    submitted as it does, or cancelled as a step boundary looks for cancelled rows without the lock,
    must neither wait forever nor keep a row alive. Four threads each submit short jobs one after
    another, each the moment the last ends (so the engine has just gone idle), and cancel every third
    as it is submitted; then the engine closes, idle, and a second one closes busy."""
    from charlm.serve.engine import Engine, Job

    ended: dict[int, threading.Event] = collections.defaultdict(threading.Event)
    errors: list[str] = []
    # Every job kept to the end: a job freed once it ended gave its id() to a later one, which then read as
    # ended at once (1 job in 120, 1 run in 3). Its client went on without waiting, a hang of it went
    # unseen, and the idle engine closed with it still live: "the server is shutting down" twice.
    submitted = []

    def publish(updates: list) -> None:
        for update in updates:
            if update.error:
                errors.append(update.error)
            if update.finish_reason or update.error:
                ended[id(update.job)].set()

    engine = Engine(tiny_model, 4, publish, chunk_interval=0.0)
    ids = tiny_model.vocab.encode("a")
    with torch.inference_mode():
        logits, state = engine.batch.prime(ids)
    engine.start()
    stranded = []

    def client(number: int) -> None:
        for count in range(30):
            job = Job(ids, logits, state, SampleConfig(), [count], 1 + count % 3)
            submitted.append(job)
            engine.submit(job)
            if (number + count) % 3 == 0:
                engine.cancel(job)  # nothing more is published for it: nobody waits
            elif not ended[id(job)].wait(5):
                stranded.append((number, count))

    clients = [threading.Thread(target=client, args=(number,)) for number in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(30)
    assert not stranded and not errors
    wait_until(lambda: engine.active == 0 and not engine.waiting)
    engine.close()  # idle: the thread ends
    assert not engine.thread.is_alive()
    busy = Engine(tiny_model, 4, publish, chunk_interval=0.0)
    busy.start()
    submitted.append(long := Job(ids, logits, state, SampleConfig(), [0], 10**6))
    busy.submit(long)
    wait_until(lambda: busy.active == 1)
    busy.close()  # busy: the live job is told the server is shutting down
    assert not busy.thread.is_alive() and ended[id(long)].is_set() and errors == ["the server is shutting down"]


def test_a_steps_log_probabilities_come_to_the_host_in_one_read(tiny_model, monkeypatch):
    """Each step read its rows' chosen log-probabilities, top values and top ids with a `.tolist()`
    each: on a GPU, three waits for the device a step. One read (`device.to_host`) brings them all,
    however many rows ask, each row with its own number of alternatives, and the step's ids with them
    (`Batch.step(also=...)`: they were a read of their own)."""
    import charlm.serve.engine as serve_engine
    from charlm import generation

    reads = []

    def counting(values: torch.Tensor):
        reads.append(tuple(values.shape))
        return to_host(values)

    monkeypatch.setattr(generation, "to_host", counting)
    labelled = []  # the tokens' names are made once per engine, not a vocabulary's worth at every step
    monkeypatch.setattr(serve_engine, "token_label", lambda vocab: labelled.append(vocab) or vocab.chars.__getitem__)
    published = []
    engine = serve_engine.Engine(tiny_model, 8, published.extend)
    ids = tiny_model.vocab.encode("the ")
    with torch.inference_mode():
        logits, state = engine.batch.prime(ids)
        jobs = [serve_engine.Job(ids, logits, state, SampleConfig(), [seed, seed + 1], 10) for seed in (1, 3, 5)]
        for job, logprobs in zip(jobs, (2, None, 5)):
            job.logprobs = logprobs
        engine.admit(jobs)
        for _ in range(10):
            engine.advance()
    engine.flush()
    # 6 rows' ids, then the 4 rows that ask, for 5 alternatives at most: each its chosen one, 5 values, 5 ids, its id
    assert reads == [(6 + 4 * (1 + 5 + 5 + 1),)] * 10 and len(published) == 6
    assert len(labelled) == 1
    for update in published:
        if update.job.logprobs is None:
            assert update.tokens is None
            continue
        assert "".join(t.text for t in update.tokens) == update.text and len(update.tokens) == 10
        for token in update.tokens:
            assert len(token.top) == update.job.logprobs and token.logprob == dict(token.top).get(
                token.text, token.logprob
            )


def logprobs_of(chunks: list) -> tuple[str, list | None]:
    """A streamed choice's text and its tokens' (text, logprob, alternatives), chunks joined."""
    text, tokens = "", []
    for chunk in chunks:
        for choice in chunk.choices:
            text += choice.text
            if choice.logprobs is None:
                tokens = None
                continue
            parts = choice.logprobs
            tokens += list(zip(parts.tokens, parts.token_logprobs, parts.top_logprobs))
    return text, tokens


def test_streams_with_and_without_logprobs_at_once_each_get_what_they_get_alone(server, monkeypatch):
    """The engine reads the ids and the logprobs of the rows that ask for them in one read a step
    (`Batch.step(also=...)`, rows picked by `Engine.rows_at`): 12 streams at once, a third without
    logprobs and the others asking for 0, 2 or 5 alternatives, of lengths that make them join and leave
    at different steps (each row moving into a freed place), each get the text and log-probabilities
    they get alone."""
    url, state = server
    requests = [
        {
            "prompt": "the quick"[: 1 + i % 9],
            "max_tokens": 30 + 23 * i,
            "seed": 100 + i,
            "temperature": 0.6 + 0.15 * (i % 5),
            **({} if i % 3 == 0 else {"logprobs": (0, 2, 5)[i % 4 // 2 + i % 2]}),
        }
        for i in range(12)
    ]
    client = OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    alone = [logprobs_of(client.completions.create(model="tiny", stream=True, **options)) for options in requests]
    assert [tokens is None for _, tokens in alone] == [i % 3 == 0 for i in range(12)]

    async def together() -> list:
        crowd = AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=60)

        async def one(options: dict, delay: float):
            await asyncio.sleep(delay)
            return logprobs_of([c async for c in await crowd.completions.create(model="tiny", stream=True, **options)])

        try:
            return await asyncio.wait_for(
                asyncio.gather(*(one(options, 0.003 * (i % 4)) for i, options in enumerate(requests))), 60
            )
        finally:
            await crowd.close()

    rows = rows_per_step(monkeypatch, state.models["tiny"].engine)
    assert asyncio.run(together()) == alone
    assert max(rows) >= 6  # they really ran side by side


def engine_outputs(model: CharLM, jobs: list, at_once: bool, rows: list | None = None) -> list:
    """Each job's samples run by a started engine (its own thread), the jobs submitted from threads of
    their own at once (joining at four different steps), or one after another, each alone: per job, per
    sample, its text and its tokens' (text, logprob, alternatives). `rows` gets the rows of each step."""
    import charlm.serve.engine as serve_engine

    finished = threading.Semaphore(0)
    made: dict[tuple[int, int], list] = {}

    def publish(updates: list) -> None:  # in the engine's thread
        for update in updates:
            assert update.error is None, update.error
            sample = made.setdefault((id(update.job), update.index), ["", []])
            sample[0] += update.text
            sample[1] += [(token.text, token.logprob, token.top) for token in update.tokens or []]
            if update.finish_reason is not None:
                finished.release()

    engine, steps = serve_engine.Engine(model, 16, publish, chunk_interval=0.005), [] if rows is None else rows
    step = engine.advance
    engine.advance = lambda: (steps.append(engine.active), step())
    start = threading.Barrier(len(jobs))

    def submit(i: int) -> None:  # a quarter at once, each other quarter 5 steps later: they join at four steps
        start.wait(5)
        deadline = time.monotonic() + 10
        while len(steps) < 5 * (i % 4):
            assert time.monotonic() < deadline, "the engine did not step"
            time.sleep(0.0002)
        engine.submit(jobs[i])

    engine.start()
    try:
        if at_once:
            with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
                list(pool.map(submit, range(len(jobs))))
            for _ in range(sum(len(job.seeds) for job in jobs)):
                assert finished.acquire(timeout=30), "a row never finished"
        else:
            for job in jobs:
                engine.submit(job)
                for _ in job.seeds:
                    assert finished.acquire(timeout=30), "a row never finished"
    finally:
        engine.close()
    return [[made[id(job), index] for index in range(len(job.seeds))] for job in jobs]


def test_rows_with_temperature_schedules_and_logprobs_joining_and_leaving_get_what_they_get_alone(tiny_model):
    """Each row's temperature schedule is on the device, read there at the row's own step
    (`RowSampler.scheduled`), and moves with the row when another leaves; the logprobs rows are picked
    by an index made per set of rows (`Engine.rows_at`). Jobs submitted from 8 threads at once, with
    schedules of different lengths (temperatures float32 holds as 0, and huge ones) or one temperature,
    logprobs or none, 1 to 3 samples of lengths that end at different steps: every sample's text and
    logprobs are what it gets alone."""
    import charlm.serve.engine as serve_engine

    schedules = [(0.5, 1.5), (1.0,), (0.2, 1e-46, 3.0), 0.8, (2.0, 0.7, 0.9, 1.1), 1.0, (1e-30, 1.2), (0.9, 0.4, 1e30)]

    def jobs() -> list:
        made = []
        with torch.inference_mode():
            for i, temperature in enumerate(schedules):
                ids = tiny_model.vocab.encode("the quick"[: 1 + i])
                logits, state = Batch(tiny_model, 1).prime(ids)
                seeds = [10 * i + s for s in range(1 + i % 3)]
                job = serve_engine.Job(ids, logits, state, SampleConfig(temperature=temperature), seeds, 20 + 17 * i)
                job.logprobs = (None, 0, 3)[i % 3]
                made.append(job)
        return made

    alone, rows = engine_outputs(tiny_model, jobs(), at_once=False), []
    assert engine_outputs(tiny_model, jobs(), at_once=True, rows=rows) == alone
    assert max(rows) >= 10 and len(set(rows)) >= 5, rows  # side by side, leaving one by one
    assert [all(tokens for _, tokens in samples) for samples in alone] == [i % 3 > 0 for i in range(8)]


def test_a_lone_streams_step_in_the_engine_makes_few_torch_calls(tiny_model):
    """A lone stream's step is small tensors and Python around them, so its torch calls are its cost. The
    engine's loop (`Engine.run`, driven here in this thread, where the counting mode holds) made 40 a
    sampled character, 29 greedy: it sliced the step's logits for log-probabilities no row asked for, and
    the stepper sliced its padded ids and its logits anew every step; 36 and 25 now. The 4 padded rows
    stay: unpadded, a lone row's logits differ in their last bits from a padded one's (`padded_rows`).
    Nor does a step take the engine's lock while nothing waits to join (it did, every step)."""
    from torch.overrides import TorchFunctionMode

    from charlm.serve.engine import Engine, Job

    class Counted(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Counted.calls += 1
            return func(*args, **(kwargs or {}))

    class CountedLock(threading.Condition):
        taken = 0

        def __enter__(self):
            CountedLock.taken += 1
            return super().__enter__()

    def served(length: int, **options) -> str:
        """A lone stream of `length` characters through the engine's own loop, which stops once it is done."""
        texts = []

        def publish(updates: list) -> None:
            texts.extend(u.text for u in updates)
            engine.stopping = engine.stopping or any(u.finish_reason for u in updates)

        engine = Engine(tiny_model, 8, publish)
        engine.wakeup = CountedLock()
        ids = tiny_model.vocab.encode("ab")
        with torch.inference_mode():
            logits, state = engine.batch.prime(ids)
        engine.submit(Job(ids, logits, state, SampleConfig(**options), [0], length))
        engine.run()
        return "".join(texts)

    def per_character(**options) -> tuple[float, float]:
        """Torch calls and takings of the engine's lock per character."""
        counts = []
        for length in (1, 101):  # the difference is the steps'
            Counted.calls = CountedLock.taken = 0
            with Counted():
                assert len(served(length, **options)) == length
            counts.append((Counted.calls, CountedLock.taken))
        return tuple((long - short) / 100 for short, long in zip(*counts))

    calls, locks = per_character()
    assert calls <= 36.5 and locks == 0
    calls, locks = per_character(greedy=True)
    assert calls <= 25.5 and locks == 0


def test_health_is_503_while_the_model_loads(tiny_model):
    loaded = threading.Event()

    def slow_loader():
        loaded.wait(10)
        return tiny_model

    app = create_app({"slow": slow_loader}, ServeConfig())
    with running(app) as url:
        assert httpx.get(f"{url}/health").status_code == 503
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            client.completions.create(model="slow", prompt="a")
        assert caught.value.status_code == 503
        loaded.set()
        wait_healthy(url)
        assert len(client.completions.create(model="slow", prompt="a", max_tokens=3).choices[0].text) == 3


def test_metrics_count_requests_streams_and_characters(server, client):
    url, _ = server
    before = metrics(url)
    complete(client, max_tokens=25)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nonesuch", prompt="a")
    after = metrics(url)
    made = 'charlm_generated_characters_total{model="tiny"}'
    assert after[made] - before[made] == 25
    ok = 'charlm_requests_total{endpoint="/v1/completions",status="200"}'
    assert after[ok] - before.get(ok, 0) == 1
    assert after['charlm_requests_total{endpoint="/v1/completions",status="404"}'] >= 1
    assert after["charlm_characters_per_second"] > 0 and after["charlm_process_resident_memory_bytes"] > 1e6


def metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if not line.startswith("#")
    }


# --- the command -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fox_run(tmp_path_factory):
    """A tiny trained run folder, `fox`."""
    import charlm

    folder = tmp_path_factory.mktemp("runs")
    text = folder / "fox.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    charlm.train(text, out=folder / "fox", **TINY)
    return folder / "fox"


def test_cli_serves_a_run_under_its_name(fox_run):
    process = start_charlm("serve", str(fox_run), "--port", "0")  # a process of its own, torch imported
    try:
        url = served_url(process.stdout.readline())  # the port it bound: no race for a free one
        assert re.fullmatch(r"http://127\.0\.0\.1:[1-9]\d*", url), url
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["fox"]
        text = client.completions.create(model="fox", prompt="the ", max_tokens=30, seed=1).choices[0].text
        assert len(text) == 30 and set(text) <= set("the quick brown fox jumps over the lazy dog\n")
    finally:
        process.terminate()  # uvicorn stops, then raises the signal again: charlm's exit for it is 143
        assert process.wait(timeout=15) in (0, -15, 143)


# `charlm serve RUN` started as the tests start it (start_charlm: forked by tests/forkserver.py's server),
# serving, then killed with its process
STARTS_A_SERVER = """
import os, sys, time
from tests import forkserver
env = dict(os.environ)
process = forkserver.server(env).start(forkserver.CHARLM, ["-m", "serve", sys.argv[1], "--port", "0"], env)
assert process.stdout.readline().startswith(b"charlm serve: http://")
print("serving", flush=True)
time.sleep(600)
"""


# bench.serve_load's server started, then the bench killed with it serving
LOAD_BENCH_SERVES = """
import sys, time
from pathlib import Path
from bench import serve_load
from bench.lifeline import Lifeline
process, url = serve_load.start_server(Path(sys.argv[1]), 4, [], Lifeline())
print("serving", flush=True)
time.sleep(600)
"""


def test_the_load_benchs_server_ends_with_a_killed_bench(fox_run):
    """bench.serve_load killed hard (SIGKILL, `kill -9`) left the `charlm serve` it measures serving on,
    with parent pid 1, for ever."""
    assert left_running_after_a_kill(LOAD_BENCH_SERVES, str(fox_run)) == []


def test_a_server_a_killed_test_run_started_ends_with_it(fox_run):
    """A test run killed hard (SIGKILL: a CI timeout, the OOM killer, `kill -9`) cleans up nothing: the
    `charlm serve` it had started served on with parent pid 1, for ever."""
    assert left_running_after_a_kill(STARTS_A_SERVER, str(fox_run)) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_stream_ends_the_stream_and_the_server_without_a_traceback(fox_run, signum):
    """Ctrl-C or SIGTERM with a long stream in flight: uvicorn waited its 3 s for the stream, which went on
    generating, then cancelled it and printed CancelledError's traceback; the client saw the connection drop."""
    process = start_charlm("serve", str(fox_run), "--port", "0", "--max-tokens", "100000")
    try:
        url = served_url(process.stdout.readline())
        wait_healthy(url)
        body = {"model": "fox", "prompt": "the ", "max_tokens": 100000, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            process.send_signal(signum)
            last = [line for line in lines if line.startswith("data:")][-1]  # the body ends: no connection dropped
        _, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert "the server is shutting down" in last
    assert process.returncode == 128 + signum and "Traceback" not in err and err == "", err


def test_cli_errors_are_one_line(fox_run):
    threads = torch.get_num_threads()
    assert_one_line_error(cli("serve", "no-such-run", "--port", "0"), "no-such-run")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = cli("serve", str(fox_run), "--port", str(taken.getsockname()[1]))
    assert_one_line_error(result, "--port", "pick another --port")
    with on_command_line(), pytest.raises(CharLMError, match=r"--host 192\.0\.2\.1 .*; give --host an address"):
        listening_socket("192.0.2.1", 0)  # TEST-NET-1: never an address of this machine
    assert_one_line_error(cli("serve", str(fox_run), "--max-streams", "0"), "--max-streams")
    assert_one_line_error(cli("serve", str(fox_run), "--port", "70000"), "--port must be at most 65535, not 70000")
    assert torch.get_num_threads() == threads  # a command that never started leaves the process as it was


def test_a_damaged_checkpoint_is_a_one_line_error_before_any_address_is_printed(fox_run, tmp_path):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((fox_run / "best.pt").read_bytes()[:5000])
    result = cli("serve", str(damaged), "--port", "0")
    assert_one_line_error(result, "damaged.pt")
    assert "http://" not in result.output


def test_missing_serve_extra_is_a_one_line_error(monkeypatch):
    from click.testing import CliRunner

    from charlm.cli import main

    block_import(monkeypatch, "uvicorn")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1 and "pip install 'charlm[serve]'" in result.output


# --- the page in a real headless Chromium -------------------------------------------------------


# Seconds a page test waits for what the page will do: on a loaded machine the browser and the server
# take seconds over what a quiet one does in milliseconds (a wait of 5-15 s timed out once in a suite
# run). A condition met returns at once: a longer wait costs nothing where the page works.
PAGE_WAIT = 60
# Seconds between a wait's looks at the page: selenium's default, 0.5 s, kept a page test waiting up to
# half a second past each condition met (dozens a test)
PAGE_POLL = 0.02


def page_ready(driver, url: str):
    """`url` loaded in `driver`, its script run; returns selenium's WebDriverWait, polling every PAGE_POLL."""
    from selenium.webdriver.support.ui import WebDriverWait

    wait = functools.partial(WebDriverWait, poll_frequency=PAGE_POLL)
    driver.get(url)
    wait(driver, PAGE_WAIT).until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    return wait


def set_field(driver, element_id: str, value: str) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(value)


def write(driver, wait, seed: str, length: int) -> None:
    """Generates `length` characters after `seed` and waits for the text to end."""
    set_field(driver, "seed", seed)
    set_field(driver, "length", str(length))
    driver.find_element("id", "generate").click()
    wait(driver, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)


def made_text(driver) -> str:
    return driver.execute_script(
        "return [...document.querySelectorAll('#text .made')].map(s => s.textContent).join('')"
    )


CALLER = """<!doctype html><title>caller</title><script>
async function call(url, key) {
  try {
    const answer = await fetch(url + "/v1/completions", {method: "POST", headers: {
      "Authorization": "Bearer " + key, "Content-Type": "application/json"},
      body: JSON.stringify({model: "tiny", prompt: "the ", max_tokens: 5, seed: 1})});
    return (await answer.json()).choices[0].text;
  } catch (error) { return "failed: " + error.name; }
}
</script>"""


@contextlib.contextmanager
def page_origin(html: str):
    """A second web server, on another port of 127.0.0.1 (so another origin), serving one page."""
    import http.server

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_a_page_of_an_allowed_origin_calls_the_api_in_a_real_browser(tiny_model, server, browser):
    """What --allow-origin is for: a web app served elsewhere calls the API from the browser; without
    it the browser blocks the answer (CORS)."""
    with page_origin(CALLER) as origin:
        config = ServeConfig(api_key=KEY, allow_origin=origin)
        with running(create_app({"tiny": lambda: tiny_model}, config)) as url:
            wait_healthy(url)
            browser.get(origin)
            allowed = browser.execute_async_script("call(arguments[0], arguments[1]).then(arguments[2])", url, KEY)
            blocked = browser.execute_async_script(
                "call(arguments[0], arguments[1]).then(arguments[2])", server[0], KEY
            )
    expected = complete(OpenAI(base_url=f"{server[0]}/v1", api_key=KEY), max_tokens=5, seed=1)[0]
    assert allowed == expected and blocked == "failed: TypeError"


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_page_shows_alternatives_for_a_line_break(tiny_model, browser):
    """A span holding only a line break has no width of its own: without its mark, most could not be hovered.
    The text is streamed as written (STREAM): a tiny model's own, drawn at random from a run trained for a
    time (so less under load), held one line break in 300 characters in a CI run, where this test needs several."""
    from selenium.webdriver.common.action_chains import ActionChains

    text = "the quick\nbrown fox\n\njumps over\nthe lazy dog\n"
    with page_of_a_stream(tiny_model, browser, text, per_frame=5) as wait:
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
        spans = browser.find_elements("css selector", "#text .made")
        breaks = [span for span in spans if span.get_attribute("textContent") == "\n"]
        assert made_text(browser) == text and len(breaks) == text.count("\n")
        tip = browser.find_element("id", "tip")
        for line_break, letter in zip(breaks, spans):
            ActionChains(browser).move_to_element(letter).perform()  # off the break, so hovering it is a new hover
            ActionChains(browser).move_to_element(line_break).perform()
            wait(browser, PAGE_WAIT).until(lambda d: tip.is_displayed() and "\u21b5" in tip.text)
        assert "\u21b5" not in made_text(browser) and "\u21b5" not in browser.execute_script("return fullText(state)")
    # Nothing on the way failed in the browser: no script error, no request answered 404 (a favicon was)
    assert [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_page_writes_streams_stops_continues_and_shows_alternatives(fox_run, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    model = checkpoint.load(fox_run)
    # Continue sends the whole text as the prompt, and how much streams in before Stop is a matter of
    # speed (15,000 characters in 15 s here under load; a quick machine writes faster): any text this
    # test can stop is taken, so that Continue is never refused for --max-prompt (16,384 characters).
    config = ServeConfig(max_tokens=200_000, max_prompt=len("the quick ") + 200_000)
    app = create_app({"fox": lambda: model, "other": lambda: model}, config)
    with running(app) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        Select(browser.find_element("id", "model")).select_by_value("fox")
        set_field(browser, "seed", "the quick ")
        set_field(browser, "length", "200000")
        set_field(browser, "temperature", "1.5")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) > 0)
        first = len(made_text(browser))
        wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) > first + 20)  # text keeps streaming in
        assert (
            browser.find_element("id", "stop").is_enabled() and not browser.find_element("id", "generate").is_enabled()
        )
        browser.save_screenshot(str(tmp_path / "page-streaming.png"))
        assert app.state.server.models["fox"].engine.active == 1

        browser.find_element("id", "stop").click()
        wait(browser, PAGE_WAIT).until(lambda d: "stopped" in d.find_element("id", "status").text)
        stopped = made_text(browser)
        wait_until(lambda: app.state.server.models["fox"].engine.active == 0, timeout=PAGE_WAIT)  # the row is freed
        time.sleep(0.3)
        assert made_text(browser) == stopped and 0 < len(stopped) < 200_000
        assert "the quick " + stopped == browser.execute_script("return fullText(state)")

        set_field(browser, "length", "120")
        browser.find_element("id", "continue").click()
        # done, or refused (the status an error): a refusal fails here at once, saying why, not after PAGE_WAIT
        wait(browser, PAGE_WAIT).until(
            lambda d: "done" in status_of(d) or "error" in d.find_element("id", "status").get_attribute("class")
        )
        assert "done" in status_of(browser), status_of(browser)
        assert browser.find_element("id", "seed").get_attribute("value") == "the quick " + stopped
        continued = made_text(browser)
        assert len(continued) == 120 and set(continued) <= set(model.vocab.chars)

        spans = browser.find_elements("css selector", "#text .made")
        ActionChains(browser).move_to_element(spans[40]).perform()
        tip = browser.find_element("id", "tip")
        wait(browser, PAGE_WAIT).until(lambda d: tip.is_displayed())
        rows = tip.find_elements("css selector", "tr")
        assert len(rows) >= 2 and all("%" in row.text for row in rows)
        assert "bits of surprise" in tip.text and tip.find_elements("css selector", "tr.chosen")

        browser.find_element("id", "surprise").click()
        coloured = browser.execute_script(
            "return [...document.querySelectorAll('#text .made')].filter(s => s.style.backgroundColor).length"
        )
        assert coloured == len(spans)
        ActionChains(browser).move_to_element(spans[60]).perform()
        wait(browser, PAGE_WAIT).until(lambda d: tip.is_displayed())
        browser.save_screenshot(str(tmp_path / "page-hover-surprise.png"))

        browser.find_element("id", "copy").click()
        wait(browser, PAGE_WAIT).until(lambda d: "copied" in d.find_element("id", "status").text)
        browser.refresh()  # the history survives a reload, and restores a text
        page_ready(browser, url)
        items = browser.find_elements("css selector", "#history li")
        assert len(items) == 2
        items[0].click()
        assert made_text(browser) == continued
        print(f"screenshots: {tmp_path}")


@pytest.fixture(scope="module")
def chinese_run(tmp_path_factory):
    """A tiny model trained for a few hundred steps on a slice of 红楼梦 read from the shared corpora."""
    import charlm

    text = shared_corpus("hongloumeng.txt").read_text(encoding="utf-8")[:20_000]
    folder = tmp_path_factory.mktemp("zh")
    (folder / "hlm.txt").write_text(text, encoding="utf-8")
    options = {**TINY, "hidden": 48, "seq_len": 32, "batch_size": 8, "max_steps": 200, "eval_every": 100}
    charlm.train(folder / "hlm.txt", out=folder / "hlm", **options)
    return folder / "hlm", text


@pytest.mark.slow
def test_page_writes_chinese(chinese_run, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    run, text = chinese_run
    model = checkpoint.load(run)
    seed = next(line.strip()[:4] for line in text.splitlines()[5:] if len(line.strip()) > 10)
    app = create_app({"hongloumeng": lambda: model}, ServeConfig())
    with running(app) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        set_field(browser, "seed", seed)
        set_field(browser, "length", "150")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
        made = made_text(browser)
        # What the page shows must be the model's own characters, not escapes or mojibake; how much of
        # it is Chinese depends on the draw (a tiny model also writes the novel's indenting spaces and
        # punctuation: 70 of 150 in one draw), so the bound is far below any draw and far above zero.
        assert len(made) == 150 and set(made) <= set(text) and "\ufffd" not in made
        assert sum("\u4e00" <= c <= "\u9fff" for c in made) > 30
        assert browser.execute_script("return fullText(state)") == seed + made
        spans = browser.find_elements("css selector", "#text .made")
        target = next(s for s in spans if "\u4e00" <= s.text <= "\u9fff")
        ActionChains(browser).move_to_element(target).perform()
        tip = browser.find_element("id", "tip")
        wait(browser, PAGE_WAIT).until(lambda d: tip.is_displayed())
        alternatives = [row.find_element("tag name", "td").text for row in tip.find_elements("css selector", "tr")]
        assert len(alternatives) >= 5 and any("\u4e00" <= a <= "\u9fff" for a in alternatives)
        browser.find_element("id", "surprise").click()
        ActionChains(browser).move_to_element(target).perform()
        browser.save_screenshot(str(tmp_path / "page-chinese.png"))
        print(f"screenshots: {tmp_path}")


# Either page's layouts of its text, counted: counts.reads, the reads of the text's scrollHeight (each a
# layout of the whole text after a change); counts.frames, the animation frames while the page writes
# (not while a stream is held). gap(): the text's distance from its end, not counted.
COUNT_LAYOUTS = """
const box = document.getElementById("text"), counts = window.counts = { reads: 0, frames: 0, paused: false };
const height = Object.getOwnPropertyDescriptor(Element.prototype, "scrollHeight").get;
Object.defineProperty(box, "scrollHeight", { get() { counts.reads++; return height.call(this); } });
window.gap = () => height.call(box) - box.scrollTop - box.clientHeight;
const tick = () => { if (state.running && !counts.paused) counts.frames++; requestAnimationFrame(tick); };
requestAnimationFrame(tick);
"""
# A stream of `text`, one character a token (with its alternatives, as the server sends them), in place of
# the server's: `per_frame` tokens an animation frame, held at token `pause_at` until resumeStream().
STREAM = (
    COUNT_LAYOUTS
    + """
const [text, pauseAt, perFrame] = arguments;
const chars = [...text], last = chars.length - 1, encoder = new TextEncoder();
const event = (t, i) => "data: " + JSON.stringify({ choices: [{ index: 0, text: t, finish_reason: i === last ? "length" : null,
  logprobs: { tokens: [t], token_logprobs: [-1], top_logprobs: [{ [t]: -1, [t === "x" ? "y" : "x"]: -2 }] } }] }) + "\\n\\n";
const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
let resume;
window.resumeStream = () => { counts.paused = false; resume(); };
const serversFetch = window.fetch;
window.fetch = (url, options) => {
  if (!String(url).endsWith("/v1/completions")) return serversFetch(url, options);
  const body = new ReadableStream({ async start(controller) {
    for (let i = 0; i <= last; i += perFrame) {
      if (i === pauseAt) { counts.paused = true; await new Promise((resolve) => { resume = resolve; }); }
      await frame();
      controller.enqueue(encoder.encode(chars.slice(i, i + perFrame).map((t, j) => event(t, i + j)).join("")));
    }
    controller.enqueue(encoder.encode("data: [DONE]\\n\\n"));
    controller.close();
  } });
  return Promise.resolve(new Response(body, { headers: { "Content-Type": "text/event-stream" } }));
};
"""
)


@contextlib.contextmanager
def page_of_a_stream(tiny_model, browser, text: str, pause_at: int = -1, per_frame: int = 50):
    """The serve page, ready, whose next text streams `text` (STREAM); yields the WebDriverWait."""
    with running(create_app({"tiny": lambda: tiny_model}, ServeConfig())) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        browser.execute_script(STREAM, text, pause_at, per_frame)
        yield wait


@pytest.mark.slow
def test_page_points_at_the_box_an_error_in_the_stream_names(tiny_model, browser):
    """An error the server sends in the stream (an event, after its 200) lost its param: the page said "not
    written: see the seed" of a refused ban, and in the API's name for it (logit_bias), where the same error
    as a response points at the ban box, in the box's name."""
    error = {"message": "logit_bias bans every token", "type": "invalid_request_error", "param": "logit_bias"}
    with running(create_app({"tiny": lambda: tiny_model}, ServeConfig())) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        browser.execute_script(
            """const body = "data: " + JSON.stringify({ error: arguments[0] }) + "\\n\\n";
            window.fetch = () => Promise.resolve(new Response(body, { headers: { "Content-Type": "text/event-stream" } }));""",
            error,
        )
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "not written" in status_of(d))
        assert status_of(browser) == "not written: see the ban"
        assert browser.find_element("id", "seed-error").text == "ban bans every token"


LONG_TEXTS = {
    "latin": "the fifth flag of the office, fluffy and fine.\n" * 80,
    "chinese": "满纸荒唐言，一把辛酸泪。都云作者痴，谁解其中味？\n" * 160,
}


@pytest.mark.slow
@pytest.mark.parametrize("script", LONG_TEXTS)
def test_page_shows_a_long_stream_a_frame_at_a_time_at_its_end_unless_scrolled_up(tiny_model, browser, script):
    """A long stream stopped the page answering (chromedriver's find-element waited 120 s, with 30,000
    characters streamed under load): each event read the text's height, a layout of the whole text. The
    page reads it at most twice an animation frame, and the text keeps to its end as it streams, unless
    the reader scrolls up from it."""
    from selenium.webdriver.common.action_chains import ActionChains

    text = LONG_TEXTS[script]
    half = len(text) // 2 // 50 * 50
    with page_of_a_stream(tiny_model, browser, text, pause_at=half) as wait:
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(
            lambda d: (
                d.execute_script("return counts.paused && document.querySelectorAll('#text .made').length") == half
            )
        )
        assert browser.execute_script("return gap()") <= 1  # it kept to the end
        browser.execute_script("document.getElementById('text').scrollTop = 0; resumeStream()")  # scrolled up
        wait(browser, PAGE_WAIT).until(lambda d: "done" in status_of(d))
        counts = browser.execute_script("return counts")
        assert browser.execute_script("return document.getElementById('text').scrollTop") == 0
        assert made_text(browser) == text and status_of(browser).startswith("done (length)")
        assert counts["reads"] <= 2 * (counts["frames"] + 1), counts
        span = browser.find_elements("css selector", "#text .made")[-3]  # what the model thought of a token
        browser.execute_script("arguments[0].scrollIntoView()", span)
        ActionChains(browser).move_to_element(span).perform()
        tip = browser.find_element("id", "tip")
        wait(browser, PAGE_WAIT).until(lambda d: tip.is_displayed())
        assert tip.find_element("css selector", "tr.chosen").text.startswith(span.text)


# A text of lines short and long (one longer than a block, none between), blank lines, a mark after a line
# break, Chinese, Arabic and Hebrew (right to left): the serve page's blocks must not show it otherwise.
BLOCKS_TEXT = (
    "the fifth flag of the office, fluffy and fine.\n" * 30
    + "\n\u0301 a line of no break " * 60
    + "\n\n满纸荒唐言，一把辛酸泪。\n"
    + "مرحبا بالعالم، שלום עולם\n" * 20
    + "the end"
)


@pytest.mark.slow
def test_page_lays_a_long_text_out_in_contained_blocks_that_show_and_copy_as_one_text(tiny_model, browser):
    """Each animation frame laid out the whole text anew (441 ms per 1,000 characters of a 100,000-character
    stream: bench/page_stream.py): the text is in blocks now, each finished one contained, so a frame lays
    out the last. A block ends at a line break only: one ending mid-line moved the next onto a line of its
    own, and copying the text gave a line break there."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    seed = "a seed of lines\n" * 40 + "and its last "
    with page_of_a_stream(tiny_model, browser, BLOCKS_TEXT, per_frame=97) as wait:
        set_field(browser, "seed", seed)
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "done" in status_of(d))
        assert browser.execute_script("return fullText(state)") == seed + BLOCKS_TEXT
        blocks = browser.execute_async_script(  # three frames on: the finished blocks are contained by then
            """const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
            frame().then(frame).then(frame).then(() => arguments[0]([...document.getElementById("text").children]
              .map((b) => [b.tagName, b.textContent, getComputedStyle(b).display, getComputedStyle(b).contentVisibility])));"""
        )
        assert len(blocks) >= 5 and "".join(text for _, text, _, _ in blocks) == seed + BLOCKS_TEXT
        assert all(tag == "DIV" and display == "block" for tag, _, display, _ in blocks), blocks
        assert all(text.endswith("\n") and seen == "auto" for _, text, _, seen in blocks[:-1]), blocks
        # Laid out as one text, streamed or shown at once (from the history): the height of its spans out of
        # their blocks (as the page had them), off-screen blocks skipped at the height they were laid out at
        heights = browser.execute_async_script(
            """const done = arguments[0], text = document.getElementById("text"), streamed = text.scrollHeight;
            const skipped = [...text.children].filter((b) => !b.firstChild.checkVisibility({ contentVisibilityAuto: true }));
            render();
            requestAnimationFrame(() => requestAnimationFrame(() => {
              const shown = text.scrollHeight, spans = document.createElement("div");  // spans out of their blocks
              for (const block of text.children) spans.append(...[...block.childNodes].map((n) => n.cloneNode(true)));
              spans.id = "text";
              text.id = "";
              text.after(spans);
              done([streamed, shown, spans.scrollHeight, skipped.length]);
              spans.remove();
              text.id = "text";
            }));"""
        )
        assert heights[0] == heights[1] == heights[2] and heights[3] > 0, heights
        # Copied (the whole text selected, Ctrl+C): the text, not a line break more
        browser.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"permissions": ["clipboardReadWrite"], "origin": browser.execute_script("return location.origin")},
        )
        browser.execute_script(
            """const range = document.createRange(), selection = getSelection();
            range.selectNodeContents(document.getElementById("text"));
            selection.removeAllRanges();
            selection.addRange(range);"""
        )
        ActionChains(browser).key_down(Keys.CONTROL).send_keys("c").key_up(Keys.CONTROL).perform()
        copied = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0])")
        assert copied == seed + BLOCKS_TEXT


@pytest.mark.slow
def test_page_says_the_browser_refused_a_copy_when_both_ways_to_copy_fail(tiny_model, browser):
    """Without the clipboard API (an insecure origin) the page copies the old way, execCommand("copy"),
    and said "copied N characters" whether that copied anything or not: a refusal is said, as the
    exported page says it."""
    with page_of_a_stream(tiny_model, browser, "the text") as wait:
        set_field(browser, "seed", "seed ")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "done" in status_of(d))
        browser.execute_script(
            "navigator.clipboard.writeText = () => Promise.reject(new Error('no clipboard here'));"
            "document.execCommand = () => false;"
        )
        browser.find_element("id", "copy").click()
        wait(browser, PAGE_WAIT).until(lambda d: "clipboard" in status_of(d) or "copied" in status_of(d))
        assert status_of(browser) == "the browser refused the clipboard"


@pytest.mark.slow
def test_page_says_how_many_characters_it_copied_as_it_counts_a_text(tiny_model, browser):
    """Copy said "copied 1234 characters" where the status line before it said "1,234 characters", and
    counted a character outside the BMP (a Tang poem's 𡒄) as two: the count is grouped, in code points."""
    text = "𡒄 and more of the text\n" * 60
    with page_of_a_stream(tiny_model, browser, text) as wait:
        set_field(browser, "seed", "seed ")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "done" in status_of(d))
        browser.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"permissions": ["clipboardReadWrite"], "origin": browser.execute_script("return location.origin")},
        )
        browser.find_element("id", "copy").click()
        wait(browser, PAGE_WAIT).until(lambda d: "copied" in status_of(d))
        assert status_of(browser) == f"copied {len('seed ' + text):,} characters"
        assert browser.execute_async_script("navigator.clipboard.readText().then(arguments[0])") == "seed " + text


@pytest.mark.slow
def test_page_gives_each_letter_of_a_ligature_a_width_to_hover(tiny_model, browser):
    """Chromium joined "fi", "fl" and "ff" into one glyph across two tokens' spans: the second's span had
    no width, and hovering it showed the first's alternatives (14 of 4,800 spans)."""
    from selenium.webdriver.common.action_chains import ActionChains

    text = "fifl ff office fjord affluent\n"
    with page_of_a_stream(tiny_model, browser, text) as wait:
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "done" in status_of(d))
        widths = browser.execute_script(
            "return [...document.querySelectorAll('#text .made:not(.break)')].map(s => s.getBoundingClientRect().width)"
        )
        assert len(widths) == len(text) - 1 and min(widths) > 0, widths
        i = browser.find_elements("css selector", "#text .made")[1]
        ActionChains(browser).move_to_element(i).perform()
        tip = browser.find_element("id", "tip")
        wait(browser, PAGE_WAIT).until(lambda d: tip.is_displayed())
        assert tip.find_element("css selector", "tr.chosen").text.startswith("i")


@pytest.mark.slow
def test_page_hovers_a_combining_mark_with_the_letter_it_joins(tiny_model, browser):
    """A token of a combining mark alone (U+0301 after "e", Devanagari "ि" after "क") drew over the letter
    before it with no width of its own: its alternatives could not be seen. The mark's span and its letter's
    are one hover target now, whose tip lists both tokens; a mark after the seed joins the seed's last letter."""
    from selenium.webdriver.common.action_chains import ActionChains

    text = "\u0301 cafe\u0301 नमस्ते किताब\n"  # one token a code point: the first mark follows the seed's "e"
    with page_of_a_stream(tiny_model, browser, text) as wait:
        set_field(browser, "seed", "Rene")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "done" in status_of(d))
        assert made_text(browser) == text and browser.execute_script("return fullText(state)") == "Rene" + text
        targets_script = (
            "return [...document.querySelectorAll('#text > .block > .made:not(.break), #text > .block > .cluster')]"
            ".map(s => [s.textContent, s.getBoundingClientRect().width])"
        )
        targets = browser.execute_script(targets_script)
        assert min(width for _, width in targets) > 0, targets  # a mark's span alone drew with no width
        assert [t for t, _ in targets if "\u0301" in t or "\u093f" in t] == ["e\u0301", "e\u0301", "कि"], targets
        browser.execute_script("render()")  # as a text from the history is shown again: the same targets
        assert browser.execute_script(targets_script) == targets
        tip = browser.find_element("id", "tip")
        for base, mark in [("e", "\u0301"), ("क", "\u093f")]:
            letter = browser.find_elements("xpath", f"//*[@id='text']//span[text()='{base}']")[-1]
            ActionChains(browser).move_to_element(browser.find_element("id", "seed")).perform()
            ActionChains(browser).move_to_element(letter).perform()
            wait(browser, PAGE_WAIT).until(lambda d: tip.is_displayed())
            chosen = [row.text for row in tip.find_elements("css selector", "tr.chosen")]
            assert [row.split()[0] for row in chosen] == [base, "\u25cc" + mark], tip.text
        seed_letter = browser.find_element("css selector", "#text .cluster .seed")
        ActionChains(browser).move_to_element(browser.find_element("id", "seed")).perform()
        ActionChains(browser).move_to_element(seed_letter).perform()
        wait(browser, PAGE_WAIT).until(lambda d: tip.is_displayed())
        assert seed_letter.text == "e" and tip.find_element("css selector", "tr.chosen").text.startswith("\u25cc\u0301")


def test_chinese_text_goes_through_the_api_unescaped(client, server):
    text = shared_corpus("hongloumeng.txt").read_text(encoding="utf-8")[:5_000]
    torch.manual_seed(1)
    model = make_model("".join(sorted(set(text))), layers=1, hidden=32).eval()
    app = create_app({"zh": lambda: model}, ServeConfig())
    with running(app) as url:
        wait_healthy(url)
        zh = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        seed = text[100:104]
        plain = zh.completions.create(model="zh", prompt=seed, max_tokens=30, seed=2, logprobs=3)
        assert len(plain.choices[0].text) == 30 and "".join(plain.choices[0].logprobs.tokens) == plain.choices[0].text
        chunks = list(zh.completions.create(model="zh", prompt=seed, max_tokens=30, seed=2, stream=True))
        assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text
        body = {"model": "zh", "prompt": seed, "max_tokens": 5, "stream": True}
        raw = httpx.post(f"{url}/v1/completions", json=body).text
        assert seed not in raw and any("\u4e00" <= c <= "\u9fff" for c in raw)  # UTF-8, not \\u escapes


@pytest.mark.parametrize("line_end", ["\u2028", "\u2029", "\x85"])
def test_a_stream_holding_a_unicode_line_end_is_one_line_per_event_for_httpx(server, line_end):
    """U+2028, U+2029 and U+0085, which JSON leaves unescaped, end a line for a reader that splits as
    str.splitlines (httpx's iter_lines): an echoed prompt holding one split its event in two, and
    json.loads of either half failed."""
    prompt = f"the{line_end}cat"
    body = {"prompt": prompt, "echo": True, "max_tokens": 3, "stream": True, "logprobs": 1}
    with httpx.stream(
        "POST", f"{server[0]}/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines), lines
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks).startswith(prompt)


def test_a_sentencepiece_model_counts_characters_not_pieces():
    from charlm.pieces import PieceVocab, train_model

    text = "the quick brown fox jumps over the lazy dog, again and again.\n" * 40
    torch.manual_seed(0)
    model = make_model(PieceVocab(train_model([text], "bpe", 320), normalize="none"), layers=1, hidden=32).eval()
    app = create_app({"pieces": lambda: model}, ServeConfig())
    with running(app) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        response = client.completions.create(model="pieces", prompt="the ", max_tokens=40, seed=3, logprobs=2)
        choice = response.choices[0]
        assert len(choice.text) == 40 and response.usage.completion_tokens == 40 and choice.finish_reason == "length"
        assert "".join(choice.logprobs.tokens) == choice.text  # a token is a piece: a character, several, or none yet
        chunks = client.completions.create(model="pieces", prompt="the ", max_tokens=40, seed=3, stream=True)
        assert "".join(c.choices[0].text for c in chunks) == choice.text


def test_a_sentencepiece_models_logit_bias_takes_its_piece_ids():
    """The same ids as the model's vocabulary: piece ids, here every piece (bytes included) that spells an o."""
    from charlm.pieces import PieceVocab, train_model

    text = "the quick brown fox jumps over the lazy dog, again and again.\n" * 40
    torch.manual_seed(0)
    model = make_model(PieceVocab(train_model([text], "bpe", 320), normalize="none"), layers=1, hidden=32).eval()
    banned = [i for i, piece in enumerate(model.vocab.pieces) if b"o" in piece]
    made = generate(model, "the ", length=80, temperature=1.0, random_seed=3, logit_bias=dict.fromkeys(banned, -100))
    app = create_app({"pieces": lambda: model}, ServeConfig())
    with running(app) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        bias = {str(i): -100 for i in banned}
        served = client.completions.create(model="pieces", prompt="the ", max_tokens=80, seed=3, logit_bias=bias)
        assert served.choices[0].text == made[0][len("the ") :] and "o" not in served.choices[0].text
        with pytest.raises(openai.BadRequestError, match="token id 320 is not one of the model's"):
            client.completions.create(model="pieces", prompt="the ", logit_bias={"320": 1})


def test_tokenize_says_the_token_ids_logit_bias_takes(client, server):
    """An OpenAI client had no way to learn a sentencepiece model's token ids, and a character model's
    only by reading meta.characters and normalizing as the model does: /tokenize (llama.cpp's) says them."""
    url, _ = server

    def tokenize(body: dict, key: str = KEY) -> httpx.Response:
        return httpx.post(f"{url}/tokenize", json=body, headers={"Authorization": f"Bearer {key}"})

    known = client.models.retrieve("tiny").model_extra["meta"]["characters"]
    assert tokenize({"content": "the Q"}).json() == {"tokens": [*(known.index(c) for c in "the "), None]}
    pieces = tokenize({"model": "tiny", "prompt": "a\n", "with_pieces": True}).json()["tokens"]  # vLLM's name
    assert pieces == [{"id": known.index("a"), "piece": "a"}, {"id": known.index("\n"), "piece": "\n"}]
    bias = {str(i): -100 for i in tokenize({"content": "eta"}).json()["tokens"]}
    assert not set(complete(client, max_tokens=200, seed=2, logit_bias=bias)[0]) & set("eta")
    for body, status, param, says in [
        ({"content": "a"}, 401, None, "API key"),
        ({}, 400, "content", "content is required"),
        ({"content": "a", "prompt": "b"}, 400, "content", "give content or prompt, not both"),
        ({"content": "a" * 1001}, 400, "content", "1,001 characters; this server takes at most 1,000"),
        ({"content": 1}, 400, "content", "content must be a string"),
        ({"content": "a", "with_pieces": 1}, 400, "with_pieces", "with_pieces must be true or false"),
        ({"content": "a", "model": "nonesuch"}, 404, "model", "does not exist"),
        ({"content": "a", "add_special": True}, 400, "add_special", "unrecognized"),
    ]:
        answer = tokenize(body, KEY if status != 401 else "wrong")
        error = answer.json()["error"]
        assert (answer.status_code, error["param"]) == (status, param) and says in error["message"], error


def test_tokenize_at_once_beside_streams_is_answered_off_the_event_loop(client, server, monkeypatch):
    """50 /tokenize requests at once beside streaming completions: each gets its ids, and each stream
    its whole seeded text, the one it makes alone. The texts are read in the thread that reads prompts:
    on the event loop that sends every stream's chunks, 50 of --max-prompt characters held them 1.4 s."""
    import charlm.serve.app

    url, _ = server
    threads = set()

    def recorded(*args):
        threads.add(threading.current_thread().name)
        return tokenized(*args)

    tokenized = charlm.serve.app.tokenized
    monkeypatch.setattr(charlm.serve.app, "tokenized", recorded)
    alone = [complete(client, max_tokens=300, seed=seed)[0] for seed in range(3)]
    text = "the quick brown fox " * 50
    ids = [VOCAB.index(c) for c in text]

    async def at_once() -> tuple[list, list]:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            body = {"model": "tiny", "prompt": "the ", "max_tokens": 300, "stream": True}

            async def stream(seed: int) -> str:
                async with http.stream("POST", "/v1/completions", json={**body, "seed": seed}) as answer:
                    chunks = [line[6:] async for line in answer.aiter_lines() if line.startswith("data: {")]
                return "".join(json.loads(chunk)["choices"][0]["text"] for chunk in chunks)

            async def tokenize(i: int) -> list:
                answer = await http.post("/tokenize", json={"content": text, "with_pieces": i % 2 == 1})
                return [t["id"] if isinstance(t, dict) else t for t in answer.json()["tokens"]]

            answers = await asyncio.gather(*(stream(seed) for seed in range(3)), *(tokenize(i) for i in range(50)))
            return answers[:3], answers[3:]

    streamed, tokens = asyncio.run(at_once())
    assert streamed == alone and tokens == [ids] * 50
    assert threads == {"charlm-prime_0"}


def test_a_stream_flows_while_another_requests_long_prompts_are_read():
    """A request's prompts were normalized and encoded on the event loop that sends every stream's
    chunks: 40 prompts of --max-prompt characters (a sentencepiece model's) held another stream's next
    one 220 ms. Told by the order of events, not by time: reading the long prompt waits until the
    other stream has had chunks since it began, which a reading on the event loop waits for in vain."""
    huge = "the quick brown fox " * 50
    reading, flowed, waited = threading.Event(), threading.Event(), []

    class Watched(Vocab):
        def normalized(self, text: str) -> str:
            if text == huge:
                reading.set()
                waited.append(flowed.wait(5))  # a bound for the failure only: passing, it is not waited out
            return super().normalized(text)

    torch.manual_seed(0)
    model = make_model(Watched(VOCAB), layers=1, hidden=8).eval()
    config = ServeConfig(chunk_ms=0, max_tokens=1_000_000, max_prompt=len(huge))
    with running(create_app({"watched": lambda: model}, config)) as url:
        wait_healthy(url)
        streaming = threading.Event()

        def stream() -> None:
            body = {"prompt": "the ", "max_tokens": 1_000_000, "stream": True}
            with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as answer:
                since = 0  # chunks since the reading began
                for line in answer.iter_lines():
                    streaming.set()
                    since += line.startswith("data: {") and reading.is_set()
                    if since == 3:
                        flowed.set()
                        return

        other = threading.Thread(target=stream, daemon=True)
        other.start()
        assert streaming.wait(10)
        answer = httpx.post(f"{url}/v1/completions", json={"prompt": [huge, "a"], "max_tokens": 1}, timeout=30)
        other.join(10)
    assert answer.status_code == 200 and waited == [True]


def test_health_answers_while_another_requests_huge_logit_bias_is_checked(monkeypatch):
    """A request's fields were checked on the event loop that answers every request and sends every
    stream's chunks: 8 requests of 65,536 logit_bias ids held a stream 0.3 s and /health 0.4 s. Told by
    the order of events, not by time: /health is asked while the huge logit_bias is being checked, which
    a check on the event loop never lets it answer. (A stream's chunks tell it less surely: those sent
    before the check began may still be read after.)"""
    from charlm.serve import protocol

    answered = []
    logit_bias_of = protocol.logit_bias_of

    def watched(body: dict) -> dict | None:
        if len(body.get("logit_bias") or {}) > 1000:
            try:  # the bound is for the failure only: passing, it is not waited out
                answered.append(httpx.get(f"{url}/health", timeout=5).json()["status"])
            except httpx.TimeoutException:
                answered.append("no answer while the logit_bias was checked")
        return logit_bias_of(body)

    monkeypatch.setattr(protocol, "logit_bias_of", watched)
    torch.manual_seed(0)
    model = make_model("\n" + "".join(chr(0x4E00 + i) for i in range(4_000)), layers=1, hidden=8).eval()
    with running(create_app({"wide": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        body = {"prompt": "\n", "max_tokens": 1, "logit_bias": {str(i): 1 for i in range(1, 4_000)}}  # 40 KB
        answer = httpx.post(f"{url}/v1/completions", json=body, timeout=30)
    assert answer.status_code == 200 and answered == ["ok"]


def test_a_body_of_more_json_values_than_any_request_holds_is_refused_unparsed(server):
    """json.loads holds the GIL, in whichever thread: 13.6 MB of `[],` (within the default body limit)
    held every stream and /health 1.6 s a request. More values than the largest request holds (a full
    logit_bias) are refused before parsing; commas and brackets inside strings are not values."""
    url, _ = server
    most = 65_536 + 16_384  # protocol.MAX_JSON_ITEMS
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for body in ("[" + "[]," * most + "[]]", '{"prompt": "a", "stop": [' + "[[[[0]]]]," * 20_000 + "0]}"):
        response = httpx.post(f"{url}/v1/completions", content=body, headers=headers)
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (413, "request_too_large"), response.text[:300]
        assert error["message"] == (
            f"the request body holds over {most:,} JSON values; the largest request "
            "(a logit_bias of 65,536 token ids) holds fewer"
        )
    text = '\\",[{' * most  # an escaped backslash, then an escaped quote: still in the string
    body = json.dumps({"prompt": "a", "max_tokens": 1, "user": text})
    read = httpx.post(f"{url}/v1/completions", content=body, headers=headers)  # parsed: a `user` too long
    assert (read.status_code, read.json()["error"]["param"]) == (400, "user")


@pytest.mark.parametrize(
    "logit_bias",
    [
        {"0": 1, "7": -100, "31": 100.0, "12": -2.5, "4294967295": 0},
        {"1,2": 1},  # one key, not two ids
        {"01": 1},
        {"0": 1, "00": 2},
        {"1": True},
        {"1": 10**400},
        {"1": 1e300},
        {"1": float("nan")},
        {"12345678901": 1},
        {"\u0661": 1},  # an Arabic-Indic one: a digit to str.isdigit, not to JSON's ids
        {},
    ],
)
def test_a_logit_bias_read_whole_is_what_reading_it_entry_by_entry_makes(logit_bias):
    """The fast reading of a plain logit_bias (nearly every client's) agrees with the entry by entry
    one, which says what is wrong with any other."""
    from charlm.serve import protocol
    from charlm.serve.api_error import APIError

    def read(reader):
        try:
            return reader(logit_bias)
        except APIError as e:
            return e.message

    entries = read(protocol.logit_bias_entries)
    assert read(lambda value: protocol.logit_bias_of({"logit_bias": value})) == entries
    assert protocol.plain_bias(logit_bias) in (None, entries)


def test_a_sentencepiece_ban_leaving_only_the_unknown_and_control_pieces_is_a_400_naming_it():
    """A sentencepiece model with every piece banned but <unk>, <s> and </s> was served and wrote "\ufffd"
    (the unknown piece), where a character model's ban of every token is refused: what is left writes no
    text. One writing piece left is enough."""
    from charlm.pieces import PieceVocab, train_model

    torch.manual_seed(0)
    vocab = PieceVocab(train_model(["the quick brown fox\n" * 20], "bpe", 280), normalize="none")
    silent = {i for i, piece in enumerate(vocab.pieces) if not piece or vocab.processor.is_unknown(i)}
    assert len(silent) == 3
    ban = {str(i): -100 for i in range(len(vocab)) if i not in silent}
    with running(create_app({"pieces": lambda: make_model(vocab, layers=1, hidden=8).eval()}, ServeConfig())) as url:
        wait_healthy(url)
        answer = httpx.post(f"{url}/v1/completions", json={"prompt": "the", "max_tokens": 5, "logit_bias": ban})
        error = answer.json()["error"]
        assert (answer.status_code, error["param"]) == (400, "logit_bias"), answer.text
        assert error["message"].startswith("logit_bias bans every token that writes text")
        newline = vocab.processor.piece_to_id("\n")
        del ban[str(newline)]
        answer = httpx.post(f"{url}/v1/completions", json={"prompt": "the", "max_tokens": 5, "logit_bias": ban})
        assert answer.status_code == 200 and set(answer.json()["choices"][0]["text"]) <= {"\n", "\ufffd"}


def test_max_prompt_holds_for_the_text_as_the_model_reads_it():
    """--max-prompt was checked on the text as sent, but an nfkc model reads U+FDFA as 18 characters:
    a prompt within the limit was read as 18 times as many (16,384 made 294,912, 14 s of priming on one
    thread) and /tokenize answered with megabytes. The limit holds for the text as the model reads it."""
    torch.manual_seed(0)
    model = make_model(Vocab(list("abc ,"), normalize="nfkc"), layers=1, hidden=8).eval()
    with running(create_app({"nfkc": lambda: model}, ServeConfig(max_prompt=100))) as url:
        wait_healthy(url)
        says = "has 180 characters as the model reads it (NFKC-normalized); this server takes at most 100"
        for path, body, param in [
            ("/tokenize", {"content": "\ufdfa" * 10}, "content"),
            ("/tokenize", {"prompt": "\ufdfa" * 10, "with_pieces": True}, "prompt"),
            ("/v1/completions", {"prompt": ["a", "\ufdfa" * 10], "max_tokens": 1}, "prompt"),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\ufdfa" * 10}]}, "messages"),
        ]:
            answer = httpx.post(url + path, json=body)
            error = answer.json()["error"]
            assert (answer.status_code, error["param"], error["code"]) == (400, param, "context_length_exceeded")
            assert (says if path != "/v1/chat/completions" else "make 182 characters as the model") in error["message"]
        for path, body in [("/tokenize", {"content": "，" * 100}), ("/v1/completions", {"prompt": "，" * 100})]:
            assert httpx.post(url + path, json={**body}).status_code == 200  # one character read as one


def test_the_docs_token_id_example_bans_digits_for_both_kinds_of_model(capsys):
    """docs/serve.md's example: the ids /tokenize gives, and every token that writes a digit from
    meta.characters or meta.pieces, banned, for a character model and a sentencepiece one."""
    from charlm.pieces import PieceVocab, train_model

    docs = (REPO / "docs" / "serve.md").read_text(encoding="utf-8")
    setup, example = (block.split("```")[0] for block in docs.split("```python\n")[1:3])
    assert "OpenAI(" in setup and "/tokenize" in example
    text = "the 3 quick brown foxes jump over 12 lazy dogs, 40 times and 7 more.\n" * 40
    torch.manual_seed(0)
    models = {"chars": make_model("".join(sorted(set(text))), layers=1, hidden=16).eval()}
    models["pieces"] = make_model(PieceVocab(train_model([text], "bpe", 300), normalize="none"), hidden=16).eval()
    for kind, model in models.items():
        with running(create_app({"shakespeare": lambda model=model: model}, ServeConfig())) as url:
            wait_healthy(url)
            script = (setup + example).replace("http://127.0.0.1:8080", url).replace("ROMEO:\n", "the ")
            names: dict = {}
            exec(compile(script, "docs/serve.md", "exec"), names)  # noqa: S102 -- the docs' own example
        made = names["reply"].choices[0].text
        ids = model.vocab.encode("0123456789", unseen=True).tolist()  # -1: a character the model never saw
        assert names["tokens"].json()["tokens"] == [None if i < 0 else i for i in ids], kind
        assert len(made) == 300 and not set(made) & set("0123456789"), (kind, made)
        assert made in capsys.readouterr().out


@pytest.mark.slow
def test_load_bench_runs_on_a_tiny_model(monkeypatch):
    """bench.serve_load end to end with tiny counts (its targets are for a 2x256 model: not checked here).
    300 churn requests: enough that a server with no spare rows for clients that just hung up refuses some.
    Its server is a process of its own, forked (`fork_charlm_processes`)."""
    fork_charlm_processes(monkeypatch)
    out = run_bench(
        "serve_load", "--hidden", "16", "--layers", "1", "--streams", "1,4", "--chars", "40",
        "--churn", "300", "--churn-concurrency", "4", "--churn-chars", "200",
    )  # fmt: skip
    assert "| 4 |" in out and "4/4 |" in out
    assert "0 errors, 0 hung, 0 streams active and 0 busy after" in out
    # the prompt column is the server's own timings.prompt_ms, read from the last chunk of each stream
    # (benchmarks.md's server-threads table): a renamed field would print nan, not fail
    rows = [line.split("|")[1:-1] for line in out.splitlines() if re.match(r"\| [14] \|", line)]
    assert len(rows) == 2 and all(math.isfinite(float(ms)) for row in rows for ms in row[4].split("/"))


@pytest.mark.slow
def test_load_bench_takes_turns_between_endpoints(monkeypatch):
    """bench.serve_load --endpoint chat,responses: both on one server each round, then each one's ratio
    to chat's, round by round: a median and its spread."""
    fork_charlm_processes(monkeypatch)
    out = run_bench(
        "serve_load", "--hidden", "16", "--layers", "1", "--streams", "1,4", "--chars", "40", "--churn", "0",
        "--endpoint", "chat,responses", "--rounds", "2",
    )  # fmt: skip
    assert out.count("/v1/responses, 40 characters per stream") == 2 and out.count("| 4/4 |") == 4
    ratios = re.findall(r"^\| 4 \| /v1/responses \| [\d,.]+ \| ([\d.]+) \[([\d.]+), ([\d.]+)\]", out, re.MULTILINE)
    assert len(ratios) == 1 and float(ratios[0][1]) <= float(ratios[0][0]) <= float(ratios[0][2]), out


def test_load_bench_reads_each_endpoints_stream(server):
    """bench.serve_load's client reads each endpoint's stream as the server writes it: every text counted,
    the end seen ([DONE], or a response completed), and a client that hangs up midway has not."""
    url, _ = server

    async def streams() -> dict:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            whole = {e: await serve_load.one_stream(client, 7, 60, endpoint=e) for e in serve_load.ENDPOINTS}
            cut = {e: await serve_load.one_stream(client, 7, 60, 2, endpoint=e) for e in serve_load.ENDPOINTS}
        return whole, cut

    whole, cut = asyncio.run(streams())
    for endpoint in serve_load.ENDPOINTS:
        stream = whole[endpoint]
        assert (stream.error, stream.chars, stream.finished, stream.done) == (None, 60, True, True), endpoint
        assert stream.first is not None and len(stream.arrivals) >= 1, endpoint
        assert cut[endpoint].error is None and len(cut[endpoint].arrivals) == 2 and not cut[endpoint].done, endpoint


def test_unknown_paths_and_methods_answer_in_the_error_shape(server):
    url, _ = server
    for response in (httpx.get(f"{url}/v1/nothing"), httpx.get(f"{url}/v1/completions")):
        assert response.status_code in (404, 405) and set(response.json()["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }


def test_a_model_that_fails_to_load_is_reported_not_waited_for():
    def broken():
        raise RuntimeError("weights do not fit")

    app = create_app({"broken": broken}, ServeConfig())
    with running(app) as url:
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 500)
        assert "weights do not fit" in httpx.get(f"{url}/health").json()["message"]
        with pytest.raises(openai.InternalServerError):
            OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0).completions.create(model="broken", prompt="a")


@pytest.mark.slow
def test_page_never_writes_what_its_ban_box_bans(tiny_model, browser):
    """The ban box (the exported page's too), read as `charlm sample --ban` reads it, sent as logit_bias;
    a ban the page or the server cannot follow is refused by the box's name; a sentencepiece model's
    tokens are not characters, as --ban says."""
    from selenium.webdriver.support.ui import Select

    from charlm.pieces import PieceVocab, train_model

    pieces = make_model(PieceVocab(train_model(["the quick brown fox\n" * 20], "bpe", 280), normalize="none"))
    app = create_app({"tiny": lambda: tiny_model, "pieces": lambda: pieces.eval()}, ServeConfig())
    with running(app) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        set_field(browser, "ban", "eo\\n0123")  # digits: the model never writes them anyway
        write(browser, wait, "the ", 300)
        made = made_text(browser)
        assert len(made) == 300 and not set(made) & set("eo\n"), made
        unwritten = " (ban: the model never writes '0' '1' '2' '3', so banning them changes nothing)"
        assert browser.find_element("id", "status").text.endswith(unwritten)  # as `charlm sample --ban` warns
        set_field(browser, "ban", VOCAB.replace("\n", "\\n"))
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
        error = browser.find_element("id", "seed-error").text
        assert error == "ban bans every token the model has; leave it at least one to write"
        assert "see the ban" in browser.find_element("id", "status").text and made_text(browser) == made

        Select(browser.find_element("id", "form")).select_by_value("template")
        set_field(browser, "template", "__ _")
        set_field(browser, "ban", "abcdefghijklmnopqrstuvwxyz")  # the server's refusal, named as the page names it
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
        error = browser.find_element("id", "seed-error").text
        assert error == "ban bans every way to write template (`_` needs letters); ban fewer", error
        assert "see the ban" in browser.find_element("id", "status").text

        Select(browser.find_element("id", "form")).select_by_value("")
        Select(browser.find_element("id", "model")).select_by_value("pieces")
        set_field(browser, "ban", "e")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
        assert "a sentencepiece model's tokens are pieces" in browser.find_element("id", "seed-error").text
        set_field(browser, "ban", "")  # an empty box bans nothing
        write(browser, wait, "the ", 50)
        assert len(made_text(browser)) == 50 and "(ban" not in browser.find_element("id", "status").text


@pytest.mark.slow
def test_page_refuses_a_ban_over_the_servers_limit_before_sending_it(browser):
    """A model of more characters than logit_bias may hold (65,536): the page sent a ban of more in a
    request of megabytes and showed the server's refusal, in token ids. It refuses it itself, in
    characters, and sends nothing."""
    from charlm.serve.protocol import MAX_BIASED

    ranges = [range(0x4E00, 0xA000), range(0xAC00, 0xD7A4), range(0x20000, 0x2A6E0)]  # CJK, Hangul, CJK B
    chars = "\n" + "".join(chr(c) for c in itertools.islice(itertools.chain(*ranges), MAX_BIASED + 64))
    torch.manual_seed(0)
    model = make_model(chars, layers=1, hidden=4).eval()
    app = create_app({"wide": lambda: model}, ServeConfig())
    with running(app) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        browser.execute_script("document.getElementById('ban').value = arguments[0]", chars[1 : MAX_BIASED + 2])
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
        error = browser.find_element("id", "seed-error").text
        assert (
            error
            == "ban bans 65,537 characters; this server takes at most 65,536 characters (its logit_bias limit): ban fewer"
        )
        assert "see the ban" in browser.find_element("id", "status").text
        assert not [key for key in app.state.server.metrics.requests if key[0] == "/v1/completions"]


def page_history(driver) -> list[dict]:
    return driver.execute_script("return history()")


@pytest.mark.slow
def test_page_keeps_a_texts_model_when_the_picker_changes_mid_stream(fox_run, browser):
    """The stream goes on with the model that started it: its history entry and its status name that
    model, not the one picked while it was written (which made the status say the model knew none of
    its own seed)."""
    from selenium.webdriver.support.ui import Select

    model = checkpoint.load(fox_run)
    other = make_model("xyz\n", layers=1, hidden=8).eval()
    with running(create_app({"fox": lambda: model, "xyz": lambda: other}, ServeConfig())) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        Select(browser.find_element("id", "model")).select_by_value("fox")
        set_field(browser, "seed", "the quick ")
        set_field(browser, "length", "4000")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) > 0)
        Select(browser.find_element("id", "model")).select_by_value("xyz")
        wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
        status = browser.find_element("id", "status").text
        assert "does not know" not in status and [item["model"] for item in page_history(browser)] == ["fox"]
        # Restoring the entry restores its model and settings too, so Continue goes on as it was written
        # (the picker and the settings stayed as they were: Continue went on with the other model).
        set_field(browser, "length", "7")
        browser.find_element("css selector", "#history li").click()
        assert Select(browser.find_element("id", "model")).first_selected_option.get_attribute("value") == "fox"
        assert browser.find_element("id", "length").get_attribute("value") == "4000"


@pytest.mark.slow
def test_page_history_restores_the_text_it_shows_beside_another_tab(fox_run, browser):
    """Two tabs share the history: a text written in one shows in the other, and clicking an entry
    restores that entry (it restored whatever stood at its place after the other tab wrote)."""
    model = checkpoint.load(fox_run)
    with running(create_app({"fox": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)

        def write(seed: str) -> None:
            wait = page_ready(browser, url)
            set_field(browser, "seed", seed)
            set_field(browser, "length", "30")
            browser.find_element("id", "generate").click()
            wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)

        write("the ")
        first = browser.current_window_handle
        browser.switch_to.new_window("tab")
        write("lazy ")
        browser.switch_to.window(first)
        wait_until(lambda: len(browser.find_elements("css selector", "#history li")) == 2, timeout=PAGE_WAIT)
        entries = browser.find_elements("css selector", "#history li")
        entries[1].click()
        assert browser.find_element("id", "seed").get_attribute("value") == "the "


@pytest.mark.slow
def test_page_writes_a_text_again_from_the_random_seed_it_shows(tiny_model, browser):
    """The server tells each text's seed in its first chunk, but the page kept none and took none: a text one
    liked could not be written again, longer or after a Stop. The page shows the seed a text was drawn with,
    files it with the text, and a click on it or a restore pins it in the random seed box, so that Generate
    writes that text again; an empty box draws anew, and greedy, which draws nothing, shows no seed."""
    with running(create_app({"tiny": lambda: tiny_model}, ServeConfig())) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        set_field(browser, "temperature", "1.5")
        write(browser, wait, "the ", 30)
        first, shown = made_text(browser), browser.find_element("id", "random-seed-used")
        seed = shown.get_attribute("data-seed")
        assert shown.is_displayed() and seed.isdigit() and seed in shown.text, shown.text
        assert f"seed {seed}" in browser.find_element("css selector", "#history li .when").text
        write(browser, wait, "the ", 30)  # the box is empty: a fresh draw
        second, other = made_text(browser), shown.get_attribute("data-seed")
        assert other != seed and browser.find_element("id", "random_seed").get_attribute("value") == ""
        browser.find_elements("css selector", "#history li")[1].click()  # the first text: its seed pinned
        assert browser.find_element("id", "random_seed").get_attribute("value") == seed
        write(browser, wait, "the ", 60)  # longer, from the same draw
        assert made_text(browser)[:30] == first and shown.get_attribute("data-seed") == seed
        browser.find_elements("css selector", "#history li")[1].click()  # the second text
        browser.find_element("id", "random-seed-used").click()  # its seed, as shown, pinned
        assert browser.find_element("id", "random_seed").get_attribute("value") == other
        write(browser, wait, "the ", 30)
        assert made_text(browser) == second
        set_field(browser, "temperature", "0")
        write(browser, wait, "the ", 10)
        assert not shown.is_displayed() and "seed" not in browser.find_element("css selector", "#history li .when").text


def boxes(driver) -> dict[str, str]:
    """The form row's boxes as the page shows them (the template box's text only while it shows)."""
    shown = {name: driver.find_element("id", name).get_attribute("value") for name in ("form", "acrostic", "ban")}
    template = driver.find_element("id", "template")
    return {**shown, "template": template.get_attribute("value") if template.is_displayed() else None}


@pytest.mark.slow
def test_page_keeps_the_form_and_ban_boxes_as_it_keeps_the_sliders(tiny_model, browser):
    """The form, template, acrostic and ban boxes came back empty after a reload, and a history entry
    restored the sliders it was written with but not its ban or form, so Continue after a restore wrote
    what the ban had kept out. An entry keeps the boxes as they were when its text began, as it keeps
    its model: what is typed while the text is written is for the next one."""
    from selenium.webdriver.support.ui import Select

    torch.manual_seed(0)
    slow = make_model(VOCAB, layers=2, hidden=512).eval()  # a few hundred characters a second
    app = create_app({"tiny": lambda: tiny_model, "slow": lambda: slow}, ServeConfig(max_tokens=4000))
    with running(app) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        kept = {"form": "template", "template": "___ __", "acrostic": "ab", "ban": "eo\\n"}
        Select(browser.find_element("id", "form")).select_by_value(kept["form"])
        for name in ("template", "acrostic", "ban"):
            set_field(browser, name, kept[name])
        # after a line break: the seed's "the " would be the template's start, which the sample would go on with
        write(browser, wait, "the\n", 6)
        assert made_text(browser)[0] == "a" and not set(made_text(browser)) & set("eo\n")
        wait = page_ready(browser, url)  # a reload
        assert boxes(browser) == kept

        Select(browser.find_element("id", "form")).select_by_value("")
        set_field(browser, "acrostic", "")
        set_field(browser, "ban", "x")
        Select(browser.find_element("id", "model")).select_by_value("slow")
        set_field(browser, "seed", "the ")
        set_field(browser, "length", "4000")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) >= 5)
        set_field(browser, "ban", "changed while it was written")
        browser.find_element("id", "stop").click()
        wait(browser, PAGE_WAIT).until(lambda d: "stopped" in d.find_element("id", "status").text)
        entries = browser.find_elements("css selector", "#history li")
        entries[1].click()  # the first text: its boxes come back
        assert boxes(browser) == kept
        browser.find_elements("css selector", "#history li")[0].click()
        assert boxes(browser) == {"form": "", "template": None, "acrostic": "", "ban": "x"}
        assert page_history(browser)[0]["settings"]["ban"] == "x"
        old = {"temperature": 0.5}  # an entry filed before the boxes were kept: they stay as they are
        browser.execute_script("restore(arguments[0])", {**page_history(browser)[0], "settings": old})
        assert (
            boxes(browser)["ban"] == "x" and browser.find_element("id", "temperature").get_attribute("value") == "0.5"
        )


@pytest.mark.slow
def test_page_says_which_seed_characters_a_model_of_another_normalization_does_not_know(browser, tmp_path):
    """The status line's note on characters the model does not know read the seed as NFC: for a model
    trained with --normalize nfkc it named the "，" and "ｆ" the model reads as "," and "f", and for one
    trained with --normalize none it missed an Å (U+212B) it has never seen."""
    from selenium.webdriver.support.ui import Select

    import charlm

    runs = {}
    for normalize in ("nfkc", "none"):
        text = tmp_path / f"{normalize}.txt"
        text.write_text("the quick brown fox, jumps over the lazy dog. \u00c5 1 2\n" * 30, encoding="utf-8")
        runs[normalize] = charlm.train(text, out=tmp_path / normalize, normalize=normalize, **TINY)
    app = create_app({name: lambda model=model: model for name, model in runs.items()}, ServeConfig())
    with running(app) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        for model, seed, unknown in [
            ("nfkc", "the ｆｏｘ，① ", ""),
            ("nfkc", "the fox~ ", "'~'"),  # named as charlm names characters ('~'; it said "~")
            ("none", "the \u212b \u00c5 ", "'\u212b'"),
        ]:
            Select(browser.find_element("id", "model")).select_by_value(model)
            write(browser, wait, seed, 5)
            status = browser.find_element("id", "status").text
            note = f"(the model does not know {unknown}: it reads it as a character it knows nothing about)"
            assert (note in status) if unknown else ("does not know" not in status), (model, seed, status)


@pytest.mark.slow  # a browser
def test_page_shows_files_and_continues_a_free_seed_as_the_model_read_it(browser):
    """The serve page took a form's seed from the server's echo, but showed, filed and continued a free
    seed as typed: `ｔｈｅ ｆｏｘ，` where an nfkc model read (and the exported page shows) `the fox,`."""
    torch.manual_seed(0)
    model = make_model(Vocab("\n ,efhotx", normalize="nfkc"), layers=1, hidden=8).eval()
    typed, read = "ｔｈｅ ｆｏｘ，", "the fox,"
    with running(create_app({"nfkc": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        write(browser, page_ready(browser, url), typed, 5)
        shown = browser.execute_script(
            "return [...document.querySelectorAll('#text .seed')].map(s => s.textContent).join('')"
        )
        filed = browser.execute_script('return JSON.parse(localStorage.getItem("charlm.history"))[0].seed')
        assert (shown, filed) == (read, read)
        assert browser.find_element("id", "seed").get_attribute("value") == typed  # the box keeps what was typed
        made = made_text(browser)
        browser.find_element("id", "continue").click()  # and writes on: the box holds what it went on from
        assert browser.find_element("id", "seed").get_attribute("value") == read + made


@pytest.mark.slow
def test_page_names_unseen_seed_and_ban_characters_with_charlms_hints(browser):
    """The serve page's status line named a seed's ':' plainly for a novel that writes '：', and a ban's
    ',' for one that writes '，', where `charlm sample`, Python and the exported page say "did you mean
    '：'?" (and that '寶' looks traditional): both notes now name characters as charlm does, from
    /v1/models' meta.unseen, a ban's hint leaving out the forms it bans too (',，' hints '、')."""
    from .test_vocab import SIMPLIFIED

    torch.manual_seed(0)
    model = make_model(Vocab(sorted(set(SIMPLIFIED + "，、"))), layers=1, hidden=8).eval()
    with running(create_app({"novel": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        set_field(browser, "ban", ",，")
        write(browser, wait, "宝玉道:寶", 5)
        status = browser.find_element("id", "status").text
    unseen = "':' (did you mean '：'?) '寶' (traditional? this model knows simplified Chinese)"
    assert f"(the model does not know {unseen}: it reads them as" in status, status
    assert status.endswith(" (ban: the model never writes ',' (did you mean '、'?), so banning it changes nothing)")


@pytest.mark.slow
def test_a_reload_mid_text_keeps_the_text_and_the_seed(browser):
    """A reload (or a closed tab) while a text was written lost it: the history saved a text only when
    it ended, and the seed box came back empty."""
    torch.manual_seed(0)
    slow = make_model(VOCAB, layers=2, hidden=512).eval()  # a few hundred characters a second
    with running(create_app({"slow": lambda: slow}, ServeConfig(max_tokens=4000))) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        set_field(browser, "seed", "the ")
        set_field(browser, "length", "4000")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) >= 20)
        browser.refresh()
        wait = page_ready(browser, url)
        saved = browser.execute_script('return JSON.parse(localStorage.getItem("charlm.history") || "[]")')
        assert len(saved) == 1 and saved[0]["seed"] == "the " and 20 <= len(saved[0]["made"]) < 4000
        assert browser.find_element("id", "seed").get_attribute("value") == "the "
        assert len(browser.find_elements("css selector", "#history li")) == 1


@pytest.mark.slow
def test_serve_page_fits_a_phone(fox_run, browser):
    """At a phone's 375 px the page is one column as wide as the screen: a history entry (one line,
    cut with an ellipsis) widened it to 558-600 px, so every box ran off the right edge; the API key's
    box, once asked for, ran the header to 674 px, the box itself half off the screen."""
    model = checkpoint.load(fox_run)
    with running(create_app({"fox": lambda: model}, ServeConfig(api_key=KEY))) as url:
        wait_healthy(url)
        metrics = {"width": 375, "height": 667, "deviceScaleFactor": 2, "mobile": True}
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        wait = page_ready(browser, url)
        set_field(browser, "seed", "the quick ")
        set_field(browser, "length", "200")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "key").is_displayed())
        assert browser.execute_script("return document.documentElement.scrollWidth") == 375
        set_field(browser, "key", KEY)
        browser.find_element("id", "save-key").click()
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: browser.find_elements("css selector", "#history li"))
        assert browser.execute_script("return document.documentElement.scrollWidth") == 375


# The page's history refused by the browser's storage, as a full one refuses it (other keys still kept).
FULL_HISTORY_STORAGE = """
const setItem = Storage.prototype.setItem;
Storage.prototype.setItem = function (key, value) {
  if (key === "charlm.history") throw new DOMException("the storage is full", "QuotaExceededError");
  return setItem.call(this, key, value);
};
"""


@pytest.mark.slow
def test_page_says_what_to_change_when_a_text_is_not_written(fox_run, browser):
    """Each refusal names what the writer can change: the API key, the length, the server. All of them
    said 'see the seed', and a server that went away was 'network error' or 'Failed to fetch'. A text
    cut off says how many characters came: a sentencepiece model's, whose tokens were counted."""
    from selenium.webdriver.support.ui import Select

    from charlm.pieces import PieceVocab, train_model

    model = checkpoint.load(fox_run)
    pieces = make_model(PieceVocab(train_model(["the quick brown fox\n" * 20], "bpe", 280), normalize="none")).eval()
    models = {"fox": lambda: model, "pieces": lambda: pieces}
    with running(create_app(models, ServeConfig(api_key=KEY, max_tokens=100_000))) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)

        def generate() -> str:
            browser.find_element("id", "generate").click()
            # Stop is enabled while the request is in flight, refused or not: wait for the text or the refusal.
            wait(browser, PAGE_WAIT).until(lambda d: made_text(d) or status().startswith("not written"))
            return status()

        def status() -> str:
            return browser.find_element("id", "status").text

        set_field(browser, "seed", "the quick ")
        assert generate() == "not written: give the server's API key (above)"
        set_field(browser, "key", KEY)
        browser.find_element("id", "save-key").click()
        set_field(browser, "length", "100001")
        assert generate() == "not written: see the length"
        set_field(browser, "length", "100000")
        # a text cut off that the history cannot keep (the browser's storage full, as a fast machine's
        # text, streamed on while the server shut down, once filled it): that is said under the seed too
        browser.execute_script(FULL_HISTORY_STORAGE)
        Select(browser.find_element("id", "model")).select_by_value("pieces")
        generate()
        wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) > 0)
    wait(browser, PAGE_WAIT).until(lambda d: not d.find_element("id", "stop").is_enabled())
    made = made_text(browser)
    assert status().startswith(f"cut off after {counted(len(made), 'character')}: the server stopped answering")
    assert status().endswith("; not kept in the history: too big for this browser's storage (Copy keeps it)")
    # under the seed too (role=alert, read out at once): the status line alone is read when the reader is idle
    assert browser.find_element("id", "seed-error").text == status()
    assert generate() == "not written: the server does not answer" and made_text(browser) == made
    assert "is charlm serve running?" in browser.find_element("id", "seed-error").text


def escape_stops_the_writing(driver, wait) -> str:
    """Ctrl+Enter in the seed writes, Escape stops, wherever the focus is, and the status says so as
    both pages do (the serve page said 'stopped after N characters'); returns the text stopped."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.find_element("id", "seed").send_keys(Keys.CONTROL, Keys.ENTER)
    wait(driver, PAGE_WAIT).until(lambda d: len(made_text(d)) > 0)
    # The text region is busy while it is written: a screen reader reads it once it ends, not each piece.
    assert text_busy(driver) == "true"
    driver.find_element("id", "temperature").click()
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait(driver, PAGE_WAIT).until(lambda d: "stopped" in d.find_element("id", "status").text)
    assert text_busy(driver) == "false"
    made = made_text(driver)
    said = re.fullmatch(r"stopped: ([\d,]+) characters in \d+\.\d s \([\d,]+ characters/s\)", status_of(driver))
    assert said and said[1] == f"{len(made):,}", status_of(driver)
    return made


def text_busy(driver) -> str | None:
    return driver.find_element("id", "text").get_attribute("aria-busy")


def status_of(driver) -> str:
    return driver.find_element("id", "status").text


@pytest.mark.slow
def test_page_works_from_the_keyboard(fox_run, browser):
    """Enter in the key box saves the key, Escape stops, and a history entry is reached with Tab and
    restored with Enter: Escape did nothing, and neither could be done without a mouse."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    model = checkpoint.load(fox_run)
    with running(create_app({"fox": lambda: model}, ServeConfig(api_key=KEY, max_tokens=200_000))) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        set_field(browser, "seed", "the quick ")
        set_field(browser, "length", "200000")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "key").is_displayed())
        browser.find_element("id", "key").send_keys(KEY, Keys.ENTER)
        assert browser.find_element("id", "status").text == "key saved"
        stopped = escape_stops_the_writing(browser, wait)
        set_field(browser, "seed", "another seed")
        browser.execute_script("document.getElementById('surprise').focus()")
        ActionChains(browser).send_keys(Keys.TAB).perform()
        ActionChains(browser).send_keys(Keys.ENTER).perform()
        assert browser.find_element("id", "seed").get_attribute("value") == "the quick "
        assert made_text(browser) == stopped
        enter_writes_and_stops(browser, wait)


def enter_writes_and_stops(driver, wait) -> str:
    """Enter in a setting's box writes (it did nothing outside the seed), and Enter on Generate hands the
    focus to Stop, Enter on Stop back to Generate: it fell to the page's body each time (the button
    pressed was disabled; on the exported page still), so a keyboard user Tabbed from the top. Returns
    the text stopped."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.find_element("id", "length").send_keys(Keys.ENTER)
    wait(driver, PAGE_WAIT).until(lambda d: status_of(d).startswith("writing") and len(made_text(d)) > 0)
    assert focused(driver) == "length"
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait(driver, PAGE_WAIT).until(lambda d: "stopped" in status_of(d))
    driver.execute_script("document.getElementById('generate').focus()")
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    assert focused(driver) == "stop"
    wait(driver, PAGE_WAIT).until(lambda d: status_of(d).startswith("writing") and len(made_text(d)) > 0)
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait(driver, PAGE_WAIT).until(lambda d: "stopped" in status_of(d))
    assert focused(driver) == "generate"
    return made_text(driver)


CONTROL_ROLES = {"button", "checkbox", "combobox", "slider", "spinbutton", "textbox"}


def told_what_each_part_is(driver, title: str) -> None:
    """What a screen reader says of a page (Chromium's accessibility tree): every control has a name, the
    text region is a region named Text, the seed and the region named as written (not in the capitals
    their captions are shown in), the model's text (the seed, what it writes) is in no language the
    page claims for it (lang=""), and the title says what the page is."""
    nodes = driver.execute_cdp_cmd("Accessibility.getFullAXTree", {})["nodes"]
    shown = [(node["role"]["value"], node.get("name", {}).get("value", "")) for node in nodes if not node["ignored"]]
    controls = [(role, name) for role, name in shown if role in CONTROL_ROLES]
    assert len(controls) > 10 and all(name for _, name in controls), controls
    # a name taken from a caption the CSS shows in capitals reached a screen reader in capitals
    seeds = [name for role, name in shown if role == "textbox" and name.casefold().startswith("seed: ")]
    assert len(seeds) == 1 and seeds[0].startswith("Seed: the text the model continues"), seeds
    assert ("region", "Text") in shown, shown
    langs = driver.execute_script(
        "return ['seed', 'text'].map((id) => document.getElementById(id).getAttribute('lang'))"
    )
    assert langs == ["", ""]
    assert driver.title == title


# The contrast (WCAG's ratio) of each text the page shows against the colour behind it, for `dark_text`:
# the elements whose ratio is under 4.5, and the luminance of the page's background.
CONTRASTS = """
const luminance = (colour) => {
  const [r, g, b] = colour.match(/[\\d.]+/g).slice(0, 3).map((c) => +c / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const behind = (element) => {
  for (let e = element; e; e = e.parentElement) {
    const colour = getComputedStyle(e).backgroundColor;
    if (!/rgba\\(.*, 0\\)$/.test(colour)) return colour;
  }
  return "rgb(255, 255, 255)";
};
const low = [];
for (const e of document.querySelectorAll("h1, label, .meta, #status, textarea, #text, #text span, button:enabled, select, input:not([type=range]):not([type=checkbox])")) {
  if (!e.getClientRects().length) continue;
  const [a, b] = [luminance(getComputedStyle(e).color), luminance(behind(e))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) low.push(`${e.tagName}#${e.id}.${e.className}: ${ratio.toFixed(2)}`);
}
return [low, luminance(behind(document.body))];
"""


def dark_text(driver) -> None:
    """With the system's dark setting the page is dark and every text on it readable (a contrast of 4.5
    or more): the page ignored the setting, a glaring white in a dark room."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    low, page = driver.execute_script(CONTRASTS)
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert not low and page < 0.05, (low, page)


@pytest.mark.slow
def test_serve_page_is_named_for_a_screen_reader_and_readable_in_the_dark(tiny_model, browser):
    """The number box beside each slider had no name ('spin button, 0.8'), the text region none, the
    title was 'charlm' alone, and a Chinese model's text was read as the page's English."""
    with running(create_app({"tiny": lambda: tiny_model}, ServeConfig())) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        told_what_each_part_is(browser, "tiny · charlm text generation")
        write(browser, wait, "the quick ", 40)
        dark_text(browser)
        # A server that cannot be reached is said under the seed (role=alert), not in the status line alone.
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/v1/models"]})
        browser.get(url)
        wait(browser, PAGE_WAIT).until(lambda d: status_of(d).startswith("cannot reach the server"))
        assert "is charlm serve running?" in browser.find_element("id", "seed-error").text
        # A server that answers the model list with an error was said to be out of reach: what it said.
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": MODEL_LIST_REFUSED})
        browser.get(url)
        wait(browser, PAGE_WAIT).until(lambda d: status_of(d).startswith("the server did not list its models"))
        assert "the models are still loading" in browser.find_element("id", "seed-error").text
        assert "cannot reach" not in browser.find_element("id", "seed-error").text


# The page's fetch of /v1/models answered as a server does an error: status 503 and an error body.
MODEL_LIST_REFUSED = """
const fetched = window.fetch;
window.fetch = (url, ...rest) => String(url).endsWith("/v1/models")
  ? Promise.resolve(new Response(JSON.stringify({ error: { message: "the models are still loading" } }), { status: 503 }))
  : fetched(url, ...rest);
"""


def focused(driver) -> str:
    return driver.execute_script("return document.activeElement.id")


FILL_STORAGE = """
for (let size = 1 << 22, i = 0; size >= 1; ) {
  try { localStorage.setItem("filler" + i, "x".repeat(size)); i++; } catch (e) { size >>= 1; }
}"""


@pytest.mark.slow
def test_page_says_when_a_text_is_too_big_for_the_browsers_storage(fox_run, browser):
    """A text the browser's storage could not hold was left out of the history without a word, and a
    seed it could not hold stopped Generate without one: the status line says the text is not kept
    (it stays on the page, the history keeps its entries), and a key that cannot be kept is not
    said to be saved."""
    model = checkpoint.load(fox_run)
    with running(create_app({"fox": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        wait = page_ready(browser, url)
        write(browser, wait, "the ", 5)
        browser.execute_script(FILL_STORAGE)
        write(browser, wait, "the quick brown fox ", 60)
        assert re.fullmatch(
            r"done \(length\): 60 characters in .*; not kept in the history: too big for this browser's storage "
            r"\(Copy keeps it\)",
            status_of(browser),
        )
        assert len(made_text(browser)) == 60 and [item["seed"] for item in page_history(browser)] == ["the "]
        assert len(browser.find_elements("css selector", "#history li")) == 1
        browser.execute_script("document.getElementById('keyrow').classList.add('shown')")  # as a 401 shows it
        set_field(browser, "key", "k" * 100)
        browser.find_element("id", "save-key").click()
        assert status_of(browser).startswith("key not saved: this browser's storage is full")


DEFAULTS = ("temperature", "top_p", "top_k", "length", "random_seed")


@pytest.mark.slow
def test_page_falls_back_to_defaults_for_what_its_storage_holds_damaged(tiny_model, browser):
    """What the page keeps in localStorage, damaged or hostile: a history that is not a list, or holds an
    entry without its text, stopped the page at "loading models…" (no model to pick, nothing written);
    kept settings out of their boxes' range (a length of -5, a random seed of 1.5) made every Generate an error until retyped; a
    key no header can carry made every request "the server does not answer". Each falls back to what the
    page does without it, and the entries it did write are still listed."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig(max_tokens=100))
    with running(app) as url:
        wait_healthy(url)
        page_ready(browser, url)
        defaults = browser.execute_script(f"return {list(DEFAULTS)}.map((id) => document.getElementById(id).value)")
        filed = {"when": "2026-01-01T00:00:00Z", "model": "tiny", "seed": "the ", "made": [{"text": "fox"}]}
        for history, settings, key in (
            ("{}", '{"length": -5, "top_p": 7, "top_k": -3, "temperature": 1e308, "random_seed": "-5"}', "ключ"),
            (
                json.dumps([None, {"when": "x"}, {**filed, "made": "fox"}, filed]),
                '{"temperature": "abc", "random_seed": "1.5"}',
                "a key ",
            ),
            ("5", "[1, 2]", ""),
        ):
            browser.execute_script(
                "localStorage.clear(); localStorage.setItem('charlm.history', arguments[0]);"
                "localStorage.setItem('charlm.settings', arguments[1]); localStorage.setItem('charlm.key', arguments[2]);",
                history, settings, key,
            )  # fmt: skip
            wait = page_ready(browser, url)
            shown = browser.execute_script(f"return {list(DEFAULTS)}.map((id) => document.getElementById(id).value)")
            assert shown == defaults and status_of(browser) == "ready", (history, settings)
            assert len(browser.find_elements("css selector", "#history li")) == history.count('"made": [')
            write(browser, wait, "the ", 5)
            assert len(made_text(browser)) == 5


@pytest.mark.slow
def test_page_restores_no_ban_longer_than_the_server_takes(tiny_model, browser):
    """Saved settings put a ban of any size back in its box (2 MB of damaged or hostile storage): one
    longer than any the server takes (protocol.MAX_BIASED characters, a decomposed one two code units)
    leaves the box empty; one as long as that is restored."""
    from charlm.serve.protocol import MAX_BIASED

    with running(create_app({"tiny": lambda: tiny_model}, ServeConfig())) as url:
        wait_healthy(url)
        page_ready(browser, url)
        for ban, shown in (("eo", "eo"), ("x" * 2_000_000, ""), ("e\u0301" * MAX_BIASED, "e\u0301" * MAX_BIASED)):
            saved = json.dumps({"temperature": 0.5, "ban": ban})
            browser.execute_script("localStorage.setItem('charlm.settings', arguments[0])", saved)
            page_ready(browser, url)
            restored = browser.execute_script("return [document.getElementById('ban').value, $('temperature').value]")
            assert (len(restored[0]), restored[0] == shown, restored[1]) == (len(shown), True, "0.5")


def settings_out_of_range_are_refused_by_name(driver, wait) -> None:
    """Both pages: an empty or out-of-range setting is refused under the seed, named, and the last text
    stays with the random seed it was drawn with (the exported page wrote at temperature -1 and top-p 0, and
    both wrote an empty box as 0)."""
    set_field(driver, "seed", "the quick ")
    set_field(driver, "length", "30")
    driver.find_element("id", "generate").click()
    wait(driver, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    made = made_text(driver)
    drawn = driver.find_element("id", "random-seed-used").get_attribute("data-seed")
    for name, value, says in (
        ("temperature", "", "temperature: give a number from 0 to 100"),
        ("temperature", "-1", "temperature: give a number from 0 to 100, not -1"),
        ("top_p", "0", "top-p: give a number from 0.01 to 1, not 0"),
        ("length", "", "length: give a whole number from 1 up"),
        ("length", "2.5", "length: give a whole number from 1 up, not 2.5"),  # not the sampler's words
        ("random_seed", "1.5", "random seed: give a whole number from 0 to 9007199254740991, not 1.5"),
    ):
        before = driver.find_element("id", name).get_attribute("value")
        set_field(driver, name, value)
        driver.find_element("id", "generate").click()
        wait(driver, PAGE_WAIT).until(lambda d: "not written" in d.find_element("id", "status").text)
        caption = says.split(":")[0]
        assert driver.find_element("id", "status").text == f"not written: see the {caption}"
        assert driver.find_element("id", "seed-error").text == says and made_text(driver) == made
        assert driver.find_element("id", "random-seed-used").get_attribute("data-seed") == drawn != ""
        set_field(driver, name, before)


@pytest.mark.slow
def test_serve_page_refuses_settings_out_of_range_by_name(fox_run, browser):
    model = checkpoint.load(fox_run)
    with running(create_app({"fox": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        settings_out_of_range_are_refused_by_name(browser, page_ready(browser, url))


@pytest.mark.slow
def test_two_tabs_at_once_share_the_servers_streams(fox_run, browser):
    """Two tabs write at once; with every stream in use the second is told the server is busy (it was
    told 'see the seed'), and writes once the first stops."""
    model = checkpoint.load(fox_run)
    app = create_app({"fox": lambda: model}, ServeConfig(max_streams=1, max_tokens=200_000))
    with running(app) as url:
        wait_healthy(url)
        tabs = []
        for _ in range(2):
            if tabs:
                browser.switch_to.new_window("tab")
            wait = page_ready(browser, url)
            tabs.append(browser.current_window_handle)
            set_field(browser, "seed", "the quick ")
            set_field(browser, "length", "200000")
            browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "not written" in status_of(d))
        assert status_of(browser) == "not written: the server is busy; try again in a moment"
        browser.switch_to.window(tabs[0])
        assert browser.find_element("id", "stop").is_enabled()
        browser.find_element("id", "stop").click()
        wait_until(lambda: app.state.server.models["fox"].engine.active == 0, timeout=PAGE_WAIT)  # the row is freed
        browser.switch_to.window(tabs[1])
        set_field(browser, "length", "50")
        browser.find_element("id", "generate").click()
        wait(browser, PAGE_WAIT).until(lambda d: "done" in status_of(d))
        assert len(made_text(browser)) == 50


# What a page test may leave in the shared browser (conftest's SharedChromium) and what the next test
# must see instead: the page's state as a fresh browser shows it.
FRESH_PAGE_STATE = """return {
  stored: Object.keys(localStorage).length + Object.keys(sessionStorage).length, cookies: document.cookie,
  size: [outerWidth, outerHeight], dark: matchMedia("(prefers-color-scheme: dark)").matches}"""


@pytest.mark.slow
def test_a_page_test_sees_a_fresh_browser_whatever_the_test_before_it_left(fox_run, shared_chromium):
    """The page tests share one browser (1-2 s a test to start one): what one leaves (a setting and a
    text kept in localStorage, a stream running, a second tab, a resized window, a dark scheme, a
    permission, a longer script timeout) must not reach the next, which sees the page's defaults."""
    from selenium.webdriver.support.ui import Select

    model = checkpoint.load(fox_run)
    app = create_app({"fox": lambda: model}, ServeConfig(max_tokens=200_000))
    with running(app) as url:
        wait_healthy(url)
        browser = shared_chromium.page()
        first_session = browser.session_id
        page_ready(browser, url)
        defaults = {name: browser.find_element("id", name).get_attribute("value") for name in ("length", "top_k")}
        fresh = browser.execute_script(FRESH_PAGE_STATE)
        browser.execute_script(
            "localStorage.setItem('charlm.settings', JSON.stringify({length: 4321, top_k: 3}));"
            "sessionStorage.setItem('left', '1'); document.cookie = 'left=1'"
        )
        page_ready(browser, url)
        assert browser.find_element("id", "length").get_attribute("value") == "4321"  # the page read it
        browser.execute_cdp_cmd(
            "Browser.grantPermissions", {"permissions": ["clipboardReadWrite"], "origin": url.rstrip("/")}
        )
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
        )
        browser.set_window_size(390, 844)
        browser.set_script_timeout(120)
        set_field(browser, "length", "200000")
        browser.find_element("id", "generate").click()
        wait_until(lambda: app.state.server.models["fox"].engine.active == 1, timeout=PAGE_WAIT)
        browser.switch_to.new_window("tab")

        browser = shared_chromium.page()  # what the next test's `browser` is
        assert browser.session_id == first_session  # the same browser, not a new one
        wait_until(lambda: app.state.server.models["fox"].engine.active == 0, timeout=PAGE_WAIT)  # the stream ended
        page_ready(browser, url)
        assert browser.execute_script(FRESH_PAGE_STATE) == fresh and fresh["stored"] == 0
        assert {name: browser.find_element("id", name).get_attribute("value") for name in defaults} == defaults
        assert Select(browser.find_element("id", "model")).first_selected_option.get_attribute("value") == "fox"
        assert browser.find_elements("css selector", "#history li") == []
        assert len(browser.window_handles) == 1 and browser.timeouts.script == 30
        clipboard = "return (await navigator.permissions.query({name: 'clipboard-read'})).state"
        assert browser.execute_script(clipboard) == "prompt"


@contextlib.contextmanager
def never_answering_page():
    """The address of a page whose server takes its request and never answers, and an Event set once
    the request has arrived: a browser asked for it waits on it (up to selenium's 300 s)."""
    import http.server

    arrived, ended = threading.Event(), threading.Event()

    class Silent(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            arrived.set()
            ended.wait(PAGE_WAIT)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", arrived
    finally:
        ended.set()
        httpd.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("breaks", ["crashes its tab", "hangs on a page"])
def test_a_browser_a_page_test_broke_is_replaced_for_the_next_test(shared_chromium, monkeypatch, breaks):
    """A crashed tab fails every later command of its session, and a page that never loads holds
    chromedriver, which answers one command at a time: every page test after one that broke the shared
    browser would fail. The next test is given a fresh browser, the broken one's chromedriver ended."""
    from selenium.common.exceptions import WebDriverException

    from . import conftest

    # The broken browser never gives a clean slate however long it is given: half a second to find that out
    monkeypatch.setattr(conftest, "CLEAN_SLATE_TIMEOUT", 0.5)
    browser = shared_chromium.page()
    with never_answering_page() as (url, arrived):
        if breaks == "crashes its tab":
            with pytest.raises(WebDriverException, match="crashed"):
                browser.execute_cdp_cmd("Page.crash", {})
        else:

            def asks_for_it() -> None:
                with contextlib.suppress(Exception):  # what the killed chromedriver's answer is, it ends
                    browser.get(url)

            threading.Thread(target=asks_for_it, daemon=True).start()
            assert arrived.wait(PAGE_WAIT)
        fresh = shared_chromium.page()
        assert fresh.session_id != browser.session_id and browser.service.process.poll() is not None
        assert fresh.execute_script("return 6 * 7") == 42


@pytest.fixture(scope="module")
def healing_model():
    """A small untrained sentencepiece model whose pieces `▁the` and `杜甫` begin with `▁th` and `杜`: a
    prompt "go to th" or "春望\n杜" ends inside a piece (token healing, `generation.healed_seed`)."""
    from charlm.pieces import PieceVocab, train_model

    text = (
        "go to the sea, then the other thing; that is this.\n春望\n杜甫\n国破山河在，城春草木深。\n杜牧\n山行\n李白\n"
        * 40
    )
    torch.manual_seed(0)
    return make_model(PieceVocab(train_model([text], "bpe", 320), normalize="none"), layers=1, hidden=16).eval()


HEALED_PROMPTS = ["go to th", "春望\n杜"]


@pytest.mark.parametrize("favoured", [False, True])
def test_a_prompt_ending_mid_piece_is_healed_as_generate_heals_it(healing_model, favoured):
    """The server read "go to th" as its pieces "go to" "▁th" where `charlm.generate` reads it without "▁th"
    and writes it again (token healing): a seeded request wrote another text than generate, and with "▁the"
    favoured "go to th the" where generate writes "go to the". Streamed or not, n = 2, each choice is now
    generate's text past the prompt; echo gives the whole prompt, and its tokens join to the text."""
    vocab = healing_model.vocab
    bias = {vocab.processor.piece_to_id(p): 100 for p in ("▁the", "杜甫")} if favoured else None
    options = {"max_tokens": 12, "seed": 4, "n": 2, "temperature": 1.0}
    extra = {"logit_bias": {str(k): v for k, v in bias.items()}} if bias else {}
    made = [
        generate(healing_model, p, length=12, num_samples=2, random_seed=4, logit_bias=bias, temperature=1.0)
        for p in HEALED_PROMPTS
    ]
    wanted = [text[len(p) :] for p, texts in zip(HEALED_PROMPTS, made) for text in texts]
    if favoured:
        assert all(text.startswith(("e", "甫")) for text in wanted)  # the word written whole, not again
    with running(create_app({"spm": lambda: healing_model}, ServeConfig())) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        reply = client.completions.create(model="spm", prompt=HEALED_PROMPTS, **options, **extra)
        assert [c.text for c in sorted(reply.choices, key=lambda c: c.index)] == wanted
        assert reply.usage.completion_tokens == sum(map(len, wanted))
        assert reply.usage.prompt_tokens == sum(map(len, HEALED_PROMPTS))
        chunks = client.completions.create(model="spm", prompt=HEALED_PROMPTS, stream=True, **options, **extra)
        texts = collections.defaultdict(str)
        for chunk in chunks:
            for choice in chunk.choices:
                texts[choice.index] += choice.text
        assert [texts[i] for i in range(4)] == wanted
        echoed = client.completions.create(
            model="spm", prompt=HEALED_PROMPTS, echo=True, logprobs=2, **options, **extra
        )
        for choice in echoed.choices:
            prompt = HEALED_PROMPTS[choice.index // 2]
            assert choice.text == prompt + wanted[choice.index]
            assert "".join(choice.logprobs.tokens) == choice.text and all(choice.logprobs.tokens)
            if favoured:  # the healed piece: its text past the prompt's, its logprob the whole piece's, listed as drawn
                first = len(prompt_tokens_of(healing_model, prompt))
                token, logprob = choice.logprobs.tokens[first], choice.logprobs.token_logprobs[first]
                drawn = " the" if prompt.endswith("th") else "杜甫"
                assert token == drawn[-1] and choice.logprobs.top_logprobs[first][drawn] == logprob


def prompt_tokens_of(model, prompt: str) -> list:
    from charlm.serve.engine import prompt_tokens

    return prompt_tokens(model, prompt, 0)


def test_a_banned_last_piece_or_a_form_is_not_healed_as_in_generate(healing_model):
    """As `charlm.generate`: a prompt whose last piece the logit bias bans is read as it is (the piece could
    not be written again), and a template places each piece itself. A copy whose state tells the prompt
    (`state_telling`): the untrained one's seeded text was the same from a prompt read wrongly."""
    model = state_telling(copy.deepcopy(healing_model))
    vocab = model.vocab
    banned = {vocab.processor.piece_to_id("▁th"): -100}
    made = generate(model, "go to th", length=12, random_seed=4, logit_bias=banned, temperature=1.0)[0]
    with running(create_app({"spm": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        bias = {str(k): v for k, v in banned.items()}
        reply = client.completions.create(model="spm", prompt="go to th", max_tokens=12, seed=4, logit_bias=bias)
        assert reply.choices[0].text == made[len("go to th") :]


def test_requests_healing_different_prompts_at_once_on_two_engines_of_one_vocabulary_write_generates_texts(
    healing_model, monkeypatch
):
    """A vocabulary's healing masks (`TextIndex.healing`) are shared by every engine on its model: one
    model served under two names is two engine threads healing through one cache. Prompts ending inside
    some 16 different pieces, each sent to both names at once (n=2, streamed and not), the cache kept
    to 2 masks so that nearly every healing step evicts one: each choice is `charlm.generate`'s text."""
    monkeypatch.setattr("charlm.pieces.HEALING_MASKS", 2)
    vocab, healed = healing_model.vocab, {}
    for line in ("go to the sea, then the other thing; that is this.", "国破山河在，城春草木深。"):
        for end in range(2, len(line) + 1):  # the first prompt that heals each piece
            healed.setdefault(healed_seed(vocab, vocab.encode(line[:end])), line[:end])
    healed.pop("", None)
    prompts = list(healed.values())
    assert len(prompts) >= 15
    options = {"max_tokens": 8, "n": 2, "temperature": 1.0}
    wanted = [
        [
            text[len(prompt) :]
            for text in generate(healing_model, prompt, length=8, num_samples=2, random_seed=seed, temperature=1.0)
        ]
        for seed, prompt in enumerate(prompts)
    ]

    async def together(url: str) -> list:
        client = AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)

        async def texts(model: str, seed: int, stream: bool) -> list[str]:
            reply = await client.completions.create(
                model=model, prompt=prompts[seed], seed=seed, stream=stream, **options
            )
            made = collections.defaultdict(str)
            for chunk in [c async for c in reply] if stream else [reply]:
                for choice in chunk.choices:
                    made[choice.index] += choice.text
            return [made[0], made[1]]

        try:
            calls = [
                texts(model, seed, (seed + i) % 2 == 0) for seed in range(len(prompts)) for i, model in enumerate("ab")
            ]
            return await asyncio.wait_for(asyncio.gather(*calls), 60)
        finally:
            await client.close()

    with running(
        create_app({"a": lambda: healing_model, "b": lambda: healing_model}, ServeConfig(max_streams=256))
    ) as url:
        wait_healthy(url)
        made = asyncio.run(together(url))
    assert made == [texts for texts in wanted for _ in "ab"]


def test_a_healed_prompt_with_a_template_a_stop_or_a_piece_inside_it_is_as_generate(healing_model):
    """Token healing meets the server's other rules as it meets generate's: with a template nothing is
    healed (the template places each piece); a stop text is looked for in the generated text only, never
    in the prompt's text written again (" th" + "e" holds "the" but generate does not stop at once); and a
    piece whose text lies wholly inside the prompt's (" " of " th") is the prompt's: no token for it, the
    pieces past the prompt reported as drawn. Each as `charlm.generate` writes it with that seed."""
    vocab = healing_model.vocab
    prompt, options = "go to th", {"seed": 4, "temperature": 1.0}
    the, space = ({vocab.processor.piece_to_id(p): 100} for p in ("▁the", "▁"))
    templated = generate(healing_model, prompt, random_seed=4, template="___ __", temperature=1.0)[0]
    stopped = generate(healing_model, prompt, length=12, random_seed=4, stop="the", logit_bias=the, temperature=1.0)[0]
    assert "the" not in stopped[len(prompt) :] or stopped.endswith("the")  # generate's stop: in its own text
    inside = generate(healing_model, prompt, length=12, random_seed=4, logit_bias=space, temperature=1.0)[0]
    with running(create_app({"spm": lambda: healing_model}, ServeConfig())) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        reply = client.completions.create(model="spm", prompt=prompt, extra_body={"template": "___ __"}, **options)
        assert reply.choices[0].text == templated[len(prompt) :]
        bias = {str(k): v for k, v in the.items()}
        reply = client.completions.create(
            model="spm", prompt=prompt, max_tokens=12, stop="the", logit_bias=bias, **options
        )
        assert reply.choices[0].text == stopped[len(prompt) :].removesuffix("the")  # the server's stop is left out
        bias = {str(k): v for k, v in space.items()}
        for stream in (False, True):
            reply = client.completions.create(
                model="spm", prompt=prompt, max_tokens=12, logit_bias=bias, logprobs=1, stream=stream, **options
            )
            choices = list(reply) if stream else [reply]
            text = "".join(chunk.choices[0].text for chunk in choices)
            tokens = [token for chunk in choices for token in chunk.choices[0].logprobs.tokens]
            assert text == inside[len(prompt) :] and "".join(tokens) == text and all(tokens)


def test_a_run_named_with_a_byte_that_is_not_utf8_is_served_under_an_id_json_can_say(fox_file, tiny, tmp_path):
    """A run folder named with a byte that is not UTF-8 (`--out $'\\xff'`, a corpus named caf\\xe9.txt) gave its
    model an id holding a lone surrogate: every answer naming the model was a 500, and a traceback in the log."""
    from charlm.serve import model_loaders

    train(fox_file, out=str(tmp_path / "caf\udce9"), **tiny)
    with TestClient(create_app(model_loaders([str(tmp_path / "caf\udce9")], "cpu")[0], ServeConfig())) as test_client:
        deadline = time.time() + 30
        while test_client.get("/health").status_code == 503 and time.time() < deadline:  # the model loading
            time.sleep(0.02)
        models = test_client.get("/v1/models")
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "caf\\udce9", models.text
        body = {"model": "caf\\udce9", "prompt": "the", "max_tokens": 2}
        answer = test_client.post("/v1/completions", json=body)
        assert answer.status_code == 200 and answer.json()["model"] == "caf\\udce9", answer.text


@pytest.mark.parametrize(
    "host, message",
    [
        ("", r"^host is empty \(a shell variable left unset gives an empty one\): give the address to listen on"),
        (" ", r"^host is empty"),
        ("\udcff", r"^host '\\udcff' is no address nor host name: give an address such as 127.0.0.1"),
    ],
)
def test_an_empty_or_undecodable_host_is_refused_before_listening(host, message):
    """`--host ''` (`--host "$HOST"`, HOST unset) listened on every network, where an empty --api-key is
    refused for that reason; a byte of argv that is not UTF-8 in --host ended in a TypeError traceback."""
    with pytest.raises(CharLMError, match=message):
        ServeConfig(host=host)
