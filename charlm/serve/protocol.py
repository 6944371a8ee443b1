"""The OpenAI API as charlm speaks it: the request bodies of completions, chat completions and /tokenize
checked into `Params`, each field read by type with json_fields.py's readers, and the checks every
endpoint shares, on which responses_api.py reads the Responses API's (shapes.py shapes the answers;
schema.py says these checks as JSON Schema).

Fields follow OpenAI's legacy completions as llama.cpp and vLLM implement them (chat and the Responses
API read their messages into one prompt, `joined`, and share the rest: `common`); `max_tokens` and
`usage` count characters (a charlm token is a character; `logit_bias`'s keys are vocabulary ids, as
`/tokenize` says them, or a token's position in `/v1/models`' `meta.characters` or `meta.pieces`).
OpenAI's `presence_penalty` and `frequency_penalty` count those ids, a sentencepiece model's pieces
(completions and chat; the Responses API has neither, so it takes them at 0 only). charlm's extras:
`top_k` and `repetition_penalty` (llama.cpp's `repeat_penalty` too), and `form`, `template` and
`acrostic`, which make every sample write into a poem form or a template (`charlm.forms`). Every bad
field is an `APIError` naming it; a field charlm does not know is refused (as OpenAI does), except
OpenAI's at their neutral values (`best_of: 1`, ...), which clients send by default.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import forms
from ..config import (
    COUNT_PENALTIES,
    MAX_COUNT_PENALTY,
    MAX_LOGIT_BIAS,
    MAX_REPETITION_PENALTY,
    SEED_RANGE,
    SampleConfig,
)
from ..corpus import check_characters
from ..errors import CharLMError, FieldError
from .api_error import APIError, shown
from .config import ServeConfig
from .json_fields import (
    boolean,
    integer,
    json_equal,
    json_object,
    known_fields,
    number,
    one_of,
    required,
    string,
    strings,
    unrecognized,
)

MAX_STOPS = 16
MAX_STOP_CHARS = 1000  # a stop text's length (a request's stops are matched on every step of its rows)
MAX_LOGPROBS = 20
MAX_TEMPERATURE = 100.0  # the highest temperature a request takes
TOP_K_RANGE = (-1, 2**31 - 1)  # 0 and -1: off, as in llama.cpp and vLLM
# logit_bias entries: a bound on a flood of keys, read id by id (a few microseconds each), not on a ban.
# A model's ids are distinct and each is biased once, so a request holds at most one entry per token of
# its model: a 红楼梦 model's page banning 2,000 of its 4,500 characters would meet a bound of 1,024.
MAX_BIASED = 65_536
# A request body's JSON values, at most: json.loads, in C, holds the GIL throughout, so no thread keeps
# it off the event loop: 13.6 MB of `[],` (the default body limit) held every stream and /health 1.6 s
# a body. This many (a full logit_bias and some 5,000 chat messages beside it) took 10-40 ms (65,536 of
# logit_bias's "id": -100: 40 ms, the slowest seen; a 2-core machine busy with other work).
MAX_JSON_ITEMS = MAX_BIASED + 16_384
# A token id's digits, at most: ids below 2**32, and int() of a key of 5,000 digits raises
MAX_ID_DIGITS = len(str(2**32))
# logit_bias's keys as nearly every client writes them, joined by commas: ids in plain decimal, so no
# two name one id (`plain_bias`)
PLAIN_ID = f"(?:0|[1-9][0-9]{{0,{MAX_ID_DIGITS - 1}}})"
PLAIN_IDS = re.compile(f"{PLAIN_ID}(?:,{PLAIN_ID})*")


@dataclass
class Params:
    """A completion request, checked: what a `Completion` (completion.py) runs."""

    model: str | None
    prompts: list[str]
    max_tokens: int
    temperature: float
    top_p: float | None
    top_k: int | None
    repetition_penalty: float
    presence_penalty: float  # OpenAI's, -2 to 2 (0: none)
    frequency_penalty: float
    n: int
    stream: bool
    stops: tuple[str, ...]
    seed: int | None
    logprobs: int | None
    echo: bool
    include_usage: bool
    template: forms.Template | None = None  # `form` / `template` / `acrostic`, parsed (None: free text)
    logit_bias: dict[int, float] | None = None  # token id -> bias; which ids the model has is checked with it
    prompt_param: str = "prompt"  # the field the prompts came from (chat's: messages), named if one is too long
    user: str | None = None  # the end user's id: changes nothing, but a response echoes it

    @property
    def choices(self) -> int:
        """The choices the answer holds, a row of the batch each: `n` samples of every prompt."""
        return self.n * len(self.prompts)


FORM_FIELDS = ("form", "template", "acrostic")
COMMON = {
    "model", "max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "repeat_penalty", "n",
    "stream", "stop", "seed", "stream_options", "user", "logit_bias", *FORM_FIELDS,
}  # fmt: skip
COMPLETION_FIELDS = COMMON | {"prompt", "logprobs", "echo", *COUNT_PENALTIES}
# OpenAI's chat fields that name the end user or a cache bucket, which replace `user`: strings that change
# nothing here (charlm caches no prompt), taken as `user` is
USER_FIELDS = ("safety_identifier", "prompt_cache_key")
CHAT_FIELDS = COMMON | {"messages", "logprobs", "top_logprobs", "max_completion_tokens", *USER_FIELDS, *COUNT_PENALTIES}
# a chat message's fields, of every role (OpenAI's): all but content change nothing here, and a client
# sends an assistant's back as it got them
MESSAGE_FIELDS = ("role", "content", "name", "refusal", "audio", "tool_calls", "function_call", "tool_call_id")
# the roles of OpenAI's chat messages: each is dropped here (`chat_params`), another is a misspelling
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# OpenAI's fields charlm accepts at the value that changes nothing, as JSON Schema's `enum` compares
# values (`json_equal`: 1.0 is 1, `false` is not 0), or null; chat clients send some of them by default.
NEUTRAL = {
    "best_of": (1,),
    "response_format": ({"type": "text"},), "store": (False,), "tool_choice": ("none",),
    "modalities": (["text"],), "service_tier": ("auto", "default"), "tools": ([],), "functions": ([],),
    "function_call": ("none",), "metadata": ({},),
    # how long OpenAI keeps a prompt's cache: charlm keeps none, so a retention's most and the options'
    # defaults change nothing
    "prompt_cache_retention": ("in_memory", "24h"),
    "prompt_cache_options": ({}, {"mode": "implicit"}, {"ttl": "30m"}, {"mode": "implicit", "ttl": "30m"}),
}  # fmt: skip
# OpenAI's fields charlm accepts as null only, which OpenAI takes as not given (the official client
# sends a field given as None as null)
NULL_ONLY = {
    "suffix",
    "parallel_tool_calls",
    "reasoning_effort",
    "audio",
    "prediction",
    "web_search_options",
    "verbosity",
    "moderation",
}
TOKENIZE_FIELDS = {"model", "content", "prompt", "with_pieces"}
MAX_METADATA_VALUE = 512  # OpenAI's bound on a value of the Responses API's `metadata` (responses_api.py)
# The most characters of the strings that name the end user or a cache bucket, which a response echoes
# (in every stream event that repeats it): OpenAI's 64 for safety_identifier; it documents no bound for
# the others, held to a metadata value's
USER_FIELD_MAX_LENGTH = {"user": MAX_METADATA_VALUE, "safety_identifier": 64, "prompt_cache_key": MAX_METADATA_VALUE}
# stream_options' fields: `include_obfuscation` asks OpenAI to pad each chunk (against guessing its
# text from its size); charlm never pads, so either value gives the same stream
STREAM_OPTIONS = {"include_usage", "include_obfuscation"}
# OpenAI's `prompt` takes token ids too; charlm reads text
PROMPT_IDS = "token ids are not taken: a charlm token is a character; send the text"


def parsed_body(body: bytes | bytearray) -> Any:
    """A request body's JSON, refused unparsed when it holds more values than any request of charlm's
    (`MAX_JSON_ITEMS`: parsing them stalls the event loop, whichever thread parses)."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")  # as json.loads reads bytes
        if json_items(text) > MAX_JSON_ITEMS:
            raise APIError(
                413, f"the request body holds over {MAX_JSON_ITEMS:,} JSON values; the largest request "
                f"(a logit_bias of {MAX_BIASED:,} token ids) holds fewer", code="request_too_large",
            )  # fmt: skip
        return json.loads(text)
    except ValueError as e:
        # The limit is Python 3.11's and 3.10.7's on (vermin knows only 3.11): a 3.10 without it says no such error
        if "integer string conversion" in str(e):  # whose own words say to call sys.set_int_max_str_digits()
            raise APIError(
                400, f"the request body holds an integer of over {sys.get_int_max_str_digits():,} digits, "  # novm
                "which no field takes; send a number that fits its field", code="invalid_json",
            ) from None  # fmt: skip
        raise APIError(400, f"the request body is not valid JSON ({e})", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply", code="invalid_json") from None


def json_items(text: str) -> int:
    """About as many as the values a JSON text holds (an object's keys aside), counted at C speed without
    parsing it: its commas and closing brackets, those in strings too unless that makes too many; then
    only those outside strings, found once escaped quotes and backslashes are dropped. A text of more
    strings than MAX_JSON_ITEMS is not split to count those."""
    items = sum(map(text.count, ",]}"))
    if items <= MAX_JSON_ITEMS:
        return items
    plain = text.replace("\\\\", "").replace('\\"', "")
    strings = plain.count('"') // 2
    if strings > MAX_JSON_ITEMS:
        return strings
    outside = "".join(plain.split('"')[::2])
    return sum(map(outside.count, ",]}"))


def check_field_names(
    body: Any,
    known: set[str],
    neutral: dict[str, tuple] = NEUTRAL,
    null_only: set[str] = NULL_ONLY,
    refusals: dict[str, str] | None = None,
) -> dict:
    """`body`'s fields are `known`, or OpenAI's that change nothing here: `neutral` at those values, any
    of them or of `null_only` as null (the Responses API has its own of both); `refusals` says why one of
    those at another value is refused, and what to do, where "leave it out" is not all there is to say."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_type")
    neutral_or_none = {*neutral, *null_only}
    for name, value in body.items():
        if name in known or (name in neutral_or_none and value is None):
            continue
        if name in neutral and any(json_equal(value, v) for v in neutral[name]):
            continue
        if name in neutral_or_none:
            why = (refusals or {}).get(name)
            message = f"{name}: {why}" if why else f"{name} is not supported by charlm; leave it out"
            raise APIError(400, message, name, "unsupported_parameter")
        raise unrecognized(shown(name))
    return body


def user_string(body: dict, name: str) -> str | None:
    """`user`, `safety_identifier` or `prompt_cache_key`: a string no longer than USER_FIELD_MAX_LENGTH says,
    whichever endpoint takes it (a response echoes it: `responses_api.echoable`)."""
    value = string(body, name)
    most = USER_FIELD_MAX_LENGTH[name]
    if value is not None and len(value) > most:
        message = f"{name} may hold at most {most} characters, not {len(value):,}; send a shorter one (a hash of it)"
        raise APIError(400, message, name, "invalid_value")
    return value


def common(
    body: dict, config: ServeConfig, prompts: list[str], max_tokens: int | None, default_length: int, prompt_param: str
) -> Params:
    """The fields completions, chat and responses share, checked in this order: the first wrong one is the
    error. `prompt_param` is the field the prompts came from (`prompt`, `messages`, `input`)."""
    model = string(body, "model")
    check_prompts(prompts, config, prompt_param)
    template = form_template(body, config)
    if template is not None:  # the whole poem by default, not a client's default length (16 for completions)
        default_length = min(len(template.slots), config.max_tokens)
    max_tokens = default_length if max_tokens is None else max_tokens
    n = samples_per_prompt(body, config, len(prompts))
    top_k = integer(body, "top_k", None, *TOP_K_RANGE)
    penalty = repetition_penalty(body)
    # OpenAI's range; the Responses API's are 0 here (`responses_api.RESPONSE_NEUTRAL`)
    presence, frequency = (number(body, name, 0.0, -MAX_COUNT_PENALTY, MAX_COUNT_PENALTY) for name in COUNT_PENALTIES)
    stream = boolean(body, "stream", False)
    stream_options = stream_options_of(body, stream)
    # Any 64-bit seed, as OpenAI and generate take (sample i's seed + i is one torch takes); -1: pick one
    seed = integer(body, "seed", None, *SEED_RANGE)
    user = user_string(body, "user")
    stops = stops_of(body)
    logit_bias = logit_bias_of(body)
    return Params(
        model=model,
        prompts=prompts,
        max_tokens=max_tokens,
        temperature=number(body, "temperature", 1.0, 0.0, MAX_TEMPERATURE),
        top_p=number(body, "top_p", None, 0.0, 1.0, open_low=True),
        top_k=None if top_k is None or top_k <= 0 else top_k,  # 0 and -1: off, as in llama.cpp and vLLM
        repetition_penalty=penalty,
        presence_penalty=presence,
        frequency_penalty=frequency,
        n=n,
        stream=stream,
        stops=tuple(stops),
        seed=None if seed in (None, -1) else seed,
        logprobs=None,
        echo=False,
        include_usage=boolean(stream_options or {}, "include_usage", False, "stream_options"),
        template=template,
        logit_bias=logit_bias,
        prompt_param=prompt_param,
        user=user,
    )


# How a prompt over --max-prompt is said, by the field it came from; /tokenize's text, read as a prompt
# and bound by the same limit, is said as a prompt is (`param` names its field)
PROMPT_LENGTH = {
    "prompt": "the prompt has",
    "messages": "the messages, joined by blank lines and ending in one, make",
    "input": "the instructions and input, joined by blank lines and ending in one, make",
}


def check_prompts(prompts: list[str], config: ServeConfig, param: str) -> None:
    """The prompts as sent, from field `param`: each within --max-prompt and one a vocabulary can encode,
    whichever endpoint reads them (input_tokens counts what a response would refuse as a response does)."""
    check_prompt_lengths(prompts, config, param)
    for prompt in prompts:
        check_encodable(prompt, param)


def check_prompt_lengths(prompts: list[str], config: ServeConfig, param: str, normalize: str = "none") -> None:
    """No prompt longer than --max-prompt, from field `param`; a chat's prompt is its messages joined
    (`chat_params`). `normalize`: the prompts are as the model reads them (`check_length`)."""
    for prompt in prompts:
        check_length(len(prompt), config, PROMPT_LENGTH[param], param, normalize)


def check_length(count: int, config: ServeConfig, what: str, param: str, normalize: str = "none") -> None:
    """A text of `count` characters within --max-prompt, checked as it is sent and again as the model reads
    it, in its Unicode `normalize`: nfkc makes up to 18 characters of one (U+FDFA), and a prompt within
    the limit as sent could be read 18 times as long (seconds of priming; a /tokenize answer of megabytes)."""
    if count > config.max_prompt:
        read = "" if normalize == "none" else f" as the model reads it ({normalize.upper()}-normalized)"
        raise APIError(
            400, f"{what} {count:,} characters{read}; this server takes at most {config.max_prompt:,} "
            "(charlm serve --max-prompt)", param, "context_length_exceeded",
        )  # fmt: skip


def check_encodable(text: str, param: str) -> None:
    """A text no vocabulary can encode (a lone surrogate, which JSON allows: "\\ud800") is a 400 naming its
    field `param`: found here, at C speed, before a request takes rows, it is never a 429 to retry while
    every stream is busy."""
    try:
        check_characters(text, param)
    except CharLMError as e:
        raise APIError(400, str(e), param, "unknown_characters") from None


def samples_per_prompt(body: dict, config: ServeConfig, prompts: int) -> int:
    """`n`: every prompt's n samples are rows of one engine at once, so all of them count against --max-streams."""
    n = integer(body, "n", 1, 1, config.max_streams, "charlm serve --max-streams")
    if n * prompts > config.max_streams:
        raise APIError(
            400, f"{prompts} prompts x n={n} samples is more than this server runs at once "
            f"({config.max_streams}, charlm serve --max-streams)", "n", "invalid_value",
        )  # fmt: skip
    return n


def repetition_penalty(body: dict) -> float:
    """`repetition_penalty` (vLLM's name) or `repeat_penalty` (llama.cpp's): either, or both if they agree."""
    penalties = {
        name: number(body, name, None, 0.0, MAX_REPETITION_PENALTY, open_low=True)
        for name in ("repetition_penalty", "repeat_penalty")
    }
    given = [v for v in penalties.values() if v is not None]
    if len(given) == 2 and given[0] != given[1]:
        raise APIError(
            400, "repetition_penalty and repeat_penalty disagree; give one", "repeat_penalty", "invalid_value"
        )
    return given[0] if given else 1.0


def stream_options_of(body: dict, stream: bool) -> dict | None:
    """`stream_options` ({include_usage}), which only a stream may have."""
    stream_options = json_object(body, "stream_options")
    if stream_options is not None and not stream:  # OpenAI refuses it too: a client expecting usage gets none
        raise APIError(
            400, "stream_options is only for a stream: send stream: true with it, or leave it out", "stream_options",
            "invalid_value",
        )  # fmt: skip
    known_fields(stream_options or {}, STREAM_OPTIONS, "stream_options")  # include_usge: no usage, no word why
    boolean(stream_options or {}, "include_obfuscation", True, "stream_options")  # padding charlm never adds
    return stream_options


def stops_of(body: dict) -> list[str]:
    """`stop`: a string or a list; each is matched on every step of the request's rows, hence the limits."""
    stops = strings(body, "stop", MAX_STOPS) or []
    for stop in stops:  # a lone surrogate: no model writes it, so it could never stop a text
        check_encodable(stop, "stop")
    if "" in stops:
        raise APIError(400, "stop strings must not be empty", "stop", "invalid_value")
    longest = max(map(len, stops), default=0)
    if longest > MAX_STOP_CHARS:
        raise APIError(
            400, f"a stop string may have at most {MAX_STOP_CHARS:,} characters, not {longest:,}", "stop",
            "invalid_value",
        )  # fmt: skip
    return stops


def logit_bias_of(body: dict) -> dict[int, float] | None:
    """`logit_bias`: an object of token ids (as strings, JSON's keys) to biases from -100 to 100."""
    value = json_object(body, "logit_bias")
    if value is None:
        return None
    if len(value) > MAX_BIASED:
        raise APIError(
            400, f"logit_bias may hold at most {MAX_BIASED:,} token ids, not {len(value):,}; give each of the "
            "model's tokens at most once", "logit_bias", "invalid_value",
        )  # fmt: skip
    return plain_bias(value) or logit_bias_entries(value)


def plain_bias(value: dict) -> dict[int, float] | None:
    """`logit_bias` as nearly every client writes it, checked whole at C speed (a loop over 65,536
    entries takes 80 ms): ids in plain decimal (so none twice), numbers in range. None for anything
    else, which `logit_bias_entries` reads entry by entry to say what is wrong."""
    keys = ",".join(value)
    if keys.count(",") != len(value) - 1 or not PLAIN_IDS.fullmatch(keys):  # a key "1,2" is not two ids
        return None
    given = list(value.values())
    if not set(map(type, given)) <= {int, float}:  # not bool, whose type is its own
        return None
    try:
        biases = np.array(given, dtype=np.float64)
    except OverflowError:  # an integer beyond a float's range
        return None
    if not (np.isfinite(biases).all() and -MAX_LOGIT_BIAS <= biases.min() and biases.max() <= MAX_LOGIT_BIAS):
        return None
    return dict(zip(map(int, value), biases.tolist()))


def logit_bias_entries(value: dict) -> dict[int, float] | None:
    """`logit_bias` read entry by entry: the first wrong one is the error."""
    biases, keys = {}, {}
    for key in value:
        if not (key.isascii() and key.isdigit() and len(key) <= MAX_ID_DIGITS):
            raise APIError(
                400, f"logit_bias keys are token ids, such as \"10\", not {json.dumps(shown(key), ensure_ascii=False)}; "
                "POST /tokenize gives a text's ids", "logit_bias", "invalid_value",
            )  # fmt: skip
        token = int(key)
        if token in keys:  # "1" and "01": which bias was meant?
            raise APIError(
                400, f"logit_bias gives token {token} twice ({json.dumps(keys[token])} and {json.dumps(key)}); "
                "give it once", "logit_bias", "invalid_value",
            )  # fmt: skip
        keys[token] = key
        biases[token] = number(value, key, None, -MAX_LOGIT_BIAS, MAX_LOGIT_BIAS, within="logit_bias")
    return biases or None


def form_template(body: dict, config: ServeConfig) -> forms.Template | None:
    """The template that `form`, `template` and `acrostic` ask for (None: free text), checked as far
    as it can be without the model (`completion.py` compiles it for the model's vocabulary)."""
    form, template, acrostic = (string(body, name) for name in FORM_FIELDS)
    if form is not None and form not in forms.FORM_NAMES:  # its error echoes it: a long one cut (never a name)
        form = shown(form)
    for name, text in (("template", template), ("acrostic", acrostic)):
        if text is not None:  # a lone surrogate in either, compiled for the model, would be a plain-text 500
            check_encodable(text, name)
    try:
        parsed = forms.template_of(form, template, acrostic, prefix="")
    except CharLMError as e:
        raise form_error(e, "form" if form is not None else "template") from None
    if parsed is not None and len(parsed.slots) > config.max_tokens:
        raise APIError(
            400, f"{parsed.name} has {len(parsed.slots):,} characters; this server writes at most "
            f"{config.max_tokens:,} (charlm serve --max-tokens)", "form" if form is not None else "template",
            "invalid_value",
        )  # fmt: skip
    return parsed


def form_error(error: CharLMError, given: str) -> APIError:
    """A form, template or acrostic that cannot be used, as a 400 naming the field it is about: a `FieldError`'s,
    else `given`, the field the caller passed (the prompt a poem is begun in)."""
    param = error.field if isinstance(error, FieldError) else given
    return APIError(400, str(error), param, "invalid_value")


def completion_params(body: Any, config: ServeConfig) -> Params:
    """OpenAI's legacy completions: `prompt` a text or a list of them (n samples each), 16 characters
    by default as OpenAI's, and 0 taken (`echo` with `logprobs` then scores the prompt alone)."""
    body = check_field_names(body, COMPLETION_FIELDS)
    if "prompt" not in body:
        raise APIError(400, "prompt is required: the text to continue", "prompt", "missing_required_parameter")
    prompts = strings(body, "prompt", config.max_streams, PROMPT_IDS)
    if not prompts:
        raise APIError(400, "prompt must be a string or a non-empty list of strings", "prompt", "invalid_value")
    limit = "charlm serve --max-tokens"
    given = integer(body, "max_tokens", None, 0, config.max_tokens, limit)
    params = common(body, config, prompts, given, min(16, config.max_tokens), "prompt")  # OpenAI's default length
    params.logprobs = integer(body, "logprobs", None, 0, MAX_LOGPROBS)
    params.echo = boolean(body, "echo", False)
    return params


def chat_params(body: Any, config: ServeConfig) -> tuple[Params, bool]:
    """The chat adapter: the messages' texts, a blank line between them and after the last, are the
    prompt; roles are dropped (a model trained on a novel has never seen any). Returns the params
    and whether log-probabilities were asked for."""
    body = check_field_names(body, CHAT_FIELDS)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list of {role, content}", "messages", "invalid_value")
    prompt = joined([message_text(m, i) for i, m in enumerate(messages)])
    limit = "charlm serve --max-tokens"  # at least 1, as OpenAI's chat (completions take 0: echo scores a prompt)
    newer = integer(body, "max_completion_tokens", None, 1, config.max_tokens, limit)
    given = integer(body, "max_tokens", newer, 1, config.max_tokens, limit)  # OpenAI's older name for it
    if newer is not None and given != newer:
        raise APIError(400, "max_tokens and max_completion_tokens disagree; give one", "max_tokens", "invalid_value")
    params = common(body, config, [prompt], given, min(SampleConfig.length, config.max_tokens), "messages")
    for name in USER_FIELDS:
        user_string(body, name)
    wants = boolean(body, "logprobs", False)
    top = integer(body, "top_logprobs", None, 0, MAX_LOGPROBS)
    if top is not None and not wants:
        raise APIError(400, "top_logprobs needs logprobs: true", "top_logprobs", "invalid_value")
    params.logprobs = (top or 0) if wants else None
    return params, wants


def joined(texts: list[str]) -> str:
    """A chat's prompt: its texts (empty ones dropped), a blank line between them and after the last."""
    return "\n\n".join(text for text in texts if text) + "\n\n"


def calls_a_tool(message: dict) -> bool:
    """An assistant's message with `tool_calls` (or the older `function_call`), which OpenAI's chat takes
    without a content; null is the field left out, as everywhere in a body, and `tool_calls: []` calls
    nothing (OpenAI's refuses an empty list), so neither spares a message its content."""
    calls = (message.get("tool_calls"), message.get("function_call"))
    return message["role"] == "assistant" and any(call is not None and call != [] for call in calls)


def tokenize_params(body: Any, config: ServeConfig) -> tuple[str | None, str, str, bool]:
    """`/tokenize` (llama.cpp's endpoint; vLLM's names the text `prompt`): the model, the field that holds
    the text, the text whose token ids a client wants (for `logit_bias`), and whether each id comes with
    its piece."""
    body = check_field_names(body, TOKENIZE_FIELDS)
    given = [name for name in ("content", "prompt") if body.get(name) is not None]
    if len(given) != 1:
        what = "give content or prompt, not both" if given else "content is required: the text to tokenize"
        raise APIError(400, what, "content", "invalid_value" if given else "missing_required_parameter")
    name, text = given[0], string(body, given[0]) or ""
    check_length(len(text), config, PROMPT_LENGTH["prompt"], name)
    check_encodable(text, name)
    return string(body, "model"), name, text, boolean(body, "with_pieces", False)


def message_text(message: Any, i: int) -> str:
    """The text of chat message `i`: its content, a string or text parts, whatever its role (`chat_params`
    drops roles); any other part (an image, audio) is a 400 naming the content, as a model of text cannot
    read it. As OpenAI's, only an assistant's message that calls a tool may leave it out or null, and a
    (deprecated) function's give null: no text."""
    param = f"messages[{i}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise APIError(400, f"{param} must be an object with a role and a content", param, "invalid_type")
    known_fields(message, MESSAGE_FIELDS, param)
    one_of(message, "role", CHAT_ROLES, param)
    if not calls_a_tool(message):
        what = "its text (only an assistant's message with tool_calls may leave it out or null)"
        required(message, "content", param, what, nullable=message["role"] == "function")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    parts = content if isinstance(content, list) else [None]
    if all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in parts):
        return "".join(p["text"] for p in parts)
    raise APIError(400, f"{param}.content must be text (a string or text parts)", f"{param}.content", "invalid_type")
