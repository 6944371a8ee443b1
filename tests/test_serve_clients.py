"""`charlm serve` as the widely used OpenAI clients other than the `openai` package call it: LangChain,
LiteLLM, LlamaIndex, Pydantic AI, AutoGen, OpenAI's JavaScript client and the Vercel AI SDK.

The request bodies and headers below were recorded from each client driving a served run (a logging proxy
between them), and are sent here through httpx: the answers must have what each client reads, so that a
change to the server that would break a client fails here without the client installed.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from .test_serve import KEY, server, tiny_model  # noqa: F401


@pytest.mark.parametrize(
    ("method", "path", "meant"),
    [
        ("POST", "/chat/completions", "/v1/chat/completions"),
        ("POST", "/completions", "/v1/completions"),
        ("POST", "/responses", "/v1/responses"),
        ("GET", "/models", "/v1/models"),
        ("GET", "/models/tiny", "/v1/models/tiny"),
        ("POST", "/v1/v1/chat/completions", "/v1/chat/completions"),
    ],
)
def test_a_path_outside_v1_is_told_the_path_under_it(server, method, path, meant):  # noqa: F811
    """LangChain, LiteLLM and LlamaIndex given a base URL without /v1 (`http://127.0.0.1:8080`, as a local
    server's address reads) POST /chat/completions, and were told only "no such endpoint; GET /openapi.json
    lists this server's" (LangChain raised it as OpenAIModelNotFoundError). The 404 now names the route
    under /v1 and the base URL to give; a client that adds /v1 to a base URL ending in it, too."""
    url = server[0]
    answer = httpx.request(method, url + path, headers={"Authorization": f"Bearer {KEY}"}, json={})
    assert answer.status_code == 404
    base = f"base URL {url}/v1" + (f" (or {url}, for a client that adds /v1 itself)" if path.startswith("/v1/") else "")
    expected = f"{method} {path}: no such endpoint; did you mean {method} {meant}? Give an OpenAI client the {base}"
    assert answer.json()["error"]["message"] == expected


def test_the_openai_client_given_a_base_url_without_v1_is_told_the_one_to_give(server):  # noqa: F811
    """What a user of an OpenAI client sees (`client.chat.completions.create` raises it), and a path that is
    no route under /v1 either is told where the routes are listed, as before."""
    client = OpenAI(base_url=server[0], api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}], max_tokens=3)
    assert f"did you mean POST /v1/chat/completions? Give an OpenAI client the base URL {server[0]}/v1" in str(
        caught.value
    )
    unknown = httpx.get(f"{server[0]}/favicon.ico").json()["error"]["message"]
    assert unknown == "GET /favicon.ico: no such endpoint; GET /openapi.json lists this server's"


# The headers each client sent (its key aside: the server's is added), as recorded.
OPENAI_PYTHON = {  # openai 3.63.0 (Python), which LangChain, LiteLLM, LlamaIndex, Pydantic AI and AutoGen drive
    "Accept-Encoding": "gzip, deflate, zstd",
    "Connection": "keep-alive",
    "Accept": "application/json",
    "Content-Type": "application/json",
    "User-Agent": "OpenAI/Python 3.63.0",
    "X-Stainless-Lang": "python",
    "X-Stainless-Package-Version": "3.63.0",
    "X-Stainless-OS": "Linux",
    "X-Stainless-Arch": "x64",
    "X-Stainless-Runtime": "CPython",
    "X-Stainless-Runtime-Version": "3.11.7",
    "X-Stainless-Async": "async:asyncio",
    "X-Stainless-Raw-Response": "true",
    "X-Stainless-Retry-Count": "0",
    "X-Stainless-Read-Timeout": "600.0",
}
LANGCHAIN = OPENAI_PYTHON | {"OpenAI-Organization": "org-x", "X-Title": "t"}  # its openai_organization, default_headers
LITELLM_OWN = {  # litellm 1.110.2's own httpx client, for litellm.responses
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate, zstd",
    "Connection": "keep-alive",
    "User-Agent": "litellm/1.110.2",
    "Content-Type": "application/json",
}
PYDANTIC_AI = OPENAI_PYTHON | {"User-Agent": "pydantic-ai/2.78.0", "Accept-Encoding": "gzip, deflate"}
OPENAI_JS = {  # openai 6.49.0 (JavaScript), on Node 20's fetch, given an organization and a project
    "connection": "keep-alive",
    "accept": "application/json",
    "user-agent": "OpenAI/JS 6.49.0",
    "x-stainless-retry-count": "0",
    "x-stainless-lang": "js",
    "x-stainless-package-version": "6.49.0",
    "x-stainless-runtime": "node",
    "x-stainless-runtime-version": "v20.20.2",
    "openai-organization": "org-x",
    "openai-project": "proj-y",
    "content-type": "application/json",
    "accept-language": "*",
    "sec-fetch-mode": "cors",
    "accept-encoding": "gzip, deflate",
}
AI_SDK = {  # the Vercel AI SDK (ai 6.0.333; @ai-sdk/openai-compatible 2.0.92 and @ai-sdk/openai 3.0.141 alike)
    "connection": "keep-alive",
    "content-type": "application/json",
    "user-agent": "ai-sdk/openai-compatible/2.0.92 ai-sdk/provider-utils/4.0.65 runtime/node.js/v20.20.2",
    "accept": "*/*",
    "accept-language": "*",
    "sec-fetch-mode": "cors",
    "accept-encoding": "gzip, deflate",
}
ALICE = [{"content": "Alice", "role": "user"}]
SYSTEM_AND_USER = [{"role": "system", "content": "Be Alice."}, {"role": "user", "content": "Hello"}]

LANGCHAIN_LLM = {  # what langchain-openai's OpenAI() sends whatever it is given: its defaults
    "frequency_penalty": 0, "logprobs": None, "n": 1, "presence_penalty": 0, "seed": None, "temperature": 0.7, "top_p": 1,
}  # fmt: skip
SAMPLED = {"seed": 1, "temperature": 0.7, "top_p": 0.9}  # what each client was given, with a stop
SETTINGS = SAMPLED | {"stop": ["\n\n"]}
LANGCHAIN_INPUT = [{"content": "Alice", "role": "user", "type": "message"}]  # its Responses API input
AI_SDK_INPUT = [{"role": "user", "content": [{"type": "input_text", "text": "Alice"}]}]
AUTOGEN_USER = {"role": "user", "name": "user", "content": "Hello"}

# What each client sent for its basic uses (a completion, a chat, a streamed chat, with temperature, top_p,
# max_tokens, stop, seed and n, sync and async), as recorded, and the headers it sent them with. Each body
# named the served model, as the test names `tiny`; its endpoint is the one its fields are for (`messages`:
# chat, `prompt`: completions, `input`: the Responses API).
RECORDED = {
    "langchain-openai 1.8.1 (ChatOpenAI, OpenAI)": (LANGCHAIN, [
        {"stream": False, "messages": SYSTEM_AND_USER, "max_completion_tokens": 40, **SETTINGS},
        {"stream": True, "messages": ALICE, "max_completion_tokens": 40, **SETTINGS},
        {"stream": True, "messages": ALICE, "max_completion_tokens": 20, "stream_options": {"include_usage": True}},
        {"stream": False, "messages": ALICE, "logprobs": True, "max_completion_tokens": 5, "top_logprobs": 2},
        {"stream": False, "messages": ALICE, "max_completion_tokens": 10, "n": 2},
        {"stream": True, "messages": ALICE, "max_completion_tokens": 5, "n": 2},
        {"stream": False, "messages": [{"content": "s", "role": "system"}, {"content": "h", "role": "user"},
         {"content": "a", "role": "assistant"}, {"content": "h2", "role": "user"}],
         "frequency_penalty": 0.1, "logit_bias": {"3": -100}, "max_completion_tokens": 10, "presence_penalty": 0.1,
         "user": "u"},
        {"stream": False, "messages": ALICE, "max_completion_tokens": 10, "top_k": 5, "repetition_penalty": 1.1},
        {"stream": False, "messages": ALICE, "max_completion_tokens": 5, "temperature": 0.0},
        {"stream": False, "max_output_tokens": 20, "input": LANGCHAIN_INPUT},  # use_responses_api=True
        {"stream": True, "max_output_tokens": 20, "input": LANGCHAIN_INPUT},
        {"prompt": ["Alice"], **LANGCHAIN_LLM, "max_tokens": 256},
        {"prompt": ["Alice was"], **LANGCHAIN_LLM, "max_tokens": 40, **SAMPLED, "stop": ["e"]},
        {"prompt": ["a", "b", "c"], **LANGCHAIN_LLM, "max_tokens": 40, **SAMPLED},  # OpenAI().batch
        {"prompt": ["x"], **LANGCHAIN_LLM, "logprobs": 2, "max_tokens": 5},
        {"prompt": ["Alice"], **LANGCHAIN_LLM, "echo": True, "frequency_penalty": 0.1, "logit_bias": {"3": -100.0},
         "max_tokens": 5, "presence_penalty": 0.1, "user": "u"},
        {"stream": True, "prompt": "Alice", **LANGCHAIN_LLM, "max_tokens": 40, **SAMPLED},
    ]),
    "litellm 1.110.2 (completion, acompletion, text_completion)": (OPENAI_PYTHON, [
        {"messages": ALICE, **SETTINGS, "max_tokens": 30},
        {"messages": ALICE, "n": 2, "max_tokens": 10},
        {"messages": ALICE, "max_tokens": 5, "logprobs": True, "top_logprobs": 2},
        {"messages": ALICE, "max_completion_tokens": 10},
        {"messages": ALICE, "max_tokens": 30, "stream": True, "stream_options": {"include_usage": True}},
        {"messages": ALICE, "max_tokens": 30, "stream": True},
        {"prompt": "Alice was", "max_tokens": 20, "stop": ["\n"], "temperature": 0.5},
        {"stream": True, "prompt": "Alice", "max_tokens": 20},
    ]),
    "litellm 1.110.2 (responses, through its own httpx client)": (LITELLM_OWN, [
        {"input": "Alice", "max_output_tokens": 20},
    ]),
    "llama-index-llms-openai-like 0.8.1 (OpenAILike)": (OPENAI_PYTHON, [
        {"stream": False, "messages": SYSTEM_AND_USER, "max_tokens": 30, **SETTINGS},
        {"stream": True, "messages": SYSTEM_AND_USER, "max_tokens": 30, **SETTINGS},
        {"stream": False, "messages": SYSTEM_AND_USER, "logprobs": True, "max_tokens": 5, "temperature": 0.1,
         "top_logprobs": 2},
        {"stream": False, "max_tokens": 30, "temperature": 0.7, "prompt": "system: Be Alice.\nuser: Hello\nassistant: "},
        {"stream": True, "prompt": "Alice", "max_tokens": 30, "temperature": 0.7},
    ]),
    "pydantic-ai-slim 2.78.0 (OpenAIChatModel, OpenAIResponsesModel)": (PYDANTIC_AI, [
        {"stream": False, "messages": SYSTEM_AND_USER, "max_completion_tokens": 20, **SETTINGS},
        {"stream": True, "messages": SYSTEM_AND_USER, "max_completion_tokens": 20, **SETTINGS,
         "stream_options": {"include_usage": True}},
        {"stream": False, "input": [{"role": "user", "content": "Hello"}], "max_output_tokens": 20},
    ]),
    "autogen-ext 0.7.5 (OpenAIChatCompletionClient)": (OPENAI_PYTHON, [
        {"stream": False, "messages": [SYSTEM_AND_USER[0], AUTOGEN_USER], "max_tokens": 20, "seed": 1,
         "temperature": 0.7},
        {"stream": True, "messages": [AUTOGEN_USER], "max_tokens": 20, "seed": 1, "temperature": 0.7},
    ]),
    "openai 6.49.0 (JavaScript)": (OPENAI_JS, [
        {"messages": ALICE, "max_tokens": 20, **SETTINGS, "n": 2},
        {"messages": ALICE, "max_completion_tokens": 20, "stream": True, "stream_options": {"include_usage": True}},
        {"prompt": "Alice", "max_tokens": 20, "stream": True},
        {"input": "Alice", "max_output_tokens": 20},
        {"input": "Alice", "max_output_tokens": 20, "stream": True},
    ]),
    "ai 6.0.333 (Vercel AI SDK: generateText, streamText)": (AI_SDK, [
        {"max_tokens": 20, **SETTINGS, "messages": ALICE},
        {"max_tokens": 20, "messages": SYSTEM_AND_USER},
        {"max_tokens": 20, "messages": ALICE, "stream": True, "stream_options": {"include_usage": True}},
        {"max_tokens": 20, "prompt": "user:\nAlice\n\nassistant:\n", "stop": ["\nuser:"]},
        {"max_tokens": 20, "prompt": "user:\nAlice\n\nassistant:\n", "stop": ["\nuser:"], "stream": True,
         "stream_options": {"include_usage": True}},
        {"max_output_tokens": 20, "input": AI_SDK_INPUT},
        {"max_output_tokens": 20, "stream": True, "input": AI_SDK_INPUT},
    ]),
}  # fmt: skip
ENDPOINTS = {"messages": "/v1/chat/completions", "prompt": "/v1/completions", "input": "/v1/responses"}


def events_of(text: str) -> list[tuple[str | None, str]]:
    """A stream's server-sent events: (its `event:` name or None, its `data:`), in order."""
    events, name = [], None
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, line.removeprefix("data: ")))
        elif not line:
            name = None
    return events


def chunks_of(text: str) -> list[dict]:
    """A completions or chat stream's chunks, which end in `data: [DONE]` (what every client stops at)."""
    *chunks, (_, done) = events_of(text)
    assert done == "[DONE]"
    return [json.loads(data) for _, data in chunks]


def samples(body: dict) -> int:
    prompt = body.get("prompt")
    return (body.get("n") or 1) * (len(prompt) if isinstance(prompt, list) else 1)


def check_usage(usage: dict, made: int) -> None:
    """The usage every client reads (LangChain's usage_metadata, LiteLLM's, the AI SDK's): three counts."""
    assert usage["completion_tokens"] == made and usage["prompt_tokens"] >= 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + made


def check_choice_ends(choices: list[dict], body: dict) -> None:
    """Every sample once, by index, ended by `stop` or `length`: what each client maps to its own reasons."""
    assert sorted(choice["index"] for choice in choices) == list(range(samples(body)))
    assert all(choice["finish_reason"] in ("stop", "length") for choice in choices)


def check_chat(body: dict, answer: httpx.Response) -> None:
    reply = answer.json()
    assert reply["object"] == "chat.completion" and reply["model"] == body["model"] and reply["id"]
    assert isinstance(reply["created"], int) and reply["system_fingerprint"]
    check_choice_ends(reply["choices"], body)
    for choice in reply["choices"]:
        assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
        if body.get("logprobs"):  # LangChain's response_metadata["logprobs"], LlamaIndex's and LiteLLM's too
            content = choice["logprobs"]["content"]
            assert "".join(entry["token"] for entry in content) == choice["message"]["content"]
            assert all({"token", "logprob", "bytes", "top_logprobs"} <= entry.keys() for entry in content)
    made = sum(len(choice["message"]["content"]) for choice in reply["choices"])
    check_usage(reply["usage"], made)


def check_chat_stream(body: dict, answer: httpx.Response) -> None:
    chunks = chunks_of(answer.text)
    asked_usage = (body.get("stream_options") or {}).get("include_usage")
    if asked_usage:  # the last chunk, of no choices, has the usage; every other chunk `usage: null`
        *chunks, last = chunks
        assert last["choices"] == [] and all("usage" in chunk and chunk["usage"] is None for chunk in chunks)
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1 and all(chunk["model"] == body["model"] for chunk in chunks)
    texts, ends = {}, []
    for chunk in chunks:
        for choice in chunk["choices"]:
            first = choice["index"] not in texts
            assert ("role" in choice["delta"]) == first and choice["delta"].get("role", "assistant") == "assistant"
            assert choice["index"] not in [index for index, _ in ends]  # nothing after a choice's end
            texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
            if choice["finish_reason"]:
                ends.append((choice["index"], choice))
    check_choice_ends([choice for _, choice in ends], body)
    if asked_usage:
        check_usage(last["usage"], sum(map(len, texts.values())))


def check_completion(body: dict, answer: httpx.Response) -> None:
    reply = answer.json()
    assert reply["object"] == "text_completion" and reply["model"] == body["model"] and reply["id"]
    check_choice_ends(reply["choices"], body)
    for choice in reply["choices"]:
        assert isinstance(choice["text"], str)
        if body.get("logprobs") is not None:  # LangChain's generation_info["logprobs"]
            logprobs = choice["logprobs"]
            assert "".join(logprobs["tokens"]) == choice["text"]
            assert len(logprobs["token_logprobs"]) == len(logprobs["top_logprobs"]) == len(logprobs["text_offset"])
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    echoed = (body.get("n") or 1) * sum(map(len, prompts)) if body.get("echo") else 0
    check_usage(reply["usage"], sum(len(choice["text"]) for choice in reply["choices"]) - echoed)


def check_completion_stream(body: dict, answer: httpx.Response) -> None:
    chunks = chunks_of(answer.text)
    if (body.get("stream_options") or {}).get("include_usage"):
        *chunks, last = chunks
        assert last["choices"] == []
        check_usage(last["usage"], sum(len(choice["text"]) for chunk in chunks for choice in chunk["choices"]))
    assert all(chunk["object"] == "text_completion" and chunk["choices"] for chunk in chunks)
    check_choice_ends([choice for chunk in chunks for choice in chunk["choices"] if choice["finish_reason"]], body)


def check_response_object(body: dict, response: dict) -> str:
    """A whole response as the clients read it (the `output_text` they sum, LangChain's content blocks, its
    usage_metadata); returns its text."""
    assert response["object"] == "response" and response["model"] == body["model"] and response["id"]
    assert response["status"] in ("completed", "incomplete")
    if response["status"] == "incomplete":
        assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    [message] = response["output"]
    assert message["type"] == "message" and message["role"] == "assistant" and message["id"]
    [part] = message["content"]
    assert part["type"] == "output_text" and part["annotations"] == []
    usage = response["usage"]
    assert usage["output_tokens"] == len(part["text"]) and usage["total_tokens"] == usage["input_tokens"] + len(
        part["text"]
    )
    return part["text"]


def check_response(body: dict, answer: httpx.Response) -> None:
    check_response_object(body, answer.json())


def check_response_stream(body: dict, answer: httpx.Response) -> None:
    """Each event named by its `type` and numbered in order, the text in deltas, then the whole response
    (what the AI SDK and the JavaScript client's stream helpers wait for)."""
    events = [(name, json.loads(data)) for name, data in events_of(answer.text)]
    assert [data["type"] for _, data in events] == [name for name, _ in events]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    kinds = [name for name, _ in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    text = check_response_object(body, events[-1][1]["response"])
    assert "".join(data["delta"] for name, data in events if name == "response.output_text.delta") == text


CHECKS = {
    ("/v1/chat/completions", False): check_chat,
    ("/v1/chat/completions", True): check_chat_stream,
    ("/v1/completions", False): check_completion,
    ("/v1/completions", True): check_completion_stream,
    ("/v1/responses", False): check_response,
    ("/v1/responses", True): check_response_stream,
}


@pytest.mark.parametrize("client", RECORDED)
def test_what_each_client_sends_is_answered_with_what_it_reads(server, client):  # noqa: F811
    """Every request the client sent in its basic uses is a 200 with the fields it reads, streamed or not,
    its own headers and all (an organization and a project, `Accept: */*`, compressed answers accepted, the
    browser-like `sec-fetch-mode` of Node's fetch): each client worked against `charlm serve` as recorded."""
    headers, bodies = RECORDED[client]
    for recorded in bodies:
        body = {"model": "tiny", **recorded}
        [path] = [ENDPOINTS[field] for field in body if field in ENDPOINTS]
        answer = httpx.post(server[0] + path, json=body, headers=headers | {"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 200, (path, body, answer.text)
        CHECKS[path, bool(body.get("stream"))](body, answer)
