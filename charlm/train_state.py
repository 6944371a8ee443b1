"""What one training step reads and changes, and the step itself.

A `TrainState` is the model, its optimizer, gradient scaler and weight average, the corpus's
windows and every stream's hidden state; `train_step` advances it one TBPTT window, and `capture` /
`restore` turn it into a checkpoint's training part and back (checkpoint.py owns that part's format).
Nothing here knows about run folders or evaluation: the size probe times these same steps on a bare
state (sizing.py), and the training loop (trainer.py) calls them between its hooks.

The step does no host sync of its own: the loss stays a tensor, read only when the progress bar
redraws or a metrics row is written (under fp16 the loss scaler's step reads once a step whether the
gradients overflowed: torch's GradScaler, a wait for the GPU). Forward and loss run under autocast
(`--precision`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel

from .average import WeightAverage
from .batches import Windows, make_streams, min_tokens
from .checkpoint import Checkpoint, Progress, SavedTraining
from .config import Config
from .corpus import DEFAULT_CORPUS
from .device import (
    accelerator_rng_state,
    autocast,
    grad_scaler,
    resolve_device,
    resolve_precision,
    seed_accelerator,
    set_accelerator_rng_state,
    to_device,
)
from .distributed import SINGLE, Ranks
from .errors import CharLMError
from .fields import said
from .model import CharLM, ModelConfig, State, detach_state, map_state
from .optim import learning_rate, make_optimizer
from .tokens import TokenCorpus


@dataclass
class TrainState:
    """One rank's model, optimizer and data position. `net` is the model, or its DDP wrapper under torchrun."""

    config: Config
    model: CharLM
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    average: WeightAverage | None
    windows: Windows
    ranks: Ranks
    device: torch.device
    precision: str
    progress: Progress = field(default_factory=Progress)
    hidden: State | None = None  # this rank's streams' state, carried from window to window
    nonfinite: torch.Tensor | None = None  # set once a loss is NaN/inf; read at checks only (a host sync)

    @property
    def result(self) -> CharLM:
        """The weights that are scored, saved for sampling and returned: the average, if kept."""
        return self.average.model if self.average else self.model


def build(
    config: Config,
    corpus: TokenCorpus,
    ranks: Ranks = SINGLE,
    model: CharLM | None = None,
    *,
    head_cutoffs: tuple[int, ...],
) -> TrainState:
    """A fresh state for a planned config (no option unset): the model is new, with the planned head
    `head_cutoffs` ((): a full head), unless one is given (a fine-tuning run's, grown from its base, or
    a resumed run's). Every rank lays out the same global streams and takes its own rows of them."""
    check_data(config, corpus)
    shard = ranks.shard(config.batch_size)
    device = resolve_device(config.device, ranks.local_rank, ranks.world)
    ranks.use(device)
    precision = resolve_precision(config.precision, device)
    windows = Windows(make_streams(corpus.train_ids, config.batch_size)[shard], config.seq_len)
    torch.manual_seed(config.random_seed)
    model = (model or new_model(config, corpus, head_cutoffs)).to(device)
    if ranks.rank:  # the same initial weights everywhere, but each rank its own dropout masks
        torch.manual_seed(config.random_seed + ranks.rank)
    net = model
    if ranks.active:
        device_ids = [device.index] if device.type == "cuda" else None
        # An adaptive head leaves a rare cluster without gradient in a step whose targets are all frequent.
        net = DistributedDataParallel(model, device_ids, find_unused_parameters=bool(model.config.head_cutoffs))
    return TrainState(
        config=config,
        model=model,
        net=net,
        optimizer=make_optimizer(model, config),
        scaler=grad_scaler(device, precision),
        average=WeightAverage(model, config.weight_average) if config.weight_average else None,
        windows=windows,
        ranks=ranks,
        device=device,
        precision=precision,
        nonfinite=torch.zeros((), dtype=torch.bool, device=device),
    )


def new_model(config: Config, corpus: TokenCorpus, head_cutoffs: tuple[int, ...]) -> CharLM:
    """A model of the config's architecture (its --hidden and --dropout) over the corpus's vocabulary, with
    the head the plan chose (`plan.planned_head`; (): a full head) ranking the training text's characters."""
    counts = torch.from_numpy(corpus.train_counts)
    model = CharLM(
        ModelConfig(config.cell, config.layers, config.hidden, config.dropout, len(counts), head_cutoffs), corpus.vocab
    )
    if head_cutoffs:
        model.head.set_frequencies(counts)
    return model


def check_data(config: Config, corpus: TokenCorpus) -> None:
    """The training split fills every stream's first window and the validation split is not empty.
    Counted in tokens: a sentencepiece corpus's are pieces, fewer than its characters."""
    need = min_tokens(config.batch_size, config.seq_len)
    if len(corpus.train_ids) < need:
        total = math.ceil(need / (1.0 - config.val_fraction)) if corpus.name != DEFAULT_CORPUS else need
        tokens = "characters" if corpus.vocab.one_char_per_id else "sentencepiece tokens"
        raise CharLMError(
            f"corpus {corpus.name!r} too short: {len(corpus.train_ids)} training {tokens}, need at least "
            f"{need} ({said('batch_size')} x ({said('seq_len')} + 1)), so a text of at least {total} {tokens}; "
            f"use a longer text or lower {said('batch_size')} / {said('seq_len')}"
        )
    if len(corpus.val_ids) < 2:
        raise CharLMError(f"corpus {corpus.name!r}: validation split is empty; raise {said('val_fraction')}")


def train_step(state: TrainState, spent: float) -> torch.Tensor:
    """One TBPTT step on the next window of every stream; returns the loss (not synced to host).
    `spent` is the share of the budget used so far, which sets the learning rate."""
    progress, config = state.progress, state.config
    inputs, targets, fresh = state.windows.next()
    inputs, targets = to_device(inputs, state.device), to_device(targets, state.device)
    progress.lr = learning_rate(config, progress.step, spent)
    for group in state.optimizer.param_groups:
        group["lr"] = progress.lr
    with autocast(state.device, state.precision):
        nats, hidden = state.net(inputs, None if fresh else state.hidden, targets)
        loss = nats.mean()
    # The backward pass runs in the forward's dtypes; autocast over it (a caller's) would lower it again.
    with autocast(state.device, "fp32"):
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()  # DDP averages the gradients over ranks here
        if config.grad_clip > 0:
            state.scaler.unscale_(state.optimizer)  # fp16's loss scale off first: the clip reads true gradients
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), config.grad_clip, foreach=True)
        state.scaler.step(state.optimizer)
        state.scaler.update()
    state.hidden = detach_state(hidden)
    progress.step += 1
    if state.average:
        state.average.update(progress.step)
    progress.tokens += targets.numel() * state.ranks.world
    loss = state.ranks.mean(loss.detach().float())
    state.nonfinite |= ~torch.isfinite(loss)
    return loss


def capture(state: TrainState) -> SavedTraining:
    """What a resumed run needs of a training state beyond its weights (the checkpoint's `training`
    part). Every rank takes part: the hidden states and generator states are gathered."""
    ranks = state.ranks
    device_rng = accelerator_rng_state(state.device)
    return SavedTraining(
        optimizer=state.optimizer.state_dict(),
        position=state.windows.position,
        epoch=state.windows.epoch,
        hidden=ranks.gather_state(state.hidden),
        rng=torch.get_rng_state(),
        rank_rngs=ranks.gather(torch.get_rng_state().unsqueeze(0)),
        scaler=state.scaler.state_dict(),
        raw_weights=state.model.state_dict() if state.average else None,
        device_rngs=None if device_rng is None else ranks.gather(device_rng.unsqueeze(0)),
    )


def restore(state: TrainState, checkpoint: Checkpoint, random_seed: int) -> None:
    """Put a training state back where `checkpoint` left it: weights, optimizer, data position, this
    rank's streams' states, progress and random generators."""
    ranks = state.ranks
    training = checkpoint.training
    state.model.load_state_dict(training.raw_weights or checkpoint.weights)
    if state.average:  # a run saved without an average starts one from its weights
        state.average.model.load_state_dict(checkpoint.weights)
    state.optimizer.load_state_dict(training.optimizer)
    if training.scaler and state.scaler.is_enabled():
        state.scaler.load_state_dict(training.scaler)
    state.windows.position, state.windows.epoch = training.position, training.epoch
    state.progress = checkpoint.progress
    shard = ranks.shard(state.config.batch_size)
    state.hidden = map_state(lambda s: s[:, shard].contiguous().to(state.device), training.hidden)
    # Dropout continues exactly under the same world size (on a GPU, CUDA or mps, from its generator);
    # under another world size, or on a device the run did not save, each rank reseeds.
    reseed = random_seed + ranks.rank + checkpoint.progress.step
    same_world = training.rank_rngs is not None and len(training.rank_rngs) == ranks.world
    if same_world:
        torch.set_rng_state(training.rank_rngs[ranks.rank].clone())  # a row view at an offset crashes torch
    elif ranks.leader:
        torch.set_rng_state(training.rng)
    else:
        torch.manual_seed(reseed)
    same_device = checkpoint.device.partition(":")[0] == state.device.type  # CUDA's state means nothing to mps
    if training.device_rngs is not None and same_world and same_device:
        set_accelerator_rng_state(training.device_rngs[ranks.rank].clone(), state.device)
    else:
        seed_accelerator(reseed, state.device)
