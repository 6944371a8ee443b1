"""One source of defaults: the Config dataclass, its checks, durations."""

import dataclasses

import pytest

from charlm import Config
from charlm.cli import train as train_command
from charlm.config import parse_duration
from charlm.errors import CharLMError


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


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_weight_average_outside_its_range_is_refused(value):
    with pytest.raises(CharLMError, match=r"--weight-average must be in \[0, 1\)"):
        Config(weight_average=value)
