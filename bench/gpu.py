"""Training throughput on one CUDA GPU: charlm's step against a plain nn.LSTM loop, bf16 and fp32.

    python -m bench.gpu                 # on a GPU machine: 2x512, 3x1024, 4x2048 at batch 256 and 1024
    python -m bench.gpu --tiny          # a small CPU run that checks the script works (what the tests run)

For each size, batch and precision prints chars/s and model TFLOP/s of
  charlm   a run's training step (train_state.train_step): windows from the token stream, pinned
           copies, autocast, grad scaler, clipping, the schedule, the carried hidden state,
  plain    embedding + nn.LSTM + linear head, AdamW, one fixed batch on the GPU, nothing else,
and their ratio. Each measurement runs warm-up steps, then steps until --seconds have passed; the
whole run stops measuring at --budget seconds (default 240: the script must finish in 5 minutes),
printing what it skipped. A size that does not fit in memory prints OOM and the run goes on.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import bare_config, seconds_per_call, training_step
from charlm.device import autocast
from charlm.model import core_autocast

VOCAB_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'-\n"
FULL = {"sizes": "2x512,3x1024,4x2048", "batches": "256,1024", "seq_len": 100, "seconds": 2.0, "device": "cuda"}
TINY = {"sizes": "1x32,2x64", "batches": "4,8", "seq_len": 16, "seconds": 0.2, "device": "cpu"}


def flops_per_char(layers: int, hidden: int, vocab: int) -> float:
    """Forward matmul FLOPs per character (every layer's gates, the head), times 3 for the backward."""
    return 3 * (layers * 2 * 4 * hidden * (hidden + hidden) + 2 * hidden * vocab)


def charlm_step(corpus: Path, folder: Path, layers: int, hidden: int, batch: int, args, precision: str):
    config = bare_config(
        layers=layers, hidden=hidden, batch_size=batch, seq_len=args.seq_len, dropout=0.0, device=args.device,
        precision=precision,
    )  # fmt: skip
    return training_step(config, [corpus], folder / f"run-{time.time_ns()}")


def plain_step(layers: int, hidden: int, batch: int, args, precision: str, vocab: int):
    """The same shapes in the plainest loop torch offers."""
    device = torch.device(args.device)
    embed = nn.Embedding(vocab, hidden).to(device)
    lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True).to(device)
    head = nn.Linear(hidden, vocab).to(device)
    params = [*embed.parameters(), *lstm.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, fused=device.type == "cuda")
    ids = torch.randint(0, vocab, (batch, args.seq_len + 1), device=device)

    def step():
        with autocast(device, precision):
            with core_autocast(lstm, device):  # as charlm's model runs it: outside a CPU autocast it cannot take
                out, _ = lstm(embed(ids[:, :-1]))
            loss = F.cross_entropy(head(out).flatten(0, 1), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(make_step, device: torch.device, seconds: float) -> float | str:
    try:
        return seconds_per_call(make_step(), seconds=seconds, device=device)
    except torch.OutOfMemoryError:
        return "OOM"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tiny", action="store_true", help="small sizes on the CPU: checks the script, measures nothing"
    )
    parser.add_argument("--sizes", help="LAYERSxHIDDEN,...")
    parser.add_argument("--batches", help="batch sizes, e.g. 256,512,1024")
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--seconds", type=float, help="timed seconds per measurement")
    parser.add_argument("--budget", type=float, default=240.0, help="stop measuring after this many seconds")
    args = parser.parse_args()
    for name, value in (TINY if args.tiny else FULL).items():
        if getattr(args, name, None) is None or name == "device":
            setattr(args, name, value)
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("bench.gpu measures a CUDA GPU and this machine has none; --tiny runs a small CPU check")
    device = torch.device(args.device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as temporary:  # removed at the end and on Ctrl-C
        folder = Path(temporary)
        corpus = folder / "corpus.txt"
        longest = max(int(b) for b in args.batches.split(",")) * (args.seq_len + 1) * 8
        corpus.write_text("".join(random.Random(0).choices(VOCAB_CHARS, k=longest)))
        vocab = len(VOCAB_CHARS)
        name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
        print(f"{name}, torch {torch.__version__}, window {args.seq_len}, {args.seconds}s a measurement")
        print(f"\n{'size':<8} {'batch':>6} {'prec':<5} {'charlm chars/s':>15} {'TFLOP/s':>8} {'plain chars/s':>14} "
              f"{'TFLOP/s':>8} {'charlm/plain':>12}")  # fmt: skip
        for size in args.sizes.split(","):
            layers, hidden = (int(n) for n in size.split("x"))
            for batch in (int(b) for b in args.batches.split(",")):
                for precision in ("bf16", "fp32"):
                    if time.perf_counter() - started > args.budget:
                        print(f"{size:<8} {batch:>6} {precision:<5} skipped: --budget {args.budget:.0f}s spent")
                        continue
                    shape = (layers, hidden, batch, args, precision)
                    ours = measure(partial(charlm_step, corpus, folder, *shape), device, args.seconds)
                    plain = measure(partial(plain_step, *shape, vocab), device, args.seconds)
                    cells = [f"{size:<8} {batch:>6} {precision:<5}"]
                    for result, width in ((ours, 15), (plain, 14)):
                        if isinstance(result, str):
                            cells.append(f"{result:>{width}} {'-':>8}")
                        else:
                            chars = batch * args.seq_len / result
                            cells.append(
                                f"{chars:>{width},.0f} {chars * flops_per_char(layers, hidden, vocab) / 1e12:>8.2f}"
                            )
                    ratio = plain / ours if not isinstance(ours, str) and not isinstance(plain, str) else None
                    cells.append(f"{ratio:>12.3f}" if ratio else f"{'-':>12}")
                    print(" ".join(cells), flush=True)
    print(f"\ntotal {time.perf_counter() - started:.0f}s; charlm/plain is the chars/s ratio (target >= 0.95)")


if __name__ == "__main__":
    main()
