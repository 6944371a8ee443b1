"""Options typed through a Chinese input method: full-width forms read as ASCII by every option that takes a
number, a duration, a list or a device; what stands for no ASCII character named with what to type instead."""

import pytest

import charlm
from charlm.config import Config, parse_duration
from charlm.errors import CharLMError

from .conftest import assert_one_line_error, cli

# (the command line, split at its half-width spaces; what its one-line error says). A full-width value
# that is read is typed out of its range, so that the error shows the number it was read as, and no model
# is trained or loaded.
TYPED = [
    # numbers: Python's int() read '１２' but float() no '．' and no '－'
    ("train --max-steps ０", "--max-steps must be at least 1, not 0"),
    ("train --dropout １．５", "--dropout must be in [0, 1), not 1.5"),
    ("train --lr 0。001", "--lr: '0。001' is not a valid float (retype '。' as '.')"),
    ("sample --top-p ０．０", "--top-p must be in (0, 1], not 0.0"),
    ("sample --presence-penalty －３", "--presence-penalty must be between -2 and 2 (OpenAI's range), not -3.0"),
    ("serve --chunk-ms ２０００．５", "--chunk-ms must be between 0 and 1000, not 2000.5"),
    ("inspect --max-chars １０００，--held-out", "--held-out ran into it: type a half-width space before --held-out, not '，'"),
    ("sample --top-p 0.9，--length 3", "--top-p: '0.9，--length' is not a valid float (--length ran into it: "),
    ("sample --length 3　--top-k", "(--top-k ran into it: type a half-width space before --top-k, not a full-width space)"),
    # lists: a full-width comma between the values is the list's comma
    ("sample --temperature ０．５，－１", "--temperature must be a finite number above 0, not ０．５，－１"),
    ("sample --temperature 0.5、0.8", "--temperature: cannot read '0.5、0.8'; give a number or a list such as 0.5,0.8,1.0 (retype '、' as ',')"),
    # durations: '１０ｍ' was refused where '１０m' was read; a Chinese unit is named with charlm's letter
    ("train --max-time ０ｍ", "--max-time must be positive, not '０ｍ'"),
    ("train --max-time 10分钟", "--max-time: cannot read '10分钟'; write a duration such as 90s, 10m or 1h (retype '分钟' as 'm')"),
    ("train --checkpoint-every 1小时30分", "(retype '小时' as 'h', '分' as 'm')"),
    ("train --peer-timeout 5秒", "--peer-timeout: cannot read '5秒'; write a duration such as 90s, 10m or 1h (retype '秒' as 's')"),
    ("train --checkpoint-every ²", "--checkpoint-every: cannot read '²'"),  # a digit to isdigit(), not to int()
    # a device: read as cuda:0, so the run's next check, its time, is what is refused
    ("train --device ＣＵＤＡ：０ --max-time ０ｓ", "--max-time must be positive, not '０ｓ'"),
    ("train --device cuda。0", "--device must be auto, cpu, cuda, cuda:N or mps, not 'cuda。0' (retype '。' as '.')"),
]  # fmt: skip


@pytest.mark.parametrize(("words", "said"), TYPED)
def test_an_option_typed_in_full_width_is_read_as_ascii_or_its_mark_named(words, said):
    """`--random-seed １２` was 12 but `--top-p ０．９` no number, `--max-time １０m` ten minutes but `--max-time
    １０ｍ` no duration, and `--max-time 10分钟` or `--top-p 0.9，--length 3` were refused without a word of the
    character that made them so. One rule reads every full-width form as ASCII; the rest is named."""
    assert_one_line_error(cli(*words.split(" ")), said)


def test_a_python_callers_full_width_duration_and_device_are_read_as_the_command_lines():
    config = Config(max_time="１ｈ　３０ｍ", checkpoint_every="１００", device=" ＣＰＵ")
    assert (config.max_seconds(), config.checkpoint_interval()) == (5400.0, (100, None))
    assert parse_duration("１．５ｍ", "--peer-timeout") == 90.0
    with pytest.raises(CharLMError, match=r"^max_time: cannot read '10分钟'; .* \(retype '分钟' as 'm'\)$"):
        charlm.train("fox.txt", max_time="10分钟")
