"""Options typed through a Chinese input method: full-width forms read as ASCII by every option that takes a
number, a duration, a list or a device; what stands for no ASCII character named with what to type instead."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

import charlm
from charlm import checkpoint
from charlm.checkpoint import Checkpoint, Progress
from charlm.config import Config, SampleConfig, parse_duration
from charlm.errors import CharLMError
from charlm.fields import option_name
from charlm.halfwidth import half_width, options_read

from .conftest import assert_one_line_error, cli, make_model

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
    # a minus as a word processor or a PDF writes it: an en dash, the minus sign, the small hyphen-minus
    ("sample --presence-penalty –３", "--presence-penalty must be between -2 and 2 (OpenAI's range), not -3.0"),
    ("train --random-seed −99999999999999999999", "(a 64-bit integer), not -99999999999999999999"),
    ("train --dropout 1e﹣4 --max-time ０ｓ", "--max-time must be positive, not '０ｓ'"),
    ("sample --temperature 0.5,–1", "--temperature must be a finite number above 0, not 0.5,–1"),
    ("serve --chunk-ms ２０００．５", "--chunk-ms must be between 0 and 1000, not 2000.5"),
    ("inspect --max-chars １０００，--held-out", "--held-out ran into it: type a half-width space before --held-out, not '，'"),
    ("sample --top-p 0.9，--length 3", "--top-p: '0.9，--length' is not a valid float (--length ran into it: "),
    ("sample --length 3　--top-k", "(--top-k ran into it: type a half-width space before --top-k, not a full-width space)"),
    # an option and its value joined by a full-width space arrive as one word, which click took for an option
    ("sample --length　-3", "--length　-3: a full-width space joins --length to its value; type a half-width space after --length"),
    ("train --max-time　5s", "--max-time　5s: a full-width space joins --max-time to its value; type a half-width space after --max-time"),
    ("sample --lenght　5", "no such option --lenght　5 (did you mean --length?)"),  # a mistyped option is named first
    # lists: a full-width comma between the values is the list's comma
    ("sample --temperature ０．５，－１", "--temperature must be a finite number above 0, not ０．５，－１"),
    ("sample --temperature 0.5、0.8", "--temperature: cannot read '0.5、0.8'; give a number or a list such as 0.5,0.8,1.0 (retype '、' as ',')"),
    # durations: '１０ｍ' was refused where '１０m' was read; a Chinese unit is named with charlm's letter
    ("train --max-time ０ｍ", "--max-time must be positive, not '０ｍ'"),
    ("train --max-time 10分钟", "--max-time: cannot read '10分钟'; write a duration such as 90s, 10m or 1h (retype '分钟' as 'm')"),
    ("train --checkpoint-every 1小时30分", "(retype '小时' as 'h', '分' as 'm')"),
    ("train --peer-timeout 5秒", "--peer-timeout: cannot read '5秒'; write a duration such as 90s, 10m or 1h (retype '秒' as 's')"),
    ("train --checkpoint-every ²", "--checkpoint-every: cannot read '²'"),  # a digit to isdigit(), not to int()
    # a duration's Chinese numerals are named with their number, beside its units: all there is to retype at once
    ("train --max-time 一分钟", "--max-time: cannot read '一分钟'; write a duration such as 90s, 10m or 1h (retype '一' as '1', '分钟' as 'm')"),
    ("train --max-time 一m", "--max-time: cannot read '一m'; write a duration such as 90s, 10m or 1h (retype '一' as '1')"),
    ("train --max-time 1.5个小时", "(retype '1.5个' as '1.5', '小时' as 'h')"),  # not '5个' as '5': 1.5 read whole
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


# A duration as Chinese says it, and the seconds it is: its hint's retypings, made, give a duration read so.
SPOKEN = [
    ("一分钟", 60), ("十五分钟", 900), ("二十秒", 20), ("九十九秒", 99), ("两小时", 7200), ("半小时", 1800),
    ("一个小时", 3600), ("两个半小时", 9000), ("半个小时", 1800), ("一小时三十分钟", 5400), ("１小時三十分", 5400),
    ("1个小时", 3600), ("1个半小时", 5400), ("１个半小时", 5400), ("2个钟头", 7200), ("3个分钟", 180),
    ("1.5个小时", 5400), ("０．５个小时", 1800), ("1。5个小时", 5400), ("2.25个分钟", 135),
]  # fmt: skip


@pytest.mark.parametrize(("spoken", "seconds"), SPOKEN)
def test_a_durations_chinese_numerals_are_named_with_the_number_that_reads_as_they_say(spoken, seconds):
    """`--max-time 一分钟` named only '分钟' to retype, and `一m` was refused again: every part to retype is
    named at once, and retyping them as the error says gives the duration the words say."""
    with pytest.raises(CharLMError) as refused:
        parse_duration(spoken, "--max-time")
    retypings = re.fullmatch(r".*\(retype (.*)\)", str(refused.value))[1]
    retyped = spoken
    for mark, ascii_form in re.findall(r"'(.+?)' as '(.*?)'", retypings):
        retyped = retyped.replace(mark, ascii_form, 1)
    assert parse_duration(retyped, "--max-time") == seconds, (retypings, retyped)


@pytest.mark.parametrize(
    ("spoken", "hint"), [("三五分钟", " (retype '分钟' as 'm')"), ("十十秒", " (retype '秒' as 's')"), ("一二m", "")]
)
def test_chinese_numerals_that_say_no_one_number_are_not_named_as_one(spoken, hint):
    """三五分钟 is three to five minutes, not 35: such a numeral is left for the user to decide."""
    with pytest.raises(CharLMError) as refused:
        parse_duration(spoken, "--max-time")
    assert str(refused.value).endswith(f"1h{hint}")


def test_a_python_callers_full_width_duration_and_device_are_read_as_the_command_lines():
    config = Config(max_time="１ｈ　３０ｍ", checkpoint_every="１００", device=" ＣＰＵ")
    assert (config.max_seconds(), config.checkpoint_interval()) == (5400.0, (100, None))
    assert parse_duration("１．５ｍ", "--peer-timeout") == 90.0
    with pytest.raises(CharLMError, match=r"^max_time='10分钟': cannot read it; .* \(retype '分钟' as 'm'\)$"):
        charlm.train("fox.txt", max_time="10分钟")


def full_width(text: str) -> str:
    """`text` as a Chinese input method's full-width mode types it: each ASCII character's full-width form."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


# Every named choice of every config, typed in full width, each its own row.
CHOSEN = [
    (config_class, f.name, choice)
    for config_class in (Config, SampleConfig)
    for f in dataclasses.fields(config_class)
    for choice in f.metadata.get("choices", ())
]


def next_check_of(config_class: type) -> tuple[str, list[str], str]:
    """The command of `config_class`, the options of a check after its choices that refuses the run (so
    that no model is trained or loaded), and what that check says."""
    if config_class is Config:
        return "train", ["--max-time", "0s"], "--max-time must be positive"
    return "sample", ["--top-p", "0"], "--top-p must be in (0, 1]"


@pytest.mark.parametrize(("config_class", "name", "choice"), CHOSEN)
def test_a_named_choice_typed_in_full_width_is_read_as_that_choice(config_class, name, choice):
    """`--precision ｂｆ１６` and `--cell ｇｒｕ` met click's 'is not one of', and precision='ｂｆ１６' its
    Python twin, where `--max-time １０ｍ` was read: a choice reads full width by the same rule. On the
    command line the run's next check (its time, or sample's top-p) is what is refused: the choice was read."""
    assert getattr(config_class(**{name: full_width(choice)}), name) == choice
    command, next_check, refused = next_check_of(config_class)
    assert_one_line_error(cli(command, f"--{option_name(name)}", full_width(choice), *next_check), refused)


@pytest.mark.parametrize(("config_class", "name", "choice"), CHOSEN)
def test_a_named_choice_is_read_in_any_case_and_stored_as_its_own_spelling(config_class, name, choice):
    """`--normalize NFC` (Unicode's own name, upper case) and `--normalize ＮＦＣ` were refused where `nfc` was
    read: a choice reads in any case, and is kept as the choice spells it, so run.json says 'nfc'."""
    for typed in (choice.upper(), full_width(choice.upper()), choice.title()):
        assert getattr(config_class(**{name: typed}), name) == choice
    command, next_check, refused = next_check_of(config_class)
    assert_one_line_error(cli(command, f"--{option_name(name)}", full_width(choice.upper()), *next_check), refused)


EXPORT_CHOSEN = [
    ("export --format ｏｎｎｘ --weights ｆｐ１６", "--weights is for --format html only; onnx keeps the weights in fp32"),
    ("export --format ｈｔｍｌ --weights ｉｎｔ８ no-such-run", "no-such-run"),
    ("export --format ｈｔｍ", "--format ｈｔｍ: unknown; use one of html, onnx, safetensors"),
    ("export --format html --weights ｆｐ１５", "--weights ｆｐ１５: unknown; use one of fp32, fp16, int8"),
]  # fmt: skip


@pytest.mark.parametrize(("words", "said"), EXPORT_CHOSEN)
def test_exports_format_and_weights_typed_in_full_width_are_read_as_typed_in_ascii(words, said):
    assert_one_line_error(cli(*words.split(" ")), said)


def test_a_run_keeps_a_full_width_value_as_read_not_as_typed(fox_file):
    """run.json kept `--max-time １０ｍ` as '１０ｍ', and `charlm info` showed it so: a value read by the
    half-width rule is stored as read, a choice and a device too."""
    typed = {
        "max_time": "１０ｍ",
        "checkpoint_every": "１００",
        "device": "ＣＰＵ",
        "precision": "ｆｐ３２",
        "head": "ｆｕｌｌ",
    }
    flags = [word for name, value in typed.items() for word in (f"--{option_name(name)}", value)]
    result = cli(
        "train",
        str(fox_file),
        "--hidden",
        "16",
        "--max-steps",
        "3",
        "--dropout",
        "0.1",
        "--out",
        "wide",
        "--quiet",
        *flags,
    )
    assert result.exit_code == 0, result.output
    kept = json.loads(Path("checkpoints/wide/run.json").read_text(encoding="utf-8"))["config"]
    assert {name: kept[name] for name in typed} == {name: half_width(value) for name, value in typed.items()}
    assert "10m" in cli("info", "wide").output.split("max_time", 1)[1].splitlines()[0]


# An option typed after an input method's dashes: '——' (U+2014 twice, a Chinese input method's `--`),
# '－－' (U+FF0D twice, full width), '—' (one em dash: macOS's autocorrected `--`), '–' (an en dash: a
# blog's or word processor's `--`), '−' (a minus sign); or its name in full width (`－－ｔｏｐ－ｐ`).
DASHED = [
    ("sample ——top-p ０", "--top-p must be in (0, 1], not 0.0"),
    ("sample －－top-p 0", "--top-p must be in (0, 1], not 0.0"),
    ("sample —top-p 0", "--top-p must be in (0, 1], not 0.0"),
    ("sample ——top-p=0", "--top-p must be in (0, 1], not 0.0"),
    ("train ——max-time ０ｍ", "--max-time must be positive, not '０ｍ'"),
    ("sample --seed ——他说 —top-p 0", "--top-p must be in (0, 1], not 0.0"),  # a seed's dashes are its own
    ("sample –top-p 0", "--top-p must be in (0, 1], not 0.0"),
    ("sample ––top-p 0", "--top-p must be in (0, 1], not 0.0"),
    ("sample -–top-p 0", "--top-p must be in (0, 1], not 0.0"),
    ("sample −−top-p 0", "--top-p must be in (0, 1], not 0.0"),
    ("sample --ｔｏｐ-p 0", "--top-p must be in (0, 1], not 0.0"),
    ("sample －－ｔｏｐ－ｐ＝0", "--top-p must be in (0, 1], not 0.0"),
    ("sample –top-q 0.9", "no such option –top-q (retype '–' as '--'; did you mean --top-p?)"),
    ("sample --ｔｏｐ-q 0.9", "no such option --ｔｏｐ-q (retype '--ｔｏｐ-q' as '--top-q'; did you mean --top-p?)"),
    # no option of the command: named with the dashes to retype (and the option meant, if one is close)
    ("sample ——top-q 0.9", "no such option ——top-q (retype '——' as '--'; did you mean --top-p?); main sample --help lists them"),
    ("train corpus.txt —frobnicate", "no such option —frobnicate (retype '—' as '--'); main train --help lists them"),
]  # fmt: skip


@pytest.mark.parametrize(("words", "said"), DASHED)
def test_an_option_typed_with_an_input_methods_dashes_is_read_as_that_option(words, said):
    """`——top-p 0.9`, as a Chinese input method types `--top-p 0.9`, was taken for arguments: "unexpected
    extra arguments", or sample's RUN. A word of such dashes before a long option of the command is that
    option; before no option of it, the error says to retype its dashes."""
    assert_one_line_error(cli(*words.split(" ")), said)


def test_words_of_dashes_that_are_no_option_are_left_as_typed():
    """Only a long option of the command is read so, and only where an option stands: a seed `——top-p` is
    the option's value, text after `--` is text, and `——`, `——他说` or a file `—notes.txt` name no option."""
    options, taking_values = ["--top-p", "--seed", "--quiet"], ["--top-p", "--seed"]
    words = ["——", "——他说", "—notes.txt", "--seed", "——top-p", "——quiet", "－－top-p＝0.9", "--", "——top-p"]
    read = ["——", "——他说", "—notes.txt", "--seed", "——top-p", "--quiet", "--top-p=0.9", "--", "——top-p"]
    assert options_read(words, options, taking_values) == read


def test_a_seed_that_starts_with_an_options_name_after_dashes_stays_the_seed():
    """`--seed ——top-p` is a seed, written as typed, while `—top-p ０．５` after it is the option."""
    model = make_model("".join(sorted(set("——top-p said"))), layers=1)
    record = {"name": "dashes", "sources": [], "digest": ""}
    saved = Checkpoint(model.config, model.vocab, model.state_dict(), Config(), record, Progress(step=1))
    checkpoint.save(saved, [Path("dashes/best.pt")])
    result = cli("sample", "dashes", "--seed", "——top-p", "—top-p", "０．５", "--length", "3", "--random-seed", "1")
    assert result.exit_code == 0 and result.output.startswith("——top-p") and len(result.output) == 7 + 3 + 1, (
        result.output
    )


@pytest.mark.parametrize(
    "words",
    [
        ["train", "fox.txt", "--warmup-steps"],
        ["sample", "nope", "--top-k"],
        ["sample", "nope", "--top-p"],
        ["train", "fox.txt", "--max-time"],
        ["train", "fox.txt", "--peer-timeout"],
        ["sample", "nope", "--temperature"],
        *(["train", "fox.txt", option] for option in ("--cell", "--head", "--precision", "--normalize", "--tokenizer")),
        *(["train", "fox.txt", option] for option in ("--save-errors", "--spm-model", "--init-from")),
        ["train", "fox.txt", "--quiet", "--eval-also"],
        ["train", "--resume"],
        ["sample", "nope", "--form"],
        ["sample", "nope", "--seed-file"],
        ["serve", "nope", "--allow-origin"],
        ["inspect", "fox.txt", "--output"],
    ],
)
@pytest.mark.parametrize("value", ["x" * 5000, "7" * 5000])
def test_a_value_of_thousands_of_characters_is_shown_shortened(words, value, fox_file):
    """`--top-k` (or a duration, a temperature, a choice, a path too long to be a file's) of 5,000 characters
    was echoed whole: an error line of 5,000 characters that buried what it said, a path's without naming its
    option. It is shown shortened, as fields.Shown shows a wrong value, after the option."""
    result = cli(*words, value)
    assert_one_line_error(result, words[-1])
    assert len(result.output) < 400, result.output[:200]
