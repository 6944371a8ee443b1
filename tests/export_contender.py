"""The exporters of test_export's races, in a module of their own: a spawned process imports this and
charlm.hub (a fraction of a second), not torch and the test module with its conftest (seconds). Each
exports as `hub.write` does, from the bytes that `hub.write` made of a run in the test."""

import random
import time
from pathlib import Path

from charlm import files, hub

# An export renames its three files into place microseconds apart, so a race between them is rare. Each
# rename is followed by up to this many seconds' sleep, in the exporting test process only (charlm's
# code is unchanged), so that it shows in a few rounds.
RENAME_GAP = 0.01
PAUSE = 0.03  # between one export and the next, as between a user's re-exports


def widen_rename_gaps(seed: int) -> None:
    """Sleep a random moment after each of this process's renames (files.replace_files calls
    files.replace for each file)."""
    rename, draw = files.replace, random.Random(seed)

    def slow_replace(source: Path, target: Path) -> None:
        rename(source, target)
        time.sleep(draw.uniform(0, RENAME_GAP))

    files.replace = slow_replace


def export_of(source: str) -> dict[str, bytes]:
    """The files of the model folder `source`, in the order `hub.write` renames them in."""
    return {name: (Path(source) / name).read_bytes() for name in (hub.CONFIG, hub.VOCAB, hub.WEIGHTS)}


def export_in_rounds(source: str, folder: str, rounds: int, barrier, seed: int) -> None:
    """One of two exporters of two runs into one folder: in each round every exporter (and the test,
    which then looks at the folder) is released at once by `barrier`, exports, and waits for the others."""
    contents = export_of(source)
    widen_rename_gaps(seed)
    for _ in range(rounds):
        barrier.wait(timeout=60)
        hub.put(Path(folder), contents)
        barrier.wait(timeout=60)


def export_by_turns(sources: list[str], folder: str, exports: int, started, reads, least_reads: int) -> None:
    """Export the model folders `sources` into one folder by turns, at least `exports` times and until the
    reader has counted `least_reads` in `reads` (a shared count: on a loaded machine a fixed number of exports
    could end before the reader read the folder often enough), as a user re-exporting while a reader loads
    the folder; `started` is set once the first export is under way. Two minutes at most."""
    models = [export_of(source) for source in sources]
    widen_rename_gaps(0)
    started.set()
    i, deadline = 0, time.monotonic() + 120
    while (i < exports or reads.value < least_reads) and time.monotonic() < deadline:
        hub.put(Path(folder), models[i % len(models)])
        time.sleep(PAUSE)
        i += 1
