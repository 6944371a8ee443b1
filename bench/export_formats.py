"""The onnx and safetensors exports of runs: their sizes beside the run's best.pt, and how fast
onnxruntime steps the onnx model one character at a time (the figures of docs/export.md).

    python -m bench.export_formats RUN [RUN ...] [--steps 2000] [--rounds 3]

Each run is exported with `charlm export` into a temporary folder. The speed is one character per
`session.run`, the state fed back, on one onnxruntime thread (intra- and inter-op), best of --rounds
runs of --steps steps. Needs onnxruntime (`pip install 'charlm[export]'`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import errors_in_one_line
from charlm import runs
from charlm.cli import main as charlm_main


def export(run: str, fmt: str, output: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # its "wrote PATH" line
        charlm_main(["export", run, "--format", fmt, "--output", str(output)], standalone_mode=False)


def steps_per_second(path: Path, steps: int, rounds: int) -> float:
    """onnxruntime's speed stepping the model one character at a time on one thread, the best round."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    names = [i.name for i in session.get_inputs()][1:]  # the state: h0 (and c0)
    shape = (int(meta["charlm.layers"]), 1, int(meta["charlm.hidden"]))
    ids = np.zeros((1, 1), np.int64)
    best = float("inf")
    for _ in range(rounds):
        state = {name: np.zeros(shape, np.float32) for name in names}
        started = time.perf_counter()
        for _ in range(steps):
            _, *after = session.run(None, {"ids": ids, **state})
            state = dict(zip(names, after))
        best = min(best, time.perf_counter() - started)
    return steps / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--steps", type=int, default=2000, help="characters per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the best counts")
    options = parser.parse_args()
    for run in options.runs:  # one not there said before any work
        runs.resolve(run)
    print("| run | best.pt MB | onnx MB | safetensors folder MB | onnxruntime steps/s, 1 thread |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as temporary:
        for run in options.runs:
            folder = Path(temporary) / Path(run).name
            export(run, "onnx", folder / "model.onnx")
            export(run, "safetensors", folder / "model")
            best = runs.resolve(run).stat().st_size / 1e6  # the run's best.pt, which export reads
            onnx = (folder / "model.onnx").stat().st_size / 1e6
            tensors = sum(f.stat().st_size for f in (folder / "model").iterdir()) / 1e6
            speed = steps_per_second(folder / "model.onnx", options.steps, options.rounds)
            print(f"| {Path(run).name} | {best:.2f} | {onnx:.2f} | {tensors:.2f} | {speed:,.0f} |", flush=True)


if __name__ == "__main__":
    with errors_in_one_line():
        main()
