"""Whether the thread count changes a training step's bits, by model size, on this CPU.

    python -m bench.thread_bits [--cells 32,64,128,256,512] [--layers 2]

charlm's governor (charlm/threads.py) moves a run between 1 and 2 threads on measured speed, so two runs of
one seed switch at other steps; where a step's gradients depend on the count, their weights part in the last
bits. For each size this takes the gradients of one step of a charlm model on 1 and on 2 threads (same
weights, same batch) and names the parameters whose gradients differ in any bit.
"""

from __future__ import annotations

import argparse

import torch

from charlm.model import CharLM, ModelConfig
from charlm.vocab import Vocab

SHAPES = ((4, 8), (16, 25), (64, 25))  # streams x window: the tests' tiny runs, the default, a GPU-like batch
VOCAB = 65  # tinyshakespeare's


def gradients(threads: int, cells: int, layers: int, streams: int, window: int) -> dict[str, torch.Tensor]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = CharLM(ModelConfig("lstm", layers, cells, 0.0, VOCAB, ()), Vocab([chr(33 + i) for i in range(VOCAB)]))
    draw = torch.Generator().manual_seed(1)
    ids, targets = (torch.randint(0, VOCAB, (streams, window), generator=draw) for _ in range(2))
    nats, _ = model(ids, None, targets)
    nats.mean().backward()
    return {name: p.grad for name, p in model.named_parameters()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="32,64,128,256,512")
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.layers} layers")
    for cells in (int(part) for part in args.cells.split(",")):
        for streams, window in SHAPES:
            one, two = (gradients(n, cells, args.layers, streams, window) for n in (1, 2))
            differ = [name for name in one if not torch.equal(one[name], two[name])]
            print(f"{cells:4d} cells, {streams:3d} x {window:2d}: {', '.join(differ) if differ else 'same bits'}")


if __name__ == "__main__":
    main()
