"""Load on `charlm serve`: many concurrent streams against one model, measured from an asyncio client.

    python -m bench.serve_load [--checkpoint RUN] [--streams 1,8,32,64] [--chars 500] [--churn 200]
                               [--prompt-chars N] [--threads 1,2 --rounds 3]
                               [--endpoint completions|chat|responses, or several: chat,responses]

Starts `charlm serve` as a process of its own on 127.0.0.1 (a 2x256 LSTM over ALPHABET's 72
characters unless --checkpoint names a run: speed does not depend on what the weights learned), then:

1. Sweep: for each concurrency, that many streaming completions of --chars characters at once.
   Reports aggregate chars/s, time to first chunk and the gap between chunks (p50, p99), errors,
   and how many streams completed (finish_reason, then [DONE]; a response completed or incomplete).
2. Churn: --churn requests, at most --churn-concurrency at a time, half of them disconnecting
   midway. Reports the server's resident memory before and after (from /metrics), the streams
   still active or busy afterwards, and requests that hung (no answer within --timeout).

--prompt-chars N gives each stream a prompt of N random characters instead of "The ", so that reading
prompts (priming, one at a time beside the batch) is part of what is measured: the table's prompt
column is the server's own `timings.prompt_ms` (waiting for the primer included; a response has none:
nan). --threads 1,2 serves with each `--threads` in turn, --rounds times over.

--endpoint says which API the streams ask: completions (/v1/completions, the default), chat
(/v1/chat/completions, the prompt as one user message) or responses (/v1/responses, the prompt as
`input`); chat and responses read the same prompt. Several, comma-separated, take turns on the same
server at each concurrency, A B then B A in the next round, so that neither always runs first. The
first token is the first event that carries text (not a response's `response.created` and the like);
the churn asks the endpoint that runs first in the round.

With several --threads counts or endpoints, the run ends with each one's figures at each concurrency
(medians over the rounds) and their ratios to the first one's, taken round by round (the two measured
minutes apart at most, on the same machine): the median ratio and its spread [lowest, highest].

The server gets --max-streams = the larger of the top concurrency and twice --churn-concurrency: a
client that hangs up frees its slot here at once, but its row on the server only when the server
notices, so each slot may briefly hold two rows (with exactly --churn-concurrency rows, 4 of 300
churn requests were refused with 429).

Targets (on a 2-core CPU): 64 streams >= 10x one stream's aggregate chars/s; p99 gap < 250 ms; no
errors; every stream complete; after the churn, no stream active or busy, nothing hung, memory back near
its baseline. The client shares the machine with the server: the figures include its cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import errors_in_one_line, served_url, wait_healthy
from bench.lifeline import Lifeline
from charlm import runs
from charlm.errors import counted

ALPHABET = string.ascii_letters + string.digits + " \n.,;:!?'-"  # 72 characters, near tinyshakespeare's 65


@dataclass
class Stream:
    """What one streaming request saw, in seconds from its start."""

    first: float | None = None  # the first text
    prompt_ms: float | None = None  # the server's time reading the prompt (its `timings`)
    arrivals: list[float] = field(default_factory=list)
    chars: int = 0
    finished: bool = False
    done: bool = False
    error: str | None = None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def events(response: httpx.Response):
    """The data of each server-sent event, as bytes (cut by hand: httpx's line iterator costs the
    client more CPU than the server spends sending, on a machine the two share)."""
    buffer = b""
    async for data in response.aiter_raw():
        buffer += data
        *complete, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        for event in complete:
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    yield line[6:]


def random_prompt(seed: int, chars: int) -> str:
    """`chars` characters of ALPHABET (a stream's own, by its seed); none: "The "."""
    rng = random.Random(seed)
    return "".join(rng.choice(ALPHABET) for _ in range(chars)) if chars else "The "


ENDPOINTS = ("completions", "chat", "responses")


def request(endpoint: str, prompt: str, chars: int, seed: int) -> tuple[str, dict]:
    """The path and body of a streamed request of `chars` characters to `endpoint` (ENDPOINTS)."""
    settings = {"stream": True, "seed": seed, "temperature": 0.8}
    if endpoint == "chat":
        messages = [{"role": "user", "content": prompt}]
        return "/v1/chat/completions", {"messages": messages, "max_tokens": chars, **settings}
    if endpoint == "responses":
        return "/v1/responses", {"input": prompt, "max_output_tokens": chars, **settings}
    return "/v1/completions", {"prompt": prompt, "max_tokens": chars, **settings}


def read_event(endpoint: str, data: bytes, result: Stream) -> str | None:
    """What an event of `endpoint` says: its text (None if it has none), and in `result`, an error, the
    end (`[DONE]`, a response completed or cut), the finish reason and the server's `timings`."""
    if data == b"[DONE]":
        result.done = True
        return None
    event = json.loads(data)
    if endpoint == "responses":
        kind = event["type"]
        if kind == "error":
            result.error = event["message"]
        elif kind in ("response.completed", "response.incomplete"):
            result.finished = result.done = True
        return event["delta"] if kind == "response.output_text.delta" else None
    if "error" in event:
        result.error = event["error"]["message"]
        return None
    if "timings" in event:
        result.prompt_ms = event["timings"]["prompt_ms"]
    choice = event["choices"][0]
    result.finished = result.finished or choice["finish_reason"] is not None
    return choice["delta"].get("content") if endpoint == "chat" else choice["text"]


async def one_stream(
    client: httpx.AsyncClient,
    seed: int,
    chars: int,
    stop_after: int | None = None,
    prompt: str = "The ",
    endpoint: str = "completions",
) -> Stream:
    """A streaming request to `endpoint`; with `stop_after`, the client hangs up after that many texts."""
    path, body = request(endpoint, prompt, chars, seed)
    result, start = Stream(), time.perf_counter()
    try:
        async with client.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return result
            async for data in events(response):
                text = read_event(endpoint, data, result)
                if result.done or result.error:
                    break
                if text is None:
                    continue
                now = time.perf_counter() - start
                result.first = now if result.first is None else result.first
                result.arrivals.append(now)
                result.chars += len(text)
                if stop_after is not None and len(result.arrivals) >= stop_after:
                    break  # leaving the block closes the connection: a client that went away
    except (httpx.HTTPError, ValueError) as e:
        result.error = f"{type(e).__name__}: {e}"
    return result


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of the server's main thread (HTTP) and of its other threads (engine, priming),
    from /proc; NaN where there is no /proc."""
    try:
        tasks = {}
        for task in os.listdir(f"/proc/{pid}/task"):
            fields = Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
            tasks[int(task)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan"), float("nan")
    return tasks.get(pid, 0.0), sum(v for k, v in tasks.items() if k != pid)


def client_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def sweep_point(
    url: str, pid: int, streams: int, chars: int, timeout: float, prompt_chars: int = 0, endpoint: str = "completions"
) -> dict:
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        await one_stream(client, 0, 20, endpoint=endpoint)  # connection and model warm
        (http_before, engine_before), client_before = cpu_seconds(pid), client_seconds()
        start = time.perf_counter()
        results = await asyncio.gather(
            *(
                one_stream(client, 1000 + i, chars, prompt=random_prompt(i, prompt_chars), endpoint=endpoint)
                for i in range(streams)
            )
        )
        wall = time.perf_counter() - start
        (http_after, engine_after), client_after = cpu_seconds(pid), client_seconds()
    gaps = [b - a for r in results for a, b in zip(r.arrivals, r.arrivals[1:])]
    firsts = [r.first for r in results if r.first is not None]
    prompts = [r.prompt_ms for r in results if r.prompt_ms is not None]
    rates = [r.chars / r.arrivals[-1] for r in results if r.arrivals and r.arrivals[-1] > 0]
    complete = sum(r.finished and r.done and r.chars == chars and not r.error for r in results)
    return {
        "streams": streams,
        "aggregate": sum(r.chars for r in results) / wall,
        "per_stream": percentile(rates, 50),  # a stream's characters over the time to its last text, median
        "first_p50": percentile(firsts, 50) * 1000,
        "first_p99": percentile(firsts, 99) * 1000,
        "prompt_p50": percentile(prompts, 50),
        "prompt_p99": percentile(prompts, 99),
        "gap_p50": percentile(gaps, 50) * 1000,
        "gap_p99": percentile(gaps, 99) * 1000,
        "errors": sum(r.error is not None for r in results),
        "complete": complete,
        "first_error": next((r.error for r in results if r.error), None),
        "cpu": (http_after - http_before, engine_after - engine_before, client_after - client_before),
        "http_ms": (http_after - http_before) * 1000,  # the server's HTTP thread: its events' cost
    }


async def metrics(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = values.get(name.split("{")[0], 0.0) + float(value)
    return values


async def churn(
    url: str, requests: int, concurrency: int, chars: int, timeout: float, endpoint: str = "completions"
) -> dict:
    """`requests` streams, half of them hanging up after a few chunks; at most `concurrency` at once."""
    gate, rng = asyncio.Semaphore(concurrency), random.Random(0)
    plan = [rng.randint(1, 6) if i % 2 else None for i in range(requests)]
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)

    async def run(client: httpx.AsyncClient, i: int, stop_after: int | None) -> Stream | None:
        async with gate:
            try:
                return await asyncio.wait_for(one_stream(client, i, chars, stop_after, endpoint=endpoint), timeout)
            except TimeoutError:
                return None  # hung

    before = await metrics(url)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        results = await asyncio.gather(*(run(client, i, stop) for i, stop in enumerate(plan)))
    wall = time.perf_counter() - start
    after = await settled(url)
    finished = [r for r, stop in zip(results, plan) if stop is None]
    return {
        "requests": requests,
        "wall": wall,
        "hung": sum(r is None for r in results),
        "errors": sum(r is not None and r.error is not None for r in results),
        "first_error": next((r.error for r in results if r is not None and r.error), None),
        "disconnected": sum(stop is not None for stop in plan),
        "complete": sum(r is not None and r.done and r.chars == chars for r in finished),
        "should_complete": len(finished),
        "active_after": after["charlm_active_streams"],
        "busy_after": after["charlm_busy_streams"],
        "rss_before": before["charlm_process_resident_memory_bytes"] / 2**20,
        "rss_after": after["charlm_process_resident_memory_bytes"] / 2**20,
    }


async def settled(url: str, seconds: float = 10) -> dict[str, float]:
    """/metrics once no stream is left active or busy, or after `seconds`: a server notices a client that
    hung up only at its next write. Busy counts what active does not, a stream the model has finished
    whose client has not taken its last update: one never let go holds an admission slot for good."""
    deadline = time.perf_counter() + seconds
    after = await metrics(url)
    while (after["charlm_active_streams"] or after["charlm_busy_streams"]) and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
        after = await metrics(url)
    return after


def make_run(folder: Path, hidden: int, layers: int) -> Path:
    """A run of the given size over ALPHABET, trained for two steps (its speed is what matters here)."""
    import charlm

    text = folder / "alphabet.txt"
    rng = random.Random(0)
    text.write_text("".join(rng.choice(ALPHABET) for _ in range(20_000)) + ALPHABET, encoding="utf-8")
    options = {"hidden": hidden, "layers": layers, "seq_len": 16, "batch_size": 4, "max_steps": 2}
    charlm.train(text, out=folder / f"lstm-{layers}x{hidden}", max_time=None, quiet=True, eval_every=2, **options)
    return folder / f"lstm-{layers}x{hidden}"


def start_server(run: Path, max_streams: int, extra: list[str], lifeline: Lifeline) -> tuple[subprocess.Popen, str]:
    """`charlm serve` on a port it picks (`--port 0`, race-free), and the base URL it printed; it ends with
    `lifeline`, also where this bench is killed (bench.lifeline)."""
    command = [sys.executable, "-m", "charlm", "serve", str(run), "--port", "0"]
    command += ["--max-streams", str(max_streams), "--max-tokens", "100000", *extra]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": os.environ}
    process = subprocess.Popen(command, **pipes, **lifeline.joining())
    first_line = process.stdout.readline()  # the address, printed once the port is bound; nothing follows it
    try:
        return process, served_url(first_line)
    except RuntimeError:
        process.kill()
        raise SystemExit(f"charlm serve: {first_line or process.communicate()[1]}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a run folder or .pt file to serve (default: a fresh 2x256 LSTM)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--streams", default="1,8,32,64", help="concurrency levels, comma-separated")
    parser.add_argument("--chars", type=int, default=500, help="characters per stream")
    parser.add_argument("--churn", type=int, default=200, help="requests in the disconnect phase (0: skip it)")
    parser.add_argument("--churn-concurrency", type=int, default=32)
    parser.add_argument("--churn-chars", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=120, help="seconds before a request counts as hung")
    parser.add_argument("--server-args", default="", help="more `charlm serve` options, e.g. '--chunk-ms 10'")
    parser.add_argument("--prompt-chars", type=int, default=0, help="random characters per prompt (0: 'The ')")
    parser.add_argument("--threads", default="", help="`charlm serve --threads` values to take turns with, e.g. 1,2")
    parser.add_argument("--rounds", type=int, default=1, help="turns of every --threads value and --endpoint")
    parser.add_argument(
        "--endpoint",
        default="completions",
        help=f"the API the streams ask: {', '.join(ENDPOINTS)}, or several to take turns",
    )
    args = parser.parse_args()
    levels = [int(s) for s in args.streams.split(",")]
    counts = [int(t) for t in args.threads.split(",")] if args.threads else [None]
    endpoints = args.endpoint.split(",")
    if unknown := [e for e in endpoints if e not in ENDPOINTS]:
        parser.error(f"--endpoint {unknown[0]}: not one of {', '.join(ENDPOINTS)}")

    if args.checkpoint:
        runs.resolve(args.checkpoint)  # one not there said here, not as a server's error that ends its start
    with tempfile.TemporaryDirectory() as folder:
        run = Path(args.checkpoint) if args.checkpoint else make_run(Path(folder), args.hidden, args.layers)
        measured = {(count, endpoint): [] for count in counts for endpoint in endpoints}
        for turn in range(args.rounds):
            order = endpoints[turn % len(endpoints) :] + endpoints[: turn % len(endpoints)]  # each one first in turn
            for count in counts:
                threads = ["--threads", str(count)] if count else []
                for endpoint, result in measure(run, levels, order, args, args.server_args.split() + threads):
                    measured[count, endpoint].append(result)
    for (count, endpoint), rounds in measured.items():
        for points, churned in rounds:
            report(points, churned, args, run, ", " + variant(count, endpoint))
    if len(measured) > 1:
        compare(measured, levels)


def variant(count: int | None, endpoint: str) -> str:
    """A server's --threads and an endpoint as the tables name them: `--threads 2, /v1/responses`."""
    return (f"--threads {count}, " if count else "") + request(endpoint, "", 1, 0)[0]


def measure(
    run: Path, levels: list[int], endpoints: list[str], args, server_args: list[str]
) -> list[tuple[str, tuple[list[dict], dict | None]]]:
    """One server with `server_args`: each endpoint's sweep points, the endpoints taking turns at each
    concurrency in this order, and its churn's figures (the first endpoint's; None for the others)."""
    max_streams = max(levels + [2 * args.churn_concurrency if args.churn else 0])
    lifeline = Lifeline()
    process, url = start_server(run, max_streams, server_args, lifeline)
    points = {endpoint: [] for endpoint in endpoints}
    try:
        try:
            wait_healthy(url, process)
        except RuntimeError as error:
            raise SystemExit(f"charlm serve: {error}") from None
        for n in levels:
            for endpoint in endpoints:
                point = sweep_point(url, process.pid, n, args.chars, args.timeout, args.prompt_chars, endpoint)
                points[endpoint].append(asyncio.run(point))
        churned = asyncio.run(
            churn(url, args.churn, args.churn_concurrency, args.churn_chars, args.timeout, endpoints[0])
        ) if args.churn else None  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=30)
        lifeline.end()
    return [(endpoint, (points[endpoint], churned if endpoint == endpoints[0] else None)) for endpoint in endpoints]


COMPARED = {  # key of a sweep point: its column in the comparison
    "aggregate": "aggregate chars/s",
    "per_stream": "chars/s per stream p50",
    "first_p50": "first text p50 ms",
    "prompt_p50": "prompt ms p50",
    "http_ms": "server HTTP CPU ms, all rounds",
}
SUMMED = {"http_ms"}  # counted in 10 ms ticks, too coarse for one round: the rounds' total, and its ratio


def compare(measured: dict[tuple, list], levels: list[int]) -> None:
    """Each variant (a --threads count, an endpoint) against the first, at each concurrency: its figures'
    medians over the rounds, and the ratio to the first's taken round by round (the two measured one
    after the other on the same machine), as the median and, over 2 rounds or more, [lowest, highest];
    rounds where either figure is nan or the first's is 0 (no CPU tick of the HTTP thread, counted in 10 ms
    ticks) are left out of the ratio, nan where that leaves none. The HTTP thread's CPU (SUMMED) is the
    rounds' total instead, and its ratio the totals'."""
    first = next(iter(measured))
    rounds = len(measured[first])

    def figures(key: tuple, level: int, name: str) -> list[float]:
        return [points[levels.index(level)][name] for points, _ in measured[key]]

    print(f"\nmedians over {counted(rounds, 'round')}; ratios to {variant(*first)}, round by round: median [spread]\n")
    print("| streams | variant | " + " | ".join(f"{title} | ratio" for title in COMPARED.values()) + " |")
    print("|---:|---|" + "---:|---:|" * len(COMPARED))
    for level in levels:
        for key in measured:
            cells = []
            for name in COMPARED:
                values = figures(key, level, name)
                if name in SUMMED:
                    total, first_total = sum(values), sum(figures(first, level, name))
                    cells.append(f"{total:,.0f} | {total / first_total if first_total else math.nan:.2f}")
                    continue
                ratios = sorted(
                    v / b for v, b in zip(values, figures(first, level, name)) if b and not math.isnan(v / b)
                )
                spread = f" [{ratios[0]:.2f}, {ratios[-1]:.2f}]" if rounds > 1 and ratios else ""
                ratio = f"{statistics.median(ratios):.2f}{spread}" if ratios else "nan"
                cells.append(f"{statistics.median(values):,.1f} | {ratio}")
            print(f"| {level} | {variant(*key)} | " + " | ".join(cells) + " |")


def report(points: list[dict], churned: dict | None, args, run: Path, server: str = "") -> None:
    print(f"charlm serve load: {run.name}{server}, {args.chars} characters per stream, {args.prompt_chars or 4} "
          f"characters per prompt, python {sys.version.split()[0]}, {os.cpu_count()} CPUs (client and server "
          "on the same machine)\n")  # fmt: skip
    print(
        "| streams | aggregate chars/s | x one stream | first chunk p50 / p99 ms | prompt p50 / p99 ms "
        "| gap p50 / p99 ms | errors | complete | CPU s: server HTTP / engine, client | chars/s per stream p50 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    one = points[0]["aggregate"]
    for p in points:
        print(
            f"| {p['streams']} | {p['aggregate']:,.0f} | {p['aggregate'] / one:.1f}x | {p['first_p50']:.0f} / "
            f"{p['first_p99']:.0f} | {p['prompt_p50']:.1f} / {p['prompt_p99']:.1f} | {p['gap_p50']:.0f} / "
            f"{p['gap_p99']:.0f} | {p['errors']} | {p['complete']}/{p['streams']} | {p['cpu'][0]:.2f} / "
            f"{p['cpu'][1]:.2f}, {p['cpu'][2]:.2f} | {p['per_stream']:,.0f} |"
        )
        if p["first_error"]:
            print(f"  first error: {p['first_error']}")
    last = points[-1]
    checks = [
        (f"{last['streams']} streams >= 10x one stream", last["aggregate"] >= 10 * one),
        ("p99 gap between chunks < 250 ms at every level", all(p["gap_p99"] < 250 for p in points)),
        ("no errors, every stream complete", all(not p["errors"] and p["complete"] == p["streams"] for p in points)),
    ]
    if churned:
        c = churned
        print(
            f"\nchurn: {c['requests']} requests ({c['disconnected']} hung up midway), at most "
            f"{args.churn_concurrency} at once, in {c['wall']:.1f} s: {c['complete']}/{c['should_complete']} of the "
            f"others complete, {c['errors']} errors, {c['hung']} hung, {c['active_after']:.0f} streams active and "
            f"{c['busy_after']:.0f} busy after; "
            f"server memory {c['rss_before']:.0f} MB before, {c['rss_after']:.0f} MB after"
        )
        if c["first_error"]:
            print(f"  first error: {c['first_error']}")
        checks += [
            ("churn: nothing hung, no errors, no stream left active or busy",
             not c["hung"] and not c["errors"] and not c["active_after"] and not c["busy_after"]),
            ("churn: every stream not hung up completed", c["complete"] == c["should_complete"]),
            ("churn: memory back within 10 MB of its baseline", c["rss_after"] - c["rss_before"] < 10),
        ]  # fmt: skip
    print()
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
