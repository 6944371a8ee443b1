"""`GET /metrics`: the server's counters in Prometheus's text format."""

from __future__ import annotations

import collections
import sys
import threading
import time
from pathlib import Path

RATE_WINDOW = 10.0  # seconds that characters per second are averaged over


class Metrics:
    """Counters the HTTP layer keeps (requests, refusals), and a rate of characters the engines
    report; the rest (active streams, characters made) is read from the engines when scraped."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()  # (endpoint, status)
        self.prompt_chars: collections.Counter[str] = collections.Counter()  # per model
        self.recent: collections.deque[tuple[float, int]] = collections.deque()  # (time, characters made)

    def request(self, endpoint: str, status: int) -> None:
        with self.lock:
            self.requests[endpoint, str(status)] += 1

    def prompt(self, model: str, chars: int) -> None:
        with self.lock:
            self.prompt_chars[model] += chars

    def made(self, chars: int) -> None:
        now = time.monotonic()
        with self.lock:
            self.recent.append((now, chars))
            while self.recent and self.recent[0][0] < now - RATE_WINDOW:
                self.recent.popleft()

    def rate(self) -> float:
        with self.lock:
            now = time.monotonic()
            return sum(n for t, n in self.recent if t >= now - RATE_WINDOW) / RATE_WINDOW

    def render(self, engines: dict, busy: int, max_streams: int) -> str:
        """The exposition text; `engines` maps model ids to their `Engine`; `busy`, the streams taken of
        `max_streams` as admission counts them (`Server.busy`): a finished stream its client has not read
        holds its row until it does, and beside `active_streams` alone the 429s it causes would show no cause."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.extend([f"# HELP charlm_{name} {help_text}", f"# TYPE charlm_{name} {kind}"])
            lines.extend(f"charlm_{name}{labels} {prometheus_number(value)}" for labels, value in samples)

        with self.lock:
            requests = sorted(self.requests.items())
            prompts = dict(self.prompt_chars)
        metric(
            "requests_total",
            "counter",
            "HTTP requests answered, by endpoint and status",
            [(f'{{endpoint="{e}",status="{s}"}}', n) for (e, s), n in requests],
        )
        models = sorted(engines)
        metric(
            "active_streams", "gauge", "samples being generated now", [(label(m), engines[m].active) for m in models]
        )
        metric(
            "busy_streams",
            "gauge",
            "streams taken, all models together: a request's from its admission until its client takes its "
            "last update or is stopped (those the model has finished too); a request is a 429 beyond max_streams",
            [("", busy)],
        )
        metric(
            "max_streams", "gauge", "streams the server runs at once (charlm serve --max-streams)", [("", max_streams)]
        )
        metric(
            "waiting_requests",
            "gauge",
            "requests primed, waiting for rows",
            [(label(m), len(engines[m].waiting)) for m in models],
        )
        metric(
            "generated_characters_total",
            "counter",
            "characters generated and sent",
            [(label(m), engines[m].characters) for m in models],
        )
        metric(
            "prompt_characters_total",
            "counter",
            "prompt characters read",
            [(label(m), prompts.get(m, 0)) for m in models],
        )
        metric(
            "characters_per_second",
            "gauge",
            f"characters generated per second over the last {RATE_WINDOW:g} s",
            [("", self.rate())],
        )
        if (resident := resident_bytes()) is not None:
            metric("process_resident_memory_bytes", "gauge", "resident memory of the server process", [("", resident)])
        return "\n".join(lines) + "\n"


def prometheus_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def label(model: str) -> str:
    escaped = model.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{{model="{escaped}"}}'


def resident_bytes() -> int | None:
    """Current resident memory (Linux: /proc), else the peak that getrusage reports; None on Windows,
    which has neither (no `resource` module to import: /metrics leaves the figure out)."""
    try:
        import resource
    except ImportError:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
