"""`charlm serve` fuzzed with schemathesis from its own OpenAPI document (/openapi.json): every
endpoint, requests valid and invalid by the schema. Whatever arrives, the answer is no 5xx, comes
within seconds, and an error is in OpenAI's shape (issue 26 item 11).

Schemathesis never generates what JSON allows but a schema cannot say: lone surrogates ("\\ud800",
which it leaves out on purpose) and nesting deeper than a parser recurses. Half the bodies are made
hostile that way on top of its cases (`hostile`), which finds issue 26 items 2 and 3."""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Iterator

import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig

from .conftest import import_or_missing, make_model
from .test_serve import VOCAB, running, wait_healthy

schemathesis = import_or_missing("schemathesis")

ERROR_KEYS = {"message", "type", "param", "code"}
NEST = "\x00nest\x00"  # a placeholder for deep nesting, put in after json.dumps
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


def hostile(body: dict, data) -> bytes:
    """A JSON body with a key or a value made hostile: a lone surrogate in it, or nested deeply."""
    body = dict(body)
    name = data.draw(st.sampled_from(sorted(body) or ["model"]), label="field")
    how = data.draw(st.sampled_from(["surrogate value", "surrogate key", "nested"]), label="how")
    text = data.draw(st.text(SURROGATES | st.characters(max_codepoint=0x7F), min_size=1, max_size=5), label="text")
    if how == "surrogate key":
        body[name + text] = body.pop(name, 1)
    else:
        body[name] = text if how == "surrogate value" else NEST
    depth = data.draw(st.integers(1_000, 200_000), label="depth")
    return json.dumps(body).replace(json.dumps(NEST), "[" * depth + "]" * depth).encode()


def check(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == ERROR_KEYS, (what, response.text[:300])


@pytest.mark.slow  # a few hundred requests
def test_the_api_fuzzed_from_its_openapi_schema_never_answers_5xx():
    torch.manual_seed(0)
    model = make_model(VOCAB, layers=1, hidden=16).eval()
    config = ServeConfig(max_streams=4, max_tokens=40, max_prompt=300, chunk_ms=0)
    app = create_app({"tiny": lambda: model}, config)
    with running(app) as url:
        wait_healthy(url)
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
            "POST /v1/completions",
            "POST /v1/chat/completions",
            "GET /v1/models",
        }
        modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
        cases = st.one_of([o.as_strategy(generation_mode=mode) for o in operations for mode in modes])

        @seed(26)
        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=cases, data=st.data())
        def fuzz(case, data):
            what = f"{case.method} {case.path}"
            if isinstance(case.body, dict) and data.draw(st.booleans(), label="hostile"):
                body = hostile(case.body, data)
                headers = {"Content-Type": "application/json"}
                check(httpx.post(f"{url}{case.path}", content=body, headers=headers, timeout=20), what)
                return
            response = case.call(base_url=url, timeout=20)  # a hang fails here
            check(httpx.Response(response.status_code, content=response.content), what)

        fuzz()


PENALTIES = ("presence_penalty", "frequency_penalty")


def test_the_penalties_in_the_schemas_ranges_are_what_generate_does_and_beyond_them_a_400():
    """The slow fuzz above sends `presence_penalty` and `frequency_penalty` in its bodies, but a random
    body nearly always fails first on another field (400 runs of it served no request that had them).
    Here bounded examples take each penalty from the range /openapi.json gives it, with the options it
    meets (n, a stream, logprobs, echo, greedy, a logit_bias ban of all but one id, a template), on
    completions and chat: each is served as charlm.generate writes it; just beyond the range, or not a
    number (NaN, a boolean, a string), it is a 400 naming the field in OpenAI's shape."""
    from charlm.sampler import generate

    torch.manual_seed(0)
    model = make_model(VOCAB, layers=1, hidden=16).eval()
    app = create_app({"tiny": lambda: model}, ServeConfig(max_streams=4, max_tokens=40, max_prompt=300, chunk_ms=0))
    with running(app) as url, httpx.Client(base_url=url, timeout=20) as client:
        wait_healthy(url)
        paths = client.get("/openapi.json").json()["paths"]
        ranges = {}
        for path in ("/v1/completions", "/v1/chat/completions"):
            properties = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
            ranges[path] = {name: (properties[name]["minimum"], properties[name]["maximum"]) for name in PENALTIES}
        assert set(ranges["/v1/completions"].values()) == set(ranges["/v1/chat/completions"].values()) == {(-2, 2)}
        low, high = ranges["/v1/completions"]["presence_penalty"]
        penalty = st.floats(low, high) | st.sampled_from([low, high, -0.0]) | st.integers(int(low), int(high))

        @seed(12)
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(
            penalties=st.fixed_dictionaries({}, optional=dict.fromkeys(PENALTIES, penalty)),
            n=st.integers(1, 2),
            stream=st.booleans(),
            greedy=st.booleans(),
            chat=st.booleans(),
            extra=st.sampled_from([{}, {"logprobs": 2}, {"echo": True}, {"ban": True}, {"template": "__ ___"}]),
        )
        def served_as_generated(penalties, n, stream, greedy, chat, extra):
            options = {"max_tokens": 12, "n": n, "seed": 3, "temperature": 0 if greedy else 0.9, **penalties}
            body = {"model": "tiny", **options, "stream": stream}
            kept = VOCAB.index("e")
            if extra.get("ban"):
                body["logit_bias"] = {str(i): -100 for i in range(len(VOCAB)) if i != kept}
            if "template" in extra:
                body["template"] = extra["template"]
            if chat:
                body["messages"] = [{"role": "user", "content": "the"}]
                body |= {"logprobs": True, "top_logprobs": 2} if "logprobs" in extra else {}
            else:
                body["prompt"] = "the\n\n"
                body |= {name: extra[name] for name in ("logprobs", "echo") if name in extra}
            path = "/v1/chat/completions" if chat else "/v1/completions"
            response = client.post(path, json=body)
            assert response.status_code == 200, (body, response.text[:300])
            texts = [""] * n
            for chunk in (line[6:] for line in response.text.splitlines() if line.startswith("data: {")):
                for choice in json.loads(chunk)["choices"]:
                    texts[choice["index"]] += (choice["delta"].get("content") or "") if chat else choice["text"]
            for choice in [] if stream else response.json()["choices"]:
                texts[choice["index"]] = choice["message"]["content"] if chat else choice["text"]
            made = generate(
                model, "the\n\n", length=12, num_samples=n, random_seed=3, **({"greedy": True} if greedy else {"temperature": 0.9}),
                logit_bias={char: -100 for char in VOCAB if char != "e"} if extra.get("ban") else None,
                template=extra.get("template"), **penalties,
            )  # fmt: skip
            echoed = "the\n\n" if extra.get("echo") else ""
            assert texts == [echoed + text[len("the\n\n") :] for text in made], (body, texts)

        served_as_generated()
        for path in ranges:
            body = {"model": "tiny", "max_tokens": 1}
            body |= {"prompt": "a"} if path == "/v1/completions" else {"messages": [{"role": "user", "content": "a"}]}
            for name in PENALTIES:
                for value in (high + 1e-9, low - 0.5, 1e308, "NaN", "Infinity", "true", '"0.5"', "[1]", "9" * 4300):
                    content = json.dumps(body)[:-1] + f', "{name}": {value}}}'
                    response = client.post(path, content=content)
                    error = response.json()["error"]
                    assert response.status_code == 400 and set(error) == ERROR_KEYS, (value, response.text[:300])
                    assert error["param"] == name and error["message"].startswith(name), (value, error)


def bodies_of(document: dict) -> dict[str, dict]:
    """Each POST route's request body schema in an /openapi.json, by path."""
    return {
        path: operations["post"]["requestBody"]["content"]["application/json"]["schema"]
        for path, operations in document["paths"].items()
        if "requestBody" in operations.get("post", {})
    }


# The least a request to each route needs, and what its log-probability fields need beside them
BASES = {
    "/v1/completions": {"model": "tiny", "prompt": "the", "max_tokens": 1},
    "/v1/chat/completions": {"model": "tiny", "messages": [{"role": "user", "content": "the"}], "logprobs": True},
    "/v1/responses": {"model": "tiny", "input": "the", "include": ["message.output_text.logprobs"]},
    "/v1/responses/input_tokens": {"model": "tiny", "input": "the"},
    "/tokenize": {"model": "tiny", "content": "the"},
}
# fields that name one thing, of which a request gives one: the base's is left out when another is given
ALTERNATIVES = (("max_tokens", "max_completion_tokens", "max_output_tokens"), ("content", "prompt"))


@contextlib.contextmanager
def tiny_server(max_tokens: int) -> Iterator[tuple[httpx.Client, dict[str, dict]]]:
    """A live server of a tiny model (3 streams, prompts of 300 characters, `max_tokens` characters): a
    client of it, and its /openapi.json's request bodies by path, one per route of BASES."""
    torch.manual_seed(0)
    model = make_model(VOCAB, layers=1, hidden=16).eval()
    config = ServeConfig(max_streams=3, max_tokens=max_tokens, max_prompt=300, chunk_ms=0)
    with running(create_app({"tiny": lambda: model}, config)) as url, httpx.Client(base_url=url, timeout=20) as client:
        wait_healthy(url)
        schemas = bodies_of(client.get("/openapi.json").json())
        assert set(schemas) == set(BASES)
        yield client, schemas


def type_of(field: dict) -> str | None:
    """A field's JSON type, past the null that a field a body may leave out also takes (["integer", "null"])."""
    kind = field.get("type")
    return next(iter(set(kind) - {"null"}), None) if isinstance(kind, list) else kind


def test_every_bound_in_openapi_json_is_the_servers_own_at_it_taken_past_it_a_400_naming_the_field():
    """/openapi.json says what the server enforces, read from it (not written here), so that the two cannot
    drift: every numeric field has both bounds; at each bound (an integer's as a JSON number too: 40.0,
    an integer to JSON Schema) a request is served, and just past it it is a 400 naming the field; a
    string's maxLength likewise; every enum value (OpenAI's fields at their neutral values, the Responses
    API's penalties at 0) is served; a field the schema does not list is refused, as it says
    (additionalProperties: false)."""
    with tiny_server(max_tokens=8) as (client, schemas):

        def post(path: str, name: str, value) -> httpx.Response:
            given = {key for group in ALTERNATIVES if name in group for key in group}
            body = {key: base for key, base in BASES[path].items() if key not in given}
            return client.post(path, json=body | {name: value})

        def refused(path: str, name: str, value) -> None:
            response = post(path, name, value)
            assert response.status_code == 400, (path, name, value, response.text[:300])
            assert response.json()["error"]["param"] == name, (path, name, value, response.text[:300])

        def served(path: str, name: str, value) -> None:
            response = post(path, name, value)
            assert response.status_code == 200, (path, name, value, response.text[:300])

        checked = 0
        for path, schema in schemas.items():
            assert schema["additionalProperties"] is False, path
            refused(path, "no_such_field", 1)
            for name, field in schema["properties"].items():
                if name in ("model", "form"):  # the tiny model writes no Chinese poem
                    continue
                if type_of(field) in ("integer", "number"):
                    low, high = field.get("minimum", field.get("exclusiveMinimum")), field.get("maximum")
                    assert low is not None and high is not None, (path, name, field)
                    integral = type_of(field) == "integer"
                    served(path, name, high)
                    refused(path, name, high + 1 if integral else math.nextafter(high, math.inf))
                    if "exclusiveMinimum" in field:
                        refused(path, name, low)
                    else:
                        served(path, name, low)
                        refused(path, name, low - 1 if integral else math.nextafter(low, -math.inf))
                    if integral and abs(high) < 2**53:  # 8.0 is an integer; 7.5 is not
                        served(path, name, float(high))
                        refused(path, name, high - 0.5)
                        refused(path, name, True)
                    checked += 1
                elif type_of(field) == "string" and "maxLength" in field:
                    served(path, name, "a" * field["maxLength"])
                    refused(path, name, "a" * (field["maxLength"] + 1))
                    checked += 1
                for value in field.get("enum", []):
                    served(path, name, value)
                    checked += 1
        assert checked > 100, checked


def test_an_integer_field_takes_a_number_that_is_an_integer_and_refuses_one_that_is_not():
    """`max_tokens: 3.0` (JSON Schema's integer; pydantic's lax int, vLLM's) is 3, not a 400; 2.5 and true are."""
    torch.manual_seed(0)
    model = make_model(VOCAB, layers=1, hidden=16).eval()
    app = create_app({"tiny": lambda: model}, ServeConfig(max_streams=3, max_tokens=8, max_prompt=300, chunk_ms=0))
    with running(app) as url, httpx.Client(base_url=url, timeout=20) as client:
        wait_healthy(url)
        body = {"model": "tiny", "prompt": "the", "max_tokens": 3.0, "n": 2.0, "seed": 1.0}
        choices = client.post("/v1/completions", json=body).json()["choices"]
        assert [len(choice["text"]) for choice in choices] == [3, 3]
        same = client.post("/v1/completions", json=body | {"max_tokens": 3, "n": 2, "seed": 1}).json()["choices"]
        assert [choice["text"] for choice in choices] == [choice["text"] for choice in same]
        include = ["message.output_text.logprobs"]
        answer = client.post("/v1/responses", json={"input": "the", "include": include, "top_logprobs": 2.0}).json()
        assert answer["top_logprobs"] == 2 and type(answer["top_logprobs"]) is int
        for value in (2.5, True, "3"):
            error = client.post("/v1/completions", json=body | {"max_tokens": value}).json()["error"]
            assert error["param"] == "max_tokens" and error["message"].startswith("max_tokens must be an integer")


def as_floats(value):
    """`value` with every integer in it (not a boolean) written as a JSON number: 1 -> 1.0."""
    if isinstance(value, list):
        return [as_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: as_floats(item) for key, item in value.items()}
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def as_booleans(value):
    """`value` with every 0 or 1 in it written as false or true, which JSON Schema never counts a number."""
    if isinstance(value, list):
        return [as_booleans(item) for item in value]
    if isinstance(value, dict):
        return {key: as_booleans(item) for key, item in value.items()}
    return bool(value) if type(value) in (int, float) and value in (0, 1) else value


def taken_by_the_server(path: str, body: dict, config: ServeConfig) -> bool:
    """Whether the server takes `body` at POST `path`, as far as its fields go (the checks of protocol.py and
    responses_api.py, no model)."""
    from charlm.serve import protocol, responses_api
    from charlm.serve.api_error import APIError

    read = {
        "/v1/completions": protocol.completion_params,
        "/v1/chat/completions": protocol.chat_params,
        "/v1/responses": responses_api.response_params,
        "/v1/responses/input_tokens": responses_api.input_tokens_params,
        "/tokenize": protocol.tokenize_params,
    }
    try:
        read[path](body, config)
    except APIError:
        return False
    return True


def test_openais_fields_at_their_neutral_values_are_taken_exactly_where_the_schema_allows_them():
    """The neutral fields were compared by JSON type (`best_of: 1.0` refused) while the schema's `enum: [1]`
    allows 1.0, as JSON Schema counts 1.0 as 1, and as an integer field takes it: for every enum value
    in /openapi.json's bodies, written as is, with its integers as numbers and its 0s and 1s as booleans,
    the server takes a request exactly where the schema does (`false` is not 0 to either)."""
    from charlm.serve.schema import request_schemas

    jsonschema_rs = import_or_missing("jsonschema_rs")
    config = ServeConfig(max_streams=3, max_tokens=8, max_prompt=300)
    schemas = bodies_of({"paths": {path: {"post": extra} for path, extra in request_schemas(config, ["tiny"]).items()}})
    taken = functools.partial(taken_by_the_server, config=config)

    compared = 0
    for path, schema in schemas.items():
        valid = jsonschema_rs.Draft202012Validator(schema).is_valid
        assert taken(path, BASES[path]) and valid(BASES[path]), path
        for name, field in schema["properties"].items():
            for value in field.get("enum", []):
                for variant in {json.dumps(v): v for v in (value, as_floats(value), as_booleans(value))}.values():
                    body = BASES[path] | {name: variant}
                    assert taken(path, body) == valid(body), (path, name, variant)
                    compared += 1
    assert compared > 50, compared
    assert taken("/v1/completions", BASES["/v1/completions"] | {"best_of": 1.0})
    assert not taken("/v1/completions", BASES["/v1/completions"] | {"best_of": True})
    assert not taken("/v1/chat/completions", BASES["/v1/chat/completions"] | {"store": 0})


# Requests that a rule between fields (or within a template) decides, by route: the fields beside the route's
# least body, whether the server takes them, and whether the schema allows them (all it can say of a request
# the server refuses; `acrostic`'s rules are left out of it, as schema.FIELD_RULES says why)
STREAMED = {"stream_options": {"include_obfuscation": True}}
SHARED_RULES = [
    (STREAMED, False, False),
    (STREAMED | {"stream": False}, False, False),
    (STREAMED | {"stream": None}, False, False),  # null is stream left out: false
    (STREAMED | {"stream": True}, True, True),
    ({"stream_options": None}, True, True),  # null is stream_options left out, which needs no stream
    ({"stream_options": None, "stream": False}, True, True),
    ({"template": "ab"}, False, False),
    ({"template": "a\\_"}, False, False),  # an underscore written, none to fill
    ({"template": "a\\\\_ \\n_"}, True, True),  # a backslash, then an `_` to fill; a line break, another
    ({"acrostic": "ab", "template": "_ _"}, True, True),
    ({"acrostic": "ab"}, False, True),
    ({"form": "五绝", "template": "_ _"}, False, True),
]
# A chat message's content, required as OpenAI requires it: left out or null only by an assistant's message
# that calls a tool (null or [] is no call; null is the field left out), null also by a function's (deprecated)
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
CONTENT_RULES = [
    ({"role": "user"}, False),
    ({"role": "system", "name": "s"}, False),
    ({"role": "assistant"}, False),
    ({"role": "assistant", "tool_calls": None, "function_call": None}, False),
    ({"role": "user", "tool_calls": [TOOL_CALL]}, False),
    ({"role": "assistant", "tool_calls": [TOOL_CALL]}, True),
    ({"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}, True),
    ({"role": "user", "content": None}, False),
    ({"role": "assistant", "content": None}, False),
    ({"role": "assistant", "tool_calls": []}, False),
    ({"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}, True),
    ({"role": "function", "name": "f", "content": None}, True),
    ({"role": "function", "name": "f"}, False),
]
RULES = {
    "/v1/completions": ({"prompt": "the"}, SHARED_RULES),
    "/v1/chat/completions": (
        {"messages": [{"role": "user", "content": "the"}]},
        [*SHARED_RULES, ({"top_logprobs": 2}, False, False), ({"top_logprobs": 2, "logprobs": False}, False, False)]
        + [({"top_logprobs": 2, "logprobs": None}, False, False), ({"top_logprobs": None}, True, True)]
        + [({"top_logprobs": 2, "logprobs": True}, True, True)]
        + [({"messages": [message]}, served, served) for message, served in CONTENT_RULES],
    ),
    "/v1/responses": (
        {"input": "the"},
        [*SHARED_RULES, ({"top_logprobs": 2}, False, False), ({"top_logprobs": 2, "include": []}, False, False)]
        + [({"top_logprobs": 2, "include": None}, False, False), ({"top_logprobs": None}, True, True)]
        + [({"top_logprobs": 2, "include": ["message.output_text.logprobs"]}, True, True)]
        + [({"input": [{"role": "user"}]}, False, False), ({"input": [{"role": "assistant"}]}, False, False)],
    ),
    # one text, in content or prompt: the other left out or null
    "/tokenize": (
        {"content": "the"},
        [({"prompt": "the"}, False, False), ({"prompt": None}, True, True), ({"content": None}, False, False)]
        + [({"content": None, "prompt": "the"}, True, True)],
    ),
}


def test_the_rules_between_fields_are_in_openapi_json_as_the_server_keeps_them():
    """`stream_options` needs `stream: true`; `top_logprobs` needs chat's `logprobs: true` or the Responses
    API's include; a template needs an `_` not escaped: the schema said none of it, so a client (or
    schemathesis) that keeps to it sent requests the server refuses. Each rule is in the schema
    (dependentSchemas, template's pattern), which refuses a request that breaks one, as the server does;
    a field null is the field left out, to both (`stream_options: null` needs no stream; /tokenize's
    `prompt: null` beside a content is no second text)."""
    from charlm.serve.schema import request_schemas

    jsonschema_rs = import_or_missing("jsonschema_rs")
    config = ServeConfig(max_streams=3, max_tokens=40, max_prompt=300)
    extras = request_schemas(config, ["tiny"])
    ruled = set()
    for path, (base, cases) in RULES.items():
        schema = extras[path]["requestBody"]["content"]["application/json"]["schema"]
        valid = jsonschema_rs.Draft202012Validator(schema).is_valid
        for fields, served, allowed in cases:
            body = base | fields
            assert (taken_by_the_server(path, body, config), valid(body)) == (served, allowed), (path, fields)
        ruled |= {(path, name) for name in schema.get("dependentSchemas", {})}
    assert ruled == {(path, "stream_options") for path in RULES if path != "/tokenize"} | {
        ("/v1/chat/completions", "top_logprobs"),
        ("/v1/responses", "top_logprobs"),
    }


# What a field's null is tried beside, where the route's least body (BASES) alone would be refused for another
# reason: stream_options' fields in a stream, a message's fields in a list of one
GIVEN_WITH = {"stream_options": {"stream": True}}
MESSAGE = {"role": "user", "content": "the"}


def null_bodies(path: str, schema: dict) -> Iterator[tuple[str, dict]]:
    """`path`'s least body with one field null, named: each property of the body, and each property of an
    object it holds (`stream_options.include_usage`, `text.format`) or of a list's items (`messages[0].role`)."""
    for name, field in schema["properties"].items():
        yield name, BASES[path] | {name: None}
        for inner in [field, *field.get("anyOf", [])]:
            for sub in inner.get("properties", {}):
                yield f"{name}.{sub}", BASES[path] | GIVEN_WITH.get(name, {}) | {name: {sub: None}}
            for sub in inner.get("items", {}).get("properties", {}):
                yield f"{name}[0].{sub}", BASES[path] | {name: [MESSAGE | {sub: None}]}


def test_a_field_null_is_served_exactly_where_openapi_json_allows_it():
    """The server reads a field's null as the field left out (`"top_p": null`, which OpenAI's spec allows and
    clients other than the openai package send), but /openapi.json refused null for nearly every field, so a
    client validating a body against it refused one the server takes. For every property of every route's
    body, and those of the objects and list items in it, a body with it null is sent to a live server: it is
    served exactly where the schema (Draft 2020-12, as OpenAPI 3.1 reads it) allows it, else a 400."""
    jsonschema_rs = import_or_missing("jsonschema_rs")
    with tiny_server(max_tokens=40) as (client, schemas):  # room for a form: its null is tried too
        verdicts, taken = [], 0
        for path, schema in schemas.items():
            jsonschema_rs.meta.validate(schema)  # a valid schema (["integer", "null"], ...) before it is used
            valid = jsonschema_rs.Draft202012Validator(schema).is_valid
            for name, body in null_bodies(path, schema):
                status = client.post(path, json=body).status_code
                assert status in (200, 400), (path, name, status)
                verdicts.append((path, name, status == 200, valid(body)))
                taken += status == 200
        wrong = [
            (path, name, "served, not allowed" if served else "allowed, a 400")
            for path, name, served, allowed in verdicts
            if served != allowed
        ]
        assert not wrong, wrong
        names = {(path, name) for path, name, _, _ in verdicts}
        assert {("/v1/chat/completions", "top_p"), ("/v1/responses", "text.format")} <= names
        assert {("/v1/completions", "form"), ("/v1/chat/completions", "messages[0].role")} <= names
        assert taken > 150, taken


# Rules between fields that JSON Schema cannot say (two values equal; one times the other's items): by route,
# the fields of each and what the server refuses for them; the schema says each in its fields' descriptions
UNSAYABLE = {
    "/v1/chat/completions": [
        (("max_tokens", "max_completion_tokens"), {"max_tokens": 3, "max_completion_tokens": 4}, "must be equal"),
        (("repetition_penalty", "repeat_penalty"), {"repetition_penalty": 1.1, "repeat_penalty": 1.2}, "must be equal"),
    ],
    "/v1/completions": [
        (("repetition_penalty", "repeat_penalty"), {"repetition_penalty": 1.1, "repeat_penalty": 1.2}, "must be equal"),
        (("n",), {"prompt": ["a", "b"], "n": 2}, "n times the prompts"),
    ],
}


def test_the_rules_a_schema_cannot_say_are_in_the_descriptions_of_their_fields():
    """Chat's max_tokens and max_completion_tokens, given both, must be equal (as must repetition_penalty and
    repeat_penalty; and n times a completion's prompts is at most --max-streams): a 400 that /openapi.json,
    which cannot say it in JSON Schema, gave a client no word of. Each field's description says it now."""
    from charlm.serve.schema import request_schemas

    jsonschema_rs = import_or_missing("jsonschema_rs")
    config = ServeConfig(max_streams=3, max_tokens=40, max_prompt=300)
    extras = request_schemas(config, ["tiny"])
    for path, rules in UNSAYABLE.items():
        schema = extras[path]["requestBody"]["content"]["application/json"]["schema"]
        for names, fields, words in rules:
            body = BASES[path] | fields
            assert not taken_by_the_server(path, body, config), (path, fields)
            assert jsonschema_rs.Draft202012Validator(schema).is_valid(body), (path, fields)  # unsayable
            for name in names:
                assert words in schema["properties"][name].get("description", ""), (path, name)
