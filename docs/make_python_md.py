"""Writes docs/python.md, the Python API's reference, from the code itself, so it stays true as
docs/cli.md does for the commands: each entry's signature (inspect), its docstring, and the options of
the config dataclasses with their types, defaults and help (the help `charlm ... --help` prints, its
flags written as the keywords a Python caller gives, as help(charlm.train) does).

python docs/make_python_md.py          # rewrite docs/python.md
(tests/test_docs.py fails when docs/python.md differs from what this writes, and runs its examples)

A public function's docstring is written for its user first: a paragraph of what it is for, then what
the user needs, then a paragraph beginning "Returns" and one beginning "Raises". What follows the
Raises paragraph is for maintainers: help() shows it, this page does not.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import re
from pathlib import Path
from typing import NamedTuple

import charlm
from charlm.api import default_of
from charlm.fields import python_help
from charlm.model import CharLM, ModelConfig
from charlm.serve import ServeConfig, model_loaders, serve

OUTPUT = Path(__file__).with_name("python.md")
PIPE = "\\|"  # a | inside a Markdown table cell


class Entry(NamedTuple):
    """One thing a Python user calls: shown as `name`, with a short `example` the page's readers run."""

    name: str
    thing: object
    example: str = ""
    call: str = ""  # how it is called where not by its name: "model" for CharLM.forward


class Section(NamedTuple):
    title: str
    intro: str
    entries: list[Entry]


class Written:
    """An annotation as its source writes it (`str | Path | None`), not as Python evaluates it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def written(annotation: object) -> object:
    return Written(annotation) if isinstance(annotation, str) else annotation


def from_source(module: str, name: str) -> object:
    """Function `name` of a module this script does not import (charlm.serve.app imports FastAPI, which
    the page's readers and tests may lack), compiled from its source as its signature and docstring alone."""
    path = Path(importlib.util.find_spec(module).origin)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name)
    function.body, function.decorator_list = function.body[:1], []  # its docstring, no code to run
    future = next(node for node in tree.body if isinstance(node, ast.ImportFrom) and node.module == "__future__")
    namespace: dict = {}
    exec(compile(ast.Module([future, function], type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return namespace[name]


def signature(entry: Entry) -> str:
    """`name(param: type = default, ...) -> type`, a parameter a line where one line would be long; an
    exception's class line; a property's type; a config of many fields `name(**fields)`, its table giving each."""
    name = entry.call or entry.name
    if isinstance(entry.thing, property):
        return f"{name}: {inspect.signature(entry.thing.fget).return_annotation}"
    if inspect.isclass(entry.thing) and issubclass(entry.thing, Exception):
        return f"class {name}({entry.thing.__base__.__name__})"
    if dataclasses.is_dataclass(entry.thing) and len(dataclasses.fields(entry.thing)) > 6:
        return f"{name}(**fields)"
    found = inspect.signature(entry.thing)  # a checked function's, through functools.wraps
    parameters = [p.replace(annotation=written(p.annotation)) for p in found.parameters.values() if p.name != "self"]
    shown = [str(p) for p in parameters]
    if any(p.kind is p.KEYWORD_ONLY for p in parameters) and not any(p.kind is p.VAR_POSITIONAL for p in parameters):
        first = next(i for i, p in enumerate(parameters) if p.kind is p.KEYWORD_ONLY)
        shown.insert(first, "*")
    returns = found.return_annotation
    arrow = "" if returns is inspect.Signature.empty or inspect.isclass(entry.thing) else f" -> {returns}"
    line = f"{name}({', '.join(shown)}){arrow}"
    if len(line) <= 100:
        return line
    return f"{name}(\n" + "".join(f"    {text},\n" for text in shown) + f"){arrow}"


def user_paragraphs(entry: Entry) -> list[str]:
    """The docstring's paragraphs a user reads: those up to its Raises paragraph (the rest is for
    maintainers), without the options list `lists_options` appends (this page gives them as a table)."""
    text = inspect.getdoc(entry.thing) or ""
    text = text.split("\n\nOptions (`charlm.", 1)[0]
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    raises = next((i for i, p in enumerate(paragraphs) if p.startswith("Raises ")), None)
    is_function = inspect.isfunction(entry.thing) and "self" not in inspect.signature(entry.thing).parameters
    if is_function and (raises is None or not any(p.startswith("Returns ") for p in paragraphs)):
        raise SystemExit(f"{entry.name}'s docstring needs a paragraph beginning 'Returns' and one beginning 'Raises'")
    kept = paragraphs if raises is None else paragraphs[: raises + 1]
    return [re.sub(r"^(Returns|Raises) ", r"**\1** ", p) for p in kept]


def options_table(config_class: type) -> list[str]:
    """A config dataclass's fields as keywords: type, default and what each does."""
    helps = python_help(config_class)
    lines = ["| keyword | type | default | what |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(config_class):
        text = helps[f.name]
        if f.metadata.get("choices"):
            text += f" (one of {', '.join(repr(choice) for choice in f.metadata['choices'])})"
        default = "required" if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING else None
        default = default or f"`{default_of(f)!r}`"
        cells = [f"`{f.name}`", f"`{f.type}`", default, text]
        lines.append("| " + " | ".join(cell.replace("|", PIPE) for cell in cells) + " |")
    return lines


def entry_lines(entry: Entry) -> list[str]:
    lines = [f"### `{entry.name}`", "", "```python", signature(entry), "```", ""]
    for paragraph in user_paragraphs(entry):
        lines += [paragraph, ""]
    if dataclasses.is_dataclass(entry.thing) and all("help" in f.metadata for f in dataclasses.fields(entry.thing)):
        lines += [*options_table(entry.thing), ""]  # a config of options (ModelConfig's docstring tells its fields)
    if entry.example:
        lines += ["```python", inspect.cleandoc(entry.example), "```", ""]
    return lines


def anchor(name: str) -> str:
    """The #anchor GitHub gives a heading `name` in backticks (tests/test_docs.py checks each)."""
    return re.sub(r"[^\w -]", "", name.lower()).replace(" ", "-")


SECTIONS = [
    Section(
        "Train",
        "A run reads text files, trains until its limit and keeps its checkpoints in a folder of its own.",
        [
            Entry(
                "charlm.train",
                charlm.train,
                """
                import charlm

                model = charlm.train("novel.txt", max_time="10m", hidden=256, out="checkpoints/novel")
                """,
            ),
            Entry(
                "charlm.Config",
                charlm.Config,
                """
                import dataclasses

                config = charlm.Config(max_time="1h", layers=3)  # each field checked here, a mistyped one named
                options = dataclasses.asdict(config)  # as charlm.train takes them: charlm.train(PATH, **options)
                """,
            ),
        ],
    ),
    Section(
        "Load",
        "A run's folder keeps the model it scored best; loading it gives the model back, ready to sample.",
        [
            Entry(
                "charlm.load",
                charlm.load,
                """
                model = charlm.load("checkpoints/novel")  # its best.pt; charlm.load() loads the latest run's
                print(model.architecture(), f"{model.num_parameters():,} parameters on", model.device)
                """,
            ),
        ],
    ),
    Section(
        "Generate",
        "One sampling engine writes for `charlm sample`, the server and these two calls.",
        [
            Entry(
                "charlm.generate",
                charlm.generate,
                """
                text = charlm.generate(model, "It was", length=200, temperature=0.8, random_seed=1)
                texts = charlm.generate(model, "It was", length=100, num_samples=4, stop="\\n\\n")  # 4 texts
                """,
            ),
            Entry(
                "charlm.stream",
                charlm.stream,
                """
                for piece in charlm.stream(model, "It was", length=200, top_p=0.9):
                    print(piece, end="", flush=True)
                print()  # the text's last line ended, so that what is printed next starts a line of its own
                """,
            ),
            Entry(
                "charlm.SampleConfig",
                charlm.SampleConfig,
                """
                careful = charlm.SampleConfig(temperature=0.5, top_k=10, repetition_penalty=1.2)
                print(charlm.generate(model, "It was", **dataclasses.asdict(careful)))
                """,
            ),
        ],
    ),
    Section(
        "Score",
        "What the model thinks of a text: the same computation as `charlm eval` and the server's `logprobs`.",
        [
            Entry(
                "charlm.bits_per_char",
                charlm.bits_per_char,
                """
                from pathlib import Path

                print(charlm.bits_per_char(model, Path("chapter.txt").read_text(encoding="utf-8")))
                """,
            ),
            Entry(
                "charlm.next_probs",
                charlm.next_probs,
                """
                for text, probability in charlm.next_probs(model, "It wa", top=3):
                    print(repr(text), round(probability, 3))
                """,
            ),
        ],
    ),
    Section(
        "Errors",
        "Every call above refuses bad input before it reads or writes anything.",
        [
            Entry(
                "charlm.CharLMError",
                charlm.CharLMError,
                """
                try:
                    charlm.generate(model, "It was", temprature=0.8)
                except charlm.CharLMError as error:
                    print(error)  # unknown sampling option temprature (did you mean temperature?); ...
                """,
            ),
        ],
    ),
    Section(
        "Serve",
        "`pip install 'charlm[serve]'`. The server, its endpoints and what a request may ask are in "
        "[serve.md](serve.md); from Python it starts as `charlm serve` does, or as an app of your own.",
        [
            Entry(
                "charlm.serve.serve",
                serve,
                """
                from charlm.serve import ServeConfig, serve

                serve(["checkpoints/novel"], ServeConfig(port=9000, api_key="secret"))  # until Ctrl-C
                """,
            ),
            Entry("charlm.serve.ServeConfig", ServeConfig),
            Entry(
                "charlm.serve.model_loaders",
                model_loaders,
                """
                from charlm.serve import model_loaders

                loaders, corpora = model_loaders(["checkpoints/novel"])  # nothing is loaded yet
                """,
            ),
            Entry(
                "charlm.serve.app.create_app",
                from_source("charlm.serve.app", "create_app"),
                """
                import uvicorn
                from charlm.serve.app import create_app

                app = create_app({**loaders, "mine": lambda: model}, ServeConfig(max_streams=16), corpora)
                uvicorn.run(app, host="127.0.0.1", port=8080)  # a run's model and one in memory, until Ctrl-C
                """,
            ),
        ],
    ),
    Section(
        "The model",
        "What `charlm.train` and `charlm.load` return is a plain `torch.nn.Module`: save it, move it, fine-tune "
        "it or step it yourself.",
        [
            Entry(
                "charlm.CharLM",
                CharLM,
                """
                fresh = charlm.CharLM(model.config, model.vocab)  # untrained, of the same shape and vocabulary
                fresh.load_state_dict(model.state_dict())
                """,
            ),
            Entry(
                "model(ids, state)",
                CharLM.forward,
                """
                import torch

                with torch.inference_mode():
                    ids = model.vocab.encode("It was").unsqueeze(0)  # one row of 6 ids: (1, 6)
                    logits, state = model(ids)  # (1, 6, vocabulary): a score for each next character
                    next_id = torch.multinomial(torch.softmax(logits[0, -1], dim=-1), 1)
                    logits, state = model(next_id.view(1, 1), state)  # goes on from "It was" and that character
                print(repr(model.vocab.decode(next_id)))
                """,
                call="model",
            ),
            Entry("charlm.CharLM.num_parameters", CharLM.num_parameters, call="model.num_parameters"),
            Entry("charlm.CharLM.architecture", CharLM.architecture, call="model.architecture"),
            Entry("charlm.CharLM.device", CharLM.device, call="model.device"),
            Entry(
                "charlm.ModelConfig",
                ModelConfig,
                """
                print(model.config.cell, model.config.layers, model.config.hidden)  # e.g. lstm 2 256
                """,
            ),
        ],
    ),
]


def reference() -> str:
    lines = [
        "# Python reference",
        "",
        "Generated from the code itself by `python docs/make_python_md.py`: each function's signature and the",
        "user's part of its docstring (`help(charlm.train)` shows the same, and lists the options), each",
        "config's fields with their defaults. The [README](../README.md#python) shows the calls in six lines;",
        "the command line's reference is [cli.md](cli.md), the same options as flags (`max_time` is `--max-time`).",
        "",
        "`import charlm` loads torch only when a name is first used. Every example below runs, in order, in",
        "one session: the page's tests run them on a tiny model (`tests/test_docs.py`).",
        "",
    ]
    for section in SECTIONS:
        names = ", ".join(f"[`{e.name}`](#{anchor(e.name)})" for e in section.entries)
        lines.append(f"- {section.title}: {names}")
    lines.append("")
    for section in SECTIONS:
        lines += [f"## {section.title}", "", section.intro, ""]
        for entry in section.entries:
            lines += entry_lines(entry)
    lines += [
        "## Further",
        "",
        "- [inspect.md](inspect.md#in-python): `charlm.tracing.trace`, every layer's gates and states for a",
        "  text, and `charlm.scoring.surprise`, each character's bits and the model's alternatives.",
        "- [forms.md](forms.md): `form`, `template` and `acrostic`, the poem forms `charlm.generate` writes into.",
        "- [how-it-works.md](how-it-works.md): the modules behind these calls, one job each.",
    ]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(reference(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
