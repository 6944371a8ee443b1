"""Tab completion, asked as a shell asks it: click's completion variables, COMP_WORDS and COMP_CWORD."""

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import charlm
from charlm.cli import main


def completions(line: str) -> list[tuple[str, str]]:
    """The (kind, value) pairs bash's completion script gets for the last word of `line`."""
    words = line.split(" ")
    env = {"_CHARLM_COMPLETE": "bash_complete", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    result = CliRunner().invoke(main, [], env=env, prog_name="charlm")
    assert result.exit_code == 0, result.output
    return [tuple(row.split(",", 1)) for row in result.output.splitlines()]


def values(line: str) -> list[str]:
    return [value for kind, value in completions(line) if kind == "plain"]


def test_commands_and_options_complete():
    assert values("charlm sa") == ["sample"]
    assert "corpus" in values("charlm ") and "help" in values("charlm ")
    assert values("charlm sample --de") == ["--device"]
    assert values("charlm corpus g") == ["get"]


def test_run_arguments_complete_run_and_corpus_names_else_files():
    """A RUN is what `runs.resolve` takes: a run's name under checkpoints/, or its corpus's (its latest run)."""
    for name in ("novel-20260101-120000", "novel-20260102-090000", "poems-20260103-100000"):
        (Path("checkpoints") / name).mkdir(parents=True)
        (Path("checkpoints") / name / "latest.pt").touch()
    (Path("checkpoints") / "empty-20260104-100000").mkdir()  # no checkpoint: not a run to sample from
    assert values("charlm sample nov") == ["novel", "novel-20260101-120000", "novel-20260102-090000"]
    assert values("charlm sample ") == [
        "novel", "novel-20260101-120000", "novel-20260102-090000", "poems", "poems-20260103-100000",
    ]  # fmt: skip
    for line in (
        "charlm eval po",
        "charlm info po",
        "charlm serve po",
        "charlm train --init-from po",
        "charlm train --eval-also po",
    ):
        assert values(line) == ["poems", "poems-20260103-100000"], line
    assert values("charlm sample --checkpoint poems-") == ["poems-20260103-100000"]
    assert completions("charlm sample ./checkpoints/n") == [("file", "./checkpoints/n")]
    assert completions("charlm sample zz") == [("file", "zz")]  # no run of that name: a .pt file perhaps
    assert completions("charlm train --eval-also held") == [("file", "held")]  # --eval-also FILE


def test_a_run_resumed_on_its_renamed_text_completes_by_the_new_texts_name_too():
    """`charlm sample 唐诗` finds a run trained on 唐诗三百首.txt and resumed on it renamed 唐诗.txt
    (`runs.runs_of_corpus`), but Tab offered only 唐诗三百首; where another run is of that name's corpus, the
    name is offered once (it finds that run), as it is where an older charlm recorded the new name as the corpus."""
    for name, corpus, source in (
        ("唐诗三百首-20260101-120000", "唐诗三百首", "/texts/唐诗.txt"),
        ("notes-20260102-090000", "notes", "/texts/diary.txt"),
        ("diary-20260103-100000", "diary", "/texts/diary.txt"),
        ("old-20260104-100000", "new", "/texts/new.txt"),  # an older charlm's resume on new.txt
    ):
        folder = Path("checkpoints") / name
        folder.mkdir(parents=True)
        (folder / "latest.pt").touch()
        (folder / "run.json").write_text(json.dumps({"corpus": corpus, "sources": [source]}), encoding="utf-8")
    assert values("charlm sample 唐") == ["唐诗", "唐诗三百首", "唐诗三百首-20260101-120000"]
    assert values("charlm info d") == ["diary", "diary-20260103-100000"]
    assert values("charlm info o") == ["old", "old-20260104-100000"]
    assert completions("charlm info zz") == [("file", "zz")]


def test_corpus_names_forms_and_devices_complete():
    assert values("charlm corpus get t") == ["text8", "tinyshakespeare"]
    assert values("charlm train t") == ["text8", "tinyshakespeare"]
    assert completions("charlm train novel.t") == [("file", "novel.t")]
    assert values("charlm sample --form 七") == ["七律", "七絕", "七绝", "七言律詩", "七言律诗", "七言絕句", "七言绝句"]
    assert values("charlm sample --device c") == ["cpu", "cuda"]
    assert values("charlm train --device m") == ["mps"]
    assert values("charlm serve --device a") == ["auto"]
    assert completions("charlm eval run novel.t") == [("file", "novel.t")]


def test_export_formats_and_weights_complete():
    """`charlm export RUN --format <Tab>` completed nothing, where every other option's choices complete."""
    assert values("charlm export run --format ") == ["html", "onnx", "safetensors"]
    assert values("charlm export run --format s") == ["safetensors"]
    assert values("charlm export run --format html --weights fp") == ["fp16", "fp32"]


def test_every_shell_gets_a_script():
    for shell in ("bash", "zsh", "fish"):
        result = CliRunner().invoke(main, [], env={"_CHARLM_COMPLETE": f"{shell}_source"}, prog_name="charlm")
        assert result.exit_code == 0 and "_CHARLM_COMPLETE" in result.output, shell


def test_python_m_charlm_completes_too():
    """Under `python -m charlm` click named the variable after "python -m charlm" and printed the help."""
    env = {**os.environ, "_CHARLM_COMPLETE": "bash_complete", "COMP_WORDS": "charlm sa", "COMP_CWORD": "1"}
    env["PYTHONPATH"] = str(Path(charlm.__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "-m", "charlm"], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "plain,sample\n", done.stdout + done.stderr
