"""Poem forms and templates on the server (charlm's extension to the OpenAI API, docs/serve.md):
`form`, `template` and `acrostic` on both endpoints and on the page. The model is test_forms.py's
untrained one whose likeliest characters are the ones a form forbids, so only the template keeps
a sample in shape (`test_without_a_form_the_samples_do_not_fit` is the control)."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from charlm.errors import CharLMError
from charlm.forms import FORM_NAMES, FORMS, is_han, template_of
from charlm.sampler import generate
from charlm.serve import protocol
from charlm.serve.api_error import APIError
from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig

from .conftest import wait_healthy
from .test_forms import CHINESE, HAN, piece_model, telling_chinese_model
from .test_serve import made_text, page_ready, running, set_field, wait_until

PROMPT = "丁\n"
CHAT = [{"role": "user", "content": "丁"}]
VERSE = "".join(chr(0x4E00 + i) for i in range(5))  # five characters the model knows


@pytest.fixture(scope="module")
def served():
    """`chinese_model`, its state telling the prompt (`telling_chinese_model`): a server that primed a prompt
    wrongly writes other poems than generate's."""
    model = telling_chinese_model()
    app = create_app({"zh": lambda: model}, ServeConfig(max_streams=16, max_tokens=100_000, chunk_ms=20))
    with running(app) as url:
        wait_healthy(url)
        yield url, app.state.server


@pytest.fixture
def client(served) -> OpenAI:
    return OpenAI(base_url=f"{served[0]}/v1", api_key="x", max_retries=0)


def poems(client: OpenAI, **options) -> tuple[list[str], list[str]]:
    """Each choice's text and finish reason."""
    response = client.completions.create(model="zh", prompt=PROMPT, **options)
    choices = sorted(response.choices, key=lambda c: c.index)
    return [c.text for c in choices], [c.finish_reason for c in choices]


def fits_so_far(text: str, template: str) -> bool:
    """Whether `text` is the beginning of `template` filled in with Han characters."""
    slots = template_of(template=template).slots
    return len(text) <= len(slots) and all(is_han(c) if s is None else c == s for c, s in zip(text, slots))


def verse_starts(poem: str) -> list[str]:
    return [verse[0] for verse in poem.replace("，", "\n").replace("。", "\n").split("\n") if verse]


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("temperature", [0, 0.7, 1.5, 30])
def test_every_sample_fits_its_form(client, form, temperature):
    texts, reasons = poems(client, n=3, seed=int(temperature * 10), temperature=temperature, extra_body={"form": form})
    assert all(template_of(form).fits(t) for t in texts), texts
    assert reasons == ["stop"] * 3
    if temperature:
        assert len(set(texts)) == 3  # three samples, not one repeated


def test_an_acrostic_and_a_template_through_chat(client):
    reply = client.chat.completions.create(
        model="zh", messages=CHAT, n=3, seed=4, temperature=1.2,
        extra_body={"form": "七言律诗", "acrostic": "春夏秋冬春夏秋冬"},
    )  # fmt: skip
    for choice in reply.choices:
        assert template_of("七言律诗").fits(choice.message.content) and choice.finish_reason == "stop"
        assert verse_starts(choice.message.content) == list("春夏秋冬春夏秋冬")
    texts, _ = poems(client, n=3, seed=2, extra_body={"template": "__，___。\\n____！"})
    assert all(template_of(template="__，___。\\n____！").fits(t) for t in texts), texts


def test_without_a_form_the_samples_do_not_fit(client):
    """The control: the same model and requests, free, write letters, spaces and line breaks."""
    for temperature in (0, 0.7, 1.5):
        texts, _ = poems(client, n=3, seed=1, temperature=temperature, max_tokens=len(FORMS["五言绝句"]))
        assert not any(template_of("五言绝句").fits(t) for t in texts)


def test_the_server_and_generate_write_the_same_poem_from_one_seed(client):
    options = {"temperature": 0.9, "top_p": 0.9, "n": 2, "seed": 7}
    extras = {"top_k": 20, "repetition_penalty": 1.3, "form": "七言绝句", "acrostic": "春夏秋冬"}
    texts, _ = poems(client, **options, extra_body=extras)
    made = generate(telling_chinese_model(), PROMPT, temperature=0.9, top_p=0.9, top_k=20, repetition_penalty=1.3,
                    form="七言绝句", acrostic="春夏秋冬", num_samples=2, random_seed=7)  # fmt: skip
    assert texts == [text[len(PROMPT) :] for text in made]
    assert all(verse_starts(t) == list("春夏秋冬") for t in texts)


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"template": "__：___"}, "template", "template: 1 character the model has never seen: '："),
        (
            {"template": "__，___", "acrostic": "龘夏"},
            "acrostic",
            "acrostic: 1 character the model has never seen: '龘'",
        ),
        ({"form": "五言"}, "form", "form '五言' is not a form charlm knows; choose one of 五言绝句"),
        ({"form": "五言"}, "form", "or a short name (五绝, 七绝, 五律, 七律), in simplified or traditional"),
        ({"form": "五言绝句", "template": "_"}, "form", "give form or template, not both"),
        ({"form": "五言绝句", "acrostic": "春夏"}, "acrostic", "acrostic has 2 characters but form 五言绝句 has 4"),
        ({"acrostic": "春夏"}, "acrostic", "acrostic fixes the first character of each verse"),
        (
            {"form": "五言绝句", "acrostic": "春，秋冬"},
            "acrostic",
            "acrostic 春，秋冬: verse 2 would begin with '，', which is not a Han character",
        ),
        ({"template": "，。"}, "template", "template has no `_`"),
        ({"template": "_" * 100_001}, "template", "this server writes at most 100,000"),
        ({"form": 5}, "form", "form must be a string, not an integer"),
        ({"template": ["_"]}, "template", "template must be a string, not a list"),
        ({"acrostic": {}}, "acrostic", "acrostic must be a string, not an object"),
    ],
)
def test_a_form_that_cannot_be_written_is_a_400_naming_its_field(client, served, fields, param, says):
    for create in (
        lambda: client.completions.create(model="zh", prompt=PROMPT, extra_body=fields),
        lambda: client.chat.completions.create(model="zh", messages=CHAT, extra_body=fields),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            create()
        error = caught.value.body
        assert error["param"] == param and says in error["message"] and "--form" not in error["message"]
        assert "--template" not in error["message"] and "--acrostic" not in error["message"]
        assert error["code"] in ("invalid_value", "invalid_type") and error["type"] == "invalid_request_error"
    wait_until(lambda: served[1].busy == 0)  # a refused request holds no row
    assert len(poems(client, max_tokens=5)[0][0]) == 5


@pytest.mark.parametrize(
    ("fields", "prompt", "param"),
    [
        ({"form": "五言绝句", "acrostic": "春夏"}, PROMPT, "acrostic"),  # forms.template_of
        ({"template": "__，___", "acrostic": "龘夏"}, PROMPT, "acrostic"),  # Constrained, a character unseen
        ({"template": "__：___"}, PROMPT, "template"),
        ({"form": "五绝", "logit_bias": {str(CHINESE.index["，"]): -100}}, PROMPT, "logit_bias"),
        ({"form": "五绝", "acrostic": "春夏秋冬"}, PROMPT + "七\n" + VERSE + "，丙丁", "acrostic"),  # Constrained.begun
        ({"form": "五绝"}, PROMPT + VERSE + "丙，", "prompt"),  # its last line breaks the form
    ],
)
def test_the_field_a_form_error_names_does_not_hang_on_its_wording(client, monkeypatch, fields, prompt, param):
    """`form_error` named the field by the start of the message ("acrostic", "logit_bias", "prompt"): a message
    reworded in forms.py or constraints.py would have named another field, as every one here did."""
    shown = CharLMError.__str__
    monkeypatch.setattr(CharLMError, "__str__", lambda error: "in other words, " + shown(error))
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="zh", prompt=prompt, max_tokens=5, extra_body=fields)
    error = caught.value.body
    assert (error["param"], error["message"][:16]) == (param, "in other words, "), error


def test_the_default_max_tokens_is_the_whole_poem_and_an_explicit_one_cuts_it(client):
    form = "七言律诗"  # 67 characters, where a completion's default is 16
    response = client.completions.create(model="zh", prompt=PROMPT, seed=3, extra_body={"form": form})
    choice = response.choices[0]
    assert template_of(form).fits(choice.text) and choice.finish_reason == "stop"
    assert response.usage.completion_tokens == len(FORMS[form])
    texts, reasons = poems(client, seed=3, max_tokens=10, extra_body={"form": form})
    assert texts == [choice.text[:10]] and reasons == ["length"]
    texts, reasons = poems(client, seed=3, max_tokens=500, extra_body={"form": form})
    assert texts == [choice.text] and reasons == ["stop"]
    # the default within the server's limit, for both endpoints
    chat = {"messages": CHAT, "form": "五言绝句"}
    assert protocol.completion_params({"prompt": "a", "form": form}, ServeConfig()).max_tokens == len(FORMS[form])
    assert protocol.chat_params(chat, ServeConfig())[0].max_tokens == len(FORMS["五言绝句"])
    with pytest.raises(APIError, match="at most 40") as caught:  # longer than the server ever writes
        protocol.completion_params({"prompt": "a", "form": "五言律诗"}, ServeConfig(max_tokens=40))
    assert caught.value.param == "form"


def test_streaming_with_a_form_gives_the_same_poems(client):
    texts, _ = poems(client, n=2, seed=9, extra_body={"form": "五言律诗"})
    chunks = list(
        client.completions.create(model="zh", prompt=PROMPT, n=2, seed=9, stream=True, extra_body={"form": "五言律诗"})
    )
    streamed = ["".join(c.choices[0].text for c in chunks if c.choices[0].index == i) for i in range(2)]
    assert streamed == texts
    assert sorted(c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason) == ["stop", "stop"]
    chat = client.chat.completions.create(
        model="zh", messages=CHAT, seed=9, stream=True, extra_body={"form": "五言绝句"}
    )
    chunks = list(chat)
    assert template_of("五言绝句").fits("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_requests_with_different_forms_share_one_batch_each_in_its_own_form(client, served):
    """Three requests' rows in one batch at once, each walking its own template; the middle one ends
    first, so the last one's row is moved into its place (its cursor must go with it)."""
    engine = served[1].models["zh"].engine
    wait_until(lambda: engine.active == 0)
    templates = ["_____，_____。\\n" * 4000, "___，___。\\n" * 6000, "_______，_______。\\n" * 3000]
    texts = ["", "", ""]

    def start(template: str, **options):
        stream = client.completions.create(
            model="zh", prompt=PROMPT, stream=True, temperature=1.3, extra_body={"template": template}, **options
        )
        return stream, iter(stream)

    def read(k: int, chunks) -> None:
        for chunk in chunks:
            for choice in chunk.choices:
                if k != 1 or choice.index == 0:
                    texts[k] += choice.text
                else:
                    other.append(choice.text)

    other: list[str] = []
    streams = []
    for k, options in enumerate([{"seed": 1}, {"seed": 2, "n": 2, "max_tokens": 5000}, {"seed": 3}]):
        streams.append(start(templates[k], **options))
        read(k, [next(streams[k][1])])
    assert engine.active == 4  # 1 + 2 + 1 rows of three templates in one batch
    read(1, streams[1][1])  # the middle request to its end
    assert len(texts[1]) == len("".join(other)) == 5000 and fits_so_far("".join(other), templates[1])
    assert engine.active == 2
    for chunk in streams[2][1]:  # the last request (it joined after the middle one), moved, writes on
        read(2, [chunk])
        if len(texts[2]) > 5300:
            break
    read(0, [next(streams[0][1])])
    for stream, _ in (streams[0], streams[2]):
        stream.close()
    wait_until(lambda: engine.active == 0)
    for text, template in zip(texts, templates):
        assert fits_so_far(text, template), text[:80]
    assert len(texts[2]) > 5300 and len(texts[0]) > 0


def test_a_sentencepiece_model_writes_whole_pieces_into_the_form():
    model = piece_model()
    with running(create_app({"pieces": lambda: model}, ServeConfig())) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        response = client.completions.create(model="pieces", prompt="", n=3, seed=5, extra_body={"form": "五言绝句"})
        assert all(template_of("五言绝句").fits(c.text) and c.finish_reason == "stop" for c in response.choices)


def test_the_openapi_document_describes_the_extension(served):
    document = httpx.get(f"{served[0]}/openapi.json").json()
    for path in ("/v1/completions", "/v1/chat/completions"):
        schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        for name in ("form", "template", "acrostic"):
            assert schema["properties"][name]["type"] == ["string", "null"]  # null: left out
            assert "charlm's extension" in schema["properties"][name]["description"]
        assert schema["properties"]["form"]["enum"] == [*FORM_NAMES, None]
        assert {"五言绝句", "五绝", "七言律詩"} <= set(schema["properties"]["form"]["enum"])


def test_the_page_menu_offers_the_forms_charlm_knows(served):
    """The page's menu is charlm.forms' table (its full names; a request may also give a short one)."""
    page = httpx.get(served[0]).text
    assert "<!-- FORMS -->" not in page
    assert [name for name in FORM_NAMES if f'<option value="{name}">{name}</option>' in page] == list(FORMS)


def test_a_form_by_its_short_or_traditional_name_is_that_form(client):
    """五绝 and 七言律詩 are what Chinese readers type for 五言绝句 and 七言律诗: the same poems from one seed."""
    for name, form in (("五绝", "五言绝句"), ("七言律詩", "七言律诗")):
        texts = [poems(client, n=2, seed=4, extra_body={"form": given})[0] for given in (name, form)]
        assert texts[0] == texts[1] and all(template_of(form).fits(t) for t in texts[0]), texts
        chat = client.chat.completions.create(model="zh", messages=CHAT, seed=4, extra_body={"form": name})
        assert template_of(form).fits(chat.choices[0].message.content)


@pytest.mark.slow  # a browser
def test_page_writes_a_poem_in_the_form_chosen(served, browser):
    from selenium.webdriver.support.ui import Select

    url, _ = served
    wait = page_ready(browser, url)
    template_box = browser.find_element("id", "template")
    assert not template_box.is_displayed()
    Select(browser.find_element("id", "form")).select_by_value("五言绝句")
    set_field(browser, "seed", PROMPT)
    set_field(browser, "temperature", "1.5")
    browser.find_element("id", "generate").click()
    wait(browser, 20).until(lambda d: "done" in d.find_element("id", "status").text)
    poem = made_text(browser)
    assert template_of("五言绝句").fits(poem), poem
    assert "done (stop)" in browser.find_element("id", "status").text

    set_field(browser, "acrostic", "春夏秋冬")
    browser.find_element("id", "generate").click()
    wait(browser, 20).until(lambda d: made_text(d) != poem and "done" in d.find_element("id", "status").text)
    assert template_of("五言绝句").fits(made_text(browser)) and verse_starts(made_text(browser)) == list("春夏秋冬")
    written = made_text(browser)

    Select(browser.find_element("id", "form")).select_by_value("template")
    assert template_box.is_displayed()
    set_field(browser, "template", "__：___")
    for error in (
        "acrostic has 4 characters but template has 2 verses",
        "template: 1 character the model has never seen: '：",
    ):
        browser.find_element("id", "generate").click()
        wait(browser, 20).until(lambda d: d.find_element("id", "seed-error").text)
        assert error in browser.find_element("id", "seed-error").text
        assert "see the form" in browser.find_element("id", "status").text
        assert made_text(browser) == written  # the last poem stays
        set_field(browser, "acrostic", "")

    Select(browser.find_element("id", "form")).select_by_value("")
    assert not template_box.is_displayed()
    set_field(browser, "length", "30")
    browser.find_element("id", "generate").click()  # free text again: no form field is sent
    wait(browser, 20).until(lambda d: "done (length)" in d.find_element("id", "status").text)
    assert len(made_text(browser)) == 30 and not browser.find_element("id", "seed-error").text


@pytest.mark.slow  # a browser
def test_page_shows_copies_and_files_a_forms_seed_as_the_server_read_it(served, browser):
    """With a form, the server reads a seed's half-width ',' as the form's '，' (and echoes it so; `charlm sample`
    prints it so), but the serve page showed, filed and continued `丁,` as typed: it now shows the seed the
    server read, and Copy, the history and Continue take that."""
    import json

    from selenium.webdriver.support.ui import Select

    url, _ = served
    typed, read = PROMPT + HAN[:5] + ",", PROMPT + HAN[:5] + "，"
    assert generate(telling_chinese_model(), typed, form="五言绝句", length=1)[0].startswith(read)
    wait = page_ready(browser, url)
    Select(browser.find_element("id", "form")).select_by_value("五言绝句")
    set_field(browser, "seed", typed)
    browser.find_element("id", "generate").click()
    wait(browser, 20).until(lambda d: "done" in d.find_element("id", "status").text)
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#text .seed')].map(s => s.textContent).join('')"
    )
    assert shown == read and template_of("五言绝句").fits(HAN[:5] + "，" + made_text(browser)), shown
    filed = json.loads(browser.execute_script("return localStorage.getItem('charlm.history')"))[0]
    assert filed["seed"] == read, filed["seed"]
    assert browser.find_element("id", "seed").get_attribute("value") == typed  # the box keeps what was typed
    browser.find_element("id", "continue").click()
    assert browser.find_element("id", "seed").get_attribute("value") == read + made_text(browser)


def test_the_server_goes_on_with_the_poem_its_prompt_began(client, served):
    """A prompt that began the poem (a verse and two characters) gets the rest of it, as `charlm.generate` and
    `charlm sample` write it (tests/test_forms.py::test_the_cli_python_and_the_server_go_on_with_one_poem_alike);
    a prompt whose verse breaks its acrostic is a 400 naming `acrostic`."""
    verse = "".join(chr(0x4E00 + i) for i in range(5)) + "，"
    prompt = PROMPT + "七\n" + verse + "丙丁"
    response = client.completions.create(
        model="zh", prompt=[prompt, PROMPT], n=2, seed=6, temperature=1.2, extra_body={"form": "五绝"}
    )
    texts = [c.text for c in sorted(response.choices, key=lambda c: c.index)]
    made = generate(telling_chinese_model(), prompt, form="五绝", num_samples=2, random_seed=6, temperature=1.2)
    assert texts[:2] == [text[len(prompt) :] for text in made]
    assert all(template_of("五言绝句").fits(verse + "丙丁" + t) for t in texts[:2]), texts
    assert all(template_of("五言绝句").fits(t) for t in texts[2:]), texts  # the other prompt: a whole poem
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="zh", prompt=prompt, extra_body={"form": "五绝", "acrostic": "春夏秋冬"})
    error = caught.value.body
    assert error["param"] == "acrostic" and error["message"].startswith(
        "acrostic 春夏秋冬: the prompt's poem begins verse 1"
    )
    wait_until(lambda: served[1].busy == 0)


def test_the_server_reads_a_prompts_poem_in_the_forms_marks_and_refuses_one_that_breaks_it(client, served):
    """As `charlm sample` does (tests/test_forms.py): a half-width ',' in the prompt's poem was read as a stray
    character, and a new poem glued to it; a prompt whose last line breaks the form got one on that line too."""
    verse = "".join(chr(0x4E00 + i) for i in range(5))
    prompt = PROMPT + "七\n" + verse + ",丙"
    response = client.completions.create(
        model="zh", prompt=prompt, n=2, seed=6, temperature=1.2, echo=True, extra_body={"form": "五绝"}
    )
    texts = [c.text for c in sorted(response.choices, key=lambda c: c.index)]
    made = generate(telling_chinese_model(), prompt, form="五绝", num_samples=2, random_seed=6, temperature=1.2)
    assert texts == made and made[0].startswith(PROMPT + "七\n" + verse + "，丙"), texts
    assert all(template_of("五言绝句").fits(t[len(PROMPT + "七\n") :]) for t in texts), texts
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="zh", prompt=PROMPT + verse + "丙，", extra_body={"form": "五绝"})
    error = caught.value.body
    assert error["param"] == "prompt" and error["message"].startswith(
        f"prompt: its last line '{verse}丙，' has '丙' where form 五绝 writes '，'"
    ), error
    wait_until(lambda: served[1].busy == 0)
