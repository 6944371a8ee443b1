"""The serve page showing a long streamed text, in headless Chromium: the browser's time in script, style
and layout while the text streams in, for the page of each of several git revisions, side by side.

    python -m bench.page_stream [--chars 100000] [--rate 5000] [--limit 60] [--rounds 3] [--pages 36f23d5^,HEAD]

For each revision's page (its page.html, page.css and page.js, put together as the server puts
them: `charlm.serve.app.page_html`), served beside a tiny model by this tree's server: the page's
fetch of /v1/completions answers with a stream of --chars characters, one a token with its
alternatives (as the server sends them), due at --rate characters a second and sent every 10 ms in
reads of at most --per-read tokens (a page that falls behind gets them later, as from a server whose
socket is full). A page still reading after --limit seconds gets its stream ended there (the last
token sent says finish_reason "length"), so that a page too slow for the text ends too; it shows fewer
characters. Measured from the Generate click to the page saying done: the characters shown, wall
seconds, Chromium's own ScriptDuration, LayoutDuration, RecalcStyleDuration and TaskDuration (the
DevTools Performance domain), layout and task time per 1,000 characters shown (a slow page shows
fewer), and the gaps between animation frames (p50, p99, longest). Each
measurement has a browser of its own; the pages take turns, the order rotated each round; the run
ends with each page's medians and its ratios to the first page's, round by round (median [lowest,
highest]).

36f23d5^ is the page before "pages add text per animation frame" (36f23d5: the text's height read
and the scroll moved from each token to once a frame; `git log -S requestAnimationFrame`).
Needs chromium and chromedriver (apt-get install chromium chromium-driver) and selenium.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import uvicorn
from fastapi.responses import HTMLResponse

from bench.browser import chromium
from bench.common import wait_healthy
from charlm import forms
from charlm.errors import counted
from charlm.model import CharLM, ModelConfig
from charlm.serve import listening_socket, protocol
from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig
from charlm.vocab import Vocab

REPO = Path(__file__).resolve().parent.parent
TEXT = "the fifth flag of the office, fluffy and fine.\n"  # the page test's long text, repeated

# A stream of `text` in place of the server's, one character a token with an alternative (see the module's
# docstring); counts the animation frames' gaps meanwhile.
STREAM = """
const [text, rate, perRead, limit] = arguments, chars = [...text], last = chars.length - 1, encoder = new TextEncoder();
const gaps = window.frameGaps = [];
let previous = 0;
const tick = (now) => { if (previous && state.running) gaps.push(now - previous); previous = now; requestAnimationFrame(tick); };
requestAnimationFrame(tick);
const event = (t, i, end) => "data: " + JSON.stringify({ choices: [{ index: 0, text: t, finish_reason: i === end ? "length" : null,
  logprobs: { tokens: [t], token_logprobs: [-1], top_logprobs: [{ [t]: -1, [t === "x" ? "y" : "x"]: -2 }] } }] }) + "\\n\\n";
const serversFetch = window.fetch;
window.fetch = (url, options) => {
  if (!String(url).endsWith("/v1/completions")) return serversFetch(url, options);
  const body = new ReadableStream({ async start(controller) {
    const start = performance.now();
    for (let sent = 0; sent <= last; ) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      const elapsed = (performance.now() - start) / 1000, late = elapsed > limit;
      const upto = Math.max(Math.min(last + 1, sent + perRead, Math.floor(elapsed * rate)), late ? sent + 1 : 0);
      const end = late ? upto - 1 : last;
      if (upto > sent) controller.enqueue(encoder.encode(chars.slice(sent, upto).map((t, j) => event(t, sent + j, end)).join("")));
      sent = Math.max(sent, upto);
      if (late) break;
    }
    controller.enqueue(encoder.encode("data: [DONE]\\n\\n"));
    controller.close();
  } });
  return Promise.resolve(new Response(body, { headers: { "Content-Type": "text/event-stream" } }));
};
"""
METRICS = ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")


def page_of(revision: str) -> str:
    """The serve page of `revision` as the server of its time put it together (page_html), from git."""

    def shown(name: str) -> str | None:
        found = subprocess.run(
            ["git", "show", f"{revision}:charlm/serve/{name}"], cwd=REPO, capture_output=True, check=False
        )
        return found.stdout.decode() if found.returncode == 0 else None

    page = shown("page.html")
    if page is None:
        raise SystemExit(f"--pages: {revision} has no charlm/serve/page.html")
    for shared in ("page.css", "page.js"):
        if (content := shown(shared)) is not None:
            page = page.replace(f"/* {shared} */", content, 1)
    menu = "\n".join(f'        <option value="{name}">{name}</option>' for name in forms.FORMS)
    return page.replace("        <!-- FORMS -->", menu, 1).replace("/* MAX_BIASED */", str(protocol.MAX_BIASED), 1)


@contextmanager
def serving(pages: dict[str, str]):
    """This tree's server with a tiny model, each page at /page/N; yields the base URL."""
    vocab = Vocab(sorted(set(TEXT)))
    torch.manual_seed(0)
    model = CharLM(ModelConfig("lstm", 1, 16, 0.0, len(vocab)), vocab).eval()
    app = create_app({"tiny": lambda: model}, ServeConfig())
    for i, html in enumerate(pages.values()):
        app.add_api_route(f"/page/{i}", lambda html=html: HTMLResponse(html), methods=["GET"])
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        wait_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def metrics(driver) -> dict[str, float]:
    found = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    return {m["name"]: m["value"] for m in found if m["name"] in METRICS}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def one_stream(driver, url: str, text: str, args) -> dict[str, float]:
    """The page at `url` writing `text`: what it showed, seconds and the browser's durations from Generate
    to done."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    driver.execute_script(STREAM, text, args.rate, args.per_read, args.limit)
    driver.execute_cdp_cmd("Performance.enable", {})
    before, start = metrics(driver), time.perf_counter()
    driver.find_element("id", "generate").click()
    done = WebDriverWait(driver, args.limit + 600, poll_frequency=0.2)
    done.until(lambda d: "done" in d.find_element("id", "status").text)
    seconds = time.perf_counter() - start
    after, gaps = metrics(driver), driver.execute_script("return window.frameGaps")
    shown = driver.execute_script("return document.querySelectorAll('#text .made').length")
    result = {"shown": shown, "seconds": seconds, **{name: after[name] - before[name] for name in METRICS}}
    result["layout_per_k"], result["task_per_k"] = (result[name] * 1e6 / shown for name in METRICS[1::2])
    return result | {"frames": len(gaps), "gap_p50": percentile(gaps, 50), "gap_p99": percentile(gaps, 99),
                     "gap_max": max(gaps, default=float("nan"))}  # fmt: skip


COLUMNS = {
    "shown": "characters shown",
    "seconds": "wall s",
    "ScriptDuration": "script s",
    "LayoutDuration": "layout s",
    "RecalcStyleDuration": "style s",
    "TaskDuration": "task s",
    "layout_per_k": "layout ms per 1,000 shown",
    "task_per_k": "task ms per 1,000 shown",
    "frames": "frames",
    "gap_p50": "frame gap p50 ms",
    "gap_p99": "p99 ms",
    "gap_max": "longest ms",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=100_000, help="characters streamed")
    parser.add_argument("--rate", type=int, default=5000, help="characters a second the stream arrives at")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pages", default="36f23d5^,HEAD", help="git revisions whose serve page to measure")
    parser.add_argument("--per-read", type=int, default=200, help="tokens at most in one read of the stream")
    parser.add_argument("--limit", type=float, default=60, help="seconds after which the stream ends")
    args = parser.parse_args()
    text = (TEXT * (args.chars // len(TEXT) + 1))[: args.chars]
    pages = {revision: page_of(revision) for revision in args.pages.split(",")}
    measured = {revision: [] for revision in pages}
    with serving(pages) as url:
        for turn in range(args.rounds):
            order = list(enumerate(pages))
            for i, revision in order[turn % len(order) :] + order[: turn % len(order)]:
                with chromium() as driver:
                    measured[revision].append(one_stream(driver, f"{url}/page/{i}", text, args))
                    version = driver.capabilities.get("browserVersion", "?")
    report(measured, args, version)


def report(measured: dict[str, list[dict]], args, version: str) -> None:
    print(
        f"the serve page writing {args.chars:,} characters streamed at {args.rate:,} characters/s, one a token, in "
        f"reads of {args.per_read} at most, the stream ended after {args.limit:g} s; "
        f"headless Chromium {version}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end; {counted(args.rounds, 'round')}, the pages in turn\n"
    )
    for revision, rounds in measured.items():
        rev = subprocess.run(
            ["git", "rev-parse", "--short", revision], cwd=REPO, capture_output=True, text=True, check=True
        )
        print(f"{revision} ({rev.stdout.strip()}): " + "; ".join(
            " ".join(f"{COLUMNS[k]} {v:,.1f}" for k, v in r.items()) for r in rounds))  # fmt: skip
    first = next(iter(measured))
    print(f"\nmedians; ratios to {first}, round by round: median [spread]\n")
    print("| page | " + " | ".join(COLUMNS.values()) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for revision, rounds in measured.items():
        cells = []
        for key in COLUMNS:
            values = [r[key] for r in rounds]
            ratios = sorted(v / b for v, b in zip(values, (r[key] for r in measured[first])) if b)
            ratio = f" ({statistics.median(ratios):.2f} [{ratios[0]:.2f}, {ratios[-1]:.2f}])" if ratios else ""
            cells.append(f"{statistics.median(values):,.1f}{ratio if revision != first else ''}")
        print(f"| {revision} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
