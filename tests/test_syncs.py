"""What each sampled character would make a GPU wait for or copy from the host (`tests/syncs.py`), counted
on a CPU, path by path. The floor is one read a step: the chosen ids, for every row at once, which the
host needs to write the text. What else a step does on the device it does without the host."""

import collections
import functools
import gc
import weakref

import pytest
import torch

from charlm import CharLM, ModelConfig
from charlm.config import SampleConfig
from charlm.decoding import RowSampler
from charlm.inference_context import inference
from charlm.sampler import primed_for
from charlm.serve.engine import Engine, Job
from charlm.vocab import Vocab

from .conftest import make_model
from .syncs import Syncs
from .test_forms import chinese_model

VOCAB = "\nabcdefgh "
STEPS = 12


@pytest.fixture(autouse=True)
def twins_of_their_own(monkeypatch):
    """The sampler's options as on a GPU: a copy on the device beside the host's (on a CPU, the same tensor)."""
    monkeypatch.setattr(RowSampler, "twin", lambda self, host: host.to(self.device))


def test_the_detector_counts_each_kind_of_wait_and_copy_and_not_the_hosts_own_work():
    model = make_model(VOCAB, layers=1, hidden=8)
    weight = model.head.weight
    kinds = {
        "read": [
            lambda: weight[0, 0].item(),
            lambda: weight[0].tolist(),
            lambda: weight.cpu(),
            lambda: weight.detach().numpy(),
            lambda: bool(weight[0, 0] > 0),
            lambda: int(weight[0, 0]),
            lambda: float(weight[0, 0]),
            lambda: [1, 2][weight[0, 0].long().clamp(0, 1)],
            lambda: torch.zeros(3).copy_(weight[0, :3]),
        ],
        "shape": [
            lambda: torch.nonzero(weight),
            lambda: weight.masked_select(weight > 0),
            lambda: torch.unique(weight),
            lambda: weight[weight > 0],
        ],
        "copy": [
            lambda: torch.ones(3).to(weight.device),
            lambda: torch.ones(3).to(device="cpu"),
            lambda: torch.tensor([1.0, 2.0], device=weight.device),
            lambda: torch.as_tensor([1.0], device=weight.device),
            lambda: weight.detach()[0].clone().copy_(torch.ones(weight.size(1))),
            lambda: weight.detach().clone().__setitem__(0, torch.ones(weight.size(1))),
            lambda: weight + torch.ones(weight.shape),
        ],
        "index": [lambda: weight[[0, 1]], lambda: weight[torch.tensor([0, 1])]],
    }
    with Syncs(model) as syncs, torch.no_grad():
        for kind, calls in kinds.items():
            for number, call in enumerate(calls):
                syncs.clear()
                call()
                assert syncs.counts == {kind: 1}, (kind, number, syncs.where)
        syncs.clear()
        host = torch.arange(6.0)  # the host's own tensors, read as much as it likes
        moved = host.to(weight.device)
        syncs.clear()
        made = weight[2:4] * 2 + torch.zeros(8, device=weight.device) + 1.5  # device work from device tensors
        made[0] = 3.0
        made[:, 1] = weight[0, 0]
        torch.softmax(made, dim=-1).argmax(dim=-1)
        float(host[1]), host.tolist(), bool(host.any()), host[[1, 2]], host[host > 2], torch.tensor([1, 2])
        assert syncs.counts == {} and syncs.on(made) and syncs.on(moved) and not syncs.on(host), syncs.where


def stepped(model: CharLM, seed: str, steps: int = STEPS, **options) -> list[collections.Counter]:
    """The waits and copies of each of a sample's first `steps` steps, as `charlm.generate` steps them."""
    options.setdefault("length", 40)
    with Syncs(model) as syncs, inference(model):
        _, batch = primed_for(model, seed, SampleConfig(**options))
        counts = []
        while batch.unfinished() and len(counts) < steps:
            syncs.clear()
            batch.step()
            counts.append(collections.Counter(syncs.where))
    return counts


def refilled(counts: list[collections.Counter], rows: int) -> list[collections.Counter]:
    """The counts with the first step's refill of each row's block of uniforms (`decoding.UNIFORM_BLOCK`
    draws, once every 256 steps: copied from the host, where each row's generator draws) taken out."""
    first = counts[0].copy()
    first.subtract({"copy: copy_": rows})
    return [+first, *counts[1:]]


FLOOR = collections.Counter({"read: tolist": 1})  # the chosen ids, every row's in one read


def adaptive_model() -> CharLM:
    torch.manual_seed(0)
    model = CharLM(ModelConfig("lstm", 2, 24, 0.0, len(VOCAB), (4, 7)), Vocab(VOCAB)).eval()
    model.head.set_frequencies(torch.arange(len(VOCAB), 0, -1))
    return model


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"num_samples": 4},
        {"greedy": True},
        {"top_k": 3, "top_p": 0.8},
        {"repetition_penalty": 1.3, "num_samples": 2},
        {"presence_penalty": 0.5, "frequency_penalty": -0.3, "num_samples": 2},  # its counts stay on the device
        {"logit_bias": {"a": -100, "b": 2.0}},
        {"stop": "ba", "num_samples": 3},
        {"adaptive": True, "num_samples": 4},
    ],
)
def test_a_generate_step_reads_its_ids_once_and_copies_nothing(options):
    options = dict(options)
    model = adaptive_model() if options.pop("adaptive", False) else make_model(VOCAB, layers=2, hidden=16).eval()
    counts = stepped(model, "ab", random_seed=1, **options)
    assert refilled(counts, 0 if options.get("greedy") else options.get("num_samples", 1)) == [FLOOR] * STEPS


@pytest.mark.parametrize("rows", [1, 3])
def test_a_form_copies_each_of_its_masks_to_the_device_once_not_every_step(rows):
    """Each step of a poem form copied its rows' masks from the host (`RowSampler.allowed`): on a GPU, a copy
    a character. A mask is now copied once, and a character's mask is one for all its positions
    (`Constrained.allowed`): a 五言绝句's free positions, '，', '。' and line breaks take four copies."""
    counts = stepped(chinese_model(), "丁\n", 100, form="五言绝句", random_seed=1, num_samples=rows, length=100)
    copies = [count.pop("copy: to", 0) for count in counts]
    assert len(counts) == 25 and refilled(counts, rows) == [FLOOR] * 25  # the whole poem: 4 verses, a line break
    assert sum(copies) == 4 and copies[0] == 1, copies


def served(model: CharLM, asks: list[int | None]) -> list[collections.Counter]:
    """The waits and copies of each step of the server's engine, a row per entry of `asks` (its logprobs)."""
    with Syncs(model) as syncs, inference(model):
        engine = Engine(model, 8, lambda updates: None)
        ids = model.vocab.encode("ab")
        logits, state = engine.batch.prime(ids)
        jobs = [Job(ids, logits, state, SampleConfig(), [seed], 40, logprobs=n) for seed, n in enumerate(asks)]
        engine.admit(jobs)
        counts = []
        for _ in range(STEPS):
            syncs.clear()
            engine.advance()
            engine.flush()
            counts.append(collections.Counter(syncs.where))
    return counts


@pytest.mark.parametrize("asks", [[None], [None] * 4, [2], [2] * 4, [None, 3, None, 1]])
def test_an_engine_step_reads_its_ids_and_logprobs_and_copies_no_index(asks):
    """Rows that asked for logprobs were picked out of the step's logits and ids with a Python list, three
    times a step (`Engine.alternatives`): on a GPU, three copies of it from the host. They are now a slice,
    or an index made once per set of rows. Their log-probabilities were a second read of the step's
    results, after the ids': they come in the ids' read now (`Batch.step(also=...)`), one wait a step."""
    counts = served(make_model(VOCAB, layers=2, hidden=16).eval(), asks)
    made = collections.Counter({"copy: tensor": 1}) if None in asks and any(asks) else collections.Counter()
    first = counts[0] - made  # the index of the rows asking, made when they joined
    assert refilled([first, *counts[1:]], len(asks)) == [FLOOR] * STEPS


@functools.cache
def healing_model() -> CharLM:
    from charlm.pieces import PieceVocab, train_model

    text = "go to the sea, then the other thing; that is this.\n春望\n杜甫\n国破山河在，城春草木深。\n" * 40
    torch.manual_seed(0)
    return make_model(PieceVocab(train_model([text], "bpe", 320), normalize="none"), layers=1, hidden=16).eval()


def fresh_healing_model() -> CharLM:
    """`healing_model` with its vocabulary's healing masks made afresh (`TextIndex.healing` keeps them, and
    a mask's device copy lives as long: an earlier test's sample of the same seed left them copied)."""
    model = healing_model()
    model.vocab.text_index().masks.clear()
    return model


def finalizers() -> int:
    gc.collect()
    return sum(type(thing) is weakref.finalize for thing in gc.get_objects())


def test_token_healing_copies_a_mask_only_for_the_steps_that_heal():
    """A healed seed's steps (`generation.Healing`) each copy the mask of the pieces that spell its rest, made
    on the host from the text (1 to 3 steps a sample); the steps after copy nothing."""
    model = fresh_healing_model()
    counts = refilled(stepped(model, "go to th", random_seed=1, length=10), 1)
    healing = [count["copy: to"] for count in counts]
    assert 1 <= sum(healing) <= 3 and healing[: sum(healing)] == [1] * sum(healing), counts
    assert [count - collections.Counter({"copy: to": 1}) for count in counts] == [FLOOR] * len(counts)


def test_token_healing_copies_each_mask_once_for_all_the_rows_that_heal_alike():
    """Each row's healing step made its mask afresh (`TextIndex.healing`), and the sampler copied each to
    the device: three samples of one seed, three copies of one mask at their first step. The vocabulary
    keeps the masks it made, so the first step copies one; a later sample of the same seed none
    (`test_samples_of_a_healed_seed_copy_its_masks_once_and_keep_no_copies_after_them`)."""
    model = fresh_healing_model()
    counts = refilled(stepped(model, "go to th", random_seed=1, length=10, num_samples=3), 3)
    assert counts[0] == FLOOR + collections.Counter({"copy: to": 1}), counts[0]
    index = model.vocab.text_index()
    assert index.healing("th") is index.healing("th") and torch.equal(index.healing("th"), index.healing_mask("th"))


def test_samples_of_a_healed_seed_copy_its_masks_once_and_keep_no_copies_after_them():
    """Each sampler kept its own device copy of each healing mask it used, through a finalizer on the
    host mask, for as long as the vocabulary kept that mask (`TextIndex.healing`): on a GPU every
    `charlm.generate` of a healed seed left its copies held, without bound (a finalizer and a
    vocabulary-sized mask per call). A mask has one copy per device, whichever sampler asks, and it
    goes with the mask."""
    model = fresh_healing_model()
    before = finalizers()
    copies = [sum(count["copy: to"] for count in stepped(model, "go to th", random_seed=1)) for _ in range(4)]
    assert copies[0] >= 1 and copies[1:] == [0, 0, 0], copies
    assert finalizers() - before == copies[0]  # one a mask, not one a mask a sample
    model.vocab.text_index().masks.clear()
    assert finalizers() == before


def test_a_healing_mask_goes_when_the_vocabulary_lets_it_go_after_sampling_on_a_cpu():
    """On a CPU a mask's copy is the mask itself (`.to` gives it back): kept as its own copy, by the finalizer
    meant to drop the copy with it, or by a table of copies, it could never go, so a CPU server kept every
    form's masks and every healing mask it had used. (Without `Syncs`, whose `.to` makes a clone.)"""
    import charlm

    model = fresh_healing_model()
    charlm.generate(model, "go to th", length=6, num_samples=2, random_seed=1)
    masks = [weakref.ref(mask) for mask in model.vocab.text_index().masks.values()]
    assert masks
    model.vocab.text_index().masks.clear()
    gc.collect()
    assert all(mask() is None for mask in masks)


def test_a_temperature_schedule_copies_nothing_a_step():
    """A schedule's temperature of each step was written on the host and copied to the device (`publish`),
    a copy a character: each row's schedule is on the device now, read there at its step."""
    model = make_model(VOCAB, layers=2, hidden=16).eval()
    for rows in (1, 3):
        counts = stepped(model, "ab", random_seed=1, temperature=(1.0, 0.5, 2.0), num_samples=rows)
        assert refilled(counts, rows) == [FLOOR] * STEPS, counts
