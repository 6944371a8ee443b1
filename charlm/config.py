"""One source of defaults: the `Config` dataclass. The CLI and the Python API both build it.

Each field's metadata carries its help text, so `charlm train --help` is generated from here and
a default is never written twice. A checkpoint stores the config as a plain dict (JSON types only).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from .errors import CharLMError

CELLS = ("lstm", "gru", "rnn")

# Options that only bound or steer a run; everything else shapes the model or the data
# and must not change when a run is resumed.
LIMIT_FIELDS = ("max_steps", "max_time", "eval_every", "quiet")


def _opt(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class Config:
    # model
    cell: str = _opt("lstm", "recurrent cell", choices=CELLS)
    layers: int = _opt(2, "stacked recurrent layers")
    hidden: int = _opt(256, "hidden units per layer (also the embedding size)")
    dropout: float = _opt(0.1, "dropout between layers and before the head")
    # data
    seq_len: int = _opt(25, "window length in characters (truncated BPTT length)")
    batch_size: int = _opt(16, "contiguous streams trained side by side")
    val_fraction: float = _opt(0.1, "fraction of the text held out at its end for validation")
    encoding: str = _opt("utf-8", "text encoding of the corpus files")
    # optimisation
    lr: float = _opt(3e-3, "peak learning rate (AdamW)")
    min_lr_ratio: float = _opt(0.05, "final learning rate as a fraction of --lr (cosine decay)")
    warmup_steps: int = _opt(100, "linear warm-up steps")
    weight_decay: float = _opt(0.01, "AdamW weight decay on weight matrices")
    grad_clip: float = _opt(1.0, "clip the gradient norm to this (0: off)")
    # limits: the run stops at whichever comes first; the schedule decays over that budget
    max_steps: int | None = _opt(None, "stop after this many optimizer steps")
    max_time: str | None = _opt("10m", "stop after this much training time, e.g. 90s, 10m, 1h (none: no limit)")
    eval_every: int = _opt(2000, "evaluate validation bpc and checkpoint every N steps")
    random_seed: int = _opt(1337, "seed for weights, dropout and data order")
    quiet: bool = _opt(False, "no progress bar")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject impossible values with a message naming the option."""
        if self.cell not in CELLS:
            raise CharLMError(f"--cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        for name in ("layers", "hidden", "seq_len", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise CharLMError(f"--{option_name(name)} must be at least 1, not {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise CharLMError(f"--dropout must be in [0, 1), not {self.dropout}")
        if not 0.0 < self.val_fraction < 1.0:
            raise CharLMError(f"--val-fraction must be between 0 and 1, not {self.val_fraction}")
        if self.lr <= 0:
            raise CharLMError(f"--lr must be positive, not {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise CharLMError(f"--min-lr-ratio must be in [0, 1], not {self.min_lr_ratio}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise CharLMError("--warmup-steps, --weight-decay and --grad-clip must not be negative")
        if self.max_steps is not None and self.max_steps < 1:
            raise CharLMError(f"--max-steps must be at least 1, not {self.max_steps}")
        self.max_seconds()  # parses --max-time or raises

    def max_seconds(self) -> float | None:
        return parse_duration(self.max_time)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def model_differences(self, other: Config) -> list[str]:
        """Options other than limits where two configs differ, as `--name: a -> b` lines."""
        return [
            f"--{option_name(f.name)}: {getattr(self, f.name)} -> {getattr(other, f.name)}"
            for f in dataclasses.fields(self)
            if f.name not in LIMIT_FIELDS + ("random_seed",) and getattr(self, f.name) != getattr(other, f.name)
        ]


def option_name(field_name: str) -> str:
    return field_name.replace("_", "-")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, None: 1.0}


def parse_duration(text: str | float | None) -> float | None:
    """'90s', '10m', '1h', '1h30m' or a number of seconds -> seconds; None/'none' -> no limit."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "none")):
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        spec = text.strip().replace(" ", "")
        parts = list(_DURATION.finditer(spec))
        if not parts or "".join(p.group(0) for p in parts) != spec:
            raise CharLMError(f"--max-time: cannot read {text!r}; write a duration such as 90s, 10m or 1h")
        seconds = sum(float(p.group(1)) * _UNIT_SECONDS[(p.group(2) or "").lower() or None] for p in parts)
    if seconds <= 0:
        raise CharLMError(f"--max-time must be positive, not {text!r} (use 'none' for no limit)")
    return seconds
