"""CharLM: embedding -> stacked LSTM/GRU/RNN (torch's fused kernels) -> linear head over the vocabulary.

A model carries its architecture (`ModelConfig`) and its vocabulary, never the options it was trained
with: that is all a checkpoint needs to rebuild it for sampling.

There is deliberately no bidirectional option: a backward pass over the window would see the very
characters the model has to predict.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .errors import CharLMError
from .pieces import PieceVocab
from .vocab import Vocab

# An LSTM carries (h, c); a GRU or plain RNN carries h. Each is (layers, batch, hidden).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

CORES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass(frozen=True)
class ModelConfig:
    """The architecture. Training options (learning rate, budget, ...) live in `charlm.Config`."""

    cell: str
    layers: int
    hidden: int
    dropout: float
    vocab_size: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        try:
            config = cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})
        except (KeyError, TypeError):
            raise CharLMError(
                "the model description is damaged: expected cell, layers, hidden, dropout, vocab_size"
            ) from None
        if config.cell not in CORES:
            raise CharLMError(f"the model description is damaged: unknown cell {config.cell!r}")
        return config


class CharLM(nn.Module):
    def __init__(self, config: ModelConfig, vocab: Vocab | PieceVocab):
        super().__init__()
        if config.vocab_size != len(vocab):
            raise CharLMError(f"the model expects {config.vocab_size} ids but the vocabulary has {len(vocab)}")
        self.config, self.vocab = config, vocab
        self.embed = nn.Embedding(config.vocab_size, config.hidden)
        # Weights keep torch's RNN initialisation: uniform in +-1/sqrt(hidden).
        self.core = CORES[config.cell](
            config.hidden,
            config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (batch, time) -> logits (batch, time, vocab) and the state after the last character."""
        out, state = self.core(self.embed(ids), state)
        return self.head(self.drop(out)), state

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> str:
        """`2x256 lstm`: layers x hidden and the cell, as the CLI prints a model."""
        return f"{self.config.layers}x{self.config.hidden} {self.config.cell}"


def map_state(fn, state: State | None) -> State | None:
    """Apply `fn` to each tensor of a state: (h, c) for an LSTM, h otherwise."""
    if state is None:
        return None
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def detach_state(state: State | None) -> State | None:
    """Keep the state's values, cut its history: TBPTT's gradient stops at the window edge.
    The kept state is fp32 whatever autocast computed it in, so a checkpoint resumes in any precision."""
    return map_state(lambda s: s.detach().float(), state)


@contextlib.contextmanager
def inference(model: CharLM):
    """Evaluation mode without autograd, restoring the model's mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
