"""Sampling speed, all measured in this one process (these machines are noisy: compare ratios).

    python -m bench.sample_speed [--hidden 512 --layers 2 --chars 2000] [--vocab 4447 --head 500,2000]
    python -m bench.sample_speed --device cuda      on a GPU (no bf16 rows: --precision bf16 is a CPU step)

Prints chars/s of charlm's generation for one stream and for 64 streams (fp32, and bf16: the
`--precision bf16` step, for CPUs with bf16 hardware), against:
  (a) a bare loop calling nn.LSTM (+ embedding and head) once per character,
  (b) the roofline: a plain step's matrix products alone, in a tight loop (charlm's step does less:
      layer 0's input product is a table lookup),
  (c) a naive loop that re-runs the whole prefix for every new character (no carried state).
"""

from __future__ import annotations

import argparse

import torch

from bench.common import best_seconds as timed
from charlm import CharLM, ModelConfig
from charlm.config import SampleConfig
from charlm.device import resolve_device, synchronize
from charlm.errors import counted
from charlm.generation import Batch, Row
from charlm.inference_context import inference
from charlm.sampler import generate
from charlm.serve.engine import Engine, Job, Update
from charlm.vocab import Vocab


def rate(chars: int, seconds: float) -> float:
    return chars / seconds


def best_rates(runs: dict, rounds: int) -> dict[str, float]:
    """Chars/s of each run, the best of `rounds`. The runs take turns, round after round, so a noisy
    spell on a shared machine falls on all of them alike rather than on one."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, (_, fn) in runs.items():
            best[name] = min(best[name], timed(fn, repeats=1))
    return {name: rate(runs[name][0], seconds) for name, seconds in best.items()}


def bare_lstm_loop(model: CharLM, chars: int) -> None:
    ids, state = torch.zeros(1, 1, dtype=torch.long, device=model.device), None
    with torch.inference_mode():
        for _ in range(chars):
            out, state = model.core(model.embed(ids), state)
            logits = model.head.logits(out[:, -1])
            ids = logits.argmax(-1, keepdim=True)
    synchronize(model.device)  # a GPU's kernels are queued: the clock waits for them


def roofline_loop(model: CharLM, chars: int) -> None:
    """Only the matrix products one step needs: per layer [x | h] @ W (input+hidden x 4 hidden), and the head."""
    hidden, layers, on = model.config.hidden, model.config.layers, {"device": model.device}
    weights = [torch.randn(2 * hidden, 4 * hidden, **on) for _ in range(layers)]
    head = torch.randn(hidden, len(model.vocab), **on)
    xh, gates = torch.randn(1, 2 * hidden, **on), torch.empty(1, 4 * hidden, **on)
    logits = torch.empty(1, len(model.vocab), **on)
    with torch.inference_mode():
        for _ in range(chars):
            for w in weights:
                torch.mm(xh, w, out=gates)
            torch.mm(xh[:, :hidden], head, out=logits)
    synchronize(model.device)


def naive_forward_seconds(model: CharLM, length: int) -> float:
    """Seconds to run the model over a prefix of `length` characters (what a stateless sampler pays per character)."""
    ids = torch.zeros(1, length, dtype=torch.long, device=model.device)
    with torch.inference_mode():
        return timed(lambda: (model(ids), synchronize(model.device)), repeats=2)


def server_batch(model: CharLM, rows: int, capacity: int, n: int) -> None:
    """`rows` streams of n characters in a server's padded batch of `capacity` rows: the step alone
    (`Batch.step`), without the engine's loop around it."""
    batch = Batch(model, capacity)
    primed = batch.prime(torch.tensor([0]))
    for seed in range(rows):
        batch.join(Row(n), primed, SampleConfig(), seed, torch.tensor([0]))
    with torch.inference_mode():
        for _ in range(n):
            batch.step()
    synchronize(model.device)


def server_engine(model: CharLM, capacity: int, n: int) -> None:
    """One request of n characters served by charlm serve's engine in a batch of `capacity` rows, without
    HTTP: its own loop (`Engine.run`, here in this thread), the step with the boundaries, the rules and the
    publishing around it. The loop pins its thread's torch threads: this thread's count is put back."""
    threads = torch.get_num_threads()

    def publish(updates: list[Update]) -> None:
        engine.stopping = engine.stopping or any(update.finish_reason for update in updates)

    engine = Engine(model, capacity, publish)
    ids = torch.tensor([0])
    with inference(model):
        logits, state = engine.batch.prime(ids)
    engine.submit(Job(ids, logits, state, SampleConfig(), [0], n))
    try:
        engine.run()  # returns once the request's last update is published
    finally:
        torch.set_num_threads(threads)
    synchronize(model.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4, help="turns each run gets; the best counts")
    parser.add_argument("--vocab", type=int, default=65, help="characters in the vocabulary (a Chinese one: 4447)")
    parser.add_argument("--head", default="", help="an adaptive head's cutoffs, e.g. 500,2000 (default: a full head)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    vocab = Vocab([chr(32 + i) for i in range(args.vocab - 1)] + ["\n"])
    cutoffs = tuple(int(c) for c in args.head.split(",") if c)
    model = CharLM(ModelConfig("lstm", args.layers, args.hidden, 0.0, len(vocab), cutoffs), vocab).eval().to(device)
    n = args.chars
    head = f"adaptive head {cutoffs}" if cutoffs else "full head"
    where = counted(torch.get_num_threads(), "thread") if device.type == "cpu" else str(device)
    print(f"model {args.layers}x{args.hidden} lstm, vocabulary {len(vocab)}, {head}, {where}")

    streams = args.streams
    batch, rows = counted(streams, "stream"), counted(streams, "row")

    def sampling(samples: int, precision: str = "fp32", **options):
        return lambda: generate(
            model, "A", length=n, num_samples=samples, precision=precision, random_seed=0, **options
        )

    runs = {  # name: (characters made, what makes them)
        "1": (n, sampling(1)),
        "1 greedy": (n, sampling(1, greedy=True)),
        "batch": (n * streams, sampling(streams)),
        "server 1": (n, lambda: server_engine(model, streams, n)),
        f"server {streams}": (n * streams, lambda: server_batch(model, streams, streams, n)),
        "bare": (n, lambda: bare_lstm_loop(model, n)),
        "roofline": (n, lambda: roofline_loop(model, n)),
    }
    cpu = device.type == "cpu"
    if cpu:  # --precision bf16 is the CPU's bf16 step
        runs |= {"1 bf16": (n, sampling(1, "bf16")), "batch bf16": (n * streams, sampling(streams, "bf16"))}
    rates = best_rates(runs, args.rounds)
    ours, ours_greedy, batched, bare, roof = (rates[k] for k in ("1", "1 greedy", "batch", "bare", "roofline"))

    # The naive loop re-runs the prefix: character k costs a forward over k characters. Time forwards
    # at a few lengths, fit a + b*k, and sum over k = 1..n (running it all would take minutes).
    lengths = [50, n // 4, n // 2, n]
    seconds = [naive_forward_seconds(model, k) for k in lengths]
    mean_k = sum(lengths) / len(lengths)
    mean_s = sum(seconds) / len(seconds)
    slope = sum((k - mean_k) * (s - mean_s) for k, s in zip(lengths, seconds)) / sum((k - mean_k) ** 2 for k in lengths)
    intercept = mean_s - slope * mean_k
    naive_total = sum(intercept + slope * k for k in range(1, n + 1))
    naive = rate(n, naive_total)

    print(f"\n{'what':<52} {'chars/s':>12}")
    print(f"{'charlm generate, 1 stream (temperature 0.8)':<52} {ours:>12,.0f}")
    print(f"{'charlm generate, 1 stream (greedy)':<52} {ours_greedy:>12,.0f}")
    print(f"{f'charlm generate, {batch} in one batch (total)':<52} {batched:>12,.0f}")
    if cpu:
        print(f"{'charlm generate, 1 stream, --precision bf16':<52} {rates['1 bf16']:>12,.0f}")
        print(f"{f'charlm generate, {batch}, --precision bf16 (total)':<52} {rates['batch bf16']:>12,.0f}")
    print(f"{f'server engine of {rows}, 1 stream (no HTTP)':<52} {rates['server 1']:>12,.0f}")
    print(f"{f'server step batch of {rows}, {batch} (total)':<52} {rates[f'server {streams}']:>12,.0f}")
    print(f"{'(a) bare loop: nn.LSTM called once per character':<52} {bare:>12,.0f}")
    print(f"{'(b) roofline: the step matrix products alone':<52} {roof:>12,.0f}")
    print(f"{'(c) naive: re-run the prefix per character, ' + counted(n, 'char'):<52} {naive:>12,.1f}")
    print("\nratios")
    print(f"  1 stream vs bare nn.LSTM loop:      {ours / bare:6.2f}x   (target >= 2x)")
    print(f"  1 stream vs roofline:               {ours / roof:6.2f}    (target >= 0.60)")
    print(f"  {batch} vs 1 stream (total):     {batched / ours:6.1f}x   (target >= 25x)")
    if cpu:
        print(f"  {batch} bf16 vs 1 stream bf16:   {rates['batch bf16'] / rates['1 bf16']:6.1f}x")
        print(f"  {batch} bf16 vs 1 stream fp32:   {rates['batch bf16'] / ours:6.1f}x")
    print(f"  1 stream vs naive prefix re-run:    {ours / naive:6.0f}x   (target >= 50x at {counted(n, 'character')})")


if __name__ == "__main__":
    main()
