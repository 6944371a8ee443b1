import math

import torch

from charlm.evaluate import bits_per_char

from .conftest import make_model


def test_bits_per_char_is_cross_entropy_in_bits():
    torch.manual_seed(0)
    model = make_model("abcd", layers=1, hidden=8).eval()
    ids = torch.randint(0, 4, (301,))
    logits, _ = model(ids[:-1].unsqueeze(0))
    nats = torch.nn.functional.cross_entropy(logits[0], ids[1:])
    assert abs(bits_per_char(model, ids) - nats.item() / math.log(2)) < 1e-4
