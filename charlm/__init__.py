"""charlm: character-level text generation with a stacked LSTM, trained on any UTF-8 novel.

import charlm
model = charlm.train("novel.txt", max_time="10m")
print(charlm.generate(model, "It was", length=200, temperature=0.8))
model = charlm.load("checkpoints/novel-20260101-120000")
print(charlm.bits_per_char(model, open("chapter.txt").read()), charlm.next_probs(model, "It wa", top=3))
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors read; at run time `__getattr__` imports these names
    from .api import bits_per_char, generate, load, next_probs, stream, train
    from .config import Config, SampleConfig
    from .errors import CharLMError
    from .model import CharLM, ModelConfig

__all__ = [
    "CharLM", "CharLMError", "Config", "ModelConfig", "SampleConfig",
    "bits_per_char", "generate", "load", "next_probs", "stream", "train",
]  # fmt: skip
__version__ = "0.1.0"

# The module each public name lives in, imported on first use: `import charlm` stays free of torch's
# import (seconds), so the `charlm` command can start, and answer Ctrl-C, before torch has loaded.
HOMES = {
    "bits_per_char": "api", "generate": "api", "load": "api", "next_probs": "api", "stream": "api", "train": "api",
    "Config": "config", "SampleConfig": "config", "CharLMError": "errors",
    "CharLM": "model", "ModelConfig": "model",
}  # fmt: skip

# In a notebook tqdm draws its bar with ipywidgets, and where they are missing it warns as it is imported,
# though the plain bar it falls back to works there: imported here, once, for every module with a bar.
if "ipykernel" in sys.modules:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "IProgress not found")
        importlib.import_module("tqdm.auto")


def __getattr__(name: str):
    if name not in HOMES:
        raise AttributeError(f"module 'charlm' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{HOMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *HOMES})  # tab completion in a REPL lists the names not yet imported
