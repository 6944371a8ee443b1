"""A baby GPT: the baseline charlm has to beat on every script (issue 19).

    python -m bench.babygpt ../shared/corpora/tinyshakespeare.txt --iters 6000
    python -m bench.babygpt ../shared/corpora/tinyshakespeare.txt --gpu      # nanoGPT's GPU recipe, on CUDA

A small causal transformer trained with nanoGPT's CPU recipe for shakespeare_char, written from
the recipe: 4 layers, 4 heads, embedding 128, context 64, batch 12, dropout 0, AdamW (lr 1e-3,
betas 0.9/0.99, weight decay 0.1 on matrices and embeddings), 100 warm-up iterations then cosine
decay to 1e-4 at the last iteration, gradient clip 1.0, fp32. Pre-LayerNorm blocks, GELU MLP 4x,
learned position embeddings, the token embedding tied to the output head, no biases. As nanoGPT
does (`always_save_checkpoint=False`), the model kept is the one with the lowest held-out loss,
estimated on `eval_iters` random batches every `eval_interval` iterations and at the last (the
recipe's CPU command: 20); charlm keeps its best.pt the same way, so both are scored as their users
would sample from them.

`--gpu`: the same model and loop with nanoGPT's GPU recipe, config/train_shakespeare_char.py as
written: 6 layers, 6 heads, embedding 384, context 256, batch 64, dropout 0.2, lr 1e-3 decaying to
1e-4 at iteration 5000 after 100 warm-up iterations, 5000 iterations, beta2 0.99, weight decay 0.1,
gradient clip 1.0, the held-out estimate every 250 iterations on 200 batches, bf16 autocast and
torch.compile (the model runs eager if compiling fails on the machine, said on stderr), on --device
cuda. Any flag given overrides the recipe's value (the tests run its shape on a CPU with few
iterations, fewer estimate batches and --no-compile).

Text: read as charlm reads it (UTF-8, `\\r\\n` -> `\\n`, NFC, a final newline), so both models see the
same characters. The vocabulary is every character of the whole file, sorted: the same as
charlm's default, and no unknown symbol is needed (a character seen only in the held-out text has
an id both models never trained on, so both must give it a low probability). Training draws random
windows from the first 90%; the last 10% (`held_out`, charlm's val_fraction=0.1 split) is scored.

Scoring (`bits_per_char`) is exact, not an estimate: every character of a segment but its first is
predicted once, from the characters before it in the segment. The first window of a segment
predicts its first `block` targets (context 1..block); after that windows of `block` inputs move
on by `stride` (block // 2) and count only their last `stride` targets, so each of those has
between block - stride + 1 and block characters of context (the last window ends at the segment's
end and counts only the targets not yet counted). tests/test_bench.py checks this against scoring
every character by itself.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.common import errors_in_one_line, read_corpus, split_at
from charlm.errors import counted

LOG2E = 1.0 / math.log(2.0)


@dataclass
class GPTConfig:
    vocab_size: int
    layers: int = 4
    heads: int = 4
    embed: int = 128
    block: int = 64
    dropout: float = 0.0


@dataclass
class TrainConfig:
    iters: int = 6000
    batch: int = 12
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    beta2: float = 0.99
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    quiet: bool = False
    decay_iters: int | None = None  # where the cosine decay reaches min_lr (None: the last iteration)
    precision: str = "fp32"  # or "bf16": autocast
    compile: bool = False
    device: str = "cpu"


# nanoGPT's recipes for shakespeare_char (the CPU command of its README; config/train_shakespeare_char.py).
CPU_RECIPE = {"layers": 4, "heads": 4, "embed": 128, "block": 64, "dropout": 0.0, "iters": TrainConfig.iters}
CPU_RECIPE |= {"batch": 12, "eval_iters": 20, "decay_iters": None, "precision": "fp32", "compile": False}
CPU_RECIPE |= {"device": "cpu"}
GPU_RECIPE = {"layers": 6, "heads": 6, "embed": 384, "block": 256, "dropout": 0.2, "iters": 5000}
GPU_RECIPE |= {"batch": 64, "eval_iters": 200, "decay_iters": 5000, "precision": "bf16", "compile": True}
GPU_RECIPE |= {"device": "cuda"}


# -- text ------------------------------------------------------------------------------------------
class CharVocab:
    """Every character of the text, sorted (charlm's default vocabulary, in the same order)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)


# -- model -----------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.qkv = nn.Linear(config.embed, 3 * config.embed, bias=False)
        self.proj = nn.Linear(config.embed, config.embed, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, embed = x.shape
        q, k, v = self.qkv(x).split(embed, dim=2)
        q, k, v = (t.view(batch, time, self.heads, embed // self.heads).transpose(1, 2) for t in (q, k, v))
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, time, embed))


class Block(nn.Module):
    """Pre-LayerNorm: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed, bias=False)
        self.attention = SelfAttention(config)
        self.norm2 = nn.LayerNorm(config.embed, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(config.embed, 4 * config.embed, bias=False),
            nn.GELU(),
            nn.Linear(4 * config.embed, config.embed, bias=False),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class BabyGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.embed)
        self.positions = nn.Embedding(config.block, config.embed)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.embed, bias=False)
        self.head = nn.Linear(config.embed, config.vocab_size, bias=False)
        self.head.weight = self.tokens.weight  # tied
        # GPT-2's initialisation: N(0, 0.02), the projections into the residual stream scaled down by depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
        for block in self.blocks:
            for residual in (block.attention.proj, block.mlp[2]):
                nn.init.normal_(residual.weight, std=0.02 / math.sqrt(2 * config.layers))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (batch, time <= block) -> logits (batch, time, vocab)."""
        positions = torch.arange(ids.size(1), device=ids.device)
        x = self.drop(self.tokens(ids) + self.positions(positions))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# -- training --------------------------------------------------------------------------------------
def learning_rate(config: TrainConfig, it: int) -> float:
    """Linear warm-up over `warmup` iterations, then cosine decay to min_lr at `decay_iters` (default:
    the last iteration), min_lr after it."""
    if it < config.warmup:
        return config.lr * (it + 1) / (config.warmup + 1)
    progress = (it - config.warmup) / max(1, (config.decay_iters or config.iters) - config.warmup)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (config.lr - config.min_lr)


def make_optimizer(model: BabyGPT, config: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on matrices and embeddings, none on the LayerNorm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    free = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": free, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, config.beta2))


def random_windows(ids: torch.Tensor, block: int, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """`batch` random windows of `block` inputs from `ids`, and their targets (the next characters)."""
    starts = torch.randint(len(ids) - block, (batch, 1), generator=generator)
    offsets = torch.arange(block)
    return ids[starts + offsets], ids[starts + offsets + 1]


@torch.no_grad()
def estimate_loss(model: BabyGPT, ids: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> float:
    """Mean loss on `eval_iters` random batches of `ids` (nanoGPT's estimate, used to keep the best model)."""
    block = min(model.config.block, len(ids) - 1)
    device = next(model.parameters()).device
    model.eval()
    losses = []
    for _ in range(config.eval_iters):
        inputs, targets = (t.to(device) for t in random_windows(ids, block, config.batch, generator))
        losses.append(F.cross_entropy(model(inputs).flatten(0, 1).float(), targets.flatten()))
    model.train()
    return torch.stack(losses).mean().item()


def train(model: BabyGPT, train_ids: torch.Tensor, config: TrainConfig, held_out: torch.Tensor | None = None) -> float:
    """Train on random windows of `train_ids` for config.iters iterations on config.device; returns the
    wall seconds (compiling included). With `held_out`, the model ends with the weights of its best
    held-out estimate (see the docstring)."""
    block = model.config.block
    if len(train_ids) <= block:
        raise SystemExit(
            f"babygpt: the training text, {counted(len(train_ids), 'character')}, is shorter than one window of {block + 1}"
        )
    device = torch.device(config.device)
    model.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    eval_generator = torch.Generator().manual_seed(config.seed + 1)
    best_loss, best_state = float("inf"), None
    precision = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    model.train()
    started = time.perf_counter()
    net = torch.compile(model) if config.compile else model

    def step(it: int) -> torch.Tensor:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, it)
        inputs, targets = (t.to(device) for t in random_windows(train_ids, block, config.batch, generator))
        with precision:
            loss = F.cross_entropy(net(inputs).flatten(0, 1).float(), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        return loss

    with tqdm(total=config.iters, desc="baby GPT", unit="it", disable=config.quiet) as bar:
        for it in range(config.iters):
            try:
                loss = step(it)
            except Exception as error:  # torch.compile without a working backend here: the same model, eager
                if net is model or it:
                    raise
                print(f"babygpt: torch.compile failed ({type(error).__name__}: {error}); eager", file=sys.stderr)
                net = model
                loss = step(it)
            bar.update()
            if it % 50 == 0 or it == config.iters - 1:
                bar.set_postfix(bpc=f"{loss.item() * LOG2E:.3f}", refresh=False)
            if held_out is not None and ((it + 1) % config.eval_interval == 0 or it == config.iters - 1):
                with precision:
                    estimate = estimate_loss(net, held_out, config, eval_generator)
                if estimate < best_loss:
                    best_loss, best_state = estimate, {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


# -- scoring ---------------------------------------------------------------------------------------
def windows(length: int, block: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, size, counted) of the windows that score a segment of `length` characters: inputs
    segment[start : start + size], each predicting the next character; the last `counted` predictions
    count. Together they count every target 1 .. length - 1 once (see the module docstring)."""
    targets = length - 1
    if targets < 1:
        return []
    first = min(block, targets)
    spans, done = [(0, first, first)], first
    while done < targets:
        end = min(done + stride, targets)  # the last target this window counts
        spans.append((end - block, block, end - done))
        done = end
    return spans


@torch.no_grad()
def bits_per_char(model: BabyGPT, segments: list[torch.Tensor], stride: int | None = None, batch: int = 256) -> float:
    """Bits per character over every character of every segment but the segment's first, each
    predicted from up to `block` characters before it in its segment (exact: see the module docstring)."""
    block = model.config.block
    stride = stride or max(1, block // 2)
    device = next(model.parameters()).device  # scored in fp32 wherever the model is
    was_training = model.training
    model.eval()
    total_nats, counted = 0.0, 0
    for ids in segments:
        by_size: dict[int, list[tuple[int, int]]] = {}
        for start, size, count in windows(len(ids), block, stride):
            by_size.setdefault(size, []).append((start, count))
        for size, spans in by_size.items():
            offsets = torch.arange(size)
            for i in range(0, len(spans), batch):
                starts = torch.tensor([s for s, _ in spans[i : i + batch]]).unsqueeze(1)
                counts = torch.tensor([c for _, c in spans[i : i + batch]]).unsqueeze(1)
                logits = model(ids[starts + offsets].to(device)).float().cpu()
                nats = F.cross_entropy(logits.transpose(1, 2), ids[starts + offsets + 1], reduction="none")
                keep = offsets >= size - counts  # the last `count` predictions of each window
                total_nats += nats[keep].double().sum().item()
                counted += int(keep.sum())
    model.train(was_training)
    return total_nats / max(counted, 1) * LOG2E


# -- command line ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The baseline's flags, shared with bench/versus.py (defaults: the CPU recipe, or with --gpu the
    GPU recipe; see the module docstring)."""
    parser.add_argument("--gpu", action="store_true", help="nanoGPT's GPU recipe (on --device cuda)")
    parser.add_argument("--iters", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--embed", type=int)
    parser.add_argument("--block", type=int, help="context length")
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--eval-iters", type=int, help="batches of each held-out estimate")
    parser.add_argument("--precision", choices=("fp32", "bf16"))
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile the model")
    parser.add_argument("--device", help="cpu, cuda, cuda:1...")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """The flags not given take the recipe's values (GPU_RECIPE with --gpu, else CPU_RECIPE)."""
    for name, value in (GPU_RECIPE if args.gpu else CPU_RECIPE).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def configs(args: argparse.Namespace, vocab_size: int) -> tuple[GPTConfig, TrainConfig]:
    args = resolve(args)
    shape = {"layers": args.layers, "heads": args.heads, "embed": args.embed, "block": args.block}
    model = GPTConfig(vocab_size, dropout=args.dropout, **shape)
    loop = {"iters": args.iters, "batch": args.batch, "eval_iters": args.eval_iters, "decay_iters": args.decay_iters}
    loop |= {"precision": args.precision, "compile": args.compile, "device": args.device}
    return model, TrainConfig(seed=args.seed, quiet=args.quiet, **loop)


@dataclass
class Baseline:
    model: BabyGPT
    vocab: CharVocab
    seconds: float
    config: TrainConfig

    @property
    def chars_per_second(self) -> float:
        """Characters trained on (iterations x batch x context) per second of the wall time."""
        return self.config.iters * self.config.batch * self.model.config.block / self.seconds


def train_baseline(text: str, args: argparse.Namespace) -> Baseline:
    """Train a baby GPT on the first 90% of `text` with the flags of `add_arguments`."""
    vocab = CharVocab(text)
    model_config, train_config = configs(args, len(vocab))
    torch.manual_seed(train_config.seed)
    model = BabyGPT(model_config)
    at = split_at(text)
    seconds = train(model, vocab.encode(text[:at]), train_config, vocab.encode(text[at:]))
    return Baseline(model, vocab, seconds, train_config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    add_arguments(parser)
    args = resolve(parser.parse_args())
    text = read_corpus(args.corpus)
    baseline = train_baseline(text, args)
    bpc = bits_per_char(baseline.model, [baseline.vocab.encode(text[split_at(text) :])])
    print(
        f"{args.corpus}: baby GPT {baseline.model.num_parameters():,} parameters, {counted(args.iters, 'iteration')} in "
        f"{baseline.seconds:.1f} s ({baseline.chars_per_second:,.0f} chars/s), held-out {bpc:.4f} bpc"
    )


if __name__ == "__main__":
    with errors_in_one_line():
        main()
