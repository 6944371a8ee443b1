import collections
import itertools
import math
import re
import typing
import warnings

import pytest
import torch

from charlm import CharLM, stream
from charlm import generate as generate_one
from charlm.config import SampleConfig
from charlm.constraints import constrain
from charlm.decoding import BELOW_ONE, RowSampler, as_uniforms, inverse_cdf, nucleus
from charlm.errors import CharLMError
from charlm.generation import Batch, Healing
from charlm.sampler import Conversation, generate
from charlm.vocab import Vocab

from .conftest import make_model, state_telling


def fixed_distribution(probs: dict[str, float]) -> CharLM:
    """A model whose next-character distribution is `probs`, whatever came before."""
    vocab = Vocab(sorted(probs))
    model = make_model(vocab, layers=1, hidden=8).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([math.log(probs[c]) for c in vocab.chars]))
    return model


DISTRIBUTION = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}


def frequencies(model: CharLM, n: int = 4000, **options) -> dict[str, float]:
    text = generate(model, "a", length=n, random_seed=0, **options)[0][1:]
    counts = collections.Counter(text)
    return {c: counts[c] / n for c in model.vocab.chars}


def test_plain_sampling_follows_the_model_distribution():
    freq = frequencies(fixed_distribution(DISTRIBUTION), temperature=1.0)
    for char, p in DISTRIBUTION.items():
        assert abs(freq[char] - p) < 0.03, (char, freq)


def test_temperature_sharpens_or_flattens():
    model = fixed_distribution(DISTRIBUTION)
    assert frequencies(model, temperature=0.5)["a"] > 0.6
    assert frequencies(model, temperature=2.0)["a"] < 0.42


def test_top_k_samples_only_among_the_k_likeliest():
    freq = frequencies(fixed_distribution(DISTRIBUTION), temperature=1.0, top_k=2)
    assert freq["c"] == freq["d"] == 0 and abs(freq["a"] - 0.5 / 0.8) < 0.03


def test_top_p_keeps_exactly_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]], dtype=torch.float64)
    for top_p, kept in [(0.5, [1]), (0.51, [1, 3]), (0.8, [1, 3]), (0.81, [1, 3, 2]), (1.0, [1, 3, 2, 0])]:
        filtered = nucleus(probs, top_p)
        assert sorted(filtered.nonzero()[:, 1].tolist()) == sorted(kept), top_p
        assert torch.equal(filtered[0, kept], probs[0, kept])
    freq = frequencies(fixed_distribution(DISTRIBUTION), temperature=1.0, top_p=0.8)
    assert freq["c"] == freq["d"] == 0 and freq["a"] > 0.55


def test_top_k_1_equals_greedy_and_greedy_takes_the_likeliest(model):
    greedy = generate_one(model, "ab", length=30, greedy=True)
    assert greedy == generate_one(model, "ab", length=30, top_k=1, random_seed=5)
    assert generate(fixed_distribution(DISTRIBUTION), "a", length=20, greedy=True)[0] == "a" * 21


def test_repetition_penalty_discourages_recent_characters():
    model = fixed_distribution(DISTRIBUTION)

    def a_after(char: str, **options) -> float:
        text = generate(model, "a", length=4000, temperature=1.0, random_seed=0, **options)[0]
        after = [nxt for prev, nxt in itertools.pairwise(text) if prev == char]
        return after.count("a") / len(after)

    assert abs(a_after("a") - 0.5) < 0.05
    # window 1: only the previous character is penalized; its logit log(0.5) is tripled
    expected = 0.125 / (0.125 + 0.3 + 0.15 + 0.05)
    assert abs(a_after("a", repetition_penalty=3.0, repetition_window=1) - expected) < 0.05
    after_b = 0.5 / (0.5 + 0.3**3 + 0.15 + 0.05)  # 'b' penalized, not the seed's 'a' any more
    assert abs(a_after("b", repetition_penalty=3.0, repetition_window=1) - after_b) < 0.05


def test_presence_and_frequency_penalties_subtract_from_what_each_row_has_written():
    """OpenAI's rule, row by row in one batch: logit[j] -= count[j] * frequency + (count[j] > 0) * presence,
    count[j] being how often the row's sample wrote j, its prompt aside. charlm had no such penalties."""
    from charlm.decoding import RowSampler, penalize_counts

    vocab, prompt = 4, torch.tensor([2, 2, 2, 0])  # the prompt counts for none of them
    configs = [
        SampleConfig(greedy=True, presence_penalty=0.5, frequency_penalty=0.25),
        SampleConfig(greedy=True, presence_penalty=-2.0, frequency_penalty=0.5),
        SampleConfig(greedy=True),  # no penalty: its counts change nothing
    ]
    rows = RowSampler(3, vocab)
    for row, config in enumerate(configs):
        rows.set(row, config, row, prompt)
    forced = [[1, 0, 0], [2, 0, 1], [2, 3, 1], [2, 1, 1]]  # each row's id at each step
    for ids in forced:
        assert rows.choose(torch.nn.functional.one_hot(torch.tensor(ids), vocab) * 100.0).tolist() == ids
    written = torch.tensor([[0.0, 1, 3, 0], [2, 1, 0, 1]])  # rows 0 and 1: counts of their ids
    assert torch.equal(rows.counts[:2], written)
    logits = torch.tensor([1.0, 2.0, 2.6, 1.5]).expand(3, vocab)
    expected = torch.tensor(
        [
            [1.0, 2.0 - 0.25 - 0.5, 2.6 - 3 * 0.25 - 0.5, 1.5],  # 1.0, 1.25, 1.35, 1.5
            [1.0 - 2 * 0.5 + 2.0, 2.0 - 0.5 + 2.0, 2.6, 1.5 - 0.5 + 2.0],  # 2.0, 3.5, 2.6, 3.0
            [1.0, 2.0, 2.6, 1.5],
        ]
    )
    got = penalize_counts(logits, rows.counts[:3], rows.presence[:3], rows.frequency[:3])
    assert torch.allclose(got, expected)
    assert rows.choose(logits).tolist() == [3, 1, 2]  # greedy takes the largest penalized logit


def test_greedy_with_presence_or_frequency_penalty_writes_as_the_counts_say():
    """Greedy text under OpenAI's penalties, its logits log(0.5), log(0.3), log(0.15), log(0.05) for a-d:
    a presence penalty of 2 writes 'a' (the seed's 'a' does not count), then 'b' and 'c' as each
    written one falls by 2, then 'a' for good, every one of them written once (a: -2.69, d: -3.00).
    A frequency penalty of 1 lowers a character by 1 each time: a b a c b a c d b, each step's largest
    ahead of the next by at least 0.09."""
    model = fixed_distribution(DISTRIBUTION)
    assert generate(model, "a", length=9, greedy=True, presence_penalty=2.0)[0] == "a" + "abcaaaaaa"
    assert generate(model, "a", length=9, greedy=True, frequency_penalty=1.0)[0] == "a" + "abacbacdb"
    assert generate(model, "a", length=9, greedy=True)[0] == "a" * 10


def test_presence_and_frequency_penalties_write_fewer_repeated_characters(model):
    """A sample of an untrained model over ten characters repeats about 3.5 of its first 10 characters;
    under a presence or frequency penalty of 2 a written character is e^2 times less likely."""

    def repeats(**options) -> int:
        texts = generate(model, "", length=10, num_samples=16, random_seed=0, temperature=1.0, **options)
        return sum(len(text) - len(set(text)) for text in texts)

    free = repeats()
    assert free > 30
    assert repeats(presence_penalty=2.0) < free / 2 and repeats(frequency_penalty=2.0) < free / 2
    assert repeats(presence_penalty=-2.0) > free * 1.5


def test_temperature_list_is_cycled_per_character():
    model = fixed_distribution(DISTRIBUTION)
    text = generate(model, "", length=400, temperature=[0.05, 5.0], random_seed=1)[0]
    cold, hot = text[0::2], text[1::2]
    assert cold.count("a") == len(cold) and hot.count("a") < len(hot) * 0.5


def test_random_seed_makes_sampling_reproducible(model):
    a = generate_one(model, "ab", length=60, temperature=1.5, random_seed=3)
    assert a == generate_one(model, "ab", length=60, temperature=1.5, random_seed=3)
    assert a != generate_one(model, "ab", length=60, temperature=1.5, random_seed=4)


def test_batched_samples_equal_the_same_samples_drawn_one_at_a_time(model):
    batched = generate(model, "ab", length=80, temperature=1.3, num_samples=4, random_seed=10)
    alone = [generate(model, "ab", length=80, temperature=1.3, random_seed=10 + i)[0] for i in range(4)]
    assert batched == alone and len(set(batched)) == 4


@pytest.mark.parametrize(("cell", "hidden"), [("lstm", 48), ("gru", 48), ("gru", 256), ("rnn", 256)])
def test_a_sample_gets_the_same_bits_among_any_number_of_samples_as_in_a_servers_request(cell, hidden):
    """`--num-samples 3 --random-seed 5`'s second sample was promised to be the server's text for seed 6,
    but the sampler stepped exactly its rows, and a CPU product's last bits change with their number (here
    from 2 rows up): a draw near a boundary could tip and the texts part. Equal bits make equal texts.
    A GRU's or RNN's step (torch's own kernel) gave other bits from 9 rows up at 256 cells, padded too.
    One sample alone steps its one row (padding it cost a 2x1024 step 1.8 times its time)."""
    torch.manual_seed(0)
    model = make_model("\nabcdefghijklmnopqrstuvwxyz .,", cell=cell, hidden=hidden).eval()
    inputs = torch.randint(0, len(model.vocab), (13, 10))

    def first_row(batch: Batch, samples: int) -> torch.Tensor:
        stepper = batch.stepper
        primed = stepper.prime(torch.tensor([1, 2, 3]))
        for row in range(samples):
            stepper.load(row, *primed)
        return torch.stack([stepper.step(inputs[:samples, t])[0].clone() for t in range(10)])

    in_a_request = first_row(Batch(model, 1), 1)  # the server's: a lone request among none, padded
    for samples in (2, 3, 5, 8, 9, 13):
        assert torch.equal(
            first_row(Batch.for_options(model, SampleConfig(num_samples=samples)), samples), in_a_request
        )
    alone = Batch.for_options(model, SampleConfig(num_samples=1))
    assert alone.stepper.padded(1) == 1 and torch.allclose(first_row(alone, 1), in_a_request, atol=1e-5)


def test_stop_text_ends_a_sample_and_is_kept():
    model = fixed_distribution(DISTRIBUTION)
    texts = generate(model, "", length=500, temperature=1.0, stop="cc", num_samples=5, random_seed=0)
    assert all(t.endswith("cc") and t.count("cc") == 1 for t in texts)
    assert len({len(t) for t in texts}) > 1  # each sample stops on its own


def test_a_stop_text_the_model_can_never_write_is_warned_about():
    """`stop="ζ"` for a model without ζ was taken silently: the sample simply ran to its length. The
    characters are named as eval's and inspect's notes name them, apart ('ζ' 'η'; it said 'ζ', 'η')."""
    model = fixed_distribution(DISTRIBUTION)
    with pytest.warns(UserWarning, match=r"^stop='cζη': the model never writes 'ζ' 'η', so no sample stops there"):
        text = generate_one(model, "", length=50, stop="cζη", random_seed=0)
    assert len(text) == 50


def test_a_ban_of_a_lookalike_the_model_never_writes_is_warned_about():
    """`logit_bias={",": -100}` on a model that writes only the full-width '，' was taken silently, and
    every sample went on writing '，'."""
    model = fixed_distribution({"好": 0.5, "，": 0.49, "！": 0.01})
    lookalikes = r"^logit_bias: the model never writes ',' \(did you mean '，'\?\) '!' \(did you mean '！'\?\), so"
    with pytest.warns(UserWarning, match=lookalikes):
        text = generate_one(model, "好", length=50, logit_bias={",": -100, "!": -100}, random_seed=0)
    assert "，" in text


def test_a_ban_of_any_character_the_model_never_writes_is_said_to_change_nothing():
    """`logit_bias={"Z": -100}` for a model without Z was taken silently, where `stop="Z"` warned: one rule
    now, as for a lookalike. A key of digits is a character, not the token id an OpenAI client means by it;
    a lookalike banned in both forms gets no "did you mean" the other."""
    model = fixed_distribution({"好": 0.5, "，": 0.49, "！": 0.01})
    never = r"^logit_bias: the model never writes 'Z' '9' \(a token id is an int: 9, not '9'\) ',', so banning them"
    with pytest.warns(UserWarning, match=never):
        text = generate_one(
            model, "好", length=20, logit_bias={"Z": -100, "9": -100, ",": -100, "，": -100}, random_seed=0
        )
    assert len(text) == 21 and "，" not in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate_one(model, "好", length=5, logit_bias={"，": -100, 0: -100}, random_seed=0)  # written: banned


def test_a_ban_of_one_form_of_a_lookalike_still_hints_the_forms_it_leaves():
    """For a novel that writes both '，' and '、', `--ban ',，'` named ',' with no hint at all, as if
    every form of it were banned: the model still writes '、', which the warning now names, as it names
    every form the ban leaves; with all of them banned it names none."""
    model = fixed_distribution({"好": 0.5, "，": 0.3, "、": 0.2})
    left = r"^logit_bias: the model never writes ',' \(did you mean '、'\?\), so banning it changes nothing$"
    with pytest.warns(UserWarning, match=left):
        generate_one(model, "好", length=5, logit_bias={",": -100, "，": -100}, random_seed=0)
    with pytest.warns(UserWarning, match=r"^logit_bias: the model never writes ',', so banning it changes nothing$"):
        generate_one(model, "好", length=5, logit_bias={",": -100, "，": -100, "、": -100}, random_seed=0)


def test_a_ban_naming_one_unwritten_character_twice_names_it_once():
    """'Ω' and the ohm sign are one character to an nfkc model: the warning said "'Ω' 'Ω'"."""
    model = make_model(Vocab(list("ab "), normalize="nfkc"), layers=1, hidden=8).eval()
    with pytest.warns(UserWarning, match=r"^logit_bias: the model never writes 'Ω', so banning it changes nothing$"):
        generate_one(model, "a", length=3, logit_bias={"Ω": -100, "\u2126": -100, "a": -100}, random_seed=0)


def test_output_begins_with_the_seed_and_has_the_asked_length(model):
    text = generate_one(model, "abc", length=40, random_seed=1)
    assert text.startswith("abc") and len(text) == 43
    assert len(generate_one(model, "", length=10, random_seed=0)) == 10


def test_stream_yields_the_same_text_in_pieces(model):
    pieces = list(stream(model, "ab", length=30, random_seed=2))
    assert pieces[0] == "ab" and len(pieces) == 31
    assert "".join(pieces) == generate_one(model, "ab", length=30, random_seed=2)


def test_one_character_per_step_shortcut_gives_the_general_loops_text(model, monkeypatch):
    options = {"length": 50, "num_samples": 3, "random_seed": 4, "repetition_penalty": 1.3}
    shortcut = generate(model, "ab", **options)
    monkeypatch.setattr(Vocab, "one_char_per_id", False)  # every step through the per-sample bookkeeping
    assert generate(model, "ab", **options) == shortcut
    assert [len(text) for text in shortcut] == [52] * 3


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_sample_through_the_module(cell):
    torch.manual_seed(0)
    model = make_model("abc", cell=cell, hidden=8)
    assert len(generate_one(model, "ab", length=15, random_seed=0)) == 17


def test_conversation_carries_state(model):
    """The first turn writes what generate writes from its text, and each turn reads on from the state the
    last one left. A model whose state tells the text (`state_telling`): the untrained one's reply and final
    state were the same where the first turn primed only its text's last character."""
    model = state_telling(model)
    conversation = Conversation(model, SampleConfig(length=10, random_seed=0))
    first = "".join(conversation.turn("abc"))
    assert first == generate(model, "abc", length=10, random_seed=0)[0][len("abc") :]
    second = "".join(conversation.turn("de"))
    assert len(first) == len(second) == 10
    transcript = "abc" + first + "de" + second
    with torch.no_grad():  # the carried state is that of the whole transcript read at once
        logits, _ = model(model.vocab.encode(transcript).unsqueeze(0))
    assert torch.allclose(conversation.batch.logits[0], logits[0, -1], atol=1e-4)


def test_each_reply_of_a_conversation_counts_only_itself_for_presence_and_frequency_penalties():
    """A conversation's replies carried their counts into the next turn's: a presence penalty of 2 wrote
    'abcaaaaaa', then 'aaaaaaaaa' (the first reply's a, b and c all down by 2) and fell further each turn.
    The earlier turns are the next reply's prompt, which OpenAI's penalties leave out: every greedy reply
    of a model that ignores its context is the first one's."""
    model = fixed_distribution(DISTRIBUTION)
    for penalty, reply in (({"presence_penalty": 2.0}, "abcaaaaaa"), ({"frequency_penalty": 1.0}, "abacbacdb")):
        conversation = Conversation(model, SampleConfig(length=9, greedy=True, **penalty))
        assert ["".join(conversation.turn(text)) for text in ("a", "b", "")] == [reply] * 3


def test_a_conversations_typed_text_counts_for_the_next_replys_repetition_penalty():
    """Typed text was read by the model but not into the repetition penalty's window, which held the first
    prompt and the replies alone: typing 'dddd' (window 4, penalty 100) got 'dad', where a sample of the whole
    text got 'cba'. Each turn's text is the next reply's prompt, whose end the window counts."""
    model = fixed_distribution({"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4})  # greedy: the penalty decides
    options = {"length": 3, "greedy": True, "repetition_penalty": 100.0, "repetition_window": 4}
    conversation, text = Conversation(model, SampleConfig(**options)), ""
    for typed in ("a", "dddd", "b", ""):
        reply = "".join(conversation.turn(typed))
        text += typed
        assert reply == generate(model, text, **options)[0][len(text) :], (text, reply)
        text += reply


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0}, "temperature must be a finite number above 0"),
        ({"temperature": [0.5, -1.0]}, "temperature must be a finite number above 0"),
        ({"length": -1}, "length must be 0 or more"),
        ({"top_k": 0}, "top_k must be at least 1"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"stop": ""}, "stop must not be empty"),
        ({"precision": "fp16"}, "precision must be one of fp32, bf16"),
        ({"repetition_penalty": 0}, "repetition_penalty must be a positive number"),
        ({"presence_penalty": 2.5}, r"^presence_penalty must be between -2 and 2 \(OpenAI's range\), not 2.5$"),
        (
            {"frequency_penalty": float("nan")},
            r"^frequency_penalty must be between -2 and 2 \(OpenAI's range\), not nan$",
        ),
        ({"frequency_penalty": -3}, "frequency_penalty must be between -2 and 2"),
        ({"seed": "abz\u00e9"}, r"2 characters the model has never seen: 'z' '\u00e9'"),
        ({"tempreature": 1.0}, r"unknown sampling option tempreature"),
    ],
)
def test_bad_options_are_named(model, options, message):
    with pytest.raises(CharLMError, match=message):
        generate(model, **{"seed": "ab", **options})


def test_extreme_temperatures_and_penalties_never_draw_from_nan():
    """Issue 26 item 4: logits / 1e-39 overflowed float32, softmax was NaN and the last character was
    drawn every step. A tiny temperature is greedy decoding; a huge one, or a tiny repetition penalty,
    still gives a distribution."""
    from charlm.decoding import RowSampler

    torch.manual_seed(0)
    vocab, steps = 12, 200
    logits = [torch.randn(1, vocab) * 5 for _ in range(steps)]
    prime = torch.tensor([1, 2, 3])

    def drawn(**options) -> list[int]:
        rows = RowSampler(1, vocab)
        rows.set(0, SampleConfig(**options), 7, prime)
        return [rows.choose(step).item() for step in logits]

    greedy = [step.argmax().item() for step in logits]
    assert drawn(temperature=1e-39) == greedy  # a float32 subnormal
    assert drawn(temperature=1e-50) == greedy  # 0 in float32
    for options in ({"temperature": 1e39}, {"repetition_penalty": 1e-50}, {"repetition_penalty": 1e-39}):
        ids = drawn(**options)
        assert len(set(ids)) > 3 and ids.count(vocab - 1) < steps / 2, options
    model = make_model("abcdefgh", layers=1, hidden=16).eval()
    tiny = generate(model, "abc", length=30, temperature=1e-39, num_samples=2, random_seed=3)
    assert tiny == generate(model, "abc", length=30, greedy=True, num_samples=2, random_seed=3)


def test_a_uniform_that_rounds_to_one_never_draws_a_character_of_probability_zero():
    """float32(1 - 1e-10) is 1.0: the target was the whole total and fell past the last likely id."""
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])

    def drawn(uniforms: list[float]) -> list[int]:  # as the sampler draws: its block's uniforms, then the CDF
        return inverse_cdf(probs, as_uniforms(torch.tensor(uniforms, dtype=torch.float64)).unsqueeze(1)).tolist()

    assert drawn([1 - 1e-10, 1 - 1e-10]) == [1, 1]
    assert drawn([0.0, 0.0]) == [0, 1]
    # The uniforms are at most BELOW_ONE, so that a draw needs no clamp below the total: BELOW_ONE * total
    # is the float32 just below it, whatever the total.
    torch.manual_seed(0)
    logits = torch.randn(20000, 65) * torch.logspace(-3, 3, 20000).unsqueeze(1)
    totals = torch.cat([torch.softmax(logits, dim=-1).cumsum(dim=-1)[:, -1:], torch.rand(20000, 1) * 4 + 1e-30])
    below = torch.nextafter(totals, torch.zeros_like(totals))
    assert torch.equal(torch.tensor(BELOW_ONE) * totals, below)


def test_a_normalizing_model_prints_the_seed_it_read():
    """An nfkc model reads "宝玉道：" as "宝玉道:"; the sample printed the full-width colon and went on in
    half-width punctuation, a text the model never read."""
    model = make_model(Vocab(list("宝玉道:\n"), normalize="nfkc"), layers=1, hidden=8).eval()
    for text in (generate(model, "宝玉道：", length=5, random_seed=0)[0], "".join(stream(model, "宝玉道：", length=5))):
        assert text.startswith("宝玉道:") and len(text) == 4 + 5


def test_a_normalizing_model_stops_at_the_stop_text_as_it_writes_it():
    """An nfkc model writes "！" as "!": `--stop '！'` was matched as typed, never met, and the sample
    ran to its length (with a warning that the model never writes '！', did you mean '!')."""
    model = fixed_distribution({"好": 0.5, "!": 0.5})
    model.vocab = Vocab(model.vocab.chars, normalize="nfkc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        texts = generate(model, "好", length=200, stop="！", num_samples=4, random_seed=0)
    assert all(t.endswith("!") and t.count("!") == 1 and len(t) < 201 for t in texts), texts
    conversation = Conversation(model, SampleConfig(length=200, stop="！", random_seed=0))
    assert "".join(conversation.turn("好")).count("!") == 1
    assert "".join(conversation.turn("好")).endswith("!")


# --- logit_bias: OpenAI's, added to a sample's logits before everything else -------------------


def test_a_logit_bias_is_added_to_the_logits_before_the_temperature():
    """+log 3 on "d" triples its odds at temperature 1; at 0.5 the biased logits are doubled, so its
    weight is (3 * 0.05)^2 (a bias added after the temperature would give 3 * 0.05^2, a third as much)."""
    model = fixed_distribution(DISTRIBUTION)
    assert abs(frequencies(model, temperature=1.0, logit_bias={"d": math.log(3)})["d"] - 0.15 / 1.1) < 0.03
    weights = {c: p**2 for c, p in DISTRIBUTION.items()} | {"d": 0.15**2}
    expected = weights["d"] / sum(weights.values())
    assert abs(frequencies(model, temperature=0.5, logit_bias={"d": math.log(3)})["d"] - expected) < 0.015
    assert frequencies(model, temperature=1.0, logit_bias={"d": 100})["d"] == 1.0  # +100: in effect the only one


def test_a_sampler_whose_options_live_apart_from_the_host_chooses_what_one_copy_chooses(monkeypatch):
    """On a GPU a row's options live twice, on the host (which decides) and on the device (which computes),
    and each change is written to both: when a row joins, moves, or its temperature schedule turns, and
    as its uniforms run out. Kept apart here on the CPU, every id is the one the CPU's single copy gives."""
    from charlm.decoding import UNIFORM_BLOCK, RowSampler

    torch.manual_seed(0)
    vocab, prime = 9, torch.tensor([1, 2, 3, 1])
    bias = torch.tensor([0.0, 2.0, float("-inf"), 0.0, -1.5, 0.0, 1.0, 0.0, 0.5])
    configs = [
        SampleConfig(temperature=[0.5, 2.0, 1e-39]),
        SampleConfig(top_p=0.8, repetition_penalty=1.3, presence_penalty=0.7),
        SampleConfig(temperature=1.5, top_k=5, top_p=0.9),
        SampleConfig(greedy=True, repetition_penalty=1.2, frequency_penalty=0.4),
    ]
    one = RowSampler(6, vocab)
    monkeypatch.setattr(RowSampler, "twin", lambda self, host: host.clone())
    apart = RowSampler(6, vocab)
    assert all(apart.on_device[name] is not getattr(apart, name) for name in apart.on_device)
    for sampler in (one, apart):
        for row, config in enumerate(configs):
            sampler.set(row, config, 20 + row, prime, bias=bias if row % 2 else None)
    rows = len(configs)
    for step in range(UNIFORM_BLOCK * 2 + 50):  # through two refills of every row's uniforms
        if step == 100:  # row 0 leaves: the last takes its place
            rows -= 1
            for sampler in (one, apart):
                sampler.move(rows, 0)
        if step == 300:  # a new row in the slot left, with another row's options
            for sampler in (one, apart):
                sampler.set(rows, configs[0], 99, prime, bias=bias)
            rows += 1
        logits = torch.randn(rows, vocab) * 3
        assert torch.equal(apart.choose(logits), one.choose(logits)), step


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 1.0},
        {"temperature": 3e38},  # a ban added as -100 (or a clamped -inf) would be undone by this
        {"temperature": 3e38, "repetition_penalty": 1e-50},
        {"temperature": 1e-39},
        {"greedy": True},
        {"top_k": 1},
        {"top_p": 0.5},
        {"temperature": [0.2, 50.0]},
    ],
)
def test_a_banned_character_is_never_written_whatever_the_decoding(options):
    model = fixed_distribution(DISTRIBUTION)
    text = generate(model, "b", length=1500, random_seed=0, logit_bias={"a": -100, 2: -100}, **options)[0]
    assert set(text) <= {"b", "d"} and len(text) == 1501, options


def test_a_rows_bias_is_its_own_and_moves_with_it_when_another_row_leaves():
    """The server removes a finished row by moving the last into its place: the bias must go along,
    and a row later set in the slot a biased row left must not inherit it."""
    from charlm.decoding import RowSampler

    torch.manual_seed(0)
    vocab, prime = 7, torch.tensor([1, 2])
    bias = torch.tensor([0.0, 2.0, float("-inf"), 0.0, -1.5, 0.0, 1.0])
    logits = [torch.randn(3, vocab) * 3 for _ in range(300)]
    configs = [SampleConfig(), SampleConfig(temperature=1.2), SampleConfig(top_k=4, repetition_penalty=1.3)]
    rows, alone = RowSampler(3, vocab), [RowSampler(1, vocab) for _ in configs]
    for row, config in enumerate(configs):
        rows.set(row, config, 10 + row, prime, bias=bias if row == 2 else None)
        alone[row].set(0, config, 10 + row, prime, bias=bias if row == 2 else None)
    placed = [0, 1, 2]  # which sample each row is
    for step, step_logits in enumerate(logits):
        if step == 100:  # sample 0 leaves: sample 2 (the biased one) moves into row 0
            rows.move(2, 0)
            placed = [2, 1]
        if step == 200:  # a new unbiased sample takes the slot the biased one left
            rows.set(2, configs[0], 99, prime)
            alone[0] = RowSampler(1, vocab)
            alone[0].set(0, configs[0], 99, prime)
            placed = [2, 1, 0]
        chosen = rows.choose(step_logits[: len(placed)]).tolist()
        for row, sample in enumerate(placed):
            expected = alone[sample].choose(step_logits[row : row + 1]).item()
            assert chosen[row] == expected, (step, row)
            assert sample != 2 or chosen[row] != 2  # the banned id


@pytest.mark.parametrize(
    ("logit_bias", "message"),
    [
        ({"e": 5}, r"logit_bias: the model never writes 'e'"),
        ({"ab": 1}, "logit_bias keys are single characters or token ids, not 'ab'"),
        ({4: 1}, r"logit_bias: token id 4 is not one of the model's \(0 to 3\)"),
        ({-1: 1}, r"logit_bias keys are characters or token ids \(0 or more\), not -1"),
        ({"a": 101}, r"logit_bias\['a'\] must be between -100 and 100 \(-100 bans it\), not 101"),
        ({"a": float("nan")}, r"logit_bias\['a'\] must be between -100 and 100"),
        ({"a": -100, 0: 5}, "logit_bias gives token 0 twice"),
        (dict.fromkeys("abcd", -100), "logit_bias bans every token the model has"),
        ([("a", 1)], "logit_bias must be a dict of strings or integers to numbers or None"),
        ({"a": "1"}, "logit_bias must be a dict"),
    ],
)
def test_a_logit_bias_that_cannot_be_used_is_named(logit_bias, message):
    with pytest.raises(CharLMError, match=message):
        generate(fixed_distribution(DISTRIBUTION), "a", length=5, logit_bias=logit_bias)


def test_a_logit_bias_leaving_only_pieces_that_write_no_text_is_refused_in_python_too():
    """The server refused a ban that leaves a sentencepiece model only <unk>, <s> and </s>; charlm.generate
    took it and wrote nothing for 4 steps a character asked, then gave back the seed alone."""
    from charlm.pieces import PieceVocab, train_model

    torch.manual_seed(0)
    vocab = PieceVocab(train_model(["the quick brown fox\n" * 20], "bpe", 280), normalize="none")
    model = make_model(vocab, layers=1, hidden=8).eval()
    ban = {i: -100 for i, piece in enumerate(vocab.pieces) if piece and not vocab.processor.is_unknown(i)}
    with pytest.raises(CharLMError, match=r"^logit_bias bans every token that writes text \(what it leaves"):
        generate(model, "the", length=5, logit_bias=ban)
    del ban[vocab.processor.piece_to_id("\n")]
    assert set(generate(model, "the", length=5, logit_bias=ban, random_seed=1)[0][3:]) <= {"\n", "\ufffd"}


def test_a_byte_fallback_model_writes_whole_characters_never_a_broken_one():
    """A sentencepiece model spells a character it has no piece for as UTF-8 bytes, and drew those bytes
    freely: a lead byte then a whole piece, a stray continuation byte. `charlm sample` printed U+FFFD
    for each broken character (22 in 300 characters of a young Hongloumeng model)."""
    from charlm.pieces import PieceVocab, train_model

    torch.manual_seed(0)
    vocab = PieceVocab(train_model(["春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。\n" * 20], "bpe", 300), "none")
    model = make_model(vocab, layers=1, hidden=8).eval()  # untrained: any piece, any byte, at random
    for text in generate(model, "春", length=200, temperature=3.0, random_seed=1, num_samples=2):
        assert "\ufffd" not in text
        assert any(ord(c) > 0x7FF and not vocab.knows(c) for c in text)  # characters spelled in bytes still come
    pieces = list(stream(model, "春", length=100, temperature=3.0, random_seed=2))
    assert "\ufffd" not in "".join(pieces)


def test_a_ban_is_of_the_character_the_model_writes_after_its_normalization():
    """A decomposed 'é' (e + U+0301, as a macOS terminal types it) is one character to ban: --ban
    split it into 'e' and the mark and banned every 'e'. '10' is told that a token id is an int."""
    from charlm.decoding import characters

    assert characters("e\u0301a\u0301\u0323b") == ["e\u0301", "a\u0301\u0323", "b"]
    nfc = make_model(Vocab(list("abeé"), normalize="nfc"), layers=1, hidden=8).eval()
    text = generate(nfc, "a", length=400, random_seed=0, temperature=3.0, logit_bias={"e\u0301": -100})[0]
    assert "é" not in text and "e" in text
    nfkc = make_model(Vocab(list("afi"), normalize="nfkc"), layers=1, hidden=8).eval()
    for key in ("1", "10"):
        with pytest.raises(CharLMError, match=rf"a token id is an int: {key}, not '{key}'"):
            generate(nfkc, "a", length=5, logit_bias={key: 5})


def test_a_ban_of_a_character_an_nfkc_model_reads_as_several_says_so():
    """`--ban '…'` on an nfkc model (README.zh's advice for half-width punctuation) said "logit_bias keys
    are single characters or token ids, not '…'", of a single character: the model reads it as "..."."""
    model = fixed_distribution({"好": 0.5, ".": 0.5})
    model.vocab = Vocab(model.vocab.chars, normalize="nfkc")
    message = r"^logit_bias: '…' is '...' to this model \(its text is NFKC-normalized\); give those"
    with pytest.raises(CharLMError, match=message):
        generate(model, "好", length=5, logit_bias={"…": -100})
    with pytest.warns(UserWarning, match="^logit_bias: the model never writes '。'"):  # '．' is its '.'
        text = generate(model, "好", length=50, logit_bias={"。": -100, "．": -100}, random_seed=0)[0]
    assert set(text) == {"好"}


def test_a_ban_that_normalizes_to_what_looks_the_same_says_their_code_points():
    """An e and two acutes is an é and one acute to an NFC model: the message read "'é́' is 'é́' to this
    model", two quotes that look the same; their code points tell them apart."""
    model = make_model(Vocab(list("abé\u0301"), normalize="nfc"), layers=1, hidden=8).eval()
    message = "logit_bias: 'e\u0301\u0301' (U+0065 U+0301 U+0301) is 'é\u0301' (U+00E9 U+0301) to this model"
    with pytest.raises(CharLMError, match=re.escape(message)):
        generate(model, "a", length=5, logit_bias={"e\u0301\u0301": -100})
    with pytest.raises(CharLMError, match=re.escape("logit_bias: '…' is '...' to this model")):  # unlike: no U+
        generate(make_model(Vocab(list("a."), normalize="nfkc"), layers=1, hidden=8).eval(), "a", logit_bias={"…": -1})


def test_a_logit_bias_by_character_and_by_token_id_is_the_same_bias():
    model = fixed_distribution(DISTRIBUTION)
    by_char = generate(model, "a", length=300, random_seed=4, num_samples=2, logit_bias={"a": -100, "d": 2.5})
    assert by_char == generate(model, "a", length=300, random_seed=4, num_samples=2, logit_bias={0: -100, 3: 2.5})
    assert by_char != generate(model, "a", length=300, random_seed=4, num_samples=2)


def test_a_lone_streams_step_makes_few_torch_calls(model):
    """A lone stream's step is small tensors and Python around them, so its torch calls are its cost: a
    2x512 stream ran at half the rate of its matrix products alone. A step made 99 calls: it sliced the
    step's buffers anew, re-entered inference mode, and ran every decoding stage (bias, penalty, top-k,
    top-p, greedy) to find, in a dozen tensor reductions, that no row used it: 53.5 then. A lone row's
    uniform then took a gather and its count's updates, its draw a clamp below the total: 41.5 then. The
    step's logits were sliced anew twice a step and the ids' device and dtype read each time: 37.5 now."""
    from torch.overrides import TorchFunctionMode

    class Counted(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Counted.calls += 1
            return func(*args, **(kwargs or {}))

    def calls_per_character(**options) -> float:
        counts = []
        for length in (0, 100):  # the difference is the steps'
            Counted.calls = 0
            with Counted():
                generate(model, "ab", length=length, random_seed=0, **options)
            counts.append(Counted.calls)
        return (counts[1] - counts[0]) / 100

    assert calls_per_character() <= 40
    assert calls_per_character(greedy=True) <= 29


def test_rows_joining_and_leaving_choose_what_each_chooses_alone():
    """`choose` decides once which stages the live rows need (`StepPlan`), not every step: the plan must
    follow rows that join, move, leave from the end, and change temperature. A greedy row's uniforms
    are not drawn while every row is greedy for good; a penalized row keeps its recent ids when it joins
    rows that kept none, a row with presence and frequency penalties counts its ids from its own start
    when it joins rows that counted none; a lone row's uniforms, counted on the host alone, are where
    rows joining it look."""
    from charlm.decoding import RowSampler

    torch.manual_seed(0)
    vocab, prime = 9, torch.tensor([1, 2, 3, 1])
    bias = torch.tensor([0.0, 2.0, float("-inf"), 0.0, -1.5, 0.0, 1.0, 0.0, 0.5])
    configs = {
        "greedy": SampleConfig(greedy=True),
        "tiny": SampleConfig(temperature=1e-50),  # greedy in float32
        "plain": SampleConfig(temperature=1.3),
        "penalized": SampleConfig(repetition_penalty=1.5),
        "counted": SampleConfig(presence_penalty=1.5, frequency_penalty=-0.3),
        "top-k": SampleConfig(top_k=3),
        "schedule": SampleConfig(temperature=[0.7, 1e-50, 2.0]),
        "nucleus": SampleConfig(top_p=0.6),
    }
    # step: what happens, in order: a sample joins at the end, or row r leaves (the last moves into its place)
    events = {0: ["greedy", "tiny"], 40: ["plain"], 90: [0], 130: ["penalized"], 180: [0], 200: ["schedule"]}
    events |= {260: [2, "nucleus"], 300: [0], 330: ["counted"], 360: ["penalized"], 380: [3, "top-k"]}
    events |= {420: [1, 1], 470: [1]}
    # a lone row counts its uniforms on the host alone: rows join it, past its block's end, and leave it again
    events |= {560: ["plain"], 620: [0], 700: ["top-k", "penalized"], 790: [1, 1]}
    rows, alone, placed = RowSampler(4, vocab), {}, []
    for step in range(1100):
        for event in events.get(step, []):
            if isinstance(event, str):
                name = f"{event} {step}"
                seed = 10 + step
                use_bias = bias if event in ("plain", "nucleus") else None
                rows.set(len(placed), configs[event], seed, prime, bias=use_bias)
                alone[name] = RowSampler(1, vocab)
                alone[name].set(0, configs[event], seed, prime, bias=use_bias)
                placed.append(name)
            else:
                last = len(placed) - 1
                if event != last:
                    rows.move(last, event)
                placed[event] = placed[last]
                placed.pop()
        logits = torch.randn(len(placed), vocab) * 3
        chosen = rows.choose(logits).tolist()
        assert len(chosen) == len(placed)
        for row, name in enumerate(placed):
            assert chosen[row] == alone[name].choose(logits[row : row + 1]).item(), (step, name)


def test_a_row_sampler_is_hinted_to_be_steered_by_a_healing_as_by_a_template():
    """`Batch.join` hands `RowSampler.set` a row's template cursor or its seed's `Healing`, and `follow` a
    cursor: hinted `Cursor | None` alone, a reader (or a type checker) took the healing for a mistake. What
    the hints name is what both are, checked at run time: what `RowSampler` reads of them."""
    vocab = Vocab("ab \n")
    steers = [constrain(SampleConfig(template="__ _"), vocab).cursor(0), Healing(vocab, "ab")]
    for method in (RowSampler.set, RowSampler.follow):
        hinted = [kind for kind in typing.get_args(typing.get_type_hints(method)["cursor"]) if kind is not type(None)]
        assert len(hinted) == 1, f"{method.__qualname__}: {hinted}"
        for steer in steers:
            assert isinstance(steer, hinted[0]), f"{method.__qualname__} is hinted {hinted[0]}, handed {steer}"
