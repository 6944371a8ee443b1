"""CharLM: embedding -> stacked LSTM/GRU/RNN (torch's fused kernels) -> linear head over the vocabulary.

There is deliberately no bidirectional option: a backward pass over the window would see the very
characters the model has to predict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .config import Config
from .vocab import Vocab

# An LSTM carries (h, c); a GRU or plain RNN carries h. Each is (layers, batch, hidden).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_CORES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class CharLM(nn.Module):
    def __init__(self, config: Config, vocab: Vocab):
        super().__init__()
        self.config = config
        self.vocab = vocab
        self.embed = nn.Embedding(len(vocab), config.hidden)
        # Weights keep torch's RNN initialisation: uniform in +-1/sqrt(hidden).
        self.core = _CORES[config.cell](
            config.hidden,
            config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, len(vocab))

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (batch, time) -> logits (batch, time, vocab) and the state after the last character."""
        out, state = self.core(self.embed(ids), state)
        return self.head(self.drop(out)), state

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def generate(self, seed: str = "", **options) -> str:
        """The seed and `length` new characters. Options: those of `charlm.SampleConfig`
        (length, temperature, top_k, top_p, greedy, repetition_penalty, stop, random_seed, ...)."""
        from .sampler import generate

        return generate(self, seed, **options)[0]

    def stream(self, seed: str = "", **options) -> Iterator[str]:
        """Like `generate`, but yields the text in pieces as it is made."""
        from .sampler import stream

        return stream(self, seed, **options)


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
