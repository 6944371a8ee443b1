"""What `charlm info` says about a checkpoint: (label, value) rows of its corpus, model, progress and
options, each fitted option with the reason its run's plan gave (run.json). How a checkpoint is shown
is not what it holds (checkpoint.py), and a reader of either needs only that one.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import Checkpoint, read
from .checkpoint_header import glance
from .config import LAUNCH_OPTIONS, PLANNED
from .device import hardware_change_said
from .errors import CharLMError
from .fields import changes_said, option_name
from .finetune import DEFAULTS
from .plan import GIVEN
from .runs import BEST, LATEST, kept_aside, newest_of


def rows(
    saved: Checkpoint, reasons: dict | None = None, lineage: str = "", resumes: list[dict] | None = None
) -> list[tuple[str, str]]:
    """What `charlm info` prints: (label, value) rows. `reasons` (run.json's, where the run folder has
    one) says why each option the run's plan fitted has its value; `lineage` (`runs.lineage`) the runs
    a fine-tune came from, its base's base too; `resumes` (`runs.read_resumes`) the options each resume
    changed, from which step: the option rows show only the latest values."""
    progress, model_config = saved.progress, saved.model_config
    parameters = saved.model().num_parameters()
    best = "-" if progress.best_bpc is None else f"{progress.val_bpc:.4f} (best {progress.best_bpc:.4f})"
    lines = [
        ("corpus", corpus_text(saved)),
        ("model", f"{model_config.layers}x{model_config.hidden} {model_config.cell}, {parameters:,} parameters"),
        ("vocabulary", saved.vocab.size_text()),
        ("steps", f"{progress.step:,} ({progress.elapsed:.0f}s, {progress.tokens:,} tokens)"),
        ("val_bpc", best),
        # as the run recorded it, not probed here; in a resume row's words (`on other hardware: ... (was ...)`)
        ("trained_on", saved.hardware()),
    ]
    if saved.base:
        lines.append(("base", saved.base.describe()))
    if lineage:
        lines.append(("lineage", f"from {lineage}"))
    lines += [("resumed", said) for said in map(resume_text, resumes or []) if said]
    return lines + option_rows(saved, reasons or {})


def resume_text(record: dict) -> str:
    """One resume's row: `at step 1200 (40s trained, 2026-01-02 10:00:00): --lr 0.001 (was 0.002); on other
    hardware: cuda bf16 (was cpu fp32 on 4 cores)`; "" for a record a hand edit left without its changes."""
    changes = {name: (change["was"], change["now"]) for name, change in record["changed"].items()}
    elapsed, when = record.get("elapsed"), record.get("time")
    trained = [f"{elapsed:.0f}s trained"] if isinstance(elapsed, (int, float)) else []
    trained += [when] if isinstance(when, str) else []
    at = f"at step {record['step']}" + (f" ({', '.join(trained)})" if trained else "")
    said = [changes_said(changes)] if changes else []
    if hardware := record.get("hardware"):
        said.append(hardware_change_said(hardware["was"], hardware["now"]))
    return f"{at}: {'; '.join(said)}" if said else ""


def shown_checkpoint(path: Path, chosen: bool) -> tuple[Path, Checkpoint, list[tuple[str, str]]]:
    """The checkpoint `charlm info` shows for `path`, the file it read and the rows of any damage.
    `chosen`: `path` is the one a run folder named, not a file the user gave. Where that one does not
    read back (best.pt cut short by a kill), the one standing in for it is shown, with a `damaged` row
    holding the refusal: a user asking about a run was refused its information, told to use latest.pt.
    A file given by name is what was asked about: its refusal stays one."""
    try:
        return path, read(path, charlm_model=True), damage_rows(path)
    except CharLMError as refusal:
        instead = stand_in(path) if chosen else None
        if instead is None or not instead.is_file():
            raise
        try:
            saved = read(instead, charlm_model=True)
        except CharLMError:  # damaged too: the refusal already says so, and what is left
            raise refusal from None
        return instead, saved, [("damaged", str(refusal))]


def stand_in(path: Path) -> Path | None:
    """The checkpoint shown in place of a run's damaged `path`: the one a kept-aside file stands for,
    else the run's other one as a command loads it (`runs.newest_of`); None for a file of another name."""
    if (original := kept_aside(path)) is not None:
        return original
    other = {BEST: LATEST, LATEST: BEST}.get(Path(path).name)
    return None if other is None else newest_of(Path(path).with_name(other))


def damage_rows(path: Path) -> list[tuple[str, str]]:
    """A row saying the run's other checkpoint (as a command loads it: `stand_in`) is damaged, where a
    glance (as `charlm runs` takes) says it is: info reads one checkpoint, a resume or sample may load the other.
    The row is the refusal of the file read whole, in the words every command loading it says; the glance
    spares a sound one that read."""
    other = stand_in(path) if kept_aside(path) is None else None
    if other is None or not other.exists() or not glance(other):
        return []
    try:
        read(other)
    except CharLMError as refusal:
        return [("damaged", str(refusal))]
    return []  # written anew since the glance


def option_rows(saved: Checkpoint, reasons: dict) -> list[tuple[str, str]]:
    """The options that shaped the model and its training, each with why a fitted one has its value.
    Left out: those the model row says (cell, layers), those of how the run was launched and
    watched (`LAUNCH_OPTIONS`; trained_on says the device and precision), and those that did
    nothing (sentencepiece's on a char vocabulary, an unset --eval-also): "quiet False" and
    "threads None" would tell a reader nothing about the model."""
    config = saved.config.to_dict()
    unused = {"cell", "layers", *LAUNCH_OPTIONS}
    if config["tokenizer"] != "sentencepiece":
        unused |= {"spm_model", "vocab_size"}
    if config["eval_also"] is None:
        unused.add("eval_also")
    unit = "characters" if saved.vocab.one_char_per_id else "tokens"
    shown = {"head": f"{saved.model_config.head_text(unit)} ({head_reason(saved.config.head, reasons.get('head'))})"}
    shown |= {name: f"{config[name]} (off)" for name in ("grad_clip", "weight_average") if config[name] == 0}
    shown |= {name: "none" for name in ("max_steps", "max_time") if config[name] is None}
    if config["patience"] == 0:
        shown["patience"] = "0 (never stops early)"
    for name in (*PLANNED, *DEFAULTS):  # the fitted options, and a fine-tune's defaults (its plan says why)
        if isinstance(reasons.get(name), str):
            shown[name] = f"{config[name]} ({reason_text(name, config[name], reasons[name])})"
    return [(name, shown.get(name, str(value))) for name, value in config.items() if name not in unused]


def head_reason(head: str, reason: object) -> str:
    """Why the model has its head, as the run's plan said it: `--head auto` chose it for the vocabulary, or
    kept the full head a small --hidden could not split, which the head row alone would not tell. A given
    head (or a run.json without reasons) is said by its option alone."""
    if not isinstance(reason, str) or reason == GIVEN:
        return f"--head {head}"
    return reason if reason.startswith("--head ") else f"--head {head}: {reason}"


def corpus_text(saved: Checkpoint) -> str:
    """The corpus's sources, or its name for the built-in one, which has none. The name is made of the
    first source (a catalog name, a file's stem, a folder's name), so both would say it twice: `charlm
    train hongloumeng` would show "hongloumeng hongloumeng", a file "alice /home/me/alice.txt"."""
    return " ".join(saved.corpus["sources"]) or saved.corpus["name"]


def reason_text(name: str, value: object, reason: str) -> str:
    """A plan's reason without its leading `--dropout 0.1` (the row shows the value already)."""
    prefix = f"--{option_name(name)} {value:g}" if isinstance(value, float) else f"--{option_name(name)} {value}"
    return reason.removeprefix(prefix).lstrip(":, ") if reason.startswith(prefix) else reason
