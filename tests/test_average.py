import torch

import charlm
from charlm import api, checkpoint, runs
from charlm.average import UPDATE_EVERY, WeightAverage

from .conftest import latest, make_model


def test_average_follows_the_weights_with_a_memory_that_grows_to_its_decay():
    torch.manual_seed(0)
    model = make_model("abc", layers=1, hidden=8)
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
    saved = latest("avg")
    assert all(torch.equal(tensor, model.state_dict()[name]) for name, tensor in saved.weights.items())
    assert any(not torch.equal(tensor, saved.training.raw_weights[name]) for name, tensor in saved.weights.items())
    assert torch.equal(checkpoint.load(runs.resolve("avg", prefer=runs.LATEST)).head.bias, saved.weights["head.bias"])

    charlm.train(fox_file, out="raw", **tiny)  # off by default: the raw weights only
    assert latest("raw").training.raw_weights is None


def test_a_resumed_run_continues_its_average_exactly(fox_file, tiny):
    # A constant learning rate, so stopping at 100 of 100 steps and going on to 140 is the 140-step run.
    # Past step 40 an update no longer replaces the average, so an average not restored would show.
    options = {**tiny, "max_steps": 140, "eval_every": 50, "weight_average": 0.99, "min_lr_ratio": 1.0}
    charlm.train(fox_file, out="whole", **options)
    charlm.train(fox_file, out="part", **{**options, "max_steps": 100})
    api.resume_run("part", {"max_steps": 140}).fit()
    whole, part = latest("whole"), latest("part")
    assert whole.progress.step == part.progress.step == 140
    for key, weights in (("model", lambda c: c.weights), ("raw", lambda c: c.training.raw_weights)):
        assert all(torch.equal(tensor, weights(part)[name]) for name, tensor in weights(whole).items()), key
