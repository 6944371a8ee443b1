"""char-rnn, the famous one: the second baseline charlm has to beat, in the same wall time.

    python -m bench.charrnn ../shared/corpora/tinyshakespeare.txt --seconds 300

karpathy/char-rnn's train.lua with its defaults, written here in plain torch from what its code does
(train.lua, util/CharSplitLMMinibatchLoader.lua, model/LSTM.lua, torch's optim.rmsprop):

- model: `-model lstm -num_layers 2 -rnn_size 128 -dropout 0`; the characters go in one-hot (its
  OneHot module), each layer's gates are i2h(x) + h2h(h) with a bias on both (nn.LSTM's bias_ih and
  bias_hh), a Linear decoder and softmax on the top layer. Every parameter starts uniform in
  [-0.08, 0.08], then the forget gates' i2h biases at 1.
- data: its loader's layout. The text is cut to a multiple of batch_size x seq_length, the targets
  are the text moved on by one (the very last target wraps round to the first character), and the
  text is laid out as `-batch_size 50` contiguous streams read in windows of `-seq_length 50`: batch
  i holds window i of every stream. Batches are taken in order, and the LSTM state at the end of one
  batch starts the next (`init_state_global`): never reset, not even when the batches wrap round
  into the next epoch, as train.lua never resets it.
- optimizer: `optim.rmsprop` with `-learning_rate 2e-3`, alpha = `-decay_rate 0.95`, epsilon 1e-8
  (optim's default, added after the square root: torch.optim.RMSprop computes the same). The gradient
  is that of the sum over the window's time steps of the batch-mean loss (train.lua leaves out the
  division by seq_length), each element clamped to [-5, 5] (`-grad_clip 5`). The learning rate is
  multiplied by `-learning_rate_decay 0.97` at the end of each epoch from the 10th on
  (`-learning_rate_decay_after 10`).
- checkpoints: the validation loss, over the whole validation split from a zero state carried batch
  to batch (its eval_split), every `-eval_val_every 1000` iterations and at the last; the model kept
  is the one of the lowest, the checkpoint its user would sample from.
- fp32 and torch's default thread count (one per core), as a user of a port runs it.

What differs, and why:

- a time budget (`--seconds`) instead of `-max_epochs 50` (hours on a CPU); the last iteration is
  the one that ends past the budget, and it is evaluated, as train.lua evaluates its last.
- the split: char-rnn would hold out the last 5% of each stream's windows (`-train_frac 0.95
  -val_frac 0.05`). Here it trains on the first 90% of the file and its validation split is the last
  10%, laid out in its streams and windows: the text charlm and the baby GPT hold out (charlm's
  val_fraction=0.1) and every model is scored on.
- characters, not bytes: char-rnn reads its file byte by byte, which on a UTF-8 Chinese text predicts
  three bytes per character. Here the text is read as charlm reads it (UTF-8, `\\r\\n` -> `\\n`, NFC, a
  final newline) and the vocabulary is every character of the whole file, sorted (the baby GPT's,
  charlm's default), so bits per character compare.
- no early stop when the loss reaches three times its first value, nor on NaN (a run that explodes
  shows in its score); no checkpoint files.

Scoring (`bits_per_char`): one pass over the held-out text, batch 1, the state carried from its first
character to its last, every character after the first predicted once (as charlm's `bits_per_char`).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.babygpt import CharVocab
from bench.common import errors_in_one_line, read_corpus, split_at

LOG2E = 1.0 / math.log(2.0)
State = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Recipe:
    """train.lua's defaults (the module docstring), with a time budget for -max_epochs."""

    rnn_size: int = 128
    num_layers: int = 2
    dropout: float = 0.0
    seq_length: int = 50
    batch_size: int = 50
    learning_rate: float = 2e-3
    decay_rate: float = 0.95  # rmsprop's alpha
    epsilon: float = 1e-8  # optim.rmsprop's default
    learning_rate_decay: float = 0.97
    learning_rate_decay_after: int = 10  # epochs
    grad_clip: float = 5.0  # each gradient element clamped to [-grad_clip, grad_clip]
    init_range: float = 0.08
    eval_val_every: int = 1000
    seed: int = 123
    seconds: float = 300.0
    max_iterations: int | None = None  # a step limit as well (the tests)
    device: str = "cpu"
    quiet: bool = False


# -- model -----------------------------------------------------------------------------------------
class CharRNN(nn.Module):
    """char-rnn's LSTM: one-hot characters in, `num_layers` LSTM layers, a Linear decoder out."""

    def __init__(self, vocab_size: int, recipe: Recipe):
        super().__init__()
        self.vocab_size = vocab_size
        size = recipe.rnn_size
        self.lstm = nn.LSTM(vocab_size, size, recipe.num_layers, batch_first=True, dropout=recipe.dropout)
        self.decoder = nn.Linear(size, vocab_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -recipe.init_range, recipe.init_range)
        with torch.no_grad():  # nn.LSTM's gates are i, f, g, o: the forget gate is the second quarter
            for layer in range(recipe.num_layers):
                getattr(self.lstm, f"bias_ih_l{layer}")[size : 2 * size] = 1.0

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (batch, time) -> logits (batch, time, vocab) and the state after the last step."""
        out, state = self.lstm(F.one_hot(ids, self.vocab_size).float(), state)
        return self.decoder(out), state

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# -- data ------------------------------------------------------------------------------------------
def batches(
    ids: torch.Tensor, batch_size: int, seq_length: int, what: str = "the text"
) -> tuple[torch.Tensor, torch.Tensor]:
    """char-rnn's loader: inputs and targets, each (batches, batch_size, seq_length); batch i is
    window i of each of `batch_size` contiguous streams. Refuses a text (`what`) that fills no batch."""
    per_batch = batch_size * seq_length
    if len(ids) < per_batch:
        raise SystemExit(
            f"charrnn: the {len(ids):,} characters of {what} do not fill one batch of --batch-size {batch_size} x "
            f"--seq-length {seq_length}; give a longer text or smaller sizes"
        )
    data = ids[: len(ids) // per_batch * per_batch]
    targets = torch.roll(data, -1)  # its ydata: the last target is the first character
    return tuple(t.view(batch_size, -1, seq_length).transpose(0, 1) for t in (data, targets))


# -- training --------------------------------------------------------------------------------------
def learning_rate(recipe: Recipe, epochs_done: int) -> float:
    """The rate after `epochs_done` whole epochs: decayed once at the end of each epoch from the
    learning_rate_decay_after-th on."""
    decays = max(0, epochs_done - recipe.learning_rate_decay_after + 1)
    return recipe.learning_rate * recipe.learning_rate_decay**decays


def detached(state: State) -> State:
    return tuple(s.detach() for s in state)


@torch.no_grad()
def validation_loss(model: CharRNN, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean loss (nats) over every batch of the split, from a zero state carried batch to batch (eval_split)."""
    device = next(model.parameters()).device
    model.eval()
    state, total = None, 0.0
    for x, y in zip(inputs, targets):
        logits, state = model(x.to(device), state)
        total += F.cross_entropy(logits.flatten(0, 1), y.to(device).flatten()).item()
    model.train()
    return total / len(inputs)


def train(model: CharRNN, train_ids: torch.Tensor, recipe: Recipe, held_out: torch.Tensor) -> tuple[float, int]:
    """Train as train.lua does (the module docstring) until `recipe.seconds` have passed (or
    max_iterations); the model ends with the weights of its lowest validation loss on `held_out`.
    Returns the wall seconds (evaluations included) and the iterations."""
    inputs, targets = batches(train_ids, recipe.batch_size, recipe.seq_length, "the training text (first 90%)")
    val_inputs, val_targets = batches(held_out, recipe.batch_size, recipe.seq_length, "the held-out text (last 10%)")
    device = torch.device(recipe.device)
    model.to(device)
    optimizer = torch.optim.RMSprop(
        model.parameters(), lr=recipe.learning_rate, alpha=recipe.decay_rate, eps=recipe.epsilon
    )
    ntrain = len(inputs)
    state, best_loss, best_weights = None, float("inf"), None
    model.train()
    started = time.perf_counter()
    iteration = 0
    with tqdm(desc="char-rnn", unit="it", disable=recipe.quiet) as bar:
        while True:
            x, y = (t[iteration % ntrain].to(device) for t in (inputs, targets))
            iteration += 1
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, (iteration - 1) // ntrain)
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            (loss * recipe.seq_length).backward()  # train.lua's gradient: the sum over the time steps
            for parameter in model.parameters():
                parameter.grad.clamp_(-recipe.grad_clip, recipe.grad_clip)
            optimizer.step()
            state = detached(state)
            bar.update()
            last = time.perf_counter() - started >= recipe.seconds or iteration == recipe.max_iterations
            if iteration % recipe.eval_val_every == 0 or last:
                estimate = validation_loss(model, val_inputs, val_targets)
                if estimate < best_loss:
                    best_loss, best_weights = estimate, {k: v.clone() for k, v in model.state_dict().items()}
                bar.set_postfix(val_bpc=f"{estimate * LOG2E:.3f}", refresh=False)
            if last:
                break
    model.load_state_dict(best_weights)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, iteration


# -- scoring ---------------------------------------------------------------------------------------
@torch.no_grad()
def bits_per_char(model: CharRNN, ids: torch.Tensor, chunk: int = 2000) -> float:
    """Bits per character of every character of `ids` after the first, in one pass with the state carried
    (fed `chunk` characters at a time)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    state, total_nats = None, 0.0
    for start in range(0, len(ids) - 1, chunk):
        x = ids[start : start + chunk].unsqueeze(0)
        y = ids[start + 1 : start + chunk + 1]
        logits, state = model(x[:, : len(y)].to(device), state)
        total_nats += F.cross_entropy(logits[0].float().cpu(), y, reduction="sum").double().item()
    model.train(was_training)
    return total_nats / max(len(ids) - 1, 1) * LOG2E


# -- command line ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """char-rnn's flags (its own names), shared with bench/versus.py; not given: the recipe's values."""
    parser.add_argument("--seconds", type=float, help=f"training time budget (default {Recipe.seconds:g})")
    parser.add_argument("--rnn-size", type=int, help=f"default {Recipe.rnn_size}")
    parser.add_argument("--num-layers", type=int, help=f"default {Recipe.num_layers}")
    parser.add_argument("--seq-length", type=int, help=f"default {Recipe.seq_length}")
    parser.add_argument("--batch-size", type=int, help=f"default {Recipe.batch_size}")
    parser.add_argument("--eval-val-every", type=int, help=f"default {Recipe.eval_val_every}")


CHARRNN_FLAGS = ("seconds", "rnn_size", "num_layers", "seq_length", "batch_size", "eval_val_every")


def recipe_from(args: argparse.Namespace) -> Recipe:
    """The recipe with the flags of `add_arguments` given (and args.seed, args.device, args.quiet)."""
    given = {name: getattr(args, name) for name in CHARRNN_FLAGS if getattr(args, name, None) is not None}
    shared = {
        name: getattr(args, name) for name in ("seed", "device", "quiet") if getattr(args, name, None) is not None
    }
    return Recipe(**given, **shared)


@dataclass
class Baseline:
    model: CharRNN
    vocab: CharVocab
    seconds: float
    iterations: int
    recipe: Recipe

    @property
    def chars_per_second(self) -> float:
        """Characters trained on (iterations x batch_size x seq_length) per second of the wall time."""
        return self.iterations * self.recipe.batch_size * self.recipe.seq_length / self.seconds


def train_baseline(text: str, recipe: Recipe) -> Baseline:
    """char-rnn trained on the first 90% of `text`, its checkpoint chosen on the last 10%."""
    vocab = CharVocab(text)
    torch.manual_seed(recipe.seed)
    model = CharRNN(len(vocab), recipe)
    at = split_at(text)
    seconds, iterations = train(model, vocab.encode(text[:at]), recipe, vocab.encode(text[at:]))
    return Baseline(model, vocab, seconds, iterations, recipe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    add_arguments(parser)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1...")
    parser.add_argument("--seed", type=int, default=Recipe.seed)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    text = read_corpus(args.corpus)
    baseline = train_baseline(text, recipe_from(args))
    bpc = bits_per_char(baseline.model, baseline.vocab.encode(text[split_at(text) :]))
    print(
        f"{args.corpus}: char-rnn {baseline.model.num_parameters():,} parameters, {baseline.iterations} iterations "
        f"in {baseline.seconds:.1f} s ({baseline.chars_per_second:,.0f} chars/s), held-out {bpc:.4f} bpc"
    )


if __name__ == "__main__":
    with errors_in_one_line():
        main()
