"""Sampling: prime the state with the seed in one forward pass, then one character per step.

The state is carried from step to step, so each new character costs one step of the recurrent core,
never a re-run of the text so far.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import CharLMError
from .model import CharLM


def check_options(length: int, temperature: float, top_k: int | None, num_samples: int) -> None:
    if length < 0:
        raise CharLMError(f"--length must be 0 or more, not {length}")
    if not temperature > 0:
        raise CharLMError(f"--temperature must be above 0, not {temperature} (use --greedy for the likeliest text)")
    if top_k is not None and top_k < 1:
        raise CharLMError(f"--top-k must be at least 1, not {top_k}")
    if num_samples < 1:
        raise CharLMError(f"--num-samples must be at least 1, not {num_samples}")


def pick(logits: torch.Tensor, temperature: float, top_k: int | None, greedy: bool, generator) -> torch.Tensor:
    """Next ids (batch,) from last-step logits (batch, vocab)."""
    if greedy:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def generate(
    model: CharLM,
    seed: str = "",
    length: int = 500,
    temperature: float = 0.8,
    top_k: int | None = None,
    greedy: bool = False,
    num_samples: int = 1,
    random_seed: int | None = None,
    on_text: Callable[[int, str], None] | None = None,
) -> list[str]:
    """`num_samples` texts, each the seed followed by `length` generated characters.

    `on_text(sample, text)` is called with the seed and then with each new character as it is made,
    so a caller can stream the text. An empty seed starts at the beginning of a line.
    """
    check_options(length, temperature, top_k, num_samples)
    vocab = model.vocab
    prime = seed or ("\n" if "\n" in vocab.index else vocab.chars[0])
    ids = vocab.encode(prime, what="--seed").unsqueeze(0).expand(num_samples, -1)
    generator = torch.Generator()
    if random_seed is None:
        generator.seed()
    else:
        generator.manual_seed(random_seed)
    was_training = model.training
    model.eval()
    texts = [[seed] for _ in range(num_samples)]
    if on_text and seed:
        for i in range(num_samples):
            on_text(i, seed)
    with torch.inference_mode():
        logits, state = model(ids)
        for step in range(length):
            next_ids = pick(logits[:, -1], temperature, top_k, greedy, generator)
            for i, char in enumerate(vocab.decode(next_ids)):
                texts[i].append(char)
                if on_text:
                    on_text(i, char)
            if step + 1 < length:
                logits, state = model(next_ids.unsqueeze(1), state)
    model.train(was_training)
    return ["".join(parts) for parts in texts]
