"""Training throughput, all in one process (these machines are noisy: compare the ratios).

    python -m bench.train_speed [--sizes 256,512,1024] [--steps 100] [--rounds 2] [--batch 16]
                                [--precision fp32|bf16] [--peak-size 2048]

For each LSTM size (2 layers, window 25, 65 characters) prints chars/s of:
  charlm   the real training loop (Trainer.fit: windows, schedule, clipping, progress, checks),
           in --precision (bf16: autocast on CPUs with bf16 support),
  bare     the same model (dropout too), optimizer and clipping in a minimal fp32 loop on one fixed
           batch: plain fp32 `nn.LSTM` between an embedding and a head,
  cells    a Python loop over nn.LSTMCell, what naive ports do,
and model FLOP/s over this CPU's fp32 matmul peak, measured here with torch.mm.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import bare_config, seconds_per_call, training_step
from charlm import CharLM, ModelConfig, optim
from charlm.config import Config
from charlm.vocab import Vocab

SEQ, VOCAB, LAYERS = 25, 65, 2
BATCH = 16  # --batch


def matmul_peak(size: int = 2048) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start, n = time.perf_counter(), 10
    for _ in range(n):
        a @ b
    return 2 * size**3 * n / (time.perf_counter() - start)


def flops_per_char(hidden: int) -> float:
    """Forward FLOPs per character (gates of every layer and the head), times 3 for forward + backward."""
    forward = sum(2 * 4 * hidden * (hidden + hidden) for _ in range(LAYERS)) + 2 * hidden * VOCAB
    return 3 * forward


def chars_per_second(step, steps: int) -> float:
    return BATCH * SEQ / seconds_per_call(step, calls=steps, warmup=3)


def bare_loop(config: Config, steps: int) -> float:
    """The same model, optimizer and clipping as charlm's loop, on one fixed batch, nothing else."""
    torch.manual_seed(0)
    architecture = ModelConfig(config.cell, config.layers, config.hidden, config.dropout, VOCAB)
    model = CharLM(architecture, Vocab([chr(32 + i) for i in range(VOCAB)]))
    opt = optim.make_optimizer(model, config)
    x = torch.randint(0, VOCAB, (BATCH, SEQ + 1))
    state = None

    def step():
        nonlocal state
        logits, state = model(x[:, :-1], state)
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
        opt.step()
        state = tuple(s.detach() for s in state)

    return chars_per_second(step, steps)


def cell_loop(hidden: int, steps: int) -> float:
    torch.manual_seed(0)
    embed, head = nn.Embedding(VOCAB, hidden), nn.Linear(hidden, VOCAB)
    cells = nn.ModuleList(nn.LSTMCell(hidden, hidden) for _ in range(LAYERS))
    params = [*embed.parameters(), *cells.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, fused=True)
    x = torch.randint(0, VOCAB, (BATCH, SEQ + 1))

    def step():
        h = [(torch.zeros(BATCH, hidden), torch.zeros(BATCH, hidden)) for _ in cells]
        outputs = []
        for t in range(SEQ):
            inp = embed(x[:, t])
            for n, cell in enumerate(cells):
                h[n] = cell(inp, h[n])
                inp = h[n][0]
            outputs.append(inp)
        loss = F.cross_entropy(head(torch.stack(outputs, 1)).flatten(0, 1), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return chars_per_second(step, steps)


def loop_config(hidden: int, steps: int, precision: str = "fp32") -> Config:
    return bare_config(
        hidden=hidden, layers=LAYERS, batch_size=BATCH, seq_len=SEQ, max_steps=steps + 5, dropout=0.1,
        warmup_steps=0, precision=precision,
    )  # fmt: skip


def charlm_loop(config: Config, corpus: Path, folder: Path) -> float:
    return training_step(config, [corpus], folder / f"run-{config.hidden}-{time.time_ns()}").fit()


def measure_sizes(args: argparse.Namespace, folder: Path) -> None:
    """The table: a row for each of --sizes, its runs and corpus in `folder`."""
    rng = random.Random(0)
    corpus = folder / "corpus.txt"
    corpus.write_text("".join(rng.choices("abcdefghijklmnopqrstuvwxyz \n.,;ABCDEFGH", k=2_000_000)))  # ~0.2 s, not 2.5
    peak = matmul_peak(args.peak_size)
    size = f"{args.peak_size}x{args.peak_size}"
    print(f"fp32 matmul peak (torch.mm {size}): {peak / 1e9:.0f} GFLOP/s, {torch.get_num_threads()} threads")
    print(f"batch {BATCH}, window {SEQ}; charlm in {args.precision}, bare and cells in fp32")
    print(
        f"\n{'size':<8} {'charlm':>9} {'bare':>9} {'cells':>9}  {'charlm/bare':>11} {'bare/cells':>10}  {'FLOP/s / peak':>13}"
    )
    for hidden in (int(h) for h in args.sizes.split(",")):
        config = loop_config(hidden, args.steps, args.precision)
        ours, bare = 0.0, 0.0
        for _ in range(args.rounds):  # alternate, keep the best of each: a noisy neighbour hits both alike
            ours = max(ours, charlm_loop(config, corpus, folder))
            bare = max(bare, bare_loop(loop_config(hidden, args.steps), args.steps))
        cells = cell_loop(hidden, max(10, args.steps // 3))
        use = flops_per_char(hidden) * ours / peak
        print(
            f"2x{hidden:<6} {ours:>9,.0f} {bare:>9,.0f} {cells:>9,.0f}  {ours / bare:>11.3f} {bare / cells:>10.2f}"
            f"  {use:>13.2f}",
            flush=True,
        )


def main() -> None:
    global BATCH  # --batch sets the batch of all three loops
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--precision", default="fp32", help="charlm's loop: fp32 or bf16 (the bare loop stays fp32)")
    parser.add_argument(
        "--peak-size",
        type=int,
        default=2048,
        help="the side of the matrices the peak is timed on (smaller: quicker, lower)",
    )
    args = parser.parse_args()
    BATCH = args.batch
    with tempfile.TemporaryDirectory(prefix="train-speed-") as temporary:  # removed at the end and on Ctrl-C
        measure_sizes(args, Path(temporary))
    print("\nchars/s; charlm/bare target >= 0.95")


if __name__ == "__main__":
    main()
