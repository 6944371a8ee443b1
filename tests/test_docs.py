"""The docs stay true: the option reference is what the commands are, and every link leads somewhere."""

import argparse
import ast
import codecs
import configparser
import contextlib
import dataclasses
import functools
import importlib.util
import inspect
import io
import re
import runpy
import shlex
import shutil
import signal
import string
import sys
import time
import unicodedata
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import torch

import charlm
from charlm import fields, finetune, plan, run_notes
from charlm.checkpoint import Progress
from charlm.config import Config

from .conftest import REPO, TINY, TINY_ARGS, cli, import_or_missing, make_model

DOCS = [REPO / "README.md", REPO / "README.zh.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_option_reference_is_generated_from_the_commands():
    spec = importlib.util.spec_from_file_location("make_cli_md", REPO / "docs" / "make_cli_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert written == module.reference(), "docs/cli.md is stale: run python docs/make_cli_md.py"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_python_reference_is_generated_from_the_code():
    written = (REPO / "docs" / "python.md").read_text(encoding="utf-8")
    assert written == load_script("make_python_md").reference(), (
        "docs/python.md is stale: run python docs/make_python_md.py"
    )


def test_the_python_reference_sends_its_reader_to_no_source_file():
    """help(charlm.train) said "fine-tuning: see finetune.py", sending a Python user into charlm's source;
    the reference's entries say it themselves, or point at the README and these pages."""
    named = set(re.findall(r"[\w/]+\.py\b", load_script("make_python_md").reference()))
    assert named == {"docs/make_python_md.py", "tests/test_docs.py"}  # the page's own first lines


def test_the_python_reference_has_an_entry_for_every_public_name():
    """A name added to charlm.__all__ is a name a user is told to call: the reference gives it an entry."""
    headings = re.findall(r"^### `([^`]+)`$", (REPO / "docs" / "python.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert len(headings) > len(charlm.__all__)  # the serving functions and the model's methods too
    assert not {f"charlm.{name}" for name in charlm.__all__} - set(headings)


def python_reference_examples() -> dict[str, str]:
    """Each entry's example, by the entry's name, in the page's order."""
    module = load_script("make_python_md")
    return {e.name: inspect.cleandoc(e.example) for s in module.SECTIONS for e in s.entries if e.example}


@pytest.fixture(scope="module")
def python_reference_session(tmp_path_factory) -> tuple[Path, dict]:
    """The page's first example, charlm.train's, run once for the tests of the examples below (each of
    which trained its own run before): a tiny run on text made of the examples themselves, so every
    seed's characters are in the vocabulary. Its folder (the texts and checkpoints/novel) and the names
    it defined, for each test to go on from as a reader goes on in the same session."""
    folder = tmp_path_factory.mktemp("python-reference")
    text = "\n".join(python_reference_examples().values()) * 10
    for name in ("novel.txt", "chapter.txt"):
        (folder / name).write_text(text, encoding="utf-8")
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        train = charlm.train
        patch.setattr(charlm, "train", lambda paths, **options: train(paths, **{**options, **TINY, "threads": 1}))
        run_examples(["charlm.train"], namespace)
    return folder, namespace


def run_python_reference_examples(names, session, monkeypatch) -> tuple[dict, dict[str, str]]:
    """The examples of `names`, as a reader runs them one after the other after charlm.train's (run once:
    `python_reference_session`), in a folder holding its texts and run; charlm.serve.serve loads the
    models it is given where it would serve them until Ctrl-C. Returns the names they defined, and what
    each example printed.

    On one torch thread: on two, torch splits even a tiny model's small operations between them, and
    on a loaded machine each split waits milliseconds for the other thread's core (seconds of these
    examples' sampling and scoring); what they show does not depend on it."""
    from charlm import serve

    folder, trained = session
    shutil.copytree(folder, Path.cwd(), dirs_exist_ok=True)
    namespace = {**trained, "served": []}

    def loaded_not_served(targets, config):
        loaders, _ = serve.model_loaders(targets, config.device)
        namespace["served"].extend(load() for load in loaders.values())

    monkeypatch.setattr(serve, "serve", loaded_not_served)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        printed = run_examples(names, namespace)
    finally:
        torch.set_num_threads(previous)
    return namespace, printed


def run_examples(names, namespace) -> dict[str, str]:
    """Runs the examples of `names` in `namespace`, in order; returns what each printed, by name."""
    examples, printed = python_reference_examples(), {}
    for name in names:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            exec(compile(examples[name], f"docs/python.md: {name}", "exec"), namespace)  # noqa: S102
        printed[name] = out.getvalue()
    return printed


# What each example of docs/python.md that prints shows, a pattern of all it prints (the model is the
# session's tiny 1x32 one): the shape its comment or its entry gives (`2x256 lstm`: layers x hidden and
# the cell; next_probs' (text, probability); `lstm 2 256`). An example that prints has a line here.
PRINTS = {
    "charlm.load": r"\d+x\d+ (?:lstm|gru|rnn) [\d,]+ parameters on cpu\n",
    "charlm.stream": r"It was.{200}\n",  # the seed and `length` characters, its line ended for what prints next
    "charlm.SampleConfig": r"It was.+\n",
    "charlm.bits_per_char": r"\d+\.\d+\n",
    "charlm.next_probs": r"(?:(?:'[^']+'|\"'\") [01](?:\.\d{1,3})?\n){3}",  # repr(text), round(probability, 3)
    "charlm.CharLMError": r".+\n",  # one line, which begins as its comment shows (below)
    "model(ids, state)": r"(?:'[^']+'|\"'\")\n",  # one character's repr
    "charlm.ModelConfig": r"(?:lstm|gru|rnn) \d+ \d+\n",
}


def printed_as(pattern: str, printed: str) -> bool:
    """Whether `printed` is all of what `pattern` shows (its . a line break too: a sample writes them)."""
    return re.fullmatch(pattern, printed, re.DOTALL) is not None


def test_the_python_references_examples_run(python_reference_session, monkeypatch):
    """The page's examples run as a reader pastes them, in order, in one session (all but create_app's,
    which needs the serve extra: the test below), and print what the page shows, in its shape: that
    generate's num_samples=4 gives "4 texts", the (1, 6) of `model(ids)`'s comment is the ids' shape."""
    examples = python_reference_examples()
    names = [name for name in examples if not name.endswith("create_app")]
    assert names[0] == "charlm.train"  # run by python_reference_session
    namespace, printed = run_python_reference_examples(names[1:], python_reference_session, monkeypatch)
    assert isinstance(namespace["model"], charlm.CharLM) and isinstance(namespace["served"][0], charlm.CharLM)
    said = re.search(r"print\(error\)  # (.*)\.\.\.", examples["charlm.CharLMError"])[1]
    assert said in printed["charlm.CharLMError"], f"the CharLMError example says it prints {said!r}: {printed!r}"
    assert {name for name, text in printed.items() if text} == set(PRINTS), printed
    wrong = {name: text for name, text in printed.items() if name in PRINTS and not printed_as(PRINTS[name], text)}
    assert not wrong, f"docs/python.md's examples print other than the page shows: {wrong}"
    shown = re.search(r"# e\.g\. (.*)", examples["charlm.ModelConfig"])[1] + "\n"
    assert re.fullmatch(PRINTS["charlm.ModelConfig"], shown), f"ModelConfig's example shows {shown!r}"
    assert re.search(r"length=100, num_samples=(\d+).*# \1 texts", examples["charlm.generate"])
    assert len(namespace["texts"]) == 4 and all(text.startswith("It was") for text in namespace["texts"])
    ids_said = re.search(r"ids = .*# .*?(\(\d+, \d+\))$", examples["model(ids, state)"], re.MULTILINE)[1]
    assert str(tuple(namespace["ids"].shape)) == ids_said, f"model(ids)'s example says ids are {ids_said}"


def test_the_python_references_serving_example_runs(python_reference_session, monkeypatch):
    """create_app's example serves a run's model and one in memory under their ids: uvicorn.run, which
    would serve until Ctrl-C, here answers a completion from each."""
    uvicorn = import_or_missing("uvicorn")
    testclient = import_or_missing("fastapi.testclient")
    answers = {}

    def answered(app, **where):
        with testclient.TestClient(app) as client:
            deadline = time.monotonic() + 60
            while client.get("/health").json()["status"] == "loading" and time.monotonic() < deadline:
                time.sleep(0.01)
            for model in ("mine", "novel"):
                body = {"model": model, "prompt": "It was", "max_tokens": 5, "seed": 1}
                answers[model] = client.post("/v1/completions", json=body).json()["choices"][0]["text"]

    monkeypatch.setattr(uvicorn, "run", answered)
    names = ["charlm.serve.serve", "charlm.serve.model_loaders", "charlm.serve.app.create_app"]
    run_python_reference_examples(names, python_reference_session, monkeypatch)
    assert set(answers) == {"mine", "novel"} and all(len(text) == 5 for text in answers.values()), answers


def test_the_option_reference_shows_each_commands_help_as_text_not_code():
    """A command's help kept its docstring's indent: after a blank line, Markdown read the paragraph
    (`charlm sample`'s, `charlm serve`'s) as a block of code."""
    written = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert not [line for line in written.splitlines() if line.startswith("    ")]


# A table cell's edge: a | not escaped as \|, which splits a cell even inside `code` (GitHub's tables)
CELL_EDGE = re.compile(r"(?<!\\)\|")


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_table_row_has_its_headers_cells(page):
    """A | in a cell (an option's metavar, FILE|RUN) must be \\|: else the row has a cell more than its
    header, and GitHub shows the rest of it under the next column or drops it."""
    header, fenced = None, False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("|"):
            header = None
            continue
        cells = len(CELL_EDGE.split(re.sub(r"^\||(?<!\\)\|\s*$", "", line.strip())))
        header = header or cells
        assert cells == header, f"{page.name}:{number} has {cells} cells, its table's header {header}: {line[:80]}"


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def heading_anchor(heading: str) -> str:
    """The #anchor GitHub gives a Markdown heading: its text lowercased, punctuation and symbols
    (full-width ones too: "：", "、", "（") dropped, spaces made hyphens; Chinese characters stay."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(page):
    """Every heading's anchor in `page`, a repeated heading's as -1, -2..., as GitHub numbers them."""
    found, seen, fenced = set(), {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            anchor = heading_anchor(heading.group(1))
            found.add(anchor if anchor not in seen else f"{anchor}-{seen[anchor]}")
            seen[anchor] = seen.get(anchor, 0) + 1
    return found


def test_a_heading_anchor_is_githubs():
    assert heading_anchor("Dropout, learning rate and the weight average, with weight decay 0.01") == (
        "dropout-learning-rate-and-the-weight-average-with-weight-decay-001"
    )
    assert heading_anchor("A smaller character vocabulary: `--coverage` and `--min-count`") == (
        "a-smaller-character-vocabulary---coverage-and---min-count"
    )
    assert heading_anchor("采样：温度、top-k、top-p 与重复惩罚") == "采样温度top-ktop-p-与重复惩罚"


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_anchor_leads_to_a_heading(page):
    text = page.read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", text):
        if "://" in target:
            continue
        linked = page.parent / target if target else page
        assert anchor in anchors(linked), f"{page.name} links to #{anchor}, no heading of {linked.name}"


def section_of(page, anchor: str) -> str:
    """The text under the heading whose anchor is `anchor`, up to the next heading of its level or above."""
    held, level, fenced = [], None, False
    for line in page.read_text(encoding="utf-8").splitlines():
        fenced = fenced != line.startswith("```")
        heading = None if fenced else re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if heading and level is not None and len(heading.group(1)) <= level:
            break
        if heading and level is None and heading_anchor(heading.group(2)) == anchor:
            level = len(heading.group(1))
        elif level is not None:
            held.append(line)
    return "\n".join(held)


FRONT_PAGES = [REPO / "README.md", REPO / "README.zh.md", *sorted((REPO / "docs").glob("*.zh.md"))]


@pytest.mark.parametrize("page", FRONT_PAGES, ids=lambda path: path.name)
def test_a_model_size_a_sentence_quotes_is_in_the_benchmarks_section_it_links(page):
    """README.zh.md's "5 分钟选 2x256，15 分钟选 2x384" linked the adaptive-head section, which holds no
    2x384 nor any size choice: a reader who follows a figure to its command finds it there."""
    for sentence in re.split(r"。|\.\s", page.read_text(encoding="utf-8")):
        links = re.findall(r"\]\(([^)#\s]*benchmarks\.md)#([^)\s]+)\)", sentence)
        sizes = set(re.findall(r"(?<![\w.])\d+x\d+(?![\w.])", re.sub(r"\]\([^)]*\)", "]", sentence)))
        held = "".join(section_of(page.parent / target, anchor) for target, anchor in links)
        missing = sorted(size for size in sizes if links and size not in held)
        assert not missing, f"{page.name} quotes {missing} beside links to {links} that do not hold them"


# A docs page named in plain text, not as a Markdown link: in a command's help or an error message, a
# docstring, a comment in a README's command ("# docs/forms.md trains it"); its #anchor too, where given.
NAMED_PAGE = re.compile(r"(?<![\w./-])(docs/[\w.-]+\.md)(?:#([^\s)`'\".,;:]+))?")


def test_every_docs_page_named_in_plain_text_or_in_the_code_exists():
    """The two tests above follow Markdown links only: a page a user is sent to by a message or help
    text (`charlm export -h` sends them to docs/export.md) was never looked for."""
    texts = [*DOCS, *sorted((REPO / "charlm").rglob("*.py")), *sorted((REPO / "bench").glob("*.py"))]
    named = [(text, m) for text in texts for m in NAMED_PAGE.finditer(text.read_text(encoding="utf-8"))]
    assert len(named) > 10  # the pattern finds the pages named today
    for text, match in named:
        page, heading = REPO / match.group(1), match.group(2)
        assert page.is_file(), f"{text.relative_to(REPO)} names {match.group(1)}, which does not exist"
        assert not heading or heading in anchors(page), (
            f"{text.relative_to(REPO)} names {match.group(0)}: no such heading"
        )


def options_named(page) -> set[str]:
    """Every `--option` the page names, in prose or a command line (torchrun's `--nproc_per_node` whole)."""
    return set(re.findall(r"(?<![\w-])--[a-z][\w-]*", page.read_text(encoding="utf-8")))


def modules_named(page) -> set[str]:
    """Every `x.py` file the page names (`charlm/serve/app.py` as `app.py`: a list names modules bare)."""
    return set(re.findall(r"(?<![\w.])\w+\.py\b", page.read_text(encoding="utf-8").replace("/", " ")))


MOVED_JOBS = {  # module: where jobs went
    "files": {"path_names", "processes"},
    "tokens": {"cache_folders", "sources"},
    "model": {"weight_checks", "weight_shapes", "model_skeleton", "inference_context"},
    "checkpoint_file": {"checkpoint_advice"},
}


@pytest.mark.parametrize("module", sorted(MOVED_JOBS))
@pytest.mark.parametrize("page", ["how-it-works.md", "how-it-works.zh.md"])
def test_how_it_works_names_each_module_and_the_modules_its_jobs_moved_to(page, module):
    """files.py's path-name rule moved to path_names.py and its process identity to processes.py: the module
    list named processes.py alone, and neither files.py nor path_names.py, so a reader looking for the
    rule found no module. tokens.py's cache folders went to cache_folders.py, and what a user named and
    whether files are a run's text to sources.py. model.py, past the model, held the weights' value checks, the
    sizes of a state of another model, the meta-device copy and the threads' shared inference context;
    checkpoint_file.py, past the file's bytes, what a refusal advises of the run folder's other checkpoints.
    Each docstring says where its jobs went; the page names them all."""
    docstring = ast.get_docstring(ast.parse((REPO / "charlm" / f"{module}.py").read_text(encoding="utf-8")))
    pointed_to = {
        name for name in re.findall(r"\b(\w+)\.(?:py\b|\w)", docstring) if (REPO / "charlm" / f"{name}.py").exists()
    }
    assert MOVED_JOBS[module] <= pointed_to, docstring
    missing = {f"{name}.py" for name in pointed_to | {module}} - modules_named(REPO / "docs" / page)
    assert not missing, f"{page} never names {sorted(missing)}"


def mapped_modules() -> list[str]:
    """Each module file of charlm/ as the map names it, its package's folder before it (`serve/config.py`
    is not `config.py`); an __init__.py or __main__.py only where it defines a function or class."""
    package = REPO / "charlm"
    return sorted(
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
        or any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for node in parsed(path).body)
    )


@pytest.mark.parametrize("page", ["how-it-works.md", "how-it-works.zh.md"])
def test_how_it_works_maps_every_module_and_no_module_that_is_gone(page):
    """A newcomer reads the code with the page's map beside it, one job per module: 47 module files were
    named nowhere on it (catalog.py, threads.py, errors.py, ...) or only bare in a list of their package's
    (`config.py` there is serve/config.py, not charlm/config.py). A new module must be placed too."""
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    assert len(mapped_modules()) > 80  # charlm/'s modules and its packages' are all found
    unnamed = [name for name in mapped_modules() if not re.search(rf"(?<![\w./]){re.escape(name)}", text)]
    assert not unnamed, f"{page} never names {unnamed}: place each on its map of the modules"
    named_in_packages = set(re.findall(r"(?<![\w./])((?:commands|export|inspection|serve)/\w+\.py)", text))
    gone = sorted(named_in_packages - set(mapped_modules()))
    assert not gone, f"{page} names {gone}, which charlm/ no longer holds"


def table_rows(text: str) -> list[list[str]]:
    """Each row of a page's Markdown tables, its cells stripped (the rule rows left out)."""
    rows = [line.strip().strip("|").split("|") for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows if not set("".join(row)) <= set("- :")]


@pytest.mark.parametrize("page", ["how-it-works.md", "how-it-works.zh.md"])
def test_how_it_works_places_each_module_of_the_datas_path_in_its_column_on_the_map(page):
    """The page opens with the data's path, a column per stage (batches: batches.py), and its map groups the
    modules by job: a reader who looked for batches.py under "batches" on the map found it under "token
    stream", a stage the path puts before it. Each module of the path is in the map's group of its column."""
    rows = table_rows((REPO / "docs" / page).read_text(encoding="utf-8"))
    stages, modules = rows[0], rows[1]
    group, grouped = "", {}
    for row in rows[2:]:
        if len(row) == 3 and row[1].startswith("`"):
            group = row[0] or group
            grouped[row[1].strip("`")] = group
    assert len(stages) == len(modules) > 5
    for stage, cell in zip(stages, modules):
        for module in re.findall(r"`([\w/]+\.py)`", cell):
            assert grouped.get(module) == stage, (
                f"{page}: {module} is on the path's {stage!r}, on the map's {grouped.get(module)!r}"
            )


TWINS = [
    page
    for page in DOCS
    if page.name.endswith(".zh.md") and page.with_name(page.name[: -len(".zh.md")] + ".md").exists()
]


def test_the_twins_are_found():
    """The pairs below are found by name, so a new zh page with an English twin is checked with no edit here."""
    assert {page.name for page in TWINS} >= {"README.zh.md", "how-it-works.zh.md", "forms.zh.md"}


@pytest.mark.parametrize("chinese", TWINS, ids=lambda path: path.name)
def test_the_chinese_page_names_every_option_and_module_its_english_page_names(chinese):
    """Chinese docs are first-class: an option the English page teaches, or a module file it sends a
    reader to (how-it-works' list, as modules split), is not left out of its Chinese twin (README.zh.md
    once lacked serve's --allow-origin)."""
    english = chinese.with_name(chinese.name[: -len(".zh.md")] + ".md")
    missing = options_named(english) - options_named(chinese) | modules_named(english) - modules_named(chinese)
    assert not missing, f"{chinese.name} never names {sorted(missing)}, which {english.name} does"


@pytest.mark.parametrize("page", ["README.md", "README.zh.md"])
def test_the_readme_asks_for_the_python_and_torch_setup_cfg_asks_for(page):
    """The install section's "Python X or newer, torch Y or newer" is setup.cfg's floor: a GPU user
    picks their torch build by hand, so the README must not name an older one than pip requires."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg", encoding="utf-8")
    python = config["options"]["python_requires"].removeprefix(">=")
    torch = re.search(r"^torch>=(\S+)$", config["options"]["install_requires"], re.MULTILINE).group(1)
    text = (REPO / page).read_text(encoding="utf-8")
    stated = re.search(r"Python (\S+) (?:or newer|或更新版本)[,，] ?torch (\S+) (?:or newer|或更新版本)", text)
    assert stated and stated.groups() == (python, torch), f"{page} does not say Python {python}, torch {torch}"


# The fine-tune's defaults as a README states them: "(`--lr` 1e-3, 100 warm-up steps)", "`--patience` (5)"
FINE_TUNE_RATE = re.compile(r"[(（]`--lr` (\S+?)[,，] ?(?:(\d+) warm-up steps|预热 (\d+) 步)[)）]")
PATIENCE_STATED = re.compile(r"`--patience`\s*[(（](\d+)[)）]")


@pytest.mark.parametrize("page", ["README.md", "README.zh.md"])
def test_the_readme_gives_the_fine_tunes_defaults_the_code_takes(page):
    """The fine-tune's learning rate, warm-up and patience were written in the READMEs apart from
    finetune.DEFAULTS and Config, which hold them: a default changed there would leave both stating the old."""
    text = (REPO / page).read_text(encoding="utf-8")
    rate, patience = FINE_TUNE_RATE.search(text), PATIENCE_STATED.search(text)
    assert rate and patience, f"{page} no longer states the fine-tune's --lr, warm-up and --patience as this test reads"
    defaults = {**dataclasses.asdict(Config()), **finetune.DEFAULTS}
    stated = {"lr": float(rate[1]), "warmup_steps": int(rate[2] or rate[3]), "patience": int(patience[1])}
    assert stated == {name: defaults[name] for name in stated}, f"{page} states {stated}"


@pytest.mark.parametrize("page", ["README.md", "README.zh.md"])
def test_the_readme_stays_a_front_door(page):
    """A README holds at most 200 lines: the details live in docs/ (for Chinese readers docs/usage.zh.md),
    the front door stays readable."""
    lines = (REPO / page).read_text(encoding="utf-8").count("\n")
    assert lines <= 200, f"{page} has {lines} lines; move detail into docs/ to keep it at 200 or fewer"


def command_lines(page):
    """Each `charlm ...` command line of `page`: in a code block or an indented one, or in `backticks`."""
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        shown = [line] if fenced or line.startswith("    ") else re.findall(r"`(charlm [^`]*)`", line)
        for text in shown:
            if found := re.search(r"(?:^|\s|-m )charlm ((?:[a-z]+ ?)+)(.*)", text.split(" #")[0]):
                yield found.group(1).split(), found.group(2)


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_option_a_command_line_gives_is_one_the_command_has(page):
    """A reader copies these lines: an option renamed or removed in the code must not live on in a doc."""
    import click

    from charlm.cli import main

    for words, rest in command_lines(page):
        command = main
        while isinstance(command, click.Group) and words and words[0] in command.commands:
            command = command.commands[words.pop(0)]
        if command is main:
            continue  # prose such as "charlm is", not a command line
        known = {option for param in command.params for option in (*param.opts, *param.secondary_opts)}
        unknown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", " ".join(words) + " " + rest)) - known - {"--help"}
        assert not unknown, f"{page.name}: charlm {command.name} has no {sorted(unknown)}"


def runnable_command_lines(page):
    """Each `charlm ...` line of `page`'s code blocks as the shell splits it: continuation lines joined,
    a comment (`# ...`, a script's `// ...`) and what a pipe, redirect or `&&` adds after it cut off."""
    fenced, joined = False, ""
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or line.startswith("    ")):
            continue
        joined += line.rstrip("\\").rstrip() + " "
        if line.endswith("\\"):
            continue
        text, joined = re.split(r" #| //", joined)[0], ""
        if found := re.search(r"(?:^|\s|-m )charlm (.*)", text):
            yield text.strip(), shlex.split(re.split(r" \| | > | && |; ", found.group(1))[0])


@pytest.mark.parametrize("page", [page for page in DOCS if page.name != "cli.md"], ids=lambda path: path.name)
def test_every_command_line_a_doc_gives_parses(page):
    """A reader pastes these lines: each must be one the command takes as written, its values too (a
    `--head` choice, an integer `--random-seed`, the arguments' count), not only options it has."""
    import click

    from charlm.cli import main

    for text, words in runnable_command_lines(page):
        command, path = main, []
        while isinstance(command, click.Group) and words and words[0] in command.commands:
            path.append(words[0])
            command = command.commands[words.pop(0)]
        if command is main:
            continue
        try:
            command.make_context(" ".join(["charlm", *path]), words)
        except click.exceptions.Exit:  # --help
            pass
        except click.ClickException as e:
            pytest.fail(f"{page.name}: {text}\n  {e.format_message()}")


def every_option(command) -> set[str]:
    """The options of `command` and, for a group, of every command under it."""
    import click

    options = {option for param in command.params for option in (*param.opts, *param.secondary_opts)}
    for sub in command.commands.values() if isinstance(command, click.Group) else ():
        options |= every_option(sub)
    return options


def bench_options() -> set[str]:
    """The options bench/'s scripts declare (argparse's add_argument; gpu_check.sh's own)."""
    options = set(re.findall(r"--[a-z][\w-]*", (REPO / "bench" / "gpu_check.sh").read_text(encoding="utf-8")))
    for path in (REPO / "bench").glob("*.py"):
        options |= set(re.findall(r'add_argument\(\s*"(--[\w-]+)"', path.read_text(encoding="utf-8")))
    return options


# Options of the tools the docs run charlm under or measure it against: pip's, torchrun's, nanoGPT's.
OUTSIDE_OPTIONS = {
    "--help",
    "--index-url",
    "--nproc_per_node",
    "--nproc-per-node",
    "--nnodes",
    "--node_rank",
    "--master_addr",
    "--master_port",
    "--shutdown-timeout",
    "--max_iters",
}


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_option_a_doc_names_is_one_a_command_has(page):
    """Prose names options outside any command line (`--max-chars` (5,000 by default), `--form` names):
    one renamed or removed in the code must not live on there either."""
    from charlm.cli import main

    unknown = options_named(page) - every_option(main) - bench_options() - OUTSIDE_OPTIONS
    assert not unknown, f"{page.name} names {sorted(unknown)}, an option of no charlm command or bench script"


RESULTS = REPO / "bench" / "results"


def results_named(page) -> set[str]:
    """The bench/results/ files `page` names, in full (a doc names each output it relies on by its path)."""
    return set(re.findall(r"bench/results/([\w.-]+\.txt)", page.read_text(encoding="utf-8")))


def written_by_a_script(name: str) -> bool:
    """A results file a bench script writes only where it runs (the device check, on a GPU machine)."""
    return any(f"bench/results/{name}" in script.read_text(encoding="utf-8") for script in REPO.glob("bench/*.sh"))


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_results_file_a_doc_names_is_kept(page):
    """A figure's output named in a doc is in bench/results/, so a reader can check the number."""
    missing = {name for name in results_named(page) if not (RESULTS / name).exists() and not written_by_a_script(name)}
    assert not missing, f"{page.name} names bench/results/{sorted(missing)}, which bench/results/ lacks"


def test_every_results_file_is_named_by_a_doc():
    """An output no doc names backs no figure: name it beside its figures, or delete it."""
    named = set().union(*(results_named(page) for page in DOCS))
    orphans = sorted(path.name for path in RESULTS.glob("*.txt") if path.name not in named)
    assert not orphans, f"no doc names bench/results/{orphans}: name each where its figures are, or remove it"


PAGE_SIZES = RESULTS / "export-page-sizes.txt"
# The exported page's size in a doc's table: its corpus (the run's name in PAGE_SIZES), its weights, its MB.
PAGE_SIZE_ROW = re.compile(
    r"^\| (tinyshakespeare|红楼梦)[^|]*\| \**(fp32|fp16|int8)[^|]*\| ([\d.]+) MB \|", re.MULTILINE
)
RUN_OF_CORPUS = {"tinyshakespeare": "ts", "红楼梦": "hlm"}


def page_sizes_kept() -> dict[str, int]:
    """PAGE_SIZES' bytes of each page, by its file name (ts-fp16.html)."""
    table = re.findall(r"^\| (\S+\.html) \| (\d+) \|", PAGE_SIZES.read_text(encoding="utf-8"), re.MULTILINE)
    return {name: int(size) for name, size in table}


@pytest.mark.parametrize("page", ["export.md", "benchmarks.md"])
def test_the_exported_page_sizes_a_doc_gives_are_the_ones_kept(page):
    """Each exported page's size in the doc's table is the one bench/results/export-page-sizes.txt keeps."""
    kept = page_sizes_kept()
    rows = PAGE_SIZE_ROW.findall((REPO / "docs" / page).read_text(encoding="utf-8"))
    said = {f"{RUN_OF_CORPUS[corpus]}-{weights}.html": megabytes for corpus, weights, megabytes in rows}
    assert len(rows) == len(said) == len(kept) == 6
    assert said == {name: f"{size / 1e6:.2f}" for name, size in kept.items()}, (
        f"{page}'s page sizes are not the kept ones"
    )


def test_the_chinese_guides_page_sizes_are_the_ones_kept():
    """usage.zh.md gives the two fp16 pages' sizes in its prose, not in a table: they are the kept ones too."""
    kept = page_sizes_kept()
    said = re.search(
        r"《红楼梦》模型 fp16（默认）([\d.]+) MB，英文的 tinyshakespeare 模型 ([\d.]+) MB",
        (REPO / "docs" / "usage.zh.md").read_text(encoding="utf-8"),
    )
    assert said.groups() == tuple(f"{kept[name] / 1e6:.2f}" for name in ("hlm-fp16.html", "ts-fp16.html"))


def test_the_chinese_guide_says_how_inspect_measures_chance_as_inspect_md_does():
    """usage.zh.md said chance came from 3 shifts (a quarter, a half, three quarters) long after inspect
    took 19, and gave hongloumeng's line cell figures inspect.md no longer measured: its shifts are the
    code's, its figures inspect.md's measured ones."""
    from fractions import Fraction

    from charlm.inspection.analysis import CHANCE_SHIFTS

    guide = (REPO / "docs" / "usage.zh.md").read_text(encoding="utf-8")
    first, last = (Fraction(share).limit_denominator(100) for share in (CHANCE_SHIFTS[0], CHANCE_SHIFTS[-1]))
    assert f"错开 {first}、" in guide and f"{last}（共 {len(CHANCE_SHIFTS)} 次）" in guide
    measured = (REPO / "docs" / "inspect.md").read_text(encoding="utf-8")
    row = re.search(r"^\| position in the line \| [^|]+ \| \d+, \d+, ([+-][\d.]+) \(([\d.]+)\)", measured, re.MULTILINE)
    said = re.search(r"《红楼梦》模型的行中位置细胞（([+-][\d.]+)）[^：]*碰巧的 ([\d.]+)", guide)
    assert said and said.groups() == row.groups(), (
        f"usage.zh.md says {said and said.groups()}, inspect.md {row.groups()}"
    )


def test_the_chinese_guide_gives_a_wrong_keys_401_as_serve_md_does():
    """serve.md's table gives the key's 401 OpenAI's body (`invalid_request_error` / `invalid_api_key`);
    usage.zh.md's bullet on the key said nothing of it, so a Chinese reader handling errors by `type` had
    only the status to go on: the bullet names the status, type and code the table does."""
    table = (REPO / "docs" / "serve.md").read_text(encoding="utf-8")
    row = re.search(r"^\| missing or wrong API key \| (\d+) \| `(\w+)` / `(\w+)`", table, re.MULTILINE)
    guide = (REPO / "docs" / "usage.zh.md").read_text(encoding="utf-8")
    (bullet,) = re.findall(r"^- \*\*对外开放要设密钥。\*\*.*$", guide, re.MULTILINE)
    status, kind, code = row.groups()
    assert f"得到 {status}" in bullet and f"`{kind}`" in bullet and f"`{code}`" in bullet, bullet


@pytest.mark.slow
def test_the_exported_page_sizes_kept_are_the_pages_charlm_writes(tmp_path):
    """export-page-sizes.txt's tinyshakespeare pages are the size charlm's page is now, give or take
    the few bytes of the run's name and figures: a page's size is its model's shape and vocabulary, and
    the script it carries. The page's script grew 6 KB with today's unseen-character hints (pythonRepr,
    nameUnseen, the ban box's note) while the docs kept the sizes of the page before."""
    from .test_export import model_of, run_of

    model = model_of(chars=string.ascii_letters + "\n !$&',-.3:;?", hidden=256)  # tinyshakespeare's 65
    assert f"ts: model           2x256 lstm, {model.num_parameters():,} parameters" in PAGE_SIZES.read_text(
        encoding="utf-8"
    )
    run = run_of(model, tmp_path / "ts", "tinyshakespeare")
    for weights in ("fp32", "fp16", "int8"):
        page = tmp_path / f"ts-{weights}.html"
        result = cli("export", str(run), "--format", "html", "--weights", weights, "--output", str(page))
        assert result.exit_code == 0, result.output
        kept = page_sizes_kept()[page.name]
        assert abs(page.stat().st_size - kept) < 100, (
            f"{page.name} is {page.stat().st_size:,} bytes, {PAGE_SIZES.name} keeps {kept:,}: measure the pages "
            "again (its commands), and give the new sizes in export.md and benchmarks.md"
        )


def bench_command_lines(page):
    """Each `python -m bench.NAME ...` of `page` with what follows it: a code block's line (continuation
    lines joined, its comment kept: "# and --batch 32") or the text of one pair of backticks."""
    fenced, lines, joined = False, [], ""
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            if joined.lstrip().startswith("#"):  # a command quoted in a comment goes on in the next one's line
                line = line.lstrip().removeprefix("#")
            joined += line.rstrip("\\").rstrip() + " "
            if not line.endswith("\\"):
                lines.append(joined)
                joined = ""
        else:
            lines.extend(re.findall(r"`([^`]*python -m bench\.[^`]*)`", line))
    for text in lines:
        for found in re.finditer(r"python -m bench\.(\w+)(.*?)(?=python -m bench\.|$)", text):
            yield found.group(1), found.group(2)


def bench_source(name: str) -> str:
    """bench/NAME.py and the bench modules it imports: where its command-line options are declared."""
    source = (REPO / "bench" / f"{name}.py").read_text(encoding="utf-8")
    modules = set()
    for module, names in re.findall(r"^from bench(?:\.(\w+))? import ([\w, ]+)$", source, re.MULTILINE):
        modules |= {module} if module else {name.strip() for name in names.split(",")}  # bench.x's names, or modules
    for module in modules:
        path = REPO / "bench" / f"{module}.py"
        source += path.read_text(encoding="utf-8") if path.exists() else ""
    return source


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_bench_command_a_doc_gives_exists_with_its_options(page):
    """A reader reruns a figure's command: the script must be there and take every option given. A quoted
    value's options are another program's (serve_load's `--server-args "--chunk-ms N"`: charlm serve's)."""
    for name, rest in bench_command_lines(page):
        assert (REPO / "bench" / f"{name}.py").exists(), f"{page.name}: python -m bench.{name}: no bench/{name}.py"
        source, given = bench_source(name), re.sub(r'"[^"]*"', "", rest)
        unknown = {option for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", given) if f'"{option}"' not in source}
        assert not unknown - {"--help"}, f"{page.name}: python -m bench.{name} has no {sorted(unknown)}"


class Parsed(Exception):
    """A bench script's command line parsed: the test stops the script there, before it measures anything."""


class Refused(Exception):
    """A bench script's argument parser refused a command line; argparse's message."""


@pytest.fixture
def parsers_stop_once_parsed(monkeypatch):
    """argparse's parsers raise Parsed with what they parsed, and Refused in place of printing usage and
    exiting. A parse inside a parse (a subcommand's, parse_args' own parse_known_args) goes on: only the
    script's own call stops it."""
    depth = [0]

    def stopping(parse):
        def parse_then_stop(self, *args, **kwargs):
            depth[0] += 1
            try:
                parsed = parse(self, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                raise Parsed(parsed)
            return parsed

        return parse_then_stop

    for name in ("parse_args", "parse_known_args", "parse_intermixed_args", "parse_known_intermixed_args"):
        monkeypatch.setattr(argparse.ArgumentParser, name, stopping(getattr(argparse.ArgumentParser, name)))

    def refuse(self, message):
        raise Refused(message)

    monkeypatch.setattr(argparse.ArgumentParser, "error", refuse)


def typed_words(rest: str) -> list[str]:
    """The words a reader types for what follows a doc's `python -m bench.NAME`: the redirect and the
    comment cut off, a synopsis's [optional] parts given and its first alternative taken (fp32|bf16,
    (FILE | --held-out))."""
    text = re.sub(r" \| \S+", "", re.split(r" #| > ", rest)[0])
    return [word.split("|")[0] for word in shlex.split(re.sub(r"[][()]", "", text))]


def refusal(name: str, words: list[str], monkeypatch) -> str | None:
    """What bench.NAME's parser says against `words`, or None where it takes them. A synopsis's
    placeholder given where a number goes (--hidden N, --cell LAYER CELL) is taken as a number."""
    script = importlib.import_module(f"bench.{name}")
    while True:
        monkeypatch.setattr(sys, "argv", [script.__file__, *words])
        try:
            script.main()
        except Parsed:
            return None
        except Refused as refused:
            placeholder = re.search(r"invalid (?:int|float) value: '([A-Z_]+)'", str(refused))
            if not placeholder:
                return str(refused)
            words = ["1" if word == placeholder[1] else word for word in words]
        else:
            pytest.fail(f"bench.{name} ran without parsing a command line")


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_bench_command_a_doc_gives_parses(page, parsers_stop_once_parsed, monkeypatch):
    """A reader pastes a figure's command: the script's parser takes it as written, its values and
    arguments too (a required one missing, a value of the wrong type), not only options it declares:
    benchmarks.md's `python -m bench.finetune ... --steps 8000 --scratch` gave neither base nor text."""
    for name, rest in bench_command_lines(page):
        if rest.strip() and (problem := refusal(name, typed_words(rest), monkeypatch)):
            pytest.fail(f"{page.name}: python -m bench.{name}{rest}\n  {problem}")


@pytest.mark.parametrize("page", ["README.md", "README.zh.md"])
def test_the_readmes_python_example_runs_as_written(page, tiny, monkeypatch, capsys):
    """The Python section's code, run as a reader pastes it, on a tiny model: its text files are the
    code itself (so every seed's characters are in the vocabulary), and the run folder it loads is the
    one its charlm.train writes. The streamed text ends its line (bits_per_char was once printed after
    it on the same line)."""
    code = re.search(r"## Python\n\n```python\n(.*?)```", (REPO / page).read_text(encoding="utf-8"), re.DOTALL)[1]
    for name in re.findall(r'open\("([^"]+)"', code) + ["novel.txt"]:
        Path(name).write_text(code * 10, encoding="utf-8")
    run = re.search(r'charlm\.load\("checkpoints/([^"]+)"\)', code)[1]
    train, stream, streamed = charlm.train, charlm.stream, []
    monkeypatch.setattr(charlm, "train", lambda paths, **options: train("novel.txt", **{**options, **tiny}, out=run))
    monkeypatch.setattr(
        charlm, "stream", lambda *args, **options: (streamed.append(p) or p for p in stream(*args, **options))
    )
    Path("example.py").write_text(code, encoding="utf-8")
    runpy.run_path("example.py")
    printed = capsys.readouterr().out
    seed = re.search(r'charlm\.generate\(model, "([^"]+)"', code)[1]
    assert printed.startswith(seed) and re.search(r"\nbpc: \d+\.\d+\n\[.*\]\n$", printed), printed
    top = ast.literal_eval(printed.splitlines()[-1])  # as its comment shows: [('s', 0.9), ...], top=3 of them
    assert len(top) == 3 and all(isinstance(c, str) and 0 < p <= 1 for c, p in top), top
    assert streamed and "".join(streamed) + "\n" in printed, f"{page}: the streamed text does not end its line"


@pytest.mark.parametrize("page", ["README.md", "README.zh.md"])
def test_the_readmes_next_probs_output_is_written_as_python_prints_it(page):
    """The comment after `print(charlm.next_probs(...))` shows what it prints: a list of (character,
    probability) tuples in Python's repr, quotes included (it once showed `[("s", 0.9), ...]`, which
    no print gives)."""
    shown = re.search(
        r"print\(charlm\.next_probs\(.*#.*?(\[.*\])\s*$", (REPO / page).read_text(encoding="utf-8"), re.MULTILINE
    )
    example = shown[1].replace(", ...]", "]")
    value = ast.literal_eval(example)
    assert all(isinstance(c, str) and isinstance(p, float) for c, p in value) and repr(value) == example, (
        f"{page}: next_probs prints {value!r}, not {example}"
    )


def python_code(page: Path, holding: str) -> list[str]:
    """The Python of `page` that holds `holding`: each ```python block, and each `code span` of the prose
    (a call written inline, as a reader copies it too)."""
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    return [code for code in blocks + code_spans(prose(page)) if holding in code]


def test_the_chinese_guides_serve_example_serves_the_run_its_reader_trained(tiny, monkeypatch):
    """usage.zh.md's serve() from Python, pasted as printed after the guide's `charlm train hongloumeng`
    (here a tiny run of that corpus), loads that run's model. It was an inline
    `charlm.serve.serve(["checkpoints/hongloumeng"], ServeConfig(port=9000))`: a folder no command of the
    guide makes (a run's is checkpoints/hongloumeng-DATE-TIME), and a ServeConfig never imported."""
    from charlm import serve

    Path("hongloumeng.txt").write_text("宝玉道：“林妹妹。”黛玉笑道：“你来了。”\n" * 40, encoding="utf-8")
    charlm.train("hongloumeng.txt", **tiny)
    served = []
    monkeypatch.setattr(serve, "serve", lambda targets, config: served.extend(serve.model_loaders(targets)[0]))
    (example,) = python_code(REPO / "docs" / "usage.zh.md", "ServeConfig(")
    exec(compile(example, "docs/usage.zh.md", "exec"), {})  # noqa: S102
    assert served and served[0].startswith("hongloumeng-"), served


def test_serve_md_names_the_fields_of_the_models_meta_that_the_server_lists():
    """serve.md's `GET /v1/models` row names `meta`'s fields and those of its `unseen`, which a client
    names characters by as the pages do: it said `traditional` and `traditional_note` after the server
    had named them `other_script` and `other_script_note` (a model of traditional Chinese has the
    simplified characters there)."""
    app = import_or_missing("charlm.serve.app")
    row = next(
        line
        for line in (REPO / "docs" / "serve.md").read_text(encoding="utf-8").splitlines()
        if "`GET /v1/models`" in line
    )
    meta_said = set(re.search(r'"meta": \{([^{}]*)\}', row)[1].split(", "))
    unseen_said = set(re.findall(r'(?:\{|, )"(\w+)":', re.search(r'`(\{"forms": .*?\})`', row)[1]))
    card = app.model_card(SimpleNamespace(name="novel", model=make_model("宝玉道：，。\n"), created=0))
    assert meta_said == set(card["meta"]), f"serve.md names meta's fields {sorted(meta_said)}"
    assert unseen_said == set(card["meta"]["unseen"]), f"serve.md names meta.unseen's fields {sorted(unseen_said)}"


@pytest.mark.parametrize("page", ["forms.md", "forms.zh.md"])
def test_the_forms_pages_python_example_runs_as_written(page, capsys):
    """forms.md's and forms.zh.md's Python (charlm.generate with a form and an acrostic, charlm.stream
    with a template), run as printed on a model that knows the characters it names: each poem keeps
    its seed's title and author, then fits its form."""
    (example,) = python_code(REPO / "docs" / page, "charlm.stream(")
    model = make_model("".join(sorted(set(example) | set("春夏秋冬明月光山水"))), layers=1, hidden=8)
    namespace = {"charlm": charlm, "model": model}
    exec(compile(example.replace("charlm.generate(", "poem = charlm.generate("), page, "exec"), namespace)  # noqa: S102
    han = "[\u4e00-\u9fff]"  # what `_` writes in a template of Chinese punctuation
    acrostic = f"春{han}{{4}}，夏{han}{{4}}。\n秋{han}{{4}}，冬{han}{{4}}。"
    assert re.fullmatch(f"春望\n杜甫\n{acrostic}", namespace["poem"]), namespace["poem"]
    verses = f"{han}{{5}}，{han}{{5}}。\n{han}{{5}}，{han}{{5}}。"
    assert re.fullmatch(f"春望\n杜甫\n{verses}", printed := capsys.readouterr().out), printed


def test_the_export_pages_python_one_liner_samples_the_folder_its_commands_export(capsys):
    """export.md's safetensors commands end with a `python -c` line, Python no ```python block holds:
    run after the block's `charlm export` (on a tiny run), it prints a sample that begins with its seed."""
    from .test_export import model_of, run_of

    page = (REPO / "docs" / "export.md").read_text(encoding="utf-8")
    (block,) = [block for block in re.findall(r"```sh\n(.*?)```", page, re.DOTALL) if "python -c" in block]
    export_line, _, one_liner = block.splitlines()
    run = run_of(model_of(chars="ROMEO: the quick brown fox\n"), Path("run"))
    assert cli(*shlex.split(export_line.replace("RUN", str(run)))[1:]).exit_code == 0
    code = shlex.split(one_liner)[2]
    exec(compile(code, "docs/export.md", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out
    seed = re.search(r"'([^']*)'\)\)$", code)[1]
    assert printed.startswith(seed) and len(printed) == len(seed) + charlm.SampleConfig().length + 1, printed


# A Python block a doc shows that no test runs, on purpose: the last line before it says why, as an
# HTML comment the reader does not see: <!-- not run: WHY -->
NOT_RUN = re.compile(r"<!-- not run: (.+) -->")


class PythonBlock(NamedTuple):
    line: int
    code: str
    not_run: str | None  # why no test runs it, as its marker says; None: unmarked


def python_blocks(page: Path) -> list[PythonBlock]:
    """Each block of Python `page` shows: a ```python block, or an indented block that parses as Python
    (inspect.md's; not a command line, nor a formula such as how-it-works.md's)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, number = [], 0
    while number < len(lines):
        start = number
        before = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marker = NOT_RUN.fullmatch(before.strip())
        if lines[start].startswith("```"):
            number = lines.index("```", start + 1) + 1
            if lines[start] == "```python":
                blocks.append(PythonBlock(start + 1, "\n".join(lines[start + 1 : number - 1]), marker and marker[1]))
        elif lines[start].startswith("    ") and not lines[start - 1].strip():
            while number < len(lines) and (lines[number].startswith("    ") or not lines[number].strip()):
                number += 1
            code = inspect.cleandoc("\n".join(lines[start:number]))
            try:
                ast.parse(code)
            except SyntaxError:
                continue
            blocks.append(PythonBlock(start + 1, code, marker and marker[1]))
        else:
            number += 1
    return blocks


def test_the_inspect_pages_python_example_traces_as_its_table_says(python_reference_session):
    """inspect.md's `trace` example, run as written on a run of that name, gives the fields its table
    lists, of the shapes it gives (T characters, L layers, H hidden units, V the vocabulary), and the
    gates it names for an LSTM. It loaded checkpoints/novel-20260101, a folder no run is named (a run's
    is checkpoints/CORPUS-DATE-TIME, the time to the second)."""
    folder, _ = python_reference_session
    page = (REPO / "docs" / "inspect.md").read_text(encoding="utf-8")
    (example,) = [block.code for block in python_blocks(REPO / "docs" / "inspect.md") if "trace(model" in block.code]
    run = re.search(r'charlm\.load\("([^"]+)"\)', example)[1]
    assert re.fullmatch(r"checkpoints/novel-\d{8}-\d{6}", run), (
        f"inspect.md loads {run}, not a run `charlm train` names"
    )
    shutil.copytree(folder / "checkpoints" / "novel", run)
    namespace: dict = {}
    exec(compile(example, "docs/inspect.md", "exec"), namespace)  # noqa: S102
    traced, model = namespace["traced"], namespace["model"]
    text = re.search(r'trace\(model, "([^"]+)"\)', example)[1]
    sizes = {"T": len(text), "L": model.config.layers, "H": model.config.hidden, "V": len(model.vocab)}
    rows = re.findall(r"^\| `(\w+)` \|\s*([^|]*?)\s*\| (.*) \|$", page, re.MULTILINE)
    assert [field for field, _, _ in rows] == [f.name for f in dataclasses.fields(traced)], rows
    for field, shape, what in rows:
        value = getattr(traced, field)
        if field == "gates":
            assert set(value) == set(re.search(r"LSTM: ((?:`\w+`(?:, )?)+)", what)[1].replace("`", "").split(", "))
            value = value["input"]
        said = tuple(sizes[size] for size in re.findall(r"[TLHV]", shape.split("->")[-1]))
        assert said == (tuple(value.shape) if hasattr(value, "shape") else (len(value),) if said else ()), field
    assert traced.cell == "lstm" and 0 < traced.bpc < 20


# The serving pages' client examples, in the order a reader runs them (the first makes the `client`
# the others use), each with a pattern of all it prints, as its comments say: the text (max_tokens of
# it), a form's four verses for each of n=3, a response cut by max_output_tokens ("incomplete").
HAN = "[\u4e00-\u9fff]"
VERSES = f"{HAN}{{5}}，{HAN}{{5}}。\n{HAN}{{5}}，{HAN}{{5}}。\n"
CLIENT_EXAMPLES = {
    "serve.md": [
        ("from openai import OpenAI", r".{300}\n"),
        ('"form": "五言绝句"', f"(?:{VERSES}){{3}}"),
        ("client.responses.create(", r".{200} incomplete\n.{200}\n incomplete 200\n"),
    ],
    "usage.zh.md": [("from openai import OpenAI", r".{200}\n")],
}


TINYSHAKESPEARE_CHARACTERS = "\n !$&',-.3:;?" + string.ascii_uppercase + string.ascii_lowercase


def test_the_tokenize_reply_serve_md_shows_is_what_curl_prints():
    """serve.md shows what its `curl .../tokenize` prints for a tinyshakespeare model; it showed the JSON
    spaced as Python writes it, where the server sends it compact, so the reader's screen differed."""
    import_or_missing("fastapi")
    from fastapi.testclient import TestClient

    from charlm.serve import ServeConfig
    from charlm.serve.app import create_app

    page = (REPO / "docs" / "serve.md").read_text(encoding="utf-8")
    shown = re.search(r"`curl http://127\.0\.0\.1:8080/tokenize -d '([^']+)'` gives\s+`([^`]+)`", page)
    assert shown, "serve.md shows no `curl .../tokenize -d '...'` gives `...`"
    model = make_model(TINYSHAKESPEARE_CHARACTERS, layers=1, hidden=8)
    assert len(model.vocab) == 65  # tinyshakespeare's vocabulary, in charlm's (code point) order
    with TestClient(create_app({"tinyshakespeare": lambda: model}, ServeConfig())) as client:
        deadline = time.monotonic() + 30
        while client.get("/health").status_code == 503 and time.monotonic() < deadline:  # loading
            time.sleep(0.01)
        printed = client.post("/tokenize", content=shown[1]).text  # curl -d's body, as sent
    assert printed == shown[2], f"serve.md shows {shown[2]}; curl prints {printed}"


def test_the_serving_pages_client_examples_run(capsys):
    """serve.md's client examples (completions, a form and a template, the Responses API) and
    usage.zh.md's, run in turn against a server on 127.0.0.1 serving a tiny model under the names
    they ask for, print what their comments say."""
    import_or_missing("openai"), import_or_missing("uvicorn")
    from charlm.serve import ServeConfig
    from charlm.serve.app import create_app

    from .test_serve import running, wait_healthy

    examples = {
        page: [
            (next(b.code for b in python_blocks(REPO / "docs" / page) if text in b.code), said) for text, said in shown
        ]
        for page, shown in CLIENT_EXAMPLES.items()
    }
    characters = set("".join(code for shown in examples.values() for code, _ in shown)) | set("春夏秋冬山水")
    torch.manual_seed(0)
    model = make_model("".join(sorted(characters)), layers=1, hidden=8).eval()
    app = create_app({name: lambda: model for name in ("shakespeare", "tangshi300", "hongloumeng")}, ServeConfig())
    with running(app) as url:
        wait_healthy(url)
        for page, shown in examples.items():
            namespace: dict = {}
            for code, said in shown:
                code = re.sub(r"http://127\.0\.0\.1:\d+", url, code)
                exec(compile(code, f"docs/{page}", "exec"), namespace)  # noqa: S102
                printed = capsys.readouterr().out
                assert printed_as(said, printed), f"docs/{page}'s example printed {printed!r}"


# Where each Python block of the docs is run as a reader pastes it: the test -> the blocks it runs, each
# as (page, a text of the block) (docs/python.md's are its script's examples and signatures).
RUN_BY = {
    "test_docs.py::test_the_readmes_python_example_runs_as_written": [
        ("README.md", "import charlm"),
        ("README.zh.md", "import charlm"),
    ],
    "test_export.py::test_the_docs_onnxruntime_example_writes_what_charlm_sample_does": [
        ("export.md", "import onnxruntime"),
    ],
    "test_export.py::test_the_docs_plain_torch_loader_reads_a_model_folder_without_charlm": [
        ("export.md", "safetensors.torch"),
    ],
    "test_docs.py::test_the_forms_pages_python_example_runs_as_written": [
        ("forms.md", "charlm.stream("),
        ("forms.zh.md", "charlm.stream("),
    ],
    "test_docs.py::test_the_inspect_pages_python_example_traces_as_its_table_says": [("inspect.md", "trace(model")],
    "test_docs.py::test_the_serving_pages_client_examples_run": [
        ("serve.md", "from openai import OpenAI"),
        ("serve.md", '"form": "五言绝句"'),
        ("serve.md", "client.responses.create("),
        ("usage.zh.md", "from openai import OpenAI"),
    ],
    "test_serve.py::test_the_docs_token_id_example_bans_digits_for_both_kinds_of_model": [("serve.md", "/tokenize")],
    "test_docs.py::test_the_chinese_guides_serve_example_serves_the_run_its_reader_trained": [
        ("usage.zh.md", "ServeConfig("),
    ],
}


def blocks_run() -> list[tuple[str, str, str]]:
    """RUN_BY a row per block: its page, its text, the test that runs it."""
    return [(page, holding, test) for test, blocks in RUN_BY.items() for page, holding in blocks]


def generated_python_blocks() -> set[str]:
    """docs/python.md's blocks: each entry's signature, and its example (run by the tests above)."""
    module = load_script("make_python_md")
    entries = [entry for section in module.SECTIONS for entry in section.entries]
    return {module.signature(entry) for entry in entries} | set(python_reference_examples().values())


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_python_block_is_run_by_a_test_or_says_why_not(page):
    """A block a reader pastes must run: each is one a test runs (RUN_BY), or says why none does (a
    sketch: `<!-- not run: WHY -->` before it). Blocks no test ran had drifted: inspect.md's loaded
    checkpoints/novel-20260101, a folder no run is named (a run's is NAME-DATE-TIME)."""
    generated = generated_python_blocks() if page.name == "python.md" else set()
    for block in python_blocks(page):
        runs = [test for name, holding, test in blocks_run() if name == page.name and holding in block.code]
        where = f"{page.name}:{block.line}"
        assert block.not_run or block.code in generated or len(runs) == 1, (
            f"{where}: {len(runs)} tests run this Python block: add it to RUN_BY with a test that runs it, "
            "or put <!-- not run: WHY --> before it"
        )
        assert not (block.not_run and runs), f"{where} says it is not run, and {runs[0]} runs it"


def test_every_test_said_to_run_a_docs_block_holds_one():
    """RUN_BY's entries lead somewhere: each names a block that is there and a test that exists."""
    for name, holding, test in blocks_run():
        page = next(page for page in DOCS if page.name == name)
        assert any(holding in block.code for block in python_blocks(page)), f"no Python block of {name} holds {holding}"
        file, function = test.split("::")
        source = (REPO / "tests" / file).read_text(encoding="utf-8")
        assert re.search(rf"^def {function}\(", source, re.MULTILINE), f"RUN_BY names {test}: tests/{file} lacks it"


CHARLM = REPO / "charlm"
CHARLM_MODULES = {path.stem for path in CHARLM.glob("*.py") if not path.stem.startswith("_")} | {
    path.parent.name for path in CHARLM.glob("*/__init__.py")
}
FILE_SUFFIXES = {"py", "pt", "bin", "json", "jsonl", "txt", "md", "html", "js", "css", "png", "lua", "onnx"}
DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
PATH = r"charlm/[\w/]+\.py"
# A pointer's name and the file the sentence says holds it: "`name` in `charlm/x.py`", "`charlm/x.py`
# (`name`", "`charlm/x.py`, `name`", "`charlm/x.py` 的 `name`" (a name list after the path: each of it).
NAME_IN_FILE = rf"`({DOTTED})`,? in (?:the file )?`?({PATH})`?"
FILE_THEN_NAMES = (
    rf"`({PATH})`\**(?:'s job)?(?: \(|（|, |，| 的 | 里的 | 中的 | 里就是 )((?:`{DOTTED}`(?:, |、| and | 和 )?)+)"
)
SAME_FILE = rf"`({DOTTED})`(?:,? \(?same file|,? in the same file)|同一(?:个)?文件(?:里|中)?的 `({DOTTED})`"


def prose(page) -> str:
    """The page outside its code blocks, lines joined: a pointer's name and its file may sit on two lines."""
    kept, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            kept.append(line.strip())
    return " ".join(kept)


def code_spans(text: str) -> list[str]:
    """The text of each `code span`, as Markdown pairs them: a span opened by two backticks (one that
    quotes a backtick) ends at the next two, not at the backtick it holds."""
    return [match.group(2).strip() for match in re.finditer(r"(`+)(.+?)(?<!`)\1(?!`)", text)]


def code_pointers(page) -> set[tuple[str, str | None]]:
    """Each (name, file) `page` points a reader at: a path, a dotted name, or a bare name with the
    charlm/...py the sentence puts it in."""
    text = prose(page)
    found: set[tuple[str, str | None]] = set()
    for span in code_spans(text):
        called = re.match(rf"({DOTTED})\(", span)  # charlm.bits_per_char(model, text): the callee
        name = called.group(1) if called else span
        # a path (bench/out/ is no code: a run writes it), a module file, or a dotted name
        if re.fullmatch(r"charlm/[\w/.-]*|(?:tests|bench)/\w+\.py|\w+\.py|\w+(?:\.\w+)+", name):
            found.add((name, None))
    for name, path in re.findall(NAME_IN_FILE, text):
        found.add((name, path))
    for path, names in re.findall(FILE_THEN_NAMES, text):
        found |= {(name, path) for name in re.findall(r"`([^`]+)`", names) if "/" not in name}
    for match in re.finditer(SAME_FILE, text):
        earlier = re.findall(PATH, text[: match.start()])
        found.add((match.group(1) or match.group(2), earlier[-1] if earlier else "no charlm/...py named before it"))
    return found


@functools.cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def module_name(path: Path) -> str:
    """charlm/serve/engine.py's module: charlm.serve.engine."""
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def defined_names(path: Path) -> set[str]:
    """The names a module file defines at its top level (not those it imports)."""
    names = set()
    for node in parsed(path).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        for target in node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]:
            if isinstance(target, ast.Name):
                names.add(target.id)
    return names


def has_attribute(owner, name: str) -> bool:
    """Whether `name` is an attribute of `owner`: a module's submodule, a dataclass field with no
    default and an attribute `__init__` sets count too."""
    if hasattr(owner, name):
        return True
    if inspect.ismodule(owner):  # a package's submodule not yet imported
        return hasattr(owner, "__path__") and importlib.util.find_spec(f"{owner.__name__}.{name}") is not None
    if inspect.isclass(owner):
        if any(name in vars(klass).get("__annotations__", {}) for klass in owner.__mro__):
            return True
        return bool(re.search(rf"self\.{name}\s*(?::[^=\n]*)?=", inspect.getsource(owner)))
    return False


def walk(owner, parts: list[str]) -> str | None:
    """Why `owner`'s attribute path `parts` names nothing, or None where it resolves."""
    where = owner.__name__ if inspect.ismodule(owner) else f"{owner.__module__}.{owner.__qualname__}"
    for depth, part in enumerate(parts):
        if not has_attribute(owner, part):
            return f"{where} has no {part}"
        if depth < len(parts) - 1:
            owner = getattr(owner, part, None) or importlib.import_module(f"{owner.__name__}.{part}")
            where += f".{part}"
    return None


def class_homes(name: str) -> list[str]:
    """The charlm modules whose file defines class `name` at its top level."""
    return [module_name(path) for path in sorted(CHARLM.rglob("*.py")) if name in defined_names(path)]


def imported_from_outside(name: str) -> bool:
    """Whether some charlm module imports `name` from another library (Path, Tensor): not charlm's to hold."""
    return any(
        name in {alias.asname or alias.name for alias in node.names}
        for path in CHARLM.rglob("*.py")
        for node in ast.walk(parsed(path))
        if isinstance(node, ast.ImportFrom) and node.level == 0 and not (node.module or "").startswith("charlm")
    )


def pointer_problem(name: str, path: str | None) -> str | None:
    """Why the pointer `name` (said to be in `path`) names nothing the code holds, or None if it does;
    None too for what is no code name (a JSON field, a file name such as tokens.bin, torch's nn.LSTM)."""
    first, *rest = name.split(".")
    if path is not None:
        if not (REPO / path).is_file():
            return f"{path} does not exist"
        if first not in defined_names(REPO / path):
            return f"{path} does not define {first}"
        module = importlib.import_module(module_name(REPO / path))
        return walk(getattr(module, first), rest) if rest else None
    if "/" in name:
        return None if (REPO / name).exists() else "no such file or folder"
    if name.endswith(".py"):
        return None if any(CHARLM.rglob(name)) else "no charlm module has this name"
    if rest[-1] in FILE_SUFFIXES:
        return None
    if first == "charlm":
        return walk(charlm, rest)
    if first in CHARLM_MODULES:
        return walk(charlm, name.split("."))
    if re.fullmatch(r"[A-Z][A-Za-z]*[a-z]\w*", first) and not imported_from_outside(first):
        homes = class_homes(first)
        if not homes:
            return f"no charlm module defines class {first}"
        problems = [walk(importlib.import_module(home), name.split(".")) for home in homes]
        return None if None in problems else problems[0]
    return None


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_code_name_a_doc_points_at_exists(page):
    """A reader opens the file or looks up the name a doc gives: code that moved must not leave the doc
    pointing at nothing (how-it-works put `AdaptiveHead` in "the same file" as `train_step`). cli.md too:
    it is generated, but its opening lines (make_cli_md.py's) and the commands' help point at code."""
    stale = sorted(
        f"`{name}`{f' in {path}' if path else ''}: {problem}"
        for name, path in code_pointers(page)
        if (problem := pointer_problem(name, path))
    )
    assert not stale, f"{page.name} points at code that is not there:\n" + "\n".join(stale)


# A quoted note on unseen characters, up to the first "..." of its list: `70 unseen characters excluded from
# the score (55 distinct: '瞿' 2 times '滟' once ...`
UNSEEN_NOTE = re.compile(
    r"unseen characters (?:excluded from the score|scored as the unknown symbol '.') \([\d,]+ distinct: ([^.)]*)"
)


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_a_quoted_note_on_unseen_characters_names_them_as_charlm_does(page):
    """The note says how many times the text has each character ('瞿' 2 times '滟' once): usage.zh.md
    went on quoting it as it was before, the characters bare ('厥' '栽' ...). Each quote's characters,
    as often as it says (once where it gives no count), scored by a model that knows none of them."""
    from charlm.unseen_notes import unseen_note
    from charlm.vocab import Vocab

    for listing in filter(str.strip, UNSEEN_NOTE.findall(page.read_text(encoding="utf-8"))):  # one naming some
        named = re.findall(r"'(.)'(?: (once|\d+ times))?", listing)
        text = "a" + "".join(char * int(times.split()[0] if times[:1].isdigit() else 1) for char, times in named)
        said = re.search(r"distinct: (.*?)\)", unseen_note(Vocab("a"), [text]))[1]
        assert said.startswith(listing.strip()), f"{page.name} quotes `{listing.strip()} ...`; charlm says `{said}`"


# What each row of usage.zh.md's table of files charlm cannot read holds, by the words its first cell
# starts with: one file per message the row quotes (`a` / `b`: two files), read as UTF-8 but where
# READ_AS gives the --encoding the row's file is read with, and how many files are read together.
UNREADABLE_FILES = {
    "GBK": [" 第一回　甄士隐梦幻识通灵\n".encode("gbk")],  # the novel's first line, as a GBK copy has it
    "UTF-16": ["第一回\n".encode("utf-16")],  # as Notepad saves "Unicode": a byte order mark first
    "没有 BOM 的 UTF-16": [" 第一回　甄士隐梦幻识通灵\n".encode("utf-16-le")],  # an export that lacks the mark
    # a stray byte between two lines of UTF-8
    "UTF-8 文件里夹着": [" 第一回　甄士隐梦幻识通灵\n".encode() + b"\xff" + "此开卷第一回也。\n".encode()],
    # a UTF-8 file read with the encoding the GBK row gives, alone and as one of three files
    "UTF-8 文件，却加了": [" 第一回　甄士隐梦幻识通灵\n".encode()] * 2,
    "二进制文件": [b"\x7fELF\x02\x01\x01\x00\x00\x00"],
    "空文件": [b"", b" \n\n", codecs.BOM_UTF8],  # a BOM alone: an editor's empty document
}


READ_AS = {"UTF-8 文件，却加了": [("gb18030", 1), ("gb18030", 3)]}


def unreadable_file_rows(page: Path) -> list[tuple[str, list[str]]]:
    """(first cell, the messages its second cell quotes) of each row of the table under "读文件"."""
    section = page.read_text(encoding="utf-8").split("## 读文件", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and "`" in line]
    return [(cells[0].lstrip("| "), re.findall(r"`([^`]+)`", cells[1])) for cells in rows]


def test_the_messages_the_chinese_guide_quotes_for_unreadable_files_are_charlms(tmp_path):
    """A Chinese reader matches the error on their screen against this table: each message it quotes
    (`...` standing for what varies) is what charlm says for such a file, so a reworded message (a
    GBK file once got only "convert it to UTF-8") cannot leave the table quoting one no longer said."""
    from charlm.corpus import read_texts
    from charlm.fields import on_command_line

    rows = unreadable_file_rows(REPO / "docs" / "usage.zh.md")
    assert {next((key for key in UNREADABLE_FILES if first.startswith(key)), first) for first, _ in rows} == set(
        UNREADABLE_FILES
    ), "usage.zh.md's table of unreadable files has rows this test does not know: add their files above"
    for first, messages in rows:
        contents = next(files for key, files in UNREADABLE_FILES.items() if first.startswith(key))
        assert len(messages) == len(contents), f"usage.zh.md: the row {first!r} quotes {messages}"
        readings = next(
            (read for key, read in READ_AS.items() if first.startswith(key)), [("utf-8", 1)] * len(contents)
        )
        for message, content, (encoding, count) in zip(messages, contents, readings):
            named = re.match(r"([^\s:]+\.\w+): ", message)
            path = tmp_path / (named.group(1) if named else "file.txt")
            paths = [path, *(tmp_path / f"other-{number}.txt" for number in range(1, count))]
            for each in paths:
                each.write_bytes(content)
            with pytest.raises(charlm.CharLMError) as error, on_command_line():  # as the commands say it
                read_texts(list(map(str, paths)), encoding=encoding)
            said = str(error.value).replace(str(tmp_path) + "/", "")
            pattern = ".*".join(map(re.escape, message.split("...")))
            assert re.search(pattern, said), f"usage.zh.md quotes `{message}`; charlm says `{said}`"


def test_the_chinese_guide_names_the_error_codes_serve_md_gives_a_bad_field():
    """serve.md's 400 for a bad field lists the `code` a client branches on (unknown_parameter,
    missing_required_parameter, ...); usage.zh.md, which a Chinese reader reads instead, named none."""
    row = next(
        line
        for line in (REPO / "docs" / "serve.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| malformed JSON")
    )
    codes = re.findall(r"`([a-z_]+)`", row.split(" | ")[2].split("`code`")[1].split("`param`")[0])
    assert "missing_required_parameter" in codes, row
    guide = (REPO / "docs" / "usage.zh.md").read_text(encoding="utf-8")
    assert [code for code in codes if f"`{code}`" not in guide] == []


def test_the_rebuilding_line_the_chinese_guide_quotes_is_charlms(capsys):
    """usage.zh.md said a changed file is encoded again and nothing of a damaged cache, so a Chinese reader
    shown `rebuilding ...` could not tell whether their corpus or charlm was at fault. The line it quotes
    (`...` standing for what varies) is what charlm prints for a cache whose vocab.json was cut short."""
    import json

    from charlm.tokens import prepare

    guide = (REPO / "docs" / "usage.zh.md").read_text(encoding="utf-8")
    quoted = re.search(r"`(rebuilding [^`]+)`", guide)
    assert quoted, "usage.zh.md quotes no `rebuilding ...` line for a damaged cache"
    size = int(re.search(r"says (\d+)$", quoted[1])[1])
    text = "".join(chr(0x4E00 + number) for number in range(size - 1)) + "\n"
    novel = Path("novel.txt")
    novel.write_text(text * 50, encoding="utf-8")
    vocab = prepare([[novel]], quiet=True).folder / "vocab.json"
    cut = int(re.search(r"vocab\.json: (\d+) tokens", quoted[1])[1])
    vocab.write_text(json.dumps({**json.loads(vocab.read_text()), "chars": text[:cut]}))
    prepare([[novel]], quiet=False)
    said = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("rebuilding"))
    pattern = ".*".join(map(re.escape, quoted[1].split("...")))
    assert re.fullmatch(pattern, said), f"usage.zh.md quotes `{quoted[1]}`; charlm says `{said}`"


def shell_word(word: str) -> str:
    """A value as a doc types it for bash: `'...'` as written, `$'...'` with its escapes read."""
    if word.startswith("$'"):
        return codecs.decode(word[2:-1], "unicode_escape")
    return shlex.split(word)[0]


def test_the_run_folder_errors_the_chinese_guide_quotes_are_charlms():
    """usage.zh.md quoted `--out 'x\\ny': ...` after charlm came to show such a name as bash types it,
    `--out $'x\\ny'`: a reader comparing the line on their screen found another. Each `--out` error the
    guide quotes (`...` standing for what varies) is what `charlm train` says for that value."""
    guide = (REPO / "docs" / "usage.zh.md").read_text(encoding="utf-8")
    quoted = re.findall(r"`(--out (\$?'[^']*')[: ][^`]*)`", guide)
    assert len(quoted) >= 2, "usage.zh.md quotes no --out errors"
    Path("novel.txt").write_text("It was a dark night.\n" * 50, encoding="utf-8")
    for message, word in quoted:
        said = cli("train", "novel.txt", "--out", shell_word(word), *TINY_ARGS, "--max-steps", "1").output
        pattern = ".*".join(map(re.escape, message.split("...")))
        assert re.match(f"Error: {pattern}", said), f"usage.zh.md quotes `{message}`; charlm says `{said[:200]}`"


@pytest.mark.parametrize("page", ["inspect.md", "how-it-works.zh.md"])
def test_the_trace_a_page_says_scores_as_eval_does_scores_so(page):
    """traced.bpc with the default context scores the first character too, unlike eval and bits_per_char:
    the page that shows `trace` to a reader says which call gives their figure, and that call gives it."""
    from charlm.tracing import trace

    said = re.findall(r"`(trace\(model, text[^`]*\)\.bpc)`", (REPO / "docs" / page).read_text(encoding="utf-8"))
    assert said, f"{page} says no trace(...).bpc that scores as charlm eval does"
    torch.manual_seed(0)
    model, text = make_model("\nabcdefgh ").eval(), "abc defg\nhab"
    for call in said:
        bpc = eval(call, {"trace": trace, "model": model, "text": text})
        assert bpc == pytest.approx(charlm.bits_per_char(model, text)), call
    assert trace(model, text).bpc != pytest.approx(charlm.bits_per_char(model, text))


def test_where_interactive_is_described_it_says_the_line_typed_is_the_seed():
    """`--interactive` refuses --seed (the line typed is what the model continues), yet its help and the
    READMEs never said so: a user who gave one learned it from the refusal. Each place says it."""
    from charlm.commands.sample import sample

    described = [next(param.help for param in sample.params if param.name == "interactive")]
    for page in ("README.md", "README.zh.md"):
        lines = (REPO / page).read_text(encoding="utf-8").splitlines()
        described += [line for line in lines if "`--interactive` " in line and "`> `" in line]  # its description
    assert len(described) == 3, described
    for text in described:
        assert "--seed" in text, text


def test_where_the_random_seed_is_described_it_says_only_its_low_32_bits_count():
    """torch's CPU generator (MT19937, every sample's, on any device) is seeded with a seed's low 32 bits, so
    `--random-seed 5` and `--random-seed 4294967301` write one text: the help and both READMEs say so, and
    this holds them to it should torch ever read all 64 bits (then the sentence goes)."""
    (seed_field,) = (f for f in dataclasses.fields(charlm.SampleConfig) if f.name == "random_seed")
    said = [seed_field.metadata["help"]]
    said += [(REPO / name).read_text(encoding="utf-8") for name in ("README.md", "README.zh.md")]
    assert all("low 32 bits" in text or "低 32 位" in text for text in said), said[0]
    model = make_model("\nabcdefgh ").eval()
    texts = [charlm.generate(model, "a", length=40, temperature=2.0, random_seed=s) for s in (5, 5 + 2**32, 6)]
    assert texts[0] == texts[1] != texts[2], texts


def test_where_the_training_seed_is_described_it_says_only_its_low_32_bits_count_on_a_cpu(tmp_path):
    """`charlm train --random-seed` seeds torch's CPU generator (MT19937, low 32 bits), which makes the
    initial weights and a CPU run's dropout: seeds 2**32 apart train one run. `charlm sample`'s help said
    so and train's did not. On a GPU the dropout's generator (Philox) reads all 64 bits, hence "on a CPU"."""
    (seed_field,) = (f for f in dataclasses.fields(Config) if f.name == "random_seed")
    said = [seed_field.metadata["help"], (REPO / "docs" / "data-and-checkpoints.md").read_text(encoding="utf-8")]
    said.append((REPO / "docs" / "usage.zh.md").read_text(encoding="utf-8"))
    assert all("low 32 bits count on a CPU" in text or "在 CPU 上只有它的低 32 位起作用" in text for text in said), (
        said[0]
    )
    corpus = tmp_path / "fox.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 20, encoding="utf-8")
    options = {**TINY, "hidden": 8, "max_steps": 2, "dropout": 0.3, "device": "cpu"}
    runs = [charlm.train(corpus, out=str(tmp_path / str(s)), random_seed=s, **options) for s in (5, 5 + 2**32, 6)]
    weights = [torch.cat([w.flatten() for w in run.state_dict().values()]) for run in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_where_a_json_samples_random_seed_is_described_it_says_a_greedy_ones_is_null():
    """A greedy sample draws nothing, so `--json` names no random_seed for it (tests/test_cli.py): the help and
    each page that tells what `random_seed` holds say so, the Chinese twins as their English pages do."""
    from charlm.commands.sample import sample

    helped = next(param.help for param in sample.params if param.name == "as_json")
    assert "null when greedy" in helped, helped
    pages = ["README.md", "README.zh.md", "docs/how-it-works.md", "docs/how-it-works.zh.md"]
    described = []
    for page in pages:
        blocks = re.split(r"\n\s*\n|\n(?=- )", (REPO / page).read_text(encoding="utf-8"))  # paragraphs, bullets
        described += [(page, block) for block in blocks if "`--json`" in block and "`random_seed`" in block]
    assert [page for page, _ in described] == pages, described  # one description on each page
    for page, block in described:  # `temperature` was null with --greedy before: why the seed is too is what is new
        assert "null" in block and ("draws nothing" in block or "不抽随机数" in block), f"{page}: {block}"


def stop_lines() -> list[str]:
    """What charlm says of a run in checkpoints/novel stopped at step 1234 (or in step 1000's evaluation, 800 saved
    before it; --patience 5 ran out there, or not), each way a stop or its resume ends, in the functions that word it."""
    run, step = Path("checkpoints/novel"), 1234
    kept = functools.partial(run_notes.Kept, run, step)
    spent = plan.limits_spent(Config(max_steps=step, max_time=None), Progress(step=step, elapsed=600), run)
    return [
        run_notes.stopping_note(step, signal.SIGINT, run, step),
        run_notes.stopping_note(1000, signal.SIGINT, run, 800),
        run_notes.stopped_note(kept(), step),
        run_notes.stopped_note(run_notes.Kept(run, None), None),
        run_notes.stopped_note(kept(save_error="..."), None),
        run_notes.stopped_note(kept(last=True), step),
        run_notes.stopped_note(kept(last=True, scored=False), None),
        run_notes.scoring_resumed_note(run, step, None),
        run_notes.stopped_note(kept(worse_evaluations=5), step),
        run_notes.stopped_note(kept(last=True, worse_evaluations=5), step),
        f"{spent}; {run_notes.limits_raised_note(5)} (limits count the whole run)",  # plan.resume_plan's refusal
        *(f"{caller}{run_notes.not_started_note(resuming)}" for caller in ("", "charlm.train ") for resuming in (0, 1)),
    ]


def quoted_stop_lines(page: Path) -> list[str]:
    """The stop lines `page` quotes: whole, or from where they go on (`... holds step`, `...; to train on`)."""
    whole = ("stopping at step", "stopped at step", "interrupted", "charlm.train interrupted", "checkpoints/novel ")
    tails = ("holds step", "to train on", "before training")
    spans = code_spans(prose(page))
    return [s for s in spans if s.startswith(whole) or (s.startswith(("...", "holds")) and any(t in s for t in tails))]


@pytest.mark.parametrize("page", ["data-and-checkpoints.md", "usage.zh.md"])
def test_every_stop_line_the_checkpoint_docs_quote_is_charlms_and_each_is_quoted(page):
    """Seven changes to how a run stops rewrote these pages' paragraphs on Ctrl-C and resuming, by hand, English and
    Chinese apart: a reader compares the line on their screen with the one quoted. Each quote (`...` for what
    varies) is a line `charlm train` says, and each line is quoted on both pages, the Chinese saying what English does."""
    with fields.on_command_line("train"):
        lines = stop_lines()
    quoted = quoted_stop_lines(REPO / "docs" / page)
    patterns = {quote: re.compile(".*".join(map(re.escape, quote.split("..."))) + r"\Z") for quote in quoted}
    unsaid = [quote for quote, pattern in patterns.items() if not any(pattern.search(line) for line in lines)]
    assert not unsaid, f"{page} quotes {unsaid}; charlm says {lines}"
    unquoted = [line for line in lines if not any(pattern.search(line) for pattern in patterns.values())]
    assert not unquoted, f"{page} quotes none of {unquoted}"
