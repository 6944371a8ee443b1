"""Sampling into poem forms and templates (`charlm.forms`): every sample fits, whatever the seed,
temperature and decoding options, and what cannot be written is a one-line error."""

import copy
import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

from charlm.config import SampleConfig
from charlm.constraints import Constrained
from charlm.errors import CharLMError
from charlm.forms import FORM_NAMES, FORMS, template_of
from charlm.pieces import PieceVocab, train_model
from charlm.sampler import Conversation, generate, primed_for
from charlm.unseen import is_simplified_chinese
from charlm.vocab import Vocab

from .conftest import TINY_ARGS, assert_one_line_error, cli, make_model, state_telling

HAN = "".join(chr(0x4E00 + i) for i in range(60)) + "春夏秋冬"
CHINESE = Vocab(sorted(set(HAN + "，。？！\n 、abc")))
ENGLISH = Vocab(sorted(set("abcdefghijklmnopqrstuvwxyz ,.\n'")))
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# The seed of `chinese_model`'s untrained weights: drawn from the global RNG, they were another model in each
# process (whatever ran before), and a test built on them caught a door's wrong priming in ~95% of processes
# (190 of seeds 0-199; not 0). At 1 the interactive poem's test fails a first turn that primes its last character only.
CHINESE_MODEL_SEED = 1


@functools.cache
def chinese_model():
    """An untrained model whose likeliest characters are the ones a form forbids (letters, spaces,
    line breaks), so only the template keeps its samples in shape. Its weights are the same in every
    process (`CHINESE_MODEL_SEED`), drawn without moving the global RNG another test's draws follow."""
    with torch.random.fork_rng(devices=[]):  # the CPU's generator, which draws them, and no GPU's
        torch.default_generator.manual_seed(CHINESE_MODEL_SEED)
        model = make_model(CHINESE, layers=1, hidden=16).eval()
    with torch.no_grad():
        for char in "abc \n、":
            model.head.bias[CHINESE.index[char]] = 6.0
    return model


@functools.cache
def telling_chinese_model():
    """A copy of `chinese_model` whose state tells the prompt (`state_telling`), for two doors' seeded poems:
    the untrained one's stayed the same where a door primed only the prompt's last three characters."""
    return state_telling(copy.deepcopy(chinese_model()))


@PROPERTY
@given(
    form=st.sampled_from(sorted(FORMS)),
    seed=st.integers(0, 2**31),
    temperature=st.sampled_from([0.0, 0.3, 1.0, 2.5, 50.0]),
    top_p=st.sampled_from([None, 0.5, 1.0]),
    top_k=st.sampled_from([None, 1, 3]),
    penalty=st.sampled_from([1.0, 1.5]),
    acrostic=st.booleans(),
)
def test_every_sample_of_every_form_fits_it(form, seed, temperature, top_p, top_k, penalty, acrostic):
    verses = FORMS[form].count("，") * 2
    letters = "春夏秋冬" * 2
    options = {"acrostic": letters[:verses]} if acrostic else {}
    decoding = {"greedy": True} if temperature == 0 else {"temperature": temperature}
    texts = generate(
        chinese_model(), "丁\n", form=form, num_samples=3, random_seed=seed, top_p=top_p, top_k=top_k,
        repetition_penalty=penalty, **decoding, **options,
    )  # fmt: skip
    template = template_of(form, acrostic=options.get("acrostic"))
    for text in texts:
        poem = text[len("丁\n") :]
        assert template.fits(poem), poem
        if acrostic:
            assert [line[0] for line in poem.replace("，", "\n").replace("。", "\n").split("\n") if line] == list(
                letters[:verses]
            )


def test_without_a_form_the_untrained_model_drifts():
    """The control for the test above: the same model, free, does not write the form by chance."""
    texts = generate(chinese_model(), "丁\n", length=25, num_samples=5, random_seed=0)
    assert not any(template_of("五言绝句").fits(t[2:]) for t in texts)


def test_the_sample_ends_with_the_template_and_is_stopped():
    texts = generate(chinese_model(), "", form="五言绝句", length=500, random_seed=1)
    assert len(texts[0]) == len(FORMS["五言绝句"])


def test_length_shorter_than_the_template_cuts_it():
    assert len(generate(chinese_model(), "", form="五言绝句", length=7, random_seed=1)[0]) == 7


def test_english_template_on_an_english_model_writes_letters():
    model = make_model(ENGLISH, layers=1, hidden=16).eval()
    texts = generate(model, "", template="___ _____,\\n____.", num_samples=4, random_seed=3, temperature=1.5)
    template = template_of(template="___ _____,\\n____.")
    assert Constrained(template, ENGLISH).script == "letter"  # no letters in it: the vocabulary decides
    for text in texts:
        assert template.fits(text, "letter"), text
        assert text[3] == " " and text[9:11] == ",\n"


def test_a_template_character_the_model_does_not_know_is_a_one_line_error():
    with pytest.raises(CharLMError, match=r"^template: 1 character the model has never seen: '：'; use only") as error:
        generate(chinese_model(), "", template="__：___")
    assert "\n" not in str(error.value)
    with pytest.raises(CharLMError, match="^acrostic: 1 character the model has never seen: .龘."):
        generate(chinese_model(), "", form="五言绝句", acrostic="龘夏秋冬")
    # a half-width comma typed for a model of Chinese text: the forms it knows are named, as for a seed
    with pytest.raises(
        CharLMError, match=r"^template: 1 character the model has never seen: ',' \(did you mean '，' or '、'\?\);"
    ):
        generate(chinese_model(), "", template="_____,_____。")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"template": "__\udcff___"}, "template: byte 0xff at character 2 is not valid UTF-8"),
        ({"form": "五绝", "acrostic": "春\ud800秋冬"}, r"acrostic: lone surrogate U\+D800 at character 1"),
        ({"template": "__\x00___"}, r"template: 1 character the model has never seen: '\\x00'"),
    ],
)
def test_a_template_or_acrostic_is_read_as_the_characters_given(options, message):
    """A byte of argv that is not UTF-8 (`--template $'_\\xff_'`) ended in a UnicodeEncodeError traceback
    where the template was spelled for the model; a NUL was read as a literal underscore (`\\_`, which the
    parser held as a NUL), and the model was said not to know `_`."""
    with pytest.raises(CharLMError, match=f"^{message}"):
        generate(chinese_model(), "", **options)


def test_an_acrostic_of_a_mark_or_another_script_is_refused_as_no_verse_begins_so():
    """`--acrostic 春,夏秋` (a comma typed between the characters) was taken: a model that learned the mark wrote
    a verse that begins with it, `春夜宠力欲，,红洞树杯。`. Each verse's first character is of the script `_`
    writes there (forms.SCRIPT_RULE), so one of another is a one-line error naming the acrostic and the verse."""
    with pytest.raises(CharLMError) as error:
        generate(chinese_model(), "", form="五绝", acrostic="春，秋冬")
    assert str(error.value) == (
        "acrostic 春，秋冬: verse 2 would begin with '，', which is not a Han character, as the verses of "
        "form='五绝' are; give one Han character per verse"
    )
    with pytest.raises(CharLMError, match=r"^--acrostic a1: verse 2 would begin with '1', which is not a letter, "):
        template_of(template="___ ___", acrostic="a1", prefix="--")
    assert template_of(template="___ ___", acrostic="ab").acrostic == "ab"
    assert template_of(template="___ ___", acrostic="12").script is None  # the model's vocabulary decides


def test_an_acrostic_of_one_character_or_a_template_of_one_verse_is_counted_in_the_singular():
    """ "acrostic has 1 characters but form='五绝' has 4 verses": one character, one verse."""
    with pytest.raises(CharLMError) as error:
        template_of("五绝", acrostic="春")
    assert str(error.value) == "acrostic has 1 character but form='五绝' has 4 verses; give one per verse"
    with pytest.raises(CharLMError) as error:
        template_of(template="_____。", acrostic="春夏")
    assert str(error.value) == "acrostic has 2 characters but template has 1 verse; give one per verse"


def test_an_acrostic_of_traditional_characters_is_named_whole_as_a_seed_is():
    """`--acrostic 寶玉黛釵` for a model of simplified Chinese named only '寶', and in other words than the
    seed's error, which names '寶' and '釵': the user retyped one and met the next. Every character the
    option fixed is named now, in the seed's words (`unseen.never_seen`); a template's likewise."""
    poem = "床前明月光疑是地上霜举头望低思故乡春眠不觉晓处闻啼鸟夜来风雨声花落知多少白日依山尽黄河入海流欲穷千里目更上一层楼玉黛"
    model = make_model(Vocab(sorted(set(poem + "，。\n"))), layers=1, hidden=8).eval()
    assert is_simplified_chinese(model.vocab.chars)
    with pytest.raises(CharLMError) as seed_error:
        model.vocab.encode("寶玉黛釵", what="acrostic")
    with pytest.raises(CharLMError) as error:
        generate(model, "", form="五绝", acrostic="寶玉黛釵")
    assert str(error.value) == str(seed_error.value)
    traditional = "(traditional? this model knows simplified Chinese)"
    assert f"acrostic: 2 characters the model has never seen: '寶' {traditional} '釵' {traditional}; " in str(
        error.value
    )
    with pytest.raises(CharLMError, match=r"^template: 2 characters the model has never seen: '寶' .* '釵' "):
        generate(model, "", template="寶__，_釵___，寶_。")  # each named once, in order


def test_a_script_the_model_lacks_is_a_one_line_error():
    with pytest.raises(CharLMError, match="it knows no Han characters"):
        generate(make_model("abc，\n", layers=1, hidden=8), "", template="__，__")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"form": "五言"}, "form='五言' is not a form charlm knows; choose one of 五言绝句"),
        ({"form": "五言"}, r"or a short name \(五绝, 七绝, 五律, 七律\), in simplified or traditional"),
        ({"form": "五言绝句", "template": "__"}, "give form or template, not both"),
        ({"acrostic": "春夏"}, "acrostic fixes the first character of each verse of a form"),
        ({"form": "七言律诗", "acrostic": "春夏秋冬"}, "acrostic has 4 characters but form='七言律诗' has 8 verses"),
        ({"template": "，。"}, "template has no `_`"),
    ],
)
def test_options_that_cannot_make_a_template_are_named(options, message):
    with pytest.raises(CharLMError, match=message):
        generate(chinese_model(), "", **options)


@pytest.mark.parametrize(
    "name, form",
    [("五绝", "五言绝句"), ("七绝", "七言绝句"), ("五律", "五言律诗"), ("七律", "七言律诗"), ("五言絕句", "五言绝句"),
     ("七言絕句", "七言绝句"), ("五言律詩", "五言律诗"), ("七言律詩", "七言律诗"), ("五絕", "五言绝句"), ("七絕", "七言绝句")],
)  # fmt: skip
def test_the_names_chinese_readers_use_mean_their_form(name, form):
    """A short name (五绝) or the traditional characters (五言絕句) write the form they name, as its full name does."""
    assert FORM_NAMES[name] == form
    assert template_of(name).slots == template_of(form).slots
    poems = [generate(chinese_model(), "丁\n", form=given, random_seed=3)[0] for given in (name, form)]
    assert poems[0] == poems[1] and template_of(form).fits(poems[0][len("丁\n") :]), poems


def test_sample_help_names_every_kind_of_form_name():
    """--help listed the short names but not the traditional ones (五言絕句) that --form takes too."""
    help_text = " ".join(cli("sample", "--help").output.split())
    assert "or a short name (五绝, 七绝, 五律, 七律), in simplified or traditional characters" in help_text


def test_the_script_rule():
    assert template_of(template="__，__").script == "han"
    assert template_of(template="__\\n__", acrostic="春夏").script == "han"
    assert template_of(template="a__ __").script == "letter"
    assert template_of(template="__ __").script is None  # the model's vocabulary decides
    assert Constrained(template_of(template="__ __"), CHINESE).script == "han"
    assert Constrained(template_of(template="__ __"), ENGLISH).script == "letter"
    assert template_of(template="\\_a\\n_").slots == ("_", "a", "\n", None)


def test_interactive_turns_each_write_the_template():
    conversation = Conversation(chinese_model(), __import__("charlm").config.SampleConfig(form="五言绝句"))
    for seed in ("丁\n", "\n七\n"):
        assert template_of("五言绝句").fits("".join(conversation.turn(seed)))


@functools.cache
def piece_model():
    text = "".join(f"{HAN[i % 60]}{HAN[(i * 7) % 60]}{HAN[(i * 3) % 61]}，" for i in range(400)) + "。\n" * 50
    vocab = PieceVocab(train_model([text], "bpe", 500), normalize="none")
    return make_model(vocab, layers=1, hidden=16).eval()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), form=st.sampled_from(["五言绝句", "七言律诗"]))
def test_a_sentencepiece_model_writes_whole_pieces_into_the_form(seed, form):
    model = piece_model()
    assert any(len(t) > 1 for t in Constrained(template_of(form), model.vocab).texts)  # multi-character pieces
    for text in generate(model, "", form=form, num_samples=2, random_seed=seed, temperature=1.0):
        assert template_of(form).fits(text), text


@pytest.mark.parametrize(
    "options",
    [
        {"template": "鬱__，_「__」。\\n___！"},
        {"form": "五绝", "acrostic": "鬱夏秋冬"},
        {"template": "__ __", "greedy": True},
    ],
)
def test_a_sentencepiece_form_spells_in_bytes_a_fixed_character_no_piece_holds(options):
    """Such a template was refused ("the model does not know '鬱'"), though byte fallback spells any character:
    its characters no piece holds are written as their bytes, in order."""
    model = piece_model()
    assert not any(map(model.vocab.knows, "鬱「」！ "))
    template = template_of(options.get("form"), options.get("template"), options.get("acrostic"))
    texts = generate(model, "", num_samples=3, random_seed=5, temperature=1.0, **options)
    assert all(template.fits(text) for text in texts), texts
    byte_of_yu = model.vocab.processor.piece_to_id(f"<0x{'鬱'.encode()[1]:02X}>")
    with pytest.raises(
        CharLMError, match=rf"^logit_bias bans token {byte_of_yu} \(a byte of '鬱'\), but acrostic must"
    ):
        generate(model, "", form="五绝", acrostic="鬱夏秋冬", logit_bias={byte_of_yu: -100})
    commas = [i for i, text in enumerate(Constrained(template, model.vocab).texts) if "，" in text]
    with pytest.raises(CharLMError, match=r"^logit_bias bans '，', but form='五绝' must write it"):
        generate(model, "", form="五绝", logit_bias=dict.fromkeys(commas, -100))  # banned, not spelled in bytes


def test_a_sentencepiece_form_spells_a_fixed_replacement_character_in_bytes_not_as_unk():
    """<unk>'s text is U+FFFD, so a template's fixed U+FFFD allowed <unk> alone, which the UTF-8 rule never
    draws (byte fallback spells every character): the sample wrote another character there. <unk> writes
    no text (`writes_text`); the character is spelled in bytes as any other no piece holds."""
    model = piece_model()
    assert "\ufffd" not in Constrained(template_of(None, "\ufffd__"), model.vocab).texts
    texts = generate(model, "", template="\ufffd__", num_samples=3, random_seed=1, temperature=1.0)
    assert all(text[0] == "\ufffd" and template_of(None, "\ufffd__").fits(text) for text in texts), texts


def test_the_cli_samples_into_forms_templates_and_acrostics(tmp_path):
    poems = tmp_path / "poems.txt"
    poems.write_text(
        "".join(f"题\n{HAN[i % 60] * 5}，{HAN[(i * 7) % 60] * 5}。\n\n" for i in range(200)), encoding="utf-8"
    )
    assert cli("train", str(poems), *TINY_ARGS, "--max-steps", "5").exit_code == 0
    result = cli("sample", "--seed", "题\n", "--form", "七言绝句", "--acrostic", "丁七万丈", "--random-seed", "1")
    assert result.exit_code == 0, result.output
    poem = result.stdout[len("题\n") :].rstrip("\n")  # stderr names the run
    assert template_of("七言绝句", acrostic="丁七万丈").fits(poem), poem
    result = cli("sample", "--template", "__，_。\\n__。", "--num-samples", "2", "--random-seed", "2")
    texts = [block.split("\n", 1)[1].rstrip("\n") for block in result.stdout.split("--- sample ")[1:]]
    assert len(texts) == 2 and all(template_of(template="__，_。\n__。").fits(t) for t in texts), result.output
    assert_one_line_error(cli("sample", "--template", "__：_"), "--template", "never seen: '：'")
    result = cli("sample", "--seed", "题\n", "--form", "七绝", "--acrostic", "丁七万丈", "--random-seed", "1")
    assert result.exit_code == 0 and result.stdout[len("题\n") :].rstrip("\n") == poem, result.output
    assert_one_line_error(
        cli("sample", "--form", "七言"), "--form '七言' is not a form", "七言绝句", "short name (五绝"
    )


@pytest.mark.parametrize("decoding", [{"temperature": 1.5}, {"greedy": True}, {"top_k": 3, "repetition_penalty": 2.0}])
def test_characters_a_logit_bias_bans_are_never_written_into_a_form(decoding):
    banned = HAN[:54]  # of 64 Han characters, 10 are left for `_`
    texts = generate(
        chinese_model(), "", form="五言绝句", acrostic="春夏秋冬", num_samples=4, random_seed=1,
        logit_bias={**dict.fromkeys(banned, -100), HAN[55]: 3}, **decoding,
    )  # fmt: skip
    form = template_of("五言绝句", acrostic="春夏秋冬")
    assert all(form.fits(t) and not set(t) & set(banned) for t in texts), texts


@pytest.mark.parametrize(
    ("options", "banned", "message"),
    [
        ({"form": "五言绝句"}, "，", r"^logit_bias bans '，', but form='五言绝句' must write it; leave it"),
        ({"form": "五言绝句", "acrostic": "春夏秋冬"}, "夏", r"^logit_bias bans '夏', but acrostic must write it"),
        ({"template": "__ _"}, HAN, r"^logit_bias bans every way to write template \(`_` needs Han characters\)"),
    ],
)
def test_a_form_a_logit_bias_makes_impossible_is_refused_before_sampling(options, banned, message):
    """Decided: a ban never gives way to a template (the sample would write what it banned), and a
    sample never dead-ends; what cannot be written both ways is an error, as a template the model
    cannot write is."""
    with pytest.raises(CharLMError, match=message):
        generate(chinese_model(), "", logit_bias=dict.fromkeys(banned, -100), **options)


def test_a_sentencepiece_form_leaves_out_the_pieces_a_logit_bias_bans():
    model = piece_model()
    pieces = Constrained(template_of("五言绝句"), model.vocab).texts
    banned_ids = [i for i, text in enumerate(pieces) if len(text) > 1][::2]  # half the multi-character pieces
    banned = torch.zeros(len(model.vocab), dtype=torch.bool)
    banned[banned_ids] = True
    form = Constrained(template_of("五言绝句"), model.vocab, banned=banned)
    assert not any(form.allowed(position)[banned].any() for position in range(form.size))
    texts = generate(
        model, "", form="五言绝句", num_samples=2, random_seed=3, logit_bias=dict.fromkeys(banned_ids, -100)
    )
    assert all(template_of("五言绝句").fits(text) for text in texts)
    with pytest.raises(CharLMError, match="a sentencepiece model's tokens are pieces, not characters; give token ids"):
        generate(model, "", logit_bias={"春": -100})


class IdReads(TorchFunctionMode):
    """Counts `tolist` calls on the tensors in `watched`: a read of them on the host, which on a GPU waits
    for the device (`device.to_host` reads a CPU tensor with `tolist` too)."""

    def __init__(self):
        super().__init__()
        self.read: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.tolist:
            self.read.append(args[0])
        return func(*args, **(kwargs or {}))


def test_a_template_step_reads_its_chosen_ids_on_the_host_once():
    """With a template, `choose` read the ids (`tolist`) for the cursors and `Batch.step` read them again
    to decode them: two waits for a GPU a step. The cursors now move from the step's one read."""
    model = chinese_model()
    _, batch = primed_for(model, "\n", SampleConfig(form="五言绝句", num_samples=3, random_seed=1))
    steps = 0
    while any(row.finish_reason is None for row in batch.rows):
        with IdReads() as reads, torch.inference_mode():
            ids, _, _ = batch.step()
        assert sum(read is ids for read in reads.read) == 1, steps
        steps += 1
    assert steps == len(FORMS["五言绝句"])


# A seed that began the poem: its title and author, then verses (or part of one) of the form.
VERSE, NEXT = HAN[:5] + "，", HAN[10:15] + "。"  # a 五言 verse and its comma, a verse and its full stop
BEGUN = {
    "a first verse": ("丁\n七\n", VERSE),
    "half a verse": ("丁\n七\n", HAN[20:23]),
    "a first line and its line break": ("丁\n七\n", VERSE + NEXT + "\n"),
    "a line and a half": ("丁\n", VERSE + NEXT + "\n" + HAN[30:32]),
    "after a whole poem and its line break": ("丁\n{whole poem}\n", VERSE),
}


@pytest.mark.parametrize("form", ["五言绝句", "五言律诗"])
@pytest.mark.parametrize(("title", "poem"), list(BEGUN.values()), ids=list(BEGUN))
def test_a_seed_that_began_the_poem_gets_the_rest_of_it(title, poem, form):
    """`--seed $'静夜思\\n李白\\n床前明月光，'` wrote a whole new poem after the verse, not the rest of the one it
    began: the sample now goes on from where the seed's poem leaves off, and seed and sample are the form."""
    title = title.replace("{whole poem}", FORMS[form].replace("_____，_____。", VERSE + NEXT))
    texts = generate(chinese_model(), title + poem, form=form, num_samples=3, random_seed=2, temperature=1.5)
    for text in texts:
        assert text.startswith(title + poem) and template_of(form).fits(text[len(title) :]), text
    assert len(set(texts)) == 3


@pytest.mark.parametrize(
    "seed",
    [
        "丁\n七\n",  # the title and author alone
        "丁\n" + VERSE + NEXT + "\n" + VERSE + NEXT + "\n",  # and its line break
        "丁\n" + VERSE + NEXT + "\n" + VERSE + NEXT + "\n" * 2 + "七\n",  # a new title
    ],
)
def test_a_seed_that_did_not_begin_the_poem_gets_a_new_one(seed):
    for text in generate(chinese_model(), seed, form="五言绝句", num_samples=2, random_seed=4):
        assert text.startswith(seed) and template_of("五言绝句").fits(text[len(seed) :]), text


def test_the_poem_begun_is_where_a_template_goes_on_from():
    form = Constrained(template_of("五言绝句"), CHINESE)
    assert [form.begun(seed) for seed in ("", "丁\n七\n" + VERSE, "丁\n" + VERSE + NEXT + "\n" + VERSE)] == [0, 6, 19]
    assert form.begun(VERSE.replace("，", "、")) == 0  # its punctuation out of place: not the form
    assert form.begun(VERSE.replace("，", ",")) == 6  # the form's mark in the other width: read as the form's
    assert form.begun("丁\n" + HAN[:2] + "a") == 0  # a letter where a Han character goes
    english = Constrained(template_of(template="___ ____,\\n___."), ENGLISH)
    assert english.begun("the sea\nthe moon,\nhe") == 12 and english.begun("the sea\nthe moons") == 0


def test_an_acrostic_is_the_whole_poems_and_the_seeds_verses_must_begin_with_it():
    seed = "丁\n" + "春" + VERSE[1:]
    for text in generate(chinese_model(), seed, form="五言绝句", acrostic="春夏秋冬", num_samples=2, random_seed=1):
        poem = text[len("丁\n") :]
        assert text.startswith(seed) and template_of("五言绝句", acrostic="春夏秋冬").fits(poem), text
    with pytest.raises(CharLMError) as error:
        generate(chinese_model(), "丁\n" + VERSE, form="五言绝句", acrostic="春夏秋冬")
    message = f"acrostic 春夏秋冬: the seed's poem begins verse 1 with '{VERSE[0]}', not '春'; an acrostic is the whole"
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_sentencepiece_model_goes_on_with_the_poem_begun():
    model = piece_model()
    seed = "丁\n" + HAN[:3]
    for text in generate(model, seed, template="鬱____，_____。", num_samples=3, random_seed=5, temperature=1.0):
        assert text.startswith(seed) and text[len(seed) : len(seed) + 1] == "鬱" and len(text) == len(seed) + 12
    seed = "丁\n鬱" + HAN[:2]  # 鬱 is spelled in bytes: the cursor starts past all of them
    for text in generate(model, seed, template="鬱____，_____。", num_samples=3, random_seed=5, temperature=1.0):
        assert template_of(template="鬱____，_____。").fits(text[len("丁\n") :]), text


def test_a_sentencepiece_seed_whose_verse_has_a_character_spelled_in_bytes_begins_the_poem():
    """鬱, which no piece holds and byte fallback spells, at a `_` of the seed's verse: the seed was not taken
    to begin the poem (its character was looked for among the pieces' texts), and a new poem followed it."""
    model = piece_model()
    seed = "丁\n鬱" + HAN[:2]
    assert Constrained(template_of("五言绝句"), model.vocab).begun(seed) == 3
    for text in generate(model, seed, form="五言绝句", num_samples=2, random_seed=5, temperature=1.0):
        assert text.startswith(seed) and template_of("五言绝句").fits(text[len("丁\n") :]), text


def test_interactive_turns_go_on_with_the_poem_the_transcript_began():
    """The first turn writes the poem generate writes after its text, on a model whose state tells the text:
    the untrained one's poem was the same where the first turn primed only the text's last character."""
    model, typed = telling_chinese_model(), VERSE + NEXT + "\n"
    conversation = Conversation(model, SampleConfig(form="五言绝句", random_seed=3))
    first = "".join(conversation.turn(typed))
    assert first == generate(model, typed, form="五言绝句", random_seed=3)[0][len(typed) :]
    assert template_of("五言绝句").fits(typed + first), first
    second = "".join(conversation.turn("\n" + VERSE + NEXT + "\n"))  # after a whole poem: the next one's line
    assert template_of("五言绝句").fits(VERSE + NEXT + "\n" + second), second


def test_a_half_verse_typed_in_co_writing_is_finished_not_a_new_poem():
    """The line break typed to send a line was read as the poem's: a half verse (`床前明月光，疑是`) began a
    new poem. Where the line stops mid-verse it is left out now; a whole line, or a title, keeps it."""
    conversation = Conversation(chinese_model(), SampleConfig(form="五言绝句", random_seed=3, length=6))
    first = "".join(conversation.turn(VERSE + "\n"))  # a verse and its comma: the verse after it
    assert conversation.read == VERSE and len(first) == 6 and first.endswith("。"), first
    half = HAN[30:32]  # the next line's first two characters, after the line break between the lines
    second = "".join(conversation.turn("\n" + half + "\n"))
    assert conversation.read == "\n" + half and second[3] == "，" and "\n" not in second, second  # the verse's 3 more
    title = Conversation(chinese_model(), SampleConfig(form="五言绝句", random_seed=3))
    assert template_of("五言绝句").fits("".join(title.turn(HAN[40:43] + "\n")))  # a title: a whole poem under it


def test_the_cli_python_and_the_server_go_on_with_one_poem_alike(tmp_path):
    from .test_export import run_of

    seed = "丁\n七\n" + VERSE + HAN[40:42]
    run = run_of(telling_chinese_model(), tmp_path / "run")
    result = cli("sample", str(run), "--seed", seed, "--form", "五绝", "--random-seed", "6", "--temperature", "1.2")
    assert result.exit_code == 0, result.output
    made = generate(telling_chinese_model(), seed, form="五绝", random_seed=6, temperature=1.2)[0]
    assert result.output == made + "\n" and template_of("五言绝句").fits(made[len("丁\n七\n") :]), result.output
    # the server: tests/test_serve_forms.py::test_the_server_goes_on_with_the_poem_its_prompt_began


SHORT = HAN[40:43] + "，" + HAN[43:46] + "。"  # a line of the second template below
LINES = [VERSE + NEXT, SHORT, VERSE, HAN[20:23], HAN[40:43], "", "ab c", VERSE + NEXT + VERSE]  # verses, titles, prose


@PROPERTY
@given(st.lists(st.sampled_from(LINES), max_size=30), st.sampled_from(LINES), st.sampled_from(["", "\n"]))
def test_the_text_a_form_keeps_finds_the_poem_all_of_it_does(lines, more, end):
    """Co-writing kept every character read and written, and looked for the poem in all of it each turn;
    it keeps the end the poem needs now, which finds the same poem whatever text follows."""
    for form in (
        Constrained(template_of("五言绝句"), CHINESE),
        Constrained(template_of(template="_____，_____。\\n___，___。"), CHINESE),
    ):
        seed = "\n".join(lines) + end
        kept = form.kept(seed)
        assert len(kept) <= 2 * len(form.shape) + 1 + len(seed) - seed.rfind("\n")
        for after in (more, more + "\n", "\n" + more, more + "\n" + NEXT):
            assert form.poem_of(kept + after) == form.poem_of(seed + after), (seed, after)


def test_a_long_co_writing_keeps_only_the_text_its_form_needs():
    """The whole transcript, a list of one-character strings, grew without end, and each turn joined and
    scanned all of it: memory and time per turn grew with the session. Only a poem's worth is kept."""
    conversation = Conversation(chinese_model(), SampleConfig(form="五言绝句", random_seed=3, length=12))
    text = ""
    for turn in range(60):
        text += "".join(conversation.turn(("\n" if turn else "") + [VERSE, HAN[40:43], NEXT][turn % 3] + "\n"))
    kept = conversation.tail + "".join(conversation.unkept)
    assert len(text) > 10 * len(kept) and len(conversation.tail) <= 2 * len(conversation.form.shape) + 1


HALF = Vocab(sorted(set(HAN + "，。？！\n ,.!?;")))  # a model that learned a stray ',' '.' '!' '?' ';' as characters


@functools.cache
def half_width_model():
    return make_model(HALF, layers=1, hidden=16).eval()


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        (VERSE.replace("，", ","), VERSE),
        (VERSE.replace("，", ",") + HAN[10:12], VERSE + HAN[10:12]),
        (VERSE.replace("，", ",") + NEXT.replace("。", ".") + "\n" + HAN[20:22], VERSE + NEXT + "\n" + HAN[20:22]),
    ],
)
def test_a_half_width_mark_in_the_seeds_poem_is_read_as_the_forms_mark(typed, read):
    """A model that learned tangshi300's stray ',' took `床前明月光,` with --form 五言绝句 for no poem of the
    form and wrote a whole new one after it, on its line; a model without '.' refused `疑是地上霜.`. The
    seed's poem is read with the form's marks now, and seed and sample are the form, marks and all."""
    for model in (half_width_model(), chinese_model()):
        for text in generate(model, "丁\n七\n" + typed, form="五言绝句", num_samples=2, random_seed=3):
            assert text.startswith("丁\n七\n" + read) and template_of("五言绝句").fits(text[len("丁\n七\n") :]), text
    conversation = Conversation(half_width_model(), SampleConfig(form="五绝", random_seed=1))
    written = "".join(conversation.turn("丁\n七\n" + typed))
    assert conversation.read == "丁\n七\n" + read and template_of("五绝").fits(read + written), written


FINISHED = "end the seed with a line break for a new poem under it, or leave the finished poem out"


@pytest.mark.parametrize(
    ("seed", "shown"),
    [
        ("丁\n" + HAN[:6] + "，", f"{HAN[5]!r} where --form 五言绝句 writes '，'"),  # a six-character verse
        ("丁\n" + HAN[:5] + "!", "'!' where --form 五言绝句 writes '，'"),  # a mark the form has not there
        ("丁\n" + HAN[:5] + "？", "'？' where --form 五言绝句 writes '，'"),
        (
            "丁\n" + VERSE + NEXT + "\n" + VERSE + NEXT,
            "completes a whole --form 五言绝句; " + FINISHED,
        ),  # no break after
        (HAN[:10], f"{HAN[5]!r} where --form 五言绝句 writes '，'"),  # a long title with no line break
    ],
)
def test_a_seed_that_breaks_the_form_is_a_one_line_error(seed, shown):
    """Such a seed got a whole new poem glued to its last line, which is no poem of the form. The advice fits:
    a line that leaves the form can be written in it, a whole poem is finished ("write the form there" of it
    was wrong)."""
    for model in (half_width_model(), chinese_model()) if set(seed) <= set(CHINESE.chars) else (half_width_model(),):
        with pytest.raises(CharLMError) as error:
            generate(model, seed, form="五言绝句")
        message = str(error.value)
        assert message.startswith("seed: its last line") and "\n" not in message, message
    result = cli_sample(seed)
    assert_one_line_error(result, f"--seed: its last line {seed.split(chr(10))[-1]!r}")
    assert shown in result.output and "end the seed with a line break" in result.output, result.output
    assert ("write the form there" in result.output) == ("whole" not in shown), result.output


def cli_sample(seed: str, *options: str, model=None):
    import tempfile
    from pathlib import Path

    from .test_export import run_of

    with tempfile.TemporaryDirectory() as folder:
        run = run_of(model or half_width_model(), Path(folder) / "run")
        return cli("sample", str(run), "--seed", seed, "--form", "五言绝句", *options)


@pytest.mark.parametrize("model", [half_width_model, chinese_model])
def test_the_cli_reads_a_half_width_seed_as_the_forms_marks(model):
    """The command line checked the seed as typed before a form read it: a model without '.' refused `霜.`."""
    typed = "丁\n" + VERSE.replace("，", ",") + NEXT.replace("。", ".") + "\n"
    result = cli_sample(typed + HAN[30:32], "--random-seed", "2", model=model())
    assert result.exit_code == 0, result.output
    poem = result.output[len("丁\n") : -1]
    assert result.output.startswith("丁\n" + VERSE + NEXT + "\n" + HAN[30:32]) and template_of("五绝").fits(poem)
