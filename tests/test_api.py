import dataclasses

import pytest

import charlm
from charlm import CharLM, Config
from charlm.cli import train as train_command
from charlm.config import parse_duration
from charlm.errors import CharLMError


def test_train_load_generate(fox_file, tiny):
    model = charlm.train([fox_file], out="api", **tiny)
    assert isinstance(model, CharLM) and model.config.hidden == tiny["hidden"]
    loaded = charlm.load("checkpoints/api")
    text = loaded.generate("the", length=200, temperature=0.8, random_seed=0)
    assert isinstance(text, str) and text.startswith("the") and len(text) == 203
    assert loaded.generate("the", length=50, greedy=True) == model.eval().generate("the", length=50, greedy=True)


def test_unknown_option_is_named(fox_file):
    with pytest.raises(CharLMError, match="unknown option\\(s\\) hiden"):
        charlm.train(fox_file, hiden=64)


def test_cli_and_api_share_one_set_of_defaults():
    """Every Config field is a `charlm train` option, and the option itself holds no default."""
    options = {p.name: p for p in train_command.params}
    for field in dataclasses.fields(Config):
        assert field.name in options
        assert options[field.name].default is None
        assert f"[default: {field.default}]" in options[field.name].help


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("45", 45), ("2.5m", 150), (None, None), ("none", None)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten", "10x", "-5m", "0s", "m"])
def test_bad_durations(text):
    with pytest.raises(CharLMError, match="--max-time"):
        parse_duration(text)
