import math

import torch

import charlm
from charlm.inference_context import inference
from charlm.scoring import bits_per_char

from .conftest import make_model


def test_bits_per_char_is_cross_entropy_in_bits():
    torch.manual_seed(0)
    model = make_model("abcd", layers=1, hidden=8).eval()
    ids = torch.randint(0, 4, (301,))
    logits, _ = model(ids[:-1].unsqueeze(0))
    nats = torch.nn.functional.cross_entropy(logits[0], ids[1:])
    assert abs(bits_per_char(model, ids) - nats.item() / math.log(2)) < 1e-4


def one_pass_bits_per_char(model, ids: torch.Tensor) -> float:
    with inference(model):  # in real fp32 on a GPU too, as bits_per_char scores
        logits, _ = model(ids[:-1].unsqueeze(0))
    return torch.nn.functional.cross_entropy(logits[0], ids[1:].to(logits.device)).item() / math.log(2)


# Measured on this model and text (one pass 1.9184 bpc): warmed pieces 8e-8 bits off one pass, cold
# pieces 0.0008 off, the former 16 cold streams 0.0018 off. 1e-5 is far above float rounding, far below
# what a cold start costs.
ONE_PASS_TOLERANCE = 1e-5


def test_batched_bits_per_char_equal_one_pass_on_a_trained_model(fox_file, tiny):
    model = charlm.train(fox_file, **{**tiny, "max_steps": 120, "eval_every": 120}).eval()
    text = fox_file.read_text() * 8  # long enough to be scored as 10 pieces side by side
    ids = model.vocab.encode(text)
    one_pass = one_pass_bits_per_char(model, ids)
    assert abs(bits_per_char(model, ids) - one_pass) < ONE_PASS_TOLERANCE
