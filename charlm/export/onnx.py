"""`--format onnx`: the model over a window, for onnxruntime (or any ONNX runtime) without torch.

Inputs `ids` (int64, batch x time) and the state `h0` (layers x batch x hidden; an LSTM also takes
`c0`); outputs `logits` (batch x time x vocabulary), `h1` (and `c1`): the state after the window, to
feed back as the next call's. Batch and time are dynamic, so the same file scores a whole text at
once or steps one character at a time. An adaptive head's logits are its exact log-probabilities,
as `CharLM.forward` gives them. The file's metadata holds the vocabulary and the state's shape, so
it samples on its own (docs/export.md has the loop, numpy and onnxruntime only). Needs `pip install 'charlm[export]'` (onnx, onnxruntime).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import files
from ..errors import CharLMError
from ..fields import said
from ..model import CharLM

OPSET = 17
TELEMETRY_OFF = "ORT_DISABLE_TELEMETRY"  # read by onnxruntime as it loads


class Window(nn.Module):
    """`CharLM.forward` with the state as separate tensors, as ONNX wants inputs and outputs."""

    def __init__(self, model: CharLM):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        state = h0 if c0 is None else (h0, c0)
        out, state = self.model.core(self.model.embed(ids), state)
        logits = self.model.head.logits(out)
        return (logits, *state) if isinstance(state, tuple) else (logits, state)


def state_names(model: CharLM) -> tuple[list[str], list[str]]:
    """The state's input and output names: (h0, c0) -> (h1, c1) for an LSTM, h0 -> h1 otherwise."""
    return (["h0", "c0"], ["h1", "c1"]) if model.config.cell == "lstm" else (["h0"], ["h1"])


def export(model: CharLM, path: Path) -> Path:
    """Write `model` as an ONNX file at `path`, once it loads in onnxruntime."""
    # onnxruntime's telemetry, on unless this is set as it loads, writes a session file (.ses) into the temp
    # folder, which the check below would leave there; a user's own setting is kept
    os.environ.setdefault(TELEMETRY_OFF, "1")
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise CharLMError(
            f"{said('format', 'onnx')} needs onnx and onnxruntime: pip install 'charlm[export]'"
        ) from None
    model = model.cpu().eval()
    config = model.config
    inputs, outputs = state_names(model)
    ids = torch.zeros(1, 4, dtype=torch.long)
    state = [torch.zeros(config.layers, 1, config.hidden) for _ in inputs]
    dynamic = {"ids": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    dynamic.update({name: {1: "batch"} for name in inputs + outputs})
    graph = io.BytesIO()  # built and checked in memory, then written whole (files.py)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing (constant shapes it does not use)
        torch.onnx.export(
            Window(model),
            (ids, *state),
            graph,
            input_names=["ids", *inputs],
            output_names=["logits", *outputs],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    described = onnx.load_from_string(graph.getvalue())
    onnx.helper.set_model_props(described, metadata(model))
    data = described.SerializeToString()
    onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    path = Path(path)
    files.replace_files({path: data})
    return path


def metadata(model: CharLM) -> dict[str, str]:
    """What a sampler needs beside the graph, in the file's metadata: the vocabulary (id -> character)
    and the state's shape. onnxruntime reads it as `session.get_modelmeta().custom_metadata_map`."""
    config = model.config
    return {
        "charlm.vocab": json.dumps(model.vocab.to_dict(), ensure_ascii=False),
        "charlm.cell": config.cell,
        "charlm.layers": str(config.layers),
        "charlm.hidden": str(config.hidden),
    }
