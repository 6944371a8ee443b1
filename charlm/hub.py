"""A model folder as model hubs keep one: model.safetensors, config.json and vocab.json.

Written by `charlm export RUN --format safetensors --output DIR`, read wherever a checkpoint is
(`charlm.load(DIR)`, `charlm sample --checkpoint DIR`, ...). Nothing in it is a pickle: the weights
are safetensors (a JSON header and raw little-endian arrays), the rest plain JSON, so loading one can
never run code. It holds the model and what the run was (options, corpus, progress), not the
optimizer: enough to sample, score and fine-tune from, not to resume training.

The folder reads as one export, whole, though its three files are renamed into place one by one: an
export renames them under an OS lock (`one_export_at_a_time`), so two exports into one folder never
leave one run's weights beside the other's vocabulary; and config.json records the sha256 of the other
two, so a reader that caught a re-export midway (the new vocabulary, the old weights) reads again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from . import files, path_names
from .errors import CharLMError, one_line_path
from .fields import SHOWN, missing_keys, said

WEIGHTS, CONFIG, VOCAB = "model.safetensors", "config.json", "vocab.json"
# config.json's record of the run a folder was exported from, {"run": its name, "folder": its path}, so a
# fine-tune from the folder names that run as its base: a key of its own, which a reader that does not
# know it (an older charlm) skips, and which an export older than it lacks (its folder names it instead).
EXPORTED_FROM = "exported_from"
MAX_CONFIG = 1 << 20  # bytes of config.json `exported_from` reads: a few hundred, unless it is not one
FORMAT = "charlm-safetensors-1"
LOCK = ".export.lock"  # only while an export renames its files in: not uploaded with the model
# How long a reader waits, in turn, before reading again a folder whose files are of two exports (2 s
# in all): an export renames its three in microseconds, or (Windows, a file held open) up to 1.5 s each.
REREAD_WAITS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
# An export holds its folder's lock while it writes its files (a large model on a slow disk: a second or
# so): a wait longer than this is said, once (`one_export_at_a_time`).
WAIT_SAID = 1.0


def holds_model(folder: Path) -> bool:
    """Whether `folder` is a model folder (it has model.safetensors)."""
    return (Path(folder) / WEIGHTS).is_file()


def names_weights(path: str | Path) -> bool:
    """Whether `path` is named as a model's weights: `.safetensors` in any case (Model.SafeTensors, as a
    copy from Windows may be named), as `runs.is_checkpoint_name` takes `.pt`."""
    return Path(path).suffix.lower() == Path(WEIGHTS).suffix


def folder_of(weights: Path) -> Path:
    """The model folder a weights file (`names_weights`) is read with: its folder, where it is that
    folder's model.safetensors (under another case on a disk that ignores case). Any other is refused:
    reading its folder would read another file, the folder's model.safetensors, in its place."""
    folder, own = Path(weights).parent, Path(weights).parent / WEIGHTS
    if own.is_file() and Path(weights).is_file() and os.path.samefile(own, weights):
        return folder
    raise CharLMError(
        f"{weights}: a model's weights are read with its folder, as its {WEIGHTS} beside {CONFIG} and {VOCAB}; "
        f"rename it {WEIGHTS}"
    )


def refuse_weightless(folder: Path) -> None:
    """Refuse, in one line, a folder without model.safetensors (`holds_model` ruled it out) that has a
    model folder's config.json: a weights file of another name (`names_weights`) is to be renamed; none,
    where config.json is charlm's, is a damaged export, not a run folder that holds no checkpoint yet. A
    folder that cannot be listed is refused too: which model it holds cannot be told."""
    if not (Path(folder) / CONFIG).is_file():
        return
    try:
        listed = sorted(Path(folder).iterdir())
    except OSError as e:
        raise files.cannot_read(folder, e) from None
    if misnamed := next((path for path in listed if names_weights(path) and path.is_file()), None):
        folder_of(misnamed)  # refused: says to rename it
    if has_charlm_config(folder):
        raise damaged(folder, f"{WEIGHTS} is missing")


def has_charlm_config(folder: Path) -> bool:
    """Whether `folder` holds a model folder's config.json, charlm's: a model folder, whole or not, never
    a folder of texts (`runtext.names_text`), though its weights are gone."""
    config = read_config(folder)
    return isinstance(config, dict) and config.get("format") == FORMAT


def write(
    folder: Path, model_config: dict, vocab: dict, weights: dict, run: dict, source: dict | None = None
) -> list[Path]:
    """Write a model (its architecture, vocabulary and weights) and its run record, as the checkpoint
    keeps them (checkpoint.py owns their fields), into `folder`; returns the three paths. `source`: the
    run it was exported from (`exported_from`), recorded in config.json as EXPORTED_FROM. All three are
    written before any is renamed into place, the weights last, under the folder's export lock (`put`):
    a failed write leaves the folder as it was, never new weights beside an old vocabulary, and so does
    another export at the same moment. config.json records the other two's sha256, which `read_parts` checks."""
    from safetensors.torch import save

    folder = Path(folder)
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
    vocab_bytes = files.utf8(json.dumps(vocab, ensure_ascii=False))
    weights_bytes = save(weights, metadata={"format": FORMAT})
    digests = {WEIGHTS: sha256(weights_bytes), VOCAB: sha256(vocab_bytes)}
    config = {"format": FORMAT, "model_type": "charlm", "model": model_config, "run": run, "sha256": digests}
    if source is not None:
        config[EXPORTED_FROM] = source
    put(
        folder,
        {
            CONFIG: files.utf8(json.dumps(config, indent=1, ensure_ascii=False)),
            VOCAB: vocab_bytes,
            WEIGHTS: weights_bytes,
        },
    )
    return [folder / WEIGHTS, folder / CONFIG, folder / VOCAB]


def exported_from(folder: Path) -> dict[str, str] | None:
    """The run the model folder `folder` was exported from, as config.json records it (`EXPORTED_FROM`):
    {"run": name, "folder": path}; None for an export older than the record, one from a lone .pt file,
    or a config.json that cannot be read or is damaged (the model's own reader says so, not this)."""
    return source_in(read_config(folder))


def read_config(folder: Path) -> object:
    """The model folder's config.json, parsed, for what it records of the export (`source_in`,
    `holds_other_weights`); None where it cannot be read or is no JSON (the model's own reader says so)."""
    try:
        data = files.read_regular(Path(folder) / CONFIG)
        return files.parse_json(data.decode("utf-8")) if len(data) <= MAX_CONFIG else None
    except (OSError, ValueError):
        return None


def holds_other_weights(config: object, digest: object) -> bool:
    """Whether the model folder whose parsed config.json is `config` holds other weights than those of
    sha256 `digest`, a fine-tune's record of the base it read there: the folder was exported into again
    since, so its record describes another model. False where either records none (an older export)."""
    recorded = config.get("sha256") if isinstance(config, dict) else None
    weights = recorded.get(WEIGHTS) if isinstance(recorded, dict) else None
    return isinstance(weights, str) and isinstance(digest, str) and weights != digest


def source_in(config: object) -> dict[str, str] | None:
    """The run a parsed config.json records its folder was exported from (`exported_from`), or None:
    for `read_parts`, which has the config its weights were read with, and names the run of those weights."""
    source = config.get(EXPORTED_FROM) if isinstance(config, dict) else None
    if not isinstance(source, dict) or not names_run(source.get("run"), source.get("folder")):
        return None
    return {"run": source["run"], "folder": source["folder"]}


def names_run(run: object, folder: object) -> bool:
    """Whether `run` could be a run folder's name and `folder` its absolute path, as an export records
    them: a hand-edited record (a name of 100,000 characters, `../x`, a path relative to wherever a
    command runs) is no record, as a run's base is named, shown and followed by them."""
    if not (isinstance(run, str) and isinstance(folder, str)) or run in ("", ".", "..") or "/" in run:
        return False
    fit = path_names.fits(run) and path_names.fits(folder, path_names.PATH_MAX)
    return fit and "\0" not in run + folder and os.path.isabs(folder)


def put(folder: Path, contents: dict[str, bytes]) -> None:
    """Write the files of `contents` (name -> bytes) into `folder` and rename them into place in its
    order (`files.replace_files`), as one export: under the folder's export lock. A link to a folder
    not there yet makes that folder, as a link to a file makes the file (`files.written_through`)."""
    files.written_through(folder).mkdir(parents=True, exist_ok=True)
    with one_export_at_a_time(folder):
        files.replace_files({folder / name: data for name, data in contents.items()})


@contextlib.contextmanager
def one_export_at_a_time(folder: Path) -> Iterator[None]:
    """Hold `folder`'s export lock (flock, through filelock, on LOCK in it), waiting for an export that
    holds it, so that two exports of two runs into one folder at once never leave one's weights beside
    the other's config and vocabulary. The lock file goes before the unlock, as a run's `.lock` does (run_lock.RunLock),
    so the folder is again the three files to upload (Windows: filelock deletes it once unlocked).
    A wait past WAIT_SAID seconds is said once, not taken for a hang; a file system that does not lock
    files (NFS without its lock service) is a one-line error, as for a run folder (run_lock.RunLock)."""
    path = folder / LOCK
    lock = filelock.FileLock(path)
    try:
        files.take_lock(lock, f"another export into {one_line_path(folder)}", after=WAIT_SAID)
    except OSError as e:
        if files.write_remedy(e):  # a folder that refuses writes: the export names its --output and what to do
            raise
        with contextlib.suppress(OSError):  # a lock refused by the file system guards nothing, for any export
            path.unlink()
        raise files.cannot_lock(
            path, e, "the model folder", f"export into a folder on a local disk ({said('output')})"
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        lock.release()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_parts(folder: Path) -> tuple[dict, object, dict, str, dict[str, str] | None]:
    """A model folder's config.json (its `model` and `run` as `write` took them, for checkpoint.py, which
    owns their fields, to check), vocabulary and weights, the sha256 of the weights file they were read from,
    and the run they were exported from (`source_in`, of the same config.json: a second read could be of a
    re-export's); damage to the files is a one-line error. Files of two exports (a re-export renaming its
    files in meanwhile) are read again; an export older than config.json's sha256 record is read as it is,
    a record edited to another value is damage (`record_problem`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    folder = Path(folder)
    for wait in (*REREAD_WAITS, None):
        config, vocab_bytes, weights_bytes = read_files(folder)
        if problem := record_problem(config):  # an export writes its record whole: no re-export midway
            raise damaged(folder / CONFIG, problem)
        digests = {VOCAB: sha256(vocab_bytes), WEIGHTS: sha256(weights_bytes)}  # checked, and the weights' returned
        stray = mismatched(config, digests)
        if stray is not None and (left := left_by_killed_export(folder, config)):
            vocab_bytes, weights_bytes = left.get(VOCAB, vocab_bytes), left.get(WEIGHTS, weights_bytes)
            digests = {VOCAB: sha256(vocab_bytes), WEIGHTS: sha256(weights_bytes)}
            stray = mismatched(config, digests)
        if stray is None:
            break
        if wait is None:
            raise damaged(folder, f"{stray} is not the file its {CONFIG} was exported with")
        time.sleep(wait)
    try:
        vocab = files.parse_json(vocab_bytes.decode("utf-8"))
    except ValueError as e:
        raise damaged(folder / VOCAB, str(e).splitlines()[0][:120]) from None
    try:
        weights = load(weights_bytes)
    except (ValueError, SafetensorError) as e:
        raise damaged(folder / WEIGHTS, str(e).splitlines()[0][:120]) from None
    return config, vocab, weights, digests[WEIGHTS], source_in(config)


def read_files(folder: Path) -> tuple[dict, bytes, bytes]:
    """config.json, parsed and checked to be charlm's, and the bytes of vocab.json and the weights. Each
    must be a file: a named pipe in a file's place would hold the read forever."""
    try:
        config_bytes = files.read_regular(folder / CONFIG)
        vocab_bytes = files.read_regular(folder / VOCAB)
        # Read, then parsed: load_file maps the file for as long as the weights live (a server's
        # lifetime), and Windows refuses to replace a mapped file (`charlm export` again, into it).
        weights_bytes = files.read_regular(folder / WEIGHTS)
    except files.NotAFile as e:
        raise damaged(folder, f"{Path(e.filename).name} is {e.strerror}, not a regular file") from None
    except FileNotFoundError as e:  # one of the three lost: a half copy, or a download that missed one
        raise damaged(folder, f"{Path(e.filename).name} is missing") from None
    except OSError as e:
        unread = one_line_path(os.fsdecode(e.filename or folder))
        raise CharLMError(
            f"{one_line_path(folder)}: cannot read the model folder ({unread}: {e.strerror}){files.read_remedy(e)}"
        ) from None
    try:
        config = files.parse_json(config_bytes.decode("utf-8"))
    except ValueError as e:
        raise damaged(folder / CONFIG, str(e).splitlines()[0][:120]) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CharLMError(
            f"{one_line_path(folder / CONFIG)}: not a charlm model folder (expected format {FORMAT!r}); give a run "
            "folder, a .pt checkpoint or a folder that charlm export --format safetensors wrote"
        )
    return config, vocab_bytes, weights_bytes


def left_by_killed_export(folder: Path, config: dict) -> dict[str, bytes]:
    """The files (name -> bytes) of the export that config.json is of, left as its temporaries by a kill
    between its renames (config.json goes first): read in place of the older ones beside them, the folder
    reads as that export, whole, where it read as damaged and the earlier export was lost too."""
    recorded = config.get("sha256")
    left = {}
    for name in (VOCAB, WEIGHTS) if isinstance(recorded, dict) else ():
        for leftover in folder.glob(f"{files.TEMPORARY_PREFIX.format(name)}*"):
            if files.owner_alive(leftover) is not False:  # an export still writing renames its own in
                continue
            if leftover.is_symlink():  # an export writes files: a link's target (/etc/passwd, gigabytes) is not read
                continue
            with contextlib.suppress(OSError):  # removed meanwhile by the next export: read again
                data = files.read_regular(leftover)
                if sha256(data) == recorded.get(name):
                    left[name] = data
    return left


def record_problem(config: dict) -> str | None:
    """What keeps config.json's `sha256` from being the record `write` makes (a sha256 of the weights and
    of vocab.json), or None. Only an export older than the record has none: one edited to another value
    ("zz", null) would otherwise pass for it, and its files go unchecked."""
    if "sha256" not in config:
        return None
    recorded = config["sha256"]
    if not isinstance(recorded, dict):
        return f"sha256 is {SHOWN.repr(recorded)}, not the record of the sha256 of {WEIGHTS} and {VOCAB}"
    if missing := missing_keys(recorded, (WEIGHTS, VOCAB)):
        return f"sha256 has {missing}"
    for name in (WEIGHTS, VOCAB):
        if not (isinstance(recorded[name], str) and re.fullmatch("[0-9a-f]{64}", recorded[name])):
            return f"sha256 of {name} is {SHOWN.repr(recorded[name])}, not 64 hex digits"
    return None


def mismatched(config: dict, digests: dict[str, str]) -> str | None:
    """The first file of `digests` (name -> the sha256 of the bytes read) that is not the one config.json
    records for it; None when all match, or config.json records none (an export older than the record;
    `record_problem` refused any other)."""
    recorded = config.get("sha256")
    if not isinstance(recorded, dict):
        return None
    return next((name for name, digest in digests.items() if recorded.get(name) != digest), None)


def damaged(place: Path, why: str) -> CharLMError:
    """The one-line error for a model folder (or its file `place`) that reads but is not whole: edited by
    hand or half copied. Its run still holds the model, so exporting again makes a sound one."""
    return CharLMError(f"{one_line_path(place)}: damaged model folder ({why}); export it again from its run")
