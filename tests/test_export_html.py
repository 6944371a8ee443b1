"""`charlm export --format html`: the page in a real headless Chromium (slow), and what can be checked
of it without a browser (fast). Models are untrained, with random weights: what the page must get
right (the arithmetic, the sampler, the controls) does not depend on training."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import subprocess
import unicodedata
import warnings
from pathlib import Path

import pytest
import torch

import charlm
from charlm import checkpoint, sampler
from charlm.commands.sample import sample_configs
from charlm.decoding import bias_vector
from charlm.errors import BiasError, CharLMError, counted
from charlm.export import html
from charlm.fields import on_command_line
from charlm.forms import FORM_NAMES, FORMS, is_cjk_punctuation, is_han, is_letter, template_of
from charlm.model import CharLM, ModelConfig
from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig
from charlm.unseen import is_simplified_chinese
from charlm.vocab import Vocab

from .conftest import TINY, assert_one_line_error, cli, make_model, run_bench, state_telling
from .test_export import CHINESE, TEXT, model_of, run_of
from .test_serve import (  # noqa: F401 -- the fox_run fixture
    COUNT_LAYOUTS,
    PAGE_WAIT,
    dark_text,
    enter_writes_and_stops,
    escape_stops_the_writing,
    fox_run,
    made_text,
    page_ready,
    running,
    set_field,
    settings_out_of_range_are_refused_by_name,
    told_what_each_part_is,
    wait_healthy,
)
from .test_vocab import SIMPLIFIED, TRADITIONAL

# How far the page's log-probabilities may be from PyTorch's fp32 ones, in nats, per stored precision:
# fp32 to rounding; fp16 and int8 bounds a few times above what docs/export.md measured on trained models.
BOUNDS = {"fp32": 1e-4, "fp16": 5e-3, "int8": 0.2}
MODELS = [("lstm", TEXT, ()), ("gru", CHINESE, (8, 20)), ("rnn", TEXT, ()), ("lstm", CHINESE, (6, 30))]


def exported(tmp_path, model, weights: str = "fp32", name: str = "page.html"):
    run = run_of(model, tmp_path / "run")
    out = tmp_path / name
    result = cli("export", str(run), "--format", "html", "--weights", weights, "--output", str(out))
    assert result.exit_code == 0, result.output
    return out


def call(driver, script: str, *args):
    """Await a promise in the page: `script` uses the arguments as args[0], args[1], ..."""
    driver.set_script_timeout(120)
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1], args = arguments;"
        f"({script}).then(done, (e) => done('error: ' + e.message));",
        *args,
    )


def write(driver, **fields: str) -> None:
    """Fill in the page's fields and press Generate."""
    for name, value in fields.items():
        set_field(driver, name, value)
    driver.find_element("id", "generate").click()


def torch_logprobs(model, text: str) -> torch.Tensor:
    ids = model.vocab.encode(text)
    with torch.no_grad():
        logits = model(ids.unsqueeze(0))[0][0].double()
    return torch.log_softmax(logits, -1)[:-1].gather(1, ids[1:].unsqueeze(1)).squeeze(1)


def test_page_holds_everything_and_fetches_nothing(tmp_path):
    page = exported(tmp_path, model_of()).read_text(encoding="utf-8")
    assert "://" not in page and "<link" not in page and "src=" not in page
    assert all(marker not in page for marker in html.MARKERS) and "__CHARLM_MATVEC_WASM__" not in page
    css = (html.resources.files("charlm.serve") / "page.css").read_text(encoding="utf-8")
    assert css in page  # the serve page's look, shared


def test_weights_shrink_with_precision(tmp_path):
    model = model_of(hidden=128)
    sizes = {w: exported(tmp_path, model, w, f"{w}.html").stat().st_size for w in ("fp32", "fp16", "int8")}
    assert sizes["int8"] < 0.6 * sizes["fp16"] < 0.6 * sizes["fp32"]


def test_sentencepiece_model_is_refused_in_one_line(tmp_path, monkeypatch):
    run = run_of(model_of(), tmp_path / "run")
    monkeypatch.setattr(html, "Vocab", type("NotChars", (), {}))  # any vocabulary that is not one char per id
    assert_one_line_error(cli("export", str(run), "--format", "html"), "sentencepiece", "--format onnx")


@pytest.mark.slow
@pytest.mark.parametrize(("cell", "chars", "cutoffs"), MODELS)
def test_page_logprobs_and_greedy_text_equal_torch(tmp_path, browser, cell, chars, cutoffs):
    model = model_of(cell, chars, cutoffs, hidden=32)
    text = (chars * 40)[7:507]
    expected = torch_logprobs(model, text)
    seed = chars[:5]
    greedy = sampler.generate(model, seed, length=300, greedy=True)[0]
    for weights, bound in BOUNDS.items():
        page_ready(browser, exported(tmp_path, model, weights, f"{weights}.html").as_uri())
        got = call(browser, "window.charlm.logprobs(args[0])", text)
        assert len(got) == 499, got
        assert (torch.tensor(got, dtype=torch.float64) - expected).abs().max().item() < bound, weights
        if weights == "fp32":
            assert call(browser, "window.charlm.generate({seed: args[0], length: 300, greedy: true})", seed) == greedy
            assert (
                call(browser, "window.charlm.generate({length: 40, greedy: true})")
                == sampler.generate(model, "", length=40, greedy=True)[0]
            )  # an empty seed starts at the beginning of a line
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


@pytest.mark.slow
def test_page_samples_with_temperature_and_top_p(tmp_path, browser):
    model = model_of("lstm", TEXT, hidden=32)
    page_ready(browser, exported(tmp_path, model).as_uri())
    options = "{seed: 'the ', length: 400, temperature: args[0], top_p: args[1], random_seed: 7}"
    same = [call(browser, f"window.charlm.generate({options})", 1.0, 1.0) for _ in range(2)]
    assert same[0] == same[1] and same[0].startswith("the ") and len(same[0]) == 404  # seeded: reproducible
    assert set(same[0]) <= set(TEXT)
    narrow = call(browser, f"window.charlm.generate({options})", 1.0, 0.01)  # top-p 0.01: the likeliest only
    assert narrow == sampler.generate(model, "the ", length=400, greedy=True)[0]
    with torch.no_grad():
        logits = model(model.vocab.encode("the ").unsqueeze(0))[0][0, -1].double()
    draws = "Promise.all([...Array(600).keys()].map((i) => window.charlm.generate({seed: 'the ', length: 1, temperature: args[0], top_p: args[1], random_seed: i})))"
    for temperature in (0.5, 1.5):
        first = [text[-1] for text in call(browser, draws, temperature, 1.0)]
        probs = torch.softmax(logits / temperature, -1)
        seen = torch.tensor([first.count(c) / len(first) for c in model.vocab.chars], dtype=torch.float64)
        assert (seen - probs).abs().max().item() < 0.06, temperature  # the page draws from softmax(logits / T)
    ranked = torch.softmax(logits, -1).sort(descending=True)
    nucleus = {model.vocab.chars[i] for i in ranked.indices[(ranked.values.cumsum(0) - ranked.values) < 0.3].tolist()}
    assert {text[-1] for text in call(browser, draws, 1.0, 0.3)} <= nucleus
    error = call(browser, "window.charlm.generate({seed: 'XYZ'})")
    assert error.startswith("error: ") and "never seen" in error and "'X'" in error


@pytest.mark.slow
def test_page_writes_streams_stops_and_continues(tmp_path, browser):
    # A 1x32 model writes 100,000+ characters a second here: a 2x128 one asked for 2,000,000 is still
    # writing when Stop is clicked (a run that had already finished made this test fail, not the page).
    model = model_of("lstm", TEXT, hidden=128)
    wait = page_ready(browser, exported(tmp_path, model).as_uri())
    header = browser.find_element("tag name", "header").text
    assert "run" in header and "fox" in header and "2.500 bpc" in header  # name, corpus, validation bpc
    write(browser, seed="the quick ", length="2000000", temperature="1.5")
    wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) > 0)
    first = len(made_text(browser))
    wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) > first + 200)  # text keeps streaming in
    status = browser.find_element("id", "status").text
    assert browser.find_element("id", "stop").is_enabled(), status
    assert not browser.find_element("id", "generate").is_enabled()
    browser.find_element("id", "seed").click()  # the page answers while the worker writes
    browser.find_element("id", "stop").click()
    wait(browser, PAGE_WAIT).until(lambda d: "stopped" in d.find_element("id", "status").text)
    stopped = made_text(browser)
    assert 0 < len(stopped) < 2_000_000 and set(stopped) <= set(TEXT)

    set_field(browser, "length", "2000000")
    stopped = escape_stops_the_writing(browser, wait)  # and so does Escape
    assert 0 < len(stopped) < 2_000_000
    stopped = enter_writes_and_stops(browser, wait)

    set_field(browser, "length", "120")
    browser.find_element("id", "continue").click()
    wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    assert browser.find_element("id", "seed").get_attribute("value") == "the quick " + stopped
    assert len(made_text(browser)) == 120

    write(browser, seed="the quick Q")
    wait(browser, PAGE_WAIT).until(lambda d: "error" in d.find_element("id", "status").get_attribute("class"))
    assert "never seen" in browser.find_element("id", "seed-error").text and len(made_text(browser)) == 120

    browser.find_element("id", "blank-line").click()  # stop at a blank line
    write(browser, seed="the lazy dog\n", length="5000")
    wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    made = made_text(browser)
    assert len(made) == 5000 or (made.endswith("\n\n") and "\n\n" not in made[:-1])


@pytest.mark.slow
def test_exported_page_is_named_for_a_screen_reader_and_readable_in_the_dark(tmp_path, browser):
    """As the serve page does (test_serve): the number boxes had no name, nor the text region. A sampler
    that failed was said in the status line alone, which a screen reader does not interrupt for: it is
    said under the seed too (role=alert), as the serve page says its errors."""
    wait = page_ready(browser, exported(tmp_path, model_of()).as_uri())
    told_what_each_part_is(browser, "run · charlm text generation")
    write(browser, seed="the quick ", length="40")
    wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    dark_text(browser)
    browser.execute_script("worker.dispatchEvent(new ErrorEvent('error', {message: 'out of memory'}))")
    assert browser.find_element("id", "seed-error").text == "the sampler failed: out of memory"


# Counts each text put in the role=alert region under the seed (`alerts`): a screen reader reads each one out.
COUNT_ALERTS = """window.alerts = 0;
window.alertCounter ??= new MutationObserver((records) => { alerts += records.filter((r) => r.addedNodes.length).length; });
alertCounter.observe(document.getElementById("seed-error"), { childList: true });"""


def said_failed_and_kept(driver, wait, failure: str, before: str) -> str:
    """The page says the sampler failed (its role=alert region, once, and status line), is no longer writing,
    and keeps the text written until then: returns that text."""
    wait(driver, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
    assert driver.find_element("id", "seed-error").text == f"the sampler failed: {failure}"
    assert driver.execute_script("return alerts") == 1  # the worker's error and its request's both said it
    assert "the sampler failed" in driver.find_element("id", "status").text
    assert driver.find_element("id", "text").get_attribute("aria-busy") == "false"
    assert driver.find_element("id", "generate").is_enabled() and not driver.find_element("id", "stop").is_enabled()
    assert driver.find_element("id", "continue").is_enabled()
    made = made_text(driver)
    assert made.startswith(before) and set(made) <= set(TEXT), made[:100]
    return made


@pytest.mark.slow
def test_a_sampler_that_fails_mid_way_is_said_and_its_text_kept(tmp_path, browser):
    """A worker that failed mid-generation (an error it did not catch, or one in its loop after some
    characters were written) left the page "writing…" for ever, Stop lit and Generate dark: it says the
    sampler failed, in its role=alert region as the serve page says its errors, stops writing and keeps
    the text written so far."""
    wait = page_ready(browser, exported(tmp_path, model_of("lstm", TEXT, hidden=128)).as_uri())
    write(browser, seed="the quick ", length="2000000")
    wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) > 0)
    before = made_text(browser)
    browser.execute_script(COUNT_ALERTS + "worker.dispatchEvent(new ErrorEvent('error', {message: 'out of memory'}))")
    said_failed_and_kept(browser, wait, "out of memory", before)

    # A worker whose loop throws at its 3,000th character: started again from the page's sampler, so changed
    browser.execute_script(
        """const sampler = document.getElementById("charlm-sampler");
        sampler.textContent = sampler.textContent.replace("count++;",
          "count++; if (count === 3000) throw new Error('the 3,000th character failed');");
        worker.terminate();
        delete document.body.dataset.ready;
        start();"""
    )
    wait(browser, PAGE_WAIT).until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    browser.execute_script(COUNT_ALERTS)
    write(browser, seed="the lazy ", length="2000000")
    made = said_failed_and_kept(browser, wait, "the 3,000th character failed", "")
    assert len(made) == 3000 and browser.find_element("id", "seed").get_attribute("value") == "the lazy "


def damaged_copy(page: Path, name: str, edit) -> Path:
    """A copy of `page` with its meta and weights (the JSON in their script elements) given to `edit`,
    which returns the page's text with them changed."""
    text = page.read_text(encoding="utf-8")
    parts = {}
    for part in ("meta", "weights"):
        start = text.index(f'<script id="charlm-{part}" type="application/json">')
        start = text.index(">", start) + 1
        parts[part] = (start, text.index("</script>", start))
    copy = page.with_name(name)
    copy.write_text(edit(text, parts), encoding="utf-8")
    return copy


def with_json(part: str, change):
    """An `edit` for damaged_copy: `change` given the part's JSON as loaded, which it changes in place."""

    def edit(text: str, parts: dict) -> str:
        start, end = parts[part]
        value = json.loads(text[start:end])
        change(value)
        return text[:start] + html.script_json(value) + text[end:]

    return edit


def cut_data(name: str, chars: int):
    def change(weights: dict) -> None:
        weights[name]["data"] = weights[name]["data"][:-chars]

    return change


def changed_character(weights: dict) -> None:
    data = weights["w_hh0"]["data"]
    middle = len(data) // 2
    weights["w_hh0"]["data"] = data[:middle] + ("B" if data[middle] != "B" else "C") + data[middle + 1 :]


AGAIN = "; export the model again (charlm export RUN --format html)"
CHANGED = "this page is damaged: its weights are not the ones exported (a byte changed, or some cut off)" + AGAIN
DAMAGES = {
    "a base64 character changed": (with_json("weights", changed_character), CHANGED),
    "an array cut short by 4 bytes": (with_json("weights", cut_data("w_hh0", 8)), CHANGED),
    "an array cut short by a row": (with_json("weights", cut_data("head_w", 32)), CHANGED),
    "the hidden size edited": (
        with_json("meta", lambda meta: meta.update(hidden=48)),
        "this page is damaged: its weights do not fit its description: embed is 10x24, the description needs 10x48"
        + AGAIN,
    ),
    "a character taken from the vocabulary": (
        with_json("meta", lambda meta: meta["vocab"]["chars"].pop()),
        "this page is damaged: its weights do not fit its description: embed is 10x24, the description needs 9x24"
        + AGAIN,
    ),
    "a part taken from the description": (  # its script stopped at it, said in the console alone
        with_json("meta", lambda meta: meta.pop("forms")),
        "this page is damaged: its description (charlm-meta) has no forms" + AGAIN,
    ),
    "a part within a part taken from the description": (
        with_json("meta", lambda meta: meta["vocab"].pop("chars")),
        "this page is damaged: its description (charlm-meta) has no vocab.chars" + AGAIN,
    ),
    "a part of the description of another type": (  # its script stopped at it, said as the page's failure
        with_json("meta", lambda meta: meta["about"].update(val_bpc="1.5")),
        "this page is damaged: its description (charlm-meta) has about.val_bpc as a string, not a number" + AGAIN,
    ),
    "the vocabulary's characters no longer a list": (  # the sampler failed on it, said as no damage
        with_json("meta", lambda meta: meta["vocab"].update(chars="".join(meta["vocab"]["chars"]))),
        "this page is damaged: its description (charlm-meta) has vocab.chars as a string, not a list" + AGAIN,
    ),
    "the description no longer JSON": (
        lambda text, parts: text[: parts["meta"][0]] + text[parts["meta"][0] + 1 :],
        "this page is damaged: its description (charlm-meta) is not JSON",
    ),
    "its script edited so that it does not parse": (  # damage, as the page's own parses (a cut one is not run)
        lambda text, parts: text.replace("function showRead(read) {", "function showRead(read) {{"),
        "this page is damaged: its script stopped: Uncaught SyntaxError: ",
    ),
    "the file cut short in its weights": (
        lambda text, parts: text[: sum(parts["weights"]) // 2],
        "this page is damaged: it is cut short (its end is missing)" + AGAIN,
    ),
}


@pytest.mark.slow
def test_a_damaged_page_says_what_is_wrong_in_one_line(tmp_path, browser):
    """A page whose weights lost a byte or had one changed, whose description (meta) was edited, or whose
    file was cut short, wrote from other weights without a word, or said "loading the model…" for ever,
    its error in the console or nowhere: it says in its status line and under the seed what is damaged,
    and Generate stays off."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    page = exported(tmp_path, model_of("lstm", "\nabcdefgh ", hidden=24))
    for case, (edit, says) in DAMAGES.items():
        browser.get(damaged_copy(page, "damaged.html", edit).as_uri())
        with contextlib.suppress(TimeoutException):  # "loading the model…" for ever, as it was
            WebDriverWait(browser, 5, 0.02).until(lambda d: d.find_element("id", "status").text != "loading the model…")
        status = browser.find_element("id", "status").text
        assert status.startswith(says), (case, status)
        assert browser.find_element("id", "seed-error").text == status and "\n" not in status, case
        assert not browser.find_element("id", "generate").is_enabled(), case
    unharmed = with_json("meta", lambda meta: None)  # the JSON written again: the page still opens
    page_ready(browser, damaged_copy(page, "rewritten.html", unharmed).as_uri())
    browser.execute_script(  # the sampler failing as it starts (a bug put in it) is no damage
        """const sampler = document.getElementById("charlm-sampler");
        sampler.textContent = sampler.textContent.replace("this.table = new Map();", "this.table = new Map(); null.bug;");
        worker.terminate();
        start();"""
    )
    WebDriverWait(browser, 30, 0.02).until(lambda d: d.find_element("id", "seed-error").text)
    failed = "the sampler failed: Cannot read properties of null (reading 'bug')"
    assert browser.find_element("id", "seed-error").text == browser.find_element("id", "status").text == failed

    # Nor is the page's own script failing as it loads (a bug put in it): said as a failure, not "export again"
    bug = lambda text, parts: text.replace("describe();\nstart();", "describe();\nnull.bug;\nstart();")
    browser.get(damaged_copy(page, "bug.html", bug).as_uri())
    WebDriverWait(browser, 5, 0.02).until(lambda d: d.find_element("id", "status").text != "loading the model…")
    failed = "the page failed: Uncaught TypeError: Cannot read properties of null (reading 'bug')"
    assert browser.find_element("id", "seed-error").text == browser.find_element("id", "status").text == failed
    assert not browser.find_element("id", "generate").is_enabled()

    # A bug after its worker was made: the worker, ready later, turned Generate on under "the page failed"
    load = 'worker.postMessage({ type: "load", meta, tensors: $("charlm-weights").textContent });'
    heard = "worker.addEventListener('message', (e) => { document.body.dataset.heard = e.data.type; });"
    assert load in page.read_text(encoding="utf-8")
    late_bug = lambda text, parts: text.replace(load, f"{load}\n  {heard}\n  null.bug;")
    browser.get(damaged_copy(page, "late_bug.html", late_bug).as_uri())
    WebDriverWait(browser, 30, 0.02).until(lambda d: d.find_element("tag name", "body").get_attribute("data-heard"))
    assert browser.find_element("tag name", "body").get_attribute("data-heard") == "ready"
    assert browser.find_element("id", "seed-error").text == browser.find_element("id", "status").text == failed
    assert not browser.find_element("id", "generate").is_enabled()
    assert call(browser, "window.charlm.generate({seed: 'ab', length: 3})") == "error: " + failed


# The page's worker (page.js, then sampler.js, as the page runs them) in Node, loading each case's weights
# and description (the page's own where a case has none), its sampler text with a case's `patch` [old, new]
# in it: what it answers the load with.
LOAD_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const page = fs.readFileSync(process.argv[2], "utf8"), cases = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const block = (id) => page.match(new RegExp(`<script id="${id}"[^>]*>([\\s\\S]*?)</script>`))[1];
const answers = cases.map(({ meta, weights, patch }) => {
  const messages = [], sampler = patch ? block("charlm-sampler").replace(...patch) : block("charlm-sampler");
  const context = vm.createContext({ postMessage: (m) => messages.push(m), onmessage: null, atob, performance, TextEncoder, WebAssembly });
  vm.runInContext(block("charlm-shared") + "\n" + sampler, context);
  context.onmessage({ data: { type: "load", meta: meta ?? JSON.parse(block("charlm-meta")), tensors: weights ?? block("charlm-weights") } });
  return messages.map(({ type, message }) => [type, message ?? ""]);
});
console.log(JSON.stringify(answers));
"""


def test_a_tensor_of_no_shape_is_damage_named_and_a_failing_sampler_is_no_damage(tmp_path):
    """A page exported before the weights' CRC-32 (or one whose CRC was edited too) with a tensor of no shape
    said "this page is damaged: Cannot read properties of null (reading 'join')", JavaScript's words: it names
    the tensor, as the other damage does. And the sampler failing as it starts (its own fault: here a bug put in
    it) was said as the file's damage, "export the model again", which changes nothing: the load says it failed."""
    page = exported(tmp_path, model_of("lstm", "\nabcdefgh ", hidden=8))
    text = page.read_text(encoding="utf-8")
    start = text.index(">", text.index('<script id="charlm-meta"')) + 1
    meta = json.loads(text[start : text.index("</script>", start)])
    meta.pop("weights_crc32")  # a page exported before the CRC: the weights' own checks alone
    start = text.index(">", text.index('<script id="charlm-weights"')) + 1
    weights = json.loads(text[start : text.index("</script>", start)])
    no_shape, not_a_tensor = json.loads(json.dumps(weights)), json.loads(json.dumps(weights))
    no_shape["w_hh0"]["shape"] = None
    not_a_tensor["embed"] = 5
    cases = [
        {"meta": meta, "weights": json.dumps(no_shape)},
        {"meta": meta, "weights": json.dumps(not_a_tensor)},
        {"meta": meta, "weights": "null"},
        {"patch": ["this.table = new Map();", "this.table = new Map(); null.bug;"]},
        {},
    ]
    answers = run_in_node(tmp_path, LOAD_HARNESS, page, cases)
    fits = "its weights do not fit its description: "
    assert answers[:3] == [
        [["damaged", fits + "w_hh0 has no shape"]],
        [["damaged", fits + "embed has no shape"]],
        [["damaged", "its weights (charlm-weights) are not an object of tensors"]],
    ]
    assert answers[3] == [["failed", "Cannot read properties of null (reading 'bug')"]], answers[3]
    assert answers[4][0][0] == "ready"


@pytest.mark.slow
def test_page_writes_chinese(tmp_path, browser):
    model = model_of("lstm", CHINESE, (6, 30), hidden=32)
    wait = page_ready(browser, exported(tmp_path, model).as_uri())
    write(browser, seed=CHINESE[:4], length="150")
    wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    made = made_text(browser)
    assert len(made) == 150 and set(made) <= set(CHINESE)
    assert sum("\u4e00" <= c <= "\u9fff" for c in made) > 30
    browser.save_screenshot(str(tmp_path / "page-chinese.png"))


def poet_model(more: str = ""):
    """test_forms.py's idea on the page: an untrained Chinese model whose likeliest characters are the
    ones a form forbids (letters, spaces, line breaks), so only the template keeps a poem in shape.
    `more`: characters it knows besides (a stray ',' of tangshi300's)."""
    model = model_of("lstm", CHINESE + "ab " + more, hidden=16)
    with torch.no_grad():
        for char in "ab \n":
            model.head.bias[model.vocab.index[char]] = 6.0
    return model


def test_a_corpus_named_like_a_pages_marker_is_shown_and_the_weights_land_in_their_block(tmp_path):
    """The page is the template with five markers replaced, each at its first place, one after the other:
    a corpus named `__CHARLM_WEIGHTS__` put that name into the description first, and the weights then went
    into the description, where the name was, instead of their own block."""
    name = "novel __CHARLM_WEIGHTS__ /* sampler.js */"
    run = run_of(model_of(), tmp_path / "run", corpus=name)
    result = cli("export", str(run), "--format", "html", "--output", str(tmp_path / "page.html"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    block = lambda id_: page.split(f'<script id="{id_}" type="application/json">')[1].split("</script>")[0]
    assert name in json.dumps(json.loads(block("charlm-meta"))["about"], ensure_ascii=False)
    assert isinstance(json.loads(block("charlm-weights")), dict)


def test_page_meta_carries_the_forms_and_each_ids_class(tmp_path):
    page = exported(tmp_path, poet_model()).read_text(encoding="utf-8")
    meta = json.loads(page.split('<script id="charlm-meta" type="application/json">')[1].split("</script>")[0])
    assert meta["forms"]["templates"] == FORMS
    rule = {"h": is_han, "p": is_cjk_punctuation, "l": is_letter, ".": lambda c: True}  # first that holds
    expected = "".join(next(k for k, test in rule.items() if test(c)) for c in meta["vocab"]["chars"])
    assert meta["forms"]["classes"] == expected and set(expected) == set("hpl.")


@pytest.mark.slow
def test_page_writes_a_poem_in_the_form_chosen(tmp_path, browser):
    from selenium.webdriver.support.ui import Select

    wait = page_ready(browser, exported(tmp_path, poet_model()).as_uri())
    template_box = browser.find_element("id", "template")
    assert not template_box.is_displayed()
    Select(browser.find_element("id", "form")).select_by_value("五言绝句")
    write(browser, seed="丁\n", temperature="1.5", acrostic="一丁七万")
    wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    poem = made_text(browser)
    assert template_of("五言绝句", acrostic="一丁七万").fits(poem), poem
    assert "done (stop)" in browser.find_element("id", "status").text

    Select(browser.find_element("id", "form")).select_by_value("template")
    assert template_box.is_displayed()
    set_field(browser, "acrostic", "")
    write(browser, template="__，春_")
    wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
    error = browser.find_element("id", "seed-error").text
    assert error == "template: 1 character the model has never seen: '春'; use only characters from the training text"
    assert "see the form" in browser.find_element("id", "status").text and made_text(browser) == poem  # it stays

    Select(browser.find_element("id", "form")).select_by_value("")
    assert not template_box.is_displayed()
    write(browser, length="30")  # free text again: no form is sent, and the model drifts out of shape
    wait(browser, PAGE_WAIT).until(lambda d: "done (length)" in d.find_element("id", "status").text)
    free = made_text(browser)
    assert len(free) == 30 and set(free) <= set(CHINESE + "ab ") and not browser.find_element("id", "seed-error").text
    assert {"a", "b"} & set(free)


def charlms(model: CharLM, seed: str, **options) -> str:
    """What charlm writes after `seed` (greedy), or its refusal as the page says it: "error: " and the line,
    with a form named as the page (and the server) names it, `form 五绝` for Python's `form='五绝'`."""
    try:
        return sampler.generate(model, seed, greedy=True, **options)[0]
    except CharLMError as error:
        form = options.get("form")
        return "error: " + (str(error).replace(f"form={form!r}", f"form {form}") if form else str(error))


VERSE, NEXT = CHINESE[:5], CHINESE[10:15]
# Seeds under 五言绝句 whose poem has half-width marks (',' the model knows, '.' it never saw), or whose last
# line breaks the form (a letter or a sixth character where it writes '，', a title longer than a verse, a
# whole poem), or a mark the model never saw out of place (refused as unseen first, as charlm does).
MARKED_OR_BROKEN = [
    "丁\n" + VERSE + ",",
    "丁\n" + VERSE + "," + NEXT + ".\n" + CHINESE[20:22],
    "丁\n" + VERSE + "，" + NEXT + ".",
    "丁\n" + VERSE + "a",
    "丁\n" + CHINESE[:6] + ",",
    "丁丁丁丁丁丁丁",
    "丁\n" + VERSE + "，" + NEXT + "。\n" + VERSE + "," + NEXT + "。",
    "丁\n" + VERSE + "？",
    "丁\n",
]
SEED_IDS = ["comma", "dot-unseen", "dot-ends-line", "letter", "six", "long-title", "whole-poem", "unseen-mark", "title"]


@pytest.mark.slow  # a browser
@pytest.mark.parametrize("seed", MARKED_OR_BROKEN, ids=SEED_IDS)
def test_page_reads_half_width_marks_and_refuses_a_seed_that_breaks_the_form_as_charlm_does(tmp_path, browser, seed):
    """charlm reads a ',' or '.' in a form's place as the form's '，' or '。', and refuses in one line a seed whose
    last line breaks the form (constraints.Constrained.marked, refuse_unbegun); the page read ',' as itself,
    refused a '.' it never saw, and wrote a new poem glued to a broken last line. Its script API now gives
    charlm's text or line, and the page shows the seed as read (which Continue sends), or the line under the
    seed, as its other seed errors."""
    from selenium.webdriver.support.ui import Select

    model = poet_model(",")
    expected = charlms(model, seed, form="五言绝句")
    wait = page_ready(browser, exported(tmp_path, model).as_uri())
    generated = "window.charlm.generate({seed: args[0], form: '五言绝句', greedy: true})"
    assert call(browser, generated, seed) == expected
    Select(browser.find_element("id", "form")).select_by_value("五言绝句")
    write(browser, seed=seed, temperature="0")
    wait(browser, PAGE_WAIT).until(lambda d: "writing" not in d.find_element("id", "status").text)
    status, error = (browser.find_element("id", name).text for name in ("status", "seed-error"))
    if expected.startswith("error: "):
        assert error == expected.removeprefix("error: ") and "not written: see the seed" in status
    else:
        assert browser.execute_script("return document.getElementById('text').textContent") == expected
        assert not error and "done (stop)" in status
        browser.find_element("id", "continue").click()  # the text as read, a whole poem: charlm's refusal of it
        wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
        assert "error: " + browser.find_element("id", "seed-error").text == charlms(model, expected, form="五言绝句")


@pytest.mark.slow  # a browser
def test_page_takes_every_name_a_form_goes_by(tmp_path, browser):
    """The page took only the full names (五言绝句) where the CLI and the server take the short and traditional
    ones too (五绝, 五言絕句): it now reads charlm.forms' FORM_NAMES, put in the page by the export."""
    page_ready(browser, exported(tmp_path, poet_model()).as_uri())
    poem = "window.charlm.generate({seed: '丁\\n', form: args[0], temperature: 1.5, random_seed: 3})"
    poems = {name: call(browser, poem, name) for name in FORM_NAMES}
    for name, form in FORM_NAMES.items():
        assert poems[name] == poems[form] and template_of(form).fits(poems[name][2:]), (name, poems[name])
    with pytest.raises(CharLMError) as error:
        template_of("五言", prefix="")
    assert call(browser, poem, "五言") == f"error: {error.value}"  # the server's words


@pytest.mark.slow
def test_page_refuses_a_ban_that_leaves_only_the_unknown_symbol(tmp_path, browser):
    """The exported page took a ban of every character but the unknown symbol, which Python and the server
    refuse: it would write only '\ufffd'. It is refused as they refuse it, by the ban box and the script API."""
    model = make_model(Vocab(list("ab \n"), unknown=True), hidden=8).eval()
    wait = page_ready(browser, exported(tmp_path, model).as_uri())
    with pytest.raises(CharLMError) as error:
        charlm.generate(model, "a", length=5, logit_bias=dict.fromkeys("ab \n", -100))
    said = str(error.value).replace("logit_bias", "ban", 1)
    assert call(browser, "window.charlm.generate({ban: args[0]})", "ab \\n") == f"error: {said}"
    write(browser, seed="a", ban="ab \\n")
    wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
    assert browser.find_element("id", "seed-error").text == said


@pytest.mark.slow
def test_page_never_writes_what_its_ban_box_bans(tmp_path, browser):
    """The ban box (the serve page has it too) bans as `charlm sample --ban` does: at temperature 0 the
    page writes what Python's engine writes with that ban; what it cannot ban is refused by name."""
    from selenium.webdriver.support.ui import Select

    model = model_of("lstm", TEXT, hidden=32)
    wait = page_ready(browser, exported(tmp_path, model).as_uri())
    greedy = sampler.generate(model, "the ", length=200, greedy=True)[0]
    ban = "".join(sorted(set(greedy[4:]), key=greedy.count)[-3:]).replace("\n", "\\n")  # what it writes most
    bias = sample_configs({}, ban)[0].logit_bias  # --ban's
    expected = sampler.generate(model, "the ", length=200, greedy=True, logit_bias=bias)[0]
    write(browser, seed="the ", temperature="0", length="200", ban=ban + "0123")  # digits: unknown, never written
    wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    assert browser.execute_script("return fullText(state)") == expected != greedy
    unwritten = " (ban: the model never writes '0' '1' '2' '3', so banning them changes nothing)"
    assert browser.find_element("id", "status").text.endswith(unwritten)  # as `charlm sample --ban` warns
    drawn = call(
        browser,
        "window.charlm.generate({seed: 'the ', length: 400, temperature: 1.5, random_seed: 2, ban: args[0]})",
        ban,
    )
    assert len(drawn) == 404 and not set(drawn[4:]) & set(bias)
    error = call(browser, "window.charlm.generate({ban: args[0]})", "".join(model.vocab.chars).replace("\n", "\\n"))
    assert error == "error: ban bans every token the model has; leave it at least one to write"

    made = made_text(browser)
    Select(browser.find_element("id", "form")).select_by_value("template")
    write(browser, template="__ _", ban="abcdefghijklmnopqrstuvwxyz")
    wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
    says = browser.find_element("id", "seed-error").text
    assert says == "ban bans every way to write template (`_` needs letters); ban fewer", says
    assert "see the ban" in browser.find_element("id", "status").text and made_text(browser) == made
    write(browser, template="the ___", ban="tq")
    wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
    assert (
        browser.find_element("id", "seed-error").text == "ban bans 't', but template must write it; leave it unbanned"
    )
    # after a line break: the seed's "the " would be the template's start, which the sample would go on with
    write(browser, template="___ ___", ban="abcdefghijklmnopqrst", seed="the\n")
    wait(browser, PAGE_WAIT).until(lambda d: "done (stop)" in d.find_element("id", "status").text)
    assert re.fullmatch("[u-z]{3} [u-z]{3}", made_text(browser)), made_text(browser)


@pytest.mark.slow
def test_page_bench_runs(tmp_path):
    (tmp_path / "fox.txt").write_text(TEXT * 30, encoding="utf-8")
    run = run_of(model_of(hidden=32), tmp_path / "run")
    stdout = run_bench("export_page", str(run), "--text", "fox.txt", "--chars", "300")
    rows = [line for line in stdout.splitlines() if line.startswith("| run |")][1:]  # after the header
    assert [row.split("|")[2].strip() for row in rows] == ["fp32", "fp16", "int8"] and "| yes |" in rows[0]


@pytest.mark.slow
def test_exported_page_keeps_its_settings_and_seed_across_a_reload(tmp_path, browser):
    """A reload of the exported page lost the temperature, the seed, the ban and the rest, which the serve
    page keeps (page.js's code does both now); a page of another model does not take them."""
    from selenium.webdriver.support.ui import Select

    page = exported(tmp_path, model_of("lstm", CHINESE, hidden=8)).as_uri()
    page_ready(browser, page)
    kept = {"temperature": "0.35", "top_p": "0.9", "length": "40", "acrostic": "春", "ban": "的\\n"}
    for name, value in kept.items():
        set_field(browser, name, value)
    Select(browser.find_element("id", "form")).select_by_value("template")
    set_field(browser, "template", "__，__")
    browser.find_element("id", "blank-line").click()
    set_field(browser, "seed", "春天")
    values = "return Object.fromEntries(arguments[0].map((id) => [id, document.getElementById(id).value]))"
    names = [*kept, "temperature-range", "form", "template", "seed"]
    before = browser.execute_script(values, names)
    page_ready(browser, page)  # a reload
    assert browser.execute_script(values, names) == before and before["temperature-range"] == "0.35"
    assert (
        browser.find_element("id", "blank-line").is_selected() and browser.find_element("id", "template").is_displayed()
    )
    other = run_of(model_of("lstm", TEXT, hidden=8), tmp_path / "other")
    assert cli("export", str(other), "--format", "html", "--output", str(tmp_path / "other.html")).exit_code == 0
    page_ready(browser, (tmp_path / "other.html").as_uri())
    assert browser.find_element("id", "seed").get_attribute("value") == ""
    assert browser.find_element("id", "temperature").get_attribute("value") == "0.8"


@pytest.mark.slow
def test_exported_page_writes_a_text_again_from_the_random_seed_it_shows(tmp_path, browser):
    """The exported page drew each text from a seed it never showed and had no box to take one: a text one liked
    could not be written again, as the serve page's can. It shows the seed a text was drawn with; a click on it,
    or the seed typed, pins it in the random seed box, kept across a reload, so that Generate writes that text
    again (longer too); an empty box draws anew, and greedy, which draws nothing, shows no seed."""
    page = exported(tmp_path, model_of("lstm", TEXT, hidden=16)).as_uri()
    wait = page_ready(browser, page)
    shown = browser.find_element("id", "random-seed-used")

    def written(length: int) -> str:
        write(browser, seed="the ", length=str(length))
        wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
        return made_text(browser)

    set_field(browser, "temperature", "1.5")
    first = written(40)
    seed = shown.get_attribute("data-seed")
    assert shown.is_displayed() and seed.isdigit() and int(seed) < 2**32 and f"random seed {seed}" == shown.text
    second = written(40)  # the box is empty: a fresh draw
    other = shown.get_attribute("data-seed")
    assert other != seed and browser.find_element("id", "random_seed").get_attribute("value") == ""
    set_field(browser, "random_seed", seed)
    assert written(80)[:40] == first and shown.get_attribute("data-seed") == seed  # longer, from the same draw
    set_field(browser, "random_seed", "")
    third = written(40)
    shown.click()  # the seed shown, pinned
    pinned = browser.find_element("id", "random_seed").get_attribute("value")
    assert pinned == shown.get_attribute("data-seed") and pinned not in (seed, other)
    assert written(40) == third and third != second
    page_ready(browser, page)  # a reload keeps the box
    assert browser.find_element("id", "random_seed").get_attribute("value") == pinned
    set_field(browser, "temperature", "0")
    written(10)
    assert not browser.find_element("id", "random-seed-used").is_displayed()


def test_page_bench_reads_a_catalog_runs_text_from_its_download(tmp_path, monkeypatch):
    """`charlm train tinyshakespeare` stores the corpus by its catalog name: the page bench compared
    log-probabilities on the file training read, where it failed opening a file named 'tinyshakespeare'."""
    from bench import export_page
    from charlm import catalog

    download = tmp_path / "tinyshakespeare.txt"
    monkeypatch.setattr(catalog, "get", lambda name, quiet=False: download if name == "tinyshakespeare" else None)
    monkeypatch.chdir(tmp_path)
    assert export_page.first_source(["tinyshakespeare"]) == download
    (tmp_path / "mine.txt").write_text(TEXT, encoding="utf-8")
    assert export_page.first_source(["mine.txt"]) == Path("mine.txt")


@pytest.mark.slow
def test_page_shows_its_text_a_frame_at_a_time_and_a_refused_seeds_last_text_at_once(tmp_path, browser):
    """Each piece the sampler sent read the text's height, a layout of the whole text, and a refused seed put
    the last text back piece by piece, a layout each in one task: the page reads it at most twice an
    animation frame. The sampler here sends a piece each 0.2 ms of writing (50 ms as shipped): pieces come
    faster than frames, as they reach a page too slow to take each in."""
    wait = page_ready(browser, exported(tmp_path, model_of("lstm", TEXT, hidden=32)).as_uri())
    browser.execute_script(
        """const sampler = document.getElementById("charlm-sampler");
        sampler.textContent = sampler.textContent.replace("const SLICE_MS = 50;", "const SLICE_MS = 0.2;");
        worker.terminate();
        delete document.body.dataset.ready;
        start();"""
        + COUNT_LAYOUTS
    )
    assert "const SLICE_MS = 0.2;" in browser.execute_script("return document.getElementById('charlm-sampler').text")
    wait(browser, PAGE_WAIT).until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    write(browser, seed="the ", length="6000")
    wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    counts = browser.execute_script("return counts")
    made = made_text(browser)
    assert len(made) == 6000 and browser.execute_script("return gap()") <= 1  # at the text's end
    assert counts["reads"] <= 2 * (counts["frames"] + 1), counts

    browser.execute_script("counts.reads = counts.frames = 0")
    write(browser, seed="the Q")  # refused: the last text stays
    wait(browser, PAGE_WAIT).until(lambda d: "error" in d.find_element("id", "status").get_attribute("class"))
    counts = browser.execute_script("return counts")
    assert made_text(browser) == made and counts["reads"] <= 2 * (counts["frames"] + 1), counts


def check_the_page_keeps_still(driver, wait, seed: str, bad_seed: str, says: str) -> None:
    """The shared page's layout at 1400x1000 (issue 27, item 4): Generate and Stop stay where they are
    while 2,000 characters stream in, in view; a text streaming under a resting pointer opens no
    tooltip; a seed the model cannot take is an error (holding `says`) beside the seed box, and the
    last text stays."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver.set_window_size(1400, 1000)
    generate, stop = driver.find_element("id", "generate"), driver.find_element("id", "stop")
    before = (generate.location["y"], stop.location["y"])
    ActionChains(driver).move_to_element_with_offset(driver.find_element("id", "text"), 0, -60).perform()
    write(driver, seed=seed, length="2000", temperature="1.0")
    wait(driver, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    assert len(made_text(driver)) == 2000
    assert (generate.location["y"], stop.location["y"]) == before and before[0] + generate.size["height"] < 1000
    tips = driver.find_elements("id", "tip")
    assert not tips or not tips[0].is_displayed()
    made = made_text(driver)
    write(driver, seed=bad_seed)
    wait(driver, PAGE_WAIT).until(lambda d: d.find_element("id", "seed-error").text)
    seed_box, error = driver.find_element("id", "seed"), driver.find_element("id", "seed-error")
    assert says in error.text and 0 <= error.location["y"] - (seed_box.location["y"] + seed_box.size["height"]) < 20
    assert made_text(driver) == made and generate.location["y"] == before[0]


@pytest.mark.slow
def test_exported_page_keeps_still(tmp_path, browser):
    wait = page_ready(browser, exported(tmp_path, model_of("lstm", TEXT, hidden=32)).as_uri())
    check_the_page_keeps_still(browser, wait, "the ", "the Q", "never seen")  # the page refuses unknown characters


@pytest.mark.slow
def test_serve_page_keeps_still(fox_run, browser):  # noqa: F811
    """The server reads a seed with unknown characters (docs/serve.md), so its bad seed is a long one."""
    model = checkpoint.load(fox_run)
    with running(create_app({"fox": lambda: model}, ServeConfig(max_prompt=40))) as url:
        wait_healthy(url)
        check_the_page_keeps_still(browser, page_ready(browser, url), "the ", "the " * 15, "at most 40")


# The page's sampler (sampler.js, as the page embeds it, after page.js, as its worker runs them) run in
# Node, where there is one: the arithmetic of every cell and head checked in the fast suite; the browser
# tests above check the rest.
NODE_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const page = fs.readFileSync(process.argv[2], "utf8"), request = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const block = (id) => page.match(new RegExp(`<script id="${id}"[^>]*>([\\s\\S]*?)</script>`))[1];
const messages = [];
const context = vm.createContext({ postMessage: (m) => messages.push(m), onmessage: null, atob, performance, setTimeout, TextEncoder, WebAssembly });
vm.runInContext(block("charlm-shared") + "\n" + block("charlm-sampler"), context);
context.onmessage({ data: { type: "load", meta: JSON.parse(block("charlm-meta")), tensors: block("charlm-weights") } });
context.onmessage({ data: { type: "logprobs", id: 1, text: request.text } });
const texts = [], seeds = [];  // each of request.generations in turn: its text, or its error; its random seed
const generate = (i) => {
  if (i === request.generations.length) {
    console.log(JSON.stringify({ logprobs: messages.find((m) => m.id === 1).value, texts, seeds }));
    process.exit(0);
  }
  context.onmessage({ data: { type: "generate", id: 2 + i, ...request.generations[i] } });
  const wait = setInterval(() => {
    const done = messages.find((m) => m.id === 2 + i && (m.type === "done" || m.type === "error"));
    if (!done) return;
    clearInterval(wait);
    texts.push(done.type === "done" ? done.text : `error: ${done.message}`);
    seeds.push(done.random_seed);
    generate(i + 1);
  }, 5);
};
generate(0);
"""


@pytest.mark.parametrize(("cell", "chars", "cutoffs"), MODELS)
def test_page_sampler_equals_torch_in_node(tmp_path, cell, chars, cutoffs):
    """The page's log-probabilities, greedy and banned texts are PyTorch's; and it primes the whole seed. An
    untrained model forgets a seed's start, so its texts stayed the same where the page primed only the
    seed's last three characters: a copy whose state tells the seed (`state_telling`) is compared too, over
    30 characters (scaled so, the RNN's fp32 rounding grows apart from PyTorch's after some 60)."""
    model = model_of(cell, chars, cutoffs, hidden=32)
    page = exported(tmp_path, model)
    text, seed = (chars * 40)[7:507], chars[:5]
    greedy = sampler.generate(model, seed, length=300, greedy=True)[0]
    ban = "".join(sorted(set(greedy[len(seed) :]), key=greedy.count)[-3:])  # what it writes most
    ids = [model.vocab.index[c] for c in ban]
    generations = [
        {"seed": seed, "length": 300, "greedy": True},
        {"seed": seed, "length": 100, "greedy": True, "ban": ids},
    ]
    got = run_in_node(tmp_path, NODE_HARNESS, page, {"text": text, "generations": generations})
    difference = (torch.tensor(got["logprobs"], dtype=torch.float64) - torch_logprobs(model, text)).abs().max().item()
    assert difference < BOUNDS["fp32"]
    assert got["texts"][0] == greedy
    banned = sampler.generate(model, seed, length=100, greedy=True, logit_bias=dict.fromkeys(ban, -100))[0]
    assert got["texts"][1] == banned and not set(banned[len(seed) :]) & set(ban)
    told = state_telling(copy.deepcopy(model))
    primings = [{"seed": seed, "length": 30, "greedy": True}, {"seed": seed, "length": 30, "random_seed": 3}]
    got = run_in_node(
        tmp_path, NODE_HARNESS, exported(tmp_path, told, name="told.html"), {"text": "", "generations": primings}
    )
    assert got["texts"] == [
        sampler.generate(told, seed, length=30, greedy=True)[0],
        sampler.generate(told, seed, length=30, random_seed=3)[0],
    ]


# NODE_HARNESS with String.prototype.endsWith counting the longest text it was asked of (`longest`).
ENDS_WITH_HARNESS = NODE_HARNESS.replace(
    'vm.runInContext(block("charlm-shared") + "\\n" + block("charlm-sampler"), context);',
    """vm.runInContext(`const endsWith = String.prototype.endsWith; globalThis.longest = 0;
String.prototype.endsWith = function (end) { longest = Math.max(longest, this.length); return endsWith.call(this, end); };`, context);
vm.runInContext(block("charlm-shared") + "\\n" + block("charlm-sampler"), context);""",
).replace("JSON.stringify({ logprobs", "JSON.stringify({ longest: context.longest, logprobs")


def test_the_pages_stop_is_looked_for_in_the_texts_end_alone(tmp_path):
    """The page's sampler asked `made.endsWith(stop)` after every character of the whole text made so
    far, which V8 may flatten each time: quadratic in a long sample's length. It looks at the last
    characters alone, and stops where charlm's sampler stops."""
    model = model_of("lstm", TEXT, hidden=32)
    greedy = sampler.generate(model, "the ", length=300, greedy=True)[0]
    stop = greedy[150:153]
    generations = [
        {"seed": "the ", "length": 3000, "greedy": True, "stop": "QQ"},  # never written: every character looked at
        {"seed": "the ", "length": 300, "greedy": True, "stop": stop},
    ]
    assert ENDS_WITH_HARNESS != NODE_HARNESS and "longest: context.longest" in ENDS_WITH_HARNESS
    got = run_in_node(
        tmp_path, ENDS_WITH_HARNESS, exported(tmp_path, model), {"text": "the", "generations": generations}
    )
    assert len(got["texts"][0]) == 3004 and got["longest"] <= len("QQ"), got["longest"]
    assert got["texts"][1] == sampler.generate(model, "the ", length=300, greedy=True, stop=stop)[0]
    assert got["texts"][1].endswith(stop) and len(got["texts"][1]) < len(greedy)


def test_the_pages_top_k_keeps_the_k_likeliest_as_charlm_does(tmp_path):
    """window.charlm.generate({top_k: 3}) was taken without a word and drew from every character: charlm's
    top_k (sample --top-k, the serve API's) keeps the k likeliest after the temperature. top_k 1 writes the
    greedy text; top_k 3 draws the three likeliest in softmax's proportions among them."""
    model = model_of("lstm", TEXT, hidden=32)
    draws = [{"seed": "the ", "length": 1, "temperature": 1.0, "top_k": 3, "random_seed": i} for i in range(300)]
    generations = [{"seed": "the ", "length": 80, "temperature": 1.5, "top_k": 1, "random_seed": 1}, *draws]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "the", "generations": generations})
    assert got["texts"][0] == sampler.generate(model, "the ", length=80, greedy=True)[0]
    with torch.no_grad():
        logits = model(model.vocab.encode("the ").unsqueeze(0))[0][0, -1].double()
    top = torch.topk(logits, 3)
    probs = dict(zip([model.vocab.chars[i] for i in top.indices.tolist()], torch.softmax(top.values, -1).tolist()))
    first = [text[-1] for text in got["texts"][1:]]
    assert set(first) <= set(probs), (set(first), probs)
    assert max(abs(first.count(c) / len(first) - p) for c, p in probs.items()) < 0.1, probs


# sampler.js's generator run in Node: the first `count` uniforms of each of `seeds`.
UNIFORMS_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const script = fs.readFileSync(process.argv[2], "utf8"), request = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const context = vm.createContext({ postMessage: () => {}, onmessage: null, atob, performance, setTimeout, TextEncoder, WebAssembly });
vm.runInContext(script, context);
console.log(JSON.stringify(request.seeds.map((seed) => Array.from({ length: request.count }, context.torchUniforms(seed)))));
"""


def test_the_pages_generator_draws_torch_rands_numbers(tmp_path):
    """The page drew its uniforms from a generator of its own (mulberry32), so no seeded text of it was
    charlm's: it draws torch.rand's float64 numbers of a generator seeded as the engine seeds a row, past
    the first refill of MT19937's state (312 numbers), from a negative seed and one above 32 bits too."""
    seeds = [0, 1, 2, 2**32 + 5, -5, 2**53 - 1]
    script = Path(html.__file__).with_name("sampler.js")
    got = run_in_node(tmp_path, UNIFORMS_HARNESS, script, {"seeds": seeds, "count": 700})
    for seed, uniforms in zip(seeds, got):
        expected = torch.rand(700, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        assert uniforms == expected.tolist(), seed


def test_the_pages_seeded_text_is_the_one_charlm_samples(tmp_path):
    """A seeded text of the page was reproducible in the page alone: `random_seed: 1` wrote another text
    than `charlm sample --random-seed 1`. It draws torch's uniforms and decides each draw in the engine's
    float32 arithmetic, so it writes charlm's text under temperature, top-k, top-p and a template. A seed
    JavaScript cannot hold exactly (2**63 - 1 arrives as 2**63) is refused, not drawn as another. Seeded "the "
    alone, the texts stayed the same where the page primed only the seed's last three characters: this model
    hardly tells "the " from "he ", but its next character after "the lazy do" or "the quick b" is another
    than after " do" or "k b" (a quarter and a fifth of the probability moves)."""
    corpus = tmp_path / "fox.txt"
    corpus.write_text(TEXT * 60, encoding="utf-8")
    charlm.train(corpus, out=tmp_path / "fox", **{**TINY, "max_steps": 60, "lr": 0.03, "eval_every": 60})
    model = charlm.load(tmp_path / "fox")
    page = tmp_path / "fox.html"
    result = cli("export", str(tmp_path / "fox"), "--format", "html", "--weights", "fp32", "--output", str(page))
    assert result.exit_code == 0, result.output
    template = "___ _____ _____ ___\n" * 11
    requests = [
        {"seed": "the lazy do", "length": 250, "temperature": 1.0, "random_seed": 0},
        {"seed": "the quick b", "length": 250, "temperature": 0.8, "top_p": 0.9, "random_seed": 1},
        {"seed": "", "length": 250, "temperature": 1.3, "top_k": 5, "random_seed": 2**32 + 5},
        {"seed": "the ", "length": 250, "temperature": 1.5, "top_k": 8, "top_p": 0.95, "random_seed": -5},
        {"seed": "the quick b", "length": 300, "temperature": 1.2, "template": template, "random_seed": 7},
    ]
    generations = [*requests, {"seed": "the ", "length": 20, "random_seed": 2**63 - 1}]
    got = run_in_node(tmp_path, NODE_HARNESS, page, {"text": "the", "generations": generations})
    for request, text in zip(requests, got["texts"]):
        options = {name: value for name, value in request.items() if name != "seed"}
        assert text == sampler.generate(model, request["seed"], **options)[0], request
    assert len(got["texts"][-2]) == len(template)  # the seed began its first verse
    options = ("--length", "250", "--temperature", "0.8", "--top-p", "0.9", "--random-seed", "1")
    assert cli("sample", str(tmp_path / "fox"), "--seed", "the quick b", *options).output == got["texts"][1] + "\n"
    assert got["texts"][-1].startswith("error: random_seed") and "\n" not in got["texts"][-1]


def test_the_pages_sampler_tells_the_random_seed_it_drew_and_writes_the_text_again_from_it(tmp_path):
    """Unseeded, the page's sampler drew from Math.random and never told which draw it used: a text liked on
    the page could not be written again. Its done message tells the seed it drew (a whole number below 2**32,
    as charlm's row_seeds draws: only a seed's low 32 bits count), which given back writes that text again; a
    seed given is told as given, and greedy, which draws nothing, tells none (as the server's `seed`)."""
    page = exported(tmp_path, model_of("lstm", TEXT, hidden=16))
    drawn = {"seed": "the ", "length": 80, "temperature": 1.5}
    greedy = [
        {"seed": "the ", "length": 5, "temperature": 0},
        {"seed": "the ", "length": 5, "greedy": True, "random_seed": 3},
    ]
    first = run_in_node(tmp_path, NODE_HARNESS, page, {"text": "the", "generations": [drawn, drawn, *greedy]})
    seeds = first["seeds"]
    assert all(isinstance(seed, int) and 0 <= seed < 2**32 for seed in seeds[:2]) and seeds[0] != seeds[1], seeds
    assert seeds[2:] == [None, None]
    given = [{**drawn, "random_seed": seed} for seed in (*seeds[:2], -5)]
    again = run_in_node(tmp_path, NODE_HARNESS, page, {"text": "the", "generations": given})
    assert again["texts"][:2] == first["texts"][:2] and again["seeds"] == [*seeds[:2], -5]


def test_the_pages_script_api_refuses_what_it_does_not_offer_rather_than_writing_something_else(tmp_path):
    """window.charlm.generate took options it does not have without a word: a repetition penalty (or a
    presence or frequency penalty, charlm's since) or a logit bias wrote the text without it, a temperature schedule (a list, charlm.generate's) drew id 0 on every step
    (NaN), as did top_p 0; a negative temperature wrote the least likely characters and a negative top_k kept
    them all, and greedy took a temperature or top_p it ignores, where charlm refuses each. Each is refused by
    name now, and what the page offers still writes."""
    model = model_of("lstm", TEXT, hidden=16)
    not_offered = {  # charlm's, which the page has not
        "repetition_penalty": {"repetition_penalty": 1.5},
        "logit_bias": {"logit_bias": {"o": -100}},
        "num_samples": {"num_samples": 2},
        "temperature": {"temperature": [0.5, 1.0]},
        "presence_penalty": {"presence_penalty": 0.5},
        "frequency_penalty": {"frequency_penalty": -0.5},
    }
    wrong = {  # what charlm refuses too
        "top_p": {"top_p": 0},
        "top_k": {"top_k": -3},
        "length": {"length": -5},
        "random_seed": {"random_seed": 1.5},
        "greedy": {"greedy": 1},
        "repetiton_penalty": {"repetiton_penalty": 1.5},  # a misspelt option
        "greedy with top_p": {"greedy": True, "temperature": 0.5, "top_p": 0.9},  # greedy ignored them
    }
    for options in wrong.values():
        with pytest.raises(CharLMError):
            charlm.generate(model, "the ", **{"length": 20, **options})
    refused = {**not_offered, **wrong}
    refused["temperature -1"] = {"temperature": -1}
    generations = [{"seed": "the ", "length": 20, "random_seed": 1, **options} for options in refused.values()]
    generations.append({"seed": "the ", "length": 20, "greedy": True, "top_k": None, "logit_bias": None})
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "the", "generations": generations})
    for (name, options), text in zip(refused.items(), got["texts"]):
        assert text.startswith("error: ") and name.split()[0] in text and "\n" not in text, (options, text)
    assert "not the page's (the page has no repetition penalty)" in got["texts"][0]
    said = dict(zip(refused, got["texts"]))
    assert "not the page's (the page has no presence or frequency penalty)" in said["frequency_penalty"]
    assert "unknown sampling option repetiton_penalty; known: seed," in said["repetiton_penalty"]
    assert said["greedy with top_p"] == (
        "error: greedy: true takes the likeliest character, so temperature and top_p change nothing: drop them, "
        "or drop greedy: true to sample"
    )
    assert got["texts"][-1] == sampler.generate(model, "the ", length=20, greedy=True)[0]


def test_the_pages_stop_text_is_read_in_the_models_normalization_as_charlms(tmp_path):
    """A stop text is the model's text as its vocabulary normalizes it (generation.stop_texts): an nfkc model
    writes 'o' for a full-width 'ｏ', and charlm stops there; the page looked for the 'ｏ' as typed, which the
    model never writes, and wrote on to the length."""
    torch.manual_seed(3)
    vocab = Vocab(sorted(set(TEXT)), normalize="nfkc")
    model = CharLM(ModelConfig("lstm", 2, 16, 0.0, len(vocab)), vocab).eval()
    greedy = sampler.generate(model, "the ", length=60, greedy=True)[0]
    written = next(c for c in greedy[4:] if c.isalpha())
    stop = chr(ord(written) - 0x21 + 0xFF01)  # its full-width form
    expected = sampler.generate(model, "the ", length=60, greedy=True, stop=stop)[0]
    assert expected != greedy and expected.endswith(written)
    generations = [{"seed": "the ", "length": 60, "greedy": True, "stop": stop}]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "the", "generations": generations})
    assert got["texts"] == [expected]


def test_the_pages_stop_text_reads_windows_line_breaks_as_charlms(tmp_path):
    r"""charlm reads a stop text as it reads a seed (generation.stop_texts: vocab.normalized, `\r\n` as `\n`), so
    `stop='b\r\n'` (a Windows file's line) stops after a written 'b' and its line break; the page normalized
    the stop but kept its `\r`, which the model never writes, and wrote on to the length."""
    torch.manual_seed(4)
    vocab = Vocab(list("ab\n"), normalize="nfc")
    model = CharLM(ModelConfig("lstm", 1, 8, 0.0, len(vocab)), vocab).eval()
    expected = [sampler.generate(model, "a", length=40, greedy=True, stop=stop)[0] for stop in ("b\r\n", "\r\r\n")]
    assert expected == ["a\na\na\nab\n", "a\n"]
    generations = [{"seed": "a", "length": 40, "greedy": True, "stop": stop} for stop in ("b\r\n", "\r\r\n")]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "ab", "generations": generations})
    assert got["texts"] == expected


# A free seed typed in other forms of the model's characters: full-width letters and digits, a ligature and a
# unit that NFKC spells as two characters, a decomposed 'é' that NFC composes, the angstrom sign and a CJK
# compatibility ideograph that NFC reads as a letter and an ideograph, and marks the model never saw, bare
# or with a hint ('．' is its '.', which it never saw: did you mean '。'?).
TYPED_SEEDS = ["ｔhe ", "ﬁ １２ ", "㎏ e\u0301 ", "\u212b\uf900 ", "the．", "½ e\u0301\u0301", "\r\nｑ ∑ "]
TYPED_CHARS = sorted(set(TEXT + "fi12kgé\u00c5\u8c48。"))


def typed_model(normalize: str, unknown: bool = False) -> CharLM:
    torch.manual_seed(3)
    vocab = Vocab(TYPED_CHARS, unknown=unknown, normalize=normalize)
    return CharLM(ModelConfig("lstm", 2, 16, 0.0, len(vocab)), vocab).eval()


@pytest.mark.parametrize(("normalize", "unknown"), [("nfkc", False), ("nfc", False), ("none", False), ("nfkc", True)])
def test_the_page_gives_a_free_seed_as_the_model_read_it_as_charlm_does(tmp_path, normalize, unknown):
    """charlm.generate(model, 'ｔhe ') on an nfkc model gives 'the ...', the seed as the model read it (as
    `charlm sample` prints it and the server echoes it); the page's script API gave 'ｔhe ...' for free text
    (a form's seed alone was given as read). The same text now for every normalization, a seed whose reading
    is longer or shorter than typed, and the same refusal of a character the model never saw, named as read;
    a model with the unknown symbol reads it as that, and both give it as typed (after normalization)."""
    model = typed_model(normalize, unknown)
    generations = [{"seed": seed, "length": 12, "greedy": True} for seed in TYPED_SEEDS]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "the", "generations": generations})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unknown symbol's
        expected = [charlms(model, seed, length=12) for seed in TYPED_SEEDS]
    assert got["texts"] == expected
    if normalize == "nfkc":  # read otherwise than typed, and no refusal
        assert [text[:4] for text in expected[:3]] == ["the ", "fi 1", "kg é"], expected
    if normalize != "none" and not unknown:
        assert expected[4] == "error: seed: 1 character the model has never seen: " + (
            "'.' (did you mean '。'?); use only characters from the training text"
            if normalize == "nfkc"
            else "'．'; use only characters from the training text"
        )


# NODE_HARNESS with each text's warning beside it: [text, warning] ("" for none), or the error.
WARNING_HARNESS = NODE_HARNESS.replace(
    'texts.push(done.type === "done" ? done.text :', 'texts.push(done.type === "done" ? [done.text, done.warning] :'
)


def charlms_warning(model: CharLM, seed: str, **options) -> list[str]:
    """charlm's text after `seed` (greedy) and what it warns ("" for nothing), as WARNING_HARNESS gives the page's."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = sampler.generate(model, seed, greedy=True, **options)[0]
    return [text, "\n".join(str(warning.message) for warning in caught)]


def test_the_page_says_of_a_seed_read_as_the_unknown_symbol_what_charlm_warns(tmp_path):
    """A model trained with --min-count or --coverage reads a seed's character it does not know as its unknown
    symbol: `charlm sample` warns `seed: 'Q' not in the vocabulary, read as '\ufffd'`, the page said nothing.
    Its sampler now gives the same words with the text (the status line and the script API say them), naming
    each character as charlm does ('.' (did you mean '。'?), ten then " ..."), for a Continue that carries the
    state on too (it reads the same seed), and nothing for a seed of known characters or of the symbol itself."""
    model = typed_model("nfkc", unknown=True)
    seeds = ["the Q", "the．", "ｑ∑ the", "the \ufffd", "the ", "QWERTYUIOPZXV"]
    first = charlms_warning(model, seeds[0], length=5)[0]
    seeds.insert(1, first)  # Continue right after the first: the state carried on, the seed not encoded again
    generations = [{"seed": seed, "length": 5, "greedy": True, "continuing": at == 1} for at, seed in enumerate(seeds)]
    got = run_in_node(tmp_path, WARNING_HARNESS, exported(tmp_path, model), {"text": "the", "generations": generations})
    expected = [charlms_warning(model, seed, length=5) for seed in seeds]
    assert got["texts"] == expected
    assert expected[0][1] == expected[1][1] == "seed: 'Q' not in the vocabulary, read as '\ufffd'"
    assert expected[2][1] == "seed: '.' (did you mean '。'?) not in the vocabulary, read as '\ufffd'"
    assert expected[6][1].endswith("'P' ... not in the vocabulary, read as '\ufffd'")
    assert expected[4][1] == expected[5][1] == ""


@pytest.mark.slow  # a browser
def test_page_shows_and_continues_a_free_seed_as_the_model_read_it(tmp_path, browser):
    """The page showed an nfkc model's free seed as typed ('ｔhe ') and Continue sent it so, where charlm prints
    the seed as read ('the '): it now shows the seed the model read, Continue sends that text, and a ban typed in
    another form of a character (a full-width 'ｌ') bans the model's character after it, as `--ban` does."""
    model = typed_model("nfkc")
    expected = sampler.generate(model, "ｔhe ﬁ", length=10, greedy=True)[0]
    assert expected.startswith("the fi")
    wait = page_ready(browser, exported(tmp_path, model).as_uri())
    write(browser, seed="ｔhe ﬁ", length="10", temperature="0")
    wait(browser, PAGE_WAIT).until(lambda d: "done (length)" in d.find_element("id", "status").text)
    assert browser.execute_script("return document.getElementById('text').textContent") == expected
    browser.find_element("id", "continue").click()
    wait(browser, PAGE_WAIT).until(lambda d: len(made_text(d)) == 10 and "done" in d.find_element("id", "status").text)
    assert browser.find_element("id", "seed").get_attribute("value") == expected
    continued = browser.execute_script("return document.getElementById('text').textContent")
    assert continued == sampler.generate(model, expected, length=10, greedy=True)[0]
    options = {"length": 10, "greedy": True, "logit_bias": sample_configs({}, "ｌ")[0].logit_bias}
    banned = sampler.generate(model, "ｔhe ", **options)[0]
    assert "l" in expected[6:] and "l" not in banned and banned.startswith("the ")
    generated = "window.charlm.generate({seed: args[0], length: 10, greedy: true, ban: args[1]})"
    assert call(browser, generated, "ｔhe ", "ｌ") == banned


def test_the_page_goes_on_with_the_poem_its_seed_began_as_charlm_does(tmp_path):
    """The page's forms (sampler.js) wrote a new poem after any seed; charlm goes on with the poem a seed began
    (constraints.Constrained.begun), and so does the page now, by the same rule: the same greedy poems, the same
    refusal of a seed whose verse breaks the acrostic, or whose last line breaks the form (a six-character verse)."""
    model = poet_model()
    verse = CHINESE[:5] + "，"
    seeds = ["丁\n", "丁\n七\n" + verse, "丁\n" + CHINESE[7:9], "丁\n" + verse + CHINESE[10:15] + "。\n" + CHINESE[20:21],
             "丁\n" + CHINESE[:6] + "，", "丁\n" + (verse + CHINESE[10:15] + "。\n") * 2]  # fmt: skip
    generations = [{"seed": seed, "form": "五绝", "greedy": True} for seed in seeds]
    generations.append({"seed": "丁\n" + verse, "form": "五绝", "acrostic": "一丁七万", "greedy": True})
    generations.append({"seed": "丁\n" + verse, "form": "五绝", "acrostic": "丁丁七万", "greedy": True})
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "丁", "generations": generations})
    for seed, text in zip(seeds, got["texts"]):
        assert text == charlms(model, seed, form="五绝"), seed
    assert got["texts"][6] == sampler.generate(model, "丁\n" + verse, form="五绝", acrostic="一丁七万", greedy=True)[0]
    with pytest.raises(CharLMError) as error:
        sampler.generate(model, "丁\n" + verse, form="五绝", acrostic="丁丁七万")
    assert got["texts"][7] == f"error: {error.value}"
    assert [text.count("，") for text in got["texts"][:6] if "error" not in text] == [2, 2, 2, 2, 4]  # one is new
    assert got["texts"][4].startswith("error: seed: its last line '" + CHINESE[:6] + "，' has")


def test_the_page_refuses_a_seed_of_a_whole_poem_in_charlms_words(tmp_path):
    """A seed whose last line finishes a whole poem was told to "write the form there", which it had: charlm and
    the page now say to end it with a line break for a new poem, or to leave the finished poem out; a line that
    leaves the form is still told to write the form there."""
    model = poet_model()
    poem = CHINESE[:5] + "，" + CHINESE[10:15] + "。\n" + CHINESE[:5] + "，" + CHINESE[10:15] + "。"
    seeds = ["丁\n" + poem, "丁\n" + CHINESE[:6]]
    generations = [{"seed": seed, "form": "五绝", "greedy": True} for seed in seeds]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "丁", "generations": generations})
    assert got["texts"] == [charlms(model, seed, form="五绝") for seed in seeds]
    assert got["texts"][0].endswith(
        "completes a whole form 五绝; end the seed with a line break for a new poem under it, or leave the finished "
        "poem out"
    ), got["texts"][0]
    assert got["texts"][1].endswith("; write the form there, or end the seed with a line break for a new poem under it")


def test_the_page_counts_an_acrostic_of_one_character_as_charlm_does(tmp_path):
    """The page said "acrostic has 1 characters", as charlm did: one character, one verse, in both."""
    requests = [{"template": "__，__。", "acrostic": "丁"}, {"template": "_____。", "acrostic": "丁七"}]
    texts = refused_alike(tmp_path, poet_model(), "", requests)
    assert texts[0].startswith("error: acrostic has 1 character but template has 2 verses; "), texts[0]
    assert texts[1].startswith("error: acrostic has 2 characters but template has 1 verse; "), texts[1]


def test_the_page_counts_the_characters_a_model_never_saw_as_charlm_does(tmp_path):
    """The page said "1 character(s) the model has never seen", as charlm did: one character, two characters;
    and "1000 characters" where charlm writes "1,000 characters"."""
    thousand = "".join(chr(0x4E00 + i) for i in range(1000))
    model, seeds = model_of("lstm", "abc \n", hidden=8), ["z", "zy", thousand]
    generations = [{"seed": seed, "greedy": True} for seed in seeds]
    texts = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "a", "generations": generations})
    texts = texts["texts"]
    assert texts == [charlms(model, seed) for seed in seeds]
    assert texts[0].startswith("error: seed: 1 character the model has never seen: 'z'; "), texts[0]
    assert texts[1].startswith("error: seed: 2 characters the model has never seen: 'z' 'y'; "), texts[1]
    assert texts[2].startswith("error: seed: 1,000 characters the model has never seen: '一' "), texts[2]


def test_the_page_quotes_the_acrostics_characters_as_charlm_does(tmp_path):
    """An acrostic's character "'" was quoted with JSON's quotes where charlm quotes as Python does: the same
    line now, for '"' and a backslash too."""
    model = model_of("lstm", "abc'\" \\\n", hidden=8)
    requests = [{"template": "___ ___", "acrostic": acrostic} for acrostic in ("'b", '"b', "\\b")]
    texts = refused_alike(tmp_path, model, "c\nab", requests)
    # an acrostic of a mark is refused before any seed is read (forms.template_of): quoted as Python quotes it
    assert [text.split(": ", 2)[2].split(",")[0] for text in texts] == [
        'verse 1 would begin with "\'"',
        "verse 1 would begin with '\"'",
        "verse 1 would begin with '\\\\'",
    ]


def test_the_page_refuses_an_acrostic_of_a_mark_or_another_script_as_charlm_does(tmp_path):
    """charlm refuses an acrostic with a character of another script than its verses' (`春,夏秋`: a comma typed
    between its characters; forms.template_of), where the page took the mark as a verse's first character and wrote
    a verse that begins with it: the same line now, a character the model knows or not, and the same poems."""
    model = poet_model(",")
    acrostics = ["一,丁七", "一，丁七", "一丁七a", "一丁七Ω", "一丁七万"]
    requests = [{"form": "五绝", "acrostic": acrostic} for acrostic in acrostics]
    requests.append({"template": "__ __", "acrostic": "a,"})
    generations = [{"seed": "", "greedy": True, **request} for request in requests]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "丁", "generations": generations})
    for request, text in zip(requests, got["texts"]):
        assert text == charlms(model, "", **request), request
    assert got["texts"][0] == (
        "error: acrostic 一,丁七: verse 2 would begin with ',', which is not a Han character, as the verses of "
        "form 五绝 are; give one Han character per verse"
    )
    assert got["texts"][3].startswith("error: acrostic 一丁七Ω: verse 4 would begin with 'Ω'"), got["texts"][3]
    assert template_of("五绝", acrostic="一丁七万").fits(got["texts"][4])
    assert got["texts"][5].startswith("error: acrostic a,: verse 2 would begin with ',', which is not a letter")


def refused_alike(tmp_path, model: CharLM, seed: str, requests: list[dict]) -> list[str]:
    """The page's words for each of `requests` (greedy, after `seed`), checked to be charlm's refusal of it."""
    generations = [{"seed": seed, "greedy": True, **request} for request in requests]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": seed, "generations": generations})
    for request, text in zip(requests, got["texts"]):
        with pytest.raises(CharLMError) as error:
            sampler.generate(model, seed, greedy=True, **request)
        assert text == f"error: {error.value}", request
    return got["texts"]


def test_the_page_reads_a_seeds_windows_line_breaks_and_refuses_a_templates_as_charlm_does(tmp_path):
    """A seed with `\r\n` (a Windows file's text, through window.charlm.generate) was refused on the page
    ('\r' never seen), where charlm reads it as `\n` (corpus.line_breaks), as it reads every text; a lone
    `\r` the model never saw is refused by both, and so is a `\r` in a template, with the same line."""
    model = poet_model()
    verse = CHINESE[:5] + "，"
    seeds = ["丁\r\n" + verse, "丁\r\r\n七\r\n", "丁\r七"]
    generations = [{"seed": seed, "form": "五绝", "greedy": True} for seed in seeds]
    generations.append({"seed": "丁", "template": "_\r\n_", "greedy": True})
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "丁", "generations": generations})
    for seed, text in zip(seeds[:2], got["texts"]):
        assert text == sampler.generate(model, seed, form="五绝", greedy=True)[0], seed
    assert got["texts"][2].startswith("error: seed: 1 character the model has never seen")
    with pytest.raises(CharLMError, match="never seen"):
        sampler.generate(model, seeds[2], form="五绝")
    with pytest.raises(CharLMError) as error:
        sampler.generate(model, "丁", template="_\r\n_")
    assert got["texts"][3] == f"error: {error.value}"


@pytest.mark.slow
def test_page_and_its_script_api_say_of_a_needless_ban_what_sample_ban_warns(tmp_path, browser):
    """The page's status line named a banned ',' bare for a novel that writes '，' and '、', where `charlm
    sample --ban` asks "did you mean"; its script API's `ban` said nothing at all, where Python warns; and
    a `ban` not a string failed with "text.replace is not a function". The status line and a console
    warning now say what `--ban` warns, and the API refuses a ban of another kind by name."""
    poem = "床前明月光疑是地上霜举头望低思故乡春眠不觉晓处闻啼鸟夜来风雨声花落知多少白日依山尽黄河入海流欲穷千里目更上一层楼"
    model = model_of("lstm", poem + "，、。“”\n", hidden=8)
    with on_command_line(), pytest.warns(UserWarning) as caught:
        sampler.generate(model, "明月", length=3, logit_bias=sample_configs({}, ",，")[0].logit_bias)
    warned = str(caught[0].message).removeprefix("--")
    assert warned == "ban: the model never writes ',' (did you mean '、'?), so banning it changes nothing"
    wait = page_ready(browser, exported(tmp_path, model).as_uri())
    write(browser, seed="明月", length="5", ban=",，")
    wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    assert browser.find_element("id", "status").text.endswith(f" ({warned})")
    warnings_of = """(async () => {
      const said = [], warn = console.warn;
      console.warn = (message) => said.push(message);
      try { await window.charlm.generate({seed: "明月", length: 3, ban: args[0]}); } finally { console.warn = warn; }
      return said;
    })()"""
    assert call(browser, warnings_of, ",，") == [warned]
    assert call(browser, warnings_of, "，") == []  # a ban the model writes: nothing to say
    refused = call(browser, "window.charlm.generate({ban: args[0]})", [5])
    assert refused == "error: ban must be a string of the characters never to write, not [5]"


@pytest.mark.slow
def test_page_and_its_script_api_say_of_a_seed_read_as_the_unknown_symbol_what_sample_warns(tmp_path, browser):
    """The page read a seed's 'Q' as a --min-count model's unknown symbol without a word, where `charlm
    sample` warns: its status line now ends with the warning, as it does with a needless ban's, and the
    script API warns in the console, in Python's words and order (the seed's, then the ban's)."""
    model = typed_model("nfkc", unknown=True)
    with on_command_line(), pytest.warns(UserWarning) as caught:
        sampler.generate(model, "the Q", length=3, logit_bias=sample_configs({}, "Ω")[0].logit_bias)
    warned = [str(warning.message).removeprefix("--") for warning in caught]
    assert warned == [
        "seed: 'Q' not in the vocabulary, read as '\ufffd'",
        "ban: the model never writes 'Ω', so banning it changes nothing",
    ]
    wait = page_ready(browser, exported(tmp_path, model).as_uri())
    write(browser, seed="the Q", length="5", temperature="0")
    wait(browser, PAGE_WAIT).until(lambda d: "done" in d.find_element("id", "status").text)
    assert browser.find_element("id", "status").text.endswith(f" ({warned[0]})")
    assert browser.find_element("id", "seed-error").text == ""  # a note, not a refusal: the text is written
    assert browser.execute_script("return document.getElementById('text').textContent").startswith("the Q")
    write(browser, seed="the ")
    wait(browser, PAGE_WAIT).until(lambda d: d.find_element("id", "status").text.endswith("characters/s)"))
    warnings_of = """(async () => {
      const said = [], warn = console.warn;
      console.warn = (message) => said.push(message);
      try { await window.charlm.generate({seed: args[0], length: 3, ban: args[1]}); } finally { console.warn = warn; }
      return said;
    })()"""
    assert call(browser, warnings_of, "the Q", "Ω") == warned
    assert call(browser, warnings_of, "the \ufffd", "") == []  # the symbol itself, which the model knows


def test_the_page_names_a_seeds_unseen_characters_with_charlms_hints(tmp_path):
    """The page refused a seed typed with ',' for a novel that writes '，' (or '「' for '“', or the traditional
    '寶' for a simplified model) with the bare characters; charlm says what the model knows instead
    (Vocab.name_unseen), and so does the page now, from hints computed at export: the same message."""
    poem = "床前明月光疑是地上霜举头望低思故乡春眠不觉晓处闻啼鸟夜来风雨声花落知多少白日依山尽黄河入海流欲穷千里目更上一层楼"
    model = model_of("lstm", poem + "，。“”\n", hidden=8)
    assert is_simplified_chinese(model.vocab.chars)
    seeds = ["明月,", "「明月」", "寶玉来", "X'\x01\\\t ", "abcdefghijkl", "明月光"]
    generations = [{"seed": seed, "length": 3, "greedy": True} for seed in seeds]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "明月", "generations": generations})
    for seed, text in zip(seeds[:-1], got["texts"]):
        with pytest.raises(CharLMError) as error:
            sampler.generate(model, seed, length=3, greedy=True)
        assert text == f"error: {error.value}", seed
    assert "',' (did you mean '，'?)" in got["texts"][0] and "'「' (did you mean '“'?)" in got["texts"][1]
    assert "'寶' (traditional? this model knows simplified Chinese) '玉';" in got["texts"][2]
    assert got["texts"][5] == sampler.generate(model, seeds[5], length=3, greedy=True)[0]


def test_the_page_names_a_templates_unseen_character_with_charlms_hints(tmp_path):
    """The page named a template's or an acrostic's unseen character bare and JSON-quoted ('''), where charlm
    names it as a seed's (Vocab.name_unseen: ',' (did you mean '，'?), '寶' (traditional? ...), "'"), and
    docs/export.md says the page refuses a form in the server's words: the same line now."""
    poem = "床前明月光疑是地上霜举头望低思故乡春眠不觉晓处闻啼鸟夜来风雨声花落知多少白日依山尽黄河入海流欲穷千里目更上一层楼"
    model = model_of("lstm", poem + "，。“”\n", hidden=8)
    requests = [{"template": "__,__"}, {"form": "五绝", "acrostic": "寶明月光"}, {"template": "__'__"}]
    # every character the option fixed, each once, as a seed's (the page named the first alone)
    requests += [{"form": "五绝", "acrostic": "寶明寶釵"}, {"template": "寶_，釵_，寶_", "acrostic": "說明月"}]
    texts = refused_alike(tmp_path, model, "明月", requests)
    assert "',' (did you mean '，'?)" in texts[0] and "(traditional? " in texts[1]
    assert texts[3].startswith("error: acrostic: 2 characters") and "'釵' (traditional? " in texts[3]
    assert texts[4].startswith("error: template: 2 characters")  # the template's first, then its own


def test_the_page_reads_a_nul_in_a_template_as_charlm_does(tmp_path):
    """The page marked a template's `\\_` with a NUL until it read the template, so a NUL typed in one was read
    as that mark, a literal `_`: written by a model that knows `_`, where charlm (forms.template_slots, in one
    pass) reads a NUL as the character fixed there, refused by a model that never saw one, written by one that did."""
    requests = [{"template": "__\x00__"}, {"template": "_\\_\x00_"}]
    texts = refused_alike(tmp_path, poet_model("_"), "丁", requests)
    assert all(text.startswith("error: template: 1 character the model has never seen: '\\x00'") for text in texts)
    knows = poet_model("_\x00")
    generations = [{"seed": "丁", "greedy": True, **request} for request in requests]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, knows), {"text": "丁", "generations": generations})
    assert got["texts"] == [charlms(knows, "丁", **request) for request in requests]
    assert [text[2] for text in got["texts"]] == ["\x00", "\x00"]  # 丁 begins the poem: the NUL is its third


def test_the_page_gives_a_templates_blanks_the_script_charlm_does_for_tricky_characters(tmp_path):
    """The page decided the script of `_` on the classes of the ids a template's fixed text is read as,
    charlm on the text as typed: under nfkc "，" and "！" (CJK punctuation: Han) are the model's "," and "!"
    (neither: the vocabulary's majority, letters), a Kangxi radical ⼀ (neither) its 一 (Han), so the page
    wrote letters where `charlm sample --template` wrote Han, or Han for letters. 々, 〇, ー, full-width
    digits and an extension-B character are classed as charlm classes them."""
    vocab = Vocab(sorted(set("abcdefghijklmnopqrstuvwxyz一丁七𠀀々〇ー1,! \n")), normalize="nfkc")
    torch.manual_seed(3)
    model = CharLM(ModelConfig("lstm", 1, 16, 0.0, len(vocab)), vocab).eval()
    templates = ["__，__！", "⼀__", "_　_", "_々_", "〇__", "ー__", "１__", "𠀀__", "__,__!"]
    generations = [{"seed": "x", "template": template, "greedy": True} for template in templates]
    got = run_in_node(tmp_path, NODE_HARNESS, exported(tmp_path, model), {"text": "ab", "generations": generations})
    made = [sampler.generate(model, "x", template=template, greedy=True)[0] for template in templates]
    assert got["texts"] == made
    blanks = [text[len("x") + template.index("_")] for text, template in zip(made, templates)]
    assert [is_han(c) for c in blanks] == [True, False, True, True, True, False, False, True, False], blanks


def test_markup_escapes_and_astral_characters_in_the_vocabulary_and_names_load_and_sample(tmp_path):
    """Characters that could end the page's script or its JSON early (in the vocabulary, and in the
    corpus name the page shows), or that JavaScript counts as two (emoji): each one id as in charlm."""
    chars = "ab \"'`\\</script><!--<script>\u0001\u001b\t\u2028\u2029\u200f\u202e\u05e9\u05dc\u05d5\u05dd🙂𝄞\ufeff${}\n"
    model = model_of("lstm", chars, hidden=16)
    run = run_of(model, tmp_path / "run", corpus="<!--<script>\u2028</script>🙂")
    page = tmp_path / "page.html"
    assert cli("export", str(run), "--format", "html", "--weights", "fp32", "--output", str(page)).exit_code == 0
    text, seed = (chars * 8)[3:200], "🙂\u05e9</script>"
    request = {"text": text, "generations": [{"seed": seed, "length": 100, "greedy": True}]}
    got = run_in_node(tmp_path, NODE_HARNESS, page, request)
    assert (torch.tensor(got["logprobs"], dtype=torch.float64) - torch_logprobs(model, text)).abs().max() < 1e-4
    assert got["texts"] == [sampler.generate(model, seed, length=100, greedy=True)[0]]


def run_in_node(tmp_path, harness: str, script, request) -> dict:
    """`harness` run by Node on `script` (a page, or page.js) and `request` (as JSON): what it prints."""
    import shutil

    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed: the browser tests (slow) check the page's script")
    (tmp_path / "harness.js").write_text(harness, encoding="utf-8")
    (tmp_path / "request.json").write_text(json.dumps(request), encoding="utf-8")
    command = [node, str(tmp_path / "harness.js"), str(script), str(tmp_path / "request.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_exported_page_refuses_settings_out_of_range_by_name(tmp_path, browser):
    wait = page_ready(browser, exported(tmp_path, model_of("lstm", TEXT, hidden=32)).as_uri())
    settings_out_of_range_are_refused_by_name(browser, wait)


@pytest.mark.slow
def test_exported_page_takes_no_kept_setting_out_of_its_range(tmp_path, browser):
    """A kept length of -5 or top-p of 7 (an entry edited, or another version's) came back into the boxes,
    and every Write was refused until they were retyped: each falls back to its default."""
    page = exported(tmp_path, model_of("lstm", TEXT, hidden=8)).as_uri()
    page_ready(browser, page)
    names = ["temperature", "top_p", "length"]
    values = "return arguments[0].map((id) => document.getElementById(id).value)"
    defaults = browser.execute_script(values, names)
    kept = {"temperature": -1, "top_p": 7, "length": -5}
    browser.execute_script("localStorage.setItem(`${KEPT}.settings`, arguments[0])", json.dumps(kept))
    page_ready(browser, page)  # a reload
    assert browser.execute_script(values, names) == defaults


@pytest.mark.slow
def test_page_counts_a_big_vocabulary_with_a_thousands_separator(tmp_path, browser):
    """A Chinese novel's page said "4447 characters", where everything else charlm prints says 4,447."""
    chars = "".join(chr(0x4E00 + i) for i in range(1200)) + "ab \n"
    page_ready(browser, exported(tmp_path, model_of("lstm", chars, hidden=8)).as_uri())
    shown = f"{len(set(chars)):,} characters"
    page_text = browser.execute_script("return document.body.textContent")  # the model's details, folded too
    assert page_text.count(shown) == 2, page_text  # its architecture, and the seed's caption


# page.js (both pages' shared script) run in Node: the ban box's reading of characters, checked against
# what `charlm sample --ban` makes of the same text.
PAGE_JS_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const context = vm.createContext({});
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const request = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const read = ([text, chars, normalize, unknownId]) => {
  try { return context.bannedIds(text, chars, normalize, unknownId); } catch (e) { return `${e.param}|${e.message}`; }
};
const combining = [];  // every code point the page takes for a combining mark
for (let code = 0; code < 0x110000; code++) {
  if ((code < 0xd800 || code > 0xdfff) && context.combining(String.fromCodePoint(code))) combining.push(code);
}
console.log(JSON.stringify({ bans: request.map(read), combining }));
"""


def sample_ban(text: str, vocab: Vocab) -> list[int] | str:
    """What `charlm sample --ban TEXT` bans (its ids), or its error, as the page words it."""
    try:
        bias = bias_vector(sample_configs({}, text)[0].logit_bias, vocab)
    except BiasError as e:
        return "ban|" + str(e.as_ban()).replace("--ban", "ban", 1).replace("in --ban)", "in the box)")
    return [] if bias is None else bias.isneginf().nonzero().flatten().tolist()


def test_the_ban_box_reads_characters_as_sample_ban_does(tmp_path):
    """Both pages' ban box (page.js) bans the ids `charlm sample --ban` bans, and refuses what it refuses
    in the same words: unknown characters need no ban, `\\n`, normalization, combining marks, repeats; and a
    ban that leaves only the unknown symbol, which the exported page took (it refused only a ban of every
    token), so that it wrote nothing but '\ufffd'."""
    latin = Vocab(sorted(set("the café\tnaïve\n.")), normalize="nfc")
    emoji = Vocab(list("ab \U0001f468\U0001f469\U0001f467\u200d\U0001f44d\U0001f3fd"), normalize="nfc")
    cases = [
        ("", latin), ("0123456789", latin), ("eo\\n\\t", latin), ("ee", latin),
        ("e\u0301", latin),  # a decomposed é (a macOS keyboard's) is the model's é
        ("\u00e9e\u0301", latin),  # é twice, typed two ways
        ("".join(latin.chars), latin),  # everything
        ("…", Vocab(list("abc."), normalize="nfkc")),  # the model writes it as three characters
        ("Ｑ", Vocab(list("PQ"), normalize="nfkc")),  # a full-width Q is the model's Q
        ("e\u0301", Vocab(["e", "\u0301", "é"], normalize="none")),  # two characters to this model
        ("\u0301e", Vocab(["e", "\u0301", "x"], normalize="none")),  # a mark first stands alone
        ("\ufffdz", Vocab(list("ab"), unknown=True)),  # the unknown symbol may be banned too
        ("\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f44d\U0001f3fd", emoji),  # a ZWJ family, a skin tone
        ("\U0001f468\u200d\U0001f469", Vocab(list("ab"), normalize="nfc")),  # none of it known: no ban
        ("a\u0301\u0302", latin),  # two marks on one letter: several characters to the model
        ("e\u0301\u0301", latin),  # an e and two acutes: NFC's é and one acute, which look the same
        ("\u0301\u0301", Vocab(["a", "\u0301"], normalize="none")),  # a mark on a mark is one key
        ("'＇", Vocab(list("ab'"), normalize="nfkc")),  # quoted as Python quotes: "'", not '''
        ('"＂', Vocab(list('ab"'), normalize="nfkc")),  # '"', not '\"'
        ("\x01\u0301", Vocab(["\x01", "\u0301", "a"], normalize="none")),  # '\x01', not '\u0001'
        ("".join(chr(0x4E00 + i) for i in range(10_000)), Vocab(list("ab\u4e00\u4e01"), normalize="nfc")),
        ("ab", Vocab(list("ab"), unknown=True)),  # all but the unknown symbol: it would write only '\ufffd'
        ("ab\ufffd", Vocab(list("ab"), unknown=True)),  # every token
        ("a", Vocab(list("ab"), unknown=True)),
    ]  # fmt: skip
    script = html.resources.files("charlm.serve").joinpath("page.js")
    got = run_in_node(
        tmp_path,
        PAGE_JS_HARNESS,
        script,
        [[text, vocab.chars, vocab.normalize, vocab.unknown_id] for text, vocab in cases],
    )
    for (text, vocab), js in zip(cases, got["bans"]):
        assert (sorted(js) if isinstance(js, list) else js) == sample_ban(text, vocab), text
    assert got["bans"][5].startswith("ban|ban gives token") and got["bans"][7].startswith("ban|ban: '…' is '...'")
    assert "(U+0065 U+0301 U+0301) is 'é\u0301' (U+00E9 U+0301) to this model" in got["bans"][15], got["bans"][15]
    assert got["bans"][-3].startswith("ban|ban bans every token that writes text (what it leaves")
    # The page's combining marks are Python's (unicodedata.combining) wherever both know the character,
    # but three Tibetan vowel signs whose decompositions start with one (each a class-0 character).
    known = [c for c in range(0x110000) if unicodedata.category(chr(c)) != "Cn" and not 0xD800 <= c <= 0xDFFF]
    marks = {c for c in known if unicodedata.combining(chr(c))}
    assert set(got["combining"]) & set(known) == marks | {0x0F73, 0x0F75, 0x0F81}


PAGE_JS_CALLS = r"""
const fs = require("fs"), vm = require("vm");
const context = vm.createContext({});
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const calls = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
console.log(JSON.stringify(calls.map(([name, ...args]) => context[name](...args))));
"""


def test_the_serve_pages_note_of_a_seeds_unseen_characters_counts_them(tmp_path):
    """The serve page said of one character the model does not know that "it reads them as characters": one
    is "it" and "a character" now, several "them" and "characters", each named as charlm names it."""
    from .test_vocab import SIMPLIFIED

    model = make_model(Vocab(sorted(set(SIMPLIFIED + "，"))), layers=1, hidden=4)
    script = html.resources.files("charlm.serve").joinpath("page.js")
    chars, hints = "".join(model.vocab.chars), model.vocab.unseen_hints()
    calls = [["unseenSeedNote", seed, chars, "none", hints] for seed in ("宝玉道:", "宝玉道:寶", "宝玉")]
    assert run_in_node(tmp_path, PAGE_JS_CALLS, script, calls) == [
        " (the model does not know ':' (did you mean '：'?): it reads it as a character it knows nothing about)",
        (
            " (the model does not know ':' (did you mean '：'?) '寶' (traditional? this model knows simplified Chinese): "
            "it reads them as characters it knows nothing about)"
        ),
        "",
    ]


def test_the_pages_status_line_counts_characters_as_charlm_counts(tmp_path):
    """A text of one character was "done (length): 1 characters", copied as "copied 1 characters", and a
    stream cut off after 1,234 characters said "1234": page.js counts as `errors.counted` does."""
    script = html.resources.files("charlm.serve").joinpath("page.js")
    calls = [["summary", "done (length)", "a", 1.0], ["copiedNote", "a"], ["summary", "stopped", "ab" * 617, 2.0]]
    calls += [["counted", count, "character"] for count in (0, 1, 1234)]
    assert run_in_node(tmp_path, PAGE_JS_CALLS, script, calls) == [
        "done (length): 1 character in 1.0 s (1 character/s)",
        "copied 1 character",
        "stopped: 1,234 characters in 2.0 s (617 characters/s)",
        *(counted(count, "character") for count in (0, 1, 1234)),
    ]


def test_the_pages_say_of_a_stop_the_model_never_writes_what_charlm_warns(tmp_path):
    """charlm warns of a stop text the model never writes (no sample stops there), as of a ban of such a character;
    the exported page's script API warned of the ban alone and took the stop in silence. page.js words both."""
    model = make_model(Vocab(sorted(set("the fox，\n"))), layers=1, hidden=4)
    stops = ["ζ!", ",", "fox", "ｆｏｘ"]
    expected = []
    for stop in stops:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sampler.generate(model, "the", length=1, stop=stop)
        said = [str(w.message) for w in caught if "stop" in str(w.message)]
        expected.append(said[0].replace(f"stop={stop!r}", f"stop {stop!r}") if said else "")
    assert expected[0] == "stop 'ζ!': the model never writes 'ζ' '!', so no sample stops there", expected
    assert expected[1].startswith("stop ',': the model never writes ',' (did you mean '，'?)"), expected
    script = html.resources.files("charlm.serve").joinpath("page.js")
    hints = model.vocab.unseen_hints()
    calls = [["unwrittenStopWarning", stop, "".join(model.vocab.chars), "none", hints] for stop in stops]
    assert run_in_node(tmp_path, PAGE_JS_CALLS, script, calls) == expected


def test_the_pages_ban_note_names_what_sample_ban_warns_of(tmp_path):
    """Both pages' ban box took a character the model never writes without a word, where `charlm sample
    --ban` warns that banning it changes nothing: the status line's note (page.js) now names the same
    characters in the same words. It lacked the hint of a form the model writes ("(did you mean '，'?)"
    for ',') and that a character looks traditional, which it now takes from `Vocab.unseen_hints`, as
    the exported page's seed errors do; a form the ban bans too is no hint (',，' hints '、')."""
    latin = Vocab(sorted(set("the café\tnaïve\n.")), normalize="nfc")
    chinese = Vocab(sorted(set(SIMPLIFIED + "，、。：…〖〗")), normalize="nfc")
    traditional = Vocab(sorted(set(TRADITIONAL)), normalize="nfc")
    cases = [
        ("", latin), ("eo\\n\\t", latin), ("e\u0301", latin),  # all written: no note
        ("0123456789", latin), ("ΩeZ", latin), ("\\n", Vocab(list("ab "))), ("\ufffd", Vocab(list("ab"))),
        ("e\u0301", Vocab(list("abc"), normalize="nfc")),  # a decomposed é, named as NFC writes it
        ("abcdefghijklmnopqrstuvwxyz", Vocab(list("AB"))),  # ten named, then " ..."
        (",!", Vocab(list("，。小"), normalize="nfc")),
        ("…", Vocab(list("abc."), normalize="nfkc")),  # three characters the model writes (the box refuses it)
        (",", chinese), (",，", chinese), (",，、", chinese), ("寶:'", chinese), ("ｅ", latin),
        ("宝着“", traditional), (".【", chinese),
    ]  # fmt: skip
    script = html.resources.files("charlm.serve").joinpath("page.js")
    calls = [["unwrittenBanNote", text, vocab.chars, vocab.normalize, vocab.unseen_hints()] for text, vocab in cases]
    notes = run_in_node(tmp_path, PAGE_JS_CALLS, script, calls)
    for (text, vocab), note in zip(cases, notes):
        with on_command_line(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sampler.warn_of_unwritten_bans(sample_configs({}, text)[0], vocab)
        assert note == "".join(f" ({str(w.message).removeprefix('--')})" for w in caught), text
    assert notes[-6] == " (ban: the model never writes ',' (did you mean '、'?), so banning it changes nothing)"
    assert "'寶' (traditional? " in notes[-4] and "':' (did you mean '：'?)" in notes[-4], notes[-4]
    assert "'宝' (simplified? this model knows traditional Chinese) '着' '“' (did you mean '「'?)" in notes[-2]
    assert "'.' (did you mean '。' or '…'?) '【' (did you mean '〖'?)" in notes[-1], notes[-1]


def test_the_serve_pages_unseen_note_reads_the_seed_as_the_server_does(tmp_path):
    """The characters the serve page's status line says the model does not know (page.js) are the ones
    /tokenize gives no id, for each normalization: it read every seed as NFC, so an nfkc model was said
    not to know the "，" it reads as ",", and a model that does not normalize to know a U+212B it never saw."""
    from charlm.serve.token_labels import tokenized

    chars = list("the fox,1Åé\u200d\U0001f468")
    seed = "the ｆｏｘ，①, Å \u212b e\u0301 \u00e9 \U0001f468\u200d\U0001f469 ~~"
    models = [
        make_model(Vocab(chars, normalize=normalize), layers=1, hidden=4) for normalize in ("nfc", "nfkc", "none")
    ]
    script = html.resources.files("charlm.serve").joinpath("page.js")
    calls = [["unseenCharacters", seed, "".join(m.vocab.chars), m.vocab.normalize] for m in models]
    for model, got in zip(models, run_in_node(tmp_path, PAGE_JS_CALLS, script, calls)):
        unseen = [
            token["piece"] for token in tokenized(model, seed, True, "content", ServeConfig()) if token["id"] is None
        ]
        assert got == list(dict.fromkeys(unseen)), model.vocab.normalize


# page.js's checkSetting run in Node over boxes as a page's number inputs hold them (min, max, step: strings).
SETTING_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const boxes = {}, context = vm.createContext({ document: { getElementById: (id) => boxes[id] } });
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const checked = ([min, max, step, value]) => {
  boxes.box = { min, max, step, value, valueAsNumber: value === "" ? NaN : Number(value) };
  try { context.checkSetting("box", "caption"); return ""; } catch (e) { return `${e.param}|${e.message}`; }
};
console.log(JSON.stringify(JSON.parse(fs.readFileSync(process.argv[3], "utf8")).map(checked)));
"""


def test_a_whole_number_box_refuses_a_fraction_in_the_boxes_words(tmp_path):
    """Both pages' length (and the serve page's top-k) took 2.5 as within range, and the sampler refused it
    in its own words ("length must be an integer of 0 or more, not 2.5"), where every other bad box is
    told "length: give a number from 1 up": a box of whole numbers says so, in the boxes' wording."""
    boxes = [
        ("1", "", "1", "2.5"),  # the length box
        ("1", "", "1", ""),
        ("1", "", "1", "0"),
        ("0", "", "1", "3.5"),  # the serve page's top-k
        ("1", "", "1", "40"),
        ("0", "100", "0.05", "0.83"),  # a temperature between the slider's steps is a temperature
        ("0", "100", "0.05", "-1"),
    ]
    got = run_in_node(tmp_path, SETTING_HARNESS, html.resources.files("charlm.serve").joinpath("page.js"), boxes)
    assert got == [
        "box|caption: give a whole number from 1 up, not 2.5",
        "box|caption: give a whole number from 1 up",
        "box|caption: give a whole number from 1 up, not 0",
        "box|caption: give a whole number from 0 up, not 3.5",
        "",
        "",
        "box|caption: give a number from 0 to 100, not -1",
    ]


RESTORE_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const boxes = {}, context = vm.createContext({ document: { getElementById: (id) => boxes[id] } });
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const restored = ([min, max, step, saved]) => {
  boxes.box = { min, max, step, value: "7", tagName: "INPUT", type: "number" };
  boxes["box-range"] = { value: "7" };
  context.applyControlValues({ box: saved }, ["box"], []);
  return String(boxes.box.value);  // a page's box holds text
};
console.log(JSON.stringify(JSON.parse(fs.readFileSync(process.argv[3], "utf8")).map(restored)));
"""


def test_a_saved_setting_a_box_would_refuse_is_not_put_back(tmp_path):
    """A reload puts each saved setting back in its box where the box takes it: a length of 2.5 (saved by a
    page before whole numbers were asked) was put back, and the next Generate refused it, where any other
    value the box refuses leaves the box's own default."""
    saved = [("1", "", "1", 2.5), ("1", "", "1", 40), ("0", "100", "0.05", 0.83), ("1", "", "1", 0)]
    got = run_in_node(tmp_path, RESTORE_HARNESS, html.resources.files("charlm.serve").joinpath("page.js"), saved)
    assert got == ["7", "40", "0.83", "7"]
