import dataclasses

import numpy as np
import pytest
import torch

from charlm.cells import gru_cell, lstm_cell, rnn_cell
from charlm.config import Config
from charlm.device import cpu_core_dtype
from charlm.errors import CharLMError
from charlm.model import CharLM, ModelConfig, auto_head_reason, detach_state, head_cutoffs
from charlm.model_inputs import long_ids
from charlm.scoring import surprise
from charlm.tracing import trace
from charlm.vocab import UNSEEN, Vocab

from .conftest import make_model


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forward_takes_and_returns_state_and_carrying_it_equals_one_long_pass(cell):
    torch.manual_seed(0)
    model = make_model("abcdef", cell=cell).eval()
    ids = torch.randint(0, 6, (3, 20))
    whole, _ = model(ids)
    first, state = model(ids[:, :12])
    second, _ = model(ids[:, 12:], state)
    assert whole.shape == (3, 20, 6)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)


def test_detached_state_keeps_values_and_drops_history():
    model = make_model("ab", hidden=8)
    _, state = model(torch.zeros(2, 5, dtype=torch.long))
    assert all(s.grad_fn is not None for s in state)
    detached = detach_state(state)
    assert all(d.grad_fn is None and torch.equal(d, s) for d, s in zip(detached, state))


def test_weights_start_as_torch_rnn_modules_start_them():
    model = make_model("abc", hidden=64)
    bound = 1 / 64**0.5
    for name, p in model.core.named_parameters():
        assert p.abs().max() <= bound, name


def test_no_bidirectional_core():
    assert not make_model("ab", hidden=8).core.bidirectional


def test_the_model_carries_its_architecture_not_the_training_options():
    model = make_model("abc", cell="gru", layers=3, hidden=8, dropout=0.2)
    assert model.config == ModelConfig("gru", 3, 8, 0.2, 3)
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config
    # of a run's options only those that shape the modules: none of the optimizer's, the windows' or the budget's
    shared = {f.name for f in dataclasses.fields(ModelConfig)} & {f.name for f in dataclasses.fields(Config)}
    assert shared == {"cell", "layers", "hidden", "dropout", "vocab_size"}
    with pytest.raises(CharLMError) as refused:
        CharLM(ModelConfig("lstm", 1, 8, 0.0, 4), Vocab("abc"))
    assert str(refused.value) == (
        "charlm.CharLM: config.vocab_size is 4 but the vocabulary has 3 ids: give the config and vocabulary of one "
        "model (model.config with model.vocab), or a config made for this vocabulary (vocab_size=len(vocab))"
    )
    with pytest.raises(CharLMError, match="unknown cell 'transformer'"):
        ModelConfig.from_dict({**model.config.to_dict(), "cell": "transformer"})


def zipf_counts(size: int) -> torch.Tensor:
    """Character counts falling off as 1/rank, as in a novel, in a shuffled id order."""
    counts = (10_000 / torch.arange(1, size + 1)).round().long() + 1
    return counts[torch.randperm(size, generator=torch.Generator().manual_seed(0))]


def test_big_vocabularies_get_an_adaptive_head_whose_clusters_follow_frequency():
    assert head_cutoffs("auto", zipf_counts(65)) == ()
    assert head_cutoffs("full", zipf_counts(4000)) == ()
    counts = zipf_counts(4000)
    cutoffs = head_cutoffs("auto", counts)
    assert len(cutoffs) == 2 and 0 < cutoffs[0] < cutoffs[1] < 4000
    share = torch.sort(counts, descending=True).values.cumsum(0) / counts.sum()
    assert share[cutoffs[0] - 1] >= 0.9 > share[cutoffs[0] - 2]  # the frequent cluster covers 90% of the text
    assert head_cutoffs("adaptive", zipf_counts(65))  # asked for, a small vocabulary gets one too


@pytest.mark.parametrize(("distinct", "chosen"), [(999, "full"), (1000, "adaptive"), (4447, "adaptive")])
def test_the_plan_says_what_head_auto_chooses(distinct, chosen):
    cutoffs = head_cutoffs("auto", zipf_counts(distinct))
    assert bool(cutoffs) == (chosen == "adaptive")
    reason = auto_head_reason(cutoffs, distinct)
    assert reason.startswith(f"--head auto chose {chosen}: a vocabulary of {distinct:,} characters"), reason


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_both_heads_give_a_distribution_and_its_exact_negative_log_likelihood(head):
    torch.manual_seed(0)
    vocab = Vocab([chr(0x4E00 + i) for i in range(300)])
    counts = zipf_counts(300)
    config = ModelConfig("lstm", 2, 16, 0.0, 300, head_cutoffs("adaptive", counts) if head == "adaptive" else ())
    model = CharLM(config, vocab).eval()
    if head == "adaptive":
        model.head.set_frequencies(counts)
        assert model.head.rank[counts.argmax()] == 0  # the most frequent id is ranked first
    ids, targets = torch.randint(0, 300, (3, 9)), torch.randint(0, 300, (3, 9))
    logits, state = model(ids)
    nats, same_state = model(ids, None, targets)
    assert torch.allclose(torch.softmax(logits, -1).sum(-1), torch.ones(3, 9), atol=1e-5)
    expected = -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert nats.shape == (3, 9) and torch.allclose(nats, expected, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(state, same_state))


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_both_heads_train_under_autocast_and_score_in_fp32(head):
    """Under bf16 autocast (a CPU's `--precision bf16`; a GPU's autocast fails the same way) the adaptive
    head used to stop with an index_copy_ dtype error. Its losses are fp32 and close to the fp32 pass."""
    torch.manual_seed(0)
    counts = zipf_counts(300)
    config = ModelConfig("lstm", 2, 16, 0.0, 300, head_cutoffs(head, counts))
    model = CharLM(config, Vocab([chr(0x4E00 + i) for i in range(300)]))
    ids, targets = torch.randint(0, 300, (3, 9)), torch.randint(0, 300, (3, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nats, _ = model(ids, None, targets)
        logits, _ = model(ids)
    nats.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.core.parameters())
    assert torch.isfinite(logits).all()
    full_precision, _ = model(ids, None, targets)
    assert torch.allclose(nats.float(), full_precision, atol=0.1)
    if head == "adaptive":
        assert nats.dtype == logits.dtype == torch.float32


def adaptive_or_full(head: str) -> CharLM:
    """A small untrained model over 300 CJK characters with `head`, in eval mode."""
    torch.manual_seed(0)
    counts = zipf_counts(300)
    config = ModelConfig("lstm", 2, 16, 0.0, 300, head_cutoffs(head, counts))
    return CharLM(config, Vocab([chr(0x4E00 + i) for i in range(300)])).eval()


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_a_state_from_an_autocast_pass_and_ids_of_any_integer_dtype_go_on_outside_it(head):
    """A state read under autocast is bf16 (fp16 under a GPU's; fp32 on a CPU whose oneDNN has no bf16
    LSTM), and fed back outside it stopped the LSTM (oneDNN's "could not create a primitive descriptor";
    cuDNN's "not the same dtype"); int16, uint8 and uint16 ids stopped the embedding, int32 targets the full
    head's loss, and uint8 targets the adaptive head's, which read them as a mask."""
    model = adaptive_or_full(head)
    ids, targets = torch.randint(0, 256, (3, 9)), torch.randint(0, 256, (3, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, state = model(ids)
    assert state[0].dtype == cpu_core_dtype(torch.nn.LSTM, torch.bfloat16)
    low_state = tuple(s.bfloat16() for s in state)  # as a bf16 CPU's autocast pass gives it, on any CPU
    logits, _ = model(ids, low_state)
    expected, _ = model(ids, tuple(s.float() for s in low_state))
    assert logits.dtype == torch.float32 and torch.equal(logits, expected)
    nats, _ = model(ids, None, targets)
    for dtype in (torch.int32, torch.int16, torch.uint8, torch.uint16):
        assert torch.equal(model(ids.to(dtype))[0], model(ids)[0]), dtype
        assert torch.equal(model(ids, None, targets.to(dtype))[0], nats), dtype
    for dtype in (torch.float32, torch.bool):
        with pytest.raises(CharLMError, match=r"^the model's ids must be integers"):
            model(ids.to(dtype))


@pytest.mark.parametrize("kind", ["array", "list"])
def test_ids_given_as_an_array_or_a_list_are_told_to_become_a_tensor(kind):
    """`model(ids.numpy())` (or a list of ids) raised "AttributeError: 'numpy.ndarray' object has no
    attribute 'is_floating_point'" from the check meant to explain what ids the model takes."""
    model = adaptive_or_full("full")
    ids = torch.randint(0, 256, (3, 9))
    given = ids.numpy() if kind == "array" else ids.tolist()
    for call, name in ((lambda: model(given), "ids"), (lambda: model(ids, None, given), "targets")):
        with pytest.raises(
            CharLMError,
            match=rf"^the model's {name} must be a tensor of integers, not a \w+: torch\.as_tensor\({name}\)",
        ):
            call()
    assert torch.equal(model(torch.as_tensor(given))[0], model(ids)[0])  # the advice, followed, works


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_a_model_cast_to_bf16_or_fp16_scores_with_either_head(head, dtype):
    """`model.to(torch.bfloat16)` (or `.half()`, a GPU user's way to halve a model) ran with a full head,
    and with an adaptive one stopped: the head cast its input to fp32 against weights of the cast dtype."""
    model = adaptive_or_full(head)
    ids, targets = torch.randint(0, 300, (3, 9)), torch.randint(0, 300, (3, 9))
    exact, _ = model(ids, None, targets)
    model.to(dtype)
    nats, _ = model(ids, None, targets)
    logits, _ = model(ids)
    assert torch.isfinite(logits).all() and torch.allclose(nats.float(), exact, atol=0.1)


def refusal(function, *args) -> str:
    """The one-line CharLMError `function(*args)` raises, where torch's own error from deep inside stood."""
    with pytest.raises(CharLMError) as raised:
        function(*args)
    assert "\n" not in str(raised.value), raised.value
    return str(raised.value)


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_ids_the_model_cannot_read_are_refused_naming_ids(head):
    """An empty row stopped in the LSTM ("Expected sequence length to be larger than 0 in RNN"), a 0-D or
    3-D tensor as "Expected input to be 2D or 3D, got 1D/4D", and an id outside the vocabulary in the
    embedding's "index out of range in self"; -1 reads as a character never seen only in eval mode."""
    model = adaptive_or_full(head)
    cases = {
        torch.zeros(1, 0, dtype=torch.long): "the model's ids hold no id to read (shape (1, 0))",
        torch.zeros(0, dtype=torch.long): "the model's ids hold no id to read (shape (0,))",
        torch.tensor(3): "not 0 dimensions (shape ()); one id is ids.view(1, 1)",
        torch.zeros(2, 3, 4, dtype=torch.long): "must be (batch, time), or (time,) for one row, not 3 dimensions",
        torch.tensor([[1, 300]]): "the model's ids must be from 0 to 299 (len(model.vocab) - 1), or -1",
        torch.tensor([[10**12]]): "not 1000000000000: model.vocab.encode(text) gives a text's ids",
        torch.tensor([[-2, 1]]): "not -2: model.vocab.encode(text)",
    }
    for ids, message in cases.items():
        assert message in refusal(model, ids), ids
    assert model(torch.tensor([[-1, 1]]))[0].shape == (1, 2, 300)  # a character never seen, in eval mode
    model.train()
    assert "not -1; -1, a character never seen, is read only by a model in eval mode" in refusal(
        model, torch.tensor([[-1, 1]])
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_state_not_the_models_own_is_refused_naming_state(cell):
    """A state carried from a batch of another size, an LSTM's h without its c or a list of them met
    torch's "Expected hidden[0] size", "IndexError: index 1 is out of bounds" or "'list' object has no
    attribute 'to'"."""
    model = make_model("abc", cell=cell, layers=2, hidden=8).eval()
    ids = torch.zeros(1, 4, dtype=torch.long)
    _, three = model(torch.zeros(3, 4, dtype=torch.long))
    h = three[0] if cell == "lstm" else three
    wanted = "(h, c), two tensors of shape (2, 1, 8)" if cell == "lstm" else "h, a tensor of shape (2, 1, 8)"
    given = {
        "from a batch of 3": (three, "(2, 3, 8)"),
        "h alone, or (h, c) of a GRU": (h[:, :1] if cell == "lstm" else (h[:, :1], h[:, :1]), "(2, 1, 8)"),
        "a list": ([h[:, :1], h[:, :1]], "not a list of 2"),
        "a number": (3, "not 3"),
    }
    for name, (state, shown) in given.items():
        message = refusal(model, ids, state)
        assert f"the model's state must be None or {wanted} (layers, batch, hidden)" in message, name
        assert shown in message, name
    _, one = model(ids)
    assert model(ids, one)[0].shape == (1, 4, 3)  # what the model returned, it takes


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_targets_not_one_per_id_or_outside_the_vocabulary_are_refused_naming_targets(head):
    """Targets of another shape than the ids met "Expected input batch_size (7) to match target
    batch_size (3)", and one outside the vocabulary "IndexError: Target 300 is out of bounds"."""
    model = adaptive_or_full(head)
    ids = torch.randint(0, 300, (2, 5))
    assert "the model's targets must have the ids' shape (2, 5), one next id for each, not (2, 3)" in refusal(
        model, ids, None, ids[:, :3]
    )
    for bad in (300, -1):
        message = refusal(model, ids, None, torch.full_like(ids, bad))
        assert f"the model's targets must be from 0 to 299 (len(model.vocab) - 1), not {bad}:" in message
    with pytest.raises(CharLMError, match=r"^the model's targets must be a tensor of integers, not a list"):
        model(ids, None, ids.tolist())


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_one_row_of_ids_scores_its_targets_as_a_batch_of_one_does(head):
    """ids of one dimension, (time,), read as one row, but given targets the full head flattened its
    (time, vocab) logits to one dimension: "For 1D input, 1D target must have size 1"."""
    model = adaptive_or_full(head)
    ids, targets = torch.randint(0, 300, (7,)), torch.randint(0, 300, (7,))
    nats, _ = model(ids, None, targets)
    batched, _ = model(ids[None], None, targets[None])
    assert nats.shape == (7,) and torch.allclose(nats, batched[0])


def test_ids_moving_to_another_device_are_checked_on_the_cpu_first():
    """On a GPU an id out of range is a device-side assert that leaves CUDA unusable for the process:
    ids the caller gives on the CPU to a model elsewhere are checked before they move (where they
    already are on the model's device, as in training and sampling, nothing is checked up front)."""
    meta = torch.device("meta")  # a device other than the CPU, on any machine
    with pytest.raises(CharLMError, match=r"^the model's ids must be from 0 to 9 .* not 10:"):
        long_ids(torch.tensor([[1, 10]]), meta, UNSEEN, 10)
    with pytest.raises(CharLMError, match=r"^the model's targets must be from 0 to 9 .* not -1:"):
        long_ids(torch.tensor([[-1, 1]]), meta, 0, 10, "targets")
    assert long_ids(torch.tensor([[-1, 9]]), meta, UNSEEN, 10).device == meta


def test_a_model_is_built_only_of_a_model_config_and_a_vocabulary_it_can_be_built_of():
    """charlm.CharLM(config, vocab) with a config of hidden=-1 stopped in torch ("Trying to create tensor
    with negative dimension -1"), an unknown cell as "KeyError: 'xyz'", a dict as "'dict' object has no
    attribute 'vocab_size'"; dropout=nan built a model whose dropout was nan, and a string for the
    vocabulary a model that stopped once asked to sample."""
    vocab, config = Vocab("abc"), ModelConfig("lstm", 1, 8, 0.0, 3)
    cases = [
        (dataclasses.replace(config, hidden=-1), vocab, "no model can be built of this config: hidden must be an"),
        # in range, but no int: "layers must be from 1 to 64, not np.int64(1)" read as if 1 were out of it
        (
            dataclasses.replace(config, layers=np.int64(1)),
            vocab,
            "layers must be an integer from 1 to 64, not np.int64(1)",
        ),
        (dataclasses.replace(config, hidden=8.0), vocab, "hidden must be an integer from 1 to 16384, not 8.0"),
        (dataclasses.replace(config, cell="xyz"), vocab, "unknown cell 'xyz' (one of lstm, gru, rnn)"),
        (dataclasses.replace(config, dropout=float("nan")), vocab, "dropout must be in [0, 1), not nan"),
        (dataclasses.replace(config, head_cutoffs=(2, 1)), vocab, "head_cutoffs [2, 1] are not rising ranks"),
        (config.to_dict(), vocab, "config must be a charlm.ModelConfig, not {'cell': 'lstm', "),
        (None, vocab, "config must be a charlm.ModelConfig, not None"),
        (config, "abc", "vocab must be a vocabulary, a model's .vocab (charlm.vocab.Vocab(characters) makes one), not"),
    ]
    for given, given_vocab, message in cases:
        assert "charlm.CharLM: " in refusal(CharLM, given, given_vocab)
        assert message in refusal(CharLM, given, given_vocab), message
    assert CharLM(ModelConfig.from_dict(config.to_dict()), vocab).config == config  # the advice, followed, works


def step_reference(model, text: str) -> dict:
    """Each layer stepped one character at a time with the reference cells (cells.py), after reading a
    newline first as `trace` does: per layer, lists over the text of h, c and the gates."""
    ids = model.vocab.encode("\n" + text)
    inputs, hidden, layers = model.embed(ids)[:, None], model.config.hidden, []
    for layer in range(model.config.layers):
        weights = [getattr(model.core, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c, record = torch.zeros(1, hidden), torch.zeros(1, hidden), {"h": [], "c": [], "gates": []}
        for x in inputs:
            if model.config.cell == "lstm":
                h, c, gates = lstm_cell(x, h, c, *weights)
            elif model.config.cell == "gru":
                h, gates = gru_cell(x, h, *weights)
            else:
                h, gates = rnn_cell(x, h, *weights), None
            named = {} if gates is None else gates._asdict()  # by the reference cell's own names
            record["h"].append(h[0]), record["c"].append(c[0]), record["gates"].append(named)
        inputs = torch.stack(record["h"])[:, None]
        layers.append({key: values[1:] for key, values in record.items()})  # drop the newline's step
    return layers


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_trace_holds_the_gates_and_states_the_reference_cells_compute(cell):
    torch.manual_seed(3)
    model = make_model("\nabcdefgh ", cell=cell, layers=2, hidden=12).eval()
    text = "abc defg\nhead bag\nfade"
    traced = trace(model, text)
    with torch.no_grad():
        reference = step_reference(model, text)
    steps = len(text)
    assert traced.hidden.shape == (2, steps, 12) and traced.tokens == list(text)
    assert list(traced.gates) == list(reference[0]["gates"][0])  # the reference cell's gates, in its order
    for layer, expected in enumerate(reference):
        assert np.allclose(traced.hidden[layer], torch.stack(expected["h"]).numpy(), atol=1e-5)
        for name in traced.gates:
            gate = torch.stack([gates[name][0] for gates in expected["gates"]]).numpy()
            assert traced.gates[name].shape == (2, steps, 12)
            assert np.allclose(traced.gates[name][layer], gate, atol=1e-5), name
        if cell == "lstm":
            assert np.allclose(traced.cells[layer], torch.stack(expected["c"]).numpy(), atol=1e-5)
    if cell == "lstm":  # h = o * tanh(c), the identity that ties the computed gates to torch's outputs
        assert np.allclose(traced.hidden, traced.gates["output"] * np.tanh(traced.cells), atol=1e-5)
    else:
        assert traced.cells is None


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_traced_top_layer_is_what_the_fused_module_outputs(cell):
    torch.manual_seed(4)
    model = make_model("\nabcdefgh ", cell=cell, layers=3, hidden=16).eval()
    text = "bad cafe\nhag " * 5
    traced = trace(model, text)
    with torch.no_grad():
        outputs, state = model.core(model.embed(model.vocab.encode("\n" + text))[None])
    assert np.allclose(traced.hidden[-1], outputs[0, 1:].numpy(), atol=1e-5)
    final_h = state[0] if cell == "lstm" else state
    assert np.allclose(traced.hidden[:, -1], final_h[:, 0].numpy(), atol=1e-5)
    if cell == "lstm":
        assert np.allclose(traced.cells[:, -1], state[1][:, 0].numpy(), atol=1e-5)


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_trace_probabilities_are_the_softmax_of_the_models_logits_before_each_character(head):
    torch.manual_seed(5)
    vocab = Vocab(["\n", *(chr(0x4E00 + i) for i in range(60))])
    cutoffs = head_cutoffs("adaptive", zipf_counts(61)) if head == "adaptive" else ()
    model = CharLM(ModelConfig("lstm", 2, 16, 0.0, 61, cutoffs), vocab).eval()
    text = "".join(chr(0x4E00 + i) for i in torch.randint(0, 60, (30,)).tolist())
    with torch.no_grad():
        logits, _ = model(vocab.encode("\n" + text)[None])
    expected = torch.softmax(logits[0, :-1], -1).numpy()  # after the newline and each character but the last
    traced = trace(model, text)
    assert traced.probs.shape == (30, 61) and np.allclose(traced.probs, expected, atol=1e-5)
    chosen = expected[np.arange(30), traced.ids]
    assert np.allclose(traced.bits, -np.log2(chosen), atol=1e-4)
    assert traced.bpc == pytest.approx(-np.log2(chosen).mean(), abs=1e-4)
    cold = trace(model, text, context="", probs=False)  # nothing read before the first character
    assert np.isnan(cold.bits[0]) and not np.isnan(cold.bits[1:]).any() and cold.probs is None


def test_trace_leaves_the_model_in_its_mode_and_works_where_dropout_is_on():
    torch.manual_seed(6)
    model = make_model("\nab", layers=2, hidden=8, dropout=0.5).train()
    first, second = trace(model, "abba\nab"), trace(model, "abba\nab")
    assert model.training  # restored
    assert np.array_equal(first.hidden, second.hidden)  # dropout was off while tracing


def test_an_empty_text_read_cold_is_a_one_line_error_not_a_torch_crash():
    """`trace(model, "", context="")` raised torch's "Expected sequence length to be larger than 0 in RNN"."""
    model = make_model("\nab", layers=1, hidden=8).eval()
    for compute in (trace, surprise):
        with pytest.raises(CharLMError, match="nothing to read"):
            compute(model, "", context="")
    assert trace(model, "").hidden.shape == (1, 0, 8)  # after the default newline: an empty trace, as before


def test_a_text_with_no_scored_character_has_no_bits_per_character_not_zero():
    """Every character unseen (or a cold start's first): nothing was predicted, so bpc is NaN; it said
    0.0, a perfect score."""
    model = make_model("\nab", layers=1, hidden=8).eval()
    assert np.isnan(trace(model, "xy").bpc) and np.isnan(surprise(model, "xy").bpc)
    assert np.isnan(trace(model, "a", context="").bpc)
    assert trace(model, "a").bpc > 0  # after the default newline, "a" was predicted


def test_loading_the_state_of_a_model_of_another_size_names_both_sizes_in_one_line():
    """`model.load_state_dict(other.state_dict())`, the copy docs/python.md shows, was torch's paragraph
    of every weight's two shapes when the models differ: one line now names both models' sizes and
    what to do. A state that fits loads as before, and strict=False leaves out extra weights as torch does."""
    model = make_model("abc", layers=1, hidden=8)
    other = CharLM(ModelConfig("lstm", 2, 16, 0.0, 4), Vocab("abcd"))
    with pytest.raises(CharLMError) as refused:
        model.load_state_dict(other.state_dict())
    assert str(refused.value) == (
        "charlm.CharLM.load_state_dict: the state is of another model (2x16 lstm, 4 ids) than this one "
        "(1x8 lstm, 3 ids): embed.weight is [4, 16], this model's [3, 8]; load it into a model of its own "
        "config and vocabulary (charlm.CharLM(other.config, other.vocab))"
    )
    gru = CharLM(ModelConfig("gru", 1, 8, 0.0, 3), Vocab("abc"))
    with pytest.raises(CharLMError, match=r"another model \(1x8 gru, 3 ids\) than this one \(1x8 lstm, 3 ids\)"):
        model.load_state_dict(gru.state_dict())
    extra = {**make_model("abc", layers=1, hidden=8).state_dict(), "extra": torch.zeros(1)}
    with pytest.raises(CharLMError, match="^charlm.CharLM.load_state_dict: extra is in the state but not in this"):
        model.load_state_dict(extra)
    assert model.load_state_dict(extra, strict=False).unexpected_keys == ["extra"]
    assert torch.equal(model.embed.weight, extra["embed.weight"])
