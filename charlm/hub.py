"""A model folder as model hubs keep one: model.safetensors, config.json and vocab.json.

Written by `charlm export RUN --format safetensors --output DIR`, read wherever a checkpoint is
(`charlm.load(DIR)`, `charlm sample --checkpoint DIR`, ...). Nothing in it is a pickle: the weights
are safetensors (a JSON header and raw little-endian arrays), the rest plain JSON, so loading one can
never run code. It holds the model and what the run was (options, corpus, progress), not the
optimizer: enough to sample, score and fine-tune from, not to resume training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import files
from .errors import CharLMError

WEIGHTS, CONFIG, VOCAB = "model.safetensors", "config.json", "vocab.json"
FORMAT = "charlm-safetensors-1"


def holds_model(folder: Path) -> bool:
    """Whether `folder` is a model folder (it has model.safetensors)."""
    return (Path(folder) / WEIGHTS).is_file()


def write(folder: Path, model_config: dict, vocab: dict, weights: dict, run: dict) -> list[Path]:
    """Write a model (its architecture, vocabulary and weights) and its run record, as the checkpoint
    keeps them (checkpoint.py owns their fields), into `folder`; returns the three paths. All three are
    written before any is renamed into place, the weights last (files.py): a failed write leaves the
    folder as it was, never new weights beside an old vocabulary."""
    from safetensors.torch import save

    folder = Path(folder)
    config = {"format": FORMAT, "model_type": "charlm", "model": model_config, "run": run}
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
    contents = {
        folder / CONFIG: files.utf8(json.dumps(config, indent=1, ensure_ascii=False)),
        folder / VOCAB: files.utf8(json.dumps(vocab, ensure_ascii=False)),
        folder / WEIGHTS: save(weights, metadata={"format": FORMAT}),
    }
    files.replace_files(contents)
    return [folder / WEIGHTS, folder / CONFIG, folder / VOCAB]


def read(folder: Path) -> tuple[dict, dict, dict, dict, str]:
    """A model folder's architecture, vocabulary, weights and run record, as `write` took them, and the
    sha256 of the very bytes the weights came from (a fine-tune records it: a second read could find a
    new export there); damage is a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        vocab = json.loads((folder / VOCAB).read_text(encoding="utf-8"))
        # Read, then parsed: load_file maps the file for as long as the weights live (a server's
        # lifetime), and Windows refuses to replace a mapped file (`charlm export` again, into it).
        data = (folder / WEIGHTS).read_bytes()
        weights = load(data)
    except OSError as e:
        raise CharLMError(
            f"{folder}: cannot read the model folder ({e.filename}: {e.strerror}){files.read_remedy(e)}"
        ) from None
    except (ValueError, SafetensorError) as e:
        raise damaged(folder, str(e).splitlines()[0][:120]) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CharLMError(
            f"{folder}/{CONFIG}: not a charlm model folder (expected format {FORMAT!r}); give a run folder, "
            "a .pt checkpoint or a folder that charlm export --format safetensors wrote"
        )
    try:
        return config["model"], vocab, weights, config["run"], hashlib.sha256(data).hexdigest()
    except (KeyError, TypeError) as e:
        raise damaged(folder / CONFIG, type(e).__name__) from None


def damaged(place: Path, why: str) -> CharLMError:
    """The one-line error for a model folder (or its file `place`) that reads but is not whole: edited by
    hand or half copied. Its run still holds the model, so exporting again makes a sound one."""
    return CharLMError(f"{place}: damaged model folder ({why}); export it again from its run")
