"""`--format safetensors`: a model folder (model.safetensors, config.json, vocab.json); hub.py owns
the format, since charlm also reads it wherever it takes a checkpoint."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import Checkpoint, write_model_folder
from ..errors import CharLMError
from ..fields import said


def export(saved: Checkpoint, folder: Path, source: dict | None = None) -> Path:
    """Write the model folder, with the run it comes from (`source`, `hub.exported_from`); refuses a path
    that is a file, and an experiment's model, which `charlm.load` could not read back (as html and onnx
    refuse it, building charlm's model)."""
    saved.check_charlm_weights()
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CharLMError(f"{said('output', folder)}: is a file; {said('format', 'safetensors')} writes a folder")
    write_model_folder(saved, folder, source)
    return folder
