import pytest
import torch

import charlm
from charlm import checkpoint, trainer
from charlm.average import UPDATE_EVERY, WeightAverage
from charlm.config import Config
from charlm.errors import CharLMError
from charlm.model import CharLM
from charlm.vocab import Vocab


def test_average_follows_the_weights_with_a_memory_that_grows_to_its_decay():
    torch.manual_seed(0)
    model = CharLM(Config(hidden=8, layers=1), Vocab("abc"))
    average = WeightAverage(model, decay=0.99)  # memory: 100 steps
    start = model.head.bias.detach().clone()
    with torch.no_grad():
        model.head.bias.add_(1.0)
    average.update(UPDATE_EVERY + 1)  # between updates: nothing
    assert torch.equal(average.model.head.bias, start)
    average.update(10 * UPDATE_EVERY)  # a tenth of 40 steps is 4: the average takes the weights
    assert torch.allclose(average.model.head.bias, start + 1)
    with torch.no_grad():
        model.head.bias.add_(1.0)
    average.update(2000)  # memory 100 steps: this update weighs UPDATE_EVERY / 100
    assert torch.allclose(average.model.head.bias, start + 1 + UPDATE_EVERY / 100)
    assert not average.model.head.bias.requires_grad


def test_checkpoint_keeps_the_average_for_sampling_and_the_raw_weights_for_training(fox_file, tiny):
    model = charlm.train(fox_file, out="avg", **{**tiny, "max_steps": 100, "eval_every": 50, "weight_average": 0.999})
    path = checkpoint.resolve("avg", prefer=checkpoint.LATEST)
    latest = checkpoint.read_checkpoint(path)
    assert all(torch.equal(tensor, model.state_dict()[name]) for name, tensor in latest["model"].items())
    assert any(not torch.equal(tensor, latest["raw_model"][name]) for name, tensor in latest["model"].items())
    assert torch.equal(checkpoint.load(path).head.bias, latest["model"]["head.bias"])

    charlm.train(fox_file, out="raw", **tiny)  # off by default: the raw weights only
    assert checkpoint.read_checkpoint(checkpoint.resolve("raw", prefer=checkpoint.LATEST))["raw_model"] is None


def test_a_resumed_run_continues_its_average_exactly(fox_file, tiny):
    # A constant learning rate, so stopping at 100 of 100 steps and going on to 140 is the 140-step run.
    # Past step 40 an update no longer replaces the average, so an average not restored would show.
    options = {**tiny, "max_steps": 140, "eval_every": 50, "weight_average": 0.99, "min_lr_ratio": 1.0}
    charlm.train(fox_file, out="whole", **options)
    charlm.train(fox_file, out="part", **{**options, "max_steps": 100})
    trainer.resume("part", {"max_steps": 140}).fit()
    whole, part = (
        checkpoint.read_checkpoint(checkpoint.resolve(run, prefer=checkpoint.LATEST)) for run in ("whole", "part")
    )
    assert whole["step"] == part["step"] == 140
    for key in ("model", "raw_model"):
        assert all(torch.equal(tensor, part[key][name]) for name, tensor in whole[key].items()), key


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_weight_average_outside_its_range_is_refused(value):
    with pytest.raises(CharLMError, match=r"--weight-average must be in \[0, 1\)"):
        Config(weight_average=value)
