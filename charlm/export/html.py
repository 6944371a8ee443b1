"""`--format html`: one self-contained page that samples from the model in the browser.

The page (page.html) inlines the serve page's CSS and shared script (charlm/serve/page.css and page.js),
the model's description and vocabulary as JSON, its weights as base64 of raw little-endian arrays, and
the sampler (sampler.js, with its one WebAssembly function from wasm.py), which runs in a Web Worker
made from a Blob URL: nothing is fetched, so the file opens from disk, offline. Weights are stored in
fp32, fp16 (widened to fp32 on load) or int8 with one fp32 scale per row (the row's largest magnitude
over 127); biases always in fp32. docs/export.md has the sizes, speeds and how far each precision's
log-probabilities are from PyTorch's.

Poem forms: the meta carries charlm.forms' FORMS, every name a form goes by (FORM_NAMES: 五绝, 五言絕句 ...)
and each id's class as charlm.forms decides it (`classes`), with the class of each character a template
may hold that the model reads as one of another class (`typed_classes`: nfkc's "，" for ","), so the
page's template rules (sampler.js) take the names and use the Unicode rules charlm does; and the marks a
seed may type for a form's (`marks`: ',' for '，'), which the page reads as the form's, as charlm reads them.

A seed character the model never saw, and a banned one it never writes, is named as charlm names it
(`Vocab.name_unseen`): the meta carries the hints Python computes (`Vocab.unseen_hints`: the forms the
model writes of ',', '，' for ',' (did you mean '，'?), and for a model of simplified or traditional
Chinese the other script's characters, which the page cannot tell without Big5 and GB2312 tables).

A page damaged after export (a byte of its weights changed or cut off, its description edited to
another shape, the file cut short) says so in one line rather than writing from other weights or
loading for ever: the meta carries the weights' CRC-32, and sampler.js checks it and every shape.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import sys
import unicodedata
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .. import files
from ..checkpoint import Checkpoint
from ..constraints import same_mark
from ..errors import CharLMError
from ..fields import said
from ..forms import FORM_CHOICES, FORM_NAMES, FORMS, is_cjk_punctuation, is_han, is_letter
from ..model import AdaptiveHead
from ..unseen import other_forms
from ..vocab import Vocab
from .wasm import matvec_base64

# What the top of page.html says, in its first bytes: how a page is told from a text to score (`is_page`)
MARK = b"<!-- Written by `charlm export --format html`"
MARK_WITHIN = 2048
MARKERS = ("/* page.css */", "/* page.js */", "/* sampler.js */", "__CHARLM_META__", "__CHARLM_WEIGHTS__")


def is_page(path: Path) -> bool:
    """Whether file `path` is a page this module wrote (`MARK` near its top)."""
    try:
        with Path(path).open("rb") as page:
            return MARK in page.read(MARK_WITHIN)
    except OSError:  # unreadable: reading it as text names why
        return False


def stored(tensor: torch.Tensor, weights: str) -> dict:
    """A weight as the page stores it: matrices in `weights` precision, vectors in fp32."""
    array = tensor.detach().float().cpu().numpy()
    entry = {"shape": list(array.shape)}
    if array.ndim == 1 or weights == "fp32":
        return {**entry, "dtype": "f32", "data": b64(array.astype("<f4"))}
    if weights == "fp16":
        return {**entry, "dtype": "f16", "data": b64(array.astype("<f2"))}
    scale = np.abs(array).max(axis=1) / 127.0
    safe = np.where(scale > 0, scale, 1.0)
    quantized = np.clip(np.rint(array / safe[:, None]), -127, 127).astype(np.int8)
    return {**entry, "dtype": "i8", "data": b64(quantized), "scale": b64(scale.astype("<f4"))}


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def model_tensors(saved: Checkpoint, weights: str) -> tuple[dict, dict]:
    """The head's description and the page's tensors, named as sampler.js reads them."""
    model, config = saved.model(), saved.model_config
    state = model.state_dict()
    tensors = {"embed": state["embed.weight"]}
    for n in range(config.layers):
        for kind in ("w_ih", "w_hh", "b_ih", "b_hh"):
            what, part = ("weight", kind[2:]) if kind[0] == "w" else ("bias", kind[2:])
            tensors[f"{kind}{n}"] = state[f"core.{what}_{part}_l{n}"]
    if isinstance(model.head, AdaptiveHead):
        softmax = model.head.softmax
        if softmax.head_bias:
            raise CharLMError(f"{said('format', 'html')}: an adaptive head with a bias is not supported")
        tensors["head_w"] = softmax.head.weight
        for i, tail in enumerate(softmax.tail):
            tensors[f"tail{i}_proj"], tensors[f"tail{i}_out"] = tail[0].weight, tail[1].weight
        head = {
            "kind": "adaptive",
            "cutoffs": list(softmax.cutoffs),
            "tail_widths": [tail[0].weight.shape[0] for tail in softmax.tail],
            "rank": model.head.rank.tolist(),
        }
    else:
        tensors["head_w"], tensors["head_b"] = model.head.weight, model.head.bias
        head = {"kind": "full"}
    return head, {name: stored(t, weights) for name, t in tensors.items()}


def class_of(char: str) -> str:
    """A character's class for the page's templates: "h" a Han character, "p" CJK or full-width
    punctuation, "l" a letter, "." anything else."""
    return "h" if is_han(char) else "p" if is_cjk_punctuation(char) else "l" if is_letter(char) else "."


def classes(vocab: Vocab) -> str:
    """Each id's class (`class_of`), one letter per id; the unknown symbol's is "."."""
    return "".join("." if i == vocab.unknown_id else class_of(c) for i, c in enumerate(vocab.chars))


def typed_classes(vocab: Vocab) -> dict[str, str]:
    """The class of each character a template may hold that the model reads as one of its characters of
    another class: under nfkc, "，" (CJK punctuation) is the model's "," (neither). The script a template's
    `_` takes is decided on its text as typed (forms.template_of), which the page's ids do not keep."""
    read_as = normalizing(vocab.normalize)
    return {
        typed: class_of(typed)
        for typed, read in read_as.items()
        if read in vocab.index and class_of(typed) != class_of(read)
    }


def marks(vocab: Vocab) -> dict[str, str]:
    """Each mark a seed may type for a fixed character of a template that the model knows, with those characters
    (`constraints.same_mark`: ',' -> '，、', '.' -> '。'), for the page's `Constrained.marked` and `fits_shape`:
    a template fixes only characters the model knows."""
    found: dict[str, str] = {}
    for slot in vocab.chars:
        for typed in other_forms(slot):
            if same_mark(typed, slot):
                found[typed] = found.get(typed, "") + slot
    return found


@functools.cache
def normalizing(form: str) -> dict[str, str]:
    """Each character Unicode normalization `form` (none, nfc, nfkc) reads as one other character: that one."""
    if form == "none":
        return {}
    changed = {}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if not 0xD800 <= code < 0xE000 and not unicodedata.is_normalized(form.upper(), char):
            read = unicodedata.normalize(form.upper(), char)
            if len(read) == 1:
                changed[char] = read
    return changed


def script_json(value: object) -> str:
    """JSON that is safe inside a <script> element: no '<' (so no '</script>')."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render(saved: Checkpoint, about: dict, weights: str) -> str:
    """The page's text."""
    vocab = saved.vocab
    if not isinstance(vocab, Vocab):
        raise CharLMError(
            f"{said('format', 'html')}: a sentencepiece model is not supported (the page spells text one character "
            f"per id); export it with {said('format', 'onnx')} or safetensors"
        )
    config = saved.model_config
    head, tensors = model_tensors(saved, weights)
    tensors_json = script_json(tensors)
    meta = {
        "about": about,
        "cell": config.cell,
        "layers": config.layers,
        "hidden": config.hidden,
        "weights": weights,
        # the weights' JSON text's CRC-32, which the page checks before it reads them: a byte changed or
        # cut off would otherwise write from other weights without a word
        "weights_crc32": zlib.crc32(tensors_json.encode("utf-8")),
        "head": head,
        "vocab": {
            "chars": vocab.chars,
            "unknown_id": vocab.unknown_id,
            "normalize": vocab.normalize,
            "start_id": vocab.index[vocab.start_text()],
            "unseen": vocab.unseen_hints(),  # how an unseen character is named: ',' (did you mean '，'?)
        },
        "forms": {
            "templates": FORMS,
            "names": FORM_NAMES,
            "choices": FORM_CHOICES,
            "classes": classes(vocab),
            "typed_classes": typed_classes(vocab),
            "marks": marks(vocab),
        },
    }
    here = resources.files(__package__)
    shared = resources.files("charlm.serve")  # the serve page's look and shared script
    css, js = (shared.joinpath(name).read_text(encoding="utf-8") for name in ("page.css", "page.js"))
    page = here.joinpath("page.html").read_text(encoding="utf-8")
    sampler = here.joinpath("sampler.js").read_text(encoding="utf-8").replace("__CHARLM_MATVEC_WASM__", matvec_base64())
    parts = dict(zip(MARKERS, (css, js, sampler, script_json(meta), tensors_json)))
    # one pass, so that no marker is looked for in what another was replaced by (a corpus named
    # `__CHARLM_WEIGHTS__` in the description)
    return re.sub("|".join(map(re.escape, MARKERS)), lambda found: parts[found[0]], page)


def export(saved: Checkpoint, path: Path, about: dict, weights: str) -> Path:
    """Write the page to `path`."""
    path = Path(path)
    text = render(saved, about, weights)
    files.replace_files({path: files.utf8(text)})
    return path
