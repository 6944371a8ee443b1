"""One source of defaults: the Config dataclass, its checks, durations."""

import contextlib
import dataclasses
import re
import threading

import pytest
import torch

from charlm import Config, SampleConfig, catalog, model, pieces, plan, runtext, sizing
from charlm.commands.options import WholeRunSteps
from charlm.commands.train import train as train_command
from charlm.config import parse_duration, refuse_added_limits
from charlm.device import resolve_device
from charlm.errors import CharLMError
from charlm.fields import as_stored, on_command_line, typed
from charlm.sampler import generate
from charlm.serve.config import ServeConfig

from .conftest import assert_one_line_error, cli


def test_cli_and_api_share_one_set_of_defaults():
    """Every Config field is a `charlm train` option, and the option itself holds no default."""
    options = {p.name: p for p in train_command.params}
    for field in dataclasses.fields(Config):
        assert field.name in options
        assert options[field.name].default is None
        if field.default is None:  # unset by default: the help says what that means, and shows no default
            assert "[default:" not in options[field.name].help
        else:
            shown = "off" if field.default is False else field.default
            assert f"[default: {shown}]" in options[field.name].help


# The rule behind each figure a Config field's help states, where that rule is another module's: the help
# cannot import plan.py or sizing.py (they import config.py), so this keeps the two from drifting apart.
HELP_FIGURES = {
    "hidden": (),  # fitted by sizing.py to the run's limits: no fixed size to state
    "dropout": tuple(figure for rule in plan.DROPOUT_RULE for figure in rule),
    "eval_every": (plan.EVAL_EVERY_RANGE[1],),
    "batch_size": (sizing.DEFAULT_BATCH_SIZE,),
    "vocab_size": (pieces.EXTRA_MERGED_PIECES,),
    "eval_also": (runtext.EVAL_ALSO_TOKENS,),
    "head": (model.HEAD_DIVISION ** len(model.HEAD_COVERAGE),),  # the rarest cluster's narrowing
}


@pytest.mark.parametrize("name, figures", HELP_FIGURES.items())
def test_the_figures_a_help_states_are_its_rules(name, figures):
    """--hidden's help said "unset: fitted to --max-time and --max-steps, else 256" long after every run had to
    have a limit, so that no run fell back to 256: a figure copied into a help text outlives its rule."""
    help_text = next(f.metadata["help"] for f in dataclasses.fields(Config) if f.name == name)
    stated = {float(figure.replace(",", "")) for figure in re.findall(r"\d[\d,]*(?:\.\d+)?", help_text)}
    assert stated == set(map(float, figures))


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("45", 45), ("2.5m", 150), (None, None), ("none", None)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_the_help_says_a_bare_max_time_is_seconds():
    """`charlm train --max-time 10` trained 10 seconds, where a newcomer meant the default's 10 minutes (and
    --checkpoint-every 10 is 10 steps): the help said only "e.g. 90s, 10m, 1h"."""
    help_text = {p.name: p.help for p in train_command.params}["max_time"]
    assert parse_duration("10") == 10 and "(a bare number: seconds)" in help_text


@pytest.mark.parametrize("text", ["ten", "10x", "-5m", "0s", "m", "1h30", "2m30"])  # 1h30: seconds or minutes?
def test_bad_durations(text):
    with pytest.raises(CharLMError, match="^max_time"):
        parse_duration(text)


# A unit spelt out in English, as users type it, and the seconds they meant.
SPELT_OUT = [
    ("5minutes", 300), ("5 min", 300), ("5mins", 300), ("5minute", 300), ("2hours", 7200), ("2 hrs", 7200),
    ("30sec", 30), ("30secs", 30), ("1 Hour 30 Minutes", 5400), ("10 seconds", 10),
]  # fmt: skip


@pytest.mark.parametrize(("spelt", "seconds"), SPELT_OUT)
def test_a_unit_spelt_out_in_english_is_named_with_the_letter_to_type(spelt, seconds):
    """`--max-time 5minutes` was told only "write a duration such as 90s, 10m or 1h", where `10分钟` is told
    to retype '分钟' as 'm': each word is named with its letter, and retyping it so reads what was meant."""
    with pytest.raises(CharLMError) as refused:
        parse_duration(spelt, "--max-time")
    retyped = spelt
    for word, letter in re.findall(r"'(.+?)' as '(.*?)'", re.fullmatch(r".*\(retype (.*)\)", str(refused.value))[1]):
        retyped = retyped.replace(word, letter, 1)
    assert parse_duration(retyped, "--max-time") == seconds, (str(refused.value), retyped)


def test_a_unit_word_inside_another_word_is_not_named():
    """'three' holds 'hr' and 'insecs' 'secs': only a unit after its number is one."""
    assert_one_line_error(cli("train", "x.txt", "--max-time", "5minutes"), "90s, 10m or 1h (retype 'minutes' as 'm')")
    for text in ("three", "insecs", "5 minuets", "5minutesx"):
        with pytest.raises(CharLMError) as refused:
            parse_duration(text, "--max-time")
        assert "retype" not in str(refused.value), refused.value


def test_a_duration_not_positive_offers_no_limit_as_its_caller_writes_it():
    """charlm.train(max_time=-5) was told "use 'none' for no limit", the command line's spelling: a
    Python caller writes max_time=None."""
    with pytest.raises(CharLMError, match=r"^max_time must be positive, not -5 \(use max_time=None for no limit\)$"):
        Config(max_time=-5)
    with pytest.raises(CharLMError, match=r"or checkpoint_every='none' to save only at"):  # its field takes no None
        Config(checkpoint_every="0s")
    assert Config(checkpoint_every="none").checkpoint_interval() == (None, None)
    with on_command_line(), pytest.raises(CharLMError, match=r"^--max-time must be .*\(use --max-time none for"):
        Config(max_time="0s")


@pytest.mark.parametrize(
    "words, said",
    [
        (["--max-time", ""], "--max-time is empty (a shell variable left unset gives an empty one): give a duration"),
        (["--max-time", " "], "or --max-time none for no limit"),
        (
            ["--checkpoint-every", ""],
            "give steps (e.g. 1000), a duration (e.g. 10m) or --checkpoint-every none to save",
        ),
        (["--peer-timeout", "", "--max-time", "1s"], "--peer-timeout is empty (a shell variable left unset"),
    ],
)
def test_an_empty_duration_is_refused_not_read_as_no_limit(tmp_path, words, said):
    """`--max-time "$BUDGET"`, BUDGET unset, trained with no time limit without a word (and an empty
    --checkpoint-every never saved latest.pt), where an empty `serve --host` is refused: 'none' says no limit."""
    corpus = tmp_path / "fox.txt"
    corpus.write_text("the quick brown fox\n" * 20)
    assert_one_line_error(cli("train", str(corpus), "--max-steps", "1", "--out", str(tmp_path / "runs"), *words), said)
    with pytest.raises(CharLMError, match=r"^max_time is empty .* or max_time=None for no limit$"):
        Config(max_time="")
    assert Config(max_time="none").max_seconds() is None


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "9" * 400 + "h"], ids=["inf", "nan", "400 digits"])
def test_a_duration_that_is_not_finite_is_refused(value):
    """max_time=float('inf') (or NaN, or a number of hours past a float's range: inf) passed as a limit,
    then ended the run in an OverflowError traceback where the plan turned the time left into steps;
    a checkpoint or run record saying so ended a resume the same way."""
    with pytest.raises(CharLMError, match=r"^max_time must be a finite duration, not .* \(use max_time=None for no"):
        Config(max_time=value)


@pytest.mark.parametrize(
    "option, said",
    [("max_steps", "max_steps must be a 64-bit integer"), ("warmup_steps", "warmup_steps must be a 64-bit integer"),
     ("lr", "lr must be a number")],
)  # fmt: skip
def test_a_number_of_400_digits_is_refused(option, said):
    """--max-steps or --warmup-steps of 400 digits (a run's options read back too) passed, then ended the
    run in an OverflowError traceback where the count met a float (the plan's tokens, the warmup's lr);
    so did lr=10**400, an int taken as a float that no float holds."""
    with pytest.raises(CharLMError, match=f"^{said}, not 100000"):
        Config(**{option: 10**400})


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_weight_average_outside_its_range_is_refused(value):
    with pytest.raises(CharLMError, match=r"weight_average must be in \[0, 1\)"):
        Config(weight_average=value)


SEED_RANGE = "random_seed must be between -9223372036854775808 and 9223372036854775807"


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 99999999999999999999])
def test_random_seeds_torch_cannot_take_are_refused(seed):
    with pytest.raises(CharLMError, match=f"{SEED_RANGE}.*not {seed}"):
        Config(random_seed=seed)
    with pytest.raises(CharLMError, match=f"{SEED_RANGE}.*not {seed}"):
        SampleConfig(random_seed=seed)


@pytest.mark.parametrize(
    "seed, shown",
    [(10**400, "1000000000"), (-(10**5000), "not a negative integer of 5,001 digits")],
    ids=["400_digits", "5000_digits"],
)
def test_a_random_seed_of_hundreds_of_digits_is_shown_shortened(seed, shown):
    """random_seed=10**400 was a message of ~500 characters, the whole number in it; 10**5000 a ValueError
    traceback (str() of an int of over 4,300 digits). Shown as every other wrong value is (`fields.SHOWN`)."""
    for config_class in (Config, SampleConfig):
        with pytest.raises(CharLMError, match=SEED_RANGE) as refused:
            config_class(random_seed=seed)
        assert shown in str(refused.value) and len(str(refused.value)) < 200, str(refused.value)
    told = cli("train", "text.txt", "--max-steps", "1", "--random-seed", "9" * 1000)
    assert_one_line_error(told, SEED_RANGE.replace("random_seed", "--random-seed"), "not 999")
    assert len(told.output) < 200, told.output


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63), -1])
def test_every_random_seed_in_range_works(model, seed):
    texts = generate(model, "ab", length=5, random_seed=seed, num_samples=3)  # seeds seed, seed + 1, seed + 2
    assert len(texts) == 3 and all(len(text) == 7 for text in texts)
    torch.manual_seed(Config(random_seed=seed).random_seed + 1)  # the trainer's seed for rank 1


@pytest.mark.parametrize("value, shown", [(0, "0"), ([0.5, -1.0], r"\[0.5, -1.0\]"), ((1, 0.0), r"\(1, 0.0\)")])
def test_a_bad_temperature_is_shown_as_given(value, shown):
    with pytest.raises(CharLMError, match=rf"^temperature must be a finite number above 0, not {shown} \("):
        SampleConfig(temperature=value)


@pytest.mark.parametrize("field", ["cell", "head", "normalize", "tokenizer", "spm_model", "save_errors", "precision"])
def test_every_choice_field_refuses_a_value_outside_its_choices(field):
    with pytest.raises(CharLMError, match=rf"^{field} must be one of .*, not 'nonsense'"):
        Config(**{field: "nonsense"})
    with pytest.raises(CharLMError, match=r"^precision must be one of fp32, bf16, not 'fp16'"):
        SampleConfig(precision="fp16")


@pytest.mark.parametrize("config_class", [Config, SampleConfig, ServeConfig])
def test_every_option_of_the_wrong_type_is_named(config_class):
    """A Python caller's value of the wrong type is one line naming the option (or, for a field of the
    Python API only, the field), whatever the field (each field's annotation has a name for what it
    must be); the defaults all pass."""
    config_class()
    for field in dataclasses.fields(config_class):
        with pytest.raises(CharLMError, match=f"^{field.name} must be .*, not <object object"):
            config_class(**{field.name: object()})


def test_numpy_numbers_are_taken_as_pythons():
    """np.float32(0.5) is a temperature and np.int64(3) a token id or a size, as a caller who computed
    them with numpy means them: they were refused as not numbers ('must be a number ..., not
    np.float32(0.5)'); they are kept as Python's int and float, so run.json stays JSON."""
    import json

    import numpy as np

    config = SampleConfig(
        temperature=np.float32(0.5), top_k=np.int64(4), logit_bias={np.int64(3): np.float32(-100.0), "a": np.int8(2)}
    )
    assert (config.temperature, config.top_k, config.logit_bias) == (0.5, 4, {3: -100.0, "a": 2})
    assert type(config.top_k) is int and all(type(v) in (int, float) for v in [*config.logit_bias.values(), 3])
    assert SampleConfig(temperature=[np.float64(0.5), np.float32(1.0)]).temperature == (0.5, 1.0)
    train = Config(hidden=np.int64(32), lr=np.float32(0.5))
    assert json.loads(json.dumps(train.to_dict()))["hidden"] == 32
    with pytest.raises(CharLMError, match="top_k must be an integer or None, not np.True_"):
        SampleConfig(top_k=np.bool_(True))  # a numpy bool is no more a number than Python's


@pytest.mark.parametrize(
    "refused",
    [
        lambda long: Config(device=long),
        lambda long: Config(cell=long),
        lambda long: Config(encoding=long),
        lambda long: resolve_device(long),
        lambda long: catalog.entry(long),
    ],
    ids=["device", "choices", "encoding", "resolve_device", "catalog"],
)
def test_a_long_wrong_value_is_shortened_in_its_message(refused):
    """A whole paragraph given as --device (a shell variable in the wrong place) was repeated whole in
    the message; a wrong value is shown shortened, as `check_types` shows one."""
    with pytest.raises(CharLMError) as refusal:
        refused("x" * 5000)
    assert len(str(refusal.value)) < 300 and "'xxx" in str(refusal.value) and "..." in str(refusal.value)


@pytest.mark.parametrize("size, said", [(7, "at least 8, not 7"), (2**31, "at most 2,147,483,647, not 2,147,483,648")])
def test_a_vocab_size_outside_its_range_says_which_bound(size, said):
    """A --vocab-size past sentencepiece's 32-bit field is told the bound it passed, not the lower one."""
    with pytest.raises(CharLMError, match=f"^vocab_size must be {said}$"):
        Config(tokenizer="sentencepiece", vocab_size=size)


@pytest.mark.parametrize("value", ["", " ", "abc", "0s", "0", "1" * 5000])
def test_a_bad_checkpoint_every_offers_what_it_takes(value):
    """`--checkpoint-every ''` was told "give a duration such as 10m, or --checkpoint-every none for no
    limit": it takes steps too, and its none is no save between evaluations, not "no limit"."""
    for command_line, off in ((True, "--checkpoint-every none"), (False, "checkpoint_every='none'")):
        with on_command_line() if command_line else contextlib.nullcontext(), pytest.raises(CharLMError) as caught:
            Config(checkpoint_every=value)
        offered = f"steps (e.g. 1000), a duration (e.g. 10m) or {off} to save only at evaluations and the end"
        assert offered in str(caught.value) and "limit" not in str(caught.value), str(caught.value)


def test_a_stored_records_options_are_named_as_it_spells_them_on_its_thread_alone():
    """A checkpoint's run options read within the command (`as_stored`) are named as the file spells them
    (`lr`), while another of the command's threads, at that moment, still names the flag its user typed."""
    inside, checked = threading.Event(), threading.Event()
    said_there = []

    def read_stored() -> None:
        with as_stored():
            inside.set()
            checked.wait(5)
            with pytest.raises(CharLMError) as caught:
                Config(lr="x")
            said_there.append(str(caught.value))

    with on_command_line():
        reader = threading.Thread(target=read_stored)
        reader.start()
        assert inside.wait(5)
        with pytest.raises(CharLMError, match=r"^--lr must be a number, not 'x'$"):  # while the reader is inside
            Config(lr="x")
        checked.set()
        reader.join(5)
        with pytest.raises(CharLMError, match=r"^--lr must be a number"):  # and after, on this thread as before
            Config(lr="x")
    assert said_there == ["lr must be a number, not 'x'"]


def test_a_step_count_past_pythons_digit_limit_is_refused_in_one_line():
    """`--checkpoint-every` of 5,000 digits ended in a ValueError traceback: int() refuses a string of over
    4,300 digits (CVE-2020-10735's limit) where --checkpoint-every read its steps."""
    with pytest.raises(
        CharLMError,
        match=r"^checkpoint_every must be a 64-bit integer of steps, not a number of 5,000 digits; give steps",
    ):
        Config(checkpoint_every="1" * 5000)


@pytest.mark.parametrize("steps", ["1_000", "0_001_000", "１＿０００", "١٠٠٠"])
def test_checkpoint_every_reads_a_step_count_as_max_steps_does(steps):
    """`--checkpoint-every 1_000` was refused ("cannot read it") where `--max-steps 1_000` and `--max-steps
    +1_000` are 1,000 steps: --checkpoint-every read its steps by isdecimal(), --max-steps by click's int()."""
    assert WholeRunSteps().convert(steps, None, None) == 1000
    assert Config(checkpoint_every=steps).checkpoint_interval() == (1000, None)


@pytest.mark.parametrize("steps", ["9" * 19, "1" * 30])
def test_a_checkpoint_every_past_a_64_bit_step_count_is_refused_as_max_steps_is(steps):
    """`--checkpoint-every` of 19 to 4,300 digits was taken, a cadence no run reaches, where `--max-steps` of
    as many is refused as no 64-bit integer: both take the same step counts now."""
    with pytest.raises(CharLMError, match="must be a 64-bit integer"):
        Config(max_steps=int(steps))
    with pytest.raises(CharLMError, match=r"^checkpoint_every must be a 64-bit integer of steps, not a number of "):
        Config(checkpoint_every=steps)


def test_a_plus_limit_past_a_64_bit_step_count_offers_no_figure_that_is_refused_too():
    """`max_steps='+9999999999999999999'` said `give max_steps=9999999999999999999`, which is refused as no
    64-bit integer: a '+' limit of 19 digits was read as more steps where `max_steps` itself takes none."""
    with pytest.raises(CharLMError) as refusal:
        Config(max_steps="+" + "9" * 19)
    assert "64-bit integer" in str(refusal.value) and f"give max_steps={'9' * 19}" not in str(refusal.value)


@pytest.mark.parametrize("field", ["max_steps", "hidden", "checkpoint_every"])
def test_an_integer_past_pythons_digit_limit_is_named_by_its_size(field):
    """charlm.train(max_steps=10**5000) ended in a ValueError traceback: the message showing the value
    called repr(), which refuses an int of over 4,300 digits."""
    with pytest.raises(
        CharLMError, match=rf"^{field} must be a 64-bit integer, not a negative integer of 5,001 digits$"
    ):
        Config(**{field: -(10**5000)})


@pytest.mark.parametrize("added", ["+0", "+00"])
def test_a_max_steps_of_plus_zero_is_not_answered_with_a_figure_that_is_refused_too(added):
    """`--max-steps +0` on a new run said `give --max-steps 0`, which is refused itself (at least 1), and on
    a run at step 20 `give --max-steps 20`, refused as spent: +0 adds nothing, and the figure offered is one
    charlm takes."""
    with pytest.raises(CharLMError) as new_run:
        Config(max_steps=added)
    assert str(new_run.value) == (
        f"max_steps='{added}': limits count the whole run, and {added} adds nothing; give a figure, e.g. max_steps=1000"
    )
    with pytest.raises(CharLMError) as resumed:
        refuse_added_limits({"max_steps": added, "max_time": None}, step=20, run="checkpoints/run")
    assert str(resumed.value).endswith(
        f"{added} adds nothing; checkpoints/run has trained 20 steps: for 1000 more give max_steps=1020"
    ), resumed.value
    Config(max_steps=1000)  # the figure offered is taken


@pytest.mark.parametrize("added", ["+1000", "+1_000", "+0_001_000", "＋１_０００"])
def test_a_plus_limit_written_with_underscores_is_a_plus_limit_too(added):
    """`max_steps='+1_000'` was told `give it as a number: max_steps=1000`, the 1,000 more taken for the whole
    run, while '+1000' is told limits count the whole run; `--max-steps +1_000` trained 1,000 steps (click's
    int() reads underscores, as Python does) where +1000 was refused. Both read as '+1000' now."""
    with pytest.raises(
        CharLMError, match=re.escape(f"max_steps='{added}': limits count the whole run; give max_steps=1000")
    ):
        Config(max_steps=added)
    told = f"--max-steps {typed(added)}: limits count the whole run; give --max-steps 1000"
    assert_one_line_error(cli("train", "text.txt", "--max-steps", added), told)
    with pytest.raises(CharLMError) as resumed:
        refuse_added_limits({"max_steps": added, "max_time": None}, step=20, run="checkpoints/run")
    assert str(resumed.value).endswith(" more give max_steps=1020"), resumed.value  # 1,000 more than its 20
    assert WholeRunSteps().convert(added[1:], None, None) == 1000  # without the '+', a figure, as Python reads it


@pytest.mark.parametrize("added", ["+0", "+0s", "+0m", "+0h0m", "+0.0s"])
def test_a_max_time_of_plus_zero_is_told_it_adds_nothing_as_max_steps_is(added):
    """`--max-time +0` said "cannot read '+0'" where `--max-steps +0` is told +0 adds nothing: a zero duration
    was no '+' limit to added_limits, so it was refused as given, and no duration reads a '+'."""
    with pytest.raises(CharLMError) as new_run:
        Config(max_time=added)
    assert str(new_run.value) == (
        f"max_time='{added}': limits count the whole run, and {added} adds nothing; "
        "give a duration, e.g. max_time='10m'"
    )
    with pytest.raises(CharLMError) as resumed:
        refuse_added_limits({"max_steps": None, "max_time": added}, step=20, elapsed=100.0, run="checkpoints/run")
    assert str(resumed.value).endswith(
        f"{added} adds nothing; checkpoints/run has trained 1m40s: for 10m more give max_time='11m40s'"
    ), resumed.value
    told = f"--max-time {added}: limits count the whole run, and {added} adds nothing; give a duration, e.g. --max-time 10m"
    assert_one_line_error(cli("train", "text.txt", "--max-time", added), told)
    Config(max_time="10m")  # the figure offered is taken


@pytest.mark.parametrize(
    ("name", "given", "told"),
    [
        (
            "max_steps",
            "＋0",
            "and +0 adds nothing; checkpoints/run has trained 20 steps: for 1000 more give max_steps=1020",
        ),
        ("max_steps", "＋１００", "; checkpoints/run has trained 20 steps: for 100 more give max_steps=120"),
        (
            "max_time",
            "＋0",
            "and +0 adds nothing; checkpoints/run has trained 1m40s: for 10m more give max_time='11m40s'",
        ),
        ("max_time", "＋１０ｍ", "; checkpoints/run has trained 1m40s: for 10m more give max_time='11m40s'"),
    ],
)
def test_a_full_width_plus_from_python_is_a_plus_limit(name, given, told):
    """Only the command line was thought to turn an input method's '＋' into '+': `charlm.train(max_steps='＋100')`
    must be read as the '+' limit it is (added_limits reads it as halfwidth.as_number reads a number), not as
    a figure it cannot read."""
    with pytest.raises(CharLMError) as resumed:
        refuse_added_limits(
            {"max_steps": None, "max_time": None, name: given}, step=20, elapsed=100.0, run="checkpoints/run"
        )
    assert str(resumed.value).endswith(told), resumed.value
    with pytest.raises(CharLMError, match="limits count the whole run"):
        Config(**{name: given})
