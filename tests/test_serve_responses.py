"""`POST /v1/responses`: OpenAI's Responses API, what current clients and agent frameworks call first,
through the official `openai` client. It is the chat adapter on the same engine: the same prompt for
the same messages, the same checks, guards and limits (docs/serve.md)."""

from __future__ import annotations

import collections
import concurrent.futures
import inspect
import itertools
import json
import re
import warnings

import httpx
import openai
import pytest
from openai import OpenAI

from charlm.serve import protocol, responses_api, schema, token_labels
from charlm.serve.api_error import APIError
from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig

from .test_serve import KEY, client, every_step_a_chunk, metrics, server, tiny_model  # noqa: F401

MESSAGES = [{"role": "system", "content": "be brief."}, {"role": "user", "content": "hello there"}]


def chat_text(api: OpenAI, **options) -> str:
    reply = api.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, **options)
    return reply.choices[0].message.content


def test_a_response_writes_what_chat_writes_for_the_same_messages(client):  # noqa: F811
    """`instructions` is a system message before `input`; a list of messages (text parts, a developer's
    role) is read as chat reads them; the reply echoes what OpenAI's does."""
    expected = chat_text(client, max_tokens=30)
    reply = client.responses.create(
        model="tiny", instructions="be brief.", input="hello there", max_output_tokens=30, temperature=0,
        metadata={"user": "u1"},
    )  # fmt: skip
    assert reply.object == "response" and reply.id.startswith("resp_") and reply.output_text == expected
    assert (reply.instructions, reply.max_output_tokens, reply.metadata) == ("be brief.", 30, {"user": "u1"})
    prompt_chars = len("be brief.\n\nhello there\n\n")
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (
        prompt_chars,
        30,
        prompt_chars + 30,
    )
    [message] = reply.output
    assert (message.type, message.role, message.content[0].type) == ("message", "assistant", "output_text")
    items = [
        {"role": "developer", "content": [{"type": "input_text", "text": "be brief."}]},
        {"type": "message", "role": "user", "content": "hello there"},
    ]
    listed = client.responses.create(model="tiny", input=items, max_output_tokens=30, temperature=0)
    assert listed.output_text == expected


def test_a_response_streamed_is_the_same_text_and_every_event_parses(client, server, monkeypatch):  # noqa: F811
    """The client's stream helper parses every event (it refuses one out of order, or a response it
    never saw completed); the deltas join to the whole response's text."""
    every_step_a_chunk(monkeypatch, server)
    template = "______ _____ ____"  # the template ends the text: `completed`, not cut by its length
    options = {"model": "tiny", "input": MESSAGES, "temperature": 0, "extra_body": {"template": template}}
    whole = client.responses.create(**options)
    with client.responses.stream(**options) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(kinds) == 8 + len(deltas) and len(deltas) > 2
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(deltas) == final.output_text == whole.output_text and len(whole.output_text) == len(template)
    assert final.status == whole.status == "completed" and final.incomplete_details is None
    assert final.usage.output_tokens == len(template) and final.id == events[0].response.id


def test_max_output_tokens_makes_the_response_incomplete_streamed_or_not(client):  # noqa: F811
    """OpenAI's response cut by `max_output_tokens` is `incomplete` with that reason, and its stream ends
    with `response.incomplete` (`response.completed` only for one that was not cut)."""
    reply = client.responses.create(model="tiny", input="the ", max_output_tokens=5)
    assert reply.status == "incomplete" and reply.incomplete_details.reason == "max_output_tokens"
    assert len(reply.output_text) == 5 and reply.output[0].status == "incomplete"
    events = list(client.responses.create(model="tiny", input="the ", max_output_tokens=5, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert events[-1].response.output[0].content[0].text == "".join(
        event.delta for event in events if event.type == "response.output_text.delta"
    )


FUNCTION = {"type": "function", "name": "f", "parameters": {"type": "object"}}
LOGPROBS = "message.output_text.logprobs"


def test_include_logprobs_gives_each_characters_logprobs_as_chat_does_streamed_or_not(client, server, monkeypatch):  # noqa: F811
    """`include: ["message.output_text.logprobs"]` with `top_logprobs` was a 400: the output_text part
    now lists each character's {token, logprob, bytes, top_logprobs}, the entries chat's logprobs have
    for the same messages, and a stream's deltas carry their own characters' (joined: the whole's)."""
    every_step_a_chunk(monkeypatch, server)
    asked = {"model": "tiny", "input": "the ", "max_output_tokens": 12, "temperature": 0, "top_logprobs": 3}
    reply = client.responses.create(**asked, include=[LOGPROBS])
    [part] = reply.output[0].content
    logprobs = [entry.model_dump() for entry in part.logprobs]
    assert [entry["token"] for entry in logprobs] == list(part.text) and len(part.text) == 12
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "the "}], max_tokens=12, temperature=0, logprobs=True,
        top_logprobs=3,
    )  # fmt: skip
    assert logprobs == [entry.model_dump() for entry in chat.choices[0].logprobs.content]
    assert all(
        len(entry["top_logprobs"]) == 3 and entry["bytes"] == list(entry["token"].encode()) for entry in logprobs
    )
    assert reply.top_logprobs == 3
    events = list(client.responses.create(**asked, include=[LOGPROBS], stream=True))
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 2 and all(len(event.logprobs) == len(event.delta) for event in deltas)
    streamed = [entry.token for event in deltas for entry in event.logprobs]
    assert streamed == list(part.text) and events[-1].response.output[0].content[0].logprobs == part.logprobs
    done = next(event for event in events if event.type == "response.output_text.done")
    assert [entry.model_dump() for entry in done.logprobs] == logprobs
    plain = client.responses.create(**{**asked, "top_logprobs": None})  # not asked: none, as OpenAI's
    assert plain.output[0].content[0].logprobs == [] and plain.output_text == part.text


def test_streams_logprobs_are_written_to_json_once_while_many_end_at_once(server, monkeypatch):  # noqa: F811
    """A stream's four closing events (output_text.done, content_part.done, output_item.done, completed) each
    repeat every logprobs entry of its text. Each entry is written to JSON once, in its delta, and the closing
    events put that JSON in their place: dumped anew in each, on the event loop, 64 streams of top_logprobs 20
    ending together held every stream and /health for seconds. Told by what answers.py writes, not by time, with
    8 streams at once, each given its own."""
    from charlm.serve import answers

    every_step_a_chunk(monkeypatch, server)
    dumped = []

    class RecordedJSON:
        def __getattr__(self, name):
            return getattr(json, name)

        def dumps(self, value, **options):
            text = json.dumps(value, **options)
            dumped.append(len(text))
            return text

    monkeypatch.setattr(answers, "json", RecordedJSON())
    body = {"model": "tiny", "input": "the ", "max_output_tokens": 60, "stream": True, "top_logprobs": 20}
    body["include"] = [LOGPROBS]

    def stream(seed: int) -> list[dict]:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.stream("POST", f"{server[0]}/v1/responses", json={**body, "seed": seed}, headers=headers) as r:
            return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        streams = list(pool.map(stream, range(8)))
    written = 0
    for events in streams:
        deltas = [entry for e in events if e["type"] == "response.output_text.delta" for entry in e["logprobs"]]
        done = next(e for e in events if e["type"] == "response.output_text.done")
        final = events[-1]["response"]["output"][0]["content"][0]
        assert events[-1]["type"] == "response.incomplete" and len(deltas) == 60
        assert deltas == done["logprobs"] == final["logprobs"] and "".join(d["token"] for d in deltas) == final["text"]
        written += len(json.dumps(deltas, ensure_ascii=False))
    assert len({json.dumps(events[-1]["response"]["output"]) for events in streams}) == 8  # none another's
    assert sum(dumped) < 1.5 * written, (sum(dumped), written)  # each entry once, and the events' small fields


def test_a_response_echoes_the_users_strings_and_its_service_tier(client):  # noqa: F811
    """`user`, `safety_identifier` and `prompt_cache_key` were taken but echoed null, and `service_tier`
    left out: a response echoes them as OpenAI's does (the tier that served it: "default")."""
    reply = client.responses.create(
        model="tiny", input="a", max_output_tokens=2, user="u1", safety_identifier="s1", prompt_cache_key="k1",
        service_tier="auto",
    )  # fmt: skip
    assert (reply.user, reply.safety_identifier, reply.prompt_cache_key) == ("u1", "s1", "k1")
    assert reply.service_tier == "default" and reply.top_logprobs == 0


def test_the_users_strings_are_bounded_as_openai_bounds_them_on_responses_and_chat(client):  # noqa: F811
    """A 200,000-character `user`, `safety_identifier` or `prompt_cache_key` was taken and echoed back in
    every stream event that repeats the response: each is a 400 past OpenAI's 64 characters for
    safety_identifier, a metadata value's 512 for the others, on chat as on responses."""
    chat = {"messages": [{"role": "user", "content": "a"}], "max_tokens": 1}
    for name, most in [("user", 512), ("safety_identifier", 64), ("prompt_cache_key", 512)]:
        reply = client.responses.create(model="tiny", input="a", max_output_tokens=1, **{name: "é" * most})
        assert getattr(reply, name) == "é" * most
        for create, body in [(client.responses.create, {"input": "a"}), (client.chat.completions.create, chat)]:
            with pytest.raises(openai.BadRequestError) as caught:
                create(model="tiny", **body, **{name: "x" * 200_000})
            error = caught.value.body
            assert (error["param"], error["code"]) == (name, "invalid_value")
            assert error["message"] == (
                f"{name} may hold at most {most} characters, not 200,000; send a shorter one (a hash of it)"
            )


def test_a_stored_responses_routes_say_charlm_stores_none_in_openais_shape(client, server):  # noqa: F811
    """Retrieve, delete, cancel and input_items (of a response charlm never stores) and compact were
    FastAPI's bare "Not Found" (405 for compact): each is now a 404 that says why and what to do; any
    other unknown path or method names what was asked; the key is checked first, as everywhere."""
    calls = {
        "retrieve": lambda: client.responses.retrieve("resp_1"),
        "delete": lambda: client.responses.delete("resp_1"),
        "cancel": lambda: client.responses.cancel("resp_1"),
        "input_items": lambda: client.responses.input_items.list("resp_1"),
    }
    for name, call in calls.items():
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        body = caught.value.body
        assert body["code"] == "response_not_found" and "keeps no response" in body["message"], name
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.compact(model="tiny", input="a")
    assert caught.value.body["code"] == "unsupported_endpoint" and "whole in `input`" in caught.value.body["message"]
    url, _ = server
    unknown = httpx.get(f"{url}/v1/chat/completions/abc", headers={"Authorization": f"Bearer {KEY}"})
    assert unknown.status_code == 404 and "GET /v1/chat/completions/abc: no such endpoint" in unknown.text
    wrong_method = httpx.get(f"{url}/v1/responses")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["message"] == "GET /v1/responses: this endpoint takes POST"
    assert httpx.get(f"{url}/v1/responses/resp_1").status_code == 401


def test_the_openapi_document_gives_every_operation_its_own_id(tiny_model):  # noqa: F811
    """The stored response's routes, one function on two routes of several methods, gave FastAPI's
    "Duplicate Operation ID" warnings and an /openapi.json whose ids were not unique (invalid)."""
    app = create_app({"tiny": lambda: tiny_model}, ServeConfig())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        document = app.openapi()
    ids = [operation["operationId"] for methods in document["paths"].values() for operation in methods.values()]
    assert len(ids) == len(set(ids)) and "create_response_v1_responses_post" in ids


def test_the_post_routes_beside_a_responses_id_asked_another_way_say_they_take_post(server):  # noqa: F811
    """GET or DELETE /v1/responses/input_tokens (or compact), read as a response's id, said "no response
    input_tokens is stored here": each is a 405 saying the route takes POST, as any other route's is."""
    headers = {"Authorization": f"Bearer {KEY}"}
    for method, route in itertools.product(("GET", "DELETE"), ("input_tokens", "compact")):
        answer = httpx.request(method, f"{server[0]}/v1/responses/{route}", headers=headers)
        assert (answer.status_code, answer.headers["allow"]) == (405, "POST")
        assert answer.json()["error"]["message"] == f"{method} /v1/responses/{route}: this endpoint takes POST"
    below = httpx.get(f"{server[0]}/v1/responses/compact/x", headers=headers)
    assert below.status_code == 404 and "GET /v1/responses/compact/x: no such endpoint" in below.text
    assert httpx.get(f"{server[0]}/v1/responses/input_tokens").status_code == 401  # the key first, as everywhere


def test_a_control_character_echoed_from_a_request_is_written_as_its_escape_in_one_line(server):  # noqa: F811
    """A response id, a path or a field's name holding a newline, a NUL or U+202E (which shows what follows
    backwards) was echoed as it was: an error message that a client's log prints on two lines, or disguised.
    Each is written as its escape, as a lone surrogate already was; a wide space is shown as it is."""
    url, headers = server[0], {"Authorization": f"Bearer {KEY}"}
    stored = httpx.get(f"{url}/v1/responses/a%0Ab%00c%E2%80%AEd", headers=headers).json()["error"]["message"]
    assert stored.startswith("no response a\\nb\\x00c\\u202ed is stored here: ")
    unknown = httpx.post(f"{url}/v1/nothing%00%E2%80%AEhere", headers=headers).json()["error"]["message"]
    assert unknown == "POST /v1/nothing\\x00\\u202ehere: no such endpoint; GET /openapi.json lists this server's"
    field = httpx.post(f"{url}/v1/responses", headers=headers, json={"input": "a", "x\u2028\u3000y": 1}).json()
    assert field["error"]["message"] == "unrecognized request argument supplied: x\\u2028\u3000y"
    assert field["error"]["param"] == "x\\u2028\u3000y"


def test_an_integer_too_long_for_python_to_read_is_a_400_that_says_so(server):  # noqa: F811
    """An integer of over 4,300 digits was "not valid JSON (Exceeds the limit (4300 digits) for integer string
    conversion: ...; use sys.set_int_max_str_digits() to increase the limit)": advice for the server's code,
    not its client. It says what no field takes, and what to send."""
    body = b'{"input": "a", "top_logprobs": ' + b"9" * 5000 + b"}"
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    error = httpx.post(f"{server[0]}/v1/responses", content=body, headers=headers).json()["error"]
    assert error["message"] == (
        "the request body holds an integer of over 4,300 digits, which no field takes; send a number that fits its field"
    )
    assert "sys." not in error["message"] and error["code"] == "invalid_json"


def test_input_tokens_counts_the_characters_a_response_reads(client):  # noqa: F811
    """`client.responses.input_tokens.count` was a 404: it says the `usage.input_tokens` a response of
    the same `instructions` and `input` has, and refuses what a response refuses."""
    items = [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "hi"}]},
    ]
    counted = client.responses.input_tokens.count(model="tiny", instructions="be brief.", input=items)
    reply = client.responses.create(model="tiny", instructions="be brief.", input=items, max_output_tokens=1)
    assert counted.object == "response.input_tokens" and counted.input_tokens == reply.usage.input_tokens == len(
        "be brief.\n\nhello there\n\nhi\n\n"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.input_tokens.count(model="tiny", input="a", tools=[FUNCTION])
    assert caught.value.body["param"] == "tools"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tools": [FUNCTION]}, "tools"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, "text.format"),
        ({"include": ["reasoning.encrypted_content"]}, "include[0]"),  # a message of text is all charlm writes
        ({"include": "message.output_text.logprobs"}, "include"),
        ({"top_logprobs": 3}, "top_logprobs"),  # OpenAI's answers it with no logprobs, and no word why
        ({"include": [LOGPROBS], "top_logprobs": 21}, "top_logprobs"),
        ({"store": True}, "store"),
        ({"extra_body": {"n": 2}}, "n"),
        ({"extra_body": {"max_tokens": 5}}, "max_tokens"),  # the Responses API's is max_output_tokens
        ({"stream": True, "stream_options": {"include_usage": True}}, "stream_options.include_usage"),
        ({"max_output_tokens": 2001}, "max_output_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input[0]"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": "x" * 1001}, "input"),
        ({"input": []}, "input"),  # as chat refuses messages: [], not a prompt of one blank line
    ],
)
def test_what_charlm_cannot_do_is_a_400_naming_the_field(client, options, param):  # noqa: F811
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="tiny", **{"input": "a", **options})
    assert caught.value.body["param"] == param and caught.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "message", "param"),
    [
        ("chat/completions", {"role": "user", "contnet": "Once upon a time"}, "messages[0].contnet"),
        ("chat/completions", {"role": "user", "content": "a", "metadata": {}}, "messages[0].metadata"),
        ("responses", {"role": "user", "contnet": "Once upon a time"}, "input[0].contnet"),
        ("responses", {"role": "user", "content": "a", "metadata": {}}, "input[0].metadata"),
    ],
)
def test_an_unknown_field_of_a_message_is_refused_naming_it_not_dropped(client, path, message, param):  # noqa: F811
    """A message's fields but role and content were never looked at: `contnet` for content was served as a
    message with no text, the user's words dropped and a 200 for a continuation of nothing. OpenAI refuses
    a message's unknown field; so does charlm, naming it. The fields clients send back are still taken."""
    endpoint = client.chat.completions if path == "chat/completions" else client.responses
    key, length = ("messages", "max_tokens") if path == "chat/completions" else ("input", "max_output_tokens")
    with pytest.raises(openai.BadRequestError) as caught:
        endpoint.create(model="tiny", **{key: [message], length: 1})
    error = caught.value.body
    assert error["param"] == param and error["code"] == "unknown_parameter" and param in error["message"], error
    sent_back = [
        {"role": "user", "name": "u", "content": "a"},
        {"role": "assistant", "name": "a", "content": "b", "refusal": None, "audio": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "call_1", "content": "b"},
        {"role": "function", "name": "f", "content": "c", "function_call": None},
    ]
    responses_back = [
        {"type": "message", "role": "user", "content": "a", "status": "completed"},
        {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "b", "annotations": []}]},
    ]  # fmt: skip
    taken = sent_back if path == "chat/completions" else responses_back
    assert endpoint.create(model="tiny", **{key: taken, length: 1})


@pytest.mark.parametrize(
    ("path", "messages", "param"),
    [
        ("chat/completions", [{"role": "user"}], "messages[0].content"),
        ("chat/completions", [{"role": "user", "content": "a"}, {"role": "assistant"}], "messages[1].content"),
        ("responses", [{"role": "user"}], "input[0].content"),
        ("responses", [{"type": "message", "role": "assistant"}], "input[0].content"),
        # null is the field left out: OpenAI takes it only where it takes the field left out, and of a function's
        ("chat/completions", [{"role": "user", "content": None}], "messages[0].content"),
        ("chat/completions", [{"role": "tool", "tool_call_id": "c", "content": None}], "messages[0].content"),
        (
            "chat/completions",
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": None}],
            "messages[1].content",
        ),
        ("chat/completions", [{"role": "assistant", "content": None, "tool_calls": []}], "messages[0].content"),
        (
            "chat/completions",
            [{"role": "assistant", "tool_calls": []}],
            "messages[0].content",
        ),  # no call: OpenAI's needs one
        ("chat/completions", [{"role": "function", "name": "f"}], "messages[0].content"),
        ("responses", [{"role": "user", "content": None}], "input[0].content"),
    ],
)
def test_a_message_without_content_is_refused_naming_it(client, path, messages, param):  # noqa: F811
    """`{"role": "user"}` was served as an empty message (a 200 continuing a blank line), where OpenAI
    requires every message's content but that of an assistant's that calls a tool: a client that lost the
    text on its way got a reply to nothing. It is a 400 naming the content; such an assistant's is taken.
    A content of null was taken as nothing for every role, and `tool_calls: []` spared an assistant's its
    content: null is the field left out but for a function's, which OpenAI's spec makes nullable."""
    endpoint = client.chat.completions if path == "chat/completions" else client.responses
    key, length = ("messages", "max_tokens") if path == "chat/completions" else ("input", "max_output_tokens")
    with pytest.raises(openai.BadRequestError) as caught:
        endpoint.create(model="tiny", **{key: messages, length: 1})
    error = caught.value.body
    assert (error["param"], error["code"]) == (param, "missing_required_parameter"), error
    assert error["message"].startswith(f"{param} is required"), error
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    calling = [{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": [call]}]
    assert client.chat.completions.create(model="tiny", messages=calling, max_tokens=1).choices[0].message.content
    nulls = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "function", "name": "f", "content": None},
    ]
    assert client.chat.completions.create(model="tiny", messages=nulls, max_tokens=1).choices[0].message.content


@pytest.mark.parametrize(
    ("path", "role"),
    [("chat/completions", "usr"), ("chat/completions", "Assistant"), ("responses", "usr"), ("responses", "tool")],
)
def test_a_role_openai_does_not_know_is_refused_naming_it(client, path, role):  # noqa: F811
    """Chat took any string as a role (`usr`, `Assistant`) where OpenAI refuses one it does not know, and
    where /v1/responses already refused it: a client's misspelled role got a 200. It is a 400 naming
    `messages[0].role`, as /v1/responses names `input[0].role`; every role of OpenAI's chat is still taken."""
    endpoint = client.chat.completions if path == "chat/completions" else client.responses
    key, length = ("messages", "max_tokens") if path == "chat/completions" else ("input", "max_output_tokens")
    with pytest.raises(openai.BadRequestError) as caught:
        endpoint.create(model="tiny", **{key: [{"role": role, "content": "a"}], length: 1})
    param = f"{key}[0].role"
    error = caught.value.body
    assert (error["param"], error["code"]) == (param, "invalid_value") and error["message"].startswith(param), error
    roles = ["system", "developer", "user", "assistant", "tool", "function"]
    taken = [{"role": name, "content": name} for name in roles]
    assert client.chat.completions.create(model="tiny", messages=taken, max_tokens=1).choices[0].message.content


@pytest.mark.parametrize("item", [{"content": "a"}, {"role": None, "content": "a"}], ids=["left out", "null"])
def test_an_input_message_without_a_role_is_told_the_role_is_required(client, item):  # noqa: F811
    """An input message with no role was told "input[0].role must be one of user, assistant, system,
    developer, not null" (invalid_value), a null no client sent, where one without content is told its
    content is required (missing_required_parameter), as its schema requires both."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="tiny", input=[item], max_output_tokens=1)
    error = caught.value.body
    assert (error["param"], error["code"]) == ("input[0].role", "missing_required_parameter"), error
    assert error["message"].startswith("input[0].role is required: "), error


def test_a_refused_input_item_is_named_in_one_balanced_line(client):  # noqa: F811
    """The message refusing an input item that is not a message ended in a stray `}}`."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="tiny", input=[{"type": "function_call_output", "call_id": "c", "output": "x"}])
    message = caught.value.body["message"]
    assert message.count("{") == message.count("}") and "\n" not in message, message


@pytest.mark.parametrize(
    ("field", "value", "what_to_do"),
    [
        ("store", True, "keep what responses.create returns"),
        ("previous_response_id", "resp_1", "send the whole conversation in `input`"),
        ("conversation", "conv_1", "send the whole conversation in `input`"),
        ("background", True, "stream a long response (stream: true)"),
        ("truncation", "auto", "never cuts an input to fit (one over --max-prompt is a 400)"),
    ],
)
def test_what_needs_a_response_kept_or_an_input_cut_is_refused_saying_why(client, server, field, value, what_to_do):  # noqa: F811
    """`store: true`, `previous_response_id`, `conversation`, `background: true` and `truncation: "auto"` were
    each "NAME is not supported by charlm; leave it out", no word why nor how to do without: each now says
    it in one line, in the words a stored response's route has for why (one place words them), on
    /v1/responses and on input_tokens, which refuses what a response refuses."""
    for create in (client.responses.create, client.responses.input_tokens.count):
        with pytest.raises(openai.BadRequestError) as caught:
            create(model="tiny", input="a", extra_body={field: value})
        error = caught.value.body
        assert (error["param"], error["code"]) == (field, "unsupported_parameter")
        assert error["message"].startswith(f"{field}: charlm serve ") and "\n" not in error["message"]
        assert what_to_do in error["message"] and "leave it out" not in error["message"]
    stored = httpx.get(f"{server[0]}/v1/responses/resp_1", headers={"Authorization": f"Bearer {KEY}"})
    why = "charlm serve keeps no response (each is `store: false`)"
    assert why in stored.json()["error"]["message"] and (why in error["message"]) == (field != "truncation")


def test_chats_penalties_are_taken_at_0_and_refused_otherwise_saying_where_they_act(client):  # noqa: F811
    """OpenAI's Responses API has no presence or frequency penalty, which chat and completions now take:
    at 0 (a client's default) they change nothing; another value was "not supported by charlm; leave it
    out", which a user of chat's penalties could not make sense of. It says where they are taken."""
    plain = client.responses.create(model="tiny", input="the", max_output_tokens=20, temperature=0).output_text
    zero = {"presence_penalty": 0, "frequency_penalty": 0.0}
    assert (
        client.responses.create(
            model="tiny", input="the", max_output_tokens=20, temperature=0, extra_body=zero
        ).output_text
        == plain
    )
    for name in zero:
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="tiny", input="the", extra_body={name: 0.5})
        error = caught.value.body
        assert (error["param"], error["code"]) == (name, "unsupported_parameter")
        assert error["message"] == (
            f"{name}: OpenAI's Responses API has no {name}: leave it out (or 0), or send the request to "
            "/v1/chat/completions, which takes it"
        )


def test_tool_settings_that_change_nothing_without_tools_are_taken_and_echoed(client):  # noqa: F811
    """With no tools, `parallel_tool_calls` either way and `tool_choice` "auto" change nothing: taken, as
    OpenAI's clients send them, and echoed as given, not as other values."""
    for parallel, choice in ((True, "auto"), (False, "none")):
        reply = client.responses.create(
            model="tiny", input="a", max_output_tokens=2, parallel_tool_calls=parallel, tool_choice=choice
        )
        assert (reply.parallel_tool_calls, reply.tool_choice) == (parallel, choice)


def test_a_lone_surrogate_echoed_in_metadata_is_a_400_never_a_500(server):  # noqa: F811
    body = b'{"model": "tiny", "input": "a", "max_output_tokens": 1, "metadata": {"k": "\\ud800"}}'
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    response = httpx.post(f"{server[0]}/v1/responses", content=body, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "metadata"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/responses", "user"),
        ("/v1/responses", "safety_identifier"),
        ("/v1/responses", "prompt_cache_key"),
        ("/v1/responses", "instructions"),
        ("/v1/responses/input_tokens", "instructions"),
    ],
)
def test_a_lone_surrogate_in_an_echoed_string_is_a_400_naming_it_never_a_500(server, path, name):  # noqa: F811
    """`user`, `safety_identifier` and `prompt_cache_key`, taken and echoed, were a plain-text 500 (and a
    traceback in the server's log) when they held a lone surrogate, which no answer can carry; one in
    `instructions` was said to be the `input`'s, at a character of the two joined."""
    body = b'{"model": "tiny", "input": "a", "%s": "x\\ud800"}' % name.encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    response = httpx.post(f"{server[0]}{path}", content=body, headers=headers)
    error = response.json()["error"]
    assert (response.status_code, error["param"], error["code"]) == (400, name, "unknown_characters")
    lone = "lone surrogate U+D800 at character 1 is not a character; give the text in UTF-8"
    assert error["message"] == f"{name}: {lone}"


def test_every_field_the_openai_client_can_send_is_taken_as_null(client):  # noqa: F811
    """A field a newer client adds fails here, not in a user's 400."""
    own = {"model", "input", "extra_headers", "extra_query", "extra_body", "timeout"}
    fields = [name for name in inspect.signature(client.responses.create).parameters if name not in own]
    assert "previous_response_id" in fields and "max_output_tokens" in fields
    plain = client.responses.create(model="tiny", input="the ", max_output_tokens=20, temperature=0).output_text
    for name in fields:
        body = {"max_output_tokens": 20, "temperature": 0, name: None}
        if name in ("max_output_tokens", "temperature"):
            body = {name: None}
        reply = client.responses.create(model="tiny", input="the ", extra_body=body)
        assert name in ("max_output_tokens", "temperature") or reply.output_text == plain, name


def test_responses_take_the_key_and_the_guards_of_the_other_routes_and_are_counted(server):  # noqa: F811
    url, _ = server
    wrong = OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.responses.create(model="tiny", input="a")
    page = {"Authorization": f"Bearer {KEY}", "Origin": "http://evil.example"}
    refused = httpx.post(f"{url}/v1/responses", json={"input": "a", "max_output_tokens": 1}, headers=page)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
    assert metrics(url)['charlm_requests_total{endpoint="/v1/responses",status="401"}'] >= 1


def test_a_long_response_is_written_whole_off_the_event_loop(client, monkeypatch):  # noqa: F811
    """A response long enough to be written in a worker thread (`answers.rendered`, over SMALL_ANSWER
    characters: a server of --max-tokens 20000) is the same body as a short one's, not a 500: a response
    has no `choices` to write one at a time."""
    from charlm.serve import answers

    short = client.responses.create(model="tiny", input="the ", max_output_tokens=30, temperature=0)
    monkeypatch.setattr(answers, "SMALL_ANSWER", 1)
    long = client.responses.create(model="tiny", input="the ", max_output_tokens=30, temperature=0)
    assert long.output_text == short.output_text and long.usage.output_tokens == 30


@pytest.mark.parametrize(
    ("read", "body", "field"),
    [
        ("completion", {"prompt": "a", "stream": True, "stream_options": [1]}, "stream_options"),
        ("chat", {"messages": MESSAGES, "stream": True, "stream_options": "usage"}, "stream_options"),
        ("completion", {"prompt": "a", "logit_bias": [1, 2]}, "logit_bias"),
        ("response", {"input": "a", "text": ["text"]}, "text"),
        ("response", {"input": "a", "metadata": [["k", "v"]]}, "metadata"),
        ("input_tokens", {"input": "a", "text": "plain"}, "text"),
    ],
)
def test_a_field_that_must_be_an_object_says_what_it_was_given(read, body, field):
    """Every object field is refused in one wording that names what came instead: `stream_options` alone
    said "must be an object" and not what it was sent, so a client could not tell its list from a typo."""
    from charlm.serve import protocol, responses_api
    from charlm.serve.api_error import APIError

    readers = {
        "completion": protocol.completion_params,
        "chat": protocol.chat_params,
        "response": responses_api.response_params,
        "input_tokens": responses_api.input_tokens_params,
    }
    with pytest.raises(APIError) as caught:
        readers[read](body, ServeConfig())
    given = "a list" if isinstance(body[field], list) else "a string"
    assert caught.value.message == f"{field} must be an object, not {given}"
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, field, "invalid_type")


def test_a_text_over_max_prompt_is_refused_in_one_wording_by_completions_and_tokenize(tiny_model):  # noqa: F811
    """/tokenize said "content has 5 characters" where a completion of the same text says "the prompt has 5
    characters": one limit (--max-prompt), said one way, its `param` the field that held the text."""
    config, text = ServeConfig(max_prompt=4), "abcde"
    with pytest.raises(APIError) as completion:
        protocol.completion_params({"prompt": text}, config)
    assert completion.value.message.startswith("the prompt has 5 characters; this server takes at most 4")
    for name in ("content", "prompt"):
        with pytest.raises(APIError) as sent:
            protocol.tokenize_params({name: text}, config)
        with pytest.raises(APIError) as read:  # as the model reads it
            token_labels.tokenized(tiny_model, text, False, name, config)
        for refused in (sent.value, read.value):
            assert (refused.message, refused.param) == (completion.value.message, name)


def test_logit_bias_takes_token_ids_of_as_many_digits_wherever_it_is_read():
    """The 10 digits a token id may have were written three times (the fast reader's pattern, the entry by
    entry reader, /openapi.json's propertyNames): one of them changed alone would take an id the others refuse."""
    most = protocol.MAX_ID_DIGITS
    pattern = re.compile(schema.common_schema(ServeConfig(), ["tiny"], 0)["logit_bias"]["propertyNames"]["pattern"])
    longest, too_long = "1" * most, "1" * (most + 1)
    assert protocol.plain_bias({longest: 1}) == protocol.logit_bias_entries({longest: 1}) == {int(longest): 1}
    assert pattern.search(longest) and not pattern.search(too_long)
    assert protocol.plain_bias({too_long: 1}) is None  # left to the entry by entry reader, which refuses it
    with pytest.raises(APIError, match="logit_bias keys are token ids"):
        protocol.logit_bias_entries({too_long: 1})


class CountedReads(dict):
    """A request body that counts how often each field is read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.reads: collections.Counter = collections.Counter()

    def get(self, key, default=None):
        self.reads[key] += 1
        return super().get(key, default)


def test_a_responses_fields_are_each_read_once():
    """`user` was read (and its length checked) by `common` and again by `response_params`: two readers of one
    field, which a change to one could set apart. The response echoes it as read."""
    body = CountedReads({"input": "a", "user": "u1", "safety_identifier": "s1", "prompt_cache_key": "k1"})
    _, echoed = responses_api.response_params(body, ServeConfig())
    assert (echoed["user"], echoed["safety_identifier"], echoed["prompt_cache_key"]) == ("u1", "s1", "k1")
    assert {name: body.reads[name] for name in ("user", *protocol.USER_FIELDS)} == dict.fromkeys(
        ("user", *protocol.USER_FIELDS), 1
    )
