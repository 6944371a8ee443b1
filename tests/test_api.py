"""The Python API: train, load, generate and stream, on the same options as the CLI."""

import pytest

import charlm
from charlm import CharLM
from charlm.errors import CharLMError


def test_train_load_generate(fox_file, tiny):
    model = charlm.train([fox_file], out="api", **tiny)
    assert isinstance(model, CharLM) and model.config.hidden == tiny["hidden"]
    loaded = charlm.load("checkpoints/api")
    text = charlm.generate(loaded, "the", length=200, temperature=0.8, random_seed=0)
    assert isinstance(text, str) and text.startswith("the") and len(text) == 203
    greedy = charlm.generate(loaded, "the", length=50, greedy=True)
    assert greedy == charlm.generate(model.eval(), "the", length=50, greedy=True)
    pieces = list(charlm.stream(loaded, "the", length=50, greedy=True))
    assert pieces[0] == "the" and "".join(pieces) == greedy


def test_unknown_option_is_named(fox_file):
    with pytest.raises(CharLMError, match="unknown option\\(s\\) hiden"):
        charlm.train(fox_file, hiden=64)
