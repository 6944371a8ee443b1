import pytest
import torch

from charlm import CharLM, Config
from charlm.errors import CharLMError
from charlm.sampler import generate, pick
from charlm.vocab import Vocab


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CharLM(Config(hidden=16, layers=2), Vocab("\nabcdefgh "))


def test_output_begins_with_the_seed_and_has_the_asked_length(model):
    text = model.generate("abc", length=40, random_seed=1)
    assert text.startswith("abc") and len(text) == 43
    assert set(text) <= set(model.vocab.chars)


def test_greedy_is_reproducible_and_equals_top_k_1(model):
    greedy = model.generate("ab", length=30, greedy=True)
    assert greedy == model.generate("ab", length=30, greedy=True)
    assert greedy == model.generate("ab", length=30, top_k=1, random_seed=5)


def test_random_seed_makes_sampling_reproducible(model):
    a = model.generate("ab", length=60, temperature=1.5, random_seed=3)
    assert a == model.generate("ab", length=60, temperature=1.5, random_seed=3)
    assert a != model.generate("ab", length=60, temperature=1.5, random_seed=4)


def test_generation_carries_state_instead_of_rerunning_the_prefix(model, monkeypatch):
    calls = []
    original = CharLM.forward

    def spy(self, ids, state=None):
        calls.append(ids.shape[1])
        return original(self, ids, state)

    monkeypatch.setattr(CharLM, "forward", spy)
    model.generate("abcde", length=20, random_seed=0)
    assert calls == [5] + [1] * 19  # one priming pass, then one character per step


def test_greedy_picks_what_the_model_finds_likeliest(model):
    text = model.generate("abc", length=1, greedy=True)
    logits, _ = model(model.vocab.encode("abc").unsqueeze(0))
    assert text[-1] == model.vocab.chars[logits[0, -1].argmax()]


def test_top_k_samples_only_among_the_k_likeliest():
    logits = torch.tensor([[0.0, 5.0, 4.0, 3.0, -1.0]]).repeat(500, 1)
    ids = pick(logits, temperature=3.0, top_k=2, greedy=False, generator=torch.Generator().manual_seed(0))
    assert set(ids.tolist()) == {1, 2}


def test_many_samples_in_one_batch_and_streaming_callback(model):
    streamed = {0: [], 1: [], 2: []}
    texts = generate(model, "ab", 25, num_samples=3, random_seed=2, on_text=lambda i, t: streamed[i].append(t))
    assert len(texts) == 3 and all(len(t) == 27 for t in texts)
    assert ["".join(streamed[i]) for i in range(3)] == texts


def test_empty_seed_starts_at_a_line_start(model):
    assert len(model.generate("", length=10, random_seed=0)) == 10


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0}, "--temperature must be above 0"),
        ({"temperature": -1.0}, "--temperature must be above 0"),
        ({"length": -1}, "--length must be 0 or more"),
        ({"top_k": 0}, "--top-k must be at least 1"),
        ({"seed": "abz\u00e9"}, r"2 character\(s\) the model has never seen: 'z' '\u00e9'"),
    ],
)
def test_bad_options_are_named(model, options, message):
    with pytest.raises(CharLMError, match=message):
        generate(model, **{"seed": "ab", **options})
