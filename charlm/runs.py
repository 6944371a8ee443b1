"""Run folders: where a run lives, how it is named and found (the lock that lets one process train in
one is run_lock.py's; the checks a folder must pass before a run writes into it, write_checks.py's; how a
new run takes its default folder's name before it holds anything, run_claim.py's).

checkpoints/<corpus>-<date>-<time>/
    latest.pt      the last checkpoint (checkpoint.py writes it)
    best.pt        the checkpoint with the lowest validation bpc
    *.pending.pt   a checkpoint that could not replace its file yet (Windows: another process held it open)
    metrics.jsonl  one row per log interval (reporting.py)
    run.json       what the run is: corpus, size, config, and why each planned option is what it is
    samples.txt    samples shown during training (--sample-every)
    exports/       `charlm export`'s default outputs; exports.jsonl: one line per export (export/__init__.py)
    .lock          locked (flock) by the training process (run_lock.py); .lock.pid: its PID-START

A new run's default folder is claimed as checkpoints/.<name>.claim (`run_claim.claim_run_folder`) and renamed
to its name once run.json is in it (`run_claim.move_into_place`): a run killed before leaves no folder that
looks like a run.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path

from . import catalog, files, hub, path_names, processes
from .config import is_duration, step_count
from .corpus import corpus_name
from .errors import CharLMError, one_line, one_line_path
from .fields import call, flags_said, said, together
from .path_names import NAME_MAX, PATH_MAX, name_bytes

CHECKPOINT_ROOT = Path("checkpoints")
LATEST, BEST = "latest.pt", "best.pt"
PENDING = ".pending"  # latest.pt -> latest.pending.pt: a checkpoint kept aside (`pending`, `kept_aside`)
RUN_INFO, SAMPLES = "run.json", "samples.txt"
METRICS = "metrics.jsonl"  # reporting.py writes it, a row per log interval
EXPORTS = "exports"  # a run folder's exports (`charlm export`'s default output)
EXPORTS_LOG = "exports.jsonl"  # one JSON line per export (export/__init__.py)
LOCK, LOCK_PID = ".lock", ".lock.pid"  # run_lock.RunLock's files
LONGEST_PROCESS_NAME = f"{2**22}-{2**64}"  # processes.process_name's PID-START at its longest, in a temporary's name
DEEPEST_FILE = f"/{files.TEMPORARY_PREFIX.format('latest' + PENDING + '.pt')}{LONGEST_PROCESS_NAME}"
# run.json is a few KB (its sources are the paths given on the command line); beyond this it is not
# one charlm wrote, and reading it whole would hold `charlm runs`, and every corpus name lookup, for minutes
MAX_RUN_INFO = 4 << 20
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")  # control characters: a line break in a run folder's name
CLAIM = ".{}.claim"  # a new run's default folder until run.json is in it (`run_claim.claim_of`)


def run_folder(out: str) -> Path:
    """`--out NAME` -> checkpoints/NAME; a path (a separator as typed: ./x, x/) is used as given. One that names no
    folder of its own ('', ' ', '.', '..', /, checkpoints/ itself) is refused: the run's files would land
    among the other runs' folders or the user's own files. So is one with a line break (or another
    control character), which would split every message that names the run; one too long for a file
    system (a name over NAME_MAX bytes, or a path its deepest file would take over PATH_MAX), which would
    fail only after the corpus is prepared; and one inside another run's folder, which `charlm runs`
    cannot list."""
    path = Path(out)
    run_dir = path if path_names.typed_as_path(out) else CHECKPOINT_ROOT / path
    longest = max(path.parts, key=name_bytes, default="")
    if name_bytes(longest) > NAME_MAX:  # else checking the folder for a run fails with "File name too long"
        raise CharLMError(
            f"{said('out')}: a name of {name_bytes(longest)} bytes ({longest[:20]}...), over the {NAME_MAX} a file "
            "name may have; give a shorter one"
        )
    if name_bytes(str(run_dir) + DEEPEST_FILE) > PATH_MAX:  # else it fails after the corpus is prepared
        raise CharLMError(
            f"{said('out')}: a path of {name_bytes(str(run_dir))} bytes ({str(run_dir)[:20]}...), too long for "
            f"the run's files (paths of over {PATH_MAX} bytes); give a shorter one"
        )
    if path.name.strip() in ("", ".", "..") or real(run_dir) == real(CHECKPOINT_ROOT):
        raise CharLMError(
            f"{said('out', out)} names no run folder of its own; give a name, e.g. {said('out', 'my-run')}"
        )
    if UNPRINTABLE.search(out):  # every message, `charlm runs`' table and the done: line would break at it
        raise CharLMError(
            f"{said('out', out)}: a line break or other control character in the run folder's "
            f"path; give a name of printable characters, e.g. {said('out', 'my-run')}"
        )
    if run := next((p for p in real(run_dir).parents if holds_run_record(p)), None):
        shown = next((p for p in run_dir.parents if real(p) == run), run)  # as the user wrote it
        raise CharLMError(
            f"{said('out', out)} is inside the run folder {shown}, where `charlm runs` cannot list it and removing "
            f"that run removes it too; give a folder of its own, e.g. {said('out', path.name)}"
        )
    return run_dir


def real(path: Path) -> Path:
    """`path` with its symbolic links followed, as far as they lead: Path.resolve raises RuntimeError
    (before Python 3.13) at a loop of links, which os.path.realpath leaves as it is, for the check that
    meets it (`write_checks.check_can_make`) to name."""
    return Path(os.path.realpath(path))


def recorded_checkpoint(path: Path) -> Path:
    """A checkpoint `resolve` found, as a run records it (`files.recorded_path`): one chosen in a folder
    the user named (`found_in_folder`) by that folder's name, a link to a run folder kept as the user
    named it; a file named itself by its own."""
    if found_in_folder(path):
        return Path(files.recorded_path(path.parent)) / path.name
    return Path(files.recorded_path(path))


def found_in_folder(path: Path) -> bool:
    """Whether checkpoint `path` is one `resolve` chose in a run or model folder the user named (best.pt,
    latest.pt or the checkpoint kept aside for it, a model folder's weights), not a file named itself."""
    return (kept_aside(path) or path).name in (BEST, LATEST, hub.WEIGHTS)


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a run's folder: it holds a checkpoint or a run.json (a run begun there)."""
    return any((Path(path) / name).is_file() for name in (LATEST, BEST, RUN_INFO))


def holds_run_record(path: Path) -> bool:
    """Whether `path` holds a charlm run's own run.json (its options under "config"): what makes a folder
    above a new run's `--out` a run. Not a checkpoint's name alone, nor any run.json: a `best.pt` or
    another tool's run.json in the folder charlm is started from would refuse every run's --out there."""
    info = read_run_info(path)
    return info is not None and isinstance(info.get("config"), dict)


def default_run_folder(corpus_name: str, stamp: float, number: int = 1) -> Path:
    """checkpoints/<corpus>-<date>-<time>, the time to the second; the 2nd, 3rd... run started in that
    second is -02, -03...: after the plain name, before the next second's, so names sort by start time."""
    stamp_part = f"-{time.strftime('%Y%m%d-%H%M%S', time.localtime(stamp))}"
    stamp_part += "" if number == 1 else f"-{number:02d}"
    corpus_name = UNPRINTABLE.sub("_", corpus_name)  # a file named with a line break: as `run_folder` refuses
    # a corpus file named near the longest a file name may be: its run's name is cut to fit, by characters
    while corpus_name and name_bytes(longest_claim_name(corpus_name + stamp_part)) > NAME_MAX:  # its claim's too
        corpus_name = corpus_name[:-1]
    return CHECKPOINT_ROOT / f"{corpus_name}{stamp_part}"


def longest_claim_name(name: str) -> str:
    """The longest name of the folder a run's claim of folder `name` is made in (`run_claim.make_claim`)."""
    return files.TEMPORARY_PREFIX.format(CLAIM.format(name)) + LONGEST_PROCESS_NAME


RUN_STAMP = re.compile(r"-\d{8}-\d{6}(-\d{2,})?$")  # what `default_run_folder` adds to the corpus: -<date>-<time>[-NN]


def corpus_of(name: str) -> str | None:
    """The corpus of a run name (`shakespeare` of shakespeare-20261204-170201), or None."""
    stamp = RUN_STAMP.search(name)
    return name[: stamp.start()] if stamp and stamp.start() > 0 else None


def run_name_of(checkpoint: Path) -> str:
    """The run a checkpoint file belongs to: its folder's name for best.pt or latest.pt (or the one kept
    aside for it); for an exported model folder's weights the folder's name (its run's, for the default
    RUN/exports/model); else the file's stem."""
    if (kept_aside(checkpoint) or checkpoint).name in (BEST, LATEST):
        return checkpoint.parent.name
    if checkpoint.name == hub.WEIGHTS:
        folder = Path(checkpoint).absolute().parent
        return folder.parents[1].name if folder.parent.name == EXPORTS else folder.name
    return checkpoint.stem


def corpus_of_run(run_dir: Path, info: dict | None = None) -> str | None:
    """The corpus a run folder's run trained on: its run.json's (`info`, where read already), else its
    default name's."""
    if info is None:
        info = read_run_info(run_dir) or {}
    corpus = info.get("corpus")
    return corpus if isinstance(corpus, str) and corpus else corpus_of(Path(run_dir).name)


def runs_of_corpus(name: str, folders: list[Path]) -> list[Path]:
    """The runs of `folders` a corpus name finds: those of that corpus (`corpus_of_run`), else those it also
    names: their text's name where it moved since (the renamed file's stem), or their folder's default
    name's, where an older charlm's resume on the renamed text recorded its new name as the run's corpus.
    Each run.json is read once: a root of many runs may be on a slow disk."""
    infos = {run: read_run_info(run) or {} for run in folders}
    own = [run for run in folders if corpus_of_run(run, infos[run]) == name]
    return own or [run for run in folders if name in corpus_names_of_run(run, infos[run])]


def corpus_names_of_run(run_dir: Path, info: dict | None = None) -> set[str]:
    """Every corpus name that finds the run where no run is of that corpus (`runs_of_corpus`): what Tab
    offers for it, from this one rule, so that it offers each name a command takes and no other. `info`:
    its run.json, where read already."""
    if info is None:
        info = read_run_info(run_dir) or {}
    names = {corpus_of_run(run_dir, info), corpus_of(Path(run_dir).name), moved_corpus_of(info)}
    return {name for name in names if name}


def moved_corpus_of(info: dict) -> str | None:
    """The corpus name of the text a run's run.json (`info`) records where it is now (a resume at a new path)."""
    sources = info.get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(source, str) for source in sources):
        return None
    return corpus_name(sources)


def make_folder(folder: Path) -> None:
    """`mkdir -p folder`; a file in the way, a folder not writable or a full disk is one line naming it."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise files.cannot_write(folder, e, "the run folder") from None


def lock_owner(run_dir: Path) -> int | None:
    """The PID of the last owner of `run_dir`'s `RunLock`, if it still runs: `.lock.pid` names it as files
    name their process (`processes.process_name`: `PID-START` where the OS says when it started, else `PID`), so
    that a process the OS gave the PID of a killed owner is not taken for it."""
    try:
        name = (Path(run_dir) / LOCK_PID).read_text(encoding="ascii").strip()
    except (OSError, ValueError):  # gone, or not ASCII (UnicodeDecodeError): names no process
        return None
    return int(name.partition("-")[0]) if processes.named_process_alive(name) else None


def resume_command(folder: str | Path, *options: str) -> str:
    """The command that goes on with the run in `folder` (with `options`, `said`), as this process was
    launched: under torchrun on one machine, with its number of processes (a run resumes under any that
    divides its batch); for a Python caller, the call (`charlm.train(resume=...)`)."""
    command = call("train", said("resume", folder), *options)
    local, world = os.environ.get("LOCAL_WORLD_SIZE"), os.environ.get("WORLD_SIZE")
    if not flags_said() or "TORCHELASTIC_RUN_ID" not in os.environ or not local or not world:
        return command
    if local == world:
        return f"torchrun --nproc-per-node {local} -m {command}"
    return f"torchrun (as before) -m {command}"


def pending(path: Path) -> Path:
    """Where a checkpoint goes while `path` cannot be replaced: latest.pt -> latest.pending.pt."""
    return path.with_name(f"{path.stem}{PENDING}{path.suffix}")


def kept_aside(path: Path) -> Path | None:
    """The checkpoint `path` stands in for when it is one kept aside (latest.pending.pt -> latest.pt), else None."""
    path = Path(path)
    if not path.stem.endswith(PENDING):
        return None
    return path.with_name(path.stem.removesuffix(PENDING) + path.suffix)


def newest_of(path: Path) -> Path:
    """`path`, or its pending checkpoint where that was written after it: a run that ended while a
    reader held latest.pt open goes on from its last step, and a sample comes from its best model."""
    try:
        if pending(path).stat().st_mtime >= path.stat().st_mtime:
            return pending(path)
    except OSError:  # no pending checkpoint (the usual case)
        pass
    return path


def resolve(target: str | Path | None, prefer: str = BEST, root: Path = CHECKPOINT_ROOT) -> Path:
    """A `.pt` file, a run folder (its `prefer` file, else the other), a run name under `root`, a
    corpus name (its most recently updated run under `root`), or None for the most recently updated run.
    A name is looked for under `root` first, as `run_folder` puts --out NAME there (a folder of texts
    named as the run is not it), then here (model.pt); a path (a separator as typed: ./x, x/) is that path alone."""
    if target is None:
        return resolve(latest_run(root), prefer, root)
    if not str(target).strip():
        raise CharLMError("the run to use is empty: give a run folder, run name, corpus name or .pt file")
    path_names.check_nameable(target)
    path, bare_name = Path(target), not path_names.typed_as_path(target)
    if bare_name and (root / path).exists():
        path = root / path
    elif not path.exists() and not path_names.anchored(target) and (root / path).exists():
        path = root / path  # `novel/best.pt`: a file of the run named novel, as the docs write RUN/best.pt
    if bare_name and not path.exists():
        if of_corpus := runs_of_corpus(str(target), run_folders(root)):
            return resolve(newest(of_corpus), prefer, root)
        if live := runs_of_corpus(str(target), training_folders(root)):
            raise CharLMError(still_training(live[-1], training_pid(live[-1])))
    if path.is_dir():
        check_enterable(path)
        shown = one_line_path(path)
        for name in (prefer, LATEST if prefer == BEST else BEST):
            if (path / name).is_file():
                return newest_of(path / name)
        if hub.holds_model(path):  # an exported model folder
            return path / hub.WEIGHTS
        hub.refuse_weightless(path)  # one whose weights are misnamed or gone
        if run_folders(path):
            raise CharLMError(f"{shown} is a folder of runs, not a run: name one of them (`charlm runs` lists them)")
        if (trainer := training_pid(path)) is not None:
            raise CharLMError(still_training(path, trainer))
        if (path / RUN_INFO).is_file():  # a run killed before its first checkpoint: nothing to go on from
            raise CharLMError(
                f"{shown}: its run stopped before its first checkpoint, so it holds none ({BEST} or {LATEST}); "
                f"train again (into this folder: {train_again_options(path)})"
            )
        if models := sorted(p for p in path.glob("*") if hub.holds_model(p)):  # a run's exports/, say
            raise CharLMError(
                f"{shown} holds exported models: name one ({' or '.join(map(one_line_path, models[:3]))})"
            )
        if holds_run_record(path.parent):  # not a run: no --out may go inside a run's folder
            run = one_line_path(path.parent)
            raise CharLMError(f"{shown} is inside the run folder {run}: name the run ({run})")
        into = f", or train one into it ({said('out', out)})" if (out := out_into(path)) else ""
        raise CharLMError(
            f"{shown}: run folder holds no checkpoint ({BEST} or {LATEST}); name another run (`charlm runs` lists "
            f"them){into}"
        )
    if path.exists() and not path.is_file():  # /dev/zero, a named pipe: there, but nothing to load
        kind = files.not_a_file_kind(path.stat().st_mode)
        raise CharLMError(
            f"{one_line_path(target)} is {kind}, not a checkpoint file or run folder: give a run folder, run name, "
            "corpus name or .pt file"
        )
    if not path.is_file() and not bare_name:  # shown as typed where Path drops part of it: './x' is not x
        typed = os.fspath(target)
        shown = one_line_path(typed) if typed == str(path) else one_line(typed)
        named = f"; the run's {one_line_path(root / path)} is named {one_line_path(path)}, as typed without its ./ or /"
        raise CharLMError(
            f"{shown}: no such checkpoint file or run folder"
            f"{named if (root / path).exists() else ' (`charlm runs` lists the runs)'}"
        )
    if not path.is_file():
        raise CharLMError(
            f"{one_line_path(target)}: no such checkpoint file or run folder, nor a run or corpus of that name "
            f"under {where(root)} (`charlm runs` lists them){catalog.title_hint(str(target))}"
        )
    return hub.folder_of(path) / hub.WEIGHTS if hub.names_weights(path) else path


def out_into(folder: Path) -> str | None:
    """The --out that trains into `folder`: a bare name is one under checkpoints/ (`run_folder`), so a folder
    elsewhere is given as a path (./x), else its absolute one; None where --out refuses it ('.', '..', /)."""
    for given in (str(folder), os.path.join(os.curdir, folder), str(folder.absolute())):
        try:
            if real(run_folder(given)) == real(folder):
                return given
        except CharLMError:
            return None
    return None


def training_pid(run_dir: Path) -> int | None:
    """The PID of the live process whose `run_lock.RunLock` holds `run_dir` (a run training now), or None: none
    holds it, or its owner died (a killed run leaves its lock files)."""
    if not (Path(run_dir) / LOCK).exists():
        return None
    return lock_owner(run_dir)


def training_folders(root: Path = CHECKPOINT_ROOT) -> list[Path]:
    """The folders under `root` whose run trains now but holds no checkpoint yet, oldest first."""
    live = [p for p in Path(root).glob("*") if not holds_checkpoint(p) and training_pid(p) is not None]
    return sorted(live, key=lambda run: modified(run / LOCK))


def check_enterable(folder: Path) -> None:
    """Refuse, in one line, a folder whose files cannot be looked at (chmod a-x, another user's): Python
    3.11's `is_file` raises its PermissionError, which named a file in it with nothing to do."""
    if (refused := entry_refused(folder)) is not None:
        raise files.cannot_read(folder, refused) from None


def entry_refused(folder: Path) -> PermissionError | None:
    """Why `folder`'s files cannot be looked at (chmod a-x, another user's), or None where they can."""
    try:
        os.stat(Path(folder) / BEST)
    except PermissionError as e:
        return e
    except OSError:  # none there (or `folder` is no folder): it was looked into
        pass
    return None


def check_listable(root: Path, named: str) -> None:
    """Refuse, in one line naming it as `named`, a folder of runs that cannot be listed or looked into
    (chmod a-r or a-x): nothing is found in it, and "no runs under" it hid the runs it may hold."""
    try:
        os.scandir(root).close()
        refused = entry_refused(root)
    except PermissionError as e:
        refused = e
    except OSError:  # missing, or a file: its callers say so
        refused = None
    if refused is not None:
        raise files.cannot_read(named, refused) from None


def unreadable_folders(root: Path = CHECKPOINT_ROOT) -> list[tuple[Path, PermissionError]]:
    """The folders under `root` that cannot be looked into, sorted by name, each with why: `run_folders`
    cannot tell whether one holds a run, so `charlm runs` names them rather than leave them out unsaid."""
    refused = ((p, entry_refused(p)) for p in sorted(Path(root).glob("*")))
    return [(folder, error) for folder, error in refused if error is not None]


def modified(path: Path) -> float:
    """`path`'s modification time; 0 for one removed since it was found (a run that just stopped)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def train_again_options(run_dir: Path) -> str:
    """The options that start a run killed before its first checkpoint again in its folder: `--out` and,
    for a fine-tune, `--init-from` its base (run.json's): `--out` alone trains from scratch in the
    fine-tune's place."""
    base = (read_run_info(run_dir) or {}).get("base")
    path = base.get("path") if isinstance(base, dict) else None
    start = [said("init_from", path)] if isinstance(path, str) and path else []
    return together(*start, said("out", out_into(run_dir) or run_dir))


def still_training(run_dir: Path, pid: int | None) -> str:
    """What a reader of a run that trains now, before its first checkpoint, is told: not that the run
    stopped (it has not), but when its first checkpoint comes, where run.json says."""
    config = (read_run_info(run_dir) or {}).get("config")
    return (
        f"{one_line_path(run_dir)}: its run (process {pid}) is still training and has written no checkpoint yet"
        f"{first_checkpoint(config if isinstance(config, dict) else {})}; wait for it, or stop the run "
        "(Ctrl-C), which writes one as it stops"
    )


def first_checkpoint(config: dict) -> str:
    """When a run of these options (run.json's) writes its first checkpoint: ` (at step 5000, or after 3m
    of training if sooner)`, from --eval-every and --checkpoint-every; "" where they do not say. Their steps
    are read as the run read them (`config.step_count`); a field of a hand-edited run.json that reads as no
    step count nor duration says nothing: '²' would be a traceback, 30 digits a step no run reaches, True step 1."""
    eval_every, every = config.get("eval_every"), str(config.get("checkpoint_every") or "").strip()
    counts = [step_count(str(eval_every)), step_count(every)]
    steps = [n for n in counts if n and n < math.inf]  # True, 5.0: no count
    after = f"after {every} of training" if counts[1] is None and is_duration(every) else ""
    if not steps:
        return f" (the first comes {after})" if after else ""
    return f" (the first comes at step {min(steps)}{f', or {after} if sooner' if after else ''})"


def names_a_run(target: str) -> bool:
    """Whether `resolve` finds a checkpoint for `target`."""
    try:
        resolve(target)
    except CharLMError:
        return False
    return True


def is_checkpoint_name(path: str | Path) -> bool:
    """Whether `path` is named as a checkpoint file: `.pt` in any case (MODEL.PT, as a copy from Windows or
    an old DOS tool may be named), as every command that reads one by its content takes it, or as a model
    folder's weights (`hub.names_weights`)."""
    return Path(path).suffix.lower() == ".pt" or hub.names_weights(path)


def holds_checkpoint(run_dir: Path) -> bool:
    """Whether a run folder holds a run to go on from: latest.pt, or best.pt alone, which a run killed
    at its first checkpoint leaves (the trainer writes best.pt first). Files only: a folder of runs, one of
    them named best.pt (`--out x/best.pt`), is no run."""
    return any(os.path.isfile(Path(run_dir) / name) for name in (LATEST, BEST))  # a folder it cannot enter: none


def run_folders(root: Path = CHECKPOINT_ROOT) -> list[Path]:
    """The run folders under `root` that hold a checkpoint, sorted by name."""
    return sorted(p for p in Path(root).glob("*") if holds_checkpoint(p))


def latest_run(root: Path = CHECKPOINT_ROOT) -> Path:
    """The run under `root` whose checkpoint was written last: what a command given no RUN uses. None
    there yet is one line saying so, and whether a run is training towards its first checkpoint; a `root`
    that cannot be read (chmod 000) is said to be so, not to hold none (`run_folders` stays quiet for Tab
    completion)."""
    runs = run_folders(root)
    if not runs and (live := training_folders(root)):
        raise CharLMError(still_training(live[-1], training_pid(live[-1])))
    if not runs:
        check_listable(root, where(root))
        raise CharLMError(
            f"no runs under {where(root)}; train one with `{call('train')}`, or name a run folder or .pt file"
        )
    return newest(runs)


def run_to_resume() -> Path:
    """The run a `--resume` given no RUN goes on with: the most recent (`latest_run`), unless a run started
    after its last checkpoint holds none (killed before its first, or training towards it): going on with
    the run before it would write steps into a run the user did not mean, so that is refused, naming both."""
    run = latest_run()
    since = last_written(run) or 0.0
    started = [
        p
        for p in CHECKPOINT_ROOT.glob("*")
        if not holds_checkpoint(p) and modified(p / RUN_INFO) > since and not p.match(CLAIM.format("*"))
    ]
    if not started:
        return run
    newer = max(started, key=lambda p: modified(p / RUN_INFO))
    if (trainer := training_pid(newer)) is not None:
        raise CharLMError(still_training(newer, trainer))
    raise CharLMError(
        f"{newer}: the most recent run stopped before its first checkpoint, so it holds none ({BEST} or {LATEST}); "
        f"train it again ({train_again_options(newer)}), or name the run to go on with ({said('resume', run)})"
    )


def newest(runs: list[Path]) -> Path:
    """The run whose checkpoint was written last."""
    return max(runs, key=lambda run: last_written(run) or 0.0)


def last_written(run_dir: Path) -> float | None:
    """When the run's newest checkpoint was written (latest.pt, or best.pt where it holds that alone), each
    as a command loads it (`newest_of`: a newer one kept aside counts, so the run that wrote it last is the
    latest run); None where it holds neither (removed since it was listed)."""
    return max((modified(newest_of(Path(run_dir) / name)) for name in (LATEST, BEST)), default=0.0) or None


def latest_note(path: Path) -> str:
    """What `charlm eval`, `charlm inspect` and `charlm sample` given no RUN say of their figures or text: the
    latest run's, which a run trained since (another corpus's) would otherwise change unsaid."""
    return one_line(f"the latest run's model: {path} (name a RUN first for another; `charlm runs` lists them)")


def where(root: Path) -> str:
    """`checkpoints/ in /current/folder`: a relative root is relative to where charlm was started."""
    root = Path(root)
    return f"{root}/" if root.is_absolute() else f"{root}/ in {Path.cwd()}"


def write_run_info(run_dir: Path, info: dict) -> None:
    """run.json, replaced atomically and synced as a checkpoint is (`files.replace_files`: a power cut
    never leaves it empty); best effort (a full disk is a warning, not the end of the run)."""
    path = Path(run_dir) / RUN_INFO
    text = files.json_text({**info, "updated": time.strftime("%Y-%m-%d %H:%M:%S")}, 1)
    try:
        files.replace_files({path: text.encode("utf-8")})
    except OSError as e:
        print(f"warning: {files.cannot_write(path, e)}; training goes on", file=sys.stderr)


def read_run_info(run_dir: Path) -> dict | None:
    """run.json, or None when it is missing, over MAX_RUN_INFO bytes or not a JSON object; its fields
    may still be anything (a hand edit), so a reader checks the type of each it uses."""
    path = Path(run_dir) / RUN_INFO
    try:
        if not path.is_file():  # a folder, or a named pipe, whose read waits for a writer forever
            return None
        with open(path, "rb") as file:
            data = file.read(MAX_RUN_INFO + 1)
        info = files.parse_json(data) if len(data) <= MAX_RUN_INFO else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def read_reasons(run_dir: Path) -> dict:
    """Why the run's planned options are what they are (run.json's `reasons`, plan.py's), or {} where
    run.json has none: a damaged run.json loses the reasons, never the run."""
    reasons = (read_run_info(run_dir) or {}).get("reasons")
    return reasons if isinstance(reasons, dict) else {}


def read_resumes(run_dir: Path) -> list[dict]:
    """The run's resumes that changed its options or hardware (run.json's `resumes`, `Trainer.restore`'s records), each
    a dict with an integer `step`, a `changed` dict of {"was", "now"} changes and, where it holds both as text, a
    `hardware` one: a hand edit's damage is left out here, not in each reader; [] where run.json has none (one
    written before they were recorded)."""
    resumes = (read_run_info(run_dir) or {}).get("resumes")
    if not isinstance(resumes, list):
        return []
    return [sound_resume(r) for r in resumes if isinstance(r, dict) and type(r.get("step")) is int]


def sound_resume(record: dict) -> dict:
    """`record` (a run.json resume's) with only the changes and hardware every reader can take."""
    changed = record.get("changed") if isinstance(record.get("changed"), dict) else {}
    changed = {k: v for k, v in changed.items() if isinstance(v, dict) and {"was", "now"} <= v.keys()}
    hardware = record.get("hardware")
    sound = isinstance(hardware, dict) and all(isinstance(hardware.get(key), str) for key in ("was", "now"))
    return (
        {k: v for k, v in record.items() if k != "hardware"}
        | {"changed": changed}
        | ({"hardware": hardware} if sound else {})
    )


MAX_LINEAGE = 8  # bases shown at most: a chain longer than this is cut (a hand-edited run.json may loop)


def lineage(run_dir: Path, info: dict | None = None) -> str:
    """The runs `run_dir` was fine-tuned from, `mid <- first` (its base, then that base's base ...), or ""
    for a run trained from scratch, so `charlm runs` and `charlm info` show the whole chain; an exported
    model folder's are those of the run it was exported from. Each run.json names its base's run and
    checkpoint (`base.run`, `base.path`), whose folder holds the base's run.json. The chain ends where a
    base's run.json is gone (a base moved or removed, a lone .pt), after MAX_LINEAGE bases, said "(export
    replaced since)" at an exported model folder that no longer holds the weights the fine-tune recorded
    (`base.sha256`: exported into again, its record another model's), or, said "(cycle)", at a folder met
    before (a hand edit), told by its real path: a folder reached through a link is the one it leads to.
    `info`: run_dir's run.json where the caller has read it (`charlm runs`, for the run's row), so that
    it is not read twice."""
    names: list[str] = []
    seen = {real(Path(run_dir))}
    if info is None and hub.holds_model(run_dir) and (source := hub.exported_from(run_dir)):
        run_dir = Path(source["folder"])  # an exported model folder has no run.json: its run has
        seen.add(real(run_dir))
    info = read_run_info(run_dir) if info is None else info
    while info is not None and len(names) < MAX_LINEAGE:
        base = info.get("base")
        name, path = (base.get("run"), base.get("path")) if isinstance(base, dict) else (None, None)
        if not (isinstance(name, str) and name and path_names.fits(name)):
            break
        folder = Path(path).parent if isinstance(path, str) and path else None
        config = hub.read_config(folder) if folder is not None and hub.names_weights(path) else None
        if hub.holds_other_weights(config, base.get("sha256")):
            names.append(f"{name} (export replaced since)")
            break
        if source := hub.source_in(config):
            folder = Path(source["folder"])  # an exported model folder: on from the run it came from
        if folder is not None and real(folder) in seen:
            names.append(f"{name} (cycle)")
            break
        names.append(name)
        if folder is None:
            break
        seen.add(real(folder))
        info = read_run_info(folder)
    return " <- ".join(names)


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run in step order, with the rows a resume superseded left out. A damaged file
    (a line cut short by a kill, or edited by hand) does not stop a reader: a line that is not an
    object with a numeric step is skipped, and a field that is neither a finite number nor null is left out."""
    path = Path(run_dir) / METRICS
    rows: list[dict] = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = files.parse_json(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        row = {key: value for key, value in row.items() if value is None or files.is_number(value)}
        if row.get("resume") is not None:
            rows = [r for r in rows if r["step"] <= row["resume"]]
        elif row.get("step") is not None:
            rows.append(row)
    return rows
