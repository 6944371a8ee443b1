"""The exported HTML page (`charlm export --format html`) measured in headless Chromium.

    python -m bench.export_page RUN [RUN ...] [--text FILE] [--chars 3000]

For each run and each stored precision (fp32, fp16, int8): the file's size; the largest and mean
difference between the page's log-probabilities and PyTorch's fp32 ones over 500 characters of
FILE (default: the middle of the run's first corpus file); whether greedy decoding from a 20-character
seed gives exactly `charlm sample --greedy`'s 300 characters; and characters per second of
`window.charlm.generate` (temperature 0.8, best of 3) and how long the page took to be ready.
Needs chromium and chromedriver (apt-get install chromium chromium-driver) and selenium.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch

from bench.browser import chromium
from bench.common import errors_in_one_line
from charlm import catalog, checkpoint, runs, sampler
from charlm.cli import main as charlm_main
from charlm.sources import catalog_name

PRECISIONS = ("fp32", "fp16", "int8")


def awaited(driver, script: str, *args):
    """The value of a promise in the page; `script` reads its arguments as args[0], args[1], ..."""
    wrapper = "const done = arguments[arguments.length - 1], args = arguments; ({}).then(done, (e) => done(String(e)));"
    return driver.execute_async_script(wrapper.format(script), *args)


def first_source(sources: list[str]) -> Path:
    """The run's first corpus file: a catalog name (`charlm train tinyshakespeare`) is its downloaded
    file, as training read it, not a path."""
    return catalog.get(sources[0], quiet=True) if catalog_name(sources[0]) else Path(sources[0])


def measure(run: str, text_file: str | None, chars: int, folder: Path, driver) -> list[dict]:
    saved = checkpoint.read(runs.resolve(run))
    model = saved.model()
    source = Path(text_file or first_source(saved.corpus["sources"])).read_text(encoding="utf-8")
    text = source[len(source) // 2 :][:500]
    ids = model.vocab.encode(text)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids.unsqueeze(0))[0][0].double(), -1)
    expected = logprobs[:-1].gather(1, ids[1:].unsqueeze(1)).squeeze(1)
    seed = text[:20]
    greedy = sampler.generate(model, seed, length=300, greedy=True)[0]
    rows = []
    for weights in PRECISIONS:
        page = folder / f"{Path(run).name}-{weights}.html"
        with contextlib.redirect_stdout(io.StringIO()):  # its "wrote PATH" line
            export = ["export", run, "--format", "html", "--weights", weights, "--output", str(page)]
            charlm_main(export, standalone_mode=False)
        started = time.perf_counter()
        driver.get(page.as_uri())
        while driver.find_element("tag name", "body").get_attribute("data-ready") != "1":
            time.sleep(0.01)
        ready = time.perf_counter() - started
        got = torch.tensor(awaited(driver, "window.charlm.logprobs(args[0])", text), dtype=torch.float64)
        same = awaited(driver, "window.charlm.generate({seed: args[0], length: 300, greedy: true})", seed) == greedy
        timing = "(async () => { const t = performance.now(); await window.charlm.generate({seed: args[0], length: args[1], temperature: 0.8, random_seed: 1}); return performance.now() - t; })()"
        best = min(awaited(driver, timing, text[0], chars) for _ in range(3))
        difference = (got - expected).abs()
        rows.append(
            {
                "run": Path(run).name,
                "weights": weights,
                "MB": page.stat().st_size / 1e6,
                "max": difference.max().item(),
                "mean": difference.mean().item(),
                "greedy": same,
                "chars/s": chars / (best / 1000),
                "ready": ready,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--text", help="text to compare log-probabilities on  [default: the run's corpus]")
    parser.add_argument("--chars", type=int, default=3000, help="characters generated per timing")
    options = parser.parse_args()
    for run in options.runs:  # one not there said before any work
        runs.resolve(run)
    print(
        "| run | weights | file MB | max / mean abs. log-prob difference (nats) | greedy 300 = charlm sample | chars/s | ready s |"
    )
    print("|---|---|---:|---|---|---:|---:|")
    with chromium() as driver, tempfile.TemporaryDirectory() as folder:
        driver.set_script_timeout(600)
        for run in options.runs:
            for r in measure(run, options.text, options.chars, Path(folder), driver):
                print(
                    f"| {r['run']} | {r['weights']} | {r['MB']:.2f} | {r['max']:.1e} / {r['mean']:.1e} | "
                    f"{'yes' if r['greedy'] else 'no'} | {r['chars/s']:,.0f} | {r['ready']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    with errors_in_one_line():
        main()
