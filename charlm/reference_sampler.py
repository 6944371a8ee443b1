"""The sampling loop written out plainly: one sample of a character model, one character at a time.

Nothing calls this but the tests: it is the reference the one sampling engine (`generation.Batch`,
which `charlm sample`, `charlm.generate` and the server drive) is tested against, as the cells of
`cells.py` are the fused steps' (tests/test_reference_sampler.py: the same text, character for
character), and the loop a reader can follow before opening the engine.

What the engine adds is left out, as it changes nothing for one plain sample and would bury the loop:
batched rows whose number changes no bit (`lstm_step.RowStepper`), the fused LSTM step
(`lstm_step.FusedLSTMStep`), top-p, penalties and logit bias (`decoding.RowSampler`), forms
(`constraints`), stop texts (`generation.StopRule`), the seed's checks (`unseen`) and a sentencepiece
model's healed seed and whole UTF-8 characters (`generation.healed_seed`, `decoding.Utf8Rule`).
"""

from __future__ import annotations

import torch

from .decoding import BELOW_ONE
from .inference_context import inference
from .model import CharLM


def reference_sample(
    model: CharLM, seed: str, length: int, temperature: float = 0.8, top_k: int | None = None, random_seed: int = 0
) -> str:
    """The seed and `length` characters drawn after it; `temperature` 0 takes the likeliest (greedy)."""
    generator = torch.Generator().manual_seed(random_seed)  # on the CPU, as each of the engine's rows has
    ids = model.vocab.encode(seed or model.vocab.start_text())
    text = seed
    with inference(model):
        logits, state = model(ids.unsqueeze(0))  # prime: the seed read in one forward pass
        for _ in range(length):
            scores = logits[0, -1].float()
            if temperature == 0:
                next_id = scores.argmax()
            else:
                scores = (scores - scores.max()) / temperature  # from the largest down: never inf - inf
                if top_k is not None:
                    scores[scores < scores.topk(min(top_k, len(scores))).values[-1]] = float("-inf")
                probs = torch.softmax(scores, dim=-1)
                # The engine's draw, not torch.multinomial's (one generator for a whole batch; the engine's
                # rows each have their own): the CDF inverted at one float64 uniform of the generator, made
                # float32 below 1 (`decoding.BELOW_ONE`). The engine draws them 256 at a time: the same stream.
                uniform = torch.rand(1, generator=generator, dtype=torch.float64).float().clamp(max=BELOW_ONE)
                cdf = probs.cumsum(dim=-1)
                target = uniform.to(cdf.device) * cdf[-1]
                next_id = torch.searchsorted(cdf, target, right=True).clamp(max=len(cdf) - 1)[0]
            text += model.vocab.chars[int(next_id)]
            logits, state = model(next_id.view(1, 1), state)  # feed the character back: one step
    return text
