"""The request bodies as JSON Schema, for the OpenAPI document at /openapi.json (what a client generator or
an API fuzzer reads): the checks of protocol.py and responses_api.py as far as a schema can say them, this
server's limits (`ServeConfig`) and models included. Every field the server takes is listed (OpenAI's
neutral ones at their neutral values), and no other (`additionalProperties: false`): an unknown field is a 400. Every
field a body may leave out may be null too, which the server reads as left out (`nullable`).
"""

from __future__ import annotations

from .. import forms
from ..config import COUNT_PENALTIES, MAX_COUNT_PENALTY, MAX_LOGIT_BIAS, MAX_REPETITION_PENALTY, SEED_RANGE
from .config import ServeConfig
from .protocol import (
    CHAT_ROLES,
    MAX_BIASED,
    MAX_ID_DIGITS,
    MAX_LOGPROBS,
    MAX_METADATA_VALUE,
    MAX_STOP_CHARS,
    MAX_STOPS,
    MAX_TEMPERATURE,
    MESSAGE_FIELDS,
    NEUTRAL,
    NULL_ONLY,
    STREAM_OPTIONS,
    TOP_K_RANGE,
    USER_FIELD_MAX_LENGTH,
    USER_FIELDS,
)
from .responses_api import (
    INCLUDE_LOGPROBS,
    INPUT_MESSAGE_FIELDS,
    INPUT_ROLES,
    INPUT_TEXT_PARTS,
    INPUT_TOKENS_FIELDS,
    INPUT_TOKENS_NULL_ONLY,
    MAX_METADATA,
    MAX_METADATA_KEY,
    RESPONSE_NEUTRAL,
    RESPONSE_NULL_ONLY,
)

# A template's `_` to fill, which it needs: one after an even run of backslashes (`\_` writes an underscore,
# `\\` a backslash: `forms.template_slots`)
FREE_SLOT = r"(?:^|[^\\])(?:\\\\)*_"


def texts_schema(most: int, min_length: int = 0, max_length: int | None = None) -> dict:
    """A string, or a list of at most `most` strings (at least one), each `min_length` to `max_length` long."""
    text: dict = {"type": "string", "minLength": min_length} | ({} if max_length is None else {"maxLength": max_length})
    return {"anyOf": [text, {"type": "array", "items": text, "minItems": 1, "maxItems": most}]}


def nullable(field: dict) -> dict:
    """`field`, or null: what the server takes for a field a body may leave out, whose null it reads as left
    out (`integer`, `string`, ... give their default). OpenAI's spec allows null for most fields, and clients
    other than the openai package send it (langchain-openai's OpenAI(): `"seed": null`); a strict
    client refused them while the schema did not say so. A type becomes a list (["integer", "null"]), so
    that a field's bounds stay where a reader of the schema looks for them; an enum gets null too."""
    if "anyOf" in field:
        return field | {"anyOf": [*field["anyOf"], {"type": "null"}]}
    return field | {"type": [field["type"], "null"]} | ({"enum": [*field["enum"], None]} if "enum" in field else {})


def nullables(fields: dict[str, dict]) -> dict[str, dict]:
    """An object's `properties`, each `nullable`."""
    return {name: nullable(field) for name, field in fields.items()}


def stream_options_schema(options: set[str]) -> dict:
    """`stream_options`, of these fields (booleans; null: left out), given only with `stream: true`."""
    return {
        "type": "object",
        "properties": nullables({name: {"type": "boolean"} for name in sorted(options)}),
        "additionalProperties": False,
        "description": "only with stream: true",
    }


def common_schema(config: ServeConfig, models: list[str], min_tokens: int) -> dict:
    """The fields completions, chat and responses share (`common`), as this server checks them."""
    fitting = [name for name in forms.FORM_NAMES if len(forms.template_of(name, prefix="").slots) <= config.max_tokens]
    form = {
        "type": "string",
        "enum": fitting,
        "description": f"charlm's extension: every sample is a poem in this form ({forms.FORM_CHOICES}; those of at "
        "most --max-tokens characters); not with `template`",
    }
    schema = {
        "model": {
            "type": "string",
            "enum": models,
            "description": "a served model's id, or its run's corpus where that names one model; left out: the first",
        },
        "max_tokens": {"type": "integer", "minimum": min_tokens, "maximum": config.max_tokens},
        "temperature": {"type": "number", "minimum": 0, "maximum": MAX_TEMPERATURE},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": TOP_K_RANGE[0], "maximum": TOP_K_RANGE[1]},
        **{
            name: {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_REPETITION_PENALTY,
                "description": "vLLM's repetition_penalty, llama.cpp's repeat_penalty: one penalty, so given both, "
                "they must be equal",
            }
            for name in ("repetition_penalty", "repeat_penalty")
        },
        "n": {
            "type": "integer",
            "minimum": 1,
            "maximum": config.max_streams,
            "description": "samples of each prompt: n times the prompts (a list of them) at most --max-streams",
        },
        "stream": {"type": "boolean"},
        "stop": texts_schema(MAX_STOPS, 1, MAX_STOP_CHARS),
        "seed": {"type": "integer", "minimum": SEED_RANGE[0], "maximum": SEED_RANGE[1]},
        "stream_options": stream_options_schema(STREAM_OPTIONS),
        "user": {"type": "string", "maxLength": USER_FIELD_MAX_LENGTH["user"]},
        "logit_bias": {
            "type": "object",
            "propertyNames": {"pattern": f"^[0-9]{{1,{MAX_ID_DIGITS}}}$"},
            "additionalProperties": {"type": "number", "minimum": -MAX_LOGIT_BIAS, "maximum": MAX_LOGIT_BIAS},
            "maxProperties": MAX_BIASED,
            "description": "token id (as POST /tokenize says it, or a token's position in the model's "
            "meta.characters or meta.pieces) -> a bias added to its logit before sampling; -100 bans the token. "
            'Each id once ("1" and "01" are one id)',
        },
        "template": {
            "type": "string",
            "pattern": FREE_SLOT,
            "description": "charlm's extension: every sample writes into this template; `_` is any one character "
            f"of the model's script ({forms.SCRIPT_RULE}), the rest is fixed; `\\n` breaks a line, `\\_` is an "
            "underscore. At most --max-tokens `_`; not with `form`",
        },
        "acrostic": {
            "type": "string",
            "description": "charlm's extension: the first character of each verse (run of `_`) of `form` or "
            "`template`, one per verse; only with one of them",
        },
    }
    return schema | ({"form": form} if fitting else {})  # charlm's extension: poem forms (templates above)


def unless_null(name: str, rule: dict) -> dict:
    """A dependentSchemas `rule` for field `name` that a body with `name` null need not keep: the server
    reads that null as the field left out (`nullable`), and dependentSchemas applies to a field present."""
    return {"anyOf": [{"properties": {name: {"type": "null"}}}, rule]}


# The rules between fields that a schema can say (JSON Schema 2020-12's dependentSchemas: a field given, the
# body must match this too), as `protocol.stream_options_of` and its log-probabilities check them: schemathesis
# generates by them, so fewer of its requests stop at a 400 before generation. `acrostic` needing `form` or
# `template`, which exclude each other, is true too but left out: said, it made schemathesis send a form
# in most bodies, refused for a model of another script (which the schema, made before a model loads,
# cannot know): of 300 bodies schemathesis made valid by it (seeds 1 to 4, tests/test_serve_fuzz.py's model),
# half as many were served. A rule holds where its field is not null (null is the field left out: `unless_null`).
# The rules a schema cannot say (two fields' values equal, a count of one times another's items) are in their
# fields' descriptions: max_tokens and max_completion_tokens, repetition_penalty and repeat_penalty, n.
FIELD_RULES = {
    "stream_options": unless_null("stream_options", {"required": ["stream"], "properties": {"stream": {"const": True}}})
}
CHAT_TOP_LOGPROBS_RULE = unless_null(
    "top_logprobs", {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}}
)
RESPONSE_TOP_LOGPROBS_RULE = unless_null(
    "top_logprobs", {"required": ["include"], "properties": {"include": {"type": "array", "minItems": 1}}}
)


def body_schema(
    properties: dict,
    required: list[str],
    *,
    rules: dict[str, dict] | None = None,
    neutral: dict[str, tuple] = NEUTRAL,
    null_only: set[str] = NULL_ONLY,
) -> dict:
    """FastAPI's `openapi_extra` for a route that reads its JSON body itself (`protocol.check_field_names`): its
    `properties`, those not `required` `nullable`, OpenAI's fields it takes at their `neutral` values or as
    null only, and the `rules` between its fields (`FIELD_RULES`)."""
    taken = {name: {"enum": [*values, None]} for name, values in neutral.items()}
    taken |= {name: {"type": "null"} for name in sorted(null_only)}
    taken |= {name: field if name in required else nullable(field) for name, field in properties.items()}
    schema = {
        "type": "object",
        "properties": taken,
        "required": required,
        "additionalProperties": False,
    } | ({"dependentSchemas": rules} if rules else {})
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# A message's fields that change nothing here, taken whatever their value (a client sends an assistant's back)
IGNORED = {"description": "taken and ignored: a charlm model reads a message's text alone"}
# A chat message's content may be left out (or null) only by an assistant's message that calls a tool, as
# OpenAI's (`protocol.calls_a_tool`: tool_calls of at least one call); a field null is the field left out,
# but a (deprecated) function's content, required and nullable
NOT_NULL = {"not": {"type": "null"}}
CALLING = [
    {"required": ["tool_calls"], "properties": {"tool_calls": NOT_NULL | {"minItems": 1}}},
    {"required": ["function_call"], "properties": {"function_call": NOT_NULL}},
]
MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["role"],
    "anyOf": [
        {"required": ["content"], "properties": {"content": NOT_NULL}},
        {"required": ["content"], "properties": {"role": {"const": "function"}}},
        {"properties": {"role": {"const": "assistant"}}, "anyOf": CALLING},
    ],
    "additionalProperties": False,
    "properties": dict.fromkeys(MESSAGE_FIELDS, IGNORED)
    | {
        "role": {"type": "string", "enum": list(CHAT_ROLES)},
        "content": {
            "anyOf": [
                {"type": "string"},
                {"type": "null"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"enum": ["text"]}, "text": {"type": "string"}},
                    },
                },
            ]
        },
    },
}
INPUT_ITEM_SCHEMA = {
    "type": "object",
    "required": ["role", "content"],
    "additionalProperties": False,
    "properties": dict.fromkeys(INPUT_MESSAGE_FIELDS, IGNORED)
    | {
        "type": {"type": "string", "enum": ["message"]},
        "role": {"type": "string", "enum": list(INPUT_ROLES)},
        "content": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"enum": list(INPUT_TEXT_PARTS)}, "text": {"type": "string"}},
                    },
                },
            ]
        },
    },
}
RESPONSE_TEXT_SCHEMA = {
    "type": "object",
    "properties": nullables(
        {
            "format": {
                "type": "object",
                "properties": {"type": {"enum": ["text"]}},
                "required": ["type"],
                "additionalProperties": False,
            },
        }
    ),
    "additionalProperties": {"type": "null"},
}
COUNT_PENALTY_SCHEMA = {
    name: {"type": "number", "minimum": -MAX_COUNT_PENALTY, "maximum": MAX_COUNT_PENALTY} for name in COUNT_PENALTIES
}
USER_FIELDS_SCHEMA = {name: {"type": "string", "maxLength": USER_FIELD_MAX_LENGTH[name]} for name in USER_FIELDS}
LOGPROBS_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_LOGPROBS}


def request_schemas(config: ServeConfig, models: list[str]) -> dict[str, dict]:
    """Each POST route's `openapi_extra` (app.py), by path: what this server, with these models, takes
    (`models`: every name a request may give one by, its corpus too, which a strict client checks)."""
    prompt = {"prompt": texts_schema(config.max_streams, 0, config.max_prompt)}
    completion = common_schema(config, models, 0) | prompt | COUNT_PENALTY_SCHEMA
    completion |= {"logprobs": LOGPROBS_SCHEMA, "echo": {"type": "boolean"}}
    tokens = {"type": "integer", "minimum": 1, "maximum": config.max_tokens}  # chat's and responses' lengths
    chat = common_schema(config, models, 1) | USER_FIELDS_SCHEMA | COUNT_PENALTY_SCHEMA
    agree = "given both, max_tokens and max_completion_tokens must be equal"
    chat |= {
        "messages": {"type": "array", "items": MESSAGE_SCHEMA, "minItems": 1},
        "logprobs": {"type": "boolean"},
        "top_logprobs": LOGPROBS_SCHEMA | {"description": "only with logprobs: true"},
        "max_tokens": chat["max_tokens"] | {"description": f"OpenAI's older name for max_completion_tokens: {agree}"},
        "max_completion_tokens": tokens | {"description": agree},
    }
    response = {
        name: value for name, value in common_schema(config, models, 1).items() if name not in ("n", "max_tokens")
    }
    # a response's last event always has usage: include_usage is refused
    response["stream_options"] = stream_options_schema(STREAM_OPTIONS - {"include_usage"})
    response |= USER_FIELDS_SCHEMA | {
        "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": INPUT_ITEM_SCHEMA, "minItems": 1}]},
        "instructions": {"type": "string"},
        "max_output_tokens": tokens,
        "metadata": {
            "type": "object",
            "propertyNames": {"maxLength": MAX_METADATA_KEY},
            "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE},
            "maxProperties": MAX_METADATA,
        },
        "text": RESPONSE_TEXT_SCHEMA,
        "include": {"type": "array", "items": {"enum": [INCLUDE_LOGPROBS]}},
        "top_logprobs": LOGPROBS_SCHEMA | {"description": f'only with include: ["{INCLUDE_LOGPROBS}"]'},
    }
    input_tokens = {name: field for name, field in response.items() if name in INPUT_TOKENS_FIELDS}  # in its order
    text = {"type": "string", "maxLength": config.max_prompt}
    tokenize = {
        "model": response["model"],
        "content": text | {"description": "the text (llama.cpp's name; vLLM's: prompt)"},
        "prompt": text,
        "with_pieces": {"type": "boolean", "description": "each token as {id, piece}"},
    }
    tokenize_body = body_schema(tokenize, [])
    tokenize_body["requestBody"]["content"]["application/json"]["schema"]["oneOf"] = [
        {"required": [name], "properties": {name: text}} for name in ("content", "prompt")
    ]  # one of the two, as a string: the other left out or null
    return {
        "/v1/completions": body_schema(completion, ["prompt"], rules=FIELD_RULES),
        "/v1/chat/completions": body_schema(
            chat, ["messages"], rules=FIELD_RULES | {"top_logprobs": CHAT_TOP_LOGPROBS_RULE}
        ),
        "/v1/responses": body_schema(
            response,
            ["input"],
            neutral=RESPONSE_NEUTRAL,
            null_only=RESPONSE_NULL_ONLY,
            rules=FIELD_RULES | {"top_logprobs": RESPONSE_TOP_LOGPROBS_RULE},
        ),
        "/v1/responses/input_tokens": body_schema(
            input_tokens, ["input"], neutral=RESPONSE_NEUTRAL, null_only=RESPONSE_NULL_ONLY | INPUT_TOKENS_NULL_ONLY
        ),
        "/tokenize": tokenize_body,
    }
