"""A Python caller's sampling under load: charlm.generate's thread governor against torch's own count.

    python -m bench.api_threads [--seconds 20] [--rounds 2] [--hidden 512] [--length 200]

A notebook calls charlm.generate again and again, each call a short text, while another program may
hold a core. Each situation runs in a process of its own (the governor keeps what it learned from call
to call within a process): a loop of `--length`-character samples for `--seconds`, quiet and with one
core kept busy, through charlm.generate (governed) and through the sampler itself on torch's count
(what charlm.generate did before it had a governor) and, busy, on one thread (the best fixed count
there). Reports characters per second and each one's share of the quiet fixed run. The governor's
comparisons come after 2 s, then less and less often: a longer --seconds shows less of their cost.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch

from bench.common import busy_processes
from charlm import CharLM, ModelConfig, generate
from charlm.errors import counted
from charlm.sampler import generate as fixed_generate
from charlm.vocab import Vocab

SITUATIONS = {  # name: (busy cores, how it samples: the sampler on torch's count or on one thread, or governed)
    "quiet, torch's count (fixed)": (0, "torch's count"),
    "quiet, charlm.generate (governor)": (0, "governed"),
    "one core busy, torch's count (fixed)": (1, "torch's count"),
    "one core busy, one thread (fixed)": (1, "one thread"),
    "one core busy, charlm.generate (governor)": (1, "governed"),
}


def sample_loop(how: str, seconds: float, hidden: int, length: int) -> float:
    """Characters per second of a loop of samples of `length` characters for `seconds`, sampled `how`."""
    if how == "one thread":
        torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab = Vocab([chr(32 + i) for i in range(64)] + ["\n"])
    model = CharLM(ModelConfig("lstm", 2, hidden, 0.0, len(vocab), ()), vocab).eval()
    write = generate if how == "governed" else fixed_generate
    write(model, "A", length=length, random_seed=0)  # warm up
    chars, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        write(model, "A", length=length, random_seed=chars)
        chars += length
    return chars / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="turns each situation gets; the best counts")
    parser.add_argument("--situation", choices=SITUATIONS, help=argparse.SUPPRESS)  # one run, in its own process
    args = parser.parse_args()
    if args.situation:
        print(sample_loop(SITUATIONS[args.situation][1], args.seconds, args.hidden, args.length))
        return
    print(
        f"model 2x{args.hidden} lstm, vocabulary 65, samples of {args.length} characters, {args.seconds:.0f} s each, "
        f"best of {counted(args.rounds, 'round')} taken in turns"
    )
    best = dict.fromkeys(SITUATIONS, 0.0)
    for _ in range(args.rounds):  # in turns, so that a slow spell of the machine falls on every situation alike
        for name, (busy, _) in SITUATIONS.items():
            command = [sys.executable, "-m", "bench.api_threads", "--situation", name, "--seconds", str(args.seconds)]
            command += ["--hidden", str(args.hidden), "--length", str(args.length)]
            with busy_processes(busy):
                speed = float(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            best[name] = max(best[name], speed)
    quiet = next(iter(best.values()))
    print(f"{'situation':<44} {'chars/s':>9} {'share of quiet':>15}")
    for name, speed in best.items():
        print(f"{name:<44} {speed:>9,.0f} {speed / quiet:>15.2f}")


if __name__ == "__main__":
    main()
