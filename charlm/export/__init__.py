"""`charlm export RUN --format html|onnx|safetensors`: a trained model in a form that runs without charlm.

    html.py         one self-contained page: the weights, page.html and a JavaScript sampler
    page.html       the page: its markup, with the serve page's CSS and script inlined by html.py
    sampler.js      charlm's sampler in plain JavaScript, run in the page's Web Worker
    wasm.py         the page's one WebAssembly function (a matrix-vector product), assembled byte by byte
    onnx.py         the model over a window, for onnxruntime
    safetensors.py  a model folder as model hubs keep one (model.safetensors, config.json, vocab.json)

The CLI imports this package, and runtext.py asks it which files are exports (`is_model_export`): models
charlm does not read back, not texts to score. Each export of a run is recorded in its run folder's
exports.jsonl, which `charlm info` lists. docs/export.md says what each format is for, and what is exact in each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .. import checkpoint, files, hub, outputs, runs
from ..errors import CharLMError
from ..export_names import FORMATS, HTML_WEIGHTS, WEIGHTS
from ..fields import said
from ..halfwidth import as_choice
from ..reporting import append_line
from .html import is_page

DEFAULT_OUTPUT = {"html": "model.html", "onnx": "model.onnx", "safetensors": "model"}


def export(
    target: str | None,
    format: str,
    output: str | None = None,
    weights: str | None = None,
    before_replacing: Callable[[str | Path], None] | None = None,
) -> Path:
    """Export the model of run `target` (None: the latest run) as `format`; returns what was written
    (a file, or for safetensors a folder). The default output is `default_output`.
    `before_replacing`: called, before anything is written, with the output where it may be a file of
    the user's (the CLI says it replaced one): --output, or the default beside a model folder outside a
    run. A run's own exports/ is not: it is its exports' place, listed by `charlm info`."""
    format, weights = as_choice(format, FORMATS), as_choice(weights, WEIGHTS)  # ｈｔｍｌ too (halfwidth.py)
    if format not in FORMATS:
        raise CharLMError(f"{said('format', format)}: unknown; use one of {', '.join(FORMATS)}")
    if weights is not None and weights not in WEIGHTS:
        raise CharLMError(f"{said('weights', weights)}: unknown; use one of {', '.join(WEIGHTS)}")
    if weights is not None and format != "html":
        raise CharLMError(f"{said('weights')} is for {said('format', 'html')} only; {format} keeps the weights in fp32")
    if format == "html":
        weights = weights or HTML_WEIGHTS
    path = runs.resolve(target)
    if hub.names_weights(path):  # a model folder: the run its copy records, of the same read as its weights
        saved, _, recorded = checkpoint.read_model_folder(hub.folder_of(path))
    else:
        saved, recorded = checkpoint.read(path, charlm_model=True), None
    run_dir = run_of(path)
    out = output if output is not None else default_output(path, format)  # "" is refused, not the default
    out = outputs.output_folder(out) if format == "safetensors" else outputs.output_file(out)
    if format == "safetensors":
        from .safetensors import export as write_folder

        def write(saved: checkpoint.Checkpoint, out: Path) -> Path:
            return write_folder(saved, out, source_of(run_dir, recorded))
    elif format == "onnx":
        from .onnx import export as write_onnx

        def write(saved: checkpoint.Checkpoint, out: Path) -> Path:
            return write_onnx(saved.model(), out)
    else:
        from .html import export as write_html

        def write(saved: checkpoint.Checkpoint, out: Path) -> Path:
            return write_html(
                saved, out, about(saved, run_dir, runs.run_name_of(path) if run_dir is None else run_dir.name), weights
            )

    if before_replacing is not None and (output or run_dir is None):
        before_replacing(output or out)
    try:
        written = write(saved, out)
    except OSError as e:  # a full disk: the writers leave no half file (files.py); say which and what to do
        raise files.cannot_write(said("output", output) if output else out, e) from None
    if run_dir is not None:
        log_export(run_dir, format, written, weights)
    return written


def is_model_export(path: Path) -> bool:
    """Whether file `path` is an html or onnx export of a model: not text to score, though the page is text
    (scored, its HTML read under the latest run gave a figure of nothing), but a model charlm does not read back."""
    return Path(path).suffix.lower() == ".onnx" or is_page(path)


def run_of(path: Path) -> Path | None:
    """The run folder an export of checkpoint `path` belongs to, whose exports/ and exports.jsonl it
    joins: the checkpoint's folder, or for an exported model folder the run it lies in (RUN/exports/NAME).
    None for a model folder elsewhere: one to upload to a model hub whole, which an export leaves as it is."""
    path = Path(path)
    if path.name != hub.WEIGHTS:
        return path.parent
    exports = path.parent.absolute().parent
    return exports.parent if exports.name == runs.EXPORTS and runs.is_run_folder(exports.parent) else None


def source_of(run_dir: Path | None, recorded: dict[str, str] | None) -> dict[str, str] | None:
    """The run a model folder exported from a checkpoint of `run_dir` (`run_of`) comes from: that run
    folder's, or, for a folder exported from another (a copy, elsewhere), that one's record (`recorded`,
    `hub.source_in`, read with its weights); None for a lone .pt file, outside any run."""
    if run_dir is not None and runs.is_run_folder(run_dir):
        folder = Path(files.recorded_path(run_dir))  # `charlm export best.pt` in the run's folder: named too
        return {"run": folder.name, "folder": str(folder)}
    return recorded


def default_output(path: Path, format: str) -> Path:
    """Where an export without --output goes: the run folder's exports/; for an exported model folder,
    beside it (hub/ -> hub.html), as inside it the export's files would be uploaded with the model. A
    model folder is safetensors already: a copy needs a place named (--output)."""
    path = Path(path)
    if path.name != hub.WEIGHTS:
        return path.parent / runs.EXPORTS / DEFAULT_OUTPUT[format]
    folder = path.parent if path.parent.name not in ("", "..") else path.parent.resolve()
    if format == "safetensors":
        raise CharLMError(
            f"{folder} is a safetensors model folder already; to copy it, give the new folder ({said('output')})"
        )
    return folder.with_name(folder.name + Path(DEFAULT_OUTPUT[format]).suffix)


def about(saved: checkpoint.Checkpoint, run_dir: Path | None, name: str) -> dict:
    """What the page says about the model: its name, corpus and validation bpc (from run.json when
    the run has one, else from the checkpoint)."""
    info = (runs.read_run_info(run_dir) if run_dir is not None else None) or {}
    bpc = saved.progress.val_bpc
    return {
        "name": name,
        "corpus": info.get("corpus") or saved.corpus.get("name", "?"),
        "val_bpc": None if bpc is None else round(float(bpc), 4),
        "step": saved.progress.step,
    }


def exported_bytes(path: Path) -> int:
    """Bytes of a file, or of a model folder's files: not what else the folder holds (a clone's .git, the
    temporary files of another export writing into it now, which it renames away as they are summed)."""
    path = Path(path)
    if path.is_dir():
        return sum((path / name).stat().st_size for name in (hub.WEIGHTS, hub.CONFIG, hub.VOCAB))
    return path.stat().st_size


def log_export(run_dir: Path, format: str, written: Path, weights: str | None) -> None:
    """Append this export to the run's exports.jsonl, whole or not at all (`append_line`: a record cut
    short by a full disk would have the next export's record glued onto it, and both lost); best effort:
    a read-only run folder is fine."""
    row = {"format": format, "path": files.recorded_path(written), "bytes": exported_bytes(written), "weights": weights}
    row["made"] = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        append_line(Path(run_dir) / runs.EXPORTS_LOG, files.json_text(row) + "\n")
    except OSError:
        pass


def listed(run_dir: Path) -> list[str]:
    """The run's exports that still exist, newest per file (a link's records and its target's are of one):
    `html 2.9 MB (fp16) PATH`, the path as the export was given it. The log may be damaged or edited by
    hand: a line that is not a whole export record is skipped, as `charlm runs` skips what it cannot
    read, rather than ending `charlm info` in a traceback."""
    log = Path(run_dir) / runs.EXPORTS_LOG
    if not log.is_file():  # none yet; or a named pipe, whose read waits for a writer forever (as run.json's)
        return []
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    latest = {}
    for line in lines:
        try:
            row = files.parse_json(line)
        except ValueError:
            continue
        if is_export_record(row) and Path(row["path"]).exists():  # a file named two ways (a link) is one
            latest[runs.real(Path(row["path"]))] = row
    shown = []
    for row in latest.values():
        weights = f" ({row['weights']})" if row.get("weights") else ""
        shown.append(f"{row['format']} {row['bytes'] / 1e6:.1f} MB{weights} {row['path']}")
    return shown


def is_export_record(row: object) -> bool:
    """A line of exports.jsonl as `log_export` writes it."""
    return (
        isinstance(row, dict)
        and all(isinstance(row.get(name), str) for name in ("format", "path"))
        and files.is_number(row.get("bytes"))
        and isinstance(row.get("weights"), (str, type(None)))
    )
