"""The sampling engine against the plain reference loop (`charlm.reference_sampler`): for the options the
reference has, `charlm.generate` writes exactly its text, character for character, for every cell."""

import pytest
import torch

import charlm
from charlm.model import CharLM
from charlm.reference_sampler import reference_sample

from .conftest import make_model

TEXT = "the quick brown fox jumps over the lazy dog.\nto be, or not to be: that is the question.\n"


@pytest.fixture
def one_thread():
    """Training and sampling on one torch thread: on two cores shared with other tests, two threads each
    wait on the other (a 30-step training took minutes)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def trained_a_little(cell: str) -> CharLM:
    """A tiny model trained for a few steps on `TEXT`: sure of some characters, unsure of others, so that
    greedy, temperature and top-k draw different texts."""
    torch.manual_seed(0)
    model = make_model("".join(sorted(set(TEXT))), cell=cell, layers=2, hidden=16)
    ids = model.vocab.encode(TEXT * 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for step in range(30):
        windows = torch.stack([ids[start : start + 17] for start in range(step, step + 64, 8)])
        nats, _ = model(windows[:, :-1], targets=windows[:, 1:])
        optimizer.zero_grad()
        nats.mean().backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_engine_writes_the_reference_samplers_text(cell, one_thread):
    model = trained_a_little(cell)
    greedy = charlm.generate(model, "the ", length=200, greedy=True)
    assert greedy == reference_sample(model, "the ", 200, temperature=0)
    drawn = charlm.generate(model, "the ", length=200, random_seed=3)
    assert drawn == reference_sample(model, "the ", 200, random_seed=3)  # the default temperature, 0.8
    top_k = charlm.generate(model, "", length=200, temperature=1.3, top_k=4, random_seed=5)
    assert top_k == reference_sample(model, "", 200, temperature=1.3, top_k=4, random_seed=5)
    assert len({greedy, drawn, top_k}) == 3  # each option draws its own text: no comparison passes for nothing
